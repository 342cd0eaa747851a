//! The documents an operator applies with the provider's own CLI, derived from the same
//! config the application uses (`maskstore policy iam|cors|lifecycle`): each provider
//! writes its own, in its folder.

use maskstore_core::{Config, Origin};
use serde_json::Value;

use crate::{Error, Result};

/// Which document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyDocument {
    /// The least privilege the application needs (an IAM policy, an Azure role, a GCS
    /// binding).
    Iam,
    /// The CORS rules browsers need to upload and download with signed URLs.
    Cors,
    /// The storage-class transitions and the clean-up of abandoned uploads.
    Lifecycle,
    /// The bucket's request metrics, filtered on the prefix (S3:
    /// `aws s3api put-bucket-metrics-configuration`).
    Metrics,
    /// The alarms of `[monitoring]` on those metrics (S3: CloudWatch alarms for
    /// `aws cloudwatch put-metric-alarm --cli-input-json`), as a JSON array.
    Alarms,
}

/// `document` for the store `config` names, as JSON for its provider's CLI.
pub fn policy_document(config: &Config, document: PolicyDocument) -> Result<Value> {
    let provider = config.object_storage.provider;
    (crate::providers::entry(provider).policy)(config, document)
}

/// The refusal of a monitoring document a provider has no counterpart of in maskstore.
pub(crate) fn no_monitoring_document(
    config: &Config,
    document: PolicyDocument,
    instead: &str,
) -> Error {
    Error::Unsupported {
        backend: config.object_storage.provider.to_string(),
        operation: format!("print the {document:?} document").to_lowercase(),
        detail: format!(
            "the metrics and alarms documents are S3 request metrics and CloudWatch alarms; {instead}, or use `maskstore policy prometheus` with the gateway's /metrics"
        ),
    }
}

/// The error of a document that names the bucket when the config names none.
pub(crate) fn bucket_needed(config: &Config, document: &str) -> Error {
    Error::Config {
        key: "object_storage.bucket_name".to_string(),
        origin: config
            .origin("object_storage.bucket_name")
            .cloned()
            .unwrap_or(Origin::Default),
        problem: format!("the {document} names the bucket, and none is set"),
        fix: "set object_storage.bucket_name (APP_OBJECT_STORAGE__BUCKET_NAME) or pick an \
              environment with --env"
            .to_string(),
    }
}
