//! The HTTP client settings shared by the S3, Azure and GCS clients, from the same config
//! keys (`request_timeout_secs`, `connect_timeout_secs`, `max_retries`,
//! `retry_timeout_secs`, `retry_initial_backoff_ms`, `retry_max_backoff_ms`), and the one
//! HTTP client they share ([`GuardedConnector`]), where every answer a server sends passes
//! maskstore's rules before object_store reads it: every body but object data is read
//! within a bound and checked ([`bounded`]).

pub(crate) mod bounded;

use std::time::Duration;

use maskstore_core::config::ObjectStorageConfig;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use bounded::Content;
pub(crate) use bounded::Misanswer;
#[cfg(test)]
pub(crate) use bounded::Problem;

/// Timeouts per request and per connection.
pub(crate) fn client_options(os: &ObjectStorageConfig) -> ClientOptions {
    ClientOptions::new()
        .with_timeout(Duration::from_secs(os.request_timeout_secs))
        .with_connect_timeout(Duration::from_secs(os.connect_timeout_secs))
}

/// Retries of failed requests, with exponential backoff.
pub(crate) fn retry_config(os: &ObjectStorageConfig) -> RetryConfig {
    RetryConfig {
        max_retries: os.max_retries as usize,
        retry_timeout: Duration::from_secs(os.retry_timeout_secs),
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(os.retry_initial_backoff_ms),
            max_backoff: Duration::from_millis(os.retry_max_backoff_ms),
            base: 2.0,
        },
    }
}

/// Which provider's wire an exchange is on: what maskstore checks in its answers differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    S3,
    Azure,
    Gcs,
}

/// The HTTP client object_store uses for S3, Azure and GCS: reqwest, as object_store would
/// build it from the same [`ClientOptions`], with every exchange passing through
/// [`Exchange`], where maskstore applies its rules for what a server may send.
#[derive(Debug)]
pub(crate) struct GuardedConnector {
    wire: Wire,
}

impl GuardedConnector {
    pub(crate) fn new(wire: Wire) -> GuardedConnector {
        GuardedConnector { wire }
    }
}

impl HttpConnector for GuardedConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Guarded {
            wire: self.wire,
            inner,
        }))
    }
}

#[derive(Debug)]
struct Guarded {
    wire: Wire,
    inner: HttpClient,
}

#[async_trait::async_trait]
impl HttpService for Guarded {
    async fn call(&self, mut request: HttpRequest) -> Result<HttpResponse, HttpError> {
        if self.wire == Wire::Gcs {
            crate::gcs::native::ask_stored_bytes(&mut request);
        }
        let exchange = Exchange::of(self.wire, &request);
        let mut response = match self.inner.execute(request).await {
            Ok(response) => response,
            Err(e) => return Err(exchange.broken(e)),
        };
        // The provider's checksum of the object, which object_store's answer would drop,
        // rides in the answer's extensions (object_store passes them to `GetResult`).
        let native = match self.wire {
            Wire::S3 => None,
            Wire::Azure => crate::azure::native::in_answer(response.headers()),
            Wire::Gcs => crate::gcs::native::in_answer(response.headers()),
        };
        if let Some(native) = native {
            response
                .extensions_mut()
                .insert(crate::checksum::NativeAnswer(native));
        }
        exchange
            .answer(response)
            .await
            .map_err(|e| exchange.broken(e))
    }
}

/// Whether a success answer to a ranged GET says the object is empty in a form object_store
/// cannot read: a 206 whose `Content-Range` names no byte (`bytes 0--1/0`: Azurite,
/// fake-gcs-server), or a 200 with the whole, empty, object (moto), which RFC 9110 §14.2
/// allows a server that ignores `Range`.
fn empty_representation(response: &HttpResponse) -> bool {
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    match response.status().as_u16() {
        206 => header(http::header::CONTENT_RANGE)
            .and_then(|v| v.strip_prefix("bytes "))
            .is_some_and(|v| v.ends_with("/0")),
        200 => {
            header(http::header::CONTENT_RANGE).is_none()
                && header(http::header::CONTENT_LENGTH) == Some("0")
        }
        _ => false,
    }
}

