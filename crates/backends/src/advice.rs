//! What the provider a config names says about itself, for operators: how it describes its
//! store, where its objects live, and the cause and fix of a failed step of
//! `maskstore check`. Each provider's own advice lives in its folder; what holds for every
//! provider (a wrong region, a skewed clock, an unreachable endpoint) is here.
//!
//! ```
//! use maskstore_backends::advice;
//! use maskstore_core::Config;
//!
//! let config = Config::azure("pacsmasks", "pacs-masks").unwrap();
//! assert!(advice::describe(&config).starts_with("container pacs-masks of account pacsmasks"));
//! ```

use maskstore_core::Config;
use maskstore_core::config::ObjectStorageConfig;

use crate::Error;
use crate::layers::Operation;
use crate::providers::{Profile, profile_of};

/// Why a step failed and what to do, in the operator's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// What went wrong.
    pub cause: String,
    /// What to do about it.
    pub fix: String,
}

impl Diagnosis {
    /// A diagnosis of `cause` and `fix`.
    pub fn new(cause: impl Into<String>, fix: impl Into<String>) -> Diagnosis {
        Diagnosis {
            cause: cause.into(),
            fix: fix.into(),
        }
    }
}

fn profile(config: &Config) -> &'static Profile {
    profile_of(Some(config.object_storage.provider))
}

/// The store `config` names, for people: `bucket pacs-masks-dev in us-east-1 at AWS`,
/// `container c of account a at Azure`, `folder ./data`, `process memory`.
pub fn describe(config: &Config) -> String {
    (profile(config).describe)(&config.object_storage)
}

/// Where `config`'s objects live: two configs with the same identity name the same store
/// (`maskstore sync` refuses to copy a store onto itself).
pub fn identity(config: &Config) -> String {
    (profile(config).identity)(&config.object_storage)
}

/// An endpoint as part of an identity: two spellings of one address (`HTTP://Host:9000/`,
/// `http://host:9000`) are one endpoint.
pub(crate) fn endpoint_identity(endpoint: &str) -> String {
    endpoint.trim_end_matches('/').to_ascii_lowercase()
}

/// Why a browser's CORS preflight to the store `config` names was refused (403), and the
/// provider's own command that applies `maskstore policy cors`.
pub fn cors_refused(config: &Config) -> &'static str {
    profile(config).cors_refused
}

/// The cause and fix of `error`, met by `operation` (`None` while connecting) on the store
/// `config` names: the provider's own advice where it has some (credentials, permissions,
/// a missing bucket), else what holds for every provider.
pub fn diagnose(operation: Option<Operation>, error: &Error, config: &Config) -> Diagnosis {
    let profile = profile(config);
    let os = &config.object_storage;
    let own = &profile.check;
    let advised = match error {
        Error::CredentialsRejected { detail, .. } => own.credentials.map(|f| f(detail, os)),
        Error::PermissionDenied { detail, .. } => own.denied.map(|f| f(operation, detail, os)),
        Error::BucketMissing { detail, .. } => own.bucket_missing.map(|f| f(detail, os)),
        Error::Config { problem, .. } => own.config.map(|f| f(problem, os)),
        _ => None,
    };
    advised.unwrap_or_else(|| neutral(profile, error, os))
}

/// The advice that holds whichever provider refused.
fn neutral(profile: &Profile, error: &Error, os: &ObjectStorageConfig) -> Diagnosis {
    let endpoint = os.endpoint.as_deref().unwrap_or(profile.default_endpoint);
    match error {
        Error::RegionMismatch {
            expected, detail, ..
        } => Diagnosis::new(
            format!(
                "region mismatch: bucket {} is in {}, not {} ({detail})",
                os.bucket_name.as_deref().unwrap_or("<bucket>"),
                expected.as_deref().unwrap_or("another region"),
                os.region.as_deref().unwrap_or("?")
            ),
            match expected {
                Some(region) => format!("set APP_OBJECT_STORAGE__REGION={region}"),
                None => "set object_storage.region to the bucket's region (the guide warns \
                         that us-east-1 is only the default)"
                    .to_string(),
            },
        ),
        Error::ClockSkew { detail, .. } => Diagnosis::new(
            format!("this machine's clock is too far from the server's ({detail})"),
            "synchronise the clock with NTP (timedatectl set-ntp true) and retry",
        ),
        Error::Unreachable { detail, .. } if is_tls(detail) => Diagnosis::new(
            format!("the TLS handshake with {endpoint} failed ({detail})"),
            "if the engine speaks plain HTTP, write the endpoint with http://; otherwise \
             install a certificate the machine trusts",
        ),
        Error::Unreachable { detail, .. } => Diagnosis::new(
            format!("the endpoint {endpoint} is unreachable ({detail})"),
            profile.reach_fix,
        ),
        Error::ServerFailed { detail, .. } => Diagnosis::new(
            format!("the server at {endpoint} failed on its side ({detail})"),
            "it answered, so the endpoint, network and credentials are not the cause: retry \
             later, and if it persists report the answer to whoever runs the server",
        ),
        other => Diagnosis::new(other.to_string(), "see the message above"),
    }
}

