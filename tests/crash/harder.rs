//! Harder faults than a kill, where the machine allows mounting (root): a power cut and a
//! full disk, each on an ext4 image of its own mounted through a loop device.
//!
//! The power cut is ext4's shutdown ioctl (`EXT4_IOC_SHUTDOWN` with
//! `EXT4_GOING_FLAGS_NOLOGFLUSH`, what xfstests' `godown` does) on the live writer's file
//! system: nothing more reaches the disk, neither data nor journal, and every later call
//! fails with EIO. The image is then unmounted and mounted again (the journal replayed,
//! the page cache gone), so what the check reads is exactly what was on the disk: an
//! acknowledged write that skipped an fsync is lost there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand::SeedableRng;

use super::child::{OnError, replay, spawn};
use super::writers::{PutSpans, gateway_round, put_round};
use super::{Budget, Checker, State, Tag, delay, open, verify_cli};

/// An ext4 image mounted at `at`; unmounted on drop.
struct Mounted {
    image: PathBuf,
    at: PathBuf,
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

impl Mounted {
    /// A fresh ext4 image of `mib` MiB in `dir`, mounted; why not where the machine
    /// does not allow it.
    fn new(dir: &Path, mib: u64) -> Result<Mounted, String> {
        let image = dir.join("disk.img");
        let at = dir.join("disk");
        std::fs::create_dir(&at).unwrap();
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(mib << 20))
            .map_err(|e| e.to_string())?;
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()])?;
        // The power cut's ioctl is sent by Python (this crate forbids unsafe code).
        run("python3", &["-c", "import fcntl"])?;
        let mounted = Mounted { image, at };
        mounted.mount()?;
        Ok(mounted)
    }

    fn mount(&self) -> Result<(), String> {
        run(
            "mount",
            &[
                "-o",
                "loop",
                self.image.to_str().unwrap(),
                self.at.to_str().unwrap(),
            ],
        )
    }

    /// The power cut: nothing more reaches the disk; later calls fail with EIO.
    fn shut_down(&self) {
        let script = "import fcntl, os, struct, sys\n\
                      fd = os.open(sys.argv[1], os.O_RDONLY)\n\
                      fcntl.ioctl(fd, 0x8004587d, struct.pack('I', 2))\n";
        run("python3", &["-c", script, self.at.to_str().unwrap()]).unwrap();
    }

    /// Unmounted and mounted again: the journal replayed, nothing cached.
    fn remount(&self) {
        run("umount", &[self.at.to_str().unwrap()]).unwrap();
        self.mount().unwrap();
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = run("umount", &[self.at.to_str().unwrap()]);
    }
}

/// A mounted image, or `None` with the reason printed where mounting is not permitted;
/// under `CI=true` it must work (CI runs as root on machines like this one).
fn mounted(dir: &Path, mib: u64, what: &str) -> Option<Mounted> {
    match Mounted::new(dir, mib) {
        Ok(mounted) => Some(mounted),
        Err(why) => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must be able to mount an ext4 image for the {what} test: {why}"
            );
            super::report(&format!(
                "crash[local, {what}]: skipped, cannot mount an ext4 image here: {why}"
            ));
            None
        }
    }
}

/// Writers on an ext4 image whose power is cut at a random point while they write (the
/// `Storage` writer, `maskstore put` and `maskstore serve` in turn): every write one
/// acknowledged is on the disk afterwards, whole, and the writes failing with EIO after
/// the cut were never acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_power_cut_on_local() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = mounted(dir.path(), 64, "power cut") else {
        return;
    };
    let budget = super::Budget::from_env();
    let (root, log) = (disk.at.join("data"), dir.path().join("writer.log"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(budget.seed ^ 0x0070_6f77_6572);
    let (mut checker, mut state) = (Checker::rereading(), State::new());
    let mut spans = PutSpans::measure(dir.path(), &root, &mut state);
    let (mut failed, cut) = (0, || disk.shut_down());
    let mut span = Duration::from_millis(400);
    for round in 0..budget.of(20) {
        let expect = match round % 3 {
            0 => {
                let child = spawn(&root, &log, budget.seed, round, true, false);
                tokio::time::sleep(Duration::from_millis(20) + delay(&mut rng, 200)).await;
                cut();
                // It stops at its first failed write; the kill stops one still waiting.
                drop(child);
                let log = std::fs::read_to_string(&log).unwrap();
                failed += log.matches("\nerr ").count();
                replay(&state, &log, OnError::Unknown).0
            }
            1 => {
                let version = (4 << 40) | round;
                let (spans, state) = (&mut spans, &mut state);
                let cut = Some(&cut as &dyn Fn());
                put_round(dir.path(), &root, &mut rng, version, state, spans, cut)
                    .await
                    .0
            }
            _ => {
                let cut = Some(&cut as &dyn Fn());
                let (r, s) = (&mut rng, &mut state);
                gateway_round(dir.path(), &root, r, round, s, &mut span, cut).await
            }
        };
        checker.tally.kills += 1;
        disk.remount();
        let context = format!("power cut, seed {}, round {round}", budget.seed);
        state = checker.check(&root, &expect, &context).await;
    }
    verify_cli(&root, dir.path(), "power cut, at the end");
    // A writer may have stopped at its first EIO before the kill: these are power cuts.
    let line = checker.tally.line("local, power cut");
    super::report(&format!(
        "{}, {failed} Storage writes failed on the cut-off disk",
        line.replacen(" kills,", " power cuts,", 1)
    ));
    assert!(failed > 0, "no write ever met the cut-off disk");
}

/// The `Storage` writer with large objects on an ext4 image too small for them, killed at
/// random points: a write refused for want of space changes nothing, acknowledged ones
/// stay whole, and no temporary file is left to keep the disk full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_without_damage_on_local() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = mounted(dir.path(), 6, "full disk") else {
        return;
    };
    let budget = Budget::from_env();
    let (root, log) = (disk.at.join("data"), dir.path().join("writer.log"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(budget.seed ^ 0x6675_6c6c);
    let (mut checker, mut state, mut refused) = (Checker::default(), State::new(), 0);
    // About 4 MiB are free on this image; a ballast beside the root leaves 2 for objects
    // of 0.5 to 2 MiB and their temporary copies, so most puts find it full.
    std::fs::write(disk.at.join("ballast"), vec![1u8; 2 << 20]).unwrap();
    let storage = open(&root);
    let too_big = Tag::new("crash/k0", 0, 3 << 20);
    let key = storage.key("crash/k0").unwrap();
    let err = storage.put(&key, too_big.body()).await.unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    drop(storage);
    let context = "a put larger than the free space";
    checker
        .check(&root, &super::Expect::exactly(&state, 0), context)
        .await;
    for round in 0..budget.of(15) {
        let mut child = spawn(&root, &log, budget.seed, round, false, true);
        tokio::time::sleep(Duration::from_millis(10) + delay(&mut rng, 400)).await;
        child.kill();
        checker.tally.kills += 1;
        let log = std::fs::read_to_string(&log).unwrap();
        refused += log.matches("\nerr ").count();
        let (expect, _) = replay(&state, &log, OnError::NoEffect);
        let context = format!("full disk, seed {}, round {round}", budget.seed);
        state = checker.check(&root, &expect, &context).await;
    }
    verify_cli(&root, dir.path(), "full disk, at the end");
    super::report(&format!(
        "{}, {refused} writes refused for want of space",
        checker.tally.line("local, full disk")
    ));
    assert!(refused > 0, "no write ever found the disk full");
}
