//! `overhead`: what a call through maskstore costs against object_store's own stores
//! (issue 30), every contender of a row timed in the same rounds, in rotating order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use maskstore::{Config, Storage};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::common::full_run;
use crate::common::stats::{bootstrap_interval, human_time, median};
use crate::{MIB, rounds_within};

/// One contender: given a repeat count, the seconds one repeat took.
type Timed<'a> = Box<dyn Fn(usize) -> LocalBoxFuture<'a, f64> + 'a>;

/// A contender repeating `op`.
fn timed<'a, F, Fut>(op: F) -> Timed<'a>
where
    F: Fn() -> Fut + Clone + 'a,
    Fut: Future<Output = ()> + 'a,
{
    Box::new(move |n| {
        let op = op.clone();
        Box::pin(async move {
            let started = Instant::now();
            for _ in 0..n {
                op().await;
            }
            started.elapsed().as_secs_f64() / n as f64
        })
    })
}

/// Times every contender once per round, in an order that rotates from round to round,
/// as many rounds as fit in `budget`; each sample repeats its operation until it lasts
/// about a millisecond. Returns the seconds per operation, per contender, per round.
async fn in_rotation(budget: Duration, contenders: &[Timed<'_>]) -> Vec<Vec<f64>> {
    // Warmed up and calibrated on a few hundred repeats (one is below the clock's grain).
    let mut per_op = Vec::new();
    for timed in contenders {
        timed(8).await;
        per_op.push(timed(200).await.max(1e-9));
    }
    let repeats: Vec<usize> = per_op
        .iter()
        .map(|t| ((1e-3 / t).ceil() as usize).max(1))
        .collect();
    let round: f64 = per_op
        .iter()
        .zip(&repeats)
        .map(|(t, &n)| t * n as f64)
        .sum();
    let rounds = rounds_within(budget, Duration::from_secs_f64(round));
    let mut times = vec![Vec::with_capacity(rounds); contenders.len()];
    for round in 0..rounds {
        for j in 0..contenders.len() {
            let i = (round + j) % contenders.len();
            times[i].push(contenders[i](repeats[i]).await);
        }
    }
    times
}

/// `| median a | median b | median of f(round) [95 %] | rounds |` over the rounds.
fn cells(times: &[Vec<f64>], a: usize, b: usize, f: impl Fn(&[f64]) -> f64) -> String {
    let rounds = times[0].len();
    let mut ratios: Vec<f64> = (0..rounds)
        .map(|r| f(&times.iter().map(|t| t[r]).collect::<Vec<_>>()))
        .collect();
    let (low, high) = bootstrap_interval(&ratios);
    format!(
        "{} | {} | {:.3} [{low:.3} … {high:.3}] | {rounds} |",
        human_time(median(&mut times[a].clone())),
        human_time(median(&mut times[b].clone())),
        median(&mut ratios),
    )
}

fn budget() -> Duration {
    Duration::from_secs(if full_run() { 20 } else { 1 })
}

fn pattern(size: usize) -> Bytes {
    Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// Memory: `Storage` with the default checksum against object_store's `InMemory`, get and
/// put (which leaves the checksum owed), and the checksum alone over the same bytes.
async fn memory(rows: &mut Vec<String>) {
    let sizes: &[(usize, &str)] = if full_run() {
        &[(4 * 1024, "4 KiB"), (MIB as usize, "1 MiB")]
    } else {
        &[(4 * 1024, "4 KiB")]
    };
    let storage = Storage::memory();
    let algorithm = storage.checksum_algorithm();
    let raw: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    for &(size, label) in sizes {
        let data = pattern(size);
        let key = storage.key(&format!("{label}/object.bin")).unwrap();
        let path = Path::from(format!("mask/{label}/object.bin"));
        storage.put(&key, data.clone()).await.unwrap();
        raw.put(&path, data.clone().into()).await.unwrap();
        let (storage, raw, key, path, data) = (&storage, &raw, &key, &path, &data);
        let gets: [Timed<'_>; 2] = [
            timed(move || async move {
                let got = storage.get(key).await.unwrap();
                assert_eq!(got.data.len(), size);
            }),
            timed(move || async move {
                let got = raw.get(path).await.unwrap().bytes().await.unwrap();
                assert_eq!(got.len(), size);
            }),
        ];
        let times = in_rotation(budget(), &gets).await;
        rows.push(format!(
            "| memory get ({algorithm}, verified) | {label} | {} — | ≤ 3 |",
            cells(&times, 0, 1, |t| t[0] / t[1])
        ));
        let puts: [Timed<'_>; 3] = [
            timed(move || async move {
                storage.put(key, data.clone()).await.unwrap();
            }),
            timed(move || async move {
                raw.put(path, data.clone().into()).await.unwrap();
            }),
            timed(move || async move {
                std::hint::black_box(maskstore::checksum_of(algorithm, data));
            }),
        ];
        let mut times = in_rotation(budget(), &puts).await;
        // The put leaves the checksum owed (the first read that asks computes it), so it
        // is held to 3× outright; the checksum alone shows what that first read pays.
        rows.push(format!(
            "| memory put ({algorithm}, checksum owed) | {label} | {} {} | ≤ 3 |",
            cells(&times, 0, 1, |t| t[0] / t[1]),
            human_time(median(&mut times[2])),
        ));
    }
}

/// Local put of 4 KiB without fsync: `Storage` (default checksum) and the local provider
/// called as raw object_store, against object_store's `LocalFileSystem` (no fsync either).
async fn local_put(rows: &mut Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::local(dir.path().join("maskstore"));
    config.object_storage.fsync = false;
    let storage = Storage::connect(&config).unwrap();
    let provider: Arc<dyn ObjectStore> = Arc::new(
        maskstore::maskstore_backends::local::LocalStore::open(dir.path().join("raw"), false)
            .unwrap(),
    );
    std::fs::create_dir_all(dir.path().join("os")).unwrap();
    let theirs: Arc<dyn ObjectStore> = Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(dir.path().join("os")).unwrap(),
    );
    let (size, label) = (4 * 1024, "4 KiB");
    let data = pattern(size);
    let key = storage.key("study/series/object.bin").unwrap();
    let path = Path::from("mask/study/series/object.bin");
    let (storage_ref, provider, theirs) = (&storage, &provider, &theirs);
    let (key, path, data) = (&key, &path, &data);
    let puts: [Timed<'_>; 3] = [
        timed(move || async move {
            storage_ref.put(key, data.clone()).await.unwrap();
        }),
        timed(move || async move {
            provider.put(path, data.clone().into()).await.unwrap();
        }),
        timed(move || async move {
            theirs.put(path, data.clone().into()).await.unwrap();
        }),
    ];
    let times = in_rotation(budget(), &puts).await;
    rows.push(format!(
        "| local put, fsync off, `Storage` ({}) vs `LocalFileSystem` | {label} | {} — | ≤ 1.2 |",
        storage.checksum_algorithm(),
        cells(&times, 0, 2, |t| t[0] / t[2])
    ));
    rows.push(format!(
        "| local put, fsync off, the provider alone vs `LocalFileSystem` | {label} | {} — |  |",
        cells(&times, 1, 2, |t| t[1] / t[2])
    ));
}

/// A whole local get of 64 MiB through `Storage`, verified and not, against
/// `std::fs::read` of the object's own file.
async fn local_get(rows: &mut Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let storage = Storage::connect(&Config::local(&root)).unwrap();
    let unverified = storage.without_verification();
    let (size, label) = if full_run() {
        (64 * MIB as usize, "64 MiB")
    } else {
        (4 * MIB as usize, "4 MiB")
    };
    let key = storage.key("big.bin").unwrap();
    storage.put(&key, pattern(size)).await.unwrap();
    let file = root.join("mask/big.bin");
    let (storage, unverified, key, file) = (&storage, &unverified, &key, &file);
    let reads: [Timed<'_>; 3] = [
        timed(move || async move {
            let got = storage.get(key).await.unwrap();
            assert!(got.info.checksum.is_some() && got.data.len() == size);
        }),
        timed(move || async move {
            assert_eq!(std::fs::read(file).unwrap().len(), size);
        }),
        timed(move || async move {
            assert_eq!(unverified.get(key).await.unwrap().data.len(), size);
        }),
    ];
    let times = in_rotation(budget(), &reads).await;
    rows.push(format!(
        "| local get, verified ({}) vs `std::fs::read` | {label} | {} — | ≤ 0.7 |",
        storage.checksum_algorithm(),
        cells(&times, 0, 1, |t| t[0] / t[1])
    ));
    rows.push(format!(
        "| local get, unverified vs `std::fs::read` | {label} | {} — |  |",
        cells(&times, 2, 1, |t| t[2] / t[1])
    ));
}

/// `MASKSTORE_OVERHEAD_COUNT=<op>:<n>` (op: `get`, `raw-get`, `put`, `raw-put`): runs only
/// `n` memory calls of 4 KiB, for counting instructions per call under callgrind (two runs
/// with different `n`, their difference divided), which a loaded machine does not blur.
fn count_only() -> bool {
    let Ok(spec) = std::env::var("MASKSTORE_OVERHEAD_COUNT") else {
        return false;
    };
    let (op, n) = spec
        .split_once(':')
        .expect("MASKSTORE_OVERHEAD_COUNT=<op>:<n>");
    let n: usize = n.parse().expect("a count");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let storage = Storage::memory();
        let raw: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let data = pattern(4096);
        let key = storage.key("count/object.bin").unwrap();
        let path = Path::from("mask/count/object.bin");
        storage.put(&key, data.clone()).await.unwrap();
        raw.put(&path, data.clone().into()).await.unwrap();
        for _ in 0..n {
            match op {
                "get" => assert_eq!(storage.get(&key).await.unwrap().data.len(), 4096),
                "raw-get" => {
                    let got = raw.get(&path).await.unwrap().bytes().await.unwrap();
                    assert_eq!(got.len(), 4096);
                }
                "put" => drop(storage.put(&key, data.clone()).await.unwrap()),
                "raw-put" => drop(raw.put(&path, data.clone().into()).await.unwrap()),
                other => panic!("unknown op {other}"),
            }
        }
    });
    true
}

/// Prints the `overhead` section.
pub fn print() {
    if count_only() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rows = Vec::new();
    rt.block_on(async {
        memory(&mut rows).await;
        local_put(&mut rows).await;
        local_get(&mut rows).await;
    });
    println!(
        "## maskstore against object_store's own stores, measured in rotation (time ratios, \
         > 1 = maskstore slower)\n"
    );
    println!(
        "| operation | size | maskstore | baseline | ratio [95 %] | rounds | checksum alone | target |\n|---|---|---|---|---|---|---|---|"
    );
    for row in rows {
        println!("{row}");
    }
    println!();
}
