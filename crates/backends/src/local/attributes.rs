//! Content type, content headers and user metadata of a local object, kept in one extended
//! attribute of its data file so that data and attributes change together.

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

/// The attribute record `json`, as [`read_checked`] reads it.
pub(crate) fn parse_record(json: &[u8]) -> Result<StoredAttributes, String> {
    serde_json::from_slice::<StoredAttributes>(json).map_err(|e| {
        format!(
            "its attribute record {XATTR} ({} bytes) is not maskstore's: {e}",
            json.len()
        )
    })
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
