//! Crash consistency of the local provider (issue 29): writers on a local root with
//! `fsync = true` are killed with SIGKILL at random points, hundreds of times, and after
//! each kill the store is opened again and checked:
//!
//! - every acknowledged write is there, readable whole and verified against its checksum;
//! - every key holds a complete version, the one it had before the interrupted operation
//!   or the one that operation wrote, never a mix (each body names its key and version,
//!   is regenerated from them and ends in its own checksum, see [`Tag`]);
//! - no temporary file survives the open's cleanup, and nothing but the expected keys is
//!   listed; `maskstore verify` finds every object verified.
//!
//! Writers: [`child`] (a `Storage` doing puts, copies, renames and deletes, in this test
//! binary started again with [`CHILD_ENV`] set), `maskstore put`, `maskstore sync` (local to
//! local) and `maskstore serve` answering signed PUTs ([`writers`]). "Acknowledged" means the
//! writer told the test before the kill: the child's flushed log line, exit 0, HTTP 200.
//! [`harder`] adds a power cut (an ext4 image shut down under a live writer, which loses
//! whatever was not fsynced and fails later writes with EIO) and a full disk, where the
//! machine allows mounting.
//!
//! The seed is printed; under `CI=true` it is fixed and the budget is the CI one (see
//! [`Budget`]). `MASKSTORE_CRASH_SEED` and `MASKSTORE_CRASH_KILLS` override both
//! (`scripts/soak` runs it unbounded).

mod child;
mod harder;
mod writers;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use maskstore_backends::Storage;
use maskstore_core::Config;

use crate::support::{maskstore, text, vars};

/// Set in the environment of this test binary started again as a `Storage` writer.
const CHILD_ENV: &str = "MASKSTORE_CRASH_CHILD";

/// The keys the writers use, below the `mask/` prefix: some nested, so that writes create
/// folders and deletes and renames prune them; none is a folder of another.
const KEYS: [&str; 6] = [
    "crash/k0",
    "crash/k1",
    "crash/a/k2",
    "crash/a/b/k3",
    "crash/c/k4",
    "crash/d/e/f/k5",
];

/// A version of an object: the key that first wrote it, a number unique in the run, and
/// its length. Its body (see [`Tag::body`]) is derived from these alone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tag {
    origin: String,
    version: u64,
    len: usize,
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{} ({} bytes)", self.origin, self.version, self.len)
    }
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Tag {
    fn new(origin: &str, version: u64, len: usize) -> Tag {
        Tag {
            origin: origin.to_string(),
            version,
            len,
        }
    }

    fn header(&self) -> String {
        format!("crash29 {} {} {}\n", self.origin, self.version, self.len)
    }

    /// The body: a header naming the tag, filler from a generator seeded by it, and the
    /// FNV-1a of everything before as the last 8 bytes.
    pub fn body(&self) -> Vec<u8> {
        let mut out = self.header().into_bytes();
        let len = self.len.max(out.len() + 8);
        let mut state = fnv64(&out) | 1;
        while out.len() < len - 8 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend_from_slice(&state.to_le_bytes()[..(len - 8 - out.len()).min(8)]);
        }
        let sum = fnv64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// The tag whose body `bytes` is exactly; `None` for anything else (a torn object).
    pub fn of(bytes: &[u8]) -> Option<Tag> {
        let end = bytes.iter().take(200).position(|b| *b == b'\n')?;
        let header = std::str::from_utf8(&bytes[..end]).ok()?;
        let mut words = header.split(' ');
        if words.next()? != "crash29" {
            return None;
        }
        let tag = Tag::new(
            words.next()?,
            words.next()?.parse().ok()?,
            words.next()?.parse().ok()?,
        );
        (tag.body() == bytes).then_some(tag)
    }
}

/// What the store holds: key (below `mask/`) to version.
pub type State = BTreeMap<String, Tag>;

/// What a check after a kill accepts: per key, each version it may hold (`None`: absent),
/// and versions that must be found at one of two keys (an interrupted rename).
#[derive(Debug, Default)]
pub struct Expect {
    allowed: BTreeMap<String, BTreeSet<Option<Tag>>>,
    survivors: Vec<(Tag, String, String)>,
    /// Acknowledged writes this check covers.
    acknowledged: u64,
}

impl Expect {
    /// Exactly `state`.
    pub fn exactly(state: &State, acknowledged: u64) -> Expect {
        let mut expect = Expect {
            acknowledged,
            ..Expect::default()
        };
        expect.allow_state(state);
        expect
    }

