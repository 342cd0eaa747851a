//! Signed URLs: the provider's own, or the gateway's.

use std::sync::Arc;

use chrono::Utc;

use maskstore_core::ObjectKey;

use super::{Capabilities, Storage};
use crate::layers::instrumented::Measured;
use crate::monitor::Outcome;
use crate::service_urls::ServiceSigner;
use crate::signing::{GatewaySigner, SignOptions, SignedMethod, SignedUrl};
use crate::types::WriteOptions;
use crate::{Error, Result};

/// The gateway's signer, and whether its secret dies with the process.
pub(crate) struct Gateway {
    pub(crate) signer: GatewaySigner,
    pub(crate) ephemeral: bool,
}

/// Who signs URLs for a storage.
#[derive(Clone)]
pub(crate) enum UrlSigner {
    /// URLs the provider's service verifies itself (S3 SigV4, Azure SAS, GCS V4).
    Service(Arc<dyn ServiceSigner>),
    /// maskstore's HMAC URLs, served by the gateway.
    Gateway(Arc<Gateway>),
    /// A storage built from a bare object_store, without a gateway signer.
    None,
}

impl UrlSigner {
    /// The gateway's URLs, signed by `signer` (`ephemeral`: its secret dies with the
    /// process).
    pub(crate) fn gateway(signer: GatewaySigner, ephemeral: bool) -> UrlSigner {
        UrlSigner::Gateway(Arc::new(Gateway { signer, ephemeral }))
    }
}

impl Storage {
    /// This storage, issuing gateway URLs with `signer` (for wrappers and tests that serve
    /// a storage built with [`Storage::from_object_store`] through the gateway).
    pub fn with_gateway_signer(mut self, signer: GatewaySigner) -> Storage {
        self.urls = UrlSigner::gateway(signer, false);
        self
    }

    /// The signer of gateway URLs, for the gateway that verifies them; `None` on S3.
    pub fn gateway_signer(&self) -> Option<&GatewaySigner> {
        match &self.urls {
            UrlSigner::Gateway(gateway) => Some(&gateway.signer),
            _ => None,
        }
    }

