//! The contract every maskstore backend follows, as runnable cases.
//!
//! Each case is a plain `pub async fn(Storage)` named for the behaviour it pins. The
//! [`run`] runner gives every case its own random prefix below the storage's, runs the
//! cases a few at a time, removes what each case wrote, and reports one line per backend:
//! `contract[<backend>]: N passed, M failed`, then each failure with its message.
//!
//! # The rules
//!
//! Where backends differ natively, maskstore picks one rule and the backend layer makes
//! every backend follow it; no case is skipped for a backend.
//!
//! - **Keys.** A key is 1..=1024 bytes of UTF-8, `/`-separated, with no empty, `.` or `..`
//!   segment, no control character and no backslash. Spaces, `+`, `%`, `=`, `&`, `#`, `?`,
//!   unicode and emoji round-trip and list exactly. Invalid keys, and keys outside the
//!   storage's prefix, are refused with `InvalidKey` before any I/O.
//! - **Delete of a missing key** succeeds (S3's rule; object_store's local store errs).
//! - **Content type and metadata** round-trip on every backend, local disk included. An
//!   object stored without a content type reads back as `application/octet-stream`.
//!   Metadata names are lowercase ASCII letters, digits and `-`; values printable ASCII
//!   without outer spaces.
//! - **Etags** change on every overwrite, on every backend (local included).
//! - **Folders are not objects.** A get or head of a prefix of existing keys is
//!   `NotFound`; deleting it deletes nothing. Listings never show a folder that no longer
//!   holds objects.
//! - **Listing order.** `list` streams every key exactly once in unspecified order (S3
//!   sorts, SeaweedFS and local disk do not; sorting would mean buffering millions of
//!   keys). `list_with_delimiter` returns objects and folders sorted by key bytes.
//! - **Prefixes are whole segments**: `a/b` lists `a/b/…`, never `a/bc`.
//! - **Ranges.** A bounded range whose end passes the object's end is cut at the end; a
//!   range starting at or past the end is `InvalidRange`; an empty or reversed range is
//!   `InvalidRange` before any I/O; a suffix longer than the object returns all of it.
//!   The reported size is always the whole object's.
//! - **Conditional reads.** `if_none_match` with the current etag → `NotModified`;
//!   `if_match` with another etag → `Precondition`.
//! - **Conditional writes.** Create-only on an existing key → `AlreadyExists`, content
//!   unchanged; if-match with a stale etag, or on a missing key → `Precondition`. Of many
//!   concurrent create-only puts of one key exactly one succeeds.
//! - **Copy and rename** carry content type and metadata; from a missing source →
//!   `NotFound`; the `_if_absent` forms → `AlreadyExists` when the destination exists,
//!   leaving both objects as they were.
//! - **Streaming uploads** are invisible until finished; an aborted upload leaves nothing.
//! - **Atomic replacement.** Concurrent writers and readers of one key: every read returns
//!   one complete written version, never a mix.
//! - **Signed URLs** work with a plain HTTP client holding no credentials, on every
//!   backend (S3: SigV4 presigned; Azure: SAS; GCS: V4; local and memory: the gateway's
//!   HMAC URLs). A TTL above
//!   the maximum, or a key outside the prefix, is refused when the URL is issued. An
//!   expired URL, a URL with its signature, key or expiry changed, a URL used with another
//!   method, and a PUT with another content type than the bound one all get 403. These
//!   last need a server that verifies signatures ([`Capabilities::verifies_signatures`];
//!   moto does not).
//!
//! # Capability exemptions, per backend line
//!
//! | line | exempted cases | why (the emulator or service) | the real service |
//! |---|---|---|---|
//! | `s3-moto` | `signed_url_checks::*`, `signed_url_bound_checks::*` | moto accepts any signature | S3 refuses tampered, expired and misused URLs (403) |
//! | `azure-azurite` | `signed_url_bound::*`, `signed_url_bound_checks::*` | an Azure SAS signs the blob, permission and expiry, never a request header, so a PUT URL cannot bind `Content-Type` or length; maskstore refuses such a binding at issue | the same on Azure: SAS fields are documented as fixed; the uploaded type is whatever the client sends |
//! | `gcs-fake` | `signed_url_checks::*`, `signed_url_bound_checks::*` | fake-gcs-server 1.54 (the PyPI wrapper's binary) checks no signature of a V4 URL, so tampered, expired, misused or wrongly typed uploads pass | GCS refuses them (403; a size outside `x-goog-content-length-range`: 400) |
//! - **Symlinks** under a local root are never followed (reads: not found; writes:
//!   refused; a listing fails with an error naming the symlink). Pinned by the local provider's own tests, since the
//!   suite cannot plant a symlink in a backend it does not know.
//! - **Durability.** The local provider fsyncs file and folder before acknowledging a
//!   write (`object_storage.fsync = true`, the default).
//!
//! # Running it on a new backend or wrapper
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use maskstore_backends::Storage;
//!
//! // Any object_store, wrapped or new, gets maskstore's API and must pass the contract;
//! // its signed URLs are served by a gateway on a loopback port.
//! let store = Arc::new(object_store::memory::InMemory::new());
//! let storage = Storage::from_object_store(store, "my-wrapper", "mask/".parse().unwrap());
//! let served = maskstore_testkit::serve_storage(storage).await;
//! let report = maskstore_testkit::contract::run(&served).await;
//! println!("{report}");
//! assert!(report.failed.is_empty(), "{report}");
//! # });
//! ```

