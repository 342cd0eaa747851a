//! Every key maskstore reads, declared once.
//!
//! A declaration ([`Key`]) names the key, how its value is read and checked ([`Kind`]), its
//! default, its meaning (the README's config table is checked against it) and the field of
//! [`Config`] it fills. From it follow the environment variable, the loader's parsing,
//! `config show` and the keys validation errors name. [`SCHEMA`] lists them in the order
//! `config show` prints them.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::validate::{
    check_account_name, check_bucket_characters, check_container_name, check_endpoint,
    check_region, without_userinfo,
};
use super::{ChecksumAlgorithm, Config, ENV_PREFIX, Origin, Provider};
use crate::{Error, KeyPrefix, Secret};

/// How a key's value is read and what it must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Any text.
    Text,
    /// Text that never prints itself (a [`Secret`]).
    Secret,
    /// `true`/`false` (or `1`/`0` in the environment).
    Bool,
    /// A whole number of `unit`, from 0 to `max`.
    Integer { unit: &'static str, max: u64 },
    /// A share above 0 and at most 1, such as 0.05.
    Rate,
    /// A decimal number above `above` and at most `max`, in `unit` (such as a factor of 3).
    Decimal {
        unit: &'static str,
        above: u64,
        max: u64,
    },
    /// The path of a file holding a secret (`*_file` keys); maskstore reads the file.
    SecretFile,
    /// A TOML array of strings, or comma-separated text; blank items are dropped.
    List,
    /// One of [`Provider::ALL`].
    Provider,
    /// One of [`ChecksumAlgorithm::ALL`].
    Checksum,
    /// A [`KeyPrefix`].
    Prefix,
    /// A folder.
    Path,
    /// An `http(s)://` URL without credentials, query or fragment; `fix` says what to give.
    Url { fix: &'static str },
    /// An IP and port to listen on.
    Address,
    /// A bucket name S3 accepts.
    BucketName,
    /// An Azure storage account name: 3-24 lowercase letters and digits.
    AccountName,
    /// An Azure container name: 3-63 lowercase letters, digits and single hyphens.
    ContainerName,
    /// An S3 region name.
    Region,
}

impl Kind {
    /// A whole number of seconds, at most `max` (stated in the key's doc).
    const fn seconds(max: u64) -> Kind {
        Kind::Integer {
            unit: "seconds",
            max,
        }
    }
    /// A whole number of milliseconds, at most `max`.
    const fn millis(max: u64) -> Kind {
        Kind::Integer {
            unit: "milliseconds",
            max,
        }
    }
    /// A whole number of days, at most `max`.
    const fn days(max: u64) -> Kind {
        Kind::Integer { unit: "days", max }
    }

    /// Reads `raw` (the value of `key`, from `origin`) as this kind.
    pub(crate) fn parse(self, key: &str, raw: Raw, origin: &Origin) -> Result<Value, Error> {
        let fail = |problem: String, fix: String| Err(Error::config(key, origin, problem, fix));
        let text = match (self, raw) {
            (Kind::Bool, raw) => {
                return match &raw {
                    Raw::Bool(b) => Ok(Value::Bool(*b)),
                    Raw::Text(s) if s.eq_ignore_ascii_case("true") || s == "1" => {
                        Ok(Value::Bool(true))
                    }
                    Raw::Text(s) if s.eq_ignore_ascii_case("false") || s == "0" => {
                        Ok(Value::Bool(false))
                    }
                    _ => fail(
                        format!("{raw} is not true or false"),
                        "give true or false".into(),
                    ),
                };
            }
            (Kind::Integer { unit, max }, raw) => {
                let parsed = match &raw {
                    Raw::Int(i) => u64::try_from(*i).ok(),
                    Raw::Text(s) => s.trim().parse::<u64>().ok(),
                    Raw::Bool(_) | Raw::List(_) => None,
                };
                return match parsed {
                    Some(n) if n <= max => Ok(Value::Integer(n)),
                    Some(n) => fail(
                        format!("{n} {unit} is more than the {max} allowed"),
                        format!("give at most {max}"),
                    ),
                    None => fail(
                        format!("{raw} is not a whole number of {unit}"),
                        format!("give a non-negative whole number of {unit}, such as 600"),
                    ),
                };
            }
            (Kind::Rate, raw) => {
                let parsed = match &raw {
                    Raw::Text(s) => s.trim().parse::<f64>().ok(),
                    Raw::Int(i) => Some(*i as f64),
                    _ => None,
                };
                return match parsed {
                    Some(rate) if rate > 0.0 && rate <= 1.0 => Ok(Value::Rate(rate)),
                    _ => fail(
                        format!("{raw} is not a share between 0 and 1"),
                        "give a fraction such as 0.05 for 5 %".into(),
                    ),
                };
            }
            (Kind::Decimal { unit, above, max }, raw) => {
                let parsed = match &raw {
                    Raw::Text(s) => s.trim().parse::<f64>().ok(),
                    Raw::Int(i) => Some(*i as f64),
                    _ => None,
                };
                return match parsed {
                    Some(n) if n.is_finite() && n > above as f64 && n <= max as f64 => {
                        Ok(Value::Rate(n))
                    }
                    _ => fail(
                        format!("{raw} is not a number of {unit} above {above} and at most {max}"),
                        format!("give a decimal number above {above} and at most {max}, such as 3"),
                    ),
                };
            }
            (Kind::List, raw) => {
                let items = match raw {
                    Raw::List(items) => items,
                    Raw::Text(text) => text.split(',').map(str::to_string).collect(),
                    other => {
                        return fail(
                            format!("{other} is not a list"),
                            "give a list of strings, or comma-separated text".into(),
                        );
                    }
                };
                return Ok(Value::List(
                    items
                        .into_iter()
                        .map(|item| item.trim().to_string())
                        .filter(|item| !item.is_empty())
                        .collect(),
                ));
            }
            (_, Raw::Text(text)) => text,
            (kind, other) => {
                // A secret's value is never echoed, not even when it has the wrong type.
                let what = if kind == Kind::Secret {
                    "a non-string value".to_string()
                } else {
                    other.to_string()
                };
                return fail(format!("{what} is not text"), "quote the value".into());
            }
        };
        match self {
            Kind::Text => Ok(Value::Text(text)),
            Kind::Secret => match crate::invisible_character(&text) {
                None => Ok(Value::Secret(Secret::new(text))),
                Some((at, c)) => fail(
                    format!(
                        "the secret holds an invisible character, U+{:04X}, at byte {at} \
                         (pasted from a web page, chat or document?)",
                        u32::from(c)
                    ),
                    "retype or paste the secret as plain text".into(),
                ),
            },
            Kind::Path => Ok(Value::Path(PathBuf::from(text))),
            Kind::SecretFile => Ok(Value::Path(PathBuf::from(text.trim()))),
            Kind::Provider => text.parse().map(Value::Provider).or_else(|problem| {
                fail(
                    problem,
                    format!("set {key} ({}) to one of them", env_var_name(key)),
                )
            }),
            Kind::Checksum => text.parse().map(Value::Checksum).or_else(|problem| {
                fail(
                    problem,
                    format!("set {key} ({}) to one of them", env_var_name(key)),
                )
            }),
            Kind::Prefix => KeyPrefix::parse(text.clone())
                .map(Value::Prefix)
                .or_else(|e| {
                    fail(
                        format!("{text:?} is not a valid key prefix ({e})"),
                        "give one or more folder names ending with '/', such as mask/".into(),
                    )
                }),
            Kind::Url { fix } => match check_endpoint(&text) {
                Ok(()) => Ok(Value::Text(text)),
                Err(problem) => fail(
                    format!("{:?} {problem}", without_userinfo(&text)),
                    fix.into(),
                ),
            },
            Kind::Address => match text.parse::<SocketAddr>() {
                Ok(_) => Ok(Value::Text(text)),
                Err(_) => fail(
                    format!("{text:?} is not an address to listen on"),
                    "give an IP and port, such as 127.0.0.1:9000 or 0.0.0.0:9000".into(),
                ),
            },
            // The provider's own rule (S3's, GCS's) is checked with the whole config.
            Kind::BucketName => match check_bucket_characters(&text) {
                Ok(()) => Ok(Value::Text(text)),
                Err(problem) => fail(
                    format!("{text:?} is not a bucket name: {problem}"),
                    "use lowercase letters, digits, '-' and '.' (and '_' on GCS), such as \
                     pacs-masks-prod"
                        .into(),
                ),
            },
            Kind::AccountName => match check_account_name(&text) {
                Ok(()) => Ok(Value::Text(text)),
                Err(problem) => fail(
                    format!("{text:?} is not an Azure storage account name: {problem}"),
                    "use the account's name as the Azure portal shows it: 3-24 lowercase letters and digits, such as pacsmasksprod".into(),
                ),
            },
            Kind::ContainerName => match check_container_name(&text) {
                Ok(()) => Ok(Value::Text(text)),
                Err(problem) => fail(
                    format!("{text:?} is not an Azure container name: {problem}"),
                    "use 3-63 lowercase letters, digits and single hyphens, starting with a letter or digit, such as pacs-masks-prod".into(),
                ),
            },
            Kind::Region => match check_region(&text) {
                true => Ok(Value::Text(text)),
                false => fail(
                    format!("{text:?} is not a region name"),
                    "give a region such as us-east-1 or ap-northeast-2".into(),
                ),
            },
            Kind::Bool | Kind::Integer { .. } | Kind::Rate | Kind::Decimal { .. } | Kind::List => {
                unreachable!("handled above")
            }
        }
    }
}

/// A value as a layer holds it, before its kind is applied.
#[derive(Debug, Clone)]
pub(crate) enum Raw {
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

/// A value its [`Kind`] has read and checked.
#[derive(Debug)]
pub(crate) enum Value {
    Text(String),
    Secret(Secret),
    Bool(bool),
    Integer(u64),
    Rate(f64),
    List(Vec<String>),
    Provider(Provider),
    Checksum(ChecksumAlgorithm),
    Prefix(KeyPrefix),
    Path(PathBuf),
}

/// The type of a [`Config`] field a key fills: how a [`Value`] becomes it, and how
/// `config show` prints it.
pub(crate) trait FieldType: Sized + 'static {
    /// The field's value, or `None` when the declared kind does not produce this type
    /// (a mistake in the declaration, caught by the tests).
    fn from_value(value: Value) -> Option<Self>;
    /// The field's value when the key is unset and has no default; `None` when the
    /// field needs a value (its key must have a default).
    fn missing() -> Option<Self> {
        None
    }
    /// The value as `config show` prints it; secrets print redacted.
    fn show(&self) -> Option<String>;
}

macro_rules! field_type {
    ($type:ty, $variant:ident, |$v:ident| $show:expr) => {
        impl FieldType for $type {
            fn from_value(value: Value) -> Option<Self> {
                match value {
                    Value::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn show(&self) -> Option<String> {
                let $v = self;
                Some($show)
            }
        }
    };
}

field_type!(String, Text, |v| v.clone());
field_type!(Secret, Secret, |v| v.to_string());
field_type!(bool, Bool, |v| v.to_string());
field_type!(u64, Integer, |v| v.to_string());
field_type!(f64, Rate, |v| v.to_string());
field_type!(Vec<String>, List, |v| v.join(","));
field_type!(Provider, Provider, |v| v.to_string());
field_type!(ChecksumAlgorithm, Checksum, |v| v.to_string());
field_type!(KeyPrefix, Prefix, |v| v.to_string());
field_type!(PathBuf, Path, |v| v.display().to_string());

impl FieldType for u32 {
    fn from_value(value: Value) -> Option<Self> {
        u64::from_value(value).and_then(|n| u32::try_from(n).ok())
    }
    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl<T: FieldType> FieldType for Option<T> {
    fn from_value(value: Value) -> Option<Self> {
        T::from_value(value).map(Some)
    }
    fn missing() -> Option<Self> {
        Some(None)
    }
    fn show(&self) -> Option<String> {
        self.as_ref().and_then(T::show)
    }
}

/// What a key holds when no layer sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultIs {
    /// This value, read like any other.
    Value(&'static str),
    /// Nothing; the text says what that means (the README's "default" column).
    Unset(&'static str),
}

/// The declaration of one key: everything maskstore knows about it, written once.
pub(crate) struct Key<T: 'static> {
    /// The dotted key, `<section>.<name>`.
    pub(crate) name: &'static str,
    /// How its value is read and checked.
    pub(crate) kind: Kind,
    /// Its value when no layer sets it.
    pub(crate) default: DefaultIs,
    /// What it means (the README's "meaning" column).
    pub(crate) doc: &'static str,
    /// The field of [`Config`] it fills.
    pub(crate) field: fn(&Config) -> &T,
}

/// A [`Key`] of any field type, as [`SCHEMA`] lists them.
pub(crate) trait AnyKey {
    /// The dotted key.
    fn name(&self) -> &'static str;
    /// How its value is read and checked.
    fn kind(&self) -> Kind;
    /// Its value when no layer sets it.
    fn default(&self) -> DefaultIs;
    /// What it means.
    #[cfg_attr(not(test), allow(dead_code, reason = "read by the README table test"))]
    fn doc(&self) -> &'static str;
    /// Its effective value in `config`, as `config show` prints it (secrets redacted).
    fn show(&self, config: &Config) -> Option<String>;

    /// The section: `object_storage` of `object_storage.bucket_name`.
    fn section(&self) -> &'static str {
        self.name().split_once('.').expect("keys are dotted").0
    }
    /// The name within the section: `bucket_name` of `object_storage.bucket_name`.
    fn field_name(&self) -> &'static str {
        self.name().split_once('.').expect("keys are dotted").1
    }
    /// The environment variable that sets it.
    fn env_var(&self) -> String {
        env_var_name(self.name())
    }
    /// The default value, if it has one.
    fn default_value(&self) -> Option<&'static str> {
        match self.default() {
            DefaultIs::Value(value) => Some(value),
            DefaultIs::Unset(_) => None,
        }
    }
    /// Checks `text` as a value of this key, as if it came from `origin`.
    fn check(&self, text: &str, origin: &Origin) -> Result<(), Error> {
        self.kind()
            .parse(self.name(), Raw::Text(text.to_string()), origin)
            .map(drop)
    }
}

impl<T: FieldType> AnyKey for Key<T> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn kind(&self) -> Kind {
        self.kind
    }
    fn default(&self) -> DefaultIs {
        self.default
    }
    fn doc(&self) -> &'static str {
        self.doc
    }
    fn show(&self, config: &Config) -> Option<String> {
        (self.field)(config).show()
    }
}