/// The answer RFC 9110 §15.5.17 gives a range no byte of an empty object satisfies: 416
/// with `Content-Range: bytes */0`. A suffix, which the RFC holds satisfiable on an empty
/// object, is then answered by the facade (`Storage::read`), which object_store cannot.
fn unsatisfiable_on_empty() -> HttpResponse {
    let mut response = HttpResponse::new(object_store::client::HttpResponseBody::from(
        bytes::Bytes::new(),
    ));
    *response.status_mut() = http::StatusCode::RANGE_NOT_SATISFIABLE;
    response.headers_mut().insert(
        http::header::CONTENT_RANGE,
        http::HeaderValue::from_static("bytes */0"),
    );
    response
}

/// A transport failure passed on with another kind: it reads as the failure it wraps.
#[derive(Debug)]
struct Broken(HttpError);

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::error::Error as _;
        match self.0.source() {
            Some(source) => std::fmt::Display::fmt(source, f),
            None => std::fmt::Display::fmt(&self.0, f),
        }
    }
}

impl std::error::Error for Broken {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source().and_then(|source| source.source())
    }
}

/// One request as sent, remembered to judge its answer.
pub(crate) struct Exchange {
    pub(crate) wire: Wire,
    pub(crate) method: http::Method,
    /// The whole URI: its query may hold a SAS token or a signature, so only
    /// [`Exchange::request`] is ever shown.
    pub(crate) uri: http::Uri,
    /// The request asked a byte range (a `Range` header).
    pub(crate) ranged: bool,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("wire", &self.wire)
            .field("request", &self.request())
            .finish()
    }
}

impl Exchange {
    fn of(wire: Wire, request: &HttpRequest) -> Exchange {
        Exchange {
            wire,
            method: request.method().clone(),
            uri: request.uri().clone(),
            ranged: request.headers().contains_key(http::header::RANGE),
        }
    }

    /// A request whose connection broke under it (reset, aborted, closed while the answer
    /// or its body was awaited), as object_store should judge it. object_store sends such
    /// a request again only when it marks the request idempotent, and it marks no delete
    /// of an object so: one pooled connection the server reset as a delete was written to
    /// failed the delete outright. Deleting is idempotent (RFC 9110 §9.2.2) and maskstore
    /// takes a missing key as deleted, so a delete that broke is sent again within the
    /// configured retries, as a request that never reached the server would be. Every
    /// other request is judged as object_store judges it.
    fn broken(&self, e: HttpError) -> HttpError {
        if e.kind() == HttpErrorKind::Interrupted && self.deletes() {
            HttpError::new(HttpErrorKind::Request, Broken(e))
        } else {
            e
        }
    }

    /// Whether the request deletes and does nothing else: a `DELETE`, or Azure's blob batch
    /// (`POST ?comp=batch`), which object_store sends only with deletes. (S3's
    /// multi-object delete is not used: see `s3::builder`.)
    fn deletes(&self) -> bool {
        if self.method == http::Method::DELETE {
            return true;
        }
        let query = || url::form_urlencoded::parse(self.uri.query().unwrap_or_default().as_bytes());
        self.wire == Wire::Azure
            && self.method == http::Method::POST
            && query().any(|(k, v)| k == "comp" && v == "batch")
    }

    /// The answer as object_store gets it: metadata headers that are not ASCII repaired
    /// (object_store would refuse the whole read), object data as it streams, any other
    /// body read within its bound and checked first.
    async fn answer(&self, mut response: HttpResponse) -> Result<HttpResponse, HttpError> {
        crate::metadata::repair_headers(response.headers_mut());
        if self.ranged && empty_representation(&response) {
            response = unsatisfiable_on_empty();
        }
        match self.content(response.status()) {
            Content::ObjectData => Ok(bounded::within_announced(self, response)),
            Content::Nothing => Ok(response),
            content => bounded::read(self, response, content).await,
        }
    }

    /// `GET http://host:9000/bucket/mask/a.png`: the request for people, without its query
    /// (a SAS token or a signature) or user information.
    pub(crate) fn request(&self) -> String {
        let scheme = self.uri.scheme_str().unwrap_or("http");
        let host = self.uri.host().unwrap_or("?");
        let port = self.uri.port().map(|p| format!(":{p}")).unwrap_or_default();
        let path = maskstore_core::shown_cut(self.uri.path(), 300);
        format!("{} {scheme}://{host}{port}{path}", self.method)
    }

