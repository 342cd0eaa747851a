//! `reads`: local whole-object reads against `std::fs::read`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use maskstore::{Config, Storage};
use maskstore_core::KeyPrefix;
use object_store::ObjectStoreExt;

use crate::common::full_run;
use crate::common::stats::{bootstrap_interval, human_time, median};
use crate::{MIB, SIZES, rounds_within};

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
        SIZES
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

/// Prints the `reads` section.
pub fn print() {
    println!("## Local whole-object reads against std::fs::read, measured in rotation\n");
    println!(
        "| size | reader | time per read | throughput | vs std::fs::read [95 %] | rounds |\n|---|---|---|---|---|---|"
    );
    for row in local_reads() {
        println!("{row}");
    }
    println!();
}
