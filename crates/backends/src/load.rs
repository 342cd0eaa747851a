//! Reading configuration files and the environment (the I/O half of `core::config`).

use std::path::{Path, PathBuf};

use maskstore_core::config::{ConfigLoader, DEFAULT_ENVIRONMENT, ENV_ENVIRONMENT};
use maskstore_core::{Config, Origin};

use crate::{Error, Result};

/// Where to read configuration from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSource {
    /// The config folder holding `default.toml` and `<environment>.toml`; default `config`.
    pub dir: Option<PathBuf>,
    /// One explicit config file, read instead of the folder.
    pub file: Option<PathBuf>,
    /// The environment name; default `APP_ENV`, else `development`.
    pub environment: Option<String>,
}

/// Loads the configuration: built-in defaults → `<dir>/default.toml` →
/// `<dir>/<environment>.toml` (or the explicit file instead of both) → `APP_*` variables.
///
/// A missing folder or file in the folder is fine; an explicit file that is missing is an
/// error.
pub fn load_config(source: &ConfigSource) -> Result<Config> {
    load_config_from(source, std::env::vars())
}

/// [`load_config`] with the environment given explicitly (for tests).
pub fn load_config_from<I>(source: &ConfigSource, env: I) -> Result<Config>
where
    I: IntoIterator<Item = (String, String)>,
{
    let env: Vec<(String, String)> = env.into_iter().collect();
    let (environment, environment_origin) = match &source.environment {
        Some(name) => (name.clone(), Origin::Flag("--env".to_string())),
        None => match env
            .iter()
            .find(|(k, v)| k == ENV_ENVIRONMENT && !v.is_empty())
        {
            Some((_, v)) => (v.clone(), Origin::Env(ENV_ENVIRONMENT.to_string())),
            None => (DEFAULT_ENVIRONMENT.to_string(), Origin::Default),
        },
    };
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
    loader.add_env(env)?;
    Ok(loader.build(&environment, environment_origin)?)
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
}
