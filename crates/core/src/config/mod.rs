//! Configuration: the keys of the deployment guide, their layers, and their validation.
//!
//! Layers, later wins: built-in defaults → `config/default.toml` →
//! `config/<environment>.toml` → environment variables `APP_<SECTION>__<KEY>`
//! (`APP_OBJECT_STORAGE__BUCKET_NAME`, `APP_SIGNED_URL__MAX_TTL`, …). An empty value, in a
//! file or the environment, counts as unset. This module is pure: the caller reads the
//! files and the environment and hands their contents to [`ConfigLoader`]
//! (`maskstore_backends::load_config` does that).
//!
//! Sections other than maskstore's are ignored (the application keeps its own settings in
//! the same files); an unknown key inside a maskstore section is an error, so a typo
//! cannot silently fall back to a default.
//!
//! Every key is declared once, in `schema.rs`: its name, kind, default and meaning, and the
//! field it fills. Code that needs a config without files builds it with the typed
//! constructors: [`Config::memory`], [`Config::local`], [`Config::s3`] and the `with_*`
//! setters.
//!
//! ```
//! use maskstore_core::{Config, Secret};
//! let config = Config::s3("pacs-masks-dev", "us-east-1")?
//!     .with_endpoint("http://127.0.0.1:8333")?
//!     .with_credentials("AKIAEXAMPLE", Secret::new("s3cr3t"))
//!     .with_max_retries(4);
//! assert_eq!(config.object_storage.max_retries, 4);
//! # Ok::<(), maskstore_core::Error>(())
//! ```

mod constructors;
mod loader;
mod schema;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::{KeyPrefix, Secret, TtlPolicy};

pub use loader::{ConfigLoader, SECRETS_MANAGER_SCHEME, SecretFileRequest, SecretSourceRequest};
pub use schema::{MAX_TRANSFERS, env_var_name, is_secret_env_var};
pub use validate::MIN_SIGNING_SECRET_BYTES;

/// The prefix of every environment variable maskstore reads.
pub const ENV_PREFIX: &str = "APP_";
/// The environment variable naming the environment (`development`, `production`, …).
pub const ENV_ENVIRONMENT: &str = "APP_ENV";
/// The environment variable naming a `.env` file to read instead of `./.env`.
pub const ENV_ENV_FILE: &str = "APP_ENV_FILE";
/// The environment used when none is named.
pub const DEFAULT_ENVIRONMENT: &str = "development";

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// maskstore's built-in default.
    Default,
    /// A configuration file.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, by name.
    Flag(String),
    /// Code: a typed constructor or setter such as [`Config::s3`].
    Code,
    /// A file holding a secret, named by a `*_file` key; the value is never shown.
    SecretFile(PathBuf),
    /// A secret of AWS Secrets Manager, by id (`object_storage.secret_source`); the value
    /// is never shown.
    SecretsManager(String),
    /// A line of a `.env` file (`.env` in the working directory, `--env-file`,
    /// `APP_ENV_FILE`).
    EnvFile {
        /// The file, as it was named (`.env` for the default).
        path: PathBuf,
        /// The line the key is set on, from 1.
        line: usize,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Code => f.write_str("set in code"),
            Origin::SecretFile(path) => write!(f, "secret file {}", path.display()),
            Origin::SecretsManager(id) => write!(f, "AWS Secrets Manager secret {id}"),
            Origin::EnvFile { path, line } => write!(f, "{} line {line}", path.display()),
        }
    }
}

/// The storage backend a config selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// AWS S3 or an S3-compatible engine (SeaweedFS, MinIO, Ceph, R2).
    S3,
    /// A folder on local disk.
    Local,
    /// Process memory; gone when the process ends.
    Memory,
    /// Azure Blob Storage (or Azurite): a container in a storage account.
    Azure,
    /// Google Cloud Storage (or fake-gcs-server): a bucket.
    Gcs,
}

impl Provider {
    /// Every provider, as spelled in the config.
    pub const ALL: [Provider; 5] = [
        Provider::S3,
        Provider::Local,
        Provider::Memory,
        Provider::Azure,
        Provider::Gcs,
    ];

