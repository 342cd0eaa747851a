//! Metrics, health alarms and secrets in logs, with `maskstore serve` as a process.

use std::path::Path;
use std::time::Duration;

use maskstore_backends::SignedMethod;
use maskstore_core::ObjectKey;
use maskstore_testkit::servers;

use crate::support::{Serve, maskstore, succeeded, text};

const SIGNING_SECRET: &str = "monitoring-test-signing-secret-0123456789";

/// `maskstore serve` on the memory provider.
fn serve_memory(dir: &Path, extra: &[(&str, &str)]) -> Serve {
    let mut vars = vec![
        ("APP_OBJECT_STORAGE__PROVIDER", "memory"),
        ("APP_GATEWAY__SIGNING_SECRET", SIGNING_SECRET),
    ];
    vars.extend_from_slice(extra);
    Serve::start(dir, &vars)
}

async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    let text = http.get(url).send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url} answered {text:?}: {e}"))
}

/// The gateway's `/metrics` page.
async fn scrape(http: &reqwest::Client, base: &str) -> String {
    let url = format!("{base}/metrics");
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// The value of a Prometheus sample whose line contains every one of `parts`.
fn sample(metrics: &str, name: &str, parts: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_count_what_a_run_did_and_health_names_the_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_memory(dir.path(), &[("APP_MONITORING__ALARM_MIN_REQUESTS", "10")]);
    let http = reqwest::Client::new();

    let health = get_json(&http, &format!("{}/health", serve.base)).await;
    assert_eq!(health["status"], "ok");

    for i in 0..12 {
        let key = format!("mask/m/{i}.png");
        let put = http
            .put(serve.sign(SignedMethod::Put, &key))
            .body(vec![7u8; 1000])
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
        let get = http
            .get(serve.sign(SignedMethod::Get, &key))
            .send()
            .await
            .unwrap();
        assert_eq!(get.bytes().await.unwrap().len(), 1000);
    }
    for i in 0..6 {
        let missing = http
            .get(serve.sign(SignedMethod::Get, &format!("mask/missing/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status().as_u16(), 404);
    }
    let forged = serve
        .sign(SignedMethod::Get, "mask/m/0.png")
        .replace("signature=", "signature=00");
    assert_eq!(
        http.get(forged).send().await.unwrap().status().as_u16(),
        403
    );

    let metrics = scrape(&http, &serve.base).await;
    let ops = "maskstore_operations_total";
    // Gateway uploads below the multipart threshold are one PUT each.
    assert_eq!(
        sample(&metrics, ops, &["operation=\"put\"", "outcome=\"success\""]),
        12.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, ops, &["operation=\"get\"", "outcome=\"success\""]),
        12.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            ops,
            &["operation=\"get\"", "outcome=\"client_error\""]
        ),
        6.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "maskstore_bytes_total",
            &["operation=\"put\"", "direction=\"out\""]
        ),
        12_000.0
    );
    assert_eq!(
        sample(
            &metrics,
            "maskstore_bytes_total",
            &["operation=\"get\"", "direction=\"in\""]
        ),
        12_000.0
    );
    // The surge alarm's recent rate: the few dozen operations above, within its minute.
    let recent = sample(
        &metrics,
        "maskstore_request_rate_per_second",
        &["window=\"recent\""],
    );
    assert!(recent > 0.3 && recent < 1.0, "{metrics}");
    let requests = "maskstore_gateway_requests_total";
    assert_eq!(
        sample(&metrics, requests, &["method=\"PUT\"", "status=\"200\""]),
        12.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, requests, &["method=\"GET\"", "status=\"404\""]),
        6.0
    );
    assert_eq!(
        sample(&metrics, requests, &["method=\"GET\"", "status=\"403\""]),
        1.0
    );
    assert!(
        metrics.contains("maskstore_operation_duration_seconds_bucket"),
        "latency histogram"
    );

    // 6 client errors in 30 operations is over 5 % (the forged URL is not the store's):
    // the client alarm fires, the server one not.
    let health = get_json(&http, &format!("{}/health", serve.base)).await;
    assert_eq!(health["status"], "degraded", "{health}");
    let names: Vec<&str> = health["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["client_error_rate"], "{health}");
    serve.stop();
}

/// Requests refused before they proved a valid signature (forged, too long a query) go to
/// `maskstore_gateway_refused_total{reason}`, never to the store's alarms: nobody raises
/// them without a URL. A signed request refused before the store (an upload over the size
/// limit) is a client of the store erring, and counts.
#[tokio::test]
async fn refusals_count_for_the_alarms_only_once_the_signature_held() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_memory(
        dir.path(),
        &[
            ("APP_MONITORING__ALARM_MIN_REQUESTS", "10"),
            ("APP_GATEWAY__MAX_UPLOAD_BYTES", "1000"),
        ],
    );
    let http = reqwest::Client::new();
    for i in 0..20 {
        let put = http
            .put(serve.sign(SignedMethod::Put, &format!("mask/ok/{i}.png")))
            .body(vec![1u8; 10])
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
    }
    let forged = serve
        .sign(SignedMethod::Get, "mask/ok/0.png")
        .replace("signature=", "signature=00");
    for _ in 0..2000 {
        let status = http.get(&forged).send().await.unwrap().status();
        assert_eq!(status.as_u16(), 403);
    }
    let too_long = format!(
        "{}&pad={}",
        serve.sign(SignedMethod::Get, "mask/ok/0.png"),
        "x".repeat(4000)
    );
    assert_eq!(
        http.get(too_long).send().await.unwrap().status().as_u16(),
        414
    );
    let health = get_json(&http, &format!("{}/health", serve.base)).await;
    assert_eq!(
        health["status"], "ok",
        "2,001 unsigned junk requests: {health}"
    );
    let metrics = scrape(&http, &serve.base).await;
    let refused = "maskstore_gateway_refused_total";
    assert_eq!(
        sample(&metrics, refused, &["reason=\"signature\""]),
        2000.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, refused, &["reason=\"query_too_long\""]),
        1.0
    );

    for _ in 0..2 {
        let too_large = http
            .put(serve.sign(SignedMethod::Put, "mask/big.png"))
            .body(vec![0u8; 2000])
            .send()
            .await
            .unwrap();
        assert_eq!(too_large.status().as_u16(), 413);
    }
    // 2 signed refusals in 22 requests is 9 % > 5 %.
    let health = get_json(&http, &format!("{}/health", serve.base)).await;
    assert_eq!(health["status"], "degraded", "{health}");
    let names: Vec<&str> = health["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["client_error_rate"], "{health}");
    serve.stop();
}

