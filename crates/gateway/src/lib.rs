//! maskstore-gateway: the HTTP server behind signed URLs of the `local` and `memory`
//! providers, so a browser uploads and downloads masks the same way it does against S3.
//!
//! Every object request needs a valid signed URL (see `maskstore_backends::signing`);
//! there is no unsigned access. A refused request gets 403 and a one-line reason. CORS
//! follows `[cors]`. `GET /health` answers for liveness and reports `degraded`, naming the
//! alarm, while an error rate of the store is above its `[monitoring]` threshold.
//! [`router_with_metrics`] adds `GET /metrics` in Prometheus text format, covering the
//! gateway's own requests (`maskstore_gateway_requests_total{method,status}`,
//! `maskstore_gateway_request_duration_seconds{method}`) and the store's operations
//! (`maskstore_operations_total`, `maskstore_operation_duration_seconds`,
//! `maskstore_bytes_total`).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use maskstore_backends::Storage;
//! use maskstore_core::Config;
//!
//! let config = Config::memory();
//! let storage = Storage::connect(&config)?;
//! // Mount in an application's own axum server…
//! let router = maskstore_gateway::router(storage.clone(), &config.cors)?;
//! // …or serve it alone until Ctrl-C / SIGTERM.
//! let listener = tokio::net::TcpListener::bind(&config.gateway.listen).await?;
//! maskstore_gateway::serve(listener, router, maskstore_gateway::shutdown_signal()).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::TryStreamExt;
use maskstore_backends::signing::{Grant, OBJECT_PATH, SignedMethod};
use maskstore_backends::{
    ByteRange, Error, ErrorKind, ObjectInfo, ReadOptions, Storage, WriteOptions,
};
use maskstore_core::config::CorsConfig;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};

/// What went wrong building the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The storage cannot be served: it issues no gateway URLs (S3 signs its own).
    #[error(
        "the gateway serves the local and memory providers; {backend} storage issues its own signed URLs"
    )]
    NotServable {
        /// The backend name.
        backend: String,
    },
    /// A `[cors]` value is not usable in an HTTP header.
    #[error("cors.{key}: {value:?} cannot be used: {reason}")]
    Cors {
        /// The `[cors]` key.
        key: &'static str,
        /// The offending value.
        value: String,
        /// Why.
        reason: String,
    },
    /// The server failed.
    #[error("the gateway server failed: {0}")]
    Io(#[from] std::io::Error),
    /// The metrics recorder could not be installed.
    #[error("cannot install the Prometheus recorder: {0}")]
    Metrics(String),
}

#[derive(Clone)]
struct Gateway {
    storage: Storage,
}

/// The gateway as a router an application can mount or serve.
pub fn router(storage: Storage, cors: &CorsConfig) -> Result<Router, GatewayError> {
    if storage.gateway_signer().is_none() {
        return Err(GatewayError::NotServable {
            backend: storage.backend().to_string(),
        });
    }
    let health_storage = storage.clone();
    let objects = Router::new()
        .route(&format!("{OBJECT_PATH}{{*key}}"), any(object))
        .layer(cors_layer(cors)?)
        .with_state(Gateway { storage });
    Ok(Router::new()
        .route("/health", get(move || health(health_storage.clone())))
        .merge(objects)
        .layer(axum::middleware::from_fn(track)))
}

/// [`router`] plus `GET /metrics` rendering `handle` (see [`install_prometheus`]).
pub fn router_with_metrics(
    storage: Storage,
    cors: &CorsConfig,
    handle: PrometheusHandle,
) -> Result<Router, GatewayError> {
    let metrics = Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    Ok(router(storage, cors)?.merge(metrics))
}

/// Installs a Prometheus recorder as the process's `metrics` recorder, with latency
/// buckets from 1 ms to 60 s.
pub fn install_prometheus() -> Result<PrometheusHandle, GatewayError> {
    const BUCKETS: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| GatewayError::Metrics(e.to_string()))
}

