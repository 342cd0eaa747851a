//! The contract suite on every backend: memory, local disk, SeaweedFS (auth enforced) and
//! moto, and on layered storages (a no-fault chaos layer over memory, the counting layer
//! over local disk). Each prints `contract[<backend>]: N passed, M failed`.

mod model;

use futures::TryStreamExt;
use maskstore_backends::{Error, SignOptions, SignedMethod, Storage, WriteOptions};
use maskstore_core::{Provider, TtlPolicy};
use maskstore_testkit::chaos::Chaos;
use maskstore_testkit::contract::{self, Capabilities, Counting, Report};
use maskstore_testkit::servers::{self, S3Server};

/// At least this many cases must pass on every backend.
const MIN_CASES: usize = 60;

fn assert_clean(report: &Report) {
    println!("{report}");
    assert!(report.failed.is_empty(), "{report}");
    assert!(report.passed.len() >= MIN_CASES, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_memory() {
    let storage = maskstore_testkit::memory_served().await;
    assert_clean(&contract::run(&storage).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_local() {
    let storage = maskstore_testkit::temp_dir_served().await;
    assert_clean(&contract::run(&storage).await);
}

/// A layer must keep every rule of the storage below it: the contract over memory with a
/// chaos layer that injects nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_memory_chaos() {
    let served = maskstore_testkit::memory_served().await;
    let layered = Chaos::over(&served).storage();
    let report = contract::run(&layered).await.labelled("memory+chaos");
    assert_clean(&report);
}

/// The contract over local disk with the counting layer, which also saw every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_local_counting() {
    let served = maskstore_testkit::temp_dir_served().await;
    let counting = Counting::new();
    let layered = served.layer(counting.clone());
    let report = contract::run(&layered).await.labelled("local+counting");
    assert_clean(&report);
    assert!(counting.calls() > 100, "{} calls counted", counting.calls());
}

/// A layered S3 storage is the same storage plus the layer: it signs URLs that S3 accepts,
/// keeps the configured alarm thresholds and TTL policy, and counts one operation once.
#[tokio::test]
async fn layered_s3_storage_keeps_its_signer_settings_and_counts_once() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let mut config = server.config();
    config.monitoring.client_error_rate_alarm = 0.25;
    config.monitoring.alarm_min_requests = 3;
    let config = config.with_ttl(TtlPolicy::new(120, 900).unwrap());
    let base = Storage::connect(&config).unwrap();
    let counting = Counting::new();
    let layered = Chaos::over(&base).storage().layer(counting.clone());

    assert_eq!(layered.backend(), "s3");
    assert_eq!(layered.prefix(), base.prefix());
    assert_eq!(layered.ttl_policy(), TtlPolicy::new(120, 900).unwrap());
    let alarms = layered.monitor().settings();
    assert_eq!(alarms.client_error_rate, 0.25);
    assert_eq!(alarms.min_requests, 3);
    assert!(std::sync::Arc::ptr_eq(layered.monitor(), base.monitor()));

    let key = layered.key("layered.png").unwrap();
    let before = layered.monitor().counts().total();
    layered.put(&key, "mask").await.unwrap();
    assert_eq!(
        layered.monitor().counts().total(),
        before + 1,
        "one put, counted once"
    );
    assert_eq!(counting.calls(), 1);

    let url = layered
        .signed_url(SignedMethod::Get, &key, None, &SignOptions::default())
        .await
        .unwrap();
    let body = reqwest::get(&url.url).await.unwrap();
    assert_eq!(body.status().as_u16(), 200);
    assert_eq!(body.text().await.unwrap(), "mask");
    assert!(matches!(
        layered
            .signed_url(SignedMethod::Get, &key, Some(901), &SignOptions::default())
            .await,
        Err(Error::InvalidTtl { max: 900, .. })
    ));
    layered.delete(&key).await.unwrap();
}

/// S3 errors are read from the status and `<Code>`, never from text holding the key: a
/// missing key named after an error code is plainly missing, on a real server.
#[tokio::test]
async fn missing_keys_named_like_s3_error_codes_are_not_found() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let storage = server.storage();
    for name in [
        "RequestTimeTooSkewed",
        "NoSuchBucket",
        "PermanentRedirect",
        "AccessDenied",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
    ] {
        let key = storage.key(&format!("{name}/x.png")).unwrap();
        let other = storage.key(&format!("{name}/y.png")).unwrap();
        for (operation, result) in [
            ("get", storage.get(&key).await.map(drop)),
            ("head", storage.head(&key).await.map(drop)),
            ("range", storage.get_range(&key, 0..4).await.map(drop)),
            ("copy", storage.copy(&key, &other).await),
        ] {
            match result {
                Err(Error::NotFound { .. }) => {}
                other => panic!("{name} {operation}: expected NotFound, got {other:?}"),
            }
        }
        assert!(!storage.exists(&key).await.unwrap());
    }
}

