//! GET and HEAD of an object: conditional requests, one byte range, and a body streamed
//! under the request deadline.

use std::ops::Range;

use axum::body::Body;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use maskstore_backends::signing::Grant;
use maskstore_backends::{ByteRange, Error, ObjectInfo, ObjectStream, ReadOptions, Storage};
use maskstore_core::ObjectKey;
use tokio::time::Instant;

use super::headers::{describe, set, unquote};
use crate::reply::error_reply;

/// GET and HEAD: streamed, with Range, ETag, Content-Type, Content-Length and
/// conditional requests. A GET's body stops with an error once `deadline` passes.
pub(super) async fn download(
    storage: &Storage,
    grant: &Grant,
    headers: &HeaderMap,
    deadline: Option<Instant>,
) -> Response {
    let header_text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let range = header_text(header::RANGE).and_then(parse_range);
    let options = ReadOptions {
        range: range.clone(),
        if_match: header_text(header::IF_MATCH).map(unquote),
        if_none_match: header_text(header::IF_NONE_MATCH).map(unquote),
    };
    let Some(deadline) = deadline else {
        return head(storage, &grant.key, options.if_none_match.as_deref()).await;
    };
    let ObjectStream {
        info,
        range: span,
        mut stream,
    } = match storage.read_stream(&grant.key, options).await {
        Ok(object) => object,
        Err(e) => return error_reply(&e),
    };
    // A verified read holds each chunk back until the next arrives, so an object of one
    // chunk that fails its checksum fails here, before the status is sent: a 500, never a
    // 200 with damaged bytes. A larger one is cut off mid-body (the length promised is
    // never reached), the only way HTTP has to take back a 200.
    let first = stream.next().await;
    if let Some(Err(e)) = &first {
        return error_reply(e);
    }
    let stream = futures::stream::iter(first).chain(stream);
    let mut response = Response::new(Body::from_stream(until_deadline(stream, deadline)));
    describe_body(&mut response, &info, &span, range.is_some());
    response
}

/// HEAD: the object's description, or 304 when the client's ETag still matches.
async fn head(storage: &Storage, key: &ObjectKey, if_none_match: Option<&str>) -> Response {
    let info = match storage.head(key).await {
        Ok(info) => info,
        Err(e) => return error_reply(&e),
    };
    if let Some(etag) = if_none_match
        && info.etag.as_deref() == Some(etag)
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
    response
}

/// Checked as the client pulls each chunk: a client reading slowly but steadily is cut
/// off at the request deadline (one that stops reading, by the write-stall timeout).
fn until_deadline(
    stream: impl Stream<Item = Result<Bytes, Error>> + Send + 'static,
    deadline: Instant,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    stream.map(move |chunk| {
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

/// The status and headers of a GET of `span` of the object: 206 with its Content-Range
/// when a range was asked for.
fn describe_body(response: &mut Response, info: &ObjectInfo, span: &Range<u64>, ranged: bool) {
    let (status, length) = if ranged {
        (StatusCode::PARTIAL_CONTENT, span.end - span.start)
    } else {
        (StatusCode::OK, info.size)
    };
    *response.status_mut() = status;
    let out = response.headers_mut();
    describe(out, info);
    set(out, header::CONTENT_LENGTH, &length.to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        let last = span.end.saturating_sub(1);
        set(
            out,
            header::CONTENT_RANGE,
            &format!("bytes {}-{last}/{}", span.start, info.size),
        );
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
}
