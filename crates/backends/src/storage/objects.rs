//! Object operations: put, read, head, delete, list, copy and rename.

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use maskstore_core::ObjectKey;
use object_store::path::Path;
use object_store::{
    Attributes, GetOptions, GetRange, GetResult, GetResultPayload, ObjectStore, ObjectStoreExt,
    PutMode, PutOptions,
};

use super::Storage;
use crate::checksum::{LateChecksum, verify_stream};
use crate::local::ReadChecksum;
use std::sync::Arc;

use crate::local::TrustedFile;
use crate::local::file_io::{Vouched, read_whole, stamped_file_stream};
use crate::local::stamp::FileStamp;
use crate::types::{
    ByteRange, Listing, Object, ObjectInfo, ObjectStream, PutOutcome, ReadOptions, ReadVersion,
    Source, WriteMode, WriteOptions, info_of, info_of_answer, info_taken_from,
};
use crate::{Error, ErrorKind, Result};
use maskstore_core::ChecksumAlgorithm;

impl Storage {
    /// Stores `data` at `key`, replacing any object there.
    pub async fn put(&self, key: &ObjectKey, data: impl Into<Bytes>) -> Result<PutOutcome> {
        self.put_with(key, data, &WriteOptions::default()).await
    }

    /// Stores `data` at `key` with a content type, metadata and write mode.
    pub async fn put_with(
        &self,
        key: &ObjectKey,
        data: impl Into<Bytes>,
        options: &WriteOptions,
    ) -> Result<PutOutcome> {
        let path = self.path(key)?;
        options.validate()?;
        let mode = PutMode::from(&options.mode);
        let data: Bytes = data.into();
        // The local provider hashes the bytes as it writes them (one pass); elsewhere the
        // checksum is computed first, to send with the request.
        let hash_on_write = (self.declared.hashes_on_write
            && self.checksum != ChecksumAlgorithm::None)
            .then(|| crate::checksum::HashOnWrite {
                algorithm: self.checksum,
                done: LateChecksum::default(),
            });
        let mut attributes = options.attributes(&self.declared.metadata);
        let mut opts = PutOptions::default();
        let mut vouched = None;
        if let Some(request) = &hash_on_write {
            opts.extensions.insert(request.clone());
        } else if let Some(owed) = self.owed_checksum() {
            // Computed the first time a read asks for it (see `crate::memory`).
            attributes.insert(
                object_store::Attribute::Metadata(crate::checksum::CHECKSUM_METADATA.into()),
                owed.into(),
            );
        } else if let Some(checksum) = self.checksum_into(&mut attributes, &data) {
            // The checksum of these very bytes, for a store that keeps it with them
            // (memory: its reads then need not hash them again).
            vouched = Some((data.clone(), checksum));
        }
        opts.mode = mode;
        opts.attributes = attributes;
        let sent = hash_on_write.as_ref().map(|_| data.clone());
        let answer = self.store().put_opts(&path, data.into(), opts).await;
        if let (Err(e), Some(kept)) = (&answer, &self.extras.kept) {
            // Entered for this put, which may never have run (a layer refused it).
            kept.refused(&path, e);
        }
        let result = match answer {
            Ok(result) => result,
            // S3 answers an if-match write to a missing key with 404; the condition failed.
            Err(object_store::Error::NotFound { .. })
                if matches!(options.mode, WriteMode::IfMatch(_)) =>
            {
                return Err(Error::Precondition {
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(self.err(key)(e)),
        };
        if let (Some(kept), Some((data, checksum))) = (&self.extras.kept, vouched) {
            kept.keep(&path, data, checksum);
        }
        let outcome = PutOutcome::from(result);
        if let (Some(request), Some(sent)) = (hash_on_write, sent)
            && !request.done.stored()
            && let Some(checksum) = crate::checksum::checksum_of(self.checksum, &sent)
        {
            // A store declared to hash as it writes that ignored the request: the checksum
            // is stored by a conditional rewrite instead.
            return self.stamp(key, &path, outcome, checksum).await;
        }
        Ok(outcome)
    }

    /// What a put stores in place of its checksum when the provider can owe it (its bytes
    /// cannot rot): only without layers, which may replace the bytes on their way in,
    /// where an owed checksum would be of what they wrote instead of the caller's bytes.
    fn owed_checksum(&self) -> Option<&'static str> {
        if !self.declared.owes_checksums || !self.layers.is_empty() {
            return None;
        }
        crate::memory::owed(self.checksum)
    }

    /// Stores `data` only if `key` does not exist yet.
    pub async fn put_if_absent(
        &self,
        key: &ObjectKey,
        data: impl Into<Bytes>,
    ) -> Result<PutOutcome> {
        self.put_with(
            key,
            data,
            &WriteOptions::default().with_mode(WriteMode::CreateOnly),
        )
        .await
    }

    /// Reads the whole object.
    pub async fn get(&self, key: &ObjectKey) -> Result<Object> {
        self.read(key, ReadOptions::default()).await
    }

    /// Reads a byte range of the object; `info.size` still reports the whole object.
    pub async fn get_range(&self, key: &ObjectKey, range: impl Into<ByteRange>) -> Result<Object> {
        let options = ReadOptions {
            range: Some(range.into()),
            ..Default::default()
        };
        self.read(key, options).await
    }

    /// Reads the object (or part of it) into memory, with conditions.
    ///
    /// A whole read (no range) verifies the stored checksum: damaged bytes fail with
    /// [`Error::Corrupt`]. A range read cannot be verified (the checksum covers the whole
    /// object) and is returned as read.
    pub async fn read(&self, key: &ObjectKey, options: ReadOptions) -> Result<Object> {
        let whole = options.range.is_none();
        let mut result = self.get_result_with(key, options, true, false).await?;
        // Described without a wait where the provider's checksum need not be asked for (an
        // object and its description are large: each wait moves them once more).
        let mut info = info_taken_from(key.clone(), &mut result);
        if !self.layers.is_empty() {
            info = self.with_owed_paid(info).await?;
        }
        if self.asks_native_checksum(&info, whole) {
            info = self.with_native_checksum(info, whole).await?;
        }
        let range = result.range.clone();
        // A checksum of the very buffer read, from the provider: hashed by the local
        // provider as it read it, or kept by the memory provider with the buffer it holds.
        let read = result.extensions.remove::<ReadChecksum>();
        // An owed checksum comes only with a whole read of this storage's own store (any
        // other read asks the store to pay it, see `get_result_with`): paid from the bytes.
        let owed = info.checksum.as_deref().is_some_and(crate::memory::is_owed);
        let kept = self
            .extras
            .kept
            .as_ref()
            .filter(|_| whole && (self.verify_reads || owed));
        if read.is_some() || kept.is_some() {
            let data = whole_bytes(result).await.map_err(self.err(key))?;
            match read {
                // Never of bytes a layer in between replaced.
                Some(read) => {
                    let computed =
                        same_buffer(&read.data, &data).then_some(read.checksum.as_bytes());
                    self.check_whole(&info, whole, &data, computed)?;
                }
                None => {
                    let computed = self.kept_checksum(key, &info, &data);
                    if let Some(sum) = computed.filter(|_| owed && self.layers.is_empty())
                        && let Some(text) = info.checksum.as_mut()
                    {
                        // In place: the owed text was given room for it.
                        text.clear();
                        text.push_str(sum.as_str());
                    }
                    let computed = computed.as_ref().map(crate::memory::KeptSum::as_bytes);
                    self.check_whole(&info, whole, &data, computed)?;
                }
            }
            return Ok(Object { info, range, data });
        }
        let verifier = self.verifier(&info, whole)?;
        let result = match result.payload {
            // A store that answers with the open file (the local provider wrapped by
            // `from_object_store`, object_store's `LocalFileSystem`) is read as the local
            // provider reads for `ReadAll`, hashed block by block as it is read.
            GetResultPayload::File(file, path) => {
                let (data, verifier) = file_bytes(file, path, range.clone(), verifier)
                    .await
                    .map_err(self.err(key))?;
                if let Some(verifier) = verifier {
                    verifier.finish()?;
                }
                return Ok(Object { info, range, data });
            }
            payload => GetResult { payload, ..result },
        };
        let Some(mut verifier) = verifier else {
            let data = result.bytes().await.map_err(self.err(key))?;
            return Ok(Object { info, range, data });
        };
        // Each chunk is hashed and copied into the one buffer as it arrives, while still in
        // the cache, and dropped: one pass over fresh bytes, as `bytes()` reads. (Holding
        // the chunks to join them at the end cost a second pass over cold memory and twice
        // the pages: +36 ms on a 64 MiB read from SeaweedFS, BENCHMARKS.md issue 16.)
        let expected = usize::try_from(range.end.saturating_sub(range.start)).unwrap_or(0);
        let data = collect_hashing(result.into_stream(), expected, |chunk| {
            verifier.update(chunk)
        })
        .await
        .map_err(self.err(key))?;
        verifier.finish()?;
        Ok(Object { info, range, data })
    }

    /// The checksum the provider keeps of `data`, the buffer a whole read of `key` returned
    /// (computed now and kept if it has none), with the algorithm of the stored checksum.
    fn kept_checksum(
        &self,
        key: &ObjectKey,
        info: &ObjectInfo,
        data: &Bytes,
    ) -> Option<crate::memory::KeptSum> {
        let kept = self.extras.kept.as_ref()?;
        let stored = info.checksum.as_deref()?;
        let path = super::found::store_path(key).ok()?;
        kept.checksum_of(&path, data, stored)
    }

    /// Verifies `data`, the bytes of a read of the object `info` describes, with
    /// `computed`, the checksum of this very buffer when the provider has it (else the
    /// bytes are hashed).
    fn check_whole(
        &self,
        info: &ObjectInfo,
        whole: bool,
        data: &[u8],
        computed: Option<&[u8]>,
    ) -> Result<()> {
        if let Some(computed) = computed
            && self.matches_stored(info, whole, computed)
        {
            return Ok(());
        }
        let Some(mut verifier) = self.verifier(info, whole)? else {
            return Ok(());
        };
        match computed {
            Some(computed) => verifier.finish_with(String::from_utf8_lossy(computed).into_owned()),
            None => {
                verifier.update(data);
                verifier.finish()
            }
        }
    }

    /// Whether `computed`, the checksum maskstore's own hasher found a read's bytes to
    /// have, is what [`Storage::verifier`] would find them to have and accept: the read
    /// verifies, the object's record reads, and its stored checksum is `computed` (so of an
    /// algorithm maskstore computes: its hasher wrote `computed`). Decided without building
    /// the verifier (a read of a small object felt its allocations).
    fn matches_stored(&self, info: &ObjectInfo, whole: bool, computed: &[u8]) -> bool {
        self.verify_reads
            && whole
            && info.unreadable_checksum.is_none()
            && info.checksum.as_deref().map(str::as_bytes) == Some(computed)
    }

    /// Reads the object as a stream, with memory bounded whatever its size.
    pub async fn get_stream(&self, key: &ObjectKey) -> Result<ObjectStream> {
        self.read_stream(key, ReadOptions::default()).await
    }

    /// Reads the object (or part of it) as a stream, with conditions.
    ///
    /// A whole read verifies the stored checksum: a stream of damaged bytes ends in
    /// [`Error::Corrupt`] instead of its last chunk. Range reads are not verified.
    pub async fn read_stream(&self, key: &ObjectKey, options: ReadOptions) -> Result<ObjectStream> {
        self.read_stream_trusting(key, options, |_| false).await
    }

    /// [`Storage::read_stream`] for a caller that keeps verdicts on versions it verified
    /// (the gateway): the stream names the version it opened ([`ObjectStream::version`],
    /// where the provider can tell), and a whole read of a version `trusted` vouches for is
    /// not hashed again. Such a stream instead holds back its last chunk until the file is
    /// found unchanged since it was opened, or, for a whole read whose stamp changed (the
    /// name replaced or deleted, or the file rewritten), the open file whole still matches
    /// the checksum; else it ends in an error: a version is trusted only for the bytes it
    /// names.
    pub async fn read_stream_trusting(
        &self,
        key: &ObjectKey,
        options: ReadOptions,
        trusted: impl FnOnce(&ReadVersion) -> bool + Send,
    ) -> Result<ObjectStream> {
        let whole = options.range.is_none();
        // Only the provider's own answer names its bytes: a layer may replace them.
        let versioned = self.layers.is_empty();
        let result = self.get_result_with(key, options, false, versioned).await?;
        let stamp = result.extensions.get::<FileStamp>().copied();
        let info = self.described(key, &result, whole).await?;
        let version = stamp.map(|file| ReadVersion {
            etag: info.etag.clone(),
            file,
        });
        let trusted = version.as_ref().is_some_and(trusted);
        let verifier = match trusted {
            true => None,
            false => self.verifier(&info, whole)?,
        };
        let verifies = verifier.is_some();
        let range = result.range.clone();
        let backend = self.backend.clone();
        // Shown (escaped, as its `Display`) in an error only, not on every read.
        let key = key.clone();
        let mut trusted_file = None;
        let stream = match result.payload {
            GetResultPayload::File(file, _) => {
                let file = Arc::new(file);
                let vouched = match stamp.filter(|_| trusted) {
                    // A whole read checks the file whole when its stamp changed: twice the
                    // read at most. A range does not (one range of a large object would
                    // read it all): it is cut off, and read again with If-Range.
                    Some(stamp) => {
                        let vouched = |verifier| Vouched { stamp, verifier };
                        let kept = vouched(self.verifier(&info, whole)?);
                        trusted_file = Some(TrustedFile::new(
                            Arc::clone(&file),
                            range.clone(),
                            vouched(self.verifier(&info, whole)?),
                        ));
                        Some(kept)
                    }
                    None => None,
                };
                stamped_file_stream(file, range.clone(), vouched)
            }
            GetResultPayload::Stream(stream) => stream,
        };
        let stream = stream
            .map_err(move |e| Error::from_store(&backend, &maskstore_core::shown(key.as_str()), e))
            .boxed();
        let stream = match verifier {
            Some(verifier) => verify_stream(stream, verifier),
            None => stream,
        };
        Ok(ObjectStream {
            info,
            range,
            stream,
            version,
            verifies,
            file: trusted_file,
        })
    }

    pub(super) async fn get_result(
        &self,
        key: &ObjectKey,
        options: ReadOptions,
    ) -> Result<GetResult> {
        self.get_result_with(key, options, false, false).await
    }

    /// The backend's answer to a read; with `into_memory`, the caller holds the whole range
    /// in memory, so the local provider reads it in the same call that opens the file; with
    /// `want_stamp`, the local provider says which bytes it opened (see [`FileStamp`]).
    async fn get_result_with(
        &self,
        key: &ObjectKey,
        options: ReadOptions,
        into_memory: bool,
        want_stamp: bool,
    ) -> Result<GetResult> {
        if let Some(ByteRange::Bounded(r)) = &options.range
            && r.end <= r.start
        {
            return Err(Error::InvalidRange {
                key: key.to_string(),
                detail: format!("{}..{} is empty or reversed", r.start, r.end),
            });
        }
        let options_whole = options.range.is_none();
        let suffix = matches!(options.range, Some(ByteRange::Suffix(n)) if n > 0);
        let mut get = GetOptions {
            if_match: options.if_match,
            if_none_match: options.if_none_match,
            range: options.range.map(|r| match r {
                ByteRange::Bounded(r) => GetRange::Bounded(r),
                ByteRange::From(o) => GetRange::Offset(o),
                ByteRange::Suffix(n) => GetRange::Suffix(n),
            }),
            ..Default::default()
        };
        if want_stamp {
            get.extensions.insert(crate::local::stamp::WantStamp);
        }
        if self.declared.owes_checksums && !(into_memory && self.layers.is_empty()) {
            // Only a whole read into memory of the store's own answer pays an owed checksum
            // from the bytes it holds ([`Storage::read`]); any other asks the store to.
            get.extensions.insert(crate::memory::ResolveOwed);
        }
        if into_memory && self.declared.reads_whole {
            // A whole read is verified: the provider may hash it as it reads.
            let hash = self.verify_reads && options_whole;
            get.extensions.insert(crate::local::ReadAll { hash });
        }
        let conditions = (get.if_match.clone(), get.if_none_match.clone());
        let conditional = conditions.0.is_some() || conditions.1.is_some();
        // A found (foreign) key reads too.
        match self.get_at(key, get).await {
            Err(Error::InvalidRange { .. }) if suffix => self.empty_suffix(key, conditions).await,
            Err(refused @ Error::InvalidRange { .. }) if conditional => {
                Err(self.conditions_before_range(key, conditions, refused).await)
            }
            // A range that ends before it starts names no bytes (a foreign store's answer).
            Ok(result) if result.range.end < result.range.start => Err(Error::Misbehaved {
                backend: self.backend.to_string(),
                detail: format!(
                    "a read of {} was answered with the range {}..{}, which ends before it \
                     starts",
                    maskstore_core::shown(key.as_str()),
                    result.range.start,
                    result.range.end
                ),
            }),
            other => other,
        }
    }

    /// The answer to a conditional read whose range was refused: RFC 9110 §13.2.2 judges
    /// the preconditions before the range (so does S3), where fake-gcs-server judges the
    /// range first. The same conditions are asked of a HEAD: its verdict (412, 304, or
    /// 404) is the answer, else the range's refusal stands.
    async fn conditions_before_range(
        &self,
        key: &ObjectKey,
        (if_match, if_none_match): (Option<String>, Option<String>),
        refused: Error,
    ) -> Error {
        let head = GetOptions {
            head: true,
            if_match,
            if_none_match,
            ..Default::default()
        };
        match self.get_at(key, head).await {
            Err(verdict)
                if matches!(
                    verdict.kind(),
                    ErrorKind::Precondition | ErrorKind::NotModified | ErrorKind::NotFound
                ) =>
            {
                verdict
            }
            _ => refused,
        }
    }

    /// A suffix of an empty object, which object_store cannot read: a server refuses it
    /// (SeaweedFS: 416), or answers in a form object_store refuses (moto: 200 without
    /// `Content-Range`; Azurite, fake-gcs-server: `bytes 0--1/0`), which
    /// [`crate::http_client`] turns into a 416. RFC 9110 §14.1.1 holds it satisfiable,
    /// the whole (empty) representation, so a refused suffix asks (with the same
    /// conditions) whether the object is empty: then no bytes, else the refusal stands.
    async fn empty_suffix(
        &self,
        key: &ObjectKey,
        (if_match, if_none_match): (Option<String>, Option<String>),
    ) -> Result<GetResult> {
        let head = GetOptions {
            head: true,
            if_match,
            if_none_match,
            ..Default::default()
        };
        let mut result = self.get_at(key, head).await?;
        if result.meta.size != 0 {
            return Err(Error::InvalidRange {
                key: key.to_string(),
                detail: format!(
                    "a suffix was refused although the object holds {} bytes",
                    result.meta.size
                ),
            });
        }
        result.range = 0..0;
        result.payload = GetResultPayload::Stream(futures::stream::empty().boxed());
        Ok(result)
    }

    /// What is known about the object, without its content (with the provider's own
    /// checksum when maskstore's is absent, see [`ObjectInfo::native_checksum`]).
    pub async fn head(&self, key: &ObjectKey) -> Result<ObjectInfo> {
        self.head_with(key, true).await
    }

    /// [`Storage::head`]; with `checksums`, asking the provider for its own checksum
    /// where its answer does not carry it (one more request on S3).
    async fn head_with(&self, key: &ObjectKey, checksums: bool) -> Result<ObjectInfo> {
        let path = match self.location(key)? {
            super::found::Location::Path(path) => path,
            // A found name object_store cannot hold: the provider's own HEAD.
            super::found::Location::Name(name) => {
                let options = GetOptions {
                    head: true,
                    ..Default::default()
                };
                let result = self.found_names(key)?.get(&name, options).await;
                let result = result.map_err(self.err(key))?;
                let info = info_of(key.clone(), &result.meta, &result.attributes, Source::Read);
                return Ok(info);
            }
        };
        let options = GetOptions {
            head: true,
            ..Default::default()
        };
        let result = match self.store().get_opts(&path, options).await {
            Ok(result) => result,
            // A HEAD answer has no body, so S3 cannot say whether the credentials or the
            // policy refused it; a GET's error body does.
            Err(object_store::Error::PermissionDenied { .. }) => {
                return Err(self.explain_refused_head(&path, key).await);
            }
            Err(e) => return Err(self.err(key)(e)),
        };
        self.described(key, &result, checksums).await
    }

    /// What the answer `result` to a read of `key` says of the object, with the provider's
    /// own checksum when maskstore's is absent: carried by the answer itself (GCS, Azure),
    /// or asked for (S3 returns its flexible checksums only when asked, see
    /// [`crate::providers::NativeChecksums`]) when `whole` reads and HEADs need it.
    pub(super) fn described(
        &self,
        key: &ObjectKey,
        result: &GetResult,
        whole: bool,
    ) -> impl Future<Output = Result<ObjectInfo>> + Send + '_ {
        // Described before any wait, so the future does not hold the answer (its stream is
        // not `Sync`).
        let info = info_of_answer(key.clone(), result);
        async move {
            let info = self.with_owed_paid(info).await?;
            self.with_native_checksum(info, whole).await
        }
    }

    /// `info` with an owed checksum ([`crate::memory`]) that reached this reader paid: the
    /// store pays it in every answer the facade cannot pay from the bytes it holds, when
    /// asked to, but a layer may not pass the request on (a store of its own that builds
    /// its read options afresh). The marker is no checksum, so it is never reported, and
    /// the bytes a layer passed on are no proof of what the store holds: a HEAD of the
    /// version read (if-match its etag) asks the store, which pays every HEAD from that
    /// version's own buffer. A version replaced meanwhile fails the read with
    /// [`Error::Precondition`] (read again); a store that still answers with the marker,
    /// with [`Error::Unsupported`].
    async fn with_owed_paid(&self, mut info: ObjectInfo) -> Result<ObjectInfo> {
        if !self.declared.owes_checksums
            || !info.checksum.as_deref().is_some_and(crate::memory::is_owed)
        {
            return Ok(info);
        }
        let mut head = GetOptions {
            head: true,
            if_match: info.etag.clone(),
            ..Default::default()
        };
        head.extensions.insert(crate::memory::ResolveOwed);
        let key = &info.key;
        let paid = info_of_answer(key.clone(), &self.get_at(key, head).await?).checksum;
        match paid {
            Some(paid) if !crate::memory::is_owed(&paid) => {
                info.checksum = Some(paid);
                Ok(info)
            }
            _ => Err(Error::Unsupported {
                backend: self.backend.to_string(),
                operation: format!("report the checksum of {key}"),
                detail: "a layer keeps the memory store from computing the checksum its put \
                         left owed (it drops what a read asks of the store); pass a read's \
                         options on whole, extensions included"
                    .to_string(),
            }),
        }
    }

    /// Whether the provider's own checksum of the object `info` describes is to be asked
    /// for ([`Storage::with_native_checksum`]).
    fn asks_native_checksum(&self, info: &ObjectInfo, whole: bool) -> bool {
        whole
            && info.checksum.is_none()
            && info.native_checksum.is_none()
            && info.unreadable_checksum.is_none()
            && self.extras.native.is_some()
    }

    async fn with_native_checksum(&self, mut info: ObjectInfo, whole: bool) -> Result<ObjectInfo> {
        if self.asks_native_checksum(&info, whole)
            && let Some(native) = &self.extras.native
        {
            // A name object_store cannot hold has no object_store path to ask about: such
            // an object reads unverified unless its answer carried the checksum.
            let super::found::Location::Path(path) = self.location(&info.key)? else {
                return Ok(info);
            };
            let started = std::time::Instant::now();
            let asked = native
                .checksum(&self.backend, &path, info.etag.as_deref())
                .await;
            // A request to the provider like any other: counted, and in its error rates.
            self.record_beneath(crate::layers::Operation::Head, started, &asked, 0);
            // The object itself was read: without its checksum it reads unverified (and
            // `verify` says so) rather than not at all.
            info.native_checksum = asked.unwrap_or_else(|e| {
                tracing::warn!(
                    key = %info.key,
                    error = %e,
                    "the provider's checksum of an object without maskstore's could not be \
                     read; it reads unverified"
                );
                None
            });
        }
        Ok(info)
    }

    async fn explain_refused_head(&self, path: &Path, key: &ObjectKey) -> Error {
        match self.store().get_opts(path, GetOptions::default()).await {
            Err(e) => self.err(key)(e),
            Ok(_) => Error::PermissionDenied {
                backend: self.backend.to_string(),
                provider: self.backend.provider(),
                key: key.to_string(),
                detail: "HEAD was refused (403) while GET is allowed".to_string(),
            },
        }
    }

    /// Whether an object exists at `key`.
    pub async fn exists(&self, key: &ObjectKey) -> Result<bool> {
        match self.head_with(key, false).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the object. Deleting a missing key succeeds, on every backend.
    /// A found (foreign) key deletes too.
    pub async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let path = match self.location(key)? {
            super::found::Location::Path(path) => path,
            super::found::Location::Name(name) => {
                let names = self.found_names(key)?;
                return names.delete(&name).await.map_err(self.err(key));
            }
        };
        match self.store().delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key)(e)),
        }
    }

    /// Deletes many objects (batched where the backend can); missing keys are fine.
    /// Found (foreign) keys delete too, those object_store cannot hold one by one.
    pub async fn delete_many(&self, keys: &[ObjectKey]) -> Result<()> {
        let (mut paths, mut by_name) = (Vec::with_capacity(keys.len()), Vec::new());
        for key in keys {
            match self.location(key)? {
                super::found::Location::Path(path) => paths.push(path.into_owned()),
                super::found::Location::Name(_) => by_name.push(key),
            }
        }
        let input = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut results = self.store().delete_stream(input);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::from_store(&self.backend, "(many keys)", e)),
            }
        }
        // Names only the provider's own requests reach, one by one: one that fails (a
        // `.` segment no URL can name) leaves the others deleted, and is reported.
        let mut first_failure = None;
        for key in by_name {
            if let Err(e) = self.delete(key).await {
                first_failure.get_or_insert(e);
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    /// Every object below `prefix` (default: the configured prefix), streamed.
    ///
    /// Prefixes are whole segments: `mask/a` lists `mask/a/…`, never `mask/ab`. The order
    /// is unspecified (S3 sorts, other engines do not); collect and sort when order matters.
    ///
    /// A name another tool wrote that is not a valid key is listed too, as a found key
    /// ([`ObjectKey::foreign`] says why): one such name never ends a listing.
    pub fn list(&self, prefix: Option<&str>) -> Result<BoxStream<'static, Result<ObjectInfo>>> {
        let folder = self.folder(prefix)?;
        Ok(self.list_found(&folder))
    }

    /// One level below `prefix`: the objects there and the folders below it, both sorted.
    /// Names that are not valid keys are listed as found keys; a name object_store cannot
    /// hold fails this listing (use [`Storage::list`], which goes on past it).
    pub async fn list_with_delimiter(&self, prefix: Option<&str>) -> Result<Listing> {
        let folder = self.folder(prefix)?;
        let result = self
            .store
            .list_with_delimiter(Some(&folder))
            .await
            .map_err(self.err(&folder))?;
        let mut objects = result
            .objects
            .iter()
            // The folder itself is no object at its own level: SeaweedFS lists the
            // directory left by a deleted object (`a/b/` listed as `a/b`, 0 bytes), and an
            // S3 console's folder marker `a/b/` reads the same (history
            // `tests/contract/model/histories/folder-of-a-deleted-empty-object.json`).
            .filter(|meta| meta.location != folder)
            .map(|meta| {
                let key = ObjectKey::found(meta.location.as_ref())?;
                Ok(info_of(key, meta, &Attributes::new(), Source::Listing))
            })
            .collect::<Result<Vec<_>>>()?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        let folders = if self.declared.verify_folders {
            self.folders_holding_objects(result.common_prefixes).await?
        } else {
            result.common_prefixes
        };
        let mut prefixes: Vec<String> = folders.iter().map(|p| format!("{p}/")).collect();
        prefixes.sort();
        Ok(Listing { objects, prefixes })
    }

    /// The folders that still hold at least one object. Engines with real directories
    /// (SeaweedFS) keep a folder after its last object is deleted; S3 never lists one.
    async fn folders_holding_objects(&self, folders: Vec<Path>) -> Result<Vec<Path>> {
        let checks = folders.into_iter().map(|folder| async move {
            match self.store().list(Some(&folder)).next().await {
                None => Ok(None),
                // A name object_store cannot hold is an object all the same.
                Some(Ok(_) | Err(object_store::Error::InvalidPath { .. })) => Ok(Some(folder)),
                Some(Err(e)) => Err(Error::from_store(&self.backend, folder.as_ref(), e)),
            }
        });
        let kept: Vec<Option<Path>> = futures::stream::iter(checks)
            .buffered(16)
            .try_collect()
            .await?;
        Ok(kept.into_iter().flatten().collect())
    }

    /// Copies `from` to `to` (content, content type and metadata), replacing any object
    /// at `to`.
    pub async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        let (src, dst) = (self.source_path(from)?, self.path(to)?);
        if from == to {
            return self.onto_itself(from, false).await;
        }
        let result = self.store().copy(&src, &dst).await;
        result.map_err(|e| self.pair_err(from, to, e))
    }

    /// Copies `from` to `to` only if `to` does not exist; else [`Error::AlreadyExists`].
    ///
    /// Where the backend has no conditional copy (plain S3), the object is read and written
    /// back with a create-only put, which S3 checks atomically.
    pub async fn copy_if_absent(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        let (src, dst) = (self.source_path(from)?, self.path(to)?);
        if from == to {
            return self.onto_itself(from, true).await;
        }
        match self.store().copy_if_not_exists(&src, &dst).await {
            Ok(()) => Ok(()),
            Err(
                object_store::Error::NotSupported { .. }
                | object_store::Error::NotImplemented { .. },
            ) => {
                let source = self.store().get(&src).await.map_err(self.err(from))?;
                let attributes = source.attributes.clone();
                let data = source.bytes().await.map_err(self.err(from))?;
                let opts = PutOptions {
                    mode: PutMode::Create,
                    attributes,
                    ..Default::default()
                };
                self.store
                    .put_opts(&dst, data.into(), opts)
                    .await
                    .map(|_| ())
                    .map_err(self.err(to))
            }
            Err(e) => Err(self.pair_err(from, to, e)),
        }
    }

    /// Moves `from` to `to`, replacing any object at `to`.
    pub async fn rename(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        let (src, dst) = (self.source_path(from)?, self.path(to)?);
        if from == to {
            return self.onto_itself(from, false).await;
        }
        let result = self.store().rename(&src, &dst).await;
        result.map_err(|e| self.pair_err(from, to, e))
    }

    /// Moves `from` to `to` only if `to` does not exist; else [`Error::AlreadyExists`] and
    /// `from` stays where it is.
    pub async fn rename_if_absent(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        self.copy_if_absent(from, to).await?;
        self.delete(from).await
    }

    /// Where the source of a copy or rename is: a found (foreign) key too, so that an
    /// object another tool named can be given a valid key, when object_store can hold it.
    fn source_path(&self, key: &ObjectKey) -> Result<Path> {
        match self.location(key)? {
            super::found::Location::Path(path) => Ok(path.into_owned()),
            super::found::Location::Name(_) => Err(Error::Unsupported {
                backend: self.backend.to_string(),
                operation: format!("copy or rename the object named {key}"),
                detail: "object_store cannot hold this name; read it (get) and put the bytes \
                         under a valid key"
                    .to_string(),
            }),
        }
    }

    /// A copy or rename of `key` onto itself keeps the object (object_store's memory store
    /// would delete it on rename, S3 refuses a plain self-copy): the key must exist, and a
    /// create-only one finds it taken.
    async fn onto_itself(&self, key: &ObjectKey, create_only: bool) -> Result<()> {
        self.head(key).await?;
        if create_only {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        Ok(())
    }

    /// Maps an error of a two-key operation to the key it is about.
    fn pair_err(&self, from: &ObjectKey, to: &ObjectKey, e: object_store::Error) -> Error {
        match e {
            object_store::Error::AlreadyExists { .. } => Error::AlreadyExists {
                key: to.to_string(),
            },
            other => Error::from_store(&self.backend, from.as_str(), other),
        }
    }
}

