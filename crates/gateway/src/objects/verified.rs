//! Which versions of objects were read whole and matched their stored checksum, so that a
//! partial range is served only from a verified version: a range cannot be checked on its
//! own (the checksum covers the whole object), so the first range of a version reads the
//! whole object through the verifier once, and later ranges of it trust that verdict.
//!
//! A range costs at most one whole read per version while clients wait for it: ranges of
//! a version arriving while it is checked wait for that one check (a viewer opening a
//! large mask asks several at once), and a version found corrupt is remembered as such, so
//! asking it for one byte again and again does not read it whole each time.
//!
//! At most [`CHECKS_AT_ONCE`] checks read at once (each holds a read chunk or two), so
//! ranges of many unverified objects cannot make the gateway read them all at the same
//! time. A check is carried by the requests waiting for it and dropped when the last one
//! goes away, so clients that ask and leave queue nothing before others' checks.
//!
//! Only versions of [`REMEMBERED_FROM`] bytes or more are remembered: a smaller one is
//! read whole for each range (about what serving it costs), so a client that writes and
//! reads many small objects cannot push other objects' verdicts out of the memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};
use maskstore_backends::{Error, ObjectInfo, ReadOptions, Storage};

/// How many verdicts are remembered; the oldest is forgotten first (its next range read
/// verifies it again).
pub(crate) const VERIFIED_VERSIONS: usize = 4096;

/// The smallest version whose verdict is remembered: 1 MiB, one read chunk.
pub(crate) const REMEMBERED_FROM: u64 = 1024 * 1024;

/// How many checks read at once; the others wait for their turn.
pub(crate) const CHECKS_AT_ONCE: usize = 4;

/// A version: the key and its etag.
type Version = (String, String);

/// What a whole read of a version found.
#[derive(Debug, Clone)]
enum Found {
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
            Err(Error::Corrupt {
                backend,
                key,
                expected,
                actual,
            }) => Some(Found::Corrupt {
                backend: backend.clone(),
                key: key.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            }),
            // Replaced meanwhile, or the store failed: no verdict on the version.
            Err(_) => None,
        }
    }

    fn result(&self) -> Result<(), Error> {
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

/// A check in progress: what it found, `None` when it reached no verdict.
type Check = Shared<BoxFuture<'static, Option<Found>>>;

/// How many checks the map holds before those nobody waits for any more are swept out.
const SWEEP_FROM: usize = 1024;

/// Verdicts on versions, the newest [`VERIFIED_VERSIONS`], and the checks in progress.
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

#[derive(Default)]
struct Known {
    verdicts: HashMap<Version, Found>,
    order: VecDeque<Version>,
    /// The checks requests wait for; one whose requests all went away is gone.
    checking: HashMap<Version, WeakShared<BoxFuture<'static, Option<Found>>>>,
}

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Known")
            .field("verdicts", &self.verdicts.len())
            .field("checking", &self.checking.len())
            .finish()
    }
}

impl VerifiedVersions {
    /// Ok once the version `info` describes was verified, now or before: it has no
    /// checksum, or reads are not verified, or a whole read matched it. A damaged object
    /// is [`Error::Corrupt`]; a version replaced meanwhile is [`Error::Precondition`].
    pub(crate) async fn ensure(
        self: &Arc<Self>,
        storage: &Storage,
        info: &ObjectInfo,
    ) -> Result<(), Error> {
        if !storage.verifies_reads() || info.checksum.is_none() {
            return Ok(());
        }
        let Some(etag) = info.etag.clone().filter(|_| info.size >= REMEMBERED_FROM) else {
            return read_whole(storage, info).await;
        };
        let version = (info.key.to_string(), etag);
        let check = {
            let mut known = self.lock();
            if let Some(found) = known.verdicts.get(&version) {
                return found.result();
            }
            match known.checking.get(&version).and_then(WeakShared::upgrade) {
                Some(check) => check,
                None => {
                    let check = self.check(storage, info, version.clone());
                    if known.checking.len() >= SWEEP_FROM {
                        known.checking.retain(|_, c| c.upgrade().is_some());
                    }
                    if let Some(weak) = check.downgrade() {
                        known.checking.insert(version, weak);
                    }
                    check
                }
            }
        };
        match check.await {
            Some(found) => found.result(),
            // No verdict: this request's own read says why (the version was replaced, the
            // store failed).
            None => read_whole(storage, info).await,
        }
    }

