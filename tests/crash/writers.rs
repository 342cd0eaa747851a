//! The binary's writers killed at random points: `maskstore put`, `maskstore sync` (local to
//! local) and `maskstore serve` answering signed PUTs.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use maskstore_backends::SignedMethod;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{
    Budget, Checker, Expect, KEYS, State, Tag, Tally, cli_vars, delay, open, verify_cli, workdir,
};
use crate::support::{Serve, command, text};

/// A random length: mostly small, some medium, one in twenty across the 8 MiB multipart
/// threshold of streaming uploads.
fn length(rng: &mut StdRng) -> usize {
    match rng.random_range(0..20) {
        0..=12 => rng.random_range(40..64 * 1024),
        13..=18 => rng.random_range(64 * 1024..1024 * 1024),
        _ => rng.random_range(8 * 1024 * 1024..10 * 1024 * 1024),
    }
}

/// How long a command takes to finish, from a run of it to the end: the range kills are
/// drawn from.
fn timed(mut child: Child) -> Duration {
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success(), "a calibration run failed");
    started.elapsed()
}

/// Narrows the range kill points are drawn from after a run that finished before its
/// kill, widens it after one that was killed: about one run in five finishes, whatever the
/// machine's speed, and the kills spread over the whole run.
fn adapt(span: &mut Duration, finished: bool) {
    *span = if finished {
        span.mul_f64(0.85)
    } else {
        span.mul_f64(1.04)
    };
}

