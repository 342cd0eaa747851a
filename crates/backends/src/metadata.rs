//! User metadata as the providers can hold it: how values travel in HTTP headers, which
//! names and how much each provider keeps, and metadata found in one store carried into
//! another ([`Storage::carry`]).
//!
//! Metadata a user gives (`put --meta`) keeps [`WriteOptions::validate`]'s strict rules.
//! Metadata *found* in a store was chosen by another tool (boto3's `my_field`, a DICOM
//! pipeline's `dicom.series`, the GCS SDK's `Dr. Müller`); it is carried as the
//! destination can hold it, and what it cannot is left out and reported, never failing
//! the copy.
//!
//! Values: S3 and Azure take metadata in HTTP headers, which hold visible ASCII only.
//! AWS (S3 user guide, "Working with object metadata") decodes a non-ASCII value sent
//! RFC 2047-encoded before storing it and returns it RFC 2047-encoded; Azure ("Setting and
//! retrieving properties and metadata") says metadata pairs are HTTP headers and that
//! values with non-ASCII characters should be encoded by the client. Such a value
//! is written as one RFC 2047 encoded word, `=?UTF-8?B?<base64 of the UTF-8>?=`, as AWS
//! itself returns it, and every read decodes encoded words. So that the decoding is
//! exact, a value that already looks like an encoded word is written encoded too, on
//! every provider. GCS (written through its JSON API), local disk and memory hold UTF-8
//! values as they are. An answer that carries raw non-ASCII bytes in a metadata header
//! (fake-gcs-server, Azurite, an S3 engine that does not encode) is repaired into an
//! encoded word before object_store reads it (`repair_headers`), so such an object
//! reads instead of failing whole.
//!
//! [`WriteOptions::validate`]: crate::WriteOptions::validate

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::Storage;

/// What a provider keeps of user metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetadataRules {
    /// Which names it gives back as written.
    pub(crate) names: NameRule,
    /// Which values are written as an RFC 2047 encoded word.
    pub(crate) values: ValueRule,
    /// Bytes of names and values in all, as stored, the checksum's included.
    pub(crate) max_total: usize,
    /// Names and values are stored as strings of one JSON document (local disk's extended
    /// attribute), so each counts as JSON escapes it: a `"` takes 2 bytes, a control
    /// character 6, and each entry its quotes, `:` and `,`.
    pub(crate) json_document: bool,
}

/// Which values a provider gives back as they were written; the others are written as
/// one RFC 2047 encoded word, which every read decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueRule {
    /// Values travel in HTTP headers both ways: visible ASCII and inner spaces (S3, Azure).
    Header,
    /// Values are written as UTF-8 (GCS's JSON API) but read from HTTP headers (its XML
    /// API), which cannot carry control characters (a raw ESC makes the answer
    /// unreadable, a line break comes back a space) or outer spaces: those are encoded,
    /// other UTF-8 is kept as the GCS SDKs write it.
    Utf8Header,
    /// Any UTF-8 (local disk, memory).
    Any,
}

/// Which metadata names a provider gives back as they were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// Names that travel as HTTP header names, which come back lowercase: lowercase
    /// letters, digits and the other token characters of RFC 9110 (S3, and GCS, read
    /// through its XML API).
    LowercaseToken,
    /// Any name, through Azure's mapping onto C# identifiers ([`crate::azure`]).
    Azure,
    /// Any name (local disk, memory).
    Any,
}

impl MetadataRules {
    /// Why a found name cannot be kept, if it cannot.
    fn refuses_name(&self, name: &str) -> Option<&'static str> {
        if name.is_empty() {
            return Some("an empty name");
        }
        match self.names {
            NameRule::LowercaseToken if !name.chars().all(is_lowercase_token) => Some(
                "names here are HTTP header names (lowercase letters, digits, '-', '_', '.' \
                 and other token characters); this one would come back changed",
            ),
            _ => None,
        }
    }

    /// Bytes `name = value` takes as stored.
    fn stored_len(&self, name: &str, value: &str) -> usize {
        let value = self.value(value);
        if self.json_document {
            return json_len(name) + json_len(&value) + 2;
        }
        let name = match self.names {
            NameRule::Azure => crate::azure::stored_name(name).len(),
            _ => name.len(),
        };
        name + value.len()
    }

    /// `value` as written to this provider.
    pub(crate) fn value<'a>(&self, value: &'a str) -> Cow<'a, str> {
        let unsafe_here = match self.values {
            ValueRule::Header => !header_safe(value),
            ValueRule::Utf8Header => value.chars().any(char::is_control) || value.trim() != value,
            ValueRule::Any => false,
        };
        if unsafe_here || looks_encoded(value) {
            Cow::Owned(encode_word(value))
        } else {
            Cow::Borrowed(value)
        }
    }
}

