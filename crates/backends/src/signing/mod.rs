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
//!
//! This module holds the URL value types every provider signs with; `gateway.rs` the
//! gateway's HMAC signer and the rotation of its secret; `query.rs` the limits and the
//! reading of a gateway URL's query. The development secret of the local provider is the
//! local provider's (`local/dev_secret.rs`).

mod gateway;
mod post;
mod query;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use maskstore_core::ObjectKey;

use crate::checksum::ContentSha256;

pub use gateway::{GatewaySigner, MAX_PREVIOUS_SECRETS, random_secret};
pub use post::{
    Condition, ContentTypeRule, FILE_FIELD, FILENAME_PLACEHOLDER, GATEWAY_SHA256_FIELD,
    GATEWAY_SIGNATURE_FIELD, MAX_POLICY_BYTES, MAX_POLICY_CONDITIONS, POLICY_FIELD, PostOptions,
    PostPolicy, PostTarget, SignedPost,
};
pub use query::{MAX_QUERY_BYTES, MAX_QUERY_PARAMS, QueryLimit, check_query_limits};

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
/// The path below the public URL that browser forms post to (S3 posts to the bucket).
pub const FORM_PATH: &str = "/o";

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
        let methods = [
            SignedMethod::Get,
            SignedMethod::Put,
            SignedMethod::Head,
            SignedMethod::Delete,
        ];
        methods
            .into_iter()
            .find(|method| method.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a method a signed URL can grant; use get, put, head or delete"
                )
            })
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
