//! Writes through GCS's JSON API: uploads (`uploadType=multipart` for one request,
//! `uploadType=resumable` for streaming) and server-side copies (`rewriteTo`).
//!
//! object_store writes with GCS's XML API (`PUT /<bucket>/<object>`). Google Cloud takes
//! both, but fake-gcs-server implements only the JSON API's uploads (its XML PUT wants a
//! signed URL), so the provider writes through the JSON API, which GCS documents as fully
//! equivalent (<https://cloud.google.com/storage/docs/json_api/v1/objects/insert>), and
//! keeps object_store's XML reads, listings and deletes, which both serve.
//!
//! Conditions are GCS's generation preconditions: `ifGenerationMatch=0` for a create-only
//! write, `ifGenerationMatch=<generation>` for an update; GCS answers 412 when they fail.
//! Requests carry the bearer token of object_store's credential provider (the service
//! account key's, or the metadata server's). A refusal travels as a typed
//! [`Answer`](crate::answer::Answer) with the XML API's code it stands for, so that
//! maskstore's one classification reads both APIs alike (see [`refusal`]); no token or key
//! ever appears in it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use object_store::gcp::GcpCredentialProvider;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, MultipartUpload, PutPayload, PutResult, Result, UploadPart,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use tokio::sync::{Mutex, watch};

use crate::answer::Answer;
use crate::read_answer::bounded_body;

/// The store name in object_store errors.
const STORE: &str = "GCS";
/// GCS wants every chunk of a resumable upload but the last to be a multiple of 256 KiB.
pub(crate) const CHUNK_QUANTUM: usize = 256 * 1024;
/// A resumable upload's chunk is sent once this much is buffered (a multiple of
/// [`CHUNK_QUANTUM`]): memory stays bounded by it plus one part.
pub(crate) const CHUNK_TARGET: usize = 8 * 1024 * 1024;
/// Requests of a rewrite before giving up (GCS copies up to a few GiB per request).
const MAX_REWRITE_ROUNDS: usize = 10_000;
/// The longest error body kept for a message.
const MAX_ERROR_BODY: usize = 4096;
/// The longest success body read: GCS answers with an object resource of a few hundred
/// bytes, so more is not GCS (a wrong `endpoint`, a proxy's page, a hostile server), and
/// reading it whole would hold whatever it sends until the timeout.
const MAX_SUCCESS_BODY: usize = 1024 * 1024;

/// What is left unescaped in a path segment: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One bucket's JSON API.
#[derive(Clone)]
pub(crate) struct JsonApi {
    client: reqwest::Client,
    /// `https://storage.googleapis.com`, or the configured endpoint (no trailing `/`).
    base: String,
    bucket: String,
    credentials: GcpCredentialProvider,
    /// When to send a request again: object_store's settings for its own requests.
    retry: object_store::RetryConfig,
}

impl std::fmt::Debug for JsonApi {
    // The credential provider holds the key: never show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonApi")
            .field("base", &self.base)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// What a request was, for the meaning of its 404 and 412.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// An upload: a 404 means the bucket is missing.
    Upload,
    /// A create-only upload: a 412 means the object exists.
    Create,
    /// A copy: a 404 means the source (or the bucket) is missing.
    Copy,
    /// A chunk of a resumable upload: a 404 means the session expired.
    Chunk,
}

/// The `{"error": {"message": …, "errors": [{"reason": …}]}}` document of a JSON refusal.
#[derive(Debug, Deserialize, Default)]
struct ErrorDoc {
    error: Option<ErrorBody>,
}

#[derive(Debug, Deserialize, Default)]
struct ErrorBody {
    message: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Deserialize, Default)]
struct ErrorItem {
    reason: Option<String>,
    message: Option<String>,
}

/// The object_store error a refused JSON request stands for.
pub(crate) fn refusal(
    op: Op,
    path: &Path,
    status: reqwest::StatusCode,
    body: &str,
) -> object_store::Error {
    let doc: ErrorDoc = serde_json::from_str(body).unwrap_or_default();
    let error = doc.error.unwrap_or_default();
    let reason = error.errors.first().and_then(|e| e.reason.clone());
    let message = error
        .message
        .or_else(|| error.errors.first().and_then(|e| e.message.clone()))
        .unwrap_or_else(|| {
            let text = body.trim();
            let end = text
                .char_indices()
                .nth(300)
                .map_or(text.len(), |(index, _)| index);
            text[..end].to_string()
        });
    // The XML API's code for the same refusal, which maskstore reads.
    let code = match (status.as_u16(), op) {
        (401, _) => Some("AuthenticationRequired"),
        (403, _) => Some("AccessDenied"),
        (404, Op::Upload | Op::Create) => Some("NoSuchBucket"),
        (404, _) => Some("NoSuchKey"),
        (412, _) => Some("PreconditionFailed"),
        (429, _) => Some("SlowDown"),
        (500 | 503, _) => Some("ServiceUnavailable"),
        _ => reason.as_deref().map(|_| "InvalidArgument"),
    };
    let detail = match &reason {
        Some(reason) => format!("{message} ({reason})"),
        None => message,
    };
    let source: Box<dyn std::error::Error + Send + Sync> = Box::new(Answer {
        status: Some(status.as_u16()),
        code: code.map(str::to_string),
        message: Some(detail),
        region: None,
    });
    let path = path.to_string();
    match (status.as_u16(), op) {
        (412, Op::Create) => object_store::Error::AlreadyExists { path, source },
        (412, _) => object_store::Error::Precondition { path, source },
        (404, Op::Copy) => object_store::Error::NotFound { path, source },
        _ => object_store::Error::Generic {
            store: STORE,
            source,
        },
    }
}

/// A request that got no answer.
fn unreachable(e: reqwest::Error) -> object_store::Error {
    // reqwest's text names the URL (bucket and key), never the bearer token.
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(e.without_url()),
    }
}

/// Whether an answer is one GCS's retry strategy sends again: 408, 429 and 5xx.
fn transient_status(status: reqwest::StatusCode) -> bool {
    status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
}

/// The wait before retry `retries + 1`: the first backoff times `base` to the power of
/// `retries`, at most the largest, of which a random part from a half to the whole.
fn backoff(config: &object_store::BackoffConfig, retries: usize) -> Duration {
    let exponent = i32::try_from(retries).unwrap_or(i32::MAX);
    let full = config.init_backoff.as_secs_f64() * config.base.powi(exponent);
    let full = full.min(config.max_backoff.as_secs_f64());
    // A base or a first wait that makes no finite, positive wait waits the longest.
    let full = if full.is_finite() && full >= 0.0 {
        full
    } else {
        config.max_backoff.as_secs_f64()
    };
    Duration::try_from_secs_f64(full * (0.5 + rand::random::<f64>() / 2.0)).unwrap_or_default()
}

/// The object resource GCS answers an upload or a rewrite with.
#[derive(Debug, Deserialize)]
struct Resource {
    generation: Option<String>,
    /// The object's size in bytes: a decimal string on GCS; kept as found, so that another
    /// form costs only the size check, never the generation.
    size: Option<serde_json::Value>,
}

