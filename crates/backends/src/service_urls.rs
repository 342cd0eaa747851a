//! Signed URLs that the cloud service itself verifies (S3 SigV4, Azure SAS, GCS V4): each
//! provider's signer implements [`ServiceSigner`], and the facade asks it what it binds.

use std::time::Duration;

use chrono::{DateTime, Utc};

use object_store::path::Path;

use crate::Result;
use crate::providers::Backend;
use crate::signing::{PostPolicy, SignOptions, SignedMethod, SignedPost};

/// A URL the service verifies, and the headers the client must send with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceUrl {
    /// The URL.
    pub url: String,
    /// Headers the request must carry besides the bound content type (Azure's
    /// `x-ms-blob-type`, S3's `x-amz-checksum-sha256`).
    pub headers: Vec<(String, String)>,
}

/// Issues a provider's signed URLs.
#[async_trait::async_trait]
pub(crate) trait ServiceSigner: Send + Sync {
    /// Whether a PUT URL can bind the upload's `Content-Type` and length, so that the
    /// service refuses another (GCS V4: yes; Azure SAS: no, a SAS signs neither).
    fn binds_upload_headers(&self) -> bool;

    /// Whether a PUT URL can bind the upload's SHA-256, so that the service refuses an
    /// altered body (S3 signs `x-amz-checksum-sha256`; Azure and GCS verify no SHA-256).
    fn binds_upload_sha256(&self) -> bool;

    /// A URL granting `method` on `path` for `ttl` from `now` (a signer whose library reads
    /// the clock itself starts from its own reading); `options` are bound only as far as
    /// the signer says it binds them (the caller refuses the rest).
    async fn sign(
        &self,
        backend: &Backend,
        method: SignedMethod,
        path: &Path,
        now: DateTime<Utc>,
        ttl: Duration,
        options: &SignOptions,
    ) -> Result<ServiceUrl>;

    /// Whether the service takes browser form uploads under a signed POST policy (S3 and
    /// GCS: yes; Azure Blob Storage has no such upload).
    fn signs_post_policy(&self) -> bool;

    /// Whether a POST policy can bind the file's SHA-256 so the service refuses another
    /// (no service documents a SHA-256 form field it verifies).
    fn binds_post_sha256(&self) -> bool;

    /// A form upload under `policy` (the key and content conditions), whose own `fields`
    /// (key, content type) come first; the signer adds its signing conditions and fields.
    /// A service without form uploads refuses ([`crate::Error::Unsupported`]).
    async fn sign_post(
        &self,
        backend: &Backend,
        policy: PostPolicy,
        fields: Vec<(String, String)>,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<SignedPost>;
}
