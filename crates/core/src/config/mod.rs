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

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::ttl::S3_MAX_PRESIGN_SECS;
use crate::{Error, KeyPrefix, Secret, TtlPolicy};

/// The prefix of every environment variable maskstore reads.
pub const ENV_PREFIX: &str = "APP_";
/// The environment variable naming the environment (`development`, `production`, …).
pub const ENV_ENVIRONMENT: &str = "APP_ENV";
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
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
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
}

impl Provider {
    /// Every provider, as spelled in the config.
    pub const ALL: [Provider; 3] = [Provider::S3, Provider::Local, Provider::Memory];

    /// The name used in the config (`s3`, `local`, `memory`).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::S3 => "s3",
            Provider::Local => "local",
            Provider::Memory => "memory",
        }
    }

    /// The known provider names, comma-separated, for error messages.
    pub fn known() -> String {
        Provider::ALL.map(Provider::as_str).join(", ")
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

/// `[object_storage]`: which backend, and how to reach it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ObjectStorageConfig {
    /// `provider`: `s3`, `local` or `memory`.
    pub provider: Provider,
    /// `bucket_name`: the S3 bucket (required for `s3`).
    pub bucket_name: Option<String>,
    /// `region`: the S3 region (required for `s3`).
    pub region: Option<String>,
    /// `endpoint`: an S3-compatible endpoint URL; unset means AWS.
    pub endpoint: Option<String>,
    /// `access_key`: the access key id; unset means the standard AWS credential chain.
    pub access_key: Option<String>,
    /// `secret_key`: the secret access key.
    pub secret_key: Option<Secret>,
    /// `session_token`: a session token for temporary credentials.
    pub session_token: Option<Secret>,
    /// `verify_folders`: whether folder listings drop folders that no longer hold objects
    /// (engines with real directories, like SeaweedFS, keep them). Default: on for a custom
    /// endpoint, off for AWS, which never lists an empty folder.
    pub verify_folders: Option<bool>,
    /// `virtual_hosted_style`: address buckets as `<bucket>.<endpoint>` (default: path style).
    pub virtual_hosted_style: bool,
    /// `request_timeout`: seconds one S3 request may take.
    pub request_timeout_secs: u64,
    /// `connect_timeout`: seconds to establish a connection to S3.
    pub connect_timeout_secs: u64,
    /// `max_retries`: how often a transient S3 failure is retried.
    pub max_retries: u32,
    /// `retry_timeout`: seconds after which retrying stops.
    pub retry_timeout_secs: u64,
    /// `retry_initial_backoff_ms`: the first wait before a retry; it doubles per retry.
    pub retry_initial_backoff_ms: u64,
    /// `retry_max_backoff_ms`: the longest wait between retries.
    pub retry_max_backoff_ms: u64,
    /// `root`: the folder of the `local` provider.
    pub root: PathBuf,
    /// `fsync`: whether the `local` provider makes each write durable before acknowledging it.
    pub fsync: bool,
    /// `prefix`: the key prefix every object lives under (`mask/`).
    pub prefix: KeyPrefix,
    /// `allow_memory_in_production`: permit provider `memory` in `production`.
    pub allow_memory_in_production: bool,
}

/// `[signed_url]`: lifetimes of signed URLs, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignedUrlConfig {
    /// `default_ttl`: lifetime when none is requested (600).
    pub default_ttl: u64,
    /// `max_ttl`: the longest lifetime allowed (3600).
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
    /// `listen`: the address `maskstore serve` binds (`127.0.0.1:9000`).
    pub listen: String,
    /// `public_url`: the base URL signed URLs point at (default `http://<listen>`).
    pub public_url: String,
    /// `signing_secret`: the HMAC key of signed URLs (required outside development).
    pub signing_secret: Option<Secret>,
    /// `previous_signing_secret`: still accepted while a rotation is under way.
    pub previous_signing_secret: Option<Secret>,
}

/// `[cors]`: which browser origins may use signed URLs (defaults from the deployment guide).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CorsConfig {
    /// `allowed_origins`: `http://localhost:3000`, `http://localhost:8080`.
    pub allowed_origins: Vec<String>,
    /// `allowed_methods`: `GET`, `PUT`, `POST`, `DELETE`.
    pub allowed_methods: Vec<String>,
    /// `allowed_headers`: `*`.
    pub allowed_headers: Vec<String>,
    /// `expose_headers`: `ETag`.
    pub expose_headers: Vec<String>,
    /// `max_age`: seconds a browser may cache a preflight answer (3000).
    pub max_age: u64,
}

/// `[lifecycle]`: the bucket lifecycle rule `maskstore policy lifecycle` prints (defaults
/// from the deployment guide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LifecycleConfig {
    /// `transition_ia_days`: days until Standard-IA (90; S3 needs at least 30).
    pub transition_ia_days: u64,
    /// `transition_glacier_days`: days until Glacier (365).
    pub transition_glacier_days: u64,
    /// `abort_incomplete_multipart_days`: days after which unfinished uploads are dropped (7).
    pub abort_incomplete_multipart_days: u64,
}

