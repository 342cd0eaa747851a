//! The object chores of the deployment guide's test section: `ls`, `put`, `get`, `rm`,
//! `cp`, `mv` — through the application's own config.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use maskstore::sync::spill::{Keyed, RUN_LEN, Sorter, Spill};
use maskstore::{Error, MaskFormat, ObjectInfo, ObjectKey, Storage, WriteOptions};
use maskstore_core::shown;
use serde_json::json;

use super::download::{self, Durability};
use super::output::{Failure, print_json, progress};

/// Read size when streaming a file or stdin into the store.
const CHUNK: usize = 1024 * 1024;

/// Parses a full object key, refusing keys outside the configured prefix with a clear
/// message before anything is sent.
pub(crate) fn key(storage: &Storage, text: &str) -> Result<ObjectKey, Failure> {
    let key = ObjectKey::parse(text).map_err(|e| Failure::from(Error::from(e)))?;
    if !key.is_within(storage.prefix()) {
        return Err(Failure {
            message: format!(
                "{text:?} lies outside the configured prefix {:?}; keys are full object keys such as {}…",
                storage.prefix().as_str(),
                storage.prefix()
            ),
            code: 2,
        });
    }
    Ok(key)
}

/// Parses the key of an object to read or delete: a valid key, or else the exact name of
/// an object another tool wrote that is not a valid key (as `ls --json` gives it; in a
/// shell, `$'mask/a\nb'` for a name with a newline). Writes take [`key`] only.
pub(crate) fn found_key(storage: &Storage, text: &str) -> Result<ObjectKey, Failure> {
    match ObjectKey::parse(text) {
        Ok(_) => key(storage, text),
        Err(_) => {
            let found = ObjectKey::found(text).map_err(|e| Failure::from(Error::from(e)))?;
            if !found.is_within(storage.prefix()) {
                return key(storage, text);
            }
            Ok(found)
        }
    }
}

/// Objects whose HEAD `ls --long` asks for at once (listings carry no content type).
const LONG_LISTING_HEADS: usize = 16;

/// `ls [PREFIX] [--long]`: streams the listing, one key per line; `--long` adds size,
/// date, etag and content type (and, with `--json`, the user metadata) from a HEAD of each.
pub(crate) async fn ls(
    storage: &Storage,
    prefix: Option<&str>,
    long: bool,
    as_json: bool,
) -> Result<(), Failure> {
    let listed = storage.list(prefix)?;
    let mut items: futures::stream::BoxStream<'_, maskstore::Result<ObjectInfo>> = if long {
        listed
            .map(|item| async move {
                let info = item?;
                match storage.head(&info.key).await {
                    Ok(full) => Ok(full),
                    // Deleted since it was listed: show what the listing said.
                    Err(Error::NotFound { .. }) => Ok(info),
                    Err(e) => Err(e),
                }
            })
            .buffered(LONG_LISTING_HEADS)
            .boxed()
    } else {
        listed
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut count, mut foreign) = (0u64, 0u64);
    while let Some(item) = items.next().await {
        let info = item?;
        count += 1;
        let reason = info.key.foreign();
        foreign += u64::from(reason.is_some());
        let line = if as_json {
            let mut value = json!({
                "key": info.key.as_str(),
                "size": info.size,
                "last_modified": info.last_modified.to_rfc3339(),
                "etag": info.etag,
            });
            if let Some(reason) = &reason {
                value["foreign"] = json!(reason);
            }
            if long {
                value["content_type"] = json!(info.content_type);
                value["metadata"] = json!(info.metadata);
                value["checksum"] = json!(info.checksum);
            }
            value.to_string()
        } else if long {
            format!(
                "{:>12}  {}  {}  {}  {}  {}",
                info.size,
                info.last_modified.format("%Y-%m-%dT%H:%M:%SZ"),
                shown(info.etag.as_deref().unwrap_or("-")),
                shown(info.content_type.as_deref().unwrap_or("-")),
                shown(info.checksum.as_deref().unwrap_or("-")),
                info.key
            )
        } else {
            info.key.to_string()
        };
        // A foreign name is shown escaped (its Display) and marked.
        let line = match (&reason, as_json) {
            (Some(_), false) => format!("{line}  (foreign name)"),
            _ => line,
        };
        let written = writeln!(out, "{line}");
        // Flush now and then so a long listing shows as it streams.
        let flushed = if count.is_multiple_of(1000) {
            out.flush()
        } else {
            Ok(())
        };
        if let Err(e) = written.and(flushed) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(Failure {
                message: format!("cannot write the listing: {e}"),
                code: 1,
            });
        }
    }
    let _ = out.flush();
    if foreign > 0 && !as_json {
        // On stderr: the listing on stdout stays one key a line.
        eprintln!(
            "maskstore: {foreign} of {count} objects have names that are not valid keys \
             (written by another tool; shown escaped, marked \"(foreign name)\"); \
             `ls --json` gives their exact names and why, and get, stat and rm take them"
        );
    }
    Ok(())
}

