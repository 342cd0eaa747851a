//! S3 writes of maskstore against OpenDAL, and the shape of maskstore's multipart uploads,
//! against SeaweedFS (BENCHMARKS.md, issue 18). A package outside the workspace, so that
//! CI never builds OpenDAL. From the repository's root:
//!
//! ```sh
//! scripts/test-servers start && set -a && . .test-servers/env && set +a
//! cd benches/peers && cargo run --release -- put           # 1 MiB and 64 MiB PUTs
//! cargo run --release -- multipart                         # part size × parts in flight
//! cargo run --release -- multipart --latency-ms 25         # the same behind 25 ms per answer
//! ```
//!
//! Options: `--rounds N` (rounds at the small size; the large one gets a fifth, at least
//! 20, for `put`; `multipart` runs N rounds of each size), `--sizes 64,256` (MiB, for
//! `multipart`), `--record FILE` (`put` of 1 MiB only: every byte the clients send, through
//! a recording proxy, for counting requests and reading their headers). Every round times every
//! contender once, in an order that rotates from round to round, so that the load of the
//! machine hits all alike; rows give the median time and the median of the per-round
//! throughput ratios against the baseline, with its 95 % bootstrap interval.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use maskstore_backends::{Storage, UploadShape, WriteOptions};
use maskstore_core::{ChecksumAlgorithm, Config, Secret};
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../../common/stats.rs"]
mod stats;
use stats::{bootstrap_interval, human_time, median};

const MIB: usize = 1024 * 1024;

/// The SeaweedFS of `scripts/test-servers`.
struct Server {
    endpoint: String,
    bucket: String,
    key: String,
    secret: String,
}

impl Server {
    fn from_env() -> Server {
        let var = |n: &str| {
            let name = format!("MASKSTORE_TEST_SEAWEEDFS_{n}");
            std::env::var(&name).unwrap_or_else(|_| {
                eprintln!(
                    "{name} is not set: run `scripts/test-servers start`, then \
                     `set -a; . .test-servers/env; set +a` in the repository's root"
                );
                std::process::exit(2)
            })
        };
        Server {
            endpoint: var("ENDPOINT"),
            bucket: var("BUCKET"),
            key: var("ACCESS_KEY"),
            secret: var("SECRET_KEY"),
        }
    }

    fn with_endpoint(&self, endpoint: String) -> Server {
        Server {
            endpoint,
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            secret: self.secret.clone(),
        }
    }

    /// maskstore's `Storage` as an operator's config builds it.
    fn storage(&self, prefix: &str, checksum: ChecksumAlgorithm) -> Storage {
        let config = Config::s3(&self.bucket, "us-east-1")
            .and_then(|c| c.with_endpoint(&self.endpoint))
            .unwrap()
            .with_credentials(&self.key, Secret::new(self.secret.clone()))
            .with_prefix(prefix.parse().unwrap())
            .with_checksum(checksum);
        Storage::connect(&config).unwrap()
    }

    /// object_store's S3 client configured as maskstore configures it for this endpoint
    /// (crates/backends/src/s3/builder.rs): loopback, so `UNSIGNED-PAYLOAD`; conditional
    /// puts by etag; no bulk delete; S3's CRC64NVME header when `crc64nvme`.
    fn raw(&self, crc64nvme: bool) -> Arc<dyn ObjectStore> {
        use object_store::aws::{AmazonS3Builder, Checksum, S3ConditionalPut};
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&self.bucket)
            .with_region("us-east-1")
            .with_access_key_id(&self.key)
            .with_secret_access_key(&self.secret)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_disable_bulk_delete(true)
            .with_unsigned_payload(true);
        if crc64nvme {
            builder = builder.with_checksum_algorithm(Checksum::CRC64NVME);
        }
        Arc::new(builder.build().unwrap())
    }

    /// OpenDAL's S3 service with its defaults (path-style, as SeaweedFS wants).
    fn opendal(&self) -> opendal::Operator {
        let builder = opendal::services::S3::default()
            .bucket(&self.bucket)
            .endpoint(&self.endpoint)
            .region("us-east-1")
            .access_key_id(&self.key)
            .secret_access_key(&self.secret);
        opendal::Operator::new(builder).unwrap()
    }
}

