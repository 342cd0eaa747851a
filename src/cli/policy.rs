//! `maskstore policy iam|cors|lifecycle`: the JSON documents an operator applies with the
//! AWS CLI, derived from the same config the application uses.

use maskstore::Config;
use serde_json::{Value, json};

use super::output::{Failure, print_json};

/// Which document to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Document {
    /// Least-privilege IAM policy: `aws iam put-user-policy --policy-document file://iam.json`.
    Iam,
    /// Bucket CORS rules: `aws s3api put-bucket-cors --cors-configuration file://cors.json`.
    Cors,
    /// Lifecycle rule: `aws s3api put-bucket-lifecycle-configuration --lifecycle-configuration file://lifecycle.json`.
    Lifecycle,
}

pub(crate) fn run(config: &Config, document: Document) -> Result<(), Failure> {
    print_json(&render(config, document)?);
    Ok(())
}

/// The document as JSON.
pub(crate) fn render(config: &Config, document: Document) -> Result<Value, Failure> {
    Ok(match document {
        Document::Iam => iam(config)?,
        Document::Cors => cors(config),
        Document::Lifecycle => lifecycle(config),
    })
}

fn iam(config: &Config) -> Result<Value, Failure> {
    let bucket = config
        .object_storage
        .bucket_name
        .as_deref()
        .ok_or_else(|| Failure {
            message: "the IAM policy names the bucket; set object_storage.bucket_name \
                  (APP_OBJECT_STORAGE__BUCKET_NAME) or pick an environment with --env"
                .to_string(),
            code: 2,
        })?;
    let prefix = config.object_storage.prefix.as_str();
    Ok(json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "MaskObjects",
                "Effect": "Allow",
                // AbortMultipartUpload lets a failed streaming upload clean up after itself.
                "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                "Resource": format!("arn:aws:s3:::{bucket}/{prefix}*"),
            },
            {
                "Sid": "ListMaskPrefix",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": format!("arn:aws:s3:::{bucket}"),
                "Condition": {"StringLike": {"s3:prefix": [format!("{prefix}*")]}},
            },
        ],
    }))
}

fn cors(config: &Config) -> Value {
    let c = &config.cors;
    json!({
        "CORSRules": [{
            "AllowedHeaders": c.allowed_headers,
            "AllowedMethods": c.allowed_methods,
            "AllowedOrigins": c.allowed_origins,
            "ExposeHeaders": c.expose_headers,
            "MaxAgeSeconds": c.max_age,
        }],
    })
}

fn lifecycle(config: &Config) -> Value {
    let lc = &config.lifecycle;
    let prefix = config.object_storage.prefix.as_str();
    json!({
        "Rules": [{
            "ID": format!("maskstore-{}", prefix.trim_end_matches('/').replace('/', "-")),
            "Status": "Enabled",
            "Filter": {"Prefix": prefix},
            "Transitions": [
                {"Days": lc.transition_ia_days, "StorageClass": "STANDARD_IA"},
                {"Days": lc.transition_glacier_days, "StorageClass": "GLACIER"},
            ],
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": lc.abort_incomplete_multipart_days},
        }],
    })
}
