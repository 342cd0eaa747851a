//! Whole-system measurements that criterion is not made for, printed as Markdown tables,
//! one section per file of this folder:
//!
//! | section | file | what |
//! |---|---|---|
//! | `paired` | `paired.rs` | `Storage` against raw object_store on the same store, in pairs |
//! | `hash` | `checksums.rs` | checksum computation alone, 64 MiB in memory |
//! | `reads` | `local_reads.rs` | local whole-object reads against `std::fs::read` |
//! | `s3put` | `s3_puts.rs` | S3 puts by request shape (SeaweedFS) |
//! | `checksum` | `checksums.rs` | a checksum against none, put + verified get, in pairs |
//! | `checksumcost` | `checksums.rs` | where the checksum costs on S3 (SeaweedFS) |
//! | `syncfile` | `sync_by_file.rs` | `sync` from local by open file against the stream |
//! | `paths` | `local_paths.rs` | the local provider against object_store's `LocalFileSystem` |
//! | `streaming` | `streaming.rs` | 1 GiB up and down through `Storage`, peak RSS over idle |
//! | `gateway` | `gateway.rs` | the gateway against direct `Storage`, 1 and 32 clients |
//! | `cli` | `cli_vs_cp.rs` | the CLI's `put`/`get` of 1 GiB against `cp` |
//! | `overhead` | `overhead.rs` | memory and local calls against object_store's own stores |
//!
//! `cargo bench --bench throughput [-- SECTION...]` runs the named sections, or all of
//! them (S3 rows need the test servers: `scripts/bench`). Under `cargo test` it runs with
//! tiny sizes as a smoke test.
//!
//! Every comparison is made within one run, in pairs or in rotation, so that drift of the
//! machine hits both sides alike. A comparison with an older commit of maskstore is not
//! kept in this tree as a copy of the old code: `scripts/bench --against REV` runs the
//! same sections at REV and here, one after the other, and what compares across the two
//! runs are the within-run ratios (for example `paired`'s Storage / raw), not times.

#![allow(missing_docs)]

#[path = "../common/mod.rs"]
mod common;

mod checksums;
mod cli_vs_cp;
mod gateway;
mod local_paths;
mod local_reads;
mod overhead;
mod paired;
mod s3_puts;
mod streaming;
mod sync_by_file;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use maskstore::Config;
use maskstore_core::KeyPrefix;
use object_store::{ObjectStore, ObjectStoreExt};

use common::stats::{bootstrap_interval, human_time, median};
use common::{SeaweedFs, full_run};

const MIB: u64 = 1024 * 1024;

/// The object sizes of the paired comparisons in a full run.
const SIZES: &[(usize, &str)] = &[
    (4 * 1024, "4 KiB"),
    (MIB as usize, "1 MiB"),
    (64 * MIB as usize, "64 MiB"),
];

/// Sections named on the command line (`cargo bench --bench throughput -- gateway`), or
/// every section when none is named.
fn wanted(section: &str) -> bool {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    named.is_empty() || named.iter().any(|n| n == section)
}

/// The size of the `streaming` and `cli` transfers.
fn stream_bytes() -> u64 {
    if full_run() { 1024 * MIB } else { 8 * MIB }
}

/// `local` under `root`, or `s3` (SeaweedFS, under `mask/bench-stream/`) when the test
/// servers run.
fn config_for(backend: &str, root: &str) -> Option<Config> {
    match backend {
        "local" => Some(Config::local(root)),
        "s3" => Some(
            SeaweedFs::from_env()?
                .config()
                .with_prefix(KeyPrefix::parse("mask/bench-stream/").unwrap()),
        ),
        _ => None,
    }
}

/// Rounds of one paired comparison: as many as fit in `budget`, between 20 and 400.
fn rounds_within(budget: Duration, one_round: Duration) -> usize {
    let fit = budget.as_secs_f64() / one_round.as_secs_f64().max(1e-9);
    (fit as usize).clamp(20, 400)
}

/// Seconds per put + whole get of `data` at `path` through raw object_store, over `times`
/// repeats.
async fn raw_put_get(
    store: &Arc<dyn ObjectStore>,
    path: &object_store::path::Path,
    data: &Bytes,
    times: usize,
) -> f64 {
    let started = Instant::now();
    for _ in 0..times {
        store.put(path, data.clone().into()).await.unwrap();
        let got = store.get(path).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.len(), data.len());
    }
    started.elapsed().as_secs_f64() / times as f64
}

/// The times and per-round ratios of a comparison measured in pairs.
struct Pairs {
    a: Vec<f64>,
    b: Vec<f64>,
    /// a / b, round by round.
    ratios: Vec<f64>,
}

impl Pairs {
    /// Markdown cells: median of a, median of b, median of the ratios with its 95 %
    /// bootstrap interval, and the number of rounds.
    fn cells(&mut self) -> String {
        let (low, high) = bootstrap_interval(&self.ratios);
        let rounds = self.ratios.len();
        format!(
            "{} | {} | {:.3} [{low:.3} … {high:.3}] | {rounds} |",
            human_time(median(&mut self.a)),
            human_time(median(&mut self.b)),
            median(&mut self.ratios),
        )
    }
}

/// `a` against `b`, each a function of a repeat count returning seconds per repeat,
/// measured in pairs: both are warmed up, a sample repeats until it lasts at least 1 ms
/// (so the clock's resolution is not what is measured), and every round times one sample
/// of each, in alternating order, so drift hits both sides alike; as many rounds as fit in
/// `budget`.
async fn in_pairs<A, B, FA, FB>(budget: Duration, a: FA, b: FB) -> Pairs
where
    FA: Fn(usize) -> A,
    FB: Fn(usize) -> B,
    A: Future<Output = f64>,
    B: Future<Output = f64>,
{
    let one = b(1).await.max(a(1).await);
    let times = ((1e-3 / one).ceil() as usize).max(1);
    let rounds = rounds_within(budget, Duration::from_secs_f64(2.0 * one * times as f64));
    let mut pairs = Pairs {
        a: Vec::new(),
        b: Vec::new(),
        ratios: Vec::new(),
    };
    for round in 0..rounds {
        let (x, y) = if round % 2 == 0 {
            let x = a(times).await;
            (x, b(times).await)
        } else {
            let y = b(times).await;
            (a(times).await, y)
        };
        pairs.a.push(x);
        pairs.b.push(y);
        pairs.ratios.push(x / y);
    }
    pairs
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        streaming::child(&args[i + 1], &args[i + 2], &args[i + 3]);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let root = root.to_str().unwrap();
    let streaming = || streaming::print(root);
    let sections: [(&str, &dyn Fn()); 12] = [
        ("paired", &paired::print),
        ("hash", &checksums::print_hash),
        ("reads", &local_reads::print),
        ("s3put", &s3_puts::print),
        ("checksum", &checksums::print_checksums),
        ("checksumcost", &checksums::print_costs),
        ("syncfile", &sync_by_file::print),
        ("paths", &local_paths::print),
        ("streaming", &streaming),
        ("gateway", &gateway::print),
        ("cli", &cli_vs_cp::print),
        ("overhead", &overhead::print),
    ];
    for (name, print) in sections {
        if wanted(name) {
            print();
        }
    }
    streaming::remove_s3_volume(root);
}