/// The value of `--name`, if given.
fn option(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn numeric_option(name: &str, default: usize) -> usize {
    option(name).map_or(default, |v| {
        v.parse().unwrap_or_else(|_| {
            eprintln!("{name} takes a whole number, not {v:?}");
            std::process::exit(2)
        })
    })
}

fn main() {
    let section = std::env::args().nth(1).unwrap_or_default();
    let server = Server::from_env();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run = format!("peers-{:08x}", rand::random::<u32>());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average before: {}", load.trim());
    let rows = match section.as_str() {
        "put" => rt.block_on(puts(&server, &run)),
        "multipart" => rt.block_on(multipart(&server, &run)),
        _ => {
            eprintln!("name a section: put or multipart (see the crate's documentation)");
            std::process::exit(2)
        }
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average after: {}", load.trim());
    for row in rows {
        println!("{row}");
    }
}

/// One PUT per sample of 1 MiB and 64 MiB, by each contender; the baseline is OpenDAL.
async fn puts(server: &Server, run: &str) -> Vec<String> {
    let recorder = match option("--record") {
        Some(file) => Some(recording_proxy(&server.endpoint, file).await),
        None => None,
    };
    let server = match &recorder {
        Some(addr) => server.with_endpoint(format!("http://{addr}")),
        None => server.with_endpoint(server.endpoint.clone()),
    };
    let prefix = format!("mask/{run}/");
    let storage = server.storage(&prefix, ChecksumAlgorithm::Crc64Nvme);
    let plain = server.storage(&prefix, ChecksumAlgorithm::None);
    let raw = server.raw(true);
    let raw_plain = server.raw(false);
    let opendal = server.opendal();
    let names = [
        "OpenDAL 0.59 `write` (defaults)",
        "maskstore `Storage::put` (default: crc64nvme)",
        "maskstore `Storage::put`, checksum = none",
        "raw object_store put as maskstore configures it (CRC64NVME header)",
        "raw object_store put as maskstore configures it, checksum none",
    ];
    let small_rounds = numeric_option("--rounds", 200);
    let mut rows = Vec::new();
    let mut sizes = vec![(MIB, "1 MiB", small_rounds)];
    // A recording holds every byte sent: 1 MiB puts only.
    if recorder.is_none() {
        sizes.push((64 * MIB, "64 MiB", (small_rounds / 5).max(20)));
    }
    for (size, label, rounds) in sizes {
        let data = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let put = |i: usize| {
            let data = data.clone();
            let (storage, plain, raw, raw_plain, opendal) =
                (&storage, &plain, &raw, &raw_plain, &opendal);
            let name = format!("{label}-{i}.bin");
            let path = object_store::path::Path::parse(format!("{prefix}{name}")).unwrap();
            async move {
                let started = Instant::now();
                match i {
                    0 => {
                        opendal.write(path.as_ref(), data).await.unwrap();
                    }
                    1 => {
                        storage
                            .put(&storage.key(&name).unwrap(), data)
                            .await
                            .unwrap();
                    }
                    2 => {
                        plain.put(&plain.key(&name).unwrap(), data).await.unwrap();
                    }
                    3 => {
                        raw.put(&path, data.into()).await.unwrap();
                    }
                    _ => {
                        raw_plain.put(&path, data.into()).await.unwrap();
                    }
                }
                let took = started.elapsed().as_secs_f64();
                // Untimed: SeaweedFS keeps the bytes of overwritten objects until a vacuum.
                raw_plain.delete(&path).await.unwrap();
                took
            }
        };
        // Warm-up: connections and credentials.
        for i in 0..names.len() {
            put(i).await;
        }
        let times = rotate(names.len(), rounds, put).await;
        rows.extend(table_rows(label, size, &names, &times, 0));
    }
    rows
}

/// Streamed uploads (`Storage::upload_stream`, 1 MiB chunks, default checksum) of each
/// size, with every part size × parts in flight; the baseline is the current default.
async fn multipart(server: &Server, run: &str) -> Vec<String> {
    let latency = numeric_option("--latency-ms", 0);
    let server = if latency > 0 {
        let addr = delaying_proxy(&server.endpoint, Duration::from_millis(latency as u64)).await;
        server.with_endpoint(format!("http://{addr}"))
    } else {
        server.with_endpoint(server.endpoint.clone())
    };
    let storage = server.storage(&format!("mask/{run}/"), ChecksumAlgorithm::Crc64Nvme);
    let mut shapes = Vec::new();
    for part in [5, 8, 16, 32] {
        for in_flight in [2, 4, 8] {
            shapes.push((part, in_flight));
        }
    }
    let baseline = shapes
        .iter()
        .position(|&s| {
            s == (
                maskstore_backends::UPLOAD_PART_SIZE / MIB,
                maskstore_backends::UPLOAD_MAX_IN_FLIGHT,
            )
        })
        .unwrap_or(0);
    let names: Vec<String> = shapes
        .iter()
        .map(|(part, in_flight)| {
            format!("{part} MiB × {in_flight} | {} MiB", part * (in_flight + 2))
        })
        .collect();
    let options: Vec<WriteOptions> = shapes
        .iter()
        .map(|&(part, in_flight)| {
            WriteOptions::default().with_upload_shape(UploadShape {
                part_size: Some(part * MIB),
                max_in_flight: Some(in_flight),
            })
        })
        .collect();
    let rounds = numeric_option("--rounds", 10);
    let sizes: Vec<usize> = option("--sizes")
        .unwrap_or_else(|| "64,256".to_string())
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .expect("--sizes: MiB, comma-separated")
        })
        .collect();
    let mut rows = Vec::new();
    for size_mib in sizes {
        let size = size_mib * MIB;
        let label = format!("{size_mib} MiB");
        let data = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let upload = |i: usize| {
            let storage = storage.clone();
            let options = options[i].clone();
            let data = data.clone();
            let key = storage.key(&format!("{size_mib}-{i}.bin")).unwrap();
            async move {
                let chunks = (0..data.len())
                    .step_by(MIB)
                    .map(|at| Ok::<_, std::io::Error>(data.slice(at..(at + MIB).min(data.len()))))
                    .collect::<Vec<_>>();
                let started = Instant::now();
                storage
                    .upload_stream(&key, &options, futures::stream::iter(chunks))
                    .await
                    .unwrap();
                let took = started.elapsed().as_secs_f64();
                storage.delete(&key).await.unwrap();
                took
            }
        };
        upload(baseline).await;
        let times = rotate(options.len(), rounds, upload).await;
        rows.extend(table_rows(&label, size, &names, &times, baseline));
    }
    rows
}

