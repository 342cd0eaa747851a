//! Verified local objects sent with `sendfile` (issue 30): bodies of 64 KiB or more of a
//! version whose verdict is kept go from the page cache to the socket. Byte for byte what
//! the file holds, with real clients (reqwest, curl, raw HTTP/1.1 pipelining, HTTP/1.0):
//! whole objects, ranges (first byte, last byte, across the 1 MiB placeholder boundary),
//! objects larger than a placeholder, several requests on one connection, HEAD, 304 and
//! 412; and a file truncated while it is sent, or a client gone mid-body, never leaves a
//! body of the declared length nor a broken gateway behind; a file changed while it is
//! sent, whose whole-file check finds no room in its client's share of the download
//! memory, is cut off before its tail.

use std::path::Path;
use std::time::Duration;

use maskstore_backends::SignedMethod;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Serve, free_port};

const SECRET: &str = "gateway-sendfile-test-signing-secret-0123456";
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn serve_local(dir: &Path) -> Serve {
    let root = dir.join("data").display().to_string();
    let admin = format!("127.0.0.1:{}", free_port());
    Serve::start(
        dir,
        &[
            ("APP_OBJECT_STORAGE__PROVIDER", "local"),
            ("APP_OBJECT_STORAGE__ROOT", root.as_str()),
            ("APP_OBJECT_STORAGE__FSYNC", "false"),
            ("APP_GATEWAY__SIGNING_SECRET", SECRET),
            ("APP_GATEWAY__ADMIN_LISTEN", admin.as_str()),
        ],
    )
}

/// `size` bytes of a pattern that is not zeros (a placeholder sent as it is would show),
/// `seed` telling objects apart.
pub(crate) fn body(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| ((i * 7 + i / 251) % 253) as u8 ^ seed)
        .collect()
}

