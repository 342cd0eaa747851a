//! GCS's V4 POST policies ("POST Object" of the XML API, policy document V4): the policy,
//! with the bucket and the `x-goog-*` signing fields added as conditions, is base64
//! encoded, and that text is signed with the service account's RSA key
//! (`GOOG4-RSA-SHA256`, RSASSA-PKCS1-v1_5 over SHA-256, hex), as the google-cloud-storage
//! SDK's `generate_signed_post_policy_v4` does.
//!
//! object_store keeps the key it signs URLs with to itself, so the provider reads each
//! version of the `service_account_key` document once more for forms (`key_file.rs`);
//! without one (the metadata server's
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{PostOptions, PostTarget};
    use maskstore_core::KeyPrefix;

    /// A throwaway 2048-bit RSA key made for this test (it signs nothing anywhere else).
    const ACCOUNT: &str = r#"{"client_email": "forms@maskstore-test.iam.gserviceaccount.com", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQCdoRmrSzyWxBXf\n9tEWgl2advvH/cvmq3B1cl3I/FS2iqVnf49PEFC+DJ1h2W6wLQfUh6UEqHFVoprV\nXh4gM9DTGiG9/Ac+2Hqg5021lCO0LikziOhQ2Sx3jHx0z8Pi/DCz9ogO/QpjDPsQ\nzcc0MzBgs4q2ssvxFdxRz3ZgYQ2o824TC2WkGJ6IcBD+g6RFLZZK74qJBVJ2JBlB\ngUwUgiAOsTWawLsoK9P2xtv58LLxfTu/W04d7QhCNLwSDih84IC1hZ5bJ8s8aoHu\ngsmUQiiHepSmMAVsuOkSH0Yrt9SLDrUW/uHAR9LgOT7ZbjJcLDe1yoQrFfAi2TW+\nu+LNsL5xAgMBAAECggEAKBnCXn368X379KilQ50xs+ieICA0Xb/ykaZhLo7m/DNk\nZeKhMiN77wVlim2Wx7IFAm/prrgtcPQ3gJ17e4TDFNlaiSsTKs1G0SVW8yE3PhDa\nQXaMZ3kAY391cAAlHNs8hqPqtClymYVFX96B1YlKPueeG+F7mZ8OmC93tYgrQfYZ\nrX5VSisf/ZVAQQeLgCvjoK8L0KdloPINjiaAmx/XZWqAISFHR4WPNbiO3WOm3R5K\nmvwA6QltckKB5V7FnpcUUoYFUi+EttWXRfTiZ2allUoqttTiW/ve7Seqi1uphaGh\nny02KEe208mZbXQqHiJrYbM4Ff8Sed8GlcodbImQewKBgQDK0YrcY3wx3dWLrT3Y\nHRDO6r5tnJNiSHqdv54tCc9zqbpD3fgJuG/5M23ujwUG54KP8qGWN6nfUGR0MxO1\nlT1fPaOFkWuRKrj6RMJU9KjH7xvOesy2q8R48QN4YWP1+IvB7EESilvDbRJOObys\nxNCGQCRToXM9B+uXW9brgnfuowKBgQDG9iwQ5ScLKU5nGGMIQFn0aOUvM0HhrafJ\nJxBOVQPgRBt45P/Heyj93fvI8Yy5CkqkaO8flLleJzXDxuw3G713G21/Bgz6dQiB\nKtfnerV4Bv8XeOWFBN1kX/33fj4FibAcktsloGiN03cSipZMB6NoH8D8mOk1X+yX\nMgxa4bCT2wKBgQCM87eXlqQ3W74PBmUWjoyh4M5bCxf6k/hzLTpWfpzn+yryA49f\n4ggfnjhmNIr/02EPfUYDScgK5KoLf3vRFFjEmefM6dVh29kWRTbxJ98so+YlR36B\n7Tnr+0O4I6b+yK8IJJLMuc8wL9sq9kFDqLxqsKUOYgPehGScmjzxC4kiFQKBgQCy\nP3W3JTVXgIgnQOfoSo7MsvUw1kEdyJBbXE31f6DbWOkr5C1rL+HHnwqmOhGS7a91\noDUrG/j+ay512U9jB800WjQ86tTRxev6nMGVNpBBmjMLelpWU8ds17sV8dnq6DIJ\nR2BiU1WYSm2RBOwl7WnuLRSeuPelw+yYgFQlT7D8pQKBgQCFsG8sJP62NO+6qtfm\ngGiXsFUjtlVWpSDqFys5Cq7JvjfLcjj7iUvyRN7olAd4j3qzVwfwsb35xFjXiqPw\nNKKOfoz7qsokBrqXv9codKuFTTezekrrFX21FmtIIl7ngw+Ha3QnRSy5YIgLhCbc\nwgyfKW8yV/eOS/C5xm/NAhmTnQ==\n-----END PRIVATE KEY-----\n"}"#;

    /// What the google-cloud-storage SDK's `generate_signed_post_policy_v4` gave with this
    /// key for bucket `pacs-masks`, key `mask/in/${filename}`, conditions
    /// `starts-with $key mask/in/` and `content-length-range 1 10`, its clock pinned to
    /// 2026-12-07T03:00:00Z and 600 s.
    const SDK_POLICY: &str = "eyJjb25kaXRpb25zIjpbWyJzdGFydHMtd2l0aCIsIiRrZXkiLCJtYXNrL2luLyJdLFsiY29udGVudC1sZW5ndGgtcmFuZ2UiLDEsMTBdLHsiYnVja2V0IjoicGFjcy1tYXNrcyJ9LHsia2V5IjoibWFzay9pbi8ke2ZpbGVuYW1lfSJ9LHsieC1nb29nLWRhdGUiOiIyMDI2MTIwN1QwMzAwMDBaIn0seyJ4LWdvb2ctY3JlZGVudGlhbCI6ImZvcm1zQG1hc2tzdG9yZS10ZXN0LmlhbS5nc2VydmljZWFjY291bnQuY29tLzIwMjYxMjA3L2F1dG8vc3RvcmFnZS9nb29nNF9yZXF1ZXN0In0seyJ4LWdvb2ctYWxnb3JpdGhtIjoiR09PRzQtUlNBLVNIQTI1NiJ9XSwiZXhwaXJhdGlvbiI6IjIwMjYtMTItMDdUMDM6MTA6MDBaIn0=";
    const SDK_SIGNATURE: &str = "4b97289530f0bed33ca08d109b2d34bfde189faec8912fefbaf145d9d081fb9a47b60e4e5f1021b08144d3ce6cf8fe9f2efff181c936829709df21117cd969181f19f5fc213969b9bf51b623994678fd5fdd5077b7d1ab5348fc5ab743b35b02f158f6efc66ffcc05a42ae1dc07fda41f704a3efdb71a07f14ac83d8d9af26a746930c82f219f6b51e1e768810196a5b8e00edf19f6ee237e778dee9c96a13d2639313d913e499741bf736153ef45ae2f559fa3623466ab0b2a909ecb5089902e74123d6a48283de4cd0e192eda49856e90e97c945728fa20f7d0f104b643fc67da5e5a737e1d121e84eb59bf4a3e26a06e8f2c8c06553fd3e323f6a0500d1a7";

    #[test]
    fn the_policy_signature_is_the_google_sdks_for_the_same_policy_and_key() {
        let key = PostKey::from_service_account(ACCOUNT).unwrap();
        assert_eq!(key.sign(SDK_POLICY).unwrap(), SDK_SIGNATURE);
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn the_fields_are_the_google_sdks_and_the_policy_holds_its_conditions() {
        let key = PostKey::from_service_account(ACCOUNT);
        let now = DateTime::parse_from_rfc3339("2026-12-07T03:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let target = PostTarget::Prefix(KeyPrefix::parse("mask/in/").unwrap());
        let options = PostOptions {
            length: Some(1..=10),
            ..PostOptions::default()
        };
        let policy = PostPolicy::for_upload(
            now + Duration::from_secs(600),
            &target,
            "mask/in/${filename}",
            &options,
        );
        let fields = vec![("key".to_string(), "mask/in/${filename}".to_string())];
        let backend = Backend::of(maskstore_core::Provider::Gcs);
        let target = ("https://storage.googleapis.com", "pacs-masks");
        let signed = sign_post(
            &key,
            &backend,
            target,
            policy,
            fields,
            now,
            Duration::from_secs(600),
        )
        .unwrap();
        assert_eq!(signed.url, "https://storage.googleapis.com/pacs-masks/");
        let field = |name: &str| {
            signed
                .fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(field("x-goog-algorithm"), Some("GOOG4-RSA-SHA256"));
        assert_eq!(
            field("x-goog-credential"),
            Some(
                "forms@maskstore-test.iam.gserviceaccount.com/20261207/auto/storage/goog4_request"
            )
        );
        assert_eq!(field("x-goog-date"), Some("20261207T030000Z"));
        let document = field("policy").unwrap();
        let read = PostPolicy::from_base64(document).unwrap();
        let sdk = PostPolicy::from_base64(SDK_POLICY).unwrap();
        assert_eq!(read.expiration, sdk.expiration);
        for condition in &read.conditions {
            assert!(
                sdk.conditions.contains(condition),
                "{condition:?} is not the SDK's"
            );
        }
        assert_eq!(
            field("x-goog-signature"),
            Some(key.unwrap().sign(document).unwrap().as_str())
        );
        // Without a key: refused with the reason.
        let none = Err("no service account key is configured".to_string());
        let policy = PostPolicy::for_upload(
            now,
            &PostTarget::Prefix(KeyPrefix::parse("mask/").unwrap()),
            "mask/${filename}",
            &options,
        );
        let got = sign_post(
            &none,
            &backend,
            target,
            policy,
            vec![],
            now,
            Duration::from_secs(60),
        );
        assert!(matches!(got, Err(Error::Unsupported { .. })), "{got:?}");
    }
}
