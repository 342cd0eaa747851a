//! The value types of the storage API: write and read options, what a read returns, listings.

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use maskstore_core::ObjectKey;
use object_store::{Attribute, AttributeValue, Attributes};

use crate::checksum::NativeChecksum;
use crate::{Error, Result};

/// How a put treats an existing object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// Replace whatever is there (the default).
    #[default]
    Overwrite,
    /// Write only if the key does not exist; else [`Error::AlreadyExists`].
    CreateOnly,
    /// Write only if the object's etag is still this one; else [`Error::Precondition`].
    IfMatch(String),
}

/// Options of a put or streaming upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// The content type stored with the object.
    pub content_type: Option<String>,
    /// The `Content-Encoding` stored with the object (`gzip`: the bytes given are
    /// compressed and stay so), as a sync copies it from its source.
    pub content_encoding: Option<String>,
    /// User metadata stored with the object, held to [`WriteOptions::validate`]'s rules.
    pub metadata: BTreeMap<String, String>,
    /// Metadata found in a store (by [`crate::Storage::carry`]), stored as the provider
    /// can hold it (names mapped, values encoded, see [`crate::metadata`]) and not held
    /// to the rules of `metadata`, whose entries win over these.
    pub carried: BTreeMap<String, String>,
    /// What to do when the key exists.
    pub mode: WriteMode,
    /// How a streaming upload is cut into parts (ignored by a single put).
    pub upload: UploadShape,
}

/// How a streaming upload ([`crate::Storage::upload`]) is cut into parts. Unset fields take
/// the provider's own: 8 MiB parts ([`crate::UPLOAD_PART_SIZE`]), 4 in flight, on S3, Azure,
/// GCS and memory; 256 KiB parts, one in flight, on local disk, which writes each part
/// straight into the upload's temporary file.
///
/// A server holding many uploads at once asks for small parts, so that an upload that
/// stalls holds under one part (the gateway asks for 1 MiB); a benchmark asks for others.
/// The part size is also the size from which an upload turns multipart. It is kept within
/// what the provider takes: at least 5 MiB and at most 5 GiB where parts have S3's limits
/// (S3, Azure, GCS, a bare object_store), 64 KiB ([`crate::MIN_UPLOAD_PART_SIZE`]) to
/// 8 MiB on local and memory. Parts in flight are 1 to 16. An upload holds about part size
/// × (parts in flight + 1) in memory: a large part is memory the caller chose to spend.
///
/// ```
/// use maskstore_backends::{UploadShape, WriteOptions};
/// let options = WriteOptions::default().with_upload_shape(UploadShape {
///     part_size: Some(1024 * 1024),
///     max_in_flight: None,
/// });
/// assert_eq!(options.upload.part_size, Some(1024 * 1024));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadShape {
    /// Bytes per part (none: the provider's).
    pub part_size: Option<usize>,
    /// Parts sent at once at most (none: the provider's).
    pub max_in_flight: Option<usize>,
}

impl WriteOptions {
    /// Options with the given content type.
    pub fn content_type(content_type: impl Into<String>) -> Self {
        WriteOptions {
            content_type: Some(content_type.into()),
            ..Default::default()
        }
    }

    /// These options with `mode`.
    pub fn with_mode(mut self, mode: WriteMode) -> Self {
        self.mode = mode;
        self
    }

    /// These options with streaming uploads cut as `shape` says.
    pub fn with_upload_shape(mut self, shape: UploadShape) -> Self {
        self.upload = shape;
        self
    }

