//! A presigned PUT bound to the SHA-256 of its body: the gateway hashes the body as it
//! streams and aborts the upload on a mismatch; S3 verifies the signed
//! `x-amz-checksum-sha256`. The altered body is refused and the key keeps what it held.

use bytes::Bytes;
use maskstore::{ContentSha256, Error, ObjectKey, SignOptions, SignedMethod, Storage};
use maskstore_testkit::servers;

use crate::support::{maskstore, succeeded, text};

fn bound(body: &[u8]) -> SignOptions {
    SignOptions {
        content_type: None,
        content_length: None,
        sha256: Some(ContentSha256::of(body)),
    }
}

/// A body of `len` bytes and the same with its middle byte changed.
fn body_and_altered(len: usize) -> (Vec<u8>, Vec<u8>) {
    let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut altered = body.clone();
    altered[len / 2] ^= 1;
    (body, altered)
}

async fn signed(storage: &Storage, key: &ObjectKey, options: &SignOptions) -> maskstore::SignedUrl {
    storage
        .signed_url(SignedMethod::Put, key, Some(300), options)
        .await
        .unwrap()
}

/// On a gateway store: the altered body (small, and over one 1 MiB part so the upload is
/// streamed as parts) gets 400 naming the SHA-256 and the key keeps its old bytes; the
/// parameter tampered with or removed gets 403; the right body is stored, and reads back
/// verified.
async fn gateway_refuses_an_altered_body(storage: &Storage) {
    let http = reqwest::Client::new();
    for len in [10, 3 * 1024 * 1024 + 5] {
        let key = storage.key(&format!("bound/sha-{len}.bin")).unwrap();
        storage.put(&key, Bytes::from_static(b"old")).await.unwrap();
        let (body, altered) = body_and_altered(len);
        let url = signed(storage, &key, &bound(&body)).await.url;
        assert!(url.contains(&format!(
            "x-maskstore-sha256={}",
            ContentSha256::of(&body).hex()
        )));

        let refused = http.put(&url).body(altered.clone()).send().await.unwrap();
        assert_eq!(refused.status().as_u16(), 400, "{len} bytes, one altered");
        let message = refused.text().await.unwrap();
        assert!(message.contains("SHA-256"), "{message}");
        assert!(message.contains("nothing was stored"), "{message}");
        assert_eq!(
            storage.get(&key).await.unwrap().data,
            "old",
            "the key keeps what it held"
        );

        // The bound value changed to the altered body's: the signature no longer matches.
        let forged = url.replace(
            &ContentSha256::of(&body).hex(),
            &ContentSha256::of(&altered).hex(),
        );
        let answer = http
            .put(&forged)
            .body(altered.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 403, "tampered sha256 parameter");
        // The parameter removed: the signature no longer matches either.
        let (before, after) = url.split_once("&x-maskstore-sha256=").unwrap();
        let stripped = format!("{before}{}", &after[64..]);
        let answer = http
            .put(&stripped)
            .body(altered.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 403, "sha256 parameter removed");
        assert_eq!(storage.get(&key).await.unwrap().data, "old");

        let stored = http.put(&url).body(body.clone()).send().await.unwrap();
        assert!(stored.status().is_success(), "{}", stored.status());
        assert_eq!(storage.get(&key).await.unwrap().data, body);
    }
}

#[tokio::test]
async fn a_put_url_bound_to_a_sha256_refuses_an_altered_body_in_memory() {
    let storage = maskstore_testkit::memory_served().await;
    gateway_refuses_an_altered_body(&storage).await;
}