/// The bytes the gateway sent with `sendfile` so far, from `/metrics`.
pub(crate) async fn sent_with_sendfile(serve: &Serve) -> u64 {
    let url = format!("{}/metrics", serve.admin_base());
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("maskstore_gateway_sendfile_bytes_total "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Puts `objects`, waits until their files settled (a verdict is kept only then), and
/// reads each once whole so its verdict is kept.
async fn put_verified(serve: &Serve, objects: &[(&str, Vec<u8>)]) {
    let http = reqwest::Client::new();
    for (key, data) in objects {
        let url = serve.sign(SignedMethod::Put, key);
        let response = http.put(url).body(data.clone()).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for (key, data) in objects {
        let url = serve.sign(SignedMethod::Get, key);
        let got = http.get(url).send().await.unwrap().bytes().await.unwrap();
        assert!(got == data[..], "{key}: the verifying read");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verified_objects_are_served_byte_for_byte_whole_and_in_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path());
    let sizes = [0, 1, 64 * KIB - 1, 64 * KIB, MIB, MIB + 1, 3 * MIB + 17];
    let objects: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .map(|&size| (format!("mask/sendfile/{size}.bin"), body(size, size as u8)))
        .collect();
    let named: Vec<(&str, Vec<u8>)> = objects
        .iter()
        .map(|(k, d)| (k.as_str(), d.clone()))
        .collect();
    put_verified(&serve, &named).await;
    let before = sent_with_sendfile(&serve).await;
    // One client: its requests share a connection (keep-alive).
    let http = reqwest::Client::new();
    let mut large = 0;
    for (key, data) in &objects {
        let size = data.len();
        let url = serve.sign(SignedMethod::Get, key);
        for _ in 0..2 {
            let response = http.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{key}");
            assert_eq!(response.content_length(), Some(size as u64));
            let got = response.bytes().await.unwrap();
            assert!(got == data[..], "{key}: whole, {} bytes back", got.len());
            large += if size >= 64 * KIB { size } else { 0 };
        }
        if size == 0 {
            continue;
        }
        let last = size - 1;
        let mut ranges = vec![
            (format!("bytes=0-{last}"), 0..size),
            ("bytes=0-0".to_string(), 0..1),
            ("bytes=-1".to_string(), last..size),
            (format!("bytes={last}-"), last..size),
            (format!("bytes={}-", size / 3), size / 3..size),
        ];
        if size > MIB + 10 {
            ranges.push((format!("bytes=1000-{}", MIB + 9), 1000..MIB + 10));
        }
        for (range, expected) in ranges {
            let response = http.get(&url).header("range", &range).send().await.unwrap();
            let status = response.status().as_u16();
            assert!(matches!(status, 200 | 206), "{key} {range}: {status}");
            let got = response.bytes().await.unwrap();
            assert!(got == data[expected.clone()], "{key} {range}");
        }
        // HEAD: the length, no body; on the same connection, the next answer is intact.
        let head = serve.sign(SignedMethod::Head, key);
        let response = http.head(&head).send().await.unwrap();
        let length = response.headers()["content-length"].to_str().unwrap();
        assert_eq!(length, size.to_string());
        let etag = response.headers()["etag"].to_str().unwrap().to_string();
        assert!(response.bytes().await.unwrap().is_empty());
        let not_modified = http.get(&url).header("if-none-match", &etag).send();
        assert_eq!(not_modified.await.unwrap().status(), 304, "{key}");
        let failed = http.get(&url).header("if-match", "\"other\"").send();
        assert_eq!(failed.await.unwrap().status(), 412, "{key}");
        let got = http.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert!(got == data[..], "{key}: after HEAD, 304 and 412");
    }
    let sent = sent_with_sendfile(&serve).await - before;
    assert!(
        sent >= (large as u64) * 9 / 10,
        "{sent} bytes sent with sendfile, {large} bytes of whole bodies of 64 KiB or more"
    );
}

/// `curl` with `args`: its output.
fn curl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl {args:?}: {:?}", out.status);
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn curl_http_1_0_keep_alive_and_pipelined_requests_get_the_files_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path());
    let (a, b) = (body(2 * MIB + 5, 1), body(200 * KIB, 2));
    put_verified(
        &serve,
        &[("mask/sf/a.bin", a.clone()), ("mask/sf/b.bin", b.clone())],
    )
    .await;
    let (url_a, url_b) = (
        serve.sign(SignedMethod::Get, "mask/sf/a.bin"),
        serve.sign(SignedMethod::Get, "mask/sf/b.bin"),
    );
    assert!(curl(&["--http1.0", &url_a]) == a, "HTTP/1.0");
    // Three requests on one connection.
    let three = curl(&[&url_a, &url_b, &url_a]);
    assert!(
        three == [a.clone(), b.clone(), a.clone()].concat(),
        "keep-alive"
    );
    let range = curl(&["-r", "100-70000", &url_a]);
    assert!(range == a[100..70001], "curl range");
    // Pipelined: every request written before any answer is read.
    let mut stream = tokio::net::TcpStream::connect(&serve.addr).await.unwrap();
    let target = |url: &str| url.split_once(&serve.addr).unwrap().1.to_string();
    let heads = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\nGET {} HTTP/1.1\r\nHost: x\r\nRange: bytes=5-70004\r\n\r\nGET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        target(&url_a),
        target(&url_b),
        target(&url_b)
    );
    stream.write_all(heads.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).await.unwrap();
    let bodies = split_answers(&all);
    assert_eq!(bodies.len(), 3);
    assert!(bodies[0] == a, "pipelined 1");
    assert!(bodies[1] == b[5..70005], "pipelined 2");
    assert!(bodies[2] == b, "pipelined 3");
}

/// The bodies of HTTP/1.1 answers one after another in `raw`, by their Content-Length;
/// the last one as far as it goes when the connection was cut.
pub(crate) fn split_answers(mut raw: &[u8]) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    while !raw.is_empty() {
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let end = end + 4;
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("a length")
            .trim()
            .parse()
            .unwrap();
        let length = length.min(raw.len() - end);
        bodies.push(raw[end..end + length].to_vec());
        raw = &raw[end + length..];
    }
    bodies
}

/// A GET of `url` on a socket with a small receive buffer, its head sent.
async fn slow_get(serve: &Serve, url: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut stream = socket.connect(serve.addr.parse().unwrap()).await.unwrap();
    let target = url.split_once(&serve.addr).unwrap().1;
    let head = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_truncated_while_sent_is_cut_off_and_a_client_gone_mid_body_breaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path());
    let size = 32 * MIB;
    let data = body(size, 3);
    let key = "mask/sf/truncated.bin";
    put_verified(&serve, &[(key, data.clone())]).await;
    let url = serve.sign(SignedMethod::Get, key);
    // A client that leaves after its first bytes.
    let mut gone = slow_get(&serve, &url).await;
    let mut first = vec![0u8; 64 * KIB];
    gone.read_exact(&mut first).await.unwrap();
    drop(gone);
    let http = reqwest::Client::new();
    let got = http.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert!(got == data[..], "served whole after a client left mid-body");
    // A slow reader; the file is truncated to half while it is sent.
    let mut slow = slow_get(&serve, &url).await;
    slow.read_exact(&mut first).await.unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(serve.dir.join("data").join(key))
        .unwrap();
    file.set_len((size / 2) as u64).unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest).await;
    let all = [first, rest].concat();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let received = all.len() - end;
    eprintln!("truncated while sent: {received} of {size} bytes received");
    assert!(
        received < size,
        "a truncated file was served at its full length"
    );
    assert!(
        all[end..] == data[..received],
        "the bytes received are the file's"
    );
}