/// The bytes of a whole answer: a stream's collected here (one chunk, the memory
/// provider's buffer, as it came), a file's read by [`file_bytes`].
async fn whole_bytes(result: GetResult) -> object_store::Result<Bytes> {
    match result.payload {
        GetResultPayload::Stream(stream) => {
            let expected = usize::try_from(result.range.end.saturating_sub(result.range.start));
            let expected = expected.unwrap_or(0);
            collect_hashing(stream, expected, |_| {}).await
        }
        GetResultPayload::File(file, path) => {
            Ok(file_bytes(file, path, result.range, None).await?.0)
        }
    }
}

/// The bytes of `range` of `file` (at `path`), a store's answer of the open file, read in
/// a blocking task into memory of their own ([`crate::local::file_io::read_whole`]: huge
/// pages from 2 MiB) and handed block by block to `verifier`, which is given back, while
/// still in the CPU's cache. (`GetResult::bytes` reads into a growing vector of small
/// pages, and its stream 8 KiB at a time: 64 MiB read 5x slower, `-- paired`.)
async fn file_bytes(
    file: std::fs::File,
    path: std::path::PathBuf,
    range: std::ops::Range<u64>,
    mut verifier: Option<crate::checksum::Verifier>,
) -> object_store::Result<(Bytes, Option<crate::checksum::Verifier>)> {
    let failed = move |source: std::io::Error| {
        // Only a file that ended early was changed by someone else; any other error (the
        // disk's, a descriptor not open for reading) is told as it is.
        let changed = match source.kind() {
            std::io::ErrorKind::UnexpectedEof => " (it changed while it was read)",
            _ => "",
        };
        let path = maskstore_core::shown(&path.to_string_lossy()).into_owned();
        object_store::Error::Generic {
            store: "local file",
            source: format!("{path}: {source}{changed}").into(),
        }
    };
    let Ok(len) = usize::try_from(range.end.saturating_sub(range.start)) else {
        return Err(failed(std::io::Error::other(
            "its range does not fit in memory",
        )));
    };
    let read = move || {
        let (file, start) = (&file, range.start);
        let data = match verifier.as_mut() {
            Some(v) => read_whole(file, start, len, Some(&mut |block: &[u8]| v.update(block))),
            None => read_whole(file, start, len, None),
        };
        data.map(|data| (data, verifier)).map_err(&failed)
    };
    // Outside a tokio runtime (a foreign store driven by another executor) it reads here,
    // as object_store's own `GetResult::bytes` does.
    super::off_the_runtime_thread(read)
        .await
        .map_err(|joined| object_store::Error::JoinError { source: joined })?
}

