//! `streaming`: 1 GiB up and down through `Storage`, each phase in a fresh process.

use std::process::Command;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use maskstore::{Storage, WriteOptions};

use crate::common::full_run;
use crate::{MIB, config_for, stream_bytes};

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

/// One streaming phase in this (fresh) process; prints `bytes secs idle_rss peak_rss`.
pub fn child(phase: &str, backend: &str, root: &str) {
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

/// Prints the `streaming` section.
pub fn print(root: &str) {
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

/// Removes the object the `s3` rows stream, when the test servers run.
pub fn remove_s3_volume(root: &str) {
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
