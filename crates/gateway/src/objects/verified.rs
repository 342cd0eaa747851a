//! Verdicts on the versions of objects the gateway read whole: a version verified once is
//! served again (whole or any range of it) without hashing it again, and one found corrupt
//! is refused at once.
//!
//! A verdict is kept by key and by the [`ReadVersion`] of the read that reached it, which
//! names the exact bytes read: on local disk the etag with the file's device, inode, size,
//! modification and status-change times, given only once the file's last change is a few
//! seconds old. Any change of the file, through maskstore or behind its back (a rewrite in
//! place of the same size with the modification time set back, a flipped bit written by
//! a program), changes the status-change time, so the version; its next read is verified
//! again. A read of a trusted version re-checks the file's stamp before its last chunk;
//! if it changed while it was served (replaced or deleted, which sets the status-change
//! time of the file still open, or rewritten), the open file of a whole read is checked
//! whole against its checksum, and the read is cut off unless it still matches (a partial
//! range is cut off). Reads without a version (memory, files changed in the last seconds,
//! storages with layers) are verified every time.
//! Writes and deletes through the gateway forget the key's verdict at once.
//!
//! The memory is bounded: at most [`VERDICTS`] verdicts and [`VERDICT_BYTES`] of keys and
//! etags, half of each for objects under [`LARGE_FROM`] bytes and half for larger ones, so
//! a client reading many small objects cannot push the verdicts of large ones out (their
//! re-check is the expensive one); the oldest verdict of a half goes first.
//!
//! A partial range cannot be checked on its own (the checksum covers the whole object), so
//! the first range of an unverified version reads the whole version through the verifier
//! once: ranges arriving while it is checked wait for that one check (a viewer opening a
//! large mask asks several at once). At most [`CHECKS_AT_ONCE`] such checks read at once; a
//! check is carried by the requests waiting for it and dropped when the last one goes.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use maskstore_backends::{Error, ObjectStream, ReadOptions, ReadVersion, Storage};
use maskstore_core::ObjectKey;
use tokio::sync::Semaphore;

/// The most verdicts kept, half for small objects and half for large ones.
pub(crate) const VERDICTS: usize = 65_536;

/// The most bytes of keys and etags the verdicts hold (with the entries' own size), half
/// for small objects and half for large ones: 16 MiB.
pub(crate) const VERDICT_BYTES: usize = 16 * 1024 * 1024;

/// Objects of this size or more keep their verdicts apart from smaller ones: 1 MiB.
pub(crate) const LARGE_FROM: u64 = 1024 * 1024;

/// How many range checks read at once; the others wait for their turn.
pub(crate) const CHECKS_AT_ONCE: usize = 4;

/// What a whole read of a version found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// It matches its checksum.
    Intact,
    /// It does not: what [`Error::Corrupt`] says of it.
    Corrupt {
        backend: String,
        key: String,
        expected: String,
        actual: String,
    },
}

impl Found {
    fn of(read: &Result<(), Error>) -> Option<Found> {
        match read {
            Ok(()) => Some(Found::Intact),
            Err(e) => Found::of_error(e),
        }
    }

    /// The verdict an error of a verifying read gives: corrupt for [`Error::Corrupt`];
    /// none for any other (replaced meanwhile, or the store failed).
    fn of_error(e: &Error) -> Option<Found> {
        match e {
            Error::Corrupt {
                backend,
                key,
                expected,
                actual,
            } => Some(Found::Corrupt {
                backend: backend.clone(),
                key: key.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            }),
            _ => None,
        }
    }

    /// `Ok` for an intact version, its [`Error::Corrupt`] otherwise.
    pub(crate) fn result(&self) -> Result<(), Error> {
        match self {
            Found::Intact => Ok(()),
            Found::Corrupt {
                backend,
                key,
                expected,
                actual,
            } => Err(Error::Corrupt {
                backend: backend.clone(),
                key: key.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            }),
        }
    }
}

/// A check in progress: what it found for the version it was asked about, `None` when it
/// reached no verdict on it.
type Check = Shared<BoxFuture<'static, Option<Found>>>;

/// What a range check is asked about: a version the read named, or (a read that names
/// none) the etag it read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Asked {
    Version(ReadVersion),
    Etag(Option<String>),
}