impl Resource {
    /// The size, from a decimal string or a number.
    fn size(&self) -> Option<u64> {
        match self.size.as_ref()? {
            serde_json::Value::String(text) => text.parse().ok(),
            value => value.as_u64(),
        }
    }
}

/// The answer to `rewriteTo`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RewriteAnswer {
    done: bool,
    rewrite_token: Option<String>,
    resource: Option<Resource>,
}

/// The JSON resource fields of `attributes`.
fn resource(name: &str, attributes: &Attributes) -> Result<serde_json::Value> {
    let mut object = serde_json::Map::new();
    object.insert("name".into(), name.into());
    let mut metadata = serde_json::Map::new();
    for (attribute, value) in attributes {
        let value: serde_json::Value = value.as_ref().into();
        match attribute {
            Attribute::ContentType => object.insert("contentType".into(), value),
            Attribute::CacheControl => object.insert("cacheControl".into(), value),
            Attribute::ContentDisposition => object.insert("contentDisposition".into(), value),
            Attribute::ContentEncoding => object.insert("contentEncoding".into(), value),
            Attribute::ContentLanguage => object.insert("contentLanguage".into(), value),
            Attribute::StorageClass => object.insert("storageClass".into(), value),
            Attribute::Metadata(key) => metadata.insert(key.to_string(), value),
            other => {
                return Err(object_store::Error::NotImplemented {
                    operation: format!("storing the attribute {other:?} on GCS"),
                    implementer: STORE.to_string(),
                });
            }
        };
    }
    if !metadata.is_empty() {
        object.insert("metadata".into(), metadata.into());
    }
    Ok(object.into())
}

/// The `ifGenerationMatch` a write carries, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Condition {
    /// No condition.
    None,
    /// Only if no object exists (`ifGenerationMatch=0`).
    Absent,
    /// Only if the object's generation is this one.
    Generation(String),
}

impl Condition {
    fn query(&self) -> Option<(&'static str, &str)> {
        match self {
            Condition::None => None,
            Condition::Absent => Some(("ifGenerationMatch", "0")),
            Condition::Generation(g) => Some(("ifGenerationMatch", g.as_str())),
        }
    }

    fn op(&self) -> Op {
        match self {
            Condition::Absent => Op::Create,
            _ => Op::Upload,
        }
    }
}

