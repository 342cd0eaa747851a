//! The memory provider's store: object_store's `InMemory`, which also keeps, for each
//! object, the checksum of the very bytes it holds ([`KeptChecksums`]), so that a
//! verified read does not hash them again.
//!
//! Bytes in memory cannot rot, and `Bytes` cannot change once shared, so a checksum
//! computed over a buffer stays true of that buffer for as long as it lives. The store
//! keeps it with a handle on the buffer it describes, and the facade uses it for a read
//! only when the read handed out that same buffer (same address and length): a write that
//! bypassed the record, or a layer that replaced the bytes on their way in or out, leaves
//! the addresses unequal, and the bytes are hashed as before. The checksum kept is compared
//! with the one stored in the object's attributes as every verified read compares it, so a
//! layer that altered the stored checksum is caught too.
//!
//! A put through the facade does not hash at all: it stores [`owed`] (`crc64nvme:owed`)
//! as the object's checksum, with the bytes, in one `InMemory` entry, so the debt is bound
//! to that version and no other. It is paid the first time anything asks: a read that is
//! not a whole one (a HEAD, a range) is answered here from the version's whole buffer, its
//! checksum computed (or taken from those kept) and reported in place of the marker; a
//! whole read is `InMemory`'s own, passed on as it is, and the facade, which holds the
//! bytes, pays it the same way ([`KeptChecksums::checksum_of`]), or asks the store to
//! with [`ResolveOwed`] when layers stand between (they may have replaced the bytes). A
//! copy or rename carries the marker with the buffer it shares, so it resolves to the same
//! checksum. Only the facade owes, and only without layers: a layer may replace the bytes
//! on their way in, where the eager checksum was of the caller's bytes. A layer that does
//! not pass [`ResolveOwed`] on (a store of its own building read options afresh) hands the
//! facade the marker: it then asks with a HEAD of the version read, which this store pays
//! whatever it carries, so the marker is never reported and an intact object never called
//! corrupt. Only the exact markers [`owed`] writes are owed: another tool's value that
//! merely ends in `:owed` is reported as stored.
//!
//! The checksum kept comes from the first read that paid an owed one, from a put made
//! through layers (hashed then, and kept once it succeeded), or from the first verified
//! read of a buffer no put vouched for (a multipart upload's, one written through the raw
//! object_store), and stays for the next. Neither the request nor the answer of a whole
//! read carries it: the facade asks the kept checksums beside the store's answer, so a
//! memory read is `InMemory`'s read, passed on as it is.

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions, Result, UploadPart,
};

use maskstore_core::ChecksumAlgorithm;

use crate::checksum::{CHECKSUM_METADATA, Hasher};

/// What a put that leaves its checksum owed stores as [`CHECKSUM_METADATA`]: the
/// algorithm, and `owed` where a digest would be (no digest's base64 is four characters,
/// so no checksum reads as one). `None` for no checksum.
pub(crate) fn owed(algorithm: ChecksumAlgorithm) -> Option<&'static str> {
    match algorithm {
        ChecksumAlgorithm::Sha256 => Some("sha256:owed"),
        ChecksumAlgorithm::Crc64Nvme => Some("crc64nvme:owed"),
        ChecksumAlgorithm::None => None,
    }
}

/// Whether `stored` is an owed checksum ([`owed`]), still to be computed: exactly a marker
/// maskstore writes. Another tool's value that only ends like one (`md5:owed`,
/// `sha256:abc:owed`) is reported as stored, as any foreign value, never paid.
pub(crate) fn is_owed(stored: &str) -> bool {
    matches!(stored, "crc64nvme:owed" | "sha256:owed")
}

/// Asks the memory store to answer a whole read with an owed checksum paid, as it answers
/// every other read: for a reader that cannot pay it from the bytes it gets (layers stand
/// between, or it streams them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResolveOwed;

/// A buffer and the checksum of its bytes.
#[derive(Debug, Clone)]
struct Vouched {
    data: Bytes,
    checksum: KeptSum,
}

/// A checksum's stored form (`crc64nvme:<base64>`), held inline: keeping one costs a put
/// no allocation, and handing it to a read a copy.
#[derive(Clone, Copy)]
pub(crate) struct KeptSum(arrayvec::ArrayString<{ KeptSum::MAX }>);

impl KeptSum {
    /// Longer than any checksum's stored form (SHA-256's is 51 bytes).
    pub(crate) const MAX: usize = 64;

    /// `checksum`, unless it is longer than [`KeptSum::MAX`] (then it is not kept, and
    /// reads hash the bytes).
    pub(crate) fn new(checksum: &str) -> Option<KeptSum> {
        arrayvec::ArrayString::from(checksum).ok().map(KeptSum)
    }