use DefaultIs::{Unset, Value as Is};

/// `[object_storage]`
pub(crate) const PROVIDER: Key<Provider> = Key {
    name: "object_storage.provider",
    kind: Kind::Provider,
    default: Is("local"),
    doc: "`s3`, `local`, `memory`, `azure` or `gcs`",
    field: |c| &c.object_storage.provider,
};
pub(crate) const BUCKET_NAME: Key<Option<String>> = Key {
    name: "object_storage.bucket_name",
    kind: Kind::BucketName,
    default: Unset("—"),
    doc: "S3 or GCS bucket (required for `s3` and `gcs`), checked against that provider's naming rules",
    field: |c| &c.object_storage.bucket_name,
};
pub(crate) const REGION: Key<Option<String>> = Key {
    name: "object_storage.region",
    kind: Kind::Region,
    default: Unset("—"),
    doc: "S3 region (required for `s3`)",
    field: |c| &c.object_storage.region,
};
pub(crate) const ENDPOINT: Key<Option<String>> = Key {
    name: "object_storage.endpoint",
    kind: Kind::Url {
        fix: "give an http:// or https:// URL such as http://127.0.0.1:8333, or leave it empty for AWS",
    },
    default: Unset("AWS"),
    doc: "`http(s)://` URL of an S3-compatible engine, of the Azure account (Azurite: `http://127.0.0.1:10000/<account>`) or of the GCS API (fake-gcs-server); `http://` works without extra flags",
    field: |c| &c.object_storage.endpoint,
};
pub(crate) const ACCESS_KEY: Key<Option<String>> = Key {
    name: "object_storage.access_key",
    kind: Kind::Text,
    default: Unset("AWS chain"),
    doc: "access key id; unset with secret_key unset → environment, web identity, instance role",
    field: |c| &c.object_storage.access_key,
};
pub(crate) const SECRET_KEY: Key<Option<Secret>> = Key {
    name: "object_storage.secret_key",
    kind: Kind::Secret,
    default: Unset("AWS chain"),
    doc: "secret access key (redacted everywhere)",
    field: |c| &c.object_storage.secret_key,
};
pub(crate) const SESSION_TOKEN: Key<Option<Secret>> = Key {
    name: "object_storage.session_token",
    kind: Kind::Secret,
    default: Unset("—"),
    doc: "session token of temporary credentials (redacted)",
    field: |c| &c.object_storage.session_token,
};
pub(crate) const ACCESS_KEY_FILE: Key<Option<PathBuf>> = Key {
    name: "object_storage.access_key_file",
    kind: Kind::SecretFile,
    default: Unset("—"),
    doc: "file holding `access_key` (mode 600; re-read when it changes); not with `access_key`",
    field: |c| &c.object_storage.access_key_file,
};
pub(crate) const SECRET_KEY_FILE: Key<Option<PathBuf>> = Key {
    name: "object_storage.secret_key_file",
    kind: Kind::SecretFile,
    default: Unset("—"),
    doc: "file holding `secret_key` (mode 600; re-read when it changes); not with `secret_key`",
    field: |c| &c.object_storage.secret_key_file,
};
pub(crate) const SESSION_TOKEN_FILE: Key<Option<PathBuf>> = Key {
    name: "object_storage.session_token_file",
    kind: Kind::SecretFile,
    default: Unset("—"),
    doc: "file holding `session_token` (mode 600; re-read when it changes); not with `session_token`",
    field: |c| &c.object_storage.session_token_file,
};
pub(crate) const SECRET_SOURCE: Key<Option<String>> = Key {
    name: "object_storage.secret_source",
    kind: Kind::Text,
    default: Unset("—"),
    doc: "`aws-secretsmanager:<secret-id or ARN>`: `access_key`, `secret_key` (and `session_token`) from the JSON of that AWS Secrets Manager secret, re-read every `secret_refresh`; not with those keys or their files",
    field: |c| &c.object_storage.secret_source,
};
pub(crate) const SECRET_REFRESH: Key<u64> = Key {
    name: "object_storage.secret_refresh",
    kind: Kind::seconds(86400),
    default: Is("60"),
    doc: "seconds between reads of `secret_source` (a new version is taken once it has held 1 s; an S3 403 reads it at once); at least 1, at most 86400",
    field: |c| &c.object_storage.secret_refresh_secs,
};
pub(crate) const ACCOUNT: Key<Option<String>> = Key {
    name: "object_storage.account",
    kind: Kind::AccountName,
    default: Unset("—"),
    doc: "Azure storage account (required for `azure`)",
    field: |c| &c.object_storage.account,
};
pub(crate) const CONTAINER: Key<Option<String>> = Key {
    name: "object_storage.container",
    kind: Kind::ContainerName,
    default: Unset("—"),
    doc: "Azure blob container (required for `azure`), checked against Azure's naming rules",
    field: |c| &c.object_storage.container,
};
pub(crate) const ACCOUNT_KEY: Key<Option<Secret>> = Key {
    name: "object_storage.account_key",
    kind: Kind::Secret,
    default: Unset("Azure chain"),
    doc: "Azure storage account key (redacted); unset → `AZURE_*` variables, workload or managed identity, Azure CLI",
    field: |c| &c.object_storage.account_key,
};
pub(crate) const ACCOUNT_KEY_FILE: Key<Option<PathBuf>> = Key {
    name: "object_storage.account_key_file",
    kind: Kind::SecretFile,
    default: Unset("—"),
    doc: "file holding `account_key` (mode 600; re-read when it changes)",
    field: |c| &c.object_storage.account_key_file,
};
pub(crate) const SERVICE_ACCOUNT_KEY: Key<Option<Secret>> = Key {
    name: "object_storage.service_account_key",
    kind: Kind::Secret,
    default: Unset("Google ADC"),
    doc: "GCS service account key, the JSON document (redacted); unset → `GOOGLE_APPLICATION_CREDENTIALS`, then the metadata server",
    field: |c| &c.object_storage.service_account_key,
};
pub(crate) const SERVICE_ACCOUNT_KEY_FILE: Key<Option<PathBuf>> = Key {
    name: "object_storage.service_account_key_file",
    kind: Kind::SecretFile,
    default: Unset("—"),
    doc: "file holding `service_account_key` (mode 600; re-read when it changes)",
    field: |c| &c.object_storage.service_account_key_file,
};
pub(crate) const VERIFY_FOLDERS: Key<Option<bool>> = Key {
    name: "object_storage.verify_folders",
    kind: Kind::Bool,
    default: Unset("on with an endpoint, off for AWS"),
    doc: "folder listings drop folders that no longer hold objects (SeaweedFS keeps them after deletes)",
    field: |c| &c.object_storage.verify_folders,
};
pub(crate) const VIRTUAL_HOSTED_STYLE: Key<bool> = Key {
    name: "object_storage.virtual_hosted_style",
    kind: Kind::Bool,
    default: Is("false"),
    doc: "`<bucket>.<endpoint>` addressing instead of path style",
    field: |c| &c.object_storage.virtual_hosted_style,
};
pub(crate) const REQUEST_TIMEOUT: Key<u64> = Key {
    name: "object_storage.request_timeout",
    kind: Kind::seconds(3600),
    default: Is("30"),
    doc: "seconds per S3 request; at most 3600",
    field: |c| &c.object_storage.request_timeout_secs,
};
pub(crate) const CONNECT_TIMEOUT: Key<u64> = Key {
    name: "object_storage.connect_timeout",
    kind: Kind::seconds(300),
    default: Is("5"),
    doc: "seconds to connect to S3; at most 300",
    field: |c| &c.object_storage.connect_timeout_secs,
};
/// The most copies `sync` runs at once: far above any measured gain, and a bound on
/// the connections and buffers one run holds.
pub const MAX_TRANSFERS: u64 = 256;
pub(crate) const TRANSFERS: Key<u64> = Key {
    name: "object_storage.transfers",
    kind: Kind::Integer {
        unit: "copies",
        max: MAX_TRANSFERS,
    },
    default: Is("32"),
    doc: "`sync`: copies in flight at once onto this store (the `--to` side's value; `--transfers` overrides); 1 to 256",
    field: |c| &c.object_storage.transfers,
};
pub(crate) const MAX_RETRIES: Key<u32> = Key {
    name: "object_storage.max_retries",
    kind: Kind::Integer {
        unit: "retries",
        max: u32::MAX as u64,
    },
    default: Is("3"),
    doc: "retries of transient failures (S3, Azure, GCS)",
    field: |c| &c.object_storage.max_retries,
};
pub(crate) const RETRY_TIMEOUT: Key<u64> = Key {
    name: "object_storage.retry_timeout",
    kind: Kind::seconds(3600),
    default: Is("60"),
    doc: "seconds after which retries stop; at most 3600",
    field: |c| &c.object_storage.retry_timeout_secs,
};
pub(crate) const RETRY_INITIAL_BACKOFF: Key<u64> = Key {
    name: "object_storage.retry_initial_backoff_ms",
    kind: Kind::millis(60000),
    default: Is("100"),
    doc: "first wait before a retry; doubles per retry; at most 60000",
    field: |c| &c.object_storage.retry_initial_backoff_ms,
};
pub(crate) const RETRY_MAX_BACKOFF: Key<u64> = Key {
    name: "object_storage.retry_max_backoff_ms",
    kind: Kind::millis(600000),
    default: Is("15000"),
    doc: "longest wait between retries; at most 600000",
    field: |c| &c.object_storage.retry_max_backoff_ms,
};
pub(crate) const ROOT: Key<PathBuf> = Key {
    name: "object_storage.root",
    kind: Kind::Path,
    default: Is("./data"),
    doc: "folder of the `local` provider (created if missing when written to; a store only read from must exist)",
    field: |c| &c.object_storage.root,
};
pub(crate) const FSYNC: Key<bool> = Key {
    name: "object_storage.fsync",
    kind: Kind::Bool,
    default: Is("true"),
    doc: "`local`: each write is on stable storage before it is acknowledged",
    field: |c| &c.object_storage.fsync,
};
pub(crate) const PREFIX: Key<KeyPrefix> = Key {
    name: "object_storage.prefix",
    kind: Kind::Prefix,
    default: Is("mask/"),
    doc: "every key lies below it; others are refused before any I/O",
    field: |c| &c.object_storage.prefix,
};
pub(crate) const CHECKSUM: Key<ChecksumAlgorithm> = Key {
    name: "object_storage.checksum",
    kind: Kind::Checksum,
    default: Is("crc64nvme"),
    doc: "`sha256`, `crc64nvme` or `none`: the checksum stored with every write and verified on every whole read",
    field: |c| &c.object_storage.checksum,
};
pub(crate) const REQUIRE_CHECKSUM: Key<bool> = Key {
    name: "object_storage.require_checksum",
    kind: Kind::Bool,
    default: Is("false"),
    doc: "`verify` fails (exit 6) on an object no checksum can verify (as `--require-checksum`): for a nightly scrub",
    field: |c| &c.object_storage.require_checksum,
};
pub(crate) const ALLOW_MEMORY_IN_PRODUCTION: Key<bool> = Key {
    name: "object_storage.allow_memory_in_production",
    kind: Kind::Bool,
    default: Is("false"),
    doc: "permit `memory` when the environment is `production`",
    field: |c| &c.object_storage.allow_memory_in_production,
};

