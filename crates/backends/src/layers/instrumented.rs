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
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    GetResult, GetResultPayload, MultipartUpload, ObjectMeta, PutPayload, PutResult, Result,
    UploadPart,
};
use tracing::Instrument;

use super::{Call, Intercept, Operation};
use crate::local::ReadChecksum;
use crate::monitor::{Monitor, Outcome};
use crate::providers::Backend;

/// Metric: operations by outcome.
pub const OPERATIONS_TOTAL: &str = "maskstore_operations_total";
/// Metric: operation latency in seconds.
pub const OPERATION_DURATION: &str = "maskstore_operation_duration_seconds";
/// Metric: bytes moved.
pub const BYTES_TOTAL: &str = "maskstore_bytes_total";

/// What the layer reports on: every store operation, and the signing of URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Measured {
    /// A store operation.
    Store(Operation),
    /// Signing a URL (no store call).
    Sign,
}

impl Measured {
    fn index(self) -> usize {
        match self {
            Measured::Store(operation) => operation as usize,
            Measured::Sign => Operation::ALL.len(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Measured::Store(operation) => operation.as_str(),
            Measured::Sign => "sign",
        }
    }
}

/// The metric names of [`Measured`], indexed by [`Measured::index`].
const MEASURED: [Measured; 9] = [
    Measured::Store(Operation::Get),
    Measured::Store(Operation::Head),
    Measured::Store(Operation::Put),
    Measured::Store(Operation::Upload),
    Measured::Store(Operation::Delete),
    Measured::Store(Operation::List),
    Measured::Store(Operation::Copy),
    Measured::Store(Operation::Rename),
    Measured::Sign,
];
const OUTCOMES: [Outcome; 3] = [Outcome::Success, Outcome::ClientError, Outcome::ServerError];

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
            operations: MEASURED
                .iter()
                .map(|m| {
                    OUTCOMES.map(|outcome| {
                        metrics::counter!(OPERATIONS_TOTAL, "backend" => b.clone(), "operation" => m.as_str(), "outcome" => outcome.as_str())
                    })
                })
                .collect(),
            durations: MEASURED
                .iter()
                .map(|m| metrics::histogram!(OPERATION_DURATION, "backend" => b.clone(), "operation" => m.as_str()))
                .collect(),
            bytes_in: MEASURED
                .iter()
                .map(|m| metrics::counter!(BYTES_TOTAL, "backend" => b.clone(), "operation" => m.as_str(), "direction" => "in"))
                .collect(),
            bytes_out: MEASURED
                .iter()
                .map(|m| metrics::counter!(BYTES_TOTAL, "backend" => b.clone(), "operation" => m.as_str(), "direction" => "out"))
                .collect(),
        }
    }
}

/// Records what one operation did.
#[derive(Clone)]
pub(crate) struct Recorder {
    backend: Backend,
    monitor: Arc<Monitor>,
    handles: Arc<std::sync::OnceLock<Handles>>,
}

impl Recorder {
    pub(crate) fn new(backend: Backend, monitor: Arc<Monitor>) -> Recorder {
        Recorder {
            backend,
            monitor,
            handles: Arc::new(std::sync::OnceLock::new()),
        }
    }

    fn handles(&self) -> &Handles {
        self.handles.get_or_init(|| Handles::new(&self.backend))
    }

    pub(crate) fn finish(&self, measured: Measured, outcome: Outcome, started: Instant) {
        let i = measured.index();
        let handles = self.handles();
        handles.operations[i][outcome as usize].increment(1);
        // One clock read serves both the duration and the alarm window.
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(started);
        handles.durations[i].record(elapsed.as_secs_f64());
        self.monitor.record_observed(outcome, now);
        tracing::debug!(
            operation = measured.as_str(),
            outcome = outcome.as_str(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "storage operation"
        );
    }

    /// Counts `n` bytes moved by `operation`: read from the backend by gets, written to
    /// it by everything else.
    pub(crate) fn bytes(&self, operation: Operation, n: u64) {
        if n > 0 {
            let handles = self.handles();
            let i = operation as usize;
            match operation {
                Operation::Get => handles.bytes_in[i].increment(n),
                Operation::Head
                | Operation::Put
                | Operation::Upload
                | Operation::Delete
                | Operation::List
                | Operation::Copy
                | Operation::Rename => handles.bytes_out[i].increment(n),
            }
        }
    }

    /// The outcome of a store result, by the one classification of errors.
    fn outcome_of<T>(&self, result: &Result<T>, location: &Path) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::of_kind(crate::Error::kind_of_store(
                &self.backend,
                location.as_ref(),
                e,
            )),
        }
    }
}

