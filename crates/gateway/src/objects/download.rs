//! GET and HEAD of an object: conditional requests and one byte range as RFC 9110 and S3
//! answer them, a partial range served only from a version whose checksum was verified,
//! and a body streamed under the request deadline and the download memory budget.

use std::net::IpAddr;
use std::ops::Range;

use axum::body::Body;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use maskstore_backends::signing::Grant;
use maskstore_backends::{ByteRange, Error, ErrorKind, ObjectInfo, ObjectStream, ReadOptions};
use tokio::time::Instant;

use super::budget::Reserved;
use super::conditions::{Asked, Span, Verdict};
use super::headers::{describe, set};
use crate::reply::{error_reply, refuse, reply};
use crate::routers::Gateway;
use crate::sendfile::{Room, SENDFILE_FROM, SENDFILE_HELD, Sendfile};

/// Who reads and until when: the client address whose share of the download budget a body
/// takes, a GET's deadline (`None`: a HEAD), and the connection's `sendfile` queue when a
/// verified local body may be sent with it (plain HTTP/1 GETs).
#[derive(Debug, Clone)]
pub(super) struct Reader {
    pub(super) client: Option<IpAddr>,
    pub(super) deadline: Option<Instant>,
    pub(super) sendfile: Option<Sendfile>,
}

/// GET (`reader.deadline` set) and HEAD: the object as the conditions and the range ask. A
/// GET's body stops with an error once the deadline passes.
///
/// A GET without Range is one read, its conditions judged on what the read found. A
/// ranged GET and a HEAD ask for the object's description first: a range is resolved
/// against the size, and `If-Range` decides between the range and the whole object.
pub(super) async fn download(
    gateway: &Gateway,
    grant: &Grant,
    headers: &HeaderMap,
    reader: Reader,
) -> Response {
    let asked = Asked::from_headers(headers);
    match reader.deadline {
        Some(deadline) if !asked.has_range() => {
            whole(gateway, grant, &asked, reader, deadline).await
        }
        _ => described_first(gateway, grant, &asked, reader).await,
    }
}

/// A GET without Range: one verified read of the whole object.
async fn whole(
    gateway: &Gateway,
    grant: &Grant,
    asked: &Asked,
    reader: Reader,
    deadline: Instant,
) -> Response {
    let read = gateway
        .verified
        .read_whole(&gateway.storage, &grant.key, ReadOptions::default());
    let object = match read.await {
        Ok(object) => object,
        Err(e) => return error_reply(&e),
    };
    if let Some(answer) = judged(asked, &object.info) {
        return answer;
    }
    let held = held(&object, reader.sendfile.as_ref());
    let permit = match gateway
        .downloads
        .reserve_download(held, reader.client)
        .await
    {
        Ok(permit) => permit,
        Err(busy) => return *busy,
    };
    let room = Room::new(&gateway.downloads, reader.client);
    match respond(
        object,
        &Span::Whole,
        permit,
        (deadline, reader.sendfile, room),
    )
    .await
    {
        Ok(response) => response,
        Err(e) => error_reply(&e),
    }
}

/// The answer the conditions give before any body: 412, 304, or `None` to go on.
fn judged(asked: &Asked, info: &ObjectInfo) -> Option<Response> {
    match asked.verdict(info) {
        Verdict::Proceed => None,
        Verdict::PreconditionFailed => Some(reply(
            StatusCode::PRECONDITION_FAILED,
            "the object was replaced: its etag is none of those If-Match names, or it was \
             modified after If-Unmodified-Since",
        )),
        Verdict::NotModified => Some(validators(StatusCode::NOT_MODIFIED, info)),
    }
}

