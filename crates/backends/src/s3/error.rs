//! What an S3 server answered when it refused a request: the HTTP status and the `<Code>`,
//! `<Message>` and `<Region>` elements of its XML error body, and nothing else.
//!
//! object_store keeps the status and body of a failed request in an error type it does not
//! export; its display is `Server returned non-2xx status code: <status>: <body>`. That one
//! element of the error chain is read here, and its body parsed as XML. The rest of the
//! chain (which names the request's URL, and so the key) is never searched: a key named
//! `mask/NoSuchBucket/x.png` must not turn a missing key into a missing bucket.

use serde::Deserialize;

/// The status and error code of a refused S3 request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct S3Answer {
    /// The HTTP status, when the server sent one (an error body inside a 200 has none).
    pub status: Option<u16>,
    /// The `<Code>` element of the error body.
    pub code: Option<String>,
    /// The `<Message>` element.
    pub message: Option<String>,
    /// The `<Region>` element (sent with region errors).
    pub region: Option<String>,
}

impl S3Answer {
    /// `403 SignatureDoesNotMatch: The request signature…`, for messages.
    pub fn describe(&self) -> String {
        let mut text = match self.status {
            Some(status) => status.to_string(),
            None => "an error".to_string(),
        };
        if let Some(code) = &self.code {
            text.push(' ');
            text.push_str(code);
        }
        if let Some(message) = &self.message {
            text.push_str(": ");
            text.push_str(message);
        }
        text
    }
}

/// The display of object_store's failed-request error with a status.
const STATUS_PREFIX: &str = "Server returned non-2xx status code: ";
/// The display of object_store's failed-request error with an error body in a 200 answer.
const RESPONSE_PREFIX: &str = "Server returned error response: ";
/// The display of object_store's error for a redirect without a location (a wrong region).
pub(crate) const BARE_REDIRECT: &str =
    "Received redirect without LOCATION, this normally indicates an incorrectly configured region";

/// The S3 answer carried by `e`'s source chain, if any element of it is a server answer.
pub(crate) fn answer_of(e: &(dyn std::error::Error + 'static)) -> Option<S3Answer> {
    let mut current = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if let Some(rest) = text.strip_prefix(STATUS_PREFIX) {
            return Some(parse_status_line(rest));
        }
        if let Some(body) = text.strip_prefix(RESPONSE_PREFIX) {
            return Some(S3Answer {
                status: None,
                ..parse_body(body)
            });
        }
        current = err.source();
    }
    None
}

/// `404 Not Found: <body>` → status and the body's elements.
fn parse_status_line(rest: &str) -> S3Answer {
    let status = rest.get(..3).and_then(|s| s.parse::<u16>().ok());
    // The reason phrase never holds ": ", so the body starts after the first one.
    let body = rest.split_once(": ").map_or("", |(_, body)| body);
    S3Answer {
        status,
        ..parse_body(body)
    }
}

/// The `<Error>` document S3 sends with a refusal.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(rename = "Code")]
    code: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
    #[serde(rename = "Region")]
    region: Option<String>,
}

/// The elements of an XML error body; an empty or non-XML body gives none.
pub(crate) fn parse_body(body: &str) -> S3Answer {
    let trimmed = body.trim_start_matches('\u{feff}').trim_start();
    let document = match trimmed.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map_or("", |(_, doc)| doc)
            .trim_start(),
        None => trimmed,
    };
    if !document.starts_with("<Error>") && !document.starts_with("<Error ") {
        return S3Answer::default();
    }
    match quick_xml::de::from_str::<ErrorBody>(document) {
        Ok(parsed) => S3Answer {
            status: None,
            code: parsed.code.filter(|c| !c.is_empty()),
            message: parsed.message.filter(|m| !m.is_empty()),
            region: parsed.region.filter(|r| !r.is_empty()),
        },
        Err(_) => S3Answer::default(),
    }
}

/// What an S3 answer means, read from its code, or from its status where it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// `NoSuchBucket`.
    BucketMissing,
    /// `RequestTimeTooSkewed`.
    ClockSkew,
    /// The credentials or the signature made with them ([`CREDENTIAL_CODES`]).
    Credentials,
    /// The bucket is in another region ([`REGION_CODES`], or a bare redirect).
    WrongRegion {
        /// The bucket's region, when the answer names it.
        expected: Option<String>,
    },
    /// `AccessDenied`: the policy refuses.
    AccessDenied,
    /// `InvalidRange`, or a 416.
    InvalidRange,
    /// The server is overloaded or failing; retrying later may help.
    Busy,
    /// The bytes arrived altered (`BadDigest`, `XAmzContentSHA256Mismatch`…): the client
    /// computed the checksums, so the transfer or the engine is at fault.
    Altered,
    /// A code maskstore does not interpret, reported as given.
    Unknown {
        /// The HTTP status (0 for an error inside a 200 answer).
        status: u16,
        /// The code.
        code: String,
        /// The message.
        message: Option<String>,
    },
}

