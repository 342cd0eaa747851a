//! Documented engine departures: where a test server departs from the provider it stands
//! for, in a way maskstore cannot and should not repair, a backend's run may declare it.
//! Each one names the engine and the exact answer excused; each hit is counted and printed
//! beside the backend's line as "N documented engine departures", apart from its
//! divergences, and nothing else about the answer is excused. A departure that maskstore
//! could repair is a divergence, fixed where it belongs, never listed here.

use std::collections::BTreeMap;

/// A documented departure of a test engine from the provider it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Known {
    /// SeaweedFS (4.48) stores an explicit `Content-Type: application/octet-stream` as the
    /// type its key's extension suggests (`.png`: `image/png`), whatever the client sent
    /// (boto3's `put_object(ContentType="application/octet-stream")` too); S3 stores the
    /// type sent, and so may a copy to such a key, while a copy of such an object may carry
    /// the type it took (measured on empty objects). Excused: only a version written with
    /// that type, read back (Storage or a signed GET) as the type that the extension of its
    /// key, or of a key its bytes were written or copied under, names.
    SeaweedfsOctetStreamByExtension,
}

impl Known {
    /// Its short name, as printed.
    pub fn name(self) -> &'static str {
        match self {
            Known::SeaweedfsOctetStreamByExtension => {
                "SeaweedFS types application/octet-stream by extension"
            }
        }
    }
}

/// How often each documented departure was met.
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
        write!(f, "{total} documented engine departures")?;
        if total > 0 {
            let parts: Vec<String> = self
                .0
                .iter()
                .map(|(k, n)| format!("{}: {n}", k.name()))
                .collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}
