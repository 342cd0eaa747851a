//! `verify [--prefix P] [--require-checksum]`: scrub — re-read every object and check it
//! against its checksum: maskstore's own, else the one the provider keeps (S3's flexible
//! checksums, GCS's crc32c/md5, Azure's Content-MD5), named in the output when it is the
//! provider's.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use maskstore::{Error, ObjectKey, Storage};
use serde_json::json;

use super::output::{Failure, print_json};

/// What one object's re-read found.
enum Finding {
    /// Checked against the checksum named (`maskstore-checksum`, `x-amz-checksum-crc32`…).
    Verified(String),
    /// No checksum could check it; the composite one it has, if any (its source).
    Unverified(Option<String>),
    Corrupt,
    /// Deleted since it was listed.
    Gone,
    Failed(Error),
}

/// Reads `key` whole as a stream (memory bounded whatever its size), which verifies it.
async fn check(storage: &Storage, key: ObjectKey) -> (ObjectKey, Finding) {
    let finding = match storage.get_stream(&key).await {
        Err(Error::NotFound { .. }) => Finding::Gone,
        // A checksum record that exists but cannot be read fails before any byte.
        Err(Error::Corrupt { .. }) => Finding::Corrupt,
        Err(e) => Finding::Failed(e),
        Ok(read) => {
            let checked_by = read.info.checked_by().map(str::to_string);
            let composite = read
                .info
                .native_checksum
                .as_ref()
                .filter(|native| native.composite)
                .map(|native| native.source.clone());
            let mut stream = read.stream;
            let mut failed = None;
            while let Some(chunk) = stream.next().await {
                if let Err(e) = chunk {
                    failed = Some(e);
                    break;
                }
            }
            match failed {
                Some(Error::Corrupt { .. }) => Finding::Corrupt,
                Some(e) => Finding::Failed(e),
                None => match checked_by {
                    Some(by) => Finding::Verified(by),
                    None => Finding::Unverified(composite),
                },
            }
        }
    };
    (key, finding)
}