/// `[signed_url]`
pub(crate) const DEFAULT_TTL: Key<u64> = Key {
    name: "signed_url.default_ttl",
    kind: Kind::seconds(604800),
    default: Is("600"),
    doc: "seconds a signed URL lives when none is asked; at most 604800",
    field: |c| &c.signed_url.default_ttl,
};
pub(crate) const MAX_TTL: Key<u64> = Key {
    name: "signed_url.max_ttl",
    // Bounded by validation, which names S3's presign ceiling.
    kind: Kind::seconds(u64::MAX),
    default: Is("3600"),
    doc: "longest lifetime; longer requests are refused, never clamped (at most 604800, S3's limit)",
    field: |c| &c.signed_url.max_ttl,
};

/// `[gateway]`
pub(crate) const LISTEN: Key<String> = Key {
    name: "gateway.listen",
    kind: Kind::Address,
    default: Is("127.0.0.1:9000"),
    doc: "where `maskstore serve` listens",
    field: |c| &c.gateway.listen,
};
pub(crate) const PUBLIC_URL: Key<String> = Key {
    name: "gateway.public_url",
    kind: Kind::Url {
        fix: "give the http(s) URL browsers reach the gateway at, such as https://masks.example.org",
    },
    default: Unset("`http://<listen>`"),
    doc: "the base URL local/memory signed URLs point at",
    field: |c| &c.gateway.public_url,
};
pub(crate) const SIGNING_SECRET: Key<Option<Secret>> = Key {
    name: "gateway.signing_secret",
    kind: Kind::Secret,
    default: Unset("development: generated"),
    doc: "HMAC key of local/memory URLs, ≥ 32 bytes (redacted); required outside `development`",
    field: |c| &c.gateway.signing_secret,
};
pub(crate) const PREVIOUS_SIGNING_SECRET: Key<Option<Secret>> = Key {
    name: "gateway.previous_signing_secret",
    kind: Kind::Secret,
    default: Unset("—"),
    doc: "still accepted during a rotation (redacted)",
    field: |c| &c.gateway.previous_signing_secret,
};
pub(crate) const SIGNING_SECRET_FILE: Key<Option<PathBuf>> = Key {
    name: "gateway.signing_secret_file",
    kind: Kind::SecretFile,
    default: Unset("—"),
    doc: "file holding `signing_secret` (mode 600); a change rotates it, the old one stays valid for `signed_url.max_ttl`",
    field: |c| &c.gateway.signing_secret_file,
};
pub(crate) const PREVIOUS_SIGNING_SECRET_FILE: Key<Option<PathBuf>> = Key {
    name: "gateway.previous_signing_secret_file",
    kind: Kind::SecretFile,
    default: Unset("—"),
    doc: "file holding `previous_signing_secret` (mode 600; read at start)",
    field: |c| &c.gateway.previous_signing_secret_file,
};
pub(crate) const ADMIN_LISTEN: Key<Option<String>> = Key {
    name: "gateway.admin_listen",
    kind: Kind::Address,
    default: Unset("— (on `listen`)"),
    doc: "when set, `/metrics` and `/health` are served here only, not on `listen`",
    field: |c| &c.gateway.admin_listen,
};
pub(crate) const HEADER_TIMEOUT: Key<u64> = Key {
    name: "gateway.header_timeout",
    kind: Kind::Integer {
        unit: "seconds",
        max: MAX_HEADER_TIMEOUT_SECS,
    },
    default: Is("10"),
    doc: "seconds a client has to send a request's headers (also the idle keep-alive limit); at least 1, at most 300",
    field: |c| &c.gateway.header_timeout_secs,
};
pub(crate) const BODY_IDLE_TIMEOUT: Key<u64> = Key {
    name: "gateway.body_idle_timeout",
    kind: Kind::Integer {
        unit: "seconds",
        max: MAX_BODY_IDLE_TIMEOUT_SECS,
    },
    default: Is("30"),
    doc: "seconds an upload may send nothing, or a download take less than about 64 KiB, before it is dropped; at least 1, at most 3600",
    field: |c| &c.gateway.body_idle_timeout_secs,
};
pub(crate) const GATEWAY_REQUEST_TIMEOUT: Key<u64> = Key {
    name: "gateway.request_timeout",
    kind: Kind::Integer {
        unit: "seconds",
        max: MAX_GATEWAY_REQUEST_TIMEOUT_SECS,
    },
    default: Is("900"),
    doc: "seconds one request may take in all, upload or download included; at least 1, at most 86400",
    field: |c| &c.gateway.request_timeout_secs,
};
pub(crate) const MAX_CONNECTIONS: Key<u64> = Key {
    name: "gateway.max_connections",
    kind: Kind::Integer {
        unit: "connections",
        max: MAX_GATEWAY_CONNECTIONS,
    },
    default: Is("512"),
    doc: "open connections served at once; more are answered 503 and closed (keep below `ulimit -n`), 1–65536",
    field: |c| &c.gateway.max_connections,
};
pub(crate) const MAX_UPLOAD_BYTES: Key<u64> = Key {
    name: "gateway.max_upload_bytes",
    kind: Kind::Integer {
        unit: "bytes",
        max: MAX_GATEWAY_UPLOAD_BYTES,
    },
    default: Is("1073741824"),
    doc: "largest upload (1 GiB); a larger one is refused with 413 while it streams, at most 5 TiB",
    field: |c| &c.gateway.max_upload_bytes,
};
pub(crate) const MAX_CONCURRENT_UPLOADS: Key<u64> = Key {
    name: "gateway.max_concurrent_uploads",
    kind: Kind::Integer {
        unit: "uploads",
        max: MAX_GATEWAY_CONNECTIONS,
    },
    default: Is("64"),
    doc: "uploads in progress at once; more are answered 503 with `Retry-After`, 1–`max_connections`",
    field: |c| &c.gateway.max_concurrent_uploads,
};
pub(crate) const FIRST_BYTE_TIMEOUT: Key<u64> = Key {
    name: "gateway.first_byte_timeout",
    kind: Kind::Integer {
        unit: "seconds",
        max: MAX_HEADER_TIMEOUT_SECS,
    },
    default: Is("3"),
    doc: "seconds a new connection has to send the first byte of its request; capped at `header_timeout`; at least 1, at most 300",
    field: |c| &c.gateway.first_byte_timeout_secs,
};
pub(crate) const MAX_CONNECTIONS_PER_CLIENT: Key<Option<u64>> = Key {
    name: "gateway.max_connections_per_client",
    kind: Kind::Integer {
        unit: "connections",
        max: MAX_GATEWAY_CONNECTIONS,
    },
    default: Unset("max(8, max_connections / 16)"),
    doc: "connections one client address may hold at once; more are answered 503 with `Retry-After` and closed, 1–`max_connections`",
    field: |c| &c.gateway.max_connections_per_client,
};
pub(crate) const MAX_UPLOADS_PER_CLIENT: Key<Option<u64>> = Key {
    name: "gateway.max_uploads_per_client",
    kind: Kind::Integer {
        unit: "uploads",
        max: MAX_GATEWAY_CONNECTIONS,
    },
    default: Unset("max(8, max_concurrent_uploads / 8)"),
    doc: "uploads one client address may have in progress at once; more are answered 503 with `Retry-After`, 1–`max_concurrent_uploads`",
    field: |c| &c.gateway.max_uploads_per_client,
};
pub(crate) const TRUSTED_PROXIES: Key<Vec<String>> = Key {
    name: "gateway.trusted_proxies",
    kind: Kind::List,
    default: Is(""),
    doc: "IP addresses of reverse proxies whose `X-Forwarded-For` names the client (its last address not itself a proxy); from any other peer the header is ignored",
    field: |c| &c.gateway.trusted_proxies,
};
pub(crate) const SHUTDOWN_GRACE: Key<u64> = Key {
    name: "gateway.shutdown_grace",
    kind: Kind::Integer {
        unit: "seconds",
        max: MAX_SHUTDOWN_GRACE_SECS,
    },
    default: Is("10"),
    doc: "seconds requests in flight get to finish after SIGTERM; then they are dropped (no partial object); at most 600",
    field: |c| &c.gateway.shutdown_grace_secs,
};

