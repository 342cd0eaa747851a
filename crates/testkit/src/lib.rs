//! maskstore-testkit: fixtures for applications that use maskstore, the contract suite
//! every backend and layer passes ([`contract`]), a failure-injecting layer ([`chaos`]),
//! and the test servers of this workspace's own tests ([`servers`]: SeaweedFS and moto for
//! `s3`, Azurite for `azure`, fake-gcs-server for `gcs`).
//!
//! An application test gets a fresh, isolated storage in one line:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let storage = maskstore_testkit::memory();
//! let key = storage.key("1.2/3.4/seg.png").unwrap();
//! storage.put(&key, "mask bytes").await.unwrap();
//! assert!(storage.exists(&key).await.unwrap());
//! # });
//! ```

pub mod chaos;
pub mod contract;
mod fixtures;
pub mod model;
pub mod servers;

pub use fixtures::{
    Served, TempStorage, from_env, gcs_service_account_key, memory, memory_served, serve_storage,
    served, temp_dir, temp_dir_served,
};