/// Scrubs every object under `prefix`; with `require_checksum` (`--require-checksum` or
/// `object_storage.require_checksum`), an object no checksum can verify fails it too.
pub(crate) async fn run(
    storage: &Storage,
    prefix: Option<&str>,
    concurrency: usize,
    require_checksum: bool,
    as_json: bool,
) -> Result<(), Failure> {
    let listed = storage.list(prefix)?;
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("verify {spinner} {pos} objects {msg}")
                .expect("a valid template"),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut checks = listed
        .map(|item| async move {
            match item {
                Ok(info) => Ok(check(storage, info.key).await),
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(concurrency);
    let (mut verified, mut unverified, mut corrupt, mut failed) = (0u64, vec![], vec![], vec![]);
    // How many each checksum verified, and the objects whose only checksum is composite.
    let mut verified_by: BTreeMap<String, u64> = BTreeMap::new();
    let mut composite: Vec<(ObjectKey, String)> = vec![];
    // Objects another tool named with names that are not valid keys: checked like the
    // others, and listed by name (escaped) so that they can be renamed or removed.
    let mut foreign: Vec<ObjectKey> = vec![];
    // A listing that fails part way (a symlink under a local root, a page refused) is
    // reported with what was found, never in place of it: a corrupt object already found
    // must not be lost to an error listing another.
    let mut unlisted: Vec<Error> = vec![];
    while let Some(result) = checks.next().await {
        let (key, finding) = match result {
            Ok(checked) => checked,
            Err(e) => {
                unlisted.push(e);
                continue;
            }
        };
        bar.inc(1);
        if key.is_foreign() {
            foreign.push(key.clone());
        }
        match finding {
            Finding::Verified(by) => {
                verified += 1;
                *verified_by.entry(by).or_default() += 1;
            }
            Finding::Unverified(Some(source)) => {
                composite.push((key.clone(), source));
                unverified.push(key);
            }
            Finding::Unverified(None) => unverified.push(key),
            Finding::Corrupt => {
                bar.set_message(format!("{} corrupt", corrupt.len() + 1));
                corrupt.push(key)
            }
            Finding::Gone => {}
            Finding::Failed(e) => failed.push((key, e)),
        }
    }
    bar.finish_and_clear();
    for list in [&mut unverified, &mut corrupt, &mut foreign] {
        list.sort();
    }
    failed.sort_by(|a, b| a.0.cmp(&b.0));
    composite.sort();
    if as_json {
        print_json(&json!({
            "verified": verified,
            "verified_by": verified_by,
            "unverified": unverified.iter().map(ObjectKey::as_str).collect::<Vec<_>>(),
            "composite": composite
                .iter()
                .map(|(k, source)| json!({"key": k.as_str(), "checksum": source}))
                .collect::<Vec<_>>(),
            "corrupt": corrupt.iter().map(ObjectKey::as_str).collect::<Vec<_>>(),
            "failed": failed
                .iter()
                .map(|(k, e)| json!({"key": k.as_str(), "kind": e.kind().as_str(), "error": e.to_string()}))
                .collect::<Vec<_>>(),
            "foreign": foreign
                .iter()
                .map(|k| json!({"key": k.as_str(), "foreign": k.foreign()}))
                .collect::<Vec<_>>(),
            "unlisted": unlisted
                .iter()
                .map(|e| json!({"kind": e.kind().as_str(), "error": e.to_string()}))
                .collect::<Vec<_>>(),
        }));
    } else {
        for key in &corrupt {
            println!("corrupt     {key}");
        }
        for key in &unverified {
            match composite.binary_search_by(|(k, _)| k.cmp(key)) {
                Ok(i) => println!(
                    "unverified  {key} (its {} is composite: a checksum of the parts' checksums)",
                    maskstore::maskstore_core::shown(&composite[i].1)
                ),
                Err(_) => println!("unverified  {key}"),
            }
        }
        for (key, e) in &failed {
            println!("failed      {key}: {e}");
        }
        for e in &unlisted {
            println!("unlisted    {e}");
        }
        // Objects verified by the provider's own checksum say which; maskstore's own is
        // the rule and goes unsaid.
        for (by, count) in &verified_by {
            if by != maskstore::CHECKSUM_METADATA {
                println!(
                    "verified by {}: {count}",
                    maskstore::maskstore_core::shown(by)
                );
            }
        }
        for key in &foreign {
            let reason = key.foreign().unwrap_or_default();
            println!(
                "foreign     {key} ({})",
                maskstore::maskstore_core::shown(&reason)
            );
        }
        println!(
            "{verified} verified, {} unverified (no checksum), {} corrupt, {} could not be read",
            unverified.len(),
            corrupt.len(),
            failed.len()
        );
        if !foreign.is_empty() {
            println!(
                "{} of them have names that are not valid keys (foreign, listed above escaped); rename them with the tool that wrote them",
                foreign.len()
            );
        }
    }
    if !corrupt.is_empty() {
        return Err(Failure {
            message: format!(
                "{} corrupt object(s), first {}; restore them from a backup or a replica",
                corrupt.len(),
                corrupt[0]
            ),
            code: 6,
        });
    }
    if require_checksum && !unverified.is_empty() {
        return Err(Failure {
            message: format!(
                "{} object(s) have no checksum that can verify them, first {}, and a checksum \
                 is required (--require-checksum or object_storage.require_checksum); rewrite \
                 them with maskstore (put or sync) so that they get one",
                unverified.len(),
                unverified[0]
            ),
            code: 6,
        });
    }
    if let Some(e) = unlisted.first() {
        return Err(Failure {
            message: format!("the listing failed, so some objects may not have been checked: {e}"),
            code: super::output::exit_code(e),
        });
    }
    if let Some((key, e)) = failed.first() {
        return Err(Failure {
            message: format!(
                "{} object(s) could not be read, first {key}: {e}",
                failed.len()
            ),
            code: super::output::exit_code(e),
        });
    }
    Ok(())
}
