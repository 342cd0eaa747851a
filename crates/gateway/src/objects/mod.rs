//! `/o/<key>`: a request is admitted by its signature, bounded before that, and then
//! carries out what the URL grants (download, upload, delete) within the request deadline.

pub(crate) mod budget;
mod conditional;
mod conditions;
mod download;
mod form;
mod headers;
mod upload;
pub(crate) mod verified;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use maskstore_backends::signing::{Grant, OBJECT_PATH, QueryLimit, SignedMethod};

use crate::reply::{RefusedBeforeStore, Unsigned, error_reply, refuse_unsigned, reply};
use crate::routers::Gateway;
use crate::sendfile::Sendfile;
use crate::shares::client_of;
pub use budget::{DOWNLOAD_MEMORY_BUDGET, DOWNLOAD_MEMORY_PER_CLIENT};
pub use conditional::CONDITIONAL_UPLOAD_BUDGET;
pub(crate) use conditional::conditional_budget;
use download::{Reader, download};
pub(crate) use form::form;
pub use form::{MAX_FORM_FIELDS, MAX_FORM_FIELDS_BYTES};
pub use headers::CONTENT_SECURITY_POLICY;
use headers::harden;
pub use upload::UPLOAD_BUFFER_PART_SIZE;
use upload::upload;

/// The longest path below [`OBJECT_PATH`] worth decoding: a key of the longest length
/// with every byte percent-encoded.
const MAX_ENCODED_KEY_BYTES: usize = 3 * maskstore_core::MAX_KEY_BYTES;

/// `/o/<key>` as a service of its own, routed as it is rather than as a handler: axum
/// would wrap a handler in a method router and box and clone it once per layer for every
/// request, where this is one boxed future.
#[derive(Clone)]
pub(crate) struct ObjectService(pub(crate) Arc<Gateway>);

impl tower::Service<Request> for ObjectService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let gateway = Arc::clone(&self.0);
        Box::pin(async move { Ok(object(&gateway, request).await) })
    }
}

/// The answer to a request of `/o/<key>`: whatever it is, it carries the headers that keep
/// it from running in a browser on the gateway's origin.
async fn object(gateway: &Gateway, request: Request) -> Response {
    let mut response = object_response(gateway, request).await;
    harden(response.headers_mut());
    response
}

async fn object_response(gateway: &Gateway, request: Request) -> Response {
    let response = match admit(gateway, &request) {
        Ok(grant) => serve_grant(gateway, grant, request).await,
        Err(refusal) => *refusal,
    };
    if let Some(RefusedBeforeStore(outcome)) = response.extensions().get().copied() {
        // No operation recorded it, so the alarms count it here: its URL was valid, so
        // the refusal is one of the store's clients' errors. (Refusals before the
        // signature held are counted apart, in `maskstore_gateway_refused_total`.)
        gateway.storage.monitor().record(outcome);
    }
    response
}

/// Carries out what a verified URL grants, within `gateway.request_timeout`.
async fn serve_grant(gateway: &Gateway, grant: Grant, request: Request) -> Response {
    let storage = &gateway.storage;
    let limits = &gateway.limits;
    let deadline = tokio::time::Instant::now() + limits.request_timeout;
    let client = client_of(&request, &limits.trusted_proxies);
    let work = async {
        match grant.method {
            SignedMethod::Get => {
                // Only a GET's body is sent; hyper drops a HEAD's unread.
                let sendfile = (request.method() == axum::http::Method::GET)
                    .then(|| request.extensions().get::<Sendfile>().cloned())
                    .flatten();
                let at = Reader {
                    client,
                    deadline: Some(deadline),
                    sendfile,
                };
                download(gateway, &grant, request.headers(), at).await
            }
            SignedMethod::Head => {
                let at = Reader {
                    client,
                    deadline: None,
                    sendfile: None,
                };
                download(gateway, &grant, request.headers(), at).await
            }
            SignedMethod::Put => {
                let response = upload(gateway, &grant, request).await;
                gateway.verified.forget(&grant.key);
                response
            }
            SignedMethod::Delete => {
                let deleted = storage.delete(&grant.key).await;
                gateway.verified.forget(&grant.key);
                match deleted {
                    Ok(()) => StatusCode::NO_CONTENT.into_response(),
                    Err(e) => error_reply(&e),
                }
            }
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
        let (status, why) = match limit {
            QueryLimit::TooLong => (StatusCode::URI_TOO_LONG, Unsigned::QueryTooLong),
            QueryLimit::TooManyParameters => (StatusCode::BAD_REQUEST, Unsigned::TooManyParameters),
        };
        return Err(Box::new(refuse_unsigned(status, why, limit)));
    }
    let encoded_key = uri.path().strip_prefix(OBJECT_PATH).unwrap_or_default();
    if encoded_key.len() > MAX_ENCODED_KEY_BYTES {
        return Err(Box::new(refuse_unsigned(
            StatusCode::URI_TOO_LONG,
            Unsigned::PathTooLong,
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
            let (status, why) = match refusal {
                maskstore_backends::signing::Refusal::InvalidKey(_) => {
                    (StatusCode::BAD_REQUEST, Unsigned::InvalidKey)
                }
                _ => (StatusCode::FORBIDDEN, Unsigned::Signature),
            };
            Box::new(refuse_unsigned(status, why, refusal))
        })
}