/// `[monitoring]`: the error-rate alarms of the deployment guide, over a sliding window.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct MonitoringConfig {
    /// `client_error_rate_alarm`: alarm above this share of 4xx-like outcomes (0.05).
    pub client_error_rate_alarm: f64,
    /// `server_error_rate_alarm`: alarm above this share of 5xx-like outcomes (0.01).
    pub server_error_rate_alarm: f64,
    /// `alarm_window`: seconds of history the rates cover (300).
    pub alarm_window_secs: u64,
    /// `alarm_min_requests`: no alarm below this many operations in the window (20).
    pub alarm_min_requests: u64,
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

    /// An in-memory configuration, for tests and examples.
    pub fn memory() -> Config {
        let mut loader = ConfigLoader::new();
        loader
            .set("object_storage.provider", "memory", Origin::Default)
            .expect("known key");
        loader
            .build(DEFAULT_ENVIRONMENT, Origin::Default)
            .expect("the memory config is valid")
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
        let os = &self.object_storage;
        let secret = |s: &Option<Secret>| s.as_ref().map(|s| s.to_string());
        let values: Vec<(&str, Option<String>)> = vec![
            ("object_storage.provider", Some(os.provider.to_string())),
            ("object_storage.bucket_name", os.bucket_name.clone()),
            ("object_storage.region", os.region.clone()),
            ("object_storage.endpoint", os.endpoint.clone()),
            ("object_storage.access_key", os.access_key.clone()),
            ("object_storage.secret_key", secret(&os.secret_key)),
            ("object_storage.session_token", secret(&os.session_token)),
            (
                "object_storage.verify_folders",
                os.verify_folders.map(|b| b.to_string()),
            ),
            (
                "object_storage.virtual_hosted_style",
                Some(os.virtual_hosted_style.to_string()),
            ),
            (
                "object_storage.request_timeout",
                Some(os.request_timeout_secs.to_string()),
            ),
            (
                "object_storage.connect_timeout",
                Some(os.connect_timeout_secs.to_string()),
            ),
            (
                "object_storage.max_retries",
                Some(os.max_retries.to_string()),
            ),
            (
                "object_storage.retry_timeout",
                Some(os.retry_timeout_secs.to_string()),
            ),
            (
                "object_storage.retry_initial_backoff_ms",
                Some(os.retry_initial_backoff_ms.to_string()),
            ),
            (
                "object_storage.retry_max_backoff_ms",
                Some(os.retry_max_backoff_ms.to_string()),
            ),
            ("object_storage.root", Some(os.root.display().to_string())),
            ("object_storage.fsync", Some(os.fsync.to_string())),
            ("object_storage.prefix", Some(os.prefix.to_string())),
            (
                "object_storage.allow_memory_in_production",
                Some(os.allow_memory_in_production.to_string()),
            ),
            (
                "signed_url.default_ttl",
                Some(self.signed_url.default_ttl.to_string()),
            ),
            (
                "signed_url.max_ttl",
                Some(self.signed_url.max_ttl.to_string()),
            ),
            ("gateway.listen", Some(self.gateway.listen.clone())),
            ("gateway.public_url", Some(self.gateway.public_url.clone())),
            (
                "gateway.signing_secret",
                secret(&self.gateway.signing_secret),
            ),
            (
                "gateway.previous_signing_secret",
                secret(&self.gateway.previous_signing_secret),
            ),
            (
                "cors.allowed_origins",
                Some(self.cors.allowed_origins.join(",")),
            ),
            (
                "cors.allowed_methods",
                Some(self.cors.allowed_methods.join(",")),
            ),
            (
                "cors.allowed_headers",
                Some(self.cors.allowed_headers.join(",")),
            ),
            (
                "cors.expose_headers",
                Some(self.cors.expose_headers.join(",")),
            ),
            ("cors.max_age", Some(self.cors.max_age.to_string())),
            (
                "lifecycle.transition_ia_days",
                Some(self.lifecycle.transition_ia_days.to_string()),
            ),
            (
                "lifecycle.transition_glacier_days",
                Some(self.lifecycle.transition_glacier_days.to_string()),
            ),
            (
                "lifecycle.abort_incomplete_multipart_days",
                Some(self.lifecycle.abort_incomplete_multipart_days.to_string()),
            ),
            (
                "monitoring.client_error_rate_alarm",
                Some(self.monitoring.client_error_rate_alarm.to_string()),
            ),
            (
                "monitoring.server_error_rate_alarm",
                Some(self.monitoring.server_error_rate_alarm.to_string()),
            ),
            (
                "monitoring.alarm_window",
                Some(self.monitoring.alarm_window_secs.to_string()),
            ),
            (
                "monitoring.alarm_min_requests",
                Some(self.monitoring.alarm_min_requests.to_string()),
            ),
        ];
        debug_assert_eq!(values.len(), SCHEMA.len());
        values
            .into_iter()
            .map(|(key, value)| Entry {
                key: key.to_string(),
                env_var: env_var_name(key),
                value,
                origin: self.origins.get(key).cloned().unwrap_or(Origin::Default),
            })
            .collect()
    }
}

/// How a key's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Secret,
    Seconds,
    Count,
    Bool,
    List,
    Days,
    Millis,
    Rate,
}

struct KeySpec {
    key: &'static str,
    kind: Kind,
    default: Option<&'static str>,
}

const fn spec(key: &'static str, kind: Kind, default: Option<&'static str>) -> KeySpec {
    KeySpec { key, kind, default }
}

/// Every key maskstore reads, with its kind and default.
const SCHEMA: &[KeySpec] = &[
    spec("object_storage.provider", Kind::Text, Some("local")),
    spec("object_storage.bucket_name", Kind::Text, None),
    spec("object_storage.region", Kind::Text, None),
    spec("object_storage.endpoint", Kind::Text, None),
    spec("object_storage.access_key", Kind::Text, None),
    spec("object_storage.secret_key", Kind::Secret, None),
    spec("object_storage.session_token", Kind::Secret, None),
    spec("object_storage.verify_folders", Kind::Bool, None),
    spec(
        "object_storage.virtual_hosted_style",
        Kind::Bool,
        Some("false"),
    ),
    spec("object_storage.request_timeout", Kind::Seconds, Some("30")),
    spec("object_storage.connect_timeout", Kind::Seconds, Some("5")),
    spec("object_storage.max_retries", Kind::Count, Some("3")),
    spec("object_storage.retry_timeout", Kind::Seconds, Some("60")),
    spec(
        "object_storage.retry_initial_backoff_ms",
        Kind::Millis,
        Some("100"),
    ),
    spec(
        "object_storage.retry_max_backoff_ms",
        Kind::Millis,
        Some("15000"),
    ),
    spec("object_storage.root", Kind::Text, Some("./data")),
    spec("object_storage.fsync", Kind::Bool, Some("true")),
    spec("object_storage.prefix", Kind::Text, Some("mask/")),
    spec(
        "object_storage.allow_memory_in_production",
        Kind::Bool,
        Some("false"),
    ),
    spec("signed_url.default_ttl", Kind::Seconds, Some("600")),
    spec("signed_url.max_ttl", Kind::Seconds, Some("3600")),
    spec("gateway.listen", Kind::Text, Some("127.0.0.1:9000")),
    spec("gateway.public_url", Kind::Text, None),
    spec("gateway.signing_secret", Kind::Secret, None),
    spec("gateway.previous_signing_secret", Kind::Secret, None),
    spec(
        "cors.allowed_origins",
        Kind::List,
        Some("http://localhost:3000,http://localhost:8080"),
    ),
    spec(
        "cors.allowed_methods",
        Kind::List,
        Some("GET,PUT,POST,DELETE"),
    ),
    spec("cors.allowed_headers", Kind::List, Some("*")),
    spec("cors.expose_headers", Kind::List, Some("ETag")),
    spec("cors.max_age", Kind::Seconds, Some("3000")),
    spec("lifecycle.transition_ia_days", Kind::Days, Some("90")),
    spec("lifecycle.transition_glacier_days", Kind::Days, Some("365")),
    spec(
        "lifecycle.abort_incomplete_multipart_days",
        Kind::Days,
        Some("7"),
    ),
    spec(
        "monitoring.client_error_rate_alarm",
        Kind::Rate,
        Some("0.05"),
    ),
    spec(
        "monitoring.server_error_rate_alarm",
        Kind::Rate,
        Some("0.01"),
    ),
    spec("monitoring.alarm_window", Kind::Seconds, Some("300")),
    spec("monitoring.alarm_min_requests", Kind::Count, Some("20")),
];

fn sections() -> Vec<&'static str> {
    let mut out: Vec<&str> = SCHEMA
        .iter()
        .map(|s| s.key.split_once('.').expect("dotted").0)
        .collect();
    out.dedup();
    out
}

fn known_keys_of(section: &str) -> String {
    SCHEMA
        .iter()
        .filter_map(|s| s.key.strip_prefix(section)?.strip_prefix('.'))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The environment variable for a dotted key: `object_storage.max_ttl` →
/// `APP_OBJECT_STORAGE__MAX_TTL`.
pub fn env_var_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replacen('.', "__", 1).to_uppercase())
}

/// A raw value before its kind is applied.
#[derive(Debug, Clone)]
enum Raw {
    Text(String),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Text(s) => write!(f, "{s:?}"),
            Raw::Int(i) => write!(f, "{i}"),
            Raw::Bool(b) => write!(f, "{b}"),
            Raw::List(items) => write!(f, "{items:?}"),
        }
    }
}

