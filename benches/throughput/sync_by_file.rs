//! `syncfile`: `sync` from local by open file against the stream.

use std::process::Command;
use std::time::Instant;

use maskstore::{Config, Storage, WriteOptions};
use maskstore_core::KeyPrefix;

use crate::common::full_run;
use crate::common::stats::{bootstrap_interval, human_time, median};
use crate::{MIB, config_for};

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

/// Prints the `syncfile` section.
pub fn print() {
    println!("## sync from local by open file against the stream, measured in rotation\n");
    println!(
        "| objects | route | copy by | time per set | throughput | stream / open file [95 %] | rounds |\n|---|---|---|---|---|---|---|"
    );
    for row in sync_by_file() {
        println!("{row}");
    }
    println!();
}
