//! Blobs whose names object_store's `Path` cannot hold (`mask/a//b.png`, a name ending in
//! `/`, a control character): listed with maskstore's own List Blobs requests
//! (object_store fails a whole page on one such name), read and deleted with SAS URLs
//! signed for the exact name. Needs the account key (a SAS signed here); under Entra ID
//! credentials such a name still fails the listing, naming it.
//!
//! Bounds: a page is at most [`MAX_PAGE_BYTES`] (Azure sends at most 5,000 blobs a page);
//! at most [`crate::read_answer::MAX_LISTING_PAGES`] pages are followed, each marker differing from the one before. A
//! 200 answer that is not an `EnumerationResults` document is an error.

use std::time::Duration;

use futures::stream::{BoxStream, StreamExt, TryStreamExt};

use object_store::path::Path;
use object_store::{GetOptions, GetResult, ObjectMeta};
use percent_encoding::percent_decode_str;
use serde::Deserialize;

use crate::providers::{Backend, FoundNames, FoundObject};
use crate::read_answer::next_page;
use crate::read_answer::{answer, bounded_body, range_header};
use crate::{Error, Result};

/// The largest listing page read: 5,000 blobs of names up to 1,024 characters (3 bytes
/// each escaped at worst) with about 1 KiB of properties each: about 20 MiB at worst; a
/// page of ordinary names is about 5 MiB. Pages are asked for 1,000 blobs, a fifth of it.
pub(crate) const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Blobs asked for a page.
const PAGE_SIZE: &str = "1000";
/// How long a SAS for one request lives.
const SAS_TTL: Duration = Duration::from_secs(300);
/// The start of an error body kept for a message.
const MAX_ERROR_BYTES: usize = 4096;