/// A conditional PUT reads the body whole and stores it with one put, which on the memory
/// provider leaves the stored checksum owed: the bound SHA-256 is still checked before
/// anything is written, and what is stored reads back with its checksum computed.
#[tokio::test]
async fn a_conditional_put_bound_to_a_sha256_refuses_an_altered_body_in_memory() {
    let storage = maskstore_testkit::memory_served().await;
    let http = reqwest::Client::new();
    let key = storage.key("bound/conditional.bin").unwrap();
    storage.put(&key, Bytes::from_static(b"old")).await.unwrap();
    let etag = storage.head(&key).await.unwrap().etag.unwrap();
    let (body, altered) = body_and_altered(5000);
    let url = signed(&storage, &key, &bound(&body)).await.url;
    let refused = http
        .put(&url)
        .header("If-Match", &etag)
        .body(altered)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let message = refused.text().await.unwrap();
    assert!(message.contains("SHA-256"), "{message}");
    assert_eq!(storage.get(&key).await.unwrap().data, "old");
    let stored = http
        .put(&url)
        .header("If-Match", &etag)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert!(stored.status().is_success(), "{}", stored.status());
    let want = maskstore::checksum_of(storage.checksum_algorithm(), &body);
    assert!(want.is_some());
    assert_eq!(storage.head(&key).await.unwrap().checksum, want);
    let got = storage.get(&key).await.unwrap();
    assert_eq!((got.data, got.info.checksum), (Bytes::from(body), want));
}

#[tokio::test]
async fn a_put_url_bound_to_a_sha256_refuses_an_altered_body_on_local_disk() {
    let storage = maskstore_testkit::temp_dir_served().await;
    gateway_refuses_an_altered_body(&storage).await;
}

#[tokio::test]
async fn a_sha256_is_bound_only_by_a_put_url() {
    let storage = maskstore_testkit::memory_served().await;
    let key = storage.key("bound/get.bin").unwrap();
    for method in [SignedMethod::Get, SignedMethod::Head, SignedMethod::Delete] {
        match storage.signed_url(method, &key, None, &bound(b"x")).await {
            Err(Error::InvalidMetadata { name, reason }) => {
                assert_eq!(name, "sha256");
                assert!(reason.contains("sign put"), "{reason}");
            }
            other => panic!("{method}: expected InvalidMetadata, got {other:?}"),
        }
    }
}

