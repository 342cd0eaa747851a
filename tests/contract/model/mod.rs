//! The reference model on every backend of the contract matrix: random operation
//! histories (proptest-state-machine, `machine.rs`) run on each backend and every answer
//! is held to `maskstore_testkit::model`. Each backend prints one line beside its
//! contract line: `model[local]: 200 histories, 6,123 operations, 0 divergences, 0 documented
//! engine departures (seed …)` (departures: see `maskstore_testkit::model::Known`).
//!
//! Every history saved in `tests/contract/model/histories/*.json` is replayed first, on
//! every backend. A failure shrinks to a minimal history and prints it in that format,
//! with where to save it.
//!
//! The budget: a fixed seed under `CI=true` (a new one otherwise), printed; memory and
//! local run 200 histories of up to 40 operations, the servers fewer (see each test).
//! `MASKSTORE_MODEL_SEED`, `MASKSTORE_MODEL_HISTORIES` and `MASKSTORE_MODEL_OPS`
//! override them (`scripts/soak` does).

mod defects;
mod machine;

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use maskstore_backends::{MIN_UPLOAD_PART_SIZE, Storage};
use maskstore_testkit::chaos::Chaos;
use maskstore_testkit::contract::Counting;
use maskstore_testkit::model::{History, Hits, Known, Op, run_history};
use maskstore_testkit::servers;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use proptest_state_machine::ReferenceStateMachine;

use machine::Machine;

/// The seed under CI: fixed, so that a CI failure reproduces.
const CI_SEED: u64 = 0x6d61_736b_2d32_3900;
/// Parts of streaming uploads on local and memory: the smallest they take (64 KiB).
const SMALL_PART: u32 = MIN_UPLOAD_PART_SIZE as u32;
/// Parts on S3, Azure and GCS: the smallest S3 takes (5 MiB).
const SERVICE_PART: u32 = 5 * 1024 * 1024;

/// How many histories of how many operations at most.
#[derive(Debug, Clone, Copy)]
struct Budget {
    histories: u32,
    ops: usize,
}

impl Budget {
    /// `histories` of up to `ops`, unless the environment says otherwise.
    fn of(histories: u32, ops: usize) -> Budget {
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        Budget {
            histories: env("MASKSTORE_MODEL_HISTORIES").unwrap_or(histories),
            ops: env("MASKSTORE_MODEL_OPS").map_or(ops, |n: u32| n as usize),
        }
    }
}

fn seed() -> u64 {
    if let Ok(text) = std::env::var("MASKSTORE_MODEL_SEED") {
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        return parsed.unwrap_or_else(|e| {
            panic!("MASKSTORE_MODEL_SEED={text:?}: {e}; give a number such as 0x1f")
        });
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        CI_SEED
    } else {
        rand::random()
    }
}

fn histories_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/contract/model/histories")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Replays the saved histories, then runs the random ones, and prints the line.
fn check<const PART: u32>(
    rt: &tokio::runtime::Runtime,
    label: &str,
    storage: &Storage,
    known: &[Known],
    budget: Budget,
) {
    let saved = History::load_all(&histories_dir()).unwrap();
    let hits = std::cell::RefCell::new(Hits::default());
    for (name, history) in &saved {
        let replayed = rt.block_on(run_history(
            storage,
            PART as usize,
            known,
            &history.ops,
            || {},
        ));
        match replayed {
            Ok(ran) => hits.borrow_mut().add(&ran.hits),
            Err(divergence) => {
                panic!("model[{label}]: saved history {name} diverges: {divergence}")
            }
        }
    }
    let seed = seed();
    match explore::<PART>(rt, storage, known, budget, seed) {
        Ok(found) => println!(
            "model[{label}]: {} histories, {} operations, 0 divergences, {} (seed {seed:#x}; {}; {} saved histories replayed)",
            found.histories,
            thousands(found.ops),
            {
                let mut all = hits.into_inner();
                all.add(&found.hits);
                all
            },
            found.kinds,
            saved.len()
        ),
        Err(Found::Divergence(reason, ops)) => {
            let history = History {
                note: format!("model[{label}] seed {seed:#x}: {reason}"),
                ops,
            };
            panic!(
                "model[{label}]: a divergence (seed {seed:#x}), shrunk to {} operations:\n{reason}\n\n\
                 Save this history as tests/contract/model/histories/<what-it-catches>.json \
                 (it is then replayed on every backend on every run):\n{}",
                history.ops.len(),
                history.to_json()
            );
        }
        Err(Found::Aborted(reason)) => {
            panic!("model[{label}]: aborted (seed {seed:#x}): {reason}")
        }
    }
}

/// What a clean search ran.
struct Explored {
    kinds: Kinds,
    histories: u32,
    ops: usize,
    hits: Hits,
}

/// How many of the operations run were of the kinds a budget must reach.
#[derive(Debug, Default, Clone, Copy)]
struct Kinds {
    /// Finished streaming uploads of more than one part.
    multipart: usize,
    /// Streaming uploads of at least one whole part (one part or more).
    part_sized: usize,
    /// Signed GET and PUT URLs used.
    signed: usize,
    /// Concurrent groups.
    groups: usize,
}

impl Kinds {
    fn count(&mut self, ops: &[Op], part: u32) {
        for op in ops {
            match op {
                Op::Upload { body, abort, .. } => {
                    self.part_sized += usize::from(body.len >= part);
                    self.multipart += usize::from(body.len > part && !abort);
                }
                Op::SignedGet { .. } | Op::SignedPut { .. } => self.signed += 1,
                Op::Together(_) => self.groups += 1,
                _ => {}
            }
        }
    }
}

