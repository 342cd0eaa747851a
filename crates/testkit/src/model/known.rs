//! Divergences already known and reported, which a backend's run may declare: each hit is
//! counted and printed beside the backend's line instead of failing it, and nothing else
//! about the answer is excused.

use std::collections::BTreeMap;

/// A known divergence from the model, with where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Known {
    /// A range read of an empty object answers otherwise than the model (a suffix: no
    /// bytes; any start: `InvalidRange`): SeaweedFS refuses a suffix (416), moto answers a
    /// suffix with a whole 200 that object_store reads as an error, Azurite and
    /// fake-gcs-server send `Content-Range: bytes 0--1/0`, which object_store cannot
    /// parse. Excused: any error, or no bytes; never wrong bytes.
    EmptyObjectRanges,
    /// SeaweedFS stores an explicit `application/octet-stream` as the type its file
    /// extension suggests (`.png`: `image/png`), whatever the client sent (boto3 too).
    OctetStreamByExtension,
    /// A read with `if-match` of a missing key answers `Precondition` (Azurite: 412),
    /// where S3, memory and local disk answer `NotFound` (the model's choice: the key is
    /// looked up first).
    IfMatchOnMissingKey,
    /// The GCS provider reports a write's etag as `"replaced-generation-<n>"` when the
    /// generation it wrote could no longer be read right after (replaced by a concurrent
    /// write); fake-gcs-server answers so although that generation is still the current
    /// one, so the write reports an etag no read repeats. Excused: only that etag of a
    /// write; such an etag is never bound to a version.
    ReplacedGenerationEtag,
}

impl Known {
    /// Its short name, as printed.
    pub fn name(self) -> &'static str {
        match self {
            Known::EmptyObjectRanges => "empty-object ranges",
            Known::OctetStreamByExtension => "octet-stream typed by extension",
            Known::IfMatchOnMissingKey => "if-match on a missing key",
            Known::ReplacedGenerationEtag => "replaced-generation etag",
        }
    }
}

/// How often each known divergence was met.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hits(pub BTreeMap<Known, usize>);

impl Hits {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Hits) {
        for (known, n) in &other.0 {
            *self.0.entry(*known).or_default() += n;
        }
    }
}

impl std::fmt::Display for Hits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: usize = self.0.values().sum();
        write!(f, "{total} known")?;
        if total > 0 {
            let parts: Vec<String> = self
                .0
                .iter()
                .map(|(k, n)| format!("{} {n}", k.name()))
                .collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}
