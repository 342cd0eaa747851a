//! `maskstore presign` and `maskstore serve` as processes, with a plain HTTP client
//! holding no credentials: on local disk, in memory, and against SeaweedFS.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use maskstore_testkit::servers;

use crate::support::{maskstore, text, vars};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `maskstore serve`, stopped with SIGTERM on drop.
struct Server(Child);

impl Server {
    fn start(dir: &Path, vars: &[(String, String)], listen: &str) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_maskstore"))
            .arg("serve")
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("maskstore serve starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(listen).is_err() {
            assert!(
                Instant::now() < deadline,
                "maskstore serve did not listen on {listen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn presign(dir: &Path, env: &[(String, String)], args: &[&str]) -> String {
    let out = maskstore(dir, &[&["presign"], args].concat(), env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the URL on stdout: {stdout}"
    );
    assert!(text(&out.stderr).contains("expires"), "expiry on stderr");
    stdout.trim().to_string()
}

/// The done-when of the signed-URL issue: an upload to a `presign put` URL reads back
/// identical through a `presign get` URL; tampered and expired variants get 403.
async fn upload_then_download(dir: &Path, env: &[(String, String)], prefix: &str) {
    let key = &format!("{prefix}1.2.840.1/1.2.840.2/seg-1.nii.gz");
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let http = reqwest::Client::new();

    let put = presign(
        dir,
        env,
        &["put", key, "--content-type", "application/gzip"],
    );
    let response = http
        .put(&put)
        .header("content-type", "application/gzip")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "PUT: {}", response.status());

    let get = presign(dir, env, &["get", key, "--ttl", "60"]);
    let response = http.get(&get).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.bytes().await.unwrap() == body,
        "downloaded bytes differ"
    );

    let wrong_type = http
        .put(&put)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status().as_u16(), 403);
    let other_key = get.replacen("seg-1", "seg-2", 1);
    assert_eq!(
        http.get(&other_key).send().await.unwrap().status().as_u16(),
        403
    );
    let as_delete = http.delete(&get).send().await.unwrap();
    assert_eq!(as_delete.status().as_u16(), 403);

    let short = presign(dir, env, &["get", key, "--ttl", "1"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        http.get(&short).send().await.unwrap().status().as_u16(),
        403
    );

    let delete = presign(dir, env, &["delete", key]);
    assert!(
        http.delete(&delete)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert_eq!(http.get(&get).send().await.unwrap().status().as_u16(), 404);
}

#[tokio::test]
async fn presigned_urls_round_trip_through_serve_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let env = vars(&[("APP_GATEWAY__LISTEN", &listen)]);
    let _server = Server::start(dir.path(), &env, &listen);
    upload_then_download(dir.path(), &env, "mask/").await;
    // The development secret is kept beside the root (not inside it, where copies of the
    // data would carry it), readable by the owner only.
    let secret = dir.path().join(".data.signing-secret");
    assert!(!dir.path().join("data/.maskstore/signing-secret").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn presigned_urls_round_trip_through_serve_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let env = vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "memory"),
        ("APP_GATEWAY__LISTEN", &listen),
        (
            "APP_GATEWAY__SIGNING_SECRET",
            "memory-test-secret-of-32-bytes-or-more",
        ),
    ]);
    let _server = Server::start(dir.path(), &env, &listen);
    upload_then_download(dir.path(), &env, "mask/").await;
}

#[tokio::test]
async fn presigned_urls_round_trip_on_seaweedfs() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A prefix of its own: the test bucket is shared by every test of the run.
    let prefix = server.config().object_storage.prefix.to_string();
    let mut env = server.app_env();
    env.push(("APP_OBJECT_STORAGE__PREFIX".into(), prefix.clone()));
    upload_then_download(dir.path(), &env, &prefix).await;
}

#[test]
fn ttl_above_the_maximum_fails_naming_the_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["presign", "get", "mask/a.png", "--ttl", "7200"],
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("3600"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn presign_in_memory_without_a_secret_refuses_to_print_a_useless_url() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["presign", "get", "mask/a.png"],
        &vars(&[("APP_OBJECT_STORAGE__PROVIDER", "memory")]),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("APP_GATEWAY__SIGNING_SECRET"));
}

#[test]
fn serve_refuses_s3() {
    let dir = tempfile::tempdir().unwrap();
    let env = vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
        ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs-masks-dev"),
        ("APP_OBJECT_STORAGE__REGION", "us-east-1"),
    ]);
    let out = maskstore(dir.path(), &["serve"], &env);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("local and memory"),
        "{}",
        text(&out.stderr)
    );
}

/// A PUT URL bound to a content length refuses any other length, on the gateway.
#[tokio::test]
async fn bound_content_length_is_enforced_by_the_gateway() {
    let storage = maskstore_testkit::memory_served().await;
    let key = storage.key("bound/length.bin").unwrap();
    let options = maskstore_backends::SignOptions {
        content_type: None,
        content_length: Some(5),
    };
    let url = storage
        .signed_url(maskstore_backends::SignedMethod::Put, &key, None, &options)
        .await
        .unwrap()
        .url;
    let http = reqwest::Client::new();
    let longer = http.put(&url).body("123456").send().await.unwrap();
    assert_eq!(longer.status().as_u16(), 403);
    assert!(longer.text().await.unwrap().contains("content length 6"));
    assert!(!storage.exists(&key).await.unwrap());
    let exact = http.put(&url).body("12345").send().await.unwrap();
    assert!(exact.status().is_success());
    assert_eq!(storage.get(&key).await.unwrap().data, "12345");
}