    /// The one check of `version`: it waits for a turn, reads the version whole and
    /// records the verdict, driven by the requests that wait for it.
    fn check(self: &Arc<Self>, storage: &Storage, info: &ObjectInfo, version: Version) -> Check {
        let this = Arc::clone(self);
        let (storage, info) = (storage.clone(), info.clone());
        async move {
            // The semaphore is never closed: a turn always comes.
            let _turn = Arc::clone(&this.turns).acquire_owned().await;
            let found = Found::of(&read_whole(&storage, &info).await);
            this.settle(version, found.clone());
            found
        }
        .boxed()
        .shared()
    }

    /// The check of `version` ended: its verdict, if any, is remembered.
    fn settle(&self, version: Version, found: Option<Found>) {
        let mut known = self.lock();
        known.checking.remove(&version);
        let Some(found) = found else {
            return;
        };
        if known.verdicts.insert(version.clone(), found).is_none() {
            known.order.push_back(version);
            if known.order.len() > VERIFIED_VERSIONS
                && let Some(oldest) = known.order.pop_front()
            {
                known.verdicts.remove(&oldest);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        // The maps hold no invariant a panic could break halfway.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads the version `info` describes whole through the verifier.
async fn read_whole(storage: &Storage, info: &ObjectInfo) -> Result<(), Error> {
    let options = ReadOptions {
        if_match: info.etag.clone(),
        ..Default::default()
    };
    let mut whole = storage.read_stream(&info.key, options).await?.stream;
    while let Some(chunk) = whole.next().await {
        chunk?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn stored(storage: &Storage, key: &str, size: usize) -> ObjectInfo {
        let key = maskstore_core::ObjectKey::parse(key).unwrap();
        storage.put(&key, vec![7u8; size]).await.unwrap();
        storage.head(&key).await.unwrap()
    }

    #[tokio::test]
    async fn small_versions_cannot_push_large_ones_out() {
        let storage = Storage::memory();
        let verified = Arc::new(VerifiedVersions::default());
        let large = stored(&storage, "mask/large.png", 2 * 1024 * 1024).await;
        assert!(large.checksum.is_some() && storage.verifies_reads());
        verified.ensure(&storage, &large).await.unwrap();
        for n in 0..=VERIFIED_VERSIONS {
            let small = stored(&storage, &format!("mask/small/{n}.png"), 10).await;
            verified.ensure(&storage, &small).await.unwrap();
        }
        let known = verified.lock();
        assert_eq!(
            known.verdicts.len(),
            1,
            "only the large version is remembered"
        );
        let version = (large.key.to_string(), large.etag.clone().unwrap());
        assert!(known.verdicts.contains_key(&version));
        assert!(known.checking.is_empty());
    }

    #[tokio::test]
    async fn checks_wait_for_a_turn_to_read() {
        let storage = Storage::memory();
        let verified = Arc::new(VerifiedVersions::default());
        let large = stored(&storage, "mask/large.png", 2 * 1024 * 1024).await;
        let all = u32::try_from(CHECKS_AT_ONCE).unwrap();
        let taken = Arc::clone(&verified.turns).acquire_many_owned(all).await;
        let waiting = tokio::spawn({
            let (verified, storage, large) =
                (Arc::clone(&verified), storage.clone(), large.clone());
            async move { verified.ensure(&storage, &large).await }
        });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished(), "a check read without a turn");
        assert_eq!(verified.lock().checking.len(), 1);
        drop(taken);
        waiting.await.unwrap().unwrap();
        assert_eq!(verified.turns.available_permits(), CHECKS_AT_ONCE);
        assert_eq!(verified.lock().verdicts.len(), 1);
    }

    #[tokio::test]
    async fn a_check_nobody_waits_for_leaves_the_queue() {
        let storage = Storage::memory();
        let verified = Arc::new(VerifiedVersions::default());
        let large = stored(&storage, "mask/large.png", 2 * 1024 * 1024).await;
        let all = u32::try_from(CHECKS_AT_ONCE).unwrap();
        let taken = Arc::clone(&verified.turns).acquire_many_owned(all).await;
        let left = tokio::spawn({
            let (verified, storage, large) =
                (Arc::clone(&verified), storage.clone(), large.clone());
            async move { verified.ensure(&storage, &large).await }
        });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        left.abort();
        assert!(left.await.unwrap_err().is_cancelled());
        let alive = verified
            .lock()
            .checking
            .values()
            .filter(|c| c.upgrade().is_some())
            .count();
        assert_eq!(alive, 0, "a check whose client left still waits for a turn");
        drop(taken);
        verified.ensure(&storage, &large).await.unwrap();
        assert_eq!(verified.lock().verdicts.len(), 1);
    }
}