/// The container's own listing, reads and deletes by exact name.
#[derive(Clone)]
pub(crate) struct AzureNames {
    pub(crate) account: String,
    pub(crate) key: std::sync::Arc<super::key_file::AccountKey>,
    pub(crate) container_url: url::Url,
    pub(crate) client: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct Enumeration {
    #[serde(rename = "Blobs", default)]
    blobs: Blobs,
    #[serde(rename = "NextMarker", default)]
    next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Blobs {
    #[serde(rename = "Blob", default)]
    blob: Vec<Blob>,
}

#[derive(Debug, Deserialize)]
struct Blob {
    #[serde(rename = "Name")]
    name: BlobName,
    #[serde(rename = "Properties")]
    properties: Properties,
}

/// A blob's name; `Encoded="true"` when Azure percent-encoded it (characters XML cannot
/// carry).
#[derive(Debug, Deserialize)]
struct BlobName {
    #[serde(rename = "@Encoded", default)]
    encoded: Option<String>,
    #[serde(rename = "$text", default)]
    text: String,
}

#[derive(Debug, Deserialize)]
struct Properties {
    #[serde(rename = "Last-Modified")]
    last_modified: Option<String>,
    #[serde(rename = "Etag")]
    etag: Option<String>,
    #[serde(rename = "Content-Length")]
    size: Option<u64>,
}

fn generic(text: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "MicrosoftAzure",
        source: text.into(),
    }
}

/// The page in `body`, which must be an `EnumerationResults` document: its objects and
/// the marker of the next page.
pub(crate) fn parse_page(
    body: &str,
) -> std::result::Result<(Vec<FoundObject>, Option<String>), String> {
    crate::read_answer::expect_root(body, "EnumerationResults")?;
    let page: Enumeration =
        quick_xml::de::from_str(body).map_err(|e| format!("is not the XML Azure sends: {e}"))?;
    let mut objects = Vec::with_capacity(page.blobs.blob.len());
    // A name made only of white space, which the serde reader reads as empty.
    let exact = crate::read_answer::exact_texts(body, "Blob", "Name")
        .filter(|names| names.len() == page.blobs.blob.len());
    for (index, mut blob) in page.blobs.blob.into_iter().enumerate() {
        if let Some(name) = exact.as_ref().map(|names| &names[index]) {
            blob.name.text.clone_from(name);
        }
        let name = match blob.name.encoded.as_deref() {
            Some("true") => percent_decode_str(&blob.name.text)
                .decode_utf8()
                .map_err(|_| "holds a name that is not UTF-8 once decoded".to_string())?
                .into_owned(),
            _ => blob.name.text,
        };
        let last_modified = blob
            .properties
            .last_modified
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc2822(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        objects.push(FoundObject {
            name,
            meta: ObjectMeta {
                location: Path::default(),
                last_modified,
                size: blob.properties.size.unwrap_or(0),
                e_tag: blob.properties.etag,
                version: None,
            },
        });
    }
    Ok((objects, page.next.filter(|m| !m.is_empty())))
}

impl AzureNames {
    /// A SAS URL for `blob` (or, without one, the container) granting `permission`.
    fn url(&self, blob: Option<&str>, permission: &str) -> object_store::Result<url::Url> {
        let expiry = chrono::Utc::now()
            + chrono::Duration::from_std(SAS_TTL).unwrap_or(chrono::Duration::MAX);
        super::sas(
            &self.account,
            self.key.secret().expose(),
            &self.container_url,
            blob,
            permission,
            expiry,
        )
        .map_err(generic)
    }

    /// One page of the listing of `folder` at `marker`.
    async fn page(
        &self,
        folder: &str,
        marker: Option<&str>,
    ) -> object_store::Result<(Vec<FoundObject>, Option<String>)> {
        let mut url = self.url(None, "l")?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("restype", "container")
                .append_pair("comp", "list")
                .append_pair("prefix", folder)
                .append_pair("maxresults", PAGE_SIZE);
            if let Some(marker) = marker {
                query.append_pair("marker", marker);
            }
        }
        let response = self.send(reqwest::Method::GET, url, None).await?;
        if !response.status().is_success() {
            return Err(refusal(folder, response).await);
        }
        let (body, more) = bounded_body(response, MAX_PAGE_BYTES).await;
        if more.map_err(|e| generic(e.without_url().to_string()))? {
            return Err(generic(format!(
                "the List Blobs answer of {} exceeds {MAX_PAGE_BYTES} bytes; check the endpoint",
                self.container_url.origin().ascii_serialization()
            )));
        }
        parse_page(&String::from_utf8_lossy(&body))
            .map_err(|problem| generic(format!("the List Blobs answer {problem}")))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: url::Url,
        range: Option<String>,
    ) -> object_store::Result<reqwest::Response> {
        let mut request = self
            .client
            .request(method, url)
            .header("x-ms-version", super::SAS_VERSION)
            .timeout(SAS_TTL);
        if let Some(range) = range {
            request = request.header("range", range);
        }
        request
            .send()
            .await
            .map_err(|e| generic(e.without_url().to_string()))
    }
}

/// A refused request as object_store reports one, from its status and error code.
async fn refusal(name: &str, response: reqwest::Response) -> object_store::Error {
    let status = response.status();
    let (body, _) = bounded_body(response, MAX_ERROR_BYTES).await;
    let answer = crate::answer::Answer {
        status: Some(status.as_u16()),
        ..crate::answer::parse_body(&String::from_utf8_lossy(&body))
    };
    crate::read_answer::refused("MicrosoftAzure", name, status, answer)
}

/// Where a listing is between pages.
struct Cursor {
    marker: Option<String>,
    pages: usize,
    done: bool,
}

/// `listing` past the entry named `after`: the names up to it were listed already.
///
/// Found by name, never by comparing names: Azure's order is not UTF-8's (Azure and Azurite
/// sort by UTF-16 code units, `😀` before `！`; an account with a hierarchical namespace
/// sorts folder by folder), so a comparison would leave out or repeat names. Should the
/// listing end without `after` (deleted since object_store listed it), where it left off is
/// unknown: that is an error, never a listing that silently leaves names out.
fn after_named(
    listing: BoxStream<'static, Result<FoundObject>>,
    after: Option<String>,
    backend: Backend,
    folder: String,
) -> BoxStream<'static, Result<FoundObject>> {
    futures::stream::unfold(
        (listing.fuse(), after),
        move |(mut listing, mut waiting)| {
            let (backend, folder) = (backend.clone(), folder.clone());
            async move {
                loop {
                    match listing.next().await {
                        Some(Ok(found)) if waiting.is_some() => {
                            if waiting.as_deref() == Some(found.name.as_str()) {
                                waiting = None;
                            }
                        }
                        Some(item) => return Some((item, (listing, waiting))),
                        None => {
                            let after = waiting.take()?;
                            let lost = Error::Backend {
                                backend: backend.to_string(),
                                key: maskstore_core::shown(&folder).into_owned(),
                                source: format!(
                                    "the listing started over (Azure has no \"start after\") no \
                                     longer holds {}, where it had stopped, so what is left to \
                                     list is unknown; run it again",
                                    maskstore_core::shown(&after)
                                )
                                .into(),
                            };
                            return Some((Err(lost), (listing, None)));
                        }
                    }
                }
            }
        },
    )
    .boxed()
}

