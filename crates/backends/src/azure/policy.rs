//! The documents an operator applies to an Azure container with the Azure CLI: a custom
//! role of the blob data actions, the account's CORS rules and a lifecycle policy.

use maskstore_core::Config;
use serde_json::{Value, json};

use crate::Result;
use crate::policy::PolicyDocument;

/// `document` for the config's container.
pub(crate) fn document(config: &Config, document: PolicyDocument) -> Result<Value> {
    Ok(match document {
        PolicyDocument::Iam => azure_role(config),
        PolicyDocument::Cors => azure_cors(config),
        PolicyDocument::Lifecycle => azure_lifecycle(config),
        PolicyDocument::Metrics | PolicyDocument::Alarms => {
            return Err(crate::policy::no_monitoring_document(
                config,
                document,
                "for Azure, set alerts on the storage account's Transactions metric (ResponseType) in Azure Monitor",
            ));
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