    /// The text's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The text (no UTF-8 check: it was a `str` when kept).
    pub(crate) fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Debug for KeptSum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

fn same_buffer(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// By path: the checksum of the buffer last known to be stored there; `None` while the
/// object is written by a path that vouches for nothing yet (the path stays, so the next
/// put that vouches does not allocate it again). A path is entered when a write to it
/// starts and leaves with its object, so no checksum (nor the buffer it holds) outlives a
/// deleted object.
type Sums = std::collections::HashMap<Path, Option<Vouched>, foldhash::fast::RandomState>;

/// The checksums of the buffers a memory store holds, shared by the store (which forgets
/// one when its object changes) and the facade (which keeps the checksum a put computed,
/// and asks for it on a verified read). Every entry is true of its own buffer, whatever
/// the path holds now: it is used only for that buffer.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeptChecksums(Arc<Mutex<Sums>>);

impl KeptChecksums {
    fn sums(&self) -> MutexGuard<'_, Sums> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `checksum`, computed over `data`, as the checksum of the buffer written at
    /// `location`, if a write there is still known ([`KeptChecksums::written`]): a delete
    /// that landed since forgot the path, and nothing is kept of the bytes it removed.
    pub(crate) fn keep(&self, location: &Path, data: Bytes, checksum: KeptSum) {
        self.update(location, Some(Vouched { data, checksum }));
    }

    /// Records that `location` is being written: nothing vouches for its new buffer yet.
    /// Only a path entered here (or by a copy or rename) can have a checksum kept, so a
    /// put or read that finishes after a delete keeps nothing for the deleted object.
    fn written(&self, location: &Path) {
        let mut sums = self.sums();
        match sums.get_mut(location) {
            // The path is kept, not cloned again.
            Some(kept) => *kept = None,
            None => drop(sums.insert(location.clone(), None)),
        }
    }

    /// Leaves `location`, entered for a write (put, copy, rename) that failed with `error`,
    /// unless the refusal says an object is there (its path stays entered): a copy from a
    /// missing object, or a put a layer refused before it ran, holds no path.
    pub(crate) fn refused(&self, location: &Path, error: &object_store::Error) {
        if matches!(
            error,
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
        ) {
            return;
        }
        let mut sums = self.sums();
        if let Some(None) = sums.get(location) {
            sums.remove(location);
        }
    }

    /// Records `sum` as what is known of the buffer at `location`, if the path is known.
    fn update(&self, location: &Path, sum: Option<Vouched>) {
        if let Some(kept) = self.sums().get_mut(location) {
            *kept = sum;
        }
    }

    /// The checksum of `data`, read whole at `location`, with the algorithm of `stored`:
    /// the one kept for this very buffer, else computed now and kept. `None` when `stored`
    /// names no algorithm this build computes (the facade reports that).
    pub(crate) fn checksum_of(
        &self,
        location: &Path,
        data: &Bytes,
        stored: &str,
    ) -> Option<KeptSum> {
        // The algorithm's name and its `:`, compared as bytes (a read of an owed checksum
        // comes here each time: no UTF-8 or char-boundary checks).
        let same_algorithm = |kept: &[u8]| {
            kept.iter()
                .position(|&b| b == b':')
                .is_some_and(|n| stored.as_bytes().get(..=n) == Some(&kept[..=n]))
        };
        if let Some(Some(kept)) = self.sums().get(location)
            && same_buffer(&kept.data, data)
            && (kept.checksum.as_bytes() == stored.as_bytes()
                || same_algorithm(kept.checksum.as_bytes()))
        {
            return Some(kept.checksum);
        }
        let mut hasher = Hasher::for_stored(stored)?;
        hasher.update(data);
        let checksum = KeptSum::new(&hasher.finish())?;
        self.keep(location, data.clone(), checksum);
        Some(checksum)
    }

    /// Pays an owed checksum in `attributes`, those of the object whose whole buffer
    /// `data` is: the checksum of `data`, kept or computed now (and kept), in place of the
    /// marker. Anything else there stays as it is.
    fn resolve(&self, location: &Path, data: &Bytes, attributes: &mut Attributes) {
        let name = Attribute::Metadata(CHECKSUM_METADATA.into());
        let paid = match attributes.get(&name) {
            Some(stored) if is_owed(stored) => self.checksum_of(location, data, stored),
            _ => return,
        };
        if let Some(sum) = paid {
            attributes.insert(name, sum.as_str().to_string().into());
        }
    }

    /// Whether paying the owed checksum `attributes` may hold, for the buffer `data` at
    /// `location`, hashes it: owed, and nothing kept of this very buffer.
    fn must_hash(&self, location: &Path, data: &Bytes, attributes: &Attributes) -> bool {
        let name = Attribute::Metadata(CHECKSUM_METADATA.into());
        attributes.get(&name).is_some_and(|stored| is_owed(stored))
            && !self
                .get(location)
                .is_some_and(|kept| same_buffer(&kept.data, data))
    }

    /// What is known of the buffer at `location` (a copy's source shares it).
    fn get(&self, location: &Path) -> Option<Vouched> {
        self.sums().get(location).cloned().flatten()
    }

    /// Forgets the path entirely (its object is gone).
    fn remove(&self, location: &Path) -> Option<Vouched> {
        self.sums().remove(location).flatten()
    }
}

/// The memory provider's store (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    inner: InMemory,
    kept: KeptChecksums,
}

impl std::fmt::Display for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Memory({})", self.inner)
    }
}

impl MemoryStore {
    /// The checksums this store keeps, for the facade.
    pub(crate) fn kept(&self) -> &KeptChecksums {
        &self.kept
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for MemoryStore {
    // Written out rather than `async fn`, as `get_opts`. The buffer kept is forgotten
    // (and the path entered, see [`Sums`]) before the write, so the store's future is `InMemory`'s own: a read between the two
    // may keep the old buffer's checksum again, which stays true of that buffer (and is
    // replaced by the facade's, once its put returns).
    fn put_opts<'a, 'b, 'c>(
        &'a self,
        location: &'b Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> BoxFuture<'c, Result<PutResult>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        // Nothing vouches for the new buffer until the facade keeps the checksum its put
        // computed. An update succeeds only over an object, whose path is entered already:
        // one refused for want of an object enters nothing.
        match opts.mode {
            PutMode::Update(_) => self.kept.update(location, None),
            PutMode::Overwrite | PutMode::Create => self.kept.written(location),
        }
        self.inner.put_opts(location, payload, opts)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(Upload {
            inner: upload,
            location: location.clone(),
            kept: self.kept.clone(),
        }))
    }

