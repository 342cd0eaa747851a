//! The plan, streamed: both listings sorted in bounded memory ([`super::spill`]), then
//! walked side by side in key order, each source object decided as the walk reaches it
//! (a few at once, when a decision needs a HEAD), each decision handed on as made.

use std::cmp::Ordering;
use std::io;
use std::iter::Peekable;

use futures::StreamExt;
use maskstore_backends::{Error, Result, Storage};
use maskstore_core::ObjectKey;
use serde::{Deserialize, Serialize};

use super::spill::{Keyed, Sorted, Sorter};
use super::{COMPARE_CONCURRENCY, Fingerprint, ToCopy, needs_copy};

/// One listing entry, as kept while the listing is sorted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Listed {
    pub(super) key: String,
    pub(super) print: Fingerprint,
}

impl Keyed for Listed {
    fn sort_key(&self) -> &str {
        &self.key
    }
}

/// What to do with one key, decided in key order.
#[derive(Debug)]
pub enum Decision {
    /// Copy the source object (absent or different at the destination).
    Copy(ToCopy),
    /// The destination already holds it.
    Skip {
        /// Its key.
        key: ObjectKey,
    },
    /// It could not be compared.
    Failed {
        /// Its key.
        key: ObjectKey,
        /// Why.
        error: Error,
    },
    /// The destination holds it and the source lacks it (only when deletes are asked).
    Delete {
        /// Its key.
        key: ObjectKey,
    },
}

/// The counts a streamed plan knows at its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Objects the source listed (a name listed twice counts once).
    pub source_objects: u64,
    /// Objects the destination listed under the prefix (a name listed twice counts once).
    pub destination_objects: u64,
    /// The most listing entries held in memory at once (both sides): bounded by the run
    /// length, whatever the number of objects.
    pub most_held: usize,
}

/// Lists both sides under `prefix` and hands `decide` every decision in key order: the
/// source objects to copy, to skip or that failed, and (with `deletes`) the destination
/// objects the source lacks. Holds at most `run_len` listing entries per side in memory
/// (plus [`COMPARE_CONCURRENCY`] under comparison); the rest wait sorted on disk. Changes
/// nothing. A listing that fails, or a temporary file that cannot be written, ends it.
pub async fn decide_each(
    from: &Storage,
    to: &Storage,
    prefix: &str,
    deletes: bool,
    run_len: usize,
    mut decide: impl FnMut(Decision) -> Result<()>,
) -> Result<Totals> {
    let comparable_etags = from.capabilities().content_etags && to.capabilities().content_etags;
    let (sources, destination) = futures::try_join!(
        sorted_listing(from, prefix, run_len),
        sorted_listing(to, prefix, run_len)
    )?;
    let held = sources.1 + destination.1 + sources.0.held() + destination.0.held();
    let mut walk = Walk {
        sources: sources.0.peekable(),
        destination: destination.0.peekable(),
        deletes,
        names: [0, 0],
    };
    let mut decisions = futures::stream::iter(walk.by_ref())
        .map(|pair| async move {
            match pair {
                Ok(Pair::Source(source, listed)) => {
                    decide_one(from, to, source, listed, comparable_etags).await
                }
                Ok(Pair::DestinationOnly(listed)) => Ok(Decision::Delete {
                    key: key_of(&listed.key)?,
                }),
                Err(e) => Err(spill_error(prefix, e)),
            }
        })
        .buffered(COMPARE_CONCURRENCY);
    while let Some(decision) = decisions.next().await {
        decide(decision?)?;
    }
    drop(decisions);
    // The names the walk met, each once: a repeating server's entries are no objects.
    let [source_objects, destination_objects] = walk.names;
    Ok(Totals {
        source_objects,
        destination_objects,
        most_held: held,
    })
}

/// A side's listing sorted: its entries, and the most held while sorting.
async fn sorted_listing(
    storage: &Storage,
    prefix: &str,
    run_len: usize,
) -> Result<(Sorted<Listed>, usize)> {
    let mut sorter = Sorter::new(run_len);
    let mut most_held = 0;
    let mut listing = storage.list(Some(prefix))?;
    while let Some(item) = listing.next().await {
        let info = item?;
        let print = Fingerprint::of(&info);
        let listed = Listed {
            key: info.key.as_str().to_string(),
            print,
        };
        sorter.push(listed).map_err(|e| spill_error(prefix, e))?;
        most_held = most_held.max(sorter.held());
    }
    let sorted = sorter.sorted().map_err(|e| spill_error(prefix, e))?;
    Ok((sorted, most_held))
}