/// `stat <KEY>`: what the store keeps about one object, from a HEAD.
pub(crate) async fn stat(storage: &Storage, key_text: &str, as_json: bool) -> Result<(), Failure> {
    let key = found_key(storage, key_text)?;
    let info = storage.head(&key).await?;
    if as_json {
        let mut value = json!({
            "key": info.key.as_str(),
            "size": info.size,
            "etag": info.etag,
            "last_modified": info.last_modified.to_rfc3339(),
            "content_type": info.content_type,
            "metadata": info.metadata,
            "checksum": info.checksum,
            "checked_by": info.checked_by(),
        });
        // What only some objects have appears only for them.
        if let Some(n) = &info.native_checksum {
            value["native_checksum"] =
                json!({"value": n.value, "source": n.source, "composite": n.composite});
        }
        if let Some(why) = &info.unreadable_checksum {
            value["unreadable_checksum"] = json!(why);
        }
        if let Some(encoding) = &info.content_encoding {
            value["content_encoding"] = json!(encoding);
        }
        print_json(&value);
    } else {
        println!("key            {}", info.key);
        println!("size           {}", info.size);
        // What the store holds was chosen by whoever wrote it: shown escaped.
        println!(
            "etag           {}",
            shown(info.etag.as_deref().unwrap_or("-"))
        );
        println!(
            "last modified  {}",
            info.last_modified.format("%Y-%m-%dT%H:%M:%SZ")
        );
        println!(
            "content type   {}",
            shown(info.content_type.as_deref().unwrap_or("-"))
        );
        println!("checksum       {}", checksum_shown(&info));
        if let Some(encoding) = &info.content_encoding {
            println!(
                "encoding       {} (stored so; read as stored)",
                shown(encoding)
            );
        }
        if info.metadata.is_empty() {
            println!("metadata       -");
        }
        for (name, value) in &info.metadata {
            println!("metadata       {}={}", shown(name), shown(value));
        }
    }
    Ok(())
}

/// Reads `put --meta NAME=VALUE` flags into user metadata, refusing a malformed, repeated
/// or reserved (sync's) name and anything S3 would not store (see
/// [`WriteOptions::validate`]).
pub(crate) fn parse_metadata(flags: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut metadata = BTreeMap::new();
    for flag in flags {
        let Some((name, value)) = flag.split_once('=') else {
            return Err(Failure {
                message: format!(
                    "--meta {flag:?} has no '='; give NAME=VALUE, such as --meta series=3"
                ),
                code: 2,
            });
        };
        let name = name.trim().to_ascii_lowercase();
        if name == maskstore::sync::SOURCE_ETAG {
            return Err(Failure {
                message: format!(
                    "--meta {name} is written by sync to record the source version it copied; set by hand it would make sync skip this object, so choose another name"
                ),
                code: 2,
            });
        }
        if metadata.insert(name.clone(), value.to_string()).is_some() {
            return Err(Failure {
                message: format!("--meta {name} is given twice; give each name once"),
                code: 2,
            });
        }
    }
    WriteOptions {
        metadata: metadata.clone(),
        ..Default::default()
    }
    .validate()?;
    Ok(metadata)
}