/// Bytes of `text` as a JSON string, quotes included.
fn json_len(text: &str) -> usize {
    serde_json::to_string(text).map_or(text.len() * 6 + 2, |json| json.len())
}

fn is_lowercase_token(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A value an HTTP header keeps as it is: visible ASCII and inner spaces.
fn header_safe(value: &str) -> bool {
    value.bytes().all(|b| (b' '..=b'~').contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
}

/// Whether `value` would be read as RFC 2047 encoded words.
fn looks_encoded(value: &str) -> bool {
    decode_words(value).is_some()
}

/// `value` as one RFC 2047 encoded word (`=?UTF-8?B?…?=`).
pub(crate) fn encode_word(value: &str) -> String {
    format!("=?UTF-8?B?{}?=", STANDARD.encode(value.as_bytes()))
}

/// A stored value as maskstore reads it: RFC 2047 encoded words decoded, anything else as
/// it is.
pub(crate) fn decode_value(value: &str) -> Cow<'_, str> {
    match decode_words(value) {
        Some(decoded) => Cow::Owned(decoded),
        None => Cow::Borrowed(value),
    }
}

/// The text of a value made only of UTF-8 (or US-ASCII) encoded words separated by
/// whitespace (RFC 2047 §6.2: the whitespace between them is dropped); `None` for
/// anything else.
fn decode_words(value: &str) -> Option<String> {
    let mut bytes = Vec::new();
    let mut any = false;
    for word in value.split([' ', '\t']).filter(|w| !w.is_empty()) {
        let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
        let mut parts = inner.splitn(3, '?');
        let charset = parts.next()?;
        let encoding = parts.next()?;
        let text = parts.next()?;
        let charset = charset.split('*').next()?; // RFC 2231 language suffix
        if !(charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("us-ascii")) {
            return None;
        }
        match encoding {
            "B" | "b" => bytes.extend(STANDARD.decode(text).ok()?),
            "Q" | "q" => decode_q(text, &mut bytes)?,
            _ => return None,
        }
        any = true;
    }
    if !any {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// RFC 2047's Q encoding: `_` is a space, `=XX` a byte, the rest as it is.
fn decode_q(text: &str, out: &mut Vec<u8>) -> Option<()> {
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            _ => out.push(b),
        }
    }
    Some(())
}

/// The metadata header prefixes of the three clouds' answers.
const HEADER_PREFIXES: [&str; 3] = ["x-amz-meta-", "x-ms-meta-", "x-goog-meta-"];

/// The content headers object_store reads into an object's attributes, failing the whole
/// read or HEAD when one is not visible ASCII: another tool's `Content-Disposition:
/// attachment; filename="Müller.png"` (boto3 and the Azure SDK send it as ISO-8859-1,
/// the GCS SDK stores it through the JSON API) would make the object unreadable.
const CONTENT_HEADERS: [http::HeaderName; 5] = [
    http::header::CACHE_CONTROL,
    http::header::CONTENT_DISPOSITION,
    http::header::CONTENT_ENCODING,
    http::header::CONTENT_LANGUAGE,
    http::header::CONTENT_TYPE,
];

/// Rewrites each metadata or content header of an answer whose value an HTTP header
/// cannot hold (raw UTF-8, control characters) into an RFC 2047 encoded word of its
/// text, which metadata reads decode (a content header keeps the encoded word, which is
/// what maskstore can write back): object_store fails a whole read on such a header. The
/// bytes are read as UTF-8 when they are UTF-8, else as ISO-8859-1, HTTP's historical
/// charset for header values (Python's `http.client`, under the Azure SDK and boto3,
/// sends `ü` as the byte 0xFC, and Azurite returns it so).
pub(crate) fn repair_headers(headers: &mut http::HeaderMap) {
    let broken: Vec<(http::HeaderName, String)> = headers
        .iter()
        .filter(|(name, _)| {
            CONTENT_HEADERS.contains(name)
                || HEADER_PREFIXES.iter().any(|p| name.as_str().starts_with(p))
        })
        .filter(|(_, value)| value.to_str().is_err())
        .map(|(name, value)| {
            let text = match std::str::from_utf8(value.as_bytes()) {
                Ok(text) => text.to_string(),
                Err(_) => value.as_bytes().iter().map(|&b| char::from(b)).collect(),
            };
            (name.clone(), encode_word(&text))
        })
        .collect();
    for (name, value) in broken {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// Found metadata as a destination keeps it: what it holds, and what it left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// The entries the destination holds, to write as [`crate::WriteOptions::carried`].
    pub kept: BTreeMap<String, String>,
    /// The entries it cannot hold, each with why.
    pub left_out: Vec<LeftOut>,
}

/// A metadata entry a destination cannot hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// The entry's name, as found.
    pub name: String,
    /// Why it was left out.
    pub reason: String,
}

/// Bytes kept free for maskstore's own checksum entry (`maskstore-checksum`: an
/// algorithm and a base64 digest, at most 69 bytes with its name).
pub(crate) const CHECKSUM_ROOM: usize = 96;

impl Storage {
    /// Found metadata (read from this or another store) as this storage can hold it: each
    /// name and value through its provider's mapping, in name order, then `last` (a
    /// record the caller adds, kept only if there is room for it after the rest).
    /// Nothing here fails: what cannot be held is in [`Carried::left_out`].
    pub fn carry(&self, found: &BTreeMap<String, String>, last: Option<(&str, &str)>) -> Carried {
        let rules = self.declared.metadata;
        let mut carried = Carried::default();
        let mut total = CHECKSUM_ROOM;
        let entries = found
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .filter(|(n, _)| *n != crate::checksum::CHECKSUM_METADATA)
            .chain(last);
        for (name, value) in entries {
            let mut refuse = |reason: String| {
                carried.left_out.push(LeftOut {
                    name: name.to_string(),
                    reason,
                });
            };
            if let Some(reason) = rules.refuses_name(name) {
                refuse(reason.to_string());
                continue;
            }
            // Azure's mapping gives distinct lowercase names to distinct names, so no two
            // entries meet under one case-insensitive Azure name.
            let size = rules.stored_len(name, value);
            if total + size > rules.max_total {
                refuse(format!(
                    "no room: this store keeps {} bytes of metadata per object",
                    rules.max_total
                ));
                continue;
            }
            total += size;
            carried.kept.insert(name.to_string(), value.to_string());
        }
        carried
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_header_form() {
        for value in [
            "plain",
            "Dr. Müller",
            "김민수",
            " outer spaces ",
            "line\nbreak",
            "=?UTF-8?B?RHIuIE3DvGxsZXI=?=",
            "=?utf-8?q?looks_encoded?=",
            "",
        ] {
            let written = crate::s3::METADATA.value(value);
            assert!(header_safe(&written) || written.is_empty(), "{written}");
            assert_eq!(decode_value(&written), value);
            let gcs = crate::gcs::METADATA.value(value);
            assert_eq!(decode_value(&gcs), value);
            // What GCS's XML API sends back in a header: no control characters.
            assert!(!gcs.chars().any(char::is_control), "{gcs:?}");
        }
        // Plain values are written as they are; GCS keeps UTF-8 as its SDKs write it.
        assert_eq!(crate::s3::METADATA.value("plain"), "plain");
        assert_eq!(crate::gcs::METADATA.value("Dr. Müller"), "Dr. Müller");
        assert_eq!(
            crate::gcs::METADATA.value("a\u{1b}[2J"),
            "=?UTF-8?B?YRtbMko=?="
        );
    }

    #[test]
    fn aws_encoded_words_decode() {
        assert_eq!(decode_value("=?UTF-8?B?RHIuIE3DvGxsZXI=?="), "Dr. Müller");
        // AWS splits long values into several words; the space between them is dropped.
        assert_eq!(
            decode_value("=?UTF-8?B?RHIu?= =?UTF-8?Q?_M=C3=BCller?="),
            "Dr. Müller"
        );
        // Not encoded words: as they are.
        for value in ["=?UTF-8?B?!!?=", "a =?UTF-8?B?YQ==?=", "=?latin1?B?YQ==?="] {
            assert_eq!(decode_value(value), value);
        }
    }

    #[test]
    fn raw_non_ascii_headers_are_repaired_into_encoded_words() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-goog-meta-who",
            http::HeaderValue::from_bytes("Dr. Müller".as_bytes()).unwrap(),
        );
        headers.insert("x-amz-meta-plain", http::HeaderValue::from_static("a"));
        headers.insert(
            http::header::CONTENT_DISPOSITION,
            http::HeaderValue::from_bytes(b"attachment; filename=\"M\xfcller.png\"").unwrap(),
        );
        headers.insert(
            "x-other",
            http::HeaderValue::from_bytes("Müller".as_bytes()).unwrap(),
        );
        headers.insert(
            "x-ms-meta-latin",
            http::HeaderValue::from_bytes(b"Dr. M\xfcller").unwrap(),
        );
        repair_headers(&mut headers);
        let who = headers["x-goog-meta-who"].to_str().unwrap();
        assert_eq!(decode_value(who), "Dr. Müller");
        let latin = headers["x-ms-meta-latin"].to_str().unwrap();
        assert_eq!(decode_value(latin), "Dr. Müller");
        assert_eq!(headers["x-amz-meta-plain"], "a");
        let disposition = headers[http::header::CONTENT_DISPOSITION].to_str().unwrap();
        assert_eq!(
            decode_value(disposition),
            "attachment; filename=\"Müller.png\""
        );
        // Headers object_store does not read stay as they came.
        assert_eq!(headers["x-other"].as_bytes(), "Müller".as_bytes());
    }

    /// Local disk holds metadata in one JSON document in an extended attribute, which
    /// ext4 caps near 4 KiB: a value JSON escapes longer (quotes of a JSON value another
    /// tool stored, control characters) counts as escaped, so that what is kept fits and
    /// the copy is made, without what does not.
    #[tokio::test]
    async fn local_counts_metadata_as_its_json_document_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = maskstore_core::Config::local(dir.path().join("data"));
        let local = Storage::connect(&config).unwrap();
        let quotes = "\"".repeat(2000);
        let controls = "\u{1}".repeat(1000);
        let plain = "n".repeat(2800);
        for (name, value, kept) in [
            ("quotes", &quotes, false),
            ("controls", &controls, false),
            ("plain", &plain, true),
        ] {
            let found = found(&[(name, value)]);
            let carried = local.carry(&found, Some(("record", "\"0123456789abcdef-12\"")));
            assert_eq!(carried.kept.contains_key(name), kept, "{name}");
            assert_eq!(
                names(&carried.left_out),
                if kept { vec![] } else { vec![name] }
            );
            let options = crate::WriteOptions {
                content_type: Some("application/dicom".to_string()),
                carried: carried.kept,
                ..Default::default()
            };
            let key = local.key(&format!("{name}.bin")).unwrap();
            local.put_with(&key, "mask", &options).await.unwrap();
            assert_eq!(
                local.head(&key).await.unwrap().metadata.contains_key(name),
                kept
            );
        }
    }

    fn found(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn names(left: &[LeftOut]) -> Vec<&str> {
        left.iter().map(|l| l.name.as_str()).collect()
    }

    /// S3's rules (a bare object_store is taken to have them): foreign names S3 keeps are
    /// carried, a name S3 would change or an entry past 2 KiB is left out by name, and the
    /// caller's record comes last, after everything found.
    #[test]
    fn s3_carries_what_it_holds_and_names_what_it_cannot() {
        let s3 = Storage::from_object_store(
            std::sync::Arc::new(object_store::memory::InMemory::new()),
            "bare",
            "mask/".parse().unwrap(),
        );
        let long = "n".repeat(1800);
        let carried = s3.carry(
            &found(&[
                ("my_field", "a"),
                ("dicom.series", "b"),
                ("Owner", "c"),
                ("who", "Dr. Müller"),
                ("notes", &long),
                ("zz", &long),
                (crate::checksum::CHECKSUM_METADATA, "sha256:x"),
            ]),
            Some(("record", "etag")),
        );
        assert_eq!(
            carried.kept.keys().collect::<Vec<_>>(),
            ["dicom.series", "my_field", "notes", "record", "who"]
        );
        assert_eq!(names(&carried.left_out), ["Owner", "zz"]);
        assert!(carried.left_out[0].reason.contains("header names"));
        assert!(carried.left_out[1].reason.contains("2048 bytes"));
    }
}