async fn contract_s3(server: S3Server) {
    let capabilities = Capabilities {
        verifies_signatures: server.verifies_signatures,
        ..Capabilities::default()
    };
    let report = contract::run_with(&server.storage(), capabilities)
        .await
        .labelled(server.name);
    assert_clean(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_s3_seaweedfs() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    contract_s3(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_s3_moto() {
    let Some(server) = servers::moto() else {
        return;
    };
    contract_s3(server).await;
}

/// The auth-sensitive check moto cannot do: with a wrong secret, every operation on
/// SeaweedFS is "credentials rejected", and nothing was written.
#[tokio::test]
async fn wrong_secret_is_credentials_rejected_on_every_operation() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let config = server.config_with_secret("definitely-not-the-secret");
    let bad = Storage::connect(&config).unwrap();
    let mut good_config = config.clone();
    good_config.object_storage.secret_key = Some(server.secret_key.clone());
    let good = Storage::connect(&good_config).unwrap();
    assert_eq!(good.prefix(), bad.prefix());
    let existing = good.key("existing.bin").unwrap();
    good.put(&existing, "kept").await.unwrap();

    let new = good.key("new.bin").unwrap();
    let mut outcomes: Vec<(&str, Result<(), Error>)> = vec![
        ("put", bad.put(&new, "x").await.map(drop)),
        ("get", bad.get(&existing).await.map(drop)),
        ("head", bad.head(&existing).await.map(drop)),
        ("delete", bad.delete(&existing).await),
        (
            "delete_many",
            bad.delete_many(std::slice::from_ref(&existing)).await,
        ),
        ("copy", bad.copy(&existing, &new).await),
        ("rename", bad.rename(&existing, &new).await),
        (
            "list_with_delimiter",
            bad.list_with_delimiter(None).await.map(drop),
        ),
        (
            "list",
            bad.list(None)
                .unwrap()
                .try_collect::<Vec<_>>()
                .await
                .map(drop),
        ),
        (
            "upload",
            match bad.upload(&new, &WriteOptions::default()).await {
                Ok(upload) => upload.finish().await.map(drop),
                Err(e) => Err(e),
            },
        ),
    ];
    for (operation, outcome) in outcomes.drain(..) {
        match outcome {
            Err(Error::CredentialsRejected { .. }) => {}
            other => panic!("{operation}: expected CredentialsRejected, got {other:?}"),
        }
    }
    assert_eq!(good.get(&existing).await.unwrap().data, "kept");
    assert!(
        !good.exists(&new).await.unwrap(),
        "a rejected put wrote something"
    );
    good.delete(&existing).await.unwrap();
}

/// The symlink rule on the local provider, through `Storage`: a symlink below the root
/// that points outside it is never followed — not for reading, writing or listing; a
/// listing that meets it fails, naming it.
#[tokio::test]
async fn local_symlink_out_of_the_root_is_never_followed() {
    let storage = maskstore_testkit::temp_dir();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.png"), "outside the root").unwrap();
    let mask_dir = storage.root().join("mask");
    std::fs::create_dir_all(&mask_dir).unwrap();
    std::os::unix::fs::symlink(outside.path(), mask_dir.join("escape")).unwrap();

    let through = storage.key("escape/secret.png").unwrap();
    assert!(matches!(
        storage.get(&through).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        storage.head(&through).await,
        Err(Error::NotFound { .. })
    ));
    assert!(storage.put(&through, "overwrite").await.is_err());
    storage.delete(&through).await.unwrap();
    // Listings never skip it silently (an empty listing would let `sync --delete` empty
    // the destination): they fail, naming the symlink and the fix.
    let listed: Result<Vec<_>, _> = storage.list(None).unwrap().try_collect().await;
    match listed {
        Err(Error::PermissionDenied { detail, .. }) => {
            assert!(detail.contains("mask/escape"), "{detail}");
            assert!(detail.contains("replace it"), "{detail}");
        }
        other => panic!("expected PermissionDenied naming the symlink, got {other:?}"),
    }
    match storage.list_with_delimiter(None).await {
        Err(Error::PermissionDenied { detail, .. }) => {
            assert!(detail.contains("mask/escape"), "{detail}")
        }
        other => panic!("expected PermissionDenied naming the symlink, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret.png")).unwrap(),
        "outside the root"
    );
}

/// object_store retries S3 answers that merely contain "InternalError" or "SlowDown", and
/// the answers of bulk deletes and multipart completions repeat the key: keys named so are
/// still written, streamed, read and deleted like any other, on both S3 implementations.
#[tokio::test]
async fn keys_named_like_retryable_s3_errors_work_on_every_operation() {
    for server in [servers::seaweedfs(), servers::moto()]
        .into_iter()
        .flatten()
    {
        let storage = server.storage();
        for name in ["SlowDown", "InternalError"] {
            let key = storage.key(&format!("scans/{name}/a.png")).unwrap();
            storage.put(&key, "whole").await.unwrap();
            let streamed = storage
                .upload_stream(
                    &key,
                    &WriteOptions::default(),
                    futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(
                        "streamed",
                    ))]),
                )
                .await;
            assert!(streamed.is_ok(), "{} {name}: {streamed:?}", server.name);
            assert_eq!(storage.get(&key).await.unwrap().data, "streamed");
            storage.delete(&key).await.unwrap();
            assert!(!storage.exists(&key).await.unwrap(), "{}", server.name);
            storage.put(&key, "again").await.unwrap();
            storage
                .delete_many(std::slice::from_ref(&key))
                .await
                .unwrap();
            assert!(!storage.exists(&key).await.unwrap(), "{}", server.name);
        }
    }
}

