//! Signed URLs: SigV4 presigning on S3, and maskstore's own HMAC URLs, served by the
//! gateway, for the local and memory providers.
//!
//! A gateway URL looks like
//! `<public_url>/o/<key, percent-encoded per segment>?x-maskstore-method=PUT&x-maskstore-expires=<unix seconds>&x-maskstore-content-type=<bound type>&x-maskstore-content-length=<bound length>&x-maskstore-signature=<hex>`.
//! The signature is HMAC-SHA256 over
//! `maskstore-url-v1\n<METHOD>\n<key>\n<expires>\n<content type>\n<content length>`, so
//! changing any part of the URL breaks it. Two secrets may be valid at once (current and
//! previous) so the secret can be rotated without breaking URLs in flight; verification
//! is constant-time.

use std::fmt;
use std::io::Write;
use std::path::Path as FsPath;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use maskstore_core::{ObjectKey, Secret};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Query parameter: the signed method.
pub const PARAM_METHOD: &str = "x-maskstore-method";
/// Query parameter: expiry, Unix seconds.
pub const PARAM_EXPIRES: &str = "x-maskstore-expires";
/// Query parameter: the bound content type.
pub const PARAM_CONTENT_TYPE: &str = "x-maskstore-content-type";
/// Query parameter: the bound content length.
pub const PARAM_CONTENT_LENGTH: &str = "x-maskstore-content-length";
/// Query parameter: the hex HMAC-SHA256 signature.
pub const PARAM_SIGNATURE: &str = "x-maskstore-signature";
/// The path below the public URL under which objects are served.
pub const OBJECT_PATH: &str = "/o/";

/// Characters kept as they are in a key segment of a URL path (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The HTTP methods a signed URL may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignedMethod {
    /// Download.
    Get,
    /// Upload.
    Put,
    /// Metadata only.
    Head,
    /// Removal.
    Delete,
}

impl SignedMethod {
    /// The HTTP method name.
    pub fn as_str(self) -> &'static str {
        match self {
            SignedMethod::Get => "GET",
            SignedMethod::Put => "PUT",
            SignedMethod::Head => "HEAD",
            SignedMethod::Delete => "DELETE",
        }
    }
}

impl fmt::Display for SignedMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignedMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Ok(SignedMethod::Get),
            "PUT" => Ok(SignedMethod::Put),
            "HEAD" => Ok(SignedMethod::Head),
            "DELETE" => Ok(SignedMethod::Delete),
            _ => Err(format!(
                "{s:?} is not a method a signed URL can grant; use get, put, head or delete"
            )),
        }
    }
}

/// What a signed URL binds besides method, key and expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignOptions {
    /// PUT: the upload must carry exactly this `Content-Type`.
    pub content_type: Option<String>,
    /// PUT: the upload must be exactly this many bytes.
    pub content_length: Option<u64>,
}

/// An issued signed URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    /// The URL to hand to the client.
    pub url: String,
    /// The method it grants.
    pub method: SignedMethod,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Headers the client must send with the request (bound ones such as `Content-Type`).
    pub headers: Vec<(String, String)>,
}

/// What a valid gateway URL grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The method granted.
    pub method: SignedMethod,
    /// The key granted.
    pub key: ObjectKey,
    /// The bound content type, if any.
    pub content_type: Option<String>,
    /// The bound content length, if any.
    pub content_length: Option<u64>,
}

/// Why a gateway URL was refused. Display gives the one-line reason sent with the 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A required parameter is missing or unreadable.
    #[error("malformed signed URL: {0}")]
    Malformed(String),
    /// The key in the path breaks the key rules.
    #[error("invalid key in the URL: {0}")]
    InvalidKey(String),
    /// The signature does not match: some part of the URL changed, or another secret signed it.
    #[error(
        "signature does not match: the URL was changed (key, method, expiry or a bound header) or signed with another secret"
    )]
    BadSignature,
    /// The URL expired.
    #[error("the signed URL expired at {0}; ask the application for a new one")]
    Expired(DateTime<Utc>),
    /// The request used another method than the one signed.
    #[error("this URL was signed for {signed}, not {used}")]
    WrongMethod {
        /// The method in the URL.
        signed: SignedMethod,
        /// The method of the request.
        used: String,
    },
}

/// Issues and verifies gateway URLs with HMAC-SHA256.
pub struct GatewaySigner {
    base: String,
    /// The current secret first, then the previous one during a rotation.
    secrets: Vec<Secret>,
}

