//! `maskstore sync`: copies every object under a prefix from one configured store to
//! another, skipping what is already there, so a second run copies nothing and an
//! interrupted run resumes.
//!
//! An object counts as already there when the destination has the same size and either
//! records the source's etag (`maskstore-source-etag` metadata, written by sync) or, between
//! two S3 stores, has the same etag.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use maskstore::{ConfigSource, Error, ObjectInfo, Provider, Storage, WriteOptions};
use serde_json::json;

use super::output::{Failure, print_json};

/// Metadata naming the source version a synced object was copied from.
pub(crate) const SOURCE_ETAG: &str = "maskstore-source-etag";

/// The arguments of `maskstore sync`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The source: an environment name (config/<ENV>.toml) or a config file.
    #[arg(long, value_name = "ENV|FILE")]
    from: String,
    /// The destination: an environment name or a config file.
    #[arg(long, value_name = "ENV|FILE")]
    to: String,
    /// Only objects under this full key prefix (default: the source's configured prefix).
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// Say what would be copied and deleted, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also delete destination objects under the prefix that the source lacks.
    #[arg(long)]
    delete: bool,
}

#[derive(Debug, Default)]
struct Summary {
    copied: u64,
    skipped: u64,
    failed: u64,
    deleted: u64,
    bytes: u64,
}

fn side(
    config_dir: &Path,
    spec: &str,
    flag: &str,
) -> Result<(maskstore::Config, Storage), Failure> {
    let as_file = spec.ends_with(".toml") || Path::new(spec).is_file();
    let source = ConfigSource {
        dir: Some(config_dir.to_path_buf()),
        file: as_file.then(|| PathBuf::from(spec)),
        environment: (!as_file).then(|| spec.to_string()),
    };
    let config = maskstore::load_config(&source).map_err(|e| Failure {
        message: format!("{flag} {spec}: {e}"),
        code: 2,
    })?;
    let storage = Storage::connect(&config).map_err(|e| Failure {
        message: format!("{flag} {spec}: {e}"),
        code: Failure::from(e).code,
    })?;
    Ok((config, storage))
}

/// Where a store's objects live, to refuse syncing a store onto itself.
fn identity(config: &maskstore::Config) -> String {
    let os = &config.object_storage;
    match os.provider {
        Provider::S3 => format!(
            "s3 {} {} {}",
            os.endpoint.as_deref().unwrap_or("aws"),
            os.bucket_name.as_deref().unwrap_or(""),
            os.region.as_deref().unwrap_or("")
        ),
        Provider::Local => format!(
            "local {}",
            std::fs::canonicalize(&os.root)
                .unwrap_or_else(|_| os.root.clone())
                .display()
        ),
        Provider::Memory => "memory".to_string(),
    }
}

pub(crate) async fn run(config_dir: &Path, args: &Args, as_json: bool) -> Result<(), Failure> {
    let (from_config, from) = side(config_dir, &args.from, "--from")?;
    let (to_config, to) = side(config_dir, &args.to, "--to")?;
    if identity(&from_config) == identity(&to_config) {
        return Err(Failure {
            message: format!(
                "--from {} and --to {} name the same store ({}); APP_OBJECT_STORAGE__* variables apply to both sides, so unset them or use config files",
                args.from,
                args.to,
                identity(&from_config)
            ),
            code: 2,
        });
    }
    // Etags made from the content alone are comparable across the two stores.
    let comparable_etags = from.capabilities().content_etags && to.capabilities().content_etags;
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| from.prefix().to_string());

    let bar = if std::io::stderr().is_terminal() && !as_json {
        ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                .expect("a valid template"),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut summary = Summary::default();
    let mut seen = HashSet::new();
    let mut failures = Vec::new();
    let mut listing = from.list(Some(&prefix))?;
    while let Some(item) = listing.next().await {
        let source = item?;
        seen.insert(source.key.to_string());
        match sync_one(&from, &to, &source, comparable_etags, args.dry_run).await {
            Ok(Action::Copied(bytes)) => {
                summary.copied += 1;
                summary.bytes += bytes;
                bar.inc(bytes);
                if args.dry_run && !as_json {
                    println!("would copy {} ({bytes} bytes)", source.key);
                }
            }
            Ok(Action::Skipped) => summary.skipped += 1,
            Err(e) => {
                summary.failed += 1;
                failures.push(format!("{}: {e}", source.key));
            }
        }
        bar.set_message(format!(
            "copied {} skipped {} failed {}",
            summary.copied, summary.skipped, summary.failed
        ));
    }
    if args.delete {
        let mut stale = Vec::new();
        let mut listing = to.list(Some(&prefix))?;
        while let Some(item) = listing.next().await {
            let key = item?.key;
            if !seen.contains(key.as_str()) {
                stale.push(key);
            }
        }
        if args.dry_run {
            if !as_json {
                for key in &stale {
                    println!("would delete {key}");
                }
            }
        } else {
            for chunk in stale.chunks(1000) {
                to.delete_many(chunk).await?;
            }
        }
        summary.deleted = stale.len() as u64;
    }
    bar.finish_and_clear();
    for failure in &failures {
        eprintln!("failed: {failure}");
    }
    let would = if args.dry_run { "would have " } else { "" };
    if as_json {
        print_json(&json!({
            "dry_run": args.dry_run,
            "copied": summary.copied,
            "skipped": summary.skipped,
            "failed": summary.failed,
            "deleted": summary.deleted,
            "bytes": summary.bytes,
            "failures": failures,
        }));
    } else {
        println!(
            "sync {} → {}: {would}copied {}, skipped {}, failed {}, {would}deleted {}, {} bytes",
            args.from,
            args.to,
            summary.copied,
            summary.skipped,
            summary.failed,
            summary.deleted,
            summary.bytes
        );
    }
    if summary.failed > 0 {
        return Err(Failure {
            message: format!(
                "{} objects failed to sync; run it again to retry them",
                summary.failed
            ),
            code: 1,
        });
    }
    Ok(())
}

enum Action {
    Copied(u64),
    Skipped,
}

async fn sync_one(
    from: &Storage,
    to: &Storage,
    source: &ObjectInfo,
    comparable_etags: bool,
    dry_run: bool,
) -> Result<Action, Error> {
    match to.head(&source.key).await {
        Ok(existing) if existing.size == source.size => {
            let recorded = existing.metadata.get(SOURCE_ETAG);
            let same = match &source.etag {
                Some(etag) => {
                    recorded == Some(etag)
                        || (comparable_etags && existing.etag.as_ref() == Some(etag))
                }
                None => false,
            };
            if same {
                return Ok(Action::Skipped);
            }
        }
        Ok(_) | Err(Error::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    if dry_run {
        return Ok(Action::Copied(source.size));
    }
    let object = from.get_stream(&source.key).await?;
    let mut options = WriteOptions {
        content_type: object.info.content_type.clone(),
        metadata: object.info.metadata.clone(),
        ..Default::default()
    };
    if let Some(etag) = &object.info.etag {
        options
            .metadata
            .insert(SOURCE_ETAG.to_string(), etag.clone());
    }
    let size = object.info.size;
    to.upload_stream(&source.key, &options, object.stream)
        .await?;
    Ok(Action::Copied(size))
}
