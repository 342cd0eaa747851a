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
mod paired;
mod s3_puts;
mod streaming;
mod sync_by_file;

use std::time::Duration;

use maskstore::Config;
use maskstore_core::KeyPrefix;

use common::SeaweedFs;
use common::full_run;

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        streaming::child(&args[i + 1], &args[i + 2], &args[i + 3]);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let root = root.to_str().unwrap();
    if wanted("paired") {
        paired::print();
    }
    if wanted("hash") {
        checksums::print_hash();
    }
    if wanted("reads") {
        local_reads::print();
    }
    if wanted("s3put") {
        s3_puts::print();
    }
    if wanted("checksum") {
        checksums::print_checksums();
    }
    if wanted("checksumcost") {
        checksums::print_costs();
    }
    if wanted("syncfile") {
        sync_by_file::print();
    }
    if wanted("paths") {
        local_paths::print();
    }
    if wanted("streaming") {
        streaming::print(root);
    }
    if wanted("gateway") {
        gateway::print();
    }
    if wanted("cli") {
        cli_vs_cp::print();
    }
    streaming::remove_s3_volume(root);
}
