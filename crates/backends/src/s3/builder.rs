//! The `s3` provider: object_store's `AmazonS3` configured from `[object_storage]`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use maskstore_core::{Config, Origin};
use object_store::CredentialProvider;
use object_store::aws::{
    AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsCredential, S3ConditionalPut,
};

use crate::secret_file::{SETTLE, SecretFiles, rotated};

use super::presign::{Endpoint, Presigner};
use super::secrets_manager::{ForbiddenWatch, SecretsManager, SecretsManagerCredentials};
use crate::{Error, Result};

/// Builds the S3 client, and the presigner of its URLs (same endpoint, same credential
/// provider). Credentials come from the config when given, else from the standard AWS
/// chain (environment, web identity, ECS, instance metadata).
pub(crate) fn build(config: &Config) -> Result<(AmazonS3, Presigner)> {
    let os = &config.object_storage;
    let mut builder = match &os.access_key {
        // Explicit keys: ignore AWS_* variables so they cannot mix with the config's.
        Some(_) => AmazonS3Builder::new(),
        None => AmazonS3Builder::from_env(),
    };
    builder = builder
        .with_bucket_name(os.bucket_name.clone().unwrap_or_default())
        .with_region(os.region.clone().unwrap_or_default())
        .with_virtual_hosted_style_request(os.virtual_hosted_style)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        // object_store retries a bulk DeleteObjects whose 200 answer merely contains
        // "InternalError" or "SlowDown", and that answer lists the deleted keys: a key
        // named so could never be deleted. Single DELETEs (20 in flight) have no body to
        // scan, and every engine has them.
        .with_disable_bulk_delete(true)
        .with_client_options(crate::http_client::client_options(os))
        .with_retry(crate::http_client::retry_config(os))
        .with_http_connector(crate::http_client::GuardedConnector::new(
            crate::http_client::Wire::S3,
        ));
    if let Some(endpoint) = &os.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let (Some(access_key), Some(secret_key)) = (&os.access_key, &os.secret_key) {
        builder = builder
            .with_access_key_id(access_key)
            .with_secret_access_key(secret_key.expose());
        if let Some(token) = &os.session_token {
            builder = builder.with_token(token.expose());
        }
        let forbidden = Arc::new(AtomicBool::new(false));
        if let Some(rotating) = FileCredentials::of(config, Arc::clone(&forbidden)) {
            // The client's requests and the presigner ask this one provider.
            builder = builder
                .with_credentials(Arc::new(rotating))
                .with_http_connector(ForbiddenWatch::new(forbidden));
        } else if let Some(secret_id) = os
            .secret_source
            .as_deref()
            .and_then(|s| s.strip_prefix(maskstore_core::config::SECRETS_MANAGER_SCHEME))
        {
            let source = SecretsManager::new(secret_id, os.region.as_deref())
                .map_err(|problem| secret_source_error(config, secret_id, problem))?;
            let credential = AwsCredential {
                key_id: access_key.clone(),
                secret_key: secret_key.expose().to_string(),
                token: os.session_token.as_ref().map(|t| t.expose().to_string()),
            };
            let refresh = Duration::from_secs(os.secret_refresh_secs.max(1));
            builder = builder
                .with_credentials(Arc::new(SecretsManagerCredentials::new(
                    source,
                    credential,
                    refresh,
                    Arc::clone(&forbidden),
                )))
                .with_http_connector(ForbiddenWatch::new(forbidden));
        }
    }
    // S3's own checksum header on every PUT and part, which the engine verifies on
    // receipt; maskstore's whole-object checksum goes in the metadata besides.
    builder = match os.checksum {
        maskstore_core::ChecksumAlgorithm::Sha256 => {
            builder.with_checksum_algorithm(object_store::aws::Checksum::SHA256)
        }
        maskstore_core::ChecksumAlgorithm::Crc64Nvme => {
            builder.with_checksum_algorithm(object_store::aws::Checksum::CRC64NVME)
        }
        maskstore_core::ChecksumAlgorithm::None => builder,
    };
    let config_error = |problem: String| Error::Config {
        key: "object_storage".to_string(),
        origin: config
            .origin("object_storage.provider")
            .cloned()
            .unwrap_or(Origin::Default),
        problem,
        fix: "check bucket_name, region and endpoint".to_string(),
    };
    let (region, bucket_endpoint) = bucket_endpoint(&builder);
    let unsigned = body_is_protected(&bucket_endpoint, os.checksum);
    let s3 = builder
        .with_unsigned_payload(unsigned)
        .build()
        .map_err(|e| config_error(format!("the S3 client could not be built: {e}")))?;
    let endpoint = Endpoint::parse(&bucket_endpoint)
        .map_err(|e| config_error(format!("the bucket's URL cannot be presigned: {e}")))?;
    let presigner = Presigner::new(
        s3.credentials().clone(),
        &region,
        endpoint,
        os.bucket_name.as_deref().unwrap_or_default(),
    );
    Ok((s3, presigner))
}

