//! The servers this workspace's tests run against, started by `scripts/test-servers`:
//! SeaweedFS and moto (S3), Azurite (Azure Blob Storage) and fake-gcs-server (GCS).
//!
//! Each is described by `MASKSTORE_TEST_<NAME>_*` variables. When they are missing or the
//! server does not answer, a test is skipped with a message — except under `CI=true`,
//! where it fails: CI must never pass by skipping.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use maskstore_backends::Storage;
use maskstore_core::{Config, KeyPrefix, Secret};

/// A reachable S3 server for tests.
#[derive(Clone)]
pub struct S3Server {
    /// Short name used in test output (`s3-seaweedfs`, `s3-moto`).
    pub name: &'static str,
    /// The endpoint URL.
    pub endpoint: String,
    /// The test bucket.
    pub bucket: String,
    /// The access key id.
    pub access_key: String,
    /// The secret key (Debug never prints it).
    pub secret_key: maskstore_core::Secret,
    /// Whether the server checks signatures (SeaweedFS yes, moto no).
    pub verifies_signatures: bool,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// SeaweedFS with auth enforced, or `None` (skip) outside CI when it is not running.
pub fn seaweedfs() -> Option<S3Server> {
    server("SEAWEEDFS", "s3-seaweedfs", true)
}

/// moto, or `None` (skip) outside CI when it is not running.
pub fn moto() -> Option<S3Server> {
    server("MOTO", "s3-moto", false)
}

/// Every S3 server that is available.
pub fn all() -> Vec<S3Server> {
    [seaweedfs(), moto()].into_iter().flatten().collect()
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn server(var: &str, name: &'static str, verifies_signatures: bool) -> Option<S3Server> {
    let get = |suffix: &str| std::env::var(format!("MASKSTORE_TEST_{var}_{suffix}")).ok();
    let unavailable = |why: String| -> Option<S3Server> {
        if in_ci() {
            panic!(
                "{name}: {why}. Under CI=true S3 tests must not skip; run the suite with \
                 scripts/test (it starts the servers)"
            );
        }
        eprintln!("skipping {name} tests: {why} (run scripts/test to start the servers)");
        None
    };
    let Some(endpoint) = get("ENDPOINT") else {
        return unavailable(format!("MASKSTORE_TEST_{var}_ENDPOINT is not set"));
    };
    let hostport = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let reachable = hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    if !reachable {
        return unavailable(format!("the server at {endpoint} is unreachable"));
    }
    let access_key = get("ACCESS_KEY").unwrap_or_else(|| "moto-test-access".to_string());
    let secret = get("SECRET_KEY").unwrap_or_else(|| "moto-test-secret-key".to_string());
    // Tests prove the secret never appears in output by searching for it; the access key
    // is printed openly, so a secret equal to it (or inside it) would raise false alarms.
    assert!(
        !access_key.contains(&secret),
        "{name}: MASKSTORE_TEST_{var}_SECRET_KEY must differ from the access key (the secret scans search output for it)"
    );
    Some(S3Server {
        name,
        endpoint,
        bucket: get("BUCKET").unwrap_or_else(|| "pacs-masks-test".to_string()),
        access_key,
        secret_key: maskstore_core::Secret::new(secret),
        verifies_signatures,
    })
}

impl S3Server {
    /// A config for this server under a fresh random prefix `mask/test-<random>/`.
    pub fn config(&self) -> Config {
        self.config_with_secret(self.secret_key.expose())
    }

    /// Like [`S3Server::config`] but with another secret (to test rejected credentials).
    pub fn config_with_secret(&self, secret: &str) -> Config {
        let prefix = KeyPrefix::parse(format!("mask/test-{:016x}/", rand::random::<u64>()))
            .expect("a valid test prefix");
        Config::s3(&self.bucket, "us-east-1")
            .and_then(|config| config.with_endpoint(&self.endpoint))
            .expect("a valid S3 test config")
            .with_credentials(&self.access_key, Secret::new(secret))
            .with_prefix(prefix)
            .with_max_retries(4)
            .with_retry_timeout(Duration::from_secs(10))
    }

    /// A storage on this server under a fresh random prefix.
    pub fn storage(&self) -> Storage {
        Storage::connect(&self.config()).expect("an S3 storage")
    }

    /// The `APP_*` variables that point the application at this server.
    pub fn app_env(&self) -> Vec<(String, String)> {
        [
            ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
            ("APP_OBJECT_STORAGE__BUCKET_NAME", self.bucket.as_str()),
            ("APP_OBJECT_STORAGE__REGION", "us-east-1"),
            ("APP_OBJECT_STORAGE__ENDPOINT", self.endpoint.as_str()),
            ("APP_OBJECT_STORAGE__ACCESS_KEY", self.access_key.as_str()),
            ("APP_OBJECT_STORAGE__SECRET_KEY", self.secret_key.expose()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// A reachable Azurite (Azure Blob Storage emulator) for tests.
#[derive(Clone)]
pub struct AzureServer {
    /// Short name used in test output (`azure-azurite`).
    pub name: &'static str,
    /// The account's URL (`http://127.0.0.1:<port>/<account>`).
    pub endpoint: String,
    /// The storage account.
    pub account: String,
    /// The test container.
    pub container: String,
    /// A container that does not exist (for "missing container" diagnoses).
    pub missing_container: String,
    /// The account key (Debug never prints it).
    pub account_key: Secret,
}

impl std::fmt::Debug for AzureServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureServer")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

/// Azurite, or `None` (skip) outside CI when it is not running.
pub fn azurite() -> Option<AzureServer> {
    let var = |suffix: &str| std::env::var(format!("MASKSTORE_TEST_AZURITE_{suffix}")).ok();
    let endpoint = reachable("AZURITE", "azure-azurite")?;
    Some(AzureServer {
        name: "azure-azurite",
        endpoint,
        account: var("ACCOUNT").unwrap_or_else(|| "devstoreaccount1".to_string()),
        container: var("CONTAINER").unwrap_or_else(|| "pacs-masks-test".to_string()),
        missing_container: var("MISSING_CONTAINER")
            .unwrap_or_else(|| "pacs-masks-missing".to_string()),
        account_key: Secret::new(var("ACCOUNT_KEY").unwrap_or_default()),
    })
}

impl AzureServer {
    /// A config for this server under a fresh random prefix `mask/test-<random>/`.
    pub fn config(&self) -> Config {
        self.config_with_key(self.account_key.expose())
    }

    /// Like [`AzureServer::config`] but with another account key.
    pub fn config_with_key(&self, key: &str) -> Config {
        Config::azure(&self.account, &self.container)
            .and_then(|config| config.with_endpoint(&self.endpoint))
            .expect("a valid Azure test config")
            .with_account_key(Secret::new(key))
            .with_prefix(random_prefix())
            .with_max_retries(4)
            .with_retry_timeout(Duration::from_secs(10))
    }

    /// A storage on this server under a fresh random prefix.
    pub fn storage(&self) -> Storage {
        Storage::connect(&self.config()).expect("an Azure storage")
    }

    /// The `APP_*` variables that point the application at this server.
    pub fn app_env(&self) -> Vec<(String, String)> {
        [
            ("APP_OBJECT_STORAGE__PROVIDER", "azure"),
            ("APP_OBJECT_STORAGE__ACCOUNT", self.account.as_str()),
            ("APP_OBJECT_STORAGE__CONTAINER", self.container.as_str()),
            ("APP_OBJECT_STORAGE__ENDPOINT", self.endpoint.as_str()),
            ("APP_OBJECT_STORAGE__ACCOUNT_KEY", self.account_key.expose()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// A reachable fake-gcs-server for tests.
#[derive(Debug, Clone)]
pub struct GcsServer {
    /// Short name used in test output (`gcs-fake`).
    pub name: &'static str,
    /// The API's base URL.
    pub endpoint: String,
    /// The test bucket.
    pub bucket: String,
    /// A service account key file (a real RSA key; the server checks no signature).
    pub service_account_file: std::path::PathBuf,
}

/// fake-gcs-server, or `None` (skip) outside CI when it is not running.
pub fn fake_gcs() -> Option<GcsServer> {
    let var = |suffix: &str| std::env::var(format!("MASKSTORE_TEST_FAKE_GCS_{suffix}")).ok();
    let endpoint = reachable("FAKE_GCS", "gcs-fake")?;
    Some(GcsServer {
        name: "gcs-fake",
        endpoint,
        bucket: var("BUCKET").unwrap_or_else(|| "pacs-masks-test".to_string()),
        service_account_file: var("SERVICE_ACCOUNT_FILE").unwrap_or_default().into(),
    })
}

impl GcsServer {
    /// A config for this server under a fresh random prefix `mask/test-<random>/`.
    pub fn config(&self) -> Config {
        let key = std::fs::read_to_string(&self.service_account_file).unwrap_or_else(|e| {
            panic!(
                "{}: cannot read the service account key {}: {e}",
                self.name,
                self.service_account_file.display()
            )
        });
        Config::gcs(&self.bucket)
            .and_then(|config| config.with_endpoint(&self.endpoint))
            .expect("a valid GCS test config")
            .with_service_account_key(Secret::new(key))
            .with_prefix(random_prefix())
            .with_max_retries(4)
            .with_retry_timeout(Duration::from_secs(10))
    }

    /// A storage on this server under a fresh random prefix.
    pub fn storage(&self) -> Storage {
        Storage::connect(&self.config()).expect("a GCS storage")
    }

    /// The `APP_*` variables that point the application at this server.
    pub fn app_env(&self) -> Vec<(String, String)> {
        [
            ("APP_OBJECT_STORAGE__PROVIDER", "gcs"),
            ("APP_OBJECT_STORAGE__BUCKET_NAME", self.bucket.as_str()),
            ("APP_OBJECT_STORAGE__ENDPOINT", self.endpoint.as_str()),
            (
                "APP_OBJECT_STORAGE__SERVICE_ACCOUNT_KEY_FILE",
                self.service_account_file.to_str().unwrap_or_default(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

fn random_prefix() -> KeyPrefix {
    KeyPrefix::parse(format!("mask/test-{:016x}/", rand::random::<u64>()))
        .expect("a valid test prefix")
}

/// The endpoint `MASKSTORE_TEST_<var>_ENDPOINT` when its server answers; else a skip (or
/// under CI a failure).
fn reachable(var: &str, name: &str) -> Option<String> {
    let unavailable = |why: String| -> Option<String> {
        if in_ci() {
            panic!(
                "{name}: {why}. Under CI=true emulator tests must not skip; run the suite with \
                 scripts/test (it starts the servers)"
            );
        }
        eprintln!("skipping {name} tests: {why} (run scripts/test to start the servers)");
        None
    };
    let Ok(endpoint) = std::env::var(format!("MASKSTORE_TEST_{var}_ENDPOINT")) else {
        return unavailable(format!("MASKSTORE_TEST_{var}_ENDPOINT is not set"));
    };
    let hostport = endpoint
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let ok = hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    if !ok {
        return unavailable(format!("the server at {endpoint} is unreachable"));
    }
    Some(endpoint)
}
