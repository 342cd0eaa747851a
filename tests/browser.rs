//! A real browser (headless Debian Chromium) on a page from another origin asks its
//! server for signed URLs, uploads with a signed PUT and downloads with a signed GET —
//! against the gateway over local disk, and against SeaweedFS with the guide's CORS rules
//! on its bucket. It passes only if the browser's CORS checks pass; a page from an origin
//! not on the list is refused by the browser.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use maskstore_backends::{SignOptions, SignedMethod, Storage};
use maskstore_core::Config;
use maskstore_testkit::servers;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const PAGE: &str = r#"<!doctype html>
<html><body><pre id="out">running</pre><script>
(async () => {
  const report = (r) => fetch('/report', {method: 'POST',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify(r)});
  try {
    const urls = await (await fetch('/urls')).json();
    const body = 'mask uploaded by the browser ' + urls.nonce;
    const put = await fetch(urls.put, {method: 'PUT',
      headers: {'Content-Type': urls.content_type}, body});
    if (!put.ok) throw new Error('PUT answered ' + put.status);
    const got = await fetch(urls.get);
    if (!got.ok) throw new Error('GET answered ' + got.status);
    const text = await got.text();
    await report({ok: text === body, text, etag: got.headers.get('ETag')});
  } catch (e) {
    await report({ok: false, error: String(e)});
  }
})();
</script></body></html>"#;

pub(crate) fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "Chromium is missing at {}; .ci/run installs it with scripts/install-chromium",
            path.display()
        );
    }
    eprintln!(
        "skipping the browser test: no Chromium at {} (scripts/install-chromium)",
        path.display()
    );
    None
}

#[derive(Clone)]
struct Page {
    storage: Storage,
    key: maskstore_core::ObjectKey,
    nonce: String,
    reports: mpsc::Sender<Value>,
}

async fn urls(State(page): State<Page>) -> Json<Value> {
    let bound = SignOptions {
        content_type: Some("image/png".into()),
        content_length: None,
        sha256: None,
    };
    let put = page
        .storage
        .signed_url(SignedMethod::Put, &page.key, None, &bound)
        .await
        .unwrap();
    let get = page
        .storage
        .signed_url(SignedMethod::Get, &page.key, None, &SignOptions::default())
        .await
        .unwrap();
    Json(json!({"put": put.url, "get": get.url, "content_type": "image/png", "nonce": page.nonce}))
}

async fn report(State(page): State<Page>, Json(body): Json<Value>) {
    let _ = page.reports.send(body).await;
}

/// Serves the page on `localhost:<port>` and returns what the browser reported.
async fn run_page(storage: &Storage, port: u16) -> (Value, String) {
    let nonce = format!("{:016x}", rand::random::<u64>());
    let (tx, mut rx) = mpsc::channel(1);
    let page = Page {
        storage: storage.clone(),
        key: storage.key(&format!("browser/{nonce}.png")).unwrap(),
        nonce: nonce.clone(),
        reports: tx,
    };
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/urls", get(urls))
        .route("/report", post(report))
        .with_state(page);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::open(&format!("http://localhost:{port}/"), profile.path());
    let reported = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("the browser reported within 60 s")
        .expect("a report");
    drop(browser);
    server.abort();
    (reported, format!("mask uploaded by the browser {nonce}"))
}

pub(crate) struct Browser(Child);

impl Browser {
    pub(crate) fn open(url: &str, profile: &std::path::Path) -> Browser {
        let chromium = chromium().expect("checked by the caller");
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        Browser(child)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_uploads_and_downloads_through_the_gateway_on_local_disk() {
    if chromium().is_none() {
        return;
    }
    let page_port = crate::support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::local(dir.path().join("data"));
    config.cors.allowed_origins = vec![format!("http://localhost:{page_port}")];
    let storage = maskstore_testkit::served(config).await;

    let (report, expected) = run_page(&storage, page_port).await;
    println!("browser via gateway: {report}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["text"], expected.as_str());
    assert!(
        report["etag"].is_string(),
        "ETag not exposed to the page: {report}"
    );

    // The same page from an origin not on the list: the browser refuses the upload.
    let (report, _) = run_page(&storage, crate::support::free_port()).await;
    println!("browser from a foreign origin: {report}");
    assert_eq!(report["ok"], false, "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap_or("")
            .contains("Failed to fetch"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_uploads_and_downloads_directly_to_seaweedfs() {
    if chromium().is_none() {
        return;
    }
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let port: u16 = std::env::var("MASKSTORE_TEST_BROWSER_ORIGIN_PORT")
        .expect("scripts/test-servers exports the origin its CORS rules allow")
        .parse()
        .unwrap();
    let storage = server.storage();
    let (report, expected) = run_page(&storage, port).await;
    println!("browser via SeaweedFS: {report}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["text"], expected.as_str());
    assert!(
        report["etag"].is_string(),
        "ETag not exposed to the page: {report}"
    );
    let key = storage
        .key(&format!(
            "browser/{}.png",
            expected.rsplit(' ').next().unwrap()
        ))
        .unwrap();
    let stored = storage.head(&key).await.unwrap();
    assert_eq!(stored.content_type.as_deref(), Some("image/png"));
    storage.delete(&key).await.unwrap();
}
