//! What `sync` shows: the dry run's plan, the report lines in key order, the summary, or
//! one JSON document — each list read from disk as it is written out.

use std::io::{self, Write};

use maskstore::sync;
use maskstore::sync::spill::Sorter;
use serde_json::json;

use super::Args;
use super::copies::Outcome;
use super::plan::{DiskPlan, Note};
use crate::cli::output::Failure;

/// Prints the dry run's `would copy` and `would delete` lines, in key order.
pub(super) fn print_dry_run(plan: &mut DiskPlan, prefix: &str) -> Result<(), Failure> {
    let spill_failure = |e| Failure::from(sync::spill_error(prefix, e));
    let mut out = io::BufWriter::new(io::stdout().lock());
    for copy in plan.copies.read().map_err(spill_failure)? {
        let copy = copy.map_err(spill_failure)?;
        let key = maskstore::ObjectKey::found(copy.key).map_err(maskstore::Error::from)?;
        writeln!(out, "would copy {key} ({} bytes)", copy.size).map_err(spill_failure)?;
    }
    for name in plan.deletes.read().map_err(spill_failure)? {
        let name = name.map_err(spill_failure)?;
        let key = maskstore::ObjectKey::found(name).map_err(maskstore::Error::from)?;
        writeln!(out, "would delete {key}").map_err(spill_failure)?;
    }
    out.flush().map_err(spill_failure)
}

/// A finished run, to report.
pub(super) struct Report<'a> {
    pub(super) args: &'a Args,
    pub(super) plan: DiskPlan,
    pub(super) outcome: Outcome,
    /// Whether the deletes were made (no copy failed).
    pub(super) deleted: bool,
    pub(super) prefix: &'a str,
}

impl Report<'_> {
    fn deleted(&self) -> u64 {
        if self.deleted {
            self.plan.deletes.len()
        } else {
            0
        }
    }

    /// The report lines on stderr, then the summary on stdout.
    pub(super) fn print_text(mut self) -> Result<(), Failure> {
        let failed = self.plan.failures.len();
        let not_carried = self.outcome.not_carried.len();
        let foreign = self.plan.foreign.len();
        let (failures, left_out, carried) = self.take_notes();
        let prefix = self.prefix;
        let fail = move |e| Failure::from(sync::spill_error(prefix, e));
        let mut err = io::BufWriter::new(io::stderr().lock());
        let lines = [("failed", failures), ("copied without metadata", left_out)];
        for (label, notes) in lines {
            for note in notes.sorted().map_err(fail)? {
                writeln!(err, "{label}: {}", note.map_err(fail)?.line).map_err(fail)?;
            }
        }
        for line in self.plan.foreign.read().map_err(fail)? {
            writeln!(err, "foreign name: {}", line.map_err(fail)?).map_err(fail)?;
        }
        for note in carried.sorted().map_err(fail)? {
            writeln!(err, "not carried: {}", note.map_err(fail)?.line).map_err(fail)?;
        }
        err.flush().map_err(fail)?;
        drop(err);
        let (args, outcome) = (self.args, &self.outcome);
        let would = if args.dry_run { "would have " } else { "" };
        println!(
            "sync {} → {}: {would}copied {}, skipped {}, failed {failed}, {would}deleted {}, {} bytes",
            args.from,
            args.to,
            outcome.copied,
            self.plan.skipped,
            self.deleted(),
            outcome.bytes,
        );
        if foreign > 0 {
            println!(
                "{foreign} source objects have names that are not valid keys (listed above, escaped); {not_carried} could not be carried to --to {}",
                args.to
            );
        }
        Ok(())
    }

    /// The failures, metadata left out and names not carried, each to be read sorted.
    fn take_notes(&mut self) -> (Sorter<Note>, Sorter<Note>, Sorter<Note>) {
        let run = maskstore::sync::spill::RUN_LEN;
        (
            std::mem::replace(&mut self.plan.failures, Sorter::new(run)),
            std::mem::replace(&mut self.outcome.left_out, Sorter::new(run)),
            std::mem::replace(&mut self.outcome.not_carried, Sorter::new(run)),
        )
    }

    /// One JSON document on stdout, its lists written as they are read.
    pub(super) fn print_json(mut self) -> Result<(), Failure> {
        let (failures, left_out, carried) = self.take_notes();
        let counts = json!({
            "dry_run": self.args.dry_run,
            "copied": self.outcome.copied,
            "skipped": self.plan.skipped,
            "failed": failures.len(),
            "deleted": self.deleted(),
            "bytes": self.outcome.bytes,
        });
        let prefix = self.prefix;
        let fail = move |e| Failure::from(sync::spill_error(prefix, e));
        let mut out = io::BufWriter::new(io::stdout().lock());
        let counts = serde_json::to_string_pretty(&counts).expect("JSON values serialize");
        // The counts' object without its closing brace, then the lists.
        write!(out, "{},", counts.trim_end_matches('}').trim_end()).map_err(&fail)?;
        // Failures and metadata left out are said on stderr too, as without --json.
        let lines = failures.sorted().map_err(&fail)?.map(|n| {
            n.map(|n| {
                eprintln!("failed: {}", n.line);
                json!(n.line)
            })
        });
        list(&mut out, "failures", lines, false).map_err(&fail)?;
        let entries = left_out.sorted().map_err(&fail)?.map(|n| {
            n.map(|n| {
                eprintln!("copied without metadata: {}", n.line);
                json!({"key": n.key, "name": n.name, "reason": n.reason})
            })
        });
        list(&mut out, "metadata_left_out", entries, false).map_err(&fail)?;
        let foreign = self
            .plan
            .foreign
            .read()
            .map_err(&fail)?
            .map(|l| l.map(|l| json!(l)));
        list(&mut out, "foreign", foreign, false).map_err(&fail)?;
        let carried = carried
            .sorted()
            .map_err(&fail)?
            .map(|n| n.map(|n| json!(n.line)));
        list(&mut out, "not_carried", carried, false).map_err(&fail)?;
        let copies = self
            .plan
            .copies
            .read()
            .map_err(&fail)?
            .map(|c| c.map(|c| json!(c.key)));
        list(&mut out, "to_copy", copies, false).map_err(&fail)?;
        let deletes = self
            .plan
            .deletes
            .read()
            .map_err(&fail)?
            .map(|k| k.map(|k| json!(k)));
        list(&mut out, "to_delete", deletes, true).map_err(&fail)?;
        writeln!(out, "\n}}").map_err(&fail)?;
        out.flush().map_err(&fail)
    }
}

/// Writes `"name": [ … ]` from `items` as they are read, each item on its own line.
fn list(
    out: &mut impl Write,
    name: &str,
    items: impl Iterator<Item = io::Result<serde_json::Value>>,
    last: bool,
) -> io::Result<()> {
    write!(out, "\n  {}: [", json!(name))?;
    let mut any = false;
    for item in items {
        let separator = if any { "," } else { "" };
        write!(out, "{separator}\n    {}", item?)?;
        any = true;
    }
    let close = if any { "\n  ]" } else { "]" };
    write!(out, "{close}{}", if last { "" } else { "," })
}
