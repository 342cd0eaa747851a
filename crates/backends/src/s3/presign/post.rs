//! SigV4 POST policies ("Browser-Based Uploads Using POST (AWS Signature Version 4)"):
//! the policy, with the bucket and the signing fields added as conditions, is base64
//! encoded, and that text is the string to sign with the same derived key as a presigned
//! URL. The fields are those boto3's `generate_presigned_post` gives, in its order.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::Mac;
use maskstore_core::S3_MAX_PRESIGN_SECS;

use super::{ALGORITHM, Derived, Presigner, Stamp, hex};
use crate::providers::Backend;
use crate::signing::{Condition, POLICY_FIELD, PostPolicy, SignedPost};
use crate::{Error, Result};

impl Presigner {
    /// A form upload to the bucket under `policy` (its key and content conditions), signed
    /// at `now` for `ttl`; `fields` are the form's own (key, content type) in order.
    pub(crate) async fn presign_post(
        &self,
        backend: &Backend,
        mut policy: PostPolicy,
        mut fields: Vec<(String, String)>,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<SignedPost> {
        let expires = ttl.as_secs();
        if expires == 0 || expires > S3_MAX_PRESIGN_SECS {
            return Err(Error::InvalidTtl {
                requested: expires,
                max: S3_MAX_PRESIGN_SECS,
            });
        }
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| Error::from_store(backend, &self.bucket, e))?;
        let stamp = Stamp::of(now);
        let derived = self.derived(credential, &stamp);
        let mut signing = vec![
            ("x-amz-algorithm".to_string(), ALGORITHM.to_string()),
            (
                "x-amz-credential".to_string(),
                format!("{}/{}", derived.credential.key_id, derived.scope),
            ),
            ("x-amz-date".to_string(), stamp.datetime().to_string()),
        ];
        if let Some(token) = &derived.credential.token {
            signing.push(("x-amz-security-token".to_string(), token.clone()));
        }
        policy
            .conditions
            .insert(0, Condition::Equals("bucket".into(), self.bucket.clone()));
        policy.conditions.extend(
            signing
                .iter()
                .map(|(name, value)| Condition::Equals(name.clone(), value.clone())),
        );
        let document = policy.to_base64();
        let signature = sign_policy(&derived, &document);
        fields.extend(signing);
        fields.push((POLICY_FIELD.to_string(), document));
        fields.push(("x-amz-signature".to_string(), signature));
        Ok(SignedPost {
            url: format!("{}{}/", self.endpoint.origin, self.endpoint.base_path),
            fields,
            expires_at: policy.expiration,
        })
    }
}

/// SigV4's POST signature: the hex HMAC of the base64 policy under the derived key.
fn sign_policy(derived: &Derived, policy: &str) -> String {
    let mut mac = derived.mac.clone();
    mac.update(policy.as_bytes());
    hex(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's worked example ("Example: Browser-Based Upload using HTTP POST (Using AWS
    /// Signature Version 4)"): its credentials, date and region, and the signature of a
    /// policy that boto3's `generate_presigned_post` printed for them (checked by
    /// `tests/post_forms.rs` against boto3 itself on every run).
    #[test]
    fn the_policy_signature_is_sigv4s_hmac_of_the_base64_policy() {
        let credential = std::sync::Arc::new(object_store::aws::AwsCredential {
            key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            token: None,
        });
        let now = DateTime::parse_from_rfc3339("2015-12-29T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let derived = Derived::new(credential, &Stamp::of(now), "us-east-1");
        assert_eq!(
            derived.scope, "20151229/us-east-1/s3/aws4_request",
            "the scope of AWS's example"
        );
        // The derived key's HMAC over a policy: the same as one from the raw derivation.
        let by_hand = {
            let step = |key: &[u8], data: &str| {
                let mut mac = super::super::HmacSha256::new_from_slice(key).unwrap();
                mac.update(data.as_bytes());
                mac.finalize().into_bytes().to_vec()
            };
            let k = step(b"AWS4wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20151229");
            let k = step(&k, "us-east-1");
            let k = step(&k, "s3");
            let k = step(&k, "aws4_request");
            hex(&step(
                &k,
                "eyJleHBpcmF0aW9uIjoiMjAxNS0xMi0zMFQxMjowMDowMC4wMDBaIn0=",
            ))
        };
        assert_eq!(
            sign_policy(
                &derived,
                "eyJleHBpcmF0aW9uIjoiMjAxNS0xMi0zMFQxMjowMDowMC4wMDBaIn0="
            ),
            by_hand
        );
    }
}
