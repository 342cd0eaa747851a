//! Building the `local` provider from `[object_storage]`: the root folder, and the signing
//! secret of its gateway URLs (in development, one kept beside the root, never inside it,
//! so it does not travel with copies of the data).

use std::sync::Arc;

use maskstore_core::{Config, Origin, Secret};

use super::dev_secret::{development_secret, development_secret_path};
use super::{LOCAL_UPLOAD_MAX_IN_FLIGHT, LOCAL_UPLOAD_PART_SIZE, LocalStore, RESERVED_DIR};
use crate::providers::{Built, Declared, Extras, UploadLimits, gateway_urls};
use crate::storage::{MIN_UPLOAD_PART_SIZE, UPLOAD_PART_SIZE};
use crate::{Error, Result};

/// Whether a missing local root is created or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    /// Create it: the store is written to.
    MayCreate,
    /// Refuse it: the store is only read (a sync source), where a missing root would list
    /// as empty.
    MustExist,
}

/// The store over `object_storage.root`, and the gateway's signing secret.
fn build(config: &Config, root: Root) -> Result<(LocalStore, Secret)> {
    let os = &config.object_storage;
    if root == Root::MustExist && !os.root.is_dir() {
        return Err(Error::Config {
            key: "object_storage.root".to_string(),
            origin: config
                .origin("object_storage.root")
                .cloned()
                .unwrap_or(Origin::Default),
            problem: format!(
                "the local root {} does not exist, so it would list as empty; a store only \
                 read from is never created",
                os.root.display()
            ),
            fix: "give the folder that holds the objects (check it for a typo)".to_string(),
        });
    }
    let store = LocalStore::open(&os.root, os.fsync).map_err(|e| Error::Config {
        key: "object_storage.root".to_string(),
        origin: config
            .origin("object_storage.root")
            .cloned()
            .unwrap_or(Origin::Default),
        problem: format!("cannot use {} as the local root: {e}", os.root.display()),
        fix: "give a folder this process may create and write".to_string(),
    })?;
    let secret = match &config.gateway.signing_secret {
        Some(secret) => secret.clone(),
        None => {
            let refuse = |problem: String, fix: String| Error::Config {
                key: "gateway.signing_secret".to_string(),
                origin: Origin::Default,
                problem,
                fix,
            };
            let path = development_secret_path(store.root()).ok_or_else(|| {
                refuse(
                    format!(
                        "none is set and the local root {} has no parent folder to keep a development secret in",
                        store.root().display()
                    ),
                    "set APP_GATEWAY__SIGNING_SECRET (generate one with: openssl rand -hex 32)"
                        .to_string(),
                )
            })?;
            let secret = development_secret(&path).map_err(|e| {
                refuse(
                    format!("none is set and {}", e.problem),
                    format!("{} (APP_GATEWAY__SIGNING_SECRET)", e.fix),
                )
            })?;
            let old = store.root().join(RESERVED_DIR).join("signing-secret");
            if old.exists() {
                tracing::warn!(old = %old.display(), path = %path.display(), "a development signing secret inside the local root is no longer used (it travels with copies of the data); delete it");
            }
            tracing::info!(path = %path.display(), "signed URLs use the development signing secret kept beside the local root");
            secret
        }
    };
    Ok((store, secret))
}
/// The `local` provider as the facade takes it: gateway URLs, one pass over the bytes of
/// a put (hashed as written), small parts written straight into the upload's temporary
/// file, and files copied by the kernel.
pub(crate) fn connect(config: &Config, root: Root) -> Result<Built> {
    let (store, secret) = build(config, root)?;
    Ok(Built {
        store: Arc::new(store.clone()),
        urls: gateway_urls(config, secret, false),
        declared: Declared {
            hashes_on_write: true,
            owes_checksums: false,
            reads_whole: true,
            answers_whole: false,
            content_etags: false,
            verify_folders: false,
            uploads: UploadLimits {
                part_size: LOCAL_UPLOAD_PART_SIZE,
                max_in_flight: LOCAL_UPLOAD_MAX_IN_FLIGHT,
                min_part: MIN_UPLOAD_PART_SIZE,
                max_part: UPLOAD_PART_SIZE,
            },
            // One extended attribute per object, a JSON document, which ext4 caps near
            // 4 KiB for all of an object's attributes together: metadata counts as JSON
            // writes it, leaving room for the content headers beside.
            metadata: crate::metadata::MetadataRules {
                names: crate::metadata::NameRule::Any,
                values: crate::metadata::ValueRule::Any,
                max_total: 3072,
                json_document: true,
            },
        },
        extras: Extras {
            multipart: None,
            files: Some(store.clone()),
            native: None,
            names: Some(std::sync::Arc::new(store)),
            kept: None,
        },
    })
}
