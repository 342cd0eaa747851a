//! Prometheus: the recorder, the names of the gateway's own metrics, their labels from
//! fixed sets, and what a scrape renders.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maskstore_backends::monitor::Monitor;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::GatewayError;

/// How often histogram samples are folded into their buckets, so they do not pile up
/// between scrapes.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs a Prometheus recorder as the process's `metrics` recorder, with latency
/// buckets from 1 ms to 60 s, and a thread that runs its upkeep every 5 s.
pub fn install_prometheus() -> Result<PrometheusHandle, GatewayError> {
    const BUCKETS: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| GatewayError::Metrics(e.to_string()))?;
    // Its address, read on a thread of its own (no thread-local recorder there): the
    // recorder request metrics keep their series' handles for.
    if let Ok(address) = std::thread::spawn(current_recorder).join() {
        let _ = INSTALLED.set(address);
    }
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".to_string())
        .spawn(move || {
            loop {
                std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })
        .map_err(|e| GatewayError::Metrics(format!("cannot start the upkeep thread: {e}")))?;
    Ok(handle)
}

/// Metric: requests refused before they proved a valid signature, by `reason` (see the
/// crate docs); they are not the store's operations, so the alarms do not count them.
pub const GATEWAY_REFUSED_TOTAL: &str = "maskstore_gateway_refused_total";
/// Metric: the gateway's HTTP requests by method and status.
pub const GATEWAY_REQUESTS_TOTAL: &str = "maskstore_gateway_requests_total";
/// Metric: the store's operations per second over the surge alarm's recent window
/// (`window="recent"`) and over its baseline (`window="baseline"`).
pub const REQUEST_RATE: &str = "maskstore_request_rate_per_second";
/// Metric: bytes of verified local objects the gateway sent with `sendfile` (from the page
/// cache to the socket, not through its memory).
pub const GATEWAY_SENDFILE_BYTES_TOTAL: &str = "maskstore_gateway_sendfile_bytes_total";
/// Metric: the gateway's HTTP request latency.
pub const GATEWAY_REQUEST_DURATION: &str = "maskstore_gateway_request_duration_seconds";

/// The method labels, in the order of [`method_index`].
const METHOD_LABELS: [&str; 6] = ["GET", "PUT", "HEAD", "DELETE", "OPTIONS", "other"];

/// The method as a metric label: one of a fixed set, never the client's text (hyper
/// accepts any token as a method).
#[cfg(test)]
fn method_label(method: &Method) -> &'static str {
    METHOD_LABELS[method_index(method)]
}

/// The place of a method's label in [`METHOD_LABELS`].
fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::PUT => 1,
        Method::HEAD => 2,
        Method::DELETE => 3,
        Method::OPTIONS => 4,
        _ => 5,
    }
}

/// The codes the gateway itself answers with, each its own label; any other is folded
/// into its class (the last five labels).
const KNOWN_STATUSES: [u16; 17] = [
    200, 204, 206, 304, 400, 403, 404, 405, 408, 409, 412, 413, 414, 416, 500, 501, 503,
];

/// The status labels, in the order of [`status_index`]: the known codes, then the classes.
const STATUS_LABELS: [&str; 22] = [
    "200", "204", "206", "304", "400", "403", "404", "405", "408", "409", "412", "413", "414",
    "416", "500", "501", "503", "1xx", "2xx", "3xx", "4xx", "5xx",
];

/// The status as a metric label: a code the gateway itself answered with, so a fixed set.
#[cfg(test)]
fn status_label(status: StatusCode) -> &'static str {
    STATUS_LABELS[status_index(status)]
}

/// The place of a status's label in [`STATUS_LABELS`].
fn status_index(status: StatusCode) -> usize {
    let code = status.as_u16();
    let class = match code {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    };
    KNOWN_STATUSES
        .iter()
        .position(|known| *known == code)
        .unwrap_or(KNOWN_STATUSES.len() + class)
}

/// The address of the recorder [`install_prometheus`] installed as the process's: it is
/// never replaced nor freed, so no other recorder ever has this address.
static INSTALLED: OnceLock<usize> = OnceLock::new();

