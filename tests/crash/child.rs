//! The `Storage` writer: this test binary started again with [`CHILD_ENV`] set, doing puts,
//! copies, renames and deletes on a local root until it is killed, logging each operation
//! before it starts (`begin …`) and its answer once it returns (`ok`, `missing`, `exists`,
//! `err …`) to a log file the parent reads after the kill.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use maskstore_backends::{ErrorKind, Storage};
use rand::{Rng, SeedableRng};

use super::{Budget, CHILD_ENV, Checker, Expect, KEYS, State, Tag, Tally, delay, open, workdir};

/// One operation of the writer.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put(String, Tag),
    Copy(String, String),
    Rename(String, String),
    /// A rename that must not replace an object at the target.
    RenameNew(String, String),
    Delete(String),
}

impl Op {
    fn line(&self) -> String {
        match self {
            Op::Put(key, t) => format!("put {key} {} {} {}", t.origin, t.version, t.len),
            Op::Copy(a, b) => format!("copy {a} {b}"),
            Op::Rename(a, b) => format!("rename {a} {b}"),
            Op::RenameNew(a, b) => format!("rename-new {a} {b}"),
            Op::Delete(key) => format!("delete {key}"),
        }
    }

    fn parse(line: &str) -> Op {
        let w: Vec<&str> = line.split(' ').collect();
        match w[0] {
            "put" => Op::Put(
                w[1].into(),
                Tag::new(w[2], w[3].parse().unwrap(), w[4].parse().unwrap()),
            ),
            "copy" => Op::Copy(w[1].into(), w[2].into()),
            "rename" => Op::Rename(w[1].into(), w[2].into()),
            "rename-new" => Op::RenameNew(w[1].into(), w[2].into()),
            "delete" => Op::Delete(w[1].into()),
            other => panic!("unknown operation {other:?} in the writer's log"),
        }
    }

    /// `state` after the operation succeeded.
    pub fn apply(&self, state: &mut State) {
        match self {
            Op::Put(key, tag) => {
                state.insert(key.clone(), tag.clone());
            }
            Op::Copy(a, b) => {
                let tag = state[a].clone();
                state.insert(b.clone(), tag);
            }
            Op::Rename(a, b) | Op::RenameNew(a, b) => {
                let tag = state.remove(a).unwrap();
                state.insert(b.clone(), tag);
            }
            Op::Delete(key) => {
                state.remove(key);
            }
        }
    }

    /// The answer the operation must give on `state` when it does nothing: `missing`
    /// (no source) or `exists` (a create-only target is taken); `None` when it applies.
    fn refusal(&self, state: &State) -> Option<&'static str> {
        match self {
            Op::Copy(a, _) | Op::Rename(a, _) | Op::RenameNew(a, _) if !state.contains_key(a) => {
                Some("missing")
            }
            Op::RenameNew(_, b) if state.contains_key(b) => Some("exists"),
            _ => None,
        }
    }
}

/// Picks the next operation on the writer's view of which keys exist.
fn next_op(rng: &mut impl Rng, present: &[String], version: u64, big: bool) -> Op {
    let key = |rng: &mut dyn rand::RngCore| KEYS[rng.random_range(0..KEYS.len())].to_string();
    let source = |rng: &mut dyn rand::RngCore| present[rng.random_range(0..present.len())].clone();
    let roll = rng.random_range(0..100);
    if present.is_empty() || roll < 45 {
        let target = key(rng);
        let len = match rng.random_range(0..10) {
            _ if big => rng.random_range(512 * 1024..2 * 1024 * 1024),
            0..=5 => rng.random_range(40..4096),
            6..=8 => rng.random_range(4096..256 * 1024),
            _ => rng.random_range(256 * 1024..2 * 1024 * 1024),
        };
        return Op::Put(target.clone(), Tag::new(&target, version, len));
    }
    let (from, to) = (source(rng), key(rng));
    match roll {
        45..=64 => Op::Copy(from, to),
        65..=79 => Op::Rename(from, to),
        80..=84 => Op::RenameNew(from, to),
        _ => Op::Delete(source(rng)),
    }
}

async fn perform(storage: &Storage, op: &Op) -> Result<(), maskstore_backends::Error> {
    let key = |k: &str| storage.key(k).unwrap();
    match op {
        Op::Put(k, tag) => storage.put(&key(k), tag.body()).await.map(drop),
        Op::Copy(a, b) => storage.copy(&key(a), &key(b)).await,
        Op::Rename(a, b) => storage.rename(&key(a), &key(b)).await,
        Op::RenameNew(a, b) => storage.rename_if_absent(&key(a), &key(b)).await,
        Op::Delete(k) => storage.delete(&key(k)).await,
    }
}