/// `put <FILE|-> <KEY>`: streams into a streaming upload, memory bounded for any size.
pub(crate) async fn put(
    storage: &Storage,
    source: &str,
    key_text: &str,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
    as_json: bool,
) -> Result<(), Failure> {
    let key = key(storage, key_text)?;
    let content_type = content_type.unwrap_or_else(|| {
        MaskFormat::for_key(key.as_str())
            .map(|f| f.content_type())
            .unwrap_or(maskstore::maskstore_backends::DEFAULT_CONTENT_TYPE)
            .to_string()
    });
    let options = WriteOptions {
        content_type: Some(content_type.clone()),
        metadata,
        ..Default::default()
    };
    // A regular file is stored by `write_from_file` (a kernel copy on local disk, parts
    // read ahead of the upload elsewhere); stdin, pipes, devices and files of size 0 stream
    // (a /proc or /sys file says 0 and reads its content; an empty file streams as fast).
    let regular = source != "-"
        && tokio::fs::metadata(source)
            .await
            .is_ok_and(|m| m.is_file() && m.len() > 0);
    if regular {
        let len = tokio::fs::metadata(source).await.ok().map(|m| m.len());
        let bar = progress(len, &format!("put {key}"));
        let outcome = storage
            .write_from_file(&key, std::path::Path::new(source), &options, {
                let bar = bar.clone();
                move |done, _| bar.set_position(done)
            })
            .await;
        bar.finish_and_clear();
        let outcome = outcome.map_err(|e| match e {
            maskstore::Error::Source { source: cause, .. } => Failure {
                message: format!("cannot read {source}: {cause}"),
                code: 2,
            },
            e => e.into(),
        })?;
        let size = len.unwrap_or_default();
        return report_put(&key, size, outcome.etag, &content_type, as_json);
    }
    let (reader, len): (Box<dyn tokio::io::AsyncRead + Unpin + Send>, Option<u64>) =
        if source == "-" {
            (Box::new(tokio::io::stdin()), None)
        } else {
            let file = tokio::fs::File::open(source).await.map_err(|e| Failure {
                message: format!("cannot read {source}: {e}"),
                code: 2,
            })?;
            let len = file.metadata().await.ok().map(|m| m.len());
            (Box::new(file), len)
        };
    let bar = progress(len, &format!("put {key}"));
    // Counted as it streams: the upload is the only request.
    let sent = Arc::new(AtomicU64::new(0));
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, CHUNK).map({
        let (bar, sent) = (bar.clone(), Arc::clone(&sent));
        move |chunk| {
            if let Ok(chunk) = &chunk {
                bar.inc(chunk.len() as u64);
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            chunk
        }
    });
    let outcome = storage
        .upload_stream(&key, &options, Box::pin(stream))
        .await;
    bar.finish_and_clear();
    let outcome = outcome?;
    let size = sent.load(Ordering::Relaxed);
    report_put(&key, size, outcome.etag, &content_type, as_json)
}

/// Prints what `put` stored.
fn report_put(
    key: &ObjectKey,
    size: u64,
    etag: Option<String>,
    content_type: &str,
    as_json: bool,
) -> Result<(), Failure> {
    if as_json {
        print_json(
            &json!({"key": key.as_str(), "size": size, "etag": etag, "content_type": content_type}),
        );
    } else {
        println!("uploaded {size} bytes to {key} ({content_type})");
    }
    Ok(())
}

