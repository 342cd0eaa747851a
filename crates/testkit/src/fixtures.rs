//! One-line storages for tests.

use std::ops::Deref;

use maskstore_backends::signing::{self, GatewaySigner};
use maskstore_backends::{ConfigSource, Storage, load_config};
use maskstore_core::Config;

/// A fresh in-memory storage under `mask/`.
pub fn memory() -> Storage {
    Storage::memory()
}

/// A local-disk storage in a new temporary folder, removed when dropped.
pub fn temp_dir() -> TempStorage {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = Config::local(dir.path().join("data"));
    let storage = Storage::connect(&config).expect("a local storage in a temp folder");
    TempStorage { storage, _dir: dir }
}

/// The storage the environment configures (`config/` folder and `APP_*` variables), as
/// the application itself would build it.
pub fn from_env() -> maskstore_backends::Result<Storage> {
    Storage::connect(&load_config(&ConfigSource::default())?)
}

/// A storage served by a gateway on an ephemeral loopback port, so its signed URLs work;
/// the gateway stops (and a temporary folder is removed) on drop.
pub struct Served {
    storage: Storage,
    gateway: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl Served {
    /// The local root of a [`temp_dir_served`] storage (`None` in memory).
    pub fn root(&self) -> Option<std::path::PathBuf> {
        self._dir.as_ref().map(|dir| dir.path().join("data"))
    }

    /// The gateway's base URL.
    pub fn gateway_url(&self) -> &str {
        self.storage
            .gateway_signer()
            .map(|s| s.public_url())
            .unwrap_or_default()
    }
}

impl Deref for Served {
    type Target = Storage;
    fn deref(&self) -> &Storage {
        &self.storage
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.gateway.abort();
    }
}

/// Serves the storage `config` describes through a gateway on `127.0.0.1:<ephemeral>`
/// (its `gateway.public_url` is set to that address).
pub async fn served(mut config: Config) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port for the gateway");
    let addr = listener.local_addr().expect("a bound address");
    config.gateway.listen = addr.to_string();
    config.gateway.public_url = format!("http://{addr}");
    let storage = Storage::connect(&config).expect("a servable storage");
    spawn_gateway(listener, storage, &config.cors)
}

/// Serves any storage (for example one built with [`Storage::from_object_store`]) through
/// a gateway on a loopback port, signing with a fresh random secret.
pub async fn serve_storage(storage: Storage) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port for the gateway");
    let addr = listener.local_addr().expect("a bound address");
    let signer = GatewaySigner::new(&format!("http://{addr}"), signing::random_secret(), None);
    let storage = storage.with_gateway_signer(signer);
    spawn_gateway(listener, storage, &Config::memory().cors)
}

fn spawn_gateway(
    listener: tokio::net::TcpListener,
    storage: Storage,
    cors: &maskstore_core::config::CorsConfig,
) -> Served {
    // Every test client comes from 127.0.0.1: as one client, it may take every slot (the
    // per-client shares are tested in tests/gateway_fairness.rs).
    let mut limits = maskstore_gateway::Limits::default();
    limits.max_connections_per_client = limits.max_connections;
    limits.max_uploads_per_client = limits.max_concurrent_uploads;
    // As `maskstore serve` builds them: the object route kept beside the router.
    let router = maskstore_gateway::Routes::objects(storage.clone(), cors, &limits)
        .expect("a gateway router")
        .merge(maskstore_gateway::admin_router(storage.clone(), None));
    let gateway = tokio::spawn(async move {
        let _ =
            maskstore_gateway::serve_with_limits(listener, router, &limits, std::future::pending())
                .await;
    });
    Served {
        storage,
        gateway,
        _dir: None,
    }
}

/// An in-memory storage served by a gateway.
pub async fn memory_served() -> Served {
    served(Config::memory()).await
}

/// A local-disk storage in a temporary folder, served by a gateway.
pub async fn temp_dir_served() -> Served {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut served = served(Config::local(dir.path().join("data"))).await;
    served._dir = Some(dir);
    served
}

/// A [`Storage`] on a temporary folder; the folder is removed on drop.
pub struct TempStorage {
    storage: Storage,
    _dir: tempfile::TempDir,
}

impl TempStorage {
    /// The folder the objects live in.
    pub fn root(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }
}

impl Deref for TempStorage {
    type Target = Storage;
    fn deref(&self) -> &Storage {
        &self.storage
    }
}

/// A GCS service account key (JSON, as the console downloads it) of a fresh 2048-bit RSA
/// key made by openssl, as `scripts/test-servers` makes the test servers' key, naming
/// `email` and `key_id`.
pub fn gcs_service_account_key(email: &str, key_id: &str) -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl makes an RSA key");
    assert!(out.status.success(), "openssl genpkey failed");
    serde_json::json!({
        "type": "service_account",
        "project_id": "maskstore-test",
        "private_key_id": key_id,
        "private_key": String::from_utf8(out.stdout).expect("a PEM key"),
        "client_email": email,
    })
    .to_string()
}
