//! Reading configuration files and the environment (the I/O half of `core::config`).

use std::path::{Path, PathBuf};

use maskstore_core::config::{
    ConfigLoader, DEFAULT_ENVIRONMENT, ENV_ENV_FILE, ENV_ENVIRONMENT, SecretSourceRequest,
    is_secret_env_var,
};
use maskstore_core::{Config, Origin};

use crate::env_file::{EnvFile, read_env_file};

use crate::{Error, Result};

/// Where to read configuration from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSource {
    /// The config folder holding `default.toml` and `<environment>.toml`; default `config`.
    pub dir: Option<PathBuf>,
    /// One explicit config file, read instead of the folder.
    pub file: Option<PathBuf>,
    /// The environment name; default `APP_ENV` (of the environment, else of the `.env`
    /// file), else `development`.
    pub environment: Option<String>,
    /// A `.env` file that must exist (`--env-file`); default `APP_ENV_FILE`, else `./.env`
    /// when there is one.
    pub env_file: Option<PathBuf>,
}

/// Loads the configuration: built-in defaults → `<dir>/default.toml` →
/// `<dir>/<environment>.toml` (or the explicit file instead of both) → the `.env` file →
/// `APP_*` variables.
///
/// A missing folder, file in the folder or default `./.env` is fine; an explicit file or
/// `.env` file that is missing is an error. A `.env` file holding a secret
/// (`APP_OBJECT_STORAGE__SECRET_KEY`, …) that group or others may read is refused outside
/// the `development` environment, and warned about in it. Secrets given as files (`*_file` keys) are read here, with the checks of
/// [`crate::secret_file::read_secret_file`].
pub fn load_config(source: &ConfigSource) -> Result<Config> {
    load_config_from(source, std::env::vars())
}

/// [`load_config`] with the environment given explicitly (for tests).
pub fn load_config_from<I>(source: &ConfigSource, env: I) -> Result<Config>
where
    I: IntoIterator<Item = (String, String)>,
{
    let env: Vec<(String, String)> = env.into_iter().collect();
    let env_file = env_file_of(source, &env)?;
    let (environment, environment_origin) = environment_of(source, &env, env_file.as_ref());
    let mut loader = ConfigLoader::new();
    match &source.file {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| Error::Config {
                key: "(file)".to_string(),
                origin: Origin::File(file.clone()),
                problem: format!("cannot read the config file: {e}"),
                fix: "give the path of an existing TOML file".to_string(),
            })?;
            loader.add_toml(Origin::File(file.clone()), &text)?;
        }
        None => {
            // Checked before the name is used as a file name.
            if !environment
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
                || environment.is_empty()
            {
                return Err(ConfigLoader::new()
                    .build(&environment, environment_origin)
                    .expect_err("the loader refuses this environment name")
                    .into());
            }
            let dir = source
                .dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("config"));
            for name in ["default".to_string(), environment.clone()] {
                add_optional_file(&mut loader, &dir.join(format!("{name}.toml")))?;
            }
        }
    }
    if let Some(file) = &env_file {
        check_env_file_privacy(file, &environment)?;
        loader.add_env_file(&file.path, &file.lines)?;
    }
    loader.add_env(env)?;
    for request in loader.secret_files()? {
        let value =
            crate::secret_file::read_secret_file(&request.path).map_err(|e| Error::Config {
                key: request.file_key.to_string(),
                origin: request.origin.clone(),
                problem: e.problem,
                fix: e.fix,
            })?;
        loader.set_secret_from_file(&request, value);
    }
    if let Some(request) = loader.secret_source()? {
        let (access_key, secret_key, token) =
            read_secret_source(&request, loader.text("object_storage.region"))?;
        loader.set_secret_from_source(&request, access_key, secret_key, token);
    }
    Ok(loader.build(&environment, environment_origin)?)
}

