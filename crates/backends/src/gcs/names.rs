//! Objects whose names object_store's `Path` cannot hold (`mask/a//b.png`, a `.` segment, a
//! newline or ESC, all of which GCS stores): listed with the JSON API's `objects.list`
//! (object_store's XML listing fails a whole page on one such name), read with
//! `objects.get` and deleted with `objects.delete`, the name escaped whole as the JSON API
//! names objects.
//!
//! Bounds: a page is at most [`MAX_PAGE_BYTES`] (GCS sends at most 1,000 objects a page,
//! and only their name, size, time and etag are asked for); at most [`crate::read_answer::MAX_LISTING_PAGES`] pages
//! are followed, each token differing from the one before. A 200 answer that is not an
//! objects list (`"kind": "storage#objects"`) is an error, never an empty listing.

use std::collections::BTreeMap;

use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{Attribute, Attributes, GetOptions, GetResult, GetResultPayload, ObjectMeta};
use serde::Deserialize;

use super::json::JsonApi;
use crate::checksum::{NativeAnswer, native_value};
use crate::providers::{Backend, FoundNames, FoundObject};
use crate::read_answer::bounded_body;
use crate::read_answer::next_page;
use crate::{Error, Result};

/// The largest listing page read: 1,000 names of at most 1,024 bytes, each up to 6 bytes
/// once JSON-escaped (`\u001b`), with about 200 bytes of fields around it: about 6.3 MiB
/// at worst (a page of ordinary names is about 250 KiB).
pub(crate) const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// The largest object resource read (GCS sends a few KiB: at most 8 KiB of metadata).
const MAX_RESOURCE_BYTES: usize = 1024 * 1024;
/// The start of an error body kept for a message.
const MAX_ERROR_BYTES: usize = 4096;
/// The fields a listing asks for.
const LIST_FIELDS: &str = "kind,nextPageToken,items(name,size,updated,etag)";

/// The bucket's own listing, reads and deletes by exact name.
#[derive(Clone)]
pub(crate) struct GcsNames {
    pub(crate) api: JsonApi,
}

/// An `objects.list` answer, the fields read.
#[derive(Debug, Deserialize)]
pub(crate) struct Page {
    kind: Option<String>,
    #[serde(default)]
    pub(crate) items: Vec<Resource>,
    #[serde(rename = "nextPageToken")]
    next: Option<String>,
}

/// An object resource, the fields read.
#[derive(Debug, Deserialize)]
pub(crate) struct Resource {
    name: String,
    size: Option<String>,
    updated: Option<String>,
    etag: Option<String>,
    generation: Option<String>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    #[serde(rename = "contentEncoding")]
    content_encoding: Option<String>,
    crc32c: Option<String>,
    #[serde(rename = "md5Hash")]
    md5_hash: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

impl Resource {
    /// GCS's checksum of the object's bytes as stored, as a read's `x-goog-hash` gives it
    /// ([`super::native::in_answer`]): its CRC32C, else its MD5.
    pub(crate) fn native(&self) -> Option<crate::NativeChecksum> {
        let crc32c = self
            .crc32c
            .as_deref()
            .and_then(|v| native_value("crc32c", v, 4));
        let md5 = || {
            self.md5_hash
                .as_deref()
                .and_then(|v| native_value("md5", v, 16))
        };
        match crc32c {
            Some(value) => Some(crate::NativeChecksum::full(value, "gcs crc32c")),
            None => md5().map(|value| crate::NativeChecksum::full(value, "gcs md5")),
        }
    }

    pub(crate) fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            location: Path::default(),
            last_modified: self
                .updated
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_default(),
            size: self
                .size
                .as_deref()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            e_tag: self.etag.clone(),
            version: self.generation.clone(),
        }
    }
}

fn generic(text: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "GCS",
        source: text.into(),
    }
}

/// A refused request as object_store reports one, from its status and message.
async fn refusal(name: &str, response: reqwest::Response) -> object_store::Error {
    let status = response.status();
    let (body, _) = bounded_body(response, MAX_ERROR_BYTES).await;
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string));
    let answer = crate::answer::Answer {
        status: Some(status.as_u16()),
        message,
        ..Default::default()
    };
    crate::read_answer::refused("GCS", name, status, answer)
}

/// The page in `body`, which must be an `objects.list` answer, each object's fields read.
pub(crate) fn parse_page(body: &[u8]) -> std::result::Result<Page, String> {
    let page: Page = serde_json::from_slice(body)
        .map_err(|e| format!("the objects.list answer is not GCS's JSON: {e}"))?;
    if page.kind.as_deref() != Some("storage#objects") {
        return Err(format!(
            "the objects.list answer is not an objects list (kind {})",
            maskstore_core::shown_cut(page.kind.as_deref().unwrap_or("missing"), 64)
        ));
    }
    Ok(page)
}