/// Whether an unreachable endpoint's failure was the TLS handshake.
fn is_tls(detail: &str) -> bool {
    let lower = detail.to_ascii_lowercase();
    [
        "certificate",
        "tls",
        "ssl",
        "handshake",
        "corrupt message",
        "invalidcontenttype",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_holds_for_every_provider_names_the_providers_endpoint() {
        let unreachable = Error::Unreachable {
            backend: "azure".to_string(),
            detail: "connection refused".to_string(),
        };
        let azure = Config::azure("pacsmasks", "pacs-masks").unwrap();
        let d = diagnose(Some(Operation::List), &unreachable, &azure);
        assert!(
            d.cause.contains("the endpoint Azure is unreachable"),
            "{}",
            d.cause
        );
        let skew = Error::ClockSkew {
            backend: "s3".to_string(),
            detail: "RequestTimeTooSkewed".to_string(),
        };
        let d = diagnose(Some(Operation::Put), &skew, &Config::memory());
        assert!(d.fix.contains("NTP"), "{}", d.fix);
    }

    #[test]
    fn an_unreachable_store_is_told_in_its_providers_own_settings() {
        let s3 = Config::s3("pacs-masks", "us-east-1").unwrap();
        let gcs = Config::gcs("pacs-masks").unwrap();
        let azure = Config::azure("pacsmasks", "pacs-masks").unwrap();
        for (config, own, foreign) in [
            (&s3, "object_storage.region", &["account", "googleapis"][..]),
            (
                &gcs,
                "storage.googleapis.com",
                &["region", "AWS", "account"][..],
            ),
            (
                &azure,
                "object_storage.account",
                &["region", "AWS", "googleapis"][..],
            ),
        ] {
            let e = Error::Unreachable {
                backend: config.object_storage.provider.to_string(),
                detail: "connection refused".to_string(),
            };
            let d = diagnose(Some(Operation::List), &e, config);
            for text in [format!("{} {}", d.cause, d.fix), e.to_string()] {
                assert!(text.contains(own), "{text}");
                assert!(text.contains("object_storage.endpoint"), "{text}");
                for word in foreign {
                    assert!(!text.contains(word), "{word} in {text}");
                }
            }
        }
    }

    #[test]
    fn missing_or_wrong_gcs_and_azure_credentials_are_told_in_their_own_settings() {
        let gcs = Config::gcs("pacs-masks").unwrap();
        let azure = Config::azure("pacsmasks", "pacs-masks").unwrap();
        for (config, own) in [
            (&gcs, "SERVICE_ACCOUNT_KEY"),
            (&azure, "APP_OBJECT_STORAGE__ACCOUNT_KEY"),
        ] {
            let provider = Some(config.object_storage.provider);
            let missing = profile(config).no_credentials.to_string();
            for detail in [missing.as_str(), "401 AuthenticationFailed"] {
                let e = Error::CredentialsRejected {
                    backend: config.object_storage.provider.to_string(),
                    provider,
                    detail: detail.to_string(),
                };
                let d = diagnose(Some(Operation::List), &e, config);
                let text = format!("{} {} {e}", d.cause, d.fix);
                assert!(text.contains(own), "{text}");
                for aws in [
                    "AWS",
                    "access key",
                    "ACCESS_KEY",
                    "SECRET_KEY",
                    "IAM policy",
                ] {
                    assert!(!text.contains(aws), "{aws} in {text}");
                }
            }
        }
    }
}