/// Upper bounds of the `[gateway]` limits.
pub(crate) const MAX_HEADER_TIMEOUT_SECS: u64 = 300;
/// See [`MAX_HEADER_TIMEOUT_SECS`].
pub(crate) const MAX_BODY_IDLE_TIMEOUT_SECS: u64 = 3600;
/// See [`MAX_HEADER_TIMEOUT_SECS`].
pub(crate) const MAX_GATEWAY_REQUEST_TIMEOUT_SECS: u64 = 86_400;
/// See [`MAX_HEADER_TIMEOUT_SECS`].
pub(crate) const MAX_GATEWAY_CONNECTIONS: u64 = 65_536;
/// S3's largest object, 5 TiB.
pub(crate) const MAX_GATEWAY_UPLOAD_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// See [`MAX_HEADER_TIMEOUT_SECS`].
pub(crate) const MAX_SHUTDOWN_GRACE_SECS: u64 = 600;

/// `[cors]`
pub(crate) const ALLOWED_ORIGINS: Key<Vec<String>> = Key {
    name: "cors.allowed_origins",
    kind: Kind::List,
    default: Is("http://localhost:3000,http://localhost:8080"),
    doc: "origins browsers may use the gateway from (TOML list, or comma-separated)",
    field: |c| &c.cors.allowed_origins,
};
pub(crate) const ALLOWED_METHODS: Key<Vec<String>> = Key {
    name: "cors.allowed_methods",
    kind: Kind::List,
    default: Is("GET,PUT,POST,DELETE"),
    doc: "methods granted in preflight answers",
    field: |c| &c.cors.allowed_methods,
};
pub(crate) const ALLOWED_HEADERS: Key<Vec<String>> = Key {
    name: "cors.allowed_headers",
    kind: Kind::List,
    default: Is("*"),
    doc: "request headers granted",
    field: |c| &c.cors.allowed_headers,
};
pub(crate) const EXPOSE_HEADERS: Key<Vec<String>> = Key {
    name: "cors.expose_headers",
    kind: Kind::List,
    default: Is("ETag"),
    doc: "response headers a page may read",
    field: |c| &c.cors.expose_headers,
};
pub(crate) const MAX_AGE: Key<u64> = Key {
    name: "cors.max_age",
    kind: Kind::seconds(86400),
    default: Is("3000"),
    doc: "seconds a browser may cache a preflight answer; at most 86400",
    field: |c| &c.cors.max_age,
};