impl GcsNames {
    /// One page of the listing of `folder` from `token` (or from `after`, exclusive).
    async fn page(
        &self,
        folder: &str,
        token: Option<&str>,
        after: Option<&str>,
    ) -> object_store::Result<Page> {
        let mut query = vec![("prefix", folder), ("fields", LIST_FIELDS)];
        match (token, after) {
            (Some(token), _) => query.push(("pageToken", token)),
            (None, Some(after)) => query.push(("startOffset", after)),
            (None, None) => {}
        }
        let url = JsonApi::with_query(self.api.objects_url(None), &query);
        let response = self.api.call(reqwest::Method::GET, &url, &[]).await?;
        if !response.status().is_success() {
            return Err(refusal(folder, response).await);
        }
        let body = match bounded_body(response, MAX_PAGE_BYTES).await {
            (body, Ok(false)) => body,
            (_, Ok(true)) => {
                return Err(generic(format!(
                    "the objects.list answer of {} exceeds {MAX_PAGE_BYTES} bytes; GCS sends \
                     at most about 6.3 MiB, check the endpoint",
                    self.api.objects_url(None)
                )));
            }
            (_, Err(e)) => return Err(generic(e.without_url().to_string())),
        };
        parse_page(&body).map_err(generic)
    }

    /// The object resource of `name`.
    async fn resource(&self, name: &str) -> object_store::Result<Resource> {
        let url = self.api.objects_url(Some(name));
        let response = self.api.call(reqwest::Method::GET, &url, &[]).await?;
        if !response.status().is_success() {
            return Err(refusal(name, response).await);
        }
        match bounded_body(response, MAX_RESOURCE_BYTES).await {
            (body, Ok(false)) => serde_json::from_slice(&body)
                .map_err(|e| generic(format!("the object resource is not GCS's JSON: {e}"))),
            (_, Ok(true)) => Err(generic(format!(
                "the object resource exceeds {MAX_RESOURCE_BYTES} bytes; check the endpoint"
            ))),
            (_, Err(e)) => Err(generic(e.without_url().to_string())),
        }
    }
}

/// Where a listing is between pages.
struct Cursor {
    token: Option<String>,
    after: Option<String>,
    pages: usize,
    done: bool,
}

#[async_trait::async_trait]
impl FoundNames for GcsNames {
    fn list_after(
        &self,
        backend: &Backend,
        folder: &str,
        after: Option<String>,
    ) -> Option<BoxStream<'static, Result<FoundObject>>> {
        let cursor = Cursor {
            token: None,
            after,
            pages: 0,
            done: false,
        };
        let state = (self.clone(), backend.clone(), folder.to_string(), cursor);
        let stream = futures::stream::try_unfold(state, |(names, backend, folder, mut cursor)| {
            async move {
                if cursor.done {
                    return Ok::<_, Error>(None);
                }
                let page = names
                    .page(&folder, cursor.token.as_deref(), cursor.after.as_deref())
                    .await
                    .map_err(|e| Error::from_store(&backend, &folder, e))?;
                cursor.pages += 1;
                // `startOffset` is inclusive: the name listed last is left out.
                let after = cursor.after.clone();
                let objects: Vec<FoundObject> = page
                    .items
                    .into_iter()
                    .filter(|item| after.as_deref() != Some(item.name.as_str()))
                    .map(|item| FoundObject {
                        meta: item.meta(),
                        name: item.name,
                    })
                    .collect();
                let more = (page.next.is_some(), page.next);
                let asked = cursor.token.as_ref();
                match next_page(&backend, &folder, cursor.pages, asked, more, "objects list")? {
                    Some(token) => cursor.token = Some(token),
                    None => cursor.done = true,
                }
                Ok(Some((objects, (names, backend, folder, cursor))))
            }
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
        let resource = self.resource(name).await?;
        let meta = resource.meta();
        options.check_preconditions(&meta)?;
        let mut attributes = Attributes::new();
        if let Some(content_type) = &resource.content_type {
            attributes.insert(Attribute::ContentType, content_type.clone().into());
        }
        if let Some(encoding) = &resource.content_encoding {
            attributes.insert(Attribute::ContentEncoding, encoding.clone().into());
        }
        for (key, value) in &resource.metadata {
            attributes.insert(
                Attribute::Metadata(key.clone().into()),
                value.clone().into(),
            );
        }
        let range = match &options.range {
            Some(range) => range
                .as_range(meta.size)
                .map_err(|e| object_store::Error::Generic {
                    store: "GCS",
                    source: Box::new(e),
                })?,
            None => 0..meta.size,
        };
        let payload = if options.head || range.is_empty() {
            GetResultPayload::Stream(futures::stream::empty().boxed())
        } else {
            // The version read above, so that bytes and metadata are of one object.
            // GCS always names the generation; a server that does not is read unpinned.
            let mut query = vec![("alt", "media")];
            if let Some(generation) = resource.generation.as_deref() {
                query.push(("generation", generation));
            }
            let url = JsonApi::with_query(self.api.objects_url(Some(name)), &query);
            let header = format!("bytes={}-{}", range.start, range.end - 1);
            // The bytes as stored: without it GCS decompresses a gzip object (and ignores
            // the range), as for object_store's reads ([`super::native::StoredBytes`]).
            let headers = [("range", header), ("accept-encoding", "gzip".to_string())];
            let response = self.api.call(reqwest::Method::GET, &url, &headers).await?;
            if !response.status().is_success() {
                return Err(refusal(name, response).await);
            }
            let stream = response
                .bytes_stream()
                .map_err(|e| generic(e.without_url().to_string()));
            GetResultPayload::Stream(stream.boxed())
        };
        let mut extensions = http::Extensions::default();
        if let Some(native) = resource.native() {
            extensions.insert(NativeAnswer(native));
        }
        Ok(GetResult {
            payload,
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn delete(&self, name: &str) -> object_store::Result<()> {
        let url = self.api.objects_url(Some(name));
        let response = self.api.call(reqwest::Method::DELETE, &url, &[]).await?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(refusal(name, response).await)
    }
}
