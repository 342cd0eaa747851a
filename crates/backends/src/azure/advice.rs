//! What the `azure` provider says about itself: its containers, RBAC data actions and role,
//! its account key.

use maskstore_core::config::ObjectStorageConfig;

use crate::advice::Diagnosis;
use crate::layers::Operation;
use crate::providers::{CheckAdvice, Permissions, Profile};

/// The `azure` provider's profile.
pub(crate) static PROFILE: Profile = Profile {
    meaning: super::error::meaning,
    bucket_word: "container",
    credentials_fix: "check object_storage.account and account_key (APP_OBJECT_STORAGE__ACCOUNT, \
                      APP_OBJECT_STORAGE__ACCOUNT_KEY or _FILE: key1 or key2 of the storage \
                      account), or the AZURE_* identity when no key is set, and the machine's \
                      clock",
    permission_fix: "the identity needs the \"Storage Blob Data Contributor\" role on the \
                     container (or a key or SAS with read, write, delete and list permissions)",
    bucket_fix: "check object_storage.container (APP_OBJECT_STORAGE__CONTAINER) and account, \
                 or create the container",
    cors_refused: "the storage account's Blob service CORS rules do not grant PUT from this \
                   origin, or it has none; apply maskstore policy cors with az storage account \
                   blob-service-properties update --cors-rules",
    no_credentials: "no credentials were found: account_key is unset and the Azure \
                     credential chain (AZURE_* variables, workload or managed identity, the \
                     Azure CLI) gave none",
    default_endpoint: "Azure",
    reach_fix: "check object_storage.endpoint (APP_OBJECT_STORAGE__ENDPOINT; unset for \
                Azure, whose address is made from object_storage.account), the network or \
                firewall between, and that the server is running",
    describe,
    identity,
    check: CheckAdvice::cloud(credentials, denied, bucket_missing),
};

fn describe(os: &ObjectStorageConfig) -> String {
    format!(
        "container {} of account {} at {}",
        os.container.as_deref().unwrap_or("?"),
        os.account.as_deref().unwrap_or("?"),
        os.endpoint.as_deref().unwrap_or("Azure")
    )
}

fn identity(os: &ObjectStorageConfig) -> String {
    format!(
        "azure {} {} {}",
        crate::advice::endpoint_identity(os.endpoint.as_deref().unwrap_or("azure")),
        os.account.as_deref().unwrap_or(""),
        os.container.as_deref().unwrap_or("")
    )
}

/// The Azure RBAC data action each operation needs.
const ACTIONS: Permissions = Permissions {
    list: "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
    read: "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
    write: "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
    delete: "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
};

fn account(os: &ObjectStorageConfig) -> &str {
    os.account.as_deref().unwrap_or("<account>")
}

fn container(os: &ObjectStorageConfig) -> &str {
    os.container.as_deref().unwrap_or("<container>")
}

fn credentials(detail: &str, os: &ObjectStorageConfig) -> Diagnosis {
    Diagnosis::new(
        format!("the Azure credentials were rejected ({detail})"),
        format!(
            "check APP_OBJECT_STORAGE__ACCOUNT_KEY (or account_key_file): it must be key1 or \
             key2 of storage account {} (Azure portal → Access keys), not a key of another \
             account or a SAS token; without a key, check the AZURE_* identity",
            account(os)
        ),
    )
}

fn denied(operation: Option<Operation>, detail: &str, os: &ObjectStorageConfig) -> Diagnosis {
    let container = container(os);
    Diagnosis::new(
        format!(
            "access denied: the identity lacks {} on container {container} ({detail})",
            ACTIONS.of(operation)
        ),
        format!(
            "assign the \"Storage Blob Data Contributor\" role on container {container} to the \
             identity (or use the account key)"
        ),
    )
}

fn bucket_missing(detail: &str, os: &ObjectStorageConfig) -> Diagnosis {
    let (account, container) = (account(os), container(os));
    Diagnosis::new(
        format!("container {container} does not exist in account {account} ({detail})"),
        format!(
            "create it once (az storage container create --name {container} --account-name \
             {account}), or fix object_storage.container (APP_OBJECT_STORAGE__CONTAINER)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use maskstore_core::{Config, Provider, Secret};

    #[test]
    fn azure_permission_advice_names_the_data_action_and_the_role() {
        let config = Config::azure("pacsmasks", "pacs-masks")
            .unwrap()
            .with_account_key(Secret::new("a2V5"));
        let denied = Error::PermissionDenied {
            backend: "azure".to_string(),
            provider: Some(Provider::Azure),
            key: "mask/p".to_string(),
            detail: "403 AuthorizationPermissionMismatch".to_string(),
        };
        let d = crate::advice::diagnose(Some(Operation::Put), &denied, &config);
        assert!(d.cause.contains("blobs/write"), "{}", d.cause);
        assert!(d.cause.contains("container pacs-masks"), "{}", d.cause);
        assert!(d.fix.contains("Storage Blob Data Contributor"), "{}", d.fix);
        assert!(!d.fix.contains("s3:"), "{}", d.fix);
        let d = crate::advice::diagnose(Some(Operation::List), &denied, &config);
        assert!(d.cause.contains("blobs/read"), "{}", d.cause);
        // The error's own message names the role too, not an S3 policy.
        assert!(denied.to_string().contains("Storage Blob Data Contributor"));
        assert!(!denied.to_string().contains("s3:"));
    }
}