/// The instrumentation layer: every storage has it, outside all other layers.
#[derive(Debug, Clone)]
pub(crate) struct Instrumentation {
    recorder: Recorder,
    /// Whether the store below answers a read with its bytes already in hand (the memory
    /// provider's buffer, no layer between that could cut or replace its stream): they are
    /// counted when answered, as a local file's range is.
    answers_whole: bool,
}

impl Instrumentation {
    /// Instrumentation recording into `recorder`, over a store that answers reads with
    /// their bytes in hand or not ([`Instrumentation::answers_whole`]).
    pub(crate) fn new(recorder: Recorder, answers_whole: bool) -> Self {
        Instrumentation {
            recorder,
            answers_whole,
        }
    }

    /// Runs `run` in a span, and records its outcome and duration.
    async fn timed<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let operation = call.operation;
        let span = tracing::info_span!("storage", backend = %self.recorder.backend, operation = operation.as_str(), key = %call.location);
        let result = run.instrument(span).await;
        // A started upload is recorded when it completes or aborts; only a failure to
        // start is recorded here.
        if operation != Operation::Upload || result.is_err() {
            let outcome = self.recorder.outcome_of(&result, call.location);
            self.recorder
                .finish(Measured::Store(operation), outcome, started);
        }
        result
    }
}

impl Intercept for Instrumentation {
    fn name(&self) -> &str {
        "instrumented"
    }

