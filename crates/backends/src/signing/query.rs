//! The query of a gateway URL: bounded before anything reads it, then read in one pass,
//! each of our parameters exactly as issued (one grant has one URL).

use std::fmt;

use percent_encoding::percent_decode_str;

use super::{
    PARAM_CONTENT_LENGTH, PARAM_CONTENT_TYPE, PARAM_EXPIRES, PARAM_METHOD, PARAM_SHA256,
    PARAM_SIGNATURE, Refusal, SignedMethod,
};
use crate::checksum::ContentSha256;

/// The longest query string a gateway URL may have, in bytes. A signed URL's query is about
/// 200 bytes plus its bound content type; anything near this size is not one of ours.
pub const MAX_QUERY_BYTES: usize = 2048;
/// The most `&`-separated parameters a gateway URL's query may have (five are ours; a few
/// more, such as a cache-buster a page adds, are ignored).
pub const MAX_QUERY_PARAMS: usize = 16;
/// The length of a signature: HMAC-SHA256 in lowercase hex.
const SIGNATURE_HEX_LEN: usize = 64;
/// The bytes of a signature.
const SIGNATURE_BYTES: usize = SIGNATURE_HEX_LEN / 2;

/// Why a query was refused before it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryLimit {
    /// Longer than [`MAX_QUERY_BYTES`] (answered 414).
    TooLong,
    /// More than [`MAX_QUERY_PARAMS`] parameters (answered 400).
    TooManyParameters,
}

impl fmt::Display for QueryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryLimit::TooLong => write!(
                f,
                "the query is longer than the {MAX_QUERY_BYTES} bytes a signed URL has; use the URL as it was issued"
            ),
            QueryLimit::TooManyParameters => write!(
                f,
                "the query has more than the {MAX_QUERY_PARAMS} parameters a signed URL has; use the URL as it was issued"
            ),
        }
    }
}

/// Checks the size of `query` in constant time per byte, before anything reads it.
pub fn check_query_limits(query: &str) -> Result<(), QueryLimit> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(QueryLimit::TooLong);
    }
    // `&` count + 1 is the parameter count; MAX_QUERY_BYTES bounds this scan.
    if query.bytes().filter(|&b| b == b'&').count() >= MAX_QUERY_PARAMS {
        return Err(QueryLimit::TooManyParameters);
    }
    Ok(())
}

/// The parameters of a gateway URL, read in one pass; other parameters are ignored.
#[derive(Default)]
pub(super) struct Params<'q> {
    method: Option<&'q str>,
    expires: Option<&'q str>,
    content_type: Option<&'q str>,
    content_length: Option<&'q str>,
    sha256: Option<&'q str>,
    signature: Option<&'q str>,
}

impl<'q> Params<'q> {
    /// Reads `query` (already within [`check_query_limits`]). Names are matched as they are
    /// written, undecoded; a parameter of ours given twice is refused.
    pub(super) fn parse(query: &'q str) -> Result<Params<'q>, Refusal> {
        let mut params = Params::default();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                PARAM_METHOD => &mut params.method,
                PARAM_EXPIRES => &mut params.expires,
                PARAM_CONTENT_TYPE => &mut params.content_type,
                PARAM_CONTENT_LENGTH => &mut params.content_length,
                PARAM_SHA256 => &mut params.sha256,
                PARAM_SIGNATURE => &mut params.signature,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(Refusal::Malformed(format!("{name} appears twice")));
            }
        }
        Ok(params)
    }

    /// Our parameters, each in the form it is issued in: the required ones present, the
    /// plain ones plain, the signature 64 lowercase hex digits, the content type decoded.
    pub(super) fn checked(&self) -> Result<SignedQuery<'q>, Refusal> {
        Ok(SignedQuery {
            method: plain(required(self.method, PARAM_METHOD)?, PARAM_METHOD)?,
            expires: plain(required(self.expires, PARAM_EXPIRES)?, PARAM_EXPIRES)?,
            signature: signature_bytes(required(self.signature, PARAM_SIGNATURE)?)?,
            content_type: self
                .content_type
                .map(|value| decode(value, PARAM_CONTENT_TYPE))
                .transpose()?,
            content_length: self
                .content_length
                .map(|value| plain(value, PARAM_CONTENT_LENGTH))
                .transpose()?,
            sha256: self
                .sha256
                .map(|value| plain(value, PARAM_SHA256))
                .transpose()?,
        })
    }
}

/// Our parameters as the URL carries them, in form but not yet checked against the
/// signature: the texts that were signed, and the signature.
pub(super) struct SignedQuery<'q> {
    pub(super) method: &'q str,
    pub(super) expires: &'q str,
    /// Decoded, as it is signed.
    pub(super) content_type: Option<String>,
    pub(super) content_length: Option<&'q str>,
    pub(super) sha256: Option<&'q str>,
    pub(super) signature: [u8; SIGNATURE_BYTES],
}

/// The values of a query whose signature matched.
pub(super) struct Signed {
    pub(super) method: SignedMethod,
    /// Unix seconds.
    pub(super) expires: i64,
    pub(super) content_length: Option<u64>,
    pub(super) sha256: Option<ContentSha256>,
}