    /// A URL granting `method` on `key` for `ttl_secs` seconds (none: the configured
    /// default; above the maximum: [`Error::InvalidTtl`], never clamped).
    ///
    /// On S3 it is a SigV4 presigned URL; on local and memory a gateway URL. For PUT, a
    /// bound content type and length make any other upload fail (403), and a bound SHA-256
    /// makes an altered body fail (S3: 400 `BadDigest`; gateway: 400, the upload aborted);
    /// on other methods they are refused here ([`Error::InvalidMetadata`]), as a promise
    /// no server keeps.
    pub async fn signed_url(
        &self,
        method: SignedMethod,
        key: &ObjectKey,
        ttl_secs: Option<u64>,
        options: &SignOptions,
    ) -> Result<SignedUrl> {
        let started = std::time::Instant::now();
        let result = self.sign(method, key, ttl_secs, options).await;
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::of_kind(e.kind()),
        };
        self.recorder.finish(Measured::Sign, outcome, started);
        result
    }

    async fn sign(
        &self,
        method: SignedMethod,
        key: &ObjectKey,
        ttl_secs: Option<u64>,
        options: &SignOptions,
    ) -> Result<SignedUrl> {
        let path = self.path(key)?;
        let ttl = self.ttl.resolve(ttl_secs)?;
        let capabilities = self.capabilities();
        let bound_by_extension =
            default_put_binding(method, key, options).filter(|_| capabilities.binds_upload_headers);
        let options = bound_by_extension.as_ref().unwrap_or(options);
        self.check_bindings(method, options, capabilities)?;
        let now = Utc::now();
        let expires_at = now + ttl;
        let (url, service_headers) = match &self.urls {
            UrlSigner::Service(signer) => {
                let signed = signer
                    .sign(&self.backend, method, &path, now, ttl, options)
                    .await?;
                (signed.url, signed.headers)
            }
            UrlSigner::Gateway(gateway) => {
                let url = gateway
                    .signer
                    .sign(method, key, expires_at.timestamp(), options);
                (url, Vec::new())
            }
            UrlSigner::None => {
                return Err(Error::Unsupported {
                    backend: self.backend.to_string(),
                    operation: "sign URLs".to_string(),
                    detail: "this storage was built from a bare object_store; give it a gateway signer with with_gateway_signer".to_string(),
                });
            }
        };
        let mut headers = Vec::new();
        if let Some(ct) = &options.content_type {
            headers.push(("Content-Type".to_string(), ct.clone()));
        }
        headers.extend(service_headers);
        Ok(SignedUrl {
            url,
            method,
            expires_at,
            headers,
        })
    }

    /// Refuses bindings no server would keep: any on a method other than PUT, and those
    /// this storage's URLs cannot sign.
    fn check_bindings(
        &self,
        method: SignedMethod,
        options: &SignOptions,
        capabilities: Capabilities,
    ) -> Result<()> {
        if let Some(ct) = &options.content_type {
            WriteOptions::content_type(ct.clone()).validate()?;
        }
        if method != SignedMethod::Put {
            // A bound header is a promise about an upload; on another method no server
            // would keep it, so the URL would promise what it does not hold.
            let bound = [
                ("content-type", options.content_type.is_some()),
                ("content-length", options.content_length.is_some()),
                ("sha256", options.sha256.is_some()),
            ];
            if let Some((name, _)) = bound.iter().find(|(_, set)| *set) {
                return Err(Error::InvalidMetadata {
                    name: name.to_string(),
                    reason: format!(
                        "only a PUT URL binds what the upload sends; sign {method} without it, or sign put"
                    ),
                });
            }
        }
        if !capabilities.binds_upload_headers
            && (options.content_type.is_some() || options.content_length.is_some())
        {
            return Err(Error::Unsupported {
                backend: self.backend.to_string(),
                operation: "bind a signed URL to a content type or length".to_string(),
                detail: "its signed URLs cannot sign request headers (an Azure SAS binds the \
                         blob, the method and the expiry only); sign the URL without \
                         content_type and content_length, and check uploads after they land"
                    .to_string(),
            });
        }
        if options.sha256.is_some() && !capabilities.binds_upload_sha256 {
            // Azure and GCS verify an upload's MD5 or CRC, never a SHA-256 the URL could sign:
            // a URL that claimed the binding would let an altered body land.
            return Err(Error::Unsupported {
                backend: self.backend.to_string(),
                operation: "bind a signed URL to a SHA-256".to_string(),
                detail: "the service verifies no SHA-256 a signed URL could bind; sign the \
                         URL without sha256 and check the upload after it lands \
                         (maskstore verify)"
                    .to_string(),
            });
        }
        Ok(())
    }
}