/// How many checks the map holds before those nobody waits for any more are swept out.
const SWEEP_FROM: usize = 1024;

/// The verdicts, and the range checks in progress.
#[derive(Debug)]
pub(crate) struct VerifiedVersions {
    known: Mutex<Known>,
    /// Turns to read, [`CHECKS_AT_ONCE`].
    turns: Arc<Semaphore>,
}

impl Default for VerifiedVersions {
    fn default() -> VerifiedVersions {
        VerifiedVersions {
            known: Mutex::default(),
            turns: Arc::new(Semaphore::new(CHECKS_AT_ONCE)),
        }
    }
}

/// A key's verdict on one of its versions.
#[derive(Debug)]
struct Verdict<V> {
    version: V,
    found: Found,
    /// Its place in its half's order.
    seq: u64,
    /// What it counts against [`VERDICT_BYTES`].
    weight: usize,
    large: bool,
}

/// One half of the verdicts: their order, oldest first, and what they hold.
#[derive(Debug, Default)]
struct Half {
    /// Keys with the `seq` of their verdict when it was kept; an item whose key has since
    /// a newer verdict (or none) is stale and skipped.
    order: VecDeque<(String, u64)>,
    count: usize,
    bytes: usize,
}

/// The kept verdicts, by key, each on one version `V` of its key, in two halves.
#[derive(Debug)]
struct Verdicts<V> {
    by_key: HashMap<String, Verdict<V>>,
    halves: [Half; 2],
    seq: u64,
}

impl<V> Default for Verdicts<V> {
    fn default() -> Self {
        Verdicts {
            by_key: HashMap::new(),
            halves: Default::default(),
            seq: 0,
        }
    }
}

#[derive(Default)]
struct Known {
    verdicts: Verdicts<ReadVersion>,
    /// The checks requests wait for; one whose requests all went away is gone.
    checking: HashMap<(String, Asked), WeakShared<BoxFuture<'static, Option<Found>>>>,
}

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Known")
            .field("verdicts", &self.verdicts.by_key.len())
            .field("checking", &self.checking.len())
            .finish()
    }
}

impl<V: std::fmt::Debug> Verdicts<V> {
    /// `key`'s verdict, if one is kept.
    fn get(&self, key: &str) -> Option<&Verdict<V>> {
        self.by_key.get(key)
    }

    /// Forgets `key`'s verdict, if any (its order item goes stale, and its copy of the key
    /// counts against the half's bytes until the item is gone).
    fn forget(&mut self, key: &str) {
        if let Some(old) = self.by_key.remove(key) {
            let half = &mut self.halves[usize::from(old.large)];
            half.count -= 1;
            half.bytes -= old.weight - key.len();
        }
    }

    /// Keeps `found` as `key`'s verdict on `version`, then forgets the oldest verdicts of
    /// its half while the half holds more than its share.
    fn keep(&mut self, key: &str, version: V, size: u64, found: Found) {
        self.forget(key);
        let large = size >= LARGE_FROM;
        let weight = 2 * key.len() + version_bytes(&version) + std::mem::size_of::<Verdict<V>>();
        self.seq += 1;
        let seq = self.seq;
        let half = &mut self.halves[usize::from(large)];
        half.order.push_back((key.to_string(), seq));
        half.count += 1;
        half.bytes += weight;
        self.by_key.insert(
            key.to_string(),
            Verdict {
                version,
                found,
                seq,
                weight,
                large,
            },
        );
        self.trim(large);
    }

    fn trim(&mut self, large: bool) {
        let Verdicts {
            by_key: verdicts,
            halves,
            ..
        } = self;
        let half = &mut halves[usize::from(large)];
        while half.count > VERDICTS / 2 || half.bytes > VERDICT_BYTES / 2 {
            let Some((key, seq)) = half.order.pop_front() else {
                break;
            };
            if verdicts.get(&key).is_some_and(|v| v.seq == seq) {
                let old = verdicts.remove(&key).expect("just found");
                half.count -= 1;
                half.bytes -= old.weight;
            } else {
                half.bytes -= key.len();
            }
        }
        // Stale items (keys with a newer verdict, or forgotten) never outnumber the live.
        if half.order.len() > 2 * half.count + 1024 {
            let mut freed = 0;
            half.order.retain(|(key, seq)| {
                let live = verdicts.get(key).is_some_and(|v| v.seq == *seq);
                freed += if live { 0 } else { key.len() };
                live
            });
            half.bytes -= freed;
        }
    }
}

