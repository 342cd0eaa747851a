//! What the `gcs` provider says about itself: its IAM permissions and role, its service
//! account key.

use maskstore_core::config::ObjectStorageConfig;

use crate::advice::Diagnosis;
use crate::layers::Operation;
use crate::providers::{CheckAdvice, Permissions, Profile};

/// The `gcs` provider's profile.
pub(crate) static PROFILE: Profile = Profile {
    meaning: super::error::meaning,
    bucket_word: "bucket",
    credentials_fix: "check object_storage.service_account_key (APP_OBJECT_STORAGE__SERVICE_ACCOUNT_KEY \
                      or _FILE: the service account's JSON key), or GOOGLE_APPLICATION_CREDENTIALS \
                      when none is set, and the machine's clock",
    permission_fix: "the service account needs roles/storage.objectUser on the bucket \
                     (storage.objects get, create, delete and list)",
    bucket_fix: "check object_storage.bucket_name (APP_OBJECT_STORAGE__BUCKET_NAME) and the \
                 account, or create the bucket",
    cors_refused: "the bucket's CORS configuration does not grant PUT from this origin, or it \
                   has none; apply maskstore policy cors with gcloud storage buckets update \
                   --cors-file",
    no_credentials: "no credentials were found: service_account_key is unset and Google's \
                     credential chain (GOOGLE_APPLICATION_CREDENTIALS, the metadata server) \
                     gave none",
    default_endpoint: "Google Cloud Storage",
    reach_fix: "check object_storage.endpoint (APP_OBJECT_STORAGE__ENDPOINT; unset for \
                storage.googleapis.com), the network or firewall between, and that the \
                server is running",
    describe,
    identity,
    check: CheckAdvice::cloud(credentials, denied, bucket_missing),
};

fn describe(os: &ObjectStorageConfig) -> String {
    format!(
        "bucket {} at {}",
        os.bucket_name.as_deref().unwrap_or("?"),
        os.endpoint.as_deref().unwrap_or("Google Cloud Storage")
    )
}

fn identity(os: &ObjectStorageConfig) -> String {
    format!(
        "gcs {} {}",
        crate::advice::endpoint_identity(os.endpoint.as_deref().unwrap_or("google")),
        os.bucket_name.as_deref().unwrap_or("")
    )
}

/// The GCS IAM permission each operation needs.
const PERMISSIONS: Permissions = Permissions {
    list: "storage.objects.list",
    read: "storage.objects.get",
    write: "storage.objects.create",
    delete: "storage.objects.delete",
};

fn credentials(detail: &str, _: &ObjectStorageConfig) -> Diagnosis {
    Diagnosis::new(
        format!("the GCS credentials were rejected ({detail})"),
        "check APP_OBJECT_STORAGE__SERVICE_ACCOUNT_KEY (or service_account_key_file): the \
         service account's JSON key must be current (not deleted in IAM → Service accounts → \
         Keys); without a key, check GOOGLE_APPLICATION_CREDENTIALS",
    )
}

fn denied(operation: Option<Operation>, detail: &str, os: &ObjectStorageConfig) -> Diagnosis {
    let bucket = os.bucket_name.as_deref().unwrap_or("<bucket>");
    Diagnosis::new(
        format!(
            "access denied: the service account lacks {} on bucket {bucket} ({detail})",
            PERMISSIONS.of(operation)
        ),
        format!(
            "grant roles/storage.objectUser on gs://{bucket} to the service account (gcloud \
             storage buckets add-iam-policy-binding gs://{bucket} \
             --member=serviceAccount:<email> --role=roles/storage.objectUser)"
        ),
    )
}

fn bucket_missing(detail: &str, os: &ObjectStorageConfig) -> Diagnosis {
    let bucket = os.bucket_name.as_deref().unwrap_or("<bucket>");
    Diagnosis::new(
        format!("bucket {bucket} does not exist ({detail})"),
        format!(
            "create it once (gcloud storage buckets create gs://{bucket}), or fix \
             object_storage.bucket_name (APP_OBJECT_STORAGE__BUCKET_NAME)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use maskstore_core::{Config, Provider};

    #[test]
    fn gcs_advice_names_the_permission_the_role_and_the_key() {
        let config = Config::gcs("pacs-masks").unwrap();
        let denied = Error::PermissionDenied {
            backend: "gcs".to_string(),
            provider: Some(Provider::Gcs),
            key: "mask/p".to_string(),
            detail: "403 AccessDenied".to_string(),
        };
        let d = crate::advice::diagnose(Some(Operation::Delete), &denied, &config);
        assert!(d.cause.contains("storage.objects.delete"), "{}", d.cause);
        assert!(d.fix.contains("roles/storage.objectUser"), "{}", d.fix);
        assert!(d.fix.contains("gs://pacs-masks"), "{}", d.fix);
        let missing = Error::BucketMissing {
            backend: "gcs".to_string(),
            provider: Some(Provider::Gcs),
            detail: "404 NoSuchBucket".to_string(),
        };
        let d = crate::advice::diagnose(Some(Operation::List), &missing, &config);
        assert!(
            d.fix
                .contains("gcloud storage buckets create gs://pacs-masks"),
            "{}",
            d.fix
        );
        let rejected = Error::CredentialsRejected {
            backend: "gcs".to_string(),
            provider: Some(Provider::Gcs),
            detail: "401".to_string(),
        };
        assert!(rejected.to_string().contains("SERVICE_ACCOUNT_KEY"));
        let d = crate::advice::diagnose(Some(Operation::List), &rejected, &config);
        assert!(d.fix.contains("SERVICE_ACCOUNT_KEY"), "{}", d.fix);
    }
}
