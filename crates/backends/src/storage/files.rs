//! Objects to and from files: the kernel copies them on the local provider.

use std::time::Instant;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use maskstore_core::ObjectKey;
use object_store::{GetResultPayload, PutMode};

use super::{Storage, UPLOAD_PART_SIZE};
use crate::checksum::Verifier;
use crate::layers::Operation;
use crate::layers::instrumented::Measured;
use crate::local::FromFileError;
use crate::local::LocalError;
use crate::local::file_io::{copy_file_range, copy_hashing};
use crate::monitor::Outcome;
use crate::providers::Backend;
use crate::types::{ObjectInfo, PutOutcome, ReadOptions, Source, WriteMode, WriteOptions, info_of};
use crate::{Error, Result};

/// An object's data file, opened for reading by [`Storage::open_file`] beneath a local
/// provider's root (never by a path joined from its key), with what a HEAD of that very
/// file says. Only `open_file` makes one, so holding one means the file is the object's;
/// [`Storage::write_from_open_file`] stores it elsewhere and checks its stored checksum.
#[derive(Debug)]
pub struct ObjectFile {
    file: std::fs::File,
    /// Its `fstat` when opened, compared with the file's after a copy.
    stat: std::fs::Metadata,
    info: ObjectInfo,
    /// Its path, for messages only.
    shown: String,
    /// The backend it was opened from, named should its bytes not match its checksum.
    backend: Backend,
    /// Whether copies check its stored checksum (the source storage's reads verify).
    verify: bool,
}

impl ObjectFile {
    /// What a HEAD of the object says (size, etag, content type, metadata, checksum), read
    /// from the open file itself.
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }
}