    // Written out rather than `async fn`: a whole read's future is `InMemory`'s, returned
    // as it is, not boxed once more around it (the facade pays an owed checksum from the
    // bytes it reads); every other read is answered with any owed checksum paid.
    fn get_opts<'a, 'b, 'c>(
        &'a self,
        location: &'b Path,
        options: GetOptions,
    ) -> BoxFuture<'c, Result<GetResult>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        if options.range.is_none()
            && !options.head
            && options.extensions.get::<ResolveOwed>().is_none()
        {
            return self.inner.get_opts(location, options);
        }
        Box::pin(self.get_paid(location, options))
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let kept = self.kept.clone();
        self.inner
            .delete_stream(locations)
            .inspect(move |deleted| {
                if let Ok(path) = deleted {
                    kept.remove(path);
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.kept.written(to);
        if let Err(e) = self.inner.copy_opts(from, to, options).await {
            self.kept.refused(to, &e);
            return Err(e);
        }
        // `InMemory` copies share the buffer: its checksum holds for the copy.
        self.kept.update(to, self.kept.get(from));
        Ok(())
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.kept.written(to);
        if let Err(e) = self.inner.rename_opts(from, to, options).await {
            self.kept.refused(to, &e);
            return Err(e);
        }
        let moved = self.kept.remove(from);
        self.kept.update(to, moved);
        Ok(())
    }
}

impl MemoryStore {
    /// A read answered from the whole buffer of the version read, in one `InMemory` read
    /// (so with that version's own attributes and conditions): any owed checksum paid,
    /// then the range asked for cut from it, as `InMemory` cuts it.
    async fn get_paid(&self, location: &Path, mut options: GetOptions) -> Result<GetResult> {
        let range = options.range.take();
        let mut result = self.inner.get_opts(location, options).await?;
        let empty = GetResultPayload::Stream(futures::stream::empty().boxed());
        let whole = match std::mem::replace(&mut result.payload, empty) {
            GetResultPayload::Stream(stream) => {
                object_store::collect_bytes(stream, Some(result.meta.size)).await?
            }
            GetResultPayload::File(..) => {
                return Err(object_store::Error::NotImplemented {
                    operation: "a read of the memory store answered with a file".to_string(),
                    implementer: "InMemory".to_string(),
                });
            }
        };
        if whole.len() < crate::checksum::HASH_TURN
            || !self.kept.must_hash(location, &whole, &result.attributes)
        {
            self.kept.resolve(location, &whole, &mut result.attributes);
        } else {
            // A large hash waits in a blocking task, off the runtime's thread (0.76 s at
            // 512 MiB with sha256, which the gateway's other requests on it waited for).
            let (kept, path, bytes) = (self.kept.clone(), location.clone(), whole.clone());
            let mut attributes = std::mem::take(&mut result.attributes);
            let resolve = move || {
                kept.resolve(&path, &bytes, &mut attributes);
                attributes
            };
            result.attributes = crate::storage::off_the_runtime_thread(resolve)
                .await
                .map_err(|joined| object_store::Error::JoinError { source: joined })?;
        }
        let data = match range {
            None => whole,
            Some(range) => {
                let r = range.as_range(whole.len() as u64).map_err(|source| {
                    object_store::Error::Generic {
                        store: "InMemory",
                        source: Box::new(source),
                    }
                })?;
                result.range = r.clone();
                // Within the buffer: `as_range` keeps a range within the length given.
                whole.slice(r.start as usize..r.end as usize)
            }
        };
        result.payload =
            GetResultPayload::Stream(futures::stream::once(async move { Ok(data) }).boxed());
        Ok(result)
    }
}

/// A multipart upload to the memory store: its completion replaces the object, and with
/// it the checksum kept for the path.
#[derive(Debug)]
struct Upload {
    inner: Box<dyn MultipartUpload>,
    location: Path,
    kept: KeptChecksums,
}

#[async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.kept.written(&self.location);
        let result = self.inner.complete().await?;
        Ok(result)
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::CHECKSUM_METADATA;
    use crate::layers::Layer;
    use crate::{ByteRange, Error, ReadOptions, Storage, WriteOptions, checksum_of};
    use futures::TryStreamExt;
    use maskstore_core::ChecksumAlgorithm;
    use object_store::{Attribute, GetResultPayload};

    /// A memory storage and its store, to look at what the store keeps.
    fn memory() -> (Storage, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::default());
        let built = crate::providers::Built {
            store: Arc::clone(&store) as Arc<dyn ObjectStore>,
            urls: crate::storage::UrlSigner::None,
            // As the memory provider declares itself: its puts leave their checksum owed.
            declared: crate::providers::Declared {
                owes_checksums: true,
                ..crate::providers::Declared::PLAIN
            },
            extras: crate::providers::Extras {
                kept: Some(store.kept().clone()),
                ..Default::default()
            },
        };
        let storage = Storage::assemble(
            built,
            crate::providers::Backend::foreign("memory"),
            "mask/".parse().unwrap(),
            Storage::memory().monitor().clone(),
            maskstore_core::TtlPolicy::default(),
        )
        .with_checksum(ChecksumAlgorithm::Crc64Nvme);
        (storage, store)
    }

    fn kept(store: &MemoryStore, key: &str) -> Option<String> {
        store
            .kept
            .get(&Path::from(key))
            .map(|v| v.checksum.as_str().to_string())
    }

    fn bytes(n: usize, seed: u8) -> Bytes {
        Bytes::from(
            (0..n)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect::<Vec<u8>>(),
        )
    }

    /// What `InMemory` itself holds as the checksum of the object at `key`.
    async fn stored(store: &MemoryStore, key: &str) -> Option<String> {
        let path = Path::from(key);
        let answer = store.inner.get_opts(&path, GetOptions::default());
        let attributes = answer.await.unwrap().attributes;
        let name = Attribute::Metadata(CHECKSUM_METADATA.into());
        attributes.get(&name).map(|value| value.to_string())
    }

    #[tokio::test]
    async fn the_checksum_kept_with_an_object_is_its_bytes_after_every_write_path() {
        let (s, store) = memory();
        let want = |data: &[u8]| checksum_of(ChecksumAlgorithm::Crc64Nvme, data);
        let (a, b) = (bytes(5000, 1), bytes(7000, 2));
        let k = s.key("a.bin").unwrap();
        s.put(&k, a.clone()).await.unwrap();
        // Owed by the put (nothing hashed, the marker stored with the bytes), paid by the
        // first ask, then kept.
        assert_eq!(kept(&store, "mask/a.bin"), None);
        assert_eq!(
            stored(&store, "mask/a.bin").await.unwrap(),
            "crc64nvme:owed"
        );
        assert_eq!(s.head(&k).await.unwrap().checksum, want(&a));
        assert_eq!(kept(&store, "mask/a.bin"), want(&a));
        s.put(&k, b.clone()).await.unwrap();
        assert_eq!(kept(&store, "mask/a.bin"), None, "an overwrite forgets it");
        assert_eq!(s.get(&k).await.unwrap().info.checksum, want(&b));
        assert_eq!(kept(&store, "mask/a.bin"), want(&b));
        let copied = s.key("copied.bin").unwrap();
        s.copy(&k, &copied).await.unwrap();
        assert_eq!(kept(&store, "mask/copied.bin"), want(&b));
        let renamed = s.key("renamed.bin").unwrap();
        s.rename(&copied, &renamed).await.unwrap();
        assert_eq!(kept(&store, "mask/copied.bin"), None);
        assert_eq!(kept(&store, "mask/renamed.bin"), want(&b));
        // A multipart upload's bytes are hashed on their first verified read, then kept.
        let big = s.key("multipart.bin").unwrap();
        let body = bytes(s.multipart_threshold() * 2 + 17, 3);
        let chunks: Vec<std::io::Result<Bytes>> = body
            .chunks(100_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        s.upload_stream(
            &big,
            &WriteOptions::default(),
            futures::stream::iter(chunks),
        )
        .await
        .unwrap();
        assert_eq!(s.get(&big).await.unwrap().data, body);
        assert_eq!(kept(&store, "mask/multipart.bin"), want(&body));
        for key in [&k, &renamed, &big] {
            let got = s.get(key).await.unwrap();
            assert_eq!(got.info.checksum, want(&got.data), "{key}");
        }
        s.delete(&renamed).await.unwrap();
        assert_eq!(
            kept(&store, "mask/renamed.bin"),
            None,
            "a delete forgets it"
        );
    }

    /// The checksum `answer` reports, as object_store hands it to a library.
    fn reported(answer: &GetResult) -> Option<String> {
        let name = Attribute::Metadata(CHECKSUM_METADATA.into());
        answer.attributes.get(&name).map(|value| value.to_string())
    }

    /// A large owed checksum is paid in a blocking task: the runtime's thread serves its
    /// other tasks while it is hashed (on a one-thread runtime, a ticker keeps ticking).
    #[tokio::test(flavor = "current_thread")]
    async fn a_large_owed_checksum_is_paid_off_the_runtime_thread() {
        let (s, _) = memory();
        let s = s.with_checksum(ChecksumAlgorithm::Sha256);
        let data = bytes(64 * 1024 * 1024, 3);
        let key: maskstore_core::ObjectKey = "mask/large.bin".parse().unwrap();
        s.put(&key, data.clone()).await.unwrap();
        // A range read asks the store to pay the owed checksum (of the whole object).
        let options = crate::ReadOptions {
            range: Some(crate::ByteRange::Bounded(0..16)),
            ..Default::default()
        };
        let (object, during) = crate::storage::ticks_during(s.read_stream(&key, options)).await;
        let object = object.unwrap();
        assert_eq!(
            object.info.checksum,
            checksum_of(ChecksumAlgorithm::Sha256, &data)
        );
        assert!(
            during >= 3,
            "the runtime thread ticked {during} times while it was paid"
        );
    }

    #[tokio::test]
    async fn every_way_of_asking_for_an_owed_checksum_reports_the_one_an_eager_put_stores() {
        for algorithm in [ChecksumAlgorithm::Crc64Nvme, ChecksumAlgorithm::Sha256] {
            let (s, store) = memory();
            let s = s.with_checksum(algorithm);
            let data = bytes(5000, 7);
            // What the put stored before its checksum was owed, and a put through layers
            // still stores.
            let want = checksum_of(algorithm, &data);
            assert!(want.is_some());
            let mut n = 0;
            // Each way asks first, on an object of its own: each pays the debt itself.
            let mut owing = async || {
                n += 1;
                let k = s.key(&format!("owed/{n}.bin")).unwrap();
                s.put(&k, data.clone()).await.unwrap();
                let path = format!("mask/owed/{n}.bin");
                let marker = owed(algorithm).map(str::to_string);
                assert_eq!(stored(&store, &path).await, marker, "{algorithm}");
                (k, Path::from(path))
            };
            let (k, _) = owing().await;
            assert_eq!(s.head(&k).await.unwrap().checksum, want, "head");
            let (k, _) = owing().await;
            assert_eq!(s.get(&k).await.unwrap().info.checksum, want, "get");
            let (k, _) = owing().await;
            let part = s.get_range(&k, 10..20u64).await.unwrap();
            assert_eq!(
                (part.info.checksum, part.data),
                (want.clone(), data.slice(10..20))
            );
            let (k, _) = owing().await;
            let part = s.get_range(&k, ByteRange::Suffix(7)).await.unwrap();
            assert_eq!(
                (part.info.checksum, part.data),
                (want.clone(), data.slice(4993..))
            );
            let (k, _) = owing().await;
            let unverified = s.without_verification();
            assert_eq!(
                unverified.get(&k).await.unwrap().info.checksum,
                want,
                "unverified"
            );
            let (k, _) = owing().await;
            let streamed = s.get_stream(&k).await.unwrap();
            assert_eq!(streamed.info.checksum, want, "get_stream");
            assert!(streamed.verifies);
            let chunks: Vec<Bytes> = streamed.stream.try_collect().await.unwrap();
            assert_eq!(chunks.concat(), data);
            let (k, _) = owing().await;
            let file = tempfile::tempfile().unwrap();
            let info = s.read_to_file(&k, &file, |_, _| {}).await.unwrap();
            assert_eq!(info.checksum, want, "read_to_file");
            let (k, _) = owing().await;
            let layered = s.layer(Passing);
            assert_eq!(
                layered.get(&k).await.unwrap().info.checksum,
                want,
                "layered"
            );
            let (k, _) = owing().await;
            assert_eq!(
                layered.head(&k).await.unwrap().checksum,
                want,
                "layered head"
            );
            let (k, _) = owing().await;
            let to = s.key("copied.bin").unwrap();
            s.copy(&k, &to).await.unwrap();
            assert_eq!(s.head(&to).await.unwrap().checksum, want, "copy");
            assert_eq!(s.head(&k).await.unwrap().checksum, want, "copy source");
            let (k, _) = owing().await;
            let to = s.key("renamed.bin").unwrap();
            s.rename(&k, &to).await.unwrap();
            assert_eq!(s.get(&to).await.unwrap().info.checksum, want, "rename");
            // A library reading through the storage's object_store meets it paid too.
            let raw = s.object_store();
            let (_, path) = owing().await;
            let answer = object_store::ObjectStoreExt::get(raw, &path).await.unwrap();
            assert_eq!(reported(&answer), want, "raw get");
            let (_, path) = owing().await;
            let head = GetOptions {
                head: true,
                ..Default::default()
            };
            let answer = raw.get_opts(&path, head).await.unwrap();
            assert_eq!(reported(&answer), want, "raw head");
            let (_, path) = owing().await;
            let range = GetOptions {
                range: Some((100..200u64).into()),
                ..Default::default()
            };
            let answer = raw.get_opts(&path, range).await.unwrap();
            assert_eq!(reported(&answer), want, "raw range");
            assert_eq!(answer.range, 100..200);
            assert_eq!(answer.bytes().await.unwrap(), data.slice(100..200));
        }
        // Without a checksum nothing is owed, and none is reported.
        let (s, store) = memory();
        let s = s.with_checksum(ChecksumAlgorithm::None);
        let k = s.key("none.bin").unwrap();
        s.put(&k, bytes(64, 1)).await.unwrap();
        assert_eq!(stored(&store, "mask/none.bin").await, None);
        assert_eq!(s.head(&k).await.unwrap().checksum, None);
        assert_eq!(s.get(&k).await.unwrap().info.checksum, None);
        assert_eq!(kept(&store, "mask/none.bin"), None);
    }

    #[tokio::test]
    async fn reads_of_an_owed_checksum_keep_its_conditions_and_range_errors() {
        let (s, _) = memory();
        let k = s.key("a.bin").unwrap();
        s.put(&k, bytes(100, 1)).await.unwrap();
        let etag = s.head(&k).await.unwrap().etag.unwrap();
        // A range past the end, an empty one, a stale If-Match: refused as `InMemory`
        // refuses them, whether or not the store pays the checksum on the way.
        assert!(matches!(
            s.get_range(&k, 200..300u64).await,
            Err(Error::InvalidRange { .. })
        ));
        let stale = ReadOptions {
            if_match: Some("\"999\"".to_string()),
            range: Some((0..10u64).into()),
            ..Default::default()
        };
        assert!(matches!(
            s.read(&k, stale).await,
            Err(Error::Precondition { .. })
        ));
        let fresh = ReadOptions {
            if_match: Some(etag),
            range: Some(ByteRange::From(90)),
            ..Default::default()
        };
        let tail = s.read(&k, fresh).await.unwrap();
        assert_eq!(
            (tail.range, tail.data),
            (90..100, bytes(100, 1).slice(90..))
        );
        // A suffix longer than the object is the whole object (RFC 9110 §14.1.1).
        let all = s.get_range(&k, ByteRange::Suffix(1000)).await.unwrap();
        assert_eq!(all.data, bytes(100, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_owed_checksum_is_never_reported_for_another_puts_bytes() {
        // Puts of four bodies race ranged reads, streams and HEADs on one key: whatever a
        // read reports must be the checksum of the very bytes it returned.
        let (s, _) = memory();
        let k = s.key("raced.bin").unwrap();
        let bodies: Vec<Bytes> = (0..4).map(|i| bytes(4096, i)).collect();
        let sums: Vec<String> = bodies
            .iter()
            .map(|b| checksum_of(ChecksumAlgorithm::Crc64Nvme, b).unwrap())
            .collect();
        s.put(&k, bodies[0].clone()).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..4usize {
            let (s, k, bodies, sums) = (s.clone(), k.clone(), bodies.clone(), sums.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..1500usize {
                    // Fresh buffers too: the kept checksums are of other buffers then.
                    let body = Bytes::copy_from_slice(&bodies[(i + t) % 4]);
                    s.put(&k, body).await.unwrap();
                    let part = s.get_range(&k, 1000..1100u64).await.unwrap();
                    let which = sums
                        .iter()
                        .position(|c| part.info.checksum.as_ref() == Some(c));
                    let which = which.expect("a put's checksum");
                    assert_eq!(part.data, bodies[which].slice(1000..1100));
                    let streamed = s.get_stream(&k).await.unwrap();
                    let reported = streamed.info.checksum.clone();
                    let data: Vec<Bytes> = streamed.stream.try_collect().await.unwrap();
                    let data = Bytes::from(data.concat());
                    assert_eq!(reported, checksum_of(ChecksumAlgorithm::Crc64Nvme, &data));
                    let head = s.head(&k).await.unwrap().checksum.unwrap();
                    assert!(sums.contains(&head), "{head}");
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn copies_renames_and_deletes_racing_owed_puts_never_report_a_wrong_checksum() {
        // Puts, copies, renames and deletes race every kind of read on two keys, directly,
        // through a layer and through the raw object_store: a whole read reports the
        // checksum of the bytes it returned, any other read one of a put's, never the
        // marker; a missing object is the only failure.
        let (s, _) = memory();
        let (a, b) = (s.key("race/a.bin").unwrap(), s.key("race/b.bin").unwrap());
        let bodies: Vec<Bytes> = (0..3).map(|i| bytes(3000 + i * 7, i as u8)).collect();
        let sum = |data: &[u8]| checksum_of(ChecksumAlgorithm::Crc64Nvme, data);
        let sums: Vec<Option<String>> = bodies.iter().map(|b| sum(b)).collect();
        let gone = |e: &Error| matches!(e, Error::NotFound { .. });
        let mut tasks = Vec::new();
        for t in 0..4usize {
            let (s, a, b, bodies, sums) = (
                s.clone(),
                a.clone(),
                b.clone(),
                bodies.clone(),
                sums.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let layered = s.layer(Passing);
                for i in 0..600usize {
                    let body = Bytes::copy_from_slice(&bodies[(i + t) % 3]);
                    let (from, to) = if (i + t) % 2 == 0 { (&a, &b) } else { (&b, &a) };
                    match (i * 7 + t) % 5 {
                        0 => drop(s.put(from, body).await.unwrap()),
                        1 => drop(s.copy(from, to).await.map_err(|e| assert!(gone(&e)))),
                        2 => drop(s.rename(from, to).await.map_err(|e| assert!(gone(&e)))),
                        3 => s.delete(to).await.unwrap(),
                        _ => drop(s.put(to, body).await.unwrap()),
                    }
                    let reader = if i % 2 == 0 { &s } else { &layered };
                    match reader.get(from).await {
                        Ok(got) => assert_eq!(got.info.checksum, sum(&got.data)),
                        Err(e) => assert!(gone(&e), "{e}"),
                    }
                    match reader.head(to).await {
                        Ok(info) => assert!(sums.contains(&info.checksum), "{info:?}"),
                        Err(e) => assert!(gone(&e), "{e}"),
                    }
                    match reader.get_range(from, 10..20u64).await {
                        Ok(part) => assert!(sums.contains(&part.info.checksum)),
                        Err(e) => assert!(gone(&e), "{e}"),
                    }
                    if let Ok(streamed) = reader.get_stream(to).await {
                        let reported = streamed.info.checksum.clone();
                        let data: Vec<Bytes> = streamed.stream.try_collect().await.unwrap();
                        assert_eq!(reported, sum(&data.concat()));
                    }
                    let path = Path::from(from.as_str());
                    let raw = object_store::ObjectStoreExt::get(s.object_store(), &path).await;
                    if let Ok(answer) = raw {
                        let reported = reported(&answer);
                        let data = answer.bytes().await.unwrap();
                        assert_eq!(reported, sum(&data));
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    #[tokio::test]
    async fn an_owed_checksum_is_paid_with_its_own_algorithm_whatever_the_reader_writes() {
        // Storages over one store, each writing another algorithm (or none): the debt is
        // paid with the algorithm the put owed, by every reader.
        let (s, _) = memory();
        let data = bytes(4096, 3);
        let writers = [
            ChecksumAlgorithm::Crc64Nvme,
            ChecksumAlgorithm::Sha256,
            ChecksumAlgorithm::None,
        ];
        for (i, writer) in writers.into_iter().enumerate() {
            let k = s.key(&format!("algorithms/{i}.bin")).unwrap();
            s.clone()
                .with_checksum(writer)
                .put(&k, data.clone())
                .await
                .unwrap();
            let want = checksum_of(writer, &data);
            for reader in writers {
                let r = s.clone().with_checksum(reader);
                let got = r.get(&k).await.unwrap();
                assert_eq!(got.info.checksum, want, "{writer} read by {reader}");
                assert_eq!(r.head(&k).await.unwrap().checksum, want);
                let streamed = r.get_stream(&k).await.unwrap();
                assert_eq!(streamed.info.checksum, want);
                let copy = s.key(&format!("algorithms/{i}-{reader}.bin")).unwrap();
                r.copy(&k, &copy).await.unwrap();
                assert_eq!(r.get(&copy).await.unwrap().info.checksum, want);
            }
        }
    }

    #[test]
    fn every_marker_a_put_stores_is_known_as_owed() {
        for algorithm in ChecksumAlgorithm::ALL {
            match owed(algorithm) {
                Some(marker) => assert!(is_owed(marker), "{marker}"),
                None => assert_eq!(algorithm, ChecksumAlgorithm::None),
            }
        }
    }

    #[test]
    fn every_algorithms_checksum_is_kept_whole_and_a_longer_text_is_not_kept() {
        let data = bytes(4096, 6);
        for algorithm in ChecksumAlgorithm::ALL {
            let Some(checksum) = checksum_of(algorithm, &data) else {
                assert_eq!(algorithm, ChecksumAlgorithm::None);
                continue;
            };
            assert_eq!(KeptSum::new(&checksum).unwrap().as_str(), checksum);
        }
        let longest = "x".repeat(KeptSum::MAX);
        assert_eq!(KeptSum::new(&longest).unwrap().as_str(), longest);
        assert!(KeptSum::new(&format!("{longest}y")).is_none());
    }

    #[tokio::test]
    async fn a_verified_read_compares_the_kept_checksum_and_does_not_hash_again() {
        let (s, store) = memory();
        let k = s.key("a.bin").unwrap();
        let data = bytes(4096, 4);
        // A checksum stored with the bytes (a put through a layer hashes them), kept once
        // read.
        s.layer(Passing).put(&k, data.clone()).await.unwrap();
        assert!(
            stored(&store, "mask/a.bin")
                .await
                .is_some_and(|c| !is_owed(&c))
        );
        s.get(&k).await.unwrap();
        // The kept checksum is what the read compares: made wrong here, the read fails,
        // where hashing the bytes again would have passed.
        let wrong = checksum_of(ChecksumAlgorithm::Crc64Nvme, b"other bytes").unwrap();
        store
            .kept
            .sums()
            .get_mut(&Path::from("mask/a.bin"))
            .unwrap()
            .as_mut()
            .unwrap()
            .checksum = KeptSum::new(&wrong).unwrap();
        match s.get(&k).await {
            Err(Error::Corrupt { actual, .. }) => assert_eq!(actual, wrong),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // A checksum of another algorithm is never compared: the bytes are hashed.
        let sha = s.clone().with_checksum(ChecksumAlgorithm::Sha256);
        sha.layer(Passing).put(&k, data.clone()).await.unwrap();
        sha.get(&k).await.unwrap();
        store
            .kept
            .sums()
            .get_mut(&Path::from("mask/a.bin"))
            .unwrap()
            .as_mut()
            .unwrap()
            .checksum = KeptSum::new(&wrong).unwrap();
        assert_eq!(sha.get(&k).await.unwrap().data, data);
        assert_eq!(
            kept(&store, "mask/a.bin"),
            checksum_of(ChecksumAlgorithm::Sha256, &data)
        );
    }

    /// A layer that changes nothing: a storage with it puts as one with any layer does.
    #[derive(Debug, Clone, Copy)]
    struct Passing;

    impl crate::layers::Intercept for Passing {
        fn name(&self) -> &str {
            "passing"
        }

        fn call<'a, T: Send + 'a>(
            &'a self,
            _call: crate::layers::Call<'a>,
            run: futures::future::BoxFuture<'a, Result<T>>,
        ) -> futures::future::BoxFuture<'a, Result<T>> {
            run
        }
    }

    /// A buffer that says when it is freed.
    struct Tracked(Vec<u8>, Arc<std::sync::atomic::AtomicBool>);

    impl AsRef<[u8]> for Tracked {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.1.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_kept_checksum_holds_its_buffer_so_no_other_bytes_can_take_its_address() {
        // Were the buffer freed while its checksum is kept, a new buffer could be given the
        // same address and length, and the checksum would vouch for bytes it never saw.
        let (s, store) = memory();
        let k = s.key("a.bin").unwrap();
        let freed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let data = Bytes::from_owner(Tracked(vec![7; 4096], Arc::clone(&freed)));
        s.put(&k, data).await.unwrap();
        s.head(&k).await.unwrap();
        assert!(kept(&store, "mask/a.bin").is_some(), "paid by the HEAD");
        // Overwritten through the raw store (no checksum vouched): the object no longer
        // holds the buffer, but the store must not have kept its address alone either.
        let other = bytes(4096, 9);
        s.object_store()
            .put_opts(
                &Path::from("mask/a.bin"),
                other.clone().into(),
                PutOptions::default(),
            )
            .await
            .unwrap();
        assert!(
            freed.load(std::sync::atomic::Ordering::SeqCst),
            "nothing holds the old buffer once the object and its checksum are gone"
        );
        assert_eq!(kept(&store, "mask/a.bin"), None);
        // While its checksum is kept, its buffer lives (the object holds it too).
        let freed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let data = Bytes::from_owner(Tracked(vec![8; 4096], Arc::clone(&freed)));
        s.put(&k, data).await.unwrap();
        s.get(&k).await.unwrap();
        {
            let sums = store.kept.sums();
            let vouched = sums
                .get(&Path::from("mask/a.bin"))
                .unwrap()
                .as_ref()
                .unwrap();
            assert_eq!(vouched.data.as_ref(), &[8; 4096][..]);
        }
        assert!(!freed.load(std::sync::atomic::Ordering::SeqCst));
        s.delete(&k).await.unwrap();
        assert!(
            freed.load(std::sync::atomic::Ordering::SeqCst),
            "a delete frees it"
        );
    }

    /// A layer that deletes the object a call of the operation wrote or read as soon as
    /// the store answered, before the call returns: a delete racing the put or read,
    /// landing between the store's answer and the facade's keeping of the checksum.
    #[derive(Debug, Clone)]
    struct DeletedMeanwhile(Arc<MemoryStore>, crate::Operation);

    impl crate::layers::Intercept for DeletedMeanwhile {
        fn name(&self) -> &str {
            "deleted-meanwhile"
        }

        fn call<'a, T: Send + 'a>(
            &'a self,
            call: crate::layers::Call<'a>,
            run: futures::future::BoxFuture<'a, Result<T>>,
        ) -> futures::future::BoxFuture<'a, Result<T>> {
            use futures::FutureExt;
            async move {
                let result = run.await;
                if call.operation == self.1 {
                    object_store::ObjectStoreExt::delete(&*self.0, call.location)
                        .await
                        .unwrap();
                }
                result
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn conditional_puts_that_fail_on_missing_keys_leave_nothing_kept() {
        let (s, store) = memory();
        for i in 0..100 {
            let k = s.key(&format!("missing/{i}.bin")).unwrap();
            let update =
                WriteOptions::default().with_mode(crate::WriteMode::IfMatch("\"1\"".into()));
            assert!(matches!(
                s.put_with(&k, bytes(64, 1), &update).await,
                Err(Error::Precondition { .. })
            ));
        }
        assert_eq!(
            store.kept.sums().len(),
            0,
            "no path is held for objects never written"
        );
        // A create-only put refused (the object is there) keeps what is known of it.
        let k = s.key("there.bin").unwrap();
        s.put(&k, bytes(64, 2)).await.unwrap();
        assert!(s.put_if_absent(&k, bytes(64, 3)).await.is_err());
        assert_eq!(s.get(&k).await.unwrap().data, bytes(64, 2));
        assert!(kept(&store, "mask/there.bin").is_some());
    }

    #[tokio::test]
    async fn copies_and_renames_of_missing_objects_leave_nothing_kept() {
        let (s, store) = memory();
        let gone = s.key("gone.bin").unwrap();
        for i in 0..50 {
            let to = s.key(&format!("copy/{i}.bin")).unwrap();
            assert!(matches!(
                s.copy(&gone, &to).await,
                Err(Error::NotFound { .. })
            ));
            let to = s.key(&format!("moved/{i}.bin")).unwrap();
            assert!(matches!(
                s.rename(&gone, &to).await,
                Err(Error::NotFound { .. })
            ));
        }
        assert_eq!(
            store.kept.sums().len(),
            0,
            "no path is held for objects never written"
        );
        // A copy refused because its target is there keeps what is known of the target.
        let (a, b) = (s.key("a.bin").unwrap(), s.key("b.bin").unwrap());
        s.put(&a, bytes(64, 1)).await.unwrap();
        s.put(&b, bytes(64, 2)).await.unwrap();
        assert!(s.copy_if_absent(&a, &b).await.is_err());
        assert_eq!(s.get(&b).await.unwrap().data, bytes(64, 2));
        assert!(kept(&store, "mask/b.bin").is_some());
    }

    /// A layer that refuses every put without running it (a fault injected, a limit).
    #[derive(Debug, Clone)]
    struct RefusesPuts;

    impl crate::layers::Intercept for RefusesPuts {
        fn name(&self) -> &str {
            "refuses-puts"
        }

        fn call<'a, T: Send + 'a>(
            &'a self,
            call: crate::layers::Call<'a>,
            run: futures::future::BoxFuture<'a, Result<T>>,
        ) -> futures::future::BoxFuture<'a, Result<T>> {
            if call.operation != crate::Operation::Put {
                return run;
            }
            drop(run);
            Box::pin(async {
                Err(object_store::Error::Generic {
                    store: "refuses-puts",
                    source: "refused".into(),
                })
            })
        }
    }

    #[tokio::test]
    async fn puts_a_layer_refuses_before_they_run_leave_nothing_kept() {
        let (s, store) = memory();
        let refusing = s.layer(RefusesPuts);
        for i in 0..100 {
            let k = s.key(&format!("refused/{i}.bin")).unwrap();
            assert!(refusing.put(&k, bytes(64, 1)).await.is_err());
            assert!(matches!(s.head(&k).await, Err(Error::NotFound { .. })));
        }
        assert_eq!(
            store.kept.sums().len(),
            0,
            "no path is held for objects never written"
        );
    }

    #[tokio::test]
    async fn a_delete_racing_a_put_or_read_leaves_no_checksum_holding_the_deleted_bytes() {
        let (s, store) = memory();
        let deleted = s.layer(DeletedMeanwhile(Arc::clone(&store), crate::Operation::Put));
        let k = s.key("a.bin").unwrap();
        let freed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let data = Bytes::from_owner(Tracked(vec![7; 4096], Arc::clone(&freed)));
        deleted.put(&k, data).await.unwrap();
        assert!(matches!(s.head(&k).await, Err(Error::NotFound { .. })));
        assert_eq!(kept(&store, "mask/a.bin"), None);
        assert!(
            freed.load(std::sync::atomic::Ordering::SeqCst),
            "nothing holds the bytes of a deleted object"
        );
        // A verified read of bytes no put vouched for hashes them and keeps the checksum:
        // not once a delete took the object meanwhile.
        let freed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let data = Bytes::from_owner(Tracked(vec![8; 4096], Arc::clone(&freed)));
        s.put(&k, data.clone()).await.unwrap();
        let path = Path::from("mask/a.bin");
        let stored = store
            .inner
            .get_opts(&path, GetOptions::default())
            .await
            .unwrap();
        let opts = PutOptions {
            attributes: stored.attributes.clone(),
            ..Default::default()
        };
        store.put_opts(&path, data.into(), opts).await.unwrap();
        assert_eq!(
            kept(&store, "mask/a.bin"),
            None,
            "a raw put vouches for nothing"
        );
        let deleted = s.layer(DeletedMeanwhile(Arc::clone(&store), crate::Operation::Get));
        assert_eq!(deleted.get(&k).await.unwrap().data.len(), 4096);
        drop(stored);
        assert!(matches!(s.head(&k).await, Err(Error::NotFound { .. })));
        assert_eq!(kept(&store, "mask/a.bin"), None);
        assert!(freed.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn puts_and_verified_reads_racing_on_one_key_never_see_a_false_corrupt() {
        let (s, _) = memory();
        let k = s.key("raced.bin").unwrap();
        let bodies: Vec<Bytes> = (0..4).map(|i| bytes(4096, i)).collect();
        s.put(&k, bodies[0].clone()).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..4usize {
            let (s, k, bodies) = (s.clone(), k.clone(), bodies.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..2000usize {
                    if (i + t) % 2 == 0 {
                        s.put(&k, bodies[(i + t) % 4].clone()).await.unwrap();
                    } else {
                        // Fresh buffers too, so the racing puts are not all vouched ones.
                        let copy = Bytes::copy_from_slice(&bodies[i % 4]);
                        let body = if i % 3 == 0 {
                            copy
                        } else {
                            bodies[i % 4].clone()
                        };
                        s.put(&k, body).await.unwrap();
                        let got = s.get(&k).await.unwrap();
                        assert!(bodies.contains(&got.data));
                        assert_eq!(
                            got.info.checksum,
                            checksum_of(ChecksumAlgorithm::Crc64Nvme, &got.data)
                        );
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    /// A layer that alters what it passes on: the first byte of every put's payload, of
    /// every read's data, or the checksum stored with a put; or that drops what a read
    /// asks of the store beyond object_store's options (its extensions).
    #[derive(Debug, Clone, Copy)]
    enum Tamper {
        BytesIn,
        BytesOut,
        ChecksumIn,
        ReadExtensionsDropped,
        /// Both: drops the read's extensions and alters the bytes it passes on.
        BytesOutExtensionsDropped,
    }

    #[derive(Debug)]
    struct Tampering(Tamper, Arc<dyn ObjectStore>);

    impl std::fmt::Display for Tampering {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Tampering({})", self.1)
        }
    }

    fn flipped(data: &[u8]) -> Bytes {
        let mut data = data.to_vec();
        data[0] ^= 1;
        Bytes::from(data)
    }

    #[async_trait]
    impl ObjectStore for Tampering {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            mut opts: PutOptions,
        ) -> Result<PutResult> {
            let payload = match self.0 {
                Tamper::BytesIn => flipped(&Bytes::from(payload)).into(),
                Tamper::ChecksumIn => {
                    let other = checksum_of(ChecksumAlgorithm::Crc64Nvme, b"x").unwrap();
                    opts.attributes
                        .insert(Attribute::Metadata(CHECKSUM_METADATA.into()), other.into());
                    payload
                }
                Tamper::BytesOut
                | Tamper::ReadExtensionsDropped
                | Tamper::BytesOutExtensionsDropped => payload,
            };
            self.1.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.1.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &Path, mut options: GetOptions) -> Result<GetResult> {
            if let Tamper::ReadExtensionsDropped | Tamper::BytesOutExtensionsDropped = self.0 {
                options.extensions = Default::default();
            }
            let mut result = self.1.get_opts(location, options).await?;
            let (Tamper::BytesOut | Tamper::BytesOutExtensionsDropped) = self.0 else {
                return Ok(result);
            };
            let empty = GetResultPayload::Stream(futures::stream::empty().boxed());
            let GetResultPayload::Stream(stream) = std::mem::replace(&mut result.payload, empty)
            else {
                panic!("the memory store answers with a stream");
            };
            let data: Vec<Bytes> = stream.try_collect().await?;
            let data = flipped(&data.concat());
            result.payload =
                GetResultPayload::Stream(futures::stream::once(async { Ok(data) }).boxed());
            Ok(result)
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            self.1.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.1.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.1.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
            self.1.copy_opts(from, to, options).await
        }
    }

    impl Layer for Tamper {
        fn wrap(&self, inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
            Arc::new(Tampering(*self, inner))
        }
    }

    #[tokio::test]
    async fn an_owed_checksum_is_never_reported_through_a_layer_that_drops_the_request_to_pay() {
        // Every way of reading through such a layer, verified or not, reports the checksum
        // of the bytes, never the marker, and an intact object is never called corrupt.
        let (s, _) = memory();
        let data = bytes(5000, 8);
        let want = checksum_of(ChecksumAlgorithm::Crc64Nvme, &data);
        let mut n = 0;
        let mut owing = async || {
            n += 1;
            let k = s.key(&format!("dropped/{n}.bin")).unwrap();
            s.put(&k, data.clone()).await.unwrap();
            k
        };
        for dropping in [
            s.layer(Tamper::ReadExtensionsDropped),
            s.without_verification()
                .layer(Tamper::ReadExtensionsDropped),
        ] {
            let verifies = dropping.verifies_reads();
            let k = owing().await;
            let got = dropping.get(&k).await;
            assert_eq!(
                got.unwrap().info.checksum,
                want,
                "get, verified: {verifies}"
            );
            let k = owing().await;
            let streamed = dropping.get_stream(&k).await.unwrap();
            assert_eq!(streamed.info.checksum, want, "stream, verified: {verifies}");
            let chunks: Vec<Bytes> = streamed.stream.try_collect().await.unwrap();
            assert_eq!(chunks.concat(), data);
            let k = owing().await;
            let file = tempfile::tempfile().unwrap();
            let info = dropping.read_to_file(&k, &file, |_, _| {}).await.unwrap();
            assert_eq!(info.checksum, want, "read_to_file, verified: {verifies}");
        }
    }

    #[tokio::test]
    async fn an_owed_checksum_of_a_version_gone_before_it_was_paid_is_never_reported() {
        // Read through a layer that drops the request to pay, and deleted before the HEAD
        // that would pay it: the read fails as the object is gone, neither reporting the
        // marker nor calling the bytes corrupt.
        let (s, store) = memory();
        let k = s.key("gone.bin").unwrap();
        let gone = s
            .layer(DeletedMeanwhile(Arc::clone(&store), crate::Operation::Get))
            .layer(Tamper::ReadExtensionsDropped);
        for reader in [gone.clone(), gone.without_verification()] {
            s.put(&k, bytes(100, 1)).await.unwrap();
            match reader.get(&k).await {
                Err(Error::NotFound { .. } | Error::Precondition { .. }) => {}
                other => panic!("expected the object gone, got {other:?}"),
            }
            s.put(&k, bytes(100, 2)).await.unwrap();
            match reader.get_stream(&k).await {
                Err(Error::NotFound { .. } | Error::Precondition { .. }) => {}
                other => panic!("expected the object gone, got {:?}", other.map(|o| o.info)),
            }
        }
    }

    #[tokio::test]
    async fn a_stored_value_that_only_ends_like_the_marker_is_reported_as_stored() {
        // Written past the facade by another tool: not maskstore's marker, so never paid
        // (which would vouch for bytes under a value their writer chose), never an error
        // of its own; a HEAD reports it as stored, a verified read finds it no checksum of
        // the bytes, as any foreign value.
        let (s, _) = memory();
        for (i, value) in [
            "md5:owed",
            "sha256:abc:owed",
            "crc64nvme:x:owed",
            "owed:owed",
        ]
        .into_iter()
        .enumerate()
        {
            let k = s.key(&format!("foreign/{i}.bin")).unwrap();
            let mut attributes = object_store::Attributes::new();
            attributes.insert(Attribute::Metadata(CHECKSUM_METADATA.into()), value.into());
            let opts = PutOptions {
                attributes,
                ..Default::default()
            };
            let path = Path::from(k.as_str());
            let raw = s.object_store();
            raw.put_opts(&path, bytes(100, 1).into(), opts)
                .await
                .unwrap();
            let head = s.head(&k).await;
            assert_eq!(head.unwrap().checksum.as_deref(), Some(value), "{value}");
            let layered = s.layer(Passing).head(&k).await;
            assert_eq!(layered.unwrap().checksum.as_deref(), Some(value), "{value}");
            assert!(
                matches!(s.get(&k).await, Err(Error::Corrupt { .. })),
                "{value}"
            );
            let unverified = s.without_verification().get(&k).await.unwrap();
            assert_eq!(unverified.info.checksum.as_deref(), Some(value), "{value}");
        }
    }

    #[tokio::test]
    async fn bytes_or_a_checksum_a_layer_altered_still_fail_the_read() {
        for tamper in [Tamper::BytesIn, Tamper::BytesOut, Tamper::ChecksumIn] {
            let (s, _) = memory();
            let s = s.layer(tamper);
            let k = s.key("a.bin").unwrap();
            s.put(&k, bytes(4096, 5)).await.unwrap();
            // Twice: the second read would use anything the first one kept.
            for read in 0..2 {
                assert!(
                    matches!(s.get(&k).await, Err(Error::Corrupt { .. })),
                    "{tamper:?}, read {read}"
                );
            }
        }
        // Bytes put without layers, their checksum owed, then read through them: the store
        // pays it from its own buffer, so bytes a layer replaced on the way out still fail.
        let (s, store) = memory();
        let k = s.key("owed.bin").unwrap();
        s.put(&k, bytes(4096, 5)).await.unwrap();
        assert_eq!(
            stored(&store, "mask/owed.bin").await.unwrap(),
            "crc64nvme:owed"
        );
        for read in 0..2 {
            assert!(
                matches!(
                    s.layer(Tamper::BytesOut).get(&k).await,
                    Err(Error::Corrupt { .. })
                ),
                "read {read}"
            );
        }
        assert_eq!(s.get(&k).await.unwrap().data, bytes(4096, 5));
        // A layer that keeps the store from paying it (drops the request to, as a store of
        // a layer's own that builds its read options afresh does): the checksum is paid by
        // a HEAD of the version read, so the intact object verifies, and bytes such a layer
        // replaced still fail.
        let k = s.key("unpaid.bin").unwrap();
        s.put(&k, bytes(4096, 6)).await.unwrap();
        let want = checksum_of(ChecksumAlgorithm::Crc64Nvme, &bytes(4096, 6));
        let dropping = s.layer(Tamper::ReadExtensionsDropped);
        assert_eq!(dropping.get(&k).await.unwrap().info.checksum, want);
        // A HEAD through it is paid all the same (the store pays every HEAD).
        assert_eq!(dropping.head(&k).await.unwrap().checksum, want);
        let k = s.key("unpaid-altered.bin").unwrap();
        s.put(&k, bytes(4096, 7)).await.unwrap();
        let altering = s.layer(Tamper::BytesOutExtensionsDropped);
        match altering.get(&k).await {
            Err(Error::Corrupt { expected, .. }) => assert_eq!(
                Some(expected),
                checksum_of(ChecksumAlgorithm::Crc64Nvme, &bytes(4096, 7))
            ),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // Bytes written past the facade with another object's checksum: not vouched for.
        let (s, _) = memory();
        let k = s.key("raw.bin").unwrap();
        let mut attributes = object_store::Attributes::new();
        attributes.insert(
            Attribute::Metadata(CHECKSUM_METADATA.into()),
            checksum_of(ChecksumAlgorithm::Crc64Nvme, b"abc")
                .unwrap()
                .into(),
        );
        let opts = PutOptions {
            attributes,
            ..Default::default()
        };
        s.object_store()
            .put_opts(
                &Path::from("mask/raw.bin"),
                Bytes::from_static(b"abd").into(),
                opts,
            )
            .await
            .unwrap();
        assert!(matches!(s.get(&k).await, Err(Error::Corrupt { .. })));
    }
}