/// Collects configuration layers, later wins, and builds a validated [`Config`].
///
/// ```
/// use maskstore_core::config::{ConfigLoader, Origin, Provider};
/// let mut loader = ConfigLoader::new();
/// loader.add_toml(Origin::File("config/default.toml".into()),
///     "[object_storage]\nprovider = \"memory\"\n").unwrap();
/// loader.add_env([("APP_SIGNED_URL__MAX_TTL".to_string(), "1800".to_string())]).unwrap();
/// let config = loader.build("development", Origin::Default).unwrap();
/// assert_eq!(config.object_storage.provider, Provider::Memory);
/// assert_eq!(config.signed_url.max_ttl, 1800);
/// ```
#[derive(Debug, Default)]
pub struct ConfigLoader {
    values: BTreeMap<&'static str, (Raw, Origin)>,
}

impl ConfigLoader {
    /// A loader holding only the built-in defaults.
    pub fn new() -> Self {
        ConfigLoader::default()
    }

    /// Adds the contents of a TOML file as a layer.
    pub fn add_toml(&mut self, origin: Origin, text: &str) -> Result<(), Error> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            Error::config(
                "(file)",
                &origin,
                format!("not valid TOML: {}", e.message()),
                "fix the syntax at the position shown, or remove the file",
            )
        })?;
        for section in sections() {
            let Some(value) = table.get(section) else {
                continue;
            };
            let Some(entries) = value.as_table() else {
                return Err(Error::config(
                    section,
                    &origin,
                    "is not a table",
                    format!("write it as a [{section}] section"),
                ));
            };
            for (name, value) in entries {
                let key = format!("{section}.{name}");
                let spec = lookup(&key).ok_or_else(|| unknown_key(&key, section, &origin))?;
                let raw = match value {
                    toml::Value::String(s) => Raw::Text(s.clone()),
                    toml::Value::Integer(i) => Raw::Int(*i),
                    toml::Value::Boolean(b) => Raw::Bool(*b),
                    toml::Value::Array(items) if spec.kind == Kind::List => {
                        let texts: Option<Vec<String>> = items
                            .iter()
                            .map(|v| v.as_str().map(str::to_string))
                            .collect();
                        Raw::List(texts.ok_or_else(|| {
                            Error::config(
                                &key,
                                &origin,
                                "the list holds something other than strings",
                                "write a list of strings, such as [\"GET\", \"PUT\"]",
                            )
                        })?)
                    }
                    other => {
                        return Err(Error::config(
                            &key,
                            &origin,
                            format!("a {} is not allowed here", other.type_str()),
                            "give a string, a whole number, true/false, or a list of strings",
                        ));
                    }
                };
                self.insert(spec.key, raw, origin.clone());
            }
        }
        Ok(())
    }

    /// Adds environment variables as a layer. Only `APP_<SECTION>__<KEY>` variables of
    /// maskstore's sections are read; others are ignored.
    pub fn add_env<I>(&mut self, vars: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let sections = sections();
        let mut vars: Vec<(String, String)> = vars.into_iter().collect();
        vars.sort();
        for (var, value) in vars {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, name)) = rest.split_once("__") else {
                continue;
            };
            let section = section.to_lowercase();
            if !sections.contains(&section.as_str()) {
                continue;
            }
            let key = format!("{section}.{}", name.to_lowercase());
            let origin = Origin::Env(var.clone());
            let spec = lookup(&key).ok_or_else(|| {
                let section = sections
                    .iter()
                    .find(|s| **s == section)
                    .copied()
                    .unwrap_or_default();
                unknown_key(&key, section, &origin)
            })?;
            self.insert(spec.key, Raw::Text(value), origin);
        }
        Ok(())
    }

    /// Sets one key from a string, as a layer of its own (for flags and tests).
    pub fn set(&mut self, key: &str, value: &str, origin: Origin) -> Result<(), Error> {
        let section = key.split_once('.').map(|(s, _)| s).unwrap_or(key);
        let spec = lookup(key).ok_or_else(|| unknown_key(key, section, &origin))?;
        self.insert(spec.key, Raw::Text(value.to_string()), origin);
        Ok(())
    }

    fn insert(&mut self, key: &'static str, raw: Raw, origin: Origin) {
        // An empty value counts as unset: it neither sets nor overrides.
        if matches!(&raw, Raw::Text(s) if s.is_empty()) {
            return;
        }
        self.values.insert(key, (raw, origin));
    }

    /// Applies the defaults, converts every value and validates the whole.
    ///
    /// `environment` is the environment name; `environment_origin` says where it came from.
    pub fn build(self, environment: &str, environment_origin: Origin) -> Result<Config, Error> {
        check_environment_name(environment, &environment_origin)?;
        let mut r = Reader {
            values: self.values,
            origins: BTreeMap::new(),
        };
        let provider_text = r.text("object_storage.provider")?.expect("has default");
        let provider = provider_text.parse::<Provider>().map_err(|problem| {
            Error::config(
                "object_storage.provider",
                r.origin("object_storage.provider"),
                problem,
                "set object_storage.provider (APP_OBJECT_STORAGE__PROVIDER) to one of them",
            )
        })?;
        let prefix_text = r.text("object_storage.prefix")?.expect("has default");
        let prefix = KeyPrefix::parse(prefix_text.clone()).map_err(|e| {
            Error::config(
                "object_storage.prefix",
                r.origin("object_storage.prefix"),
                format!("{prefix_text:?} is not a valid key prefix ({e})"),
                "give one or more folder names ending with '/', such as mask/",
            )
        })?;
        let object_storage = ObjectStorageConfig {
            provider,
            bucket_name: r.text("object_storage.bucket_name")?,
            region: r.text("object_storage.region")?,
            endpoint: r.text("object_storage.endpoint")?,
            access_key: r.text("object_storage.access_key")?,
            secret_key: r.text("object_storage.secret_key")?.map(Secret::new),
            session_token: r.text("object_storage.session_token")?.map(Secret::new),
            verify_folders: r.optional_boolean("object_storage.verify_folders")?,
            virtual_hosted_style: r.boolean("object_storage.virtual_hosted_style")?,
            request_timeout_secs: r.seconds("object_storage.request_timeout")?,
            connect_timeout_secs: r.seconds("object_storage.connect_timeout")?,
            max_retries: r.count("object_storage.max_retries")?,
            retry_timeout_secs: r.seconds("object_storage.retry_timeout")?,
            retry_initial_backoff_ms: r
                .number("object_storage.retry_initial_backoff_ms", "milliseconds")?,
            retry_max_backoff_ms: r
                .number("object_storage.retry_max_backoff_ms", "milliseconds")?,
            root: PathBuf::from(r.text("object_storage.root")?.expect("has default")),
            fsync: r.boolean("object_storage.fsync")?,
            prefix,
            allow_memory_in_production: r.boolean("object_storage.allow_memory_in_production")?,
        };
        let signed_url = SignedUrlConfig {
            default_ttl: r.seconds("signed_url.default_ttl")?,
            max_ttl: r.seconds("signed_url.max_ttl")?,
        };
        let listen = r.text("gateway.listen")?.expect("has default");
        let gateway = GatewayConfig {
            public_url: r
                .text("gateway.public_url")?
                .unwrap_or_else(|| format!("http://{listen}")),
            listen,
            signing_secret: r.text("gateway.signing_secret")?.map(Secret::new),
            previous_signing_secret: r.text("gateway.previous_signing_secret")?.map(Secret::new),
        };
        let cors = CorsConfig {
            allowed_origins: r.list("cors.allowed_origins")?,
            allowed_methods: r.list("cors.allowed_methods")?,
            allowed_headers: r.list("cors.allowed_headers")?,
            expose_headers: r.list("cors.expose_headers")?,
            max_age: r.seconds("cors.max_age")?,
        };
        let lifecycle = LifecycleConfig {
            transition_ia_days: r.days("lifecycle.transition_ia_days")?,
            transition_glacier_days: r.days("lifecycle.transition_glacier_days")?,
            abort_incomplete_multipart_days: r.days("lifecycle.abort_incomplete_multipart_days")?,
        };
        let monitoring = MonitoringConfig {
            client_error_rate_alarm: r.rate("monitoring.client_error_rate_alarm")?,
            server_error_rate_alarm: r.rate("monitoring.server_error_rate_alarm")?,
            alarm_window_secs: r.seconds("monitoring.alarm_window")?,
            alarm_min_requests: r.number("monitoring.alarm_min_requests", "requests")?,
        };
        let mut origins = r.origins;
        origins.insert("environment".to_string(), environment_origin.clone());
        let config = Config {
            environment: environment.to_string(),
            object_storage,
            signed_url,
            gateway,
            cors,
            lifecycle,
            monitoring,
            origins,
        };
        validate(&config)?;
        Ok(config)
    }
}