/// A HEAD, or a GET with Range: the description first, then (for a GET) the span read
/// from that very version.
async fn described_first(
    gateway: &Gateway,
    grant: &Grant,
    asked: &Asked,
    reader: Reader,
) -> Response {
    let mut replaced_meanwhile = false;
    loop {
        let info = match gateway.storage.head(&grant.key).await {
            Ok(info) => info,
            Err(e) => return error_reply(&e),
        };
        if let Some(answer) = judged(asked, &info) {
            return answer;
        }
        let span = asked.span(&info);
        if span == Span::Unsatisfiable {
            return unsatisfiable(&info);
        }
        let Some(deadline) = reader.deadline else {
            return head_reply(&info, &span);
        };
        match span_body(gateway, &info, &span, &reader, deadline).await {
            Ok(response) => return response,
            // Replaced between the description and the read: the conditions are judged
            // again on the new version, once.
            Err(BodyError::Store(e))
                if e.kind() == ErrorKind::Precondition && !replaced_meanwhile =>
            {
                replaced_meanwhile = true;
            }
            Err(BodyError::Store(e)) => return error_reply(&e),
            Err(BodyError::Answer(answer)) => return *answer,
        }
    }
}

/// Why a body could not be served: the store's failure, or the gateway's own answer.
enum BodyError {
    Store(Error),
    Answer(Box<Response>),
}

impl From<Error> for BodyError {
    fn from(e: Error) -> BodyError {
        BodyError::Store(e)
    }
}

/// The GET answer of `span` of the version `info` describes. A span covering the whole
/// object is read whole, so verified like a whole GET; a smaller one is served only once
/// the version was verified (see [`super::verified`]).
async fn span_body(
    gateway: &Gateway,
    info: &ObjectInfo,
    span: &Span,
    reader: &Reader,
    deadline: Instant,
) -> Result<Response, BodyError> {
    let part = match span {
        Span::Part(r) if !(r.start == 0 && r.end == info.size) => Some(r.clone()),
        _ => None,
    };
    let options = ReadOptions {
        range: part.clone().map(ByteRange::Bounded),
        if_match: info.etag.clone(),
        if_none_match: None,
    };
    let (verified, storage) = (&gateway.verified, &gateway.storage);
    // A part is read only from a verified version (a check now, if need be); a span
    // covering the whole object is a whole read, verified like a whole GET.
    let object = match part {
        Some(_) => verified.read_part(storage, &info.key, options).await?,
        None => verified.read_whole(storage, &info.key, options).await?,
    };
    let permit = gateway
        .downloads
        .reserve_download(held(&object, reader.sendfile.as_ref()), reader.client)
        .await
        .map_err(BodyError::Answer)?;
    let room = Room::new(&gateway.downloads, reader.client);
    let sending = (deadline, reader.sendfile.clone(), room);
    Ok(respond(object, span, permit, sending).await?)
}

/// Whether `object` is sent with `sendfile` on a connection whose queue is `sendfile`: a
/// verified local body of [`SENDFILE_FROM`] bytes or more.
fn sent_with_sendfile(object: &ObjectStream, sendfile: Option<&Sendfile>) -> bool {
    object.file.is_some()
        && sendfile.is_some()
        && object.range.end - object.range.start >= SENDFILE_FROM
}

/// The bytes the body of `object` may hold in memory: its length (the budget caps it at a
/// streamed body's most), or a `sendfile` body's tail, the only bytes it reads.
fn held(object: &ObjectStream, sendfile: Option<&Sendfile>) -> u64 {
    if sent_with_sendfile(object, sendfile) {
        SENDFILE_HELD
    } else {
        object.range.end - object.range.start
    }
}

