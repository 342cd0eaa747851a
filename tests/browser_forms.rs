//! A real browser (headless Chromium) submits HTML forms built from `Storage::signed_post`
//! to the gateway and to SeaweedFS: a file within the length range lands; the same form
//! with a file over the range, or with its key edited to lie outside the prefix, is
//! refused and nothing is stored. The forms are real form submissions (into iframes),
//! not fetch calls.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use maskstore_backends::{PostOptions, PostTarget, Storage};
use maskstore_core::{KeyPrefix, ObjectKey};
use maskstore_testkit::servers;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::browser::{Browser, chromium};
use crate::post_forms::FormGateway;

const PAGE: &str = r#"<!doctype html>
<html><body><script>
(async () => {
  const report = (r) => fetch('/report', {method: 'POST',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify(r)});
  try {
    const spec = await (await fetch('/form')).json();
    for (const c of spec.cases) {
      const frame = document.createElement('iframe');
      frame.name = 'sink-' + c.name;
      document.body.appendChild(frame);
      // A 204 navigates nowhere; a refusal loads its answer into the frame.
      frame.addEventListener('load', () => report({case: c.name, loaded: true}));
      const form = document.createElement('form');
      form.action = spec.url;
      form.method = 'post';
      form.enctype = 'multipart/form-data';
      form.target = frame.name;
      for (const [name, value] of spec.fields) {
        const input = document.createElement('input');
        input.type = 'hidden';
        input.name = name;
        input.value = (name === 'key' && c.key) ? c.key : value;
        form.appendChild(input);
      }
      const file = document.createElement('input');
      file.type = 'file';
      file.name = 'file';
      const chosen = new DataTransfer();
      chosen.items.add(new File([new Uint8Array(c.size).fill(120)], c.name + '.bin'));
      file.files = chosen.files;
      form.appendChild(file);
      document.body.appendChild(form);
      form.submit();
    }
    await report({submitted: true});
  } catch (e) {
    await report({error: String(e)});
  }
})();
</script></body></html>"#;

#[derive(Clone)]
struct Page {
    spec: Value,
    reports: mpsc::Sender<Value>,
}

/// Serves the page, lets the browser submit the three forms, and returns once it has
/// submitted them and both refusals have loaded (or 60 s passed: the caller's asserts say
/// what was missing).
async fn submit_forms(storage: &Storage, prefix: &str) -> Vec<Value> {
    let target = PostTarget::Prefix(KeyPrefix::parse(prefix).unwrap());
    let options = PostOptions {
        length: Some(1..=10),
        ..PostOptions::default()
    };
    let signed = storage.signed_post(&target, None, &options).await.unwrap();
    let outside = format!("{}${{filename}}", prefix.replace("/in/", "/out/"));
    let spec = json!({
        "url": signed.url,
        "fields": signed.fields,
        "cases": [
            {"name": "within", "size": 5},
            {"name": "over", "size": 11},
            {"name": "outside", "size": 3, "key": outside},
        ],
    });
    let (tx, mut rx) = mpsc::channel(8);
    let page = Page { spec, reports: tx };
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/form",
            get(|State(page): State<Page>| async move { Json(page.spec) }),
        )
        .route(
            "/report",
            post(
                |State(page): State<Page>, Json(body): Json<Value>| async move {
                    let _ = page.reports.send(body).await;
                },
            ),
        )
        .with_state(page);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::open(&format!("http://localhost:{port}/"), profile.path());
    let mut reports = Vec::new();
    let wanted = |reports: &[Value]| {
        let loaded = reports.iter().filter(|r| r["loaded"] == true).count();
        reports
            .iter()
            .any(|r| r["submitted"] == true || r["error"].is_string())
            && loaded >= 2
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !wanted(&reports) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(report)) => reports.push(report),
            _ => break,
        }
    }
    drop(browser);
    server.abort();
    reports
}

/// The browser's forms held to their policy: within stored, over and outside not.
async fn check(storage: &Storage, prefix: &str, reports: &[Value]) {
    println!("browser forms: {reports:?}");
    assert!(
        reports.iter().any(|r| r["submitted"] == true),
        "{reports:?}"
    );
    let loaded: Vec<&str> = reports
        .iter()
        .filter(|r| r["loaded"] == true)
        .filter_map(|r| r["case"].as_str())
        .collect();
    assert!(
        loaded.contains(&"over") && loaded.contains(&"outside"),
        "{reports:?}"
    );
    let key = |name: String| ObjectKey::parse(name).unwrap();
    let within = key(format!("{prefix}within.bin"));
    // The 204 loads nothing: wait for the object to land.
    let mut stored = None;
    for _ in 0..300 {
        if let Ok(object) = storage.get(&within).await {
            stored = Some(object.data);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stored.as_deref(),
        Some(&b"xxxxx"[..]),
        "the file within the range landed"
    );
    assert!(
        storage
            .head(&key(format!("{prefix}over.bin")))
            .await
            .is_err()
    );
    let outside = prefix.replace("/in/", "/out/");
    assert!(
        storage
            .head(&key(format!("{outside}outside.bin")))
            .await
            .is_err()
    );
    storage.delete(&within).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_uploads_through_an_html_form_to_the_gateway() {
    if chromium().is_none() {
        return;
    }
    let gw = FormGateway::start(|_| {}).await;
    let prefix = "mask/browser/in/";
    let reports = submit_forms(&gw.storage, prefix).await;
    check(&gw.storage, prefix, &reports).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_uploads_through_an_html_form_to_seaweedfs() {
    if chromium().is_none() {
        return;
    }
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let storage = server.storage();
    let prefix = format!(
        "{}browser-{:016x}/in/",
        storage.prefix().as_str(),
        rand::random::<u64>()
    );
    let reports = submit_forms(&storage, &prefix).await;
    check(&storage, &prefix, &reports).await;
}
