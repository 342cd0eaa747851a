//! What both benchmark targets share: whether this is a full run, and the raw stores
//! that `Storage` is compared against.

use std::sync::Arc;

// Used by the throughput bench and benches/peers; the criterion bench has its own.
#[allow(dead_code)]
pub mod stats;

use maskstore_backends::local::LocalStore;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

/// `cargo bench` passes `--bench`; `cargo test` runs each benchmark once as a smoke test,
/// with small inputs so CI stays fast.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The raw stores to compare against, each with the name of its backend: memory, local
/// with and without fsync under `dir`, and SeaweedFS when the test servers run; only those
/// named in `MASKSTORE_BENCH_BACKENDS` (comma-separated) when it is set.
pub fn raw_backends(dir: &std::path::Path) -> Vec<(&'static str, Arc<dyn ObjectStore>)> {
    let mut backends = all_raw_backends(dir);
    if let Ok(wanted) = std::env::var("MASKSTORE_BENCH_BACKENDS") {
        let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
        backends.retain(|(name, _)| wanted.contains(name));
    }
    backends
}

fn all_raw_backends(dir: &std::path::Path) -> Vec<(&'static str, Arc<dyn ObjectStore>)> {
    let mut backends: Vec<(&'static str, Arc<dyn ObjectStore>)> = vec![
        ("memory", Arc::new(object_store::memory::InMemory::new())),
        (
            "local",
            Arc::new(LocalStore::open(dir.join("local"), true).unwrap()),
        ),
        (
            "local-nofsync",
            Arc::new(LocalStore::open(dir.join("nofsync"), false).unwrap()),
        ),
    ];
    if let Some(server) = SeaweedFs::from_env() {
        let s3 = server.builder().build().unwrap();
        backends.push(("s3-seaweedfs", Arc::new(s3)));
    } else {
        eprintln!("no SeaweedFS (MASKSTORE_TEST_SEAWEEDFS_*): S3 figures are skipped");
    }
    backends
}

/// The SeaweedFS that `scripts/test-servers` starts, from `MASKSTORE_TEST_SEAWEEDFS_*`.
pub struct SeaweedFs {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl SeaweedFs {
    /// The server of this run, or `None` when the test servers do not run.
    pub fn from_env() -> Option<SeaweedFs> {
        let var = |n: &str| std::env::var(format!("MASKSTORE_TEST_SEAWEEDFS_{n}")).ok();
        Some(SeaweedFs {
            endpoint: var("ENDPOINT")?,
            bucket: var("BUCKET")?,
            access_key: var("ACCESS_KEY")?,
            secret_key: var("SECRET_KEY")?,
        })
    }

    /// A raw object_store client of its bucket, with object_store's defaults otherwise.
    pub fn builder(&self) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&self.bucket)
            .with_region("us-east-1")
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
    }

    /// A maskstore config of its bucket (no prefix beyond the default).
    // The criterion bench builds raw stores only.
    #[allow(dead_code)]
    pub fn config(&self) -> maskstore::Config {
        maskstore::Config::s3(&self.bucket, "us-east-1")
            .and_then(|c| c.with_endpoint(&self.endpoint))
            .unwrap()
            .with_credentials(
                &self.access_key,
                maskstore_core::Secret::new(self.secret_key.clone()),
            )
    }
}
