//! Criterion benchmarks: put+get through `Storage` against raw object_store on the same
//! backend in the same run (the ratio is the cost of the abstraction), signed-URL issuing
//! and verification, and listing.
//!
//! `cargo bench --bench storage` (S3 figures need the test servers: `scripts/bench`).

// criterion_group! generates undocumented items.
#![allow(missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::TryStreamExt;
use maskstore::{Config, SignOptions, SignedMethod, Storage};
use maskstore_backends::signing::{GatewaySigner, random_secret};
use maskstore_core::ObjectKey;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use object_store::signer::{Method, Signer};

use common::{full_run, raw_backends};

const SIZES: [(usize, &str); 3] = [
    (4 * 1024, "4KiB"),
    (1024 * 1024, "1MiB"),
    (64 * 1024 * 1024, "64MiB"),
];

/// The `Storage` a user gets over the raw store `name` of [`raw_backends`]: the local ones
/// through `Storage::connect` on the same root (so the provider's own rules apply, such as
/// hashing a put as it writes it), the others wrapped as they are.
fn storage_over(
    store: &Arc<dyn object_store::ObjectStore>,
    name: &str,
    dir: &std::path::Path,
    run: &str,
) -> Storage {
    let local = |root: &str, fsync: bool| {
        let mut config = Config::local(dir.join(root));
        config.object_storage.fsync = fsync;
        config.object_storage.prefix = format!("mask/{run}/").parse().unwrap();
        Storage::connect(&config).unwrap()
    };
    match name {
        "local" => local("local", true),
        "local-nofsync" => local("nofsync", false),
        _ => Storage::from_object_store(
            Arc::clone(store),
            name,
            format!("mask/{run}/").parse().unwrap(),
        ),
    }
}

fn put_get(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = format!("bench-{:08x}", rand::random::<u32>());
    for (size, label) in SIZES {
        if !full_run() && size > 1024 * 1024 {
            continue;
        }
        let data = bytes::Bytes::from(vec![7u8; size]);
        let mut group = c.benchmark_group(format!("put_get/{label}"));
        group.throughput(Throughput::Bytes(size as u64 * 2));
        if size >= 1024 * 1024 {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(if size > 1 << 20 { 20 } else { 5 }));
        }
        for (name, store) in raw_backends(dir.path()) {
            let storage = storage_over(&store, name, dir.path(), &run);
            let key = storage.key(&format!("{label}/object.bin")).unwrap();
            group.bench_function(BenchmarkId::new("storage", name), |b| {
                b.to_async(&rt).iter(|| async {
                    storage.put(&key, data.clone()).await.unwrap();
                    storage.get(&key).await.unwrap()
                })
            });
            let path = Path::parse(format!("mask/{run}/{label}/raw.bin")).unwrap();
            group.bench_function(BenchmarkId::new("object_store", name), |b| {
                b.to_async(&rt).iter(|| async {
                    store.put(&path, data.clone().into()).await.unwrap();
                    store.get(&path).await.unwrap().bytes().await.unwrap()
                })
            });
            rt.block_on(async {
                let _ = storage.delete(&key).await;
                let _ = store.delete(&path).await;
            });
        }
        group.finish();
    }
}

