//! Azure's own checksum: the `Content-MD5` a blob keeps (set by Azure for a blob written in
//! one Put Blob, or by the writer: the SDK's `ContentSettings(content_md5=…)`, AzCopy
//! `--put-md5`). Get Blob Properties answers it as `Content-MD5`; Get Blob answers it as
//! `Content-MD5` for a whole read and as `x-ms-blob-content-md5` for a range
//! (learn.microsoft.com/rest/api/storageservices/get-blob).

use crate::NativeChecksum;
use crate::checksum::native_value;

/// The blob's MD5, as an answer carries it.
pub(crate) fn in_answer(headers: &http::HeaderMap) -> Option<NativeChecksum> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let value = text("x-ms-blob-content-md5").or_else(|| text("content-md5"))?;
    native_value("md5", value, 16).map(|v| NativeChecksum::full(v, "azure Content-MD5"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn the_blobs_md5_is_read_from_either_header() {
        let md5 = "XrY7u+Ae7tCTyyK7j1rNww==";
        for name in ["content-md5", "x-ms-blob-content-md5"] {
            let mut headers = http::HeaderMap::new();
            headers.insert(name, HeaderValue::from_static(md5));
            let got = in_answer(&headers).unwrap();
            assert_eq!(got.value, format!("md5:{md5}"));
            assert_eq!(got.source, "azure Content-MD5");
        }
        let mut short = http::HeaderMap::new();
        short.insert("content-md5", HeaderValue::from_static("AAAA"));
        assert_eq!(in_answer(&short), None);
    }
}