/// Sends `head` then `body` on a fresh connection to the gateway of `url`, with `cut` closes
/// the sending side (a body cut short), and returns the status (0 when the gateway
/// answered nothing).
async fn raw_put(url: &str, head: &str, body: &[u8], cut: bool) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, target) = rest.split_at(rest.find('/').unwrap());
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    let request =
        format!("PUT {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{head}\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    conn.write_all(body).await.unwrap();
    if cut {
        conn.shutdown().await.unwrap();
    }
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// `data` as one HTTP/1.1 chunk and the last chunk.
fn chunked(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out
}

/// On local disk, the binding holds whatever the framing or spelling: a chunked body that
/// is altered, a body cut short of its Content-Length, the digest in uppercase or base64,
/// the parameter twice: each is refused, the key keeps what it held and no temporary file
/// is left under the root. The right body, chunked, is stored.
#[tokio::test]
async fn a_bound_sha256_holds_for_chunked_short_and_respelled_requests_on_local_disk() {
    let storage = maskstore_testkit::temp_dir_served().await;
    let root = storage.root().unwrap();
    let key = storage.key("bound/framed.bin").unwrap();
    storage.put(&key, Bytes::from_static(b"old")).await.unwrap();
    let (body, altered) = body_and_altered(100_000);
    let digest = ContentSha256::of(&body);
    let url = signed(&storage, &key, &bound(&body)).await.url;
    let http = reqwest::Client::new();

    let status = raw_put(
        &url,
        "Transfer-Encoding: chunked\r\n",
        &chunked(&altered),
        false,
    )
    .await;
    assert_eq!(status, 400, "an altered chunked body");
    let length = format!("Content-Length: {}\r\n", body.len());
    let status = raw_put(&url, &length, &body[..body.len() / 2], true).await;
    assert!(status == 400 || status == 0, "a body cut short: {status}");
    // What an S3 client would send: base64 in place of hex; or the hex in uppercase.
    let hex = digest.hex();
    for (respelled, what) in [
        (url.replace(&hex, &hex.to_uppercase()), "uppercase hex"),
        (
            url.replace(&hex, &digest.base64().replace('=', "%3D")),
            "base64",
        ),
        (
            url.replace(
                &format!("x-maskstore-sha256={hex}"),
                &format!("x-maskstore-sha256={hex}&x-maskstore-sha256={hex}"),
            ),
            "the parameter twice",
        ),
    ] {
        let answer = http
            .put(&respelled)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        assert!(status == 400 || status == 403, "{what}: {status}");
    }
    assert_eq!(storage.get(&key).await.unwrap().data, "old");
    let leftovers: Vec<_> = std::fs::read_dir(root.join(".maskstore/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let status = raw_put(
        &url,
        "Transfer-Encoding: chunked\r\n",
        &chunked(&body),
        false,
    )
    .await;
    assert_eq!(status, 200, "the right body, chunked");
    let read = storage.get(&key).await.unwrap();
    assert_eq!(read.data, body);
    assert_eq!(
        read.info.checksum,
        maskstore::maskstore_backends::checksum_of(storage.checksum_algorithm(), &body)
    );
}

/// S3 (SeaweedFS, moto): the URL signs `x-amz-checksum-sha256` and the maskstore checksum
/// metadata; sent as issued with the right body, the object reads back verified; the body
/// altered by one byte is refused by the engine (S3 documents 400 BadDigest); either
/// header missing or changed is refused (403, a signed header).
async fn s3_refuses_an_altered_body(server: &servers::S3Server) {
    let storage = server.storage();
    let http = reqwest::Client::new();
    let key = storage.key("bound/s3-sha.bin").unwrap();
    storage.put(&key, Bytes::from_static(b"old")).await.unwrap();
    let (body, altered) = body_and_altered(100_000);
    let url = signed(&storage, &key, &bound(&body)).await;
    assert!(url.url.contains("x-amz-checksum-sha256"), "{}", url.url);
    let headers: Vec<(String, String)> = url.headers.clone();
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "x-amz-checksum-sha256" && *v == ContentSha256::of(&body).base64()),
        "{headers:?}"
    );
    let put = |data: Vec<u8>, headers: Vec<(String, String)>| {
        let mut request = http.put(&url.url).body(data);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };

    let answer = put(altered.clone(), headers.clone()).await.unwrap();
    let status = answer.status().as_u16();
    let message = answer.text().await.unwrap();
    if !server.verifies_signatures {
        // moto checks neither signatures nor the checksum of a presigned PUT: it stores the
        // altered body (200). The signed maskstore checksum travels with it, so every whole
        // read reports the object corrupt instead of serving it.
        assert_eq!(status, 200, "{}: moto stores it: {message}", server.name);
        match storage.get(&key).await {
            Err(Error::Corrupt { key: named, .. }) => assert_eq!(named, key.as_str()),
            other => panic!("{}: expected Corrupt, got {other:?}", server.name),
        }
        return;
    }
    // SeaweedFS verifies the header, as S3 documents (400 BadDigest).
    eprintln!("{}: an altered body is answered {status}", server.name);
    assert!(
        (400..500).contains(&status),
        "{}: an altered body is refused: {status} {message}",
        server.name
    );
    assert_eq!(
        storage.get(&key).await.unwrap().data,
        "old",
        "{}",
        server.name
    );

    for dropped in ["x-amz-checksum-sha256", "x-amz-meta-maskstore-checksum"] {
        let without: Vec<_> = headers
            .iter()
            .filter(|(n, _)| n != dropped)
            .cloned()
            .collect();
        let answer = put(body.clone(), without).await.unwrap();
        assert_eq!(
            answer.status().as_u16(),
            403,
            "{}: {dropped} missing",
            server.name
        );
    }
    let forged: Vec<_> = headers
        .iter()
        .map(|(n, v)| match n.as_str() {
            "x-amz-checksum-sha256" => (n.clone(), ContentSha256::of(&altered).base64()),
            _ => (n.clone(), v.clone()),
        })
        .collect();
    let answer = put(altered.clone(), forged).await.unwrap();
    assert_eq!(
        answer.status().as_u16(),
        403,
        "{}: checksum header changed",
        server.name
    );
    assert_eq!(storage.get(&key).await.unwrap().data, "old");

    let answer = put(body.clone(), headers).await.unwrap();
    let status = answer.status();
    assert!(
        status.is_success(),
        "{}: {status} {}",
        server.name,
        answer.text().await.unwrap()
    );
    let got = storage.get(&key).await.unwrap();
    assert_eq!(got.data, body);
    assert_eq!(
        got.info.checksum.as_deref(),
        Some(ContentSha256::of(&body).stored().as_str()),
        "{}: the browser-uploaded object carries a maskstore checksum, verified on read",
        server.name
    );
}

