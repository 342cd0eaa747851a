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
use crate::support::{maskstore, succeeded, text, vars};

/// Marks the child run of an in-process test.
const CHILD: &str = "MASKSTORE_TEST_SECRETS_MANAGER_CHILD";

/// What a child prints once its whole body ran: a parent that does not see it fails.
const CHILD_RAN: &str = "secrets manager child: ran to its end";

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
    create_secret_string(moto, &keys_json(access, secret))
}

/// A new secret in moto whose value is `json`; its id.
fn create_secret_string(moto: &str, json: &str) -> String {
    let id = format!("maskstore-test/s3-{:016x}", rand::random::<u64>());
    aws(
        moto,
        &[
            "secretsmanager",
            "create-secret",
            "--name",
            &id,
            "--secret-string",
            json,
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

#[test]
fn a_secret_holding_the_aws_variables_names_gives_the_keys() {
    let (Some(seaweedfs), Some(moto)) = (servers::seaweedfs(), servers::moto()) else {
        return;
    };
    let secret = seaweedfs.secret_key.expose();
    let json = serde_json::json!({
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
        "AWS_SECRET_ACCESS_KEY": secret,
    })
    .to_string();
    let id = create_secret_string(&moto.endpoint, &json);
    let dir = tempfile::tempdir().unwrap();
    let mut env = app_env(&seaweedfs, &id, 60);
    env.extend(aws_env(&moto.endpoint));
    let out = maskstore(dir.path(), &["check"], &env);
    let stdout = succeeded(&out);
    assert!(stdout.contains("all steps passed"), "{stdout}");
    assert!(!stdout.contains(secret) && !text(&out.stderr).contains(secret));

    // Two names of one key that disagree: refused, naming both, never the values.
    let json = serde_json::json!({
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
        "secret_key": secret,
        "AWS_SECRET_ACCESS_KEY": "another-secret-value",
    })
    .to_string();
    let id = create_secret_string(&moto.endpoint, &json);
    let mut env = app_env(&seaweedfs, &id, 60);
    env.extend(aws_env(&moto.endpoint));
    let out = maskstore(dir.path(), &["check"], &env);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("secret_key and AWS_SECRET_ACCESS_KEY differ"),
        "{err}"
    );
    assert!(
        !err.contains(secret) && !err.contains("another-secret-value"),
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
    // Its last line, printed only after every assertion of its body held.
    assert!(
        all.contains("1 passed") && all.contains(CHILD_RAN) && !all.contains("skipping"),
        "the child did not run its test to its end: {all}"
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

/// Whether this is the child run of an in-process test; run directly (--include-ignored),
/// without its parent's AWS variables, a child says so and does nothing.
fn ran_by_parent() -> bool {
    let child = std::env::var(CHILD).as_deref() == Ok("1");
    if !child {
        eprintln!("skipping: run by its parent test, which sets the AWS variables");
    }
    child
}

/// The rotation identity of a child run: its parent saw the servers, so a child that
/// cannot make one fails rather than passing without running.
fn child_identity() -> RotationIdentity {
    RotationIdentity::create().expect("the child cannot run: no SeaweedFS rotation identity")
}

/// A storage on SeaweedFS with the first key of `identity`, from a new secret; a child
/// that cannot reach the servers fails.
fn storage_from_secret(identity: &RotationIdentity, refresh: u64) -> (Storage, String, String) {
    let seaweedfs = servers::seaweedfs().expect("the child cannot run: no SeaweedFS");
    let moto = servers::moto().expect("the child cannot run: no moto");
    let id = create_secret(&moto.endpoint, &identity.keys[0].0, &identity.keys[0].1);
    let source = ConfigSource {
        dir: Some("/nonexistent/maskstore-config".into()),
        env_file: None,
        ..Default::default()
    };
    let config = load_config_from(&source, app_env(&seaweedfs, &id, refresh)).unwrap();
    (Storage::connect(&config).unwrap(), id, moto.endpoint)
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
    if !ran_by_parent() {
        return;
    }
    let identity = child_identity();
    let (storage, id, moto) = storage_from_secret(&identity, 1);
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
    println!("{CHILD_RAN}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by after_a_403_the_secret_is_read_at_once"]
async fn child_a_403_reads_the_secret_at_once() {
    if !ran_by_parent() {
        return;
    }
    let identity = child_identity();
    // An hour between reads: only the 403 can make it read the secret again.
    let (storage, id, moto) = storage_from_secret(&identity, 3600);
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
    println!("{CHILD_RAN}");
}

/// A one-request Secrets Manager that checks the SigV4 signature with botocore's own signer
/// (moto checks none): the keys for a good signature, `InvalidSignatureException` else.
const BOTOCORE_CHECKED_SERVER: &str = r#"
import json, socket, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
s = socket.socket()
s.bind(("127.0.0.1", 0)); s.listen(1); s.settimeout(60)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.settimeout(20)
data = b""
while b"\r\n\r\n" not in data:
    data += c.recv(65536)
head, body = data.split(b"\r\n\r\n", 1)
lines = head.decode().split("\r\n")
h = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
while len(body) < int(h.get("content-length", "0")):
    body += c.recv(65536)
auth = h.get("authorization", "")
signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";") if "SignedHeaders=" in auth else []
req = AWSRequest(method=lines[0].split(" ")[0], url="http://" + h["host"] + lines[0].split(" ")[1],
                 data=body, headers={k: h[k] for k in signed if k != "host"})
req.context["timestamp"] = h.get("x-amz-date", "")
signer = SigV4Auth(Credentials("sm-reader", "sm-reader-secret"), "secretsmanager", sys.argv[1])
canonical = signer.canonical_request(req)
expected = signer.signature(signer.string_to_sign(req, canonical), req)
scope = "Credential=sm-reader/" + h.get("x-amz-date", "")[:8] + "/" + sys.argv[1] + "/secretsmanager/aws4_request"
good = (auth.startswith("AWS4-HMAC-SHA256 " + scope + ",") and auth.endswith("Signature=" + expected)
        and {"host", "x-amz-date", "x-amz-target", "content-type"} <= set(signed)
        and h.get("x-amz-target") == "secretsmanager.GetSecretValue"
        and json.loads(body) == {"SecretId": sys.argv[2]})
if good:
    secret = json.dumps({"access_key": "AKIASIGNED", "secret_key": "signed-s3cr3t"})
    answer = json.dumps({"ARN": "arn", "Name": sys.argv[2], "VersionId": "v1", "SecretString": secret})
    status = "200 OK"
else:
    answer = json.dumps({"__type": "InvalidSignatureException", "message": "no"})
    status = "400 Bad Request"
    print("refused: " + auth + " expected " + expected + " for " + scope, file=sys.stderr)
c.sendall(("HTTP/1.1 " + status + "\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: "
           + str(len(answer)) + "\r\nconnection: close\r\n\r\n" + answer).encode())
c.close()
"#;

#[test]
fn the_get_secret_value_request_carries_the_signature_botocore_computes() {
    use std::io::BufRead;
    if !crate::foreign::writers_available() {
        return;
    }
    let python = std::env::var("MASKSTORE_TEST_PYTHON").unwrap();
    let (region, id) = ("eu-west-1", "prod/pacs-masks/s3");
    let mut server = Command::new(python)
        .args(["-c", BOTOCORE_CHECKED_SERVER, region, id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let env = vars(&[
        ("AWS_ACCESS_KEY_ID", "sm-reader"),
        ("AWS_SECRET_ACCESS_KEY", "sm-reader-secret"),
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            &format!("http://127.0.0.1:{}", port.trim()),
        ),
        ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
        ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs-masks"),
        ("APP_OBJECT_STORAGE__REGION", region),
        (
            "APP_OBJECT_STORAGE__SECRET_SOURCE",
            &format!("aws-secretsmanager:{id}"),
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(dir.path(), &["config", "show"], &env);
    let server = server.wait_with_output().unwrap();
    let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{shown}\nserver: {}",
        text(&server.stderr)
    );
    assert!(
        shown.contains("AKIASIGNED") && !shown.contains("signed-s3cr3t"),
        "{shown}"
    );
}