impl std::fmt::Display for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} multipart uploads, {} of a part or more, {} signed URLs, {} concurrent groups",
            self.multipart, self.part_sized, self.signed, self.groups
        )
    }
}

/// Why a search stopped.
enum Found {
    /// A divergence, with the shrunk history.
    Divergence(String, Vec<Op>),
    /// Proptest gave up (too many rejections).
    Aborted(String),
}

/// Runs `budget` random histories from `seed` on `storage`; a divergence is shrunk.
fn explore<const PART: u32>(
    rt: &tokio::runtime::Runtime,
    storage: &Storage,
    known: &[Known],
    budget: Budget,
    seed: u64,
) -> Result<Explored, Found> {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases: budget.histories,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let strategy = Machine::<PART>::sequential_strategy(1..=budget.ops.max(1));
    let (performed, histories) = (Cell::new(0usize), Cell::new(0u32));
    let hits = std::cell::RefCell::new(Hits::default());
    let kinds = std::cell::RefCell::new(Kinds::default());
    let result = runner.run(&strategy, |(_, ops, seen)| {
        let count = || {
            if let Some(seen) = &seen {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        };
        let ran = rt
            .block_on(run_history(storage, PART as usize, known, &ops, count))
            .map_err(TestCaseError::fail)?;
        performed.set(performed.get() + ran.ops);
        hits.borrow_mut().add(&ran.hits);
        histories.set(histories.get() + 1);
        kinds.borrow_mut().count(&ops, PART);
        Ok(())
    });
    match result {
        Ok(()) => Ok(Explored {
            histories: histories.get(),
            ops: performed.get(),
            hits: hits.into_inner(),
            kinds: kinds.into_inner(),
        }),
        Err(TestError::Fail(reason, (_, ops, _))) => {
            Err(Found::Divergence(reason.to_string(), ops))
        }
        Err(TestError::Abort(reason)) => Err(Found::Aborted(reason.to_string())),
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn model_memory() {
    let rt = runtime();
    let served = rt.block_on(maskstore_testkit::memory_served());
    check::<SMALL_PART>(&rt, "memory", &served, &[], Budget::of(200, 40));
}

#[test]
fn model_local() {
    let rt = runtime();
    let served = rt.block_on(maskstore_testkit::temp_dir_served());
    check::<SMALL_PART>(&rt, "local", &served, &[], Budget::of(200, 40));
}

#[test]
fn model_memory_chaos() {
    let rt = runtime();
    let served = rt.block_on(maskstore_testkit::memory_served());
    let layered = Chaos::over(&served).storage();
    check::<SMALL_PART>(&rt, "memory+chaos", &layered, &[], Budget::of(100, 40));
}

#[test]
fn model_local_counting() {
    let rt = runtime();
    let served = rt.block_on(maskstore_testkit::temp_dir_served());
    let counting = Counting::new();
    let layered = served.layer(counting.clone());
    check::<SMALL_PART>(&rt, "local+counting", &layered, &[], Budget::of(100, 40));
    assert!(counting.calls() > 0, "the counting layer saw no call");
}

#[test]
fn model_s3_seaweedfs() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let rt = runtime();
    let storage = rt.block_on(async { server.storage() });
    let known = [Known::SeaweedfsOctetStreamByExtension];
    check::<SERVICE_PART>(&rt, server.name, &storage, &known, Budget::of(30, 30));
}

#[test]
fn model_s3_moto() {
    let Some(server) = servers::moto() else {
        return;
    };
    let rt = runtime();
    let storage = rt.block_on(async { server.storage() });
    check::<SERVICE_PART>(&rt, server.name, &storage, &[], Budget::of(30, 30));
}

#[test]
fn model_azure_azurite() {
    let Some(server) = servers::azurite() else {
        return;
    };
    let rt = runtime();
    let storage = rt.block_on(async { server.storage() });
    check::<SERVICE_PART>(&rt, server.name, &storage, &[], Budget::of(30, 30));
}

#[test]
fn model_gcs_fake() {
    let Some(server) = servers::fake_gcs() else {
        return;
    };
    let rt = runtime();
    let storage = rt.block_on(async { server.storage() });
    check::<SERVICE_PART>(&rt, server.name, &storage, &[], Budget::of(30, 30));
}

/// The model test can fail: each injected defect is found within the CI budget of memory
/// and shrunk to a short history that shows it.
#[test]
fn model_finds_and_shrinks_injected_defects() {
    let rt = runtime();
    let served = rt.block_on(maskstore_testkit::memory_served());
    for (defect, shows) in [
        (defects::Defect::RangeOffByOne, "Bounded"),
        (defects::Defect::IfMatchIgnored, "IfMatch"),
        (defects::Defect::FolderLost, "ListLevel"),
    ] {
        let layered = served.layer(defect);
        let found = explore::<SMALL_PART>(&rt, &layered, &[], Budget::of(200, 40), CI_SEED);
        let Err(Found::Divergence(reason, ops)) = found else {
            panic!("model: the injected {defect:?} went unnoticed in 200 histories");
        };
        println!(
            "model: injected {defect:?} found, shrunk to {} operations: {reason}",
            ops.len()
        );
        let last = format!("{:?}", ops.last().unwrap());
        assert!(
            ops.len() <= 4,
            "{defect:?} shrunk to {} operations: {ops:?}",
            ops.len()
        );
        assert!(last.contains(shows), "{defect:?} shrunk to {ops:?}");
    }
}