fn lookup(key: &str) -> Option<&'static KeySpec> {
    SCHEMA.iter().find(|s| s.key == key)
}

fn unknown_key(key: &str, section: &str, origin: &Origin) -> Error {
    Error::config(
        key,
        origin,
        "is not a maskstore setting",
        format!(
            "check the spelling; the keys of [{section}] are: {}",
            known_keys_of(section)
        ),
    )
}

fn check_environment_name(name: &str, origin: &Origin) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            "environment",
            origin,
            format!("{name:?} is not a valid environment name"),
            "use lowercase letters, digits, '-' and '_' (it names config/<environment>.toml)",
        ))
    }
}

/// Reads typed values out of the merged layers, recording each value's origin.
struct Reader {
    values: BTreeMap<&'static str, (Raw, Origin)>,
    origins: BTreeMap<String, Origin>,
}

impl Reader {
    fn raw(&mut self, key: &'static str) -> Option<(Raw, Origin)> {
        let spec = lookup(key).expect("reader asks only for schema keys");
        let (raw, origin) = match self.values.get(key) {
            Some((raw, origin)) => (raw.clone(), origin.clone()),
            None => (Raw::Text(spec.default?.to_string()), Origin::Default),
        };
        self.origins.insert(key.to_string(), origin.clone());
        Some((raw, origin))
    }

    fn origin(&self, key: &str) -> &Origin {
        self.origins.get(key).unwrap_or(&Origin::Default)
    }

    fn text(&mut self, key: &'static str) -> Result<Option<String>, Error> {
        let Some((raw, origin)) = self.raw(key) else {
            return Ok(None);
        };
        match raw {
            Raw::Text(s) => Ok(Some(s)),
            other => {
                let what = if lookup(key).map(|s| s.kind) == Some(Kind::Secret) {
                    "a non-string value".to_string()
                } else {
                    other.to_string()
                };
                Err(Error::config(
                    key,
                    &origin,
                    format!("{what} is not text"),
                    "quote the value",
                ))
            }
        }
    }

    fn number(&mut self, key: &'static str, unit: &str) -> Result<u64, Error> {
        let (raw, origin) = self.raw(key).expect("numeric keys have defaults");
        let parsed = match &raw {
            Raw::Int(i) => u64::try_from(*i).ok(),
            Raw::Text(s) => s.trim().parse::<u64>().ok(),
            Raw::Bool(_) | Raw::List(_) => None,
        };
        parsed.ok_or_else(|| {
            Error::config(
                key,
                &origin,
                format!("{raw} is not a whole number of {unit}"),
                format!("give a non-negative whole number of {unit}, such as 600"),
            )
        })
    }

    /// A list: a TOML array of strings, or comma-separated text (as in environment
    /// variables). Blank items are dropped.
    fn list(&mut self, key: &'static str) -> Result<Vec<String>, Error> {
        let (raw, origin) = self.raw(key).expect("list keys have defaults");
        let items = match raw {
            Raw::List(items) => items,
            Raw::Text(text) => text.split(',').map(str::to_string).collect(),
            other => {
                return Err(Error::config(
                    key,
                    &origin,
                    format!("{other} is not a list"),
                    "give a list of strings, or comma-separated text",
                ));
            }
        };
        Ok(items
            .into_iter()
            .map(|item| item.trim().to_string())
            .filter(|item| !item.is_empty())
            .collect())
    }

    fn seconds(&mut self, key: &'static str) -> Result<u64, Error> {
        self.number(key, "seconds")
    }

    /// A share between 0 (exclusive) and 1 (inclusive), such as 0.05.
    fn rate(&mut self, key: &'static str) -> Result<f64, Error> {
        let (raw, origin) = self.raw(key).expect("rate keys have defaults");
        let parsed = match &raw {
            Raw::Text(s) => s.trim().parse::<f64>().ok(),
            Raw::Int(i) => Some(*i as f64),
            _ => None,
        };
        match parsed {
            Some(rate) if rate > 0.0 && rate <= 1.0 => Ok(rate),
            _ => Err(Error::config(
                key,
                &origin,
                format!("{raw} is not a share between 0 and 1"),
                "give a fraction such as 0.05 for 5 %",
            )),
        }
    }

    fn days(&mut self, key: &'static str) -> Result<u64, Error> {
        self.number(key, "days")
    }

    fn count(&mut self, key: &'static str) -> Result<u32, Error> {
        let n = self.number(key, "retries")?;
        u32::try_from(n).map_err(|_| {
            Error::config(
                key,
                self.origin(key),
                format!("{n} is far too many"),
                "use a small number such as 3",
            )
        })
    }

    fn boolean(&mut self, key: &'static str) -> Result<bool, Error> {
        Ok(self
            .optional_boolean(key)?
            .expect("boolean keys read with boolean() have defaults"))
    }

    fn optional_boolean(&mut self, key: &'static str) -> Result<Option<bool>, Error> {
        let Some((raw, origin)) = self.raw(key) else {
            return Ok(None);
        };
        match &raw {
            Raw::Bool(b) => Ok(Some(*b)),
            Raw::Text(s) if s.eq_ignore_ascii_case("true") || s == "1" => Ok(Some(true)),
            Raw::Text(s) if s.eq_ignore_ascii_case("false") || s == "0" => Ok(Some(false)),
            _ => Err(Error::config(
                key,
                &origin,
                format!("{raw} is not true or false"),
                "give true or false",
            )),
        }
    }
}

