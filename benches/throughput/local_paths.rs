//! `paths`: the local provider against a path-based local store, in pairs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::ObjectStoreExt;

use crate::common::full_run;
use crate::common::stats::{bootstrap_interval, human_time, median};
use crate::{MIB, rounds_within};

/// maskstore's local provider against object_store's `LocalFileSystem` with fsync, a
/// path-based store doing the same durable writes (temporary file, fsync, rename, folder
/// fsync), measured in pairs as in `paired.rs`, both called as raw object_store: what the
/// handle-based resolution, the per-key locks and the etag's generation cost against
/// resolving paths by name.
///
/// Until commit ab3fd81 a second baseline was the local provider as it was before paths
/// were resolved beneath the root handle (commit aac9c58), kept as a verbatim copy under
/// `benches/before_local/`; its figures are in BENCHMARKS.md ("The local provider resolved
/// beneath its root"). That copy is gone: a newcomer found two definitions of every local
/// function. `scripts/bench --against ab3fd81 paths` measures that pair again (the provider
/// as of ab3fd81 against the copy) beside this section as it is now.
fn local_vs_paths() -> Vec<String> {
    use maskstore_backends::local::LocalStore;
    use object_store::ObjectStore;
    use object_store::local::LocalFileSystem;
    use std::sync::Arc;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sizes: &[(usize, &str)] = if full_run() {
        &[
            (4 * 1024, "4 KiB"),
            (MIB as usize, "1 MiB"),
            (64 * MIB as usize, "64 MiB"),
        ]
    } else {
        &[(4 * 1024, "4 KiB")]
    };
    let budget = Duration::from_secs(if full_run() { 40 } else { 1 });
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("local"), true).unwrap());
    std::fs::create_dir_all(dir.path().join("paths")).unwrap();
    let baselines: Vec<(&str, Arc<dyn ObjectStore>)> = vec![(
        "object_store LocalFileSystem",
        Arc::new(
            LocalFileSystem::new_with_prefix(dir.path().join("paths"))
                .unwrap()
                .with_fsync(true),
        ),
    )];
    let mut rows = Vec::new();
    for &(size, label) in sizes {
        let data = Bytes::from(vec![7u8; size]);
        let path = object_store::path::Path::parse(format!("mask/{label}/object.bin")).unwrap();
        let put_get = |store: &Arc<dyn ObjectStore>, times: usize| {
            let (store, path, data) = (Arc::clone(store), path.clone(), data.clone());
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
        for (baseline_name, baseline) in &baselines {
            let (mut local_times, mut base_times, mut ratios) =
                (Vec::new(), Vec::new(), Vec::new());
            rt.block_on(async {
                let one = put_get(baseline, 1).await.max(put_get(&local, 1).await);
                let times = ((1e-3 / one).ceil() as usize).max(1);
                let rounds =
                    rounds_within(budget, Duration::from_secs_f64(2.0 * one * times as f64));
                for round in 0..rounds {
                    let (l, b) = if round % 2 == 0 {
                        let l = put_get(&local, times).await;
                        (l, put_get(baseline, times).await)
                    } else {
                        let b = put_get(baseline, times).await;
                        (put_get(&local, times).await, b)
                    };
                    local_times.push(l);
                    base_times.push(b);
                    ratios.push(l / b);
                }
            });
            let (low, high) = bootstrap_interval(&ratios);
            let rounds = ratios.len();
            rows.push(format!(
                "| {label} | {baseline_name} | {} | {} | {:.3} [{low:.3} … {high:.3}] | {rounds} |",
                human_time(median(&mut local_times)),
                human_time(median(&mut base_times)),
                median(&mut ratios),
            ));
        }
    }
    rows
}

/// Prints the `paths` section.
pub fn print() {
    println!(
        "## Local provider against a path-based local store, fsync on, measured in pairs (put + get)\n"
    );
    println!(
        "| size | baseline | local provider | baseline | local / baseline [95 %] | rounds |\n|---|---|---|---|---|---|"
    );
    for row in local_vs_paths() {
        println!("{row}");
    }
    println!();
}
