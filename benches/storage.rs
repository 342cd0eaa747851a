//! Put and get through `Storage` against raw object_store on the same backend, in the
//! same run, so the cost of the abstraction reads as a ratio. Also the local provider's
//! durability (fsync on every write) against fsync off.
//!
//! `cargo bench --bench storage`

// criterion_group! generates undocumented items.
#![allow(missing_docs)]

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use maskstore::{Config, Storage};
use maskstore_backends::local::LocalStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

const SIZES: [(usize, &str); 2] = [(4 * 1024, "4KiB"), (1024 * 1024, "1MiB")];

fn put_get(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backends: Vec<(&str, Arc<dyn ObjectStore>)> = vec![
        ("memory", Arc::new(object_store::memory::InMemory::new())),
        (
            "local-fsync",
            Arc::new(LocalStore::open(dir.path().join("fsync"), true).unwrap()),
        ),
        (
            "local-nofsync",
            Arc::new(LocalStore::open(dir.path().join("nofsync"), false).unwrap()),
        ),
    ];
    for (size, label) in SIZES {
        let data = bytes::Bytes::from(vec![7u8; size]);
        let mut group = c.benchmark_group(format!("put_get/{label}"));
        group.throughput(Throughput::Bytes(size as u64 * 2));
        for (name, store) in &backends {
            let storage = Storage::from_object_store(
                Arc::clone(store),
                name,
                Config::memory().object_storage.prefix.clone(),
            );
            let key = storage.key("bench/object.bin").unwrap();
            group.bench_function(BenchmarkId::new("storage", name), |b| {
                b.to_async(&rt).iter(|| async {
                    storage.put(&key, data.clone()).await.unwrap();
                    storage.get(&key).await.unwrap()
                })
            });
            let path = Path::parse("mask/bench/raw.bin").unwrap();
            group.bench_function(BenchmarkId::new("object_store", name), |b| {
                b.to_async(&rt).iter(|| async {
                    store.put(&path, data.clone().into()).await.unwrap();
                    store.get(&path).await.unwrap().bytes().await.unwrap()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, put_get);
criterion_main!(benches);
