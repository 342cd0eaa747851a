//! What the `local` provider says about itself: a folder, the file permissions under it.

use maskstore_core::config::ObjectStorageConfig;

use crate::advice::Diagnosis;
use crate::providers::{CheckAdvice, NEUTRAL, Profile};

/// The `local` provider's profile.
pub(crate) static PROFILE: Profile = Profile {
    // No server answers: only object_store's statuses, read as for any store.
    meaning: NEUTRAL.meaning,
    bucket_word: "root folder",
    credentials_fix: "the local provider takes no credentials; check object_storage.provider",
    // A local refusal (file permissions, a symlink under the root) names its own fix in
    // its detail; S3 policy advice would send the operator the wrong way.
    permission_fix: "check that maskstore's user may read and write the files and folders \
                     under the local root, and that none of them is a symlink (maskstore \
                     never follows one)",
    bucket_fix: "point object_storage.root (APP_OBJECT_STORAGE__ROOT) at an existing folder",
    cors_refused: "the gateway's [cors] settings do not grant PUT from this origin; add it to \
                   cors.allowed_origins (APP_CORS__ALLOWED_ORIGINS) and restart maskstore serve",
    no_credentials: "the local provider takes no credentials",
    default_endpoint: "the local disk",
    reach_fix: "check object_storage.root and that its disk is mounted",
    describe: |os| format!("folder {}", os.root.display()),
    identity,
    check: CheckAdvice {
        denied: Some(|_, detail, os| refused_below_root(detail, os)),
        config: Some(root_not_writable),
        ..CheckAdvice::NONE
    },
};

/// The root's real path, so that two spellings of one folder are one store.
fn identity(os: &ObjectStorageConfig) -> String {
    format!(
        "local {}",
        std::fs::canonicalize(&os.root)
            .unwrap_or_else(|_| os.root.clone())
            .display()
    )
}

/// A refusal of a file or folder below the root (its permissions, or a symlink): its
/// detail names what and the fix; the root itself was opened, so it is not blamed.
fn refused_below_root(detail: &str, os: &ObjectStorageConfig) -> Diagnosis {
    Diagnosis::new(
        format!(
            "the local provider refused a path below the root {}: {detail}",
            os.root.display()
        ),
        PROFILE.permission_fix,
    )
}

/// A root the config cannot have: it cannot be created or written.
fn root_not_writable(detail: &str, os: &ObjectStorageConfig) -> Diagnosis {
    Diagnosis::new(
        format!(
            "the local root {} is not writable: {detail}",
            os.root.display()
        ),
        "point object_storage.root (APP_OBJECT_STORAGE__ROOT) at a folder this user can create \
         and write",
    )
}