/// Azure Blob Storage on Azurite, which verifies shared keys and SAS (tampered, expired or
/// misused URLs: 403). Exempt: PUT URLs bound to a content type or length, which no SAS can
/// bind (see the contract docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_azure_azurite() {
    let Some(server) = servers::azurite() else {
        return;
    };
    let storage = server.storage();
    assert!(!storage.capabilities().binds_upload_headers);
    let capabilities = Capabilities {
        verifies_signatures: true,
        binds_upload_headers: false,
    };
    let report = contract::run_with(&storage, capabilities)
        .await
        .labelled(server.name);
    assert_clean(&report);
}

/// Google Cloud Storage on fake-gcs-server (writes through GCS's JSON API, reads through
/// its XML API). Exempt: the cases that need a server refusing tampered, expired or misused
/// V4 URLs, since the emulator verifies no signature (see the contract docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_gcs_fake() {
    let Some(server) = servers::fake_gcs() else {
        return;
    };
    let storage = server.storage();
    assert!(storage.capabilities().binds_upload_headers);
    let capabilities = Capabilities {
        verifies_signatures: false,
        binds_upload_headers: true,
    };
    let report = contract::run_with(&storage, capabilities)
        .await
        .labelled(server.name);
    assert_clean(&report);
}

/// With a wrong account key, every operation on Azurite is "credentials rejected" (not
/// "permission denied", not "not found"), and nothing was written.
#[tokio::test]
async fn wrong_azure_key_is_credentials_rejected_on_every_operation() {
    let Some(server) = servers::azurite() else {
        return;
    };
    // A well-formed key (base64 of 64 bytes, as Azure's), but not the account's.
    let config = server.config_with_key(
        "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=",
    );
    let bad = Storage::connect(&config).unwrap();
    let mut good_config = config.clone();
    good_config.object_storage.account_key = Some(server.account_key.clone());
    let good = Storage::connect(&good_config).unwrap();
    let existing = good.key("existing.bin").unwrap();
    good.put(&existing, "kept").await.unwrap();
    let new = good.key("new.bin").unwrap();
    let outcomes: Vec<(&str, Result<(), Error>)> = vec![
        ("put", bad.put(&new, "x").await.map(drop)),
        (
            "put_if_absent",
            bad.put_if_absent(&new, "x").await.map(drop),
        ),
        ("get", bad.get(&existing).await.map(drop)),
        ("range", bad.get_range(&existing, 0..2).await.map(drop)),
        ("head", bad.head(&existing).await.map(drop)),
        ("exists", bad.exists(&existing).await.map(drop)),
        ("delete", bad.delete(&existing).await),
        (
            "delete_many",
            bad.delete_many(std::slice::from_ref(&existing)).await,
        ),
        ("copy", bad.copy(&existing, &new).await),
        ("copy_if_absent", bad.copy_if_absent(&existing, &new).await),
        ("rename", bad.rename(&existing, &new).await),
        (
            "list_with_delimiter",
            bad.list_with_delimiter(None).await.map(drop),
        ),
        (
            "list",
            bad.list(None)
                .unwrap()
                .try_collect::<Vec<_>>()
                .await
                .map(drop),
        ),
        (
            "upload",
            match bad.upload(&new, &WriteOptions::default()).await {
                Ok(upload) => upload.finish().await.map(drop),
                Err(e) => Err(e),
            },
        ),
    ];
    for (operation, outcome) in outcomes {
        match outcome {
            Err(e @ Error::CredentialsRejected { .. }) => {
                let text = e.to_string();
                assert!(text.contains("account_key"), "{operation}: {text}");
                assert!(!text.contains(server.account_key.expose()), "{text}");
            }
            other => panic!("{operation}: expected CredentialsRejected, got {other:?}"),
        }
    }
    assert_eq!(good.get(&existing).await.unwrap().data, "kept");
    assert!(
        !good.exists(&new).await.unwrap(),
        "a rejected put wrote something"
    );
    good.delete(&existing).await.unwrap();
}