/// The decision for a source object the destination listed as `listed` (or not at all).
async fn decide_one(
    from: &Storage,
    to: &Storage,
    source: Listed,
    listed: Option<Listed>,
    comparable_etags: bool,
) -> Result<Decision> {
    let key = key_of(&source.key)?;
    let dest = listed.as_ref().map(|l| &l.print);
    Ok(
        match needs_copy(from, to, &key, &source.print, dest, comparable_etags).await {
            Ok(true) => Decision::Copy(ToCopy {
                replacing: listed.is_some() && key.is_foreign(),
                size: source.print.size,
                key,
            }),
            Ok(false) => Decision::Skip { key },
            Err(error) => Decision::Failed { key, error },
        },
    )
}

/// A listed name back as a key (it was one when listed).
fn key_of(name: &str) -> Result<ObjectKey> {
    Ok(ObjectKey::found(name)?)
}

/// A temporary file (a listing or plan kept on disk under `prefix`) that could not be
/// written or read, as an error that says what to do about it.
pub fn spill_error(prefix: &str, e: io::Error) -> Error {
    Error::Backend {
        backend: "temporary files".to_string(),
        key: maskstore_core::shown(prefix).into_owned(),
        source: format!(
            "cannot keep the listing in {}: {e}; free space there or point TMPDIR at a \
             folder with room (about 200 bytes per object)",
            std::env::temp_dir().display()
        )
        .into(),
    }
}

/// A source object with what the destination listed under its name, or a destination
/// object the source lacks.
enum Pair {
    Source(Listed, Option<Listed>),
    DestinationOnly(Listed),
}

/// Both sorted listings walked side by side (a merge join). A name listed twice on one
/// side (a server repeating a page) counts once.
struct Walk<S: Iterator<Item = io::Result<Listed>>, D: Iterator<Item = io::Result<Listed>>> {
    sources: Peekable<S>,
    destination: Peekable<D>,
    deletes: bool,
    /// The distinct names met on each side (source, destination).
    names: [u64; 2],
}

impl<S, D> Iterator for Walk<S, D>
where
    S: Iterator<Item = io::Result<Listed>>,
    D: Iterator<Item = io::Result<Listed>>,
{
    type Item = io::Result<Pair>;

    fn next(&mut self) -> Option<io::Result<Pair>> {
        loop {
            if let Some(e) = failed(&mut self.sources).or_else(|| failed(&mut self.destination)) {
                return Some(Err(e));
            }
            let order = match (self.sources.peek(), self.destination.peek()) {
                (Some(Ok(s)), Some(Ok(d))) => s.key.as_str().cmp(d.key.as_str()),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                _ => return None,
            };
            self.names[0] += u64::from(order.is_le());
            self.names[1] += u64::from(order.is_ge());
            let pair = match order {
                Ordering::Less => Pair::Source(take(&mut self.sources)?, None),
                Ordering::Equal => {
                    let source = take(&mut self.sources)?;
                    Pair::Source(source, take(&mut self.destination))
                }
                Ordering::Greater if self.deletes => {
                    Pair::DestinationOnly(take(&mut self.destination)?)
                }
                Ordering::Greater => {
                    take(&mut self.destination);
                    continue;
                }
            };
            return Some(Ok(pair));
        }
    }
}

/// The error a side's next entry is, taken.
fn failed<I: Iterator<Item = io::Result<Listed>>>(side: &mut Peekable<I>) -> Option<io::Error> {
    match side.peek() {
        Some(Err(_)) => side.next()?.err(),
        _ => None,
    }
}

/// The next entry of a sorted side, skipping the repeats of its name that follow it.
fn take<I: Iterator<Item = io::Result<Listed>>>(side: &mut Peekable<I>) -> Option<Listed> {
    let entry = side.next()?.ok()?;
    while let Some(Ok(next)) = side.peek() {
        if next.key != entry.key {
            break;
        }
        side.next();
    }
    Some(entry)
}
