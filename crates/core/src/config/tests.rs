//! The unit tests of the config: layering, parsing, validation, redaction.

use std::path::PathBuf;
use std::time::Duration;

use super::schema::{AnyKey, DefaultIs, Kind, SCHEMA};
use super::*;
use crate::{Error, KeyPrefix, Secret, TtlPolicy};

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
        config_error(build_env(&[("APP_OBJECT_STORAGE__PROVIDER", "google")]));
    assert_eq!(key, "object_storage.provider");
    assert_eq!(origin, Origin::Env("APP_OBJECT_STORAGE__PROVIDER".into()));
    assert!(text.contains("\"google\""), "{text}");
    assert!(text.contains("s3, local, memory, azure, gcs"), "{text}");
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

/// AWS's wildcard certificate (`*.s3.<region>.amazonaws.com`) covers one label: a bucket
/// with a dot, addressed virtual-hosted over https, fails TLS on every request and every
/// presigned URL ("Virtual hosting of buckets" in the S3 user guide). Path style, or an
/// endpoint the operator names (and holds the certificate of), still work.
#[test]
fn a_dotted_bucket_is_refused_virtual_hosted_on_aws() {
    let dotted = [
        ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
        ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs.masks"),
        ("APP_OBJECT_STORAGE__REGION", "us-east-1"),
    ];
    let (key, _, text) = config_error(build_env(
        &[
            &dotted[..],
            &[("APP_OBJECT_STORAGE__VIRTUAL_HOSTED_STYLE", "true")],
        ]
        .concat(),
    ));
    assert_eq!(key, "object_storage.virtual_hosted_style");
    assert!(text.contains("pacs.masks"), "{text}");
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("virtual_hosted_style = false"), "{text}");
    build_env(&dotted).unwrap();
    build_env(
        &[
            &dotted[..],
            &[
                ("APP_OBJECT_STORAGE__VIRTUAL_HOSTED_STYLE", "true"),
                (
                    "APP_OBJECT_STORAGE__ENDPOINT",
                    "https://pacs.masks.minio.example",
                ),
            ],
        ]
        .concat(),
    )
    .unwrap();
    build_env(&s3_env_with(&[(
        "APP_OBJECT_STORAGE__VIRTUAL_HOSTED_STYLE",
        "true",
    )]))
    .unwrap();
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

/// A session token belongs to the temporary access key and secret it came with; alone,
/// the client would sign with the AWS chain and drop the token without a word.
#[test]
fn a_session_token_without_its_keys_is_refused() {
    let token = (
        "APP_OBJECT_STORAGE__SESSION_TOKEN",
        "FwoGZXIvYXdzE-token-value",
    );
    let (key, _, text) = config_error(build_env(&s3_env_with(&[token])));
    assert_eq!(key, "object_storage.session_token");
    assert!(text.contains("access_key"), "{text}");
    assert!(!text.contains(token.1), "the token is never echoed: {text}");
    build_env(&s3_env_with(&[
        token,
        ("APP_OBJECT_STORAGE__ACCESS_KEY", "ASIAEXAMPLE"),
        ("APP_OBJECT_STORAGE__SECRET_KEY", "temporary-secret"),
    ]))
    .unwrap();
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
    let (key, origin, text) = config_error(build_env(&[("APP_GATEWAY__SIGNING_SECRET", "short")]));
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
    let (key, _, text) = config_error(build_env(&[("APP_LIFECYCLE__TRANSITION_IA_DAYS", "10")]));
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
    for (entry, key) in entries.iter().zip(SCHEMA) {
        assert_eq!(entry.key, key.name());
    }
    assert_eq!(
        env_var_name("object_storage.bucket_name"),
        "APP_OBJECT_STORAGE__BUCKET_NAME"
    );
}

