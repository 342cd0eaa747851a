//! The layers of a configuration (defaults, files, environment, flags) and how they merge
//! into a validated [`Config`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::schema::{self as keys, AnyKey, FieldType, Key, Kind, Raw, SCHEMA, Value};
use super::validate::validate;
use super::{
    Config, CorsConfig, GatewayConfig, LifecycleConfig, MonitoringConfig, ObjectStorageConfig,
    Origin, SignedUrlConfig,
};
use crate::Error;

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
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| syntax_error(text, &e, &origin))?;
        for section in keys::sections() {
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
                let key = keys::lookup(section, name, &origin)?;
                let raw = match value {
                    toml::Value::String(s) => Raw::Text(s.clone()),
                    toml::Value::Integer(i) => Raw::Int(*i),
                    toml::Value::Boolean(b) => Raw::Bool(*b),
                    toml::Value::Array(items) if key.kind() == Kind::List => {
                        let texts: Option<Vec<String>> = items
                            .iter()
                            .map(|v| v.as_str().map(str::to_string))
                            .collect();
                        Raw::List(texts.ok_or_else(|| {
                            Error::config(
                                key.name(),
                                &origin,
                                "the list holds something other than strings",
                                "write a list of strings, such as [\"GET\", \"PUT\"]",
                            )
                        })?)
                    }
                    other => {
                        return Err(Error::config(
                            key.name(),
                            &origin,
                            format!("a {} is not allowed here", other.type_str()),
                            "give a string, a whole number, true/false, or a list of strings",
                        ));
                    }
                };
                self.insert(key, raw, origin.clone());
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
        let mut vars: Vec<(String, String)> = vars.into_iter().collect();
        vars.sort();
        for (var, value) in vars {
            let Some(key) = keys::key_of_env_var(&var) else {
                continue;
            };
            self.insert(key?, Raw::Text(value), Origin::Env(var));
        }
        Ok(())
    }

    /// Adds the `APP_*` lines of a `.env` file as a layer: `(variable, value, line)` in file
    /// order, a later line of the same variable winning (as `source .env` does). Variables
    /// of no maskstore section are ignored, as in the environment; an unknown key of a
    /// maskstore section is an error naming the file and line.
    pub fn add_env_file(
        &mut self,
        path: &std::path::Path,
        lines: &[(String, String, usize)],
    ) -> Result<(), Error> {
        for (var, value, line) in lines {
            let origin = Origin::EnvFile {
                path: path.to_path_buf(),
                line: *line,
            };
            let Some(key) = keys::key_of_var(var, &origin) else {
                continue;
            };
            self.insert(key?, Raw::Text(value.clone()), origin);
        }
        Ok(())
    }

    /// Sets one key from a string, as a layer of its own (for flags and tests).
    pub fn set(&mut self, key: &str, value: &str, origin: Origin) -> Result<(), Error> {
        let (section, name) = key.split_once('.').unwrap_or((key, ""));
        let key = keys::lookup(section, name, &origin)?;
        self.insert(key, Raw::Text(value.to_string()), origin);
        Ok(())
    }

    /// The secrets given as files (`*_file` keys, such as `APP_OBJECT_STORAGE__SECRET_KEY_FILE`),
    /// for the caller to read and hand back with [`ConfigLoader::set_secret_from_file`]:
    /// this module does no I/O. Setting both a secret and its file is an error naming both.
    pub fn secret_files(&self) -> Result<Vec<SecretFileRequest>, Error> {
        let mut requests = Vec::new();
        for (secret, file) in keys::SECRET_FILES {
            let Some((raw, file_origin)) = self.values.get(file.name()) else {
                continue;
            };
            if let Some((_, value_origin)) = self.values.get(secret.name()) {
                return Err(Error::config(
                    secret.name(),
                    value_origin,
                    format!(
                        "is set both as a value ({value_origin}) and as a file ({} from {file_origin})",
                        file.name()
                    ),
                    format!(
                        "remove one of them: keep {} ({}) in production, so the secret stays out of config files",
                        file.name(),
                        file.env_var()
                    ),
                ));
            }
            let Value::Path(path) = file.kind().parse(file.name(), raw.clone(), file_origin)?
            else {
                unreachable!("a secret file key reads as a path");
            };
            requests.push(SecretFileRequest {
                key: secret.name(),
                file_key: file.name(),
                path,
                origin: file_origin.clone(),
            });
        }
        Ok(requests)
    }

    /// Sets the secret `key` to `value`, read from the file of `request`. The value's
    /// origin is the file ([`Origin::SecretFile`]), so `config show` names the file, never
    /// the value.
    pub fn set_secret_from_file(&mut self, request: &SecretFileRequest, value: String) {
        let key = SCHEMA
            .iter()
            .find(|key| key.name() == request.key)
            .expect("a request names a declared key");
        self.values.insert(
            key.name(),
            (Raw::Text(value), Origin::SecretFile(request.path.clone())),
        );
    }

    /// The AWS Secrets Manager secret `object_storage.secret_source` names, for the caller
    /// to read and hand back with [`ConfigLoader::set_secret_from_source`]. Setting it
    /// together with the keys it gives (or their files) is an error naming both.
    pub fn secret_source(&self) -> Result<Option<SecretSourceRequest>, Error> {
        let Some((raw, origin)) = self.values.get(keys::SECRET_SOURCE.name()) else {
            return Ok(None);
        };
        let Raw::Text(text) = raw else {
            return Err(Error::config(
                keys::SECRET_SOURCE.name(),
                origin,
                "is not text",
                "quote the value",
            ));
        };
        let Some(secret_id) = text.trim().strip_prefix(SECRETS_MANAGER_SCHEME) else {
            return Err(Error::config(
                keys::SECRET_SOURCE.name(),
                origin,
                format!("{text:?} names no known secret source"),
                format!(
                    "give {SECRETS_MANAGER_SCHEME}<secret-id or ARN>, such as {SECRETS_MANAGER_SCHEME}prod/pacs-masks/s3"
                ),
            ));
        };
        if secret_id.is_empty() || secret_id.len() > 2048 || secret_id.contains(char::is_whitespace)
        {
            return Err(Error::config(
                keys::SECRET_SOURCE.name(),
                origin,
                "names no secret id",
                format!("give {SECRETS_MANAGER_SCHEME}<secret-id or ARN>, without spaces"),
            ));
        }
        let given = [
            &keys::ACCESS_KEY as &dyn AnyKey,
            &keys::SECRET_KEY,
            &keys::SESSION_TOKEN,
            &keys::ACCESS_KEY_FILE,
            &keys::SECRET_KEY_FILE,
            &keys::SESSION_TOKEN_FILE,
        ];
        if let Some((key, other)) = given
            .iter()
            .find_map(|key| self.values.get(key.name()).map(|(_, o)| (key, o)))
            .filter(|(_, origin)| !matches!(origin, Origin::SecretsManager(_)))
        {
            return Err(Error::config(
                keys::SECRET_SOURCE.name(),
                origin,
                format!(
                    "is set together with {} ({other}), which it gives",
                    key.name()
                ),
                format!(
                    "remove {} ({}): the secret holds the keys",
                    key.name(),
                    key.env_var()
                ),
            ));
        }
        Ok(Some(SecretSourceRequest {
            secret_id: secret_id.to_string(),
            origin: origin.clone(),
        }))
    }

    /// The text a layer gives `key` (dotted), before it is checked: for the caller that
    /// needs a value before [`ConfigLoader::build`] (the region of a secret to read).
    pub fn text(&self, key: &str) -> Option<&str> {
        match self.values.get(key) {
            Some((Raw::Text(text), _)) => Some(text),
            _ => None,
        }
    }

    /// Sets the S3 keys read from the secret of `request`: `access_key`, `secret_key` and
    /// (when given) `session_token`, each with the secret as its origin.
    pub fn set_secret_from_source(
        &mut self,
        request: &SecretSourceRequest,
        access_key: String,
        secret_key: String,
        session_token: Option<String>,
    ) {
        let origin = Origin::SecretsManager(request.secret_id.clone());
        let parts = [
            (keys::ACCESS_KEY.name(), Some(access_key)),
            (keys::SECRET_KEY.name(), Some(secret_key)),
            (keys::SESSION_TOKEN.name(), session_token),
        ];
        for (key, value) in parts {
            if let Some(value) = value {
                self.values.insert(key, (Raw::Text(value), origin.clone()));
            }
        }
    }

    /// A secret source must have been read (by `maskstore_backends::load_config`), and
    /// read less often than on every request.
    fn check_secret_source(&self) -> Result<(), Error> {
        if let Some((_, origin)) = self.values.get(keys::SECRET_SOURCE.name()) {
            self.secret_source()?;
            let read = matches!(
                self.values.get(keys::SECRET_KEY.name()),
                Some((_, Origin::SecretsManager(_)))
            );
            if !read {
                return Err(Error::config(
                    keys::SECRET_SOURCE.name(),
                    origin,
                    "names a secret that was not read",
                    "load the configuration with maskstore_backends::load_config, which reads it",
                ));
            }
        }
        match self.values.get(keys::SECRET_REFRESH.name()) {
            Some((Raw::Int(0), origin)) => Err(no_zero_refresh(origin)),
            Some((Raw::Text(t), origin)) if t.trim() == "0" => Err(no_zero_refresh(origin)),
            _ => Ok(()),
        }
    }

    fn insert(&mut self, key: &dyn AnyKey, raw: Raw, origin: Origin) {
        // An empty value counts as unset: it neither sets nor overrides.
        if matches!(&raw, Raw::Text(s) if s.is_empty()) {
            return;
        }
        self.values.insert(key.name(), (raw, origin));
    }

    /// Applies the defaults, converts every value and validates the whole.
    ///
    /// `environment` is the environment name; `environment_origin` says where it came from.
    pub fn build(self, environment: &str, environment_origin: Origin) -> Result<Config, Error> {
        check_environment_name(environment, &environment_origin)?;
        for (secret, file) in keys::SECRET_FILES {
            let unread = self.values.get(file.name()).filter(|_| {
                !matches!(
                    self.values.get(secret.name()),
                    Some((_, Origin::SecretFile(_)))
                )
            });
            if let Some((_, origin)) = unread {
                // Both set is reported by `secret_files`; here the file was never read.
                self.secret_files()?;
                return Err(Error::config(
                    file.name(),
                    origin,
                    "names a secret file that was not read",
                    "load the configuration with maskstore_backends::load_config, which reads secret files",
                ));
            }
        }
        self.check_secret_source()?;
        let mut r = Reader {
            values: self.values,
            origins: BTreeMap::new(),
            read: BTreeSet::new(),
        };
        let object_storage = ObjectStorageConfig {
            provider: r.get(&keys::PROVIDER)?,
            bucket_name: r.get(&keys::BUCKET_NAME)?,
            region: r.get(&keys::REGION)?,
            endpoint: r.get(&keys::ENDPOINT)?,
            access_key: r.get(&keys::ACCESS_KEY)?,
            secret_key: r.get(&keys::SECRET_KEY)?,
            session_token: r.get(&keys::SESSION_TOKEN)?,
            access_key_file: r.get(&keys::ACCESS_KEY_FILE)?,
            secret_key_file: r.get(&keys::SECRET_KEY_FILE)?,
            session_token_file: r.get(&keys::SESSION_TOKEN_FILE)?,
            secret_source: r.get(&keys::SECRET_SOURCE)?,
            secret_refresh_secs: r.get(&keys::SECRET_REFRESH)?,
            account: r.get(&keys::ACCOUNT)?,
            container: r.get(&keys::CONTAINER)?,
            account_key: r.get(&keys::ACCOUNT_KEY)?,
            account_key_file: r.get(&keys::ACCOUNT_KEY_FILE)?,
            service_account_key: r.get(&keys::SERVICE_ACCOUNT_KEY)?,
            service_account_key_file: r.get(&keys::SERVICE_ACCOUNT_KEY_FILE)?,
            verify_folders: r.get(&keys::VERIFY_FOLDERS)?,
            virtual_hosted_style: r.get(&keys::VIRTUAL_HOSTED_STYLE)?,
            request_timeout_secs: r.get(&keys::REQUEST_TIMEOUT)?,
            connect_timeout_secs: r.get(&keys::CONNECT_TIMEOUT)?,
            max_retries: r.get(&keys::MAX_RETRIES)?,
            retry_timeout_secs: r.get(&keys::RETRY_TIMEOUT)?,
            retry_initial_backoff_ms: r.get(&keys::RETRY_INITIAL_BACKOFF)?,
            retry_max_backoff_ms: r.get(&keys::RETRY_MAX_BACKOFF)?,
            transfers: r.get(&keys::TRANSFERS)?,
            root: r.get(&keys::ROOT)?,
            fsync: r.get(&keys::FSYNC)?,
            prefix: r.get(&keys::PREFIX)?,
            checksum: r.get(&keys::CHECKSUM)?,
            require_checksum: r.get(&keys::REQUIRE_CHECKSUM)?,
            allow_memory_in_production: r.get(&keys::ALLOW_MEMORY_IN_PRODUCTION)?,
        };
        let signed_url = SignedUrlConfig {
            default_ttl: r.get(&keys::DEFAULT_TTL)?,
            max_ttl: r.get(&keys::MAX_TTL)?,
        };
        let listen = r.get(&keys::LISTEN)?;
        let gateway = GatewayConfig {
            public_url: r
                .optional(&keys::PUBLIC_URL)?
                .unwrap_or_else(|| format!("http://{listen}")),
            listen,
            signing_secret: r.get(&keys::SIGNING_SECRET)?,
            previous_signing_secret: r.get(&keys::PREVIOUS_SIGNING_SECRET)?,
            signing_secret_file: r.get(&keys::SIGNING_SECRET_FILE)?,
            previous_signing_secret_file: r.get(&keys::PREVIOUS_SIGNING_SECRET_FILE)?,
            admin_listen: r.get(&keys::ADMIN_LISTEN)?,
            header_timeout_secs: r.get(&keys::HEADER_TIMEOUT)?,
            body_idle_timeout_secs: r.get(&keys::BODY_IDLE_TIMEOUT)?,
            request_timeout_secs: r.get(&keys::GATEWAY_REQUEST_TIMEOUT)?,
            max_connections: r.get(&keys::MAX_CONNECTIONS)?,
            max_upload_bytes: r.get(&keys::MAX_UPLOAD_BYTES)?,
            max_concurrent_uploads: r.get(&keys::MAX_CONCURRENT_UPLOADS)?,
            first_byte_timeout_secs: r.get(&keys::FIRST_BYTE_TIMEOUT)?,
            max_connections_per_client: r.get(&keys::MAX_CONNECTIONS_PER_CLIENT)?,
            max_uploads_per_client: r.get(&keys::MAX_UPLOADS_PER_CLIENT)?,
            trusted_proxies: r.get(&keys::TRUSTED_PROXIES)?,
            shutdown_grace_secs: r.get(&keys::SHUTDOWN_GRACE)?,
        };
        let cors = CorsConfig {
            allowed_origins: r.get(&keys::ALLOWED_ORIGINS)?,
            allowed_methods: r.get(&keys::ALLOWED_METHODS)?,
            allowed_headers: r.get(&keys::ALLOWED_HEADERS)?,
            expose_headers: r.get(&keys::EXPOSE_HEADERS)?,
            max_age: r.get(&keys::MAX_AGE)?,
        };
        let lifecycle = LifecycleConfig {
            transition_ia_days: r.get(&keys::TRANSITION_IA_DAYS)?,
            transition_glacier_days: r.get(&keys::TRANSITION_GLACIER_DAYS)?,
            abort_incomplete_multipart_days: r.get(&keys::ABORT_INCOMPLETE_MULTIPART_DAYS)?,
        };
        let monitoring = MonitoringConfig {
            client_error_rate_alarm: r.get(&keys::CLIENT_ERROR_RATE_ALARM)?,
            server_error_rate_alarm: r.get(&keys::SERVER_ERROR_RATE_ALARM)?,
            alarm_window_secs: r.get(&keys::ALARM_WINDOW)?,
            alarm_min_requests: r.get(&keys::ALARM_MIN_REQUESTS)?,
            surge_factor: r.get(&keys::SURGE_FACTOR)?,
            surge_min_rate: r.get(&keys::SURGE_MIN_RATE)?,
            surge_window_secs: r.get(&keys::SURGE_WINDOW)?,
        };
        debug_assert!(
            SCHEMA.iter().all(|key| r.read.contains(key.name())),
            "build reads every declared key"
        );
        let mut origins = r.origins;
        origins.insert("environment".to_string(), environment_origin);
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

fn no_zero_refresh(origin: &Origin) -> Error {
    Error::config(
        keys::SECRET_REFRESH.name(),
        origin,
        "0 seconds would read the secret on every request",
        "give at least 1 (the default is 60)",
    )
}

/// How `object_storage.secret_source` names an AWS Secrets Manager secret.
pub const SECRETS_MANAGER_SCHEME: &str = "aws-secretsmanager:";

/// The AWS Secrets Manager secret `object_storage.secret_source` names, for the caller of
/// [`ConfigLoader::secret_source`] to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSourceRequest {
    /// The secret's name or ARN.
    pub secret_id: String,
    /// Where `secret_source` was set.
    pub origin: Origin,
}