/// `[lifecycle]`
pub(crate) const TRANSITION_IA_DAYS: Key<u64> = Key {
    name: "lifecycle.transition_ia_days",
    kind: Kind::days(36500),
    default: Is("90"),
    doc: "`policy lifecycle`: days to Standard-IA (≥ 30); at most 36500",
    field: |c| &c.lifecycle.transition_ia_days,
};
pub(crate) const TRANSITION_GLACIER_DAYS: Key<u64> = Key {
    name: "lifecycle.transition_glacier_days",
    kind: Kind::days(36500),
    default: Is("365"),
    doc: "days to Glacier (after the IA transition); at most 36500",
    field: |c| &c.lifecycle.transition_glacier_days,
};
pub(crate) const ABORT_INCOMPLETE_MULTIPART_DAYS: Key<u64> = Key {
    name: "lifecycle.abort_incomplete_multipart_days",
    kind: Kind::days(36500),
    default: Is("7"),
    doc: "days before unfinished uploads are dropped; at most 36500",
    field: |c| &c.lifecycle.abort_incomplete_multipart_days,
};

/// `[monitoring]`
pub(crate) const CLIENT_ERROR_RATE_ALARM: Key<f64> = Key {
    name: "monitoring.client_error_rate_alarm",
    kind: Kind::Rate,
    default: Is("0.05"),
    doc: "alarm above this share of 4xx-like outcomes in the window",
    field: |c| &c.monitoring.client_error_rate_alarm,
};
pub(crate) const SERVER_ERROR_RATE_ALARM: Key<f64> = Key {
    name: "monitoring.server_error_rate_alarm",
    kind: Kind::Rate,
    default: Is("0.01"),
    doc: "alarm above this share of 5xx-like outcomes in the window",
    field: |c| &c.monitoring.server_error_rate_alarm,
};
pub(crate) const ALARM_WINDOW: Key<u64> = Key {
    name: "monitoring.alarm_window",
    kind: Kind::seconds(86400),
    default: Is("300"),
    doc: "seconds of history the error rates cover; at most 86400",
    field: |c| &c.monitoring.alarm_window_secs,
};
pub(crate) const ALARM_MIN_REQUESTS: Key<u64> = Key {
    name: "monitoring.alarm_min_requests",
    kind: Kind::Integer {
        unit: "requests",
        max: u64::MAX,
    },
    default: Is("20"),
    doc: "no alarm below this many operations in the window",
    field: |c| &c.monitoring.alarm_min_requests,
};
pub(crate) const SURGE_FACTOR: Key<f64> = Key {
    name: "monitoring.surge_factor",
    kind: Kind::Decimal {
        unit: "times the baseline",
        above: 1,
        max: 1000,
    },
    default: Is("3"),
    doc: "`request_surge` alarm: the request rate over `surge_window` exceeds this many times the rate over the rest of `alarm_window`",
    field: |c| &c.monitoring.surge_factor,
};
pub(crate) const SURGE_MIN_RATE: Key<f64> = Key {
    name: "monitoring.surge_min_rate",
    kind: Kind::Decimal {
        unit: "requests per second",
        above: 0,
        max: 1_000_000,
    },
    default: Is("1"),
    doc: "no `request_surge` alarm below this many requests per second over `surge_window`",
    field: |c| &c.monitoring.surge_min_rate,
};
pub(crate) const SURGE_WINDOW: Key<u64> = Key {
    name: "monitoring.surge_window",
    kind: Kind::seconds(43200),
    default: Is("60"),
    doc: "seconds of recent requests compared with the baseline; at least 1, at most 43200 and half of `alarm_window`",
    field: |c| &c.monitoring.surge_window_secs,
};

