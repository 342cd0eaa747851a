//! The instrumentation layer around every backend: per operation, request counts by
//! outcome, bytes in and out, and a latency histogram, through the `metrics` facade (the
//! application plugs in its own recorder; `maskstore serve` uses Prometheus), plus a
//! tracing span per operation and the outcomes the alarms are computed from.
//!
//! Metrics, each labelled `backend` and `operation` (get, put, head, delete, list, copy,
//! rename, upload, sign):
//! - `maskstore_operations_total` (+ `outcome`: success, client_error, server_error)
//! - `maskstore_operation_duration_seconds` (histogram)
//! - `maskstore_bytes_total` (+ `direction`: in = read from the backend, out = written)

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    UploadPart,
};
use tracing::Instrument;

use crate::monitor::{Monitor, Outcome};

/// Metric: operations by outcome.
pub const OPERATIONS_TOTAL: &str = "maskstore_operations_total";
/// Metric: operation latency in seconds.
pub const OPERATION_DURATION: &str = "maskstore_operation_duration_seconds";
/// Metric: bytes moved.
pub const BYTES_TOTAL: &str = "maskstore_bytes_total";

/// The operations the layer reports, in the order of [`Handles`]' arrays.
const OPERATIONS: [&str; 9] = [
    "get", "put", "head", "delete", "list", "copy", "rename", "upload", "sign",
];
const OUTCOMES: [Outcome; 3] = [Outcome::Success, Outcome::ClientError, Outcome::ServerError];

fn index_of(operation: &str) -> usize {
    OPERATIONS
        .iter()
        .position(|o| *o == operation)
        .expect("operations are named from OPERATIONS")
}

/// The metric handles of one backend, registered once so that an operation costs no
/// allocation or lookup (they bind to the recorder installed when first used: install the
/// application's recorder before the first storage operation).
struct Handles {
    operations: Vec<[metrics::Counter; 3]>,
    durations: Vec<metrics::Histogram>,
    bytes_in: Vec<metrics::Counter>,
    bytes_out: Vec<metrics::Counter>,
}

impl Handles {
    fn new(backend: &str) -> Handles {
        let b = backend.to_string();
        Handles {
            operations: OPERATIONS
                .iter()
                .map(|op| {
                    OUTCOMES.map(|outcome| {
                        metrics::counter!(OPERATIONS_TOTAL, "backend" => b.clone(), "operation" => *op, "outcome" => outcome.as_str())
                    })
                })
                .collect(),
            durations: OPERATIONS
                .iter()
                .map(|op| metrics::histogram!(OPERATION_DURATION, "backend" => b.clone(), "operation" => *op))
                .collect(),
            bytes_in: OPERATIONS
                .iter()
                .map(|op| metrics::counter!(BYTES_TOTAL, "backend" => b.clone(), "operation" => *op, "direction" => "in"))
                .collect(),
            bytes_out: OPERATIONS
                .iter()
                .map(|op| metrics::counter!(BYTES_TOTAL, "backend" => b.clone(), "operation" => *op, "direction" => "out"))
                .collect(),
        }
    }
}

/// Records what one operation did.
#[derive(Clone)]
pub(crate) struct Recorder {
    backend: Arc<str>,
    monitor: Arc<Monitor>,
    handles: Arc<std::sync::OnceLock<Handles>>,
}

impl Recorder {
    pub(crate) fn new(backend: Arc<str>, monitor: Arc<Monitor>) -> Recorder {
        Recorder {
            backend,
            monitor,
            handles: Arc::new(std::sync::OnceLock::new()),
        }
    }

    fn handles(&self) -> &Handles {
        self.handles.get_or_init(|| Handles::new(&self.backend))
    }

    pub(crate) fn finish(&self, operation: &'static str, outcome: Outcome, started: Instant) {
        let i = index_of(operation);
        let handles = self.handles();
        handles.operations[i][outcome as usize].increment(1);
        // One clock read serves both the duration and the alarm window.
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(started);
        handles.durations[i].record(elapsed.as_secs_f64());
        self.monitor.record_at(outcome, now);
        tracing::debug!(
            operation,
            outcome = outcome.as_str(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "storage operation"
        );
    }

    fn bytes(&self, operation: &'static str, direction: &'static str, n: u64) {
        if n > 0 {
            let i = index_of(operation);
            let handles = self.handles();
            match direction {
                "in" => handles.bytes_in[i].increment(n),
                _ => handles.bytes_out[i].increment(n),
            }
        }
    }
}

/// An object_store wrapper that instruments every call.
pub struct Instrumented {
    inner: Arc<dyn ObjectStore>,
    backend: Arc<str>,
    recorder: Recorder,
}

impl std::fmt::Debug for Instrumented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrumented")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Instrumented {
    /// Wraps `inner`, labelling its metrics `backend` and feeding `monitor`.
    pub fn new(inner: Arc<dyn ObjectStore>, backend: &str, monitor: Arc<Monitor>) -> Self {
        let backend: Arc<str> = backend.into();
        Instrumented {
            inner,
            recorder: Recorder::new(Arc::clone(&backend), monitor),
            backend,
        }
    }

