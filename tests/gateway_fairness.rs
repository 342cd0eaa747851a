//! The gateway shares fairly and answers honestly, against a real `maskstore serve`:
//! one client holding every connection it may leaves others served; one PUT URL cannot
//! take more than its client's upload slots; stalled readers cost at most the download
//! memory budget; a corrupt object is never served whole, with or without Range; a client
//! that shuts its write side still gets its answer.
//!
//! Clients are told apart by address: Linux routes all of 127/8 to the loopback, so a
//! client socket bound to 127.0.0.2 is another client than one on 127.0.0.1.
//!
//! Figures (printed, so a CI log shows the margin): a second client's `/health` and signed
//! GETs ≥ 90 % answered while the first holds its share (`max_connections` 64 and 512);
//! 512 stalled readers of a 4 MiB object raise the resident size by at most 128 MiB.

use crate::support::flip_one_byte;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use maskstore_backends::SignedMethod;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Serve;

const SECRET: &str = "gateway-fairness-test-signing-secret-0123456";
const MIB: usize = 1024 * 1024;

fn serve_local(dir: &Path, extra: &[(&str, &str)]) -> Serve {
    let root = dir.join("data").display().to_string();
    let mut vars = vec![
        ("APP_OBJECT_STORAGE__PROVIDER", "local"),
        ("APP_OBJECT_STORAGE__ROOT", root.as_str()),
        ("APP_OBJECT_STORAGE__FSYNC", "false"),
        ("APP_GATEWAY__SIGNING_SECRET", SECRET),
    ];
    vars.extend_from_slice(extra);
    Serve::start(dir, &vars)
}

