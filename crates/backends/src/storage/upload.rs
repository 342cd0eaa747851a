//! Streaming uploads: one PUT when small, multipart when large, checksummed either way.

use bytes::Bytes;
use futures::stream::StreamExt;
use maskstore_core::ObjectKey;
use object_store::path::Path;
use object_store::{
    Attributes, GetOptions, ObjectStore, PutMode, PutOptions, UpdateVersion, WriteMultipart,
};

use super::Storage;
use crate::checksum::{CHECKSUM_METADATA, Hasher, LateChecksum};
use crate::providers::MultipartUploads;
use crate::types::{IncompleteUpload, PutOutcome, WriteMode, WriteOptions};
use crate::{Error, Result};
use std::sync::Arc;

/// Part size of streaming uploads: above S3's 5 MiB minimum. Chosen with
/// [`UPLOAD_MAX_IN_FLIGHT`] by measurement of every part size in {5, 8, 16, 32} MiB × parts
/// in flight in {2, 4, 8}, on loopback and behind 25 ms per request (BENCHMARKS.md,
/// "Multipart part size and parts in flight"): none was faster within the memory bound.
pub const UPLOAD_PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one streaming upload in flight at once; with [`UPLOAD_PART_SIZE`] this bounds
/// an upload's buffered memory to about 40 MiB whatever the object's size (48 MiB with the
/// part [`Storage::write_from_file`] reads ahead).
pub const UPLOAD_MAX_IN_FLIGHT: usize = 4;
/// The smallest part a write may ask for ([`crate::UploadShape`]) on the stores without
/// S3's part limits (local, memory), so that a small request does not turn every few bytes
/// into a write of its own.
pub const MIN_UPLOAD_PART_SIZE: usize = 64 * 1024;

impl Storage {
    /// Streaming uploads under `prefix` (default: the configured prefix) that were started
    /// and neither completed nor aborted — left by a crash or by an abort sent while the
    /// server was down. On S3 they are invisible but stored (and billed); local and memory
    /// keep none.
    pub async fn incomplete_uploads(&self, prefix: Option<&str>) -> Result<Vec<IncompleteUpload>> {
        let folder = self.folder(prefix)?;
        match &self.extras.multipart {
            Some(multipart) => multipart.incomplete(&self.backend, &folder).await,
            None => Ok(Vec::new()),
        }
    }

    /// Aborts every incomplete streaming upload under `prefix`; returns how many.
    pub async fn abort_incomplete_uploads(&self, prefix: Option<&str>) -> Result<usize> {
        // The prefix is checked on every backend, before anything is asked of the provider.
        let uploads = self.incomplete_uploads(prefix).await?;
        let Some(multipart) = &self.extras.multipart else {
            return Ok(0);
        };
        let mut aborted = 0;
        for upload in &uploads {
            let path = match self.location(&upload.key)? {
                super::found::Location::Path(path) => path,
                // Another tool's upload to a name object_store cannot address: left to
                // that tool (or the bucket's lifecycle rule), never a reason to stop.
                super::found::Location::Name(_) => {
                    tracing::warn!(key = %upload.key, "left an incomplete upload to a name object_store cannot address");
                    continue;
                }
            };
            multipart
                .abort(&self.backend, &path, &upload.upload_id)
                .await?;
            aborted += 1;
        }
        Ok(aborted)
    }

