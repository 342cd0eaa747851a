//! A read answered over HTTP by S3 or Azure (`x-amz-meta-*` or `x-ms-meta-*` headers), as
//! object_store reports one: for the requests maskstore sends itself to objects whose
//! names object_store's `Path` cannot hold (`s3/names.rs`, `azure/names.rs`); and the root
//! element of an XML answer, by which a listing is told from an error document.

use crate::providers::Backend;
use bytes::Bytes;
use futures::stream::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{Attribute, Attributes, GetRange, GetResult, GetResultPayload, ObjectMeta};

/// The `Range` header of `range`.
pub(crate) fn range_header(range: &GetRange) -> String {
    match range {
        GetRange::Bounded(r) => format!("bytes={}-{}", r.start, r.end.saturating_sub(1)),
        GetRange::Offset(o) => format!("bytes={o}-"),
        GetRange::Suffix(n) => format!("bytes=-{n}"),
    }
}

/// Refuses a name with a `.` or `..` segment: every HTTP client resolves those in a URL's
/// path (`%2E` included, as the URL standard says), so a request would reach another
/// object. Reported by name instead.
pub(crate) fn addressable(name: &str) -> object_store::Result<()> {
    if name.split('/').any(|s| s == "." || s == "..") {
        return Err(generic(format!(
            "the object {} has a '.' or '..' segment, which no HTTP request can name in its \
             path; read or delete it with the tool that wrote it",
            maskstore_core::shown(name)
        )));
    }
    Ok(())
}

fn generic(text: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "HTTP",
        source: text.into(),
    }
}