impl Storage {
    /// Writes the whole object into `file` from its current position and returns what was
    /// read; `progress` is told the bytes written so far and the total as the copy advances.
    ///
    /// A local object is copied by the kernel, file to file, as `cp` does; any other
    /// backend's body streams to a writer thread, so reading and writing overlap and at
    /// most four chunks are held in memory. The file is not synced: that is the caller's
    /// choice.
    ///
    /// The stored checksum is verified (a local object is then read a second time, from
    /// the page cache, by a hashing thread beside the kernel's copy): on [`Error::Corrupt`]
    /// the file holds damaged bytes and must be discarded.
    pub async fn read_to_file(
        &self,
        key: &ObjectKey,
        file: &std::fs::File,
        progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<ObjectInfo> {
        let destination = |source: std::io::Error| Error::Destination {
            key: key.to_string(),
            source,
        };
        let result = self.get_result(key, ReadOptions::default()).await?;
        let info = self.described(key, &result, true).await?;
        let mut verifier = self.verifier(&info, true)?;
        let dest = file.try_clone().map_err(destination)?;
        let expected = result.range.end - result.range.start;
        let written = match result.payload {
            // Verifying needs the bytes: the kernel copies the file while a second thread
            // reads and hashes the same range, all in one blocking task.
            GetResultPayload::File(source, _) if verifier.is_some() => {
                let range = result.range.clone();
                let mut hashing = verifier.take();
                let copied = tokio::task::spawn_blocking(move || {
                    let mut inspect = |chunk: &[u8]| {
                        if let Some(verifier) = &mut hashing {
                            verifier.update(chunk);
                        }
                    };
                    let copied = copy_hashing(&source, range, &dest, &mut inspect, &progress);
                    (copied, hashing)
                })
                .await;
                match copied {
                    Ok((Ok(Err(read)), _)) => {
                        let read = LocalError::io("(a local read)", read);
                        return Err(self.err(key)(read.into()));
                    }
                    Ok((copied, hashing)) => {
                        verifier = hashing;
                        Ok(copied.map(|c| c.unwrap_or_default()))
                    }
                    Err(e) => Err(e),
                }
            }
            GetResultPayload::File(source, _) => {
                let range = result.range.clone();
                tokio::task::spawn_blocking(move || {
                    copy_file_range(&source, range, &dest, &progress)
                })
                .await
            }
            GetResultPayload::Stream(stream) => {
                stream_into(stream, dest, expected, &mut verifier, progress)
                    .await
                    .map_err(self.err(key))?
            }
        };
        let written = written
            .map_err(std::io::Error::other)
            .and_then(|w| w)
            .map_err(destination)?;
        if written != expected {
            return Err(Error::Backend {
                backend: self.backend.to_string(),
                key: key.to_string(),
                source: format!("the body ended after {written} of {expected} bytes").into(),
            });
        }
        if let Some(verifier) = verifier {
            verifier.finish()?;
        }
        Ok(info)
    }

    /// Stores the file at `path` as `key` (the mirror of [`Storage::read_to_file`]), with
    /// the checksum of the bytes stored, like any write; `progress` is told the bytes stored
    /// so far and the total as the copy advances.
    ///
    /// On the local provider the kernel copies the file into the object's temporary file
    /// (`copy_file_range`, as `cp` does) while the bytes landed are hashed on a second
    /// thread and their write-back started on a third; every write mode works. Elsewhere
    /// (S3, memory, or a storage with layers, which must see the write) the file is read
    /// in parts on a blocking thread, ahead of the upload, as a streaming upload: memory
    /// stays under [`UPLOAD_PART_SIZE`] × ([`UPLOAD_MAX_IN_FLIGHT`] + 2); there a
    /// conditional mode takes files of at most [`UPLOAD_PART_SIZE`] bytes (one PUT).
    ///
    /// A file that is missing, unreadable, not a regular file, or that changes size while
    /// it is stored is [`Error::Source`], and nothing is stored.
    pub async fn write_from_file(
        &self,
        key: &ObjectKey,
        path: &std::path::Path,
        options: &WriteOptions,
        progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<PutOutcome> {
        // A bad key or option is refused before the file is opened.
        self.path(key)?;
        options.validate()?;
        let source_error = |source: std::io::Error| Error::Source {
            key: key.to_string(),
            path: path.display().to_string(),
            source,
        };
        let opened = {
            let path = path.to_path_buf();
            tokio::task::spawn_blocking(
                move || -> std::io::Result<(std::fs::File, std::fs::Metadata)> {
                    // Non-blocking, so a FIFO (or a device) put at the path, even after the
                    // caller looked at it, is refused below instead of waiting for a writer.
                    use std::os::unix::fs::OpenOptionsExt;
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                        .open(&path)?;
                    let md = file.metadata()?;
                    if !md.is_file() {
                        return Err(std::io::Error::other(
                            "not a regular file (a folder, a device or a pipe); stream it instead",
                        ));
                    }
                    rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty())?;
                    Ok((file, md))
                },
            )
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
        };
        let (file, before) = opened.map_err(source_error)?;
        let source = OpenSource {
            file,
            before,
            shown: path.display().to_string(),
            verify: None,
        };
        self.store_file(key, source, options, progress).await
    }

    /// The file of the object at `key`, opened for reading beneath the local provider's
    /// root handle (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, as every local
    /// read: a symlink anywhere on the key's path, a folder or a FIFO is
    /// [`Error::NotFound`], never followed or waited on), with what a HEAD would say of
    /// that very file. Store it elsewhere with [`Storage::write_from_open_file`], which
    /// checks its bytes against its stored checksum.
    ///
    /// `Ok(None)` when this storage is not the local provider, or has layers (which must
    /// see every read): read the object with [`Storage::get_stream`] instead. Counted as a
    /// get of the object's size.
    pub async fn open_file(&self, key: &ObjectKey) -> Result<Option<ObjectFile>> {
        let Some(local) = self.beneath_layers() else {
            return Ok(None);
        };
        // A found (foreign) key reads too; one object_store cannot hold streams instead.
        let location = match self.location(key)? {
            super::found::Location::Path(path) => path.into_owned(),
            super::found::Location::Name(_) => return Ok(None),
        };
        let started = Instant::now();
        let opened = local
            .open_file(location)
            .await
            .map_err(self.err(key))
            .map(|opened| ObjectFile {
                info: ObjectInfo {
                    unreadable_checksum: opened.unreadable_checksum,
                    ..info_of(key.clone(), &opened.meta, &opened.attributes, Source::Read)
                },
                file: opened.file,
                stat: opened.stat,
                shown: opened.shown.display().to_string(),
                backend: self.backend.clone(),
                verify: self.verify_reads,
            });
        let bytes = opened.as_ref().map_or(0, |file| file.info.size);
        self.record_beneath(Operation::Get, started, &opened, bytes);
        opened.map(Some)
    }

    /// Stores an object's file opened by [`Storage::open_file`] (of this storage or
    /// another) as `key`, as [`Storage::write_from_file`] stores a file: the kernel copies
    /// it on the local provider, parts are read ahead of a streaming upload elsewhere; the
    /// checksum stored is this storage's, of the bytes stored.
    ///
    /// The bytes are also checked against the checksum the source object was stored with
    /// (unless its storage reads without verification), before anything is committed: on
    /// the local provider the bytes landed in the temporary file are hashed (with the
    /// source's algorithm; once when it is also this storage's), elsewhere the bytes read
    /// from the file as they are uploaded. A mismatch is [`Error::Corrupt`] naming the
    /// source's key and backend, and nothing is stored: the key keeps the object it had (the
    /// temporary file is removed; a multipart upload is aborted, a single PUT never sent).
    /// A source without a checksum is copied unverified. A file that changes size or
    /// modification time while it is copied is [`Error::Source`], nothing stored.
    pub async fn write_from_open_file(
        &self,
        key: &ObjectKey,
        source: ObjectFile,
        options: &WriteOptions,
        progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<PutOutcome> {
        let verify = if source.verify {
            Verifier::of(&source.backend, &source.info)?
        } else {
            None
        };
        let source = OpenSource {
            file: source.file,
            before: source.stat,
            shown: source.shown,
            verify,
        };
        self.store_file(key, source, options, progress).await
    }

    /// The local provider's store, when this storage is it without layers (which must see
    /// every call): files are copied by the kernel straight into and out of it.
    fn beneath_layers(&self) -> Option<&crate::local::LocalStore> {
        self.extras
            .files
            .as_ref()
            .filter(|_| self.layers.is_empty())
    }

    /// Counts an operation done beneath the layers (the local file fast path, S3's
    /// checksum HEAD) as the instrumentation layer counts its own: outcome, duration and
    /// `bytes` moved.
    pub(super) fn record_beneath<T>(
        &self,
        operation: Operation,
        started: Instant,
        result: &Result<T>,
        bytes: u64,
    ) {
        let outcome = match result {
            Ok(_) => {
                self.recorder.bytes(operation, bytes);
                Outcome::Success
            }
            Err(e) => Outcome::of_kind(e.kind()),
        };
        self.recorder
            .finish(Measured::Store(operation), outcome, started);
    }

    /// Stores the open regular `file`, whose `fstat` before the copy was `before` (named
    /// `shown` in errors), as `key`; with `verify`, refuses bytes that do not match it
    /// before the commit. See [`Storage::write_from_file`] and
    /// [`Storage::write_from_open_file`].
    async fn store_file(
        &self,
        key: &ObjectKey,
        source: OpenSource,
        options: &WriteOptions,
        progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<PutOutcome> {
        self.path(key)?;
        options.validate()?;
        if let Some(local) = self.beneath_layers() {
            return self
                .store_file_locally(local, key, source, options, Box::new(progress))
                .await;
        }
        if options.mode != WriteMode::Overwrite {
            return self
                .store_file_with_one_put(key, source, options, progress)
                .await;
        }
        self.stream_file(key, source, options, progress).await
    }

    /// The kernel copies the file into the local provider's temporary file for `key`
    /// (every write mode works); counted as a put, as the instrumentation layer would.
    async fn store_file_locally(
        &self,
        local: &crate::local::LocalStore,
        key: &ObjectKey,
        source: OpenSource,
        options: &WriteOptions,
        progress: Box<dyn Fn(u64, u64) + Send + Sync>,
    ) -> Result<PutOutcome> {
        let location = self.path(key)?.into_owned();
        let started = Instant::now();
        let source_error = source.error(key);
        let stored = local
            .write_from_file(
                location,
                source.file,
                source.before,
                options.attributes(&self.declared.metadata),
                PutMode::from(&options.mode),
                self.checksum,
                source.verify,
                progress,
            )
            .await;
        let (stored, bytes) = match stored {
            Ok((result, bytes)) => (Ok(PutOutcome::from(result)), bytes),
            Err(FromFileError::Source(e)) => (Err(source_error(e)), 0),
            Err(FromFileError::Corrupt(e)) => (Err(e), 0),
            Err(FromFileError::Store(e)) => (Err(self.err(key)(e)), 0),
        };
        self.record_beneath(Operation::Put, started, &stored, bytes);
        stored
    }

    /// A conditional write of a file as one PUT: streaming uploads always overwrite, so
    /// files of at most [`UPLOAD_PART_SIZE`] bytes only.
    async fn store_file_with_one_put(
        &self,
        key: &ObjectKey,
        source: OpenSource,
        options: &WriteOptions,
        progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<PutOutcome> {
        let size = source.before.len();
        if size > UPLOAD_PART_SIZE as u64 {
            return Err(Error::Unsupported {
                backend: self.backend.to_string(),
                operation: "store a large file conditionally".to_string(),
                detail: format!(
                    "create-only and if-match writes of files over {UPLOAD_PART_SIZE} \
                     bytes are streaming uploads, which always overwrite; store it without \
                     the condition"
                ),
            });
        }
        let source_error = source.error(key);
        let OpenSource {
            file,
            before,
            verify,
            ..
        } = source;
        let data = tokio::task::spawn_blocking(move || {
            let read = || {
                let data = crate::local::file_io::read_chunk(&file, 0, size as usize)?;
                crate::local::file_io::source_unchanged(&file, &before)?;
                Ok(data)
            };
            let data = read().map_err(&source_error)?;
            if let Some(mut verify) = verify {
                verify.update(&data);
                verify.finish()?;
            }
            Ok::<_, Error>(data)
        })
        .await
        .map_err(|e| Error::Backend {
            backend: self.backend.to_string(),
            key: key.to_string(),
            source: e.into(),
        })??;
        let outcome = self.put_with(key, data, options).await?;
        progress(size, size);
        Ok(outcome)
    }

    /// A file as a streaming upload, its parts read on a blocking thread one ahead of the
    /// upload; completed only once the file is found as it was read (and its bytes as its
    /// source's checksum says).
    async fn stream_file(
        &self,
        key: &ObjectKey,
        source: OpenSource,
        options: &WriteOptions,
        progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<PutOutcome> {
        let size = source.before.len();
        let source_error = source.error(key);
        let part = self.multipart_threshold();
        let (parts, mut incoming) = tokio::sync::mpsc::channel::<Result<Bytes>>(1);
        let reader_error = source_error.clone();
        let reader =
            tokio::task::spawn_blocking(move || source.read_parts(part, parts, reader_error));
        let mut upload = self.upload(key, options).await?;
        let mut sent = 0;
        let mut failed = None;
        while let Some(read) = incoming.recv().await {
            let written = match read {
                Ok(chunk) => {
                    sent += chunk.len() as u64;
                    upload.write(chunk).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                failed = Some(e);
                break;
            }
            progress(sent, size);
        }
        drop(incoming);
        let _ = reader.await;
        if failed.is_none() && sent != size {
            failed = Some(source_error(std::io::Error::other(format!(
                "read {sent} of its {size} bytes"
            ))));
        }
        if let Some(e) = failed {
            // The upload's own error is the one to report; abort is best effort.
            let _ = upload.abort().await;
            return Err(e);
        }
        upload.finish().await
    }
}

/// Writes `stream` into `dest` on a writer thread, `verifier` seeing each chunk, so that
/// reading and writing overlap with at most four chunks held; the writer's result (the
/// bytes written), or the stream's own failure, after which nothing writes to the file.
async fn stream_into(
    mut stream: BoxStream<'static, object_store::Result<Bytes>>,
    dest: std::fs::File,
    expected: u64,
    verifier: &mut Option<Verifier>,
    progress: impl Fn(u64, u64) + Send + Sync + 'static,
) -> object_store::Result<Result<std::io::Result<u64>, tokio::task::JoinError>> {
    use std::io::Write;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
    let writer = tokio::task::spawn_blocking(move || {
        let mut dest = dest;
        let mut written = 0;
        while let Some(chunk) = receiver.blocking_recv() {
            dest.write_all(&chunk)?;
            written += chunk.len() as u64;
            progress(written, expected);
        }
        Ok(written)
    });
    let mut failed = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            // A closed channel means the writer failed; it reports why.
            Ok(chunk) => {
                if let Some(verifier) = verifier {
                    verifier.update(&chunk);
                }
                if sender.send(chunk).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    drop(sender);
    let written = writer.await;
    // The writer has stopped, so nothing writes to the file after this returns.
    match failed {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

/// A regular file opened to be stored: its `fstat` before the copy, its name in messages,
/// and the checksum its bytes must match (a source object's).
struct OpenSource {
    file: std::fs::File,
    before: std::fs::Metadata,
    shown: String,
    verify: Option<Verifier>,
}

impl OpenSource {
    /// The error of this file failing to be read as `key`.
    fn error(&self, key: &ObjectKey) -> impl Fn(std::io::Error) -> Error + Clone + Send + 'static {
        let (key, path) = (key.to_string(), self.shown.clone());
        move |source| Error::Source {
            key: key.clone(),
            path: path.clone(),
            source,
        }
    }

    /// Sends the file's bytes into `parts`, `part` bytes at a time, then an error should the
    /// file have changed since it was opened or its bytes not match its checksum; stops at
    /// the first failure, or when the receiver is gone.
    fn read_parts(
        self,
        part: usize,
        parts: tokio::sync::mpsc::Sender<Result<Bytes>>,
        source_error: impl Fn(std::io::Error) -> Error,
    ) {
        let OpenSource {
            file,
            before,
            mut verify,
            ..
        } = self;
        let size = before.len();
        let mut at = 0;
        while at < size {
            let len = (size - at).min(part as u64) as usize;
            let read = crate::local::file_io::read_chunk(&file, at, len)
                .map(Bytes::from)
                .map_err(&source_error);
            if let (Ok(chunk), Some(verify)) = (&read, &mut verify) {
                verify.update(chunk);
            }
            let failed = read.is_err();
            if parts.blocking_send(read).is_err() || failed {
                return;
            }
            at += len as u64;
        }
        // Last: the upload completes only after the file was found as it was read, and
        // its bytes as the source's checksum says.
        let checked = crate::local::file_io::source_unchanged(&file, &before)
            .map_err(&source_error)
            .and_then(|()| verify.map_or(Ok(()), Verifier::finish));
        if let Err(e) = checked {
            let _ = parts.blocking_send(Err(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

    use super::*;
    use crate::types::WriteMode;

    /// Every counter's total, by `name{label=value,…}`.
    #[derive(Clone, Default)]
    struct Counts(Arc<Mutex<BTreeMap<String, u64>>>);

    struct Cell {
        key: String,
        counts: Counts,
    }

    impl metrics::CounterFn for Cell {
        fn increment(&self, n: u64) {
            *self
                .counts
                .0
                .lock()
                .unwrap()
                .entry(self.key.clone())
                .or_default() += n;
        }

        fn absolute(&self, n: u64) {
            self.counts.0.lock().unwrap().insert(self.key.clone(), n);
        }
    }

    impl metrics::Recorder for Counts {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let key = format!("{}{{{}}}", key.name(), labels.join(","));
            Counter::from_arc(Arc::new(Cell {
                key,
                counts: self.clone(),
            }))
        }

        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }

        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    impl Counts {
        fn operations(&self, operation: &str, outcome: &str) -> u64 {
            let key = format!(
                "maskstore_operations_total{{backend=local,operation={operation},outcome={outcome}}}"
            );
            self.0.lock().unwrap().get(&key).copied().unwrap_or(0)
        }

        fn bytes(&self, operation: &str, direction: &str) -> u64 {
            let key = format!(
                "maskstore_bytes_total{{backend=local,direction={direction},operation={operation}}}"
            );
            self.0.lock().unwrap().get(&key).copied().unwrap_or(0)
        }

        /// `(successes, client errors, bytes)` of the get and of the put counters.
        fn fast_path(&self) -> [(u64, u64, u64); 2] {
            [
                (
                    self.operations("get", "success"),
                    self.operations("get", "client_error"),
                    self.bytes("get", "in"),
                ),
                (
                    self.operations("put", "success"),
                    self.operations("put", "client_error"),
                    self.bytes("put", "out"),
                ),
            ]
        }
    }

    /// The local file fast path bypasses the layers, so it counts itself: an opened file as
    /// a get of its size, a stored file as a put of its size, a refusal by its kind, as
    /// the instrumentation layer counts the operations that go through it.
    #[test]
    fn the_local_file_fast_path_counts_as_the_instrumentation_layer_would() {
        let counts = Counts::default();
        metrics::with_local_recorder(&counts, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let storage =
                    Storage::connect(&maskstore_core::Config::local(dir.path().join("data")))
                        .unwrap();
                let a = storage.key("a.bin").unwrap();
                storage.put(&a, vec![1u8; 1000]).await.unwrap();
                let before = counts.fast_path();
                let delta = |counts: &Counts| {
                    let now = counts.fast_path();
                    [0, 1].map(|i| {
                        (
                            now[i].0 - before[i].0,
                            now[i].1 - before[i].1,
                            now[i].2 - before[i].2,
                        )
                    })
                };

                let opened = storage.open_file(&a).await.unwrap().unwrap();
                assert_eq!(delta(&counts), [(1, 0, 1000), (0, 0, 0)]);
                let missing = storage.open_file(&storage.key("missing").unwrap()).await;
                assert!(
                    matches!(missing, Err(Error::NotFound { .. })),
                    "{missing:?}"
                );
                assert_eq!(delta(&counts), [(1, 1, 1000), (0, 0, 0)]);

                let b = storage.key("b.bin").unwrap();
                storage
                    .write_from_open_file(&b, opened, &WriteOptions::default(), |_, _| {})
                    .await
                    .unwrap();
                assert_eq!(delta(&counts), [(1, 1, 1000), (1, 0, 1000)]);

                let file = dir.path().join("upload.bin");
                std::fs::write(&file, vec![2u8; 500]).unwrap();
                let c = storage.key("c.bin").unwrap();
                storage
                    .write_from_file(&c, &file, &WriteOptions::default(), |_, _| {})
                    .await
                    .unwrap();
                assert_eq!(delta(&counts), [(1, 1, 1000), (2, 0, 1500)]);
                // A create-only write onto an object: refused by the store, the client's.
                let create = WriteOptions::default().with_mode(WriteMode::CreateOnly);
                let taken = storage.write_from_file(&c, &file, &create, |_, _| {}).await;
                assert!(
                    matches!(taken, Err(Error::AlreadyExists { .. })),
                    "{taken:?}"
                );
                assert_eq!(delta(&counts), [(1, 1, 1000), (2, 1, 1500)]);
                // A file that cannot be opened is refused before the store is asked.
                let gone = dir.path().join("gone.bin");
                let refused = storage
                    .write_from_file(&c, &gone, &WriteOptions::default(), |_, _| {})
                    .await;
                assert!(matches!(refused, Err(Error::Source { .. })), "{refused:?}");
                assert_eq!(delta(&counts), [(1, 1, 1000), (2, 1, 1500)]);
            });
        });
    }
}