/// Whether `a` and `b` are the same buffer (address and length), not equal bytes.
fn same_buffer(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// The bytes of `stream` in one buffer, `inspect` seeing each chunk as it arrives. A
/// single chunk is returned as it came (no copy); more are copied into a buffer sized for
/// `expected` bytes (the length the server announced; a reservation the allocator refuses
/// falls back to growing as the bytes come).
async fn collect_hashing(
    mut stream: BoxStream<'static, object_store::Result<Bytes>>,
    expected: usize,
    mut inspect: impl FnMut(&[u8]),
) -> object_store::Result<Bytes> {
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        inspect(&chunk);
        if joined.is_empty() {
            match first.take() {
                None => {
                    first = Some(chunk);
                    continue;
                }
                Some(held) => {
                    let wanted = expected.max(held.len() + chunk.len());
                    if joined.try_reserve_exact(wanted).is_err() {
                        joined.reserve(held.len() + chunk.len());
                    }
                    joined.extend_from_slice(&held);
                }
            }
        }
        joined.extend_from_slice(&chunk);
    }
    Ok(match first {
        Some(only) => only,
        None => Bytes::from(joined),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_whole_read_collects_every_chunk_in_order_each_seen_once_and_stops_at_an_error() {
        let stream = |parts: Vec<object_store::Result<Bytes>>| futures::stream::iter(parts).boxed();
        let ok = |b: &'static [u8]| Ok(Bytes::from_static(b));
        // One chunk comes back as it came, without a copy.
        let only = Bytes::from_static(b"only");
        let got = collect_hashing(stream(vec![Ok(only.clone())]), 4, |_| {})
            .await
            .unwrap();
        assert_eq!(got.as_ptr(), only.as_ptr());
        // Several, empty ones among them, whatever length the server announced.
        for expected in [0, 3, 9, 1 << 40] {
            let mut seen = Vec::new();
            let got = collect_hashing(
                stream(vec![
                    ok(b""),
                    ok(b"ab"),
                    ok(b""),
                    ok(b"cde"),
                    ok(b"f"),
                    ok(b""),
                ]),
                expected,
                |c| seen.extend_from_slice(c),
            )
            .await
            .unwrap();
            assert_eq!(got.as_ref(), b"abcdef", "{expected}");
            assert_eq!(seen, b"abcdef");
        }
        let got = collect_hashing(stream(vec![ok(b""), ok(b"")]), 0, |_| {})
            .await
            .unwrap();
        assert!(got.is_empty());
        let got = collect_hashing(stream(vec![]), 0, |_| {}).await.unwrap();
        assert!(got.is_empty());
        // An error mid-stream is the result, not a short buffer.
        let failed = collect_hashing(
            stream(vec![
                ok(b"ab"),
                Err(object_store::Error::Generic {
                    store: "S3",
                    source: "connection reset".into(),
                }),
                ok(b"cd"),
            ]),
            4,
            |_| {},
        )
        .await;
        assert!(matches!(failed, Err(object_store::Error::Generic { .. })));
    }

    #[tokio::test]
    async fn a_put_stores_its_checksum_whether_or_not_the_store_hashes_as_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let data = Bytes::from((0..700_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let want = crate::checksum::checksum_of(ChecksumAlgorithm::Crc64Nvme, &data);
        // The local provider hashes each slice as it writes it.
        let local = Storage::connect(&maskstore_core::Config::local(dir.path().join("data")))
            .unwrap()
            .with_checksum(ChecksumAlgorithm::Crc64Nvme);
        // A store declared to hash as it writes that ignores the request: the checksum is
        // stored by a conditional rewrite instead.
        let built = crate::providers::Built {
            store: std::sync::Arc::new(object_store::memory::InMemory::new()),
            urls: crate::storage::UrlSigner::None,
            declared: crate::providers::Declared {
                hashes_on_write: true,
                ..crate::providers::Declared::PLAIN
            },
            extras: crate::providers::Extras::default(),
        };
        let bare = Storage::assemble(
            built,
            crate::providers::Backend::foreign("deaf"),
            "mask/".parse().unwrap(),
            Storage::memory().monitor().clone(),
            maskstore_core::TtlPolicy::default(),
        )
        .with_checksum(ChecksumAlgorithm::Crc64Nvme);
        for storage in [local, bare] {
            let key = storage.key("hashed.bin").unwrap();
            storage.put(&key, data.clone()).await.unwrap();
            assert_eq!(storage.head(&key).await.unwrap().checksum, want);
            assert_eq!(storage.get(&key).await.unwrap().data, data);
        }
    }

    /// A store that answers a read with its open file (the local provider wrapped by
    /// `from_object_store`, which is not told `ReadAll`; object_store's `LocalFileSystem`)
    /// is read by `file_bytes`: exact bytes and ranges at every size around the huge-page
    /// threshold (the local provider answers up to 256 KiB itself, `LocalFileSystem` hands
    /// back even an empty file), memory of its own from 2 MiB (page-aligned, which
    /// `GetResult::bytes` does not give), every block hashed (a flipped last byte is
    /// corrupt), and a file shorter than its answer said is an error naming the file.
    #[tokio::test]
    async fn a_store_answering_with_its_open_file_is_read_whole_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let local = crate::local::LocalStore::open(dir.path().join("local"), false).unwrap();
        let plain = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let wrapped = |store: Arc<dyn ObjectStore>, checksum| {
            Storage::from_object_store(store, "wrapped", "mask/".parse().unwrap())
                .with_checksum(checksum)
        };
        let local = wrapped(Arc::new(local), ChecksumAlgorithm::Crc64Nvme);
        let plain = wrapped(Arc::new(plain), ChecksumAlgorithm::None);
        let huge = crate::local::file_io::HUGE_FROM;
        for size in [0, 1, 300_000, huge - 1, huge, huge + 257 * 1024 + 3] {
            let data: Bytes = (0..size).map(|i| (i * 7 + i / 4096) as u8).collect();
            let key = local.key(&format!("sized/{size}.bin")).unwrap();
            local.put(&key, data.clone()).await.unwrap();
            // object_store's own files hold no checksum: written as they are.
            std::fs::create_dir_all(dir.path().join("mask/sized")).unwrap();
            std::fs::write(dir.path().join(format!("mask/sized/{size}.bin")), &data).unwrap();
            for storage in [&local, &plain] {
                let read = storage.get(&key).await.unwrap();
                assert!(read.data == data, "{size} bytes read back changed");
                assert_eq!((read.range, read.info.size), (0..size as u64, size as u64));
                if size >= huge {
                    assert_eq!(read.data.as_ptr() as usize % 4096, 0, "{size}: not its own");
                }
                let s = size as u64;
                for (asked, want) in [
                    (ByteRange::Bounded(s / 3..s / 3 + 1), s / 3..s / 3 + 1),
                    (
                        ByteRange::Bounded(s.saturating_sub(1)..s + 1000),
                        s.saturating_sub(1)..s,
                    ),
                    (ByteRange::From(s / 2), s / 2..s),
                    (ByteRange::Suffix(s / 2 + 1), s - (s / 2 + 1).min(s)..s),
                    (ByteRange::Suffix(s + 10), 0..s),
                ] {
                    let Ok(read) = storage.get_range(&key, asked.clone()).await else {
                        assert_eq!(size, 0, "{asked:?} of {size} bytes refused");
                        continue;
                    };
                    let (from, to) = (want.start as usize, want.end as usize);
                    assert!(read.data == data[from..to], "{asked:?} of {size} bytes");
                    assert_eq!((read.range, read.info.size), (want, s), "{asked:?}");
                }
            }
            if size == 0 {
                continue;
            }
            // The last byte flipped in place: only a hash of every block finds it.
            let path = dir.path().join(format!("local/mask/sized/{size}.bin"));
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            use std::os::unix::fs::FileExt;
            file.write_all_at(&[data[size - 1] ^ 0x20], (size - 1) as u64)
                .unwrap();
            let err = local.get(&key).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{size} bytes: {err}");
        }
        // A file that ends before the range its answer named (cut by another program).
        let path = dir.path().join("short\x1b.bin");
        std::fs::write(&path, vec![1u8; huge + 10]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let range = 0..(huge as u64 + 4096);
        let Err(err) = file_bytes(file, path.clone(), range, None).await else {
            panic!("a file 4,086 bytes short was read whole");
        };
        let err = err.to_string();
        assert!(err.contains("4086 bytes early"), "{err}");
        assert!(
            err.contains(r"short\u{1b}.bin") && !err.contains('\x1b'),
            "{err}"
        );
        assert!(err.contains("it changed while it was read"), "{err}");
        // Another read error is told as it is, not as a change by someone else.
        let unreadable = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let Err(err) = file_bytes(unreadable, path, 0..10, None).await else {
            panic!("a descriptor open only for writing was read");
        };
        let err = err.to_string();
        assert!(err.contains("short") && !err.contains("changed"), "{err}");
    }

    /// Outside a tokio runtime (another executor driving a foreign store) a file answer is
    /// read where it is polled, as object_store's `GetResult::bytes` reads it, not a panic.
    #[test]
    fn a_file_answer_is_read_outside_a_tokio_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("whole.bin");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let read = futures::executor::block_on(file_bytes(file, path, 5..2_999_990, None));
        let Ok((read, None)) = read else {
            panic!("the read failed or came back with a verifier");
        };
        assert!(read == data[5..2_999_990], "the range read back changed");
    }

    /// A store (here a layer) whose answer names a range that ends before it starts is
    /// refused as misbehaving by every read, of a stream (memory) or of an open file
    /// (local): no panic on the length, no bytes passed on.
    #[tokio::test]
    async fn a_read_answered_with_a_reversed_range_is_refused() {
        use futures::FutureExt;
        use futures::future::BoxFuture;
        #[derive(Debug, Clone)]
        struct Reversed;
        impl crate::layers::Intercept for Reversed {
            fn name(&self) -> &str {
                "reversed"
            }
            fn get<'a>(
                &'a self,
                _call: crate::layers::Call<'a>,
                run: BoxFuture<'a, object_store::Result<GetResult>>,
            ) -> BoxFuture<'a, object_store::Result<GetResult>> {
                run.map(|answer| {
                    answer.map(|mut result| {
                        result.range = result.range.end..result.range.start;
                        result
                    })
                })
                .boxed()
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let local =
            Storage::connect(&maskstore_core::Config::local(dir.path().join("data"))).unwrap();
        for storage in [Storage::memory(), local] {
            let key = storage.key("reversed.bin").unwrap();
            storage.put(&key, vec![5u8; 3_000_000]).await.unwrap();
            let storage = storage.layer(Reversed);
            let file = tempfile::tempfile().unwrap();
            let errors = [
                storage.get(&key).await.map(drop),
                storage.get_range(&key, 10..20).await.map(drop),
                storage.get_stream(&key).await.map(drop),
                storage.read_to_file(&key, &file, |_, _| {}).await.map(drop),
            ];
            for (i, error) in errors.into_iter().enumerate() {
                let Err(error @ Error::Misbehaved { .. }) = error else {
                    panic!("read {i} of {storage:?} was not refused: {error:?}");
                };
                assert!(
                    error.to_string().contains("ends before it starts"),
                    "{error}"
                );
            }
        }
    }
}
