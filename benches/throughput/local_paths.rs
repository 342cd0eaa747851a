//! `paths`: the local provider against a path-based local store, in pairs.

use std::time::Duration;

use bytes::Bytes;

use crate::common::full_run;
use crate::{SIZES, in_pairs, raw_put_get};

/// maskstore's local provider against object_store's `LocalFileSystem` with fsync, a
/// path-based store doing the same durable writes (temporary file, fsync, rename, folder
/// fsync), measured in pairs (`in_pairs`), both called as raw object_store: what the
/// handle-based resolution, the per-key locks and the etag's generation cost against
/// resolving paths by name.
///
/// Until commit ab3fd81 a second baseline was the local provider as it was before paths
/// were resolved beneath the root handle (commit aac9c58), kept as a verbatim copy under
/// `benches/before_local/`; its figures are in docs/benchmarks-history.md ("The local provider resolved
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
        SIZES
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
        for (baseline_name, baseline) in &baselines {
            let mut pairs = rt.block_on(in_pairs(
                budget,
                |times| raw_put_get(&local, &path, &data, times),
                |times| raw_put_get(baseline, &path, &data, times),
            ));
            rows.push(format!("| {label} | {baseline_name} | {}", pairs.cells()));
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
