//! `maskstore policy iam|cors|lifecycle`: the JSON documents an operator applies with the
//! provider's own CLI, derived from the same config the application uses: the AWS CLI for
//! `s3` (and local/memory, whose documents describe the S3 bucket they stand in for), the
//! Azure CLI for `azure`, gcloud for `gcs`.

use maskstore::{Config, Provider};
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
    Ok(match (config.object_storage.provider, document) {
        (Provider::Azure, Document::Iam) => azure_role(config),
        (Provider::Azure, Document::Cors) => azure_cors(config),
        (Provider::Azure, Document::Lifecycle) => azure_lifecycle(config),
        (Provider::Gcs, Document::Iam) => gcs_binding(config)?,
        (Provider::Gcs, Document::Cors) => gcs_cors(config),
        (Provider::Gcs, Document::Lifecycle) => gcs_lifecycle(config),
        (Provider::S3 | Provider::Local | Provider::Memory, Document::Iam) => iam(config)?,
        (Provider::S3 | Provider::Local | Provider::Memory, Document::Cors) => cors(config),
        (Provider::S3 | Provider::Local | Provider::Memory, Document::Lifecycle) => {
            lifecycle(config)
        }
    })
}

/// The blob data actions each mask operation needs.
const AZURE_DATA_ACTIONS: [&str; 4] = [
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
];

/// A custom role with the blob data actions maskstore uses, for
/// `az role definition create --role-definition @role.json`, then assigned on the
/// container with a condition limiting it to the prefix.
fn azure_role(config: &Config) -> Value {
    let os = &config.object_storage;
    let container = os.container.as_deref().unwrap_or("<container>");
    let prefix = os.prefix.as_str();
    json!({
        "Name": format!("maskstore masks ({container})"),
        "IsCustom": true,
        "Description": format!("Read, write, delete and list blobs below {prefix} in {container}"),
        "Actions": [],
        "DataActions": AZURE_DATA_ACTIONS,
        "NotDataActions": [],
        "AssignableScopes": ["/subscriptions/<subscription>/resourceGroups/<resource-group>"],
        // Used as the role assignment's --condition (ABAC): only blobs below the prefix.
        "Condition": format!(
            "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] \
             StringEquals '{container}' AND \
             @Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] \
             StringStartsWith '{prefix}'"
        ),
        "ConditionVersion": "2.0",
    })
}

/// The Blob service CORS rules, for
/// `az storage account blob-service-properties update --cors-rules` (ARM's shape).
fn azure_cors(config: &Config) -> Value {
    let c = &config.cors;
    json!({
        "corsRules": [{
            "allowedOrigins": c.allowed_origins,
            "allowedMethods": c.allowed_methods,
            // A SAS upload sends x-ms-blob-type; "*" covers it.
            "allowedHeaders": c.allowed_headers,
            "exposedHeaders": c.expose_headers,
            "maxAgeInSeconds": c.max_age,
        }],
    })
}

/// The lifecycle management policy, for
/// `az storage account management-policy create --policy @lifecycle.json`: Cool after the
/// IA days, Archive after the Glacier days. Uncommitted blocks of unfinished uploads are
/// dropped by Azure itself after 7 days, so no rule is needed for them.
fn azure_lifecycle(config: &Config) -> Value {
    let lc = &config.lifecycle;
    let os = &config.object_storage;
    let container = os.container.as_deref().unwrap_or("<container>");
    let prefix = os.prefix.as_str();
    json!({
        "rules": [{
            "enabled": true,
            "name": format!("maskstore-{}", prefix.trim_end_matches('/').replace('/', "-")),
            "type": "Lifecycle",
            "definition": {
                "filters": {
                    "blobTypes": ["blockBlob"],
                    "prefixMatch": [format!("{container}/{prefix}")],
                },
                "actions": {
                    "baseBlob": {
                        "tierToCool": {"daysAfterModificationGreaterThan": lc.transition_ia_days},
                        "tierToArchive": {"daysAfterModificationGreaterThan": lc.transition_glacier_days},
                    },
                },
            },
        }],
    })
}

/// The IAM binding on the bucket, for `gcloud storage buckets set-iam-policy` (merged into
/// the bucket's policy): Storage Object User, only below the prefix (IAM condition).
fn gcs_binding(config: &Config) -> Result<Value, Failure> {
    let bucket = config
        .object_storage
        .bucket_name
        .as_deref()
        .ok_or_else(|| Failure {
            message: "the IAM binding names the bucket; set object_storage.bucket_name \
                      (APP_OBJECT_STORAGE__BUCKET_NAME) or pick an environment with --env"
                .to_string(),
            code: 2,
        })?;
    let prefix = config.object_storage.prefix.as_str();
    Ok(json!({
        "bindings": [{
            "role": "roles/storage.objectUser",
            "members": ["serviceAccount:<service-account-email>"],
            "condition": {
                "title": "maskstore masks",
                "expression": format!(
                    "resource.name.startsWith('projects/_/buckets/{bucket}/objects/{prefix}') \
                     || resource.type == 'storage.googleapis.com/Bucket'"
                ),
            },
        }],
    }))
}

/// The bucket CORS configuration, for `gcloud storage buckets update --cors-file`. GCS
/// has no wildcard for request headers: `responseHeader` lists what a page may send and
/// read (the exposed headers, Content-Type, and the size binding of signed uploads).
fn gcs_cors(config: &Config) -> Value {
    let c = &config.cors;
    let mut headers: Vec<String> = c.expose_headers.clone();
    for extra in ["Content-Type", "x-goog-content-length-range"] {
        if !headers.iter().any(|h| h.eq_ignore_ascii_case(extra)) {
            headers.push(extra.to_string());
        }
    }
    headers.extend(
        c.allowed_headers
            .iter()
            .filter(|h| *h != "*" && !c.expose_headers.contains(h))
            .cloned(),
    );
    json!([{
        "origin": c.allowed_origins,
        "method": c.allowed_methods,
        "responseHeader": headers,
        "maxAgeSeconds": c.max_age,
    }])
}

/// The bucket lifecycle configuration, for `gcloud storage buckets update
/// --lifecycle-file`: Nearline after the IA days, Archive after the Glacier days, and
/// unfinished XML multipart uploads aborted.
fn gcs_lifecycle(config: &Config) -> Value {
    let lc = &config.lifecycle;
    let prefix = [config.object_storage.prefix.as_str()];
    json!({
        "rule": [
            {
                "action": {"type": "SetStorageClass", "storageClass": "NEARLINE"},
                "condition": {"age": lc.transition_ia_days, "matchesPrefix": prefix},
            },
            {
                "action": {"type": "SetStorageClass", "storageClass": "ARCHIVE"},
                "condition": {"age": lc.transition_glacier_days, "matchesPrefix": prefix},
            },
            {
                "action": {"type": "AbortIncompleteMultipartUpload"},
                "condition": {"age": lc.abort_incomplete_multipart_days, "matchesPrefix": prefix},
            },
        ],
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