/// Waits `pause`, then kills `child` if it still runs: `Some(exit status)` when it had
/// finished, `None` when it was killed.
async fn kill_after(child: &mut Child, pause: Duration) -> Option<std::process::ExitStatus> {
    tokio::time::sleep(pause).await;
    if let Some(status) = child.try_wait().unwrap() {
        return Some(status);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

fn put_command(dir: &Path, root: &Path, key: &str) -> Child {
    command(
        dir,
        &["put", "body.bin", &format!("mask/{key}")],
        &cli_vars(root),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

/// How long `maskstore put` runs, for a small object and one past the multipart threshold:
/// the ranges its kill points are drawn from (see [`adapt`]).
pub struct PutSpans {
    small: Duration,
    large: Duration,
}

impl PutSpans {
    /// Measured by two whole runs on `root` (which then holds `crash/k0`, 9 MiB).
    pub fn measure(dir: &Path, root: &Path, state: &mut State) -> PutSpans {
        let body = dir.join("body.bin");
        std::fs::write(&body, Tag::new("crash/k0", 0, 1000).body()).unwrap();
        let small = timed(put_command(dir, root, "crash/k0"));
        let tag = Tag::new("crash/k0", 0, 9 << 20);
        std::fs::write(&body, tag.body()).unwrap();
        let large = timed(put_command(dir, root, "crash/k0"));
        state.insert("crash/k0".into(), tag);
        PutSpans { small, large }
    }
}

/// What interrupts a writer: a SIGKILL alone, or a power cut (`cut`) first, after which
/// writes fail (the writer may report that failure before the kill).
pub type Cut<'a> = Option<&'a dyn Fn()>;

/// One `maskstore put` of a new version of a random key, interrupted after a random
/// pause; `state` gets the write if it was acknowledged (exit 0). Returns what the store
/// may hold and whether the put was still running when interrupted.
pub async fn put_round(
    dir: &Path,
    root: &Path,
    rng: &mut StdRng,
    version: u64,
    state: &mut State,
    spans: &mut PutSpans,
    cut: Cut<'_>,
) -> (Expect, bool) {
    let key = KEYS[rng.random_range(0..KEYS.len())];
    let tag = Tag::new(key, version, length(rng));
    std::fs::write(dir.join("body.bin"), tag.body()).unwrap();
    let span = if tag.len >= 8 << 20 {
        &mut spans.large
    } else {
        &mut spans.small
    };
    let mut child = put_command(dir, root, key);
    let pause = delay(rng, span.as_millis() as u64 + 1);
    let mut expect = Expect::exactly(state, 0);
    let finished = match cut {
        None => kill_after(&mut child, pause).await,
        Some(cut) => {
            tokio::time::sleep(pause).await;
            cut();
            kill_after(&mut child, Duration::ZERO).await
        }
    };
    adapt(span, finished.is_some());
    match finished {
        Some(status) if status.success() || cut.is_none() => {
            let stderr = text(&child.wait_with_output().unwrap().stderr);
            assert!(status.success(), "maskstore put failed: {stderr}");
            state.insert(key.into(), tag);
            (Expect::exactly(state, 1), false)
        }
        // Failed on the cut-off disk, or killed: either version.
        failed => {
            expect.allow(key, Some(tag));
            (expect, failed.is_none())
        }
    }
}

/// `maskstore put` of a file, killed at a random point of its run.
pub async fn cli_put(budget: Budget) -> Tally {
    let (dir, root) = workdir();
    let mut rng = StdRng::seed_from_u64(budget.seed ^ 0x0070_7574);
    let (mut checker, mut state) = (Checker::default(), State::new());
    let mut spans = PutSpans::measure(dir.path(), &root, &mut state);
    let mut round = 0;
    while checker.tally.kills < budget.of(55) {
        round += 1;
        assert!(
            round < budget.of(55) * 5,
            "too few puts were killed while running"
        );
        let version = (1 << 40) | round;
        let (expect, killed) = put_round(
            dir.path(),
            &root,
            &mut rng,
            version,
            &mut state,
            &mut spans,
            None,
        )
        .await;
        checker.tally.kills += u64::from(killed);
        let context = format!("maskstore put, seed {}, round {round}", budget.seed);
        state = checker.check(&root, &expect, &context).await;
    }
    verify_cli(&root, dir.path(), "maskstore put, at the end");
    checker.tally
}

fn config_file(dir: &Path, name: &str, root: &Path) -> String {
    let file = dir.join(name);
    let toml = format!(
        "[object_storage]\nprovider = \"local\"\nroot = \"{}\"\nfsync = true\n",
        root.display()
    );
    std::fs::write(&file, toml).unwrap();
    file.display().to_string()
}

/// `maskstore sync` of a local root into another, killed at a random point; between runs
/// some of the source's objects get new versions.
pub async fn cli_sync(budget: Budget) -> Tally {
    let (dir, root) = workdir();
    let source_root = dir.path().join("source");
    let (from, to) = (
        config_file(dir.path(), "from.toml", &source_root),
        config_file(dir.path(), "to.toml", &root),
    );
    let mut rng = StdRng::seed_from_u64(budget.seed ^ 0x7379_6e63);
    let (mut checker, mut state, mut source) = (Checker::default(), State::new(), State::new());
    let sync = || {
        command(dir.path(), &["sync", "--from", &from, "--to", &to], &[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut span = Duration::from_millis(100);
    let mut round = 0;
    while checker.tally.kills < budget.of(25) {
        round += 1;
        assert!(
            round < budget.of(25) * 5,
            "too few syncs were killed while running"
        );
        let storage = open(&source_root);
        for key in KEYS {
            if round == 1 || rng.random_range(0..3) == 0 {
                let tag = Tag::new(key, (2 << 40) | (round << 8), length(&mut rng));
                storage
                    .put(&storage.key(key).unwrap(), tag.body())
                    .await
                    .unwrap();
                source.insert(key.into(), tag);
            }
        }
        drop(storage);
        let mut child = sync();
        let mut expect = Expect::exactly(&state, 0);
        let finished = kill_after(&mut child, delay(&mut rng, span.as_millis() as u64 + 1)).await;
        adapt(&mut span, finished.is_some());
        match finished {
            Some(status) => {
                let stderr = text(&child.wait_with_output().unwrap().stderr);
                assert!(status.success(), "maskstore sync failed: {stderr}");
                expect = Expect::exactly(&source, source.len() as u64);
            }
            None => {
                checker.tally.kills += 1;
                expect.allow_state(&source);
            }
        }
        let context = format!("maskstore sync, seed {}, round {round}", budget.seed);
        state = checker.check(&root, &expect, &context).await;
    }
    verify_cli(&root, dir.path(), "maskstore sync, at the end");
    checker.tally
}

/// What one gateway client saw: its last acknowledged version per key, and the one it was
/// sending when the gateway died.
type Seen = (Vec<(String, Tag)>, Option<(String, Tag)>);

/// A client putting new versions of `keys` through signed URLs until the gateway dies;
/// with `tolerant`, also until it answers a server error (its disk was cut off).
async fn gateway_client(
    urls: Vec<(String, String)>,
    first: u64,
    seed: u64,
    tolerant: bool,
    large_first: bool,
) -> Seen {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked = Vec::new();
    for i in 0.. {
        let (key, url) = &urls[rng.random_range(0..urls.len())];
        // With `large_first`, an upload past the multipart threshold first (the gateway
        // streams it into a multipart upload), then mostly smaller ones.
        let len = if i == 0 && large_first {
            9 << 20
        } else {
            length(&mut rng).min(2 << 20)
        };
        let tag = Tag::new(key, first + i, len);
        let sent = http
            .put(url)
            .header("content-type", "application/octet-stream")
            .body(tag.body())
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status().is_success() => acked.push((key.clone(), tag)),
            Ok(answer) if tolerant && answer.status().is_server_error() => {
                return (acked, Some((key.clone(), tag)));
            }
            Ok(answer) => panic!("the gateway answered {} to a PUT", answer.status()),
            Err(_) => return (acked, Some((key.clone(), tag))),
        }
    }
    unreachable!()
}

/// The environment of `maskstore serve` on `root`.
pub fn serve_vars(root: &Path) -> Vec<(String, String)> {
    let mut vars = cli_vars(root);
    vars.push((
        "APP_GATEWAY__SIGNING_SECRET".into(),
        "crash-test-gateway-signing-secret-0123456789".into(),
    ));
    vars
}

/// One run of `maskstore serve` on `root` while three clients put through signed URLs
/// (each client its own keys, so each key has one write in flight at most), interrupted
/// after a random pause; `state` gets the acknowledged writes (200). Returns what the
/// store may hold.
pub async fn gateway_round(
    dir: &Path,
    root: &Path,
    rng: &mut StdRng,
    round: u64,
    state: &mut State,
    span: &mut Duration,
    cut: Cut<'_>,
) -> Expect {
    let mut serve = Serve::start(dir, &serve_vars(root));
    let clients: Vec<_> = KEYS
        .chunks(2)
        .enumerate()
        .map(|(i, keys)| {
            let urls = keys
                .iter()
                .map(|k| {
                    (
                        k.to_string(),
                        serve.sign(SignedMethod::Put, &format!("mask/{k}")),
                    )
                })
                .collect();
            let first = (3 << 40) | (round << 24) | ((i as u64) << 20);
            let large_first = i == 0 && round.is_multiple_of(2);
            let client = gateway_client(urls, first, rng.random(), cut.is_some(), large_first);
            tokio::spawn(client)
        })
        .collect();
    tokio::time::sleep(delay(rng, span.as_millis() as u64 + 1)).await;
    if let Some(cut) = cut {
        cut();
    }
    serve.child.kill().unwrap();
    serve.child.wait().unwrap();
    let mut expect = Expect::default();
    let mut in_flight = Vec::new();
    for client in clients {
        let (acked, pending) = client.await.unwrap();
        expect.acknowledged += acked.len() as u64;
        for (key, tag) in acked {
            state.insert(key, tag);
        }
        in_flight.extend(pending);
    }
    // Widened after a round in which nothing was acknowledged yet, narrowed otherwise:
    // about three rounds in four see acknowledged writes, whatever the load.
    *span = span.mul_f64(if expect.acknowledged == 0 { 1.2 } else { 0.93 });
    expect.allow_state(state);
    for (key, tag) in in_flight {
        expect.allow(&key, Some(tag));
    }
    expect
}

/// `maskstore serve` killed at a random point while clients put through signed URLs.
pub async fn gateway(budget: Budget) -> Tally {
    let (dir, root) = workdir();
    let mut rng = StdRng::seed_from_u64(budget.seed ^ 0x0067_6174);
    let (mut checker, mut state) = (Checker::default(), State::new());
    let mut span = Duration::from_millis(400);
    for round in 0..budget.of(25) {
        let expect = gateway_round(
            dir.path(),
            &root,
            &mut rng,
            round,
            &mut state,
            &mut span,
            None,
        )
        .await;
        checker.tally.kills += 1;
        let context = format!("maskstore serve, seed {}, round {round}", budget.seed);
        state = checker.check(&root, &expect, &context).await;
    }
    verify_cli(&root, dir.path(), "maskstore serve, at the end");
    checker.tally
}