/// The error of a Secrets Manager secret that cannot be read or reached.
pub(crate) fn secret_source_error(config: &Config, secret_id: &str, problem: String) -> Error {
    Error::Config {
        key: "object_storage.secret_source".to_string(),
        origin: config
            .origin("object_storage.secret_source")
            .cloned()
            .unwrap_or(Origin::Default),
        problem: format!("cannot read the AWS Secrets Manager secret {secret_id}: {problem}"),
        fix: SECRET_SOURCE_FIX.to_string(),
    }
}

/// What to check when the secret of `secret_source` cannot be read.
pub(crate) const SECRET_SOURCE_FIX: &str = "check the secret id, that the AWS credentials (AWS_* variables, web identity or instance role) may secretsmanager:GetSecretValue on it, its region, and AWS_ENDPOINT_URL_SECRETS_MANAGER for an endpoint other than AWS's";

/// Whether a request body needs no SHA-256 in its signature (`UNSIGNED-PAYLOAD`, as
/// OpenDAL and the AWS SDKs send over TLS): the body is protected anyway when it travels
/// over TLS (`https`), when a SHA-256 of it travels in the signed `x-amz-checksum-sha256`
/// header (which S3 verifies), or when it never leaves this machine (a loopback endpoint).
/// Otherwise (plain HTTP to another host with a CRC or no checksum, which an attacker on
/// the path could forge) object_store keeps hashing every body into the signature. The
/// hash costs 8 % of a 1 MiB PUT to SeaweedFS here (BENCHMARKS.md, issue 18).
fn body_is_protected(bucket_url: &str, checksum: maskstore_core::ChecksumAlgorithm) -> bool {
    let Ok(url) = url::Url::parse(bucket_url) else {
        return false;
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    url.scheme() == "https" || loopback || checksum == maskstore_core::ChecksumAlgorithm::Sha256
}

/// The region and the bucket's URL as object_store derives them from `builder` (whose
/// settings include the AWS_* variables it read), so that presigned URLs address the
/// same host and path as the client's own requests.
fn bucket_endpoint(builder: &AmazonS3Builder) -> (String, String) {
    let get = |key| builder.get_config_value(&key);
    let bucket = get(AmazonS3ConfigKey::Bucket).unwrap_or_default();
    let region = get(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".to_string());
    let virtual_hosted = get(AmazonS3ConfigKey::VirtualHostedStyleRequest)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let endpoint = get(AmazonS3ConfigKey::S3Endpoint).or(get(AmazonS3ConfigKey::Endpoint));
    let url = match (endpoint, virtual_hosted) {
        (Some(endpoint), true) => endpoint,
        (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
        (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
    };
    (region, url)
}

/// Which part of a credential a watched file holds.
#[derive(Debug, Clone, Copy)]
enum Part {
    AccessKey,
    SecretKey,
    SessionToken,
}

/// Static keys whose parts given as files are re-read when the files change: the next
/// request after a rotation signs with the new key, without a restart. A change is taken
/// once it has held for [`SETTLE`], or at once after S3 answered 403 when every file changed
/// (the old key may be gone: waiting cannot help; half a pair would sign nothing); a storm
/// of 403s reads the files early at most once per [`SETTLE`].
struct FileCredentials {
    files: SecretFiles,
    parts: Vec<Part>,
    current: RwLock<Arc<AwsCredential>>,
    /// Set by a 403 from S3 ([`ForbiddenWatch`]).
    forbidden: Arc<AtomicBool>,
    /// When a 403 last made the files be read at once.
    last_urgent: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for FileCredentials {
    // Names the files, never the values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCredentials")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl FileCredentials {
    /// The provider for `config`'s keys, when any part of them came from a file.
    fn of(config: &Config, forbidden: Arc<AtomicBool>) -> Option<FileCredentials> {
        let os = &config.object_storage;
        let watched: Vec<(Part, PathBuf)> = [
            (Part::AccessKey, &os.access_key_file),
            (Part::SecretKey, &os.secret_key_file),
            (Part::SessionToken, &os.session_token_file),
        ]
        .into_iter()
        .filter_map(|(part, file)| file.clone().map(|f| (part, f)))
        .collect();
        if watched.is_empty() {
            return None;
        }
        let credential = AwsCredential {
            key_id: os.access_key.clone()?,
            secret_key: os.secret_key.as_ref()?.expose().to_string(),
            token: os.session_token.as_ref().map(|t| t.expose().to_string()),
        };
        let (parts, paths) = watched.into_iter().unzip();
        Some(FileCredentials {
            files: SecretFiles::new("s3_credentials", paths),
            parts,
            current: RwLock::new(Arc::new(credential)),
            forbidden,
            last_urgent: Mutex::new(None),
        })
    }

    /// Whether a 403 makes the files be read at once now: one was seen, and the last
    /// such read is [`SETTLE`] old.
    fn urgent(&self, now: Instant) -> bool {
        let mut last = self.last_urgent.lock().expect("credential lock");
        if !self.forbidden.load(Ordering::SeqCst) || last.is_some_and(|l| now < l + SETTLE) {
            return false;
        }
        self.forbidden.store(false, Ordering::SeqCst);
        *last = Some(now);
        true
    }

    /// The credential in use, after adopting a settled change of the files.
    fn credential(&self, now: Instant) -> Arc<AwsCredential> {
        // Half of a pair being written is never taken early: the old pair may still work.
        let refused = self.forbidden.load(Ordering::SeqCst);
        let settle = if refused && self.files.all_changed() && self.urgent(now) {
            Duration::ZERO
        } else {
            SETTLE
        };
        if let Some(values) = self.files.poll_settled(now, settle) {
            let mut current = self.current.write().expect("credential lock");
            let mut next = AwsCredential {
                key_id: current.key_id.clone(),
                secret_key: current.secret_key.clone(),
                token: current.token.clone(),
            };
            for (part, value) in self.parts.iter().zip(values) {
                match part {
                    Part::AccessKey => next.key_id = value,
                    Part::SecretKey => next.secret_key = value,
                    Part::SessionToken => next.token = Some(value),
                }
            }
            if next != **current {
                *current = Arc::new(next);
                rotated(self.files.name(), self.files.paths());
            }
        }
        Arc::clone(&self.current.read().expect("credential lock"))
    }
}

#[async_trait::async_trait]
impl CredentialProvider for FileCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        Ok(self.credential(Instant::now()))
    }
}

#[cfg(test)]
mod payload_tests {
    use super::body_is_protected;
    use maskstore_core::ChecksumAlgorithm as A;

    #[test]
    fn a_body_is_left_out_of_the_signature_only_where_something_else_protects_it() {
        for (url, checksum, unsigned) in [
            (
                "https://bucket.s3.eu-west-1.amazonaws.com",
                A::Crc64Nvme,
                true,
            ),
            ("https://s3.example.org/bucket", A::None, true),
            ("http://127.0.0.1:8333/bucket", A::Crc64Nvme, true),
            ("http://[::1]:8333/bucket", A::None, true),
            ("http://localhost:9000/bucket", A::Crc64Nvme, true),
            ("http://minio.internal:9000/bucket", A::Sha256, true),
            // Plain HTTP to another host with a forgeable CRC or nothing: signed.
            ("http://minio.internal:9000/bucket", A::Crc64Nvme, false),
            ("http://10.0.0.7:9000/bucket", A::None, false),
            ("http://localhost.evil.example/bucket", A::Crc64Nvme, false),
            ("not a url", A::Crc64Nvme, false),
        ] {
            assert_eq!(
                body_is_protected(url, checksum),
                unsigned,
                "{url} {checksum:?}"
            );
        }
    }
}

#[cfg(test)]
mod file_credential_tests {
    use super::*;
    use maskstore_core::Secret;

    use crate::secret_file::testing::rotate as write;

    #[test]
    fn after_a_403_half_a_rotated_pair_is_not_taken_at_once() {
        // An operator writes the new access key, then the new secret. A 403 in between
        // (a bucket policy refusing one key, say) must not sign with the new id and the old
        // secret: the old pair still works until the whole new one is there or settled.
        let dir = tempfile::tempdir().unwrap();
        let (id_path, secret_path) = (dir.path().join("id"), dir.path().join("secret"));
        write(&id_path, "AKIAOLD");
        write(&secret_path, "old-secret");
        let mut config = Config::s3("masks", "us-east-1")
            .unwrap()
            .with_credentials("AKIAOLD", Secret::new("old-secret"));
        config.object_storage.access_key_file = Some(id_path.clone());
        config.object_storage.secret_key_file = Some(secret_path.clone());
        let forbidden = Arc::new(AtomicBool::new(false));
        let files = FileCredentials::of(&config, Arc::clone(&forbidden)).unwrap();
        let t0 = Instant::now();
        write(&id_path, "AKIANEW");
        forbidden.store(true, Ordering::SeqCst);
        let used = files.credential(t0);
        assert_eq!(
            (used.key_id.as_str(), used.secret_key.as_str()),
            ("AKIAOLD", "old-secret"),
            "half a pair"
        );
        // The secret follows: the whole new pair is taken at once.
        write(&secret_path, "new-secret");
        forbidden.store(true, Ordering::SeqCst);
        let used = files.credential(t0 + SETTLE / 10);
        assert_eq!(
            (used.key_id.as_str(), used.secret_key.as_str()),
            ("AKIANEW", "new-secret")
        );
    }

    #[test]
    fn after_a_403_a_changed_key_file_is_read_at_once_at_most_once_per_settle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret_key");
        write(&path, "first");
        let mut config = Config::s3("masks", "us-east-1")
            .unwrap()
            .with_credentials("AKIA", Secret::new("first"));
        config.object_storage.secret_key_file = Some(path.clone());
        let forbidden = Arc::new(AtomicBool::new(false));
        let files = FileCredentials::of(&config, Arc::clone(&forbidden)).unwrap();
        let t0 = Instant::now();
        write(&path, "second");
        assert_eq!(files.credential(t0).secret_key, "first", "not settled yet");
        // S3 refused the key: the change is taken at once, before it settled.
        forbidden.store(true, Ordering::SeqCst);
        assert_eq!(files.credential(t0).secret_key, "second");
        // Refused again within SETTLE (a storm): the files wait for their schedule.
        write(&path, "third");
        let soon = t0 + SETTLE / 4;
        forbidden.store(true, Ordering::SeqCst);
        assert_eq!(files.credential(soon).secret_key, "second");
        assert_eq!(files.credential(soon).secret_key, "second");
        // SETTLE after the last urgent read, a 403 reads at once again.
        let later = t0 + SETTLE;
        assert_eq!(files.credential(later).secret_key, "third");
        assert!(!forbidden.load(Ordering::SeqCst), "the 403 was acted on");
    }
}