/// The bytes a version holds beyond its fixed size (its etag), about.
fn version_bytes(version: &impl std::fmt::Debug) -> usize {
    format!("{version:?}").len()
}

impl VerifiedVersions {
    /// `key`'s verdict on `version`, if one was kept.
    pub(crate) fn verdict(&self, key: &ObjectKey, version: &ReadVersion) -> Option<Found> {
        let known = self.lock();
        let verdict = known.verdicts.get(key.as_str())?;
        (verdict.version == *version).then(|| verdict.found.clone())
    }

    /// Keeps `found` as `key`'s verdict on `version` (an object of `size` bytes).
    pub(crate) fn keep(&self, key: &ObjectKey, version: ReadVersion, size: u64, found: Found) {
        self.lock()
            .verdicts
            .keep(key.as_str(), version, size, found);
    }

    /// Forgets `key`'s verdict: the key was written or deleted through the gateway.
    pub(crate) fn forget(&self, key: &ObjectKey) {
        self.lock().verdicts.forget(key.as_str());
    }

    /// A whole read of `key` that trusts a kept verdict: a version verified before is read
    /// without hashing (the stream checks the file did not change), one found corrupt is a
    /// stream whose first item is its [`Error::Corrupt`] (the caller judges the request's
    /// conditions on the description before), and any other is read through the verifier,
    /// whose verdict is kept when the stream ends.
    pub(crate) async fn read_whole(
        self: &Arc<Self>,
        storage: &Storage,
        key: &ObjectKey,
        options: ReadOptions,
    ) -> Result<ObjectStream, Error> {
        let mut found = None;
        let mut object = storage
            .read_stream_trusting(key, options, |version| {
                found = self.verdict(key, version);
                found == Some(Found::Intact)
            })
            .await?;
        if let Some(Err(corrupt)) = found.map(|found| found.result()) {
            // Corrupt: a body that is its error, before any byte is read. The caller still
            // judges the request's conditions on the description first (304 and 412 as
            // without a kept verdict, and as S3 answers them).
            object.stream = futures::stream::once(async move { Err(corrupt) }).boxed();
            return Ok(object);
        }
        if let (true, Some(version)) = (object.verifies, object.version.clone()) {
            let stream = std::mem::replace(&mut object.stream, futures::stream::empty().boxed());
            object.stream = Recording {
                inner: stream,
                left: object.info.size,
                note: Some((Arc::clone(self), key.clone(), version, object.info.size)),
            }
            .boxed();
        }
        Ok(object)
    }

    /// A partial range of `key` (in `options`), served only from a version whose checksum
    /// a whole read verified: a kept verdict, or a check made now. A damaged object is
    /// [`Error::Corrupt`]; a version replaced meanwhile is [`Error::Precondition`] (when
    /// `options` pins the etag).
    pub(crate) async fn read_part(
        self: &Arc<Self>,
        storage: &Storage,
        key: &ObjectKey,
        options: ReadOptions,
    ) -> Result<ObjectStream, Error> {
        // Twice at most: a version checked between the two reads is trusted by the second.
        for _ in 0..2 {
            let mut found = None;
            let object = storage
                .read_stream_trusting(key, options.clone(), |version| {
                    found = self.verdict(key, version);
                    found == Some(Found::Intact)
                })
                .await?;
            if !storage.verifies_reads() || object.info.checksum.is_none() {
                return Ok(object);
            }
            if let Some(found) = found {
                return found.result().map(|()| object);
            }
            let Some(version) = object.version.clone() else {
                // Nothing names these bytes (a file changed in the last seconds): this
                // range waits for a whole read of the etag it read, shared with the ranges
                // asking at the same time, and no verdict is kept.
                let asked = Asked::Etag(object.info.etag.clone());
                if let Some(found) = self.check(storage, key, asked).await {
                    return found.result().map(|()| object);
                }
                pinned_whole(storage, key, object.info.etag.clone()).await?;
                return Ok(object);
            };
            drop(object);
            if let Some(found) = self.check(storage, key, Asked::Version(version)).await {
                // Corrupt: its error. Intact: the next read trusts it.
                found.result()?;
            }
        }
        // The file kept changing: verified now for this range alone.
        let object = storage.read_stream(key, options).await?;
        pinned_whole(storage, key, object.info.etag.clone()).await?;
        Ok(object)
    }