fn validate(config: &Config) -> Result<(), Error> {
    let os = &config.object_storage;
    let origin = |key: &str| config.origin(key).cloned().unwrap_or(Origin::Default);
    let provider_origin = origin("object_storage.provider");

    if let Some(bucket) = &os.bucket_name {
        check_bucket_name(bucket).map_err(|problem| {
            Error::config(
                "object_storage.bucket_name",
                &origin("object_storage.bucket_name"),
                format!("{bucket:?} is not a bucket name S3 accepts: {problem}"),
                "use 3-63 lowercase letters, digits, '-' and '.', such as pacs-masks-prod",
            )
        })?;
    }
    if let Some(endpoint) = &os.endpoint {
        check_endpoint(endpoint).map_err(|problem| {
            Error::config(
                "object_storage.endpoint",
                &origin("object_storage.endpoint"),
                format!("{:?} {problem}", without_userinfo(endpoint)),
                "give an http:// or https:// URL such as http://127.0.0.1:8333, or leave it empty for AWS",
            )
        })?;
    }
    if let Some(region) = &os.region
        && !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(Error::config(
            "object_storage.region",
            &origin("object_storage.region"),
            format!("{region:?} is not a region name"),
            "give a region such as us-east-1 or ap-northeast-2",
        ));
    }
    if os.provider == Provider::S3 {
        if os.bucket_name.is_none() {
            return Err(Error::config(
                "object_storage.bucket_name",
                &provider_origin,
                "is required when provider = \"s3\"",
                "set bucket_name in [object_storage] or APP_OBJECT_STORAGE__BUCKET_NAME",
            ));
        }
        if os.region.is_none() {
            return Err(Error::config(
                "object_storage.region",
                &provider_origin,
                "is required when provider = \"s3\"",
                "set region (the bucket's region, e.g. us-east-1) in [object_storage] or APP_OBJECT_STORAGE__REGION",
            ));
        }
    }
    match (&os.access_key, &os.secret_key) {
        (Some(_), None) => {
            return Err(Error::config(
                "object_storage.secret_key",
                &origin("object_storage.access_key"),
                "is missing while access_key is set",
                "set both access_key and secret_key, or neither to use the AWS credential chain",
            ));
        }
        (None, Some(_)) => {
            return Err(Error::config(
                "object_storage.access_key",
                &origin("object_storage.secret_key"),
                "is missing while secret_key is set",
                "set both access_key and secret_key, or neither to use the AWS credential chain",
            ));
        }
        _ => {}
    }
    for key in [
        "object_storage.request_timeout",
        "object_storage.connect_timeout",
    ] {
        let value = match key {
            "object_storage.request_timeout" => os.request_timeout_secs,
            _ => os.connect_timeout_secs,
        };
        if value == 0 {
            return Err(Error::config(
                key,
                &origin(key),
                "a timeout of 0 seconds would fail every request",
                "give at least 1 second",
            ));
        }
    }

    let su = &config.signed_url;
    for (key, value) in [
        ("signed_url.default_ttl", su.default_ttl),
        ("signed_url.max_ttl", su.max_ttl),
    ] {
        if value == 0 {
            return Err(Error::config(
                key,
                &origin(key),
                "a TTL of 0 makes every signed URL expire at once",
                "give at least 1 second (the guide uses default_ttl = 600, max_ttl = 3600)",
            ));
        }
    }
    if su.max_ttl > S3_MAX_PRESIGN_SECS {
        return Err(Error::config(
            "signed_url.max_ttl",
            &origin("signed_url.max_ttl"),
            format!(
                "{} s is above S3's presign ceiling of {S3_MAX_PRESIGN_SECS} s (7 days)",
                su.max_ttl
            ),
            format!("give at most {S3_MAX_PRESIGN_SECS}"),
        ));
    }
    if su.default_ttl > su.max_ttl {
        return Err(Error::config(
            "signed_url.default_ttl",
            &origin("signed_url.default_ttl"),
            format!(
                "{} s is above max_ttl ({} s, {})",
                su.default_ttl,
                su.max_ttl,
                origin("signed_url.max_ttl")
            ),
            "lower default_ttl or raise max_ttl",
        ));
    }

    if os.provider == Provider::Memory
        && config.environment == "production"
        && !os.allow_memory_in_production
    {
        return Err(Error::config(
            "object_storage.provider",
            &provider_origin,
            "provider \"memory\" in environment \"production\" would lose every mask on restart",
            "use provider s3, or set allow_memory_in_production = true if that is really intended",
        ));
    }
    validate_gateway(config)?;
    validate_lifecycle(config)
}

fn validate_lifecycle(config: &Config) -> Result<(), Error> {
    let origin = |key: &str| config.origin(key).cloned().unwrap_or(Origin::Default);
    let lc = &config.lifecycle;
    if lc.transition_ia_days < 30 {
        return Err(Error::config(
            "lifecycle.transition_ia_days",
            &origin("lifecycle.transition_ia_days"),
            format!(
                "{} days is below S3's 30-day minimum for Standard-IA",
                lc.transition_ia_days
            ),
            "give 30 or more (the guide uses 90)",
        ));
    }
    if lc.transition_glacier_days <= lc.transition_ia_days {
        return Err(Error::config(
            "lifecycle.transition_glacier_days",
            &origin("lifecycle.transition_glacier_days"),
            format!(
                "{} days is not after the Standard-IA transition ({} days)",
                lc.transition_glacier_days, lc.transition_ia_days
            ),
            "give more days than transition_ia_days (the guide uses 365)",
        ));
    }
    if lc.abort_incomplete_multipart_days == 0 {
        return Err(Error::config(
            "lifecycle.abort_incomplete_multipart_days",
            &origin("lifecycle.abort_incomplete_multipart_days"),
            "0 days would abort uploads in progress",
            "give at least 1 (default 7)",
        ));
    }
    Ok(())
}

/// The shortest signing secret accepted, in bytes (HMAC-SHA256 wants 32 bytes of entropy).
pub const MIN_SIGNING_SECRET_BYTES: usize = 32;

fn validate_gateway(config: &Config) -> Result<(), Error> {
    let origin = |key: &str| config.origin(key).cloned().unwrap_or(Origin::Default);
    let gw = &config.gateway;
    if gw.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(Error::config(
            "gateway.listen",
            &origin("gateway.listen"),
            format!("{:?} is not an address to listen on", gw.listen),
            "give an IP and port, such as 127.0.0.1:9000 or 0.0.0.0:9000",
        ));
    }
    if let Err(problem) = check_endpoint(&gw.public_url) {
        return Err(Error::config(
            "gateway.public_url",
            &origin("gateway.public_url"),
            format!("{:?} {problem}", without_userinfo(&gw.public_url)),
            "give the http(s) URL browsers reach the gateway at, such as https://masks.example.org",
        ));
    }
    for key in ["gateway.signing_secret", "gateway.previous_signing_secret"] {
        let secret = match key {
            "gateway.signing_secret" => &gw.signing_secret,
            _ => &gw.previous_signing_secret,
        };
        if let Some(secret) = secret
            && secret.expose().len() < MIN_SIGNING_SECRET_BYTES
        {
            return Err(Error::config(
                key,
                &origin(key),
                format!("the secret is shorter than {MIN_SIGNING_SECRET_BYTES} bytes"),
                "generate one with: openssl rand -hex 32",
            ));
        }
    }
    if gw.previous_signing_secret.is_some() && gw.signing_secret.is_none() {
        return Err(Error::config(
            "gateway.signing_secret",
            &origin("gateway.previous_signing_secret"),
            "is missing while previous_signing_secret is set",
            "set signing_secret to the new secret; previous_signing_secret keeps the old one valid",
        ));
    }
    let serves_gateway = matches!(
        config.object_storage.provider,
        Provider::Local | Provider::Memory
    );
    if serves_gateway && gw.signing_secret.is_none() && config.environment != DEFAULT_ENVIRONMENT {
        return Err(Error::config(
            "gateway.signing_secret",
            &origin("object_storage.provider"),
            format!(
                "is required for provider {} outside development (environment {:?})",
                config.object_storage.provider, config.environment
            ),
            "set APP_GATEWAY__SIGNING_SECRET (generate one with: openssl rand -hex 32)",
        ));
    }
    let cors = &config.cors;
    if let Some(bad) = cors
        .allowed_origins
        .iter()
        .find(|o| *o != "*" && check_endpoint(o).is_err())
    {
        return Err(Error::config(
            "cors.allowed_origins",
            &origin("cors.allowed_origins"),
            format!("{bad:?} is not an origin"),
            "list origins as scheme://host[:port], such as http://localhost:3000",
        ));
    }
    const METHODS: [&str; 6] = ["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS"];
    if let Some(bad) = cors
        .allowed_methods
        .iter()
        .find(|m| !METHODS.contains(&m.as_str()))
    {
        return Err(Error::config(
            "cors.allowed_methods",
            &origin("cors.allowed_methods"),
            format!("{bad:?} is not an HTTP method CORS can allow here"),
            format!("use some of: {}", METHODS.join(", ")),
        ));
    }
    Ok(())
}