    /// These options with one more metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Checks the metadata against the rules every backend can keep: names of 1..=64
    /// lowercase ASCII letters, digits and `-` (S3 sends them as case-insensitive HTTP
    /// headers), values of printable ASCII without outer spaces (HTTP drops them), 1952
    /// bytes in all (S3's 2 KiB less room for the checksum maskstore stores beside).
    pub fn validate(&self) -> Result<()> {
        let mut total = 0;
        for (name, value) in &self.metadata {
            let bad_name = name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if name == crate::checksum::CHECKSUM_METADATA {
                return Err(Error::InvalidMetadata {
                    name: name.clone(),
                    reason: "maskstore stores the checksum there itself; choose another name"
                        .to_string(),
                });
            }
            if bad_name {
                return Err(Error::InvalidMetadata {
                    name: name.clone(),
                    reason: "names are 1 to 64 lowercase letters, digits and '-'".to_string(),
                });
            }
            if !value.chars().all(|c| (' '..='~').contains(&c)) {
                return Err(Error::InvalidMetadata {
                    name: name.clone(),
                    reason: "values are printable ASCII; percent-encode anything else".to_string(),
                });
            }
            // S3 sends values as HTTP header fields, which drop outer whitespace.
            if value.starts_with(' ') || value.ends_with(' ') {
                return Err(Error::InvalidMetadata {
                    name: name.clone(),
                    reason: "a value cannot start or end with a space (S3 would drop it); \
                             trim it or percent-encode the space"
                        .to_string(),
                });
            }
            total += name.len() + value.len();
        }
        // S3's 2048 bytes count the checksum maskstore stores beside (S3 refuses a put
        // over them with MetadataTooLarge).
        let limit = 2048 - crate::metadata::CHECKSUM_ROOM;
        if total > limit {
            return Err(Error::InvalidMetadata {
                name: "(all)".to_string(),
                reason: format!(
                    "{total} bytes of metadata; S3 allows 2048 with the checksum maskstore \
                     stores beside, so at most {limit}"
                ),
            });
        }
        if let Some(encoding) = &self.content_encoding
            && (encoding.is_empty()
                || !encoding
                    .chars()
                    .all(|c| ('!'..='~').contains(&c) || c == ','))
        {
            return Err(Error::InvalidMetadata {
                name: "content-encoding".to_string(),
                reason: "a content encoding is printable ASCII without spaces, such as gzip"
                    .to_string(),
            });
        }
        if let Some(ct) = &self.content_type
            && (ct.is_empty() || !ct.chars().all(|c| (' '..='~').contains(&c)))
        {
            return Err(Error::InvalidMetadata {
                name: "content-type".to_string(),
                reason: "a content type is non-empty printable ASCII, such as image/png"
                    .to_string(),
            });
        }
        Ok(())
    }

    /// The attributes a put sends to a provider with `rules`.
    pub(crate) fn attributes(&self, rules: &crate::metadata::MetadataRules) -> Attributes {
        // The content type and encoding, the metadata, and the checksum the put adds: the
        // map is allocated once.
        let entries = 3 + self.carried.len() + self.metadata.len();
        let mut attributes = Attributes::with_capacity(entries);
        // Always explicit: some engines (SeaweedFS) sniff a type from the bytes otherwise.
        let content_type = match &self.content_type {
            Some(content_type) => AttributeValue::from(content_type.clone()),
            None => AttributeValue::from(DEFAULT_CONTENT_TYPE),
        };
        attributes.insert(Attribute::ContentType, content_type);
        if let Some(encoding) = &self.content_encoding {
            attributes.insert(
                Attribute::ContentEncoding,
                AttributeValue::from(encoding.clone()),
            );
        }
        for (k, v) in self.carried.iter().chain(&self.metadata) {
            attributes.insert(
                Attribute::Metadata(k.clone().into()),
                AttributeValue::from(rules.value(v).into_owned()),
            );
        }
        attributes
    }
}

/// What a successful write returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// The new object's etag.
    pub etag: Option<String>,
    /// The new object's version, where the backend versions objects.
    pub version: Option<String>,
}

/// What is known about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The full key.
    pub key: ObjectKey,
    /// Size of the whole object in bytes.
    pub size: u64,
    /// When it was last written.
    pub last_modified: DateTime<Utc>,
    /// The etag, which changes whenever the content does.
    pub etag: Option<String>,
    /// The content type; reads report [`DEFAULT_CONTENT_TYPE`] for objects stored without
    /// one, listings report `None`.
    pub content_type: Option<String>,
    /// User metadata (not filled in by listings); the checksum is not among it.
    pub metadata: BTreeMap<String, String>,
    /// The checksum stored with the object (`sha256:<base64>` or `crc64nvme:<base64>`),
    /// which whole reads verify; `None` for an object written without one (by another
    /// tool, or with `object_storage.checksum = none`): it reads unverified. Listings do
    /// not fill it in.
    pub checksum: Option<String>,
    /// The provider's own checksum of the object (see [`NativeChecksum`]), read when
    /// [`ObjectInfo::checksum`] is absent: whole reads then verify that one. Listings do not
    /// fill it in.
    pub native_checksum: Option<NativeChecksum>,
    /// Why the record that holds the object's checksum could not be read although it
    /// exists (a local file's damaged attributes): whole reads of it fail as
    /// [`Error::Corrupt`], since its bytes can no longer be checked.
    pub unreadable_checksum: Option<String>,
    /// The stored `Content-Encoding` (such as `gzip`): the bytes are read as stored, never
    /// decoded on the way, and a sync copies the encoding with them.
    pub content_encoding: Option<String>,
}

