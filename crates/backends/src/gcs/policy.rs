//! The documents an operator applies to a GCS bucket with gcloud: the IAM binding, the
//! bucket's CORS configuration and its lifecycle rules.

use maskstore_core::Config;
use serde_json::{Value, json};

use crate::Result;
use crate::policy::{PolicyDocument, bucket_needed};

/// `document` for the config's bucket.
pub(crate) fn document(config: &Config, document: PolicyDocument) -> Result<Value> {
    Ok(match document {
        PolicyDocument::Iam => gcs_binding(config)?,
        PolicyDocument::Cors => gcs_cors(config),
        PolicyDocument::Lifecycle => gcs_lifecycle(config),
        PolicyDocument::Metrics | PolicyDocument::Alarms => {
            return Err(crate::policy::no_monitoring_document(
                config,
                document,
                "for GCS, alert on storage.googleapis.com/api/request_count (response_code) in Cloud Monitoring",
            ));
        }
    })
}

/// The IAM binding on the bucket, for `gcloud storage buckets set-iam-policy` (merged into
/// the bucket's policy): Storage Object User, only below the prefix (IAM condition).
fn gcs_binding(config: &Config) -> Result<Value> {
    let bucket = config
        .object_storage
        .bucket_name
        .as_deref()
        .ok_or_else(|| bucket_needed(config, "IAM binding"))?;
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