/// `get <KEY> [FILE|-] [--no-sync]`: streams to stdout, or to a file that appears only
/// when complete.
pub(crate) async fn get(
    storage: &Storage,
    key_text: &str,
    target: Option<&str>,
    durability: Durability,
    as_json: bool,
) -> Result<(), Failure> {
    let key = found_key(storage, key_text)?;
    if target == Some("-") {
        // The bytes go to stdout; whether they were checked goes to stderr, as for a file.
        return download::to_stdout(storage, &key, |info| {
            let integrity = integrity(storage, info);
            if integrity != "verified" {
                eprintln!(
                    "maskstore: {key} is not verified: {}",
                    integrity_reason(integrity, info)
                );
            }
        })
        .await;
    }
    if target.is_none() && key.is_foreign() {
        return Err(Failure {
            message: format!(
                "{key} is not a valid key (written by another tool), so its last segment is no \
                 safe file name; give one: maskstore get KEY FILE"
            ),
            code: 2,
        });
    }
    let path = PathBuf::from(
        target
            .map(str::to_string)
            .unwrap_or_else(|| key.file_name().to_string()),
    );
    let info = download::to_file(storage, &key, &path, durability).await?;
    let size = info.size;
    let integrity = integrity(storage, &info);
    if as_json {
        print_json(&json!({
            "key": key.as_str(),
            "size": size,
            "file": path.display().to_string(),
            "integrity": integrity,
            "checked_by": info.checked_by(),
        }));
    } else {
        println!("downloaded {size} bytes from {key} to {}", path.display());
        if integrity != "verified" {
            eprintln!(
                "maskstore: {key} was not verified: {}",
                integrity_reason(integrity, &info)
            );
        }
    }
    Ok(())
}

/// The checksum `stat` shows: maskstore's own, else the provider's and where it is kept
/// (a composite one marked as such), else why there is none.
fn checksum_shown(info: &ObjectInfo) -> String {
    if let Some(checksum) = &info.checksum {
        return shown(checksum).into_owned();
    }
    if let Some(why) = &info.unreadable_checksum {
        return format!("- (corrupt: {})", shown(why));
    }
    match &info.native_checksum {
        Some(native) if native.composite => format!(
            "{} ({}, composite: a checksum of the parts' checksums, which cannot check the \
             bytes; unverified)",
            shown(&native.value),
            shown(&native.source)
        ),
        Some(native) => format!("{} ({})", shown(&native.value), shown(&native.source)),
        None => "- (unverified)".to_string(),
    }
}

/// How a whole read of `info` was checked: `verified`, `unverified` (no checksum stored)
/// or `not-verified` (`--no-verify`).
pub(crate) fn integrity(storage: &Storage, info: &ObjectInfo) -> &'static str {
    match (info.verifying_checksum(), storage.verifies_reads()) {
        (None, _) => "unverified",
        (Some(_), false) => "not-verified",
        (Some(_), true) => "verified",
    }
}

fn integrity_reason(integrity: &str, info: &ObjectInfo) -> String {
    match (integrity, &info.native_checksum) {
        ("unverified", Some(native)) if native.composite => format!(
            "its only checksum, {}, is composite (a checksum of a multipart upload's parts' \
             checksums), which cannot check the bytes",
            shown(&native.source)
        ),
        ("unverified", _) => {
            "it has no stored checksum (written by another tool, or with checksum = none)"
                .to_string()
        }
        _ => "--no-verify was given".to_string(),
    }
}

/// The keys to delete listed before asking for confirmation.
pub(crate) const SHOWN_DELETES: usize = 20;

/// Keys one delete request names at most (S3's DeleteObjects limit).
pub(crate) const DELETE_CHUNK: usize = 1000;