    /// The recorder, shared with the storage's own measurements (signing).
    pub(crate) fn shared_recorder(&self) -> Recorder {
        self.recorder.clone()
    }

    fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }

    async fn observe<T>(
        &self,
        operation: &'static str,
        location: &Path,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let span =
            tracing::info_span!("storage", backend = %self.backend, operation, key = %location);
        let result = call.instrument(span).await;
        self.recorder()
            .finish(operation, Outcome::of(&result), started);
        result
    }
}

impl std::fmt::Display for Instrumented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Instrumented {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let size = payload.content_length() as u64;
        let result = self
            .observe(
                "put",
                location,
                self.inner.put_opts(location, payload, opts),
            )
            .await;
        if result.is_ok() {
            self.recorder().bytes("put", "out", size);
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let started = Instant::now();
        let recorder = self.recorder();
        match self.inner.put_multipart_opts(location, opts).await {
            Ok(inner) => Ok(Box::new(InstrumentedUpload {
                inner,
                recorder,
                started,
                finished: false,
            })),
            Err(e) => {
                recorder.finish("upload", Outcome::of_error(&e), started);
                Err(e)
            }
        }
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let operation = if options.head { "head" } else { "get" };
        let result = self
            .observe(operation, location, self.inner.get_opts(location, options))
            .await?;
        if operation == "head" {
            return Ok(result);
        }
        let recorder = self.recorder();
        let GetResult {
            payload,
            meta,
            range,
            attributes,
            extensions,
        } = result;
        let payload = match payload {
            // A local file is read by the caller in one go or in chunks; count its range now
            // rather than lose the fast path by turning it into a stream.
            file @ GetResultPayload::File(..) => {
                recorder.bytes("get", "in", range.end - range.start);
                file
            }
            GetResultPayload::Stream(stream) => GetResultPayload::Stream(
                stream
                    .inspect(move |chunk| {
                        if let Ok(chunk) = chunk {
                            recorder.bytes("get", "in", chunk.len() as u64);
                        }
                    })
                    .boxed(),
            ),
        };
        Ok(GetResult {
            payload,
            meta,
            range,
            attributes,
            extensions,
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let recorder = self.recorder();
        let started = Instant::now();
        self.inner
            .delete_stream(locations)
            .inspect(move |result| recorder.finish("delete", Outcome::of(result), started))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let guard = ListGuard {
            recorder: self.recorder(),
            started: Instant::now(),
            outcome: None,
        };
        self.inner
            .list(prefix)
            .scan(guard, |guard, item| {
                if let Err(e) = &item {
                    guard.outcome.get_or_insert(Outcome::of_error(e));
                }
                futures::future::ready(Some(item))
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let location = prefix.cloned().unwrap_or_default();
        self.observe("list", &location, self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.observe("copy", from, self.inner.copy_opts(from, to, options))
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.observe("rename", from, self.inner.rename_opts(from, to, options))
            .await
    }
}

/// Records a listing once, when its stream is dropped (finished or abandoned).
struct ListGuard {
    recorder: Recorder,
    started: Instant,
    outcome: Option<Outcome>,
}

impl Drop for ListGuard {
    fn drop(&mut self) {
        self.recorder.finish(
            "list",
            self.outcome.unwrap_or(Outcome::Success),
            self.started,
        );
    }
}

/// A streaming upload that counts its bytes and records its outcome on complete or abort.
#[derive(Debug)]
struct InstrumentedUpload {
    inner: Box<dyn MultipartUpload>,
    recorder: Recorder,
    started: Instant,
    finished: bool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("backend", &self.backend)
            .finish()
    }
}

#[async_trait]
impl MultipartUpload for InstrumentedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let size = data.content_length() as u64;
        let recorder = self.recorder.clone();
        self.inner
            .put_part(data)
            .map(move |result| {
                if result.is_ok() {
                    recorder.bytes("upload", "out", size);
                }
                result
            })
            .boxed()
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let result = self.inner.complete().await;
        self.finished = true;
        self.recorder
            .finish("upload", Outcome::of(&result), self.started);
        result
    }

    async fn abort(&mut self) -> Result<()> {
        let result = self.inner.abort().await;
        if !self.finished {
            self.finished = true;
            // Aborting is the caller's choice: only a failure to abort counts against the backend.
            self.recorder
                .finish("upload", Outcome::of(&result), self.started);
        }
        result
    }
}
