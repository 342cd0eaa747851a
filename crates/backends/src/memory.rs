//! The `memory` provider: object_store's `InMemory`, with gateway URLs.

use maskstore_core::{Config, Secret};
use object_store::memory::InMemory;

use crate::signing;

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
