//! Signed URLs that the cloud service itself verifies (Azure SAS, GCS V4), issued through
//! object_store's [`Signer`](object_store::signer::Signer) of each provider.

use std::time::Duration;

use object_store::path::Path;

use crate::Result;
use crate::providers::Backend;
use crate::signing::{SignOptions, SignedMethod};

/// A URL the service verifies, and the headers the client must send with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceUrl {
    /// The URL.
    pub url: String,
    /// Headers the request must carry besides the bound ones (Azure's `x-ms-blob-type`).
    pub headers: Vec<(String, String)>,
}

/// Issues a provider's signed URLs.
#[async_trait::async_trait]
pub(crate) trait ServiceSigner: Send + Sync {
    /// Whether a PUT URL can bind the upload's `Content-Type` and length, so that the
    /// service refuses another (GCS V4: yes; Azure SAS: no, a SAS signs neither).
    fn binds_upload_headers(&self) -> bool;

    /// A URL granting `method` on `path` for `ttl`; `options` are bound only when
    /// [`ServiceSigner::binds_upload_headers`] (the caller refuses them otherwise).
    async fn sign(
        &self,
        backend: &Backend,
        method: SignedMethod,
        path: &Path,
        ttl: Duration,
        options: &SignOptions,
    ) -> Result<ServiceUrl>;
}
