//! What a server may send besides object data, and how much of it.
//!
//! object_store reads every answer that is not object data whole (a listing page, an error
//! body, the answer to a multipart initiation or completion, a copy, a token), so a server
//! that sends without end would hold it until the request times out: a few gigabytes in
//! 30 seconds. Every such body is read here first, within a bound, and handed on as bytes:
//!
//! - a success answer, at most [`ANSWER_LIMIT`] (32 MiB): the largest is a listing page of
//!   1000 entries (S3's and GCS's pages; maskstore asks Azure for 1000, not its default
//!   5000), each at most some 10 KiB (a 1024-character name escaped, its properties);
//!   the other answers are a few KiB;
//! - an error answer, at most [`REFUSAL_LIMIT`] (64 KiB): an error document is under
//!   1 KiB, S3's `SignatureDoesNotMatch` with the canonical request in hex a few KiB.
//!
//! Object data (the success of a GET of an object) passes as it streams, and so does the
//! answer to a HEAD, which has no body whatever length its headers give. Object data is
//! held to the length its `Content-Length` announces ([`within_announced`]): the HTTP
//! client reads a body framed by `Transfer-Encoding: chunked` to its end even when a
//! `Content-Length` beside it says otherwise, and object_store takes the object's size
//! from that header, so a server could announce a 4-byte object and send gigabytes into
//! a read that collects the object in memory.
//!
//! Reading past the bound ends the exchange with a [`Misanswer`] that names the endpoint
//! (scheme, host, port and path: never the query, which holds a SAS token or a signature)
//! and the bound. Time is bounded by `object_storage.request_timeout`: object_store's
//! client applies it from the connection to the body's last byte, so a body that dribbles
//! ends there. An answer that says it is an error while its status says success (S3 sends
//! `200` with an `<Error>` document for a failed copy or completion, a proxy may send one
//! for a listing) is that error, and a listing answered with another document (a proxy's
//! HTML page) is an error too: read as a listing, either would be an empty one.

use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use maskstore_core::{Provider, shown_cut};
use object_store::client::{HttpError, HttpErrorKind, HttpResponse, HttpResponseBody};

use super::{Exchange, Wire};
use crate::answer::{self, Answer, Meaning};
use crate::providers::profile_of;

/// The most a success answer other than object data may hold.
pub(crate) const ANSWER_LIMIT: usize = 32 * 1024 * 1024;
/// The most an error answer may hold.
pub(crate) const REFUSAL_LIMIT: usize = 64 * 1024;

/// What an answer's body holds, by the request it answers and its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Content {
    /// The answer to a HEAD, which has no body whatever length its headers give.
    Nothing,
    /// An object's bytes: not bounded (a mask may be gigabytes), passed on as it streams.
    ObjectData,
    /// A listing, whose document has this root element.
    Listing(&'static str),
    /// Any other success answer (multipart, copy, batch delete, token).
    Answer,
    /// An error answer (any status but success).
    Refusal,
}

impl Content {
    /// The most this content may hold.
    fn limit(self) -> usize {
        match self {
            Content::Refusal => REFUSAL_LIMIT,
            Content::Nothing => 0,
            Content::ObjectData | Content::Listing(_) | Content::Answer => ANSWER_LIMIT,
        }
    }
}

/// A server's answer that maskstore refused before object_store read it.
#[derive(Debug)]
pub(crate) struct Misanswer {
    /// `GET http://host:port/path`: the request, without its query.
    pub(crate) request: String,
    /// What was wrong.
    pub(crate) problem: Problem,
}

/// What was wrong with an answer.
#[derive(Debug)]
pub(crate) enum Problem {
    /// Its body went on past the bound (`announced`: its declared length, when that
    /// alone was past it).
    TooLong {
        status: StatusCode,
        limit: usize,
        announced: Option<u64>,
    },
    /// A success status with an `<Error>` document.
    Refusal(Answer),
    /// Object data went on past the length its `Content-Length` announced.
    PastAnnounced { status: StatusCode, announced: u64 },
    /// A listing answered with another document (its root element, or none).
    NotAListing {
        expected: &'static str,
        found: Option<String>,
    },
}

