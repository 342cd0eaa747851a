//! Objects whose names object_store's `Path` cannot hold (`mask/a//b.png` written by
//! boto3, a `.` or `..` segment, a newline or ESC): listed with maskstore's own
//! ListObjectsV2 requests (object_store fails a whole page on one such key), read and
//! deleted through URLs presigned for the exact name.
//!
//! Bounds: a page is at most [`MAX_PAGE_BYTES`] (S3 sends at most 1,000 keys a page); at
//! most [`crate::read_answer::MAX_LISTING_PAGES`] pages are followed, and each must move the continuation token on. A
//! 200 answer that is not a `ListBucketResult` (an `<Error>` document, a proxy's page) is
//! an error, never an empty listing.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::signer::Method;
use object_store::{GetOptions, GetResult, ObjectMeta};
use percent_encoding::percent_decode_str;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::Presigner;
use super::uploads::request_bounded;
use crate::providers::{Backend, FoundNames, FoundObject};
use crate::read_answer::next_page;
use crate::signing::SignedMethod;
use crate::{Error, Result};

/// The largest listing page read: S3 sends at most 1,000 keys a page, each at most 1,024
/// bytes, 3,072 once URL-encoded (`encoding-type=url`), with about 400 bytes of XML around
/// it: about 3.5 MiB at worst (a page of ordinary keys is about 300 KiB).
pub(crate) const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// How long a URL for one request lives.
const URL_TTL: Duration = Duration::from_secs(300);

/// The S3 bucket's own listing, reads and deletes by exact name.
pub(crate) struct S3Names {
    pub(crate) s3: Arc<AmazonS3>,
    pub(crate) presigner: Arc<Presigner>,
}

/// `ListBucketResult` (ListObjectsV2), the fields read.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListPage {
    #[serde(rename = "Contents", default)]
    pub(crate) contents: Vec<Entry>,
    #[serde(rename = "IsTruncated", default)]
    is_truncated: bool,
    #[serde(rename = "NextContinuationToken", default)]
    next_token: Option<String>,
    #[serde(rename = "EncodingType", default)]
    pub(crate) encoding_type: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Entry {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Size", default)]
    size: u64,
    #[serde(rename = "LastModified", default)]
    last_modified: Option<String>,
    #[serde(rename = "ETag", default)]
    etag: Option<String>,
}

/// Where a listing is between pages.
struct Cursor {
    token: Option<String>,
    after: Option<String>,
    pages: usize,
    done: bool,
}

impl S3Names {
    /// One page of the listing of `folder` at `cursor`, and the cursor after it.
    async fn page(
        &self,
        backend: &Backend,
        folder: &str,
        mut cursor: Cursor,
    ) -> Result<(Vec<FoundObject>, Cursor)> {
        let mut query = vec![
            ("list-type".to_string(), "2".to_string()),
            ("prefix".to_string(), folder.to_string()),
            // Keys travel URL-encoded: XML 1.0 cannot carry every character a key holds.
            ("encoding-type".to_string(), "url".to_string()),
        ];
        match (&cursor.token, &cursor.after) {
            (Some(token), _) => query.push(("continuation-token".to_string(), token.clone())),
            (None, Some(after)) => query.push(("start-after".to_string(), after.clone())),
            (None, None) => {}
        }
        let body = request_bounded(
            &self.s3,
            backend,
            Method::GET,
            &Path::default(),
            &query,
            &HeaderMap::new(),
            MAX_PAGE_BYTES,
        )
        .await?;
        let page = parse_page(&body).map_err(|problem| Error::Backend {
            backend: backend.to_string(),
            key: folder.to_string(),
            source: format!("the ListObjectsV2 answer {problem}").into(),
        })?;
        cursor.pages += 1;
        let url_encoded = page.encoding_type.as_deref() == Some("url");
        let objects = page
            .contents
            .into_iter()
            .map(|entry| found(entry, url_encoded))
            .collect::<std::result::Result<Vec<_>, String>>()
            .map_err(|problem| Error::Backend {
                backend: backend.to_string(),
                key: folder.to_string(),
                source: problem.into(),
            })?;
        let more = (page.is_truncated, page.next_token);
        match next_page(
            backend,
            folder,
            cursor.pages,
            cursor.token.as_ref(),
            more,
            "ListObjectsV2",
        )? {
            Some(token) => cursor.token = Some(token),
            None => cursor.done = true,
        }
        Ok((objects, cursor))
    }
}

/// The page in `body`, which must be a `ListBucketResult` document.
pub(crate) fn parse_page(body: &str) -> std::result::Result<ListPage, String> {
    crate::read_answer::expect_root(body, "ListBucketResult")?;
    quick_xml::de::from_str(body).map_err(|e| format!("is not the XML S3 sends: {e}"))
}

