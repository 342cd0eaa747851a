//! What each provider says about itself in messages: what its error codes mean, what it
//! calls its bucket, what to check and grant when it refuses, how it describes the store
//! a config names, and what `maskstore check` advises when a step fails. Each provider
//! declares its [`Profile`] in its own folder; [`profile_of`] is the one place that picks
//! it, an exhaustive match, so a new provider is a compile error here until it has one.

use maskstore_core::Provider;
use maskstore_core::config::ObjectStorageConfig;

use crate::advice::Diagnosis;
use crate::answer::{Answer, Codes, Meaning};
use crate::layers::Operation;

/// A provider's knowledge of itself, for messages and advice.
#[derive(Debug)]
pub(crate) struct Profile {
    /// What its refusal codes mean; `None` when the status alone decides.
    pub meaning: fn(&Answer) -> Option<Meaning>,
    /// What it calls its bucket (`bucket`, `container`).
    pub bucket_word: &'static str,
    /// What to check when it rejects the credentials.
    pub credentials_fix: &'static str,
    /// What to grant when its policy refuses.
    pub permission_fix: &'static str,
    /// What to check when its bucket is missing.
    pub bucket_fix: &'static str,
    /// Why a browser's CORS preflight was refused (403) and what to apply, with its own
    /// CLI.
    pub cors_refused: &'static str,
    /// What was looked for when a request for credentials found none.
    pub no_credentials: &'static str,
    /// What it talks to when no endpoint is configured (`AWS`).
    pub default_endpoint: &'static str,
    /// What to check when it cannot be reached, in its own settings.
    pub reach_fix: &'static str,
    /// The store a config names, for people (`bucket b in r at AWS`).
    pub describe: fn(&ObjectStorageConfig) -> String,
    /// Where a config's objects live, to tell two stores apart (the same place gives the
    /// same text).
    pub identity: fn(&ObjectStorageConfig) -> String,
    /// What it advises when a step of `maskstore check` fails.
    pub check: CheckAdvice,
}

/// Advice on a failure: the server's words and the config give the cause and the fix.
type Advise = fn(&str, &ObjectStorageConfig) -> Diagnosis;
/// Advice on a refused operation (`None` while connecting).
type AdviseOn = fn(Option<Operation>, &str, &ObjectStorageConfig) -> Diagnosis;

/// A provider's own cause and fix of a failed `maskstore check` step, for the failures it
/// has advice on; each is given the server's words and the config. Where a provider gives
/// none, the advice that holds for every provider applies ([`crate::advice::diagnose`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckAdvice {
    /// The credentials were rejected.
    pub credentials: Option<Advise>,
    /// The policy refused the step's operation (`None` while connecting).
    pub denied: Option<AdviseOn>,
    /// The bucket (container) is missing.
    pub bucket_missing: Option<Advise>,
    /// The configuration was refused before anything was sent.
    pub config: Option<Advise>,
}

impl CheckAdvice {
    /// No advice of the provider's own.
    pub(crate) const NONE: CheckAdvice = CheckAdvice {
        credentials: None,
        denied: None,
        bucket_missing: None,
        config: None,
    };

    /// A cloud's advice: on its credentials, its permissions and its missing bucket.
    pub(crate) const fn cloud(
        credentials: Advise,
        denied: AdviseOn,
        bucket_missing: Advise,
    ) -> CheckAdvice {
        CheckAdvice {
            credentials: Some(credentials),
            denied: Some(denied),
            bucket_missing: Some(bucket_missing),
            config: None,
        }
    }
}

/// The permission (IAM action, RBAC data action) each kind of operation needs, in a
/// provider's own names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Permissions {
    /// Listing.
    pub list: &'static str,
    /// Reading an object or its metadata.
    pub read: &'static str,
    /// Writing an object (a copy's destination included).
    pub write: &'static str,
    /// Deleting an object (a rename's source included; also named for a refusal while
    /// connecting, which no request of the check's has caused yet).
    pub delete: &'static str,
}

impl Permissions {
    /// The permission `operation` needs (`None` while connecting).
    pub(crate) fn of(&self, operation: Option<Operation>) -> &'static str {
        match operation {
            Some(Operation::List) => self.list,
            Some(Operation::Get | Operation::Head) => self.read,
            Some(Operation::Put | Operation::Upload | Operation::Copy) => self.write,
            Some(Operation::Delete | Operation::Rename) | None => self.delete,
        }
    }
}

/// The profile of `provider`; a storage no provider of maskstore's built (a wrapper's bare
/// object_store) gets neutral advice, which names no provider's settings.
pub(crate) fn profile_of(provider: Option<Provider>) -> &'static Profile {
    provider.map_or(&NEUTRAL_PROFILE, |provider| super::entry(provider).profile)
}

static NEUTRAL_PROFILE: Profile = NEUTRAL;

/// No code is known: answers are read by their status, codes reported as given.
const NO_CODES: Codes = Codes {
    bucket_missing: &[],
    clock_skew: &[],
    credentials: &[],
    wrong_region: &[],
    denied: &[],
    altered: &[],
    invalid_range: &[],
    busy: &[],
};

/// The advice for a store maskstore did not build; providers take what they do not
/// state themselves from it.
pub(crate) const NEUTRAL: Profile = Profile {
    meaning: |answer| NO_CODES.meaning(answer),
    bucket_word: "bucket",
    credentials_fix: "check the credentials the store was built with, and the machine's clock",
    permission_fix: "check that the store's credentials may read, write, delete and list \
                     under the prefix",
    bucket_fix: "check the bucket the store was built for, or create it",
    cors_refused: "the store's CORS rules do not grant PUT from this origin, or it has none; \
                   apply the rules of maskstore policy cors with the store's own tools",
    no_credentials: "no credentials were found: the store's credential chain gave none",
    default_endpoint: "its default endpoint",
    reach_fix: "check the address the store was built with, the network, and that the \
                server is running",
    describe: |_| "a store maskstore did not build".to_string(),
    identity: |_| "a store maskstore did not build".to_string(),
    check: CheckAdvice::NONE,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_foreign_store_gets_neutral_advice() {
        let neutral = profile_of(None);
        for text in [
            neutral.credentials_fix,
            neutral.permission_fix,
            neutral.bucket_fix,
        ] {
            for provider_word in ["s3:", "APP_OBJECT_STORAGE", "Azure", "gcloud", "roles/"] {
                assert!(!text.contains(provider_word), "{text}");
            }
        }
        // Codes are the provider's: a foreign store's `NoSuchBucket` is reported as given.
        let answer = Answer {
            status: Some(400),
            code: Some("NoSuchBucket".to_string()),
            ..Answer::default()
        };
        assert!(matches!(
            (neutral.meaning)(&answer),
            Some(Meaning::Unknown { .. })
        ));
    }

    #[test]
    fn each_provider_has_its_own_advice() {
        let all = [
            Provider::S3,
            Provider::Azure,
            Provider::Gcs,
            Provider::Local,
            Provider::Memory,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                let (pa, pb) = (profile_of(Some(*a)), profile_of(Some(*b)));
                assert!(!std::ptr::eq(pa, pb), "{a} and {b} share a profile");
            }
        }
        assert!(
            profile_of(Some(Provider::S3))
                .permission_fix
                .contains("s3:PutObject")
        );
        assert!(
            profile_of(Some(Provider::Azure))
                .permission_fix
                .contains("Storage Blob Data Contributor")
        );
        assert!(
            profile_of(Some(Provider::Gcs))
                .permission_fix
                .contains("roles/storage.objectUser")
        );
        assert_eq!(profile_of(Some(Provider::Azure)).bucket_word, "container");
    }
}