/// Each secret key and the `*_file` key that may give its value instead.
pub(crate) const SECRET_FILES: [(&dyn AnyKey, &dyn AnyKey); 7] = [
    (&ACCESS_KEY, &ACCESS_KEY_FILE),
    (&SECRET_KEY, &SECRET_KEY_FILE),
    (&SESSION_TOKEN, &SESSION_TOKEN_FILE),
    (&ACCOUNT_KEY, &ACCOUNT_KEY_FILE),
    (&SERVICE_ACCOUNT_KEY, &SERVICE_ACCOUNT_KEY_FILE),
    (&SIGNING_SECRET, &SIGNING_SECRET_FILE),
    (&PREVIOUS_SIGNING_SECRET, &PREVIOUS_SIGNING_SECRET_FILE),
];

/// What each cloud provider needs set besides its provider-neutral keys: `(provider, key,
/// what to give)`. A new provider's keys are declared in this file, and what it requires
/// here.
pub(crate) const REQUIRED: &[(Provider, &dyn AnyKey, &str)] = &[
    (
        Provider::Azure,
        &ACCOUNT,
        "the storage account's name, e.g. pacsmasksprod",
    ),
    (
        Provider::Azure,
        &CONTAINER,
        "the blob container, e.g. pacs-masks-prod",
    ),
    (
        Provider::Gcs,
        &BUCKET_NAME,
        "the GCS bucket, e.g. pacs-masks-prod",
    ),
];