    /// The name used in the config (`s3`, `local`, `memory`, `azure`, `gcs`).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::S3 => "s3",
            Provider::Local => "local",
            Provider::Memory => "memory",
            Provider::Azure => "azure",
            Provider::Gcs => "gcs",
        }
    }

    /// Whether the provider is a cloud service reached over HTTP (s3, azure, gcs), whose
    /// signed URLs the service itself verifies: no gateway is needed.
    pub fn is_remote(self) -> bool {
        match self {
            Provider::S3 | Provider::Azure | Provider::Gcs => true,
            Provider::Local | Provider::Memory => false,
        }
    }

    /// The known provider names, comma-separated, for error messages.
    pub fn known() -> String {
        Provider::ALL.map(Provider::as_str).join(", ")
    }
}

/// A new provider is a compile error here until it has a place in [`Provider::ALL`].
#[cfg(test)]
mod every_provider {
    use super::Provider;

    #[test]
    fn provider_all_lists_every_provider_once() {
        // Exhaustive: a new provider is a compile error here; give it the next index and add
        // it to `Provider::ALL` (which the config parser, `known()` and the docs test read).
        fn index(provider: Provider) -> usize {
            match provider {
                Provider::S3 => 0,
                Provider::Local => 1,
                Provider::Memory => 2,
                Provider::Azure => 3,
                Provider::Gcs => 4,
            }
        }
        let mut seen = vec![0; Provider::ALL.len()];
        for provider in Provider::ALL {
            seen[index(provider)] += 1;
            assert_eq!(provider.as_str().parse::<Provider>(), Ok(provider));
        }
        assert_eq!(seen, vec![1; Provider::ALL.len()]);
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown provider {s:?}; known providers: {}",
                    Provider::known()
                )
            })
    }
}

/// The checksum every write stores with an object and every whole read verifies
/// (`object_storage.checksum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    /// SHA-256: cryptographic, the one S3 presigned uploads can bind.
    Sha256,
    /// CRC-64/NVME: detects corruption (not tampering), several times faster than SHA-256.
    Crc64Nvme,
    /// No checksum: objects are written without one and read unverified.
    None,
}

impl ChecksumAlgorithm {
    /// Every algorithm, as spelled in the config.
    pub const ALL: [ChecksumAlgorithm; 3] = [
        ChecksumAlgorithm::Sha256,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::None,
    ];

    /// The name used in the config and in stored checksums (`sha256`, `crc64nvme`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Sha256 => "sha256",
            ChecksumAlgorithm::Crc64Nvme => "crc64nvme",
            ChecksumAlgorithm::None => "none",
        }
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChecksumAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ChecksumAlgorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown checksum {s:?}; known: sha256, crc64nvme, none"))
    }
}

