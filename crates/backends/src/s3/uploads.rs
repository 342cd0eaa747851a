//! Listing and aborting incomplete multipart uploads (`ListMultipartUploads`,
//! `AbortMultipartUpload`), which object_store does not offer: one SigV4-presigned request
//! each, the listing read as XML and followed page by page.

use std::time::Duration;

use futures::StreamExt;
use maskstore_core::ObjectKey;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::signer::{Method, SignedUrlOptions, Signer};
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;

use crate::providers::Backend;
use crate::types::IncompleteUpload;
use crate::{Error, Result};

/// The largest answer read from the server: a page of 1,000 uploads is about 400 KiB.
pub(super) const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Pages followed before giving up (1,000 uploads a page).
const MAX_PAGES: usize = 10_000;

/// `ListMultipartUploadsResult`, the fields read.
#[derive(Debug, Default, Deserialize)]
struct ListResult {
    #[serde(rename = "Upload", default)]
    uploads: Vec<UploadEntry>,
    #[serde(rename = "IsTruncated", default)]
    is_truncated: bool,
    #[serde(rename = "NextKeyMarker", default)]
    next_key_marker: Option<String>,
    #[serde(rename = "NextUploadIdMarker", default)]
    next_upload_id_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UploadEntry {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "UploadId")]
    upload_id: String,
}

/// The words object_store looks for in a 200 answer to decide it was an error in disguise
/// (`body_contains_error` in its retry loop); a completion's answer repeats the key.
const SCANNED_WORDS: [&str; 2] = ["InternalError", "SlowDown"];

/// Whether object_store may misread the completion of a multipart upload to `key` as a
/// failure (the key, repeated in the answer, holds one of the words it scans for).
pub(crate) fn completion_answer_is_misread(key: &str) -> bool {
    SCANNED_WORDS.iter().any(|word| key.contains(word))
}

/// Every incomplete upload whose key starts with `folder/`.
pub(crate) async fn incomplete_uploads(
    s3: &AmazonS3,
    backend: &Backend,
    folder: &Path,
) -> Result<Vec<IncompleteUpload>> {
    let mut uploads = Vec::new();
    let mut markers: Option<(String, String)> = None;
    for _ in 0..MAX_PAGES {
        let mut query = vec![
            ("uploads".to_string(), String::new()),
            ("prefix".to_string(), format!("{folder}/")),
        ];
        if let Some((key, id)) = &markers {
            query.push(("key-marker".to_string(), key.clone()));
            query.push(("upload-id-marker".to_string(), id.clone()));
        }
        let body = request(
            s3,
            backend,
            Method::GET,
            &Path::default(),
            &query,
            &HeaderMap::new(),
        )
        .await?;
        let page: ListResult = quick_xml::de::from_str(&body).map_err(|e| Error::Backend {
            backend: backend.to_string(),
            key: folder.to_string(),
            source: format!("the ListMultipartUploads answer is not the XML S3 sends: {e}").into(),
        })?;
        for entry in page.uploads {
            uploads.push(IncompleteUpload {
                // A name another tool gave an upload is listed as found (never a reason to
                // stop listing the others).
                key: ObjectKey::found(entry.key)?,
                upload_id: entry.upload_id,
            });
        }
        match (
            page.is_truncated,
            page.next_key_marker,
            page.next_upload_id_marker,
        ) {
            (true, Some(key), Some(id)) if markers.as_ref() != Some(&(key.clone(), id.clone())) => {
                markers = Some((key, id));
            }
            _ => return Ok(uploads),
        }
    }
    Err(Error::Backend {
        backend: backend.to_string(),
        key: folder.to_string(),
        source: format!("more than {MAX_PAGES} pages of incomplete uploads").into(),
    })
}

/// Aborts the upload `upload_id` of `path`.
pub(crate) async fn abort_upload(
    s3: &AmazonS3,
    backend: &Backend,
    path: &Path,
    upload_id: &str,
) -> Result<()> {
    let query = [("uploadId".to_string(), upload_id.to_string())];
    request(s3, backend, Method::DELETE, path, &query, &HeaderMap::new())
        .await
        .map(drop)
}

