//! Conditional PUT as S3 answers it: `If-None-Match: *` writes only a new key,
//! `If-Match` only over the version it names (404 when there is none, 412 when another),
//! both decided by the store atomically. The body is held in memory for that one write,
//! within the conditional-upload budget, which it takes as its bytes arrive: a client that
//! announces a large body and sends nothing holds none of it.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::StreamExt;
use maskstore_backends::signing::Grant;
use maskstore_backends::{ErrorKind, WriteMode, WriteOptions};

use super::budget::{MemoryBudget, Reserved};
use super::conditions::{EntityTag, TagList};
use super::headers::{quote, set};
use super::upload::{BodyFailure, BodyRules, FailureSlot, Sent, guard_body, too_large};
use crate::reply::{error_reply, refuse, reply};
use crate::routers::Gateway;

/// The bytes all conditional uploads in flight may hold at once, and so the largest one:
/// 64 MiB.
pub const CONDITIONAL_UPLOAD_BUDGET: u64 = 64 * 1024 * 1024;

/// What a PUT's conditional headers ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Condition {
    /// None: the upload streams and overwrites.
    None,
    /// `If-None-Match: *`.
    CreateOnly,
    /// `If-Match`.
    IfMatch(TagList),
    /// Both: no object can satisfy them (it must exist and not exist).
    Impossible,
}

impl Condition {
    /// The condition `headers` ask, or S3's 501 for an `If-None-Match` other than `*`.
    pub(super) fn of(headers: &HeaderMap) -> Result<Condition, Box<Response>> {
        let if_match = TagList::of(headers, header::IF_MATCH);
        let create_only = match TagList::of(headers, header::IF_NONE_MATCH) {
            None => false,
            Some(TagList::Any) => true,
            Some(TagList::Tags(_)) => {
                return Err(Box::new(refuse(
                    StatusCode::NOT_IMPLEMENTED,
                    "a PUT takes If-None-Match: * only (create the key if absent), as S3 does",
                )));
            }
        };
        Ok(match (if_match, create_only) {
            (None, false) => Condition::None,
            (None, true) => Condition::CreateOnly,
            (Some(list), false) => Condition::IfMatch(list),
            (Some(_), true) => Condition::Impossible,
        })
    }
}

/// A conditional PUT: the condition is checked on the current version first (so a doomed
/// upload is refused before its body is sent, when the client waits for `100 Continue`),
/// then the body is read into memory and written with the store's atomic condition.
pub(super) async fn conditional_upload(
    gateway: &Gateway,
    grant: &Grant,
    request: Request,
    sent: Sent,
    condition: Condition,
) -> Response {
    let Some(length) = grant.content_length.or(sent.length) else {
        return refuse(
            StatusCode::LENGTH_REQUIRED,
            "a conditional PUT needs a Content-Length, as S3's PutObject does",
        );
    };
    if length > CONDITIONAL_UPLOAD_BUDGET.min(gateway.limits.max_upload_bytes) {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a conditional upload is held in memory to be written atomically: at most {} bytes",
                CONDITIONAL_UPLOAD_BUDGET.min(gateway.limits.max_upload_bytes)
            ),
        );
    }
    let mode = match write_mode(gateway, grant, condition).await {
        Ok(mode) => mode,
        Err(answer) => return *answer,
    };
    let (data, _held) = match read_body(gateway, grant, request, length).await {
        Ok(read) => read,
        Err(answer) => return *answer,
    };
    let options = WriteOptions {
        content_type: grant.content_type.clone().or(sent.content_type),
        mode,
        ..Default::default()
    };
    match gateway.storage.put_with(&grant.key, data, &options).await {
        Ok(outcome) => {
            let mut response = StatusCode::OK.into_response();
            if let Some(etag) = outcome.etag {
                set(response.headers_mut(), header::ETAG, &quote(&etag));
            }
            response
        }
        Err(e) if matches!(e.kind(), ErrorKind::Precondition | ErrorKind::Conflict) => {
            precondition_failed()
        }
        Err(e) => error_reply(&e),
    }
}

