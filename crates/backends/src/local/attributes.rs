//! Content type, content headers and user metadata of a local object, kept in one extended
//! attribute of its data file so that data and attributes change together.
//!
//! The record is written in a compact binary form ([`COMPACT`], then postcard) and read in
//! that form or as the JSON that earlier versions wrote (and that tests and operators may
//! set by hand). Size is the point: ext4 keeps an extended attribute inside a 256-byte inode
//! only while its value stays under about 52 bytes (for this name); the JSON of a checksum
//! and a generation (about 95 bytes) took a 4 KiB block of its own for every file, which
//! made a small put without fsync about three times slower (issue 30). The compact record
//! of a crc64nvme checksum and a generation is 25 bytes, of a sha256 one 49.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, openat, unlinkat};

use object_store::{Attribute, AttributeValue, Attributes};
use serde::{Deserialize, Serialize};

use crate::types::DEFAULT_CONTENT_TYPE;

/// The extended attribute holding a local object's attributes.
pub(crate) const XATTR: &str = "user.maskstore.attributes";

/// Attributes as stored in the `user.maskstore.attributes` extended attribute.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct StoredAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, String>,
    /// Random per write, part of the etag: inode, size and mtime can all repeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) generation: Option<String>,
}

impl StoredAttributes {
    /// The stored integrity checksum (`algorithm:base64`), if any.
    pub(crate) fn checksum(&self) -> Option<&str> {
        self.metadata
            .get(crate::checksum::CHECKSUM_METADATA)
            .map(String::as_str)
    }

    pub(crate) fn from_attributes(attributes: &Attributes) -> Self {
        let mut stored = StoredAttributes::default();
        for (key, value) in attributes {
            let text = value.to_string();
            match key {
                // The default is what a read reports anyway; storing it would make every
                // put need extended attributes.
                Attribute::ContentType if text == DEFAULT_CONTENT_TYPE => {}
                Attribute::ContentType => stored.content_type = Some(text),
                Attribute::ContentDisposition => stored.content_disposition = Some(text),
                Attribute::ContentEncoding => stored.content_encoding = Some(text),
                Attribute::ContentLanguage => stored.content_language = Some(text),
                Attribute::CacheControl => stored.cache_control = Some(text),
                Attribute::Metadata(name) => {
                    stored.metadata.insert(name.to_string(), text);
                }
                // Storage classes mean nothing on local disk.
                _ => {}
            }
        }
        stored
    }

    /// Whether nothing but the generation is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.content_type.is_none()
            && self.content_disposition.is_none()
            && self.content_encoding.is_none()
            && self.content_language.is_none()
            && self.cache_control.is_none()
            && self.metadata.is_empty()
    }

    pub(crate) fn into_attributes(self) -> Attributes {
        let mut attributes = Attributes::new();
        let mut put = |key: Attribute, value: Option<String>| {
            if let Some(value) = value {
                attributes.insert(key, AttributeValue::from(value));
            }
        };
        put(Attribute::ContentType, self.content_type);
        put(Attribute::ContentDisposition, self.content_disposition);
        put(Attribute::ContentEncoding, self.content_encoding);
        put(Attribute::ContentLanguage, self.content_language);
        put(Attribute::CacheControl, self.cache_control);
        for (name, value) in self.metadata {
            attributes.insert(
                Attribute::Metadata(name.into()),
                AttributeValue::from(value),
            );
        }
        attributes
    }
}

/// The attributes stored with `file` (none if it has none or they cannot be read), for
/// what needs only its generation (etags, listings): see [`read_checked`] for reads.
pub(crate) fn read_stored(file: &File) -> StoredAttributes {
    read_checked(file).unwrap_or_default()
}

/// The attributes stored with `file`: none when it has no record (a file placed by `cp`,
/// `rsync` without `-X`, `tar` without `--xattrs`, or a file system without extended
/// attributes: honestly unverified); `Err(why)` when the record exists but cannot be read
/// (damaged, or not maskstore's), since the checksum it held can no longer vouch for the
/// bytes: reads report such an object corrupt, never "no checksum".
pub(crate) fn read_checked(file: &File) -> Result<StoredAttributes, String> {
    let json = match xattr::FileExt::get_xattr(file, XATTR) {
        Ok(Some(json)) => json,
        Ok(None) => return Ok(StoredAttributes::default()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
            return Ok(StoredAttributes::default());
        }
        Err(e) => return Err(format!("its attribute record {XATTR} cannot be read: {e}")),
    };
    parse_record(&json)
}

/// The attribute record `json` (compact or JSON), as [`read_checked`] reads it.
pub(crate) fn parse_record(json: &[u8]) -> Result<StoredAttributes, String> {
    StoredAttributes::decode(json).map_err(|e| {
        format!(
            "its attribute record {XATTR} ({} bytes) is not maskstore's: {e}",
            json.len()
        )
    })
}

/// The first byte of a compact record; a JSON record starts with `{` (or white space).
const COMPACT: u8 = 0x01;

