//! The Azure store as maskstore uses it: object_store's `MicrosoftAzure` with metadata
//! names made legal for Azure.
//!
//! Azure takes metadata names that are C# identifiers (ASCII letters, digits, `_`, not
//! starting with a digit) and treats them case-insensitively; object_store reads them
//! back lowercase (as HTTP header names). So maskstore's `maskstore-checksum` cannot be
//! stored as it is, nor the names other tools chose (boto3's `dicom.series`). A name is
//! stored as ([`stored_name`]):
//!
//! 1. itself, when it is a lowercase identifier not starting with `ms_` or `msx_`
//!    (`annotator`, `my_field`): what other Azure tools see and write;
//! 2. `ms_` and the name with `-` as `_`, when it is made of lowercase letters, digits
//!    and `-` (maskstore's own rule: `maskstore-checksum` is `ms_maskstore_checksum`),
//!    as earlier versions stored every name;
//! 3. otherwise `msx_` and the name's UTF-8 bytes, lowercase letters and digits as they
//!    are and every other byte as `_` and two lowercase hex digits (`dicom.series` is
//!    `msx_dicom_2eseries`, `Ms_X` is `msx__4ds_5f_58`).
//!
//! A stored name reads back ([`read_names`]) as the name it was stored for: an `msx_`
//! name whose escapes decode to a name stored that way, an `ms_` name with its `_` as `-`
//! (what every earlier version wrote), and any other name as it is. Two stored names
//! never read as one: when a blob holds both `x` and `ms_x` (another tool wrote one of
//! them), the `ms_x` entry reads under its stored name `ms_x`, which is then written as
//! `msx_ms_5fx`, so a copy keeps both. (Were that name taken too, which takes another
//! tool writing names shaped like maskstore's escapes, `_` is appended until it is free.)
use std::ops::Range;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::azure::MicrosoftAzure;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, CopyOptions, Error, GetOptions, GetRange, GetResult,
    ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, RenameOptions, Result,
};

/// The prefix of names stored in maskstore's own rule (`-` as `_`).
const OWN: &str = "ms_";
/// The prefix of names stored escaped.
const ESCAPED: &str = "msx_";

fn reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with(OWN) || lower.starts_with(ESCAPED)
}

/// The Azure name the metadata name `name` is stored under (rules 1 to 3 above).
pub(crate) fn stored_name(name: &str) -> String {
    let identifier = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
    if identifier && !reserved(name) {
        return name.to_string();
    }
    let own_rule = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if own_rule {
        return format!("{OWN}{}", name.replace('-', "_"));
    }
    let mut stored = String::from(ESCAPED);
    for byte in name.bytes() {
        if byte.is_ascii_lowercase() || byte.is_ascii_digit() {
            stored.push(byte as char);
        } else {
            stored.push_str(&format!("_{byte:02x}"));
        }
    }
    stored
}

/// The name an `msx_` or `ms_` stored name was stored for, if it is one maskstore would
/// store that way.
fn unescape(stored: &str) -> Option<String> {
    let name = if let Some(rest) = stored.strip_prefix(ESCAPED) {
        let mut bytes = Vec::new();
        let mut chars = rest.bytes();
        while let Some(b) = chars.next() {
            if b == b'_' {
                let hex = [chars.next()?, chars.next()?];
                bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            } else {
                bytes.push(b);
            }
        }
        String::from_utf8(bytes).ok()?
    } else {
        let rest = stored.strip_prefix(OWN)?;
        if rest.is_empty()
            || !rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return None;
        }
        // What an earlier version stored for any name of its rule, `annotator` included.
        return Some(rest.replace('_', "-"));
    };
    // `msx_` alone would read as an empty name, which no store keeps: another tool's.
    (!name.is_empty() && stored_name(&name) == stored).then_some(name)
}