/// S3's bucket naming rules (general purpose buckets).
fn check_bucket_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err(format!(
            "it is {} characters long, S3 needs 3 to 63",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(format!("{c:?} is not allowed"));
    }
    let first_last_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_last_ok(name.chars().next()) || !first_last_ok(name.chars().last()) {
        return Err("it must begin and end with a letter or digit".to_string());
    }
    if name.contains("..") {
        return Err("it must not contain two adjacent dots".to_string());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("it must not look like an IP address".to_string());
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Err(format!("the prefix {prefix:?} is reserved"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(suffix) {
            return Err(format!("the suffix {suffix:?} is reserved"));
        }
    }
    Ok(())
}

/// The endpoint with any `user:password@` removed, so an error never echoes a password.
fn without_userinfo(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Ok(_) => endpoint.to_string(),
        // Unparseable: a password cannot be told apart, so show only the scheme-ish start.
        Err(_) if endpoint.contains('@') => "(endpoint hidden: it contains '@')".to_string(),
        Err(_) => endpoint.to_string(),
    }
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let url = url::Url::parse(endpoint).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "uses scheme {:?}; only http and https are supported",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_string());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not carry a query or fragment".to_string());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not carry credentials; use access_key and secret_key instead".to_string(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> Origin {
        Origin::File(PathBuf::from(name))
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn build_env(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        let mut loader = ConfigLoader::new();
        loader.add_env(env(pairs))?;
        loader.build("development", Origin::Default)
    }

    fn config_error(result: Result<Config, Error>) -> (String, Origin, String) {
        match result {
            Err(e @ Error::Config { .. }) => {
                let text = e.to_string();
                let Error::Config { key, origin, .. } = e else {
                    unreachable!()
                };
                (key, origin, text)
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    const SIGNING_SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    const S3_ENV: &[(&str, &str)] = &[
        ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
        ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs-masks-dev"),
        ("APP_OBJECT_STORAGE__REGION", "us-east-1"),
    ];

    fn s3_env_with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut all = S3_ENV.to_vec();
        all.extend_from_slice(extra);
        all
    }

    #[test]
    fn defaults_are_local_data_mask_and_guide_ttls() {
        let config = Config::embedded_default();
        assert_eq!(config.object_storage.provider, Provider::Local);
        assert_eq!(config.object_storage.root, PathBuf::from("./data"));
        assert_eq!(config.object_storage.prefix.as_str(), "mask/");
        assert!(config.object_storage.fsync);
        assert_eq!(config.signed_url.default_ttl, 600);
        assert_eq!(config.signed_url.max_ttl, 3600);
        assert_eq!(config.environment, "development");
        assert_eq!(
            config.origin("object_storage.provider"),
            Some(&Origin::Default)
        );
    }

    #[test]
    fn later_layers_win_and_origins_are_recorded() {
        let mut loader = ConfigLoader::new();
        loader
            .add_toml(
                file("config/default.toml"),
                "[object_storage]\nprovider = \"memory\"\nroot = \"/a\"\n[signed_url]\nmax_ttl = 1200\n",
            )
            .unwrap();
        loader
            .add_toml(
                file("config/staging.toml"),
                "[object_storage]\nroot = \"/b\"\n",
            )
            .unwrap();
        loader
            .add_env(env(&[
                ("APP_SIGNED_URL__MAX_TTL", "1800"),
                ("APP_GATEWAY__SIGNING_SECRET", SIGNING_SECRET),
            ]))
            .unwrap();
        let config = loader.build("staging", Origin::Default).unwrap();
        assert_eq!(config.object_storage.provider, Provider::Memory);
        assert_eq!(config.object_storage.root, PathBuf::from("/b"));
        assert_eq!(config.signed_url.max_ttl, 1800);
        assert_eq!(
            config.origin("object_storage.provider"),
            Some(&file("config/default.toml"))
        );
        assert_eq!(
            config.origin("object_storage.root"),
            Some(&file("config/staging.toml"))
        );
        assert_eq!(
            config.origin("signed_url.max_ttl"),
            Some(&Origin::Env("APP_SIGNED_URL__MAX_TTL".into()))
        );
    }

    #[test]
    fn guide_env_vars_configure_s3() {
        let config = build_env(&[
            ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
            ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs-masks"),
            ("APP_OBJECT_STORAGE__REGION", "us-east-1"),
            ("APP_OBJECT_STORAGE__ENDPOINT", ""),
            ("APP_OBJECT_STORAGE__ACCESS_KEY", "AKIAEXAMPLE"),
            ("APP_OBJECT_STORAGE__SECRET_KEY", "s3cr3t-value"),
            ("APP_SIGNED_URL__DEFAULT_TTL", "600"),
            ("APP_SIGNED_URL__MAX_TTL", "3600"),
        ])
        .unwrap();
        let os = &config.object_storage;
        assert_eq!(os.provider, Provider::S3);
        assert_eq!(os.bucket_name.as_deref(), Some("pacs-masks"));
        assert_eq!(os.endpoint, None, "an empty endpoint means AWS");
        assert_eq!(os.secret_key.as_ref().unwrap().expose(), "s3cr3t-value");
    }

    #[test]
    fn empty_values_do_not_override_earlier_layers() {
        let mut loader = ConfigLoader::new();
        loader
            .add_toml(
                file("f.toml"),
                "[object_storage]\nendpoint = \"http://127.0.0.1:8333\"\nregion = \"\"\n",
            )
            .unwrap();
        loader
            .add_env(env(&[("APP_OBJECT_STORAGE__ENDPOINT", "")]))
            .unwrap();
        let config = loader.build("development", Origin::Default).unwrap();
        assert_eq!(
            config.object_storage.endpoint.as_deref(),
            Some("http://127.0.0.1:8333")
        );
        assert_eq!(config.object_storage.region, None);
    }

    #[test]
    fn other_sections_and_variables_are_left_to_the_application() {
        let mut loader = ConfigLoader::new();
        loader
            .add_toml(file("f.toml"), "[database]\nurl = \"postgres://x\"\n")
            .unwrap();
        loader
            .add_env(env(&[
                ("APP_DATABASE__URL", "postgres://x"),
                ("APP_ENV", "production"),
                ("HOME", "/root"),
            ]))
            .unwrap();
        loader.build("development", Origin::Default).unwrap();
    }

    #[test]
    fn unknown_key_in_a_maskstore_section_is_an_error_listing_the_known_ones() {
        let (key, origin, text) = config_error(build_env(&[("APP_OBJECT_STORAGE__BUCKET", "x")]));
        assert_eq!(key, "object_storage.bucket");
        assert_eq!(origin, Origin::Env("APP_OBJECT_STORAGE__BUCKET".into()));
        assert!(text.contains("bucket_name"), "{text}");

        let mut loader = ConfigLoader::new();
        let err = loader
            .add_toml(file("config/x.toml"), "[signed_url]\nmax_tll = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("signed_url.max_tll"), "{err}");
        assert!(err.contains("file config/x.toml"), "{err}");
        assert!(err.contains("default_ttl, max_ttl"), "{err}");
    }

    #[test]
    fn invalid_toml_names_the_file() {
        let err = ConfigLoader::new()
            .add_toml(file("config/production.toml"), "[object_storage\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("config/production.toml"), "{err}");
        assert!(err.contains("not valid TOML"), "{err}");
    }

    #[test]
    fn unknown_provider_lists_the_known_ones_and_names_the_variable() {
        let (key, origin, text) =
            config_error(build_env(&[("APP_OBJECT_STORAGE__PROVIDER", "gcs")]));
        assert_eq!(key, "object_storage.provider");
        assert_eq!(origin, Origin::Env("APP_OBJECT_STORAGE__PROVIDER".into()));
        assert!(text.contains("\"gcs\""), "{text}");
        assert!(text.contains("s3, local, memory"), "{text}");
    }

    #[test]
    fn s3_requires_bucket_and_region() {
        let (key, _, text) = config_error(build_env(&[
            ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
            ("APP_OBJECT_STORAGE__REGION", "us-east-1"),
        ]));
        assert_eq!(key, "object_storage.bucket_name");
        assert!(text.contains("APP_OBJECT_STORAGE__BUCKET_NAME"), "{text}");
        let (key, _, _) = config_error(build_env(&[
            ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
            ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs-masks"),
        ]));
        assert_eq!(key, "object_storage.region");
    }

    #[test]
    fn bucket_names_s3_would_refuse_are_refused() {
        for (bad, why) in [
            ("Pacs-Masks", "'P'"),
            ("ab", "3 to 63"),
            ("pacs_masks", "'_'"),
            ("-pacs", "begin and end"),
            ("pacs..masks", "adjacent dots"),
            ("192.168.1.1", "IP address"),
            ("xn--pacs", "reserved"),
        ] {
            let mut vars = s3_env_with(&[]);
            vars.retain(|(k, _)| *k != "APP_OBJECT_STORAGE__BUCKET_NAME");
            vars.push(("APP_OBJECT_STORAGE__BUCKET_NAME", bad));
            let (key, _, text) = config_error(build_env(&vars));
            assert_eq!(key, "object_storage.bucket_name");
            assert!(text.contains(why), "{bad}: {text}");
        }
        for good in ["pacs-masks-prod", "a.b-c", "abc", &"a".repeat(63)] {
            let mut vars: Vec<(&str, &str)> = S3_ENV.to_vec();
            vars[1] = ("APP_OBJECT_STORAGE__BUCKET_NAME", good);
            build_env(&vars).unwrap();
        }
    }

    #[test]
    fn endpoint_must_be_an_http_url() {
        for (bad, why) in [
            ("localhost:8333", "scheme"),
            ("ftp://host", "scheme \"ftp\""),
            ("not a url", "not a URL"),
            ("http://user:pw@host", "credentials"),
        ] {
            let (key, _, text) = config_error(build_env(&s3_env_with(&[(
                "APP_OBJECT_STORAGE__ENDPOINT",
                bad,
            )])));
            assert_eq!(key, "object_storage.endpoint");
            assert!(text.contains(why), "{bad}: {text}");
            assert!(!text.contains("pw@"), "{text}");
        }
        build_env(&s3_env_with(&[(
            "APP_OBJECT_STORAGE__ENDPOINT",
            "http://127.0.0.1:8333",
        )]))
        .unwrap();
    }

    #[test]
    fn ttl_rules_are_enforced() {
        let (key, _, text) = config_error(build_env(&[
            ("APP_SIGNED_URL__DEFAULT_TTL", "4000"),
            ("APP_SIGNED_URL__MAX_TTL", "3600"),
        ]));
        assert_eq!(key, "signed_url.default_ttl");
        assert!(text.contains("above max_ttl"), "{text}");
        let (key, _, text) = config_error(build_env(&[("APP_SIGNED_URL__DEFAULT_TTL", "0")]));
        assert_eq!(key, "signed_url.default_ttl");
        assert!(text.contains("TTL of 0"), "{text}");
        let (key, _, text) = config_error(build_env(&[("APP_SIGNED_URL__MAX_TTL", "604801")]));
        assert_eq!(key, "signed_url.max_ttl");
        assert!(text.contains("7 days"), "{text}");
        let (key, origin, text) = config_error(build_env(&[("APP_SIGNED_URL__MAX_TTL", "1h")]));
        assert_eq!(key, "signed_url.max_ttl");
        assert_eq!(origin, Origin::Env("APP_SIGNED_URL__MAX_TTL".into()));
        assert!(text.contains("whole number of seconds"), "{text}");
        build_env(&[("APP_SIGNED_URL__MAX_TTL", "604800")]).unwrap();
    }

    #[test]
    fn memory_in_production_is_refused_unless_allowed() {
        let mut loader = ConfigLoader::new();
        loader
            .set(
                "object_storage.provider",
                "memory",
                file("config/production.toml"),
            )
            .unwrap();
        let (key, origin, text) = config_error(loader.build("production", Origin::Default));
        assert_eq!(key, "object_storage.provider");
        assert_eq!(origin, file("config/production.toml"));
        assert!(text.contains("allow_memory_in_production"), "{text}");

        let mut loader = ConfigLoader::new();
        loader
            .set("object_storage.provider", "memory", Origin::Default)
            .unwrap();
        loader
            .set(
                "object_storage.allow_memory_in_production",
                "true",
                Origin::Default,
            )
            .unwrap();
        loader
            .set("gateway.signing_secret", SIGNING_SECRET, Origin::Default)
            .unwrap();
        loader.build("production", Origin::Default).unwrap();
    }

    #[test]
    fn invalid_prefix_is_refused() {
        for bad in ["mask", "/mask/", "mask//x/", "../"] {
            let (key, _, text) = config_error(build_env(&[("APP_OBJECT_STORAGE__PREFIX", bad)]));
            assert_eq!(key, "object_storage.prefix");
            assert!(text.contains("not a valid key prefix"), "{text}");
        }
    }

    #[test]
    fn access_key_and_secret_key_come_together() {
        let (key, _, _) = config_error(build_env(&s3_env_with(&[(
            "APP_OBJECT_STORAGE__ACCESS_KEY",
            "AKIA",
        )])));
        assert_eq!(key, "object_storage.secret_key");
    }

    #[test]
    fn environment_names_cannot_escape_the_config_folder() {
        let err = ConfigLoader::new()
            .build("../etc", Origin::Flag("--env".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid environment name"), "{err}");
    }

    #[test]
    fn debug_and_entries_never_contain_the_secret() {
        let config = build_env(&s3_env_with(&[
            ("APP_OBJECT_STORAGE__ACCESS_KEY", "AKIAEXAMPLE"),
            ("APP_OBJECT_STORAGE__SECRET_KEY", "TOP-SECRET-VALUE"),
            ("APP_OBJECT_STORAGE__SESSION_TOKEN", "TOP-SECRET-TOKEN"),
        ]))
        .unwrap();
        let debug = format!("{config:?} {config:#?}");
        assert!(!debug.contains("TOP-SECRET"), "{debug}");
        assert!(debug.contains("[redacted]"));
        let entries = format!("{:?}", config.entries());
        assert!(!entries.contains("TOP-SECRET"), "{entries}");
        let secret = config
            .entries()
            .into_iter()
            .find(|e| e.key == "object_storage.secret_key")
            .unwrap();
        assert_eq!(secret.value.as_deref(), Some("[redacted]"));
        assert_eq!(secret.env_var, "APP_OBJECT_STORAGE__SECRET_KEY");
    }

    #[test]
    fn non_string_secret_in_a_file_does_not_echo_the_value() {
        let mut loader = ConfigLoader::new();
        loader
            .add_toml(file("f.toml"), "[object_storage]\nsecret_key = 123456789\n")
            .unwrap();
        let err = loader
            .build("development", Origin::Default)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("123456789"), "{err}");
    }

    #[test]
    fn gateway_and_cors_default_to_the_guide() {
        let config = Config::embedded_default();
        assert_eq!(config.gateway.listen, "127.0.0.1:9000");
        assert_eq!(config.gateway.public_url, "http://127.0.0.1:9000");
        assert_eq!(
            config.cors.allowed_origins,
            ["http://localhost:3000", "http://localhost:8080"]
        );
        assert_eq!(
            config.cors.allowed_methods,
            ["GET", "PUT", "POST", "DELETE"]
        );
        assert_eq!(config.cors.expose_headers, ["ETag"]);
        assert_eq!(config.cors.max_age, 3000);
    }

    #[test]
    fn cors_lists_come_from_toml_arrays_or_comma_separated_env() {
        let mut loader = ConfigLoader::new();
        loader
            .add_toml(
                file("f.toml"),
                "[cors]\nallowed_origins = [\"https://viewer.example.org\"]\n",
            )
            .unwrap();
        loader
            .add_env(env(&[("APP_CORS__ALLOWED_METHODS", "GET, PUT")]))
            .unwrap();
        let config = loader.build("development", Origin::Default).unwrap();
        assert_eq!(config.cors.allowed_origins, ["https://viewer.example.org"]);
        assert_eq!(config.cors.allowed_methods, ["GET", "PUT"]);
        let (key, _, text) = config_error(build_env(&[("APP_CORS__ALLOWED_METHODS", "GET,FETCH")]));
        assert_eq!(key, "cors.allowed_methods");
        assert!(text.contains("\"FETCH\""), "{text}");
        let (key, _, _) = config_error(build_env(&[(
            "APP_CORS__ALLOWED_ORIGINS",
            "localhost:3000",
        )]));
        assert_eq!(key, "cors.allowed_origins");
    }

    #[test]
    fn signing_secret_is_required_outside_development_and_must_be_long() {
        let mut loader = ConfigLoader::new();
        loader
            .set("object_storage.provider", "local", Origin::Default)
            .unwrap();
        let (key, _, text) = config_error(loader.build("staging", Origin::Default));
        assert_eq!(key, "gateway.signing_secret");
        assert!(text.contains("APP_GATEWAY__SIGNING_SECRET"), "{text}");
        let (key, origin, text) =
            config_error(build_env(&[("APP_GATEWAY__SIGNING_SECRET", "short")]));
        assert_eq!(key, "gateway.signing_secret");
        assert_eq!(origin, Origin::Env("APP_GATEWAY__SIGNING_SECRET".into()));
        assert!(
            text.contains("32 bytes") && !text.contains("short\""),
            "{text}"
        );
        let (key, _, _) = config_error(build_env(&[(
            "APP_GATEWAY__PREVIOUS_SIGNING_SECRET",
            SIGNING_SECRET,
        )]));
        assert_eq!(key, "gateway.signing_secret");
        let config = build_env(&[
            ("APP_GATEWAY__SIGNING_SECRET", SIGNING_SECRET),
            ("APP_GATEWAY__LISTEN", "0.0.0.0:9100"),
        ])
        .unwrap();
        assert_eq!(config.gateway.public_url, "http://0.0.0.0:9100");
        let debug = format!("{config:?}");
        assert!(!debug.contains(SIGNING_SECRET), "{debug}");
    }

    #[test]
    fn lifecycle_defaults_to_the_guide_and_is_checked() {
        let config = Config::embedded_default();
        assert_eq!(config.lifecycle.transition_ia_days, 90);
        assert_eq!(config.lifecycle.transition_glacier_days, 365);
        assert_eq!(config.lifecycle.abort_incomplete_multipart_days, 7);
        let (key, _, text) =
            config_error(build_env(&[("APP_LIFECYCLE__TRANSITION_IA_DAYS", "10")]));
        assert_eq!(key, "lifecycle.transition_ia_days");
        assert!(text.contains("30-day minimum"), "{text}");
        let (key, _, _) = config_error(build_env(&[(
            "APP_LIFECYCLE__TRANSITION_GLACIER_DAYS",
            "60",
        )]));
        assert_eq!(key, "lifecycle.transition_glacier_days");
        let (key, _, _) = config_error(build_env(&[(
            "APP_LIFECYCLE__ABORT_INCOMPLETE_MULTIPART_DAYS",
            "0",
        )]));
        assert_eq!(key, "lifecycle.abort_incomplete_multipart_days");
    }

    #[test]
    fn monitoring_defaults_to_the_guide_and_rates_are_fractions() {
        let config = Config::embedded_default();
        assert_eq!(config.monitoring.client_error_rate_alarm, 0.05);
        assert_eq!(config.monitoring.server_error_rate_alarm, 0.01);
        assert_eq!(config.monitoring.alarm_window_secs, 300);
        let (key, _, text) = config_error(build_env(&[(
            "APP_MONITORING__CLIENT_ERROR_RATE_ALARM",
            "5",
        )]));
        assert_eq!(key, "monitoring.client_error_rate_alarm");
        assert!(text.contains("between 0 and 1"), "{text}");
        let config = build_env(&[("APP_MONITORING__SERVER_ERROR_RATE_ALARM", "0.02")]).unwrap();
        assert_eq!(config.monitoring.server_error_rate_alarm, 0.02);
    }

    #[test]
    fn every_schema_key_has_an_entry_and_env_var() {
        let config = Config::embedded_default();
        let entries = config.entries();
        assert_eq!(entries.len(), SCHEMA.len());
        for (entry, spec) in entries.iter().zip(SCHEMA) {
            assert_eq!(entry.key, spec.key);
        }
        assert_eq!(
            env_var_name("object_storage.bucket_name"),
            "APP_OBJECT_STORAGE__BUCKET_NAME"
        );
    }
}
