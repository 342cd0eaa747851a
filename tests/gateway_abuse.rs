//! Hostile clients against a real `maskstore serve` process: query floods, made-up
//! methods, stored HTML/SVG, slowloris, oversize and stalled uploads, SIGTERM mid-upload,
//! malleable signatures.
//!
//! Thresholds (each figure is printed, so a CI log shows the margin):
//! - query flood (16 clients, 64 KB / 16,000-parameter queries, 5 s): every signed GET
//!   and `/health` probe answers within [`PROBE_LIMIT`] (1 s); flood requests get 414/400.
//! - 20,000 requests with random methods: `/metrics` under 100 KB, resident size grows
//!   by under 5 MiB.
//! - slowloris (300 half-sent heads, `max_connections` 250, `header_timeout` 2 s): the 50
//!   excess connections are refused within 1 s of their connect, the rest closed by 2 s +
//!   2 s slack after theirs, and
//!   `/health` (admin listener) answers within 1 s throughout.
//! - uploads: over `max_upload_bytes` → 413 and no file left; 20 stalled uploads (1 MiB sent
//!   each) keep the resident size under +40 MiB, are answered 408 after
//!   `body_idle_timeout` and leave no file; a 21st upload is refused 503 with Retry-After;
//!   20 uploads stalled after 8 MiB − 64 KiB each (just below the default part size) also
//!   stay under +40 MiB and leave no temporary file.
//! - SIGTERM with a stalled upload: exit within `shutdown_grace` + 2 s, previous version kept.
//! - a download whose client stops reading (`body_idle_timeout`) or crawls
//!   (`request_timeout`) is cut off before the whole object is sent, also when a verified
//!   version is sent with `sendfile`; one whose client reads slowly but steadily (about
//!   640 KiB/s, less than a third of a grown send buffer per `body_idle_timeout` of 1 s)
//!   is served whole, streamed and with `sendfile`, pipelined on one connection.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use maskstore_backends::SignedMethod;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Serve, maskstore, succeeded, vars};

const SECRET: &str = "gateway-abuse-test-signing-secret-0123456789";
const PROBE_LIMIT: Duration = Duration::from_secs(1);
const MIB: usize = 1024 * 1024;

/// `maskstore serve` on the local provider under `dir/data`.
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

/// Every regular file below the served root, reserved folder included.
fn files(serve: &Serve) -> BTreeSet<PathBuf> {
    walk(&serve.dir.join("data"))
}