/// Everything a traced run prints — serve handling signed URLs, and the CLI against
/// SeaweedFS — holds no secret, signing key or URL signature.
#[tokio::test]
async fn traced_output_never_contains_secrets_or_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_memory(dir.path(), &[("MASKSTORE_LOG", "trace")]);
    let http = reqwest::Client::new();
    let put_url = serve.sign(SignedMethod::Put, "mask/secret-test/a.png");
    let get_url = serve.sign(SignedMethod::Get, "mask/secret-test/a.png");
    assert!(
        http.put(&put_url)
            .body("x")
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert!(
        http.get(&get_url)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let bad = get_url.replace("mask/secret-test", "mask/secret-tost");
    assert_eq!(http.get(&bad).send().await.unwrap().status().as_u16(), 403);
    let output = serve.stop();
    assert!(
        output.contains("TRACE") || output.contains("DEBUG"),
        "the run was traced: {output}"
    );
    let signatures: Vec<&str> = [&put_url, &get_url]
        .iter()
        .map(|u| u.rsplit("x-maskstore-signature=").next().unwrap())
        .collect();
    assert!(
        !output.contains(SIGNING_SECRET),
        "signing secret in the output"
    );
    for signature in signatures {
        assert!(!output.contains(signature), "a URL signature in the output");
    }

    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let mut env = server.app_env();
    env.push(("MASKSTORE_LOG".into(), "trace".into()));
    env.push(("APP_GATEWAY__SIGNING_SECRET".into(), SIGNING_SECRET.into()));
    for args in [&["check"][..], &["ls"][..], &["config", "show"][..]] {
        let out = maskstore(dir.path(), args, &env);
        succeeded(&out);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            !all.contains(server.secret_key.expose()),
            "{args:?} printed the S3 secret"
        );
        assert!(
            !all.contains(SIGNING_SECRET),
            "{args:?} printed the signing secret"
        );
        assert!(
            !all.contains("Signature="),
            "{args:?} printed a signature: {all}"
        );
    }
}

