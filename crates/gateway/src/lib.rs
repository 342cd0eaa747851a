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
//! GET and HEAD answer ranges and conditions as S3 does (`If-Match`/`If-None-Match` lists,
//! `If-Range`, 416 for unsatisfiable ranges), and a PUT may be conditional
//! (`If-None-Match: *`, `If-Match`), written atomically by the store. A range covering the
//! whole object is a verified whole read; a smaller one of a checksummed object is served
//! only from a version whose checksum a whole read verified. A verified version is served
//! again, whole or in ranges, without hashing it again: the verdict is kept by key and by
//! the exact bytes read (on local disk the etag with device, inode, size, modification and
//! status-change times, given once the file has settled), so a file changed behind the
//! gateway's back is verified again (see `objects::verified`).
//!
//! Everything before the signature check is bounded ([`Limits`], from `[gateway]`): the
//! query's size and parameter count, the time to send a first byte and the headers, the
//! connections served at once and those of one client address (the excess is answered 503
//! and closed; [`RESERVED_FOR_HEALTH`] more are kept for `/health` and `/metrics`), an
//! upload's size (413), the uploads at once and per client (503 with `Retry-After`), how
//! long a body may stall and a request may take, and how long a shutdown waits. Downloads
//! in flight hold at most [`DOWNLOAD_MEMORY_BUDGET`] of buffers together, those of one
//! client address at most [`DOWNLOAD_MEMORY_PER_CLIENT`]. Refusals before a
//! valid signature are counted in [`GATEWAY_REFUSED_TOTAL`], not in the store's alarms.
//! Metric labels come from fixed sets. Objects are served with `nosniff`, a sandboxing
//! `Content-Security-Policy`, and as attachments unless they are a mask format.
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
//! let router = maskstore_gateway::router_with_limits(storage.clone(), &config.cors, &limits)?;
//! # let listener = tokio::net::TcpListener::bind(&config.gateway.listen).await?;
//! maskstore_gateway::serve_with_limits(listener, router, &limits, maskstore_gateway::shutdown_signal()).await?;
//! // Served by the gateway itself, the object route is best kept beside the router
//! // (`Routes`): a request of `/o/…` then skips the router's match.
//! let routes = maskstore_gateway::Routes::objects(storage.clone(), &config.cors, &limits)?
//!     .merge(maskstore_gateway::admin_router(storage, None));
//! # let listener = tokio::net::TcpListener::bind(&config.gateway.listen).await?;
//! maskstore_gateway::serve_with_limits(listener, routes, &limits, maskstore_gateway::shutdown_signal()).await?;
//! # Ok(()) }
//! ```

mod alert_rules;
mod cors;
mod health;
mod limits;
mod metrics;
mod objects;
mod reply;
mod routers;
mod sendfile;
mod server;
mod shares;

pub use crate::metrics::{
    GATEWAY_REFUSED_TOTAL, GATEWAY_REQUEST_DURATION, GATEWAY_REQUESTS_TOTAL,
    GATEWAY_SENDFILE_BYTES_TOTAL, REQUEST_RATE, install_prometheus,
};
pub use alert_rules::prometheus_rules;
pub use limits::Limits;
pub use objects::{
    CONDITIONAL_UPLOAD_BUDGET, CONTENT_SECURITY_POLICY, DOWNLOAD_MEMORY_BUDGET,
    DOWNLOAD_MEMORY_PER_CLIENT, MAX_FORM_FIELDS, MAX_FORM_FIELDS_BYTES, UPLOAD_BUFFER_PART_SIZE,
};
pub use routers::{
    Routes, admin_router, objects_router, router, router_with_limits, router_with_metrics,
};
pub use server::{RESERVED_FOR_HEALTH, serve, serve_with_limits, shutdown_signal};

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
