//! Whole-system measurements that criterion is not made for, printed as Markdown:
//! 1 GiB streaming upload and download through `Storage` (throughput and peak RSS over
//! idle, each in a fresh process), the gateway against direct `Storage` with 1 and 32
//! clients, and the CLI's `put`/`get` of 1 GiB against `cp`.
//!
//! `cargo bench --bench throughput` (S3 rows need the test servers: `scripts/bench`).
//! Under `cargo test` it runs with tiny sizes as a smoke test.

#![allow(missing_docs)]

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use maskstore::{Config, SignOptions, SignedMethod, Storage, WriteOptions};
use maskstore_core::Origin;
use maskstore_core::config::ConfigLoader;

const MIB: u64 = 1024 * 1024;

fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn stream_bytes() -> u64 {
    if full_run() { 1024 * MIB } else { 8 * MIB }
}

/// (VmRSS, VmHWM) of this process, in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn config_for(backend: &str, root: &str) -> Option<Config> {
    let mut loader = ConfigLoader::new();
    let mut set = |k: &str, v: &str| loader.set(k, v, Origin::Default).unwrap();
    match backend {
        "local" => {
            set("object_storage.provider", "local");
            set("object_storage.root", root);
        }
        "s3" => {
            let var = |n: &str| std::env::var(format!("MASKSTORE_TEST_SEAWEEDFS_{n}")).ok();
            set("object_storage.provider", "s3");
            set("object_storage.bucket_name", &var("BUCKET")?);
            set("object_storage.region", "us-east-1");
            set("object_storage.endpoint", &var("ENDPOINT")?);
            set("object_storage.access_key", &var("ACCESS_KEY")?);
            set("object_storage.secret_key", &var("SECRET_KEY")?);
            set("object_storage.prefix", "mask/bench-stream/");
        }
        _ => return None,
    }
    Some(loader.build("development", Origin::Default).unwrap())
}