/// One classification behind every status and metric: a range outside the object is the
/// browser's mistake (416), counted as a client error, and never trips the 5xx alarm.
#[tokio::test]
async fn an_unsatisfiable_range_is_a_client_error_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_memory(dir.path(), &[("APP_MONITORING__ALARM_MIN_REQUESTS", "3")]);
    let http = reqwest::Client::new();
    let key = "mask/r/a.png";
    let put = http
        .put(serve.sign(SignedMethod::Put, key))
        .body(vec![1u8; 100])
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    for _ in 0..5 {
        let ranged = http
            .get(serve.sign(SignedMethod::Get, key))
            .header("Range", "bytes=500-")
            .send()
            .await
            .unwrap();
        assert_eq!(ranged.status().as_u16(), 416);
    }
    // The gateway resolves the range against the object's size (S3's rules), so the store
    // was asked only to describe it; the 416 is counted for the alarms as a client error.
    let metrics = scrape(&http, &serve.base).await;
    let ops = "maskstore_operations_total";
    assert_eq!(
        sample(
            &metrics,
            "maskstore_gateway_requests_total",
            &["method=\"GET\"", "status=\"416\""]
        ),
        5.0,
        "{metrics}"
    );
    let health = get_json(&http, &format!("{}/health", serve.base)).await;
    assert_eq!(
        health["status"], "degraded",
        "5 client errors in 11: {health}"
    );
    assert_eq!(
        sample(&metrics, ops, &["outcome=\"server_error\""]),
        0.0,
        "{metrics}"
    );
    let health = get_json(&http, &format!("{}/health", serve.base)).await;
    let names: Vec<&str> = health["alarms"]
        .as_array()
        .map(|a| a.iter().map(|a| a["name"].as_str().unwrap()).collect())
        .unwrap_or_default();
    assert!(!names.contains(&"server_error_rate"), "{health}");
    serve.stop();
}

/// Keys the local disk cannot hold are the client's problem (4xx) through the gateway, and
/// a failure's answer never carries file-system text.
#[tokio::test]
async fn keys_the_local_disk_cannot_hold_answer_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let serve = serve_memory(
        dir.path(),
        &[
            ("APP_OBJECT_STORAGE__PROVIDER", "local"),
            ("APP_OBJECT_STORAGE__ROOT", root.to_str().unwrap()),
        ],
    );
    let http = reqwest::Client::new();
    let put = |key: String| {
        let url = serve.sign(SignedMethod::Put, &key);
        let http = http.clone();
        async move { http.put(url).body("x").send().await.unwrap() }
    };
    assert!(put("mask/k/a".to_string()).await.status().is_success());
    // A key below an existing object, and a key that is a folder of other keys: 409.
    for key in ["mask/k/a/b", "mask/k"] {
        let answer = put(key.to_string()).await;
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap();
        assert_eq!(status, 409, "{key}: {text}");
        assert!(!text.contains(root.to_str().unwrap()), "{text}");
    }
    // A segment longer than a file name may be is no key (255 bytes at most, on every
    // backend), so no URL can be signed for it; one made by hand is refused with 400.
    let long = format!("mask/k/{}", "n".repeat(300));
    assert!(ObjectKey::parse(long.as_str()).is_err());
    let url =
        serve
            .sign(SignedMethod::Put, "mask/k/x")
            .replacen("/mask/k/x?", &format!("/{long}?"), 1);
    assert!(url.contains(&long), "{url}");
    let answer = http.put(url).body("x").send().await.unwrap();
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(!text.contains("os error"), "{text}");
    let metrics = scrape(&http, &serve.base).await;
    assert_eq!(
        sample(
            &metrics,
            "maskstore_operations_total",
            &["outcome=\"server_error\""]
        ),
        0.0,
        "{metrics}"
    );
    serve.stop();
}

