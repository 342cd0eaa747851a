//! What a server answered when it refused a request: the HTTP status and the `<Code>`,
//! `<Message>` and `<Region>` elements of its XML error body, and what that means.
//!
//! S3, Azure and GCS all answer a refusal with an `<Error><Code>…</Code>` document; what
//! each code means is the provider's own table ([`Codes`], in each provider's `error.rs`).
//! This module holds only what they share: the reading of the answer and the rules that
//! follow from the status alone.
//!
//! object_store keeps the status and body of a failed request in an error type it does not
//! export; its display is `Server returned non-2xx status code: <status>: <body>`. That one
//! element of the error chain is read here, and its body parsed as XML. The rest of the
//! chain (which names the request's URL, and so the key) is never searched: a key named
//! `mask/NoSuchBucket/x.png` must not turn a missing key into a missing bucket. A provider
//! that reads a refusal itself (GCS's JSON API) puts an [`Answer`] value in the chain
//! instead, which is found by type.

use maskstore_core::shown_cut;
use serde::Deserialize;

/// The most of a server's error code shown (real codes are under 50 characters).
pub(crate) const MAX_CODE_SHOWN: usize = 100;
/// The most of a server's error message shown (real messages are a sentence or two).
pub(crate) const MAX_MESSAGE_SHOWN: usize = 500;

/// The status and error code of a refused request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The HTTP status, when the server sent one (an error body inside a 200 has none).
    pub status: Option<u16>,
    /// The `<Code>` element of the error body.
    pub code: Option<String>,
    /// The `<Message>` element.
    pub message: Option<String>,
    /// The `<Region>` element (sent with region errors).
    pub region: Option<String>,
}

impl Answer {
    /// `403 SignatureDoesNotMatch: The request signature…`, for messages: the server's
    /// code and message escaped ([`shown_cut`]: no terminal escapes, no forged lines) and
    /// cut short, since the server chose them.
    pub fn describe(&self) -> String {
        let mut text = match self.status {
            Some(status) => status.to_string(),
            None => "an error".to_string(),
        };
        if let Some(code) = &self.code {
            text.push(' ');
            text.push_str(&shown_cut(code, MAX_CODE_SHOWN));
        }
        if let Some(message) = &self.message {
            text.push_str(": ");
            text.push_str(&shown_cut(message, MAX_MESSAGE_SHOWN));
        }
        text
    }

    /// What the status alone means, for an answer without a code.
    fn status_meaning(&self) -> Option<Meaning> {
        match self.status {
            Some(301 | 307) => Some(Meaning::WrongRegion { expected: None }),
            Some(416) => Some(Meaning::InvalidRange),
            Some(429 | 502 | 503 | 504) => Some(Meaning::Busy),
            _ => None,
        }
    }
}

/// An answer travels in an object_store error's source chain as itself.
impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the server refused the request: {}", self.describe())
    }
}

impl std::error::Error for Answer {}

/// The display of object_store's failed-request error with a status.
const STATUS_PREFIX: &str = "Server returned non-2xx status code: ";
/// The display of object_store's failed-request error with an error body in a 200 answer.
const RESPONSE_PREFIX: &str = "Server returned error response: ";
/// The display of object_store's error for a redirect without a location (a wrong region).
pub(crate) const BARE_REDIRECT: &str =
    "Received redirect without LOCATION, this normally indicates an incorrectly configured region";

/// The answer carried by `e`'s source chain, if any element of it is a server answer.
pub(crate) fn answer_of(e: &(dyn std::error::Error + 'static)) -> Option<Answer> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(answer) = err.downcast_ref::<Answer>() {
            return Some(answer.clone());
        }
        let text = err.to_string();
        if let Some(rest) = text.strip_prefix(STATUS_PREFIX) {
            return Some(parse_status_line(rest));
        }
        if let Some(body) = text.strip_prefix(RESPONSE_PREFIX) {
            return Some(Answer {
                status: None,
                ..parse_body(body)
            });
        }
        current = err.source();
    }
    None
}

/// `404 Not Found: <body>` → status and the body's elements.
fn parse_status_line(rest: &str) -> Answer {
    let status = rest.get(..3).and_then(|s| s.parse::<u16>().ok());
    // The reason phrase never holds ": ", so the body starts after the first one.
    let body = rest.split_once(": ").map_or("", |(_, body)| body);
    Answer {
        status,
        ..parse_body(body)
    }
}

/// The `<Error>` document a server sends with a refusal.
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
pub(crate) fn parse_body(body: &str) -> Answer {
    let trimmed = body.trim_start_matches('\u{feff}').trim_start();
    let document = match trimmed.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map_or("", |(_, doc)| doc)
            .trim_start(),
        None => trimmed,
    };
    if !document.starts_with("<Error>") && !document.starts_with("<Error ") {
        return Answer::default();
    }
    match quick_xml::de::from_str::<ErrorBody>(document) {
        Ok(parsed) => Answer {
            status: None,
            code: parsed.code.filter(|c| !c.is_empty()),
            message: parsed.message.filter(|m| !m.is_empty()),
            region: parsed.region.filter(|r| !r.is_empty()),
        },
        Err(_) => Answer::default(),
    }
}

