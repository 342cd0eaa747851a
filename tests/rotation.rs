//! Secrets rotated through their files while requests keep flowing: S3 keys of a
//! long-running `Storage` on SeaweedFS, the account key of one on Azurite, and the signing
//! secret of a running `maskstore serve`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use maskstore_backends::signing::{GatewaySigner, SignOptions};
use maskstore_backends::{ConfigSource, SignedMethod, Storage, load_config_from};
use maskstore_core::{ObjectKey, Secret};

use crate::support::Serve;

/// Writes `text` to `path` as an operator's rotation does: a private file renamed into place.
fn write_secret(path: &Path, text: &str) {
    let temp = path.with_extension("new");
    std::fs::write(&temp, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

fn secrets_dir(root: &Path) -> PathBuf {
    let dir = root.join("secrets");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// `weed shell` against the test SeaweedFS, failing the test when it reports an error.
fn weed_shell(weed: &str, master: &str, command: &str) {
    let mut child = Command::new(weed)
        .args(["shell", &format!("-master={master}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{command}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("error"), "weed shell {command}: {text}");
}

#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
}

/// Puts and gets under `storage` until `stop`, counting what worked and what failed.
async fn traffic(storage: Storage, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let key = storage.key(&format!("rotation/{}.png", i % 20)).unwrap();
        let body = format!("object {i}").into_bytes();
        let worked = match storage.put(&key, body.clone()).await {
            Ok(_) => match storage.get(&key).await {
                Ok(object) => object.data[..] == body[..],
                Err(e) => {
                    eprintln!("get {i}: {e}");
                    false
                }
            },
            Err(e) => {
                eprintln!("put {i}: {e}");
                false
            }
        };
        let counter = if worked { &tally.ok } else { &tally.failed };
        counter.fetch_add(1, Ordering::SeqCst);
        i += 1;
    }
}

/// The test SeaweedFS with a rotation identity of two keys made for this test, stored in
/// the filer (identities from `-s3.config` are static: no key of theirs can be removed).
pub(crate) struct RotationIdentity {
    weed: String,
    master: String,
    user: String,
    pub(crate) keys: [(String, String); 2],
}

impl RotationIdentity {
    pub(crate) fn create() -> Option<RotationIdentity> {
        let vars = [
            "MASKSTORE_TEST_WEED",
            "MASKSTORE_TEST_SEAWEEDFS_MASTER",
            "MASKSTORE_TEST_SEAWEEDFS_BUCKET",
        ];
        let Some(values) = vars
            .iter()
            .map(|v| std::env::var(v).ok())
            .collect::<Option<Vec<_>>>()
        else {
            assert!(
                std::env::var("CI").is_err(),
                "scripts/test-servers exports {vars:?}"
            );
            eprintln!("skipping: {vars:?} are not set (run scripts/test)");
            return None;
        };
        let [weed, master, bucket] = <[String; 3]>::try_from(values).unwrap();
        let tag = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let user = format!("maskstore-rotation-{tag}");
        let keys = [
            (
                format!("rotation-old-{tag}"),
                format!("old-secret-{tag}-0123456789"),
            ),
            (
                format!("rotation-new-{tag}"),
                format!("new-secret-{tag}-0123456789"),
            ),
        ];
        weed_shell(
            &weed,
            &master,
            &format!(
                "s3.configure -user={user} -access_key={} -secret_key={} -actions=Read:{bucket},Write:{bucket},List:{bucket} -apply",
                keys[0].0, keys[0].1
            ),
        );
        weed_shell(
            &weed,
            &master,
            &format!(
                "s3.configure -user={user} -access_key={} -secret_key={} -apply",
                keys[1].0, keys[1].1
            ),
        );
        Some(RotationIdentity {
            weed,
            master,
            user,
            keys,
        })
    }

    pub(crate) fn remove_key(&self, access_key: &str) {
        weed_shell(
            &self.weed,
            &self.master,
            &format!(
                "s3.configure -user={} -access_key={access_key} -delete -apply",
                self.user
            ),
        );
    }
}

impl Drop for RotationIdentity {
    fn drop(&mut self) {
        let _ = Command::new(&self.weed)
            .args(["shell", &format!("-master={}", self.master)])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(
                    format!("s3.configure -user={} -delete -apply\n", self.user).as_bytes(),
                )?;
                child.wait()
            });
    }
}

/// A storage on the test SeaweedFS whose keys are the first key of `identity`, given as
/// `access_key_file` and `secret_key_file` (in the returned folder, which must live on).
fn s3_storage_with_key_files(
    identity: &RotationIdentity,
) -> (tempfile::TempDir, Storage, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = secrets_dir(root.path());
    let (access_file, secret_file) = (dir.join("access_key"), dir.join("secret_key"));
    write_secret(&access_file, &identity.keys[0].0);
    write_secret(&secret_file, &identity.keys[0].1);
    let env = |k: &str| std::env::var(k).unwrap();
    let vars: Vec<(String, String)> = [
        ("APP_OBJECT_STORAGE__PROVIDER", "s3".to_string()),
        (
            "APP_OBJECT_STORAGE__BUCKET_NAME",
            env("MASKSTORE_TEST_SEAWEEDFS_BUCKET"),
        ),
        ("APP_OBJECT_STORAGE__REGION", "us-east-1".to_string()),
        (
            "APP_OBJECT_STORAGE__ENDPOINT",
            env("MASKSTORE_TEST_SEAWEEDFS_ENDPOINT"),
        ),
        (
            "APP_OBJECT_STORAGE__PREFIX",
            format!("mask/test-{:016x}/", rand::random::<u64>()),
        ),
        (
            "APP_OBJECT_STORAGE__ACCESS_KEY_FILE",
            access_file.display().to_string(),
        ),
        (
            "APP_OBJECT_STORAGE__SECRET_KEY_FILE",
            secret_file.display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let source = ConfigSource {
        dir: Some(root.path().join("no-config")),
        ..Default::default()
    };
    let storage = Storage::connect(&load_config_from(&source, vars).unwrap()).unwrap();
    (root, storage, access_file, secret_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_s3_refuses_the_old_key_the_rewritten_key_files_are_read_at_once() {
    let Some(identity) = RotationIdentity::create() else {
        return;
    };
    let (_root, storage, access_file, secret_file) = s3_storage_with_key_files(&identity);
    let key = storage.key("rotation/forbidden.png").unwrap();
    storage.put(&key, b"before".to_vec()).await.unwrap();
    // The old key is gone from the server before its files are rewritten (an operator who
    // deleted the key first): requests with it are refused once the server has dropped it.
    identity.remove_key(&identity.keys[0].0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while storage.put(&key, b"old key".to_vec()).await.is_ok() {
        assert!(Instant::now() < deadline, "the removed key kept working");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    write_secret(&access_file, &identity.keys[1].0);
    write_secret(&secret_file, &identity.keys[1].1);
    // The very next request reads the files at once, without waiting for them to settle
    // (without the 403 rule it would sign with the old key and be refused).
    storage.put(&key, b"after".to_vec()).await.unwrap();
    assert_eq!(&storage.get(&key).await.unwrap().data[..], b"after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_s3_storage_keeps_working_across_a_rewrite_of_its_key_files() {
    let Some(identity) = RotationIdentity::create() else {
        return;
    };
    let (_root, storage, access_file, secret_file) = s3_storage_with_key_files(&identity);
    let key = storage.key("rotation/presigned.png").unwrap();
    storage.put(&key, b"before".to_vec()).await.unwrap();
    let presigned_before = storage
        .signed_url(SignedMethod::Get, &key, Some(600), &SignOptions::default())
        .await
        .unwrap();
    assert!(presigned_before.url.contains(&identity.keys[0].0));

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let loop_ = tokio::spawn(traffic(storage.clone(), stop.clone(), tally.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_rotation = tally.ok.load(Ordering::SeqCst);
    // The rotation: the new key's two parts written one after the other.
    write_secret(&access_file, &identity.keys[1].0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    write_secret(&secret_file, &identity.keys[1].1);
    // Until the presigner (same credential provider) names the new key.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = storage
            .signed_url(SignedMethod::Get, &key, Some(60), &SignOptions::default())
            .await
            .unwrap()
            .url;
        if url.contains(&identity.keys[1].0) {
            break;
        }
        assert!(Instant::now() < deadline, "the new key was never taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The old key removed from the server: requests still succeed.
    identity.remove_key(&identity.keys[0].0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    loop_.await.unwrap();
    let (ok, failed) = (
        tally.ok.load(Ordering::SeqCst),
        tally.failed.load(Ordering::SeqCst),
    );
    eprintln!("rotation: {ok} put+get rounds ok ({before_rotation} before it), {failed} failed");
    assert_eq!(failed, 0, "{ok} worked");
    assert!(
        ok > before_rotation + 10,
        "{ok} rounds, {before_rotation} before the rotation"
    );
    storage.put(&key, b"after".to_vec()).await.unwrap();
    assert_eq!(&storage.get(&key).await.unwrap().data[..], b"after");
    // A URL presigned now carries the new key and works; one presigned with the removed
    // key no longer does: the removal was real.
    let presigned_after = storage
        .signed_url(SignedMethod::Get, &key, Some(600), &SignOptions::default())
        .await
        .unwrap();
    assert!(presigned_after.url.contains(&identity.keys[1].0));
    let answer = reqwest::get(&presigned_after.url).await.unwrap();
    assert_eq!(answer.status().as_u16(), 200, "a URL of the new key");
    assert_eq!(&answer.bytes().await.unwrap()[..], b"after");
    let status = reqwest::get(&presigned_before.url).await.unwrap().status();
    assert_eq!(status.as_u16(), 403, "a URL of the removed key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_serve_rotates_its_signing_secret_file_and_honours_urls_signed_before() {
    let root = tempfile::tempdir().unwrap();
    let dir = secrets_dir(root.path());
    let file = dir.join("signing_secret");
    let old = format!("old-signing-secret-{:032x}", rand::random::<u128>());
    let new = format!("new-signing-secret-{:032x}", rand::random::<u128>());
    write_secret(&file, &old);
    let file_setting = file.display().to_string();
    let serve = Serve::start(
        root.path(),
        &[
            ("MASKSTORE_LOG", "info"),
            ("APP_OBJECT_STORAGE__PROVIDER", "memory"),
            ("APP_GATEWAY__SIGNING_SECRET_FILE", file_setting.as_str()),
        ],
    );
    let base = serve.base.clone();
    // The issuer of URLs (the application) signs with whichever secret it last read.
    let issuer = Arc::new(std::sync::Mutex::new(old.clone()));
    let sign = {
        let base = base.clone();
        move |secret: &str, method: SignedMethod, key: &str| {
            GatewaySigner::new(&base, Secret::new(secret), None).sign(
                method,
                &ObjectKey::parse(key).unwrap(),
                chrono::Utc::now().timestamp() + 600,
                &SignOptions::default(),
            )
        }
    };
    let http = reqwest::Client::new();
    let put = http
        .put(sign(&old, SignedMethod::Put, "mask/r/before.png"))
        .body("before")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let signed_before = sign(&old, SignedMethod::Get, "mask/r/before.png");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let loop_ = {
        let (stop, tally, issuer, sign, http) = (
            stop.clone(),
            tally.clone(),
            issuer.clone(),
            sign.clone(),
            http.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let secret = issuer.lock().unwrap().clone();
                let key = format!("mask/r/{}.png", i % 20);
                let body = format!("object {i}");
                let put = http
                    .put(sign(&secret, SignedMethod::Put, &key))
                    .body(body.clone())
                    .send()
                    .await;
                let worked = match put {
                    Ok(r) if r.status().is_success() => {
                        let got = http
                            .get(sign(&secret, SignedMethod::Get, &key))
                            .send()
                            .await;
                        match got {
                            Ok(r) if r.status().is_success() => r.text().await.unwrap() == body,
                            other => {
                                eprintln!("get {i}: {:?}", other.map(|r| r.status()));
                                false
                            }
                        }
                    }
                    other => {
                        eprintln!("put {i}: {:?}", other.map(|r| r.status()));
                        false
                    }
                };
                let counter = if worked { &tally.ok } else { &tally.failed };
                counter.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_rotation = tally.ok.load(Ordering::SeqCst);
    write_secret(&file, &new);
    // The issuer reads the new secret at once; the gateway takes it on the first URL it
    // cannot verify with the old one.
    *issuer.lock().unwrap() = new.clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    loop_.await.unwrap();
    let (ok, failed) = (
        tally.ok.load(Ordering::SeqCst),
        tally.failed.load(Ordering::SeqCst),
    );
    eprintln!(
        "gateway rotation: {ok} put+get rounds ok ({before_rotation} before it), {failed} failed"
    );

    let before = http.get(&signed_before).send().await.unwrap();
    let before_status = before.status().as_u16();
    let before_text = before.text().await.unwrap();
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let logged = serve.stop();
    assert_eq!(failed, 0, "{ok} worked; {logged}");
    assert!(
        ok > before_rotation + 10,
        "{ok} rounds, {before_rotation} before"
    );
    assert_eq!(
        (before_status, before_text.as_str()),
        (200, "before"),
        "a URL signed before the rotation"
    );
    assert!(logged.contains("secret rotated"), "{logged}");
    assert!(
        metrics.contains("maskstore_secret_rotations_total{secret=\"gateway_signing_secret\"} 1"),
        "{metrics}"
    );
    assert!(!logged.contains(&new) && !logged.contains(&old), "{logged}");
}

/// Puts until one succeeds (the rotated key taken), at most `within`.
async fn until_a_put_works(storage: &Storage, key: &ObjectKey, within: Duration) {
    let deadline = Instant::now() + within;
    while storage.put(key, b"x".to_vec()).await.is_err() {
        assert!(Instant::now() < deadline, "the new key was never taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_azure_storage_takes_its_rewritten_account_key_file_without_a_restart() {
    let Some(server) = maskstore_testkit::servers::azurite() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let key_file = secrets_dir(root.path()).join("account_key");
    // A valid base64 key the account does not have: Azurite, like Azure, answers 403.
    let wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==";
    write_secret(&key_file, wrong);
    let mut config = server.config_with_key(wrong);
    config.object_storage.account_key_file = Some(key_file.clone());
    let storage = Storage::connect(&config).unwrap();
    let key = storage.key("rotation/azure.png").unwrap();
    assert!(
        storage.put(&key, b"x".to_vec()).await.is_err(),
        "the wrong key is refused"
    );
    let url_of_wrong = storage
        .signed_url(SignedMethod::Get, &key, Some(600), &SignOptions::default())
        .await
        .unwrap()
        .url;

    write_secret(&key_file, server.account_key.expose());
    until_a_put_works(&storage, &key, Duration::from_secs(10)).await;
    // From then on no request fails, the SAS URLs included.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let loop_ = tokio::spawn(traffic(storage.clone(), stop.clone(), tally.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    loop_.await.unwrap();
    let (ok, failed) = (
        tally.ok.load(Ordering::SeqCst),
        tally.failed.load(Ordering::SeqCst),
    );
    eprintln!("azure rotation: {ok} put+get rounds ok after it, {failed} failed");
    assert_eq!(failed, 0, "{ok} worked");
    assert!(ok > 0);
    storage.put(&key, b"after".to_vec()).await.unwrap();
    let url = storage
        .signed_url(SignedMethod::Get, &key, Some(600), &SignOptions::default())
        .await
        .unwrap()
        .url;
    let answer = reqwest::get(&url).await.unwrap();
    assert_eq!(answer.status().as_u16(), 200, "a SAS URL of the new key");
    assert_eq!(&answer.bytes().await.unwrap()[..], b"after");
    let status = reqwest::get(&url_of_wrong).await.unwrap().status();
    assert_eq!(status.as_u16(), 403, "a SAS URL of the wrong key");

    // And back: the file is the key, whichever way it changes.
    write_secret(&key_file, wrong);
    let deadline = Instant::now() + Duration::from_secs(10);
    while storage.put(&key, b"x".to_vec()).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the rewritten file was never read"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A service account key of a fresh RSA key for `email`.
fn gcs_account(email: &str) -> String {
    maskstore_testkit::gcs_service_account_key(email, "rotation-test")
}

/// The service account a signed URL and a form policy of `storage` name.
async fn gcs_signers(storage: &Storage, key: &ObjectKey) -> (String, String) {
    let url = storage
        .signed_url(SignedMethod::Get, key, Some(600), &SignOptions::default())
        .await
        .unwrap()
        .url;
    let url = reqwest::Url::parse(&url).unwrap();
    let (_, credential) = url
        .query_pairs()
        .find(|(n, _)| n == "X-Goog-Credential")
        .unwrap();
    let target = maskstore_backends::PostTarget::Key(key.clone());
    let options = maskstore_backends::PostOptions::default();
    let post = storage.signed_post(&target, None, &options).await.unwrap();
    let (_, form) = post
        .fields
        .iter()
        .find(|(n, _)| n == "x-goog-credential")
        .unwrap();
    let email = |credential: &str| credential.split_once('/').unwrap().0.to_string();
    (email(&credential), email(form))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_gcs_storage_signs_with_its_rewritten_service_account_key_file() {
    let Some(server) = maskstore_testkit::servers::fake_gcs() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let key_file = secrets_dir(root.path()).join("service_account.json");
    let a = std::fs::read_to_string(&server.service_account_file).unwrap();
    let b_email = "maskstore-rotated@maskstore-test.iam.gserviceaccount.com";
    let b = gcs_account(b_email);
    write_secret(&key_file, &a);
    let mut config = server.config();
    config.object_storage.service_account_key_file = Some(key_file.clone());
    let storage = Storage::connect(&config).unwrap();
    let key = storage.key("rotation/gcs.png").unwrap();
    let a_email = "maskstore-test@maskstore-test.iam.gserviceaccount.com";
    let both = |email: &str| (email.to_string(), email.to_string());
    assert_eq!(gcs_signers(&storage, &key).await, both(a_email));

    // fake-gcs-server checks no token, so what shows the switch is the signers' e-mail;
    // what the traffic shows is that no request fails while the key is swapped.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let loop_ = tokio::spawn(traffic(storage.clone(), stop.clone(), tally.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_secret(&key_file, &b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gcs_signers(&storage, &key).await != both(b_email) {
        assert!(Instant::now() < deadline, "key B was never taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A file that is not a key, is open to the group, or is gone: B stays.
    for (text, mode) in [("{\"client_email\": \"x@y\",", 0o600), (a.as_str(), 0o640)] {
        write_secret(&key_file, text);
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).unwrap();
        tokio::time::sleep(SETTLE_AND_SOME).await;
        assert_eq!(gcs_signers(&storage, &key).await, both(b_email), "{mode:o}");
    }
    std::fs::remove_file(&key_file).unwrap();
    tokio::time::sleep(SETTLE_AND_SOME).await;
    assert_eq!(gcs_signers(&storage, &key).await, both(b_email), "removed");
    stop.store(true, Ordering::SeqCst);
    loop_.await.unwrap();
    let (ok, failed) = (
        tally.ok.load(Ordering::SeqCst),
        tally.failed.load(Ordering::SeqCst),
    );
    eprintln!("gcs rotation: {ok} put+get rounds ok across it, {failed} failed");
    assert_eq!(failed, 0, "{ok} worked");
    assert!(ok > 0);
}

/// Past the one-second settle time of secret files, with a poll or two to spare.
const SETTLE_AND_SOME: Duration = Duration::from_millis(2500);
