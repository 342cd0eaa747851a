//! GCS's own checksums and encodings as its XML API answers carry them.
//!
//! Every object GCS keeps has a CRC32C, and an MD5 unless it was composed; a read or HEAD
//! answers both in `x-goog-hash` (`crc32c=<base64>,md5=<base64>`, possibly as two
//! headers), computed over the bytes as stored.
//!
//! An object stored with `Content-Encoding: gzip` is decompressed on the way (decompressive
//! transcoding) unless the request says `Accept-Encoding: gzip`
//! (cloud.google.com/storage/docs/transcoding): the bytes then differ from those the
//! checksums describe, and from the size the listing shows. maskstore's reads always say
//! it, so the stored bytes come back as stored, with their `Content-Encoding`
//! (fake-gcs-server behaves the same). reqwest is built without its decompression features,
//! so nothing decodes them on the way either.

use http::HeaderValue;
use object_store::client::HttpRequest;

use crate::NativeChecksum;
use crate::checksum::native_value;

/// Marks a read (in object_store's `GetOptions::extensions`, which become the request's) as
/// one of the object's bytes: the HTTP client then asks for them as stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoredBytes;

/// Adds `Accept-Encoding: gzip` to a read marked [`StoredBytes`] (only those: a listing or a
/// token request keeps what it asked).
pub(crate) fn ask_stored_bytes(request: &mut HttpRequest) {
    if request.extensions().get::<StoredBytes>().is_some() {
        request.headers_mut().insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
    }
}

/// GCS's checksum of the object an answer describes: its CRC32C (always kept, also for
/// composed objects), else its MD5.
pub(crate) fn in_answer(headers: &http::HeaderMap) -> Option<NativeChecksum> {
    let mut found: Option<NativeChecksum> = None;
    let hashes = headers
        .get_all("x-goog-hash")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for hash in hashes {
        let Some((name, value)) = hash.trim().split_once('=') else {
            continue;
        };
        let checksum = match name {
            "crc32c" => native_value("crc32c", value, 4),
            "md5" => native_value("md5", value, 16),
            _ => None,
        };
        if let Some(checksum) = checksum
            && (found.is_none() || name == "crc32c")
        {
            found = Some(NativeChecksum::full(checksum, format!("gcs {name}")));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_goog_hash_gives_the_crc32c_else_the_md5_in_one_header_or_two() {
        let mut one = http::HeaderMap::new();
        one.insert(
            "x-goog-hash",
            HeaderValue::from_static("crc32c=yZRlqg==,md5=XrY7u+Ae7tCTyyK7j1rNww=="),
        );
        let got = in_answer(&one).unwrap();
        assert_eq!(got.value, "crc32c:yZRlqg==");
        assert_eq!(got.source, "gcs crc32c");
        let mut two = http::HeaderMap::new();
        two.append(
            "x-goog-hash",
            HeaderValue::from_static("md5=XrY7u+Ae7tCTyyK7j1rNww=="),
        );
        assert_eq!(
            in_answer(&two).unwrap().value,
            "md5:XrY7u+Ae7tCTyyK7j1rNww=="
        );
        two.append("x-goog-hash", HeaderValue::from_static("crc32c=yZRlqg=="));
        assert_eq!(in_answer(&two).unwrap().value, "crc32c:yZRlqg==");
        let mut bad = http::HeaderMap::new();
        bad.insert("x-goog-hash", HeaderValue::from_static("crc32c=nope,md5="));
        assert_eq!(in_answer(&bad), None);
    }

    #[test]
    fn only_marked_reads_ask_for_the_stored_bytes() {
        let mut read = HttpRequest::new(bytes::Bytes::new().into());
        read.extensions_mut().insert(StoredBytes);
        ask_stored_bytes(&mut read);
        assert_eq!(read.headers()["accept-encoding"], "gzip");
        let mut listing = HttpRequest::new(bytes::Bytes::new().into());
        ask_stored_bytes(&mut listing);
        assert!(listing.headers().get("accept-encoding").is_none());
    }
}