/// Every key maskstore reads, in the order `config show` and the README list them.
pub(crate) const SCHEMA: &[&dyn AnyKey] = &[
    &PROVIDER,
    &BUCKET_NAME,
    &REGION,
    &ENDPOINT,
    &ACCESS_KEY,
    &SECRET_KEY,
    &SESSION_TOKEN,
    &ACCESS_KEY_FILE,
    &SECRET_KEY_FILE,
    &SESSION_TOKEN_FILE,
    &SECRET_SOURCE,
    &SECRET_REFRESH,
    &ACCOUNT,
    &CONTAINER,
    &ACCOUNT_KEY,
    &ACCOUNT_KEY_FILE,
    &SERVICE_ACCOUNT_KEY,
    &SERVICE_ACCOUNT_KEY_FILE,
    &VERIFY_FOLDERS,
    &VIRTUAL_HOSTED_STYLE,
    &REQUEST_TIMEOUT,
    &CONNECT_TIMEOUT,
    &MAX_RETRIES,
    &TRANSFERS,
    &RETRY_TIMEOUT,
    &RETRY_INITIAL_BACKOFF,
    &RETRY_MAX_BACKOFF,
    &ROOT,
    &FSYNC,
    &PREFIX,
    &CHECKSUM,
    &REQUIRE_CHECKSUM,
    &ALLOW_MEMORY_IN_PRODUCTION,
    &DEFAULT_TTL,
    &MAX_TTL,
    &LISTEN,
    &PUBLIC_URL,
    &SIGNING_SECRET,
    &PREVIOUS_SIGNING_SECRET,
    &SIGNING_SECRET_FILE,
    &PREVIOUS_SIGNING_SECRET_FILE,
    &ADMIN_LISTEN,
    &HEADER_TIMEOUT,
    &BODY_IDLE_TIMEOUT,
    &GATEWAY_REQUEST_TIMEOUT,
    &MAX_CONNECTIONS,
    &MAX_UPLOAD_BYTES,
    &MAX_CONCURRENT_UPLOADS,
    &FIRST_BYTE_TIMEOUT,
    &MAX_CONNECTIONS_PER_CLIENT,
    &MAX_UPLOADS_PER_CLIENT,
    &TRUSTED_PROXIES,
    &SHUTDOWN_GRACE,
    &ALLOWED_ORIGINS,
    &ALLOWED_METHODS,
    &ALLOWED_HEADERS,
    &EXPOSE_HEADERS,
    &MAX_AGE,
    &TRANSITION_IA_DAYS,
    &TRANSITION_GLACIER_DAYS,
    &ABORT_INCOMPLETE_MULTIPART_DAYS,
    &CLIENT_ERROR_RATE_ALARM,
    &SERVER_ERROR_RATE_ALARM,
    &ALARM_WINDOW,
    &ALARM_MIN_REQUESTS,
    &SURGE_FACTOR,
    &SURGE_MIN_RATE,
    &SURGE_WINDOW,
];

