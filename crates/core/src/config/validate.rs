//! The rules a whole [`Config`] must follow: rules between keys (`s3` needs a bucket,
//! `default_ttl` ≤ `max_ttl`, …) and limits of single values. What one value must look like
//! on its own (a URL, a bucket name) is checked as it is read, by its [`Kind`].
//!
//! [`Kind`]: super::schema::Kind

use super::schema::{
    ABORT_INCOMPLETE_MULTIPART_DAYS, ACCESS_KEY, ALLOW_MEMORY_IN_PRODUCTION, ALLOWED_METHODS,
    ALLOWED_ORIGINS, AnyKey, BUCKET_NAME, CONNECT_TIMEOUT, DEFAULT_TTL, MAX_TTL,
    PREVIOUS_SIGNING_SECRET, PROVIDER, REGION, REQUEST_TIMEOUT, SECRET_KEY, SESSION_TOKEN,
    SIGNING_SECRET, TRANSITION_GLACIER_DAYS, TRANSITION_IA_DAYS, VIRTUAL_HOSTED_STYLE,
};
use super::schema::{
    ADMIN_LISTEN, BODY_IDLE_TIMEOUT, FIRST_BYTE_TIMEOUT, GATEWAY_REQUEST_TIMEOUT, HEADER_TIMEOUT,
    LISTEN, MAX_CONCURRENT_UPLOADS, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT, MAX_UPLOAD_BYTES,
    MAX_UPLOADS_PER_CLIENT, TRUSTED_PROXIES,
};
use super::schema::{ALARM_WINDOW, REQUIRED, SURGE_WINDOW, TRANSFERS};
use super::{Config, DEFAULT_ENVIRONMENT, Origin, Provider};
use crate::Error;
use crate::ttl::S3_MAX_PRESIGN_SECS;

/// The shortest signing secret accepted, in bytes (HMAC-SHA256 wants 32 bytes of entropy).
pub const MIN_SIGNING_SECRET_BYTES: usize = 32;

/// The environment whose data must survive a restart.
const PRODUCTION: &str = "production";

impl Config {
    /// Where the value of `key` came from.
    pub(crate) fn origin_of(&self, key: &dyn AnyKey) -> Origin {
        self.origin(key.name()).cloned().unwrap_or(Origin::Default)
    }
}