    /// Also accepts every key as `state` has it.
    pub fn allow_state(&mut self, state: &State) {
        for key in KEYS {
            self.allow(key, state.get(key).cloned());
        }
    }

    pub fn allow(&mut self, key: &str, version: Option<Tag>) {
        self.allowed
            .entry(key.to_string())
            .or_default()
            .insert(version);
    }

    /// The version `tag` must be at `from` or at `to` (a rename was interrupted).
    pub fn survives(&mut self, tag: Tag, from: &str, to: &str) {
        self.survivors.push((tag, from.to_string(), to.to_string()));
    }
}

/// Counts over a whole run, printed at the end.
#[derive(Debug, Default)]
pub struct Tally {
    pub kills: u64,
    pub acknowledged: u64,
    pub lost: u64,
    pub torn: u64,
    pub temporaries: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.kills += other.kills;
        self.acknowledged += other.acknowledged;
        self.lost += other.lost;
        self.torn += other.torn;
        self.temporaries += other.temporaries;
    }

    fn line(&self, label: &str) -> String {
        format!(
            "crash[{label}]: {} kills, {} acknowledged writes checked, {} lost, {} torn, {} \
             temporaries left",
            self.kills, self.acknowledged, self.lost, self.torn, self.temporaries
        )
    }
}

/// The run's seed and how many kills each writer gets.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub seed: u64,
    /// Kills of the `Storage` writer; the others get a fraction (see [`Budget::of`]).
    pub kills: u64,
}

impl Budget {
    fn from_env() -> Budget {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        Budget {
            seed: number("MASKSTORE_CRASH_SEED").unwrap_or(if ci {
                29
            } else {
                rand::random::<u64>() % 1_000_000
            }),
            kills: number("MASKSTORE_CRASH_KILLS").unwrap_or(150),
        }
    }

    /// `share` percent of the budget, at least 1.
    pub fn of(&self, share: u64) -> u64 {
        (self.kills * share / 100).max(1)
    }
}

/// The local provider's storage on `root`, durable: opening it runs the cleanup of
/// temporary files a killed writer left.
pub fn open(root: &Path) -> Storage {
    Storage::connect(&Config::local(root).with_fsync(true)).unwrap()
}

/// The environment of `maskstore` commands on `root`.
pub fn cli_vars(root: &Path) -> Vec<(String, String)> {
    vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "local"),
        ("APP_OBJECT_STORAGE__ROOT", root.to_str().unwrap()),
        ("APP_OBJECT_STORAGE__FSYNC", "true"),
    ])
}

/// Evicts `root`'s files from the page cache (clean pages only; written-back data is
/// then read from the disk), so a check reads what the disk holds where it can.
fn drop_cached(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => drop_cached(&path),
            Ok(t) if t.is_file() => {
                if let Ok(file) = std::fs::File::open(&path) {
                    let _ = nix::fcntl::posix_fadvise(
                        &file,
                        0,
                        0,
                        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                    );
                }
            }
            _ => {}
        }
    }
}

/// Checks a root after each kill, remembering which version each object was verified to
/// hold under which etag: an object whose etag has not changed since (the local etag
/// covers inode, mtime, size and the write's generation) is not read again, which keeps a
/// round's cost to what the round wrote.
#[derive(Debug, Default)]
pub struct Checker {
    pub tally: Tally,
    verified: BTreeMap<String, (String, Tag)>,
    /// Every object is read at every check, whatever its etag (after a power cut the etag's
    /// metadata can survive while the data did not).
    rereading: bool,
}

impl Checker {
    /// A checker that reads every object at every check.
    pub fn rereading() -> Checker {
        Checker {
            rereading: true,
            ..Checker::default()
        }
    }