/// A record in its compact form: the checksum as its raw digest, the generation as its
/// 8 bytes, and the rest as they are.
#[derive(Serialize, Deserialize)]
struct Compact {
    generation: Option<[u8; 8]>,
    checksum: Option<CompactSum>,
    content_type: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    /// User metadata, without the checksum.
    metadata: BTreeMap<String, String>,
    /// A generation that is not 16 hex digits (never written by maskstore), kept as is.
    generation_text: Option<String>,
}

/// A stored checksum: maskstore's own algorithms as digests, anything else (a value copied
/// from a record someone else wrote) as its text, so that it reads back exactly.
#[derive(Serialize, Deserialize)]
enum CompactSum {
    Crc64Nvme([u8; 8]),
    Sha256([u8; 32]),
    Text(String),
}

impl CompactSum {
    fn of(text: String) -> CompactSum {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        let digest = |prefix: &str| {
            let encoded = text.strip_prefix(prefix)?;
            let bytes = STANDARD.decode(encoded).ok()?;
            // Only a value that encodes back to the same text is kept as a digest.
            (STANDARD.encode(&bytes) == encoded).then_some(bytes)
        };
        if let Some(bytes) = digest("crc64nvme:").and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            return CompactSum::Crc64Nvme(bytes);
        }
        if let Some(bytes) = digest("sha256:").and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            return CompactSum::Sha256(bytes);
        }
        CompactSum::Text(text)
    }

    fn text(self) -> String {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        match self {
            CompactSum::Crc64Nvme(bytes) => format!("crc64nvme:{}", STANDARD.encode(bytes)),
            CompactSum::Sha256(bytes) => format!("sha256:{}", STANDARD.encode(bytes)),
            CompactSum::Text(text) => text,
        }
    }
}

impl StoredAttributes {
    /// The record as written: [`COMPACT`], then the postcard encoding of [`Compact`].
    pub(crate) fn encode(mut self) -> Result<Vec<u8>, String> {
        let checksum = self
            .metadata
            .remove(crate::checksum::CHECKSUM_METADATA)
            .map(CompactSum::of);
        let hex = self.generation.as_deref().and_then(generation_bytes);
        let compact = Compact {
            generation_text: self.generation.filter(|_| hex.is_none()),
            generation: hex,
            checksum,
            content_type: self.content_type,
            content_disposition: self.content_disposition,
            content_encoding: self.content_encoding,
            content_language: self.content_language,
            cache_control: self.cache_control,
            metadata: self.metadata,
        };
        postcard::to_extend(&compact, vec![COMPACT]).map_err(|e| e.to_string())
    }

    /// A record as read: compact, or JSON.
    fn decode(record: &[u8]) -> Result<StoredAttributes, String> {
        let Some(compact) = record.strip_prefix(&[COMPACT]) else {
            return serde_json::from_slice::<StoredAttributes>(record).map_err(|e| e.to_string());
        };
        let compact: Compact = postcard::from_bytes(compact).map_err(|e| e.to_string())?;
        let mut metadata = compact.metadata;
        if let Some(sum) = compact.checksum {
            metadata.insert(crate::checksum::CHECKSUM_METADATA.to_string(), sum.text());
        }
        let generation = match compact.generation {
            Some(bytes) => Some(format!("{:016x}", u64::from_be_bytes(bytes))),
            None => compact.generation_text,
        };
        Ok(StoredAttributes {
            content_type: compact.content_type,
            content_disposition: compact.content_disposition,
            content_encoding: compact.content_encoding,
            content_language: compact.content_language,
            cache_control: compact.cache_control,
            metadata,
            generation,
        })
    }
}

/// The 8 bytes of a generation written as 16 lowercase hex digits, as maskstore writes it.
fn generation_bytes(text: &str) -> Option<[u8; 8]> {
    let valid = text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !valid {
        return None;
    }
    u64::from_str_radix(text, 16).ok().map(u64::to_be_bytes)
}

