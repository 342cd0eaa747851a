//! One-line storages for tests.

use std::ops::Deref;

use maskstore_backends::{ConfigSource, Storage, load_config};
use maskstore_core::Origin;
use maskstore_core::config::{ConfigLoader, DEFAULT_ENVIRONMENT};

/// A fresh in-memory storage under `mask/`.
pub fn memory() -> Storage {
    Storage::memory()
}

/// A local-disk storage in a new temporary folder, removed when dropped.
pub fn temp_dir() -> TempStorage {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut loader = ConfigLoader::new();
    let root = dir.path().join("data");
    for (key, value) in [
        ("object_storage.provider", "local"),
        (
            "object_storage.root",
            root.to_str().expect("temp paths are UTF-8"),
        ),
    ] {
        loader.set(key, value, Origin::Default).expect("known key");
    }
    let config = loader
        .build(DEFAULT_ENVIRONMENT, Origin::Default)
        .expect("a valid local config");
    let storage = Storage::connect(&config).expect("a local storage in a temp folder");
    TempStorage { storage, _dir: dir }
}

/// The storage the environment configures (`config/` folder and `APP_*` variables), as
/// the application itself would build it.
pub fn from_env() -> maskstore_backends::Result<Storage> {
    Storage::connect(&load_config(&ConfigSource::default())?)
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