/// `ops_per_sec` reads of one object each second for `secs` seconds of `clock`'s time.
async fn drive(
    storage: &maskstore_backends::Storage,
    clock: &maskstore_backends::monitor::ManualClock,
    ops_per_sec: u32,
    secs: u32,
) {
    let key = ObjectKey::parse("mask/surge/one.png").unwrap();
    for _ in 0..secs {
        for _ in 0..ops_per_sec {
            storage.get(&key).await.unwrap();
        }
        clock.advance(Duration::from_secs(1));
    }
}

/// `/health` of an admin router over `storage`, served on a free port.
async fn health_of(storage: maskstore_backends::Storage) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, maskstore_gateway::admin_router(storage, None))
            .await
            .unwrap();
    });
    format!("{base}/health")
}

#[tokio::test]
async fn a_five_fold_burst_trips_the_surge_alarm_on_health_and_it_clears_after() {
    use maskstore_backends::monitor::{AlarmSettings, ManualClock, Monitor};
    let clock = std::sync::Arc::new(ManualClock::new());
    // The defaults: 300 s window, 60 s recent part, factor 3, at least 1 request/s.
    let monitor = Monitor::with_clock(AlarmSettings::default(), clock.clone());
    let storage = maskstore_backends::Storage::memory().with_monitor(std::sync::Arc::new(monitor));
    storage
        .put(
            &ObjectKey::parse("mask/surge/one.png").unwrap(),
            vec![1u8; 10],
        )
        .await
        .unwrap();
    let health = health_of(storage.clone()).await;
    let http = reqwest::Client::new();

    // A steady 4 requests/s for ten minutes: never an alarm.
    for _ in 0..20 {
        drive(&storage, &clock, 4, 30).await;
        let body = get_json(&http, &health).await;
        assert_eq!(body["status"], "ok", "{body}");
    }
    // A five-fold burst: 20 requests/s for a minute.
    drive(&storage, &clock, 20, 45).await;
    let during = get_json(&http, &health).await;
    assert_eq!(during["status"], "degraded", "{during}");
    assert_eq!(during["alarms"][0]["name"], "request_surge", "{during}");
    let baseline = during["alarms"][0]["baseline"].as_f64().unwrap();
    assert!((baseline - 4.0).abs() < 0.1, "{during}");
    drive(&storage, &clock, 20, 15).await;
    let end = get_json(&http, &health).await;
    assert_eq!(end["alarms"][0]["name"], "request_surge", "{end}");
    assert!(
        end["alarms"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/s > 12.2"),
        "{end}"
    );
    // Back to 4/s: once the burst has left the recent minute, the alarm clears.
    drive(&storage, &clock, 4, 60).await;
    let after = get_json(&http, &health).await;
    assert_eq!(after["status"], "ok", "{after}");
    // Nothing in between fired another alarm.
    assert_eq!(storage.monitor().alarms().len(), 0);
}

#[tokio::test]
async fn a_steady_high_rate_never_trips_the_surge_alarm() {
    use maskstore_backends::monitor::{AlarmSettings, ManualClock, Monitor};
    let clock = std::sync::Arc::new(ManualClock::new());
    let monitor = Monitor::with_clock(AlarmSettings::default(), clock.clone());
    let storage = maskstore_backends::Storage::memory().with_monitor(std::sync::Arc::new(monitor));
    storage
        .put(
            &ObjectKey::parse("mask/surge/one.png").unwrap(),
            vec![1u8; 10],
        )
        .await
        .unwrap();
    let health = health_of(storage.clone()).await;
    let http = reqwest::Client::new();
    // 100 requests/s from the first second, for 15 minutes, checked every 10 s.
    for _ in 0..90 {
        drive(&storage, &clock, 100, 10).await;
        assert!(storage.monitor().alarms().is_empty());
    }
    let rates = storage.monitor().request_rates();
    assert!((rates.recent - 100.0).abs() < 2.0, "{rates:?}");
    assert!((rates.baseline.unwrap() - 100.0).abs() < 2.0, "{rates:?}");
    assert_eq!(get_json(&http, &health).await["status"], "ok");
}