    fn call<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        self.timed(call, run).boxed()
    }

    fn get<'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<GetResult>>,
    ) -> BoxFuture<'a, Result<GetResult>> {
        // One future for the call and its answer (`call` would box the timing apart).
        async move {
            let result = self.timed(call, run).await?;
            // A foreign store's range may end before it starts: the facade refuses it.
            let length = result.range.end.saturating_sub(result.range.start);
            let in_hand = self.answers_whole
                || result
                    .extensions
                    .get::<ReadChecksum>()
                    .is_some_and(|read| read.data.len() as u64 == length);
            if in_hand {
                // An answer whose bytes the provider already holds in one buffer (the
                // memory provider's, a verified read of the local provider): counted now,
                // as a file's range is, and passed on without a stream wrapped around it.
                self.recorder.bytes(Operation::Get, length);
                return Ok(result);
            }
            let recorder = self.recorder.clone();
            let GetResult {
                payload,
                meta,
                range,
                attributes,
                extensions,
            } = result;
            let payload = match payload {
                // A local file is read by the caller in one go or in chunks; count its range
                // now rather than lose the fast path by turning it into a stream.
                file @ GetResultPayload::File(..) => {
                    recorder.bytes(Operation::Get, range.end.saturating_sub(range.start));
                    file
                }
                GetResultPayload::Stream(stream) => GetResultPayload::Stream(
                    stream
                        .inspect(move |chunk| {
                            if let Ok(chunk) = chunk {
                                recorder.bytes(Operation::Get, chunk.len() as u64);
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
        .boxed()
    }

    fn moved(&self, call: Call<'_>, bytes: u64) {
        self.recorder.bytes(call.operation, bytes);
    }

    fn upload(
        &self,
        location: &Path,
        upload: Box<dyn MultipartUpload>,
    ) -> Box<dyn MultipartUpload> {
        Box::new(InstrumentedUpload {
            inner: upload,
            recorder: self.recorder.clone(),
            location: location.clone(),
            started: Instant::now(),
            finished: false,
        })
    }

    fn list(
        &self,
        prefix: &Path,
        list: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let guard = ListGuard {
            recorder: self.recorder.clone(),
            prefix: prefix.clone(),
            started: Instant::now(),
            outcome: None,
        };
        list.scan(guard, |guard, item| {
            if item.is_err() {
                let outcome = guard.recorder.outcome_of(&item, &guard.prefix);
                guard.outcome.get_or_insert(outcome);
            }
            futures::future::ready(Some(item))
        })
        .boxed()
    }

    fn delete(
        &self,
        locations: BoxStream<'static, Result<Path>>,
        delete: &dyn Fn(BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let recorder = self.recorder.clone();
        let started = Instant::now();
        delete(locations)
            .inspect(move |result| {
                let outcome = recorder.outcome_of(result, &Path::default());
                recorder.finish(Measured::Store(Operation::Delete), outcome, started)
            })
            .boxed()
    }
}

/// Records a listing once, when its stream is dropped (finished or abandoned).
struct ListGuard {
    recorder: Recorder,
    prefix: Path,
    started: Instant,
    outcome: Option<Outcome>,
}

impl Drop for ListGuard {
    fn drop(&mut self) {
        self.recorder.finish(
            Measured::Store(Operation::List),
            self.outcome.unwrap_or(Outcome::Success),
            self.started,
        );
    }
}

/// A streaming upload that counts its bytes and records its outcome on complete or abort,
/// or when dropped without either (a client that went away: its own doing).
#[derive(Debug)]
struct InstrumentedUpload {
    inner: Box<dyn MultipartUpload>,
    recorder: Recorder,
    location: Path,
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

impl Drop for InstrumentedUpload {
    fn drop(&mut self) {
        if !self.finished {
            self.recorder.finish(
                Measured::Store(Operation::Upload),
                Outcome::ClientError,
                self.started,
            );
        }
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
                    recorder.bytes(Operation::Upload, size);
                }
                result
            })
            .boxed()
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let result = self.inner.complete().await;
        self.finished = true;
        let outcome = self.recorder.outcome_of(&result, &self.location);
        self.recorder
            .finish(Measured::Store(Operation::Upload), outcome, self.started);
        result
    }

    async fn abort(&mut self) -> Result<()> {
        let result = self.inner.abort().await;
        if !self.finished {
            self.finished = true;
            // Aborting is the caller's choice: only a failure to abort counts against the backend.
            let outcome = self.recorder.outcome_of(&result, &self.location);
            self.recorder
                .finish(Measured::Store(Operation::Upload), outcome, self.started);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures::TryStreamExt;
    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

    use crate::{ByteRange, ReadOptions, Storage, WriteOptions};

    /// A recorder of one figure: the bytes gets read (`maskstore_bytes_total`, `in`).
    #[derive(Clone, Default)]
    struct BytesIn(Arc<AtomicU64>);

    impl metrics::CounterFn for BytesIn {
        fn increment(&self, n: u64) {
            self.0.fetch_add(n, Ordering::Relaxed);
        }

        fn absolute(&self, n: u64) {
            self.0.store(n, Ordering::Relaxed);
        }
    }

    impl metrics::Recorder for BytesIn {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let reads = key.name() == super::BYTES_TOTAL
                && key
                    .labels()
                    .any(|l| l.key() == "direction" && l.value() == "in");
            if reads {
                Counter::from_arc(Arc::new(self.clone()))
            } else {
                Counter::noop()
            }
        }

        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }

        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    /// A layer that lets every call through as it is.
    #[derive(Debug, Clone)]
    struct PassThrough;

    impl crate::layers::Intercept for PassThrough {
        fn name(&self) -> &str {
            "pass-through"
        }
    }

    /// Memory answers hold their bytes: a read is passed on unwrapped and counted when
    /// answered. Under a layer (which could cut or replace a stream) a stream is counted as
    /// its chunks pass. Either way, each read counts exactly its bytes.
    #[test]
    fn every_memory_read_counts_exactly_the_bytes_it_answers() {
        for layered in [false, true] {
            let read = BytesIn::default();
            metrics::with_local_recorder(&read, || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let storage = match layered {
                        false => Storage::memory(),
                        true => Storage::memory().layer(PassThrough),
                    };
                    let key = storage.key("counted.bin").unwrap();
                    storage.put(&key, vec![7u8; 1000]).await.unwrap();
                    let total = || read.0.load(Ordering::Relaxed);
                    assert_eq!(storage.get(&key).await.unwrap().data.len(), 1000);
                    assert_eq!(total(), 1000);
                    let part = storage.get_range(&key, 10..110).await.unwrap();
                    assert_eq!((part.data.len(), total()), (100, 1100));
                    let range = ReadOptions {
                        range: Some(ByteRange::From(900)),
                        ..Default::default()
                    };
                    assert_eq!(storage.read(&key, range).await.unwrap().data.len(), 100);
                    assert_eq!(total(), 1200);
                    let streamed = storage.get_stream(&key).await.unwrap();
                    let answered = if layered { 1200 } else { 2200 };
                    assert_eq!(total(), answered, "layered: {layered}");
                    let chunks: Vec<bytes::Bytes> = streamed.stream.try_collect().await.unwrap();
                    assert_eq!(chunks.concat().len(), 1000);
                    assert_eq!(total(), 2200, "layered: {layered}");
                });
            });
        }
    }

    #[tokio::test]
    async fn an_upload_dropped_unfinished_is_counted_once_as_the_clients_doing() {
        let storage = Storage::memory();
        let key = storage.key("dropped.bin").unwrap();
        let mut upload = storage
            .upload(&key, &WriteOptions::default())
            .await
            .unwrap();
        // Enough for a multipart upload: a smaller one sends nothing before finish.
        upload
            .write(bytes::Bytes::from(vec![0u8; crate::UPLOAD_PART_SIZE]))
            .await
            .unwrap();
        drop(upload);
        let counts = storage.monitor().counts();
        assert_eq!((counts.client_error, counts.total()), (1, 1), "{counts:?}");
        let finished = storage
            .upload(&key, &WriteOptions::default())
            .await
            .unwrap();
        finished.finish().await.unwrap();
        assert_eq!(storage.monitor().counts().success, 1);
        assert_eq!(storage.monitor().counts().total(), 2);
    }
}