impl JsonApi {
    /// The JSON API of `bucket` at `base`, authorised by `credentials`.
    pub(crate) fn new(
        base: &str,
        bucket: &str,
        credentials: GcpCredentialProvider,
        timeout: Duration,
        connect_timeout: Duration,
        retry: object_store::RetryConfig,
    ) -> std::result::Result<JsonApi, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .build()?;
        Ok(JsonApi {
            client,
            base: base.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            credentials,
            retry,
        })
    }

    /// Sends the request `build` makes (built and authorised anew for each try), again
    /// after a transient failure, as object_store sends its own requests (the same config
    /// keys, `http_client::retry_config`): after an answer 408, 429 or 5xx (GCS's retry
    /// strategy), a connection that could not be made, and, if the request is `idempotent`,
    /// a timeout or a connection that broke under it. Backoff doubles from the first, with
    /// jitter, and ends at `max_retries` tries again or `retry_timeout`, whichever comes
    /// first; the last answer or failure is the caller's.
    ///
    /// A write under a precondition is not idempotent here: sent again after its
    /// connection broke, it could meet its own object and report it as another writer's.
    async fn send_retrying(
        &self,
        idempotent: bool,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let started = std::time::Instant::now();
        let mut retries = 0;
        loop {
            let sent = self.authorised(build()).await?.send().await;
            let why = match &sent {
                Ok(response) if transient_status(response.status()) => {
                    Some(format!("GCS answered {}", response.status()))
                }
                Ok(_) => None,
                Err(e) if e.is_connect() => Some("the connection could not be made".into()),
                Err(e) if idempotent && e.is_timeout() => Some("the request timed out".into()),
                Err(e) if idempotent && e.is_request() => Some("the connection broke".into()),
                Err(_) => None,
            };
            let Some(wait) = why.and_then(|why| self.next_try(retries, started, &why)) else {
                return sent.map_err(unreachable);
            };
            drop(sent);
            tokio::time::sleep(wait).await;
            retries += 1;
        }
    }

    /// The wait before retry `retries + 1` of a request first sent at `started`, logged
    /// with `why` (never a URL: a session's holds its upload id); none once `max_retries`
    /// retries or `retry_timeout` are spent.
    fn next_try(&self, retries: usize, started: std::time::Instant, why: &str) -> Option<Duration> {
        let left = self.retry.retry_timeout.saturating_sub(started.elapsed());
        if retries >= self.retry.max_retries || left.is_zero() {
            return None;
        }
        let wait = backoff(&self.retry.backoff, retries).min(left);
        tracing::info!(
            retry = retries + 1,
            max_retries = self.retry.max_retries,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "{why}; trying again"
        );
        Some(wait)
    }

    async fn authorised(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder> {
        let credential = self.credentials.get_credential().await?;
        Ok(if credential.bearer.is_empty() {
            request
        } else {
            request.bearer_auth(&credential.bearer)
        })
    }

    fn segment(text: &str) -> String {
        utf8_percent_encode(text, SEGMENT).to_string()
    }

    /// The upload URL with `query` (values escaped).
    fn upload_url(&self, query: &[(&str, &str)]) -> String {
        let mut url = format!(
            "{}/upload/storage/v1/b/{}/o",
            self.base,
            Self::segment(&self.bucket)
        );
        with_query(&mut url, query);
        url
    }

    /// The objects collection of the bucket (`…/storage/v1/b/<bucket>/o`), or with `name`
    /// one object, its whole name escaped as one segment (`/` as `%2F`, as the JSON API
    /// names objects), so that no `.`, `..` or `//` in it can be read as a path step.
    pub(super) fn objects_url(&self, name: Option<&str>) -> String {
        let mut url = format!(
            "{}/storage/v1/b/{}/o",
            self.base,
            Self::segment(&self.bucket)
        );
        if let Some(name) = name {
            url.push('/');
            url.push_str(&Self::segment(name));
        }
        url
    }

    /// `url` with `query` appended, each name and value escaped.
    pub(super) fn with_query(mut url: String, query: &[(&str, &str)]) -> String {
        with_query(&mut url, query);
        url
    }

    /// Sends `method` to `url` with the client's credentials and `headers`: the response
    /// as it comes (the caller bounds what it reads of it).
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<reqwest::Response> {
        let idempotent = matches!(
            method,
            reqwest::Method::GET | reqwest::Method::HEAD | reqwest::Method::DELETE
        );
        self.send_retrying(idempotent, || {
            let mut request = self.client.request(method.clone(), url);
            for (name, value) in headers {
                request = request.header(*name, value.as_str());
            }
            request
        })
        .await
    }

    /// Sends the request `build` makes (again after a transient failure, see
    /// [`JsonApi::send_retrying`]); a success's body, or the refusal as object_store's
    /// error.
    async fn send(
        &self,
        op: Op,
        path: &Path,
        idempotent: bool,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Bytes> {
        let response = self.send_retrying(idempotent, build).await?;
        let status = response.status();
        if status.is_success() {
            return success_body(response).await;
        }
        Err(refusal(op, path, status, &error_body(response).await))
    }

    /// Stores `payload` at `path` in one request (`uploadType=multipart`); the new
    /// object's generation.
    pub(crate) async fn insert(
        &self,
        path: &Path,
        payload: PutPayload,
        attributes: &Attributes,
        condition: &Condition,
    ) -> Result<Option<String>> {
        let metadata = serde_json::to_vec(&resource(path.as_ref(), attributes)?)
            .expect("a JSON value serialises");
        let content_type = attributes
            .get(&Attribute::ContentType)
            .map_or("application/octet-stream", |v| v.as_ref());
        let boundary = format!("maskstore-{:032x}", rand::random::<u128>());
        let mut body = BytesMut::with_capacity(payload.content_length() + metadata.len() + 256);
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(&metadata);
        body.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes(),
        );
        for chunk in &payload {
            body.extend_from_slice(chunk);
        }
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut query = vec![("uploadType", "multipart")];
        query.extend(condition.query());
        let (url, body) = (self.upload_url(&query), body.freeze());
        let request = || {
            self.client
                .post(&url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    format!("multipart/related; boundary={boundary}"),
                )
                .body(body.clone())
        };
        let idempotent = *condition == Condition::None;
        let answer = self.send(condition.op(), path, idempotent, request).await?;
        Ok(generation_of(&answer))
    }

    /// Starts a resumable upload of `path`; the session's URL.
    pub(crate) async fn start_resumable(
        &self,
        path: &Path,
        attributes: &Attributes,
    ) -> Result<String> {
        let metadata = serde_json::to_vec(&resource(path.as_ref(), attributes)?)
            .expect("a JSON value serialises");
        let url = self.upload_url(&[("uploadType", "resumable")]);
        // Sent again, it starts another session; the first, holding nothing, expires.
        let request = || {
            self.client
                .post(&url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/json; charset=UTF-8",
                )
                .body(metadata.clone())
        };
        let response = self.send_retrying(true, request).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(refusal(
                Op::Upload,
                path,
                status,
                &error_body(response).await,
            ));
        }
        response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| object_store::Error::Generic {
                store: STORE,
                source: "GCS started a resumable upload without a Location header".into(),
            })
    }

    /// Sends `data` at `offset` of a resumable upload; `total` is the object's size once
    /// known (the last chunk). With no data, it asks what GCS holds. Sent once: a failure
    /// says whether it is transient, for [`Resumable`] to ask and resume.
    async fn send_chunk(
        &self,
        session: &str,
        path: &Path,
        offset: u64,
        data: Bytes,
        total: Option<u64>,
    ) -> std::result::Result<Chunk, ChunkFailure> {
        let len = data.len() as u64;
        let total_text = total.map_or_else(|| "*".to_string(), |t| t.to_string());
        let range = if len == 0 {
            format!("bytes */{total_text}")
        } else {
            format!("bytes {offset}-{}/{total_text}", offset + len - 1)
        };
        let request = self
            .client
            .put(session)
            .header(reqwest::header::CONTENT_RANGE, range)
            .body(data);
        let response = match self.authorised(request).await {
            Ok(request) => request.send().await,
            Err(error) => return Err(ChunkFailure::lasting(error)),
        };
        // Any connection failure is transient: what GCS kept is asked before resuming.
        let response = response.map_err(|e| ChunkFailure {
            error: unreachable(e),
            transient: true,
        })?;
        let status = response.status();
        if status.as_u16() == 308 {
            // "Range: bytes=0-N" names what GCS holds; none when it holds nothing.
            let Some(range) = response.headers().get(reqwest::header::RANGE) else {
                return Ok(Chunk::Held(0));
            };
            let held = range
                .to_str()
                .ok()
                .and_then(|v| v.rsplit('-').next())
                .and_then(|end| end.trim().parse::<u64>().ok())
                .and_then(|end| end.checked_add(1));
            return held.map(Chunk::Held).ok_or_else(|| {
                let shown = String::from_utf8_lossy(range.as_bytes());
                ChunkFailure::lasting(object_store::Error::Generic {
                    store: STORE,
                    source: format!(
                        "GCS answered a chunk with a Range that names no byte count: {:?}",
                        maskstore_core::shown_cut(&shown, 100)
                    )
                    .into(),
                })
            });
        }
        if status.is_success() {
            let answer: Bytes = match bounded_body(response, MAX_SUCCESS_BODY).await {
                (body, Ok(false)) => body.into(),
                (_, Ok(true)) => return Err(ChunkFailure::lasting(success_too_long())),
                // Stored or not: GCS is asked, and answers the end again if it was.
                (_, Err(e)) => {
                    return Err(ChunkFailure {
                        error: unreachable(e),
                        transient: true,
                    });
                }
            };
            let resource = serde_json::from_slice::<Resource>(&answer).ok();
            let size = resource.as_ref().and_then(Resource::size);
            let generation = resource.and_then(|r| r.generation);
            return Ok(Chunk::Finished { generation, size });
        }
        Err(ChunkFailure {
            transient: transient_status(status),
            error: refusal(Op::Chunk, path, status, &error_body(response).await),
        })
    }

    /// Cancels a resumable upload (GCS answers 499).
    async fn cancel(&self, session: &str, path: &Path) -> Result<()> {
        let response = self
            .send_retrying(true, || self.client.delete(session))
            .await?;
        let status = response.status();
        if status.is_success() || status.as_u16() == 499 || status.as_u16() == 404 {
            return Ok(());
        }
        Err(refusal(
            Op::Chunk,
            path,
            status,
            &error_body(response).await,
        ))
    }

    /// Copies `from` to `to` server-side (`rewriteTo`, repeated until done); the copy's
    /// generation.
    pub(crate) async fn rewrite(&self, from: &Path, to: &Path) -> Result<Option<String>> {
        let bucket = Self::segment(&self.bucket);
        let url = format!(
            "{}/storage/v1/b/{bucket}/o/{}/rewriteTo/b/{bucket}/o/{}",
            self.base,
            Self::segment(from.as_ref()),
            Self::segment(to.as_ref()),
        );
        let mut token: Option<String> = None;
        for _ in 0..MAX_REWRITE_ROUNDS {
            let mut target = url.clone();
            if let Some(token) = &token {
                with_query(&mut target, &[("rewriteToken", token.as_str())]);
            }
            // An unconditional copy: sent again, it writes the same bytes again.
            let request = || {
                self.client
                    .post(&target)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body("{}")
            };
            let answer = self.send(Op::Copy, from, true, request).await?;
            let parsed: RewriteAnswer =
                serde_json::from_slice(&answer).map_err(|e| object_store::Error::Generic {
                    store: STORE,
                    source: format!("GCS answered a rewrite with an unreadable document: {e}")
                        .into(),
                })?;
            if parsed.done {
                return Ok(parsed.resource.and_then(|r| r.generation));
            }
            token = Some(
                parsed
                    .rewrite_token
                    .ok_or_else(|| object_store::Error::Generic {
                        store: STORE,
                        source: "GCS answered an unfinished rewrite without a rewriteToken".into(),
                    })?,
            );
        }
        Err(object_store::Error::Generic {
            store: STORE,
            source: format!("GCS did not finish the copy in {MAX_REWRITE_ROUNDS} requests").into(),
        })
    }
}

