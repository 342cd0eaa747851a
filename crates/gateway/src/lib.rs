//! maskstore-gateway: the HTTP server behind signed URLs of the `local` and `memory`
//! providers, so a browser uploads and downloads masks the same way it does against S3.
//!
//! Every object request needs a valid signed URL (see `maskstore_backends::signing`);
//! there is no unsigned access. A refused request gets 403 and a one-line reason. CORS
//! follows `[cors]`. `GET /health` answers for liveness and reports `degraded`, naming the
//! alarm, while an error rate of the store is above its `[monitoring]` threshold or its
//! request rate surges.
//! [`router_with_metrics`] adds `GET /metrics` in Prometheus text format, covering the
//! gateway's own requests (`maskstore_gateway_requests_total{method,status}`,
//! `maskstore_gateway_request_duration_seconds{method}`) and the store's operations
//! (`maskstore_operations_total`, `maskstore_operation_duration_seconds`,
//! `maskstore_bytes_total`), and the two rates the request-surge alarm compares
//! (`maskstore_request_rate_per_second{window="recent"|"baseline"}`). [`admin_router`] serves `/health` and `/metrics` alone, for a
//! listener of its own (`gateway.admin_listen`).
//!
//! Everything before the signature check is bounded ([`Limits`], from `[gateway]`): the
//! query's size and parameter count, the time to send headers, the connections served at
//! once (the excess is answered 503 and closed), an upload's size (413), the uploads at once
//! (503 with `Retry-After`), how long a body may stall and a request may take, and how long
//! a shutdown waits. Metric labels come from fixed sets. Objects are served with `nosniff`,
//! a sandboxing `Content-Security-Policy`, and as attachments unless they are a mask format.
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
//! // With the limits of `[gateway]`:
//! let limits = maskstore_gateway::Limits::from_config(&config.gateway);
//! let router = maskstore_gateway::router_with_limits(storage, &config.cors, &limits)?;
//! # let listener = tokio::net::TcpListener::bind(&config.gateway.listen).await?;
//! maskstore_gateway::serve_with_limits(listener, router, &limits, maskstore_gateway::shutdown_signal()).await?;
//! # Ok(()) }
//! ```

mod server;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::StreamExt;
use maskstore_backends::monitor::Outcome;
use maskstore_backends::signing::{Grant, OBJECT_PATH, QueryLimit, SignedMethod};
use maskstore_backends::{
    ByteRange, Error, ErrorKind, ObjectInfo, ReadOptions, Sha256Hasher, Storage, WriteOptions,
};
use maskstore_core::MaskFormat;
use maskstore_core::config::{CorsConfig, GatewayConfig};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::Semaphore;
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

/// The gateway's bounds on what clients may hold: time, connections, uploads. Built from
/// `[gateway]` with [`Limits::from_config`]; the default is `[gateway]`'s defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Time a client has to send a request's headers (also the keep-alive idle limit).
    pub header_timeout: Duration,
    /// Time an upload may send, or a download may take, nothing.
    pub body_idle_timeout: Duration,
    /// Time one request may take in all.
    pub request_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// The largest upload, in bytes.
    pub max_upload_bytes: u64,
    /// Uploads in progress at once.
    pub max_concurrent_uploads: usize,
    /// Time requests in flight get after a shutdown signal.
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The limits `[gateway]` sets.
    pub fn from_config(gateway: &GatewayConfig) -> Limits {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Limits {
            header_timeout: Duration::from_secs(gateway.header_timeout_secs),
            body_idle_timeout: Duration::from_secs(gateway.body_idle_timeout_secs),
            request_timeout: Duration::from_secs(gateway.request_timeout_secs),
            max_connections: count(gateway.max_connections),
            max_upload_bytes: gateway.max_upload_bytes,
            max_concurrent_uploads: count(gateway.max_concurrent_uploads),
            shutdown_grace: Duration::from_secs(gateway.shutdown_grace_secs),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::from_config(&maskstore_core::Config::memory().gateway)
    }
}

#[derive(Clone)]
struct Gateway {
    storage: Storage,
    limits: Arc<Limits>,
    uploads: Arc<Semaphore>,
}

/// The gateway as a router an application can mount or serve: objects and `/health`, with
/// the default [`Limits`].
pub fn router(storage: Storage, cors: &CorsConfig) -> Result<Router, GatewayError> {
    router_with_limits(storage, cors, &Limits::default())
}

