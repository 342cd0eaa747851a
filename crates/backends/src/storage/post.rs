//! Browser form uploads: a POST policy the provider's service verifies (S3, GCS), or the
//! gateway's (local, memory); refused with the reason where the provider has none (Azure).

use chrono::Utc;
use maskstore_core::MaskFormat;

use super::Storage;
use super::urls::UrlSigner;
use crate::layers::instrumented::Measured;
use crate::monitor::Outcome;
use crate::signing::{
    Condition, ContentTypeRule, FILENAME_PLACEHOLDER, GATEWAY_SHA256_FIELD,
    GATEWAY_SIGNATURE_FIELD, POLICY_FIELD, PostOptions, PostPolicy, PostTarget, SignedPost,
};
use crate::types::WriteOptions;
use crate::{Error, Result};

impl Storage {
    /// A browser form upload to `target` (one key, or any key below a prefix: the form's
    /// key is then `<prefix>${filename}`) for `ttl_secs` seconds (none: the configured
    /// default; above the maximum: [`Error::InvalidTtl`]), held to `options`.
    ///
    /// The form posts the fields in order, then the file as the field `file`, to the URL.
    /// The server refuses a file outside the length range (S3: 400 `EntityTooLarge`; the
    /// gateway: 400), a key outside the target or another content type (403), and stores
    /// nothing then. A key with a mask extension and no content type rule binds the
    /// format's type, as a signed PUT does. A content type prefix leaves the
    /// `Content-Type` field to the form (it must start with the prefix). Azure has no form
    /// uploads: [`Error::Unsupported`], as is a SHA-256 where the service verifies none.
    pub async fn signed_post(
        &self,
        target: &PostTarget,
        ttl_secs: Option<u64>,
        options: &PostOptions,
    ) -> Result<SignedPost> {
        let started = std::time::Instant::now();
        let result = self.sign_post(target, ttl_secs, options).await;
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::of_kind(e.kind()),
        };
        self.recorder.finish(Measured::Sign, outcome, started);
        result
    }

    async fn sign_post(
        &self,
        target: &PostTarget,
        ttl_secs: Option<u64>,
        options: &PostOptions,
    ) -> Result<SignedPost> {
        let key_field = self.post_key_field(target)?;
        let ttl = self.ttl.resolve(ttl_secs)?;
        let options = post_defaults(target, options);
        self.check_post(target, &options)?;
        let now = Utc::now();
        let expiration = now + ttl;
        let policy = PostPolicy::for_upload(expiration, target, &key_field, &options);
        let mut fields = vec![("key".to_string(), key_field)];
        if let Some(ContentTypeRule::Exact(ct)) = &options.content_type {
            fields.push(("Content-Type".to_string(), ct.clone()));
        }
        match &self.urls {
            UrlSigner::Service(signer) => {
                signer
                    .sign_post(&self.backend, policy, fields, now, ttl)
                    .await
            }
            UrlSigner::Gateway(gateway) => {
                let mut policy = policy;
                if let Some(digest) = &options.sha256 {
                    let digest = digest.hex();
                    policy.conditions.push(Condition::Equals(
                        GATEWAY_SHA256_FIELD.into(),
                        digest.clone(),
                    ));
                    fields.push((GATEWAY_SHA256_FIELD.to_string(), digest));
                }
                let document = policy.to_base64();
                let signature = gateway.signer.sign_policy(&document);
                fields.push((POLICY_FIELD.to_string(), document));
                fields.push((GATEWAY_SIGNATURE_FIELD.to_string(), signature));
                Ok(SignedPost {
                    url: gateway.signer.form_url(),
                    fields,
                    expires_at: expiration,
                })
            }
            UrlSigner::None => Err(Error::Unsupported {
                backend: self.backend.to_string(),
                operation: "sign a browser form upload".to_string(),
                detail: "this storage was built from a bare object_store; give it a gateway \
                         signer with with_gateway_signer"
                    .to_string(),
            }),
        }
    }

    /// The form's `key` field for `target`, which must lie below the configured prefix.
    fn post_key_field(&self, target: &PostTarget) -> Result<String> {
        match target {
            PostTarget::Key(key) => Ok(self.path(key)?.to_string()),
            PostTarget::Prefix(prefix) => {
                if !self.prefix.contains_prefix(prefix) {
                    return Err(Error::InvalidKey {
                        key: prefix.as_str().to_string(),
                        reason: format!(
                            "it lies outside the configured prefix {:?}",
                            self.prefix.as_str()
                        ),
                    });
                }
                Ok(format!("{}{FILENAME_PLACEHOLDER}", prefix.as_str()))
            }
        }
    }

    /// Refuses conditions no server would keep: an empty length range, a content type that
    /// is no header value, a SHA-256 for a prefix or where the service verifies none, and
    /// any form upload where the provider has none.
    fn check_post(&self, target: &PostTarget, options: &PostOptions) -> Result<()> {
        let capabilities = self.capabilities();
        if !capabilities.signs_post_policy {
            // The provider's signer says why in its own words.
            return Ok(());
        }
        if let Some(range) = &options.length
            && range.is_empty()
        {
            return Err(Error::InvalidMetadata {
                name: "content-length-range".to_string(),
                reason: format!(
                    "{}..={} holds no size; give the smallest size first",
                    range.start(),
                    range.end()
                ),
            });
        }
        match &options.content_type {
            Some(ContentTypeRule::Exact(ct)) => {
                WriteOptions::content_type(ct.clone()).validate()?
            }
            Some(ContentTypeRule::Prefix(p)) if p.is_empty() || !is_header_text(p) => {
                return Err(Error::InvalidMetadata {
                    name: "content-type".to_string(),
                    reason: "a content type prefix is printable ASCII, such as image/".to_string(),
                });
            }
            _ => {}
        }
        if options.sha256.is_some() {
            if matches!(target, PostTarget::Prefix(_)) {
                return Err(Error::InvalidMetadata {
                    name: "sha256".to_string(),
                    reason: "a SHA-256 names one file; bind it to one key, not a prefix"
                        .to_string(),
                });
            }
            if !capabilities.binds_post_sha256 {
                return Err(Error::Unsupported {
                    backend: self.backend.to_string(),
                    operation: "bind a form upload to a SHA-256".to_string(),
                    detail: "the service verifies no SHA-256 a POST policy could bind; sign \
                             the form without sha256 and check the upload after it lands \
                             (maskstore verify)"
                        .to_string(),
                });
            }
        }
        Ok(())
    }
}

/// A form to one key with a mask extension and no content type rule binds the format's
/// type, so the holder cannot store `text/html` under a mask's name.
fn post_defaults(target: &PostTarget, options: &PostOptions) -> PostOptions {
    let mut options = options.clone();
    if let (PostTarget::Key(key), None) = (target, &options.content_type)
        && let Some(format) = MaskFormat::for_key(key.as_str())
    {
        options.content_type = Some(ContentTypeRule::Exact(format.content_type().to_string()));
    }
    options
}

fn is_header_text(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b))
}
