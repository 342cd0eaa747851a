//! S3's own checksums (flexible checksums: `x-amz-checksum-crc32`, `-crc32c`,
//! `-crc64nvme`, `-sha1`, `-sha256`), which boto3 and the AWS CLI store with every object
//! they write (CRC32 by default). S3 returns them only to a request carrying
//! `x-amz-checksum-mode: ENABLED`, which object_store does not send and whose answer
//! headers it drops: a signed HEAD of our own asks, pinned to the version read with
//! `If-Match`.
//!
//! A multipart upload's checksum is a full-object checksum only with
//! `x-amz-checksum-type: FULL_OBJECT` (always so for CRC64NVME); otherwise it is
//! `COMPOSITE`, a checksum of the parts' checksums, which S3 shows with a `-N` suffix
//! (S3 User Guide, "Checking object integrity": "Using part-level checksums for multipart
//! uploads"). Such a checksum says nothing about the bytes as a whole: it is reported as
//! composite, never compared with them.

use std::sync::Arc;

use maskstore_core::config::ObjectStorageConfig;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::signer::Method;
use reqwest::header::{HeaderMap, HeaderValue};

use super::uploads::{Answer, Call, refused, send_with};
use crate::NativeChecksum;
use crate::checksum::native_value;
use crate::providers::{Backend, NativeChecksums};
use crate::{Error, Result};

/// The flexible checksums S3 documents, with their digest sizes, most trusted first.
const ALGORITHMS: [(&str, usize); 5] = [
    ("sha256", 32),
    ("crc64nvme", 8),
    ("sha1", 20),
    ("crc32c", 4),
    ("crc32", 4),
];

/// The client of the checksum HEADs, with the config's timeouts (`request_timeout_secs`,
/// `connect_timeout_secs`), kept so that a `verify` over many objects reuses connections.
pub(crate) fn client(os: &ObjectStorageConfig) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(os.request_timeout_secs))
        .connect_timeout(std::time::Duration::from_secs(os.connect_timeout_secs))
        .build()
        .map_err(|e| Error::Unreachable {
            backend: "s3".to_string(),
            detail: format!("no HTTP client for S3's checksums: {e}"),
        })
}

/// Asks S3 for its checksum of an object (see the module docs).
pub(crate) struct S3Checksums {
    pub(crate) s3: Arc<AmazonS3>,
    /// See [`client`].
    pub(crate) client: reqwest::Client,
    /// Tries of a HEAD that meets a dropped connection, a timeout or a 5xx: the config's
    /// `max_retries` + 1, as object_store's own requests, so a server that never answers
    /// holds a read at most that many request timeouts.
    pub(crate) attempts: u32,
}