#[test]
fn every_default_reads_back_as_declared() {
    let config = Config::embedded_default();
    for (entry, key) in config.entries().iter().zip(SCHEMA) {
        match key.default() {
            DefaultIs::Value(default) => {
                assert_eq!(entry.value.as_deref(), Some(default), "{}", key.name());
                assert_eq!(entry.origin, Origin::Default, "{}", key.name());
            }
            DefaultIs::Unset(_) if entry.key == "gateway.public_url" => {
                assert_eq!(entry.value.as_deref(), Some("http://127.0.0.1:9000"));
            }
            DefaultIs::Unset(_) => assert_eq!(entry.value, None, "{}", key.name()),
        }
    }
}

#[test]
fn every_key_is_set_by_its_env_var() {
    let sample = |key: &dyn AnyKey| match key.default() {
        DefaultIs::Value("") if key.field_name() == "trusted_proxies" => "10.0.0.5",
        DefaultIs::Value(value) => value,
        DefaultIs::Unset(_) => match key.field_name() {
            "bucket_name" => "pacs-masks",
            "account" => "pacsmasks",
            "container" => "pacs-masks",
            "region" => "us-east-1",
            "endpoint" => "http://127.0.0.1:8333",
            "verify_folders" => "true",
            "public_url" => "https://masks.example.org",
            "admin_listen" => "127.0.0.1:9001",
            "max_connections_per_client" | "max_uploads_per_client" => "8",
            "signing_secret" | "previous_signing_secret" => SIGNING_SECRET,
            _ => "some-text",
        },
    };
    // A secret and its file cannot both be set: the files are set in a second round. The
    // secret source is read by the caller (I/O): its own test below.
    let is_file = |key: &&&dyn AnyKey| key.kind() == Kind::SecretFile;
    let is_source = |key: &&&dyn AnyKey| key.field_name() == "secret_source";
    let vars: Vec<(String, String)> = SCHEMA
        .iter()
        .filter(|key| !is_file(key) && !is_source(key))
        .map(|key| (key.env_var(), sample(*key).to_string()))
        .collect();
    let mut loader = ConfigLoader::new();
    loader.add_env(vars).unwrap();
    let config = loader.build("development", Origin::Default).unwrap();
    let files: Vec<(String, String)> = SCHEMA
        .iter()
        .filter(is_file)
        .map(|key| (key.env_var(), format!("/run/secrets/{}", key.field_name())))
        .collect();
    let mut loader = ConfigLoader::new();
    loader.add_env(files).unwrap();
    let requests = loader.secret_files().unwrap();
    assert_eq!(requests.len(), 7);
    for request in &requests {
        loader.set_secret_from_file(request, SIGNING_SECRET.to_string());
    }
    let from_files = loader.build("development", Origin::Default).unwrap();
    for request in &requests {
        assert_eq!(
            from_files.origin(request.key),
            Some(&Origin::SecretFile(request.path.clone()))
        );
        assert_eq!(
            from_files.origin(request.file_key),
            Some(&Origin::Env(env_var_name(request.file_key)))
        );
    }
    for entry in config
        .entries()
        .into_iter()
        .filter(|e| !e.key.ends_with("_file") && e.key != "object_storage.secret_source")
    {
        assert_eq!(
            entry.origin,
            Origin::Env(entry.env_var.clone()),
            "{}",
            entry.key
        );
        assert!(entry.value.is_some(), "{}", entry.key);
    }
}