/// What a copy in place left: the object's new etag and version, as S3 reports them.
pub(crate) struct Copied {
    pub(crate) etag: Option<String>,
    pub(crate) version: Option<String>,
}

/// Copies the object at `path` onto itself with `x-amz-metadata-directive: REPLACE` and
/// `headers` as its new metadata (CopyObject), only if it is still the version `etag`
/// (`x-amz-copy-source-if-match`): how a completed multipart upload gets metadata known
/// only at completion, since S3 takes metadata only when such an upload starts.
/// `Ok(None)` when the object changed in between (412): that other version is left alone.
///
/// CopyObject copies at most 5 GiB; the caller does not ask for more.
pub(crate) async fn copy_in_place(
    s3: &AmazonS3,
    backend: &Backend,
    bucket: &str,
    path: &Path,
    etag: &str,
    mut headers: HeaderMap,
) -> Result<Option<Copied>> {
    let header = |value: String| {
        HeaderValue::from_str(&value).map_err(|_| Error::Backend {
            backend: backend.to_string(),
            key: path.to_string(),
            source: format!("{value:?} cannot be sent as a header value").into(),
        })
    };
    let source = format!("/{bucket}/{}", super::Presigner::encode_key(path.as_ref()));
    headers.insert("x-amz-copy-source", header(source)?);
    headers.insert("x-amz-copy-source-if-match", header(etag.to_string())?);
    headers.insert(
        "x-amz-metadata-directive",
        HeaderValue::from_static("REPLACE"),
    );
    let call = Call {
        method: Method::PUT,
        path,
        query: &[],
        headers: &headers,
        max: MAX_ANSWER_BYTES,
    };
    let answer = match send(s3, backend, call).await? {
        Answer::Done { body, version, .. } => (body, version),
        Answer::Refused { status, .. } if status == reqwest::StatusCode::PRECONDITION_FAILED => {
            return Ok(None);
        }
        Answer::Refused { status, body } => return Err(refused(backend, path, status, &body)),
    };
    let (body, version) = answer;
    // CopyObject may answer 200 and report an error in the body (S3 API reference).
    if body.contains("<Error>") {
        return Err(refused(backend, path, reqwest::StatusCode::OK, &body));
    }
    let etag = body
        .split_once("<ETag>")
        .and_then(|(_, rest)| rest.split_once("</ETag>"))
        .map(|(etag, _)| header_form(&etag.replace("&quot;", "\"").replace("&#34;", "\"")));
    Ok(Some(Copied { etag, version }))
}

/// An etag as HEAD and GET answers carry it: quoted (RFC 9110 entity-tag). S3 quotes the
/// `<ETag>` of a CopyObject answer; SeaweedFS does not, and a write would then report an
/// etag that no later read repeats (found by the model test, history
/// `tests/contract/model/histories/multipart-etag-is-the-one-reads-report.json`).
fn header_form(etag: &str) -> String {
    let etag = etag.trim();
    if etag.starts_with('"') || etag.starts_with("W/\"") {
        etag.to_string()
    } else {
        format!("\"{etag}\"")
    }
}