    /// The one check of `asked` of `key` at a time: ranges asking the same wait for it.
    async fn check(
        self: &Arc<Self>,
        storage: &Storage,
        key: &ObjectKey,
        asked: Asked,
    ) -> Option<Found> {
        let id = (key.to_string(), asked.clone());
        let check = {
            let mut known = self.lock();
            // A check of this version may have ended since the caller looked for its
            // verdict: its verdict answers, and the version is not read again.
            if let Asked::Version(version) = &asked
                && let Some(verdict) = known.verdicts.get(key.as_str())
                && verdict.version == *version
            {
                return Some(verdict.found.clone());
            }
            match known.checking.get(&id).and_then(WeakShared::upgrade) {
                Some(check) => check,
                None => {
                    let check = self.start_check(storage, key, asked);
                    if known.checking.len() >= SWEEP_FROM {
                        known.checking.retain(|_, c| c.upgrade().is_some());
                    }
                    if let Some(weak) = check.downgrade() {
                        known.checking.insert(id.clone(), weak);
                    }
                    check
                }
            }
        };
        let found = check.await;
        self.lock().checking.remove(&id);
        found
    }

    /// A check of `asked`: it waits for a turn, reads the key whole through the verifier
    /// (pinned to the etag asked about, if any) and keeps the verdict on the version it
    /// read, if the read names one; what it found for `asked`, if that is what it read.
    fn start_check(self: &Arc<Self>, storage: &Storage, key: &ObjectKey, asked: Asked) -> Check {
        let this = Arc::clone(self);
        let (storage, key) = (storage.clone(), key.clone());
        async move {
            // The semaphore is never closed: a turn always comes.
            let _turn = Arc::clone(&this.turns).acquire_owned().await;
            let options = ReadOptions {
                if_match: match &asked {
                    Asked::Etag(etag) => etag.clone(),
                    Asked::Version(_) => None,
                },
                ..Default::default()
            };
            let object = storage.read_stream(&key, options).await.ok()?;
            let (read, size) = (object.version.clone(), object.info.size);
            let found = Found::of(&drain(object.stream).await)?;
            if let Some(read) = &read {
                this.keep(&key, read.clone(), size, found.clone());
            }
            match asked {
                Asked::Version(version) => (read == Some(version)).then_some(found),
                Asked::Etag(_) => Some(found),
            }
        }
        .boxed()
        .shared()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        // The maps hold no invariant a panic could break halfway.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Verifies by a whole read the version of `key` whose etag is `etag`.
async fn pinned_whole(
    storage: &Storage,
    key: &ObjectKey,
    etag: Option<String>,
) -> Result<(), Error> {
    let options = ReadOptions {
        if_match: etag,
        ..Default::default()
    };
    drain(storage.read_stream(key, options).await?.stream).await
}

/// Reads a stream to its end.
async fn drain(mut stream: BoxStream<'static, Result<bytes::Bytes, Error>>) -> Result<(), Error> {
    while let Some(chunk) = stream.next().await {
        chunk?;
    }
    Ok(())
}

/// A verifying stream of a whole version that keeps the verifier's verdict: intact once
/// its last byte is out (the verifier gives the last chunk only once the checksum
/// matched; hyper stops asking once the length it announced is sent, so the end is never
/// seen), corrupt at [`Error::Corrupt`]. A stream dropped early keeps none.
struct Recording {
    inner: BoxStream<'static, Result<bytes::Bytes, Error>>,
    /// The bytes still to come.
    left: u64,
    note: Option<(Arc<VerifiedVersions>, ObjectKey, ReadVersion, u64)>,
}

impl Stream for Recording {
    type Item = Result<bytes::Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(self.inner.poll_next_unpin(cx));
        let found = match &item {
            Some(Ok(chunk)) => {
                self.left = self.left.saturating_sub(chunk.len() as u64);
                (self.left == 0).then_some(Found::Intact)
            }
            Some(Err(e)) => Found::of_error(e),
            None => Some(Found::Intact).filter(|_| self.left == 0),
        };
        if let Some(found) = found
            && let Some((verified, key, version, size)) = self.note.take()
        {
            verified.keep(&key, version, size, found);
        }
        Poll::Ready(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(verdicts: &Verdicts<u64>, large: bool) -> usize {
        verdicts
            .by_key
            .values()
            .filter(|v| v.large == large)
            .count()
    }

    /// What a half holds by its own count, checked against the entries themselves.
    fn held(verdicts: &Verdicts<u64>, large: bool) -> (usize, usize) {
        let half = &verdicts.halves[usize::from(large)];
        assert_eq!(half.bytes, really_held(verdicts, large));
        assert_eq!(half.count, live(verdicts, large));
        (half.count, half.bytes)
    }

    /// What a half really holds: its live entries' weights, and the key each stale order
    /// item still carries.
    fn really_held(verdicts: &Verdicts<u64>, large: bool) -> usize {
        let half = &verdicts.halves[usize::from(large)];
        let live = |key: &str, seq: u64| verdicts.get(key).is_some_and(|v| v.seq == seq);
        let stale = half.order.iter().filter(|(k, s)| !live(k, *s));
        let stale_bytes = stale.map(|(k, _)| k.len()).sum::<usize>();
        let live_bytes = verdicts.by_key.values().filter(|v| v.large == large);
        live_bytes.map(|v| v.weight).sum::<usize>() + stale_bytes
    }

    /// A range that found no verdict, and asks for the check of its version only once that
    /// check ended (its verdict kept, its entry gone), is answered by the kept verdict, not
    /// by a second whole read: ranges asked together read a version whole once however
    /// their steps interleave (a late one read the whole object again under load).
    #[tokio::test]
    async fn a_check_asked_once_its_verdict_is_kept_reads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::connect(&maskstore_core::Config::local(dir.path())).unwrap();
        let key: ObjectKey = "mask/settled.png".parse().unwrap();
        storage.put(&key, &b"png"[..]).await.unwrap();
        // A read names its version once the file's last change is 3 s old.
        tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
        let read = storage.read_stream(&key, ReadOptions::default()).await;
        let version = read.unwrap().version.expect("a settled file's version");
        let verified = Arc::new(VerifiedVersions::default());
        let asked = || Asked::Version(version.clone());
        let found = verified.check(&storage, &key, asked()).await;
        assert_eq!(found, Some(Found::Intact));
        let reads = storage.monitor().counts().total();
        let found = verified.check(&storage, &key, asked()).await;
        assert_eq!(found, Some(Found::Intact));
        assert_eq!(storage.monitor().counts().total(), reads, "read again");
    }

    /// Ranges of a file changed in the last seconds (no version names its bytes) that ask
    /// while the check of its etag is under way wait for that one check: one whole read.
    #[tokio::test]
    async fn checks_of_one_etag_asked_together_read_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::connect(&maskstore_core::Config::local(dir.path())).unwrap();
        let key: ObjectKey = "mask/fresh.png".parse().unwrap();
        // Larger than a read made without waiting: each check waits for its read.
        storage.put(&key, vec![7u8; 2 << 20]).await.unwrap();
        let read = storage
            .read_stream(&key, ReadOptions::default())
            .await
            .unwrap();
        assert!(
            read.version.is_none(),
            "a file written just now has no version"
        );
        let asked = || Asked::Etag(read.info.etag.clone());
        let verified = Arc::new(VerifiedVersions::default());
        // Every turn held, so that both checks are asked before either can read, however
        // fast the read (a check that ended before the second was asked would be read
        // again, by design: no version names these bytes).
        let turns = u32::try_from(verified.turns.available_permits()).unwrap();
        let held = Arc::clone(&verified.turns)
            .acquire_many_owned(turns)
            .await
            .unwrap();
        let reads = storage.monitor().counts().total();
        let (first, second, ()) = tokio::join!(
            verified.check(&storage, &key, asked()),
            verified.check(&storage, &key, asked()),
            async move {
                tokio::task::yield_now().await;
                drop(held);
            }
        );
        assert_eq!((first, second), (Some(Found::Intact), Some(Found::Intact)));
        assert_eq!(storage.monitor().counts().total(), reads + 1);
    }

    #[test]
    fn new_versions_of_long_keys_cannot_hold_more_than_the_byte_bound() {
        let mut verdicts = Verdicts::<u64>::default();
        let long = "k".repeat(maskstore_core::MAX_KEY_BYTES - 20);
        for round in 0..3u64 {
            for n in 0..1_000u64 {
                verdicts.keep(&format!("mask/{long}{n}"), round, 10, Found::Intact);
            }
            let really = really_held(&verdicts, false);
            assert!(
                really <= VERDICT_BYTES / 2,
                "round {round}: {really} bytes held, {} allowed",
                VERDICT_BYTES / 2
            );
            assert_eq!(verdicts.halves[0].bytes, really);
        }
        for n in 0..1_000u64 {
            verdicts.forget(&format!("mask/{long}{n}"));
        }
        assert_eq!(verdicts.halves[0].bytes, really_held(&verdicts, false));
    }

    #[test]
    fn many_distinct_keys_cannot_grow_the_verdicts_past_their_bound() {
        let mut verdicts = Verdicts::<u64>::default();
        for n in 0..(VERDICTS as u64 * 2) {
            verdicts.keep(&format!("mask/flood/{n}.png"), n, 10, Found::Intact);
        }
        let (count, bytes) = held(&verdicts, false);
        assert_eq!(count, VERDICTS / 2);
        assert!(bytes <= VERDICT_BYTES / 2);
        assert!(verdicts.halves[0].order.len() <= 2 * count + 1024);
        // The longest keys: the byte bound holds before the count would.
        let long = "k".repeat(maskstore_core::MAX_KEY_BYTES - 20);
        for n in 0..20_000u64 {
            verdicts.keep(&format!("mask/{long}{n}"), n, 10, Found::Intact);
        }
        let (count, bytes) = held(&verdicts, false);
        assert!(bytes <= VERDICT_BYTES / 2, "{bytes} bytes");
        let most = VERDICT_BYTES / 2 / (2 * long.len());
        assert!(
            count <= most,
            "{count} verdicts of the longest keys, {most} fit"
        );
        // One key rewritten over and over leaves no trail of stale order items.
        for n in 0..100_000u64 {
            verdicts.keep("mask/hot.png", n, 10, Found::Intact);
        }
        let (count, _) = held(&verdicts, false);
        assert!(verdicts.halves[0].order.len() <= 2 * count + 1024);
    }

    #[test]
    fn small_objects_cannot_push_large_ones_out() {
        let mut verdicts = Verdicts::<u64>::default();
        verdicts.keep("mask/large.png", 1, LARGE_FROM, Found::Intact);
        for n in 0..(VERDICTS as u64) {
            verdicts.keep(&format!("mask/small/{n}.png"), n, 10, Found::Intact);
        }
        assert_eq!(live(&verdicts, true), 1);
        assert_eq!(verdicts.get("mask/large.png").map(|v| v.version), Some(1));
        assert_eq!(held(&verdicts, false).0, VERDICTS / 2);
    }

    #[test]
    fn a_new_version_or_a_write_replaces_the_keys_verdict() {
        let mut verdicts = Verdicts::<u64>::default();
        verdicts.keep("mask/a.png", 1, 10, Found::Intact);
        verdicts.keep("mask/a.png", 2, LARGE_FROM, Found::Intact);
        // Only the stale order item's copy of the key is left in the small half.
        assert_eq!(held(&verdicts, false), (0, "mask/a.png".len()));
        assert_eq!(held(&verdicts, true).0, 1);
        assert_eq!(verdicts.get("mask/a.png").map(|v| v.version), Some(2));
        verdicts.forget("mask/a.png");
        assert!(verdicts.get("mask/a.png").is_none());
        assert_eq!(held(&verdicts, true), (0, "mask/a.png".len()));
    }
}