#[test]
fn a_secret_source_gives_the_s3_keys_names_its_secret_and_excludes_the_keys() {
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let source = (
        "APP_OBJECT_STORAGE__SECRET_SOURCE",
        "aws-secretsmanager:prod/pacs-masks/s3",
    );
    let mut loader = ConfigLoader::new();
    loader.add_env(env(&[source])).unwrap();
    let request = loader.secret_source().unwrap().unwrap();
    assert_eq!(request.secret_id, "prod/pacs-masks/s3");
    // Not read: refused, never silently without keys.
    let mut unread = ConfigLoader::new();
    unread.add_env(env(&[source])).unwrap();
    let text = unread
        .build("development", Origin::Default)
        .unwrap_err()
        .to_string();
    assert!(text.contains("not read"), "{text}");
    loader.set_secret_from_source(&request, "AKIASM".into(), "s3cr3t-from-sm".into(), None);
    let config = loader.build("development", Origin::Default).unwrap();
    assert_eq!(config.object_storage.access_key.as_deref(), Some("AKIASM"));
    let origin = config
        .origin("object_storage.secret_key")
        .unwrap()
        .to_string();
    assert_eq!(origin, "AWS Secrets Manager secret prod/pacs-masks/s3");
    assert!(!format!("{config:?}").contains("s3cr3t-from-sm"));
    for (other, value) in [
        ("APP_OBJECT_STORAGE__SECRET_KEY", "inline-s3cr3t"),
        ("APP_OBJECT_STORAGE__ACCESS_KEY_FILE", "/run/secrets/a"),
    ] {
        let mut both = ConfigLoader::new();
        both.add_env(env(&[source, (other, value)])).unwrap();
        let text = both.secret_source().unwrap_err().to_string();
        assert!(
            text.contains("together with") && !text.contains("s3cr3t"),
            "{text}"
        );
    }
    for bad in [
        "vault:prod/s3",
        "aws-secretsmanager:",
        "aws-secretsmanager:a b",
    ] {
        let mut wrong = ConfigLoader::new();
        wrong
            .add_env(env(&[("APP_OBJECT_STORAGE__SECRET_SOURCE", bad)]))
            .unwrap();
        let text = wrong.secret_source().unwrap_err().to_string();
        assert!(
            text.contains("aws-secretsmanager:<secret-id or ARN>"),
            "{bad}: {text}"
        );
    }
}

#[test]
fn every_kind_checks_its_type() {
    for (var, value, why) in [
        ("APP_OBJECT_STORAGE__FSYNC", "maybe", "not true or false"),
        (
            "APP_OBJECT_STORAGE__MAX_RETRIES",
            "-1",
            "not a whole number of retries",
        ),
        (
            "APP_OBJECT_STORAGE__MAX_RETRIES",
            "4294967296",
            "more than the 4294967295",
        ),
        ("APP_CORS__MAX_AGE", "1.5", "not a whole number of seconds"),
        (
            "APP_MONITORING__ALARM_WINDOW",
            "5m",
            "not a whole number of seconds",
        ),
        (
            "APP_MONITORING__CLIENT_ERROR_RATE_ALARM",
            "0",
            "between 0 and 1",
        ),
        ("APP_OBJECT_STORAGE__REGION", "US East", "not a region name"),
        (
            "APP_GATEWAY__LISTEN",
            "localhost",
            "not an address to listen on",
        ),
        ("APP_GATEWAY__PUBLIC_URL", "masks.example.org", "not a URL"),
        ("APP_OBJECT_STORAGE__PROVIDER", "S3", "known providers"),
    ] {
        let (key, origin, text) = config_error(build_env(&[(var, value)]));
        assert_eq!(origin, Origin::Env(var.into()));
        assert_eq!(env_var_name(&key), var);
        assert!(text.contains(why), "{var}={value}: {text}");
    }
    for (toml, why) in [
        ("[object_storage]\nfsync = \"yes\"\n", "not true or false"),
        ("[object_storage]\nroot = 5\n", "5 is not text"),
        ("[signed_url]\nmax_ttl = -5\n", "-5 is not a whole number"),
        (
            "[cors]\nmax_age = \"soon\"\n",
            "not a whole number of seconds",
        ),
        ("[cors]\nallowed_headers = [1]\n", "other than strings"),
        (
            "[object_storage]\nbucket_name = [\"a\"]\n",
            "not allowed here",
        ),
    ] {
        let mut loader = ConfigLoader::new();
        let result = loader
            .add_toml(file("f.toml"), toml)
            .and_then(|()| loader.build("development", Origin::Default));
        let (_, origin, text) = config_error(result);
        assert_eq!(origin, file("f.toml"));
        assert!(text.contains(why), "{toml}: {text}");
    }
}