impl SignedQuery<'_> {
    /// The signed texts as values. They were signed, so they parse; a failure means a
    /// signer bug, not an attack.
    pub(super) fn values(&self) -> Result<Signed, Refusal> {
        let method: SignedMethod = self
            .method
            .parse()
            .map_err(|e: String| Refusal::Malformed(e))?;
        let expires: i64 = self
            .expires
            .parse()
            .map_err(|_| Refusal::Malformed(format!("{PARAM_EXPIRES} is not a number")))?;
        let content_length = match self.content_length {
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                Refusal::Malformed(format!("{PARAM_CONTENT_LENGTH} is not a number"))
            })?),
            None => None,
        };
        let sha256 =
            match self.sha256 {
                Some(text) => Some(ContentSha256::parse(text).map_err(|_| {
                    Refusal::Malformed(format!("{PARAM_SHA256} is not 64 hex digits"))
                })?),
                None => None,
            };
        Ok(Signed {
            method,
            expires,
            content_length,
            sha256,
        })
    }
}

fn required<'q>(value: Option<&'q str>, name: &str) -> Result<&'q str, Refusal> {
    value.ok_or_else(|| Refusal::Malformed(format!("{name} is missing")))
}

/// A value that is plain ASCII digits or letters as issued: no percent-encoding, so one
/// grant has exactly one URL.
fn plain<'q>(value: &'q str, name: &str) -> Result<&'q str, Refusal> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(value)
    } else {
        Err(Refusal::Malformed(format!(
            "{name} must be plain letters or digits, as issued"
        )))
    }
}

/// The signature: exactly 64 lowercase hex digits, as [`super::GatewaySigner::sign`] writes it.
pub(super) fn signature_bytes(text: &str) -> Result<[u8; SIGNATURE_BYTES], Refusal> {
    let malformed = || {
        Refusal::Malformed(format!(
            "{PARAM_SIGNATURE} must be exactly {SIGNATURE_HEX_LEN} lowercase hex digits"
        ))
    };
    let digits = text.as_bytes();
    if digits.len() != SIGNATURE_HEX_LEN {
        return Err(malformed());
    }
    let mut bytes = [0u8; SIGNATURE_BYTES];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (lower_hex(pair[0]).ok_or_else(malformed)? << 4)
            | lower_hex(pair[1]).ok_or_else(malformed)?;
    }
    Ok(bytes)
}

/// A percent-encoded value (`+` is a space, as in forms), as UTF-8.
fn decode(value: &str, name: &str) -> Result<String, Refusal> {
    let spaced = value.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| Refusal::Malformed(format!("{name} is not UTF-8")))
}

/// The value of a lowercase hex digit.
fn lower_hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::gateway::tests::{NOW, at, signed_get, signer};

    #[test]
    fn signatures_are_exactly_64_lowercase_hex_digits() {
        let s = signer();
        let (path, query) = signed_get(&s, "mask/x.png", NOW + 60);
        s.verify("GET", &path, &query, at(NOW)).unwrap();
        let (head, signature) = query.split_once("x-maskstore-signature=").unwrap();
        let variants = [
            signature.to_uppercase(),
            format!("%2B{}", &signature[1..]),
            format!("+{}", &signature[1..]),
            format!("{signature}00"),
            signature[..62].to_string(),
            format!("%{:02X}{}", signature.as_bytes()[0], &signature[1..]),
        ];
        for variant in variants {
            let tampered = format!("{head}x-maskstore-signature={variant}");
            assert!(
                matches!(
                    s.verify("GET", &path, &tampered, at(NOW)),
                    Err(Refusal::Malformed(_))
                ),
                "{tampered}"
            );
        }
    }

    #[test]
    fn oversize_queries_and_repeated_parameters_are_refused_before_reading() {
        let s = signer();
        let (path, query) = signed_get(&s, "mask/x.png", NOW + 60);
        let long = format!("{query}&pad={}", "a".repeat(MAX_QUERY_BYTES));
        assert_eq!(check_query_limits(&long), Err(QueryLimit::TooLong));
        let many = format!("{query}{}", "&a".repeat(MAX_QUERY_PARAMS));
        assert_eq!(
            check_query_limits(&many),
            Err(QueryLimit::TooManyParameters)
        );
        assert!(s.verify("GET", &path, &many, at(NOW)).is_err());
        // A few unknown parameters are ignored; ours twice is refused.
        s.verify("GET", &path, &format!("{query}&_=12345"), at(NOW))
            .unwrap();
        let twice = format!("{query}&x-maskstore-method=GET");
        assert!(matches!(
            s.verify("GET", &path, &twice, at(NOW)),
            Err(Refusal::Malformed(m)) if m.contains("twice")
        ));
        // Percent-encoded names are not ours; the expiry must be plain digits.
        let encoded_name = query.replace("x-maskstore-method", "x-maskstore-%6Dethod");
        assert!(s.verify("GET", &path, &encoded_name, at(NOW)).is_err());
        let encoded_expiry = query.replace(
            &format!("expires={}", NOW + 60),
            &format!("expires=%3{}", &(NOW + 60).to_string()),
        );
        assert!(s.verify("GET", &path, &encoded_expiry, at(NOW)).is_err());
    }
}