mod cases;
mod counting;

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use maskstore_backends::Storage;

pub use cases::*;
pub use counting::Counting;

/// How long one case may take before it counts as failed.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(180);
/// Cases running at once.
pub const PARALLEL_CASES: usize = 6;

/// What a backend can be asked for. Only what a backend truly cannot do may be switched
/// off; everything where backends merely differ is fixed in the backend layer instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The server verifies signatures of signed URLs (moto accepts any signature, so
    /// tampered or expired URLs cannot be refused there).
    pub verifies_signatures: bool,
    /// A PUT URL can bind the upload's content type and length (an Azure SAS signs no
    /// request header: Azure's signed URLs cannot, on Azurite as on Azure itself; see
    /// `maskstore_backends::Capabilities::binds_upload_headers`).
    pub binds_upload_headers: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            verifies_signatures: true,
            binds_upload_headers: true,
        }
    }
}

/// What a case needs of the backend beyond the contract everyone follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: every backend runs it.
    Nothing,
    /// Signature verification ([`Capabilities::verifies_signatures`]).
    SignatureChecks,
    /// PUT URLs bound to a content type or length ([`Capabilities::binds_upload_headers`]).
    BoundUploads,
    /// Both: a server that refuses uploads breaking a binding.
    BoundUploadChecks,
}

impl Need {
    fn met_by(self, capabilities: &Capabilities) -> bool {
        match self {
            Need::Nothing => true,
            Need::SignatureChecks => capabilities.verifies_signatures,
            Need::BoundUploads => capabilities.binds_upload_headers,
            Need::BoundUploadChecks => {
                capabilities.verifies_signatures && capabilities.binds_upload_headers
            }
        }
    }
}

/// One case of the suite.
#[derive(Clone, Copy)]
pub struct Case {
    /// The operation group (`put`, `list`, …).
    pub group: &'static str,
    /// The behaviour it pins, as a function name.
    pub name: &'static str,
    /// What it needs of the backend.
    pub needs: Need,
    /// Runs it against a storage scoped to the case's own prefix.
    pub run: fn(Storage) -> BoxFuture<'static, ()>,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{}", self.group, self.name)
    }
}

/// The outcome of running the suite on one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The backend name, as [`Storage::backend`] gives it (or as relabelled).
    pub backend: String,
    /// Names of the cases that passed.
    pub passed: Vec<String>,
    /// Names of the cases that failed, with their messages.
    pub failed: Vec<(String, String)>,
    /// Names of the cases the backend's capabilities rule out.
    pub not_asked: Vec<String>,
}