#[test]
fn readme_config_table_matches_the_declaration() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("README has a Configuration section");
    let rows: Vec<Vec<&str>> = section
        .lines()
        .skip_while(|line| !line.starts_with("| key | env var | default | meaning |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split(" | ")
                .map(str::trim)
                .collect()
        })
        .collect();
    let expected: Vec<Vec<String>> = SCHEMA
        .iter()
        .map(|key| {
            vec![
                format!("`{}`", key.name()),
                format!("`{}`", key.env_var()),
                match key.default() {
                    DefaultIs::Value(value) => format!("`{value}`"),
                    DefaultIs::Unset(meaning) => meaning.to_string(),
                },
                key.doc().to_string(),
            ]
        })
        .collect();
    for (i, key) in SCHEMA.iter().enumerate() {
        let want = expected[i].join(" | ");
        let got = rows.get(i).map(|row| row.join(" | "));
        assert_eq!(
            got.as_deref(),
            Some(want.as_str()),
            "README.md config table, row {} ({}): expected\n| {want} |",
            i + 1,
            key.name()
        );
    }
    assert_eq!(rows.len(), SCHEMA.len(), "the README table has extra rows");
}

#[test]
fn typed_constructors_build_valid_configs_set_in_code() {
    let config = Config::local("/srv/masks").with_fsync(false);
    assert_eq!(config.object_storage.provider, Provider::Local);
    assert_eq!(config.object_storage.root, PathBuf::from("/srv/masks"));
    assert!(!config.object_storage.fsync);
    assert_eq!(config.origin("object_storage.root"), Some(&Origin::Code));
    assert_eq!(
        config.origin("object_storage.prefix"),
        Some(&Origin::Default)
    );

    let prefix = KeyPrefix::parse("mask/test-1/").unwrap();
    let config = Config::s3("pacs-masks-dev", "us-east-1")
        .unwrap()
        .with_endpoint("http://127.0.0.1:8333")
        .unwrap()
        .with_credentials("AKIAEXAMPLE", Secret::new("TOP-SECRET-VALUE"))
        .with_prefix(prefix.clone())
        .with_max_retries(4)
        .with_retry_timeout(Duration::from_secs(10))
        .with_request_timeout(Duration::from_secs(3))
        .unwrap()
        .with_connect_timeout(Duration::from_secs(1))
        .unwrap()
        .with_ttl(TtlPolicy::new(60, 120).unwrap());
    let os = &config.object_storage;
    assert_eq!(os.provider, Provider::S3);
    assert_eq!(os.bucket_name.as_deref(), Some("pacs-masks-dev"));
    assert_eq!(os.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
    assert_eq!(os.secret_key.as_ref().unwrap().expose(), "TOP-SECRET-VALUE");
    assert_eq!(os.prefix, prefix);
    assert_eq!(
        (
            os.max_retries,
            os.retry_timeout_secs,
            os.request_timeout_secs
        ),
        (4, 10, 3)
    );
    assert_eq!(config.ttl_policy(), TtlPolicy::new(60, 120).unwrap());
    let shown = format!("{config:?} {:?}", config.entries());
    assert!(!shown.contains("TOP-SECRET"), "{shown}");

    let config = Config::memory()
        .with_signing_secret(Secret::new(SIGNING_SECRET))
        .unwrap()
        .with_public_url("https://masks.example.org")
        .unwrap();
    assert_eq!(config.gateway.public_url, "https://masks.example.org");
    assert_eq!(config.object_storage.provider, Provider::Memory);
}

#[test]
fn typed_setters_refuse_what_the_loader_refuses() {
    let (key, origin, text) = config_error(Config::s3("Pacs_Masks", "us-east-1"));
    assert_eq!(key, "object_storage.bucket_name");
    assert_eq!(origin, Origin::Code);
    assert!(text.contains("set in code"), "{text}");
    let (key, _, _) = config_error(Config::s3("pacs-masks", "US"));
    assert_eq!(key, "object_storage.region");
    let s3 = || Config::s3("pacs-masks", "us-east-1").unwrap();
    let (key, _, text) = config_error(s3().with_endpoint("http://user:pw@host"));
    assert_eq!(key, "object_storage.endpoint");
    assert!(!text.contains("pw@"), "{text}");
    let (key, _, text) = config_error(s3().with_request_timeout(Duration::from_millis(500)));
    assert_eq!(key, "object_storage.request_timeout");
    assert!(text.contains("timeout of 0 seconds"), "{text}");
    let (key, _, text) = config_error(Config::memory().with_signing_secret(Secret::new("short")));
    assert_eq!(key, "gateway.signing_secret");
    assert!(!text.contains("short\""), "{text}");
    let (key, _, _) = config_error(Config::memory().with_public_url("ftp://masks"));
    assert_eq!(key, "gateway.public_url");
}

#[test]
fn an_unquoted_all_digit_secret_is_never_echoed_by_a_parse_error() {
    // 20 to 38 digits overflow TOML's 64-bit integers; the parser's message quotes them.
    for digits in [
        "12345678901234567890",
        "98765432109876543210987654321098765432",
    ] {
        let mut loader = ConfigLoader::new();
        let err = loader
            .add_toml(
                Origin::File("config/production.toml".into()),
                &format!("[object_storage]\nprovider = \"s3\"\nsecret_key = {digits}\n"),
            )
            .unwrap_err();
        let (_, _, text) = config_error(Err(err));
        assert!(!text.contains(&digits[..12]), "echoed the secret: {text}");
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("secret_key"), "{text}");
        assert!(text.contains("quote"), "{text}");
    }
    // Other syntax errors do not echo the line either.
    let mut loader = ConfigLoader::new();
    let err = loader
        .add_toml(
            Origin::File("config/production.toml".into()),
            "[object_storage]\nsecret_key = \"unterminated-s3cr3t\n",
        )
        .unwrap_err();
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[test]
fn a_syntax_error_names_only_a_known_key_never_other_text_of_the_line() {
    // A secret pasted on the line after its key, base64 padding included: the text
    // before the '=' is the secret, not a key, and must not be shown as one.
    let secret = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0";
    for text in [
        format!("[object_storage]\nsecret_key =\n  {secret}==\n"),
        format!("[gateway]\n{secret}=x=y\n"),
    ] {
        let mut loader = ConfigLoader::new();
        let err = loader
            .add_toml(Origin::File("config/production.toml".into()), &text)
            .unwrap_err();
        let (_, _, shown) = config_error(Err(err));
        assert!(!shown.contains(&secret[..12]), "echoed the secret: {shown}");
        assert!(shown.contains("line "), "{shown}");
    }
    // A known key on the line is still named, leaf or dotted.
    for (text, named) in [
        (
            "[object_storage]\nrequest_timeout = 3x\n",
            "request_timeout",
        ),
        (
            "object_storage.request_timeout = 3x\n",
            "object_storage.request_timeout",
        ),
    ] {
        let mut loader = ConfigLoader::new();
        let err = loader
            .add_toml(Origin::File("config/production.toml".into()), text)
            .unwrap_err();
        let (_, _, shown) = config_error(Err(err));
        assert!(shown.contains(&format!("the value of {named}")), "{shown}");
    }
}

#[test]
fn every_duration_has_a_documented_bound_checked_at_load() {
    let mut bounded = 0;
    for key in SCHEMA {
        let Kind::Integer { unit, max } = key.kind() else {
            continue;
        };
        if !matches!(unit, "seconds" | "milliseconds" | "days") {
            continue;
        }
        bounded += 1;
        let var = key.env_var();
        // Far above any bound, and one past the documented one: a clear config error
        // naming the key, never a panic or an allocation abort.
        let limit = if max == u64::MAX {
            // Bounded by validation instead (signed_url.max_ttl: S3's 7 days).
            crate::ttl::S3_MAX_PRESIGN_SECS
        } else {
            assert!(
                key.doc().contains(&format!("at most {max}")),
                "{}: the README must state the bound {max}",
                key.name()
            );
            max
        };
        for value in ["1000000000000".to_string(), (limit + 1).to_string()] {
            let (name, _, text) = config_error(build_env(&[(&var, &value)]));
            assert_eq!(name, key.name(), "{text}");
            assert!(text.contains(&limit.to_string()), "{text}");
        }
        // At its bound the value is accepted, though it may still break a relation
        // (default_ttl ≤ max_ttl).
        if let Err(e) = build_env(&[(&var, &limit.to_string())]) {
            let text = e.to_string();
            assert!(
                !text.contains("more than") && !text.contains("ceiling"),
                "{}: its own bound refused: {text}",
                key.name()
            );
        }
    }
    assert_eq!(bounded, 19);
}

#[test]
fn gateway_limits_default_safe_and_refuse_zero_excess_and_a_shared_admin_port() {
    let config = ConfigLoader::new()
        .build("development", Origin::Default)
        .unwrap();
    let gw = &config.gateway;
    assert_eq!(
        (
            gw.header_timeout_secs,
            gw.body_idle_timeout_secs,
            gw.request_timeout_secs,
            gw.max_connections,
            gw.max_upload_bytes,
            gw.max_concurrent_uploads,
            gw.shutdown_grace_secs,
            gw.admin_listen.clone(),
        ),
        (10, 30, 900, 512, 1 << 30, 64, 10, None)
    );
    for (vars, key, why) in [
        (
            vec![("APP_GATEWAY__HEADER_TIMEOUT", "0")],
            "gateway.header_timeout",
            "is 0",
        ),
        (
            vec![("APP_GATEWAY__HEADER_TIMEOUT", "301")],
            "gateway.header_timeout",
            "more than the 300",
        ),
        (
            vec![("APP_GATEWAY__BODY_IDLE_TIMEOUT", "0")],
            "gateway.body_idle_timeout",
            "is 0",
        ),
        (
            vec![("APP_GATEWAY__REQUEST_TIMEOUT", "0")],
            "gateway.request_timeout",
            "is 0",
        ),
        (
            vec![("APP_GATEWAY__MAX_CONNECTIONS", "0")],
            "gateway.max_connections",
            "is 0",
        ),
        (
            vec![("APP_GATEWAY__MAX_CONNECTIONS", "70000")],
            "gateway.max_connections",
            "more than",
        ),
        (
            vec![("APP_GATEWAY__MAX_UPLOAD_BYTES", "0")],
            "gateway.max_upload_bytes",
            "is 0",
        ),
        (
            vec![("APP_GATEWAY__MAX_UPLOAD_BYTES", "-5")],
            "gateway.max_upload_bytes",
            "not a whole number",
        ),
        (
            vec![("APP_GATEWAY__SHUTDOWN_GRACE", "601")],
            "gateway.shutdown_grace",
            "more than the 600",
        ),
        (
            vec![
                ("APP_GATEWAY__MAX_CONNECTIONS", "10"),
                ("APP_GATEWAY__MAX_CONCURRENT_UPLOADS", "11"),
            ],
            "gateway.max_concurrent_uploads",
            "more than gateway.max_connections",
        ),
        (
            vec![
                ("APP_GATEWAY__LISTEN", "127.0.0.1:9000"),
                ("APP_GATEWAY__ADMIN_LISTEN", "127.0.0.1:9000"),
            ],
            "gateway.admin_listen",
            "same address",
        ),
        (
            vec![("APP_GATEWAY__ADMIN_LISTEN", "metrics-host")],
            "gateway.admin_listen",
            "not an address",
        ),
    ] {
        let mut loader = ConfigLoader::new();
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let result = loader
            .add_env(vars.clone())
            .and_then(|()| loader.build("development", Origin::Default));
        let e = result.expect_err(&format!("{vars:?} is refused"));
        let text = e.to_string();
        assert!(text.contains(key) && text.contains(why), "{vars:?}: {text}");
    }
    // A shutdown grace of 0 is allowed: stop at once.
    let mut loader = ConfigLoader::new();
    loader
        .add_env(vec![(
            "APP_GATEWAY__SHUTDOWN_GRACE".to_string(),
            "0".to_string(),
        )])
        .unwrap();
    assert_eq!(
        loader
            .build("development", Origin::Default)
            .unwrap()
            .gateway
            .shutdown_grace_secs,
        0
    );
}

#[test]
fn a_secret_file_not_read_or_set_beside_its_value_is_an_error_naming_both() {
    let (key, origin, text) = config_error(build_env(&[(
        "APP_OBJECT_STORAGE__SECRET_KEY_FILE",
        "/run/secrets/secret_key",
    )]));
    assert_eq!(key, "object_storage.secret_key_file");
    assert_eq!(
        origin,
        Origin::Env("APP_OBJECT_STORAGE__SECRET_KEY_FILE".into())
    );
    assert!(text.contains("was not read"), "{text}");

    let mut loader = ConfigLoader::new();
    loader
        .add_toml(
            file("production.toml"),
            "[gateway]\nsigning_secret = \"inline-secret-value-0123456789abcdef\"\n",
        )
        .unwrap();
    loader
        .add_env(env(&[(
            "APP_GATEWAY__SIGNING_SECRET_FILE",
            "/run/secrets/signing",
        )]))
        .unwrap();
    let err = loader.secret_files().unwrap_err().to_string();
    assert!(
        err.contains("production.toml") && err.contains("APP_GATEWAY__SIGNING_SECRET_FILE"),
        "{err}"
    );
    assert!(!err.contains("inline-secret"), "{err}");
    let (_, _, text) = config_error(loader.build("production", Origin::Default));
    assert!(text.contains("both as a value"), "{text}");
}

#[test]
fn surge_settings_are_bounded_and_leave_a_baseline() {
    let config = Config::embedded_default();
    assert_eq!(
        (
            config.monitoring.surge_factor,
            config.monitoring.surge_min_rate,
            config.monitoring.surge_window_secs
        ),
        (3.0, 1.0, 60)
    );
    for (var, value, why) in [
        ("APP_MONITORING__SURGE_FACTOR", "1", "above 1"),
        ("APP_MONITORING__SURGE_FACTOR", "NaN", "above 1"),
        ("APP_MONITORING__SURGE_FACTOR", "1001", "at most 1000"),
        ("APP_MONITORING__SURGE_MIN_RATE", "0", "above 0"),
        ("APP_MONITORING__SURGE_MIN_RATE", "-3", "above 0"),
        ("APP_MONITORING__SURGE_WINDOW", "0", "no baseline"),
        ("APP_MONITORING__SURGE_WINDOW", "151", "from 1 to 150"),
    ] {
        let (key, _, text) = config_error(build_env(&[(var, value)]));
        assert_eq!(env_var_name(&key), var);
        assert!(text.contains(why), "{var}={value}: {text}");
    }
    let config = build_env(&[
        ("APP_MONITORING__SURGE_FACTOR", "2.5"),
        ("APP_MONITORING__SURGE_MIN_RATE", "0.2"),
        ("APP_MONITORING__SURGE_WINDOW", "150"),
    ])
    .unwrap();
    assert_eq!(config.monitoring.surge_factor, 2.5);
    assert_eq!(config.monitoring.surge_min_rate, 0.2);
}

#[test]
fn a_secret_holding_an_invisible_character_is_refused_naming_it_not_the_secret() {
    // A zero-width space or a no-break space pasted with a key from a web console
    // would be signed with and fail every request with no hint why.
    for (value, named) in [
        ("wJalrXUtnFEMI/K7MDENG\u{200b}/bPxRfiCYEXAMPLEKEY", "U+200B"),
        ("\u{feff}wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "U+FEFF"),
        ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\u{a0}", "U+00A0"),
    ] {
        let (key, origin, text) = config_error(build_env(&[
            ("APP_OBJECT_STORAGE__ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE"),
            ("APP_OBJECT_STORAGE__SECRET_KEY", value),
        ]));
        assert_eq!(key, "object_storage.secret_key");
        assert_eq!(origin, Origin::Env("APP_OBJECT_STORAGE__SECRET_KEY".into()));
        assert!(text.contains(named) && text.contains("invisible"), "{text}");
        assert!(!text.contains("EXAMPLEKEY"), "{text}");
    }
    let long = format!("{SIGNING_SECRET}\u{200d}");
    let (key, _, text) = config_error(build_env(&[("APP_GATEWAY__SIGNING_SECRET", &long)]));
    assert_eq!(key, "gateway.signing_secret");
    assert!(text.contains("U+200D"), "{text}");
    // Letters of any script stay part of a secret.
    let config = build_env(&[(
        "APP_GATEWAY__SIGNING_SECRET",
        "비밀-0123456789abcdef0123456789abcdef",
    )]);
    assert!(config.is_ok(), "{config:?}");
}

#[test]
fn gcs_bucket_names_follow_gcss_rules_not_s3s() {
    let gcs = |name: &str| {
        build_env(&[
            ("APP_OBJECT_STORAGE__PROVIDER", "gcs"),
            ("APP_OBJECT_STORAGE__BUCKET_NAME", name),
        ])
    };
    let dotted = format!("{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63));
    for good in ["pacs_masks", "pacs.masks_2", "a-b", dotted.as_str()] {
        gcs(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        assert!(Config::gcs(good).is_ok(), "{good}");
    }
    let long_part = format!("{}.b", "a".repeat(64));
    for (bad, why) in [
        ("Pacs", "'P' is not allowed"),
        ("ab", "GCS needs 3 to 63"),
        (&"a".repeat(64), "GCS needs 3 to 63"),
        (&long_part, "a part between dots is 64 characters long"),
        ("_pacs", "begin and end"),
        ("10.0.0.1", "IP address"),
        ("goog-masks", "\"goog\" is reserved"),
        ("my-g00gle-masks", "google"),
    ] {
        let e = gcs(bad).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("object_storage.bucket_name"), "{bad}: {text}");
        assert!(text.contains(why), "{bad}: {text}");
        assert!(Config::gcs(bad).is_err(), "{bad}");
    }
    // The same names on S3: S3's rules, which refuse '_'.
    let (key, _, text) = config_error(build_env(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
        ("APP_OBJECT_STORAGE__REGION", "us-east-1"),
        ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs_masks"),
    ]));
    assert_eq!(key, "object_storage.bucket_name");
    assert!(text.contains("S3 accepts: '_' is not allowed"), "{text}");
}

#[test]
fn azure_container_names_follow_azures_rules() {
    for good in ["pacs-masks-prod", "abc", &"a".repeat(63)] {
        assert!(Config::azure("acct", good).is_ok(), "{good}");
    }
    for (bad, why) in [
        ("ab", "Azure needs 3 to 63"),
        ("pacs_masks", "'_' is not allowed"),
        ("pacs.masks", "'.' is not allowed"),
        ("Pacs", "'P' is not allowed"),
        ("pacs--masks", "hyphen"),
        ("-pacs", "hyphen"),
    ] {
        let text = Config::azure("acct", bad).unwrap_err().to_string();
        assert!(
            text.contains("not an Azure container name") && text.contains(why),
            "{bad}: {text}"
        );
    }
}
