//! What the `s3` provider says about itself: its codes, its IAM actions, its settings.

use maskstore_core::config::ObjectStorageConfig;

use crate::advice::Diagnosis;
use crate::layers::Operation;
use crate::providers::{CheckAdvice, Permissions, Profile};

/// The `s3` provider's profile.
pub(crate) static PROFILE: Profile = Profile {
    meaning: super::error::meaning,
    bucket_word: "bucket",
    credentials_fix: "check object_storage.access_key and secret_key (APP_OBJECT_STORAGE__ACCESS_KEY, \
                      APP_OBJECT_STORAGE__SECRET_KEY), the region, and the machine's clock",
    permission_fix: "the policy must grant s3:PutObject, s3:GetObject and s3:DeleteObject on \
                     arn:aws:s3:::<bucket>/<prefix>* and s3:ListBucket on the bucket",
    bucket_fix: "check object_storage.bucket_name (APP_OBJECT_STORAGE__BUCKET_NAME) and the \
                 account, or create the bucket",
    cors_refused: "the bucket's CORS rules do not grant PUT from this origin, or it has none; \
                   apply maskstore policy cors with aws s3api put-bucket-cors",
    no_credentials: "no credentials were found: access_key and secret_key are unset and the \
                     AWS credential chain (AWS_* variables, web identity, container or \
                     instance metadata) gave none",
    default_endpoint: "AWS",
    reach_fix: "check object_storage.endpoint (APP_OBJECT_STORAGE__ENDPOINT; unset for AWS, \
                whose address is made from object_storage.region), the network or firewall \
                between, and that the server is running",
    describe,
    identity,
    check: CheckAdvice::cloud(credentials, denied, bucket_missing),
};

fn describe(os: &ObjectStorageConfig) -> String {
    format!(
        "bucket {} in {} at {}",
        os.bucket_name.as_deref().unwrap_or("?"),
        os.region.as_deref().unwrap_or("?"),
        os.endpoint.as_deref().unwrap_or("AWS")
    )
}

/// A bucket name is one bucket at an endpoint, whatever region a config claims for it (AWS
/// names are global; S3-compatible engines ignore the region), so the region is no part of
/// it: a config with a wrong region still names the same store.
fn identity(os: &ObjectStorageConfig) -> String {
    format!(
        "s3 {} {}",
        crate::advice::endpoint_identity(os.endpoint.as_deref().unwrap_or("aws")),
        os.bucket_name.as_deref().unwrap_or("")
    )
}

/// The IAM action each operation needs.
const ACTIONS: Permissions = Permissions {
    list: "s3:ListBucket",
    read: "s3:GetObject",
    write: "s3:PutObject",
    delete: "s3:DeleteObject",
};

fn credentials(detail: &str, _: &ObjectStorageConfig) -> Diagnosis {
    Diagnosis::new(
        format!("the credentials were rejected ({detail})"),
        "check APP_OBJECT_STORAGE__ACCESS_KEY and APP_OBJECT_STORAGE__SECRET_KEY: the key pair \
         must belong together and be active",
    )
}

fn denied(operation: Option<Operation>, detail: &str, os: &ObjectStorageConfig) -> Diagnosis {
    let bucket = os.bucket_name.as_deref().unwrap_or("<bucket>");
    let action = ACTIONS.of(operation);
    let resource = if operation == Some(Operation::List) {
        format!("arn:aws:s3:::{bucket}")
    } else {
        format!("arn:aws:s3:::{bucket}/{}*", os.prefix.as_str())
    };
    Diagnosis::new(
        format!("access denied by the policy: it lacks {action} on {resource} ({detail})"),
        format!(
            "add a statement allowing {action} on {resource} to the user's IAM policy \
             (maskstore policy iam prints the whole least-privilege policy)"
        ),
    )
}

fn bucket_missing(detail: &str, os: &ObjectStorageConfig) -> Diagnosis {
    Diagnosis::new(
        format!(
            "bucket {} does not exist at {} ({detail})",
            os.bucket_name.as_deref().unwrap_or("<bucket>"),
            os.endpoint.as_deref().unwrap_or("AWS")
        ),
        "create the bucket (once, by an administrator), or fix object_storage.bucket_name \
         (APP_OBJECT_STORAGE__BUCKET_NAME)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use maskstore_core::{Config, Provider};

    #[test]
    fn one_bucket_at_one_endpoint_is_one_store_whatever_region_or_spelling() {
        let at = |bucket: &str, region: &str, endpoint: &str| {
            let config = Config::s3(bucket, region)
                .unwrap()
                .with_endpoint(endpoint)
                .unwrap();
            crate::advice::identity(&config)
        };
        let a = at("pacs-masks", "us-east-1", "http://127.0.0.1:9000");
        assert_eq!(a, at("pacs-masks", "eu-west-1", "http://127.0.0.1:9000/"));
        assert_eq!(a, at("pacs-masks", "us-east-1", "HTTP://127.0.0.1:9000"));
        assert_ne!(a, at("pacs-masks-2", "us-east-1", "http://127.0.0.1:9000"));
        assert_ne!(a, at("pacs-masks", "us-east-1", "http://127.0.0.1:9001"));
        let aws =
            |region: &str| crate::advice::identity(&Config::s3("pacs-masks", region).unwrap());
        assert_eq!(aws("us-east-1"), aws("ap-northeast-2"));
    }

    #[test]
    fn s3_permission_failures_name_the_action_and_the_resource() {
        let config = Config::s3("pacs-masks-dev", "ap-northeast-2").unwrap();
        let denied = Error::PermissionDenied {
            backend: "s3".to_string(),
            provider: Some(Provider::S3),
            key: "mask/p".to_string(),
            detail: "403 AccessDenied".to_string(),
        };
        let d = crate::advice::diagnose(Some(Operation::List), &denied, &config);
        assert!(
            d.cause
                .contains("s3:ListBucket on arn:aws:s3:::pacs-masks-dev ("),
            "{}",
            d.cause
        );
        let d = crate::advice::diagnose(Some(Operation::Put), &denied, &config);
        assert!(
            d.fix
                .contains("s3:PutObject on arn:aws:s3:::pacs-masks-dev/mask/*"),
            "{}",
            d.fix
        );
    }
}