impl std::fmt::Display for Misanswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let request = &self.request;
        match &self.problem {
            Problem::TooLong {
                status,
                limit,
                announced: Some(length),
            } => write!(
                f,
                "{request} answered {status} announcing a body of {length} bytes, more than the \
                 {} maskstore reads of such an answer; it read none of it",
                size(*limit)
            ),
            Problem::TooLong { status, limit, .. } => write!(
                f,
                "{request} answered {status} with a body longer than the {} maskstore reads of \
                 such an answer; it stopped reading there",
                size(*limit)
            ),
            Problem::PastAnnounced { status, announced } => write!(
                f,
                "{request} answered {status} announcing {announced} bytes of object data and \
                 sent more; maskstore stopped reading there"
            ),
            Problem::Refusal(answer) => write!(
                f,
                "{request} answered a success status carrying an error document: {}",
                answer.describe()
            ),
            Problem::NotAListing { expected, found } => write!(
                f,
                "{request} answered a listing with {} instead of a <{expected}> document",
                found.as_deref().map_or_else(
                    || "a body that is not XML".to_string(),
                    |root| format!("a <{}> document", shown_cut(root, 100))
                )
            ),
        }
    }
}

impl std::error::Error for Misanswer {
    /// An error document's answer travels on, for maskstore's one classification of
    /// answers ([`answer::answer_of`] finds it by type).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            Problem::Refusal(answer) => Some(answer),
            Problem::TooLong { .. }
            | Problem::PastAnnounced { .. }
            | Problem::NotAListing { .. } => None,
        }
    }
}

impl Misanswer {
    /// Whether the answer was a server's refusal in a success status (classified by its
    /// code like any refusal), rather than a server misbehaving.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(self.problem, Problem::Refusal(_))
    }
}

/// `32 MiB`, `64 KiB`.
fn size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

/// `response` with its body read within the bound of `content` and checked, as bytes.
pub(crate) async fn read(
    exchange: &Exchange,
    response: HttpResponse,
    content: Content,
) -> Result<HttpResponse, HttpError> {
    let (parts, body) = response.into_parts();
    let too_long = |announced| {
        misanswer(
            exchange,
            Problem::TooLong {
                status: parts.status,
                limit: content.limit(),
                announced,
            },
            HttpErrorKind::Decode,
        )
    };
    let announced = http_body::Body::size_hint(&body).lower();
    if announced > content.limit() as u64 {
        return Err(too_long(Some(announced)));
    }
    let Some(bytes) = read_within(body, content.limit()).await? else {
        return Err(too_long(None));
    };
    check(exchange, &bytes, content)?;
    Ok(HttpResponse::from_parts(parts, bytes.into()))
}

/// Object data as it streams, ending in an error once it goes past the length its
/// `Content-Length` announced (a body framed otherwise, see the module's docs).
pub(crate) fn within_announced(exchange: &Exchange, response: HttpResponse) -> HttpResponse {
    let announced = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(announced) = announced else {
        return response;
    };
    let (parts, body) = response.into_parts();
    let past = misanswer(
        exchange,
        Problem::PastAnnounced {
            status: parts.status,
            announced,
        },
        HttpErrorKind::Decode,
    );
    let body = Announced {
        body,
        left: announced,
        past: Some(past),
    };
    HttpResponse::from_parts(parts, HttpResponseBody::new(body))
}

/// A body that fails once it sends more than `left` more bytes.
struct Announced {
    body: HttpResponseBody,
    left: u64,
    /// The error to end with, once.
    past: Option<HttpError>,
}

impl http_body::Body for Announced {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        if self.past.is_none() {
            return std::task::Poll::Ready(None);
        }
        let frame = std::task::ready!(std::pin::Pin::new(&mut self.body).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(|f| f.data_ref())) {
            let length = data.map_or(0, |d| d.len() as u64);
            if length > self.left {
                return std::task::Poll::Ready(self.past.take().map(Err));
            }
            self.left -= length;
        }
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.past.is_none() || self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.body)
    }
}

/// The whole body, or `None` once it goes past `limit` (read no further).
async fn read_within(body: HttpResponseBody, limit: usize) -> Result<Option<Bytes>, HttpError> {
    let mut chunks = body.bytes_stream();
    let mut whole: Vec<u8> = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        let length = whole.len() + chunk.len();
        if length > limit {
            return Ok(None);
        }
        if length > whole.capacity() {
            // Grown by hand so that the buffer never holds more than the limit.
            whole.reserve_exact(length.max(whole.capacity() * 2).min(limit) - whole.len());
        }
        whole.extend_from_slice(&chunk);
    }
    Ok(Some(whole.into()))
}