/// [`router`] with the given limits.
pub fn router_with_limits(
    storage: Storage,
    cors: &CorsConfig,
    limits: &Limits,
) -> Result<Router, GatewayError> {
    let health = admin_router(storage.clone(), None);
    Ok(objects_router(storage, cors, limits)?.merge(health))
}

/// Signed-URL objects alone (`/o/…`), for the public listener when `/health` and
/// `/metrics` are served on an admin listener.
pub fn objects_router(
    storage: Storage,
    cors: &CorsConfig,
    limits: &Limits,
) -> Result<Router, GatewayError> {
    if storage.gateway_signer().is_none() {
        return Err(GatewayError::NotServable {
            backend: storage.backend().to_string(),
        });
    }
    let gateway = Gateway {
        storage,
        limits: Arc::new(limits.clone()),
        uploads: Arc::new(Semaphore::new(limits.max_concurrent_uploads)),
    };
    Ok(Router::new()
        .route(&format!("{OBJECT_PATH}{{*key}}"), any(object))
        .layer(cors_layer(cors)?)
        .with_state(gateway)
        .layer(axum::middleware::from_fn(track)))
}

/// `GET /health`, and `GET /metrics` rendering `metrics` when given: what the admin
/// listener serves.
pub fn admin_router(storage: Storage, metrics: Option<PrometheusHandle>) -> Router {
    let monitor = Arc::clone(storage.monitor());
    let mut admin = Router::new().route("/health", get(move || health(storage.clone())));
    if let Some(handle) = metrics {
        admin = admin.route(
            "/metrics",
            get(move || {
                // The rates the surge alarm compares, as of this scrape.
                let rates = monitor.request_rates();
                metrics::gauge!(REQUEST_RATE, "window" => "recent").set(rates.recent);
                if let Some(baseline) = rates.baseline {
                    metrics::gauge!(REQUEST_RATE, "window" => "baseline").set(baseline);
                }
                std::future::ready(handle.render())
            }),
        );
    }
    admin.layer(axum::middleware::from_fn(track))
}

/// [`router`] plus `GET /metrics` rendering `handle` (see [`install_prometheus`]).
pub fn router_with_metrics(
    storage: Storage,
    cors: &CorsConfig,
    handle: PrometheusHandle,
) -> Result<Router, GatewayError> {
    let admin = admin_router(storage.clone(), Some(handle));
    Ok(objects_router(storage, cors, &Limits::default())?.merge(admin))
}

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

/// Metric: the gateway's HTTP requests by method and status.
pub const GATEWAY_REQUESTS_TOTAL: &str = "maskstore_gateway_requests_total";
/// Metric: the store's operations per second over the surge alarm's recent window
/// (`window="recent"`) and over its baseline (`window="baseline"`).
pub const REQUEST_RATE: &str = "maskstore_request_rate_per_second";
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

