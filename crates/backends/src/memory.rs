//! The `memory` provider: object_store's `InMemory`, with gateway URLs.

use maskstore_core::{Config, Secret};
use object_store::memory::InMemory;

use crate::providers::Profile;
use crate::signing;

/// The `memory` provider's profile: a process's memory refuses nothing itself (a layer
/// over it, such as a fault-injecting one, can), and has no bucket, credentials or
/// endpoint.
pub(crate) static PROFILE: Profile = Profile {
    meaning: |_| None,
    bucket_word: "store",
    credentials_fix: "the memory provider takes no credentials; check object_storage.provider",
    permission_fix: "process memory refuses nothing itself: check the layers added over the \
                     storage",
    bucket_fix: "the memory provider has no bucket; check object_storage.provider",
    no_credentials: "the memory provider takes no credentials",
    default_endpoint: "process memory",
    describe: |_| "process memory".to_string(),
    identity: |_| "memory".to_string(),
    diagnose: |_, _, _| None,
};

/// A fresh in-memory store, the gateway's signing secret, and whether that secret is one
/// made for this process (none configured), so that its URLs are valid nowhere else.
pub(crate) fn build(config: &Config) -> (InMemory, Secret, bool) {
    let (secret, ephemeral) = match &config.gateway.signing_secret {
        Some(secret) => (secret.clone(), false),
        None => {
            tracing::info!(
                "signed URLs use a per-process signing secret (provider memory, none configured)"
            );
            (signing::random_secret(), true)
        }
    };
    (InMemory::new(), secret, ephemeral)
}