/// One streaming phase in this (fresh) process; prints `bytes secs idle_rss peak_rss`.
fn child(phase: &str, backend: &str, root: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let storage = Storage::connect(&config_for(backend, root).unwrap()).unwrap();
    let key = storage.key("stream/volume.bin").unwrap();
    let total = stream_bytes();
    let chunk = Bytes::from(vec![0x5au8; MIB as usize]);
    let (idle, _) = rss();
    let started = Instant::now();
    rt.block_on(async {
        match phase {
            "upload" => {
                let mut upload = storage
                    .upload(&key, &WriteOptions::default())
                    .await
                    .unwrap();
                for _ in 0..total / MIB {
                    upload.write(chunk.clone()).await.unwrap();
                }
                upload.finish().await.unwrap();
            }
            _ => {
                let mut stream = storage.get_stream(&key).await.unwrap().stream;
                let mut n = 0u64;
                while let Some(part) = stream.next().await {
                    n += part.unwrap().len() as u64;
                }
                assert_eq!(n, total);
            }
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let (_, peak) = rss();
    println!("{total} {secs} {idle} {peak}");
}

fn streaming(root: &str) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut rows = Vec::new();
    for backend in ["local", "s3"] {
        if config_for(backend, root).is_none() {
            rows.push(format!("| {backend} | — | — | — | skipped: no SeaweedFS |"));
            continue;
        }
        for phase in ["upload", "download"] {
            let mut args = vec!["--child", phase, backend, root];
            if full_run() {
                args.push("--bench");
            }
            let out = Command::new(&exe).args(&args).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let fields: Vec<f64> = text
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            assert_eq!(
                fields.len(),
                4,
                "child {phase} {backend}: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (bytes, secs, idle, peak) = (fields[0], fields[1], fields[2], fields[3]);
            rows.push(format!(
                "| {backend} | {phase} {} MiB | {:.0} MiB/s | {:.1} MiB | {:.1} MiB |",
                bytes as u64 / MIB,
                bytes / secs / MIB as f64,
                idle / MIB as f64,
                (peak - idle) / MIB as f64
            ));
        }
    }
    rows
}

/// MiB/s of `ops` operations of 1 MiB each, `clients` at a time.
async fn rate<F, Fut>(ops: usize, clients: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    futures::stream::iter(0..ops)
        .map(&op)
        .buffer_unordered(clients)
        .collect::<Vec<()>>()
        .await;
    ops as f64 / started.elapsed().as_secs_f64()
}

fn gateway() -> Vec<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let served = maskstore_testkit::temp_dir_served().await;
        let storage: Storage = (*served).clone();
        let objects = 64;
        let body = Bytes::from(vec![1u8; MIB as usize]);
        let keys: Vec<_> = (0..objects)
            .map(|i| storage.key(&format!("gw/{i}.bin")).unwrap())
            .collect();
        for key in &keys {
            storage.put(key, body.clone()).await.unwrap();
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        let ops = if full_run() { 1024 } else { 64 };
        let mut rows = Vec::new();
        for clients in [1usize, 32] {
            let direct_get = rate(ops, clients, |i| {
                let (storage, key) = (storage.clone(), keys[i % objects].clone());
                async move {
                    assert_eq!(storage.get(&key).await.unwrap().data.len(), MIB as usize);
                }
            })
            .await;
            let urls: Vec<String> = futures::future::join_all(keys.iter().map(|k| {
                let storage = storage.clone();
                async move {
                    storage
                        .signed_url(SignedMethod::Get, k, None, &SignOptions::default())
                        .await
                        .unwrap()
                        .url
                }
            }))
            .await;
            let gateway_get = rate(ops, clients, |i| {
                let (http, url) = (http.clone(), urls[i % objects].clone());
                async move {
                    let bytes = http.get(&url).send().await.unwrap().bytes().await.unwrap();
                    assert_eq!(bytes.len(), MIB as usize);
                }
            })
            .await;
            let direct_put = rate(ops, clients, |i| {
                let (storage, key, body) =
                    (storage.clone(), keys[i % objects].clone(), body.clone());
                async move {
                    storage.put(&key, body).await.unwrap();
                }
            })
            .await;
            let put_urls: Vec<String> = futures::future::join_all(keys.iter().map(|k| {
                let storage = storage.clone();
                async move {
                    storage
                        .signed_url(SignedMethod::Put, k, None, &SignOptions::default())
                        .await
                        .unwrap()
                        .url
                }
            }))
            .await;
            let gateway_put = rate(ops, clients, |i| {
                let (http, url, body) = (http.clone(), put_urls[i % objects].clone(), body.clone());
                async move {
                    assert!(
                        http.put(&url)
                            .body(body)
                            .send()
                            .await
                            .unwrap()
                            .status()
                            .is_success()
                    );
                }
            })
            .await;
            rows.push(format!(
                "| GET | {clients} | {direct_get:.0} | {gateway_get:.0} | {:.0} % |",
                gateway_get / direct_get * 100.0
            ));
            rows.push(format!(
                "| PUT | {clients} | {direct_put:.0} | {gateway_put:.0} | {:.0} % |",
                gateway_put / direct_put * 100.0
            ));
        }
        drop(served);
        rows
    })
}

fn cli_vs_cp() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let size = stream_bytes();
    let file = dir.path().join("volume.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&file).unwrap();
        let chunk = vec![0x33u8; MIB as usize];
        for _ in 0..size / MIB {
            f.write_all(&chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
    let exe = env!("CARGO_BIN_EXE_maskstore");
    let time = |program: &str, args: &[&str]| {
        let started = Instant::now();
        let status = Command::new(program)
            .args(args)
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "{program} {args:?}");
        started.elapsed()
    };
    let best = |f: &dyn Fn() -> Duration| (0..3).map(|_| f()).min().unwrap();
    let cp = best(&|| time("cp", &["volume.bin", "copy.bin"]));
    // `maskstore get` syncs the file before linking it into place; this is cp doing the same.
    let cp_sync = best(&|| time("sh", &["-c", "cp volume.bin synced.bin && sync synced.bin"]));
    let put = best(&|| time(exe, &["put", "volume.bin", "mask/bench/volume.bin"]));
    let get = best(&|| time(exe, &["get", "mask/bench/volume.bin", "back.bin"]));
    let mibs = |d: Duration| size as f64 / MIB as f64 / d.as_secs_f64();
    vec![
        format!("| cp | {:.0} MiB/s | 100 % |", mibs(cp)),
        format!(
            "| cp, then sync of the copy | {:.0} MiB/s | {:.0} % |",
            mibs(cp_sync),
            mibs(cp_sync) / mibs(cp) * 100.0
        ),
        format!(
            "| maskstore put (local, fsync) | {:.0} MiB/s | {:.0} % |",
            mibs(put),
            mibs(put) / mibs(cp) * 100.0
        ),
        format!(
            "| maskstore get (local) | {:.0} MiB/s | {:.0} % |",
            mibs(get),
            mibs(get) / mibs(cp) * 100.0
        ),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], &args[i + 2], &args[i + 3]);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let root = root.to_str().unwrap();
    println!(
        "## Streaming {} MiB through Storage (each row a fresh process)\n",
        stream_bytes() / MIB
    );
    println!(
        "| backend | phase | throughput | idle RSS | peak RSS above idle |\n|---|---|---|---|---|"
    );
    for row in streaming(root) {
        println!("{row}");
    }
    println!("\n## Gateway vs direct Storage, 1 MiB objects, local backend (objects per second)\n");
    println!("| method | clients | direct | gateway | gateway/direct |\n|---|---|---|---|---|");
    for row in gateway() {
        println!("{row}");
    }
    println!(
        "\n## CLI vs cp, {} MiB on local disk (best of 3)\n",
        stream_bytes() / MIB
    );
    println!("| command | throughput | vs cp |\n|---|---|---|");
    for row in cli_vs_cp() {
        println!("{row}");
    }
    if let Some(config) = config_for("s3", root) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let storage = Storage::connect(&config).unwrap();
        rt.block_on(async {
            let _ = storage
                .delete(&storage.key("stream/volume.bin").unwrap())
                .await;
        });
    }
}