fn walk(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => out.extend(walk(&path)),
                Ok(_) => {
                    out.insert(path);
                }
                Err(_) => {}
            }
        }
    }
    out
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn put(http: &reqwest::Client, url: &str, content_type: &str, body: Vec<u8>) -> u16 {
    http.put(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Sends a PUT head announcing `length` bytes and `sent` bytes of its body, then stalls.
async fn stalled_upload(addr: &str, url: &str, length: usize, sent: usize) -> TcpStream {
    let target = url.split_once(addr).unwrap().1;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![5u8; sent]).await.unwrap();
    stream
}

/// The status of the response on `stream`, or `None` when it closed without one.
async fn status_on(stream: &mut TcpStream) -> Option<u16> {
    let mut buf = vec![0u8; 1024];
    let mut got = Vec::new();
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&got);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_flood_is_refused_before_the_signature_and_others_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path(), &[]);
    let http = http();
    let key = "mask/flood/a.png";
    assert_eq!(
        put(
            &http,
            &serve.sign(SignedMethod::Put, key),
            "image/png",
            vec![1; 1000]
        )
        .await,
        200
    );
    let get_url = serve.sign(SignedMethod::Get, key);
    // 16,000 distinct parameters in about 64 KB.
    let query: Vec<String> = (0..16_000u32)
        .map(|i| {
            let mut n = i;
            let mut name = String::new();
            loop {
                name.push(char::from_digit(n % 36, 36).unwrap());
                n /= 36;
                if n == 0 {
                    break;
                }
            }
            name
        })
        .collect();
    let flood_target = format!("/o/{key}?{}", query.join("&"));
    assert!(flood_target.len() > 60_000, "{}", flood_target.len());
    let flood_request = format!(
        "GET {flood_target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        serve.addr
    );
    let stop = Instant::now() + Duration::from_secs(5);
    let mut flooders = Vec::new();
    for _ in 0..16 {
        let (addr, request) = (serve.addr.clone(), flood_request.clone());
        flooders.push(tokio::spawn(async move {
            let (mut sent, mut refused) = (0u32, 0u32);
            while Instant::now() < stop {
                let mut stream = TcpStream::connect(&addr).await.unwrap();
                stream.write_all(request.as_bytes()).await.unwrap();
                let status = status_on(&mut stream).await;
                sent += 1;
                if matches!(status, Some(414 | 400)) {
                    refused += 1;
                }
            }
            (sent, refused)
        }));
    }
    // Probes run on a thread of their own, so the flooders' tasks cannot delay them.
    let (health_url, probe_http) = (format!("{}/health", serve.base), http.clone());
    let probe = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (mut slowest_get, mut slowest_health, mut probes) =
                (Duration::ZERO, Duration::ZERO, 0);
            while Instant::now() < stop {
                let started = Instant::now();
                let response = probe_http.get(&get_url).send().await.unwrap();
                assert_eq!(response.status().as_u16(), 200);
                assert_eq!(response.bytes().await.unwrap().len(), 1000);
                slowest_get = slowest_get.max(started.elapsed());
                let started = Instant::now();
                let health = probe_http.get(&health_url).send().await.unwrap();
                assert_eq!(health.status().as_u16(), 200);
                slowest_health = slowest_health.max(started.elapsed());
                probes += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (slowest_get, slowest_health, probes)
        })
    });
    let (mut sent, mut refused) = (0, 0);
    for flooder in flooders {
        let (s, r) = flooder.await.unwrap();
        sent += s;
        refused += r;
    }
    let (slowest_get, slowest_health, probes) = probe.join().unwrap();
    eprintln!(
        "query flood: {sent} flood requests ({refused} refused 414/400); {probes} probes, slowest signed GET {slowest_get:?}, slowest /health {slowest_health:?}"
    );
    assert!(sent > 16, "the flood ran: {sent}");
    assert_eq!(refused, sent, "every flood request is refused 414/400");
    assert!(slowest_get < PROBE_LIMIT, "signed GET took {slowest_get:?}");
    assert!(
        slowest_health < PROBE_LIMIT,
        "/health took {slowest_health:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn made_up_methods_do_not_grow_metrics_or_memory() {
    let dir = tempfile::tempdir().unwrap();
    // 32 tasks from one address: its share of connections is not what this test is about.
    let serve = serve_local(
        dir.path(),
        &[("APP_GATEWAY__MAX_CONNECTIONS_PER_CLIENT", "512")],
    );
    let http = http();
    let metrics_url = format!("{}/metrics", serve.admin_base());
    // Warm up: every label combination a refusal produces exists before the baseline.
    for method in ["GET", "XWARM"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let _ = http
            .request(m, format!("{}/o/mask/x", serve.base))
            .send()
            .await
            .unwrap();
    }
    let _ = http
        .get(&metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = serve.rss();
    let mut clients = Vec::new();
    for client in 0..32u64 {
        let (http, base) = (http.clone(), serve.base.clone());
        clients.push(tokio::spawn(async move {
            for i in 0..625u64 {
                let token = format!("M{client}X{i}{:08x}", rand::random::<u32>());
                let method = reqwest::Method::from_bytes(token.as_bytes()).unwrap();
                let status = http
                    .request(method, format!("{base}/o/mask/x"))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status.as_u16(), 403, "{status}");
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let started = Instant::now();
    let page = http
        .get(&metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = serve.rss();
    let growth = after.saturating_sub(before);
    eprintln!(
        "made-up methods: 20000 requests; /metrics {} bytes, scraped in {scrape:?}; RSS {} -> {} KiB (+{} KiB)",
        page.len(),
        before / 1024,
        after / 1024,
        growth / 1024
    );
    assert!(page.contains("method=\"other\""), "{page}");
    assert!(!page.contains("XWARM"), "a client's method became a label");
    assert!(page.len() < 100_000, "/metrics is {} bytes", page.len());
    assert!(growth < 5 * MIB as u64, "RSS grew {growth} bytes");
}

#[tokio::test]
async fn html_and_svg_are_served_sandboxed_as_attachments() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path(), &[]);
    let http = http();
    let cases = [
        (
            "mask/xss/page.html",
            "text/html",
            "<script>alert(1)</script>",
            true,
        ),
        (
            "mask/xss/image.svg",
            "image/svg+xml",
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
            true,
        ),
        ("mask/xss/label.png", "image/png", "pixels", false),
        (
            "mask/xss/volume.bin",
            "application/octet-stream",
            "bytes",
            false,
        ),
        ("mask/xss/seg.nii.gz", "application/gzip", "gz", false),
    ];
    for (key, content_type, body, attachment) in cases {
        let status = put(
            &http,
            &serve.sign(SignedMethod::Put, key),
            content_type,
            body.into(),
        )
        .await;
        assert_eq!(status, 200, "{key}");
        for method in [SignedMethod::Get, SignedMethod::Head] {
            let url = serve.sign(method, key);
            let request = match method {
                SignedMethod::Get => http.get(&url),
                _ => http.head(&url),
            };
            let response = request.send().await.unwrap();
            let headers = response.headers();
            let header = |name: &str| {
                headers
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default()
            };
            assert_eq!(header("x-content-type-options"), "nosniff", "{key}");
            let csp = header("content-security-policy");
            assert!(
                csp.contains("sandbox") && csp.contains("default-src 'none'"),
                "{key}: {csp}"
            );
            assert_eq!(
                header("content-disposition") == "attachment",
                attachment,
                "{key} {method}: {:?}",
                header("content-disposition")
            );
        }
    }
    // Refusals carry the same headers.
    let refused = http
        .get(format!("{}/o/mask/xss/page.html", serve.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    assert_eq!(refused.headers()["x-content-type-options"], "nosniff");
    // A PUT URL issued for a mask key binds the format's type: no HTML under a .png name.
    let root = serve.dir.join("data").display().to_string();
    let presigned = maskstore(
        dir.path(),
        &["presign", "put", "mask/xss/bound.png"],
        &vars(&[
            ("APP_OBJECT_STORAGE__ROOT", &root),
            ("APP_GATEWAY__LISTEN", &serve.addr),
            ("APP_GATEWAY__SIGNING_SECRET", SECRET),
        ]),
    );
    let url = succeeded(&presigned).trim().to_string();
    assert!(
        url.contains("x-maskstore-content-type=image%2Fpng"),
        "{url}"
    );
    assert_eq!(
        put(&http, &url, "text/html", b"<script></script>".to_vec()).await,
        403
    );
    assert_eq!(put(&http, &url, "image/png", b"pixels".to_vec()).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_is_closed_after_the_header_timeout_and_the_excess_refused() {
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", crate::support::free_port());
    let serve = serve_local(
        dir.path(),
        &[
            ("APP_GATEWAY__MAX_CONNECTIONS", "250"),
            // The global cap under test: this one client may take all of it.
            ("APP_GATEWAY__MAX_CONNECTIONS_PER_CLIENT", "250"),
            ("APP_GATEWAY__HEADER_TIMEOUT", "2"),
            ("APP_GATEWAY__ADMIN_LISTEN", &admin),
        ],
    );
    let http = http();
    // With an admin listener, /health and /metrics are there and not on the public one.
    for path in ["/health", "/metrics"] {
        let public = http
            .get(format!("{}{path}", serve.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            public.status().as_u16(),
            404,
            "{path} on the public listener"
        );
        let private = http
            .get(format!("{}{path}", serve.admin_base()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            private.status().as_u16(),
            200,
            "{path} on the admin listener"
        );
    }
    let opened = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(&serve.addr).await.unwrap();
        // Each connection's times count from its own connect: on a loaded machine the
        // 300 connects alone may take longer than the margins below.
        let connected = Instant::now();
        // A head that never ends.
        let _ = stream
            .write_all(b"GET /o/mask/a HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await;
        slow.push(tokio::spawn(async move {
            let mut buf = [0u8; 256];
            let mut first = Vec::new();
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => first.extend_from_slice(&buf[..n]),
                }
            }
            (connected.elapsed(), first.starts_with(b"HTTP/1.1 503"))
        }));
    }
    // /health answers throughout, until every slow connection is closed.
    let (mut slowest_health, mut probes) = (Duration::ZERO, 0);
    while slow.iter().any(|task| !task.is_finished()) {
        assert!(
            opened.elapsed() < Duration::from_secs(15),
            "slow connections stay open"
        );
        let started = Instant::now();
        let health = http
            .get(format!("{}/health", serve.admin_base()))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status().as_u16(), 200);
        slowest_health = slowest_health.max(started.elapsed());
        probes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut refused_fast = 0;
    let mut refused_503 = 0;
    let mut last_close = Duration::ZERO;
    for task in slow {
        let (after, busy) = task.await.unwrap();
        if after < Duration::from_secs(1) {
            refused_fast += 1;
        }
        if busy {
            refused_503 += 1;
        }
        last_close = last_close.max(after);
    }
    eprintln!(
        "slowloris: 300 connections; {refused_fast} closed within 1 s ({refused_503} with 503), last closed after {last_close:?}; {probes} /health probes, slowest {slowest_health:?}"
    );
    assert!(
        refused_fast >= 50,
        "the excess is refused at once: {refused_fast}"
    );
    assert!(refused_503 >= 1, "the excess is told 503");
    assert!(
        refused_fast <= 60,
        "held connections were closed early: {refused_fast}"
    );
    assert!(
        last_close < Duration::from_secs(4),
        "closed after {last_close:?}"
    );
    assert!(
        slowest_health < PROBE_LIMIT,
        "/health took {slowest_health:?}"
    );
    // The slots are free again, for a new connection. (The client's pooled connection
    // from the 404s above went idle as the slow ones were opened, so the gateway closes
    // it at the same header timeout: reusing it would race that close.)
    let url = serve.sign(SignedMethod::Put, "mask/after/a.png");
    assert_eq!(
        put(&self::http(), &url, "image/png", vec![1; 10]).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversize_and_stalled_uploads_are_refused_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(
        dir.path(),
        &[
            ("APP_GATEWAY__MAX_UPLOAD_BYTES", &(4 * MIB).to_string()),
            ("APP_GATEWAY__BODY_IDLE_TIMEOUT", "3"),
            ("APP_GATEWAY__MAX_CONCURRENT_UPLOADS", "20"),
            // The global cap under test: this one client may take all of it.
            ("APP_GATEWAY__MAX_UPLOADS_PER_CLIENT", "20"),
        ],
    );
    let http = http();
    let baseline = files(&serve);
    // Announced too large: refused before the body is read.
    let url = serve.sign(SignedMethod::Put, "mask/big/a.bin");
    let mut announced = stalled_upload(&serve.addr, &url, 5 * MIB, 0).await;
    assert_eq!(status_on(&mut announced).await, Some(413));
    // Streamed without a length: refused once it passes the limit.
    let chunks = futures::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; 256 * 1024]))),
    );
    let streamed = http
        .put(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    if let Ok(response) = streamed {
        // The server may close the connection as it answers; a reset is refusal too.
        assert_eq!(response.status().as_u16(), 413);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(files(&serve), baseline, "an oversize upload left a file");
    let get = http
        .get(serve.sign(SignedMethod::Get, "mask/big/a.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 404);

    // 20 uploads that send 1 MiB of 4 and stall.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = serve.rss();
    let started = Instant::now();
    let mut stalled = Vec::new();
    for i in 0..20 {
        let url = serve.sign(SignedMethod::Put, &format!("mask/stall/{i}.bin"));
        stalled.push(stalled_upload(&serve.addr, &url, 4 * MIB, MIB).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = serve.rss();
    let growth = during.saturating_sub(before);
    // The cap is reached: one more upload is refused with Retry-After.
    let extra = http
        .put(serve.sign(SignedMethod::Put, "mask/stall/extra.bin"))
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(extra.status().as_u16(), 503);
    assert!(extra.headers().contains_key("retry-after"));
    let mut statuses = Vec::new();
    for stream in &mut stalled {
        statuses.push(status_on(stream).await);
    }
    let dropped_after = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left = files(&serve);
    eprintln!(
        "stalled uploads: 20 x 1 MiB sent; RSS {} -> {} KiB (+{} KiB); answered {:?} after {dropped_after:?}",
        before / 1024,
        during / 1024,
        growth / 1024,
        statuses.iter().collect::<BTreeSet<_>>()
    );
    assert!(growth < 40 * MIB as u64, "RSS grew {growth} bytes");
    assert!(statuses.iter().all(|s| *s == Some(408)), "{statuses:?}");
    assert!(dropped_after < Duration::from_secs(8), "{dropped_after:?}");
    assert_eq!(left, baseline, "stalled uploads left files");
    // The slots are free again.
    let url = serve.sign(SignedMethod::Put, "mask/stall/after.bin");
    assert_eq!(
        put(&http, &url, "application/octet-stream", vec![1; 10]).await,
        200
    );
}

/// An upload that stalls just below the default part size, the most a single PUT buffers,
/// still holds little memory: the gateway streams parts of
/// [`maskstore_gateway::UPLOAD_BUFFER_PART_SIZE`] into the temporary file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_stalled_just_below_a_part_hold_little_memory_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(
        dir.path(),
        &[
            ("APP_GATEWAY__BODY_IDLE_TIMEOUT", "6"),
            ("APP_GATEWAY__MAX_CONCURRENT_UPLOADS", "20"),
            // The global cap under test: this one client may take all of it.
            ("APP_GATEWAY__MAX_UPLOADS_PER_CLIENT", "20"),
        ],
    );
    let baseline = files(&serve);
    let sent = maskstore_backends::UPLOAD_PART_SIZE - 64 * 1024;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = serve.rss();
    let started = Instant::now();
    let uploads = (0..20).map(|i| {
        let url = serve.sign(SignedMethod::Put, &format!("mask/stall/{i}.bin"));
        let addr = serve.addr.clone();
        async move { stalled_upload(&addr, &url, 64 * MIB, sent).await }
    });
    let mut stalled = futures::future::join_all(uploads).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = serve.rss();
    let growth = during.saturating_sub(before);
    let mut statuses = Vec::new();
    for stream in &mut stalled {
        statuses.push(status_on(stream).await);
    }
    let dropped_after = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!(
        "stalled uploads: 20 x {} KiB sent; RSS {} -> {} KiB (+{} KiB); answered {:?} after {dropped_after:?}",
        sent / 1024,
        before / 1024,
        during / 1024,
        growth / 1024,
        statuses.iter().collect::<BTreeSet<_>>()
    );
    assert!(growth < 40 * MIB as u64, "RSS grew {} KiB", growth / 1024);
    assert!(statuses.iter().all(|s| *s == Some(408)), "{statuses:?}");
    assert_eq!(files(&serve), baseline, "stalled uploads left files");
}

#[tokio::test]
async fn sigterm_drops_a_stalled_upload_after_the_grace_and_keeps_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        ("APP_GATEWAY__SHUTDOWN_GRACE", "2"),
        ("APP_GATEWAY__BODY_IDLE_TIMEOUT", "60"),
    ];
    let serve = serve_local(dir.path(), &settings);
    let http = http();
    let key = "mask/term/a.bin";
    let url = serve.sign(SignedMethod::Put, key);
    assert_eq!(
        put(
            &http,
            &url,
            "application/octet-stream",
            b"version one".to_vec()
        )
        .await,
        200
    );
    let baseline = files(&serve);
    let mut stream = stalled_upload(&serve.addr, &url, 2 * MIB, MIB).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut serve = serve;
    let signalled = Instant::now();
    serve.terminate();
    let deadline = signalled + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve still runs 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = signalled.elapsed();
    eprintln!("sigterm with a stalled upload: exited {exit} after {took:?} (grace 2 s)");
    assert!(exit.success(), "{exit}");
    assert!(
        took >= Duration::from_millis(1900),
        "the grace was not given: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "exit took {took:?}");
    assert_eq!(status_on(&mut stream).await, None, "the upload was dropped");
    assert_eq!(files(&serve), baseline, "the dropped upload left a file");
    drop(serve);
    let again = serve_local(dir.path(), &settings);
    let body = http
        .get(again.sign(SignedMethod::Get, key))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "version one");
}

#[tokio::test]
async fn uppercase_and_plus_prefixed_signatures_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path(), &[]);
    let http = http();
    let key = "mask/sig/a.png";
    assert_eq!(
        put(
            &http,
            &serve.sign(SignedMethod::Put, key),
            "image/png",
            b"png".to_vec()
        )
        .await,
        200
    );
    let url = serve.sign(SignedMethod::Get, key);
    assert_eq!(http.get(&url).send().await.unwrap().status().as_u16(), 200);
    let (head, signature) = url.split_once("x-maskstore-signature=").unwrap();
    for variant in [
        signature.to_uppercase(),
        format!("%2B{}", &signature[1..]),
        format!("%2B0{}", &signature[2..]),
    ] {
        let tampered = format!("{head}x-maskstore-signature={variant}");
        let response = http.get(&tampered).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 403, "{tampered}: {text}");
        assert!(text.contains("64 lowercase hex"), "{text}");
    }
}

/// Reads `stream` as `pace` says (nothing at all when `None`) until `until`, then as fast
/// as it can to the end of the connection: the bytes received, head included.
async fn read_download(mut stream: TcpStream, pace: Option<Duration>, until: Instant) -> usize {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    while Instant::now() < until {
        match pace {
            Some(pause) => {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
                tokio::time::sleep(pause).await;
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_that_stop_or_crawl_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(
        dir.path(),
        &[
            ("APP_GATEWAY__BODY_IDLE_TIMEOUT", "2"),
            ("APP_GATEWAY__REQUEST_TIMEOUT", "4"),
        ],
    );
    let http = http();
    let key = "mask/slow/volume.bin";
    let size = 64 * MIB;
    let url = serve.sign(SignedMethod::Put, key);
    assert_eq!(
        put(&http, &url, "application/octet-stream", vec![9; size]).await,
        200
    );
    let url = serve.sign(SignedMethod::Get, key);
    // Settled and verified once: the slow downloads below are sent with `sendfile`.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let whole = http.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(whole.len(), size);
    let target = url.split_once(&serve.addr).unwrap().1.to_string();
    let open = || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        let mut stream = socket.connect(serve.addr.parse().unwrap()).await.unwrap();
        let head = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
    };
    let started = Instant::now();
    // One client stops reading for 5 s (idle limit 2 s); one reads 16 KiB every 50 ms
    // (about 320 KiB/s, 200 s for the object) for 7 s (request limit 4 s).
    let stopped = tokio::spawn(read_download(
        open().await,
        None,
        started + Duration::from_secs(5),
    ));
    let crawling = tokio::spawn(read_download(
        open().await,
        Some(Duration::from_millis(50)),
        started + Duration::from_secs(7),
    ));
    let (stopped, crawling) = (stopped.await.unwrap(), crawling.await.unwrap());
    eprintln!(
        "slow downloads of {size} bytes: the stopped reader got {stopped} bytes, the crawling one {crawling}"
    );
    assert!(stopped < size, "a reader that stopped was served in full");
    assert!(crawling < size, "a crawling reader was served in full");
    // A reader that keeps up is served in full.
    let whole = http.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(whole.len(), size);
}

/// A connection to `serve` with a receive buffer of `rcvbuf` bytes, every URL of `urls`
/// asked for on it at once (pipelined; the last with `Connection: close`).
async fn pipelined(serve: &Serve, urls: &[String], rcvbuf: u32) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(rcvbuf).unwrap();
    let mut stream = socket.connect(serve.addr.parse().unwrap()).await.unwrap();
    let heads: String = urls
        .iter()
        .enumerate()
        .map(|(n, url)| {
            let target = url.split_once(&serve.addr).unwrap().1;
            let close = if n + 1 == urls.len() {
                "Connection: close\r\n"
            } else {
                ""
            };
            format!("GET {target} HTTP/1.1\r\nHost: x\r\n{close}\r\n")
        })
        .collect();
    stream.write_all(heads.as_bytes()).await.unwrap();
    stream
}

/// Reads `stream` to its end, at most `step` bytes every `pause`; with `stop` `(at, for)`,
/// nothing for `for` once `at` bytes were read. The bytes received, heads included.
async fn read_steadily(
    mut stream: TcpStream,
    step: usize,
    pause: Duration,
    mut stop: Option<(usize, Duration)>,
) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; step];
    loop {
        if let Some((at, stopped)) = stop
            && got.len() >= at
        {
            tokio::time::sleep(stopped).await;
            stop = None;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        tokio::time::sleep(pause).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_steady_reader_is_served_whole_and_one_that_stops_is_cut_off() {
    use crate::gateway_sendfile::{body, sent_with_sendfile, split_answers};
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_local(dir.path(), &[("APP_GATEWAY__BODY_IDLE_TIMEOUT", "1")]);
    let http = http();
    // Together more than the 4 MiB a send buffer grows to (`net.ipv4.tcp_wmem`'s default
    // maximum), so a cut cannot hide behind the bytes the kernel still delivers after it.
    let size = 5 * MIB / 2;
    let objects = [
        ("mask/steady/streamed.bin", body(size, 1)),
        ("mask/steady/sendfile.bin", body(size, 2)),
    ];
    for (key, data) in &objects {
        let url = serve.sign(SignedMethod::Put, key);
        assert_eq!(
            put(&http, &url, "application/octet-stream", data.clone()).await,
            200
        );
    }
    // Settled, and the second read once whole: it is sent with `sendfile`; the first, never
    // read yet, is streamed and verified.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let urls = objects
        .each_ref()
        .map(|(key, _)| serve.sign(SignedMethod::Get, key));
    let whole = http
        .get(&urls[1])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(whole == objects[1].1, "the verifying read");
    let before = sent_with_sendfile(&serve).await;
    // 16 KiB every 25 ms at most (about 640 KiB/s): bytes taken in every idle period, yet
    // less than a third of a send buffer grown to 2.5-4 MiB, which is what Linux waits
    // for before it reports a socket writable again.
    let (step, pause) = (16 * 1024, Duration::from_millis(25));
    let steady = pipelined(&serve, &urls, 16 * 1024).await;
    let steady = tokio::spawn(read_steadily(steady, step, pause, None));
    // The same, but after 1 MiB nothing for 4 s (the idle limit is 1 s).
    let stopping = pipelined(&serve, &urls, 16 * 1024).await;
    let stop = Some((MIB, Duration::from_secs(4)));
    let stopping = tokio::spawn(read_steadily(stopping, step, pause, stop));
    let (steady, stopping) = (steady.await.unwrap(), stopping.await.unwrap());
    let bodies = split_answers(&steady);
    let lengths: Vec<usize> = bodies.iter().map(Vec::len).collect();
    eprintln!(
        "two pipelined answers of {size} bytes: the steady reader got bodies of {lengths:?} bytes, \
         the one that stopped {} bytes in all",
        stopping.len()
    );
    assert_eq!(
        lengths,
        [size, size],
        "a slow but steady reader was cut off"
    );
    assert!(bodies[0] == objects[0].1, "the streamed answer");
    assert!(bodies[1] == objects[1].1, "the answer sent with sendfile");
    let sent = sent_with_sendfile(&serve).await - before;
    assert!(
        sent >= (size - 4096) as u64,
        "{sent} bytes sent with sendfile"
    );
    assert!(
        stopping.len() < 2 * size,
        "a reader that stopped was served in full"
    );
}
