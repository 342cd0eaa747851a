//! `hash`, `checksum` and `checksumcost`: what the integrity checksum costs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use maskstore::{Config, Storage};
use maskstore_core::KeyPrefix;
use object_store::ObjectStoreExt;

use crate::common::stats::{bootstrap_interval, human_time, median};
use crate::common::{SeaweedFs, full_run};
use crate::{MIB, rounds_within};

/// The cost of the integrity checksum: a put + whole (verified) get through `Storage` with
/// each algorithm against the same with `none`, measured in pairs as in `paired.rs` (one
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
    if let Some(server) = SeaweedFs::from_env() {
        configs.push(("s3 (SeaweedFS)", server.config()));
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

/// Where the checksum's cost on S3 goes (SeaweedFS, 64 MiB, raw object_store as maskstore
/// configures it on loopback: UNSIGNED-PAYLOAD): a PUT without and with the CRC64NVME header
/// (object_store's hash plus the engine's verification), the client's CRC64NVME of the
/// body alone, a GET without and with a CRC64NVME of each chunk as it arrives. Each round
/// times every contender in rotating order; rows: median time and the median per-round
/// difference against its plain counterpart.
fn checksum_costs() -> Vec<String> {
    use object_store::aws::Checksum;
    use std::sync::Arc;
    let Some(server) = SeaweedFs::from_env() else {
        return vec!["| (no SeaweedFS: skipped) | | |".into()];
    };
    let build = |checksum: bool| {
        let mut b = server.builder().with_unsigned_payload(true);
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
    let config = server.config().with_prefix(prefix);
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

/// Prints the `hash` section.
pub fn print_hash() {
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

/// Prints the `checksum` section.
pub fn print_checksums() {
    println!("## Checksum against none, put + verified get, measured in pairs (fsync on)\n");
    println!(
        "| size | backend | checksum | with it | none | with / none [95 %] | rounds |\n|---|---|---|---|---|---|---|"
    );
    for row in checksums() {
        println!("{row}");
    }
    println!();
}

/// Prints the `checksumcost` section.
pub fn print_costs() {
    println!("## Where the checksum costs on S3 (SeaweedFS), measured in rotation\n");
    println!("| step | time | against plain |\n|---|---|---|");
    for row in checksum_costs() {
        println!("{row}");
    }
    println!();
}