    /// Starts a streaming upload to `key`: invisible until [`Upload::finish`], cut into
    /// parts as `options.upload` says ([`crate::UploadShape`]; by default [`UPLOAD_PART_SIZE`]
    /// parts, [`UPLOAD_MAX_IN_FLIGHT`] in flight, on the local provider
    /// [`crate::LOCAL_UPLOAD_PART_SIZE`] and [`crate::LOCAL_UPLOAD_MAX_IN_FLIGHT`]), so that
    /// its memory is bounded by the part size × (parts in flight + 1).
    ///
    /// Nothing is sent until one part's worth is written ([`Storage::multipart_threshold`]
    /// by default): an object smaller than that is stored with one PUT at
    /// [`Upload::finish`] (a plain MD5 etag, one request, as every S3 tool expects), a
    /// larger one as a multipart upload. Streaming uploads always overwrite: a
    /// conditional mode is [`Error::Unsupported`].
    pub async fn upload(&self, key: &ObjectKey, options: &WriteOptions) -> Result<Upload> {
        if options.mode != WriteMode::Overwrite {
            return Err(Error::Unsupported {
                backend: self.backend.to_string(),
                operation: "stream an upload conditionally".to_string(),
                detail: "streaming uploads always overwrite; use put_with for create-only or \
                         if-match writes"
                    .to_string(),
            });
        }
        let path = self.path(key)?.into_owned();
        options.validate()?;
        let (part_size, max_in_flight) = self.declared.uploads.resolve(options.upload);
        Ok(Upload {
            key: key.clone(),
            path,
            attributes: options.attributes(&self.declared.metadata),
            storage: self.clone(),
            written: 0,
            part_size,
            max_in_flight,
            state: UploadState::Buffered(Vec::new()),
            hasher: Hasher::new(self.checksum),
            late: LateChecksum::default(),
        })
    }

    /// Streaming uploads to this storage that ask for no part size are one PUT below this
    /// many bytes, multipart from there on: [`UPLOAD_PART_SIZE`], or
    /// [`crate::LOCAL_UPLOAD_PART_SIZE`] on the local provider, which streams into its
    /// temporary file from there on.
    pub fn multipart_threshold(&self) -> usize {
        self.declared.uploads.part_size
    }

    /// The parts a streaming upload to this storage that asks for no shape sends at once
    /// at most: [`UPLOAD_MAX_IN_FLIGHT`], or [`crate::LOCAL_UPLOAD_MAX_IN_FLIGHT`] on the
    /// local provider.
    pub fn upload_max_in_flight(&self) -> usize {
        self.declared.uploads.max_in_flight
    }

    /// Stores `checksum` with a just-completed multipart upload whose provider could neither
    /// take it at completion nor stamp it itself (memory, Azure, GCS): the object is read back, and rewritten with the
    /// checksum only if it is still the version written (if-match) and its bytes hash to
    /// `checksum`; otherwise it is left as it is, unverified.
    pub(super) async fn stamp(
        &self,
        key: &ObjectKey,
        path: &Path,
        outcome: PutOutcome,
        checksum: String,
    ) -> Result<PutOutcome> {
        let Some(etag) = outcome.etag.clone() else {
            return Ok(outcome);
        };
        let got = self
            .store
            .get_opts(
                path,
                GetOptions {
                    if_match: Some(etag.clone()),
                    ..Default::default()
                },
            )
            .await;
        let Ok(got) = got else {
            return Ok(outcome);
        };
        let mut attributes = got.attributes.clone();
        let Ok(data) = got.bytes().await else {
            return Ok(outcome);
        };
        // A large object is hashed off the runtime's thread: a 512 MiB upload to the memory
        // provider held it 0.35–1.4 s as its completion read the object back and hashed it.
        let algorithm = self.checksum;
        let hashed = match data.len() < crate::checksum::HASH_TURN {
            true => crate::checksum::checksum_of(algorithm, &data),
            false => {
                let data = data.clone();
                super::off_the_runtime_thread(move || {
                    crate::checksum::checksum_of(algorithm, &data)
                })
                .await
                .map_err(|joined| {
                    let e = object_store::Error::JoinError { source: joined };
                    Error::from_store(&self.backend, key.as_str(), e)
                })?
            }
        };
        if hashed.as_deref() != Some(&checksum) {
            return Ok(outcome);
        }
        attributes.insert(
            object_store::Attribute::Metadata(CHECKSUM_METADATA.into()),
            checksum.into(),
        );
        let opts = PutOptions {
            mode: PutMode::Update(UpdateVersion {
                e_tag: Some(etag),
                version: None,
            }),
            attributes,
            ..Default::default()
        };
        match self.store().put_opts(path, data.into(), opts).await {
            Ok(result) => Ok(PutOutcome::from(result)),
            Err(object_store::Error::Precondition { .. }) => Ok(outcome),
            Err(e) => Err(Error::from_store(&self.backend, key.as_str(), e)),
        }
    }