async fn track(request: Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let method = method_label(request.method());
    let response = next.run(request).await;
    metrics::counter!(GATEWAY_REQUESTS_TOTAL, "method" => method, "status" => status_label(response.status()))
        .increment(1);
    metrics::histogram!(GATEWAY_REQUEST_DURATION, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serves `router` on `listener` with the default [`Limits`] until `shutdown` completes,
/// then gives the requests in flight the shutdown grace to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    serve_with_limits(listener, router, &Limits::default(), shutdown).await
}

/// Serves `router` on `listener` until `shutdown` completes: at most
/// `limits.max_connections` connections (the excess is answered 503 and closed), headers
/// within `limits.header_timeout`, writes that stall no longer than
/// `limits.body_idle_timeout`. After `shutdown`, requests in flight get
/// `limits.shutdown_grace` to finish and are then dropped (an unfinished upload leaves
/// nothing behind).
pub async fn serve_with_limits(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    server::serve(listener, router, limits, shutdown).await
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
    tracing::info!("shutting down: finishing requests in flight within gateway.shutdown_grace");
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
                "baseline": a.baseline,
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

/// Marks a response the gateway gave without asking the store, so no operation recorded it.
#[derive(Debug, Clone, Copy)]
struct RefusedBeforeStore;

/// [`reply`] for a request refused before the store was asked (query, path, signature,
/// bound headers, size, upload cap): [`object_response`] counts it for the alarms.
fn refuse(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    let mut response = reply(status, reason);
    response.extensions_mut().insert(RefusedBeforeStore);
    response
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
        // The stored object is damaged: the server's failure, never the client's bytes.
        ErrorKind::Corrupt => StatusCode::INTERNAL_SERVER_ERROR,
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

/// The longest path below [`OBJECT_PATH`] worth decoding: a key of the longest length
/// with every byte percent-encoded.
const MAX_ENCODED_KEY_BYTES: usize = 3 * maskstore_core::MAX_KEY_BYTES;

async fn object(State(gateway): State<Gateway>, request: Request) -> Response {
    let mut response = object_response(&gateway, request).await;
    harden(response.headers_mut());
    response
}

async fn object_response(gateway: &Gateway, request: Request) -> Response {
    let response = match admit(gateway, &request) {
        Ok(grant) => serve_grant(gateway, grant, request).await,
        Err(refusal) => *refusal,
    };
    if response.extensions().get::<RefusedBeforeStore>().is_some() {
        // No operation recorded it, so the alarms count it here, as S3 counts a bad
        // signature among its 4xx errors and every refusal among all requests.
        gateway
            .storage
            .monitor()
            .record(Outcome::of_status(response.status().as_u16()));
    }
    response
}

/// Carries out what a verified URL grants, within `gateway.request_timeout`.
async fn serve_grant(gateway: &Gateway, grant: Grant, request: Request) -> Response {
    let storage = &gateway.storage;
    let limits = &gateway.limits;
    let deadline = tokio::time::Instant::now() + limits.request_timeout;
    let work = async {
        match grant.method {
            SignedMethod::Get => download(storage, &grant, request.headers(), Some(deadline)).await,
            SignedMethod::Head => download(storage, &grant, request.headers(), None).await,
            SignedMethod::Put => upload(gateway, &grant, request).await,
            SignedMethod::Delete => match storage.delete(&grant.key).await {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => error_reply(&e),
            },
        }
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(response) => response,
        // Dropping the work drops an upload in progress: nothing of it is kept.
        Err(_) => reply(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request took longer than the gateway allows ({} s, gateway.request_timeout)",
                limits.request_timeout.as_secs()
            ),
        ),
    }
}

/// The grant of a request whose query, path and signature check out, or the refusal.
fn admit(gateway: &Gateway, request: &Request) -> Result<Grant, Box<Response>> {
    let uri = request.uri();
    let query = uri.query().unwrap_or("");
    // Bounded before anything reads the query or the path.
    if let Err(limit) = maskstore_backends::signing::check_query_limits(query) {
        let status = match limit {
            QueryLimit::TooLong => StatusCode::URI_TOO_LONG,
            QueryLimit::TooManyParameters => StatusCode::BAD_REQUEST,
        };
        return Err(Box::new(refuse(status, limit)));
    }
    let encoded_key = uri.path().strip_prefix(OBJECT_PATH).unwrap_or_default();
    if encoded_key.len() > MAX_ENCODED_KEY_BYTES {
        return Err(Box::new(refuse(
            StatusCode::URI_TOO_LONG,
            "the path is longer than any key's; use the URL as it was issued",
        )));
    }
    let signer = gateway
        .storage
        .gateway_signer()
        .expect("objects_router() only serves storages with a gateway signer");
    signer
        .verify(
            request.method().as_str(),
            encoded_key,
            query,
            chrono::Utc::now(),
        )
        .map_err(|refusal| {
            let status = match refusal {
                maskstore_backends::signing::Refusal::InvalidKey(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::FORBIDDEN,
            };
            Box::new(refuse(status, refusal))
        })
}

/// Headers on every object response, so nothing served runs in a browser on the gateway's
/// origin: no sniffing into HTML, and a policy that blocks scripts and plugins even when a
/// document is opened directly.
fn harden(out: &mut HeaderMap) {
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
}

/// The `Content-Security-Policy` of object responses: nothing loads, and the document is
/// sandboxed (no scripts, an opaque origin).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; sandbox";

/// Whether a stored content type is served inline: the mask formats' types and
/// `application/octet-stream`. Anything else (HTML, SVG, …) is served as an attachment.
fn served_inline(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/octet-stream"
        || MaskFormat::ALL
            .iter()
            .any(|format| format.content_type() == essence)
}

/// GET and HEAD: streamed, with Range, ETag, Content-Type, Content-Length and
/// conditional requests. A GET's body stops with an error once `deadline` passes.
async fn download(
    storage: &Storage,
    grant: &Grant,
    headers: &HeaderMap,
    deadline: Option<tokio::time::Instant>,
) -> Response {
    let header_text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let range = header_text(header::RANGE).and_then(parse_range);
    let options = ReadOptions {
        range: range.clone(),
        if_match: header_text(header::IF_MATCH).map(unquote),
        if_none_match: header_text(header::IF_NONE_MATCH).map(unquote),
    };
    let Some(deadline) = deadline else {
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
    };
    let mut object = match storage.read_stream(&grant.key, options).await {
        Ok(object) => object,
        Err(e) => return error_reply(&e),
    };
    // A verified read holds each chunk back until the next arrives, so an object of one
    // chunk that fails its checksum fails here, before the status is sent: a 500, never a
    // 200 with damaged bytes. A larger one is cut off mid-body (the length promised is
    // never reached), the only way HTTP has to take back a 200.
    let first = object.stream.next().await;
    if let Some(Err(e)) = &first {
        return error_reply(e);
    }
    let stream = futures::stream::iter(first).chain(object.stream);
    let (status, length) = match range {
        Some(_) => (
            StatusCode::PARTIAL_CONTENT,
            object.range.end - object.range.start,
        ),
        None => (StatusCode::OK, object.info.size),
    };
    // Checked as the client pulls each chunk: a client reading slowly but steadily is cut
    // off at the request deadline (one that stops reading, by the write-stall timeout).
    let stream = stream.map(move |chunk| {
        if tokio::time::Instant::now() > deadline {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the download took longer than gateway.request_timeout",
            ))
        } else {
            chunk.map_err(|e| {
                if matches!(e, Error::Corrupt { .. }) {
                    tracing::error!(error = %e, "a download was cut off: the object is corrupt");
                }
                std::io::Error::other(e)
            })
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
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

/// The part size of uploads through the gateway: about what one upload holds in memory
/// while it stalls ([`maskstore_backends::UPLOAD_MAX_IN_FLIGHT`] + 1 times this while the
/// disk is slow), the chunk size of local reads too.
pub const UPLOAD_PART_SIZE: usize = 1024 * 1024;

/// Why an upload's body was refused while it streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFailure {
    /// More than `gateway.max_upload_bytes`.
    TooLarge,
    /// Nothing arrived for `gateway.body_idle_timeout`.
    Stalled,
    /// Cut off, or longer than its Content-Length.
    Broken,
    /// Its SHA-256 is not the one the URL binds.
    ChecksumMismatch,
}

/// PUT: the body is streamed into the store chunk by chunk as it arrives (the gateway
/// holds one chunk at a time); bound headers, the size limit and the upload cap are checked
/// first, the size limit and the idle timeout again while it streams.
async fn upload(gateway: &Gateway, grant: &Grant, request: Request) -> Response {
    let limits = &gateway.limits;
    let storage = &gateway.storage;
    let headers = request.headers();
    let sent_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(bound) = &grant.content_type
        && sent_type.as_deref() != Some(bound.as_str())
    {
        return refuse(
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
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "content length {} does not match the {bound} bytes this URL was signed for",
                sent_length.map_or("(none)".to_string(), |n| n.to_string())
            ),
        );
    }
    let max = limits.max_upload_bytes;
    let too_large = format!(
        "the upload is larger than the gateway's limit of {max} bytes (gateway.max_upload_bytes)"
    );
    if sent_length.is_some_and(|n| n > max) {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, too_large);
    }
    let Ok(_permit) = Arc::clone(&gateway.uploads).try_acquire_owned() else {
        let mut response = refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the gateway takes {} uploads at once (gateway.max_concurrent_uploads); retry shortly",
                limits.max_concurrent_uploads
            ),
        );
        set(response.headers_mut(), header::RETRY_AFTER, "5");
        return response;
    };
    let options = WriteOptions {
        content_type: grant.content_type.clone().or(sent_type),
        ..Default::default()
    };
    let expected = grant.content_length.or(sent_length);
    let idle = limits.body_idle_timeout;
    // Set when the request body itself fails: the client's fault (4xx), not the store's.
    let failure: Arc<Mutex<Option<BodyFailure>>> = Arc::new(Mutex::new(None));
    let failed = Arc::clone(&failure);
    let fail = move |why: BodyFailure, message: String| {
        if let Ok(mut slot) = failed.lock() {
            slot.get_or_insert(why);
        }
        Err(std::io::Error::other(message))
    };
    let data = request.into_body().into_data_stream();
    // With a bound SHA-256, the body is hashed as it streams and its end is checked before
    // the upload completes: a mismatch is an error item, so the upload is aborted and the
    // key keeps what it held.
    let bound_sha256 = grant.sha256;
    let hasher = bound_sha256.map(|_| Sha256Hasher::default());
    let state = (data, 0u64, false, hasher);
    let body = futures::stream::unfold(state, move |(mut data, received, done, mut hasher)| {
        let fail = fail.clone();
        async move {
            if done {
                return None;
            }
            let item = match tokio::time::timeout(idle, data.next()).await {
                Err(_) => fail(
                    BodyFailure::Stalled,
                    format!(
                        "the upload sent nothing for {} s (gateway.body_idle_timeout)",
                        idle.as_secs()
                    ),
                ),
                Ok(None) => match (hasher.take(), bound_sha256) {
                    (Some(hasher), Some(bound)) => {
                        let sent = hasher.finish();
                        if sent == bound {
                            return None;
                        }
                        fail(
                            BodyFailure::ChecksumMismatch,
                            format!(
                                "the body's SHA-256 is {}, not the {} this URL was signed for: \
                                 it was altered on the way or is another file; nothing was stored",
                                sent.hex(),
                                bound.hex()
                            ),
                        )
                    }
                    _ => return None,
                },
                Ok(Some(Err(e))) => {
                    fail(BodyFailure::Broken, format!("the request body failed: {e}"))
                }
                Ok(Some(Ok(chunk))) => {
                    let received = received + chunk.len() as u64;
                    if received > max {
                        fail(
                            BodyFailure::TooLarge,
                            format!("the upload is larger than {max} bytes"),
                        )
                    } else if expected.is_some_and(|n| received > n) {
                        fail(
                            BodyFailure::Broken,
                            "the body is longer than its Content-Length".to_string(),
                        )
                    } else {
                        if let Some(hasher) = &mut hasher {
                            hasher.update(&chunk);
                        }
                        return Some((Ok(chunk), (data, received, false, hasher)));
                    }
                }
            };
            Some((item, (data, received, true, None)))
        }
    });
    // Small parts: an upload that stalls holds under one part, not the 8 MiB a single PUT
    // of the default part size would buffer (the local provider streams the parts into its
    // temporary file).
    let outcome = storage
        .upload_stream_with_part_size(&grant.key, &options, Box::pin(body), UPLOAD_PART_SIZE)
        .await;
    let body_failure = failure.lock().ok().and_then(|slot| *slot);
    match (outcome, body_failure) {
        (Ok(outcome), _) => {
            let mut response = StatusCode::OK.into_response();
            if let Some(etag) = outcome.etag {
                set(response.headers_mut(), header::ETAG, &quote(&etag));
            }
            response
        }
        // After the store was asked: the failed upload is its operation, counted once.
        (Err(_), Some(BodyFailure::TooLarge)) => reply(StatusCode::PAYLOAD_TOO_LARGE, too_large),
        (Err(e), Some(BodyFailure::Stalled)) => reply(StatusCode::REQUEST_TIMEOUT, e),
        (Err(e), Some(BodyFailure::Broken)) => reply(StatusCode::BAD_REQUEST, e),
        (Err(e), Some(BodyFailure::ChecksumMismatch)) => reply(StatusCode::BAD_REQUEST, e),
        (Err(e), None) => error_reply(&e),
    }
}

fn describe(out: &mut HeaderMap, info: &ObjectInfo) {
    if let Some(ct) = &info.content_type {
        set(out, header::CONTENT_TYPE, ct);
    }
    if !served_inline(info.content_type.as_deref()) {
        out.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
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

    #[test]
    fn only_mask_formats_and_octet_stream_are_served_inline() {
        for inline in [
            "image/png",
            "application/gzip",
            "application/dicom",
            "application/octet-stream",
            "Image/PNG; charset=binary",
        ] {
            assert!(served_inline(Some(inline)), "{inline}");
        }
        for attachment in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/plain",
            "application/pdf",
            "",
        ] {
            assert!(!served_inline(Some(attachment)), "{attachment}");
        }
        assert!(!served_inline(None));
    }

    #[test]
    fn default_limits_are_the_config_defaults() {
        let limits = Limits::default();
        assert_eq!(limits.header_timeout, Duration::from_secs(10));
        assert_eq!(limits.max_connections, 512);
        assert_eq!(limits.max_upload_bytes, 1 << 30);
        assert_eq!(limits.max_concurrent_uploads, 64);
        assert_eq!(limits.shutdown_grace, Duration::from_secs(10));
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