/// A config error for `key`, blaming the origin of `key`.
fn refuse(
    config: &Config,
    key: &dyn AnyKey,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> Error {
    Error::config(key.name(), &config.origin_of(key), problem, fix)
}

/// A config error for `key`, blaming the origin of `blamed` (the key whose value makes
/// `key` wrong or required).
fn refuse_because(
    config: &Config,
    key: &dyn AnyKey,
    blamed: &dyn AnyKey,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> Error {
    Error::config(key.name(), &config.origin_of(blamed), problem, fix)
}

/// Checks every rule of a whole config.
pub(crate) fn validate(config: &Config) -> Result<(), Error> {
    validate_object_storage(config)?;
    validate_signed_url(config)?;
    validate_gateway(config)?;
    validate_monitoring(config)?;
    validate_lifecycle(config)
}

/// The surge rule compares `surge_window` with the rest of `alarm_window`, which must be
/// at least as long, or the baseline would be noisier than what it is compared with.
fn validate_monitoring(config: &Config) -> Result<(), Error> {
    let m = &config.monitoring;
    if m.surge_window_secs == 0 || m.surge_window_secs > m.alarm_window_secs / 2 {
        return Err(refuse(
            config,
            &SURGE_WINDOW,
            format!(
                "{} seconds leaves no baseline of at least the same length within {} ({} seconds)",
                m.surge_window_secs,
                ALARM_WINDOW.name(),
                m.alarm_window_secs
            ),
            format!(
                "give from 1 to {} seconds (half of {}), or lengthen {}",
                m.alarm_window_secs / 2,
                ALARM_WINDOW.name(),
                ALARM_WINDOW.name()
            ),
        ));
    }
    Ok(())
}

fn validate_object_storage(config: &Config) -> Result<(), Error> {
    let os = &config.object_storage;
    if os.transfers == 0 {
        return Err(refuse(
            config,
            &TRANSFERS,
            "is 0, which would copy nothing",
            "give from 1 to 256, or leave it unset for the default 32",
        ));
    }
    for (provider, key, what) in REQUIRED {
        if os.provider == *provider && key.show(config).is_none() {
            return Err(refuse_because(
                config,
                *key,
                &PROVIDER,
                format!("is required when provider = \"{provider}\""),
                format!(
                    "set {} ({what}) in [{}] or {}",
                    key.field_name(),
                    key.section(),
                    key.env_var()
                ),
            ));
        }
    }
    if let Some(name) = &os.bucket_name
        && let Err((problem, fix)) = check_bucket_name_of(os.provider, name)
    {
        return Err(refuse(config, &BUCKET_NAME, problem, fix));
    }
    if os.provider == Provider::S3 {
        if os.bucket_name.is_none() {
            return Err(refuse_because(
                config,
                &BUCKET_NAME,
                &PROVIDER,
                "is required when provider = \"s3\"",
                format!(
                    "set {} in [{}] or {}",
                    BUCKET_NAME.field_name(),
                    BUCKET_NAME.section(),
                    BUCKET_NAME.env_var()
                ),
            ));
        }
        if os.region.is_none() {
            return Err(refuse_because(
                config,
                &REGION,
                &PROVIDER,
                "is required when provider = \"s3\"",
                format!(
                    "set {} (the bucket's region, e.g. us-east-1) in [{}] or {}",
                    REGION.field_name(),
                    REGION.section(),
                    REGION.env_var()
                ),
            ));
        }
    }
    // AWS's wildcard certificate covers one label, so `<a.b>.s3.<region>.amazonaws.com`
    // fails TLS on every request and presigned URL (S3 user guide, "Virtual hosting of
    // buckets"). A named endpoint is the operator's, certificate included.
    if os.provider == Provider::S3
        && os.virtual_hosted_style
        && os.endpoint.is_none()
        && let Some(bucket) = os.bucket_name.as_deref().filter(|b| b.contains('.'))
    {
        return Err(refuse(
            config,
            &VIRTUAL_HOSTED_STYLE,
            format!(
                "bucket \"{bucket}\" contains a dot, so AWS's certificate                  (*.s3.<region>.amazonaws.com) does not cover its virtual host and every                  https request and presigned URL would fail"
            ),
            format!(
                "set {} = false (path style), or use a bucket name without dots",
                VIRTUAL_HOSTED_STYLE.field_name()
            ),
        ));
    }
    let both = format!(
        "set both {} and {}, or neither to use the AWS credential chain",
        ACCESS_KEY.field_name(),
        SECRET_KEY.field_name()
    );
    match (&os.access_key, &os.secret_key) {
        (Some(_), None) => {
            return Err(refuse_because(
                config,
                &SECRET_KEY,
                &ACCESS_KEY,
                format!("is missing while {} is set", ACCESS_KEY.field_name()),
                both,
            ));
        }
        (None, Some(_)) => {
            return Err(refuse_because(
                config,
                &ACCESS_KEY,
                &SECRET_KEY,
                format!("is missing while {} is set", SECRET_KEY.field_name()),
                both,
            ));
        }
        (None, None) if os.session_token.is_some() => {
            // The client would sign with the AWS chain and drop the token silently.
            return Err(refuse(
                config,
                &SESSION_TOKEN,
                format!(
                    "is set without {} and {}; a session token only belongs to the \
                     temporary keys it was issued with",
                    ACCESS_KEY.field_name(),
                    SECRET_KEY.field_name()
                ),
                format!(
                    "set {} and {} to the temporary credentials too, or unset {} to use \
                     the AWS credential chain",
                    ACCESS_KEY.field_name(),
                    SECRET_KEY.field_name(),
                    SESSION_TOKEN.field_name()
                ),
            ));
        }
        _ => {}
    }
    for (key, value) in [
        (&REQUEST_TIMEOUT, os.request_timeout_secs),
        (&CONNECT_TIMEOUT, os.connect_timeout_secs),
    ] {
        if value == 0 {
            return Err(refuse(
                config,
                key,
                "a timeout of 0 seconds would fail every request",
                "give at least 1 second",
            ));
        }
    }
    if os.provider == Provider::Memory
        && config.environment == PRODUCTION
        && !os.allow_memory_in_production
    {
        return Err(refuse(
            config,
            &PROVIDER,
            format!(
                "provider \"{}\" in environment \"{PRODUCTION}\" would lose every mask on restart",
                Provider::Memory
            ),
            format!(
                "use provider {}, or set {} = true if that is really intended",
                Provider::S3,
                ALLOW_MEMORY_IN_PRODUCTION.field_name()
            ),
        ));
    }
    Ok(())
}

fn validate_signed_url(config: &Config) -> Result<(), Error> {
    let su = &config.signed_url;
    for (key, value) in [(&DEFAULT_TTL, su.default_ttl), (&MAX_TTL, su.max_ttl)] {
        if value == 0 {
            return Err(refuse(
                config,
                key,
                "a TTL of 0 makes every signed URL expire at once",
                format!(
                    "give at least 1 second (the guide uses {} = {}, {} = {})",
                    DEFAULT_TTL.field_name(),
                    DEFAULT_TTL.default_value().unwrap_or_default(),
                    MAX_TTL.field_name(),
                    MAX_TTL.default_value().unwrap_or_default(),
                ),
            ));
        }
    }
    if su.max_ttl > S3_MAX_PRESIGN_SECS {
        return Err(refuse(
            config,
            &MAX_TTL,
            format!(
                "{} s is above S3's presign ceiling of {S3_MAX_PRESIGN_SECS} s (7 days)",
                su.max_ttl
            ),
            format!("give at most {S3_MAX_PRESIGN_SECS}"),
        ));
    }
    if su.default_ttl > su.max_ttl {
        return Err(refuse(
            config,
            &DEFAULT_TTL,
            format!(
                "{} s is above {} ({} s, {})",
                su.default_ttl,
                MAX_TTL.field_name(),
                su.max_ttl,
                config.origin_of(&MAX_TTL)
            ),
            format!(
                "lower {} or raise {}",
                DEFAULT_TTL.field_name(),
                MAX_TTL.field_name()
            ),
        ));
    }
    Ok(())
}

fn validate_lifecycle(config: &Config) -> Result<(), Error> {
    let lc = &config.lifecycle;
    if lc.transition_ia_days < 30 {
        return Err(refuse(
            config,
            &TRANSITION_IA_DAYS,
            format!(
                "{} days is below S3's 30-day minimum for Standard-IA",
                lc.transition_ia_days
            ),
            format!(
                "give 30 or more (the guide uses {})",
                TRANSITION_IA_DAYS.default_value().unwrap_or_default()
            ),
        ));
    }
    if lc.transition_glacier_days <= lc.transition_ia_days {
        return Err(refuse(
            config,
            &TRANSITION_GLACIER_DAYS,
            format!(
                "{} days is not after the Standard-IA transition ({} days)",
                lc.transition_glacier_days, lc.transition_ia_days
            ),
            format!(
                "give more days than {} (the guide uses {})",
                TRANSITION_IA_DAYS.field_name(),
                TRANSITION_GLACIER_DAYS.default_value().unwrap_or_default()
            ),
        ));
    }
    if lc.abort_incomplete_multipart_days == 0 {
        return Err(refuse(
            config,
            &ABORT_INCOMPLETE_MULTIPART_DAYS,
            "0 days would abort uploads in progress",
            format!(
                "give at least 1 (default {})",
                ABORT_INCOMPLETE_MULTIPART_DAYS
                    .default_value()
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// The gateway's limits: none may be 0 (a 0 timeout or cap would refuse everything), and
/// concurrent uploads fit in the connections.
fn validate_gateway_limits(config: &Config) -> Result<(), Error> {
    let gw = &config.gateway;
    for (key, value) in [
        (&HEADER_TIMEOUT, gw.header_timeout_secs),
        (&BODY_IDLE_TIMEOUT, gw.body_idle_timeout_secs),
        (&GATEWAY_REQUEST_TIMEOUT, gw.request_timeout_secs),
        (&MAX_CONNECTIONS, gw.max_connections),
        (&MAX_UPLOAD_BYTES, gw.max_upload_bytes),
        (&MAX_CONCURRENT_UPLOADS, gw.max_concurrent_uploads),
        (&FIRST_BYTE_TIMEOUT, gw.first_byte_timeout_secs),
    ] {
        if value == 0 {
            return Err(refuse(
                config,
                key,
                "is 0, which would refuse every request",
                format!(
                    "give at least 1, or leave it unset for the default {}",
                    key.default_value().unwrap_or_default()
                ),
            ));
        }
    }
    validate_client_shares(config)?;
    if gw.max_concurrent_uploads > gw.max_connections {
        return Err(refuse(
            config,
            &MAX_CONCURRENT_UPLOADS,
            format!(
                "{} is more than {} ({})",
                gw.max_concurrent_uploads,
                MAX_CONNECTIONS.name(),
                gw.max_connections
            ),
            format!("give at most {}", gw.max_connections),
        ));
    }
    if gw.admin_listen.as_deref() == Some(gw.listen.as_str()) {
        return Err(refuse(
            config,
            &ADMIN_LISTEN,
            format!("is the same address as {} ({})", LISTEN.name(), gw.listen),
            "give the admin listener its own port, such as 127.0.0.1:9001, or leave it unset",
        ));
    }
    Ok(())
}

/// Each client's shares: not 0, within the whole; the trusted proxies are IP addresses.
fn validate_client_shares(config: &Config) -> Result<(), Error> {
    let gw = &config.gateway;
    for (key, value) in [
        (&MAX_CONNECTIONS_PER_CLIENT, gw.max_connections_per_client),
        (&MAX_UPLOADS_PER_CLIENT, gw.max_uploads_per_client),
    ] {
        if value == Some(0) {
            return Err(refuse(
                config,
                key,
                "is 0, which would refuse every request",
                "give at least 1, or leave it unset for the default share",
            ));
        }
    }
    // A client's share fits in the whole.
    for (key, value, bound, bound_key) in [
        (
            &MAX_CONNECTIONS_PER_CLIENT,
            gw.max_connections_per_client,
            gw.max_connections,
            &MAX_CONNECTIONS,
        ),
        (
            &MAX_UPLOADS_PER_CLIENT,
            gw.max_uploads_per_client,
            gw.max_concurrent_uploads,
            &MAX_CONCURRENT_UPLOADS,
        ),
    ] {
        if let Some(value) = value
            && value > bound
        {
            return Err(refuse(
                config,
                key,
                format!("{value} is above {} ({bound})", bound_key.name()),
                format!("give at most {bound}"),
            ));
        }
    }
    if let Some(bad) = gw
        .trusted_proxies
        .iter()
        .find(|p| p.trim().parse::<std::net::IpAddr>().is_err())
    {
        return Err(refuse(
            config,
            &TRUSTED_PROXIES,
            format!("{:?} is not an IP address", crate::shown(bad)),
            "list the proxies' IP addresses, such as 10.0.0.5,::1",
        ));
    }
    Ok(())
}

fn validate_gateway(config: &Config) -> Result<(), Error> {
    let gw = &config.gateway;
    for (key, secret) in [
        (&SIGNING_SECRET, &gw.signing_secret),
        (&PREVIOUS_SIGNING_SECRET, &gw.previous_signing_secret),
    ] {
        if let Some(secret) = secret
            && secret.expose().len() < MIN_SIGNING_SECRET_BYTES
        {
            return Err(refuse(
                config,
                key,
                format!("the secret is shorter than {MIN_SIGNING_SECRET_BYTES} bytes"),
                "generate one with: openssl rand -hex 32",
            ));
        }
    }
    if gw.previous_signing_secret.is_some() && gw.signing_secret.is_none() {
        return Err(refuse_because(
            config,
            &SIGNING_SECRET,
            &PREVIOUS_SIGNING_SECRET,
            format!(
                "is missing while {} is set",
                PREVIOUS_SIGNING_SECRET.field_name()
            ),
            format!(
                "set {} to the new secret; {} keeps the old one valid",
                SIGNING_SECRET.field_name(),
                PREVIOUS_SIGNING_SECRET.field_name()
            ),
        ));
    }
    validate_gateway_limits(config)?;
    let serves_gateway = matches!(
        config.object_storage.provider,
        Provider::Local | Provider::Memory
    );
    if serves_gateway && gw.signing_secret.is_none() && config.environment != DEFAULT_ENVIRONMENT {
        return Err(refuse_because(
            config,
            &SIGNING_SECRET,
            &PROVIDER,
            format!(
                "is required for provider {} outside development (environment {:?})",
                config.object_storage.provider, config.environment
            ),
            format!(
                "set {} (generate one with: openssl rand -hex 32)",
                SIGNING_SECRET.env_var()
            ),
        ));
    }
    let cors = &config.cors;
    if let Some(bad) = cors
        .allowed_origins
        .iter()
        .find(|o| *o != "*" && check_endpoint(o).is_err())
    {
        return Err(refuse(
            config,
            &ALLOWED_ORIGINS,
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
        return Err(refuse(
            config,
            &ALLOWED_METHODS,
            format!("{bad:?} is not an HTTP method CORS can allow here"),
            format!("use some of: {}", METHODS.join(", ")),
        ));
    }
    Ok(())
}

/// Azure's storage account naming rule: 3-24 lowercase letters and digits.
pub(crate) fn check_account_name(name: &str) -> Result<(), String> {
    if !(3..=24).contains(&name.len()) {
        return Err(format!(
            "it is {} characters long, Azure needs 3 to 24",
            name.len()
        ));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
    {
        Some(c) => Err(format!("{c:?} is not allowed")),
        None => Ok(()),
    }
}

/// Azure's container naming rule: 3-63 lowercase letters, digits and hyphens, starting
/// with a letter or digit, every hyphen between letters or digits.
pub(crate) fn check_container_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err(format!(
            "it is {} characters long, Azure needs 3 to 63",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!("{c:?} is not allowed"));
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Err("a hyphen must stand between letters or digits".to_string());
    }
    Ok(())
}

/// Whether `region` looks like an S3 region name (`us-east-1`).
pub(crate) fn check_region(region: &str) -> bool {
    region
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The characters a bucket name of any provider may hold (GCS's: lowercase letters,
/// digits, '-', '_' and '.'; S3's are those but '_'); each provider's own rule follows
/// once the provider is known ([`check_bucket_name_of`]).
pub(crate) fn check_bucket_characters(name: &str) -> Result<(), String> {
    match name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_')))
    {
        Some(c) => Err(format!("{c:?} is not allowed")),
        None => Ok(()),
    }
}

/// The bucket naming rule of `provider`, its problem and its fix, when it breaks it.
fn check_bucket_name_of(provider: Provider, name: &str) -> Result<(), (String, &'static str)> {
    match provider {
        Provider::Gcs => check_gcs_bucket_name(name).map_err(|problem| {
            (
                format!("{name:?} is not a bucket name GCS accepts: {problem}"),
                "use 3-63 lowercase letters, digits, '-', '_' and '.' (up to 222 with dots, \
                 63 between two dots), beginning and ending with a letter or digit, such as \
                 pacs-masks-prod",
            )
        }),
        _ => check_bucket_name(name).map_err(|problem| {
            (
                format!("{name:?} is not a bucket name S3 accepts: {problem}"),
                "use 3-63 lowercase letters, digits, '-' and '.', such as pacs-masks-prod",
            )
        }),
    }
}

/// GCS's bucket naming rules ("Bucket names" in Cloud Storage's documentation): lowercase
/// letters, digits, '-', '_' and '.'; beginning and ending with a letter or digit; 3-63
/// characters, or up to 222 with dots, each dot-separated part at most 63; not an IP
/// address; not beginning with "goog" nor holding "google" or a misspelling of it.
pub(crate) fn check_gcs_bucket_name(name: &str) -> Result<(), String> {
    check_bucket_characters(name)?;
    let longest = if name.contains('.') { 222 } else { 63 };
    if !(3..=longest).contains(&name.len()) {
        return Err(format!(
            "it is {} characters long, GCS needs 3 to {longest}",
            name.len()
        ));
    }
    if let Some(part) = name.split('.').find(|part| part.len() > 63) {
        return Err(format!(
            "a part between dots is {} characters long, GCS allows 63",
            part.len()
        ));
    }
    let first_last_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_last_ok(name.chars().next()) || !first_last_ok(name.chars().last()) {
        return Err("it must begin and end with a letter or digit".to_string());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("it must not look like an IP address".to_string());
    }
    if name.starts_with("goog") {
        return Err("the prefix \"goog\" is reserved".to_string());
    }
    if ["google", "g00gle", "go0gle", "g0ogle"]
        .iter()
        .any(|word| name.contains(word))
    {
        return Err("it must not contain \"google\" or a misspelling of it".to_string());
    }
    Ok(())
}

/// S3's bucket naming rules (general purpose buckets).
pub(crate) fn check_bucket_name(name: &str) -> Result<(), String> {
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
pub(crate) fn without_userinfo(endpoint: &str) -> String {
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

/// An `http(s)://` URL with a host and without credentials, query or fragment.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), String> {
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
        return Err(format!(
            "must not carry credentials; use {} and {} instead",
            ACCESS_KEY.field_name(),
            SECRET_KEY.field_name()
        ));
    }
    Ok(())
}