/// Metric: the gateway's HTTP requests by method and status.
pub const GATEWAY_REQUESTS_TOTAL: &str = "maskstore_gateway_requests_total";
/// Metric: the gateway's HTTP request latency.
pub const GATEWAY_REQUEST_DURATION: &str = "maskstore_gateway_request_duration_seconds";

async fn track(request: Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().to_string();
    let response = next.run(request).await;
    metrics::counter!(GATEWAY_REQUESTS_TOTAL, "method" => method.clone(), "status" => response.status().as_u16().to_string())
        .increment(1);
    metrics::histogram!(GATEWAY_REQUEST_DURATION, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes the requests
/// (uploads included) already in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

fn cors_layer(cors: &CorsConfig) -> Result<CorsLayer, GatewayError> {
    let header_values = |key: &'static str, items: &[String]| {
        items
            .iter()
            .map(|item| {
                HeaderValue::from_str(item).map_err(|e| GatewayError::Cors {
                    key,
                    value: item.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let header_names = |key: &'static str, items: &[String]| {
        items
            .iter()
            .map(|item| {
                HeaderName::from_bytes(item.as_bytes()).map_err(|e| GatewayError::Cors {
                    key,
                    value: item.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let origins = if cors.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(header_values("allowed_origins", &cors.allowed_origins)?)
    };
    let methods = cors
        .allowed_methods
        .iter()
        .map(|m| {
            Method::from_bytes(m.as_bytes()).map_err(|e| GatewayError::Cors {
                key: "allowed_methods",
                value: m.clone(),
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let headers = if cors.allowed_headers.iter().any(|h| h == "*") {
        AllowHeaders::any()
    } else {
        AllowHeaders::list(header_names("allowed_headers", &cors.allowed_headers)?)
    };
    Ok(CorsLayer::new()
        .allow_origin(origins)
        .allow_methods(AllowMethods::list(methods))
        .allow_headers(headers)
        .expose_headers(ExposeHeaders::list(header_names(
            "expose_headers",
            &cors.expose_headers,
        )?))
        .max_age(Duration::from_secs(cors.max_age)))
}

/// `{"status": "ok"}`, or `{"status": "degraded", "alarms": [...]}` naming each alarm.
async fn health(storage: Storage) -> Response {
    let alarms = storage.monitor().alarms();
    let body = if alarms.is_empty() {
        serde_json::json!({"status": "ok"})
    } else {
        serde_json::json!({
            "status": "degraded",
            "alarms": alarms.iter().map(|a| serde_json::json!({
                "name": a.name,
                "rate": a.rate,
                "threshold": a.threshold,
                "requests": a.requests,
                "message": a.to_string(),
            })).collect::<Vec<_>>(),
        })
    };
    let mut response = Response::new(Body::from(format!("{body}\n")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// One line of text with a status: how every refusal and failure is answered.
fn reply(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    (status, format!("{reason}\n")).into_response()
}

/// The HTTP status a failure of this kind is answered with.
fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Precondition => StatusCode::PRECONDITION_FAILED,
        ErrorKind::NotModified => StatusCode::NOT_MODIFIED,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::InvalidRange => StatusCode::RANGE_NOT_SATISFIABLE,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        // The gateway's own credentials or configuration failed, not the client's request.
        ErrorKind::Credentials | ErrorKind::Misconfigured | ErrorKind::Internal => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
    }
}

fn error_reply(e: &Error) -> Response {
    let status = status_of(e.kind());
    if status == StatusCode::NOT_MODIFIED {
        return status.into_response();
    }
    if status.is_server_error() {
        // The message may hold paths, OS errors and backend text: it goes to the log, and
        // the client learns only what kind of failure it was.
        let id = format!("{:016x}", rand::random::<u64>());
        tracing::warn!(error = %e, kind = %e.kind(), id, "gateway request failed");
        return reply(
            status,
            format!(
                "the storage failed ({}); the gateway's log has the details under id {id}",
                e.kind()
            ),
        );
    }
    if e.kind() == ErrorKind::PermissionDenied {
        // The store's refusal names folders and OS errors of the server: keep them in the log.
        tracing::info!(error = %e, "gateway request refused by the store");
        return reply(status, "the storage refused access to this key");
    }
    reply(status, e)
}

async fn object(State(gateway): State<Gateway>, request: Request) -> Response {
    let signer = gateway
        .storage
        .gateway_signer()
        .expect("router() only serves storages with a gateway signer");
    let uri = request.uri().clone();
    let encoded_key = uri.path().strip_prefix(OBJECT_PATH).unwrap_or_default();
    let grant = match signer.verify(
        request.method().as_str(),
        encoded_key,
        uri.query().unwrap_or(""),
        chrono::Utc::now(),
    ) {
        Ok(grant) => grant,
        Err(refusal) => {
            let status = match refusal {
                maskstore_backends::signing::Refusal::InvalidKey(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::FORBIDDEN,
            };
            return reply(status, refusal);
        }
    };
    let storage = &gateway.storage;
    match grant.method {
        SignedMethod::Get => download(storage, &grant, request.headers(), true).await,
        SignedMethod::Head => download(storage, &grant, request.headers(), false).await,
        SignedMethod::Put => upload(storage, &grant, request).await,
        SignedMethod::Delete => match storage.delete(&grant.key).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => error_reply(&e),
        },
    }
}

/// GET and HEAD: streamed, with Range, ETag, Content-Type, Content-Length and
/// conditional requests.
async fn download(storage: &Storage, grant: &Grant, headers: &HeaderMap, body: bool) -> Response {
    let header_text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let range = header_text(header::RANGE).and_then(parse_range);
    let options = ReadOptions {
        range: range.clone(),
        if_match: header_text(header::IF_MATCH).map(unquote),
        if_none_match: header_text(header::IF_NONE_MATCH).map(unquote),
    };
    if !body {
        let info = match storage.head(&grant.key).await {
            Ok(info) => info,
            Err(e) => return error_reply(&e),
        };
        if let Some(etag) = &options.if_none_match
            && info.etag.as_deref() == Some(etag.as_str())
        {
            return StatusCode::NOT_MODIFIED.into_response();
        }
        let mut response = StatusCode::OK.into_response();
        describe(response.headers_mut(), &info);
        set(
            response.headers_mut(),
            header::CONTENT_LENGTH,
            &info.size.to_string(),
        );
        return response;
    }
    let object = match storage.read_stream(&grant.key, options).await {
        Ok(object) => object,
        Err(e) => return error_reply(&e),
    };
    let (status, length) = match range {
        Some(_) => (
            StatusCode::PARTIAL_CONTENT,
            object.range.end - object.range.start,
        ),
        None => (StatusCode::OK, object.info.size),
    };
    let mut response = Response::new(Body::from_stream(object.stream));
    *response.status_mut() = status;
    let out = response.headers_mut();
    describe(out, &object.info);
    set(out, header::CONTENT_LENGTH, &length.to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        let last = object.range.end.saturating_sub(1);
        set(
            out,
            header::CONTENT_RANGE,
            &format!("bytes {}-{last}/{}", object.range.start, object.info.size),
        );
    }
    response
}

/// PUT: the body is streamed into the store with bounded memory; bound headers are checked
/// first.
async fn upload(storage: &Storage, grant: &Grant, request: Request) -> Response {
    let headers = request.headers();
    let sent_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(bound) = &grant.content_type
        && sent_type.as_deref() != Some(bound.as_str())
    {
        return reply(
            StatusCode::FORBIDDEN,
            format!(
                "content type {:?} does not match the {bound:?} this URL was signed for",
                sent_type.as_deref().unwrap_or("(none)")
            ),
        );
    }
    let sent_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(bound) = grant.content_length
        && sent_length != Some(bound)
    {
        return reply(
            StatusCode::FORBIDDEN,
            format!(
                "content length {} does not match the {bound} bytes this URL was signed for",
                sent_length.map_or("(none)".to_string(), |n| n.to_string())
            ),
        );
    }
    let options = WriteOptions {
        content_type: grant.content_type.clone().or(sent_type),
        ..Default::default()
    };
    let expected = grant.content_length.or(sent_length);
    let mut received = 0u64;
    // Set when the request body itself fails (cut off, or longer than announced): the
    // client's fault, answered 400, not the store's.
    let body_failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed = std::sync::Arc::clone(&body_failed);
    let body = request
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other)
        .and_then(move |chunk: bytes::Bytes| {
            received += chunk.len() as u64;
            let too_long = expected.is_some_and(|n| received > n);
            futures::future::ready(if too_long {
                Err(std::io::Error::other(
                    "the body is longer than its Content-Length",
                ))
            } else {
                Ok(chunk)
            })
        })
        .inspect_err(move |_| failed.store(true, std::sync::atomic::Ordering::SeqCst));
    match storage
        .upload_stream(&grant.key, &options, Box::pin(body))
        .await
    {
        Ok(outcome) => {
            let mut response = StatusCode::OK.into_response();
            if let Some(etag) = outcome.etag {
                set(response.headers_mut(), header::ETAG, &quote(&etag));
            }
            response
        }
        Err(e) if body_failed.load(std::sync::atomic::Ordering::SeqCst) => {
            reply(StatusCode::BAD_REQUEST, e)
        }
        Err(e) => error_reply(&e),
    }
}

fn describe(out: &mut HeaderMap, info: &ObjectInfo) {
    if let Some(ct) = &info.content_type {
        set(out, header::CONTENT_TYPE, ct);
    }
    if let Some(etag) = &info.etag {
        set(out, header::ETAG, &quote(etag));
    }
    set(
        out,
        header::LAST_MODIFIED,
        &info
            .last_modified
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
    );
    set(out, header::ACCEPT_RANGES, "bytes");
}

fn set(out: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        out.insert(name, value);
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n`; anything else (several ranges, other units) is
/// ignored and the whole object served, as HTTP allows.
fn parse_range(text: &str) -> Option<ByteRange> {
    let spec = text.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    match (start.trim(), end.trim()) {
        ("", n) => Some(ByteRange::Suffix(n.parse().ok()?)),
        (a, "") => Some(ByteRange::From(a.parse().ok()?)),
        (a, b) => {
            let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            Some(ByteRange::Bounded(a..b.checked_add(1)?))
        }
    }
}

fn quote(etag: &str) -> String {
    if etag.starts_with('"') || etag.starts_with("W/") {
        etag.to_string()
    } else {
        format!("\"{etag}\"")
    }
}

fn unquote(text: &str) -> String {
    let text = text.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    text.trim_matches('"').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_http() {
        assert_eq!(parse_range("bytes=0-4"), Some(ByteRange::Bounded(0..5)));
        assert_eq!(parse_range("bytes=10-"), Some(ByteRange::From(10)));
        assert_eq!(parse_range("bytes=-3"), Some(ByteRange::Suffix(3)));
        assert_eq!(parse_range("bytes=0-1,4-5"), None);
        assert_eq!(parse_range("items=0-1"), None);
        assert_eq!(parse_range("bytes=a-b"), None);
    }

    #[test]
    fn etags_are_quoted_once() {
        assert_eq!(quote("abc"), "\"abc\"");
        assert_eq!(quote("\"abc\""), "\"abc\"");
        assert_eq!(unquote("W/\"abc\""), "abc");
        assert_eq!(unquote("*"), "*");
    }

    #[test]
    fn s3_storage_is_not_servable() {
        let store = std::sync::Arc::new(object_store::memory::InMemory::new());
        let storage = Storage::from_object_store(store, "s3", "mask/".parse().unwrap());
        let cors = maskstore_core::Config::memory().cors;
        assert!(matches!(
            router(storage, &cors),
            Err(GatewayError::NotServable { .. })
        ));
    }
}