/// `key` with each `/`-separated segment escaped (RFC 3986's unreserved characters kept).
pub(crate) fn escape_key(key: &str) -> String {
    key.split('/')
        .map(JsonApi::segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// Appends `query` to `url`, each name and value escaped.
fn with_query(url: &mut String, query: &[(&str, &str)]) {
    for (index, (name, value)) in query.iter().enumerate() {
        url.push(if index == 0 && !url.contains('?') {
            '?'
        } else {
            '&'
        });
        url.push_str(&utf8_percent_encode(name, SEGMENT).to_string());
        url.push('=');
        url.push_str(&utf8_percent_encode(value, SEGMENT).to_string());
    }
}

pub(crate) fn generation_of(answer: &[u8]) -> Option<String> {
    serde_json::from_slice::<Resource>(answer)
        .ok()
        .and_then(|r| r.generation)
}

/// A success's body, of at most [`MAX_SUCCESS_BODY`] bytes; a longer one is an error
/// that says what to check, read no further.
async fn success_body(response: reqwest::Response) -> Result<Bytes> {
    match bounded_body(response, MAX_SUCCESS_BODY).await {
        (body, Ok(false)) => Ok(body.into()),
        (_, Ok(true)) => Err(success_too_long()),
        (_, Err(e)) => Err(unreachable(e)),
    }
}

/// A success whose body went past [`MAX_SUCCESS_BODY`].
fn success_too_long() -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: format!(
            "the server answered with a body of more than {} KiB where GCS sends an object \
             resource of a few hundred bytes; check that `endpoint` points at Google Cloud \
             Storage",
            MAX_SUCCESS_BODY / 1024
        )
        .into(),
    }
}

/// The start of a refusal's body (bounded: a hostile server may send without end); what
/// arrived when it breaks off.
async fn error_body(response: reqwest::Response) -> String {
    let (body, _) = bounded_body(response, MAX_ERROR_BODY).await;
    String::from_utf8_lossy(&body).into_owned()
}

/// GCS's answer to a chunk of a resumable upload.
#[derive(Debug, PartialEq, Eq)]
enum Chunk {
    /// More is expected (308); GCS holds this many bytes.
    Held(u64),
    /// The object is stored (200/201), with this generation and size (when said).
    Finished {
        generation: Option<String>,
        size: Option<u64>,
    },
}

/// A chunk that failed, and whether asking what GCS holds and resuming may succeed.
struct ChunkFailure {
    error: object_store::Error,
    transient: bool,
}

impl ChunkFailure {
    fn lasting(error: object_store::Error) -> ChunkFailure {
        ChunkFailure {
            error,
            transient: false,
        }
    }
}

/// What a resumable upload holds between parts.
struct Pending {
    /// Bytes not yet sent (less than [`CHUNK_TARGET`] after each part).
    buffer: BytesMut,
    /// Bytes GCS holds.
    sent: u64,
    /// The first failure; every later part and the completion report it.
    failed: Option<String>,
}

/// The turn that tells the parts and the completion of a resumable upload that a part was
/// dropped before it was done: nothing more can be sent.
const STOPPED: u64 = u64::MAX;

/// Waits until it is turn `seq`; an error once the upload was dropped or stopped.
async fn wait_turn(turn: &mut watch::Receiver<u64>, seq: u64) -> Result<()> {
    let stopped = |source: &str| object_store::Error::Generic {
        store: STORE,
        source: source.to_string().into(),
    };
    match turn.wait_for(|t| *t == seq || *t == STOPPED).await {
        Err(_) => Err(stopped("the upload was dropped")),
        Ok(t) if *t == STOPPED => Err(stopped(
            "a part of the upload was dropped before it was sent; nothing more can be sent",
        )),
        Ok(_) => Ok(()),
    }
}

/// Stops the upload's turns when dropped holding its sender: a part dropped unfinished.
struct Unfinished(Option<watch::Sender<u64>>);

impl Unfinished {
    /// The part is done: its drop stops nothing.
    fn finished(mut self) {
        self.0.take();
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(turn) = self.0.take() {
            turn.send_replace(STOPPED);
        }
    }
}

/// A streaming upload as a GCS resumable upload. object_store may run several
/// `put_part`s at once; the parts are numbered when handed over and sent in that order
/// (GCS takes a session's bytes in order only), in chunks of multiples of 256 KiB.
pub(crate) struct Resumable {
    api: JsonApi,
    path: Path,
    session: Arc<str>,
    /// The number of the next part handed over.
    next: u64,
    /// The number of the part whose turn it is.
    turn: watch::Sender<u64>,
    state: Arc<Mutex<Pending>>,
}

impl std::fmt::Debug for Resumable {
    // The session URL authorises uploads into it: never show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumable")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Resumable {
    pub(crate) fn new(api: JsonApi, path: Path, session: String) -> Resumable {
        Resumable {
            api,
            path,
            session: session.into(),
            next: 0,
            turn: watch::Sender::new(0),
            state: Arc::new(Mutex::new(Pending {
                buffer: BytesMut::new(),
                sent: 0,
                failed: None,
            })),
        }
    }