/// The child: `spec` is `<root>|<log>|<seed>|<round>|<stop on error>|<big>` (the last two
/// `0` or `1`; big: every put from 512 KiB to 2 MiB). Never returns.
pub async fn run(spec: &str) -> ! {
    let parts: Vec<&str> = spec.split('|').collect();
    let (root, log) = (Path::new(parts[0]), parts[1]);
    let (seed, round): (u64, u64) = (parts[2].parse().unwrap(), parts[3].parse().unwrap());
    let (stop_on_error, big) = (parts[4] == "1", parts[5] == "1");
    let storage = open(root);
    let mut log = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ round.wrapping_mul(0x9e37_79b9));
    let mut present: Vec<String> = present(&storage).await;
    let parent = std::os::unix::process::parent_id();
    for i in 0.. {
        // Orphaned (the test died before killing it): nothing would ever stop it.
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(2);
        }
        let op = next_op(&mut rng, &present, (round << 20) | i, big);
        // One write(2) per line: what the parent reads after a kill is whole lines.
        log.write_all(format!("begin {}\n", op.line()).as_bytes())
            .unwrap();
        let answer = match perform(&storage, &op).await {
            Ok(()) => {
                let mut state: State = present.iter().map(|k| (k.clone(), any())).collect();
                op.apply(&mut state);
                present = state.into_keys().collect();
                "ok".to_string()
            }
            Err(e) if e.kind() == ErrorKind::NotFound => "missing".into(),
            Err(e) if e.kind() == ErrorKind::Conflict => "exists".into(),
            Err(e) => format!("err {}", e.to_string().replace('\n', " ")),
        };
        log.write_all(format!("{answer}\n").as_bytes()).unwrap();
        if stop_on_error && answer.starts_with("err") {
            std::process::exit(1);
        }
    }
    unreachable!()
}

/// A stand-in version: the writer tracks only which keys exist, by applying each
/// operation to a state of these.
fn any() -> Tag {
    Tag::new("-", 0, 0)
}

/// The keys `storage` holds now.
async fn present(storage: &Storage) -> Vec<String> {
    use futures::TryStreamExt;
    let listed: Vec<_> = storage.list(None).unwrap().try_collect().await.unwrap();
    listed
        .iter()
        .map(|i| i.key.as_str().trim_start_matches("mask/").to_string())
        .collect()
}

/// A running child writer, killed when dropped (a failing test leaves none running).
pub struct Writer(Child);

impl Writer {
    /// Kills it (SIGKILL) and reaps it; fails if it had stopped by itself before.
    pub fn kill(&mut self) {
        let status = self.0.try_wait().unwrap();
        assert!(status.is_none(), "the writer stopped by itself: {status:?}");
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the child writer on `root`, logging to `log`.
pub fn spawn(
    root: &Path,
    log: &Path,
    seed: u64,
    round: u64,
    stop_on_error: bool,
    big: bool,
) -> Writer {
    std::fs::write(log, "").unwrap();
    let spec = format!(
        "{}|{}|{seed}|{round}|{}|{}",
        root.display(),
        log.display(),
        u8::from(stop_on_error),
        u8::from(big)
    );
    Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::killed_writers_lose_no_acknowledged_write_on_local",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, spec)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map(Writer)
        .unwrap()
}

/// How [`replay`] treats an operation that answered `err …`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OnError {
    /// A writer's failure: the test fails.
    Fail,
    /// A refused write (a full disk): it must have changed nothing.
    NoEffect,
    /// A failure of the disk (EIO after a power cut): the operation may or may not have
    /// happened, and the writer stopped there.
    Unknown,
}

/// What the store may hold after the writer logged `log` starting from `base`: the
/// acknowledged operations applied, the interrupted one (if any) applied or not.
pub fn replay(base: &State, log: &str, on_error: OnError) -> (Expect, State) {
    let mut state = base.clone();
    let (mut acknowledged, mut pending) = (0, None::<Op>);
    for line in log.lines() {
        if let Some(op) = line.strip_prefix("begin ") {
            pending = Some(Op::parse(op));
            continue;
        }
        let op = pending.take().expect("an answer follows a begin");
        match (line, op.refusal(&state)) {
            ("ok", None) => {
                op.apply(&mut state);
                acknowledged += 1;
            }
            (answer, Some(refusal)) if answer == refusal => {}
            (answer, _) if answer.starts_with("err ") && on_error == OnError::NoEffect => {}
            (answer, _) if answer.starts_with("err ") && on_error == OnError::Unknown => {
                pending = Some(op);
                break;
            }
            (answer, refusal) => panic!(
                "the writer's {} answered {answer:?}, expected {:?} on {state:?}",
                op.line(),
                refusal.unwrap_or("ok")
            ),
        }
    }
    let mut expect = Expect::exactly(&state, acknowledged);
    if let Some(op) = pending.filter(|op| op.refusal(&state).is_none()) {
        let mut after = state.clone();
        op.apply(&mut after);
        expect.allow_state(&after);
        if let Op::Rename(a, b) | Op::RenameNew(a, b) = &op {
            expect.survives(state[a].clone(), a, b);
        }
    }
    (expect, state)
}

/// Rounds of the child writer on one root, each killed after a random time.
pub async fn storage_writer(budget: Budget) -> Tally {
    let (dir, root) = workdir();
    let log = dir.path().join("writer.log");
    let mut rng = rand::rngs::StdRng::seed_from_u64(budget.seed);
    let (mut checker, mut state) = (Checker::default(), State::new());
    open(&root);
    for round in 0..budget.kills {
        let mut child = spawn(&root, &log, budget.seed, round, false, false);
        tokio::time::sleep(delay(&mut rng, 150)).await;
        child.kill();
        checker.tally.kills += 1;
        let (expect, _) = replay(
            &state,
            &std::fs::read_to_string(&log).unwrap(),
            OnError::Fail,
        );
        let context = format!("Storage writer, seed {}, round {round}", budget.seed);
        state = checker.check(&root, &expect, &context).await;
        if round % 25 == 24 {
            super::verify_cli(&root, dir.path(), &context);
        }
    }
    super::verify_cli(&root, dir.path(), "Storage writer, at the end");
    checker.tally
}