#[async_trait::async_trait]
impl NativeChecksums for S3Checksums {
    async fn checksum(
        &self,
        backend: &Backend,
        path: &Path,
        etag: Option<&str>,
    ) -> Result<Option<NativeChecksum>> {
        // Without the read's etag the HEAD cannot be pinned to the version read: its
        // checksum may be a later version's, and an intact object must never read as
        // corrupt. (S3 always answers an ETag; object_store does not require one.)
        let Some(etag) = etag else {
            tracing::debug!(key = %path, "a read without an etag reads unverified");
            return Ok(None);
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-checksum-mode", HeaderValue::from_static("ENABLED"));
        let value = HeaderValue::from_str(etag).map_err(|_| Error::Backend {
            backend: backend.to_string(),
            key: path.to_string(),
            source: "the object's etag cannot be sent back as If-Match".into(),
        })?;
        headers.insert("if-match", value);
        let mut attempt = 0;
        let answer = loop {
            attempt += 1;
            let call = Call {
                method: Method::HEAD,
                path,
                query: &[],
                headers: &headers,
                max: super::uploads::MAX_ANSWER_BYTES,
            };
            let answer = send_with(&self.client, &self.s3, backend, call).await;
            // A dropped connection or a 5xx is tried again, as object_store's own requests.
            let transient = match &answer {
                Err(Error::Unreachable { .. }) => true,
                Ok(Answer::Refused { status, .. }) => status.is_server_error(),
                _ => false,
            };
            if !transient || attempt >= self.attempts {
                break answer?;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        };
        match answer {
            Answer::Done { headers, .. } => Ok(from_headers(&headers)),
            // Replaced or deleted since it was read: its checksum is another version's.
            Answer::Refused { status, .. }
                if status == reqwest::StatusCode::PRECONDITION_FAILED
                    || status == reqwest::StatusCode::NOT_FOUND =>
            {
                Ok(None)
            }
            Answer::Refused { status, body } => Err(refused(backend, path, status, &body)),
        }
    }
}

/// The checksum in the headers of an answer to a request with checksum mode enabled.
pub(crate) fn from_headers(headers: &HeaderMap) -> Option<NativeChecksum> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let multipart = text("etag").is_some_and(is_multipart_etag);
    let declared = text("x-amz-checksum-type").map(str::to_ascii_uppercase);
    for (name, bytes) in ALGORITHMS {
        let header = format!("x-amz-checksum-{name}");
        let Some(value) = text(&header) else {
            continue;
        };
        let (digest, parts) = match value.rsplit_once('-') {
            Some((digest, parts)) if parts.parse::<u32>().is_ok() => (digest, true),
            _ => (value, false),
        };
        let composite = parts
            || declared.as_deref() == Some("COMPOSITE")
            // A multipart upload's checksum is composite unless declared full-object;
            // CRC64NVME's is always full-object. (moto reports a composite CRC32 with
            // neither the `-N` suffix nor the type: the etag still shows the parts.)
            || (multipart && declared.as_deref() != Some("FULL_OBJECT") && name != "crc64nvme");
        let source = header;
        if composite {
            return Some(NativeChecksum {
                value: format!("{name}:{value}"),
                source,
                composite: true,
            });
        }
        match native_value(name, digest, bytes) {
            Some(value) => return Some(NativeChecksum::full(value, source)),
            // Not the base64 of a digest: nothing to check the bytes with, nor to trust;
            // another checksum the answer carries still can.
            None => tracing::warn!(
                header = %source,
                value = %maskstore_core::shown_cut(value, 100),
                "S3 answered a checksum header that is not a base64 digest; ignored"
            ),
        }
    }
    None
}

/// Whether `etag` is a multipart upload's (`"<md5 of the parts' md5s>-<parts>"`).
fn is_multipart_etag(etag: &str) -> bool {
    etag.trim_matches('"')
        .rsplit_once('-')
        .is_some_and(|(_, parts)| !parts.is_empty() && parts.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn single_part_checksums_are_full_object_ones_in_maskstores_form() {
        let got = from_headers(&headers(&[
            ("etag", "\"5eb63bbbe01eeed093cb22bb8f5acdc3\""),
            ("x-amz-checksum-crc32", "DUoRhQ=="),
        ]))
        .unwrap();
        assert_eq!(
            got,
            NativeChecksum::full("crc32:DUoRhQ==".into(), "x-amz-checksum-crc32")
        );
        let got = from_headers(&headers(&[("x-amz-checksum-crc64nvme", "jSnVw/bqjr4=")]));
        assert_eq!(got.unwrap().value, "crc64nvme:jSnVw/bqjr4=");
        assert_eq!(from_headers(&headers(&[("etag", "\"abc\"")])), None);
        // Not a digest of the algorithm's size: ignored, never trusted.
        assert_eq!(
            from_headers(&headers(&[("x-amz-checksum-crc32", "AAAAAAAA")])),
            None
        );
        // One malformed header does not hide a well-formed one beside it.
        let got = from_headers(&headers(&[
            ("x-amz-checksum-sha256", "not base64!"),
            ("x-amz-checksum-crc32", "DUoRhQ=="),
        ]));
        assert_eq!(got.unwrap().value, "crc32:DUoRhQ==");
    }

    #[test]
    fn multipart_checksums_are_composite_unless_declared_full_object() {
        for pairs in [
            // AWS and SeaweedFS: the suffix and the type.
            &[
                ("etag", "\"298c9a5c8205ea8eeef29652993678aa-2\""),
                ("x-amz-checksum-crc32", "1Vdryw==-2"),
                ("x-amz-checksum-type", "COMPOSITE"),
            ][..],
            // moto: neither, only the multipart etag.
            &[
                ("etag", "\"298c9a5c8205ea8eeef29652993678aa-2\""),
                ("x-amz-checksum-crc32", "1Vdryw=="),
            ][..],
        ] {
            let got = from_headers(&headers(pairs)).unwrap();
            assert!(got.composite, "{pairs:?}");
            assert_eq!(got.verifiable(), None);
        }
        for pairs in [
            &[
                ("etag", "\"298c9a5c8205ea8eeef29652993678aa-2\""),
                ("x-amz-checksum-crc32", "1Vdryw=="),
                ("x-amz-checksum-type", "FULL_OBJECT"),
            ][..],
            &[
                ("etag", "\"298c9a5c8205ea8eeef29652993678aa-2\""),
                ("x-amz-checksum-crc64nvme", "jSnVw/bqjr4="),
            ][..],
        ] {
            let got = from_headers(&headers(pairs)).unwrap();
            assert!(!got.composite, "{pairs:?}");
        }
    }
}