/// Times `contenders` operations per round for `rounds` rounds, starting each round one
/// contender further, so that no contender always runs first or after the same one.
async fn rotate<F, Fut>(contenders: usize, rounds: usize, op: F) -> Vec<Vec<f64>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let mut times = vec![Vec::with_capacity(rounds); contenders];
    for round in 0..rounds {
        for j in 0..contenders {
            let i = (round + j) % contenders;
            times[i].push(op(i).await);
        }
    }
    times
}

/// Markdown rows: contender, median time, MB/s, throughput ratio against `baseline` per
/// round (median [95 % bootstrap]), rounds.
fn table_rows<S: AsRef<str>>(
    label: &str,
    size: usize,
    names: &[S],
    times: &[Vec<f64>],
    baseline: usize,
) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut ratios: Vec<f64> = times[baseline]
                .iter()
                .zip(&times[i])
                .map(|(base, t)| base / t)
                .collect();
            let (low, high) = bootstrap_interval(&ratios);
            let t = median(&mut times[i].clone());
            format!(
                "| {label} | {} | {} | {:.1} MB/s | {:.3} [{low:.3} … {high:.3}] | {} |",
                name.as_ref(),
                human_time(t),
                size as f64 / t / 1e6,
                median(&mut ratios),
                ratios.len()
            )
        })
        .collect()
}

/// The `host:port` of an `http://` endpoint.
fn target_of(endpoint: &str) -> SocketAddr {
    let hostport = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .replace("localhost", "127.0.0.1");
    hostport.parse().expect("the endpoint is http://IP:port")
}

/// A TCP proxy on loopback that forwards both ways and holds every byte of the server's
/// answers for `delay` before passing it on: each request then waits `delay` longer for
/// its answer, as against a distant S3 (its 20 to 50 ms per request), while the upload's
/// bytes flow at loopback speed.
async fn delaying_proxy(endpoint: &str, delay: Duration) -> SocketAddr {
    let target = target_of(endpoint);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (mut client_in, mut client_out) = client.into_split();
                let (mut server_in, mut server_out) = server.into_split();
                let up = async move {
                    let _ = tokio::io::copy(&mut client_in, &mut server_out).await;
                    let _ = server_out.shutdown().await;
                };
                let (held, mut due) =
                    tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
                let read = async move {
                    let mut buf = vec![0u8; 256 * 1024];
                    while let Ok(n) = server_in.read(&mut buf).await {
                        if n == 0
                            || held
                                .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                                .is_err()
                        {
                            break;
                        }
                    }
                };
                let write = async move {
                    while let Some((at, bytes)) = due.recv().await {
                        tokio::time::sleep_until(at).await;
                        if client_out.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                    let _ = client_out.shutdown().await;
                };
                tokio::join!(up, read, write);
            });
        }
    });
    addr
}

/// A TCP proxy on loopback that appends every byte the clients send to `file` (requests
/// and bodies, connection after connection as they arrive) and prints, at the end of the
/// process, nothing: read the file with `grep -a`. Answers pass unchanged.
async fn recording_proxy(endpoint: &str, file: String) -> SocketAddr {
    let target = target_of(endpoint);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(tokio::sync::Mutex::new(
        tokio::fs::File::create(&file).await.unwrap(),
    ));
    tokio::spawn(async move {
        let mut connection = 0u32;
        while let Ok((client, _)) = listener.accept().await {
            connection += 1;
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (mut client_in, mut client_out) = client.into_split();
                let (mut server_in, mut server_out) = server.into_split();
                let up = async move {
                    let mut buf = vec![0u8; 256 * 1024];
                    let (mut reads, mut bytes) = (0u64, 0u64);
                    while let Ok(n) = client_in.read(&mut buf).await {
                        if n == 0 || server_out.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        reads += 1;
                        bytes += n as u64;
                        log.lock().await.write_all(&buf[..n]).await.unwrap();
                    }
                    let line =
                        format!("\n#connection {connection}: {reads} reads, {bytes} bytes\n");
                    log.lock().await.write_all(line.as_bytes()).await.unwrap();
                    let _ = server_out.shutdown().await;
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut server_in, &mut client_out).await;
                    let _ = client_out.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    addr
}