/// The loopback address of client `n` (1: 127.0.0.1, 2: 127.0.0.2, …).
fn client(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// An HTTP client whose connections come from `address`.
fn http_from(address: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A TCP connection to `addr` from `from`.
async fn connect_from(from: IpAddr, addr: &str) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    socket.connect(addr.parse().unwrap()).await
}

async fn put(http: &reqwest::Client, url: &str, body: Vec<u8>) -> u16 {
    http.put(url)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Everything the server sends on `stream` until it closes it.
async fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut got)).await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_object_is_never_served_whole_with_or_without_range() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path(), &[]);
    let http = http_from(client(1));
    // One read chunk, and several.
    for (key, size) in [
        ("mask/bad/small.png", 1000),
        ("mask/bad/large.png", 3 * MIB),
    ] {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            put(&http, &serve.sign(SignedMethod::Put, key), body).await,
            200
        );
        flip_one_byte(&serve.dir.join("data").join(key));
        let url = serve.sign(SignedMethod::Get, key);
        let whole_suffix = format!("bytes=-{size}");
        for range in [
            None,
            Some("bytes=0-"),
            Some(whole_suffix.as_str()),
            Some("bytes=0-99"),
            Some("bytes=-10"),
            Some("bytes=100-"),
        ] {
            let mut request = http.get(&url);
            if let Some(range) = range {
                request = request.header("range", range);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let promised = response.content_length();
            let received = response.bytes().await.map(|b| b.len() as u64);
            let served_whole =
                matches!(status, 200 | 206) && received.as_ref().ok() == promised.as_ref();
            eprintln!(
                "corrupt {key} range {range:?}: {status}, received {received:?} of {promised:?}"
            );
            assert!(
                !served_whole,
                "{key} with range {range:?} was served whole with {status}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_whose_client_shut_its_write_side_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path(), &[]);
    let http = http_from(client(1));
    let key = "mask/half/a.png";
    assert_eq!(
        put(&http, &serve.sign(SignedMethod::Put, key), vec![3; 5000]).await,
        200
    );
    let get = serve.sign(SignedMethod::Get, key);
    let target = get.split_once(&serve.addr).unwrap().1.to_string();
    let mut answered = [0usize; 2];
    for round in 0..400 {
        let path = if round % 2 == 0 {
            target.as_str()
        } else {
            "/health"
        };
        let mut stream = TcpStream::connect(&serve.addr).await.unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", serve.addr);
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let got = read_all(&mut stream).await;
        if got.starts_with(b"HTTP/1.1 200") {
            answered[round % 2] += 1;
        }
    }
    eprintln!(
        "half-closed: {} of 200 signed GETs, {} of 200 /health answered",
        answered[0], answered[1]
    );
    assert_eq!(answered, [200, 200]);
}

/// One client keeps `max_connections` unfinished request heads open (reopening each one
/// the gateway closes) while another asks for `/health` and signed GETs.
async fn second_client_share_while_one_holds_every_connection(max_connections: &str) {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(
        dir.path(),
        &[
            ("APP_GATEWAY__MAX_CONNECTIONS", max_connections),
            ("APP_GATEWAY__MAX_CONCURRENT_UPLOADS", "8"),
            ("APP_GATEWAY__HEADER_TIMEOUT", "2"),
        ],
    );
    let other = http_from(client(2));
    let key = "mask/fair/a.png";
    assert_eq!(
        put(&other, &serve.sign(SignedMethod::Put, key), vec![1; 1000]).await,
        200
    );
    let hog_count: usize = max_connections.parse().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut hogs = Vec::new();
    for _ in 0..hog_count {
        let (addr, stop) = (serve.addr.clone(), stop.clone());
        hogs.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut stream) = connect_from(client(1), &addr).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = stream
                    .write_all(b"GET /o/mask/a HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .await;
                let _ = read_all(&mut stream).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let get = serve.sign(SignedMethod::Get, key);
    let (mut health_ok, mut get_ok) = (0, 0);
    for _ in 0..60 {
        let health = other.get(format!("{}/health", serve.base)).send().await;
        health_ok += usize::from(health.is_ok_and(|r| r.status().as_u16() == 200));
        let got = other.get(&get).send().await;
        get_ok += usize::from(got.is_ok_and(|r| r.status().as_u16() == 200));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for hog in hogs {
        hog.abort();
    }
    eprintln!(
        "max_connections {max_connections}: one client holding its all, the other's /health {health_ok}/60, signed GETs {get_ok}/60"
    );
    assert!(health_ok >= 54, "/health answered {health_ok} of 60");
    assert!(get_ok >= 54, "signed GETs answered {get_ok} of 60");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_client_holding_every_connection_it_can_leaves_another_served_at_64() {
    second_client_share_while_one_holds_every_connection("64").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_client_holding_every_connection_it_can_leaves_another_served_at_512() {
    second_client_share_while_one_holds_every_connection("512").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_put_url_takes_no_more_than_its_clients_share_of_upload_slots() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path(), &[("APP_GATEWAY__BODY_IDLE_TIMEOUT", "3")]);
    let url = serve.sign(SignedMethod::Put, "mask/share/a.png");
    let target = url.split_once(&serve.addr).unwrap().1.to_string();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut stream = connect_from(client(1), &serve.addr).await.unwrap();
        let head = format!(
            "PUT {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: 100000\r\n\r\n",
            serve.addr
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let _ = stream.write_all(&[7u8; 1000]).await;
        stalled.push(tokio::spawn(async move { read_all(&mut stream).await }));
    }
    // Another client uploads while the first holds its share.
    let other = http_from(client(2));
    let mine = serve.sign(SignedMethod::Put, "mask/share/b.png");
    assert_eq!(put(&other, &mine, vec![2; 1000]).await, 200);
    let mut statuses = Vec::new();
    for task in stalled {
        let got = task.await.unwrap();
        statuses.push(
            String::from_utf8_lossy(&got)
                .get(9..12)
                .unwrap_or("")
                .to_string(),
        );
    }
    let busy = statuses.iter().filter(|s| *s == "503").count();
    let timed_out = statuses.iter().filter(|s| *s == "408").count();
    eprintln!(
        "one PUT URL, 20 uploads from one client: {timed_out} held (408 after stalling), {busy} refused 503"
    );
    assert_eq!((timed_out, busy), (8, 12), "{statuses:?}");
    // The excess is the client's own: the alarms count it as client errors, not as the
    // store failing (before, 12 of 21 as server errors put /health in a server-error alarm).
    let health = reqwest::get(format!("{}/health", serve.admin_base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    eprintln!("/health after one client's excess uploads: {health}");
    assert!(!health.contains("server_error_rate"), "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_readers_hold_at_most_the_download_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path(), &[("APP_GATEWAY__BODY_IDLE_TIMEOUT", "60")]);
    let key = "mask/stall/big.png";
    let http = http_from(client(1));
    let body: Vec<u8> = (0..4 * MIB).map(|i| (i % 253) as u8).collect();
    assert_eq!(
        put(&http, &serve.sign(SignedMethod::Put, key), body).await,
        200
    );
    let url = serve.sign(SignedMethod::Get, key);
    let target = url.split_once(&serve.addr).unwrap().1.to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = serve.rss();
    let mut readers = Vec::new();
    // 32 connections per address, the default share at max_connections 512.
    for n in 0..512u16 {
        let from = client(2 + (n / 32) as u8);
        let mut stream = connect_from(from, &serve.addr).await.unwrap();
        // A small receive buffer, and never a read: the reader stalls at once.
        let head = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", serve.addr);
        stream.write_all(head.as_bytes()).await.unwrap();
        readers.push(stream);
    }
    let mut peak = before;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(serve.rss());
    }
    let rise = peak.saturating_sub(before);
    eprintln!(
        "512 stalled readers of a 4 MiB object: resident size {} MiB -> peak {} MiB (+{} MiB)",
        before / MIB as u64,
        peak / MIB as u64,
        rise / MIB as u64
    );
    assert!(rise <= 128 * MIB as u64, "+{} MiB", rise / MIB as u64);
    drop(readers);
}

/// One client that stalls every download its connection share allows (32 at the defaults,
/// 2 MiB of buffers each: the whole 64 MiB budget before it had shares) holds only its
/// share of the download budget: its excess waits and is answered 503, and another client's
/// download is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_client_stalling_downloads_leaves_the_budget_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path(), &[("APP_GATEWAY__BODY_IDLE_TIMEOUT", "60")]);
    let key = "mask/stall/hog.png";
    let other = http_from(client(3));
    let body: Vec<u8> = (0..8 * MIB).map(|i| (i % 251) as u8).collect();
    let put_url = serve.sign(SignedMethod::Put, key);
    assert_eq!(put(&other, &put_url, body.clone()).await, 200);
    let url = serve.sign(SignedMethod::Get, key);
    let target = url.split_once(&serve.addr).unwrap().1.to_string();
    let mut hog = Vec::new();
    for _ in 0..32 {
        let mut stream = connect_from(client(2), &serve.addr).await.unwrap();
        let head = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", serve.addr);
        stream.write_all(head.as_bytes()).await.unwrap();
        hog.push(stream);
    }
    // Each stalled reader's status line, read alone: the body is never read.
    let mut statuses = Vec::new();
    for stream in &mut hog {
        let mut status = [0u8; 12];
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut status));
        let ok = matches!(read.await, Ok(Ok(_)));
        statuses.push(if ok {
            String::from_utf8_lossy(&status[9..]).to_string()
        } else {
            "none".into()
        });
    }
    let served = statuses.iter().filter(|s| *s == "200").count();
    let busy = statuses.iter().filter(|s| *s == "503").count();
    let got = other.get(&url).send().await.unwrap();
    let status = got.status().as_u16();
    let whole = got.bytes().await.map(|b| b.len()).unwrap_or(0);
    eprintln!(
        "one client stalling 32 downloads of 8 MiB: {served} served, {busy} refused 503; \
         another client's GET: {status}, {whole} bytes"
    );
    assert_eq!(status, 200, "the other client found no room");
    assert_eq!(whole, body.len());
    assert!(served <= 4, "the stalling client holds {served} downloads");
    drop(hog);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_is_answered_on_a_reserved_connection_when_every_connection_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(
        dir.path(),
        &[
            ("APP_GATEWAY__MAX_CONNECTIONS", "16"),
            ("APP_GATEWAY__MAX_CONCURRENT_UPLOADS", "8"),
            // One client may take every connection: the reserve is what is under test.
            ("APP_GATEWAY__MAX_CONNECTIONS_PER_CLIENT", "16"),
        ],
    );
    let other = http_from(client(2));
    let key = "mask/reserve/a.png";
    assert_eq!(
        put(&other, &serve.sign(SignedMethod::Put, key), vec![1; 100]).await,
        200
    );
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut stream = connect_from(client(1), &serve.addr).await.unwrap();
        stream
            .write_all(b"GET /o/mask/a HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The first client's next connection finds neither a slot nor a reserve for objects.
    let mut extra = connect_from(client(1), &serve.addr).await.unwrap();
    assert!(read_all(&mut extra).await.starts_with(b"HTTP/1.1 503"));
    let other = http_from(client(2));
    let mut health_ok = 0;
    for _ in 0..10 {
        // A reserved connection serves one request and closes; a probe sent before the
        // gateway has let the previous one go finds this client's reserved slot taken.
        // Probes come every few seconds in practice: here, every 200 ms.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let health = other.get(format!("{}/health", serve.base)).send().await;
        health_ok += usize::from(health.is_ok_and(|r| r.status().as_u16() == 200));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let get = other
        .get(serve.sign(SignedMethod::Get, key))
        .send()
        .await
        .unwrap();
    let retry_after = get.headers().get("retry-after").cloned();
    eprintln!(
        "every connection held: /health {health_ok}/10 on a reserved connection, a signed GET there {}",
        get.status()
    );
    assert!(health_ok >= 9, "/health answered {health_ok} of 10");
    assert_eq!(get.status().as_u16(), 503);
    assert!(retry_after.is_some());
    drop(held);
}

/// A connection that sends nothing is let go after `first_byte_timeout`, well before the
/// `header_timeout` a client that is sending its head gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_connection_is_closed_at_the_first_byte_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(
        dir.path(),
        &[
            ("APP_GATEWAY__FIRST_BYTE_TIMEOUT", "1"),
            ("APP_GATEWAY__HEADER_TIMEOUT", "30"),
        ],
    );
    let mut silent = connect_from(client(1), &serve.addr).await.unwrap();
    let mut sending = connect_from(client(1), &serve.addr).await.unwrap();
    sending
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(15), silent.read(&mut buf)).await;
    eprintln!(
        "a silent connection was closed after {:?}",
        started.elapsed()
    );
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");
    // The one sending its head is still open (its deadline is 30 s).
    let still = tokio::time::timeout(Duration::from_millis(500), sending.read(&mut buf)).await;
    assert!(still.is_err(), "the sending client was cut off: {still:?}");
}

/// The bytes the store read for downloads so far, from `/metrics`.
async fn bytes_read(serve: &Serve) -> u64 {
    let text = reqwest::get(format!("{}/metrics", serve.admin_base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("maskstore_bytes_total{") && l.contains("direction=\"in\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A range of a version not yet verified reads the whole object once, however many ranges
/// of it arrive together (a viewer opening a large mask asks several at once) and however
/// their steps interleave, and a version found corrupt is not read whole again for each
/// range asked of it: a client cannot make one 1-byte range cost a whole read over and
/// over. A version is what a read of a file whose last change is 3 s old names, so the
/// files settle first: a file changed in the last seconds has none, and a range of it that
/// arrives once the check of its etag ended is verified again (so, under load, a late one
/// of the 12 read a just-written file whole a second time).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranges_of_an_unverified_version_read_it_whole_once() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path(), &[]);
    let http = http_from(client(1));
    let size = 16 * MIB;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    for key in ["mask/amp/good.png", "mask/amp/bad.png"] {
        assert_eq!(
            put(&http, &serve.sign(SignedMethod::Put, key), body.clone()).await,
            200
        );
    }
    flip_one_byte(&serve.dir.join("data").join("mask/amp/bad.png"));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let ranges = |key: &str| {
        let url = serve.sign(SignedMethod::Get, key);
        let http = http.clone();
        async move {
            let asked = (0..12u64).map(|n| {
                let request = http.get(&url).header("range", format!("bytes={n}-{n}"));
                async move { request.send().await.unwrap().status().as_u16() }
            });
            futures::future::join_all(asked).await
        }
    };
    let before = bytes_read(&serve).await;
    let good = ranges("mask/amp/good.png").await;
    let good_read = bytes_read(&serve).await - before;
    let bad = ranges("mask/amp/bad.png").await;
    let bad_read = bytes_read(&serve).await - before - good_read;
    // Both verdicts are kept: the ranges asked again read nothing whole.
    let again = [
        ranges("mask/amp/good.png").await,
        ranges("mask/amp/bad.png").await,
    ];
    let again_read = bytes_read(&serve).await - before - good_read - bad_read;
    eprintln!(
        "12 concurrent 1-byte ranges of a new 16 MiB version: {good:?}, {} MiB read; \
         of a corrupt one: {bad:?}, {} MiB read",
        good_read / MIB as u64,
        bad_read / MIB as u64
    );
    assert!(good.iter().all(|s| *s == 206), "{good:?}");
    assert!(bad.iter().all(|s| *s == 500), "{bad:?}");
    assert!(good_read < 2 * size as u64, "{good_read} bytes read");
    assert!(bad_read < 2 * size as u64, "{bad_read} bytes read");
    assert_eq!([good, bad], again);
    assert!(again_read < size as u64, "{again_read} bytes read again");
}

/// A conditional PUT takes the conditional-upload budget as its body arrives: one that
/// announces the largest body (64 MiB) and sends nothing leaves room for others (before,
/// it held the whole budget until its idle timeout, and every other conditional PUT was
/// answered 503 after 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conditional_put_that_sends_nothing_holds_no_budget() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path(), &[]);
    let url = serve.sign(SignedMethod::Put, "mask/cond/hog.png");
    let target = url.split_once(&serve.addr).unwrap().1.to_string();
    let mut hog = connect_from(client(2), &serve.addr).await.unwrap();
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: {}\r\nIf-None-Match: *\r\nContent-Length: {}\r\n\r\n",
        serve.addr,
        64 * MIB
    );
    hog.write_all(head.as_bytes()).await.unwrap();
    // Its head is read and its condition judged before it would send a body.
    let mut probe = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), hog.read(&mut probe)).await;
    assert!(
        early.is_err(),
        "the announced upload was answered: {early:?}"
    );
    let other = http_from(client(3));
    let status = other
        .put(serve.sign(SignedMethod::Put, "mask/cond/new.png"))
        .header("if-none-match", "*")
        .body(vec![5u8; 1000])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    eprintln!("a conditional PUT while another announced 64 MiB and sent nothing: {status}");
    assert_eq!(status, 200);
    drop(hog);
}
