//! `s3put`: S3 puts by request shape.

use std::time::{Duration, Instant};

use bytes::Bytes;
use maskstore::Storage;
use object_store::ObjectStoreExt;

use crate::common::stats::{bootstrap_interval, human_time, median};
use crate::common::{SeaweedFs, full_run};
use crate::{MIB, rounds_within};

/// S3 puts (SeaweedFS) by request shape, measured in rotation: object_store as maskstore
/// configures it (SigV4 over a SHA-256 of the body, plus S3's CRC64NVME checksum header),
/// the same with `UNSIGNED-PAYLOAD` (no SHA-256 of the body: what OpenDAL and the AWS SDKs
/// send), and object_store's defaults (signed body, no checksum header). One PUT per
/// sample; rows: median time, MB/s, and the ratio of throughput against the first.
fn s3_puts() -> Vec<String> {
    use object_store::aws::Checksum;
    let Some(server) = SeaweedFs::from_env() else {
        return vec!["| (no SeaweedFS: skipped) | | | | | |".into()];
    };
    let build = |unsigned: bool, checksum: bool| {
        let mut b = server.builder().with_unsigned_payload(unsigned);
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
    let config = server
        .config()
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

/// Prints the `s3put` section.
pub fn print() {
    println!("## S3 puts by request shape (SeaweedFS), measured in rotation\n");
    println!(
        "| size | request | time per put | throughput | throughput vs the first [95 %] | rounds |\n|---|---|---|---|---|---|"
    );
    for row in s3_puts() {
        println!("{row}");
    }
    println!();
}