/// The metadata names of a blob as stored, read back as the names they were stored for
/// (see the module's docs); other attributes as they are.
pub(crate) fn read_names(attributes: Attributes) -> Attributes {
    let mut stored: Vec<(String, AttributeValue)> = Vec::new();
    let mut out = Attributes::new();
    for (key, value) in attributes.iter() {
        match key {
            Attribute::Metadata(name) => stored.push((name.to_string(), value.clone())),
            other => {
                out.insert(other.clone(), value.clone());
            }
        }
    }
    // Names read as they are first, then escaped names, then maskstore's own rule: a
    // name already taken reads under its stored name instead.
    let mut names: std::collections::BTreeMap<String, AttributeValue> = Default::default();
    let mut later: Vec<(String, String, AttributeValue)> = Vec::new();
    for (name, value) in stored {
        match unescape(&name) {
            Some(read) => later.push((name, read, value)),
            None => {
                names.insert(name, value);
            }
        }
    }
    // Sorted, so that which name a rare clash gives to whom is the same on every read.
    later.sort_by(|a, b| (!a.0.starts_with(ESCAPED), &a.0).cmp(&(!b.0.starts_with(ESCAPED), &b.0)));
    for (name, read, value) in later {
        let mut key = if names.contains_key(&read) {
            name
        } else {
            read
        };
        while names.contains_key(&key) {
            key.push('_');
        }
        names.insert(key, value);
    }
    for (name, value) in names {
        out.insert(Attribute::Metadata(name.into()), value);
    }
    out
}

fn store_names(attributes: Attributes) -> Attributes {
    attributes
        .iter()
        .map(|(key, value)| match key {
            Attribute::Metadata(name) => {
                (Attribute::Metadata(stored_name(name).into()), value.clone())
            }
            other => (other.clone(), value.clone()),
        })
        .collect()
}

/// `MicrosoftAzure` storing metadata under Azure-legal names.
#[derive(Clone)]
pub(crate) struct AzureStore {
    inner: MicrosoftAzure,
}

impl std::fmt::Debug for AzureStore {
    // object_store's Debug of the client prints the account key's bytes: never show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureStore").finish_non_exhaustive()
    }
}

impl AzureStore {
    /// Wraps the client.
    pub(crate) fn new(inner: MicrosoftAzure) -> AzureStore {
        AzureStore { inner }
    }
}

impl AzureStore {
    /// The last `n` bytes: Azure has no suffix ranges (`bytes=-n`), so the size is read
    /// first and the range asked from there, pinned to the version read (`If-Match`) so
    /// that a concurrent overwrite cannot mix two versions; a lost race is retried.
    /// Azure answers 412 to an `if-match` read of a missing blob, where S3 (and the
    /// contract: the key is looked up first) answers 404: a HEAD without conditions tells
    /// which it was. A blob written in between keeps the 412.
    async fn missing_or(&self, location: &Path, precondition: Error) -> Error {
        let head = GetOptions {
            head: true,
            ..Default::default()
        };
        match self.inner.get_opts(location, head).await {
            Err(e @ Error::NotFound { .. }) => e,
            _ => precondition,
        }
    }

    async fn get_suffix(&self, location: &Path, options: GetOptions, n: u64) -> Result<GetResult> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let head = self
                .inner
                .get_opts(
                    location,
                    GetOptions {
                        head: true,
                        if_match: options.if_match.clone(),
                        if_none_match: options.if_none_match.clone(),
                        if_modified_since: options.if_modified_since,
                        if_unmodified_since: options.if_unmodified_since,
                        ..Default::default()
                    },
                )
                .await?;
            let size = head.meta.size;
            let mut ranged = options.clone();
            ranged.range = (size > 0).then(|| GetRange::Offset(size.saturating_sub(n)));
            let pinned = ranged.if_match.is_none() && head.meta.e_tag.is_some();
            if pinned {
                ranged.if_match = head.meta.e_tag.clone();
            }
            match self.inner.get_opts(location, ranged).await {
                Err(object_store::Error::Precondition { .. }) if pinned && attempt < 3 => continue,
                other => return other,
            }
        }
    }
}

/// Blobs asked per listing page, as S3 and GCS send. Azure's default is 5000, and an
/// entry may take some 10 KiB within Azure's limits (a 1024-character name percent-encoded
/// when it holds a character XML cannot, or XML-escaped, beside its properties and
/// content headers): 5000 such would pass the bound on a listing's answer
/// ([`crate::http_client`], 32 MiB), 1000 stay well within it.
const LIST_PAGE: usize = 1000;