/// A PUT URL for a key with a mask extension (`.png`, `.nii.gz`, …) and no bound content
/// type binds the format's type, so the holder cannot store `text/html` or an SVG under a
/// mask's name.
fn default_put_binding(
    method: SignedMethod,
    key: &ObjectKey,
    options: &SignOptions,
) -> Option<SignOptions> {
    if method != SignedMethod::Put || options.content_type.is_some() {
        return None;
    }
    let format = maskstore_core::MaskFormat::for_key(key.as_str())?;
    Some(SignOptions {
        content_type: Some(format.content_type().to_string()),
        ..options.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_put_url_for_a_mask_key_binds_its_format_unless_told_otherwise() {
        let storage = Storage::memory();
        let sign = |key: &str, content_type: Option<&str>| {
            let storage = storage.clone();
            let key = ObjectKey::parse(key).unwrap();
            let options = SignOptions {
                content_type: content_type.map(str::to_string),
                content_length: None,
                sha256: None,
            };
            async move {
                storage
                    .signed_url(SignedMethod::Put, &key, None, &options)
                    .await
                    .unwrap()
            }
        };
        let png = sign("mask/a/seg.png", None).await;
        assert!(
            png.url.contains("x-maskstore-content-type=image%2Fpng"),
            "{}",
            png.url
        );
        assert_eq!(
            png.headers,
            vec![("Content-Type".to_string(), "image/png".to_string())]
        );
        let nifti = sign("mask/a/seg.nii.gz", None).await;
        assert!(nifti.url.contains("application%2Fgzip"), "{}", nifti.url);
        // An explicit type wins; keys without a mask extension and other methods bind none.
        let chosen = sign("mask/a/seg.png", Some("application/octet-stream")).await;
        assert!(
            chosen.url.contains("application%2Foctet-stream"),
            "{}",
            chosen.url
        );
        let other = sign("mask/a/notes.bin", None).await;
        assert!(!other.url.contains("content-type"), "{}", other.url);
        let get = storage
            .signed_url(
                SignedMethod::Get,
                &ObjectKey::parse("mask/a/seg.png").unwrap(),
                None,
                &SignOptions::default(),
            )
            .await
            .unwrap();
        assert!(!get.url.contains("content-type"), "{}", get.url);
    }

    /// The headers a signed PUT tells the client to send, per signer, as they were when the
    /// facade added S3's SHA-256 headers itself: the bound content type first, then the
    /// signer's own (Azure's blob type; S3's checksum and the checksum metadata it signs).
    #[tokio::test]
    async fn each_signer_asks_for_the_headers_it_asked_for() {
        use maskstore_core::{Config, Secret};
        let s3 = Storage::connect(
            &Config::s3("pacs-masks-dev", "us-east-1")
                .unwrap()
                .with_credentials("AKIDEXAMPLE", Secret::new("wJalrXUtnFEMI/K7MDENG")),
        )
        .unwrap();
        let azure = Storage::connect(
            &Config::azure("pacsmasks", "pacs-masks")
                .unwrap()
                .with_account_key(Secret::new("YW4tYXp1cmUtYWNjb3VudC1rZXktb2YtMzItYnl0ZXM=")),
        )
        .unwrap();
        let memory = Storage::memory();
        let key = ObjectKey::parse("mask/a/seg.png").unwrap();
        let digest = crate::ContentSha256::of(b"pixels");
        let with_sha = SignOptions {
            sha256: Some(digest),
            ..SignOptions::default()
        };
        let header = |name: &str, value: String| (name.to_string(), value);
        let png = || header("Content-Type", "image/png".to_string());

        let signed = s3
            .signed_url(SignedMethod::Put, &key, Some(60), &with_sha)
            .await
            .unwrap();
        assert_eq!(
            signed.headers,
            vec![
                png(),
                header("x-amz-checksum-sha256", digest.base64()),
                header(
                    &format!("x-amz-meta-{}", crate::checksum::CHECKSUM_METADATA),
                    digest.stored()
                ),
            ]
        );
        let plain = s3
            .signed_url(SignedMethod::Put, &key, Some(60), &SignOptions::default())
            .await
            .unwrap();
        assert_eq!(plain.headers, vec![png()]);
        let remaining = (signed.expires_at - Utc::now()).num_seconds();
        assert!((55..=60).contains(&remaining), "{remaining}");

        let signed = memory
            .signed_url(SignedMethod::Put, &key, None, &with_sha)
            .await
            .unwrap();
        assert_eq!(signed.headers, vec![png()]);

        // An Azure SAS binds no header: no default type, only the blob type it needs.
        let signed = azure
            .signed_url(SignedMethod::Put, &key, None, &SignOptions::default())
            .await
            .unwrap();
        assert_eq!(
            signed.headers,
            vec![header("x-ms-blob-type", "BlockBlob".to_string())]
        );
        for (storage, options) in [(&azure, &with_sha), (&s3, &with_sha), (&memory, &with_sha)] {
            let got = storage
                .signed_url(SignedMethod::Get, &key, None, options)
                .await;
            assert!(
                matches!(got, Err(Error::InvalidMetadata { .. })),
                "{}: {got:?}",
                storage.backend()
            );
        }
        let got = azure
            .signed_url(SignedMethod::Put, &key, None, &with_sha)
            .await;
        assert!(matches!(got, Err(Error::Unsupported { .. })), "{got:?}");
    }
}