/// The store's write mode for `condition`, judged first on the current version: 412 when
/// it already fails, 404 for `If-Match` on a missing key (as S3 answers).
async fn write_mode(
    gateway: &Gateway,
    grant: &Grant,
    condition: Condition,
) -> Result<WriteMode, Box<Response>> {
    let current = match gateway.storage.head(&grant.key).await {
        Ok(info) => Some(info),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(Box::new(error_reply(&e))),
    };
    match (condition, current) {
        (Condition::None, _) => Ok(WriteMode::Overwrite),
        (Condition::CreateOnly, None) => Ok(WriteMode::CreateOnly),
        (Condition::IfMatch(_), None) => Err(Box::new(reply(
            StatusCode::NOT_FOUND,
            "there is no object at this key for If-Match to compare with",
        ))),
        (Condition::IfMatch(list), Some(info)) => {
            let etag = info.etag.clone();
            let tag = etag.as_deref().map(EntityTag::of_store);
            match etag {
                Some(etag) if list.strong_match(tag.as_ref()) => Ok(WriteMode::IfMatch(etag)),
                _ => Err(Box::new(precondition_failed())),
            }
        }
        (Condition::CreateOnly | Condition::Impossible, _) => Err(Box::new(precondition_failed())),
    }
}

fn precondition_failed() -> Response {
    reply(
        StatusCode::PRECONDITION_FAILED,
        "the key's current version is not what the conditional headers require; nothing was written",
    )
}

/// How much of the conditional-upload budget a body takes at a time as its bytes arrive.
const RESERVE_STEP: u64 = 1024 * 1024;

/// The body, `length` bytes, under the same rules as a streamed upload's, and the room it
/// holds in the conditional-upload budget (taken as it arrives; 503 when none is left).
async fn read_body(
    gateway: &Gateway,
    grant: &Grant,
    request: Request,
    length: u64,
) -> Result<(bytes::Bytes, Vec<Reserved>), Box<Response>> {
    let max = gateway.limits.max_upload_bytes;
    let rules = BodyRules {
        idle: gateway.limits.body_idle_timeout,
        max,
        expected: Some(length),
        sha256: grant.sha256,
    };
    let failure = FailureSlot::default();
    let body = guard_body(
        request.into_body().into_data_stream(),
        rules,
        failure.clone(),
    );
    let mut body = std::pin::pin!(body);
    let mut data = BytesMut::new();
    let mut held = Vec::new();
    let mut reserved = 0;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => {
                // The body never passes `length` (the guard ends it): the room taken does
                // not either.
                let needed = data.len() as u64 + chunk.len() as u64;
                if needed > reserved {
                    let step = (needed - reserved).max(RESERVE_STEP).min(length - reserved);
                    held.push(gateway.conditional.reserve(step, None).await?);
                    reserved += step;
                }
                if data.capacity() == 0 {
                    data.reserve(usize::try_from(length).unwrap_or(0));
                }
                data.extend_from_slice(&chunk);
            }
            Err(e) => {
                let status = match failure.get() {
                    Some(BodyFailure::TooLarge) => {
                        return Err(Box::new(refuse(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            too_large(max),
                        )));
                    }
                    Some(BodyFailure::Stalled) => StatusCode::REQUEST_TIMEOUT,
                    _ => StatusCode::BAD_REQUEST,
                };
                return Err(Box::new(refuse(status, e)));
            }
        }
    }
    if data.len() as u64 != length {
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            "the body is shorter than its Content-Length; nothing was written",
        )));
    }
    Ok((data.freeze(), held))
}

/// The conditional-upload budget of a router.
pub(crate) fn conditional_budget() -> MemoryBudget {
    // One upload may take it all: it is also the largest conditional upload.
    MemoryBudget::new(CONDITIONAL_UPLOAD_BUDGET, CONDITIONAL_UPLOAD_BUDGET)
}