    /// What the answer's body holds, by the request and the status: object data is the
    /// success of a read of an object (no listing or other sub-resource in the query, not
    /// a credential service), everything else is bounded.
    fn content(&self, status: http::StatusCode) -> Content {
        if self.method == http::Method::HEAD {
            return Content::Nothing;
        }
        if !status.is_success() {
            return Content::Refusal;
        }
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(self.uri.query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let has = |name: &str| query.iter().any(|(k, _)| k == name);
        let get = self.method == http::Method::GET;
        let listing = match self.wire {
            Wire::S3 | Wire::Gcs if has("list-type") => Some("ListBucketResult"),
            Wire::S3 | Wire::Gcs if has("uploads") => Some("ListMultipartUploadsResult"),
            Wire::S3 | Wire::Gcs if has("uploadId") => Some("ListPartsResult"),
            Wire::Azure if query.iter().any(|(k, v)| k == "comp" && v == "list") => {
                Some("EnumerationResults")
            }
            _ => None,
        };
        match listing {
            Some(root) if get => Content::Listing(root),
            _ if get && self.reads_object(&query) => Content::ObjectData,
            _ => Content::Answer,
        }
    }

    /// Whether a GET with `query` reads an object's bytes on this wire.
    fn reads_object(&self, query: &[(String, String)]) -> bool {
        if is_credential_service(&self.uri) {
            return false;
        }
        let signed = |k: &str| {
            let lower = k.to_ascii_lowercase();
            lower.starts_with("x-amz-") || lower.starts_with("x-goog-")
        };
        match self.wire {
            Wire::S3 => query.iter().all(|(k, _)| {
                matches!(k.as_str(), "versionId" | "partNumber" | "x-id")
                    || k.starts_with("response-")
                    || signed(k)
            }),
            // Everything else in a Blob service query is a SAS token's or a version's;
            // `api-version` and `resource` are a managed identity's token request, which
            // object_store sends wherever IDENTITY_ENDPOINT points (App Service: localhost).
            Wire::Azure => !query.iter().any(|(k, _)| {
                matches!(k.as_str(), "comp" | "restype" | "api-version" | "resource")
            }),
            // The JSON API reads an object's bytes with `alt=media` only. Its paths begin
            // `/storage/v1/b/`; an XML API path begins with the bucket, and a key may hold
            // `/storage/v1/` anywhere (a bucket named `storage` with keys under `v1/b/`
            // would read as the JSON API, bounded).
            Wire::Gcs if json_api(self.uri.path()) => {
                query.iter().any(|(k, v)| k == "alt" && v == "media")
            }
            Wire::Gcs => query
                .iter()
                .all(|(k, _)| matches!(k.as_str(), "generation" | "userProject") || signed(k)),
        }
    }
}

/// Whether `path` is one of GCS's JSON API (its media downloads included).
fn json_api(path: &str) -> bool {
    path.starts_with("/storage/v1/b/") || path.starts_with("/download/storage/v1/b/")
}

/// Whether `uri` is a cloud's instance metadata service (AWS, Azure and Google Cloud
/// answer tokens there, on link-local addresses or `metadata.google.internal`).
fn is_credential_service(uri: &http::Uri) -> bool {
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_link_local(),
        Ok(std::net::IpAddr::V6(ip)) => ip.segments()[..2] == [0xfd00, 0x0ec2],
        Err(_) => matches!(host, "metadata.google.internal" | "metadata"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)]) -> HttpResponse {
        let mut response = HttpResponse::new(object_store::client::HttpResponseBody::from(
            bytes::Bytes::new(),
        ));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            response.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        response
    }

    #[test]
    fn empty_representations_under_a_range_are_told_apart() {
        // Azurite and fake-gcs-server: a 206 naming no byte of an empty object.
        assert!(empty_representation(&answer(
            206,
            &[("content-range", "bytes 0--1/0")]
        )));
        // moto: the whole, empty, object.
        assert!(empty_representation(&answer(
            200,
            &[("content-length", "0")]
        )));
        // Real ranges, a non-empty whole object, and a 200 that names a range stay.
        for (status, headers) in [
            (206, vec![("content-range", "bytes 0-0/1")]),
            (206, vec![("content-range", "bytes 10-19/100")]),
            (200, vec![("content-length", "7")]),
            (200, vec![]),
            (
                200,
                vec![("content-length", "0"), ("content-range", "bytes */0")],
            ),
            (416, vec![("content-range", "bytes */0")]),
        ] {
            let response = answer(status, &headers);
            assert!(!empty_representation(&response), "{status} {headers:?}");
        }
    }

    /// A remembered request, unranged.
    pub(super) fn exchange(wire: Wire, method: http::Method, uri: &str) -> Exchange {
        Exchange {
            wire,
            method,
            uri: uri.parse().unwrap(),
            ranged: false,
        }
    }

    fn reset() -> HttpError {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
        HttpError::new(HttpErrorKind::Interrupted, reset)
    }

    #[test]
    fn only_deletes_are_sent_again_after_a_broken_connection() {
        use http::Method;
        let deletes = [
            (Wire::S3, Method::DELETE, "http://h:9000/b/mask/a.png"),
            (Wire::Gcs, Method::DELETE, "http://h/b/mask%2Fa.png"),
            (Wire::Azure, Method::DELETE, "http://h/acct/c/mask/a.png"),
            (
                Wire::Azure,
                Method::POST,
                "http://h/acct/c?restype=container&comp=batch",
            ),
        ];
        for (wire, method, uri) in deletes {
            let exchange = exchange(wire, method.clone(), uri);
            assert!(exchange.deletes(), "{wire:?} {method} {uri}");
            let e = exchange.broken(reset());
            assert_eq!(e.kind(), HttpErrorKind::Request, "{wire:?} {method} {uri}");
            // It reads as the failure it wraps, and its chain holds the cause.
            assert_eq!(e.to_string(), reset().to_string());
            let chain = crate::error::chain_text(&e);
            assert!(chain.contains("connection reset"), "{chain}");
            // A delete that timed out or failed otherwise is judged as before.
            for kind in [HttpErrorKind::Timeout, HttpErrorKind::Unknown] {
                let e = exchange.broken(HttpError::new(kind, std::io::Error::other("x")));
                assert_eq!(e.kind(), kind);
            }
        }
        let others = [
            (Wire::S3, Method::PUT, "http://h:9000/b/mask/a.png"),
            (Wire::S3, Method::GET, "http://h:9000/b/mask/a.png"),
            (Wire::S3, Method::POST, "http://h:9000/b/mask/a.png?uploads"),
            (
                Wire::S3,
                Method::POST,
                "http://h:9000/b/mask/a.png?uploadId=1",
            ),
            // S3's multi-object delete is not sent (bulk deletes are off).
            (Wire::S3, Method::POST, "http://h:9000/b?delete"),
            // A key holding the words is not the query.
            (
                Wire::Azure,
                Method::PUT,
                "http://h/acct/c/comp%3Dbatch?comp=block",
            ),
            (Wire::Gcs, Method::POST, "http://h/b/mask%2Fa.png?uploads"),
            (Wire::Gcs, Method::POST, "http://h/b?delete"),
            (Wire::Gcs, Method::PUT, "http://h/b/mask%2Fa.png"),
            (
                Wire::Azure,
                Method::PUT,
                "http://h/acct/c/mask/a.png?comp=block",
            ),
            (Wire::Azure, Method::POST, "http://h/acct/c?comp=list"),
            (Wire::Azure, Method::POST, "http://h/acct/c?delete"),
        ];
        for (wire, method, uri) in others {
            let exchange = exchange(wire, method.clone(), uri);
            assert!(!exchange.deletes(), "{wire:?} {method} {uri}");
            assert_eq!(
                exchange.broken(reset()).kind(),
                HttpErrorKind::Interrupted,
                "{wire:?} {method} {uri}"
            );
        }
    }

    #[test]
    fn an_unsatisfiable_answer_is_a_416_naming_the_empty_length() {
        let response = unsatisfiable_on_empty();
        assert_eq!(response.status(), http::StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(response.headers()[http::header::CONTENT_RANGE], "bytes */0");
    }
}