fn signing(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("sign");
    group.throughput(Throughput::Elements(1));
    let key = ObjectKey::parse("mask/1.2.840.1/1.2.840.2/liver.nii.gz").unwrap();

    // S3: SigV4 presigning is local computation with static credentials.
    let s3 = Config::s3("pacs-masks-prod", "us-east-1")
        .unwrap()
        .with_credentials(
            "AKIAEXAMPLE",
            maskstore_core::Secret::new("secret-for-the-benchmark"),
        );
    let s3 = Storage::connect(&s3).unwrap();
    group.bench_function("s3-sigv4-presign", |b| {
        b.to_async(&rt).iter(|| async {
            s3.signed_url(SignedMethod::Get, &key, None, &SignOptions::default())
                .await
                .unwrap()
        })
    });
    let bound = SignOptions {
        content_type: Some("application/gzip".to_string()),
        content_length: Some(1 << 20),
        sha256: None,
    };
    group.bench_function("s3-sigv4-presign-put-bound", |b| {
        b.to_async(&rt).iter(|| async {
            s3.signed_url(SignedMethod::Put, &key, None, &bound)
                .await
                .unwrap()
        })
    });
    // The baseline: object_store's own presigning of the same URL, same credentials.
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("pacs-masks-prod")
        .with_region("us-east-1")
        .with_access_key_id("AKIAEXAMPLE")
        .with_secret_access_key("secret-for-the-benchmark")
        .build()
        .unwrap();
    let path = Path::parse(key.as_str()).unwrap();
    group.bench_function("s3-object_store-presign", |b| {
        b.to_async(&rt).iter(|| async {
            raw.signed_url(Method::GET, &path, Duration::from_secs(600))
                .await
                .unwrap()
        })
    });

    let signer = GatewaySigner::new("http://127.0.0.1:9000", random_secret(), None);
    let expires = chrono::Utc::now().timestamp() + 600;
    group.bench_function("local-hmac-sign", |b| {
        b.iter(|| signer.sign(SignedMethod::Get, &key, expires, &SignOptions::default()))
    });
    let memory = Storage::connect(&Config::memory()).unwrap();
    group.bench_function("storage-gateway-signed_url", |b| {
        b.to_async(&rt).iter(|| async {
            memory
                .signed_url(SignedMethod::Get, &key, None, &SignOptions::default())
                .await
                .unwrap()
        })
    });
    let url = signer.sign(SignedMethod::Get, &key, expires, &SignOptions::default());
    let rest = url.strip_prefix("http://127.0.0.1:9000/o/").unwrap();
    let (path, query) = rest.split_once('?').unwrap();
    let (path, query) = (path.to_string(), query.to_string());
    group.bench_function("gateway-verify", |b| {
        b.iter(|| {
            signer
                .verify("GET", &path, &query, chrono::Utc::now())
                .unwrap()
        })
    });
    // The same signer watching its secret's file for a rotation: one stat per call.
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("signing_secret");
    let secret = random_secret();
    std::fs::write(&file, secret.expose()).unwrap();
    let rotating = GatewaySigner::rotating(
        "http://127.0.0.1:9000",
        secret,
        None,
        file,
        Duration::from_secs(3600),
    );
    group.bench_function("local-hmac-sign-rotating", |b| {
        b.iter(|| rotating.sign(SignedMethod::Get, &key, expires, &SignOptions::default()))
    });
    let url = rotating.sign(SignedMethod::Get, &key, expires, &SignOptions::default());
    let rest = url.strip_prefix("http://127.0.0.1:9000/o/").unwrap();
    let (path, query) = rest.split_once('?').unwrap();
    let (path, query) = (path.to_string(), query.to_string());
    group.bench_function("gateway-verify-rotating", |b| {
        b.iter(|| {
            rotating
                .verify("GET", &path, &query, chrono::Utc::now())
                .unwrap()
        })
    });
    group.finish();
}

fn listing(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("list");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let counts: &[usize] = if full_run() {
        &[10_000, 100_000]
    } else {
        &[100]
    };
    for &count in counts {
        group.throughput(Throughput::Elements(count as u64));
        for (name, store) in raw_backends(dir.path()) {
            // Listing does not depend on fsync; filling 100,000 files with it would take minutes.
            if name == "local" {
                continue;
            }
            let prefix = format!("mask/list-{count}-{:08x}/", rand::random::<u32>())
                .parse()
                .unwrap();
            let storage = Storage::from_object_store(Arc::clone(&store), name, prefix);
            rt.block_on(async {
                let keys: Vec<ObjectKey> = (0..count)
                    .map(|i| storage.key(&format!("{:03}/{i:07}.png", i % 997)).unwrap())
                    .collect();
                for chunk in keys.chunks(64) {
                    futures::future::try_join_all(chunk.iter().map(|k| storage.put(k, "x")))
                        .await
                        .unwrap();
                }
            });
            group.bench_function(BenchmarkId::new(name, count), |b| {
                b.to_async(&rt).iter(|| async {
                    let n = storage
                        .list(None)
                        .unwrap()
                        .try_fold(0usize, |n, _| async move { Ok(n + 1) })
                        .await
                        .unwrap();
                    assert_eq!(n, count);
                })
            });
            rt.block_on(async {
                let keys: Vec<ObjectKey> = storage
                    .list(None)
                    .unwrap()
                    .map_ok(|info| info.key)
                    .try_collect()
                    .await
                    .unwrap();
                for chunk in keys.chunks(1000) {
                    storage.delete_many(chunk).await.unwrap();
                }
            });
        }
    }
    group.finish();
}

criterion_group!(benches, put_get, signing, listing);
criterion_main!(benches);