/// `[object_storage]`: which backend, and how to reach it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ObjectStorageConfig {
    /// `s3`, `local`, `memory`, `azure` or `gcs`.
    pub provider: Provider,
    /// The S3 or GCS bucket (required for `s3` and `gcs`).
    pub bucket_name: Option<String>,
    /// The S3 region (required for `s3`).
    pub region: Option<String>,
    /// An S3-compatible endpoint URL; unset means AWS.
    pub endpoint: Option<String>,
    /// The access key id; unset means the standard AWS credential chain.
    pub access_key: Option<String>,
    /// The secret access key.
    pub secret_key: Option<Secret>,
    /// A session token for temporary credentials.
    pub session_token: Option<Secret>,
    /// The file `access_key` was read from, watched for a rotation.
    pub access_key_file: Option<PathBuf>,
    /// The file `secret_key` was read from, watched for a rotation.
    pub secret_key_file: Option<PathBuf>,
    /// The file `session_token` was read from, watched for a rotation.
    pub session_token_file: Option<PathBuf>,
    /// `aws-secretsmanager:<secret-id>`: the secret `access_key`, `secret_key` and
    /// `session_token` were read from, re-read every `secret_refresh_secs` for a rotation.
    pub secret_source: Option<String>,
    /// Seconds between reads of `secret_source`.
    pub secret_refresh_secs: u64,
    /// The Azure storage account (required for `azure`).
    pub account: Option<String>,
    /// The Azure blob container (required for `azure`).
    pub container: Option<String>,
    /// The Azure storage account key; unset means Azure's credential chain.
    pub account_key: Option<Secret>,
    /// The file `account_key` was read from.
    pub account_key_file: Option<PathBuf>,
    /// The GCS service account key (JSON); unset means Google's application default
    /// credentials.
    pub service_account_key: Option<Secret>,
    /// The file `service_account_key` was read from.
    pub service_account_key_file: Option<PathBuf>,
    /// Whether folder listings drop folders that no longer hold objects
    /// (engines with real directories, like SeaweedFS, keep them). Default: on for a custom
    /// endpoint, off for AWS, which never lists an empty folder.
    pub verify_folders: Option<bool>,
    /// Address buckets as `<bucket>.<endpoint>` (default: path style).
    pub virtual_hosted_style: bool,
    /// Seconds one S3 request may take.
    pub request_timeout_secs: u64,
    /// Seconds to establish a connection to S3.
    pub connect_timeout_secs: u64,
    /// How often a transient failure (S3, Azure, GCS) is retried.
    pub max_retries: u32,
    /// Seconds after which retrying stops.
    pub retry_timeout_secs: u64,
    /// The first wait before a retry; it doubles per retry.
    pub retry_initial_backoff_ms: u64,
    /// The longest wait between retries.
    pub retry_max_backoff_ms: u64,
    /// Copies `sync` runs at once onto this store (the `--to` side's value counts).
    pub transfers: u64,
    /// The folder of the `local` provider.
    pub root: PathBuf,
    /// Whether the `local` provider makes each write durable before acknowledging it.
    pub fsync: bool,
    /// The key prefix every object lives under.
    pub prefix: KeyPrefix,
    /// The checksum stored with every write and verified on whole reads.
    pub checksum: ChecksumAlgorithm,
    /// Whether `verify` fails on objects no checksum can verify (maskstore's own or the
    /// provider's): what a nightly scrub sets.
    pub require_checksum: bool,
    /// Permit provider `memory` in `production`.
    pub allow_memory_in_production: bool,
}

/// `[signed_url]`: lifetimes of signed URLs, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignedUrlConfig {
    /// Lifetime when none is requested.
    pub default_ttl: u64,
    /// The longest lifetime allowed.
    pub max_ttl: u64,
}

impl SignedUrlConfig {
    /// The TTL policy these values define (already validated by the loader).
    pub fn policy(&self) -> TtlPolicy {
        TtlPolicy::new(self.default_ttl, self.max_ttl)
            .expect("SignedUrlConfig is validated when the config is built")
    }
}

/// `[gateway]`: the HTTP server that serves signed URLs of the local and memory providers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// The address `maskstore serve` binds.
    pub listen: String,
    /// The base URL signed URLs point at (unset: `http://<listen>`).
    pub public_url: String,
    /// The HMAC key of signed URLs (required outside development).
    pub signing_secret: Option<Secret>,
    /// Still accepted while a rotation is under way.
    pub previous_signing_secret: Option<Secret>,
    /// The file `signing_secret` was read from; a change to it rotates the secret.
    pub signing_secret_file: Option<PathBuf>,
    /// The file `previous_signing_secret` was read from.
    pub previous_signing_secret_file: Option<PathBuf>,
    /// Where `/metrics` and `/health` are served instead of `listen`, if set.
    pub admin_listen: Option<String>,
    /// Seconds a client has to send a request's headers (and an idle keep-alive limit).
    pub header_timeout_secs: u64,
    /// Seconds an upload body or a download may make no progress.
    pub body_idle_timeout_secs: u64,
    /// Seconds one request may take in all.
    pub request_timeout_secs: u64,
    /// Connections served at once.
    pub max_connections: u64,
    /// The largest upload, in bytes.
    pub max_upload_bytes: u64,
    /// Uploads in progress at once.
    pub max_concurrent_uploads: u64,
    /// Seconds a new connection has to send its first byte.
    pub first_byte_timeout_secs: u64,
    /// Connections one client address may hold (unset: max(8, `max_connections` / 16)).
    pub max_connections_per_client: Option<u64>,
    /// Uploads one client address may have in progress (unset: max(8,
    /// `max_concurrent_uploads` / 8)).
    pub max_uploads_per_client: Option<u64>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
    /// Seconds requests in flight get to finish after a shutdown signal.
    pub shutdown_grace_secs: u64,
}