impl Report {
    /// The same report under another backend name (e.g. `s3-seaweedfs`).
    pub fn labelled(mut self, backend: &str) -> Report {
        self.backend = backend.to_string();
        self
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "contract[{}]: {} passed, {} failed",
            self.backend,
            self.passed.len(),
            self.failed.len()
        )?;
        for (name, message) in &self.failed {
            write!(f, "\n  FAILED {name}: {message}")?;
        }
        if !self.not_asked.is_empty() {
            write!(
                f,
                "\n  not asked of this backend (capabilities): {}",
                self.not_asked.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Runs every case against `storage`, each below its own random prefix, and cleans up.
/// The storage must be able to sign URLs its server verifies (for local and memory:
/// served by a gateway, see [`crate::served`]).
pub async fn run(storage: &Storage) -> Report {
    run_with(storage, Capabilities::default()).await
}

/// [`run`] for a backend with fewer capabilities.
pub async fn run_with(storage: &Storage, capabilities: Capabilities) -> Report {
    run_cases(storage, &all(), capabilities).await
}

/// Runs the given cases against `storage` (see [`run`]).
pub async fn run_cases(storage: &Storage, cases: &[Case], capabilities: Capabilities) -> Report {
    let (cases, ruled_out): (Vec<Case>, Vec<Case>) = cases
        .iter()
        .partition(|case| case.needs.met_by(&capabilities));
    let not_asked = ruled_out
        .iter()
        .map(|case| format!("{}::{}", case.group, case.name))
        .collect();
    let run_id = format!("contract-{:016x}", rand::random::<u64>());
    let root = match storage.scoped(&run_id) {
        Ok(root) => root,
        Err(e) => {
            return Report {
                backend: storage.backend().to_string(),
                passed: Vec::new(),
                failed: vec![("(setup)".to_string(), e.to_string())],
                not_asked,
            };
        }
    };
    let outcomes: Vec<(String, Result<(), String>)> = futures::stream::iter(cases)
        .map(|case| {
            let root = root.clone();
            async move {
                let name = format!("{}::{}", case.group, case.name);
                (name, run_one(&root, case).await)
            }
        })
        .buffered(PARALLEL_CASES)
        .collect()
        .await;
    let mut report = Report {
        backend: storage.backend().to_string(),
        passed: Vec::new(),
        failed: Vec::new(),
        not_asked,
    };
    for (name, outcome) in outcomes {
        match outcome {
            Ok(()) => report.passed.push(name),
            Err(message) => report.failed.push((name, message)),
        }
    }
    match leftovers(&root).await {
        Ok(0) => {}
        Ok(n) => report.failed.push((
            "(cleanup)".to_string(),
            format!("{n} objects left under {} after the run", root.prefix()),
        )),
        Err(e) => report.failed.push(("(cleanup)".to_string(), e)),
    }
    report
}

async fn run_one(root: &Storage, case: Case) -> Result<(), String> {
    let storage = root
        .scoped(&format!("{}-{}", case.group, case.name))
        .map_err(|e| e.to_string())?;
    let mut task = tokio::spawn((case.run)(storage.clone()));
    let outcome = match tokio::time::timeout(CASE_TIMEOUT, &mut task).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(join)) if join.is_panic() => Err(panic_message(join.into_panic())),
        Ok(Err(join)) => Err(format!("the case was cancelled: {join}")),
        Err(_) => {
            // Stop the case (and the tasks it holds in a JoinSet) before cleaning up, so
            // none of them writes after the cleanup.
            task.abort();
            let _ = task.await;
            Err(format!("timed out after {CASE_TIMEOUT:?}"))
        }
    };
    let cleaned = clean(&storage).await;
    match (outcome, cleaned) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(format!("cleanup failed: {e}")),
        (Ok(()), Ok(())) => Ok(()),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked".to_string()
    };
    text.lines().collect::<Vec<_>>().join(" | ")
}

/// Deletes everything below the storage's prefix.
async fn clean(storage: &Storage) -> Result<(), String> {
    let keys: Vec<_> = storage
        .list(None)
        .map_err(|e| e.to_string())?
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    for chunk in keys.chunks(500) {
        storage
            .delete_many(chunk)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn leftovers(storage: &Storage) -> Result<usize, String> {
    storage
        .list(None)
        .map_err(|e| e.to_string())?
        .try_fold(0, |n, _| async move { Ok(n + 1) })
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts writers that land after a while, then fails at once, as a concurrency case
    /// whose first read is torn would.
    fn fails_with_writers_in_flight(s: Storage) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut writers = tokio::task::JoinSet::new();
            for i in 0..8 {
                let s = s.clone();
                writers.spawn(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    s.put(&s.key(&format!("late-{i}.bin")).unwrap(), "late")
                        .await
                        .unwrap();
                });
            }
            panic!("torn read");
        })
    }

    #[tokio::test]
    async fn a_failing_case_stops_its_tasks_before_the_cleanup() {
        let storage = crate::memory();
        let case = Case {
            group: "concurrency",
            name: "fails_with_writers_in_flight",
            needs: Need::Nothing,
            run: fails_with_writers_in_flight,
        };
        let report = run_cases(&storage, &[case], Capabilities::default()).await;
        assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
        assert!(
            report.failed[0].1.contains("torn read"),
            "{:?}",
            report.failed
        );
        // Had the writers kept running, they would land after the cleanup.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let left: Vec<_> = storage.list(None).unwrap().try_collect().await.unwrap();
        assert!(left.is_empty(), "writers outlived their case: {left:?}");
    }
}
