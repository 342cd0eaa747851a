//! Which etag names which version: the model never predicts an etag's text, it learns
//! each one from the backend and then holds the backend to it.

use std::collections::BTreeMap;

use super::op::EtagRef;
use super::state::Version;

/// An etag no backend returns: conditions sent with it never hold.
pub const BOGUS_ETAG: &str = "\"maskstore-model-never-an-etag\"";

/// The etags seen per key, each with the version it named.
#[derive(Debug, Clone, Default)]
pub struct Etags {
    seen: BTreeMap<String, Vec<(Version, String)>>,
}

impl Etags {
    /// Records that `key` answered `etag` while holding `version`. Two rules: a version's
    /// etag never changes while it is stored, and one etag names one content. S3's etags
    /// are MD5 digests of the bytes, so two versions with the same bytes may share one.
    pub fn observe(&mut self, key: &str, version: &Version, etag: &str) -> Result<(), String> {
        let seen = self.seen.entry(key.to_string()).or_default();
        for (other, known) in seen.iter() {
            if other.write == version.write && known != etag {
                return Err(format!(
                    "{key:?}: etag changed from {known} to {etag} while the object stayed \
                     write #{}",
                    version.write
                ));
            }
            if other.write != version.write && known == etag && !same_bytes(other, version) {
                return Err(format!(
                    "{key:?}: etag {etag} names both write #{} and write #{}, which hold \
                     different bytes",
                    other.write, version.write
                ));
            }
        }
        if !seen.iter().any(|(v, _)| v.write == version.write) {
            seen.push((version.clone(), etag.to_string()));
        }
        Ok(())
    }

    /// The write `etag` was seen naming at `key`, if any.
    pub fn write_of(&self, key: &str, etag: &str) -> Option<u64> {
        let seen = self.seen.get(key)?;
        seen.iter().find(|(_, e)| e == etag).map(|(v, _)| v.write)
    }

    /// The write whose etag `etag` is at `key`, if it holds other bytes than `version`.
    pub fn names_other(&self, key: &str, etag: &str, version: &Version) -> Option<u64> {
        let seen = self.seen.get(key)?;
        seen.iter()
            .find(|(v, e)| e == etag && v.write != version.write && !same_bytes(v, version))
            .map(|(v, _)| v.write)
    }

    /// The etag `reference` sends for `key`, now holding `current`.
    pub fn resolve(&self, key: &str, current: Option<&Version>, reference: EtagRef) -> String {
        let seen = self.seen.get(key).map(Vec::as_slice).unwrap_or_default();
        let found = match (reference, current) {
            (EtagRef::Fresh, Some(current)) => seen.iter().find(|(v, _)| v.write == current.write),
            (EtagRef::Stale, Some(current)) => seen
                .iter()
                .rev()
                .find(|(v, _)| v.write != current.write && !same_bytes(v, current)),
            (EtagRef::Stale, None) => seen.last(),
            (EtagRef::Fresh | EtagRef::Bogus, _) => None,
        };
        found.map_or_else(|| BOGUS_ETAG.to_string(), |(_, etag)| etag.clone())
    }

    /// Whether `reference` names `current` for the model: a fresh reference to an
    /// existing key whose etag is known.
    pub fn names_current(&self, key: &str, current: Option<&Version>, reference: EtagRef) -> bool {
        reference == EtagRef::Fresh
            && current.is_some_and(|c| {
                self.seen
                    .get(key)
                    .is_some_and(|s| s.iter().any(|(v, _)| v.write == c.write))
            })
    }
}

fn same_bytes(a: &Version, b: &Version) -> bool {
    a.body == b.body || (a.body.len == b.body.len && a.body.bytes() == b.body.bytes())
}