    /// Opens the store on `root` again and checks it against `expect`; returns the state
    /// found. Panics naming the first loss, torn object or leftover temporary file.
    pub async fn check(&mut self, root: &Path, expect: &Expect, context: &str) -> State {
        drop_cached(root);
        let storage = open(root);
        let temps: Vec<_> = std::fs::read_dir(root.join(".maskstore/tmp"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        self.tally.temporaries += temps.len() as u64;
        assert!(
            temps.is_empty(),
            "{context}: temporary files survived the open's cleanup: {temps:?}"
        );
        let listed: Vec<_> = storage.list(None).unwrap().try_collect().await.unwrap();
        let mut found = State::new();
        for info in listed {
            let name = info.key.as_str().trim_start_matches("mask/").to_string();
            assert!(
                KEYS.contains(&name.as_str()),
                "{context}: a stray object {name:?} is listed"
            );
            let etag = info.etag.clone().unwrap_or_default();
            let tag = match self.verified.get(&name) {
                Some((seen, tag)) if *seen == etag && !etag.is_empty() && !self.rereading => {
                    tag.clone()
                }
                _ => self.read(&storage, &name, context).await,
            };
            self.verified.insert(name.clone(), (etag, tag.clone()));
            found.insert(name, tag);
        }
        compare(&found, expect, &mut self.tally, context);
        self.tally.acknowledged += expect.acknowledged;
        found
    }

    /// Reads `name` whole, verified against its checksum, and names its version.
    async fn read(&mut self, storage: &Storage, name: &str, context: &str) -> Tag {
        let key = storage.key(name).unwrap();
        let object = storage.get(&key).await.unwrap_or_else(|e| {
            panic!("{context}: {name} does not read whole against its checksum: {e}")
        });
        let Some(tag) = Tag::of(&object.data) else {
            self.tally.torn += 1;
            panic!(
                "{context}: {name} is torn: {} bytes, starting {:?}",
                object.data.len(),
                String::from_utf8_lossy(&object.data[..object.data.len().min(60)])
            );
        };
        assert!(
            object.info.checksum.is_some(),
            "{context}: {name} ({tag}) has no checksum"
        );
        tag
    }
}

fn compare(found: &State, expect: &Expect, tally: &mut Tally, context: &str) {
    for (key, allowed) in &expect.allowed {
        let holds = found.get(key).cloned();
        if !allowed.contains(&holds) {
            tally.lost += 1;
            let shown = |v: &Option<Tag>| v.as_ref().map_or("nothing".into(), Tag::to_string);
            panic!(
                "{context}: {key} holds {}, expected one of [{}]",
                shown(&holds),
                allowed.iter().map(shown).collect::<Vec<_>>().join(", ")
            );
        }
    }
    for (tag, from, to) in &expect.survivors {
        if found.get(from) != Some(tag) && found.get(to) != Some(tag) {
            tally.lost += 1;
            panic!("{context}: {tag}, being renamed from {from} to {to}, is at neither");
        }
    }
}

/// `maskstore verify` on `root`: every object verified, none unverified, corrupt or unread.
pub fn verify_cli(root: &Path, dir: &Path, context: &str) {
    let out = maskstore(dir, &["verify"], &cli_vars(root));
    let stdout = text(&out.stdout);
    assert!(
        out.status.success()
            && stdout
                .contains(" verified, 0 unverified (no checksum), 0 corrupt, 0 could not be read"),
        "{context}: maskstore verify: {stdout}{}",
        text(&out.stderr)
    );
}

/// Prints `line` straight to the process's stderr, past libtest's capture, so CI's log
/// (`cargo test` without `--nocapture`) shows the crash lines beside the contract lines.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A fresh folder for one writer's run.
pub fn workdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    (dir, root)
}

/// A random delay in `0..max_ms` milliseconds, from `rng`.
pub fn delay(rng: &mut impl rand::Rng, max_ms: u64) -> std::time::Duration {
    std::time::Duration::from_micros(rng.random_range(0..max_ms * 1000))
}

/// Every writer killed at random points; one line per writer and the total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_lose_no_acknowledged_write_on_local() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child::run(&spec).await;
    }
    let budget = Budget::from_env();
    report(&format!(
        "crash[local]: seed {} (MASKSTORE_CRASH_SEED), {} kills of the Storage writer \
         (MASKSTORE_CRASH_KILLS)",
        budget.seed, budget.kills
    ));
    let (mut total, started) = (Tally::default(), std::time::Instant::now());
    for label in ["Storage", "put", "sync", "gateway"] {
        let section = std::time::Instant::now();
        let tally = match label {
            "Storage" => child::storage_writer(budget).await,
            "put" => writers::cli_put(budget).await,
            "sync" => writers::cli_sync(budget).await,
            _ => writers::gateway(budget).await,
        };
        let took = section.elapsed().as_secs_f64();
        report(&format!(
            "{} ({took:.1} s)",
            tally.line(&format!("local, {label}"))
        ));
        total.add(&tally);
    }
    let took = started.elapsed().as_secs_f64();
    report(&format!("{} ({took:.1} s)", total.line("local")));
    assert!(
        total.kills >= budget.kills * 2,
        "only {} kills landed while a writer ran",
        total.kills
    );
}
