//! `maskstore check`: the deployment guide's test procedure through the application's own
//! config, and a doctor that names the cause and the fix when a step fails.

use maskstore::{Config, Error, Provider, Storage, WriteOptions};
use serde_json::json;

use super::output::{Failure, print_json};

/// What a step did, for the report.
struct Step {
    name: &'static str,
    outcome: Result<String, Diagnosis>,
}

/// Why a step failed and what to do, in the operator's terms.
struct Diagnosis {
    cause: String,
    fix: String,
    code: u8,
}

pub(crate) async fn run(config: &Config, cors: Option<&str>, as_json: bool) -> Result<(), Failure> {
    let os = &config.object_storage;
    if !as_json {
        println!(
            "checking provider {} ({}), prefix {}, environment {}",
            os.provider,
            target(config),
            os.prefix,
            config.environment
        );
    }
    let steps = steps(config).await;
    let failed = steps
        .iter()
        .find_map(|s| s.outcome.as_ref().err().map(|d| (s.name, d)));

    let preflight = match (cors, failed) {
        (Some(origin), None) => Some(super::cors_check::preflight(config, origin).await),
        _ => None,
    };

    if as_json {
        let items: Vec<_> = steps
            .iter()
            .map(|s| match &s.outcome {
                Ok(detail) => json!({"step": s.name, "ok": true, "detail": detail}),
                Err(d) => json!({"step": s.name, "ok": false, "cause": d.cause, "fix": d.fix}),
            })
            .collect();
        let cors = preflight.as_ref().map(|p| match p {
            Ok(verdict) => {
                json!({"origin": cors, "allowed": verdict.allowed, "detail": verdict.detail})
            }
            Err(f) => json!({"origin": cors, "allowed": false, "detail": f.message}),
        });
        print_json(&json!({
            "provider": os.provider.as_str(),
            "prefix": os.prefix.as_str(),
            "ok": failed.is_none() && preflight.as_ref().is_none_or(|p| p.as_ref().is_ok_and(|v| v.allowed)),
            "steps": items,
            "cors": cors,
        }));
    } else {
        let total = steps.len();
        for (i, step) in steps.iter().enumerate() {
            match &step.outcome {
                Ok(detail) => println!("[{}/{total}] {:<8} ok   {detail}", i + 1, step.name),
                Err(d) => {
                    println!("[{}/{total}] {:<8} FAILED", i + 1, step.name);
                    println!("      cause: {}", d.cause);
                    println!("      fix:   {}", d.fix);
                }
            }
        }
        if failed.is_none() {
            println!("all steps passed");
        }
        // What `GET /health` of `maskstore serve` will alarm on, from [monitoring].
        let settings =
            maskstore::maskstore_backends::monitor::AlarmSettings::from_config(&config.monitoring);
        println!("alarms (GET /health):");
        for rule in maskstore::maskstore_backends::monitor::Monitor::new(settings).rules() {
            println!("  {rule}");
        }
        if let (Some(origin), Some(Ok(verdict))) = (cors, &preflight) {
            let word = if verdict.allowed {
                "allowed"
            } else {
                "REFUSED"
            };
            println!(
                "cors: a browser upload from {origin} would be {word}: {}",
                verdict.detail
            );
        }
    }
    if let Some((name, d)) = failed {
        return Err(Failure {
            message: format!("check failed at step {name:?}: {}; {}", d.cause, d.fix),
            code: d.code,
        });
    }
    match preflight {
        Some(Err(failure)) => Err(failure),
        Some(Ok(verdict)) if !verdict.allowed => Err(Failure {
            message: format!(
                "a browser upload from {} would be refused: {}",
                cors.unwrap_or_default(),
                verdict.detail
            ),
            code: 4,
        }),
        _ => Ok(()),
    }
}