/// One SigV4-signed request sending `headers` (signed); its answer's body, at most
/// [`MAX_ANSWER_BYTES`].
async fn request(
    s3: &AmazonS3,
    backend: &Backend,
    method: Method,
    path: &Path,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<String> {
    request_bounded(s3, backend, method, path, query, headers, MAX_ANSWER_BYTES).await
}

/// [`request`] reading at most `max` bytes of the answer: more is an error naming the
/// endpoint and the size.
pub(super) async fn request_bounded(
    s3: &AmazonS3,
    backend: &Backend,
    method: Method,
    path: &Path,
    query: &[(String, String)],
    headers: &HeaderMap,
    max: usize,
) -> Result<String> {
    let call = Call {
        method,
        path,
        query,
        headers,
        max,
    };
    match send(s3, backend, call).await? {
        Answer::Done { body, .. } => Ok(body),
        Answer::Refused { status, body } => Err(refused(backend, path, status, &body)),
    }
}

/// A request's answer: a success, or a refusal with its status.
pub(super) enum Answer {
    Done {
        body: String,
        /// `x-amz-version-id`, on a versioned bucket.
        version: Option<String>,
        /// Every header of the answer.
        headers: HeaderMap,
    },
    Refused {
        status: reqwest::StatusCode,
        body: String,
    },
}

/// A refusal, classified as object_store's failed requests are: from its status and the
/// body's code, carried as a typed answer.
pub(super) fn refused(
    backend: &Backend,
    path: &Path,
    status: reqwest::StatusCode,
    body: &str,
) -> Error {
    let answer = crate::answer::Answer {
        status: Some(status.as_u16()),
        ..crate::answer::parse_body(body)
    };
    let source = object_store::Error::Generic {
        store: "S3",
        source: Box::new(answer),
    };
    Error::from_store(backend, path.as_ref(), source)
}

/// One request to sign and send: its method, object, query, signed headers, and the
/// most bytes of its answer read.
pub(super) struct Call<'a> {
    pub(super) method: Method,
    pub(super) path: &'a Path,
    pub(super) query: &'a [(String, String)],
    pub(super) headers: &'a HeaderMap,
    pub(super) max: usize,
}

pub(super) async fn send(s3: &AmazonS3, backend: &Backend, call: Call<'_>) -> Result<Answer> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Error::Unreachable {
            backend: backend.to_string(),
            detail: format!("no HTTP client: {e}"),
        })?;
    send_with(&client, s3, backend, call).await
}

/// [`send`] through `client` (whose connections the caller keeps for its next request,
/// and whose timeouts apply).
pub(super) async fn send_with(
    client: &reqwest::Client,
    s3: &AmazonS3,
    backend: &Backend,
    call: Call<'_>,
) -> Result<Answer> {
    let Call {
        method,
        path,
        query,
        headers,
        max,
    } = call;
    let mut options = SignedUrlOptions::new().with_query(query.iter().cloned());
    for (name, value) in headers {
        options = options.with_signed_header(name.clone(), value.clone());
    }
    let url = s3
        .signed_url_opts(method.clone(), path, Duration::from_secs(60), &options)
        .await
        .map_err(|e| Error::from_store(backend, path.as_ref(), e))?;
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes())
        .expect("an HTTP method is a valid method");
    // reqwest's text would name the presigned URL, signature included.
    let unreachable = |e: reqwest::Error| Error::Unreachable {
        backend: backend.to_string(),
        detail: e.without_url().to_string(),
    };
    let response = client
        .request(method.clone(), url.as_str())
        .headers(headers.clone())
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    let headers = response.headers().clone();
    let version = response
        .headers()
        .get("x-amz-version-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(unreachable)?;
        if body.len() + chunk.len() > max {
            return Err(Error::Backend {
                backend: backend.to_string(),
                key: path.to_string(),
                source: format!(
                    "the answer of {} to {method} exceeds {max} bytes; no S3 server sends \
                     that much, check the endpoint",
                    url.origin().ascii_serialization()
                )
                .into(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() {
        return Ok(Answer::Done {
            body,
            version,
            headers,
        });
    }
    Ok(Answer::Refused { status, body })
}

#[cfg(test)]
mod tests {
    use super::header_form;

    #[test]
    fn a_copy_answer_etag_is_reported_quoted_as_reads_report_it() {
        assert_eq!(header_form("cf45-1"), "\"cf45-1\"");
        assert_eq!(header_form("\"cf45-1\""), "\"cf45-1\"");
        assert_eq!(header_form("W/\"x\""), "W/\"x\"");
    }
}