impl S3Answer {
    /// What the answer means; `None` when the status alone decides (a 404's `NoSuchKey`,
    /// a 412's `PreconditionFailed`, or a status without a code).
    pub(crate) fn meaning(&self) -> Option<Meaning> {
        let meaning = match self.code.as_deref() {
            Some("NoSuchBucket") => Meaning::BucketMissing,
            Some("RequestTimeTooSkewed") => Meaning::ClockSkew,
            Some(c) if CREDENTIAL_CODES.contains(&c) => Meaning::Credentials,
            Some(c) if REGION_CODES.contains(&c) => Meaning::WrongRegion {
                expected: self.region.clone(),
            },
            Some("AccessDenied") => Meaning::AccessDenied,
            Some("BadDigest" | "InvalidDigest" | "XAmzContentSHA256Mismatch") => Meaning::Altered,
            Some("InvalidRange") => Meaning::InvalidRange,
            Some("SlowDown" | "ServiceUnavailable" | "RequestTimeout" | "InternalError") => {
                Meaning::Busy
            }
            Some(c) => match self.status {
                Some(304 | 404 | 409 | 412) => return None,
                Some(416) => Meaning::InvalidRange,
                status => Meaning::Unknown {
                    status: status.unwrap_or(0),
                    code: c.to_string(),
                    message: self.message.clone(),
                },
            },
            None => match self.status {
                Some(301 | 307) => Meaning::WrongRegion { expected: None },
                Some(416) => Meaning::InvalidRange,
                Some(429 | 502 | 503 | 504) => Meaning::Busy,
                _ => return None,
            },
        };
        Some(meaning)
    }
}

/// Codes that mean the credentials (or the signature made with them) are at fault.
pub(crate) const CREDENTIAL_CODES: &[&str] = &[
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
    "AuthFailure",
    "MissingSecurityHeader",
];

/// Codes that mean the bucket is in another region than the one configured.
pub(crate) const REGION_CODES: &[&str] = &[
    "AuthorizationHeaderMalformed",
    "PermanentRedirect",
    "IllegalLocationConstraintException",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_code_are_read_from_the_answer_only() {
        let text = "404 Not Found: <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
                    <Message>The specified key does not exist.</Message>\
                    <Key>mask/NoSuchBucket/&lt;Code&gt;RequestTimeTooSkewed&lt;/Code&gt;.png</Key></Error>";
        let answer = parse_status_line(text);
        assert_eq!(answer.status, Some(404));
        assert_eq!(answer.code.as_deref(), Some("NoSuchKey"));
        assert_eq!(
            answer.message.as_deref(),
            Some("The specified key does not exist.")
        );
    }

    #[test]
    fn a_body_that_is_not_an_error_document_has_no_code() {
        assert_eq!(parse_body(""), S3Answer::default());
        assert_eq!(parse_body("<html>Bad gateway</html>"), S3Answer::default());
        assert_eq!(
            parse_body("NoSuchBucket <Code>NoSuchBucket</Code>"),
            S3Answer::default()
        );
        let answer = parse_status_line("503 Service Unavailable: ");
        assert_eq!(answer.status, Some(503));
        assert_eq!(answer.code, None);
    }

    #[test]
    fn a_byte_order_mark_before_the_document_is_skipped() {
        let answer =
            parse_body("\u{feff}<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code></Error>");
        assert_eq!(answer.meaning(), Some(Meaning::BucketMissing));
    }

    #[test]
    fn altered_bytes_and_unknown_codes_keep_their_own_meaning() {
        let answer = |status, code: &str| S3Answer {
            status: Some(status),
            code: Some(code.to_string()),
            ..S3Answer::default()
        };
        assert_eq!(answer(400, "BadDigest").meaning(), Some(Meaning::Altered));
        assert_eq!(answer(404, "NoSuchKey").meaning(), None);
        assert_eq!(
            answer(403, "NotSignedUp").meaning(),
            Some(Meaning::Unknown {
                status: 403,
                code: "NotSignedUp".to_string(),
                message: None
            })
        );
    }

    #[test]
    fn the_region_element_is_read() {
        let answer = parse_body(
            "<Error><Code>AuthorizationHeaderMalformed</Code><Message>wrong region</Message>\
             <Region>ap-northeast-2</Region></Error>",
        );
        assert_eq!(answer.region.as_deref(), Some("ap-northeast-2"));
        assert_eq!(
            answer.describe(),
            "an error AuthorizationHeaderMalformed: wrong region"
        );
    }
}
