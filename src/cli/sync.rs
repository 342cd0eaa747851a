//! `maskstore sync`: copies every object under a prefix from one configured store to
//! another, skipping what is already there, so a second run copies nothing and an
//! interrupted run resumes. How objects are compared is in [`maskstore::sync`].
//!
//! `--delete` also deletes what the destination holds and the source lacks: the plan is
//! listed and confirmed like `rm --prefix` (`--yes` without a terminal), and refused even
//! with `--yes` when the source lists nothing or the deletes exceed `--max-delete` of the
//! destination, unless `--force`; a run where any object failed deletes nothing.
//!
//! Names another tool gave objects that are not valid keys (foreign names, such as
//! `mask/a//b.png` or a name with a backslash) are synced like any other: carried under
//! their exact name when the destination can hold it, and reported by name (escaped) in
//! the summary. One the destination cannot hold (`a//b` onto local disk) is reported as
//! "not carried", which is not a failure: it does not fail the run nor hold back
//! `--delete`. `--delete` treats foreign names like any other name: a destination object
//! whose exact name the source lacks is deleted, whatever its name.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use maskstore::maskstore_backends::advice;
use maskstore::sync::{self, Plan};
use maskstore::{ConfigSource, Storage};
use serde_json::json;

use super::objects::confirm_deletion;
use super::output::{Failure, print_json};

/// The share of the destination `--delete` may remove without `--force`, by default.
pub(crate) const DEFAULT_MAX_DELETE: f64 = 0.25;

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
    /// Also delete destination objects under the prefix that the source lacks (lists them
    /// and asks first).
    #[arg(long)]
    delete: bool,
    /// With --delete: do not ask for confirmation.
    #[arg(long, requires = "delete")]
    yes: bool,
    /// With --delete: the largest share of the destination's objects a run may delete
    /// without --force (0 to 1).
    #[arg(long, value_name = "SHARE", default_value_t = DEFAULT_MAX_DELETE, value_parser = share, requires = "delete")]
    max_delete: f64,
    /// With --delete: delete even when the source lists nothing or the deletes exceed
    /// --max-delete.
    #[arg(long, requires = "delete")]
    force: bool,
}

fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!(
            "{text:?} is not a share from 0 to 1 (such as 0.25 for a quarter)"
        )),
    }
}

/// The config `spec` names: an environment (config/<ENV>.toml) or a file.
fn load(base: &ConfigSource, spec: &str, flag: &str) -> Result<maskstore::Config, Failure> {
    let as_file = spec.ends_with(".toml") || Path::new(spec).is_file();
    let source = ConfigSource {
        dir: base.dir.clone(),
        file: as_file.then(|| PathBuf::from(spec)),
        environment: (!as_file).then(|| spec.to_string()),
        env_file: base.env_file.clone(),
    };
    maskstore::load_config(&source).map_err(|e| Failure {
        message: format!("{flag} {spec}: {e}"),
        code: 2,
    })
}

/// The storage of one side.
fn connect(
    config: &maskstore::Config,
    spec: &str,
    flag: &str,
    connect: fn(&maskstore::Config) -> maskstore::Result<Storage>,
) -> Result<Storage, Failure> {
    connect(config).map_err(|e| Failure {
        message: format!("{flag} {spec}: {e}"),
        code: Failure::from(e).code,
    })
}