impl fmt::Debug for GatewaySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewaySigner")
            .field("base", &self.base)
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl GatewaySigner {
    /// A signer for URLs under `public_url`, signing with `current` and also accepting
    /// `previous`.
    pub fn new(public_url: &str, current: Secret, previous: Option<Secret>) -> Self {
        GatewaySigner {
            base: public_url.trim_end_matches('/').to_string(),
            secrets: std::iter::once(current).chain(previous).collect(),
        }
    }

    /// The base URL signed URLs point at.
    pub fn public_url(&self) -> &str {
        &self.base
    }

    /// A URL granting `method` on `key` until `expires` (Unix seconds).
    pub fn sign(
        &self,
        method: SignedMethod,
        key: &ObjectKey,
        expires: i64,
        options: &SignOptions,
    ) -> String {
        let content_type = options.content_type.as_deref().unwrap_or("");
        let content_length = options
            .content_length
            .map(|n| n.to_string())
            .unwrap_or_default();
        let signature = hex(&mac(
            &self.secrets[0],
            &canonical(
                method.as_str(),
                key.as_str(),
                &expires.to_string(),
                content_type,
                &content_length,
            ),
        ));
        let path: Vec<String> = key
            .as_str()
            .split('/')
            .map(|segment| utf8_percent_encode(segment, SEGMENT).to_string())
            .collect();
        let mut url = format!(
            "{}{OBJECT_PATH}{}?{PARAM_METHOD}={method}&{PARAM_EXPIRES}={expires}",
            self.base,
            path.join("/")
        );
        if let Some(ct) = &options.content_type {
            url.push_str(&format!(
                "&{PARAM_CONTENT_TYPE}={}",
                utf8_percent_encode(ct, SEGMENT)
            ));
        }
        if let Some(n) = options.content_length {
            url.push_str(&format!("&{PARAM_CONTENT_LENGTH}={n}"));
        }
        url.push_str(&format!("&{PARAM_SIGNATURE}={signature}"));
        url
    }

    /// Checks a request for `encoded_key` (the path below [`OBJECT_PATH`], still
    /// percent-encoded) with query string `query`, made with HTTP method `used`, at `now`.
    pub fn verify(
        &self,
        used: &str,
        encoded_key: &str,
        query: &str,
        now: DateTime<Utc>,
    ) -> Result<Grant, Refusal> {
        let key_text = percent_decode_str(encoded_key)
            .decode_utf8()
            .map_err(|_| Refusal::InvalidKey("the path is not UTF-8".to_string()))?;
        let key =
            ObjectKey::parse(key_text.as_ref()).map_err(|e| Refusal::InvalidKey(e.to_string()))?;
        let params = Params::parse(query)?;
        let method_text = params.required(PARAM_METHOD)?;
        let expires_text = params.required(PARAM_EXPIRES)?;
        let signature_hex = params.required(PARAM_SIGNATURE)?;
        let content_type = params.optional(PARAM_CONTENT_TYPE);
        let content_length_text = params.optional(PARAM_CONTENT_LENGTH);

        let signature = unhex(&signature_hex)
            .ok_or_else(|| Refusal::Malformed(format!("{PARAM_SIGNATURE} is not hex")))?;
        let message = canonical(
            &method_text,
            key.as_str(),
            &expires_text,
            content_type.as_deref().unwrap_or(""),
            content_length_text.as_deref().unwrap_or(""),
        );
        // Every secret is tried, so the time taken does not tell which one matched.
        let matched = self
            .secrets
            .iter()
            .map(|secret| verify_mac(secret, &message, &signature))
            .fold(false, |any, ok| any | ok);
        if !matched {
            return Err(Refusal::BadSignature);
        }
        // Signed values, so these parse; a failure means a signer bug, not an attack.
        let method: SignedMethod = method_text
            .parse()
            .map_err(|e: String| Refusal::Malformed(e))?;
        let expires: i64 = expires_text
            .parse()
            .map_err(|_| Refusal::Malformed(format!("{PARAM_EXPIRES} is not a number")))?;
        let content_length = match content_length_text {
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                Refusal::Malformed(format!("{PARAM_CONTENT_LENGTH} is not a number"))
            })?),
            None => None,
        };
        if now.timestamp() > expires {
            let at = DateTime::from_timestamp(expires, 0).unwrap_or_default();
            return Err(Refusal::Expired(at));
        }
        if !used.eq_ignore_ascii_case(method.as_str()) {
            return Err(Refusal::WrongMethod {
                signed: method,
                used: used.to_string(),
            });
        }
        Ok(Grant {
            method,
            key,
            content_type,
            content_length,
        })
    }
}

/// The query parameters of a URL, each at most once.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Result<Params, Refusal> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(Refusal::Malformed(format!("{name} appears twice")));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Params(pairs))
    }

    fn optional(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn required(&self, name: &str) -> Result<String, Refusal> {
        self.optional(name)
            .ok_or_else(|| Refusal::Malformed(format!("{name} is missing")))
    }
}

fn canonical(method: &str, key: &str, expires: &str, content_type: &str, length: &str) -> String {
    format!("maskstore-url-v1\n{method}\n{key}\n{expires}\n{content_type}\n{length}")
}