/// What an answer means, read from its code with a provider's [`Codes`], or from its
/// status where it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// The bucket (container) does not exist.
    BucketMissing,
    /// The machine's clock is too far from the server's.
    ClockSkew,
    /// The credentials or the signature made with them.
    Credentials,
    /// The bucket is in another region (or a bare redirect).
    WrongRegion {
        /// The bucket's region, when the answer names it.
        expected: Option<String>,
    },
    /// The policy refuses.
    AccessDenied,
    /// A range outside the object, or a 416.
    InvalidRange,
    /// The server is overloaded or failing; retrying later may help.
    Busy,
    /// The bytes arrived altered: the client computed the checksums, so the transfer or
    /// the engine is at fault.
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

/// One provider's error codes, by what they mean. A code in no list is reported as given
/// (unless its status decides: a 404's `NoSuchKey`, a 412's `PreconditionFailed`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Codes {
    /// The bucket (container) does not exist.
    pub bucket_missing: &'static [&'static str],
    /// The clock is off.
    pub clock_skew: &'static [&'static str],
    /// The credentials, or the signature made with them, are at fault.
    pub credentials: &'static [&'static str],
    /// The bucket is in another region than the one configured.
    pub wrong_region: &'static [&'static str],
    /// The policy refuses.
    pub denied: &'static [&'static str],
    /// The bytes arrived altered.
    pub altered: &'static [&'static str],
    /// A range outside the object.
    pub invalid_range: &'static [&'static str],
    /// The server is busy or failing.
    pub busy: &'static [&'static str],
}

impl Codes {
    /// What `answer` means under these codes; `None` when its status alone decides (and
    /// object_store has read it in context already).
    pub(crate) fn meaning(&self, answer: &Answer) -> Option<Meaning> {
        let Some(code) = answer.code.as_deref() else {
            return answer.status_meaning();
        };
        let is = |list: &[&str]| list.contains(&code);
        let meaning = if is(self.bucket_missing) {
            Meaning::BucketMissing
        } else if is(self.clock_skew) {
            Meaning::ClockSkew
        } else if is(self.credentials) {
            Meaning::Credentials
        } else if is(self.wrong_region) {
            Meaning::WrongRegion {
                expected: answer.region.clone(),
            }
        } else if is(self.denied) {
            Meaning::AccessDenied
        } else if is(self.altered) {
            Meaning::Altered
        } else if is(self.invalid_range) {
            Meaning::InvalidRange
        } else if is(self.busy) {
            Meaning::Busy
        } else {
            match answer.status {
                Some(304 | 404 | 409 | 412) => return None,
                Some(416) => Meaning::InvalidRange,
                status => Meaning::Unknown {
                    status: status.unwrap_or(0),
                    code: code.to_string(),
                    message: answer.message.clone(),
                },
            }
        };
        Some(meaning)
    }
}

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
        assert_eq!(parse_body(""), Answer::default());
        assert_eq!(parse_body("<html>Bad gateway</html>"), Answer::default());
        assert_eq!(
            parse_body("NoSuchBucket <Code>NoSuchBucket</Code>"),
            Answer::default()
        );
        let answer = parse_status_line("503 Service Unavailable: ");
        assert_eq!(answer.status, Some(503));
        assert_eq!(answer.code, None);
    }

    #[test]
    fn a_byte_order_mark_before_the_document_is_skipped() {
        let answer =
            parse_body("\u{feff}<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code></Error>");
        assert_eq!(answer.code.as_deref(), Some("NoSuchBucket"));
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

    #[test]
    fn a_typed_answer_in_the_chain_is_found_by_type() {
        let answer = Answer {
            status: Some(404),
            code: Some("NoSuchBucket".to_string()),
            ..Answer::default()
        };
        let e = object_store::Error::Generic {
            store: "GCS",
            source: Box::new(answer.clone()),
        };
        assert_eq!(answer_of(&e), Some(answer));
    }

    #[test]
    fn without_a_code_the_status_decides_and_unknown_codes_are_reported() {
        let none = Codes::default();
        let answer = |status, code: Option<&str>| Answer {
            status: Some(status),
            code: code.map(str::to_string),
            ..Answer::default()
        };
        assert_eq!(none.meaning(&answer(503, None)), Some(Meaning::Busy));
        assert_eq!(
            none.meaning(&answer(301, None)),
            Some(Meaning::WrongRegion { expected: None })
        );
        assert_eq!(none.meaning(&answer(404, Some("NoSuchKey"))), None);
        assert_eq!(
            none.meaning(&answer(416, Some("Whatever"))),
            Some(Meaning::InvalidRange)
        );
        assert_eq!(
            none.meaning(&answer(403, Some("NotSignedUp"))),
            Some(Meaning::Unknown {
                status: 403,
                code: "NotSignedUp".to_string(),
                message: None
            })
        );
    }
}