/// The status line's code of the answer on `stream`.
async fn status_of(stream: &mut tokio::net::TcpStream) -> String {
    let mut line = [0u8; 12];
    stream.read_exact(&mut line).await.unwrap();
    String::from_utf8_lossy(&line[9..]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_sendfile_downloads_reserve_only_what_they_hold() {
    // A `sendfile` body holds its 4 KiB tail, not the file's bytes: one client's stalled
    // downloads of a large verified object do not take its 8 MiB share of the download
    // memory (at 2 MiB each, the fifth would wait 5 s and be answered 503).
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path());
    let data = body(16 * MIB, 4);
    let key = "mask/sf/stalled.bin";
    put_verified(&serve, &[(key, data.clone())]).await;
    let url = serve.sign(SignedMethod::Get, key);
    let mut stalled = Vec::new();
    for n in 0..8 {
        let mut stream = slow_get(&serve, &url).await;
        assert_eq!(status_of(&mut stream).await, "200", "stalled download {n}");
        stalled.push(stream);
    }
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert!(
        got.bytes().await.unwrap() == data[..],
        "served beside the stalled ones"
    );
    // The stalled ones still get the file's bytes when they read.
    let mut first = stalled.pop().unwrap();
    let mut all = Vec::new();
    first.read_to_end(&mut all).await.unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(all[end..] == data[..], "a stalled download read at last");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_file_whose_check_finds_no_room_in_the_budget_is_cut_off() {
    // A `sendfile` body whose file changed (here: its name deleted) reads the open file
    // again whole before its tail, 1 MiB at a time, reserved first in its client's 8 MiB
    // share of the download memory. With that share held by the same client's stalled
    // streamed downloads, the body is cut off: neither served unchecked nor checked with
    // memory nobody reserved.
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path());
    let size = 4 * MIB;
    let data = body(size, 5);
    let key = "mask/sf/changed.bin";
    // Never read: streamed, each reserving its length (2 MiB at most) while it is sent.
    let hogs = [2 * MIB, 2 * MIB, 2 * MIB, 3 * MIB / 2];
    let http = reqwest::Client::new();
    for (n, &len) in hogs.iter().enumerate() {
        let url = serve.sign(SignedMethod::Put, &format!("mask/sf/hog{n}.bin"));
        let response = http.put(url).body(body(len, 6)).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    put_verified(&serve, &[(key, data.clone())]).await;
    let url = serve.sign(SignedMethod::Get, key);
    let mut slow = slow_get(&serve, &url).await;
    assert_eq!(status_of(&mut slow).await, "200", "the sendfile download");
    // 4 KiB (its tail) + 7.5 MiB taken of the 8 MiB share: less than the check's 1 MiB left.
    let mut stalled = Vec::new();
    for n in 0..hogs.len() {
        let url = serve.sign(SignedMethod::Get, &format!("mask/sf/hog{n}.bin"));
        let mut stream = slow_get(&serve, &url).await;
        assert_eq!(status_of(&mut stream).await, "200", "stalled download {n}");
        stalled.push(stream);
    }
    std::fs::remove_file(serve.dir.join("data").join(key)).unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest).await;
    let end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let received = rest.len() - end;
    eprintln!("a changed file's check without room: {received} of {size} bytes received");
    assert!(
        received <= size - 4096,
        "the tail was sent although the check found no room"
    );
    assert!(
        rest[end..] == data[..received],
        "the bytes sent are the file's"
    );
    // The stalled downloads gone, the share is free again.
    drop(stalled);
    let url = serve.sign(SignedMethod::Get, "mask/sf/hog0.bin");
    let got = http.get(url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(got.len(), 2 * MIB, "served once the share is free");
}
