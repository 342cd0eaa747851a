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
use maskstore::maskstore_core::config::MAX_TRANSFERS;
use maskstore::{ConfigSource, ObjectKey, Storage};

use super::objects::{DELETE_CHUNK, confirm_deletion};
use super::output::Failure;
use plan::DiskPlan;

mod copies;
mod plan;
mod report;

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
    /// Copies in flight at once, 1 to 256 (default: the --to config's
    /// object_storage.transfers, 32 unless set).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_TRANSFERS))]
    transfers: Option<u64>,
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
    let transfers = args.transfers.unwrap_or(to_config.object_storage.transfers) as usize;
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

    let mut plan = DiskPlan::decide(&from, &to, &prefix, args.delete).await?;
    if args.dry_run && !as_json {
        report::print_dry_run(&mut plan, &prefix)?;
    }
    if !plan.deletes.is_empty() {
        refuse_unsafe_deletes(&plan, args, &prefix)?;
        if !args.dry_run && !args.yes {
            confirm_deletion(plan.deletes.len(), &plan.first_deletes)?;
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
    let outcome = if args.dry_run {
        copies::Outcome::planned(&plan)
    } else {
        copies::run(&from, &to, &mut plan, transfers, &bar, &prefix).await?
    };
    // A run where anything failed deletes nothing (as rsync after a read error on the
    // sending side): an object moved in the source whose new copy failed would otherwise
    // lose its last good copy, the destination's old key.
    let deleting = plan.failures.is_empty();
    if !args.dry_run && deleting {
        delete_planned(&to, &mut plan, &prefix).await?;
    }
    bar.finish_and_clear();
    let (failed, to_delete) = (plan.failures.len(), plan.deletes.len());
    let corrupt = outcome.corrupt;
    let report = report::Report {
        args,
        plan,
        outcome,
        deleted: deleting,
        prefix: &prefix,
    };
    if as_json {
        report.print_json()?;
    } else {
        report.print_text()?;
    }
    if failed > 0 {
        let kept = if to_delete == 0 {
            String::new()
        } else {
            format!(", so nothing was deleted ({to_delete} to delete once every copy succeeds)")
        };
        // Only corrupt sources: exit 6, as `get` and `verify` do; a retry cannot help.
        if corrupt == failed {
            return Err(Failure {
                message: format!(
                    "{failed} objects failed to sync because they are corrupt in the source{kept}; \
                     restore them from a backup or a replica (`maskstore verify` lists them)"
                ),
                code: 6,
            });
        }
        return Err(Failure {
            message: format!("{failed} objects failed to sync{kept}; run it again to retry them"),
            code: 1,
        });
    }
    Ok(())
}

/// Deletes the plan's deletes, read from disk a thousand at a time.
async fn delete_planned(to: &Storage, plan: &mut DiskPlan, prefix: &str) -> Result<(), Failure> {
    let spill_failure = |e| Failure::from(maskstore::sync::spill_error(prefix, e));
    let mut chunk = Vec::with_capacity(DELETE_CHUNK);
    for name in plan.deletes.read().map_err(spill_failure)? {
        let name = name.map_err(spill_failure)?;
        chunk.push(ObjectKey::found(name).map_err(maskstore::Error::from)?);
        if chunk.len() == DELETE_CHUNK {
            to.delete_many(&chunk).await?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        to.delete_many(&chunk).await?;
    }
    Ok(())
}

/// Refuses, even with --yes, deletes that look like a wrong source rather than a wish:
/// an empty source listing, or more than --max-delete of the destination.
fn refuse_unsafe_deletes(plan: &DiskPlan, args: &Args, prefix: &str) -> Result<(), Failure> {
    if args.force {
        return Ok(());
    }
    let n = plan.deletes.len();
    let nothing = if args.dry_run {
        "a run would refuse"
    } else {
        "nothing was copied or deleted"
    };
    if plan.totals.source_objects == 0 {
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
                plan.totals.destination_objects,
                args.to,
                share * 100.0,
                args.max_delete
            ),
            code: 1,
        });
    }
    Ok(())
}