/// The listed object of `entry`, its key decoded when the page says it is URL-encoded
/// (AWS writes a space as `+`, as a form does; moto as `%20`: both decode the same).
pub(crate) fn found(entry: Entry, url_encoded: bool) -> std::result::Result<FoundObject, String> {
    let name = if url_encoded {
        let plus_as_space = entry.key.replace('+', " ");
        percent_decode_str(&plus_as_space)
            .decode_utf8()
            .map_err(|_| {
                format!(
                    "the listed key {} is not UTF-8 once decoded",
                    maskstore_core::shown(&entry.key)
                )
            })?
            .into_owned()
    } else {
        entry.key
    };
    let last_modified = entry
        .last_modified
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    Ok(FoundObject {
        name,
        meta: ObjectMeta {
            location: Path::default(),
            last_modified,
            size: entry.size,
            e_tag: entry.etag.map(|e| e.replace("&quot;", "\"")),
            version: None,
        },
    })
}

#[async_trait::async_trait]
impl FoundNames for S3Names {
    fn list_after(
        &self,
        backend: &Backend,
        folder: &str,
        after: Option<String>,
    ) -> Option<BoxStream<'static, Result<FoundObject>>> {
        let names = S3Names {
            s3: Arc::clone(&self.s3),
            presigner: Arc::clone(&self.presigner),
        };
        let (backend, folder) = (backend.clone(), folder.to_string());
        let cursor = Cursor {
            token: None,
            after,
            pages: 0,
            done: false,
        };
        let state = (Arc::new(names), backend, folder, cursor);
        let stream =
            futures::stream::try_unfold(state, |(names, backend, folder, cursor)| async move {
                if cursor.done {
                    return Ok::<_, Error>(None);
                }
                let (objects, cursor) = names.page(&backend, &folder, cursor).await?;
                Ok(Some((objects, (names, backend, folder, cursor))))
            })
            .map_ok(|objects| futures::stream::iter(objects.into_iter().map(Ok)))
            .try_flatten()
            .boxed();
        Some(stream)
    }

    fn holds_folder_markers(&self) -> bool {
        true
    }

    async fn get(&self, name: &str, options: GetOptions) -> object_store::Result<GetResult> {
        crate::read_answer::addressable(name)?;
        let method = if options.head {
            SignedMethod::Head
        } else {
            SignedMethod::Get
        };
        let url = self.presigner.presign_name(method, name, URL_TTL).await?;
        let http = reqwest::Method::from_bytes(method.as_str().as_bytes())
            .expect("an HTTP method is a valid method");
        let mut request = reqwest::Client::new().request(http, url).timeout(URL_TTL);
        if let Some(range) = &options.range {
            request = request.header("range", crate::read_answer::range_header(range));
        }
        if let Some(etag) = &options.if_match {
            request = request.header("if-match", etag);
        }
        if let Some(etag) = &options.if_none_match {
            request = request.header("if-none-match", etag);
        }
        // Without its URL: a presigned one carries the signature.
        let response = request
            .send()
            .await
            .map_err(|e| generic(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(refusal(name, status, response).await);
        }
        crate::read_answer::answer(response, options.head, "x-amz-meta-", |name| {
            name.to_string()
        })
    }

    async fn delete(&self, name: &str) -> object_store::Result<()> {
        crate::read_answer::addressable(name)?;
        let url = self
            .presigner
            .presign_name(SignedMethod::Delete, name, URL_TTL)
            .await?;
        let response = reqwest::Client::new()
            .delete(url)
            .timeout(URL_TTL)
            .send()
            .await
            .map_err(|e| generic(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(refusal(name, status, response).await)
    }
}

fn generic(text: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: text.into(),
    }
}

/// A refused request as object_store reports one: its status and the error body's code.
async fn refusal(
    name: &str,
    status: reqwest::StatusCode,
    response: reqwest::Response,
) -> object_store::Error {
    /// The start of an error body kept (S3's are a few hundred bytes).
    const MAX_ERROR_BYTES: usize = 16 * 1024;
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BYTES {
            body.truncate(MAX_ERROR_BYTES);
            break;
        }
    }
    let answer = crate::answer::Answer {
        status: Some(status.as_u16()),
        ..crate::answer::parse_body(&String::from_utf8_lossy(&body))
    };
    crate::read_answer::refused("S3", name, status, answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_page_decodes_url_encoded_keys_exactly() {
        let body = "<?xml version=\"1.0\"?><ListBucketResult><EncodingType>url</EncodingType>\
            <IsTruncated>false</IsTruncated><Contents><Key>mask/a%2F%2Fb+c%2B%0A%1B.png</Key>\
            <Size>3</Size><ETag>&quot;x&quot;</ETag></Contents></ListBucketResult>";
        let page = parse_page(body).unwrap();
        let object = found(page.contents.into_iter().next().unwrap(), true).unwrap();
        assert_eq!(object.name, "mask/a//b c+\n\u{1b}.png");
        assert_eq!(object.meta.size, 3);
        assert_eq!(object.meta.e_tag.as_deref(), Some("\"x\""));
    }

    #[test]
    fn a_200_carrying_an_error_document_is_no_listing() {
        let body = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code>\
            <Message>\u{1b}]0;pwned\u{7}</Message></Error>";
        let problem = parse_page(body).unwrap_err();
        assert!(
            problem.contains("<Error> document, not a listing"),
            "{problem}"
        );
        assert!(problem.contains("AccessDenied"), "{problem}");
        assert!(!problem.contains('\u{1b}'), "{problem}");
        assert!(parse_page("not xml at all").is_err());
    }
}
