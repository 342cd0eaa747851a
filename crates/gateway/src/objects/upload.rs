//! PUT of an object: the URL's bound headers and the gateway's limits are checked before
//! the store is asked, then the body streams into the store under the size limit, the
//! idle timeout and, when the URL binds one, its SHA-256.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::BodyDataStream;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use maskstore_backends::signing::Grant;
use maskstore_backends::{ContentSha256, PutOutcome, Sha256Hasher, UploadShape, WriteOptions};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::error::Elapsed;

use super::conditional::{Condition, conditional_upload};
use super::headers::{quote, set};
use crate::reply::{error_reply, over_share, refuse, reply};
use crate::routers::Gateway;
use crate::shares::{Share, client_of};

/// The part size of uploads through the gateway: about what one upload holds in memory
/// while it stalls (the provider's parts in flight + 1 times this while the disk is slow),
/// the chunk size of local reads too.
pub const UPLOAD_BUFFER_PART_SIZE: usize = 1024 * 1024;

/// Why an upload's body was refused while it streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFailure {
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
pub(super) async fn upload(gateway: &Gateway, grant: &Grant, request: Request) -> Response {
    let limits = &gateway.limits;
    let sent = match Sent::matching(grant, request.headers()) {
        Ok(sent) => sent,
        Err(refusal) => return *refusal,
    };
    let max = limits.max_upload_bytes;
    if sent.length.is_some_and(|n| n > max) {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, too_large(max));
    }
    let _slot = match upload_slot(gateway, &request) {
        Ok(permit) => permit,
        Err(busy) => return *busy,
    };
    let condition = match Condition::of(request.headers()) {
        Ok(condition) => condition,
        Err(refusal) => return *refusal,
    };
    if condition != Condition::None {
        return conditional_upload(gateway, grant, request, sent, condition).await;
    }
    // Small parts: an upload that stalls holds under one part, not the default part size
    // a single PUT would buffer (the local provider streams the parts into its temporary
    // file).
    let options = WriteOptions {
        content_type: grant.content_type.clone().or(sent.content_type),
        upload: UploadShape {
            part_size: Some(UPLOAD_BUFFER_PART_SIZE),
            max_in_flight: None,
        },
        ..Default::default()
    };
    let rules = BodyRules {
        idle: limits.body_idle_timeout,
        max,
        expected: grant.content_length.or(sent.length),
        sha256: grant.sha256,
    };
    let failure = FailureSlot::default();
    let body = guard_body(
        request.into_body().into_data_stream(),
        rules,
        failure.clone(),
    );
    let outcome = gateway
        .storage
        .upload_stream(&grant.key, &options, Box::pin(body))
        .await;
    answer(outcome, failure.get(), max)
}

/// The headers an upload came with that the gateway reads.
pub(super) struct Sent {
    pub(super) content_type: Option<String>,
    pub(super) length: Option<u64>,
}

impl Sent {
    /// The sent headers, or a 403 when they differ from what the URL binds: the signature
    /// vouches for the bound values, not for whatever the client sends beside them.
    fn matching(grant: &Grant, headers: &HeaderMap) -> Result<Sent, Box<Response>> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Some(bound) = &grant.content_type
            && content_type.as_deref() != Some(bound.as_str())
        {
            return Err(Box::new(refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "content type {:?} does not match the {bound:?} this URL was signed for",
                    content_type.as_deref().unwrap_or("(none)")
                ),
            )));
        }
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(bound) = grant.content_length
            && length != Some(bound)
        {
            return Err(Box::new(refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "content length {} does not match the {bound} bytes this URL was signed for",
                    length.map_or("(none)".to_string(), |n| n.to_string())
                ),
            )));
        }
        Ok(Sent {
            content_type,
            length,
        })
    }
}

/// The answer to an upload over `max` bytes, whether its Content-Length says so up front or
/// its body shows it on the way.
pub(super) fn too_large(max: u64) -> String {
    format!(
        "the upload is larger than the gateway's limit of {max} bytes (gateway.max_upload_bytes)"
    )
}

/// One of the `gateway.max_concurrent_uploads` slots and of its client's
/// `gateway.max_uploads_per_client`, held until the upload is answered, or a 503 that
/// tells the client when to retry.
fn upload_slot(gateway: &Gateway, request: &Request) -> Result<UploadSlot, Box<Response>> {
    upload_slot_of(gateway, client_of(request, &gateway.limits.trusted_proxies))
}

/// One upload slot of the gateway and of its client's share, held while it lives.
pub(super) type UploadSlot = (OwnedSemaphorePermit, Option<Share>);

/// [`upload_slot`] for `client` (the request's client, known before its body was taken).
pub(super) fn upload_slot_of(
    gateway: &Gateway,
    client: Option<std::net::IpAddr>,
) -> Result<UploadSlot, Box<Response>> {
    let limits = &gateway.limits;
    let busy = |message: String| {
        let mut response = refuse(StatusCode::SERVICE_UNAVAILABLE, message);
        set(response.headers_mut(), header::RETRY_AFTER, "5");
        Box::new(response)
    };
    let share = match client {
        Some(client) => Some(gateway.upload_shares.take(client).ok_or_else(|| {
            Box::new(over_share("5", format!(
                "this client has {} uploads in progress, its share (gateway.max_uploads_per_client); retry when one is done",
                limits.max_uploads_per_client
            )))
        })?),
        None => None,
    };
    let permit = Arc::clone(&gateway.uploads)
        .try_acquire_owned()
        .map_err(|_| {
            busy(format!(
                "the gateway takes {} uploads at once (gateway.max_concurrent_uploads); retry shortly",
                limits.max_concurrent_uploads
            ))
        })?;
    Ok((permit, share))
}

