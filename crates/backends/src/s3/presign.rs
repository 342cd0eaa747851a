//! SigV4 query presigning of one object's URL, binding the headers a signed upload promises.

use std::time::Duration;

use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer};

use crate::signing::{SignOptions, SignedMethod};
use crate::{Error, Result};

/// A presigned URL granting `method` on `path` for `ttl`; for PUT, the content type in
/// `options` is bound (a signed header the upload must send unchanged).
pub(crate) async fn presign(
    s3: &AmazonS3,
    backend: &str,
    method: SignedMethod,
    path: &Path,
    ttl: Duration,
    options: &SignOptions,
) -> Result<String> {
    let mut signed = SignedUrlOptions::new();
    if let Some(ct) = &options.content_type {
        let value = HeaderValue::from_str(ct).map_err(|e| Error::InvalidMetadata {
            name: "content-type".to_string(),
            reason: e.to_string(),
        })?;
        signed = signed.with_signed_header(HeaderName::from_static("content-type"), value);
    }
    if let Some(n) = options.content_length {
        signed = signed.with_signed_header(
            HeaderName::from_static("content-length"),
            HeaderValue::from(n),
        );
    }
    let method = match method {
        SignedMethod::Get => Method::GET,
        SignedMethod::Put => Method::PUT,
        SignedMethod::Head => Method::HEAD,
        SignedMethod::Delete => Method::DELETE,
    };
    let url = s3
        .signed_url_opts(method, path, ttl, &signed)
        .await
        .map_err(|e| Error::from_store(backend, path.as_ref(), e))?;
    Ok(url.to_string())
}
