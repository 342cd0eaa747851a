//! `paired`: `Storage` against raw object_store on the same store, in pairs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use maskstore::Storage;
use object_store::ObjectStoreExt;

use crate::common::{full_run, raw_backends};
use crate::{SIZES, in_pairs, raw_put_get};

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
        SIZES
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
            let through_raw = |times: usize| raw_put_get(&store, &path, &data, times);
            let mut pairs = rt.block_on(in_pairs(budget, through_storage, through_raw));
            rt.block_on(async {
                let _ = storage.delete(&key).await;
                let _ = store.delete(&path).await;
            });
            rows.push(format!("| {label} | {name} | {}", pairs.cells()));
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