/// The `.env` file: `--env-file` or `APP_ENV_FILE` (which must exist), else `./.env` if
/// there is one.
fn env_file_of(source: &ConfigSource, env: &[(String, String)]) -> Result<Option<EnvFile>> {
    if let Some(path) = &source.env_file {
        return read_env_file(path, true, &Origin::Flag("--env-file".to_string()));
    }
    match env.iter().find(|(k, v)| k == ENV_ENV_FILE && !v.is_empty()) {
        Some((_, path)) => read_env_file(
            Path::new(path),
            true,
            &Origin::Env(ENV_ENV_FILE.to_string()),
        ),
        None => read_env_file(Path::new(".env"), false, &Origin::Default),
    }
}

/// The environment name and where it came from: `--env`, then `APP_ENV` of the
/// environment, then of the `.env` file, then `development`.
fn environment_of(
    source: &ConfigSource,
    env: &[(String, String)],
    env_file: Option<&EnvFile>,
) -> (String, Origin) {
    if let Some(name) = &source.environment {
        return (name.clone(), Origin::Flag("--env".to_string()));
    }
    if let Some((_, v)) = env
        .iter()
        .find(|(k, v)| k == ENV_ENVIRONMENT && !v.is_empty())
    {
        return (v.clone(), Origin::Env(ENV_ENVIRONMENT.to_string()));
    }
    match env_file.and_then(|file| file.get(ENV_ENVIRONMENT).map(|found| (file, found))) {
        Some((file, (name, line))) => (
            name.to_string(),
            Origin::EnvFile {
                path: file.path.clone(),
                line,
            },
        ),
        None => (DEFAULT_ENVIRONMENT.to_string(), Origin::Default),
    }
}

/// A `.env` file holding a secret must be private, as a secret file must: refused outside
/// `development`, a warning in it (a checkout's `.env` is often 644 on a laptop).
fn check_env_file_privacy(file: &EnvFile, environment: &str) -> Result<()> {
    let secret = file
        .lines
        .iter()
        .find(|(var, value, _)| !value.is_empty() && is_secret_env_var(var));
    let Some((var, _, line)) = secret else {
        return Ok(());
    };
    if file.mode & 0o077 == 0 {
        return Ok(());
    }
    let problem = format!(
        "the .env file holds a secret ({var}) and is open to group or others (mode {:03o}), so other users of this machine can read it",
        file.mode
    );
    let fix = format!(
        "chmod 600 {} (or give the secret as a *_FILE secret file or from AWS Secrets Manager)",
        file.path.display()
    );
    if environment == DEFAULT_ENVIRONMENT {
        tracing::warn!(file = %file.path.display(), "{problem}; {fix}; outside development this is refused");
        return Ok(());
    }
    Err(Error::Config {
        key: "(env file)".to_string(),
        origin: Origin::EnvFile {
            path: file.path.clone(),
            line: *line,
        },
        problem,
        fix,
    })
}

/// The S3 keys in the AWS Secrets Manager secret of `request`.
fn read_secret_source(
    request: &SecretSourceRequest,
    region: Option<&str>,
) -> Result<(String, String, Option<String>)> {
    let refuse = |problem: String| Error::Config {
        key: "object_storage.secret_source".to_string(),
        origin: request.origin.clone(),
        problem: format!(
            "cannot read the AWS Secrets Manager secret {}: {problem}",
            request.secret_id
        ),
        fix: crate::s3::builder::SECRET_SOURCE_FIX.to_string(),
    };
    let source = crate::s3::secrets_manager::SecretsManager::new(&request.secret_id, region)
        .map_err(refuse)?;
    let version = source.read_blocking().map_err(refuse)?;
    let credential = version.credential;
    Ok((credential.key_id, credential.secret_key, credential.token))
}

