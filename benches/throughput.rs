//! Whole-system measurements that criterion is not made for, printed as Markdown:
//! 1 GiB streaming upload and download through `Storage` (throughput and peak RSS over
//! idle, each in a fresh process), the gateway against direct `Storage` with 1 and 32
//! clients, and the CLI's `put`/`get` of 1 GiB against `cp`.
//!
//! `cargo bench --bench throughput` (S3 rows need the test servers: `scripts/bench`).
//! Under `cargo test` it runs with tiny sizes as a smoke test.

#![allow(missing_docs)]

#[allow(dead_code)]
mod before_local;
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use maskstore::{Config, SignOptions, SignedMethod, Storage, WriteOptions};
use maskstore_core::{KeyPrefix, Secret};
use object_store::ObjectStoreExt;

use common::stats::{bootstrap_interval, human_time, median};
use common::{full_run, raw_backends};

const MIB: u64 = 1024 * 1024;

/// Sections named on the command line (`cargo bench --bench throughput -- gateway`), or
/// every section when none is named.
fn wanted(section: &str) -> bool {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    named.is_empty() || named.iter().any(|n| n == section)
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
    match backend {
        "local" => Some(Config::local(root)),
        "s3" => {
            let var = |n: &str| std::env::var(format!("MASKSTORE_TEST_SEAWEEDFS_{n}")).ok();
            Some(
                Config::s3(var("BUCKET")?, "us-east-1")
                    .unwrap()
                    .with_endpoint(var("ENDPOINT")?)
                    .unwrap()
                    .with_credentials(var("ACCESS_KEY")?, Secret::new(var("SECRET_KEY")?))
                    .with_prefix(KeyPrefix::parse("mask/bench-stream/").unwrap()),
            )
        }
        _ => None,
    }
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

/// Runs one streaming phase in a fresh process: (bytes, seconds, idle RSS, peak RSS).
fn child_run(phase: &str, backend: &str, root: &str) -> [f64; 4] {
    let mut args = vec!["--child", phase, backend, root];
    if full_run() {
        args.push("--bench");
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(&args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<f64> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.try_into().unwrap_or_else(|fields: Vec<f64>| {
        panic!(
            "child {phase} {backend} printed {} fields: {text} {}",
            fields.len(),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Three upload-then-download rounds per backend, each phase a fresh process. The disk's
/// flush speed varies severalfold between runs on a virtual machine, so a row reports the
/// best throughput of the three and the highest peak RSS.
fn streaming(root: &str) -> Vec<String> {
    let mut rows = Vec::new();
    for backend in ["local", "s3"] {
        if config_for(backend, root).is_none() {
            rows.push(format!("| {backend} | — | — | — | skipped: no SeaweedFS |"));
            continue;
        }
        let mut runs: [Vec<[f64; 4]>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..3 {
            for (i, phase) in ["upload", "download"].into_iter().enumerate() {
                runs[i].push(child_run(phase, backend, root));
            }
        }
        for (phase, runs) in ["upload", "download"].into_iter().zip(runs) {
            let bytes = runs[0][0];
            let best = runs.iter().map(|r| r[0] / r[1]).fold(0.0, f64::max);
            let idle = runs.iter().map(|r| r[2]).fold(0.0, f64::max);
            let above = runs.iter().map(|r| r[3] - r[2]).fold(0.0, f64::max);
            rows.push(format!(
                "| {backend} | {phase} {} MiB | {:.0} MiB/s | {:.1} MiB | {:.1} MiB |",
                bytes as u64 / MIB,
                best / MIB as f64,
                idle / MIB as f64,
                above / MIB as f64
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

/// The ceiling of HTTP over loopback with the same client: an axum server that answers a
/// GET with 1 MiB from memory and reads a PUT's body into memory, with no store, no
/// signature and no disk. Returns its URL.
async fn plain_http_server(body: Bytes) -> String {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/blob", listener.local_addr().unwrap());
    let router = axum::Router::new().route(
        "/blob",
        get(move || {
            let body = body.clone();
            async move { body }
        })
        .put(|received: Bytes| async move { received.len().to_string() }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// What the gateway benchmark measures, each a rate of 1 MiB operations.
#[derive(Clone, Copy)]
enum Transfer {
    DirectGet,
    GatewayGet,
    PlainGet,
    DirectPut,
    GatewayPut,
    PlainPut,
}

/// Everything one gateway measurement needs.
struct GatewayBench {
    storage: Storage,
    keys: Vec<maskstore::ObjectKey>,
    get_urls: Vec<String>,
    put_urls: Vec<String>,
    plain: String,
    http: reqwest::Client,
    body: Bytes,
}

impl GatewayBench {
    /// Objects per second of `ops` transfers, `clients` at a time.
    async fn rate(&self, transfer: Transfer, ops: usize, clients: usize) -> f64 {
        let n = self.keys.len();
        rate(ops, clients, |i| async move {
            match transfer {
                Transfer::DirectGet => {
                    let object = self.storage.get(&self.keys[i % n]).await.unwrap();
                    assert_eq!(object.data.len(), MIB as usize);
                }
                Transfer::DirectPut => {
                    self.storage
                        .put(&self.keys[i % n], self.body.clone())
                        .await
                        .unwrap();
                }
                Transfer::GatewayGet | Transfer::PlainGet => {
                    let url = match transfer {
                        Transfer::GatewayGet => &self.get_urls[i % n],
                        _ => &self.plain,
                    };
                    let response = self.http.get(url).send().await.unwrap();
                    assert!(response.status().is_success());
                    assert_eq!(response.bytes().await.unwrap().len(), MIB as usize);
                }
                Transfer::GatewayPut | Transfer::PlainPut => {
                    let url = match transfer {
                        Transfer::GatewayPut => &self.put_urls[i % n],
                        _ => &self.plain,
                    };
                    let response = self.http.put(url).body(self.body.clone()).send().await;
                    assert!(response.unwrap().status().is_success());
                }
            }
        })
        .await
    }
}

/// Signed URLs of `method` for every key.
async fn urls(
    storage: &Storage,
    keys: &[maskstore::ObjectKey],
    method: SignedMethod,
) -> Vec<String> {
    let mut urls = Vec::new();
    for key in keys {
        let signed = storage
            .signed_url(method, key, None, &SignOptions::default())
            .await
            .unwrap();
        urls.push(signed.url);
    }
    urls
}

/// The gateway against direct `Storage` and against a plain HTTP server, at 1 and 32
/// clients. Each figure is the median of five rounds, the six transfers in rotating order
/// within a round, so a slow spell of the machine does not land on one column only.
fn gateway() -> Vec<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let served = maskstore_testkit::temp_dir_served().await;
        let storage: Storage = (*served).clone();
        let body = Bytes::from(vec![1u8; MIB as usize]);
        let keys: Vec<_> = (0..64)
            .map(|i| storage.key(&format!("gw/{i}.bin")).unwrap())
            .collect();
        for key in &keys {
            storage.put(key, body.clone()).await.unwrap();
        }
        let bench = GatewayBench {
            get_urls: urls(&storage, &keys, SignedMethod::Get).await,
            put_urls: urls(&storage, &keys, SignedMethod::Put).await,
            plain: plain_http_server(body.clone()).await,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            storage,
            keys,
            body,
        };
        let (ops, rounds) = if full_run() { (512, 5) } else { (32, 1) };
        let transfers = [
            Transfer::DirectGet,
            Transfer::GatewayGet,
            Transfer::PlainGet,
            Transfer::DirectPut,
            Transfer::GatewayPut,
            Transfer::PlainPut,
        ];
        let mut rows = Vec::new();
        for clients in [1usize, 32] {
            let mut rates: Vec<Vec<f64>> = vec![Vec::new(); transfers.len()];
            for round in 0..rounds {
                for i in 0..transfers.len() {
                    let which = (i + round) % transfers.len();
                    rates[which].push(bench.rate(transfers[which], ops, clients).await);
                }
            }
            let m: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
            // If the gateway were exactly a store operation followed by a plain HTTP
            // transfer, each costing what it costs alone, its rate would be this.
            let added = |direct: f64, plain: f64| 1.0 / (1.0 / direct + 1.0 / plain);
            for (method, direct, gateway, plain) in
                [("GET", m[0], m[1], m[2]), ("PUT", m[3], m[4], m[5])]
            {
                let added = added(direct, plain);
                rows.push(format!(
                    "| {method} | {clients} | {direct:.0} | {gateway:.0} | {:.0} % | {plain:.0} | {added:.0} | {:.0} % |",
                    gateway / direct * 100.0,
                    gateway / added * 100.0
                ));
            }
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
    let run = |program: &str, args: &[&str]| {
        let started = Instant::now();
        let status = Command::new(program)
            .args(args)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{program} {args:?}");
        started.elapsed()
    };
    run(exe, &["put", "volume.bin", "mask/bench/volume.bin"]);
    let commands: [(&str, &str, &[&str]); 5] = [
        ("cp", "cp", &["volume.bin", "out.bin"]),
        // `maskstore get` syncs the file before linking it into place; cp doing the same.
        (
            "cp, then sync of the copy",
            "sh",
            &["-c", "cp volume.bin out.bin && sync out.bin"],
        ),
        (
            "maskstore put (local, fsync)",
            exe,
            &["put", "volume.bin", "mask/bench/put.bin"],
        ),
        (
            "maskstore get (local, synced)",
            exe,
            &["get", "mask/bench/volume.bin", "out.bin"],
        ),
        (
            "maskstore get --no-sync (local)",
            exe,
            &["get", "--no-sync", "mask/bench/volume.bin", "out.bin"],
        ),
    ];
    // Rounds in rotating order. Before every command its output is removed and the disk
    // settled (`sync`, untimed), so no command pays for the write-back another left
    // behind and every one writes a new file, as a first copy does.
    let rounds = if full_run() { 5 } else { 1 };
    let mut taken: Vec<Vec<f64>> = vec![Vec::new(); commands.len()];
    for round in 0..rounds {
        for i in 0..commands.len() {
            let which = (i + round) % commands.len();
            let _ = std::fs::remove_file(dir.path().join("out.bin"));
            run(exe, &["rm", "mask/bench/put.bin"]);
            run("sync", &[]);
            let (_, program, args) = commands[which];
            taken[which].push(run(program, args).as_secs_f64());
        }
    }
    let mibs = |secs: f64| size as f64 / MIB as f64 / secs;
    let medians: Vec<f64> = taken.iter_mut().map(|t| median(t)).collect();
    commands
        .iter()
        .zip(&taken)
        .zip(&medians)
        .map(|(((command, _, _), times), &median)| {
            let slowest = times.iter().copied().fold(0.0, f64::max);
            let fastest = times.iter().copied().fold(f64::INFINITY, f64::min);
            format!(
                "| {command} | {:.0} MiB/s [{:.0} … {:.0}] | {:.0} % |",
                mibs(median),
                mibs(slowest),
                mibs(fastest),
                mibs(median) / mibs(medians[0]) * 100.0
            )
        })
        .collect()
}

/// Rounds of one paired comparison: as many as fit in `budget`, between 20 and 400.
fn rounds_within(budget: Duration, one_round: Duration) -> usize {
    let fit = budget.as_secs_f64() / one_round.as_secs_f64().max(1e-9);
    (fit as usize).clamp(20, 400)
}

/// Storage against raw object_store on the same store, measured in pairs: every round
/// times one put+get through each, in alternating order, so drift of the disk or the
/// server (page cache, journal, compaction) hits both sides alike. A sample repeats the
/// put+get until it lasts at least a millisecond, so the clock's resolution is not what is
/// measured on memory. Rows: median of each side, median of the per-round ratios with its
/// 95 % bootstrap interval, and the number of rounds.
fn paired() -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = format!("pair-{:08x}", rand::random::<u32>());
    let sizes: &[(usize, &str)] = if full_run() {
        &[
            (4 * 1024, "4 KiB"),
            (MIB as usize, "1 MiB"),
            (64 * MIB as usize, "64 MiB"),
        ]
    } else {
        &[(64 * 1024, "64 KiB")]
    };
    let budget = Duration::from_secs(if full_run() { 60 } else { 1 });
    let mut rows = Vec::new();
    for &(size, label) in sizes {
        let data = Bytes::from(vec![7u8; size]);
        for (name, store) in raw_backends(dir.path()) {
            let prefix = format!("mask/{run}/").parse().unwrap();
            // Without the integrity checksum, whose cost has its own section (`checksum`):
            // this measures what the Storage layer itself adds.
            let storage = Storage::from_object_store(std::sync::Arc::clone(&store), name, prefix)
                .with_checksum(maskstore::ChecksumAlgorithm::None);
            let key = storage.key(&format!("{label}/object.bin")).unwrap();
            let path =
                object_store::path::Path::parse(format!("mask/{run}/{label}/raw.bin")).unwrap();
            let through_storage = |times: usize| {
                let (storage, key, data) = (storage.clone(), key.clone(), data.clone());
                async move {
                    let started = Instant::now();
                    for _ in 0..times {
                        storage.put(&key, data.clone()).await.unwrap();
                        assert_eq!(storage.get(&key).await.unwrap().data.len(), data.len());
                    }
                    started.elapsed().as_secs_f64() / times as f64
                }
            };
            let through_raw = |times: usize| {
                let (store, path, data) =
                    (std::sync::Arc::clone(&store), path.clone(), data.clone());
                async move {
                    let started = Instant::now();
                    for _ in 0..times {
                        store.put(&path, data.clone().into()).await.unwrap();
                        let got = store.get(&path).await.unwrap().bytes().await.unwrap();
                        assert_eq!(got.len(), data.len());
                    }
                    started.elapsed().as_secs_f64() / times as f64
                }
            };
            let (mut storage_times, mut raw_times, mut ratios) =
                (Vec::new(), Vec::new(), Vec::new());
            rt.block_on(async {
                // Warm up both sides, then size a sample to last at least 1 ms.
                let one = through_raw(1).await.max(through_storage(1).await);
                let times = ((1e-3 / one).ceil() as usize).max(1);
                let rounds =
                    rounds_within(budget, Duration::from_secs_f64(2.0 * one * times as f64));
                for round in 0..rounds {
                    let (s, r) = if round % 2 == 0 {
                        let s = through_storage(times).await;
                        (s, through_raw(times).await)
                    } else {
                        let r = through_raw(times).await;
                        (through_storage(times).await, r)
                    };
                    storage_times.push(s);
                    raw_times.push(r);
                    ratios.push(s / r);
                }
                let _ = storage.delete(&key).await;
                let _ = store.delete(&path).await;
            });
            let (low, high) = bootstrap_interval(&ratios);
            let rounds = ratios.len();
            rows.push(format!(
                "| {label} | {name} | {} | {} | {:.3} [{low:.3} … {high:.3}] | {rounds} |",
                human_time(median(&mut storage_times)),
                human_time(median(&mut raw_times)),
                median(&mut ratios),
            ));
        }
    }
    rows
}

/// maskstore's local provider against path-based local stores doing the same durable
/// writes (temporary file, fsync, rename, folder fsync), measured in pairs as in
/// [`paired`], all called as raw object_store: the local provider as it was before paths
/// were resolved beneath the root handle (`before_local`, the baseline), and object_store's
/// `LocalFileSystem` with fsync. What the handle-based resolution, the per-key locks and
/// the etag's generation cost against resolving paths by name.
fn local_vs_paths() -> Vec<String> {
    use maskstore_backends::local::LocalStore;
    use object_store::ObjectStore;
    use object_store::local::LocalFileSystem;
    use std::sync::Arc;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sizes: &[(usize, &str)] = if full_run() {
        &[
            (4 * 1024, "4 KiB"),
            (MIB as usize, "1 MiB"),
            (64 * MIB as usize, "64 MiB"),
        ]
    } else {
        &[(4 * 1024, "4 KiB")]
    };
    let budget = Duration::from_secs(if full_run() { 40 } else { 1 });
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("local"), true).unwrap());
    std::fs::create_dir_all(dir.path().join("paths")).unwrap();
    let baselines: Vec<(&str, Arc<dyn ObjectStore>)> = vec![
        (
            "before this change",
            Arc::new(before_local::LocalStore::open(dir.path().join("before"), true).unwrap()),
        ),
        (
            "object_store LocalFileSystem",
            Arc::new(
                LocalFileSystem::new_with_prefix(dir.path().join("paths"))
                    .unwrap()
                    .with_fsync(true),
            ),
        ),
    ];
    let mut rows = Vec::new();
    for &(size, label) in sizes {
        let data = Bytes::from(vec![7u8; size]);
        let path = object_store::path::Path::parse(format!("mask/{label}/object.bin")).unwrap();
        let put_get = |store: &Arc<dyn ObjectStore>, times: usize| {
            let (store, path, data) = (Arc::clone(store), path.clone(), data.clone());
            async move {
                let started = Instant::now();
                for _ in 0..times {
                    store.put(&path, data.clone().into()).await.unwrap();
                    let got = store.get(&path).await.unwrap().bytes().await.unwrap();
                    assert_eq!(got.len(), data.len());
                }
                started.elapsed().as_secs_f64() / times as f64
            }
        };
        for (baseline_name, baseline) in &baselines {
            let (mut local_times, mut base_times, mut ratios) =
                (Vec::new(), Vec::new(), Vec::new());
            rt.block_on(async {
                let one = put_get(baseline, 1).await.max(put_get(&local, 1).await);
                let times = ((1e-3 / one).ceil() as usize).max(1);
                let rounds =
                    rounds_within(budget, Duration::from_secs_f64(2.0 * one * times as f64));
                for round in 0..rounds {
                    let (l, b) = if round % 2 == 0 {
                        let l = put_get(&local, times).await;
                        (l, put_get(baseline, times).await)
                    } else {
                        let b = put_get(baseline, times).await;
                        (put_get(&local, times).await, b)
                    };
                    local_times.push(l);
                    base_times.push(b);
                    ratios.push(l / b);
                }
            });
            let (low, high) = bootstrap_interval(&ratios);
            let rounds = ratios.len();
            rows.push(format!(
                "| {label} | {baseline_name} | {} | {} | {:.3} [{low:.3} … {high:.3}] | {rounds} |",
                human_time(median(&mut local_times)),
                human_time(median(&mut base_times)),
                median(&mut ratios),
            ));
        }
    }
    rows
}

/// The cost of the integrity checksum: a put + whole (verified) get through `Storage` with
/// each algorithm against the same with `none`, measured in pairs as in [`paired`] (one
/// round times all three in rotating order). Local with fsync, and SeaweedFS when the test
/// servers run (there the checksum also travels as S3's `x-amz-checksum-*` header).
fn checksums() -> Vec<String> {
    use maskstore::ChecksumAlgorithm as A;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (size, label) = if full_run() {
        (64 * MIB as usize, "64 MiB")
    } else {
        (64 * 1024, "64 KiB")
    };
    let budget = Duration::from_secs(if full_run() { 90 } else { 1 });
    let data = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let run = format!("sum-{:08x}", rand::random::<u32>());
    let prefix: KeyPrefix = format!("mask/{run}/").parse().unwrap();
    let mut configs = vec![("local", Config::local(dir.path().join("data")))];
    if let (Ok(endpoint), Ok(bucket), Ok(key), Ok(secret)) = (
        std::env::var("MASKSTORE_TEST_SEAWEEDFS_ENDPOINT"),
        std::env::var("MASKSTORE_TEST_SEAWEEDFS_BUCKET"),
        std::env::var("MASKSTORE_TEST_SEAWEEDFS_ACCESS_KEY"),
        std::env::var("MASKSTORE_TEST_SEAWEEDFS_SECRET_KEY"),
    ) {
        let config = Config::s3(&bucket, "us-east-1")
            .and_then(|c| c.with_endpoint(&endpoint))
            .unwrap()
            .with_credentials(&key, Secret::new(secret));
        configs.push(("s3 (SeaweedFS)", config));
    }
    let algorithms = [A::None, A::Crc64Nvme, A::Sha256];
    let mut rows = Vec::new();
    for (name, config) in configs {
        let storages: Vec<Storage> = algorithms
            .iter()
            .map(|&a| {
                Storage::connect(&config.clone().with_prefix(prefix.clone()).with_checksum(a))
                    .unwrap()
            })
            .collect();
        let step = |i: usize| {
            let storage = storages[i].clone();
            let data = data.clone();
            async move {
                let key = storage.key(&format!("{}.bin", algorithms[i])).unwrap();
                let started = Instant::now();
                storage.put(&key, data.clone()).await.unwrap();
                let got = storage.get(&key).await.unwrap();
                assert_eq!(got.data.len(), data.len());
                assert_eq!(got.info.checksum.is_some(), i != 0);
                started.elapsed().as_secs_f64()
            }
        };
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); 3];
        rt.block_on(async {
            let mut one = 0f64;
            for i in 0..3 {
                one += step(i).await;
            }
            let rounds = rounds_within(budget, Duration::from_secs_f64(one));
            for round in 0..rounds {
                for j in 0..3 {
                    let i = (round + j) % 3;
                    times[i].push(step(i).await);
                }
            }
            for storage in &storages {
                for a in algorithms {
                    let _ = storage
                        .delete(&storage.key(&format!("{a}.bin")).unwrap())
                        .await;
                }
            }
        });
        for i in 1..3 {
            let mut ratios: Vec<f64> = times[i].iter().zip(&times[0]).map(|(a, n)| a / n).collect();
            let (low, high) = bootstrap_interval(&ratios);
            let rounds = ratios.len();
            rows.push(format!(
                "| {label} | {name} | {} | {} | {} | {:.3} [{low:.3} … {high:.3}] | {rounds} |",
                algorithms[i],
                human_time(median(&mut times[i].clone())),
                human_time(median(&mut times[0].clone())),
                median(&mut ratios),
            ));
        }
    }
    rows
}

/// Local whole-object reads against the file system: `std::fs::read` of the object's own
/// file (the physical limit), a raw object_store get of the local provider, and
/// `Storage::get` of an object stored without a checksum and with the default one
/// (verified as it is read). Every round times all four in rotating order; a sample
/// repeats the read until it lasts at least a millisecond. Rows: time per read (median),
/// throughput relative to `std::fs::read` (median of the per-round ratios, 95 % bootstrap
/// interval).
fn local_reads() -> Vec<String> {
    use maskstore::ChecksumAlgorithm as A;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let sizes: &[(usize, &str)] = if full_run() {
        &[
            (4 * 1024, "4 KiB"),
            (MIB as usize, "1 MiB"),
            (64 * MIB as usize, "64 MiB"),
        ]
    } else {
        &[(4 * 1024, "4 KiB"), (MIB as usize, "1 MiB")]
    };
    let budget = Duration::from_secs(if full_run() { 40 } else { 1 });
    let run = format!("get-{:08x}", rand::random::<u32>());
    let prefix: KeyPrefix = format!("mask/{run}/").parse().unwrap();
    let config = Config::local(&root).with_prefix(prefix);
    let plain = Storage::connect(&config.clone().with_checksum(A::None)).unwrap();
    let summed = Storage::connect(&config.with_checksum(A::Crc64Nvme)).unwrap();
    let raw: std::sync::Arc<dyn object_store::ObjectStore> = std::sync::Arc::new(
        maskstore::maskstore_backends::local::LocalStore::open(&root, false).unwrap(),
    );
    let names = [
        "std::fs::read",
        "raw object_store get",
        "Storage::get, no checksum",
        "Storage::get, crc64nvme verified",
    ];
    let mut rows = Vec::new();
    for &(size, label) in sizes {
        let data = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let (plain_key, summed_key) = (
            plain.key(&format!("{label}/plain.bin")).unwrap(),
            summed.key(&format!("{label}/summed.bin")).unwrap(),
        );
        let file = root.join(format!("mask/{run}/{label}/summed.bin"));
        let path =
            object_store::path::Path::parse(format!("mask/{run}/{label}/summed.bin")).unwrap();
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        rt.block_on(async {
            plain.put(&plain_key, data.clone()).await.unwrap();
            summed.put(&summed_key, data.clone()).await.unwrap();
            let read = |which: usize, n: usize| {
                let (plain, summed, raw) = (plain.clone(), summed.clone(), raw.clone());
                let (plain_key, summed_key) = (plain_key.clone(), summed_key.clone());
                let (file, path) = (file.clone(), path.clone());
                async move {
                    let started = Instant::now();
                    for _ in 0..n {
                        let len = match which {
                            0 => std::fs::read(&file).unwrap().len(),
                            1 => raw.get(&path).await.unwrap().bytes().await.unwrap().len(),
                            2 => plain.get(&plain_key).await.unwrap().data.len(),
                            _ => {
                                let got = summed.get(&summed_key).await.unwrap();
                                assert!(got.info.checksum.is_some());
                                got.data.len()
                            }
                        };
                        assert_eq!(len, size);
                    }
                    started.elapsed().as_secs_f64() / n as f64
                }
            };
            let mut slowest = 0f64;
            for which in 0..names.len() {
                slowest = slowest.max(read(which, 1).await);
            }
            let n = ((1e-3 / slowest).ceil() as usize).max(1);
            let rounds = rounds_within(
                budget,
                Duration::from_secs_f64(slowest * n as f64 * names.len() as f64),
            );
            for round in 0..rounds {
                for j in 0..names.len() {
                    let which = (round + j) % names.len();
                    times[which].push(read(which, n).await);
                }
            }
        });
        for which in 0..names.len() {
            let mut ratios: Vec<f64> = times[0]
                .iter()
                .zip(&times[which])
                .map(|(fs, x)| fs / x)
                .collect();
            let (low, high) = bootstrap_interval(&ratios);
            let per_read = median(&mut times[which].clone());
            rows.push(format!(
                "| {label} | {} | {} | {:.0} MB/s | {:.3} [{low:.3} … {high:.3}] | {} |",
                names[which],
                human_time(per_read),
                size as f64 / per_read / 1e6,
                median(&mut ratios),
                ratios.len(),
            ));
        }
    }
    rows
}

/// S3 puts (SeaweedFS) by request shape, measured in rotation: object_store as maskstore
/// configures it (SigV4 over a SHA-256 of the body, plus S3's CRC64NVME checksum header),
/// the same with `UNSIGNED-PAYLOAD` (no SHA-256 of the body: what OpenDAL and the AWS SDKs
/// send), and object_store's defaults (signed body, no checksum header). One PUT per
/// sample; rows: median time, MB/s, and the ratio of throughput against the first.
fn s3_puts() -> Vec<String> {
    use object_store::aws::{AmazonS3Builder, Checksum};
    let (Ok(endpoint), Ok(bucket), Ok(key), Ok(secret)) = (
        std::env::var("MASKSTORE_TEST_SEAWEEDFS_ENDPOINT"),
        std::env::var("MASKSTORE_TEST_SEAWEEDFS_BUCKET"),
        std::env::var("MASKSTORE_TEST_SEAWEEDFS_ACCESS_KEY"),
        std::env::var("MASKSTORE_TEST_SEAWEEDFS_SECRET_KEY"),
    ) else {
        return vec!["| (no SeaweedFS: skipped) | | | | | |".into()];
    };
    let build = |unsigned: bool, checksum: bool| {
        let mut b = AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_bucket_name(&bucket)
            .with_region("us-east-1")
            .with_access_key_id(&key)
            .with_secret_access_key(&secret)
            .with_unsigned_payload(unsigned);
        if checksum {
            b = b.with_checksum_algorithm(Checksum::CRC64NVME);
        }
        std::sync::Arc::new(b.build().unwrap()) as std::sync::Arc<dyn object_store::ObjectStore>
    };
    let stores = [
        (
            "signed body + CRC64NVME header (maskstore before)",
            build(false, true),
        ),
        ("UNSIGNED-PAYLOAD + CRC64NVME header", build(true, true)),
        (
            "signed body, no checksum header (object_store default)",
            build(false, false),
        ),
        ("UNSIGNED-PAYLOAD, no checksum header", build(true, false)),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sizes: &[(usize, &str)] = if full_run() {
        &[(MIB as usize, "1 MiB"), (64 * MIB as usize, "64 MiB")]
    } else {
        &[(64 * 1024, "64 KiB")]
    };
    let budget = Duration::from_secs(if full_run() { 60 } else { 1 });
    let run = format!("s3put-{:08x}", rand::random::<u32>());
    let config = Config::s3(&bucket, "us-east-1")
        .and_then(|c| c.with_endpoint(&endpoint))
        .unwrap()
        .with_credentials(&key, Secret::new(secret.clone()))
        .with_prefix(format!("mask/{run}/").parse().unwrap());
    let storage = Storage::connect(&config).unwrap();
    let mut rows = Vec::new();
    for &(size, label) in sizes {
        let data = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let path = object_store::path::Path::parse(format!("mask/{run}/{label}.bin")).unwrap();
        let contenders = stores.len() + 1;
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); contenders];
        rt.block_on(async {
            let put = |i: usize| {
                let (stores, path, data) = (&stores, path.clone(), data.clone());
                let storage = storage.clone();
                async move {
                    let started = Instant::now();
                    match stores.get(i) {
                        Some((_, store)) => {
                            store.put(&path, data.into()).await.unwrap();
                        }
                        None => {
                            let key = storage.key(&format!("{label}-storage.bin")).unwrap();
                            storage.put(&key, data).await.unwrap();
                        }
                    }
                    started.elapsed().as_secs_f64()
                }
            };
            let mut one = 0f64;
            for i in 0..contenders {
                one += put(i).await;
            }
            let rounds = rounds_within(budget, Duration::from_secs_f64(one));
            for round in 0..rounds {
                for j in 0..contenders {
                    let i = (round + j) % contenders;
                    times[i].push(put(i).await);
                }
            }
            let _ = stores[0].1.delete(&path).await;
            let _ = storage
                .delete(&storage.key(&format!("{label}-storage.bin")).unwrap())
                .await;
        });
        for i in 0..contenders {
            let name = stores.get(i).map_or(
                "maskstore Storage::put (now: UNSIGNED-PAYLOAD on loopback, CRC64NVME header and metadata)",
                |s| s.0,
            );
            let mut ratios: Vec<f64> = times[0].iter().zip(&times[i]).map(|(a, b)| a / b).collect();
            let (low, high) = bootstrap_interval(&ratios);
            let t = median(&mut times[i].clone());
            rows.push(format!(
                "| {label} | {} | {} | {:.1} MB/s | {:.3} [{low:.3} … {high:.3}] | {} |",
                name,
                human_time(t),
                size as f64 / t / 1e6,
                median(&mut ratios),
                ratios.len()
            ));
        }
    }
    rows
}

/// Where the checksum's cost on S3 goes (SeaweedFS, 64 MiB, raw object_store as maskstore
/// configures it on loopback: UNSIGNED-PAYLOAD): a PUT without and with the CRC64NVME header
/// (object_store's hash plus the engine's verification), the client's CRC64NVME of the
/// body alone, a GET without and with a CRC64NVME of each chunk as it arrives. Each round
/// times every contender in rotating order; rows: median time and the median per-round
/// difference against its plain counterpart.
fn checksum_costs() -> Vec<String> {
    use object_store::aws::{AmazonS3Builder, Checksum};
    use std::sync::Arc;
    let (Ok(endpoint), Ok(bucket), Ok(key), Ok(secret)) = (
        std::env::var("MASKSTORE_TEST_SEAWEEDFS_ENDPOINT"),
        std::env::var("MASKSTORE_TEST_SEAWEEDFS_BUCKET"),
        std::env::var("MASKSTORE_TEST_SEAWEEDFS_ACCESS_KEY"),
        std::env::var("MASKSTORE_TEST_SEAWEEDFS_SECRET_KEY"),
    ) else {
        return vec!["| (no SeaweedFS: skipped) | | |".into()];
    };
    let build = |checksum: bool| {
        let mut b = AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_bucket_name(&bucket)
            .with_region("us-east-1")
            .with_access_key_id(&key)
            .with_secret_access_key(&secret)
            .with_unsigned_payload(true);
        if checksum {
            b = b.with_checksum_algorithm(Checksum::CRC64NVME);
        }
        Arc::new(b.build().unwrap()) as Arc<dyn object_store::ObjectStore>
    };
    let (plain, summed) = (build(false), build(true));
    let size = if full_run() {
        64 * MIB as usize
    } else {
        64 * 1024
    };
    let data = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let run = format!("probe-{:08x}", rand::random::<u32>());
    let path = object_store::path::Path::parse(format!("mask/{run}/object.bin")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rounds = if full_run() { 25 } else { 2 };
    let prefix: KeyPrefix = format!("mask/{run}/").parse().unwrap();
    let config = Config::s3(&bucket, "us-east-1")
        .and_then(|c| c.with_endpoint(&endpoint))
        .unwrap()
        .with_credentials(&key, Secret::new(secret.clone()))
        .with_prefix(prefix);
    let storages = [
        Storage::connect(
            &config
                .clone()
                .with_checksum(maskstore::ChecksumAlgorithm::None),
        )
        .unwrap(),
        Storage::connect(&config.with_checksum(maskstore::ChecksumAlgorithm::Crc64Nvme)).unwrap(),
    ];
    let skey = storages[0].key("storage.bin").unwrap();
    // 0 put plain, 1 put + header, 2 client hash, 3 get plain, 4 get + chunk hash,
    // 5/6 Storage put none/crc, 7/8 Storage get none/crc
    let n = 9;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); n];
    rt.block_on(async {
        for round in 0..rounds {
            for j in 0..n {
                let i = (round + j) % n;
                if i == 7 || i == 8 {
                    storages[i - 7].put(&skey, data.clone()).await.unwrap();
                }
                let started = Instant::now();
                match i {
                    0 => drop(plain.put(&path, data.clone().into()).await.unwrap()),
                    1 => drop(summed.put(&path, data.clone().into()).await.unwrap()),
                    2 => drop(std::hint::black_box(maskstore::checksum_of(
                        maskstore::ChecksumAlgorithm::Crc64Nvme,
                        &data,
                    ))),
                    3 => drop(plain.get(&path).await.unwrap().bytes().await.unwrap()),
                    5 | 6 => drop(storages[i - 5].put(&skey, data.clone()).await.unwrap()),
                    7 | 8 => drop(storages[i - 7].get(&skey).await.unwrap()),
                    _ => {
                        let mut stream = plain.get(&path).await.unwrap().into_stream();
                        let mut chunks = Vec::new();
                        while let Some(chunk) = stream.next().await {
                            let chunk = chunk.unwrap();
                            std::hint::black_box(maskstore::checksum_of(
                                maskstore::ChecksumAlgorithm::Crc64Nvme,
                                &chunk,
                            ));
                            chunks.push(chunk);
                        }
                    }
                }
                times[i].push(started.elapsed().as_secs_f64());
            }
        }
        let _ = plain.delete(&path).await;
        let _ = storages[0].delete(&skey).await;
    });
    let diff = |a: usize, b: usize| {
        let mut d: Vec<f64> = times[a].iter().zip(&times[b]).map(|(x, y)| x - y).collect();
        median(&mut d) * 1e3
    };
    let names = [
        "PUT, no checksum header",
        "PUT + x-amz-checksum-crc64nvme",
        "client CRC64NVME of the body",
        "GET, whole",
        "GET + CRC64NVME per chunk",
        "Storage::put, none",
        "Storage::put, crc64nvme",
        "Storage::get, none",
        "Storage::get, crc64nvme (verified)",
    ];
    let mut rows = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let extra = match i {
            1 => format!("{:+.1} ms", diff(1, 0)),
            4 => format!("{:+.1} ms", diff(4, 3)),
            6 => format!("{:+.1} ms", diff(6, 5)),
            8 => format!("{:+.1} ms", diff(8, 7)),
            _ => String::new(),
        };
        rows.push(format!(
            "| {name} | {} | {extra} |",
            human_time(median(&mut times[i].clone()))
        ));
    }
    rows
}

/// `sync` from a local root by open file (what `sync::copy` does now: the object's file
/// opened beneath the root and stored by `write_from_open_file`, checksum verified) against
/// the stream it used before (`get_stream` into `upload_stream`, verified likewise), in
/// rotation: each round copies the whole set once per contender, each time into a
/// destination emptied first and after a `sync` (untimed), so no contender pays for
/// another's write-back. Destinations: local (fsync on), and SeaweedFS when the test
/// servers run. Rows: median time per set, throughput, and the median of the per-round
/// ratios stream / open file (above 1: the open file is faster), with its 95 % interval.
fn sync_by_file() -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sets: &[(usize, usize, &str)] = if full_run() {
        &[
            (16, 16 * MIB as usize, "16 × 16 MiB"),
            (1, 256 * MIB as usize, "1 × 256 MiB"),
        ]
    } else {
        &[(4, MIB as usize, "4 × 1 MiB")]
    };
    let rounds = if full_run() { 7 } else { 1 };
    let run = format!("sync-{:08x}", rand::random::<u32>());
    let prefix: KeyPrefix = format!("mask/{run}/").parse().unwrap();
    let from =
        Storage::connect(&Config::local(dir.path().join("from")).with_prefix(prefix.clone()))
            .unwrap();
    let mut destinations = vec![(
        "local",
        Storage::connect(&Config::local(dir.path().join("to")).with_prefix(prefix.clone()))
            .unwrap(),
    )];
    if let Some(config) = config_for("s3", "") {
        destinations.push(("s3", Storage::connect(&config.with_prefix(prefix)).unwrap()));
    }
    let mut rows = Vec::new();
    for &(count, size, label) in sets {
        let keys: Vec<_> = (0..count)
            .map(|i| from.key(&format!("{label}/{i}.bin")).unwrap())
            .collect();
        rt.block_on(async {
            for (i, key) in keys.iter().enumerate() {
                let data: Vec<u8> = (0..size).map(|j| ((i + j) % 251) as u8).collect();
                from.put(key, data).await.unwrap();
            }
        });
        for (backend, to) in &destinations {
            let copy = |by_file: bool| {
                let (from, to, keys) = (from.clone(), to.clone(), keys.clone());
                async move {
                    to.delete_many(&keys).await.unwrap();
                    let _ = Command::new("sync").status();
                    let started = Instant::now();
                    for key in &keys {
                        if by_file {
                            maskstore::sync::copy(&from, &to, key).await.unwrap();
                        } else {
                            // `sync::copy` before: the stream, with the same options.
                            let object = from.get_stream(key).await.unwrap();
                            let mut options = WriteOptions {
                                content_type: object.info.content_type.clone(),
                                metadata: object.info.metadata.clone(),
                                ..Default::default()
                            };
                            options.metadata.insert(
                                maskstore::sync::SOURCE_ETAG.to_string(),
                                object.info.etag.clone().unwrap(),
                            );
                            to.upload_stream(key, &options, object.stream)
                                .await
                                .unwrap();
                        }
                    }
                    let taken = started.elapsed().as_secs_f64();
                    assert_eq!(to.get(&keys[0]).await.unwrap().data.len(), size);
                    taken
                }
            };
            let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
            rt.block_on(async {
                for round in 0..rounds {
                    for j in 0..2 {
                        let by_file = (round + j) % 2 == 1;
                        times[by_file as usize].push(copy(by_file).await);
                    }
                }
                to.delete_many(&keys).await.unwrap();
            });
            let mut ratios: Vec<f64> = times[0].iter().zip(&times[1]).map(|(s, f)| s / f).collect();
            let (low, high) = bootstrap_interval(&ratios);
            let ratio = median(&mut ratios);
            let bytes = (count * size) as f64;
            for (which, name) in ["stream (before)", "open file (now)"].iter().enumerate() {
                let per_set = median(&mut times[which].clone());
                let against = if which == 1 {
                    format!("{ratio:.2} [{low:.2} … {high:.2}]")
                } else {
                    "1".to_string()
                };
                rows.push(format!(
                    "| {label} | local → {backend} | {name} | {} | {:.0} MB/s | {against} | {rounds} |",
                    human_time(per_set),
                    bytes / per_set / 1e6,
                ));
            }
        }
        rt.block_on(async { from.delete_many(&keys).await.unwrap() });
    }
    rows
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
    if wanted("paired") {
        println!(
            "## Storage (checksum none) against raw object_store, measured in pairs (put + get)\n"
        );
        println!(
            "| size | backend | Storage | raw object_store | Storage / raw [95 %] | rounds |\n|---|---|---|---|---|---|"
        );
        for row in paired() {
            println!("{row}");
        }
        println!();
    }
    if wanted("hash") {
        println!("## Checksum computation alone, 64 MiB in memory\n");
        println!("| algorithm | time | throughput |\n|---|---|---|");
        let data: Vec<u8> = (0..64 * MIB as usize).map(|i| (i % 251) as u8).collect();
        for algorithm in [
            maskstore::ChecksumAlgorithm::Crc64Nvme,
            maskstore::ChecksumAlgorithm::Sha256,
        ] {
            let mut best = f64::MAX;
            for _ in 0..5 {
                let started = Instant::now();
                std::hint::black_box(maskstore::checksum_of(algorithm, &data));
                best = best.min(started.elapsed().as_secs_f64());
            }
            println!(
                "| {algorithm} | {} | {:.2} GB/s |",
                human_time(best),
                data.len() as f64 / best / 1e9
            );
        }
        println!();
    }
    if wanted("reads") {
        println!("## Local whole-object reads against std::fs::read, measured in rotation\n");
        println!(
            "| size | reader | time per read | throughput | vs std::fs::read [95 %] | rounds |\n|---|---|---|---|---|---|"
        );
        for row in local_reads() {
            println!("{row}");
        }
        println!();
    }
    if wanted("s3put") {
        println!("## S3 puts by request shape (SeaweedFS), measured in rotation\n");
        println!(
            "| size | request | time per put | throughput | throughput vs the first [95 %] | rounds |\n|---|---|---|---|---|---|"
        );
        for row in s3_puts() {
            println!("{row}");
        }
        println!();
    }
    if wanted("checksum") {
        println!("## Checksum against none, put + verified get, measured in pairs (fsync on)\n");
        println!(
            "| size | backend | checksum | with it | none | with / none [95 %] | rounds |\n|---|---|---|---|---|---|---|"
        );
        for row in checksums() {
            println!("{row}");
        }
        println!();
    }
    if wanted("checksumcost") {
        println!("## Where the checksum costs on S3 (SeaweedFS), measured in rotation\n");
        println!("| step | time | against plain |\n|---|---|---|");
        for row in checksum_costs() {
            println!("{row}");
        }
        println!();
    }
    if wanted("syncfile") {
        println!("## sync from local by open file against the stream, measured in rotation\n");
        println!(
            "| objects | route | copy by | time per set | throughput | stream / open file [95 %] | rounds |\n|---|---|---|---|---|---|---|"
        );
        for row in sync_by_file() {
            println!("{row}");
        }
        println!();
    }
    if wanted("paths") {
        println!(
            "## Local provider against path-based local stores, fsync on, measured in pairs (put + get)\n"
        );
        println!(
            "| size | baseline | local provider | baseline | local / baseline [95 %] | rounds |\n|---|---|---|---|---|---|"
        );
        for row in local_vs_paths() {
            println!("{row}");
        }
        println!();
    }
    if wanted("streaming") {
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
    }
    if wanted("gateway") {
        println!(
            "\n## Gateway vs direct Storage, 1 MiB objects, local backend (objects per second)\n"
        );
        println!(
            "| method | clients | direct | gateway | gateway/direct | plain HTTP | direct and plain added | gateway/added |\n|---|---|---|---|---|---|---|---|"
        );
        for row in gateway() {
            println!("{row}");
        }
    }
    if wanted("cli") {
        println!(
            "\n## CLI vs cp, {} MiB on local disk (median over rounds [slowest … fastest])\n",
            stream_bytes() / MIB
        );
        println!("| command | throughput | vs cp |\n|---|---|---|");
        for row in cli_vs_cp() {
            println!("{row}");
        }
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
