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
use std::path::{Path as FsPath, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use maskstore_core::{ObjectKey, Secret};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

use crate::checksum::ContentSha256;
use crate::secret_file::{SecretFiles, rotated};

type HmacSha256 = Hmac<Sha256>;

/// Query parameter: the signed method.
pub const PARAM_METHOD: &str = "x-maskstore-method";
/// Query parameter: expiry, Unix seconds.
pub const PARAM_EXPIRES: &str = "x-maskstore-expires";
/// Query parameter: the bound content type.
pub const PARAM_CONTENT_TYPE: &str = "x-maskstore-content-type";
/// Query parameter: the bound content length.
pub const PARAM_CONTENT_LENGTH: &str = "x-maskstore-content-length";
/// Query parameter: the bound SHA-256 of the body, 64 lowercase hex digits.
pub const PARAM_SHA256: &str = "x-maskstore-sha256";
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
    /// PUT: the upload's body must have this SHA-256, or it is refused and nothing is
    /// stored (S3 verifies the signed `x-amz-checksum-sha256`; the gateway hashes the body
    /// as it streams). Read one with [`ContentSha256::parse`].
    pub sha256: Option<ContentSha256>,
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
    /// The bound SHA-256 of the body, if any.
    pub sha256: Option<ContentSha256>,
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
///
/// A signer made by [`GatewaySigner::rotating`] watches the file of its secret: when the
/// file changes, the new secret signs from the next request on and the old one is still
/// accepted for `keep_previous` (the longest URL lifetime), so URLs issued before the
/// rotation work until they expire.
pub struct GatewaySigner {
    base: String,
    keys: RwLock<Arc<Keys>>,
    rotation: Option<Rotation>,
}

/// The secrets in use.
struct Keys {
    current: Secret,
    /// Earlier secrets still accepted, newest first: the configured previous one (for
    /// good), then each replaced by a rotation (until the instant given), at most
    /// [`MAX_PREVIOUS_SECRETS`], so rotating twice within `keep_previous` keeps URLs of
    /// the first secret working too.
    previous: Vec<(Secret, Option<Instant>)>,
}

/// The most earlier secrets a rotating signer accepts at once; a URL signed with an older
/// one is refused (rotating that often within `signed_url.max_ttl` is not a rotation).
pub const MAX_PREVIOUS_SECRETS: usize = 4;

struct Rotation {
    files: SecretFiles,
    keep_previous: Duration,
}

impl fmt::Debug for GatewaySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys.read().expect("signer lock");
        f.debug_struct("GatewaySigner")
            .field("base", &self.base)
            .field("secrets", &(1 + keys.previous.len()))
            .field("rotating", &self.rotation.is_some())
            .finish()
    }
}

impl GatewaySigner {
    /// A signer for URLs under `public_url`, signing with `current` and also accepting
    /// `previous`.
    pub fn new(public_url: &str, current: Secret, previous: Option<Secret>) -> Self {
        GatewaySigner {
            base: public_url.trim_end_matches('/').to_string(),
            keys: RwLock::new(Arc::new(Keys {
                current,
                previous: previous.into_iter().map(|p| (p, None)).collect(),
            })),
            rotation: None,
        }
    }

    /// Like [`GatewaySigner::new`], with `current` read from `file`, which is watched: a
    /// new secret written there signs from then on, and the one it replaces stays
    /// accepted for `keep_previous`.
    pub fn rotating(
        public_url: &str,
        current: Secret,
        previous: Option<Secret>,
        file: PathBuf,
        keep_previous: Duration,
    ) -> Self {
        GatewaySigner {
            rotation: Some(Rotation {
                files: SecretFiles::new("gateway_signing_secret", vec![file]),
                keep_previous,
            }),
            ..GatewaySigner::new(public_url, current, previous)
        }
    }

    /// The secrets in use at `now`, after adopting a settled change of the secret's file.
    fn keys(&self, now: Instant) -> Arc<Keys> {
        self.keys_settled(now, crate::secret_file::SETTLE)
    }

    /// [`GatewaySigner::keys`], adopting a change that has held for `settle`.
    fn keys_settled(&self, now: Instant, settle: Duration) -> Arc<Keys> {
        if let Some(rotation) = &self.rotation
            && let Some(mut values) = rotation.files.poll_settled(now, settle)
        {
            self.adopt(rotation, Secret::new(values.remove(0)), now);
        }
        Arc::clone(&self.keys.read().expect("signer lock"))
    }

