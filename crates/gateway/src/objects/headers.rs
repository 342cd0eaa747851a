//! What object responses say about themselves: the hardening every answer carries, how a
//! stored object is described (and whether it is shown inline), and ETag quoting.

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use maskstore_backends::ObjectInfo;
use maskstore_core::MaskFormat;

/// Headers on every object response, so nothing served runs in a browser on the gateway's
/// origin: no sniffing into HTML, and a policy that blocks scripts and plugins even when a
/// document is opened directly.
pub(super) fn harden(out: &mut HeaderMap) {
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
}

/// The `Content-Security-Policy` of object responses: nothing loads, and the document is
/// sandboxed (no scripts, an opaque origin).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; sandbox";

/// Whether a stored content type is served inline: the mask formats' types and
/// `application/octet-stream`. Anything else (HTML, SVG, …) is served as an attachment.
fn served_inline(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    inline_type(essence).is_some()
}

/// The type served inline that `essence` names (compared without regard to case), as a
/// static text: `application/octet-stream` or a mask format's type.
fn inline_type(essence: &str) -> Option<&'static str> {
    let formats = MaskFormat::ALL.iter().map(|format| format.content_type());
    std::iter::once("application/octet-stream")
        .chain(formats)
        .find(|inline| inline.eq_ignore_ascii_case(essence))
}

/// The `Content-Type` value of a stored type: the static value of a mask format's type as
/// the store holds it (the usual case, which copies nothing), else the stored text.
fn content_type_value(stored: &str) -> Option<HeaderValue> {
    match inline_type(stored) {
        Some(inline) if inline == stored => Some(HeaderValue::from_static(inline)),
        _ => HeaderValue::from_str(stored).ok(),
    }
}

/// What a response says about the object it serves: type, encoding, disposition,
/// validators, ranges. The bytes are served as stored, so a stored encoding (a gzip object
/// synced from GCS) is said, as S3 and GCS say it: a range is of the encoded bytes.
pub(super) fn describe(out: &mut HeaderMap, info: &ObjectInfo) {
    if let Some(value) = info.content_type.as_deref().and_then(content_type_value) {
        out.insert(header::CONTENT_TYPE, value);
    }
    if let Some(encoding) = &info.content_encoding {
        set(out, header::CONTENT_ENCODING, encoding);
    }
    if !served_inline(info.content_type.as_deref()) {
        out.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
    }
    if let Some(etag) = &info.etag {
        set_owned(out, header::ETAG, quote(etag));
    }
    set_owned(out, header::LAST_MODIFIED, http_date(info.last_modified));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
}

/// An HTTP date (RFC 9110 §5.6.7): `httpdate`'s formatter (a fraction of chrono's
/// `strftime` per response) for the years it covers (1970 to 9999), chrono's for a time
/// outside them (a local file's modification time is whatever a program set).
fn http_date(at: chrono::DateTime<chrono::Utc>) -> String {
    const YEAR_10000: i64 = 253_402_300_800;
    match u64::try_from(at.timestamp()) {
        Ok(seconds) if at.timestamp() < YEAR_10000 => {
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
        }
        _ => at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
    }
}

/// Sets a header, leaving it out when the value cannot be one (a stored content type is
/// the store's text, not ours).
pub(super) fn set(out: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        out.insert(name, value);
    }
}

/// [`set`] for a value built for the header: its buffer becomes the header's, uncopied.
fn set_owned(out: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(value) = HeaderValue::try_from(value) {
        out.insert(name, value);
    }
}

/// An ETag as HTTP wants it: quoted, unless the store already quoted it or marked it weak.
pub(super) fn quote(etag: &str) -> String {
    if etag.starts_with('"') || etag.starts_with("W/") {
        etag.to_string()
    } else {
        let mut quoted = String::with_capacity(etag.len() + 2);
        quoted.extend(["\"", etag, "\""]);
        quoted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_cover_every_time_a_file_can_carry() {
        use chrono::TimeZone;
        let at = |s: i64| chrono::Utc.timestamp_opt(s, 0).unwrap();
        assert_eq!(http_date(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(at(-1)), "Wed, 31 Dec 1969 23:59:59 GMT");
        assert_eq!(
            http_date(at(253_402_300_800)),
            "Sat, 01 Jan +10000 00:00:00 GMT"
        );
        assert_eq!(
            http_date(at(253_402_300_799)),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
    }

    #[test]
    fn etags_are_quoted_once() {
        assert_eq!(quote("abc"), "\"abc\"");
        assert_eq!(quote("\"abc\""), "\"abc\"");
    }

    #[test]
    fn a_stored_content_type_is_served_as_stored() {
        for stored in [
            "image/png",
            "application/octet-stream",
            "Image/PNG",
            "image/png; charset=binary",
            "text/html",
        ] {
            assert_eq!(content_type_value(stored).unwrap(), stored);
        }
        assert!(content_type_value("image/png\nx-injected: 1").is_none());
    }

    #[test]
    fn only_mask_formats_and_octet_stream_are_served_inline() {
        for inline in [
            "image/png",
            "application/gzip",
            "application/dicom",
            "application/octet-stream",
            "Image/PNG; charset=binary",
        ] {
            assert!(served_inline(Some(inline)), "{inline}");
        }
        for attachment in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/plain",
            "application/pdf",
            "",
        ] {
            assert!(!served_inline(Some(attachment)), "{attachment}");
        }
        assert!(!served_inline(None));
    }
}