/// Whether the file system under the folder `tmp` keeps extended attributes.
pub(crate) fn probe_xattrs(tmp: &OwnedFd) -> bool {
    let name = format!("xattr-probe-{:016x}", rand::random::<u64>());
    let Ok(fd) = openat(
        tmp.as_fd(),
        name.as_str(),
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) else {
        return false;
    };
    let ok = xattr::FileExt::set_xattr(&File::from(fd), XATTR, b"{}").is_ok();
    let _ = unlinkat(tmp.as_fd(), name.as_str(), AtFlags::empty());
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_checksum(checksum: &str) -> StoredAttributes {
        let mut stored = StoredAttributes {
            generation: Some("00ff00ff00ff00ff".to_string()),
            ..Default::default()
        };
        let name = crate::checksum::CHECKSUM_METADATA.to_string();
        stored.metadata.insert(name, checksum.to_string());
        stored
    }

    #[test]
    fn a_compact_record_reads_back_exactly_and_fits_in_an_ext4_inode() {
        use maskstore_core::ChecksumAlgorithm as A;
        // ext4 keeps this attribute's value in a 256-byte inode up to 52 bytes.
        for algorithm in [A::Crc64Nvme, A::Sha256] {
            let checksum = crate::checksum::checksum_of(algorithm, b"mask").unwrap();
            let record = with_checksum(&checksum).encode().unwrap();
            assert!(record.len() <= 52, "{algorithm}: {} bytes", record.len());
            let read = StoredAttributes::decode(&record).unwrap();
            assert_eq!(read.checksum(), Some(checksum.as_str()));
            assert_eq!(read.generation.as_deref(), Some("00ff00ff00ff00ff"));
        }
        // Everything else, and values that are not maskstore's own forms, read back as set.
        let mut stored = with_checksum("md5:not-base64=");
        stored.generation = Some("G-not-hex".to_string());
        stored.content_type = Some("image/png; name=\"Müller\"".to_string());
        stored.content_disposition = Some("attachment".to_string());
        stored.content_encoding = Some("gzip".to_string());
        stored.content_language = Some("ko".to_string());
        stored.cache_control = Some("no-store".to_string());
        stored
            .metadata
            .insert("study".to_string(), "s-1".to_string());
        let json = serde_json::to_string(&stored).unwrap();
        let read = StoredAttributes::decode(&stored.encode().unwrap()).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), json);
        // A crc64nvme value whose base64 is not canonical stays text, byte for byte.
        let odd = "crc64nvme:AAAAAAAAAAB=";
        let read = StoredAttributes::decode(&with_checksum(odd).encode().unwrap()).unwrap();
        assert_eq!(read.checksum(), Some(odd));
        // The JSON records of earlier versions still read.
        let old = br#"{"metadata":{"maskstore-checksum":"crc64nvme:AAAAAAAAAAA="},"generation":"0123456789abcdef"}"#;
        let read = StoredAttributes::decode(old).unwrap();
        assert_eq!(read.checksum(), Some("crc64nvme:AAAAAAAAAAA="));
        assert_eq!(read.generation.as_deref(), Some("0123456789abcdef"));
        // A damaged compact record is an error, never an empty record.
        let record = with_checksum("crc64nvme:AAAAAAAAAAA=").encode().unwrap();
        assert!(StoredAttributes::decode(&record[..record.len() - 3]).is_err());
    }

    /// A record anyone with write access to the root could set: whatever its bytes, reading
    /// it is a record or an error, never a panic, and a length it claims allocates nothing
    /// beyond the record.
    #[test]
    fn any_compact_record_reads_as_a_record_or_an_error_never_a_panic() {
        // A claimed string of u32::MAX bytes, and a claimed map of u32::MAX entries.
        let huge = [0xff, 0xff, 0xff, 0xff, 0x0f];
        let string = [&[COMPACT, 0, 0, 1][..], &huge].concat();
        let map = [&[COMPACT, 0, 0, 0, 0, 0, 0, 0][..], &huge, b"ab"].concat();
        for claimed in [string, map] {
            assert!(StoredAttributes::decode(&claimed).is_err(), "{claimed:?}");
        }
        let mut full = with_checksum("crc64nvme:AAAAAAAAAAA=");
        full.content_type = Some("image/png".to_string());
        full.metadata.insert("study".to_string(), "s-1".to_string());
        let record = full.encode().unwrap();
        let seed: u64 = rand::random();
        let cases = 20_000;
        println!("seed {seed:#x}, {cases} cases");
        let mut state = seed | 1;
        let mut next = move || {
            // xorshift64: reproducible from the printed seed.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..cases {
            let mut bytes = record.clone();
            match case % 3 {
                0 => bytes.truncate(1 + next() as usize % record.len()),
                1 => {
                    let at = 1 + next() as usize % (record.len() - 1);
                    bytes[at] = next() as u8;
                }
                _ => {
                    let len = next() as usize % 64;
                    bytes = std::iter::once(COMPACT)
                        .chain((0..len).map(|_| next() as u8))
                        .collect();
                }
            }
            // Either outcome is fine; what must not happen is a panic or a huge allocation.
            let _ = StoredAttributes::decode(&bytes);
        }
    }

    #[test]
    fn no_record_is_none_and_a_record_that_does_not_parse_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object");
        std::fs::write(&path, b"bytes").unwrap();
        let file = File::open(&path).unwrap();
        let none = read_checked(&file).unwrap();
        assert!(none.is_empty() && none.checksum().is_none());
        if xattr::set(&path, XATTR, b"{}").is_err() {
            return; // a file system without extended attributes: nothing more to check
        }
        assert!(read_checked(&file).unwrap().is_empty());
        xattr::set(
            &path,
            XATTR,
            br#"{"metadata":{"maskstore-checksum":"crc64nvme:AAAAAAAAAAA="}}"#,
        )
        .unwrap();
        assert_eq!(
            read_checked(&file).unwrap().checksum(),
            Some("crc64nvme:AAAAAAAAAAA=")
        );
        for damaged in [
            &b"{\"metadata\":{\"maskstore-chec"[..],
            b"\xff\xfe",
            b"[1,2]",
        ] {
            xattr::set(&path, XATTR, damaged).unwrap();
            let why = read_checked(&file).unwrap_err();
            assert!(why.contains(XATTR), "{why}");
            // What needs only a generation still reads it as none.
            assert!(read_stored(&file).generation.is_none());
        }
    }
}