/// The address of the recorder in effect on this thread (its own, else the process's).
fn current_recorder() -> usize {
    metrics::with_recorder(|recorder| std::ptr::from_ref(recorder).cast::<()>() as usize)
}

/// The handles of the request metrics, each registered with the recorder when first used
/// (a series appears once it counts a request, as when each request named its labels) and
/// kept: a request then counts without looking its series up. They are kept for one
/// recorder, the process's that [`install_prometheus`] installed; under any other (none
/// yet, a thread's own) each request names its series, so it counts wherever it would have.
struct Handles {
    /// The address of the recorder the handles are kept for, once known.
    kept_for: &'static OnceLock<usize>,
    requests: [[OnceLock<Counter>; STATUS_LABELS.len()]; METHOD_LABELS.len()],
    durations: [OnceLock<Histogram>; METHOD_LABELS.len()],
}

impl Default for Handles {
    fn default() -> Handles {
        Handles::kept_for(&INSTALLED)
    }
}

impl Handles {
    /// Handles kept for the recorder whose address `kept_for` holds.
    fn kept_for(kept_for: &'static OnceLock<usize>) -> Handles {
        Handles {
            kept_for,
            requests: Default::default(),
            durations: Default::default(),
        }
    }

    /// Counts an answer of `status` to a request of `method` that took `took`.
    fn record(&self, method: usize, status: usize, took: Duration) {
        let (method_label, status_label) = (METHOD_LABELS[method], STATUS_LABELS[status]);
        let counter = || metrics::counter!(GATEWAY_REQUESTS_TOTAL, "method" => method_label, "status" => status_label);
        let histogram = || metrics::histogram!(GATEWAY_REQUEST_DURATION, "method" => method_label);
        if self.kept_for.get() != Some(&current_recorder()) {
            counter().increment(1);
            histogram().record(took.as_secs_f64());
            return;
        }
        self.requests[method][status]
            .get_or_init(counter)
            .increment(1);
        self.durations[method]
            .get_or_init(histogram)
            .record(took.as_secs_f64());
    }
}

/// Counts and times every request the gateway answers, by method and status: a layer of
/// its own, as `axum::middleware::from_fn` would box each request's future and clone the
/// service behind it. Each layer keeps the handles of its series.
#[derive(Clone, Default)]
pub(crate) struct Track {
    handles: Arc<Handles>,
}

impl fmt::Debug for Track {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Track").finish_non_exhaustive()
    }
}

impl<S> tower::Layer<S> for Track {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            handles: Arc::clone(&self.handles),
        }
    }
}

/// The service `inner` under [`Track`].
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    handles: Arc<Handles>,
}

impl<S, B> tower::Service<Request<B>> for Tracked<S>
where
    S: tower::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        Timed {
            started: std::time::Instant::now(),
            method: method_index(request.method()),
            handles: Arc::clone(&self.handles),
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer under way, counted and timed when it is ready.
    pub(crate) struct Timed<F> {
        started: std::time::Instant,
        method: usize,
        handles: Arc<Handles>,
        #[pin]
        inner: F,
    }
}

impl<F, E> Future for Timed<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &answer {
            let status = status_index(response.status());
            let took = this.started.elapsed();
            this.handles.record(*this.method, status, took);
        }
        Poll::Ready(answer)
    }
}

