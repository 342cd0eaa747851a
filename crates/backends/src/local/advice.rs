//! What the `local` provider says about itself: a folder, the file permissions under it.

use maskstore_core::config::ObjectStorageConfig;

use crate::Error;
use crate::advice::Diagnosis;
use crate::layers::Operation;
use crate::providers::Profile;

/// The local provider's advice when the files refuse: a local refusal (file permissions, a
/// symlink under the root) names its own fix in its detail, and S3 policy advice would
/// send the operator the wrong way.
pub(crate) const FILE_PERMISSIONS_FIX: &str =
    "check that maskstore's user may read and write the files and folders under the local root";

/// The `local` provider's profile.
pub(crate) static PROFILE: Profile = Profile {
    meaning: |_| None,
    bucket_word: "root folder",
    credentials_fix: "the local provider takes no credentials; check object_storage.provider",
    permission_fix: FILE_PERMISSIONS_FIX,
    bucket_fix: "point object_storage.root (APP_OBJECT_STORAGE__ROOT) at an existing folder",
    no_credentials: "the local provider takes no credentials",
    default_endpoint: "the local disk",
    describe: |os| format!("folder {}", os.root.display()),
    identity,
    diagnose,
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

fn diagnose(_: Option<Operation>, e: &Error, os: &ObjectStorageConfig) -> Option<Diagnosis> {
    match e {
        Error::PermissionDenied { detail, .. }
        | Error::Config {
            problem: detail, ..
        } => Some(Diagnosis::new(
            format!(
                "the local root {} is not writable: {detail}",
                os.root.display()
            ),
            "point object_storage.root (APP_OBJECT_STORAGE__ROOT) at a folder this user can \
             create and write",
        )),
        _ => None,
    }
}