    /// Starts the multipart upload behind an [`Upload`] that outgrew one PUT.
    async fn start_multipart(
        &self,
        key: &ObjectKey,
        path: &Path,
        attributes: Attributes,
        late: &LateChecksum,
        part_size: usize,
    ) -> Result<(WriteMultipart, Option<Confirm>)> {
        let mut opts = object_store::PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        // The whole-object checksum is known only at completion; a provider that can
        // store it then (local) takes it from here.
        opts.extensions.insert(late.clone());
        let upload = self
            .store
            .put_multipart_opts(path, opts)
            .await
            .map_err(self.err(key))?;
        // object_store retries a completion whose 200 answer merely contains
        // "InternalError" or "SlowDown", and S3's answer repeats the key: for such keys the
        // completion may be reported failed although it took effect. Note the version before,
        // so that `finish` can tell.
        let misread = |m: &Arc<dyn MultipartUploads>| m.completion_may_be_misread(key.as_str());
        let confirm = if self.extras.multipart.as_ref().is_some_and(misread) {
            // Without a readable version before, no confirmation is possible: the upload
            // goes ahead and reports what the completion says.
            match self.head(key).await {
                Ok(info) => Some(Confirm {
                    storage: self.clone(),
                    before: info.etag,
                }),
                Err(Error::NotFound { .. }) => Some(Confirm {
                    storage: self.clone(),
                    before: None,
                }),
                Err(_) => None,
            }
        } else {
            None
        };
        Ok((
            WriteMultipart::new_with_chunk_size(upload, part_size),
            confirm,
        ))
    }

    /// Streams `stream` into `key` through [`Storage::upload`]; aborts on the first error.
    pub async fn upload_stream<S, E>(
        &self,
        key: &ObjectKey,
        options: &WriteOptions,
        mut stream: S,
    ) -> Result<PutOutcome>
    where
        S: futures::Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::error::Error + Send + Sync + 'static,
    {
        let mut upload = self.upload(key, options).await?;
        while let Some(chunk) = stream.next().await {
            let written = match chunk {
                Ok(chunk) => upload.write(chunk).await,
                Err(e) => Err(Error::Backend {
                    backend: self.backend.to_string(),
                    key: key.to_string(),
                    source: Box::new(e),
                }),
            };
            if let Err(e) = written {
                // The upload's own error is the one to report; abort is best effort.
                let _ = upload.abort().await;
                return Err(e);
            }
        }
        upload.finish().await
    }
}

/// A streaming upload in progress. Dropping it without [`Upload::finish`] abandons it.
pub struct Upload {
    key: ObjectKey,
    path: Path,
    attributes: Attributes,
    storage: Storage,
    /// Part size, which is also the size from which the upload turns multipart.
    part_size: usize,
    /// Parts in flight at most.
    max_in_flight: usize,
    written: u64,
    state: UploadState,
    /// The checksum of the bytes written so far (none when checksums are off).
    hasher: Option<Hasher>,
    /// The whole-object checksum handed to the provider at completion.
    late: LateChecksum,
}

/// Where an upload's bytes are: held for one PUT, or streaming as parts.
enum UploadState {
    /// Fewer than the part size ([`Storage::multipart_threshold`] by default) so far, none sent.
    Buffered(Vec<Bytes>),
    /// A multipart upload, and how to confirm its completion (see [`Confirm`]).
    Multipart {
        writer: Box<WriteMultipart>,
        confirm: Option<Box<Confirm>>,
    },
}