#[tokio::test]
async fn a_put_url_bound_to_a_sha256_refuses_an_altered_body_on_seaweedfs() {
    if let Some(server) = servers::seaweedfs() {
        s3_refuses_an_altered_body(&server).await;
    }
}

#[tokio::test]
async fn a_put_url_bound_to_a_sha256_refuses_an_altered_body_on_moto() {
    if let Some(server) = servers::moto() {
        s3_refuses_an_altered_body(&server).await;
    }
}

#[test]
fn presign_binds_a_sha256_given_or_of_a_file_and_refuses_a_malformed_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mask.bin");
    std::fs::write(&file, b"mask bytes").unwrap();
    let hex = ContentSha256::of(b"mask bytes").hex();
    let base64 = ContentSha256::of(b"mask bytes").base64();
    for args in [
        vec!["--sha256-of", file.to_str().unwrap()],
        vec!["--sha256", hex.as_str()],
        vec!["--sha256", base64.as_str()],
    ] {
        let out = maskstore(
            dir.path(),
            &[&["presign", "put", "mask/a.bin"], args.as_slice()].concat(),
            &[],
        );
        succeeded(&out);
        assert!(
            text(&out.stdout).contains(&format!("x-maskstore-sha256={hex}")),
            "{args:?}"
        );
    }
    let out = maskstore(
        dir.path(),
        &["presign", "put", "mask/a.bin", "--sha256", "not-a-digest"],
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("64 hex digits"), "{stderr}");
    assert!(out.stdout.is_empty());
    let missing = dir.path().join("missing.bin");
    let out = maskstore(
        dir.path(),
        &[
            "presign",
            "put",
            "mask/a.bin",
            "--sha256-of",
            missing.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--sha256-of"), "{stderr}");
    // A length bound beside the file's SHA-256 must be the file's: else no upload fits.
    let of_file = ["presign", "put", "mask/a.bin", "--sha256-of"];
    let path = file.to_str().unwrap();
    let out = maskstore(
        dir.path(),
        &[&of_file[..], &[path, "--content-length", "11"]].concat(),
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("has 10 bytes"), "{stderr}");
    assert!(out.stdout.is_empty());
    let out = maskstore(
        dir.path(),
        &[&of_file[..], &[path, "--content-length", "10"]].concat(),
        &[],
    );
    succeeded(&out);
}

/// curl reading objects a memory put left their checksum owed through the gateway: whole
/// and a range each answer the bytes put, verified, and no header carries the marker. (curl runs blocking: the gateway serves it from another worker.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reads_owed_memory_objects_through_the_gateway_whole_and_ranged() {
    let storage = maskstore_testkit::memory_served().await;
    for len in [4096usize, 1024 * 1024 + 3] {
        let key = storage.key(&format!("owed/curl-{len}.bin")).unwrap();
        let (body, _) = body_and_altered(len);
        storage.put(&key, body.clone()).await.unwrap();
        let url = storage
            .signed_url(SignedMethod::Get, &key, Some(300), &SignOptions::default())
            .await
            .unwrap()
            .url;
        let curl = |args: &[&str]| {
            let out = std::process::Command::new("curl")
                .args(["-sS", "-D", "/dev/stderr", "-o", "-"])
                .args(args)
                .arg(&url)
                .output()
                .expect("curl runs (CI installs it)");
            succeeded(&out);
            let headers = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!headers.contains("owed"), "{headers}");
            (headers, out.stdout)
        };
        let (headers, got) = curl(&[]);
        assert!(headers.starts_with("HTTP/1.1 200"), "{headers}");
        assert_eq!(got, body, "{len}");
        let (headers, got) = curl(&["-H", "Range: bytes=100-199"]);
        assert!(headers.starts_with("HTTP/1.1 206"), "{headers}");
        assert_eq!(got, &body[100..200], "{len}");
        let info = storage.head(&key).await.unwrap();
        assert_eq!(
            info.checksum,
            maskstore::checksum_of(storage.checksum_algorithm(), &body)
        );
    }
}
