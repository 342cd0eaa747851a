//! GCS's V4 POST policies ("POST Object" of the XML API, policy document V4): the policy,
//! with the bucket and the `x-goog-*` signing fields added as conditions, is base64
//! encoded, and that text is signed with the service account's RSA key
//! (`GOOG4-RSA-SHA256`, RSASSA-PKCS1-v1_5 over SHA-256, hex), as the google-cloud-storage
//! SDK's `generate_signed_post_policy_v4` does.
//!
//! object_store keeps the key it signs URLs with to itself, so the provider reads the
//! `service_account_key` document once more for forms; without one (the metadata server's
//! credentials) form uploads are refused with the reason.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use maskstore_core::S3_MAX_PRESIGN_SECS;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

use crate::providers::Backend;
use crate::signing::{Condition, POLICY_FIELD, PostPolicy, SignedPost};
use crate::{Error, Result};

const ALGORITHM: &str = "GOOG4-RSA-SHA256";

/// The service account that signs form policies: its e-mail and RSA key.
pub(crate) struct PostKey {
    email: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for PostKey {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostKey")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl PostKey {
    /// The key of a service account JSON document (`client_email`, `private_key` as PEM
    /// PKCS#8, as the Google Cloud console downloads it); the reason when it is not one.
    pub(crate) fn from_service_account(document: &str) -> std::result::Result<PostKey, String> {
        #[derive(serde::Deserialize)]
        struct Account {
            client_email: String,
            private_key: String,
        }
        let account: Account = serde_json::from_str(document).map_err(|_| {
            "the service account key has no client_email or private_key".to_string()
        })?;
        let body: String = account
            .private_key
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|_| "the service account's private_key is not PEM".to_string())?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|_| {
            "the service account's private_key is not an RSA PKCS#8 key".to_string()
        })?;
        Ok(PostKey {
            email: account.client_email,
            key,
        })
    }

    fn sign(&self, text: &str) -> std::result::Result<String, String> {
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                text.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "the RSA signature failed".to_string())?;
        Ok(signature.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// A V4 form upload to `bucket` at `base` (GCS's address or the endpoint) under `policy`,
/// whose own `fields` come first; signed at `now` for `ttl` with `key`.
pub(crate) fn sign_post(
    key: &std::result::Result<PostKey, String>,
    backend: &Backend,
    target: (&str, &str),
    mut policy: PostPolicy,
    mut fields: Vec<(String, String)>,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<SignedPost> {
    let (base, bucket) = target;
    let key = key.as_ref().map_err(|why| Error::Unsupported {
        backend: backend.to_string(),
        operation: "sign a browser form upload (POST policy)".to_string(),
        detail: format!(
            "a GCS form policy is signed with the service account's own key, and {why}; \
             give object_storage.service_account_key (the JSON key of the service account)"
        ),
    })?;
    if ttl.as_secs() == 0 || ttl.as_secs() > S3_MAX_PRESIGN_SECS {
        return Err(Error::InvalidTtl {
            requested: ttl.as_secs(),
            max: S3_MAX_PRESIGN_SECS,
        });
    }
    let date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let signing = [
        ("x-goog-date", date.clone()),
        (
            "x-goog-credential",
            format!("{}/{}/auto/storage/goog4_request", key.email, &date[..8]),
        ),
        ("x-goog-algorithm", ALGORITHM.to_string()),
    ];
    policy
        .conditions
        .insert(0, Condition::Equals("bucket".into(), bucket.to_string()));
    policy.conditions.extend(
        signing
            .iter()
            .map(|(name, value)| Condition::Equals(name.to_string(), value.clone())),
    );
    let document = policy.to_base64();
    let signature = key.sign(&document).map_err(|why| Error::Unsupported {
        backend: backend.to_string(),
        operation: "sign a browser form upload (POST policy)".to_string(),
        detail: why,
    })?;
    fields.extend(signing.map(|(name, value)| (name.to_string(), value)));
    fields.push((POLICY_FIELD.to_string(), document));
    fields.push(("x-goog-signature".to_string(), signature));
    Ok(SignedPost {
        url: format!("{}/{bucket}/", base.trim_end_matches('/')),
        fields,
        expires_at: policy.expiration,
    })
}