fn target(config: &Config) -> String {
    let os = &config.object_storage;
    match os.provider {
        Provider::S3 => format!(
            "bucket {} in {} at {}",
            os.bucket_name.as_deref().unwrap_or("?"),
            os.region.as_deref().unwrap_or("?"),
            os.endpoint.as_deref().unwrap_or("AWS")
        ),
        Provider::Local => format!("folder {}", os.root.display()),
        Provider::Memory => "process memory".to_string(),
        Provider::Azure => format!(
            "container {} of account {} at {}",
            os.container.as_deref().unwrap_or("?"),
            os.account.as_deref().unwrap_or("?"),
            os.endpoint.as_deref().unwrap_or("Azure")
        ),
        Provider::Gcs => format!(
            "bucket {} at {}",
            os.bucket_name.as_deref().unwrap_or("?"),
            os.endpoint.as_deref().unwrap_or("Google Cloud Storage")
        ),
    }
}

/// The steps in order: connect, list, put, get, delete. After a failed connect, list or
/// put nothing else runs; a failed read still deletes the probe.
async fn steps(config: &Config) -> Vec<Step> {
    let mut steps = Vec::new();
    let storage = match Storage::connect(config) {
        Ok(storage) => storage,
        Err(e) => {
            steps.push(Step {
                name: "connect",
                outcome: Err(diagnose("connect", &e, config)),
            });
            return steps;
        }
    };
    steps.push(Step {
        name: "connect",
        outcome: Ok(format!("{} storage ready", storage.backend())),
    });
    let step = |name: &'static str, outcome: Result<String, Error>| Step {
        name,
        outcome: outcome.map_err(|e| diagnose(name, &e, config)),
    };

    let listed = storage.list_with_delimiter(None).await.map(|l| {
        format!(
            "{} objects and {} folders directly under {}",
            l.objects.len(),
            l.prefixes.len(),
            storage.prefix()
        )
    });
    let list_failed = listed.is_err();
    steps.push(step("list", listed));
    if list_failed {
        return steps;
    }

    let key = match storage.key(&format!(
        "maskstore-check/probe-{:016x}.txt",
        rand::random::<u64>()
    )) {
        Ok(key) => key,
        Err(e) => {
            steps.push(step("put", Err(e)));
            return steps;
        }
    };
    let body = format!("maskstore check probe {key}");
    let put = storage
        .put_with(
            &key,
            body.clone(),
            &WriteOptions::content_type("text/plain"),
        )
        .await
        .map(|_| format!("wrote {} bytes to {key}", body.len()));
    let put_failed = put.is_err();
    steps.push(step("put", put));
    if put_failed {
        return steps;
    }

    let read = match storage.get(&key).await {
        Ok(object) if object.data == body.as_bytes() => {
            Ok(format!("read {} bytes back, identical", object.data.len()))
        }
        Ok(object) => Err(Error::Backend {
            backend: storage.backend().to_string(),
            key: key.to_string(),
            source: format!(
                "read back {} bytes that differ from the {} written",
                object.data.len(),
                body.len()
            )
            .into(),
        }),
        Err(e) => Err(e),
    };
    steps.push(step("get", read));
    let deleted = match storage.delete(&key).await {
        Ok(()) => match storage.exists(&key).await {
            Ok(false) => Ok(format!("deleted {key}")),
            Ok(true) => Err(Error::Backend {
                backend: storage.backend().to_string(),
                key: key.to_string(),
                source: "the probe is still there after delete".into(),
            }),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    steps.push(step("delete", deleted));
    steps
}

/// The IAM action each step needs.
fn action_of(step: &str) -> &'static str {
    match step {
        "list" => "s3:ListBucket",
        "put" => "s3:PutObject",
        "get" => "s3:GetObject",
        _ => "s3:DeleteObject",
    }
}

/// The Azure RBAC data action each step needs.
fn azure_action_of(step: &str) -> &'static str {
    match step {
        "list" | "get" => "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        "put" => "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
        _ => "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
    }
}

/// The GCS IAM permission each step needs.
fn gcs_permission_of(step: &str) -> &'static str {
    match step {
        "list" => "storage.objects.list",
        "put" => "storage.objects.create",
        "get" => "storage.objects.get",
        _ => "storage.objects.delete",
    }
}