/// The answer streaming `object`: 200 for [`Span::Whole`], else 206 with its
/// Content-Range. Holds `permit` until the body is dropped. A verified local body of
/// [`SENDFILE_FROM`] bytes or more is sent with `sendfile` on a connection that can.
async fn respond(
    object: ObjectStream,
    span: &Span,
    permit: Reserved,
    (deadline, sendfile, room): (Instant, Option<Sendfile>, Room),
) -> Result<Response, Error> {
    let sendfile = sendfile.filter(|sendfile| sent_with_sendfile(&object, Some(sendfile)));
    let ObjectStream {
        info,
        range: served,
        mut stream,
        file,
        ..
    } = object;
    let status = match span {
        Span::Whole => StatusCode::OK,
        _ => StatusCode::PARTIAL_CONTENT,
    };
    if let (Some(file), Some(sendfile)) = (file, sendfile) {
        let body = crate::sendfile::body(file, sendfile, deadline, (permit, room));
        let mut response = Response::new(Body::from_stream(body));
        describe_span(&mut response, status, &info, &served);
        return Ok(response);
    }
    // A verified read holds each chunk back until the next arrives, so an object of one
    // chunk that fails its checksum fails here, before the status is sent: a 500, never a
    // 200 or 206 with damaged bytes. A larger one is cut off mid-body (the length promised
    // is never reached), the only way HTTP has to take back a 200.
    let first = stream.next().await;
    if let Some(Err(e)) = first {
        return Err(e);
    }
    let stream = futures::stream::iter(first).chain(stream);
    let mut response = Response::new(Body::from_stream(until_deadline(stream, deadline, permit)));
    describe_span(&mut response, status, &info, &served);
    Ok(response)
}

/// HEAD: the object's description, and for a range the status and length a GET would have.
fn head_reply(info: &ObjectInfo, span: &Span) -> Response {
    let mut response = Response::new(Body::empty());
    match span {
        Span::Part(range) => describe_span(&mut response, StatusCode::PARTIAL_CONTENT, info, range),
        _ => describe_span(&mut response, StatusCode::OK, info, &(0..info.size)),
    }
    response
}

/// A status with the object's validators (`ETag`, `Last-Modified`), as a 304 carries them,
/// and the length a 200 would have: without it, hyper would answer a HEAD with
/// `Content-Length: 0`, which RFC 9110 §8.6 forbids in a 304 (a cache would learn the
/// object is empty).
fn validators(status: StatusCode, info: &ObjectInfo) -> Response {
    let mut response = status.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    let mut described = HeaderMap::new();
    describe(&mut described, info);
    for name in [header::ETAG, header::LAST_MODIFIED] {
        if let Some(value) = described.remove(&name) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// 416 with `Content-Range: bytes */<size>` (RFC 9110 §15.5.17): the client's mistake,
/// counted by the alarms as a client error although the store was only asked to describe.
fn unsatisfiable(info: &ObjectInfo) -> Response {
    let mut response = refuse(
        StatusCode::RANGE_NOT_SATISFIABLE,
        format!(
            "the range lies beyond the object's {} bytes; ask for bytes below {}",
            info.size, info.size
        ),
    );
    set(
        response.headers_mut(),
        header::CONTENT_RANGE,
        &format!("bytes */{}", info.size),
    );
    response
}

/// Checked as the client pulls each chunk: a client reading slowly but steadily is cut
/// off at the request deadline (one that stops reading, by the write-stall timeout). The
/// stream holds its share of the download budget until hyper drops it.
fn until_deadline(
    stream: impl Stream<Item = Result<Bytes, Error>> + Send + 'static,
    deadline: Instant,
    permit: Reserved,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    stream.map(move |chunk| {
        let _held = &permit;
        if Instant::now() > deadline {
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
    })
}

/// The status and headers of an answer serving `span` of the object: a 206 says which
/// bytes in `Content-Range`.
fn describe_span(
    response: &mut Response,
    status: StatusCode,
    info: &ObjectInfo,
    span: &Range<u64>,
) {
    *response.status_mut() = status;
    let out = response.headers_mut();
    // Room for every header the answer gets on its way out (its description, the
    // hardening, CORS), so the map is allocated once rather than grown.
    out.reserve(16);
    describe(out, info);
    out.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(span.end - span.start),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        let last = span.end.saturating_sub(1);
        set(
            out,
            header::CONTENT_RANGE,
            &format!("bytes {}-{last}/{}", span.start, info.size),
        );
    }
}