/// A success answer that is an error document, or a listing that is not one, as the
/// error it stands for.
fn check(exchange: &Exchange, body: &[u8], content: Content) -> Result<(), HttpError> {
    if matches!(
        content,
        Content::Refusal | Content::ObjectData | Content::Nothing
    ) {
        return Ok(());
    }
    let root = root_element(body);
    if root == Some("Error") {
        let answer = answer::parse_body(&String::from_utf8_lossy(body));
        // A busy server's refusal is retried like a 503 (S3 documents `200` with
        // `InternalError` or `SlowDown` for copies and completions); any other is final.
        let busy =
            (profile_of(Some(provider(exchange.wire))).meaning)(&answer) == Some(Meaning::Busy);
        let kind = if busy {
            HttpErrorKind::Interrupted
        } else {
            HttpErrorKind::Decode
        };
        return Err(misanswer(exchange, Problem::Refusal(answer), kind));
    }
    match content {
        Content::Listing(expected) if root != Some(expected) => Err(misanswer(
            exchange,
            Problem::NotAListing {
                expected,
                found: root.map(str::to_string),
            },
            HttpErrorKind::Decode,
        )),
        _ => Ok(()),
    }
}

fn provider(wire: Wire) -> Provider {
    match wire {
        Wire::S3 => Provider::S3,
        Wire::Azure => Provider::Azure,
        Wire::Gcs => Provider::Gcs,
    }
}

fn misanswer(exchange: &Exchange, problem: Problem, kind: HttpErrorKind) -> HttpError {
    HttpError::new(
        kind,
        Misanswer {
            request: exchange.request(),
            problem,
        },
    )
}

