//! The gateway's verdicts on verified versions (issue 30): an object verified once is
//! served again without hashing it, and whatever changes it, through maskstore or behind
//! its back on local disk, is never served under the old verdict: a same-size rewrite in
//! place with the modification time set back (what `rsync --inplace --times` does, and
//! what leaves the etag as it was) and a flipped bit are caught like any damaged object
//! (500 before a byte for one read chunk, cut off for more; never whole, with or without
//! Range).

use std::path::Path;
use std::time::Duration;

use maskstore_backends::{SignedMethod, checksum_of};
use maskstore_core::ChecksumAlgorithm;

use crate::support::Serve;

const SECRET: &str = "gateway-verdicts-test-signing-secret-01234567";
const MIB: usize = 1024 * 1024;

fn serve_local(dir: &Path) -> Serve {
    let root = dir.join("data").display().to_string();
    Serve::start(
        dir,
        &[
            ("APP_OBJECT_STORAGE__PROVIDER", "local"),
            ("APP_OBJECT_STORAGE__ROOT", root.as_str()),
            ("APP_OBJECT_STORAGE__FSYNC", "false"),
            ("APP_GATEWAY__SIGNING_SECRET", SECRET),
        ],
    )
}

/// Status, promised length and the bytes received (`None`: the body was cut off).
async fn get(url: &str, range: Option<&str>) -> (u16, Option<u64>, Option<Vec<u8>>) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let promised = response.content_length();
    let body = response.bytes().await.ok().map(|b| b.to_vec());
    (status, promised, body)
}