/// The read `response` as object_store reports one: what its headers say of the object
/// (user metadata from the headers starting with `meta_prefix`, named by `meta_name`),
/// and its body as a stream (none for a HEAD).
pub(crate) fn answer(
    response: reqwest::Response,
    head: bool,
    meta_prefix: &str,
    meta_name: fn(&str) -> String,
) -> object_store::Result<GetResult> {
    // Metadata values that are not ASCII read as encoded words, as through object_store.
    let mut headers = response.headers().clone();
    crate::metadata::repair_headers(&mut headers);
    let headers = &headers;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let length: u64 = text("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // A range answer names the whole object's size after the `/`.
    let (range, size) = match text("content-range").and_then(parse_content_range) {
        Some((range, size)) => (range, size),
        None => (0..length, length),
    };
    let last_modified = text("last-modified")
        .and_then(|t| chrono::DateTime::parse_from_rfc2822(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    let mut attributes = Attributes::new();
    if let Some(content_type) = text("content-type") {
        attributes.insert(Attribute::ContentType, content_type.to_string().into());
    }
    for (name, value) in headers {
        if let (Some(meta), Ok(value)) = (name.as_str().strip_prefix(meta_prefix), value.to_str()) {
            attributes.insert(
                Attribute::Metadata(meta_name(meta).into()),
                value.to_string().into(),
            );
        }
    }
    let meta = ObjectMeta {
        location: Path::default(),
        last_modified,
        size,
        e_tag: text("etag").map(str::to_string),
        version: text("x-amz-version-id").map(str::to_string),
    };
    let payload = if head {
        GetResultPayload::Stream(futures::stream::empty().boxed())
    } else {
        let stream = response
            .bytes_stream()
            .map_err(|e| generic(e.to_string()))
            .map_ok(Bytes::from);
        GetResultPayload::Stream(stream.boxed())
    };
    Ok(GetResult {
        payload,
        meta,
        range: if head { 0..size } else { range },
        attributes,
        extensions: Default::default(),
    })
}

/// `bytes START-END/SIZE` as the range and the whole size; `None` unless the span lies
/// within the object (RFC 9110 §14.4: `START <= END < SIZE`), so that a server's
/// `bytes 0-463/0` or `bytes 0-18446744073709551615/…` never becomes a range to slice.
pub(crate) fn parse_content_range(value: &str) -> Option<(std::ops::Range<u64>, u64)> {
    let (span, size) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let (start, end, size): (u64, u64, u64) =
        (start.parse().ok()?, end.parse().ok()?, size.parse().ok()?);
    (start <= end && end < size).then(|| (start..end + 1, size))
}

/// The text of each `element` that is a direct child of a `parent` element of `body`, in
/// document order and exact: quick-xml's serde reader reads a text made only of white
/// space as empty, and in a listing that is a name (the blob ` `). `None` when a text
/// holds markup (CDATA, a child element) or is not well-formed.
pub(crate) fn exact_texts(body: &str, parent: &str, element: &str) -> Option<Vec<String>> {
    use quick_xml::events::Event;
    // The reader skips a byte order mark and counts its spans after it.
    let body = body.strip_prefix('\u{feff}').unwrap_or(body);
    let mut reader = quick_xml::Reader::from_str(body);
    let (mut texts, mut depth, mut parents) = (Vec::new(), 0usize, Vec::new());
    loop {
        match reader.read_event().ok()? {
            Event::Start(e)
                if parents.last() == Some(&depth) && e.name().as_ref() == element.as_bytes() =>
            {
                let span = reader.read_to_end(e.name()).ok()?;
                let raw =
                    body.get(usize::try_from(span.start).ok()?..usize::try_from(span.end).ok()?)?;
                if raw.contains('<') {
                    return None;
                }
                texts.push(quick_xml::escape::unescape(raw).ok()?.into_owned());
            }
            Event::Empty(e)
                if parents.last() == Some(&depth) && e.name().as_ref() == element.as_bytes() =>
            {
                texts.push(String::new());
            }
            Event::Start(e) => {
                depth += 1;
                if e.name().as_ref() == parent.as_bytes() {
                    parents.push(depth);
                }
            }
            Event::End(_) => {
                if parents.last() == Some(&depth) {
                    parents.pop();
                }
                depth = depth.checked_sub(1)?;
            }
            Event::Eof => return Some(texts),
            _ => {}
        }
    }
}

/// The name of the first element of `body`.
pub(crate) fn xml_root(body: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(body);
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                return Some(String::from_utf8_lossy(e.name().as_ref()).into_owned());
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

/// A refused request to the object named `name` as object_store reports one: its
/// status decides the kind (404 not found, 412 precondition, 304 not modified, else a
/// `store` error), `answer` what the server said.
pub(crate) fn refused(
    store: &'static str,
    name: &str,
    status: reqwest::StatusCode,
    answer: crate::answer::Answer,
) -> object_store::Error {
    let path = maskstore_core::shown(name).into_owned();
    let source = Box::new(answer);
    match status {
        reqwest::StatusCode::NOT_FOUND => object_store::Error::NotFound { path, source },
        reqwest::StatusCode::PRECONDITION_FAILED => {
            object_store::Error::Precondition { path, source }
        }
        reqwest::StatusCode::NOT_MODIFIED => object_store::Error::NotModified { path, source },
        _ => object_store::Error::Generic { store, source },
    }
}

/// Checks that an XML answer `body` is a `root` document (a listing page): another
/// document (an `<Error>` in a 200) or no XML is said so, escaped.
pub(crate) fn expect_root(body: &str, root: &str) -> std::result::Result<(), String> {
    match xml_root(body) {
        Some(found) if found == root => Ok(()),
        Some(found) => {
            let answer = crate::answer::parse_body(body);
            Err(format!(
                "is a <{}> document, not a listing: {}",
                maskstore_core::shown_cut(&found, 64),
                maskstore_core::shown_cut(&answer.describe(), 300)
            ))
        }
        None => Err("is not XML".to_string()),
    }
}

/// Pages a listing of our own follows before giving up (1,000 names a page).
pub(crate) const MAX_LISTING_PAGES: usize = 100_000;

/// Where a listing of `folder` goes after its page number `pages`, asked with `current`
/// (a continuation token or marker), whose answer says whether `more` follow and from
/// which `next` place: `Some(next)` to ask next, `None` at the end. A page that says more
/// follow without a new place to ask (stopping would pass a part of the listing as all of
/// it, and `sync --delete` would delete what the rest holds), and a listing past
/// [`MAX_LISTING_PAGES`], are the server's error, named after `request`.
pub(crate) fn next_page(
    backend: &Backend,
    folder: &str,
    pages: usize,
    current: Option<&String>,
    (more, next): (bool, Option<String>),
    request: &str,
) -> crate::Result<Option<String>> {
    let failed = |why: String| crate::Error::Backend {
        backend: backend.to_string(),
        key: folder.to_string(),
        source: why.into(),
    };
    match next {
        _ if !more => Ok(None),
        Some(next) if current != Some(&next) => {
            if pages >= MAX_LISTING_PAGES {
                return Err(failed(format!(
                    "the listing goes on past {MAX_LISTING_PAGES} pages"
                )));
            }
            Ok(Some(next))
        }
        _ => Err(failed(format!(
            "the {request} answer says more follow but gives no new place to ask from, so \
             the rest cannot be listed; check the endpoint"
        ))),
    }
}

/// At most `limit` bytes of the body of `response`, and whether it held more (the rest
/// is never read); a failure while reading comes with what was read before it.
pub(crate) async fn bounded_body(
    response: reqwest::Response,
    limit: usize,
) -> (Vec<u8>, reqwest::Result<bool>) {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => return (body, Err(e)),
        };
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            return (body, Ok(true));
        }
    }
    (body, Ok(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_a_dot_segment_is_refused_by_name_not_sent() {
        for name in ["mask/./a", "mask/../a", "mask/a/.."] {
            let why = addressable(name).unwrap_err().to_string();
            assert!(why.contains("'.' or '..' segment"), "{why}");
        }
        for name in ["mask/.a", "mask/a..b", "mask/a//b", "mask/f/"] {
            addressable(name).unwrap();
        }
    }

    #[test]
    fn content_ranges_give_the_range_and_the_whole_size() {
        assert_eq!(parse_content_range("bytes 2-4/10"), Some((2..5, 10)));
        assert_eq!(parse_content_range("bytes */10"), None);
        assert_eq!(parse_content_range("bytes 9-9/10"), Some((9..10, 10)));
        // Found by parsers_fuzz: spans outside the object, and one whose end + 1 overflowed.
        assert_eq!(parse_content_range("bytes 0-463/0"), None);
        assert_eq!(parse_content_range("bytes 5-4/10"), None);
        assert_eq!(parse_content_range("bytes 0-10/10"), None);
        let max = u64::MAX;
        assert_eq!(parse_content_range(&format!("bytes 0-{max}/{max}")), None);
    }
}
