//! Corruption end to end: one byte flipped in a stored object is caught by `get`,
//! `get_stream`, `read_to_file`, the CLI, the gateway and `verify`; nothing corrupt is left.

use crate::support::flip_one_byte;
use futures::StreamExt;
use maskstore::{Config, Error, SignOptions, SignedMethod, Storage};
use maskstore_testkit as fixtures;

use crate::support::{maskstore, succeeded, text, vars};

fn assert_corrupt<T: std::fmt::Debug>(result: maskstore::Result<T>, key: &str) {
    match result {
        Err(Error::Corrupt { key: k, .. }) => assert_eq!(k, key),
        other => panic!("expected Corrupt for {key}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_flipped_byte_on_local_disk_fails_every_whole_read_and_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let served = fixtures::served(Config::local(dir.path().join("data"))).await;
    let key = served.key("1.2/3.4/liver.png").unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    served.put(&key, body.clone()).await.unwrap();
    assert!(served.head(&key).await.unwrap().checksum.is_some());
    flip_one_byte(&dir.path().join("data").join(key.as_str()));

    assert_corrupt(served.get(&key).await, key.as_str());
    // A stream yields the chunks before, then the error instead of its last chunk.
    let mut stream = served.get_stream(&key).await.unwrap().stream;
    let mut last = None;
    while let Some(item) = stream.next().await {
        last = Some(item);
    }
    assert_corrupt(last.unwrap(), key.as_str());
    let file = tempfile::tempfile().unwrap();
    assert_corrupt(
        served.read_to_file(&key, &file, |_, _| {}).await,
        key.as_str(),
    );
    // A range read is not verifiable and still works.
    let part = served.get_range(&key, 0..10).await.unwrap();
    assert_eq!(part.data, body[0..10]);
    // Forensics: without verification the damaged bytes come back.
    let raw = served.without_verification().get(&key).await.unwrap();
    assert_eq!(raw.data.len(), body.len());
    assert_ne!(raw.data, body);

    // The gateway never serves it as good: a small object is a 500; a larger one, whose
    // 200 went out before its last chunk, is cut off short of its length.
    let small = served.key("1.2/3.4/small.png").unwrap();
    served.put(&small, vec![7u8; 1000]).await.unwrap();
    flip_one_byte(&dir.path().join("data").join(small.as_str()));
    let url = served
        .signed_url(SignedMethod::Get, &small, None, &SignOptions::default())
        .await
        .unwrap();
    let answer = reqwest::get(&url.url).await.unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::INTERNAL_SERVER_ERROR);
    let url = served
        .signed_url(SignedMethod::Get, &key, None, &SignOptions::default())
        .await
        .unwrap();
    match reqwest::get(&url.url).await {
        Err(_) => {}
        Ok(answer) => {
            let status = answer.status();
            let read = answer.bytes().await;
            assert!(
                status.is_server_error() || read.is_err(),
                "status {status}, whole body read: {}",
                read.is_ok()
            );
        }
    }
}

#[test]
fn the_cli_get_leaves_no_corrupt_file_and_verify_reports_exactly_that_key() {
    let dir = tempfile::tempdir().unwrap();
    let env = vars(&[]);
    let good: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(dir.path().join("good.png"), &good).unwrap();
    for key in ["mask/a/good.png", "mask/a/bad.png"] {
        let out = maskstore(dir.path(), &["put", "good.png", key], &env);
        succeeded(&out);
    }
    // One written without a checksum: unverified, not corrupt.
    let none = vars(&[("APP_OBJECT_STORAGE__CHECKSUM", "none")]);
    let out = maskstore(dir.path(), &["put", "good.png", "mask/b/plain.png"], &none);
    succeeded(&out);
    flip_one_byte(&dir.path().join("data/mask/a/bad.png"));

    let out = maskstore(dir.path(), &["get", "mask/a/bad.png", "out.png"], &env);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("mask/a/bad.png") && stderr.contains("corrupt"),
        "{stderr}"
    );
    assert!(
        stderr.contains("nothing was written to out.png"),
        "{stderr}"
    );
    assert!(!dir.path().join("out.png").exists());
    // Nor is a temporary file left in the folder.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.contains("out.png")), "{names:?}");
    // An existing file at the target is left as it was.
    std::fs::write(dir.path().join("keep.png"), b"old").unwrap();
    let out = maskstore(dir.path(), &["get", "mask/a/bad.png", "keep.png"], &env);
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(std::fs::read(dir.path().join("keep.png")).unwrap(), b"old");

    let out = maskstore(
        dir.path(),
        &["get", "--no-verify", "mask/a/bad.png", "raw.png"],
        &env,
    );
    succeeded(&out);
    assert!(
        text(&out.stderr).contains("--no-verify"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.path().join("raw.png")).unwrap().len(),
        good.len()
    );

    let out = maskstore(dir.path(), &["get", "mask/b/plain.png", "plain.png"], &env);
    succeeded(&out);
    assert!(
        text(&out.stderr).contains("not verified"),
        "{}",
        text(&out.stderr)
    );

    let out = maskstore(dir.path(), &["verify"], &env);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(6), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("corrupt     mask/a/bad.png"), "{stdout}");
    assert!(stdout.contains("unverified  mask/b/plain.png"), "{stdout}");
    assert!(
        stdout.contains("1 verified, 1 unverified (no checksum), 1 corrupt"),
        "{stdout}"
    );

    let out = maskstore(
        dir.path(),
        &["--json", "verify", "--concurrency", "2"],
        &env,
    );
    assert_eq!(out.status.code(), Some(6));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["corrupt"], serde_json::json!(["mask/a/bad.png"]));
    assert_eq!(
        report["unverified"],
        serde_json::json!(["mask/b/plain.png"])
    );
    assert_eq!(report["verified"], 1);

    // Scoped to a prefix without the damaged object: clean, exit 0.
    let out = maskstore(dir.path(), &["verify", "--prefix", "mask/b/"], &env);
    succeeded(&out);
    // Hostile operator input: a concurrency of 0 and a prefix outside the store.
    let out = maskstore(dir.path(), &["verify", "--concurrency", "0"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = maskstore(dir.path(), &["verify", "--prefix", "other/"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[tokio::test]
async fn an_unknown_checksum_setting_is_refused_naming_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["check"],
        &vars(&[("APP_OBJECT_STORAGE__CHECKSUM", "md5")]),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("sha256, crc64nvme, none"), "{stderr}");
    let _ = Storage::memory();
}

/// On SeaweedFS: the object's bytes overwritten through raw object_store with one byte
/// flipped, its metadata (the stored checksum) kept. Every whole read, the CLI and
/// `verify` report exactly that key; nothing corrupt is left by `get`.
#[tokio::test]
async fn a_flipped_byte_on_seaweedfs_fails_reads_the_cli_and_verify() {
    use object_store::ObjectStoreExt;
    let Some(server) = maskstore_testkit::servers::seaweedfs() else {
        return;
    };
    let config = server.config();
    let prefix = config.object_storage.prefix.as_str().to_string();
    let storage = Storage::connect(&config).unwrap();
    let key = storage.key("1.2/bad.png").unwrap();
    let good = storage.key("1.2/good.png").unwrap();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 239) as u8).collect();
    storage.put(&key, body.clone()).await.unwrap();
    storage.put(&good, body.clone()).await.unwrap();

    // Raw, without maskstore: same attributes, damaged bytes.
    let raw = Storage::connect(
        &config
            .clone()
            .with_checksum(maskstore::ChecksumAlgorithm::None),
    )
    .unwrap();
    let path = object_store::path::Path::parse(key.as_str()).unwrap();
    let stored = raw.object_store().get(&path).await.unwrap();
    let attributes = stored.attributes.clone();
    let mut damaged = stored.bytes().await.unwrap().to_vec();
    damaged[50_000] ^= 0x01;
    let opts = object_store::PutOptions {
        attributes,
        ..Default::default()
    };
    raw.object_store()
        .put_opts(&path, damaged.into(), opts)
        .await
        .unwrap();

    assert_corrupt(storage.get(&key).await, key.as_str());
    let file = tempfile::tempfile().unwrap();
    assert_corrupt(
        storage.read_to_file(&key, &file, |_, _| {}).await,
        key.as_str(),
    );
    assert_eq!(storage.get(&good).await.unwrap().data, body);

    let dir = tempfile::tempdir().unwrap();
    let env = server.app_env();
    let out = maskstore(dir.path(), &["get", key.as_str(), "out.png"], &env);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(!dir.path().join("out.png").exists());
    let out = maskstore(dir.path(), &["--json", "verify", "--prefix", &prefix], &env);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["corrupt"], serde_json::json!([key.as_str()]));
    assert_eq!(report["verified"], 1);
    storage.delete_many(&[key, good]).await.unwrap();
}

/// A listing error part way (a symlink under the local root, listed before the objects)
/// is reported beside what `verify` found, not in its place: the corrupt key is still
/// named and the exit code is still 6.
#[test]
fn verify_reports_a_corrupt_key_beside_a_listing_error() {
    let dir = tempfile::tempdir().unwrap();
    let env = vars(&[]);
    std::fs::write(dir.path().join("good.png"), vec![7u8; 50_000]).unwrap();
    for key in ["mask/a/bad.png", "mask/c/good.png"] {
        let out = maskstore(dir.path(), &["put", "good.png", key], &env);
        succeeded(&out);
    }
    flip_one_byte(&dir.path().join("data/mask/a/bad.png"));
    std::os::unix::fs::symlink("/etc", dir.path().join("data/mask/0link")).unwrap();

    let out = maskstore(dir.path(), &["verify"], &env);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(6), "{stdout}{stderr}");
    assert!(stdout.contains("corrupt     mask/a/bad.png"), "{stdout}");
    assert!(
        stdout.contains("unlisted") && stdout.contains("0link"),
        "{stdout}"
    );
    assert!(stdout.contains("1 verified"), "{stdout}");
}
