//! The plan of a `sync` run, kept on disk as it is decided ([`sync::decide_each`]): the
//! copies and deletes in key order, counted, with the first deletes kept to show before
//! asking; failures and found names as report lines. Memory holds none of the lists.

use maskstore::ObjectKey;
use maskstore::Storage;
use maskstore::sync::spill::{Keyed, RUN_LEN, Sorter, Spill};
use maskstore::sync::{self, Decision, ToCopy, Totals};
use serde::{Deserialize, Serialize};

use crate::cli::objects::SHOWN_DELETES;
use crate::cli::output::Failure;

/// A copy the plan makes.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Copy {
    pub(super) key: String,
    pub(super) size: u64,
    pub(super) replacing: bool,
}

/// A line of the report about one key: a failure, a metadata entry left out, a name not
/// carried. `line` is what the terminal shows (escaped), `name` and `reason` what JSON
/// gives for a metadata entry.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Note {
    pub(super) key: String,
    pub(super) line: String,
    pub(super) name: String,
    pub(super) reason: String,
}

impl Note {
    pub(super) fn line(key: &ObjectKey, line: String) -> Note {
        Note {
            key: key.as_str().to_string(),
            line,
            name: String::new(),
            reason: String::new(),
        }
    }
}

impl Keyed for Note {
    fn sort_key(&self) -> &str {
        &self.key
    }
}

/// A sync's plan on disk.
pub(super) struct DiskPlan {
    pub(super) totals: Totals,
    pub(super) copies: Spill<Copy>,
    pub(super) copy_bytes: u64,
    pub(super) skipped: u64,
    /// Keys to delete, sorted (raw names).
    pub(super) deletes: Spill<String>,
    /// The first [`SHOWN_DELETES`] deletes.
    pub(super) first_deletes: Vec<ObjectKey>,
    /// Foreign source names with the rule each breaks, escaped, sorted.
    pub(super) foreign: Spill<String>,
    /// Failures, to which the copies add theirs; sorted by key when read.
    pub(super) failures: Sorter<Note>,
}

impl DiskPlan {
    /// Lists both sides and decides, keeping the plan on disk.
    pub(super) async fn decide(
        from: &Storage,
        to: &Storage,
        prefix: &str,
        deletes: bool,
    ) -> Result<DiskPlan, Failure> {
        let spill_failure = |e| Failure::from(sync::spill_error(prefix, e));
        let mut plan = DiskPlan {
            totals: Totals::default(),
            copies: Spill::new().map_err(spill_failure)?,
            copy_bytes: 0,
            skipped: 0,
            deletes: Spill::new().map_err(spill_failure)?,
            first_deletes: Vec::new(),
            foreign: Spill::new().map_err(spill_failure)?,
            failures: Sorter::new(RUN_LEN),
        };
        let totals = sync::decide_each(from, to, prefix, deletes, RUN_LEN, |decision| {
            plan.add(decision).map_err(|e| sync::spill_error(prefix, e))
        })
        .await?;
        plan.totals = totals;
        Ok(plan)
    }

    fn add(&mut self, decision: Decision) -> std::io::Result<()> {
        if let Decision::Copy(ToCopy { key, .. })
        | Decision::Skip { key }
        | Decision::Failed { key, .. } = &decision
            && key.is_foreign()
        {
            let reason = key.foreign().unwrap_or_default();
            let shown = maskstore::maskstore_core::shown(&reason);
            self.foreign.push(&format!("{key} ({shown})"))?;
        }
        match decision {
            Decision::Copy(ToCopy {
                key,
                size,
                replacing,
            }) => {
                self.copy_bytes += size;
                self.copies.push(&Copy {
                    key: key.as_str().to_string(),
                    size,
                    replacing,
                })
            }
            Decision::Skip { .. } => {
                self.skipped += 1;
                Ok(())
            }
            Decision::Failed { key, error } => self
                .failures
                .push(Note::line(&key, format!("{key}: {error}"))),
            Decision::Delete { key } => {
                self.deletes.push(&key.as_str().to_string())?;
                if self.first_deletes.len() < SHOWN_DELETES {
                    self.first_deletes.push(key);
                }
                Ok(())
            }
        }
    }

    /// The share of the destination the deletes are.
    pub(super) fn delete_share(&self) -> f64 {
        sync::delete_share(self.deletes.len(), self.totals.destination_objects)
    }
}