/// A secret given as a file, for the caller of [`ConfigLoader::secret_files`] to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFileRequest {
    /// The secret's key (`object_storage.secret_key`).
    pub key: &'static str,
    /// The key that named the file (`object_storage.secret_key_file`).
    pub file_key: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Where the file's key was set.
    pub origin: Origin,
}

/// The error for a file that is not TOML. The parser's own message is left out: it quotes
/// the offending value, which may be a secret (an unquoted all-digit `secret_key`). Only
/// the position and, when the line starts with a known key, that key are shown.
fn syntax_error(text: &str, e: &toml::de::Error, origin: &Origin) -> Error {
    let Some(span) = e.span() else {
        return Error::config(
            "(file)",
            origin,
            "is not valid TOML",
            "check the file's syntax: quote text values (secret_key = \"…\"), whole numbers \
             must fit in 64 bits",
        );
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(key, _)| key.trim())
        // Only a key maskstore knows: the text before an '=' may be a pasted secret.
        .filter(|key| {
            SCHEMA.iter().any(|known| {
                known.name() == *key
                    || known
                        .name()
                        .strip_prefix(known.section())
                        .and_then(|leaf| leaf.strip_prefix('.'))
                        == Some(*key)
            })
        });
    let place = match key {
        Some(key) => format!("line {line}, column {column} (the value of {key})"),
        None => format!("line {line}, column {column}"),
    };
    Error::config(
        "(file)",
        origin,
        format!("is not valid TOML at {place}"),
        "fix the syntax there: quote text values (secret_key = \"…\"), whole numbers must fit \
         in 64 bits; the parser's message is not shown because it may quote a secret",
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
    read: BTreeSet<&'static str>,
}

impl Reader {
    /// The value of `key` from the layers, else its default, read by its kind; `None` when
    /// neither sets it.
    fn value(&mut self, key: &dyn AnyKey) -> Result<Option<Value>, Error> {
        self.read.insert(key.name());
        let (raw, origin) = match self.values.remove(key.name()) {
            Some(layered) => layered,
            None => match key.default_value() {
                Some(default) => (Raw::Text(default.to_string()), Origin::Default),
                None => return Ok(None),
            },
        };
        let value = key.kind().parse(key.name(), raw, &origin)?;
        self.origins.insert(key.name().to_string(), origin);
        Ok(Some(value))
    }

    /// The value of `key`, as its field's type.
    fn get<T: FieldType>(&mut self, key: &Key<T>) -> Result<T, Error> {
        let field = match self.value(key)? {
            Some(value) => T::from_value(value),
            None => T::missing(),
        };
        Ok(field.unwrap_or_else(|| {
            panic!(
                "{}: the declared kind must produce the field's type, and a key without a \
                 default must fill an Option",
                key.name
            )
        }))
    }

    /// The value of `key`, or `None` when unset (for a field whose default is derived
    /// from other keys).
    fn optional<T: FieldType>(&mut self, key: &Key<T>) -> Result<Option<T>, Error> {
        Ok(self.value(key)?.map(|value| {
            T::from_value(value).unwrap_or_else(|| {
                panic!(
                    "{}: the declared kind must produce the field's type",
                    key.name
                )
            })
        }))
    }
}
