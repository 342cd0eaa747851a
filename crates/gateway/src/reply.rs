//! How the gateway answers a refusal or a failure: one line of text, and a status derived
//! from the error's kind.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maskstore_backends::monitor::Outcome;
use maskstore_backends::{Error, ErrorKind};

/// One line of text with a status: how every refusal and failure is answered.
pub(crate) fn reply(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    (status, format!("{reason}\n")).into_response()
}

/// Marks a response the gateway gave without asking the store, so no operation recorded it,
/// with the outcome the alarms count it as.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefusedBeforeStore(pub(crate) Outcome);

/// [`reply`] for a request whose signature held but that was refused before the store was
/// asked (bound headers, size, upload cap): the object handler ([`crate::objects`]) counts
/// it for the alarms by its status.
pub(crate) fn refuse(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    let mut response = reply(status, reason);
    let outcome = Outcome::of_status(status.as_u16());
    response
        .extensions_mut()
        .insert(RefusedBeforeStore(outcome));
    response
}

/// 503 with `Retry-After: retry_after` for a signed request over its client's share (of
/// upload slots, of the download memory): the client's own excess, which the alarms count
/// as a client error, not as the store or the gateway failing, so one client asking too
/// much at once cannot raise the server-error alarm.
pub(crate) fn over_share(retry_after: &'static str, reason: impl std::fmt::Display) -> Response {
    let mut response = reply(StatusCode::SERVICE_UNAVAILABLE, reason);
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static(retry_after),
    );
    response
        .extensions_mut()
        .insert(RefusedBeforeStore(Outcome::ClientError));
    response
}

/// Why a request was refused before its signature was checked or because it failed the
/// check: the `reason` label of [`crate::GATEWAY_REFUSED_TOTAL`], a fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsigned {
    /// The query is longer than any signed URL's.
    QueryTooLong,
    /// The query has more parameters than any signed URL's.
    TooManyParameters,
    /// The path is longer than any key's.
    PathTooLong,
    /// The key in the path is not a valid key.
    InvalidKey,
    /// Malformed, forged, expired, or used with another method.
    Signature,
    /// The client holds its share of connections or uploads already.
    ClientShare,
    /// Every connection is taken.
    Connections,
}

impl Unsigned {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Unsigned::QueryTooLong => "query_too_long",
            Unsigned::TooManyParameters => "too_many_parameters",
            Unsigned::PathTooLong => "path_too_long",
            Unsigned::InvalidKey => "invalid_key",
            Unsigned::Signature => "signature",
            Unsigned::ClientShare => "client_share",
            Unsigned::Connections => "connections",
        }
    }
}

/// [`reply`] for a request refused before it proved a valid signature: counted in
/// [`crate::GATEWAY_REFUSED_TOTAL`] by `why`, never in the store's alarms, so nobody can
/// raise them without a URL.
pub(crate) fn refuse_unsigned(
    status: StatusCode,
    why: Unsigned,
    reason: impl std::fmt::Display,
) -> Response {
    metrics::counter!(crate::GATEWAY_REFUSED_TOTAL, "reason" => why.label()).increment(1);
    reply(status, reason)
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

/// [`reply`] for a failure of the store: its status from the error's kind, and a message
/// that keeps the server's own details in its log.
pub(crate) fn error_reply(e: &Error) -> Response {
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