/// Where the body stream records why it failed. The store sees only an I/O error and
/// reports its own failure; this tells the answer that the client was at fault (4xx).
#[derive(Clone, Default)]
pub(super) struct FailureSlot(Arc<Mutex<Option<BodyFailure>>>);

impl FailureSlot {
    /// Records `why` (the first failure wins) and gives the error item that aborts the
    /// upload.
    fn fail(&self, why: BodyFailure, message: String) -> std::io::Result<Bytes> {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(why);
        }
        Err(std::io::Error::other(message))
    }

    pub(super) fn get(&self) -> Option<BodyFailure> {
        self.0.lock().ok().and_then(|slot| *slot)
    }
}

/// What one upload's body is held to while it streams.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyRules {
    /// The longest the client may send nothing.
    pub(super) idle: Duration,
    /// `gateway.max_upload_bytes`.
    pub(super) max: u64,
    /// The length the URL binds, or else the one the client announced.
    pub(super) expected: Option<u64>,
    /// The SHA-256 the URL binds.
    pub(super) sha256: Option<ContentSha256>,
}

/// What the next read of the body comes to.
enum Step {
    /// A chunk to pass on, and the bytes received with it.
    Chunk(Bytes, u64),
    /// The body ended as it should.
    End,
    /// The body broke a rule: the upload is aborted.
    Fail(BodyFailure, String),
}

impl BodyRules {
    /// Checks the next read of the body (`Err`: the client sent nothing for `idle`;
    /// `Ok(None)`: the body ended), with `received` bytes so far.
    fn step(
        &self,
        next: Result<Option<Result<Bytes, axum::Error>>, Elapsed>,
        received: u64,
        hasher: &mut Option<Sha256Hasher>,
    ) -> Step {
        match next {
            Err(_) => Step::Fail(
                BodyFailure::Stalled,
                format!(
                    "the upload sent nothing for {} s (gateway.body_idle_timeout)",
                    self.idle.as_secs()
                ),
            ),
            Ok(None) => self.end(hasher.take()),
            Ok(Some(Err(e))) => {
                Step::Fail(BodyFailure::Broken, format!("the request body failed: {e}"))
            }
            Ok(Some(Ok(chunk))) => self.chunk(chunk, received, hasher),
        }
    }

    /// The body ended: with a bound SHA-256, it must be the body's, checked before the
    /// upload completes so a mismatch aborts it and the key keeps what it held.
    fn end(&self, hasher: Option<Sha256Hasher>) -> Step {
        let (Some(hasher), Some(bound)) = (hasher, self.sha256) else {
            return Step::End;
        };
        let sent = hasher.finish();
        if sent == bound {
            return Step::End;
        }
        Step::Fail(
            BodyFailure::ChecksumMismatch,
            format!(
                "the body's SHA-256 is {}, not the {} this URL was signed for: \
                 it was altered on the way or is another file; nothing was stored",
                sent.hex(),
                bound.hex()
            ),
        )
    }

    /// A chunk arrived: passed on while the body stays within its limits.
    fn chunk(&self, chunk: Bytes, received: u64, hasher: &mut Option<Sha256Hasher>) -> Step {
        let received = received + chunk.len() as u64;
        if received > self.max {
            Step::Fail(
                BodyFailure::TooLarge,
                format!("the upload is larger than {} bytes", self.max),
            )
        } else if self.expected.is_some_and(|n| received > n) {
            Step::Fail(
                BodyFailure::Broken,
                "the body is longer than its Content-Length".to_string(),
            )
        } else {
            if let Some(hasher) = hasher {
                hasher.update(&chunk);
            }
            Step::Chunk(chunk, received)
        }
    }
}

/// The request body as the store reads it: chunks pass on as they arrive until one breaks
/// `rules`; that one becomes an error item (recorded in `failure`) and ends the stream, so
/// the store aborts the upload.
pub(super) fn guard_body(
    data: BodyDataStream,
    rules: BodyRules,
    failure: FailureSlot,
) -> impl Stream<Item = std::io::Result<Bytes>> {
    let hasher = rules.sha256.map(|_| Sha256Hasher::default());
    let state = (data, 0u64, false, hasher);
    futures::stream::unfold(state, move |(mut data, received, done, mut hasher)| {
        let failure = failure.clone();
        async move {
            if done {
                return None;
            }
            let next = tokio::time::timeout(rules.idle, data.next()).await;
            match rules.step(next, received, &mut hasher) {
                Step::End => None,
                Step::Chunk(chunk, received) => Some((Ok(chunk), (data, received, false, hasher))),
                Step::Fail(why, message) => {
                    Some((failure.fail(why, message), (data, received, true, None)))
                }
            }
        }
    })
}

/// The answer once the store is done. After the store was asked, a failed upload is its
/// operation, counted once; a failure of the body is still answered as the client's.
pub(super) fn answer(
    outcome: maskstore_backends::Result<PutOutcome>,
    body_failure: Option<BodyFailure>,
    max: u64,
) -> Response {
    match (outcome, body_failure) {
        (Ok(outcome), _) => {
            let mut response = StatusCode::OK.into_response();
            if let Some(etag) = outcome.etag {
                set(response.headers_mut(), header::ETAG, &quote(&etag));
            }
            response
        }
        (Err(_), Some(BodyFailure::TooLarge)) => {
            reply(StatusCode::PAYLOAD_TOO_LARGE, too_large(max))
        }
        (Err(e), Some(BodyFailure::Stalled)) => reply(StatusCode::REQUEST_TIMEOUT, e),
        (Err(e), Some(BodyFailure::Broken)) => reply(StatusCode::BAD_REQUEST, e),
        (Err(e), Some(BodyFailure::ChecksumMismatch)) => reply(StatusCode::BAD_REQUEST, e),
        (Err(e), None) => error_reply(&e),
    }
}