impl ObjectInfo {
    /// The checksum a whole read verifies: maskstore's own, else the provider's full-object
    /// one; `None` when neither exists (the object reads unverified).
    pub fn verifying_checksum(&self) -> Option<&str> {
        self.checksum
            .as_deref()
            .or_else(|| self.native_checksum.as_ref()?.verifiable())
    }

    /// What [`ObjectInfo::verifying_checksum`] is: [`CHECKSUM_METADATA`] for maskstore's
    /// own, else where the provider keeps its own (`x-amz-checksum-crc32`, `gcs crc32c`,
    /// `azure Content-MD5`).
    ///
    /// [`CHECKSUM_METADATA`]: crate::CHECKSUM_METADATA
    pub fn checked_by(&self) -> Option<&str> {
        if self.checksum.is_some() {
            return Some(crate::checksum::CHECKSUM_METADATA);
        }
        let native = self.native_checksum.as_ref()?;
        native.verifiable().map(|_| native.source.as_str())
    }
}

/// An object read whole (or a byte range of it).
#[derive(Debug, Clone)]
pub struct Object {
    /// What is known about the whole object.
    pub info: ObjectInfo,
    /// The byte range of the object that `data` holds.
    pub range: Range<u64>,
    /// The bytes.
    pub data: Bytes,
}

/// An object being read as a stream of chunks.
pub struct ObjectStream {
    /// What is known about the whole object.
    pub info: ObjectInfo,
    /// The byte range of the object the stream yields.
    pub range: Range<u64>,
    /// The chunks.
    pub stream: BoxStream<'static, Result<Bytes>>,
    /// The exact bytes this read opened, when the provider can tell them apart from any
    /// others the key held or will hold (see [`ReadVersion`]); `None` otherwise.
    pub version: Option<ReadVersion>,
    /// Whether the stream checks the bytes against the stored checksum as it yields them
    /// (ending in [`crate::Error::Corrupt`] instead of its last chunk when they differ).
    pub verifies: bool,
    /// The open file of a local read whose version the caller's verdict vouched for: the
    /// same bytes as `stream`, for a caller that sends them without reading them (see
    /// [`crate::TrustedFile`]); `None` for any other read.
    pub file: Option<crate::TrustedFile>,
}

/// The exact bytes a read opened, for a caller that keeps a verdict on them (the gateway
/// verifies a version once and serves it without hashing it again; see
/// [`crate::Storage::read_stream_trusting`]). Two reads with equal versions read the same
/// bytes.
///
/// Only the local provider gives one: the file's etag with its device, inode, size,
/// modification and status-change times, and only once the file's last change is a few
/// seconds old (a change within one tick of the file system's clock would otherwise
/// keep the times). Its rule is in `local/stamp.rs`. Another program that rewrites the
/// file in place changes the status-change time whatever else it keeps, so a different
/// version. Reads through layers (fault injection, counting) give none: a layer may
/// replace the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadVersion {
    pub(crate) etag: Option<String>,
    pub(crate) file: crate::local::stamp::FileStamp,
}

impl std::fmt::Debug for ObjectStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStream")
            .field("info", &self.info)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// A byte range to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByteRange {
    /// Bytes `start..end`.
    Bounded(Range<u64>),
    /// From an offset to the end.
    From(u64),
    /// The last n bytes.
    Suffix(u64),
}

impl From<Range<u64>> for ByteRange {
    fn from(range: Range<u64>) -> Self {
        ByteRange::Bounded(range)
    }
}

/// Options of a read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Only part of the object.
    pub range: Option<ByteRange>,
    /// Fail with [`Error::Precondition`] unless the etag is this one.
    pub if_match: Option<String>,
    /// Fail with [`Error::NotModified`] if the etag is this one.
    pub if_none_match: Option<String>,
}

/// A streaming upload that was started and never completed or aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteUpload {
    /// The key it was uploading to.
    pub key: ObjectKey,
    /// The backend's id of the upload.
    pub upload_id: String,
}

