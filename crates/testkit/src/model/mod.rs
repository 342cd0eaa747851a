//! A reference model of the storage contract, and a runner that holds a backend to it.
//!
//! The model ([`Model`]) is a map from key to [`Version`]: bytes (named by a [`Body`]),
//! content type, metadata and whether maskstore's checksum must be there. A history is a
//! list of [`Op`]s; the [`Runner`] performs each on a `Storage` scoped to the history's
//! own prefix, asks the model what the answer must be ([`Model::step`]), and reports the
//! first difference as a divergence. Random histories come from the state-machine test
//! (`tests/contract/model/`); failures shrink to a minimal [`History`], saved as JSON and
//! replayed on every backend on every run.
//!
//! # What the model decides, and why
//!
//! It follows the contract's rules (see [`crate::contract`]); where S3 behaviours differ,
//! it picks one:
//!
//! - **Etags are opaque.** The model never predicts an etag's text. It learns each from
//!   the backend ([`Etags`]) and holds the backend to two rules: a stored version's etag
//!   never changes, and one etag never names two different contents (S3's etags are MD5
//!   digests, so two versions with the same bytes may share one; every write of a
//!   history has its own bytes, so this stays rare).
//! - **Conditions.** A fresh etag is the key's current one; a stale one names other bytes
//!   the key once held; a bogus one was never returned. Create-only on an existing key:
//!   `AlreadyExists`; if-match on a missing key or with a stale or bogus etag:
//!   `Precondition`. Reads check existence, then the condition, then the range (RFC 9110
//!   evaluates preconditions before `Range`); an empty or reversed bounded range is
//!   `InvalidRange` before any of these, as the contract says (refused before any I/O).
//! - **Ranges** ([`resolve`]): a bounded end past the object's end is cut there; a start
//!   at or past the end is `InvalidRange`; a suffix longer than the object is all of it.
//!   On an empty object every start is past the end (`InvalidRange`), while a suffix is
//!   "longer than the object" and returns all of it: no bytes. This is RFC 9110 §14.1.1
//!   ("When a selected representation has zero length, the only satisfiable form of
//!   range-spec is a suffix-range with a non-zero suffix-length"), and the contract case
//!   `ranges_of_an_empty_object`. A zero-byte suffix is unsatisfiable; the contract is
//!   silent on it and the generator never sends one.
//! - **Copy and rename** read the source first: a missing source is `NotFound` even where
//!   the `_if_absent` destination is taken. Onto itself the object stays the same
//!   version; the `_if_absent` forms find the key taken. The copy carries bytes, content
//!   type, metadata and checksum, as a new version.
//! - **Streaming uploads** always overwrite; nothing shows until `finish` (the runner
//!   heads the key between the last write and `finish`); `abort` leaves the key as it was.
//! - **Checksums**: every object written through `Storage` reports maskstore's checksum
//!   of its bytes on whole reads and heads. An object written through a signed PUT URL
//!   may report none (on S3, Azure and GCS the upload never passes maskstore, and the
//!   provider's own checksum verifies reads), but one it reports must be right.
//! - **Signed URLs** are fetched with a plain HTTP client: a GET of a missing key is 404;
//!   a PUT sends (and binds, where the backend's URLs can) the content type
//!   [`SIGNED_TYPE`], which reads back.
//! - **Listings**: `list` gives every key below a folder once (order unspecified, so the
//!   runner sorts); `list_with_delimiter` gives objects and folders sorted by bytes, and
//!   no folder that holds no object.
//! - **Concurrent groups** ([`together`]): see that module for the outcomes accepted.
//!
//! A backend's run may declare documented engine departures ([`Known`]): a test
//! engine's answer that departs from the provider it stands for and that maskstore
//! should not repair. They are counted apart from divergences; nothing else is excused.

mod etags;
mod history;
mod known;
mod op;
mod run;
mod state;
pub mod together;

pub use etags::{BOGUS_ETAG, Etags};
pub use history::History;
pub use known::{Hits, Known};
pub use op::{Body, EtagRef, Mode, Op, Pos, RangeSpec, ReadCond};
pub use run::{Divergence, Runner};
pub use state::{
    DEFAULT_TYPE, Expected, META_NAME, Model, Resolved, SIGNED_TYPE, Version, resolve,
};

use maskstore_backends::Storage;

/// What a history did: operations performed, documented engine departures met.
#[derive(Debug, Clone, Default)]
pub struct Ran {
    /// Operations performed (a group counts each of its own).
    pub ops: usize,
    /// Documented engine departures met.
    pub hits: Hits,
}

/// Runs `ops` on `storage` below a fresh random prefix and removes what they wrote;
/// `on_op` is called before each operation (the state machine counts them as seen).
/// Answers matching a departure in `known` are counted, not failed. Returns what ran,
/// or the first divergence, naming the operation (0-based) that diverged.
pub async fn run_history(
    storage: &Storage,
    part_size: usize,
    known: &[Known],
    ops: &[Op],
    mut on_op: impl FnMut(),
) -> Result<Ran, Divergence> {
    let scoped = storage
        .scoped(&format!("model-{:016x}", rand::random::<u64>()))
        .map_err(|e| format!("(setup) {e}"))?;
    let mut runner = Runner::new(scoped, part_size, known);
    let mut performed = 0;
    let mut outcome = Ok(());
    for (i, op) in ops.iter().enumerate() {
        on_op();
        if let Err(e) = runner.run(op).await {
            outcome = Err(format!("operation {i} ({op:?}): {e}"));
            break;
        }
        performed += op.count();
    }
    let cleaned = runner.clean().await;
    outcome?;
    cleaned.map_err(|e| format!("(cleanup) {e}"))?;
    Ok(Ran {
        ops: performed,
        hits: runner.hits().clone(),
    })
}