/// Names the cause of a failed step and the fix.
fn diagnose(step: &str, e: &Error, config: &Config) -> Diagnosis {
    let os = &config.object_storage;
    let bucket = os.bucket_name.as_deref().unwrap_or("<bucket>");
    let prefix = os.prefix.as_str();
    let code = super::output::exit_code(e);
    let (cause, fix) = match e {
        Error::CredentialsRejected { detail, .. } if os.provider == Provider::Azure => (
            format!("the Azure credentials were rejected ({detail})"),
            format!(
                "check APP_OBJECT_STORAGE__ACCOUNT_KEY (or account_key_file): it must be key1 or \
                 key2 of storage account {} (Azure portal → Access keys), not a key of another \
                 account or a SAS token; without a key, check the AZURE_* identity",
                os.account.as_deref().unwrap_or("<account>")
            ),
        ),
        Error::CredentialsRejected { detail, .. } if os.provider == Provider::Gcs => (
            format!("the GCS credentials were rejected ({detail})"),
            "check APP_OBJECT_STORAGE__SERVICE_ACCOUNT_KEY (or service_account_key_file): the \
             service account's JSON key must be current (not deleted in IAM → Service \
             accounts → Keys); without a key, check GOOGLE_APPLICATION_CREDENTIALS"
                .to_string(),
        ),
        Error::CredentialsRejected { detail, .. } => (
            format!("the credentials were rejected ({detail})"),
            "check APP_OBJECT_STORAGE__ACCESS_KEY and APP_OBJECT_STORAGE__SECRET_KEY: the key \
             pair must belong together and be active"
                .to_string(),
        ),
        Error::PermissionDenied { detail, .. } if os.provider == Provider::S3 => {
            let action = action_of(step);
            let resource = if action == "s3:ListBucket" {
                format!("arn:aws:s3:::{bucket}")
            } else {
                format!("arn:aws:s3:::{bucket}/{prefix}*")
            };
            (
                format!("access denied by the policy: it lacks {action} on {resource} ({detail})"),
                format!(
                    "add a statement allowing {action} on {resource} to the user's IAM policy \
                     (maskstore policy iam prints the whole least-privilege policy)"
                ),
            )
        }
        Error::PermissionDenied { detail, .. } if os.provider == Provider::Azure => {
            let action = azure_action_of(step);
            let container = os.container.as_deref().unwrap_or("<container>");
            (
                format!(
                    "access denied: the identity lacks {action} on container {container} ({detail})"
                ),
                format!(
                    "assign the \"Storage Blob Data Contributor\" role on container {container} \
                     to the identity (or use the account key)"
                ),
            )
        }
        Error::PermissionDenied { detail, .. } if os.provider == Provider::Gcs => {
            let permission = gcs_permission_of(step);
            (
                format!(
                    "access denied: the service account lacks {permission} on bucket {bucket} ({detail})"
                ),
                format!(
                    "grant roles/storage.objectUser on gs://{bucket} to the service account \
                     (gcloud storage buckets add-iam-policy-binding gs://{bucket} \
                     --member=serviceAccount:<email> --role=roles/storage.objectUser)"
                ),
            )
        }
        Error::PermissionDenied { detail, .. }
        | Error::Config {
            problem: detail, ..
        } if os.provider == Provider::Local => (
            format!(
                "the local root {} is not writable: {detail}",
                os.root.display()
            ),
            "point object_storage.root (APP_OBJECT_STORAGE__ROOT) at a folder this user \
                 can create and write"
                .to_string(),
        ),
        Error::BucketMissing { detail, .. } if os.provider == Provider::Azure => {
            let container = os.container.as_deref().unwrap_or("<container>");
            (
                format!(
                    "container {container} does not exist in account {} ({detail})",
                    os.account.as_deref().unwrap_or("<account>")
                ),
                format!(
                    "create it once (az storage container create --name {container} \
                     --account-name {}), or fix object_storage.container \
                     (APP_OBJECT_STORAGE__CONTAINER)",
                    os.account.as_deref().unwrap_or("<account>")
                ),
            )
        }
        Error::BucketMissing { detail, .. } if os.provider == Provider::Gcs => (
            format!("bucket {bucket} does not exist ({detail})"),
            format!(
                "create it once (gcloud storage buckets create gs://{bucket}), or fix \
                 object_storage.bucket_name (APP_OBJECT_STORAGE__BUCKET_NAME)"
            ),
        ),
        Error::BucketMissing { detail, .. } => (
            format!(
                "bucket {bucket} does not exist at {} ({detail})",
                os.endpoint.as_deref().unwrap_or("AWS")
            ),
            "create the bucket (once, by an administrator), or fix object_storage.bucket_name \
             (APP_OBJECT_STORAGE__BUCKET_NAME)"
                .to_string(),
        ),
        Error::RegionMismatch {
            expected, detail, ..
        } => (
            format!(
                "region mismatch: bucket {bucket} is in {}, not {} ({detail})",
                expected.as_deref().unwrap_or("another region"),
                os.region.as_deref().unwrap_or("?")
            ),
            match expected {
                Some(region) => format!("set APP_OBJECT_STORAGE__REGION={region}"),
                None => "set object_storage.region to the bucket's region (the guide warns \
                         that us-east-1 is only the default)"
                    .to_string(),
            },
        ),
        Error::ClockSkew { detail, .. } => (
            format!("this machine's clock is too far from the server's ({detail})"),
            "synchronise the clock with NTP (timedatectl set-ntp true) and retry".to_string(),
        ),
        Error::Unreachable { detail, .. } => {
            let endpoint = os.endpoint.as_deref().unwrap_or("AWS");
            let lower = detail.to_ascii_lowercase();
            let tls_words = [
                "certificate",
                "tls",
                "ssl",
                "handshake",
                "corrupt message",
                "invalidcontenttype",
            ];
            if tls_words.iter().any(|w| lower.contains(w)) {
                (
                    format!("the TLS handshake with {endpoint} failed ({detail})"),
                    "if the engine speaks plain HTTP, write the endpoint with http://; \
                     otherwise install a certificate the machine trusts"
                        .to_string(),
                )
            } else {
                (
                    format!("the endpoint {endpoint} is unreachable ({detail})"),
                    "check object_storage.endpoint (APP_OBJECT_STORAGE__ENDPOINT), that the \
                     server runs, and the network or firewall between"
                        .to_string(),
                )
            }
        }
        other => (other.to_string(), "see the message above".to_string()),
    };
    Diagnosis { cause, fix, code }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maskstore::Secret;

    fn denied(backend: &str) -> Error {
        Error::PermissionDenied {
            backend: backend.to_string(),
            key: "mask/maskstore-check/probe.txt".to_string(),
            detail: "403 AuthorizationPermissionMismatch".to_string(),
        }
    }

    #[test]
    fn azure_permission_failures_name_the_data_action_and_the_role() {
        let config = Config::azure("pacsmasks", "pacs-masks")
            .unwrap()
            .with_account_key(Secret::new("a2V5"));
        let d = diagnose("put", &denied("azure"), &config);
        assert!(d.cause.contains("blobs/write"), "{}", d.cause);
        assert!(d.cause.contains("container pacs-masks"), "{}", d.cause);
        assert!(d.fix.contains("Storage Blob Data Contributor"), "{}", d.fix);
        let d = diagnose("list", &denied("azure"), &config);
        assert!(d.cause.contains("blobs/read"), "{}", d.cause);
    }

    #[test]
    fn gcs_permission_failures_name_the_permission_and_the_role() {
        let config = Config::gcs("pacs-masks").unwrap();
        let d = diagnose("delete", &denied("gcs"), &config);
        assert!(d.cause.contains("storage.objects.delete"), "{}", d.cause);
        assert!(d.fix.contains("roles/storage.objectUser"), "{}", d.fix);
        assert!(d.fix.contains("gs://pacs-masks"), "{}", d.fix);
        let missing = Error::BucketMissing {
            backend: "gcs".to_string(),
            detail: "404 NoSuchBucket".to_string(),
        };
        let d = diagnose("list", &missing, &config);
        assert!(
            d.fix
                .contains("gcloud storage buckets create gs://pacs-masks"),
            "{}",
            d.fix
        );
        let rejected = Error::CredentialsRejected {
            backend: "gcs".to_string(),
            detail: "401".to_string(),
        };
        let d = diagnose("list", &rejected, &config);
        assert!(d.fix.contains("SERVICE_ACCOUNT_KEY"), "{}", d.fix);
    }
}