#[async_trait::async_trait]
impl FoundNames for AzureNames {
    /// Azure has no "start after": the listing starts over and leaves out the names up to
    /// and including `after` ([`after_named`]).
    fn list_after(
        &self,
        backend: &Backend,
        folder: &str,
        after: Option<String>,
    ) -> Option<BoxStream<'static, Result<FoundObject>>> {
        let cursor = Cursor {
            marker: None,
            pages: 0,
            done: false,
        };
        let state = (self.clone(), backend.clone(), folder.to_string(), cursor);
        let stream =
            futures::stream::try_unfold(state, |(names, backend, folder, mut cursor)| async move {
                if cursor.done {
                    return Ok::<_, Error>(None);
                }
                let (objects, next) = names
                    .page(&folder, cursor.marker.as_deref())
                    .await
                    .map_err(|e| Error::from_store(&backend, &folder, e))?;
                cursor.pages += 1;
                let more = (next.is_some(), next);
                let asked = cursor.marker.as_ref();
                match next_page(&backend, &folder, cursor.pages, asked, more, "List Blobs")? {
                    Some(marker) => cursor.marker = Some(marker),
                    None => cursor.done = true,
                }
                Ok(Some((objects, (names, backend, folder, cursor))))
            })
            .map_ok(|objects| futures::stream::iter(objects.into_iter().map(Ok)))
            .try_flatten()
            .boxed();
        Some(after_named(
            stream,
            after,
            backend.clone(),
            folder.to_string(),
        ))
    }

    fn holds_folder_markers(&self) -> bool {
        true
    }

    async fn get(&self, name: &str, options: GetOptions) -> object_store::Result<GetResult> {
        crate::read_answer::addressable(name)?;
        let url = self.url(Some(name), "r")?;
        let method = if options.head {
            reqwest::Method::HEAD
        } else {
            reqwest::Method::GET
        };
        let range = options.range.as_ref().map(range_header);
        let response = self.send(method, url, range).await?;
        if !response.status().is_success() {
            return Err(refusal(name, response).await);
        }
        // The blob's Content-MD5, as object_store's reads carry it (`http_client`).
        let native = super::native::in_answer(response.headers());
        let mut result = answer(response, options.head, "x-ms-meta-", str::to_string)?;
        if let Some(native) = native {
            result
                .extensions
                .insert(crate::checksum::NativeAnswer(native));
        }
        // Stored names map back as a set (collision-free, see `azure::store`).
        result.attributes = super::store::read_names(result.attributes);
        options.check_preconditions(&result.meta)?;
        Ok(result)
    }

    async fn delete(&self, name: &str) -> object_store::Result<()> {
        crate::read_answer::addressable(name)?;
        let url = self.url(Some(name), "d")?;
        let response = self.send(reqwest::Method::DELETE, url, None).await?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(refusal(name, response).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_page_reads_plain_and_encoded_names_exactly() {
        let body = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults>\
            <Blobs><Blob><Name>mask/a//b.png</Name><Properties>\
            <Last-Modified>Mon, 07 Dec 2026 01:00:00 GMT</Last-Modified><Etag>0x8D1</Etag>\
            <Content-Length>3</Content-Length></Properties></Blob>\
            <Blob><Name Encoded=\"true\">mask%2Fnew%0Aline.png</Name><Properties>\
            <Content-Length>4</Content-Length></Properties></Blob></Blobs>\
            <NextMarker>m2</NextMarker></EnumerationResults>";
        let (objects, next) = parse_page(body).unwrap();
        let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["mask/a//b.png", "mask/new\nline.png"]);
        assert_eq!(objects[0].meta.size, 3);
        assert_eq!(next.as_deref(), Some("m2"));
    }

    /// Found by parsers_fuzz: the serde reader read a name made only of white space as
    /// empty, a name no store holds.
    #[test]
    fn a_name_of_white_space_is_read_exactly_and_a_metadata_name_is_no_blob_name() {
        let body = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults><Blobs>\
            <Blob><Name> mask/a &amp; b </Name><Metadata><Name>x</Name></Metadata>\
            <Properties><Content-Length>1</Content-Length></Properties></Blob>\
            <Blob><Name> </Name><Properties /></Blob></Blobs><NextMarker /></EnumerationResults>";
        let (objects, _) = parse_page(body).unwrap();
        let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, [" mask/a & b ", " "]);
    }

    #[test]
    fn a_200_carrying_an_error_document_is_no_listing() {
        let body = "<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code>\
            <Message>\u{1b}[2J</Message></Error>";
        let problem = parse_page(body).unwrap_err();
        assert!(problem.contains("not a listing"), "{problem}");
        assert!(!problem.contains('\u{1b}'), "{problem}");
    }
}