/// The environment variable for a dotted key: `object_storage.max_ttl` →
/// `APP_OBJECT_STORAGE__MAX_TTL`.
pub fn env_var_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replacen('.', "__", 1).to_uppercase())
}

/// Whether `section` is one of maskstore's (`object_storage`, `signed_url`, …).
pub(crate) fn is_section(section: &str) -> bool {
    SCHEMA.iter().any(|key| key.section() == section)
}

/// The sections of maskstore, in schema order.
pub(crate) fn sections() -> Vec<&'static str> {
    let mut out: Vec<&str> = SCHEMA.iter().map(|key| key.section()).collect();
    out.dedup();
    out
}

/// The declared key `<section>.<name>`, or an error naming the known keys of `section`
/// (`origin` is where the unknown key was found).
pub(crate) fn lookup(
    section: &str,
    name: &str,
    origin: &Origin,
) -> Result<&'static dyn AnyKey, Error> {
    if let Some(key) = SCHEMA
        .iter()
        .find(|key| key.section() == section && key.field_name() == name)
    {
        return Ok(*key);
    }
    let known: Vec<&str> = SCHEMA
        .iter()
        .filter(|key| key.section() == section)
        .map(|key| key.field_name())
        .collect();
    Err(Error::config(
        &format!("{section}.{name}"),
        origin,
        "is not a maskstore setting",
        format!(
            "check the spelling; the keys of [{section}] are: {}",
            known.join(", ")
        ),
    ))
}

/// The key an environment variable sets: `None` when the variable is not
/// `APP_<SECTION>__<KEY>` of a maskstore section (it belongs to the application), an error
/// naming the known keys when the section is maskstore's but the key is not.
pub(crate) fn key_of_env_var(var: &str) -> Option<Result<&'static dyn AnyKey, Error>> {
    key_of_var(var, &Origin::Env(var.to_string()))
}

/// [`key_of_env_var`] for a variable set at `origin` (a line of a `.env` file).
pub(crate) fn key_of_var(var: &str, origin: &Origin) -> Option<Result<&'static dyn AnyKey, Error>> {
    let (section, name) = var.strip_prefix(ENV_PREFIX)?.split_once("__")?;
    let section = section.to_lowercase();
    let name = name.to_lowercase();
    if !is_section(&section) {
        return misspelt_section(var, &section, &name, origin).map(Err);
    }
    Some(lookup(&section, &name, origin))
}

/// An error when `section` is not maskstore's but within two letters of one that has the
/// key `name` (`APP_OBJECT_STORGE__PROVIDER`): ignored as the application's, it would
/// leave the setting silently unset. An application's own section (`APP_GATEWAYS__URL`)
/// has keys of its own and stays its.
fn misspelt_section(var: &str, section: &str, name: &str, origin: &Origin) -> Option<Error> {
    let meant = sections().into_iter().find(|known| {
        strsim::levenshtein(known, section) <= 2
            && SCHEMA
                .iter()
                .any(|key| key.section() == *known && key.field_name() == name)
    })?;
    let fixed = env_var_name(&format!("{meant}.{name}"));
    Some(Error::config(
        &format!("{section}.{name}"),
        origin,
        format!("{var} names no maskstore section ({section}), so it would be ignored"),
        format!("did you mean {fixed} (section [{meant}])?"),
    ))
}

/// Whether the variable `var` sets a secret (`APP_OBJECT_STORAGE__SECRET_KEY`,
/// `APP_GATEWAY__SIGNING_SECRET`, …): what a `.env` file others can read must not hold.
pub fn is_secret_env_var(var: &str) -> bool {
    matches!(key_of_env_var(var), Some(Ok(key)) if key.kind() == Kind::Secret)
}
