//! `paired`: `Storage` against raw object_store on the same store, in pairs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use maskstore::Storage;
use object_store::ObjectStoreExt;

use crate::common::stats::{bootstrap_interval, human_time, median};
use crate::common::{full_run, raw_backends};
use crate::{MIB, rounds_within};

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

/// Prints the `paired` section.
pub fn print() {
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