/// `[cors]`: which browser origins may use signed URLs (defaults from the deployment guide).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CorsConfig {
    /// Origins browsers may use the gateway from.
    pub allowed_origins: Vec<String>,
    /// Methods granted in preflight answers.
    pub allowed_methods: Vec<String>,
    /// Request headers granted.
    pub allowed_headers: Vec<String>,
    /// Response headers a page may read.
    pub expose_headers: Vec<String>,
    /// Seconds a browser may cache a preflight answer.
    pub max_age: u64,
}

/// `[lifecycle]`: the bucket lifecycle rule `maskstore policy lifecycle` prints (defaults
/// from the deployment guide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LifecycleConfig {
    /// Days until Standard-IA (S3 needs at least 30).
    pub transition_ia_days: u64,
    /// Days until Glacier.
    pub transition_glacier_days: u64,
    /// Days after which unfinished uploads are dropped.
    pub abort_incomplete_multipart_days: u64,
}

/// `[monitoring]`: the error-rate alarms of the deployment guide, over a sliding window.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct MonitoringConfig {
    /// Alarm above this share of 4xx-like outcomes.
    pub client_error_rate_alarm: f64,
    /// Alarm above this share of 5xx-like outcomes.
    pub server_error_rate_alarm: f64,
    /// Seconds of history the rates cover.
    pub alarm_window_secs: u64,
    /// No alarm below this many operations in the window.
    pub alarm_min_requests: u64,
    /// The request-surge alarm fires when the recent rate exceeds this many times the
    /// baseline rate.
    pub surge_factor: f64,
    /// No request-surge alarm below this many requests per second.
    pub surge_min_rate: f64,
    /// Seconds of recent requests compared with the rest of the window.
    pub surge_window_secs: u64,
}

/// The validated configuration of maskstore, with the origin of every value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// The environment name (`development`, `staging`, `production`, …).
    pub environment: String,
    /// `[object_storage]`.
    pub object_storage: ObjectStorageConfig,
    /// `[signed_url]`.
    pub signed_url: SignedUrlConfig,
    /// `[gateway]`.
    pub gateway: GatewayConfig,
    /// `[cors]`.
    pub cors: CorsConfig,
    /// `[lifecycle]`.
    pub lifecycle: LifecycleConfig,
    /// `[monitoring]`.
    pub monitoring: MonitoringConfig,
    origins: BTreeMap<String, Origin>,
}

/// One line of [`Config::entries`]: a key, its effective value (secrets redacted) and
/// where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The dotted key (`object_storage.bucket_name`).
    pub key: String,
    /// The environment variable that sets it.
    pub env_var: String,
    /// The effective value, or `None` when unset. Secrets show as `[redacted]`.
    pub value: Option<String>,
    /// Where the value came from.
    pub origin: Origin,
}

impl Config {
    /// The configuration with built-in defaults only: provider `local`, root `./data`.
    pub fn embedded_default() -> Config {
        ConfigLoader::new()
            .build(DEFAULT_ENVIRONMENT, Origin::Default)
            .expect("the built-in defaults are valid")
    }

    /// The TTL policy of `[signed_url]`.
    pub fn ttl_policy(&self) -> TtlPolicy {
        self.signed_url.policy()
    }

    /// Where the value of `key` (dotted, e.g. `object_storage.provider`) came from.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.origins.get(key)
    }

    /// Every key with its effective value and origin, secrets redacted, in schema order.
    pub fn entries(&self) -> Vec<Entry> {
        schema::SCHEMA
            .iter()
            .map(|key| Entry {
                key: key.name().to_string(),
                env_var: key.env_var(),
                value: key.show(self),
                origin: self.origin_of(*key),
            })
            .collect()
    }
}