    /// Makes `next`, read from the rotated file, the current secret, the one in use
    /// becoming the previous one until `now` + `keep_previous`.
    fn adopt(&self, rotation: &Rotation, next: Secret, now: Instant) {
        let mut keys = self.keys.write().expect("signer lock");
        if next.expose().len() < maskstore_core::config::MIN_SIGNING_SECRET_BYTES {
            tracing::warn!(
                secret = rotation.files.name(),
                "the rotated signing secret is shorter than {} bytes; the secret in use stays (generate one with: openssl rand -hex 32)",
                maskstore_core::config::MIN_SIGNING_SECRET_BYTES
            );
        } else if next != keys.current {
            let mut previous = vec![(keys.current.clone(), Some(now + rotation.keep_previous))];
            previous.extend(
                keys.previous
                    .iter()
                    .filter(|(_, until)| until.is_none_or(|until| now < until))
                    // The configured previous secret was already on its way out.
                    .map(|(secret, until)| {
                        (secret.clone(), until.or(Some(now + rotation.keep_previous)))
                    }),
            );
            previous.truncate(MAX_PREVIOUS_SECRETS);
            *keys = Arc::new(Keys {
                previous,
                current: next,
            });
            rotated(rotation.files.name(), rotation.files.paths());
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
        let sha256 = options.sha256.map(|digest| digest.hex());
        let keys = self.keys(Instant::now());
        let signature = hex(&mac(
            &keys.current,
            &canonical(
                method.as_str(),
                key.as_str(),
                &expires.to_string(),
                content_type,
                &content_length,
                sha256.as_deref(),
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
        if let Some(sha256) = &sha256 {
            url.push_str(&format!("&{PARAM_SHA256}={sha256}"));
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
        check_query_limits(query).map_err(|limit| Refusal::Malformed(limit.to_string()))?;
        let params = Params::parse(query)?;
        let key_text = percent_decode_str(encoded_key)
            .decode_utf8()
            .map_err(|_| Refusal::InvalidKey("the path is not UTF-8".to_string()))?;
        let key =
            ObjectKey::parse(key_text.as_ref()).map_err(|e| Refusal::InvalidKey(e.to_string()))?;
        let method_text = plain(required(params.method, PARAM_METHOD)?, PARAM_METHOD)?;
        let expires_text = plain(required(params.expires, PARAM_EXPIRES)?, PARAM_EXPIRES)?;
        let signature = signature_bytes(required(params.signature, PARAM_SIGNATURE)?)?;
        let content_type = params
            .content_type
            .map(|value| decode(value, PARAM_CONTENT_TYPE))
            .transpose()?;
        let content_length_text = params
            .content_length
            .map(|value| plain(value, PARAM_CONTENT_LENGTH))
            .transpose()?;
        let sha256_text = params
            .sha256
            .map(|value| plain(value, PARAM_SHA256))
            .transpose()?;

        let message = canonical(
            method_text,
            key.as_str(),
            expires_text,
            content_type.as_deref().unwrap_or(""),
            content_length_text.unwrap_or(""),
            sha256_text,
        );
        // Every secret is tried, so the time taken does not tell which one matched.
        let checked = Instant::now();
        let matches = |keys: &Keys| {
            let previous = keys
                .previous
                .iter()
                .filter(|(_, until)| until.is_none_or(|until| checked < until))
                .map(|(secret, _)| secret);
            std::iter::once(&keys.current)
                .chain(previous)
                .map(|secret| verify_mac(secret, &message, &signature))
                .fold(false, |any, ok| any | ok)
        };
        let mut matched = matches(&self.keys(checked));
        if !matched && let Some(rotation) = &self.rotation {
            // The issuer of this URL may have read a new secret before this process
            // settled on it: take a change of the file at once (a stat when there is
            // none), but only when the new secret signed this URL. Any request can get
            // here, so a file caught half rewritten is never adopted on a client's say-so.
            let signed_it = |values: &[String]| {
                values[0].len() >= maskstore_core::config::MIN_SIGNING_SECRET_BYTES
                    && verify_mac(&Secret::new(values[0].clone()), &message, &signature)
            };
            if let Some(mut values) = rotation.files.poll_early(signed_it) {
                self.adopt(rotation, Secret::new(values.remove(0)), checked);
                matched = matches(&self.keys.read().expect("signer lock"));
            }
        }
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
        let sha256 =
            match sha256_text {
                Some(text) => Some(ContentSha256::parse(text).map_err(|_| {
                    Refusal::Malformed(format!("{PARAM_SHA256} is not 64 hex digits"))
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
            sha256,
        })
    }
}

/// The longest query string a gateway URL may have, in bytes. A signed URL's query is about
/// 200 bytes plus its bound content type; anything near this size is not one of ours.
pub const MAX_QUERY_BYTES: usize = 2048;
/// The most `&`-separated parameters a gateway URL's query may have (five are ours; a few
/// more, such as a cache-buster a page adds, are ignored).
pub const MAX_QUERY_PARAMS: usize = 16;
/// The length of a signature: HMAC-SHA256 in lowercase hex.
const SIGNATURE_HEX_LEN: usize = 64;

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
struct Params<'q> {
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
    fn parse(query: &'q str) -> Result<Params<'q>, Refusal> {
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

/// The signature: exactly 64 lowercase hex digits, as [`GatewaySigner::sign`] writes it.
fn signature_bytes(text: &str) -> Result<Vec<u8>, Refusal> {
    let malformed = || {
        Refusal::Malformed(format!(
            "{PARAM_SIGNATURE} must be exactly {SIGNATURE_HEX_LEN} lowercase hex digits"
        ))
    };
    if text.len() != SIGNATURE_HEX_LEN
        || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(malformed());
    }
    unhex(text).ok_or_else(malformed)
}

/// A percent-encoded value (`+` is a space, as in forms), as UTF-8.
fn decode(value: &str, name: &str) -> Result<String, Refusal> {
    let spaced = value.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| Refusal::Malformed(format!("{name} is not UTF-8")))
}

/// The signed message. A bound SHA-256 is one more line, so URLs without one keep their
/// message (and stay valid), and none can be made to look like one with a SHA-256: the
/// length line before it holds digits only.
fn canonical(
    method: &str,
    key: &str,
    expires: &str,
    content_type: &str,
    length: &str,
    sha256: Option<&str>,
) -> String {
    let mut message =
        format!("maskstore-url-v1\n{method}\n{key}\n{expires}\n{content_type}\n{length}");
    if let Some(sha256) = sha256 {
        message.push_str("\nsha256:");
        message.push_str(sha256);
    }
    message
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

/// Why the development signing secret cannot be used; Display says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}; {fix}")]
pub struct DevelopmentSecretError {
    /// What is wrong with the file.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

/// The development signing secret kept in `path`, so that `maskstore presign` and
/// `maskstore serve` agree across processes.
///
/// A missing file is created atomically (written in full to a private temporary file,
/// then linked into place) with mode 0600. An existing file is refused, never followed or
/// repaired, when it is a symlink, not a regular file, readable or writable by group or
/// others, or shorter than a secret.
pub fn development_secret(path: &FsPath) -> Result<Secret, DevelopmentSecretError> {
    let shown = path.display();
    let io = |what: &str, e: std::io::Error| {
        DevelopmentSecretError {
        problem: format!("cannot {what} the development signing secret {shown}: {e}"),
        fix: "set gateway.signing_secret (APP_GATEWAY__SIGNING_SECRET), or make that folder writable by this user only".to_string(),
    }
    };
    // Two processes may race to create it: the loser reads the winner's.
    for _ in 0..2 {
        match read_secret_file(path) {
            Ok(Some(secret)) => return Ok(secret),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        let secret = random_secret();
        let temp = path.with_file_name(format!(
            ".{}.{:016x}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            rand::random::<u64>()
        ));
        let written = write_private(&temp, secret.expose().as_bytes());
        let linked = written.and_then(|()| std::fs::hard_link(&temp, path));
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                tracing::info!(
                    path = %shown,
                    "generated a development signing secret for signed URLs (set gateway.signing_secret to choose one)"
                );
                return Ok(secret);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io("create", e)),
        }
    }
    Err(DevelopmentSecretError {
        problem: format!("the development signing secret {shown} keeps changing while it is read"),
        fix: "stop the other process writing it, or set gateway.signing_secret".to_string(),
    })
}

/// The secret in `path`, `None` when there is no such file.
fn read_secret_file(path: &FsPath) -> Result<Option<Secret>, DevelopmentSecretError> {
    use std::io::Read;
    let shown = path.display();
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // O_NONBLOCK: opening a FIFO put there returns at once (and is refused below as not a
    // regular file) instead of waiting for a writer forever; regular files ignore it.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(DevelopmentSecretError {
                problem: format!("the development signing secret {shown} is a symlink"),
                fix: format!(
                    "remove the link ({shown}) so a private secret is generated, or set gateway.signing_secret"
                ),
            });
        }
        Err(e) => {
            return Err(DevelopmentSecretError {
                problem: format!("cannot read the development signing secret {shown}: {e}"),
                fix: "make it readable by this user, or set gateway.signing_secret".to_string(),
            });
        }
    };
    let metadata = file.metadata().map_err(|e| DevelopmentSecretError {
        problem: format!("cannot inspect the development signing secret {shown}: {e}"),
        fix: "set gateway.signing_secret".to_string(),
    })?;
    if !metadata.is_file() {
        return Err(DevelopmentSecretError {
            problem: format!("the development signing secret {shown} is not a regular file"),
            fix: format!("remove {shown} so a secret is generated, or set gateway.signing_secret"),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(DevelopmentSecretError {
                problem: format!(
                    "the development signing secret {shown} is open to group or others (mode {mode:03o}), so anyone who read it can forge signed URLs"
                ),
                fix: format!(
                    "delete it so a new private one is generated (rm {shown}), or set gateway.signing_secret"
                ),
            });
        }
    }
    let mut text = String::new();
    // A secret is 64 hex digits; a much larger file is not one.
    (&mut file)
        .take(4096)
        .read_to_string(&mut text)
        .map_err(|e| DevelopmentSecretError {
            problem: format!("cannot read the development signing secret {shown}: {e}"),
            fix: format!(
                "delete it (rm {shown}) so a new one is generated, or set gateway.signing_secret"
            ),
        })?;
    let text = text.trim();
    if text.len() < maskstore_core::config::MIN_SIGNING_SECRET_BYTES {
        return Err(DevelopmentSecretError {
            problem: format!(
                "the development signing secret {shown} is shorter than {} bytes",
                maskstore_core::config::MIN_SIGNING_SECRET_BYTES
            ),
            fix: format!(
                "delete it (rm {shown}) so a new one is generated, or set gateway.signing_secret"
            ),
        });
    }
    Ok(Some(Secret::new(text.to_string())))
}

/// Writes `bytes` to a new file at `path` (never an existing one or a link) with mode
/// 0600, and syncs it.
fn write_private(path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
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
            sha256: None,
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
            sha256: None,
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
        // Nothing but the secret is left in the folder (no temporary file).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn development_secret_open_to_group_or_others_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing-secret");
        let secret = development_secret(&path).unwrap();
        for mode in [0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = development_secret(&path).unwrap_err();
            assert!(e.problem.contains("group or others"), "{e}");
            assert!(e.fix.contains("rm "), "{e}");
            assert!(!e.to_string().contains(secret.expose()), "{e}");
        }
    }

    #[test]
    fn development_secret_behind_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "a".repeat(64)).unwrap();
        let path = dir.path().join("signing-secret");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let e = development_secret(&path).unwrap_err();
        assert!(e.problem.contains("symlink"), "{e}");
        // A dangling link is refused too, not created through.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("missing"), &dangling).unwrap();
        assert!(development_secret(&dangling).is_err());
        assert!(!dir.path().join("missing").exists());
    }

    #[test]
    fn development_secret_that_is_a_folder_or_a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        let e = development_secret(&folder).unwrap_err();
        assert!(e.problem.contains("not a regular file"), "{e}");
        // A FIFO: opening it for reading must not wait for a writer.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(development_secret(&fifo));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading a FIFO as the secret blocked");
        let e = result.unwrap_err();
        assert!(e.problem.contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_short_development_secret_is_refused_not_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing-secret");
        std::fs::write(&path, "short").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = development_secret(&path).unwrap_err();
        assert!(e.problem.contains("shorter"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "short");
    }

    #[test]
    fn signatures_are_exactly_64_lowercase_hex_digits() {
        let s = signer();
        let url = s.sign(
            SignedMethod::Get,
            &key("mask/x.png"),
            NOW + 60,
            &SignOptions::default(),
        );
        let (path, query) = split(&url);
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
        let url = s.sign(
            SignedMethod::Get,
            &key("mask/x.png"),
            NOW + 60,
            &SignOptions::default(),
        );
        let (path, query) = split(&url);
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

    #[test]
    fn a_rewritten_secret_file_rotates_and_the_old_secret_lasts_keep_previous() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing_secret");
        let write = |text: &str| {
            let temp = dir.path().join("next");
            std::fs::write(&temp, text).unwrap();
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::rename(&temp, &path).unwrap();
        };
        let old = "old-signing-secret-0123456789abcdef0123";
        let new = "new-signing-secret-0123456789abcdef0123";
        write(old);
        let base = "http://127.0.0.1:9000";
        let kept = GatewaySigner::rotating(
            base,
            Secret::new(old),
            None,
            path.clone(),
            Duration::from_secs(3600),
        );
        let dropped =
            GatewaySigner::rotating(base, Secret::new(old), None, path.clone(), Duration::ZERO);
        let expires = Utc::now().timestamp() + 600;
        let k = key("mask/a.png");
        let before = kept.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        write(new);
        let check = |signer: &GatewaySigner, url: &str| {
            let (path, query) = split(url);
            signer.verify("GET", &path, &query, Utc::now())
        };
        assert!(check(&kept, &before).is_ok());
        assert!(
            check(&dropped, &before).is_ok(),
            "not settled yet: the old secret signs"
        );
        std::thread::sleep(crate::secret_file::SETTLE + Duration::from_millis(50));
        // The first request after the settle adopts the new secret.
        assert!(
            check(&kept, &before).is_ok(),
            "signed before the rotation, still valid"
        );
        assert_eq!(check(&dropped, &before), Err(Refusal::BadSignature));
        let after = kept.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        assert!(check(&kept, &after).is_ok());
        let only_new = GatewaySigner::new(base, Secret::new(new), None);
        assert!(
            check(&only_new, &after).is_ok(),
            "signed with the new secret"
        );
        assert!(format!("{kept:?}").contains("secrets: 2"), "{kept:?}");
        assert!(!format!("{kept:?}").contains("signing-secret"));
    }

    #[test]
    fn a_url_of_the_new_secret_is_taken_at_once_and_a_forged_one_changes_nothing() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing_secret");
        let write = |text: &str| {
            let temp = dir.path().join("next");
            std::fs::write(&temp, text).unwrap();
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::rename(&temp, &path).unwrap();
        };
        let (old, new) = (
            "old-signing-secret-0123456789abcdef0123",
            "new-signing-secret-0123456789abcdef0123",
        );
        write(old);
        let base = "http://127.0.0.1:9000";
        let gateway = GatewaySigner::rotating(
            base,
            Secret::new(old),
            None,
            path.clone(),
            Duration::from_secs(60),
        );
        let k = key("mask/a.png");
        let expires = Utc::now().timestamp() + 600;
        let check = |url: &str| {
            let (path, query) = split(url);
            gateway.verify("GET", &path, &query, Utc::now())
        };
        let forged = GatewaySigner::new(
            base,
            Secret::new("an-attacker-guess-0123456789abcdef"),
            None,
        )
        .sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        assert_eq!(check(&forged), Err(Refusal::BadSignature));
        // The issuer read the new secret first: its URL is accepted without waiting.
        write(new);
        let issued = GatewaySigner::new(base, Secret::new(new), None).sign(
            SignedMethod::Get,
            &k,
            expires,
            &SignOptions::default(),
        );
        assert!(check(&issued).is_ok());
        assert_eq!(check(&forged), Err(Refusal::BadSignature));
        let before = GatewaySigner::new(base, Secret::new(old), None).sign(
            SignedMethod::Get,
            &k,
            expires,
            &SignOptions::default(),
        );
        assert!(check(&before).is_ok(), "the old secret is the previous one");
    }

    #[test]
    fn a_secret_caught_half_rewritten_is_not_adopted_on_a_forged_request() {
        use std::io::Write as _;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing_secret");
        let old = "old-signing-secret-0123456789abcdef0123";
        let new = "new-signing-secret-0123456789abcdef0123456789abcdef0123456789";
        std::fs::write(&path, old).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let base = "http://127.0.0.1:9000";
        let gateway = GatewaySigner::rotating(
            base,
            Secret::new(old),
            None,
            path.clone(),
            Duration::from_secs(3600),
        );
        let k = key("mask/a.png");
        let expires = Utc::now().timestamp() + 600;
        let check = |url: &str| {
            let (path, query) = split(url);
            gateway.verify("GET", &path, &query, Utc::now())
        };
        let before = gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        let forged = GatewaySigner::new(
            base,
            Secret::new("an-attacker-guess-0123456789abcdef"),
            None,
        )
        .sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        // `echo $NEW > file`: truncated, then written; caught with 40 bytes written.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        file.write_all(&new.as_bytes()[..40]).unwrap();
        assert_eq!(check(&forged), Err(Refusal::BadSignature));
        file.write_all(&new.as_bytes()[40..]).unwrap();
        drop(file);
        // Seen changed now, adopted by the first request once the change has held.
        gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        std::thread::sleep(crate::secret_file::SETTLE + Duration::from_millis(50));
        let after = gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        let only_new = GatewaySigner::new(base, Secret::new(new), None);
        let (p, q) = split(&after);
        assert!(
            only_new.verify("GET", &p, &q, Utc::now()).is_ok(),
            "the whole new secret signs"
        );
        assert!(
            check(&before).is_ok(),
            "signed before the rotation: the previous secret must be the old one, not a half secret"
        );
    }

    #[test]
    fn fifty_threads_sign_and_verify_across_a_rotation_without_a_failure() {
        use std::os::unix::fs::PermissionsExt;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing_secret");
        let write = |text: &str| {
            let temp = dir.path().join("next");
            std::fs::write(&temp, text).unwrap();
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::rename(&temp, &path).unwrap();
        };
        let old = "old-signing-secret-0123456789abcdef0123";
        let new = "new-signing-secret-0123456789abcdef0123";
        write(old);
        let keep_previous = Duration::from_secs(2);
        let gateway = GatewaySigner::rotating(
            "http://127.0.0.1:9000",
            Secret::new(old),
            None,
            path.clone(),
            keep_previous,
        );
        let k = key("mask/a.png");
        let expires = Utc::now().timestamp() + 600;
        let before = gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        let (before_path, before_query) = split(&before);
        let (stop, done, failed) = (AtomicBool::new(false), AtomicU64::new(0), AtomicU64::new(0));
        let rotated_at = std::thread::scope(|scope| {
            for _ in 0..50 {
                scope.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let url =
                            gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
                        let (p, q) = split(&url);
                        let fresh = gateway.verify("GET", &p, &q, Utc::now());
                        let old_url =
                            gateway.verify("GET", &before_path, &before_query, Utc::now());
                        done.fetch_add(2, Ordering::Relaxed);
                        if fresh.is_err() || old_url.is_err() {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(200));
            write(new);
            // Adopted by the first request after the settle; the grace runs from then.
            std::thread::sleep(crate::secret_file::SETTLE + Duration::from_millis(400));
            let rotated_at = Instant::now();
            stop.store(true, Ordering::Relaxed);
            rotated_at
        });
        let (done, failed) = (done.into_inner(), failed.into_inner());
        eprintln!("rotation under 50 threads: {done} verifications, {failed} failed");
        assert!(done > 1000, "{done}");
        assert_eq!(failed, 0, "of {done}");
        let only_new = GatewaySigner::new("http://127.0.0.1:9000", Secret::new(new), None);
        let after = gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
        let (p, q) = split(&after);
        assert!(only_new.verify("GET", &p, &q, Utc::now()).is_ok());
        std::thread::sleep(
            keep_previous.saturating_sub(rotated_at.elapsed()) + Duration::from_millis(100),
        );
        assert_eq!(
            gateway.verify("GET", &before_path, &before_query, Utc::now()),
            Err(Refusal::BadSignature),
            "the previous secret is refused once keep_previous has passed"
        );
    }

    #[test]
    fn two_rotations_within_keep_previous_keep_urls_of_the_first_secret() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing_secret");
        let write = |text: &str| {
            let temp = dir.path().join("next");
            std::fs::write(&temp, text).unwrap();
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::rename(&temp, &path).unwrap();
        };
        let secrets = [
            "first-signing-secret-0123456789abcdef0123",
            "second-signing-secret-0123456789abcdef012",
            "third-signing-secret-0123456789abcdef0123",
        ];
        write(secrets[0]);
        let gateway = GatewaySigner::rotating(
            "http://127.0.0.1:9000",
            Secret::new(secrets[0]),
            Some(Secret::new("configured-previous-0123456789abcdef0123")),
            path.clone(),
            Duration::from_secs(3600),
        );
        let k = key("mask/a.png");
        let expires = Utc::now().timestamp() + 600;
        let mut signed =
            vec![gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default())];
        for next in &secrets[1..] {
            write(next);
            gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default());
            std::thread::sleep(crate::secret_file::SETTLE + Duration::from_millis(50));
            signed.push(gateway.sign(SignedMethod::Get, &k, expires, &SignOptions::default()));
        }
        assert!(format!("{gateway:?}").contains("secrets: 4"), "{gateway:?}");
        for (url, secret) in signed.iter().zip(secrets) {
            let (p, q) = split(url);
            assert!(
                gateway.verify("GET", &p, &q, Utc::now()).is_ok(),
                "a URL signed with {secret} during keep_previous"
            );
        }
    }
}