pub(crate) async fn run(base: &ConfigSource, args: &Args, as_json: bool) -> Result<(), Failure> {
    // The source is only read: a local root that does not exist is an error, never an
    // empty store that --delete would mirror.
    let from_config = load(base, &args.from, "--from")?;
    let to_config = load(base, &args.to, "--to")?;
    if advice::identity(&from_config) == advice::identity(&to_config) {
        return Err(Failure {
            message: format!(
                "--from {} and --to {} name the same store ({}); APP_OBJECT_STORAGE__* variables apply to both sides, so unset them or use config files",
                args.from,
                args.to,
                advice::identity(&from_config)
            ),
            code: 2,
        });
    }
    let from = connect(
        &from_config,
        &args.from,
        "--from",
        Storage::connect_existing,
    )?;
    let to = connect(&to_config, &args.to, "--to", Storage::connect)?;
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| from.prefix().to_string());

    let plan = sync::plan(&from, &to, &prefix, args.delete).await?;
    if args.dry_run && !as_json {
        for info in &plan.to_copy {
            println!("would copy {} ({} bytes)", info.key, info.size);
        }
        for key in &plan.to_delete {
            println!("would delete {key}");
        }
    }
    if !plan.to_delete.is_empty() {
        refuse_unsafe_deletes(&plan, args, &prefix)?;
        if !args.dry_run && !args.yes {
            confirm_deletion(&plan.to_delete)?;
        }
    }

    let bar = if std::io::stderr().is_terminal() && !as_json {
        ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                .expect("a valid template"),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut failures: Vec<String> = plan
        .failed
        .iter()
        .map(|(key, e)| format!("{key}: {e}"))
        .collect();
    let (mut copied, mut bytes) = (0u64, 0u64);
    // Metadata entries a destination could not hold: (key, name, why).
    let mut left_out: Vec<(String, String, String)> = Vec::new();
    let mut not_carried: Vec<String> = Vec::new();
    for info in &plan.to_copy {
        if args.dry_run {
            copied += 1;
            bytes += info.size;
            continue;
        }
        let listed = plan.replacing.binary_search(&info.key).is_ok();
        match sync::copy_planned(&from, &to, &info.key, listed).await {
            Ok(done) => {
                copied += 1;
                bytes += done.size;
                bar.inc(done.size);
                left_out.extend(
                    done.left_out
                        .into_iter()
                        .map(|left| (info.key.to_string(), left.name, left.reason)),
                );
            }
            // A foreign name the destination cannot hold: reported, never a failure.
            Err(maskstore::Error::InvalidKey { reason, .. }) if info.key.is_foreign() => {
                not_carried.push(format!(
                    "{}: {}",
                    info.key,
                    maskstore::maskstore_core::shown(&reason)
                ))
            }
            Err(e) => failures.push(format!("{}: {e}", info.key)),
        }
        bar.set_message(format!("copied {copied} failed {}", failures.len()));
    }
    // A run where anything failed deletes nothing (as rsync after a read error on the
    // sending side): an object moved in the source whose new copy failed would otherwise
    // lose its last good copy, the destination's old key.
    let deleting = failures.is_empty();
    if !args.dry_run && deleting {
        for chunk in plan.to_delete.chunks(1000) {
            to.delete_many(chunk).await?;
        }
    }
    bar.finish_and_clear();
    for failure in &failures {
        eprintln!("failed: {failure}");
    }
    for (key, name, reason) in &left_out {
        eprintln!(
            "copied without metadata: {key}: {} ({reason})",
            maskstore::maskstore_core::shown(name)
        );
    }
    let foreign = foreign_names(&plan);
    if !as_json {
        for name in &foreign {
            eprintln!("foreign name: {name}");
        }
        for name in &not_carried {
            eprintln!("not carried: {name}");
        }
    }
    let deleted = if deleting {
        plan.to_delete.len() as u64
    } else {
        0
    };
    let would = if args.dry_run { "would have " } else { "" };
    if as_json {
        print_json(&json!({
            "dry_run": args.dry_run,
            "copied": copied,
            "skipped": plan.skipped,
            "failed": failures.len(),
            "deleted": deleted,
            "bytes": bytes,
            "failures": failures,
            "metadata_left_out": left_out
                .iter()
                .map(|(key, name, reason)| json!({"key": key, "name": name, "reason": reason}))
                .collect::<Vec<_>>(),
            "foreign": foreign,
            "not_carried": not_carried,
            "to_copy": plan.to_copy.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
            "to_delete": plan.to_delete.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        }));
    } else {
        println!(
            "sync {} → {}: {would}copied {copied}, skipped {}, failed {}, {would}deleted {deleted}, {bytes} bytes",
            args.from,
            args.to,
            plan.skipped,
            failures.len(),
        );
        if !foreign.is_empty() {
            println!(
                "{} source objects have names that are not valid keys (listed above, escaped); {} could not be carried to --to {}",
                foreign.len(),
                not_carried.len(),
                args.to
            );
        }
    }
    if !failures.is_empty() {
        let kept = if plan.to_delete.is_empty() {
            String::new()
        } else {
            format!(
                ", so nothing was deleted ({} to delete once every copy succeeds)",
                plan.to_delete.len()
            )
        };
        return Err(Failure {
            message: format!(
                "{} objects failed to sync{kept}; run it again to retry them",
                failures.len()
            ),
            code: 1,
        });
    }
    Ok(())
}

/// The foreign names among the source objects the plan copies, skips or failed to
/// compare, escaped, with the rule each breaks.
fn foreign_names(plan: &Plan) -> Vec<String> {
    let mut names: Vec<String> = plan
        .foreign
        .iter()
        .map(|key| {
            let reason = key.foreign().unwrap_or_default();
            format!("{key} ({})", maskstore::maskstore_core::shown(&reason))
        })
        .collect();
    names.sort();
    names
}

/// Refuses, even with --yes, deletes that look like a wrong source rather than a wish:
/// an empty source listing, or more than --max-delete of the destination.
fn refuse_unsafe_deletes(plan: &Plan, args: &Args, prefix: &str) -> Result<(), Failure> {
    if args.force {
        return Ok(());
    }
    let n = plan.to_delete.len();
    let nothing = if args.dry_run {
        "a run would refuse"
    } else {
        "nothing was copied or deleted"
    };
    if plan.source_objects == 0 {
        return Err(Failure {
            message: format!(
                "refusing sync --delete: the source listing of --from {} under {prefix} is empty, so all {n} objects there in --to {} would be deleted ({nothing}); check --from and --prefix (a mistyped root or prefix, or a folder that is a symlink, lists nothing), or pass --force if the source really is empty",
                args.from, args.to
            ),
            code: 1,
        });
    }
    let share = plan.delete_share();
    if share > args.max_delete {
        return Err(Failure {
            message: format!(
                "refusing sync --delete: it would delete {n} of the {} objects under {prefix} in --to {} ({:.0} %, more than --max-delete {}) ({nothing}); check --from and --prefix, or pass --force (or a larger --max-delete) if that is intended",
                plan.destination_objects,
                args.to,
                share * 100.0,
                args.max_delete
            ),
            code: 1,
        });
    }
    Ok(())
}