/// One level of a listing with a delimiter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Objects directly at this level, sorted by key.
    pub objects: Vec<ObjectInfo>,
    /// The folders directly below this level, each ending with `/`, sorted.
    pub prefixes: Vec<String>,
}

/// The content type reported for objects stored without one, on every backend (S3 says
/// `binary/octet-stream`, the others nothing).
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Whether `info_of` is describing a read (which reports a content type) or a listing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Read,
    Listing,
}

pub(crate) fn info_of(
    key: ObjectKey,
    meta: &object_store::ObjectMeta,
    attributes: &Attributes,
    source: Source,
) -> ObjectInfo {
    let mut content_type = None;
    let mut metadata = BTreeMap::new();
    let mut checksum = None;
    let mut content_encoding = None;
    for (attribute, value) in attributes {
        match attribute {
            Attribute::ContentType
                if !value.is_empty() && value.as_ref() != "binary/octet-stream" =>
            {
                content_type = Some(value.to_string());
            }
            Attribute::Metadata(name) if name.as_ref() == crate::checksum::CHECKSUM_METADATA => {
                checksum = Some(checksum_text(value));
            }
            // Values in header form (RFC 2047 encoded words) read as their text.
            Attribute::Metadata(name) => {
                let value = crate::metadata::decode_value(value).into_owned();
                metadata.insert(name.to_string(), value);
            }
            // `identity` is no encoding (GCS reports it for objects stored without one).
            Attribute::ContentEncoding if !value.is_empty() && value.as_ref() != "identity" => {
                content_encoding = Some(value.to_string());
            }
            _ => {}
        }
    }
    if source == Source::Read && content_type.is_none() {
        content_type = Some(DEFAULT_CONTENT_TYPE.to_string());
    }
    ObjectInfo {
        key,
        size: meta.size,
        last_modified: meta.last_modified,
        etag: meta.e_tag.clone(),
        content_type,
        metadata,
        checksum,
        native_checksum: None,
        unreadable_checksum: None,
        content_encoding,
    }
}

/// A stored checksum's text; an owed one ([`crate::memory::owed`]) with room for the
/// checksum that will replace it in place ([`crate::Storage::read`] pays it).
fn checksum_text(value: &str) -> String {
    if !crate::memory::is_owed(value) {
        return value.to_string();
    }
    let mut text = String::with_capacity(crate::memory::KeptSum::MAX);
    text.push_str(value);
    text
}

/// What a read's answer says of the object: [`info_of`], with the provider's checksum its
/// answer carried ([`crate::checksum::NativeAnswer`]) and the reason a local object's
/// checksum record could not be read ([`crate::local::UnreadableRecord`]).
pub(crate) fn info_of_answer(key: ObjectKey, result: &object_store::GetResult) -> ObjectInfo {
    let mut info = info_of(key, &result.meta, &result.attributes, Source::Read);
    if info.checksum.is_none() {
        info.native_checksum = result
            .extensions
            .get::<crate::checksum::NativeAnswer>()
            .map(|native| native.0.clone());
    }
    info.unreadable_checksum = result
        .extensions
        .get::<crate::local::UnreadableRecord>()
        .map(|record| record.0.clone());
    info
}

/// [`info_of_answer`] for a reader that keeps only the answer's payload: what the answer
/// need not keep (its etag) is taken from it rather than copied.
pub(crate) fn info_taken_from(key: ObjectKey, result: &mut object_store::GetResult) -> ObjectInfo {
    let etag = result.meta.e_tag.take();
    let mut info = info_of_answer(key, result);
    info.etag = etag;
    info
}

impl From<&WriteMode> for object_store::PutMode {
    fn from(mode: &WriteMode) -> Self {
        match mode {
            WriteMode::Overwrite => object_store::PutMode::Overwrite,
            WriteMode::CreateOnly => object_store::PutMode::Create,
            WriteMode::IfMatch(etag) => {
                object_store::PutMode::Update(object_store::UpdateVersion {
                    e_tag: Some(etag.clone()),
                    version: None,
                })
            }
        }
    }
}

impl From<object_store::PutResult> for PutOutcome {
    fn from(result: object_store::PutResult) -> Self {
        PutOutcome {
            etag: result.e_tag,
            version: result.version,
        }
    }
}