/// `GET /metrics`: what `handle` recorded, with the rates the surge alarm compares set as of
/// this scrape (they are computed, not counted, so nothing else updates them).
pub(crate) fn render(monitor: &Monitor, handle: &PrometheusHandle) -> String {
    let rates = monitor.request_rates();
    metrics::gauge!(REQUEST_RATE, "window" => "recent").set(rates.recent);
    if let Some(baseline) = rates.baseline {
        metrics::gauge!(REQUEST_RATE, "window" => "baseline").set(baseline);
    }
    handle.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_handles_count_each_request_under_its_labels_and_add_no_series() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let rendered = recorder.handle();
        static OURS: OnceLock<usize> = OnceLock::new();
        metrics::with_local_recorder(&recorder, || {
            OURS.set(current_recorder()).unwrap();
            let handles = Handles::kept_for(&OURS);
            let (get, put) = (method_index(&Method::GET), method_index(&Method::PUT));
            let took = Duration::from_millis(3);
            handles.record(get, status_index(StatusCode::OK), took);
            handles.record(get, status_index(StatusCode::OK), took);
            handles.record(put, status_index(StatusCode::PRECONDITION_FAILED), took);
            handles.record(get, status_index(StatusCode::IM_A_TEAPOT), took);
            // Kept: later requests count without naming their series.
            assert!(
                handles.requests[get][status_index(StatusCode::OK)]
                    .get()
                    .is_some()
            );
        });
        let text = rendered.render();
        let series = |name: &str| -> Vec<&str> {
            let lines = text.lines().filter(|l| l.starts_with(name));
            lines.filter(|l| !l.contains("quantile")).collect()
        };
        let mut requests = series("maskstore_gateway_requests_total{");
        requests.sort();
        assert_eq!(
            requests,
            [
                r#"maskstore_gateway_requests_total{method="GET",status="200"} 2"#,
                r#"maskstore_gateway_requests_total{method="GET",status="4xx"} 1"#,
                r#"maskstore_gateway_requests_total{method="PUT",status="412"} 1"#,
            ],
            "{text}"
        );
        let mut timed = series("maskstore_gateway_request_duration_seconds_count");
        timed.sort();
        assert_eq!(
            timed,
            [
                r#"maskstore_gateway_request_duration_seconds_count{method="GET"} 3"#,
                r#"maskstore_gateway_request_duration_seconds_count{method="PUT"} 1"#,
            ],
            "{text}"
        );
    }

    /// The gateway is a library: a recorder put in place after the router served requests
    /// (a global one installed late, a test's own) gets the requests that follow, as when
    /// each request named its series, and none of them is lost to the recorder (or the
    /// lack of one) a series was first counted under.
    #[test]
    fn a_recorder_put_in_place_later_counts_the_requests_that_follow() {
        let handles = Handles::default();
        let (get, ok) = (method_index(&Method::GET), status_index(StatusCode::OK));
        let took = Duration::from_millis(3);
        // No recorder yet: counted nowhere.
        handles.record(get, ok, took);
        for served in [1, 2] {
            let recorder = PrometheusBuilder::new().build_recorder();
            let rendered = recorder.handle();
            metrics::with_local_recorder(&recorder, || {
                for _ in 0..served {
                    handles.record(get, ok, took);
                }
            });
            let text = rendered.render();
            let count = format!(
                r#"maskstore_gateway_requests_total{{method="GET",status="200"}} {served}"#
            );
            assert!(text.lines().any(|l| l == count), "{count} in:\n{text}");
            let timed = format!(
                r#"maskstore_gateway_request_duration_seconds_count{{method="GET"}} {served}"#
            );
            assert!(text.lines().any(|l| l == timed), "{timed} in:\n{text}");
        }
        // None was kept for a recorder other than the process's.
        assert!(handles.requests[get][ok].get().is_none());
    }

    #[test]
    fn metric_labels_come_from_fixed_sets() {
        for (method, label) in [
            ("GET", "GET"),
            ("PUT", "PUT"),
            ("HEAD", "HEAD"),
            ("DELETE", "DELETE"),
            ("OPTIONS", "OPTIONS"),
            ("POST", "other"),
            ("get", "other"),
            ("XYZZY-0123456789", "other"),
        ] {
            assert_eq!(
                method_label(&Method::from_bytes(method.as_bytes()).unwrap()),
                label,
                "{method}"
            );
        }
        assert_eq!(status_label(StatusCode::OK), "200");
        assert_eq!(status_label(StatusCode::URI_TOO_LONG), "414");
        assert_eq!(status_label(StatusCode::IM_A_TEAPOT), "4xx");
        assert_eq!(status_label(StatusCode::GATEWAY_TIMEOUT), "5xx");
    }
}