/// How to confirm a completion object_store may misreport: the storage, and the etag the
/// key had before the upload started.
struct Confirm {
    storage: Storage,
    before: Option<String>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("key", &self.key)
            .field("written", &self.written)
            .field(
                "multipart",
                &matches!(self.state, UploadState::Multipart { .. }),
            )
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// Appends `data`, waiting while too many parts are in flight.
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        self.written += data.len() as u64;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&data);
        }
        match &mut self.state {
            UploadState::Buffered(held) => {
                held.push(data);
                if self.written >= self.part_size as u64 {
                    // Should the start fail, the bytes stay held: nothing is lost or cut.
                    let (mut writer, confirm) = self
                        .storage
                        .start_multipart(
                            &self.key,
                            &self.path,
                            self.attributes.clone(),
                            &self.late,
                            self.part_size,
                        )
                        .await?;
                    for chunk in std::mem::take(held) {
                        writer.put(chunk);
                    }
                    self.state = UploadState::Multipart {
                        writer: Box::new(writer),
                        confirm: confirm.map(Box::new),
                    };
                }
                Ok(())
            }
            UploadState::Multipart { writer, .. } => {
                writer
                    .wait_for_capacity(self.max_in_flight)
                    .await
                    .map_err(|e| Error::from_store(&self.storage.backend, self.key.as_str(), e))?;
                writer.put(data);
                Ok(())
            }
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Completes the upload; the object becomes visible whole.
    ///
    /// The checksum of the bytes written is stored with the object: with one PUT in its
    /// metadata; for a multipart upload, by the local provider as it commits the file, on
    /// memory by a conditional rewrite of the attributes, and on S3 (which takes metadata
    /// only when a multipart upload starts, before the value is known) by a server-side
    /// copy in place guarded by the completion's etag (the provider's
    /// `MultipartUploads::stamp`). An S3 object over
    /// 5 GiB, beyond CopyObject, keeps S3's own checksums but reads as unverified.
    pub async fn finish(mut self) -> Result<PutOutcome> {
        let checksum = self.hasher.take().map(Hasher::finish);
        let (writer, confirm) = match self.state {
            UploadState::Buffered(held) => {
                let mut attributes = self.attributes;
                if let Some(checksum) = checksum {
                    attributes.insert(
                        object_store::Attribute::Metadata(CHECKSUM_METADATA.into()),
                        checksum.into(),
                    );
                }
                let opts = PutOptions {
                    mode: PutMode::Overwrite,
                    attributes,
                    ..Default::default()
                };
                let payload: object_store::PutPayload = held.into_iter().collect();
                let result = self
                    .storage
                    .store
                    .put_opts(&self.path, payload, opts)
                    .await
                    .map_err(self.storage.err(&self.key))?;
                return Ok(PutOutcome::from(result));
            }
            UploadState::Multipart { writer, confirm } => (writer, confirm),
        };
        if let Some(checksum) = &checksum {
            self.late.set(checksum.clone());
        }
        let error = match writer.finish().await {
            Ok(result) => {
                let outcome = PutOutcome::from(result);
                if let Some(checksum) = checksum
                    && !self.late.stored()
                {
                    let storage = &self.storage;
                    return match &storage.extras.multipart {
                        Some(multipart) => Ok(multipart
                            .stamp(
                                &*storage.store,
                                &storage.backend,
                                &self.path,
                                outcome,
                                checksum,
                            )
                            .await),
                        None => {
                            storage
                                .stamp(&self.key, &self.path, outcome, checksum)
                                .await
                        }
                    };
                }
                return Ok(outcome);
            }
            Err(e) => Error::from_store(&self.storage.backend, self.key.as_str(), e),
        };
        // The completion took effect if the key now holds a new version of our size.
        if let Some(confirm) = &confirm
            && let Ok(info) = confirm.storage.head(&self.key).await
            && info.size == self.written
            && info.etag.is_some()
            && info.etag != confirm.before
        {
            tracing::debug!(key = %self.key, "completion misreported by the client; the object is in place");
            return Ok(PutOutcome {
                etag: info.etag,
                version: None,
            });
        }
        Err(error)
    }

    /// Abandons the upload; nothing becomes visible and the parts are discarded.
    pub async fn abort(self) -> Result<()> {
        match self.state {
            // Nothing was sent.
            UploadState::Buffered(_) => Ok(()),
            UploadState::Multipart { writer, .. } => writer
                .abort()
                .await
                .map_err(|e| Error::from_store(&self.storage.backend, self.key.as_str(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaped(part_size: usize, max_in_flight: Option<usize>) -> WriteOptions {
        WriteOptions::default().with_upload_shape(crate::UploadShape {
            part_size: Some(part_size),
            max_in_flight,
        })
    }

    #[tokio::test]
    async fn incomplete_uploads_outside_the_prefix_are_refused_on_every_backend() {
        let dir = tempfile::tempdir().unwrap();
        let local = Storage::connect(&maskstore_core::Config::local(dir.path().join("d"))).unwrap();
        let bare = Storage::from_object_store(
            Arc::new(object_store::memory::InMemory::new()),
            "my-wrapper",
            "mask/".parse().unwrap(),
        );
        for storage in [Storage::memory(), local, bare] {
            let listed = storage.incomplete_uploads(Some("other/")).await;
            assert!(
                matches!(listed, Err(Error::InvalidKey { .. })),
                "{}: {listed:?}",
                storage.backend()
            );
            let aborted = storage.abort_incomplete_uploads(Some("other/")).await;
            assert!(
                matches!(aborted, Err(Error::InvalidKey { .. })),
                "{}: {aborted:?}",
                storage.backend()
            );
            assert_eq!(storage.abort_incomplete_uploads(None).await.unwrap(), 0);
        }
    }

    /// A multipart upload to the memory provider stamps its checksum by reading the object
    /// back and hashing it: a large one in a blocking task, the runtime's one thread free
    /// meanwhile (a ticker keeps ticking), and the checksum stored is the bytes'.
    #[tokio::test(flavor = "current_thread")]
    async fn a_large_stamp_is_hashed_off_the_runtime_thread() {
        use maskstore_core::ChecksumAlgorithm;
        let storage = Storage::memory().with_checksum(ChecksumAlgorithm::Sha256);
        let key = ObjectKey::parse("mask/stamped.bin").unwrap();
        let part: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
        let part = Bytes::from(part);
        let mut upload = storage
            .upload(&key, &shaped(4 * 1024 * 1024, None))
            .await
            .unwrap();
        for _ in 0..8 {
            upload.write(part.clone()).await.unwrap();
        }
        let (finished, during) = crate::storage::ticks_during(upload.finish()).await;
        finished.unwrap();
        let whole = part.repeat(8);
        let stored = storage.head(&key).await.unwrap().checksum;
        assert_eq!(
            stored,
            crate::checksum::checksum_of(ChecksumAlgorithm::Sha256, &whole)
        );
        assert!(
            during >= 3,
            "the runtime thread ticked {during} times while it was stamped"
        );
    }

    #[tokio::test]
    async fn a_smaller_part_size_streams_parts_on_gateway_stores_only() {
        let key = ObjectKey::parse("mask/parts.bin").unwrap();
        let chunk = Bytes::from(vec![7u8; 100 * 1024]);
        // Memory (a gateway store): 300 KiB with 256 KiB parts is a multipart upload.
        let memory = Storage::memory();
        let mut upload = memory
            .upload(&key, &shaped(256 * 1024, None))
            .await
            .unwrap();
        for _ in 0..3 {
            upload.write(chunk.clone()).await.unwrap();
        }
        assert!(
            format!("{upload:?}").contains("multipart: true"),
            "{upload:?}"
        );
        upload.finish().await.unwrap();
        assert_eq!(memory.get(&key).await.unwrap().data.len(), 300 * 1024);
        // A tiny part size is raised to the minimum: 60 KiB stays one PUT.
        let mut upload = memory.upload(&key, &shaped(1, None)).await.unwrap();
        upload
            .write(Bytes::from(vec![7u8; MIN_UPLOAD_PART_SIZE - 4096]))
            .await
            .unwrap();
        assert!(
            format!("{upload:?}").contains("multipart: false"),
            "{upload:?}"
        );
        // A bare object_store (parts with a minimum size, as S3's) raises it to 5 MiB.
        let store = Arc::new(object_store::memory::InMemory::new());
        let bare = Storage::from_object_store(store, "s3", "mask/".parse().unwrap());
        let mut upload = bare.upload(&key, &shaped(256 * 1024, None)).await.unwrap();
        for _ in 0..3 {
            upload.write(chunk.clone()).await.unwrap();
        }
        assert!(
            format!("{upload:?}").contains("multipart: false"),
            "{upload:?}"
        );
    }

    #[tokio::test]
    async fn the_upload_shape_sets_the_part_size_within_s3s_limits() {
        let key = ObjectKey::parse("mask/shape.bin").unwrap();
        let store = Arc::new(object_store::memory::InMemory::new());
        let bare = Storage::from_object_store(store, "s3", "mask/".parse().unwrap());
        assert_eq!(bare.multipart_threshold(), UPLOAD_PART_SIZE);
        // 16 MiB parts: 12 MiB is still one PUT, where the default would be multipart.
        let wide = shaped(16 * 1024 * 1024, Some(8));
        let mut upload = bare.upload(&key, &wide).await.unwrap();
        upload
            .write(Bytes::from(vec![1u8; 12 * 1024 * 1024]))
            .await
            .unwrap();
        assert!(
            format!("{upload:?}").contains("multipart: false"),
            "{upload:?}"
        );
        upload.finish().await.unwrap();
        // Below S3's 5 MiB minimum part, and no part in flight: raised to what works.
        let tiny = shaped(1024, Some(0));
        let mut upload = bare.upload(&key, &tiny).await.unwrap();
        upload
            .write(Bytes::from(vec![1u8; 5 * 1024 * 1024 - 1]))
            .await
            .unwrap();
        assert!(
            format!("{upload:?}").contains("multipart: false"),
            "{upload:?}"
        );
        upload.abort().await.unwrap();
        let data = Bytes::from(vec![2u8; 11 * 1024 * 1024]);
        let done = bare
            .upload_stream(
                &key,
                &tiny,
                futures::stream::iter([Ok::<_, std::io::Error>(data.clone())]),
            )
            .await;
        done.unwrap();
        assert_eq!(bare.get(&key).await.unwrap().data, data);
    }

    #[tokio::test]
    async fn each_provider_declares_its_upload_parts() {
        let dir = tempfile::tempdir().unwrap();
        let local = Storage::connect(&maskstore_core::Config::local(dir.path().join("d"))).unwrap();
        assert_eq!(local.multipart_threshold(), crate::LOCAL_UPLOAD_PART_SIZE);
        assert_eq!(Storage::memory().multipart_threshold(), UPLOAD_PART_SIZE);
        // Local takes a gateway's 1 MiB parts; an S3-like store would raise them to 5 MiB.
        let limits = local.declared.uploads;
        assert_eq!(
            limits.resolve(crate::UploadShape {
                part_size: Some(1024 * 1024),
                max_in_flight: None
            }),
            (1024 * 1024, crate::LOCAL_UPLOAD_MAX_IN_FLIGHT)
        );
        assert_eq!(
            crate::providers::UploadLimits::REMOTE.resolve(crate::UploadShape {
                part_size: Some(1024 * 1024),
                max_in_flight: Some(2)
            }),
            (5 * 1024 * 1024, 2)
        );
        // A mistaken count cannot make an upload's memory unbounded.
        assert_eq!(
            limits.resolve(crate::UploadShape {
                part_size: None,
                max_in_flight: Some(usize::MAX)
            }),
            (
                crate::LOCAL_UPLOAD_PART_SIZE,
                crate::providers::UploadLimits::MAX_IN_FLIGHT
            )
        );
    }
}