fn add_optional_file(loader: &mut ConfigLoader, path: &Path) -> Result<()> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(loader.add_toml(Origin::File(path.to_path_buf()), &text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Config {
            key: "(file)".to_string(),
            origin: Origin::File(path.to_path_buf()),
            problem: format!("cannot read the config file: {e}"),
            fix: "make it readable or remove it".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maskstore_core::Provider;

    const SECRET: &str = "a-signing-secret-of-at-least-32-bytes";

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn folder_layers_then_env_win() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("default.toml"),
            "[object_storage]\nprovider = \"memory\"\nroot = \"/default\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("staging.toml"),
            "[object_storage]\nroot = \"/staging\"\n[signed_url]\nmax_ttl = 1000\ndefault_ttl = 100\n",
        )
        .unwrap();
        let source = ConfigSource {
            dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let config = load_config_from(
            &source,
            vars(&[
                ("APP_ENV", "staging"),
                ("APP_SIGNED_URL__MAX_TTL", "2000"),
                ("APP_GATEWAY__SIGNING_SECRET", SECRET),
            ]),
        )
        .unwrap();
        assert_eq!(config.environment, "staging");
        assert_eq!(config.object_storage.provider, Provider::Memory);
        assert_eq!(config.object_storage.root, PathBuf::from("/staging"));
        assert_eq!(config.signed_url.max_ttl, 2000);
        assert_eq!(config.signed_url.default_ttl, 100);
        assert_eq!(
            config.origin("object_storage.root"),
            Some(&Origin::File(dir.path().join("staging.toml")))
        );
    }

    #[test]
    fn missing_folder_means_defaults_and_env() {
        let source = ConfigSource {
            dir: Some(PathBuf::from("/nonexistent/maskstore-config")),
            ..Default::default()
        };
        let config = load_config_from(&source, vars(&[])).unwrap();
        assert_eq!(config.object_storage.provider, Provider::Local);
        assert_eq!(config.environment, "development");
    }

    #[test]
    fn explicit_file_replaces_the_folder_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mine.toml");
        std::fs::write(&file, "[object_storage]\nprovider = \"memory\"\n").unwrap();
        let source = ConfigSource {
            file: Some(file.clone()),
            ..Default::default()
        };
        let config = load_config_from(&source, vars(&[])).unwrap();
        assert_eq!(config.object_storage.provider, Provider::Memory);

        let missing = ConfigSource {
            file: Some(dir.path().join("missing.toml")),
            ..Default::default()
        };
        let err = load_config_from(&missing, vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing.toml") && err.contains("cannot read"),
            "{err}"
        );
    }

    #[test]
    fn env_flag_beats_app_env_and_bad_names_are_refused() {
        let source = ConfigSource {
            dir: Some(PathBuf::from("/nonexistent")),
            environment: Some("production".into()),
            ..Default::default()
        };
        let env = vars(&[
            ("APP_ENV", "staging"),
            ("APP_GATEWAY__SIGNING_SECRET", SECRET),
        ]);
        let config = load_config_from(&source, env).unwrap();
        assert_eq!(config.environment, "production");
        let bad = ConfigSource {
            environment: Some("../../etc/passwd".into()),
            ..Default::default()
        };
        let err = load_config_from(&bad, vars(&[])).unwrap_err().to_string();
        assert!(err.contains("not a valid environment name"), "{err}");
    }

    #[test]
    fn secrets_come_from_files_whose_path_is_the_origin_never_the_value() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        };
        let access = file("access_key", "AKIAFROMFILE\n");
        let secret = file("secret_key", "wJalrFROMFILEsecret\n");
        let signing = file("signing", &format!("{SECRET}\n"));
        let source = ConfigSource {
            dir: Some(PathBuf::from("/nonexistent")),
            ..Default::default()
        };
        let config = load_config_from(
            &source,
            vars(&[
                ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
                ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs-masks"),
                ("APP_OBJECT_STORAGE__REGION", "us-east-1"),
                (
                    "APP_OBJECT_STORAGE__ACCESS_KEY_FILE",
                    access.to_str().unwrap(),
                ),
                (
                    "APP_OBJECT_STORAGE__SECRET_KEY_FILE",
                    secret.to_str().unwrap(),
                ),
                (
                    "APP_GATEWAY__SIGNING_SECRET_FILE",
                    signing.to_str().unwrap(),
                ),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.object_storage.access_key.as_deref(),
            Some("AKIAFROMFILE")
        );
        assert_eq!(
            config.object_storage.secret_key.as_ref().unwrap().expose(),
            "wJalrFROMFILEsecret"
        );
        assert_eq!(
            config.gateway.signing_secret.as_ref().unwrap().expose(),
            SECRET
        );
        assert_eq!(
            config.object_storage.secret_key_file.as_ref(),
            Some(&secret)
        );
        assert_eq!(
            config.origin("object_storage.secret_key"),
            Some(&Origin::SecretFile(secret.clone()))
        );
        let shown: Vec<String> = config
            .entries()
            .iter()
            .map(|e| format!("{} {:?} {}", e.key, e.value, e.origin))
            .collect();
        let shown = shown.join("\n");
        assert!(
            !shown.contains("wJalrFROMFILE") && !shown.contains(SECRET),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("secret file {}", secret.display())),
            "{shown}"
        );

        // Both the value and the file: an error naming both.
        let err = load_config_from(
            &source,
            vars(&[
                ("APP_OBJECT_STORAGE__SECRET_KEY", "inline"),
                (
                    "APP_OBJECT_STORAGE__SECRET_KEY_FILE",
                    secret.to_str().unwrap(),
                ),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("both as a value") && err.contains("secret_key_file"),
            "{err}"
        );
        assert!(!err.contains("inline") && !err.contains("wJalr"), "{err}");

        // Mode 0644: refused, naming the file and chmod 600, blaming the variable.
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_config_from(
            &source,
            vars(&[(
                "APP_OBJECT_STORAGE__SECRET_KEY_FILE",
                secret.to_str().unwrap(),
            )]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!("chmod 600 {}", secret.display())),
            "{err}"
        );
        assert!(err.contains("APP_OBJECT_STORAGE__SECRET_KEY_FILE"), "{err}");
        assert!(!err.contains("wJalr"), "{err}");

        // A signing secret from a file is held to the same length rule as any.
        let short = file("short", "too-short\n");
        let err = load_config_from(
            &source,
            vars(&[("APP_GATEWAY__SIGNING_SECRET_FILE", short.to_str().unwrap())]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("shorter than 32 bytes"), "{err}");
        assert!(
            err.contains(&format!("secret file {}", short.display())),
            "{err}"
        );
    }

    fn env_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("app.env");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn an_env_file_sits_between_config_files_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("default.toml"),
            "[object_storage]\nprovider = \"memory\"\nroot = \"/from-toml\"\n[signed_url]\nmax_ttl = 100\ndefault_ttl = 50\n",
        )
        .unwrap();
        let file = env_file(
            dir.path(),
            "# the guide's block\nAPP_OBJECT_STORAGE__ROOT=/from-env-file\nAPP_SIGNED_URL__MAX_TTL=200\nDATABASE_URL=postgres://elsewhere\n",
            0o644,
        );
        let source = ConfigSource {
            dir: Some(dir.path().to_path_buf()),
            env_file: Some(file.clone()),
            ..Default::default()
        };
        let config =
            load_config_from(&source, vars(&[("APP_SIGNED_URL__MAX_TTL", "300")])).unwrap();
        assert_eq!(config.object_storage.provider, Provider::Memory);
        assert_eq!(config.object_storage.root, PathBuf::from("/from-env-file"));
        assert_eq!(config.signed_url.max_ttl, 300);
        assert_eq!(
            config.origin("object_storage.root"),
            Some(&Origin::EnvFile {
                path: file.clone(),
                line: 2
            })
        );
        let shown = config.origin("object_storage.root").unwrap().to_string();
        assert_eq!(shown, format!("{} line 2", file.display()));

        // APP_ENV_FILE names it when no flag does; a missing one is an error, never skipped.
        let by_var = ConfigSource {
            dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let config =
            load_config_from(&by_var, vars(&[("APP_ENV_FILE", file.to_str().unwrap())])).unwrap();
        assert_eq!(config.object_storage.root, PathBuf::from("/from-env-file"));
        let missing = dir.path().join("missing.env");
        let err = load_config_from(
            &by_var,
            vars(&[("APP_ENV_FILE", missing.to_str().unwrap())]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("APP_ENV_FILE") && err.contains("missing.env"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_key_in_an_env_file_is_refused_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = env_file(
            dir.path(),
            "APP_OBJECT_STORAGE__PROVIDER=s3\nAPP_OBJECT_STORAGE__BUCKET=pacs-masks\n",
            0o600,
        );
        let source = ConfigSource {
            dir: Some(dir.path().to_path_buf()),
            env_file: Some(file.clone()),
            ..Default::default()
        };
        let err = load_config_from(&source, vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("object_storage.bucket"), "{err}");
        assert!(err.contains(&format!("{} line 2", file.display())), "{err}");
        assert!(err.contains("bucket_name"), "{err}");
    }

    #[test]
    fn a_misspelt_section_with_a_known_key_is_refused_not_ignored() {
        // `APP_OBJECT_STORGE__PROVIDER=s3` ignored as "the application's" would leave
        // check passing on the local default: the silent failure again.
        let dir = tempfile::tempdir().unwrap();
        let file = env_file(
            dir.path(),
            "APP_GATEWAYS__PAYMENT_URL=http://pay\nAPP_OBJECT_STORGE__WHATEVER=1\nAPP_OBJECT_STORGE__PROVIDER=s3\n",
            0o600,
        );
        let source = ConfigSource {
            dir: Some(dir.path().to_path_buf()),
            env_file: Some(file.clone()),
            ..Default::default()
        };
        let err = load_config_from(&source, vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("{} line 3", file.display())), "{err}");
        assert!(err.contains("APP_OBJECT_STORAGE__PROVIDER"), "{err}");
        let bare = ConfigSource {
            dir: Some(dir.path().to_path_buf()),
            env_file: Some(env_file(dir.path(), "APP_GATEWAYS__PAYMENT_URL=x\n", 0o600)),
            ..Default::default()
        };
        let err = load_config_from(&bare, vars(&[("APP_SIGNED_ULR__MAX_TTL", "60")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("APP_SIGNED_URL__MAX_TTL"), "{err}");
        // An application's own sections, even close ones, with keys of their own, are its.
        load_config_from(
            &bare,
            vars(&[("APP_GATEWAYS__URL", "x"), ("APP_MONITOR__KEY", "y")]),
        )
        .unwrap();
    }

    #[test]
    fn an_env_file_with_a_secret_others_can_read_is_refused_outside_development() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("APP_ENV=production\nAPP_GATEWAY__SIGNING_SECRET={SECRET}\n");
        let file = env_file(dir.path(), &text, 0o644);
        let source = ConfigSource {
            dir: Some(dir.path().to_path_buf()),
            env_file: Some(file.clone()),
            ..Default::default()
        };
        let err = load_config_from(&source, vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("chmod 600 {}", file.display())),
            "{err}"
        );
        assert!(err.contains("mode 644") && err.contains("line 2"), "{err}");
        assert!(!err.contains(SECRET), "{err}");
        // The environment came from the file; the real one wins over it.
        let dev = load_config_from(&source, vars(&[("APP_ENV", "development")])).unwrap();
        assert_eq!(dev.environment, "development");
        // Private, it is read, and the environment is the file's.
        let file = env_file(dir.path(), &text, 0o600);
        let config = load_config_from(&source, vars(&[])).unwrap();
        assert_eq!(config.environment, "production");
        assert_eq!(
            config.origin("environment"),
            Some(&Origin::EnvFile {
                path: file,
                line: 1
            })
        );
        assert_eq!(
            config.gateway.signing_secret.as_ref().unwrap().expose(),
            SECRET
        );
    }
}
