//! S3 keys from AWS Secrets Manager (moto's) for S3 on SeaweedFS: `check` passes with them,
//! a rotation of the secret during a put/get loop loses no request, and after a 403 the
//! secret is read at once.
//!
//! maskstore finds Secrets Manager and the credentials to read it the way the AWS SDKs do,
//! in the process environment (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ACCESS_KEY_ID`, …).
//! The in-process tests therefore run in a child of this test binary started with those
//! variables (this crate forbids `unsafe`, which `std::env::set_var` needs).

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use maskstore_backends::{ConfigSource, SignOptions, SignedMethod, Storage, load_config_from};
use maskstore_testkit::servers;

use crate::rotation::{RotationIdentity, Tally};
use crate::support::{maskstore, succeeded, text};

/// Marks the child run of an in-process test.
const CHILD: &str = "MASKSTORE_TEST_SECRETS_MANAGER_CHILD";

/// The variables that point the AWS chain and Secrets Manager at moto.
fn aws_env(moto: &str) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "moto-secrets-reader"),
        ("AWS_SECRET_ACCESS_KEY", "moto-secrets-reader-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The AWS CLI against moto's Secrets Manager, failing the test when it fails.
fn aws(moto: &str, args: &[&str]) -> Output {
    let cli = std::env::var("MASKSTORE_TEST_AWS_CLI")
        .expect("scripts/test-servers exports MASKSTORE_TEST_AWS_CLI");
    let out = Command::new(cli)
        .args([
            "--endpoint-url",
            moto,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args(args)
        .envs(aws_env(moto))
        .output()
        .unwrap();
    assert!(out.status.success(), "aws {args:?}: {}", text(&out.stderr));
    out
}

fn keys_json(access: &str, secret: &str) -> String {
    serde_json::json!({"access_key": access, "secret_key": secret}).to_string()
}

/// A new secret in moto holding these keys; its id.
fn create_secret(moto: &str, access: &str, secret: &str) -> String {
    let id = format!("maskstore-test/s3-{:016x}", rand::random::<u64>());
    aws(
        moto,
        &[
            "secretsmanager",
            "create-secret",
            "--name",
            &id,
            "--secret-string",
            &keys_json(access, secret),
        ],
    );
    id
}

fn rotate_secret(moto: &str, id: &str, access: &str, secret: &str) {
    aws(
        moto,
        &[
            "secretsmanager",
            "put-secret-value",
            "--secret-id",
            id,
            "--secret-string",
            &keys_json(access, secret),
        ],
    );
}

/// The `APP_*` variables of SeaweedFS without keys, taking them from secret `id`.
fn app_env(seaweedfs: &servers::S3Server, id: &str, refresh: u64) -> Vec<(String, String)> {
    [
        ("APP_OBJECT_STORAGE__PROVIDER", "s3".to_string()),
        ("APP_OBJECT_STORAGE__BUCKET_NAME", seaweedfs.bucket.clone()),
        ("APP_OBJECT_STORAGE__REGION", "us-east-1".to_string()),
        ("APP_OBJECT_STORAGE__ENDPOINT", seaweedfs.endpoint.clone()),
        (
            "APP_OBJECT_STORAGE__PREFIX",
            format!("mask/test-{:016x}/", rand::random::<u64>()),
        ),
        (
            "APP_OBJECT_STORAGE__SECRET_SOURCE",
            format!("aws-secretsmanager:{id}"),
        ),
        ("APP_OBJECT_STORAGE__SECRET_REFRESH", refresh.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[test]
fn check_passes_with_the_keys_in_secrets_manager_and_never_shows_them() {
    let (Some(seaweedfs), Some(moto)) = (servers::seaweedfs(), servers::moto()) else {
        return;
    };
    let secret = seaweedfs.secret_key.expose();
    let id = create_secret(&moto.endpoint, &seaweedfs.access_key, secret);
    let dir = tempfile::tempdir().unwrap();
    let mut env = app_env(&seaweedfs, &id, 60);
    env.extend(aws_env(&moto.endpoint));
    let out = maskstore(dir.path(), &["check"], &env);
    let stdout = succeeded(&out);
    assert!(stdout.contains("all steps passed"), "{stdout}");
    assert!(
        stdout.contains(&format!("AWS Secrets Manager secret {id} (2 keys)")),
        "{stdout}"
    );
    let out = maskstore(dir.path(), &["config", "show"], &env);
    let shown = succeeded(&out);
    assert!(
        shown.contains(&format!("# AWS Secrets Manager secret {id}")),
        "{shown}"
    );
    assert!(
        !shown.contains(secret) && !text(&out.stderr).contains(secret),
        "{shown}"
    );

    // A secret that is not there: the configuration is refused, naming it.
    let env: Vec<_> = env
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "APP_OBJECT_STORAGE__SECRET_SOURCE" => (k, format!("aws-secretsmanager:{id}-missing")),
            _ => (k, v),
        })
        .collect();
    let out = maskstore(dir.path(), &["check"], &env);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ResourceNotFoundException") && err.contains("-missing"),
        "{err}"
    );
}

/// Runs the ignored test `name` of this module in a child of this binary with the AWS
/// variables set; fails when it fails.
fn in_child(name: &str) {
    let (Some(_), Some(moto)) = (servers::seaweedfs(), servers::moto()) else {
        return;
    };
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("secrets_manager::{name}"),
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .envs(aws_env(&moto.endpoint))
        .env(CHILD, "1")
        .output()
        .unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    eprintln!("{all}");
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("1 passed") && !all.contains("skipping"),
        "the child did not run its test: {all}"
    );
}

#[test]
fn a_rotation_in_secrets_manager_during_a_put_get_loop_loses_no_request() {
    in_child("child_rotation_during_a_put_get_loop");
}

#[test]
fn after_a_403_the_secret_is_read_at_once() {
    in_child("child_a_403_reads_the_secret_at_once");
}

/// A storage on SeaweedFS with the first key of `identity`, from a new secret.
fn storage_from_secret(
    identity: &RotationIdentity,
    refresh: u64,
) -> Option<(Storage, String, String)> {
    if std::env::var(CHILD).as_deref() != Ok("1") {
        // Run directly (--include-ignored): without its parent's AWS variables.
        eprintln!("skipping: run by its parent test, which sets the AWS variables");
        return None;
    }
    let (seaweedfs, moto) = (servers::seaweedfs()?, servers::moto()?);
    let id = create_secret(&moto.endpoint, &identity.keys[0].0, &identity.keys[0].1);
    let source = ConfigSource {
        dir: Some("/nonexistent/maskstore-config".into()),
        env_file: None,
        ..Default::default()
    };
    let config = load_config_from(&source, app_env(&seaweedfs, &id, refresh)).unwrap();
    Some((Storage::connect(&config).unwrap(), id, moto.endpoint))
}

/// Waits until the storage's presigned URLs carry `access_key`.
async fn until_signing_with(storage: &Storage, access_key: &str) {
    let key = storage.key("rotation/presign.png").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = storage
            .signed_url(SignedMethod::Get, &key, Some(60), &SignOptions::default())
            .await
            .unwrap()
            .url;
        if url.contains(access_key) {
            return;
        }
        assert!(Instant::now() < deadline, "the new key was never taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_rotation_in_secrets_manager_during_a_put_get_loop_loses_no_request"]
async fn child_rotation_during_a_put_get_loop() {
    let Some(identity) = RotationIdentity::create() else {
        return;
    };
    let Some((storage, id, moto)) = storage_from_secret(&identity, 1) else {
        return;
    };
    let tally = Arc::new(Tally::default());
    let removed_at = Arc::new(AtomicU64::new(u64::MAX));
    let removed = Arc::new(AtomicBool::new(false));
    let loop_ = {
        let (storage, tally, removed, removed_at) = (
            storage.clone(),
            tally.clone(),
            removed.clone(),
            removed_at.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            // At least 1,000 rounds, and 50 after the old key is gone from the server.
            while i < 1000
                || !removed.load(Ordering::SeqCst)
                || i < removed_at.load(Ordering::SeqCst) + 50
            {
                let key = storage.key(&format!("rotation/{}.png", i % 20)).unwrap();
                let body = format!("object {i}").into_bytes();
                let worked = match storage.put(&key, body.clone()).await {
                    Ok(_) => storage
                        .get(&key)
                        .await
                        .is_ok_and(|o| o.data[..] == body[..]),
                    Err(e) => {
                        eprintln!("put {i}: {e}");
                        false
                    }
                };
                let counter = if worked { &tally.ok } else { &tally.failed };
                counter.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
            i
        })
    };
    while tally.ok.load(Ordering::SeqCst) < 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rotate_secret(&moto, &id, &identity.keys[1].0, &identity.keys[1].1);
    let rotated_at = tally.ok.load(Ordering::SeqCst) + tally.failed.load(Ordering::SeqCst);
    until_signing_with(&storage, &identity.keys[1].0).await;
    identity.remove_key(&identity.keys[0].0);
    removed_at.store(
        tally.ok.load(Ordering::SeqCst) + tally.failed.load(Ordering::SeqCst),
        Ordering::SeqCst,
    );
    removed.store(true, Ordering::SeqCst);
    let rounds = loop_.await.unwrap();
    let (ok, failed) = (
        tally.ok.load(Ordering::SeqCst),
        tally.failed.load(Ordering::SeqCst),
    );
    eprintln!(
        "secrets manager rotation: {rounds} put+get rounds, {ok} ok, {failed} failed; rotated at round {rotated_at}, old key removed at round {}",
        removed_at.load(Ordering::SeqCst)
    );
    assert_eq!(failed, 0, "{ok} worked");
    assert!(rounds >= 1000, "{rounds}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by after_a_403_the_secret_is_read_at_once"]
async fn child_a_403_reads_the_secret_at_once() {
    let Some(identity) = RotationIdentity::create() else {
        return;
    };
    // An hour between reads: only the 403 can make it read the secret again.
    let Some((storage, id, moto)) = storage_from_secret(&identity, 3600) else {
        return;
    };
    let key = storage.key("rotation/forbidden.png").unwrap();
    storage.put(&key, b"before".to_vec()).await.unwrap();
    rotate_secret(&moto, &id, &identity.keys[1].0, &identity.keys[1].1);
    identity.remove_key(&identity.keys[0].0);
    // Requests signed with the removed key are refused once the server has dropped it;
    // the request after the first refusal uses the new key.
    let deadline = Instant::now() + Duration::from_secs(10);
    while storage.put(&key, b"old key".to_vec()).await.is_ok() {
        assert!(Instant::now() < deadline, "the removed key kept working");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    storage.put(&key, b"after".to_vec()).await.unwrap();
    assert_eq!(&storage.get(&key).await.unwrap().data[..], b"after");
    until_signing_with(&storage, &identity.keys[1].0).await;
}
