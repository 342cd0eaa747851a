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

    /// AWS's worked example credentials and date ("Example: Browser-Based Upload using HTTP
    /// POST (Using AWS Signature Version 4)"), and the policy and signature botocore's
    /// `S3SigV4PostAuth` (what boto3's `generate_presigned_post` signs with) gave for them,
    /// its clock pinned to that date.
    #[test]
    fn the_policy_signature_is_botocores_for_the_same_policy_and_time() {
        let credential = std::sync::Arc::new(object_store::aws::AwsCredential {
            key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            token: None,
        });
        let now = DateTime::parse_from_rfc3339("2015-12-29T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let derived = Derived::new(credential, &Stamp::of(now), "us-east-1");
        assert_eq!(derived.scope, "20151229/us-east-1/s3/aws4_request");
        let policy = "eyJleHBpcmF0aW9uIjogIjIwMTUtMTItMzBUMTI6MDA6MDAuMDAwWiIsICJjb25kaXRpb25zIjogW3siYnVja2V0IjogInNpZ3Y0ZXhhbXBsZWJ1Y2tldCJ9LCBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwgeyJ4LWFtei1hbGdvcml0aG0iOiAiQVdTNC1ITUFDLVNIQTI1NiJ9LCB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LCB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiJ9XX0=";
        assert_eq!(
            sign_policy(&derived, policy),
            "a004bd07e117f5e0a2b935e63aff531e46e850a2e16bdd056cdd51389a31f80e"
        );
    }
}
