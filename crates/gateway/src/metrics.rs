//! Prometheus: the recorder, the names of the gateway's own metrics, their labels from
//! fixed sets, and what a scrape renders.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maskstore_backends::monitor::Monitor;
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

/// The method as a metric label: one of a fixed set, never the client's text (hyper
/// accepts any token as a method).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The status as a metric label: a code the gateway itself answered with, so a fixed set.
fn status_label(status: StatusCode) -> &'static str {
    // Codes outside this list are folded into their class.
    const KNOWN: &[(u16, &str)] = &[
        (200, "200"),
        (204, "204"),
        (206, "206"),
        (304, "304"),
        (400, "400"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (409, "409"),
        (412, "412"),
        (413, "413"),
        (414, "414"),
        (416, "416"),
        (500, "500"),
        (501, "501"),
        (503, "503"),
    ];
    let code = status.as_u16();
    KNOWN
        .iter()
        .find(|(known, _)| *known == code)
        .map(|(_, label)| *label)
        .unwrap_or(match code {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        })
}

/// Counts and times every request the gateway answers, by method and status: a layer of
/// its own, as `axum::middleware::from_fn` would box each request's future and clone the
/// service behind it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Track;

impl<S> tower::Layer<S> for Track {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked { inner }
    }
}

/// The service `inner` under [`Track`].
#[derive(Debug, Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
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
            method: method_label(request.method()),
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer under way, counted and timed when it is ready.
    pub(crate) struct Timed<F> {
        started: std::time::Instant,
        method: &'static str,
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
            let (method, status) = (*this.method, status_label(response.status()));
            metrics::counter!(GATEWAY_REQUESTS_TOTAL, "method" => method, "status" => status)
                .increment(1);
            metrics::histogram!(GATEWAY_REQUEST_DURATION, "method" => method)
                .record(this.started.elapsed().as_secs_f64());
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