fn mac(secret: &Secret, message: &str) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn verify_mac(secret: &Secret, message: &str, signature: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    mac.verify_slice(signature).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A fresh random secret of 32 bytes, hex-encoded.
pub fn random_secret() -> Secret {
    let bytes: [u8; 32] = rand::random();
    Secret::new(hex(&bytes))
}

/// The development signing secret kept in `path` (created, readable by the owner only,
/// when missing), so that `maskstore presign` and `maskstore serve` agree across processes.
pub fn development_secret(path: &FsPath) -> std::io::Result<Secret> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().len() >= maskstore_core::config::MIN_SIGNING_SECRET_BYTES => {
            return Ok(Secret::new(text.trim().to_string()));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = random_secret();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(secret.expose().as_bytes())?;
    file.sync_all()?;
    tracing::info!(
        path = %path.display(),
        "generated a development signing secret for signed URLs (set gateway.signing_secret to choose one)"
    );
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn signer() -> GatewaySigner {
        GatewaySigner::new("http://127.0.0.1:9000/", random_secret(), None)
    }

    fn at(t: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(t, 0).unwrap()
    }

    fn split(url: &str) -> (String, String) {
        let rest = url.strip_prefix("http://127.0.0.1:9000/o/").unwrap();
        let (path, query) = rest.split_once('?').unwrap();
        (path.to_string(), query.to_string())
    }

    fn flip_last_hex_digit(query: &str) -> String {
        let mut text = query.to_string();
        let last = text.pop().unwrap();
        text.push(if last == '0' { '1' } else { '0' });
        text
    }

    fn key(text: &str) -> ObjectKey {
        ObjectKey::parse(text).unwrap()
    }

    #[test]
    fn a_signed_url_verifies_with_its_method_key_and_bound_headers() {
        let s = signer();
        let options = SignOptions {
            content_type: Some("application/gzip".into()),
            content_length: Some(42),
        };
        let url = s.sign(
            SignedMethod::Put,
            &key("mask/a b/c?#%.nii.gz"),
            NOW + 60,
            &options,
        );
        let (path, query) = split(&url);
        assert!(
            !path.contains(' ') && !path.contains('?') && !path.contains('#'),
            "{path}"
        );
        let grant = s.verify("PUT", &path, &query, at(NOW)).unwrap();
        assert_eq!(grant.key.as_str(), "mask/a b/c?#%.nii.gz");
        assert_eq!(grant.content_type.as_deref(), Some("application/gzip"));
        assert_eq!(grant.content_length, Some(42));
    }

    #[test]
    fn every_changed_part_breaks_the_signature() {
        let s = signer();
        let options = SignOptions {
            content_type: Some("image/png".into()),
            content_length: None,
        };
        let url = s.sign(SignedMethod::Get, &key("mask/x.png"), NOW + 60, &options);
        let (path, query) = split(&url);
        let tampered = [
            ("mask/y.png".to_string(), query.clone()),
            (path.clone(), query.replace("method=GET", "method=DELETE")),
            (
                path.clone(),
                query.replace(&format!("{}", NOW + 60), &format!("{}", NOW + 6000)),
            ),
            (path.clone(), query.replace("image%2Fpng", "text%2Fplain")),
            (path.clone(), flip_last_hex_digit(&query)),
        ];
        for (path, query) in tampered {
            assert_eq!(
                s.verify("GET", &path, &query, at(NOW)),
                Err(Refusal::BadSignature),
                "{path}?{query}"
            );
        }
    }

    #[test]
    fn expired_wrong_method_and_missing_parameters_are_refused() {
        let s = signer();
        let url = s.sign(
            SignedMethod::Get,
            &key("mask/x"),
            NOW,
            &SignOptions::default(),
        );
        let (path, query) = split(&url);
        assert!(matches!(
            s.verify("GET", &path, &query, at(NOW + 1)),
            Err(Refusal::Expired(_))
        ));
        assert!(matches!(
            s.verify("PUT", &path, &query, at(NOW)),
            Err(Refusal::WrongMethod {
                signed: SignedMethod::Get,
                ..
            })
        ));
        let no_sig = query.split("&x-maskstore-signature").next().unwrap();
        assert!(matches!(
            s.verify("GET", &path, no_sig, at(NOW)),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            s.verify("GET", "mask/..%2Fetc", &query, at(NOW)),
            Err(Refusal::InvalidKey(_))
        ));
    }

    #[test]
    fn another_secret_is_refused_and_the_previous_one_accepted_during_rotation() {
        let old = random_secret();
        let before = GatewaySigner::new("http://127.0.0.1:9000", old.clone(), None);
        let url = before.sign(
            SignedMethod::Get,
            &key("mask/x"),
            NOW + 60,
            &SignOptions::default(),
        );
        let (path, query) = split(&url);
        let stranger = signer();
        assert_eq!(
            stranger.verify("GET", &path, &query, at(NOW)),
            Err(Refusal::BadSignature)
        );
        let rotated = GatewaySigner::new("http://127.0.0.1:9000", random_secret(), Some(old));
        rotated.verify("GET", &path, &query, at(NOW)).unwrap();
    }

    #[test]
    fn debug_never_shows_secrets() {
        let secret = random_secret();
        let s = GatewaySigner::new("http://x", secret.clone(), None);
        assert!(!format!("{s:?}").contains(secret.expose()));
    }

    #[test]
    fn development_secret_is_created_once_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing-secret");
        let first = development_secret(&path).unwrap();
        let second = development_secret(&path).unwrap();
        assert_eq!(first, second);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