/// A missing container is named as such (not as a missing key) by every operation.
#[tokio::test]
async fn missing_azure_container_is_bucket_missing() {
    let Some(server) = servers::azurite() else {
        return;
    };
    let mut config = server.config();
    config.object_storage.container = Some(server.missing_container.clone());
    let storage = Storage::connect(&config).unwrap();
    let key = storage.key("a.bin").unwrap();
    for (operation, outcome) in [
        ("put", storage.put(&key, "x").await.map(drop)),
        ("get", storage.get(&key).await.map(drop)),
        ("list", storage.list_with_delimiter(None).await.map(drop)),
    ] {
        match outcome {
            Err(e @ Error::BucketMissing { .. }) => {
                let text = e.to_string();
                assert!(text.contains("container"), "{operation}: {text}");
            }
            other => panic!("{operation}: expected BucketMissing, got {other:?}"),
        }
    }
}

/// The contract runs of each provider, in this file: a new provider is a compile error here
/// until its contract runs (in process, or on a real server of `crates/testkit/src/servers.rs`
/// started by `scripts/test-servers`).
fn contract_runs(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::S3 => &["contract_s3_seaweedfs", "contract_s3_moto"],
        Provider::Local => &["contract_local", "contract_local_counting"],
        Provider::Memory => &["contract_memory", "contract_memory_chaos"],
        Provider::Azure => &["contract_azure_azurite"],
        Provider::Gcs => &["contract_gcs_fake"],
    }
}

#[test]
fn every_provider_runs_the_contract() {
    let source = include_str!("contract.rs");
    for provider in Provider::ALL {
        assert!(!contract_runs(provider).is_empty(), "{provider}");
        for run in contract_runs(provider) {
            assert!(
                source.contains(&format!("async fn {run}() {{")),
                "{provider}: tests/contract.rs has no contract run {run}"
            );
        }
    }
}