/// `rm <KEY>...` or `rm --prefix PREFIX`: lists what it will delete and asks first.
pub(crate) async fn rm(
    storage: &Storage,
    keys: &[String],
    prefix: Option<&str>,
    yes: bool,
    as_json: bool,
) -> Result<(), Failure> {
    let Some(prefix) = prefix else {
        let targets: Vec<ObjectKey> = keys
            .iter()
            .map(|k| found_key(storage, k))
            .collect::<Result<_, _>>()?;
        let mut deleted = Spill::new().map_err(|e| spill_failure(storage.prefix().as_str(), e))?;
        for chunk in targets.chunks(DELETE_CHUNK) {
            delete_chunk(storage, chunk, &mut deleted, storage.prefix().as_str()).await?;
        }
        return report_deleted(deleted, as_json, storage.prefix().as_str());
    };
    let fail = |e| spill_failure(prefix, e);
    let mut listed = listed_names(storage, prefix).await?;
    let count = listed.len();
    let mut names = listed.read().map_err(fail)?;
    let mut first = Vec::new();
    for name in names.by_ref().take(SHOWN_DELETES) {
        first.push(ObjectKey::found(name.map_err(fail)?).map_err(Error::from)?);
    }
    if count > 0 && !yes {
        confirm_deletion(count, &first)?;
    }
    let mut deleted = Spill::new().map_err(fail)?;
    let mut chunk = first;
    for name in names {
        if chunk.len() == DELETE_CHUNK {
            delete_chunk(storage, &chunk, &mut deleted, prefix).await?;
            chunk.clear();
        }
        chunk.push(ObjectKey::found(name.map_err(fail)?).map_err(Error::from)?);
    }
    delete_chunk(storage, &chunk, &mut deleted, prefix).await?;
    report_deleted(deleted, as_json, prefix)
}

/// The names listed under `prefix`, sorted on disk (memory holds a bounded run whatever
/// the number of objects), each once: a server repeating a page lists some twice, and
/// `rm --prefix` shows, counts and deletes objects, not listing entries.
async fn listed_names(storage: &Storage, prefix: &str) -> Result<Spill<String>, Failure> {
    let fail = |e| spill_failure(prefix, e);
    let mut sorter = Sorter::new(RUN_LEN);
    let mut items = storage.list(Some(prefix))?;
    while let Some(item) = items.next().await {
        sorter
            .push(Name(item?.key.as_str().to_string()))
            .map_err(fail)?;
    }
    let mut names = Spill::new().map_err(fail)?;
    let mut last: Option<String> = None;
    for name in sorter.sorted().map_err(fail)? {
        let Name(name) = name.map_err(fail)?;
        if last.as_ref() != Some(&name) {
            names.push(&name).map_err(fail)?;
            last = Some(name);
        }
    }
    Ok(names)
}

/// A name listed for `rm --prefix`, sorted on disk.
#[derive(serde::Serialize, serde::Deserialize)]
struct Name(String);

impl Keyed for Name {
    fn sort_key(&self) -> &str {
        &self.0
    }
}

fn spill_failure(prefix: &str, e: std::io::Error) -> Failure {
    Failure::from(maskstore::sync::spill_error(prefix, e))
}

/// Deletes `chunk` and notes its keys as deleted.
async fn delete_chunk(
    storage: &Storage,
    chunk: &[ObjectKey],
    deleted: &mut Spill<String>,
    prefix: &str,
) -> Result<(), Failure> {
    if chunk.is_empty() {
        return Ok(());
    }
    storage.delete_many(chunk).await?;
    for key in chunk {
        deleted
            .push(&key.as_str().to_string())
            .map_err(|e| spill_failure(prefix, e))?;
    }
    Ok(())
}

