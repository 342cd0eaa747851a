//! The one error type of maskstore-core.

use crate::config::Origin;

/// What was wrong with an input that maskstore checks before any I/O.
///
/// Every message names what was wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An object key breaks the key rules (see [`crate::ObjectKey`]).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given (possibly shortened when very long).
        key: String,
        /// Which rule it breaks and how to fix it.
        reason: String,
    },
    /// A mask key breaks the `mask/<study-uid>/<series-uid>/<mask-id>.<ext>` scheme.
    #[error("invalid mask key {key:?}: {reason}")]
    InvalidMaskKey {
        /// The mask key as given.
        key: String,
        /// Which rule it breaks and how to fix it.
        reason: String,
    },
    /// A requested signed-URL lifetime is zero or above the configured maximum.
    #[error(
        "invalid TTL {requested} s: a signed URL must live between 1 and {max} seconds \
         (signed_url.max_ttl); ask for a shorter TTL or raise max_ttl"
    )]
    InvalidTtl {
        /// The requested lifetime in seconds.
        requested: u64,
        /// The largest lifetime allowed, in seconds.
        max: u64,
    },
    /// A configuration value is missing or wrong.
    #[error("config key {key} ({origin}): {problem}; {fix}")]
    Config {
        /// The dotted key, e.g. `object_storage.bucket_name`.
        key: String,
        /// Where the offending value came from.
        origin: Origin,
        /// What is wrong with it.
        problem: String,
        /// What to do about it.
        fix: String,
    },
}

impl Error {
    pub(crate) fn invalid_key(key: &str, reason: impl Into<String>) -> Self {
        Error::InvalidKey {
            key: shorten(key),
            reason: reason.into(),
        }
    }

    pub(crate) fn config(
        key: &str,
        origin: &Origin,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Error::Config {
            key: key.to_string(),
            origin: origin.clone(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// Keeps error messages readable when someone passes a megabyte as a key.
fn shorten(key: &str) -> String {
    const MAX: usize = 120;
    if key.len() <= MAX {
        return key.to_string();
    }
    let mut end = MAX;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &key[..end])
}
