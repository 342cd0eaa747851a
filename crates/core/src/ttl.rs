//! Signed-URL lifetimes.

use std::time::Duration;

use crate::Error;

/// S3's ceiling for a SigV4 presigned URL: 7 days.
pub const S3_MAX_PRESIGN_SECS: u64 = 7 * 24 * 60 * 60;

/// The lifetime rules from `[signed_url]`: a default, and a maximum that is never
/// silently clamped.
///
/// ```
/// use std::time::Duration;
/// use maskstore_core::TtlPolicy;
/// let policy = TtlPolicy::new(600, 3600).unwrap();
/// assert_eq!(policy.resolve(None).unwrap(), Duration::from_secs(600));
/// assert_eq!(policy.resolve(Some(60)).unwrap(), Duration::from_secs(60));
/// assert!(policy.resolve(Some(7200)).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    default_secs: u64,
    max_secs: u64,
}

impl TtlPolicy {
    /// A policy with the given default and maximum lifetimes, in seconds.
    ///
    /// Fails when either is 0, the default exceeds the maximum, or the maximum exceeds
    /// S3's 7-day presign ceiling.
    pub fn new(default_secs: u64, max_secs: u64) -> Result<Self, Error> {
        if default_secs == 0 || max_secs == 0 || default_secs > max_secs {
            return Err(Error::InvalidTtl {
                requested: default_secs,
                max: max_secs,
            });
        }
        if max_secs > S3_MAX_PRESIGN_SECS {
            return Err(Error::InvalidTtl {
                requested: max_secs,
                max: S3_MAX_PRESIGN_SECS,
            });
        }
        Ok(TtlPolicy {
            default_secs,
            max_secs,
        })
    }

    /// The lifetime used when none is requested.
    pub fn default_ttl(&self) -> Duration {
        Duration::from_secs(self.default_secs)
    }

    /// The longest lifetime allowed.
    pub fn max_ttl(&self) -> Duration {
        Duration::from_secs(self.max_secs)
    }

    /// The lifetime to use for a request: none → the default; `1..=max` → as asked;
    /// 0 or above the maximum → [`Error::InvalidTtl`] stating the maximum.
    pub fn resolve(&self, requested_secs: Option<u64>) -> Result<Duration, Error> {
        match requested_secs {
            None => Ok(self.default_ttl()),
            Some(t) if t > 0 && t <= self.max_secs => Ok(Duration::from_secs(t)),
            Some(t) => Err(Error::InvalidTtl {
                requested: t,
                max: self.max_secs,
            }),
        }
    }
}

impl Default for TtlPolicy {
    fn default() -> Self {
        TtlPolicy {
            default_secs: 600,
            max_secs: 3600,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_request_gets_the_default() {
        let p = TtlPolicy::default();
        assert_eq!(p.resolve(None).unwrap(), Duration::from_secs(600));
    }

    #[test]
    fn requests_up_to_the_maximum_are_granted_as_asked() {
        let p = TtlPolicy::default();
        assert_eq!(p.resolve(Some(1)).unwrap(), Duration::from_secs(1));
        assert_eq!(p.resolve(Some(3600)).unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn above_the_maximum_is_an_error_stating_the_maximum_never_clamped() {
        let err = TtlPolicy::default().resolve(Some(3601)).unwrap_err();
        assert_eq!(
            err,
            Error::InvalidTtl {
                requested: 3601,
                max: 3600
            }
        );
        assert!(err.to_string().contains("1 and 3600 seconds"), "{err}");
    }

    #[test]
    fn zero_is_refused() {
        assert!(matches!(
            TtlPolicy::default().resolve(Some(0)),
            Err(Error::InvalidTtl { requested: 0, .. })
        ));
    }

    #[test]
    fn policy_itself_is_validated() {
        assert!(TtlPolicy::new(0, 10).is_err());
        assert!(TtlPolicy::new(10, 0).is_err());
        assert!(TtlPolicy::new(20, 10).is_err());
        assert!(TtlPolicy::new(10, S3_MAX_PRESIGN_SECS + 1).is_err());
        TtlPolicy::new(S3_MAX_PRESIGN_SECS, S3_MAX_PRESIGN_SECS).unwrap();
    }
}