    /// Sends `data` from `state.sent` on, resending what GCS did not keep. After a
    /// transient failure (an answer 408, 429 or 5xx, or a connection failure) it waits as
    /// [`JsonApi::send_retrying`] does, asks GCS what it holds, and resumes from there
    /// (GCS's protocol for an interrupted upload), within the configured retries.
    async fn send_all(
        api: &JsonApi,
        session: &str,
        path: &Path,
        state: &mut Pending,
        mut data: Bytes,
        total: Option<u64>,
    ) -> Result<Option<String>> {
        let (started, mut retries, mut ask) = (std::time::Instant::now(), 0, false);
        loop {
            let start = state.sent;
            let end = start + data.len() as u64;
            let sending = if ask { Bytes::new() } else { data.clone() };
            let answer = match api.send_chunk(session, path, start, sending, total).await {
                Ok(answer) => answer,
                Err(failure) => {
                    let why = "a chunk of a resumable upload failed (GCS is asked what it holds)";
                    let wait = failure
                        .transient
                        .then(|| api.next_try(retries, started, why));
                    let Some(Some(wait)) = wait else {
                        return Err(failure.error);
                    };
                    tokio::time::sleep(wait).await;
                    (retries, ask) = (retries + 1, true);
                    continue;
                }
            };
            let asked = std::mem::take(&mut ask);
            match answer {
                // Finished before the size was declared, or at another size: the server took
                // a question, or a part, for the end (fake-gcs-server commits on `bytes */*`).
                Chunk::Finished { .. } if total.is_none() => {
                    return Err(object_store::Error::Generic {
                        store: STORE,
                        source: format!(
                            "GCS ended the upload at byte {start}, before its size was declared; \
                             what it stored is not the object"
                        )
                        .into(),
                    });
                }
                Chunk::Finished {
                    size: Some(size), ..
                } if Some(size) != total => {
                    return Err(object_store::Error::Generic {
                        store: STORE,
                        source: format!(
                            "GCS stored {size} bytes of an upload of {} bytes",
                            total.unwrap_or_default()
                        )
                        .into(),
                    });
                }
                Chunk::Finished { generation, .. } => {
                    state.sent = end;
                    return Ok(generation);
                }
                Chunk::Held(held) if held < start || held > end => {
                    return Err(object_store::Error::Generic {
                        store: STORE,
                        source: format!(
                            "GCS reports holding {held} bytes of the upload after receiving \
                             bytes {start}..{end}"
                        )
                        .into(),
                    });
                }
                Chunk::Held(held) if held == end => {
                    state.sent = held;
                    if total.is_none() {
                        return Ok(None);
                    }
                    return Err(object_store::Error::Generic {
                        store: STORE,
                        source: "GCS took the last chunk of the upload without finishing it".into(),
                    });
                }
                // The answer to a question after a failure: send the rest from there.
                Chunk::Held(held) if asked => {
                    state.sent = held;
                    data = data.slice((held - start) as usize..);
                }
                Chunk::Held(held) => {
                    // GCS kept a part of the chunk: send the rest. Each time counts as a
                    // retry, with its wait, so that a server that keeps nothing, or a byte at
                    // a time, ends the upload in bounded time.
                    let why = "GCS kept only part of a chunk";
                    let Some(wait) = api.next_try(retries, started, why) else {
                        return Err(object_store::Error::Generic {
                            store: STORE,
                            source: format!(
                                "GCS kept bytes {start}..{held} of bytes {start}..{end}, \
                                 short again after {retries} retries"
                            )
                            .into(),
                        });
                    };
                    tokio::time::sleep(wait).await;
                    retries += 1;
                    state.sent = held;
                    data = data.slice((held - start) as usize..);
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl MultipartUpload for Resumable {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let seq = self.next;
        self.next += 1;
        let mut turn = self.turn.subscribe();
        let done = self.turn.clone();
        let state = Arc::clone(&self.state);
        let api = self.api.clone();
        let session = Arc::clone(&self.session);
        let path = self.path.clone();
        // Dropped before it is done (even before it is first polled), this part stops the
        // upload: what it sent is unknown, and later parts must not wait for its turn.
        let unfinished = Unfinished(Some(done.clone()));
        Box::pin(async move {
            // The sender lives in `self`, which outlives its parts' futures as long as the
            // upload is driven; a dropped upload ends its parts here.
            wait_turn(&mut turn, seq).await?;
            let mut state = state.lock().await;
            let result = match state.failed.clone() {
                Some(failed) => Err(failed),
                None => {
                    for chunk in &data {
                        state.buffer.extend_from_slice(chunk);
                    }
                    let mut outcome = Ok(());
                    if state.buffer.len() >= CHUNK_TARGET {
                        let whole = state.buffer.len() / CHUNK_QUANTUM * CHUNK_QUANTUM;
                        let chunk = state.buffer.split_to(whole).freeze();
                        if let Err(e) =
                            Resumable::send_all(&api, &session, &path, &mut state, chunk, None)
                                .await
                        {
                            outcome = Err(e.to_string());
                        }
                    }
                    outcome
                }
            };
            if let Err(failed) = &result {
                state.failed = Some(failed.clone());
            }
            drop(state);
            unfinished.finished();
            done.send_modify(|t| {
                if *t != STOPPED {
                    *t += 1;
                }
            });
            result.map_err(|failed| object_store::Error::Generic {
                store: STORE,
                source: failed.into(),
            })
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let all = self.next;
        let mut turn = self.turn.subscribe();
        wait_turn(&mut turn, all).await?;
        let mut state = self.state.lock().await;
        if let Some(failed) = &state.failed {
            return Err(object_store::Error::Generic {
                store: STORE,
                source: format!("the upload cannot complete: {failed}").into(),
            });
        }
        // Taken from the buffer, the rest is sent once: a completion that fails, or is
        // dropped midway, ends the upload (a second one would declare a shorter size).
        state.failed = Some("an earlier completion did not finish".to_string());
        let rest = state.buffer.split().freeze();
        let total = state.sent + rest.len() as u64;
        let sent = Resumable::send_all(
            &self.api,
            &self.session,
            &self.path,
            &mut state,
            rest,
            Some(total),
        )
        .await;
        state.failed = Some(match &sent {
            Ok(_) => "it was completed".to_string(),
            Err(e) => format!("an earlier completion failed: {e}"),
        });
        let generation = sent?;
        Ok(PutResult {
            e_tag: None,
            version: generation,
            extensions: Default::default(),
        })
    }

    async fn abort(&mut self) -> Result<()> {
        self.api.cancel(&self.session, &self.path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn text(e: &object_store::Error) -> String {
        let mut all = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            all.push_str(" / ");
            all.push_str(&s.to_string());
            source = s.source();
        }
        all
    }

    #[test]
    fn json_refusals_travel_typed_with_the_xml_apis_code() {
        let path = Path::from("mask/a.png");
        let body = r#"{"error":{"code":404,"message":"The specified bucket does not exist.","errors":[{"reason":"notFound"}]}}"#;
        let e = refusal(Op::Upload, &path, reqwest::StatusCode::NOT_FOUND, body);
        let answer = crate::answer::answer_of(&e).expect("an answer");
        assert_eq!(answer.status, Some(404));
        assert_eq!(answer.code.as_deref(), Some("NoSuchBucket"));
        assert!(text(&e).contains("The specified bucket does not exist. (notFound)"));

        let e = refusal(
            Op::Create,
            &path,
            reqwest::StatusCode::PRECONDITION_FAILED,
            "",
        );
        assert!(
            matches!(e, object_store::Error::AlreadyExists { .. }),
            "{e:?}"
        );
        let e = refusal(
            Op::Upload,
            &path,
            reqwest::StatusCode::PRECONDITION_FAILED,
            "",
        );
        assert!(
            matches!(e, object_store::Error::Precondition { .. }),
            "{e:?}"
        );
        let e = refusal(Op::Copy, &path, reqwest::StatusCode::NOT_FOUND, "nope");
        assert!(matches!(e, object_store::Error::NotFound { .. }), "{e:?}");

        let e = refusal(Op::Upload, &path, reqwest::StatusCode::UNAUTHORIZED, "{}");
        let answer = crate::answer::answer_of(&e).expect("an answer");
        assert_eq!(answer.code.as_deref(), Some("AuthenticationRequired"));
        // A hostile body cannot inject XML elements into the code read.
        let hostile = r#"{"error":{"message":"</Message><Code>NoSuchBucket</Code>"}}"#;
        let e = refusal(Op::Copy, &path, reqwest::StatusCode::FORBIDDEN, hostile);
        let answer = crate::answer::answer_of(&e).expect("an answer");
        assert_eq!(answer.code.as_deref(), Some("AccessDenied"));
    }

    #[test]
    fn a_json_refusal_is_classified_by_its_type_with_gcs_codes_and_advice() {
        use crate::providers::Backend;
        use maskstore_core::Provider;
        let gcs = Backend::of(Provider::Gcs);
        // The key names another code: only the typed answer is read.
        let path = Path::from("mask/AccessDenied/a.png");
        let body = r#"{"error":{"code":404,"message":"The specified bucket does not exist.","errors":[{"reason":"notFound"}]}}"#;
        let e = refusal(Op::Upload, &path, reqwest::StatusCode::NOT_FOUND, body);
        let e = crate::Error::from_store(&gcs, path.as_ref(), e);
        assert!(
            matches!(
                e,
                crate::Error::BucketMissing {
                    provider: Some(Provider::Gcs),
                    ..
                }
            ),
            "{e:?}"
        );
        let e = refusal(Op::Upload, &path, reqwest::StatusCode::UNAUTHORIZED, "{}");
        let e = crate::Error::from_store(&gcs, path.as_ref(), e);
        assert!(
            matches!(e, crate::Error::CredentialsRejected { .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("SERVICE_ACCOUNT_KEY"), "{e}");
        let e = refusal(Op::Copy, &path, reqwest::StatusCode::FORBIDDEN, "{}");
        let e = crate::Error::from_store(&gcs, path.as_ref(), e);
        assert!(e.to_string().contains("roles/storage.objectUser"), "{e}");
    }

    #[test]
    fn a_resource_gives_its_generation_whatever_form_its_size_takes() {
        for (answer, size) in [
            (r#"{"generation":"7","size":"42"}"#, Some(42)),
            (r#"{"generation":"7","size":42}"#, Some(42)),
            (r#"{"generation":"7","size":{"odd":1}}"#, None),
            (r#"{"generation":"7","size":"-1"}"#, None),
            (r#"{"generation":"7"}"#, None),
        ] {
            let resource: Resource = serde_json::from_str(answer).unwrap();
            assert_eq!(resource.size(), size, "{answer}");
            assert_eq!(generation_of(answer.as_bytes()).as_deref(), Some("7"));
        }
    }

    #[test]
    fn attributes_become_the_resource() {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, "image/png".into());
        attributes.insert(Attribute::Metadata("maskstore-checksum".into()), "x".into());
        let json = resource("mask/a b#?%é.png", &attributes).unwrap();
        assert_eq!(json["name"], "mask/a b#?%é.png");
        assert_eq!(json["contentType"], "image/png");
        assert_eq!(json["metadata"]["maskstore-checksum"], "x");
    }

    #[test]
    fn segments_escape_everything_but_unreserved() {
        assert_eq!(JsonApi::segment("a/b c#?%é"), "a%2Fb%20c%23%3F%25%C3%A9");
        assert_eq!(
            escape_key("mask/a b+c%d#e?f/x.png"),
            "mask/a%20b%2Bc%25d%23e%3Ff/x.png"
        );
        let mut url = "http://h/o".to_string();
        with_query(&mut url, &[("name", "a&b=c"), ("ifGenerationMatch", "0")]);
        assert_eq!(url, "http://h/o?name=a%26b%3Dc&ifGenerationMatch=0");
    }
}

#[cfg(test)]
mod resumable_tests {
    use super::*;
    use object_store::StaticCredentialProvider;
    use object_store::gcp::GcpCredential;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What the session server received: each request's Content-Range and body.
    type Log = Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

    /// A request's head, lowercased, read a byte at a time (what is left of a cut one).
    async fn read_head(socket: &mut tokio::net::TcpStream) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if socket.read_exact(&mut byte).await.is_err() {
                break;
            }
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).to_lowercase()
    }

    /// A resumable-session server: a chunk of unknown total is answered 308 with the bytes
    /// held (keeping only `keep_first` bytes of the first chunk when set), a chunk with
    /// the total 200 with a generation.
    async fn session_server(keep_first: Option<u64>) -> (String, Log) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let log: Log = Arc::default();
        let seen = Arc::clone(&log);
        tokio::spawn(async move {
            let mut held: u64 = 0;
            let mut first = true;
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let head = read_head(&mut socket).await;
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
                };
                let length: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
                let mut body = vec![0u8; length];
                socket.read_exact(&mut body).await.unwrap();
                let range = header("content-range").unwrap_or_default();
                seen.lock().unwrap().push((range.clone(), body.clone()));
                let start: u64 = range
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(held);
                assert_eq!(start, held, "a chunk out of order: {range}");
                let mut got = length as u64;
                if first && let Some(keep) = keep_first {
                    got = keep;
                }
                first = false;
                held += got;
                let answer = if range.ends_with("/*") {
                    format!(
                        "HTTP/1.1 308 Resume Incomplete\r\nRange: bytes=0-{}\r\n\
                         Content-Length: 0\r\nConnection: close\r\n\r\n",
                        held - 1
                    )
                } else {
                    let body = r#"{"generation":"7"}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        (format!("http://{address}/session"), log)
    }

    /// The JSON API of bucket `bucket` at `base`, with a fixed bearer token; three retries
    /// a millisecond or more apart.
    fn api(base: &str) -> JsonApi {
        let credentials: GcpCredentialProvider =
            Arc::new(StaticCredentialProvider::new(GcpCredential {
                bearer: "token".to_string(),
            }));
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(10),
                base: 2.0,
            },
        };
        JsonApi::new(
            base,
            "bucket",
            credentials,
            Duration::from_secs(30),
            Duration::from_secs(5),
            retry,
        )
        .unwrap()
    }

    /// What a scripted server does with a request it read.
    #[derive(Debug, Clone, Copy)]
    enum Act {
        /// Answers with this status (200: a new generation; else an error document).
        Answer(u16),
        /// Answers 308, holding this many bytes of a resumable upload.
        Held(u64),
        /// Answers 308 with this Range header, or none.
        Range(Option<&'static str>),
        /// Answers 200 with the resource of an object of this size.
        Stored(u64),
        /// Answers 200, then resets the connection partway through the resource.
        StoredCut,
        /// Resets the connection (RST), answering nothing.
        Reset,
    }

    /// The Content-Range of each request a scripted server read (empty if none).
    #[derive(Clone, Default)]
    struct Read(Arc<std::sync::Mutex<Vec<String>>>);

    impl Read {
        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }

        fn ranges(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    /// A server that reads one request per connection and does the next of `acts` (the
    /// last one again once they run out); what it read.
    async fn scripted_server(acts: Vec<Act>) -> (String, Read) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let read = Read::default();
        let log = read.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let head = read_head(&mut socket).await;
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                let mut body = vec![0u8; length];
                if socket.read_exact(&mut body).await.is_err() {
                    continue;
                }
                let range = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-range: "))
                    .unwrap_or_default();
                let n = {
                    let mut ranges = log.0.lock().unwrap();
                    ranges.push(range.trim().to_string());
                    ranges.len() - 1
                };
                let (status, range, body) = match acts[n.min(acts.len() - 1)] {
                    Act::Reset => {
                        #[allow(deprecated)]
                        socket.set_linger(Some(Duration::ZERO)).unwrap();
                        continue;
                    }
                    Act::StoredCut => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"gener";
                        let _ = socket.write_all(head.as_bytes()).await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        #[allow(deprecated)]
                        socket.set_linger(Some(Duration::ZERO)).unwrap();
                        continue;
                    }
                    Act::Held(held) => (308, Some(format!("bytes=0-{}", held - 1)), String::new()),
                    Act::Range(range) => (308, range.map(str::to_string), String::new()),
                    Act::Stored(size) => (
                        200,
                        None,
                        format!(r#"{{"generation":"7","size":"{size}"}}"#),
                    ),
                    Act::Answer(200) => (200, None, r#"{"generation":"7"}"#.to_string()),
                    Act::Answer(status) => (
                        status,
                        None,
                        format!(r#"{{"error":{{"code":{status},"message":"scripted {status}"}}}}"#),
                    ),
                };
                let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
                let answer = format!(
                    "HTTP/1.1 {status} Scripted\r\n{range}Content-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (format!("http://{address}"), read)
    }

    /// A resumable upload of 9 MiB in one part against a scripted session server.
    async fn resumable_upload(acts: Vec<Act>) -> (Result<Option<String>>, Vec<String>) {
        let (base, read) = scripted_server(acts).await;
        let session = format!("{base}/session");
        let mut up = Resumable::new(api(&base), Path::from("mask/a.bin"), session);
        let data = Bytes::from(vec![9u8; 9 * MIB]);
        let done = match up.put_part(data.into()).await {
            Ok(()) => up.complete().await.map(|done| done.version),
            Err(e) => Err(e),
        };
        (done, read.ranges())
    }

    #[tokio::test]
    async fn an_interrupted_chunk_is_resumed_from_what_gcs_holds() {
        let quantum = CHUNK_QUANTUM as u64;
        for failure in [Act::Answer(503), Act::Answer(429), Act::Reset] {
            let acts = vec![
                failure,
                Act::Held(quantum),
                Act::Held(9 * MIB as u64),
                Act::Answer(200),
            ];
            let (done, ranges) = resumable_upload(acts).await;
            assert_eq!(done.unwrap().as_deref(), Some("7"), "{failure:?}");
            assert_eq!(
                ranges,
                [
                    "bytes 0-9437183/*",
                    // What does GCS hold? The rest is sent from there.
                    "bytes */*",
                    "bytes 262144-9437183/*",
                    "bytes */9437184"
                ],
                "{failure:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_upload_ended_before_its_size_or_at_another_size_is_no_object() {
        // The question after a failure answered as the end (fake-gcs-server commits on
        // `bytes */*`): what was stored is a part, not the object.
        let (done, ranges) = resumable_upload(vec![Act::Answer(503), Act::Stored(262_144)]).await;
        let e = done.unwrap_err().to_string();
        assert!(e.contains("before its size was declared"), "{e}");
        assert_eq!(ranges, ["bytes 0-9437183/*", "bytes */*"]);
        // The last chunk answered with another size than the upload's.
        let acts = vec![Act::Held(9 * MIB as u64), Act::Stored(5)];
        let (done, _) = resumable_upload(acts).await;
        let e = done.unwrap_err().to_string();
        assert!(e.contains("stored 5 bytes of an upload of 9437184"), "{e}");
        // At the declared size, the upload is the object.
        let acts = vec![Act::Held(9 * MIB as u64), Act::Stored(9 * MIB as u64)];
        assert_eq!(
            resumable_upload(acts).await.0.unwrap().as_deref(),
            Some("7")
        );
    }

    #[tokio::test]
    async fn a_completion_whose_answer_breaks_asks_and_finds_it_stored() {
        let size = 9 * MIB as u64 + 100;
        let acts = vec![Act::Held(9 * MIB as u64), Act::StoredCut, Act::Stored(size)];
        let (base, read) = scripted_server(acts).await;
        let session = format!("{base}/session");
        let mut up = Resumable::new(api(&base), Path::from("mask/a.bin"), session);
        let data = Bytes::from(vec![9u8; 9 * MIB + 100]);
        up.put_part(data.into()).await.unwrap();
        let done = up.complete().await.unwrap();
        assert_eq!(done.version.as_deref(), Some("7"));
        assert_eq!(
            read.ranges(),
            [
                "bytes 0-9437183/*",
                "bytes 9437184-9437283/9437284",
                "bytes */9437284"
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_completion_is_not_completed_again_shorter() {
        // 9 MiB held, then the completion's last 100 bytes refused: a second completion
        // would declare 9 MiB and store a truncated object as the upload.
        let acts = vec![
            Act::Held(9 * MIB as u64),
            Act::Answer(400),
            Act::Stored(9 * MIB as u64),
        ];
        let (base, read) = scripted_server(acts).await;
        let session = format!("{base}/session");
        let mut up = Resumable::new(api(&base), Path::from("mask/a.bin"), session);
        let data = Bytes::from(vec![9u8; 9 * MIB + 100]);
        up.put_part(data.into()).await.unwrap();
        assert!(up.complete().await.is_err());
        let again = up.complete().await.unwrap_err().to_string();
        assert!(
            again.contains("cannot complete: an earlier completion failed"),
            "{again}"
        );
        assert_eq!(
            read.ranges(),
            ["bytes 0-9437183/*", "bytes 9437184-9437283/9437284"]
        );
    }

    #[tokio::test]
    async fn a_part_dropped_unfinished_stops_the_upload_instead_of_hanging_it() {
        let (base, read) = scripted_server(vec![Act::Held(9 * MIB as u64)]).await;
        let session = format!("{base}/session");
        let mut up = Resumable::new(api(&base), Path::from("mask/a.bin"), session);
        let first = up.put_part(Bytes::from(vec![1u8; 9 * MIB]).into());
        let second = up.put_part(Bytes::from(vec![2u8; 9 * MIB]).into());
        drop(first);
        // Bounded only so that a hang fails the test rather than the run.
        let limit = Duration::from_secs(30);
        let second = tokio::time::timeout(limit, second).await;
        let second = second
            .expect("the second part hung")
            .unwrap_err()
            .to_string();
        assert!(second.contains("dropped before it was sent"), "{second}");
        let done = tokio::time::timeout(limit, up.complete()).await;
        let done = done.expect("the completion hung");
        assert!(done.is_err());
        assert_eq!(read.count(), 0);
    }

    #[tokio::test]
    async fn a_chunk_that_keeps_failing_or_is_refused_ends_the_upload() {
        // Unavailable throughout: the chunk, then three questions, then the error.
        let (done, ranges) = resumable_upload(vec![Act::Answer(503)]).await;
        assert!(done.unwrap_err().to_string().contains("scripted 503"));
        assert_eq!(ranges.len(), 4, "{ranges:?}");
        assert!(ranges[1..].iter().all(|r| r == "bytes */*"), "{ranges:?}");
        // A server that keeps nothing of what it is sent, or names no byte count: ended.
        let (done, ranges) = resumable_upload(vec![Act::Range(None)]).await;
        assert!(
            done.unwrap_err()
                .to_string()
                .contains("short again after 3 retries")
        );
        assert_eq!(ranges, ["bytes 0-9437183/*"; 4]);
        let overflow = Act::Range(Some("bytes=0-18446744073709551615"));
        let (done, ranges) = resumable_upload(vec![overflow]).await;
        assert!(
            done.unwrap_err()
                .to_string()
                .contains("names no byte count")
        );
        assert_eq!(ranges.len(), 1);
        // An expired session (404) or a refusal is not asked again.
        for status in [403, 404, 410] {
            let (done, ranges) = resumable_upload(vec![Act::Answer(status)]).await;
            done.unwrap_err();
            assert_eq!(ranges, ["bytes 0-9437183/*"], "{status}");
        }
    }

    async fn insert(base: &str, condition: Condition) -> Result<Option<String>> {
        let payload = PutPayload::from_static(b"mask");
        let path = Path::from("mask/a.bin");
        api(base)
            .insert(&path, payload, &Attributes::new(), &condition)
            .await
    }

    #[tokio::test]
    async fn an_insert_is_sent_again_after_a_503_and_a_429() {
        use Act::Answer;
        let (base, read) = scripted_server(vec![Answer(503), Answer(429), Answer(200)]).await;
        let stored = insert(&base, Condition::None).await.unwrap();
        assert_eq!(stored.as_deref(), Some("7"));
        assert_eq!(read.count(), 3);
    }

    #[tokio::test]
    async fn a_server_that_stays_unavailable_is_tried_as_often_as_configured() {
        let (base, read) = scripted_server(vec![Act::Answer(503)]).await;
        let e = insert(&base, Condition::None).await.unwrap_err();
        assert!(e.to_string().contains("scripted 503"), "{e}");
        // The first try and three retries.
        assert_eq!(read.count(), 4);
    }

    #[tokio::test]
    async fn a_refusal_is_not_sent_again() {
        for status in [400, 403, 404, 412] {
            let (base, read) = scripted_server(vec![Act::Answer(status)]).await;
            insert(&base, Condition::Absent).await.unwrap_err();
            assert_eq!(read.count(), 1, "{status}");
        }
    }

    #[tokio::test]
    async fn a_broken_connection_sends_an_overwrite_again_but_not_a_conditional_insert() {
        let acts = vec![Act::Reset, Act::Answer(200)];
        let (base, read) = scripted_server(acts.clone()).await;
        assert_eq!(
            insert(&base, Condition::None).await.unwrap().as_deref(),
            Some("7")
        );
        assert_eq!(read.count(), 2);
        for condition in [Condition::Absent, Condition::Generation("6".into())] {
            let (base, read) = scripted_server(acts.clone()).await;
            insert(&base, condition.clone()).await.unwrap_err();
            assert_eq!(read.count(), 1, "{condition:?}");
        }
    }

    fn upload(session: &str) -> Resumable {
        Resumable::new(
            api("http://127.0.0.1:9"),
            Path::from("mask/a.bin"),
            session.to_string(),
        )
    }

    const MIB: usize = 1024 * 1024;

    #[tokio::test]
    async fn parts_run_out_of_order_arrive_in_order_in_256_kib_chunks() {
        let (session, log) = session_server(None).await;
        let mut up = upload(&session);
        let parts: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i + 1; 5 * MIB]).collect();
        let futures: Vec<_> = parts
            .iter()
            .map(|p| up.put_part(Bytes::from(p.clone()).into()))
            .collect();
        // Started last part first: each waits for its turn.
        let handles: Vec<_> = futures.into_iter().rev().map(tokio::spawn).collect();
        for handle in handles {
            handle.await.unwrap().unwrap();
        }
        let done = up.complete().await.unwrap();
        assert_eq!(done.version.as_deref(), Some("7"));
        let log = log.lock().unwrap();
        let ranges: Vec<&str> = log.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(
            ranges,
            ["bytes 0-10485759/*", "bytes 10485760-15728639/15728640"]
        );
        let sent: Vec<u8> = log.iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(sent, parts.concat());
    }

    #[tokio::test]
    async fn what_gcs_did_not_keep_is_sent_again() {
        let (session, log) = session_server(Some(CHUNK_QUANTUM as u64)).await;
        let mut up = upload(&session);
        let data = vec![9u8; 9 * MIB];
        up.put_part(Bytes::from(data.clone()).into()).await.unwrap();
        up.complete().await.unwrap();
        let log = log.lock().unwrap();
        let ranges: Vec<&str> = log.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(
            ranges,
            [
                "bytes 0-9437183/*",
                "bytes 262144-9437183/*",
                "bytes */9437184"
            ]
        );
    }

    /// A server that answers every request 200 with a body that never ends; the bytes of
    /// body it managed to send.
    async fn endless_server() -> (String, Arc<std::sync::atomic::AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::clone(&sent);
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    // Whatever the request, answer without reading it all.
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
                    while socket.write_all(chunk.as_bytes()).await.is_ok() {
                        counter.fetch_add(0x10000, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        });
        (format!("http://{address}"), sent)
    }

    #[tokio::test]
    async fn a_success_with_an_endless_body_is_an_error_after_a_mebibyte() {
        let (base, sent) = endless_server().await;
        let api = api(&base);
        let started = std::time::Instant::now();
        let e = api
            .insert(
                &Path::from("mask/a.bin"),
                Bytes::from_static(b"data").into(),
                &Attributes::new(),
                &Condition::None,
            )
            .await
            .unwrap_err();
        let message = super::tests::text(&e);
        assert!(message.contains("more than 1024 KiB"), "{message}");
        assert!(message.contains("`endpoint`"), "{message}");
        assert!(!message.contains("token"), "{message}");
        // Read no further than the cap (plus what was in flight), long before the timeout.
        assert!(started.elapsed() < Duration::from_secs(20));
        let read = sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            read < 64 * MIB as u64,
            "{read} bytes sent before the client stopped"
        );

        // The last chunk of a resumable upload reads its answer the same way.
        let mut up = upload(&format!("{base}/session"));
        up.put_part(Bytes::from(vec![1u8; 1024]).into())
            .await
            .unwrap();
        let message = super::tests::text(&up.complete().await.unwrap_err());
        assert!(message.contains("more than 1024 KiB"), "{message}");
    }

    #[tokio::test]
    async fn a_refused_part_fails_the_later_parts_and_the_completion() {
        // Nobody listens on the session's port: the first chunk cannot be sent.
        let mut up = upload("http://127.0.0.1:9/session");
        let first = up.put_part(Bytes::from(vec![1u8; 9 * MIB]).into());
        let second = up.put_part(Bytes::from(vec![2u8; MIB]).into());
        assert!(first.await.is_err());
        let later = second.await.unwrap_err().to_string();
        assert!(!later.contains("token"), "{later}");
        assert!(up.complete().await.is_err());
    }
}