async fn etag(url: &str) -> String {
    let response = reqwest::Client::new().head(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.headers()["etag"].to_str().unwrap().to_string()
}

/// Rewrites `path` in place: `change` applied to its bytes, the same size, the same inode,
/// and the modification time set back to what it was.
fn rewrite_in_place(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let before = file.metadata().unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    change(&mut bytes);
    file.write_all_at(&bytes, 0).unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
    let after = file.metadata().unwrap();
    assert_eq!(
        (after.len(), after.modified().unwrap()),
        (before.len(), before.modified().unwrap())
    );
}

fn body(size: usize, seed: u8) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_object_changed_behind_the_gateways_back_is_never_served_under_its_old_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path());
    let http = reqwest::Client::new();
    // (key, size, how it is changed): one read chunk and several; a bit flipped, and a
    // same-size rewrite of valid-looking bytes.
    type Change = fn(&mut Vec<u8>);
    let flip: Change = |b| {
        let middle = b.len() / 2;
        b[middle] ^= 0x01;
    };
    let rewrite: Change = |b| b.iter_mut().for_each(|x| *x = x.wrapping_add(1));
    let cases = [
        ("mask/verdict/small-flip.png", 1000, flip),
        ("mask/verdict/small-rewrite.png", 1000, rewrite),
        ("mask/verdict/large-flip.png", 3 * MIB, flip),
        ("mask/verdict/large-rewrite.png", 3 * MIB, rewrite),
    ];
    for (key, size, _) in cases {
        let response = http
            .put(serve.sign(SignedMethod::Put, key))
            .body(body(size, 0))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Only a file whose last change is a few seconds old gets a verdict kept.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for (key, size, change) in cases {
        let url = serve.sign(SignedMethod::Get, key);
        // Verified whole, then served under the kept verdict.
        for _ in 0..2 {
            assert_eq!(
                get(&url, None).await,
                (200, Some(size as u64), Some(body(size, 0)))
            );
        }
        let range = get(&url, Some("bytes=10-19")).await;
        assert_eq!(range.2.as_deref(), Some(&body(size, 0)[10..20]));
        let head = serve.sign(SignedMethod::Head, key);
        let before = etag(&head).await;
        rewrite_in_place(&serve.dir.join("data").join(key), change);
        assert_eq!(
            etag(&head).await,
            before,
            "the etag alone cannot tell this change"
        );
        for range in [
            None,
            Some("bytes=0-"),
            Some("bytes=0-99"),
            Some("bytes=-10"),
        ] {
            let (status, promised, received) = get(&url, range).await;
            let received_len = received.as_ref().map(|b| b.len() as u64);
            eprintln!(
                "{key} {range:?} after the change: {status}, {received_len:?} of {promised:?}"
            );
            let served_whole = matches!(status, 200 | 206) && received_len == promised;
            assert!(
                !served_whole,
                "{key} with range {range:?} was served under its old verdict ({status})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_object_changed_through_the_gateway_is_served_as_it_now_is() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path());
    let http = reqwest::Client::new();
    let key = "mask/verdict/replaced.png";
    let (put, get_url) = (
        serve.sign(SignedMethod::Put, key),
        serve.sign(SignedMethod::Get, key),
    );
    let size = 2 * MIB;
    let status = http
        .put(&put)
        .body(body(size, 0))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(get(&get_url, None).await.2, Some(body(size, 0)));
    for seed in 1..4u8 {
        let status = http
            .put(&put)
            .body(body(size, seed))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        assert_eq!(get(&get_url, None).await.2, Some(body(size, seed)));
        let (status, _, part) = get(&get_url, Some("bytes=5-9")).await;
        assert_eq!(
            (status, part.as_deref()),
            (206, Some(&body(size, seed)[5..10]))
        );
    }
    let deleted = http
        .delete(serve.sign(SignedMethod::Delete, key))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(get(&get_url, None).await.0, 404);
}

/// The status of a GET of `url` with one extra header.
async fn status_with(url: &str, name: &str, value: &str) -> u16 {
    let response = reqwest::Client::new()
        .get(url)
        .header(name, value)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conditional_get_of_a_corrupt_object_answers_the_same_with_or_without_a_kept_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path());
    let key = "mask/verdict/corrupt-conditional.png";
    let put = reqwest::Client::new()
        .put(serve.sign(SignedMethod::Put, key))
        .body(body(1000, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    rewrite_in_place(&serve.dir.join("data").join(key), |b| b[500] ^= 0x01);
    // Settled: the next plain GET keeps the corrupt verdict.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let url = serve.sign(SignedMethod::Get, key);
    let tag = etag(&serve.sign(SignedMethod::Head, key)).await;
    let asked = [
        ("if-none-match", tag.as_str(), 304),
        ("if-match", "\"another\"", 412),
    ];
    for (name, value, status) in asked {
        assert_eq!(status_with(&url, name, value).await, status, "{name} first");
    }
    assert_eq!(get(&url, None).await.0, 500, "the corrupt verdict is kept");
    // The conditions are judged first, as they were before the verdict was kept (and as
    // S3 judges them): a cache that has the right version hears 304, not 500.
    for (name, value, status) in asked {
        assert_eq!(
            status_with(&url, name, value).await,
            status,
            "{name} once the verdict is kept"
        );
    }
}

const RECORD: &str = "user.maskstore.attributes";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_written_by_another_maskstore_or_a_record_changed_is_verified_again() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path());
    let key = "mask/verdict/external.png";
    let file = serve.dir.join("data").join(key);
    let url = serve.sign(SignedMethod::Get, key);
    let put = reqwest::Client::new()
        .put(serve.sign(SignedMethod::Put, key))
        .body(body(1000, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for _ in 0..2 {
        assert_eq!(get(&url, None).await.2, Some(body(1000, 0)));
    }
    // `maskstore put` in a second process, on the same root, while serve runs: the
    // gateway hears nothing of it.
    let source = dir.path().join("v1.png");
    std::fs::write(&source, body(1000, 1)).unwrap();
    let root = dir.path().join("data").display().to_string();
    let env = crate::support::vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "local"),
        ("APP_OBJECT_STORAGE__ROOT", root.as_str()),
        ("APP_OBJECT_STORAGE__FSYNC", "false"),
    ]);
    let out = crate::support::maskstore(dir.path(), &["put", source.to_str().unwrap(), key], &env);
    crate::support::succeeded(&out);
    assert_eq!(
        get(&url, None).await,
        (200, Some(1000), Some(body(1000, 1)))
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for _ in 0..2 {
        assert_eq!(get(&url, None).await.2, Some(body(1000, 1)));
    }
    // The record changed behind its back, the bytes kept: the checksum of other bytes
    // (what a damaged or restored record holds). The version it was kept on is gone.
    // maskstore writes its records in a compact form and reads JSON ones too: a JSON
    // record holding the checksum of other bytes (the default crc64nvme) replaces it.
    let wrong = checksum_of(ChecksumAlgorithm::Crc64Nvme, &body(1000, 2)).unwrap();
    assert_ne!(
        checksum_of(ChecksumAlgorithm::Crc64Nvme, &body(1000, 1)).unwrap(),
        wrong
    );
    let record = serde_json::json!({ "metadata": { "maskstore-checksum": wrong } });
    xattr::set(&file, RECORD, &serde_json::to_vec(&record).unwrap()).unwrap();
    for wait in [0, 3500] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        for _ in 0..2 {
            let (status, ..) = get(&url, None).await;
            assert_eq!(status, 500, "served under a verdict on the old record");
            let (status, ..) = get(&url, Some("bytes=1-9")).await;
            assert_eq!(status, 500, "a range under a verdict on the old record");
        }
    }
}

/// Starts a GET of `url` and reads its first chunk; the rest is read by `rest`.
async fn first_chunk(url: &str) -> (reqwest::Response, Vec<u8>) {
    let mut response = reqwest::Client::new().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().expect("a first chunk");
    (response, first.to_vec())
}

/// The rest of `response` after `read`: `None` when it was cut off.
async fn rest(mut response: reqwest::Response, mut read: Vec<u8>) -> Option<Vec<u8>> {
    while let Some(chunk) = response.chunk().await.ok()? {
        read.extend_from_slice(&chunk);
    }
    Some(read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_download_under_a_verdict_outlives_a_replacement_but_not_a_rewrite_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path());
    let http = reqwest::Client::new();
    let key = "mask/verdict/replaced-while-read.png";
    let (put, url) = (
        serve.sign(SignedMethod::Put, key),
        serve.sign(SignedMethod::Get, key),
    );
    // Far more than the sockets buffer: the gateway reads the file as the client reads.
    let size = 32 * MIB;
    let status = http.put(&put).body(body(size, 0)).send().await.unwrap();
    assert_eq!(status.status(), 200);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(get(&url, None).await.2, Some(body(size, 0)), "verified");
    // Replaced through the gateway while a download of the verified version is under
    // way: the download still reads the version it opened, whole and intact, as a
    // verified read (or S3) would serve it.
    let (response, read) = first_chunk(&url).await;
    let status = http.put(&put).body(body(size, 1)).send().await.unwrap();
    assert_eq!(status.status(), 200);
    let served = rest(response, read).await;
    assert!(
        served.as_deref() == Some(&body(size, 0)[..]),
        "the old version was cut off at {:?} of {size} bytes",
        served.map(|b| b.len())
    );
    assert_eq!(get(&url, None).await.2, Some(body(size, 1)));
    // Rewritten in place (same size, modification time set back) while a download of
    // the verified version is under way: never served whole.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(get(&url, None).await.2, Some(body(size, 1)), "verified");
    let (response, read) = first_chunk(&url).await;
    rewrite_in_place(&serve.dir.join("data").join(key), |b| b[size - 10] ^= 0x01);
    let served = rest(response, read).await;
    let changed = served
        .as_ref()
        .map(|b| (b.len(), b[size - 10] != body(size, 1)[size - 10]));
    eprintln!("served after a rewrite in place: {changed:?}");
    assert!(
        served.is_none_or(|b| b.len() != size),
        "a rewrite in place was served whole"
    );
}