/// Prints the deleted keys (escaped) and how many had foreign names, or JSON.
fn report_deleted(mut deleted: Spill<String>, as_json: bool, prefix: &str) -> Result<(), Failure> {
    let fail = |e| spill_failure(prefix, e);
    if deleted.is_empty() && !as_json {
        println!("nothing to delete");
        return Ok(());
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut foreign = 0;
    if as_json {
        write!(out, "{{\n  \"deleted\": [").map_err(fail)?;
    }
    for (i, name) in deleted.read().map_err(fail)?.enumerate() {
        let key = ObjectKey::found(name.map_err(fail)?).map_err(Error::from)?;
        foreign += usize::from(key.is_foreign());
        if as_json {
            let separator = if i == 0 { "" } else { "," };
            write!(out, "{separator}\n    {}", json!(key.as_str())).map_err(fail)?;
        } else {
            writeln!(out, "deleted {key}").map_err(fail)?;
        }
    }
    if as_json {
        let close = if deleted.is_empty() { "]" } else { "\n  ]" };
        writeln!(out, "{close}\n}}").map_err(fail)?;
    } else if foreign > 0 {
        writeln!(
            out,
            "{foreign} of the {} deleted objects had names that are not valid keys (shown escaped)",
            deleted.len()
        )
        .map_err(fail)?;
    }
    out.flush().map_err(fail)
}

/// Lists the first keys about to be deleted on stderr and asks; without a terminal to
/// ask on, refuses (the caller passes `--yes` to skip this).
pub(crate) fn confirm_deletion(count: u64, first: &[ObjectKey]) -> Result<(), Failure> {
    eprintln!("about to delete {count} objects:");
    for k in first.iter().take(SHOWN_DELETES) {
        eprintln!("  {k}");
    }
    if count > first.len() as u64 {
        eprintln!("  … and {} more", count - first.len() as u64);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure {
            message: format!("refusing to delete {count} objects without confirmation; pass --yes"),
            code: 2,
        });
    }
    eprint!("delete them? [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Failure {
            message: format!("cannot read the answer: {e}"),
            code: 2,
        })?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        return Err(Failure {
            message: "nothing deleted".to_string(),
            code: 1,
        });
    }
    Ok(())
}

/// `cp` and `mv` within the store.
pub(crate) async fn copy_or_move(
    storage: &Storage,
    from: &str,
    to: &str,
    moving: bool,
    as_json: bool,
) -> Result<(), Failure> {
    // The source may be a foreign name (to give it a valid key); the destination may not.
    let (from, to) = (found_key(storage, from)?, key(storage, to)?);
    if moving {
        storage.rename(&from, &to).await?;
    } else {
        storage.copy(&from, &to).await?;
    }
    let verb = if moving { "moved" } else { "copied" };
    if as_json {
        print_json(&json!({"from": from.as_str(), "to": to.as_str(), "action": verb}));
    } else {
        println!("{verb} {from} to {to}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures::stream::BoxStream;
    use maskstore_backends::layers::Intercept;
    use object_store::ObjectMeta;
    use object_store::path::Path as StorePath;

    use super::*;

    /// Lists everything twice (a server repeating its pages).
    #[derive(Debug, Clone)]
    struct Twice;

    impl Intercept for Twice {
        fn name(&self) -> &str {
            "twice"
        }

        fn list(
            &self,
            _prefix: &StorePath,
            list: BoxStream<'static, object_store::Result<ObjectMeta>>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            futures::stream::once(async move {
                let once: Vec<ObjectMeta> = list.map(Result::unwrap).collect().await;
                let twice = once
                    .iter()
                    .chain(&once)
                    .cloned()
                    .map(Ok)
                    .collect::<Vec<_>>();
                futures::stream::iter(twice)
            })
            .flatten()
            .boxed()
        }
    }

    /// What `rm --prefix` counts, shows and deletes: each object once, in key order.
    #[tokio::test]
    async fn rm_prefix_counts_a_name_listed_twice_once() {
        let storage = Storage::memory();
        for name in ["d/b.png", "d/a.png"] {
            storage.put(&storage.key(name).unwrap(), "m").await.unwrap();
        }
        let storage = storage.layer(Twice);
        let Ok(mut names) = listed_names(&storage, "mask/d").await else {
            panic!("the listing failed");
        };
        assert_eq!(names.len(), 2);
        let listed: Vec<String> = names.read().unwrap().map(Result::unwrap).collect();
        assert_eq!(listed, ["mask/d/a.png", "mask/d/b.png"]);
    }
}
