//! The copies of a `sync` run, `transfers` at a time: the plan's copies read from disk in
//! key order and started in that order, finished in any order, their report lines sorted
//! by key again before they are shown, so the output is the same whatever order copies
//! finish in.

use futures::StreamExt;
use indicatif::ProgressBar;
use maskstore::sync::spill::{RUN_LEN, Sorter};
use maskstore::sync::{self, Copied, ToCopy};
use maskstore::{Error, ObjectKey, Storage};

use super::plan::{Copy, DiskPlan, Note};
use crate::cli::output::Failure;

/// What the copies did.
pub(super) struct Outcome {
    pub(super) copied: u64,
    pub(super) bytes: u64,
    pub(super) failed: u64,
    /// How many of the failed were corrupt sources (bytes not matching their checksum).
    pub(super) corrupt: u64,
    /// Metadata entries a destination could not hold.
    pub(super) left_out: Sorter<Note>,
    /// Foreign names the destination cannot hold: reported, never a failure.
    pub(super) not_carried: Sorter<Note>,
}

/// Runs the plan's copies, at most `transfers` at once; failures go into the plan's.
pub(super) async fn run(
    from: &Storage,
    to: &Storage,
    plan: &mut DiskPlan,
    transfers: usize,
    bar: &ProgressBar,
    prefix: &str,
) -> Result<Outcome, Failure> {
    let spill_failure = |e| Failure::from(sync::spill_error(prefix, e));
    let mut outcome = Outcome {
        copied: 0,
        bytes: 0,
        failed: 0,
        corrupt: 0,
        left_out: Sorter::new(RUN_LEN),
        not_carried: Sorter::new(RUN_LEN),
    };
    let records = plan.copies.read().map_err(spill_failure)?;
    let copies = records.map(|record| {
        let Copy {
            key,
            size,
            replacing,
        } = record.map_err(|e| sync::spill_error(prefix, e))?;
        let key = ObjectKey::found(key)?;
        Ok(ToCopy {
            key,
            size,
            replacing,
        })
    });
    let done = sync::copy_each(from, to, copies, transfers);
    let mut done = std::pin::pin!(done);
    while let Some(done) = done.next().await {
        let (key, result) = done?;
        record(&mut outcome, &mut plan.failures, key, result).map_err(spill_failure)?;
        bar.set_message(format!(
            "copied {} failed {}",
            outcome.copied, outcome.failed
        ));
        bar.set_position(outcome.bytes);
    }
    Ok(outcome)
}

/// Counts one finished copy and keeps its report lines.
fn record(
    outcome: &mut Outcome,
    failures: &mut Sorter<Note>,
    key: ObjectKey,
    result: maskstore::Result<Copied>,
) -> std::io::Result<()> {
    match result {
        Ok(done) => {
            outcome.copied += 1;
            outcome.bytes += done.size;
            for left in done.left_out {
                let shown = maskstore::maskstore_core::shown(&left.name);
                outcome.left_out.push(Note {
                    key: key.as_str().to_string(),
                    line: format!("{key}: {shown} ({})", left.reason),
                    name: left.name,
                    reason: left.reason,
                })?;
            }
            Ok(())
        }
        // A foreign name the destination cannot hold: reported, never a failure.
        Err(Error::InvalidKey { reason, .. }) if key.is_foreign() => {
            let shown = maskstore::maskstore_core::shown(&reason);
            let line = format!("{key}: {shown}");
            outcome.not_carried.push(Note::line(&key, line))
        }
        Err(e) => {
            outcome.failed += 1;
            if matches!(e, Error::Corrupt { .. }) {
                outcome.corrupt += 1;
            }
            failures.push(Note::line(&key, format!("{key}: {e}")))
        }
    }
}

impl Outcome {
    /// A dry run's outcome: the plan's copies, none made.
    pub(super) fn planned(plan: &DiskPlan) -> Outcome {
        Outcome {
            copied: plan.copies.len(),
            bytes: plan.copy_bytes,
            failed: 0,
            corrupt: 0,
            left_out: Sorter::new(RUN_LEN),
            not_carried: Sorter::new(RUN_LEN),
        }
    }
}