impl AzureStore {
    /// The listing of `prefix` (a folder: `/` is added), page by page of [`LIST_PAGE`].
    fn pages(
        &self,
        prefix: Option<&Path>,
        delimiter: bool,
    ) -> BoxStream<'static, Result<ListResult>> {
        let inner = self.inner.clone();
        let prefix = prefix
            .filter(|p| !p.as_ref().is_empty())
            .map(|p| format!("{}{}", p.as_ref(), object_store::path::DELIMITER));
        // `None` once the last page came; `Some(marker)` for the page to ask next.
        futures::stream::try_unfold(Some(None), move |next: Option<Option<String>>| {
            let inner = inner.clone();
            let prefix = prefix.clone();
            async move {
                let Some(page_token) = next else {
                    return Ok(None);
                };
                let options = PaginatedListOptions {
                    delimiter: delimiter.then_some(object_store::path::DELIMITER.into()),
                    max_keys: Some(LIST_PAGE),
                    page_token,
                    ..Default::default()
                };
                let page = inner.list_paginated(prefix.as_deref(), options).await?;
                Ok(Some((page.result, page.page_token.map(Some))))
            }
        })
        .boxed()
    }
}

impl std::fmt::Display for AzureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AzureStore({})", self.inner)
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for AzureStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> Result<PutResult> {
        opts.attributes = store_names(opts.attributes);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        mut opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        opts.attributes = store_names(opts.attributes);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let if_match = options.if_match.is_some();
        let got = match options.range {
            Some(GetRange::Suffix(n)) => self.get_suffix(location, options, n).await,
            _ => self.inner.get_opts(location, options).await,
        };
        let mut result = match got {
            Err(e @ Error::Precondition { .. }) if if_match => {
                return Err(self.missing_or(location, e).await);
            }
            other => other?,
        };
        result.attributes = read_names(result.attributes);
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.pages(prefix, false)
            .map_ok(|page| futures::stream::iter(page.objects.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    /// The listing past `offset`, filtered here (Azurite has no `startFrom`).
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let offset = offset.clone();
        self.list(prefix)
            .try_filter(move |object| futures::future::ready(object.location > offset))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut pages = self.pages(prefix, true);
        let mut prefixes = std::collections::BTreeSet::new();
        let mut all = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        while let Some(page) = pages.try_next().await? {
            prefixes.extend(page.common_prefixes);
            all.objects.extend(page.objects);
        }
        all.common_prefixes = prefixes.into_iter().collect();
        Ok(all)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(stored: &[(&str, &str)]) -> Vec<(String, String)> {
        let attributes: Attributes = stored
            .iter()
            .map(|(n, v)| {
                (
                    Attribute::Metadata(n.to_string().into()),
                    AttributeValue::from(v.to_string()),
                )
            })
            .collect();
        let mut out: Vec<(String, String)> = read_names(attributes)
            .iter()
            .map(|(k, v)| match k {
                Attribute::Metadata(n) => (n.to_string(), v.to_string()),
                _ => unreachable!(),
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn every_name_round_trips_through_an_azure_identifier() {
        for name in [
            "maskstore-checksum",
            "study-uid",
            "a",
            "1x",
            "-lead",
            "x--y",
            "9-",
            "annotator",
            "ms_annotator",
            "my_field",
            "dicom.series",
            "Ms_X",
            "Owner",
            "msx_zz",
            "wer",
            "_",
            "ü",
        ] {
            let stored = stored_name(name);
            assert!(
                stored
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && !stored.starts_with(|c: char| c.is_ascii_digit()),
                "{stored}"
            );
            assert_eq!(
                read(&[(&stored, "v")]),
                [(name.to_string(), "v".to_string())]
            );
        }
    }

    /// An Azure listing on a loopback port: each page one blob, the first pointing to a
    /// second; the request targets it got.
    async fn listing_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/acct", listener.local_addr().unwrap());
        let targets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&targets);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let mut reader = BufReader::new(socket);
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                let target = line.split(' ').nth(1).unwrap_or_default().to_string();
                while reader.read_line(&mut line).await.unwrap() > 2 {
                    line.clear();
                }
                let (name, marker) = match target.contains("marker=m2") {
                    false => ("mask/a", "m2"),
                    true => ("mask/b", ""),
                };
                seen.lock().unwrap().push(target);
                let body = format!(
                    "<?xml version=\"1.0\"?><EnumerationResults><Blobs><Blob><Name>{name}</Name>\
                     <Properties><Last-Modified>Mon, 07 Dec 2026 00:00:00 GMT</Last-Modified>\
                     <Content-Length>1</Content-Length><Content-Type>image/png</Content-Type>\
                     </Properties></Blob></Blobs><NextMarker>{marker}</NextMarker>\
                     </EnumerationResults>"
                );
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                reader
                    .into_inner()
                    .write_all(answer.as_bytes())
                    .await
                    .unwrap();
            }
        });
        (endpoint, targets)
    }

    /// Listings ask Azure for pages of 1000 blobs (its default of 5000 could pass the bound
    /// on a listing's answer), and every page is read.
    #[tokio::test]
    async fn listings_ask_for_pages_of_a_thousand_and_follow_every_marker() {
        use futures::TryStreamExt;
        let (endpoint, targets) = listing_server().await;
        let azure = object_store::azure::MicrosoftAzureBuilder::new()
            .with_account("acct")
            .with_access_key("aG9zdGlsZQ==")
            .with_container_name("c")
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .build()
            .unwrap();
        let store = AzureStore::new(azure);
        let prefix = Path::from("mask");
        let listed: Vec<ObjectMeta> = store.list(Some(&prefix)).try_collect().await.unwrap();
        let names: Vec<&str> = listed.iter().map(|o| o.location.as_ref()).collect();
        assert_eq!(names, ["mask/a", "mask/b"]);
        let past: Vec<ObjectMeta> = store
            .list_with_offset(Some(&prefix), &Path::from("mask/a"))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(past.len(), 1);
        let folder = store.list_with_delimiter(Some(&prefix)).await.unwrap();
        assert_eq!(folder.objects.len(), 2);
        let targets = targets.lock().unwrap();
        assert_eq!(targets.len(), 6, "{targets:?}");
        for target in targets.iter() {
            assert!(
                target.contains("comp=list") && target.contains("maxresults=1000"),
                "{target}"
            );
            assert!(target.contains("prefix=mask%2F"), "{target}");
        }
    }

    #[test]
    fn names_earlier_versions_stored_read_as_before() {
        assert_eq!(
            read(&[("ms_maskstore_checksum", "c"), ("ms_study_uid", "s")]),
            [
                ("maskstore-checksum".to_string(), "c".to_string()),
                ("study-uid".to_string(), "s".to_string())
            ]
        );
        assert_eq!(stored_name("maskstore-checksum"), "ms_maskstore_checksum");
    }

    /// `ms_annotator` (an earlier version's `annotator`, or another tool's name) beside
    /// another tool's `annotator`: both read, each under its own name, every time.
    #[test]
    fn two_stored_names_never_read_as_one() {
        let both = read(&[("ms_annotator", "A"), ("annotator", "B")]);
        assert_eq!(
            both,
            [
                ("annotator".to_string(), "B".to_string()),
                ("ms_annotator".to_string(), "A".to_string())
            ]
        );
        // Written back, they are stored apart and read the same again.
        let again: Vec<(String, &str)> = both
            .iter()
            .map(|(n, v)| (stored_name(n), v.as_str()))
            .collect();
        let again: Vec<(&str, &str)> = again.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        assert_eq!(read(&again), both);
        // A foreign name that merely looks escaped reads as it is, `msx_` alone too (it
        // would otherwise read as an empty name, which sync then leaves out).
        for foreign in ["msx_zz", "msx_", "msx_5f", "msx__"] {
            assert_eq!(
                read(&[(foreign, "v")]),
                [(foreign.to_string(), "v".to_string())]
            );
        }
    }
}
