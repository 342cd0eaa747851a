//! Which versions of objects were read whole and matched their stored checksum, so that a
//! partial range is served only from a verified version: a range cannot be checked on its
//! own (the checksum covers the whole object), so the first range of a version reads the
//! whole object through the verifier once, and later ranges of it trust that verdict.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use futures::StreamExt;
use maskstore_backends::{Error, ObjectInfo, ReadOptions, Storage};

/// How many verified versions are remembered; the oldest verdict is forgotten first (its
/// next range read verifies it again).
pub(crate) const VERIFIED_VERSIONS: usize = 4096;

/// Versions (key and etag) known to match their checksum, the newest [`VERIFIED_VERSIONS`].
#[derive(Debug, Default)]
pub(crate) struct VerifiedVersions {
    known: Mutex<Known>,
}

#[derive(Debug, Default)]
struct Known {
    set: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
}

impl VerifiedVersions {
    /// Ok once the version `info` describes was verified, now or before: it has no
    /// checksum, or reads are not verified, or a whole read matched it. A damaged object
    /// is [`Error::Corrupt`]; a version replaced meanwhile is [`Error::Precondition`].
    pub(crate) async fn ensure(&self, storage: &Storage, info: &ObjectInfo) -> Result<(), Error> {
        if !storage.verifies_reads() || info.checksum.is_none() {
            return Ok(());
        }
        let version = info
            .etag
            .as_ref()
            .map(|etag| (info.key.to_string(), etag.clone()));
        if let Some(version) = &version
            && self.lock().set.contains(version)
        {
            return Ok(());
        }
        let options = ReadOptions {
            if_match: info.etag.clone(),
            ..Default::default()
        };
        let mut whole = storage.read_stream(&info.key, options).await?.stream;
        while let Some(chunk) = whole.next().await {
            chunk?;
        }
        if let Some(version) = version {
            self.remember(version);
        }
        Ok(())
    }

    fn remember(&self, version: (String, String)) {
        let mut known = self.lock();
        if known.set.insert(version.clone()) {
            known.order.push_back(version);
            if known.order.len() > VERIFIED_VERSIONS
                && let Some(oldest) = known.order.pop_front()
            {
                known.set.remove(&oldest);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        // The set holds no invariant a panic could break halfway.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}
