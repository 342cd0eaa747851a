//! The `memory` provider: object_store's `InMemory`, keeping the checksum of each object's
//! bytes beside them (see `store.rs`), with gateway URLs.

mod paying;
mod store;

use std::sync::Arc;

use maskstore_core::Config;

pub(crate) use paying::Paying;
pub(crate) use store::{KeptChecksums, KeptSum, MemoryStore, ResolveOwed, is_owed, owed};

use crate::providers::{Built, Declared, Extras, NEUTRAL, Profile, UploadLimits, gateway_urls};
use crate::signing;
use crate::storage::{MIN_UPLOAD_PART_SIZE, UPLOAD_MAX_IN_FLIGHT, UPLOAD_PART_SIZE};

/// The `memory` provider's profile: a process's memory refuses nothing itself (a layer
/// over it, such as a fault-injecting one, can), and has no bucket, credentials or
/// endpoint; the rest is the neutral advice.
pub(crate) static PROFILE: Profile = Profile {
    permission_fix: "process memory refuses nothing itself: check the layers added over the \
                     storage",
    cors_refused: "the gateway's [cors] settings do not grant PUT from this origin; add it to \
                   cors.allowed_origins (APP_CORS__ALLOWED_ORIGINS) and restart maskstore serve",
    default_endpoint: "process memory",
    reach_fix: "process memory is always reachable: report this as a bug",
    describe: |_| "process memory".to_string(),
    identity: |_| "memory".to_string(),
    ..NEUTRAL
};

/// A fresh in-memory store, with gateway URLs signed by the configured secret, or by one
/// made for this process (none configured), so that its URLs are valid nowhere else.
pub(crate) fn connect(config: &Config) -> Built {
    let (secret, ephemeral) = match &config.gateway.signing_secret {
        Some(secret) => (secret.clone(), false),
        None => {
            tracing::info!(
                "signed URLs use a per-process signing secret (provider memory, none configured)"
            );
            (signing::random_secret(), true)
        }
    };
    let store = MemoryStore::default();
    let kept = store.kept().clone();
    Built {
        store: Arc::new(store),
        urls: gateway_urls(config, secret, ephemeral),
        declared: Declared {
            hashes_on_write: false,
            owes_checksums: true,
            reads_whole: false,
            answers_whole: true,
            content_etags: false,
            verify_folders: false,
            // Parts of any size: the gateway's uploads hold small ones.
            uploads: UploadLimits {
                part_size: UPLOAD_PART_SIZE,
                max_in_flight: UPLOAD_MAX_IN_FLIGHT,
                min_part: MIN_UPLOAD_PART_SIZE,
                max_part: UPLOAD_PART_SIZE,
            },
            // Any name and value, and S3's 2 KiB in all, so that an application's tests
            // over memory meet the limit its production store does.
            metadata: crate::metadata::MetadataRules {
                names: crate::metadata::NameRule::Any,
                values: crate::metadata::ValueRule::Any,
                max_total: 2048,
                json_document: false,
            },
        },
        extras: Extras {
            kept: Some(kept),
            ..Extras::default()
        },
    }
}
