//! The documents an operator applies to an S3 bucket with the AWS CLI: the least-privilege
//! IAM policy, the bucket's CORS rules and its lifecycle rule (also those of local and
//! memory, which stand in for the S3 bucket of a deployment).

use maskstore_core::Config;
use serde_json::{Value, json};

use crate::Result;
use crate::policy::{PolicyDocument, bucket_needed};

/// `document` for the config's bucket.
pub(crate) fn document(config: &Config, document: PolicyDocument) -> Result<Value> {
    Ok(match document {
        PolicyDocument::Iam => iam(config)?,
        PolicyDocument::Cors => cors(config),
        PolicyDocument::Lifecycle => lifecycle(config),
        PolicyDocument::Metrics => super::monitoring::metrics(config)?,
        PolicyDocument::Alarms => super::monitoring::alarms(config)?,
    })
}

fn iam(config: &Config) -> Result<Value> {
    let bucket = config
        .object_storage
        .bucket_name
        .as_deref()
        .ok_or_else(|| bucket_needed(config, "IAM policy"))?;
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