/// The name of an XML document's root element, after a byte order mark, white space, the
/// XML declaration, comments and a document type; `None` when the body is not XML.
pub(crate) fn root_element(body: &[u8]) -> Option<&str> {
    let mut rest = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    loop {
        rest = rest.trim_ascii_start();
        let skip_to = |end: &[u8]| {
            rest.windows(end.len())
                .position(|w| w == end)
                .map(|at| &rest[at + end.len()..])
        };
        rest = if rest.starts_with(b"<?") {
            skip_to(b"?>")?
        } else if rest.starts_with(b"<!--") {
            skip_to(b"-->")?
        } else if rest.starts_with(b"<!") {
            skip_to(b">")?
        } else {
            break;
        };
    }
    let name = rest.strip_prefix(b"<")?;
    let end = name
        .iter()
        .position(|b| b.is_ascii_whitespace() || matches!(b, b'>' | b'/'))
        .unwrap_or(name.len());
    std::str::from_utf8(&name[..end])
        .ok()
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_element_is_found_past_declarations_and_comments() {
        let cases: [(&[u8], Option<&str>); 7] = [
            (
                b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<ListBucketResult xmlns=\"x\">",
                Some("ListBucketResult"),
            ),
            (b"  <!-- hi --><Error><Code>", Some("Error")),
            (b"<!DOCTYPE html><html>", Some("html")),
            (b"<EnumerationResults/>", Some("EnumerationResults")),
            (b"{\"access_token\": 1}", None),
            (b"", None),
            (b"<?xml version=\"1.0\"", None),
        ];
        for (body, root) in cases {
            assert_eq!(
                root_element(body),
                root,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    use crate::http_client::tests::exchange;

    async fn answered(
        exchange: &Exchange,
        status: u16,
        body: impl Into<HttpResponseBody>,
    ) -> Result<Bytes, HttpError> {
        let response = http::Response::builder()
            .status(status)
            .body(body.into())
            .unwrap();
        let content = exchange.content(response.status());
        let read = read(exchange, response, content).await?;
        read.into_body().bytes().await
    }

    fn misanswer_of(e: &HttpError) -> &Misanswer {
        std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<Misanswer>())
            .expect("a Misanswer")
    }

    #[test]
    fn only_reads_of_objects_are_object_data() {
        use http::Method;
        let cases = [
            (
                Wire::S3,
                Method::GET,
                "http://s3.example/b/mask/a.png",
                Content::ObjectData,
            ),
            (
                Wire::S3,
                Method::GET,
                "http://s3.example/b/mask/a.png?versionId=3",
                Content::ObjectData,
            ),
            (
                Wire::S3,
                Method::GET,
                "http://s3.example/b?list-type=2&prefix=mask%2F",
                Content::Listing("ListBucketResult"),
            ),
            (
                Wire::S3,
                Method::GET,
                "http://s3.example/b/mask/a?uploadId=1",
                Content::Listing("ListPartsResult"),
            ),
            (
                Wire::S3,
                Method::GET,
                "http://s3.example/b?location",
                Content::Answer,
            ),
            (
                Wire::S3,
                Method::POST,
                "http://s3.example/b/mask/a?uploads",
                Content::Answer,
            ),
            (
                Wire::S3,
                Method::PUT,
                "http://s3.example/b/mask/a",
                Content::Answer,
            ),
            (
                Wire::S3,
                Method::HEAD,
                "http://s3.example/b/mask/a",
                Content::Nothing,
            ),
            // The instance metadata services answer credentials, never object data.
            (
                Wire::S3,
                Method::GET,
                "http://169.254.169.254/latest/meta-data/iam/security-credentials/r",
                Content::Answer,
            ),
            (
                Wire::S3,
                Method::GET,
                "http://169.254.170.2/v2/credentials/x",
                Content::Answer,
            ),
            (
                Wire::S3,
                Method::GET,
                "http://[fd00:ec2::254]/latest/api/token",
                Content::Answer,
            ),
            (
                Wire::Gcs,
                Method::GET,
                "http://metadata.google.internal/computeMetadata/v1/token",
                Content::Answer,
            ),
            (
                Wire::Gcs,
                Method::GET,
                "https://storage.googleapis.com/b/mask/a?generation=7",
                Content::ObjectData,
            ),
            (
                Wire::Gcs,
                Method::GET,
                "https://storage.googleapis.com/storage/v1/b/b/o/mask%2Fa",
                Content::Answer,
            ),
            // An XML API key that merely holds `/storage/v1/` is an object like any other.
            (
                Wire::Gcs,
                Method::GET,
                "https://storage.googleapis.com/b/mask/storage/v1/scan.png",
                Content::ObjectData,
            ),
            (
                Wire::Gcs,
                Method::GET,
                "http://127.0.0.1:4443/b/mask/studies/storage/v1/b/x/o/y",
                Content::ObjectData,
            ),
            (
                Wire::Gcs,
                Method::GET,
                "https://storage.googleapis.com/storage/v1/b/b/o/mask%2Fa?alt=media",
                Content::ObjectData,
            ),
            (
                Wire::Azure,
                Method::GET,
                "https://a.blob.core.windows.net/c/mask/a?sv=2022&sig=x",
                Content::ObjectData,
            ),
            (
                Wire::Azure,
                Method::GET,
                "https://a.blob.core.windows.net/c?restype=container",
                Content::Answer,
            ),
            (
                Wire::Azure,
                Method::GET,
                "http://169.254.169.254/metadata/identity/oauth2/token?api-version=1",
                Content::Answer,
            ),
            // Managed identity elsewhere than the IMDS address (IDENTITY_ENDPOINT, which
            // object_store reads: App Service and Functions, Azure Arc) answers tokens too.
            (
                Wire::Azure,
                Method::GET,
                "http://localhost:4141/MSI/token?api-version=2019-08-01&resource=https%3A%2F%2Fstorage.azure.com",
                Content::Answer,
            ),
            (
                Wire::Azure,
                Method::GET,
                "http://127.0.0.1:40342/metadata/identity/oauth2/token?api-version=2019-08-01&resource=r",
                Content::Answer,
            ),
        ];
        for (wire, method, uri, content) in cases {
            let exchange = exchange(wire, method, uri);
            assert_eq!(exchange.content(StatusCode::OK), content, "{wire:?} {uri}");
            let expected = if exchange.method == http::Method::HEAD {
                Content::Nothing
            } else {
                Content::Refusal
            };
            assert_eq!(exchange.content(StatusCode::NOT_FOUND), expected, "{uri}");
        }
    }

    #[tokio::test]
    async fn an_endless_listing_ends_at_the_bound_naming_the_endpoint_not_the_query() {
        let listing = exchange(
            Wire::S3,
            http::Method::GET,
            "http://store.example:9000/bucket?list-type=2&X-Amz-Signature=secret",
        );
        let endless = futures::stream::repeat_with(|| {
            Ok::<_, HttpError>(http_body::Frame::data(Bytes::from_static(&[b'x'; 65536])))
        });
        let body = HttpResponseBody::new(http_body_util::StreamBody::new(endless));
        let e = answered(&listing, 200, body).await.unwrap_err();
        let text = misanswer_of(&e).to_string();
        assert!(
            text.contains("GET http://store.example:9000/bucket answered 200 OK"),
            "{text}"
        );
        assert!(text.contains("32 MiB"), "{text}");
        assert!(
            !text.contains("secret") && !text.contains("list-type"),
            "{text}"
        );
        assert_eq!(e.kind(), HttpErrorKind::Decode, "never retried");
    }

    #[tokio::test]
    async fn an_error_body_is_bounded_tighter_and_a_short_one_passes_whole() {
        let get = exchange(Wire::Azure, http::Method::GET, "http://a.example/c/mask/x");
        let e = answered(&get, 403, vec![b'x'; REFUSAL_LIMIT + 1])
            .await
            .unwrap_err();
        assert!(misanswer_of(&e).to_string().contains("403 Forbidden"));
        let body = b"<Error><Code>AuthenticationFailed</Code></Error>".to_vec();
        assert_eq!(answered(&get, 403, body.clone()).await.unwrap(), body);
    }

    #[tokio::test]
    async fn an_error_document_in_a_success_is_that_refusal_and_busy_ones_are_retried() {
        let copy = exchange(Wire::S3, http::Method::PUT, "http://s3.example/b/mask/to");
        let body =
            "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>no</Message></Error>";
        let e = answered(&copy, 200, body.to_string()).await.unwrap_err();
        assert_eq!(e.kind(), HttpErrorKind::Decode);
        let found = answer::answer_of(&e).expect("the answer travels on");
        assert_eq!(found.code.as_deref(), Some("AccessDenied"));
        let busy = "<Error><Code>SlowDown</Code></Error>";
        let e = answered(&copy, 200, busy.to_string()).await.unwrap_err();
        assert_eq!(e.kind(), HttpErrorKind::Interrupted);
    }

    /// A server announcing a 4-byte object and sending a body framed otherwise (with
    /// `Transfer-Encoding: chunked` beside the `Content-Length`, the HTTP client reads it
    /// to its end, measured with reqwest): the read ends past the 4 bytes, naming the
    /// endpoint; what keeps its word reads whole.
    #[tokio::test]
    async fn object_data_ends_past_its_announced_length() {
        let get = exchange(
            Wire::S3,
            http::Method::GET,
            "http://s3.example/b/mask/a.png",
        );
        let announced = async |body: HttpResponseBody| {
            let response = http::Response::builder()
                .status(200)
                .header("content-length", "4")
                .body(body)
                .unwrap();
            get.answer(response).await.unwrap().into_body()
        };
        let more = futures::stream::iter((0..64).map(|_| {
            Ok::<_, HttpError>(http_body::Frame::data(Bytes::from_static(&[b'x'; 65536])))
        }));
        let body = announced(HttpResponseBody::new(http_body_util::StreamBody::new(more))).await;
        let Err(e) = body.bytes().await else {
            panic!("4 MiB read where 4 bytes were announced");
        };
        let text = misanswer_of(&e).to_string();
        assert!(
            text.contains("GET http://s3.example/b/mask/a.png answered 200 OK announcing 4 bytes"),
            "{text}"
        );
        assert_eq!(e.kind(), HttpErrorKind::Decode, "never retried");
        let kept = announced(HttpResponseBody::from(Bytes::from_static(b"mask"))).await;
        assert_eq!(kept.bytes().await.unwrap(), "mask");
    }

    #[tokio::test]
    async fn a_listing_must_be_a_listing_and_object_data_is_not_read() {
        let list = exchange(
            Wire::Azure,
            http::Method::GET,
            "http://a.example/c?restype=container&comp=list",
        );
        let e = answered(&list, 200, "<html>proxy</html>".to_string())
            .await
            .unwrap_err();
        let text = misanswer_of(&e).to_string();
        assert!(
            text.contains("<html>") && text.contains("<EnumerationResults>"),
            "{text}"
        );
        let page = "<EnumerationResults><Blobs/></EnumerationResults>".to_string();
        assert!(answered(&list, 200, page).await.is_ok());
        let object = exchange(
            Wire::Azure,
            http::Method::GET,
            "http://a.example/c/mask/x?sv=1&sig=2",
        );
        assert_eq!(
            object.content(StatusCode::OK),
            Content::ObjectData,
            "a SAS query is no listing"
        );
    }
}
