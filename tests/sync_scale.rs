//! `sync` for many objects: copies run a bounded number at a time, the plan is decided
//! from both listings sorted on disk (whatever order a provider lists in) while holding a
//! bounded number of entries, a failed copy still holds back every delete, and the report
//! is in key order whatever order copies finish in.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use maskstore::sync::{self, Decision};
use maskstore::{ObjectKey, Storage};
use maskstore_backends::Operation;
use maskstore_backends::layers::{Call, Intercept};
use object_store::ObjectMeta;
use object_store::path::Path as StorePath;

use crate::support::{maskstore, succeeded, text, vars};

/// Counts the writes in flight at once, each held a few milliseconds so they overlap.
#[derive(Debug, Clone, Default)]
struct InFlight {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
}

impl Intercept for InFlight {
    fn name(&self) -> &str {
        "in-flight"
    }

    fn call<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, object_store::Result<T>>,
    ) -> BoxFuture<'a, object_store::Result<T>> {
        if !matches!(call.operation, Operation::Put | Operation::Upload) {
            return run;
        }
        async move {
            let now = self.now.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            self.writes.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            let result = run.await;
            self.now.fetch_sub(1, SeqCst);
            result
        }
        .boxed()
    }
}

/// Lists every object in reverse byte order (as no provider does, and as badly as any).
#[derive(Debug, Clone)]
struct Reversed;

impl Intercept for Reversed {
    fn name(&self) -> &str {
        "reversed"
    }

    fn list(
        &self,
        _prefix: &StorePath,
        list: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        futures::stream::once(async move {
            let mut all: Vec<_> = list.collect().await;
            all.reverse();
            futures::stream::iter(all)
        })
        .flatten()
        .boxed()
    }
}

async fn put_all(storage: &Storage, names: impl IntoIterator<Item = String>) {
    for name in names {
        let key = storage.key(&name).unwrap();
        storage.put(&key, name.clone().into_bytes()).await.unwrap();
    }
}

async fn copy_with(transfers: usize) -> (usize, usize) {
    let from = Storage::memory();
    put_all(&from, (0..40).map(|i| format!("t/{i:02}.png"))).await;
    let watch = InFlight::default();
    let to = Storage::memory().layer(watch.clone());
    let plan = sync::plan(&from, &to, "mask/t", false).await.unwrap();
    let copies = plan.to_copy.into_iter().map(Ok);
    let done: Vec<_> = sync::copy_each(&from, &to, copies, transfers)
        .collect()
        .await;
    assert_eq!(done.len(), 40);
    assert!(done.iter().all(|d| matches!(d, Ok((_, Ok(_))))));
    (watch.most.load(SeqCst), watch.writes.load(SeqCst))
}

#[tokio::test]
async fn copies_run_at_most_transfers_at_once_and_overlap() {
    let (most, writes) = copy_with(4).await;
    assert_eq!(writes, 40);
    assert!(most > 1 && most <= 4, "{most} in flight with --transfers 4");
    let (most, _) = copy_with(1).await;
    assert_eq!(most, 1, "--transfers 1 copies one at a time");
}

/// Keys that byte order and a folder walk order differently ("a.b" < "a/b").
fn names() -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..60 {
        names.push(format!("u/{i:02}/m.png"));
        names.push(format!("u/{i:02}.png"));
        names.push(format!("u/{i:02}-x.png"));
    }
    names
}

/// Both listings out of order, sorted in runs of 7 entries: every decision in key order,
/// the right ones, and never more than the runs' worth of entries held.
#[tokio::test]
async fn the_plan_of_unordered_listings_is_right_in_key_order_and_holds_few_entries() {
    let (from, to) = (Storage::memory(), Storage::memory());
    let names = names();
    put_all(&from, names.iter().skip(30).cloned()).await;
    // The destination holds the first 30 (to delete) and the next 30 (to skip).
    put_all(&to, names.iter().take(60).cloned()).await;
    let from = from.layer(Reversed);
    let to = to.layer(Reversed);
    let mut decisions = Vec::new();
    let totals = sync::decide_each(&from, &to, "mask/u", true, 7, |d| {
        decisions.push(d);
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(
        (totals.source_objects, totals.destination_objects),
        (150, 60)
    );
    let keys: Vec<&ObjectKey> = decisions.iter().map(key_of).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "not in key order");
    let count = |f: fn(&Decision) -> bool| decisions.iter().filter(|d| f(d)).count();
    assert_eq!(count(|d| matches!(d, Decision::Delete { .. })), 30);
    assert_eq!(count(|d| matches!(d, Decision::Skip { .. })), 30);
    assert_eq!(count(|d| matches!(d, Decision::Copy(_))), 120);
    let mut sorted = names.clone();
    sorted.sort();
    let expected: Vec<String> = sorted.iter().map(|n| format!("mask/{n}")).collect();
    let got: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
    assert_eq!(got, expected);
    // 7 per side while listing, then one per run (150 / 7 → 22 runs, 60 / 7 → 9).
    assert!(
        totals.most_held <= 7 + 7 + 22 + 9,
        "{} held",
        totals.most_held
    );
}

fn key_of(decision: &Decision) -> &ObjectKey {
    match decision {
        Decision::Copy(copy) => &copy.key,
        Decision::Skip { key } | Decision::Failed { key, .. } | Decision::Delete { key } => key,
    }
}

fn local_config(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    let config = format!("[object_storage]\nprovider = \"local\"\nroot = \"./{name}\"\n");
    std::fs::write(&path, config).unwrap();
    path.display().to_string()
}

/// Flips one byte of a local object in place, keeping its stored checksum: its copy fails.
fn damage(path: &Path) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, 0).unwrap();
    file.write_all_at(&[byte[0] ^ 1], 0).unwrap();
}

/// Copies running 8 at a time, three of them failing: nothing is deleted, the exit code
/// is 1, the failures are reported in key order and the same on every run.
#[test]
fn a_failed_copy_among_concurrent_ones_deletes_nothing_and_reports_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let env = vars(&[]);
    let (a, b) = (local_config(dir.path(), "a"), local_config(dir.path(), "b"));
    std::fs::write(dir.path().join("f"), "mask bytes").unwrap();
    for i in 0..40 {
        let key = format!("mask/c/{i:02}.png");
        succeeded(&maskstore(
            dir.path(),
            &["--config", &a, "put", "f", &key],
            &env,
        ));
    }
    succeeded(&maskstore(
        dir.path(),
        &["--config", &b, "put", "f", "mask/c/stale.png"],
        &env,
    ));
    for i in ["31", "07", "19"] {
        damage(&dir.path().join(format!("a/mask/c/{i}.png")));
    }
    let sync = &[
        "sync",
        "--from",
        &a,
        "--to",
        &b,
        "--delete",
        "--yes",
        "--force",
        "--transfers",
        "8",
    ];
    let out = maskstore(dir.path(), sync, &env);
    // Its only failures are corrupt sources: exit 6, as `get` and `verify` (issue 31).
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let failed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("failed: "))
        .collect();
    let keys: Vec<&str> = failed
        .iter()
        .map(|l| l.split(": ").nth(1).unwrap())
        .collect();
    assert_eq!(
        keys,
        ["mask/c/07.png", "mask/c/19.png", "mask/c/31.png"],
        "{stderr}"
    );
    assert!(
        stderr.contains("so nothing was deleted (1 to delete"),
        "{stderr}"
    );
    assert!(
        dir.path().join("b/mask/c/stale.png").exists(),
        "deleted despite a failure"
    );
    assert!(text(&out.stdout).contains("copied 37, skipped 0, failed 3, deleted 0"));
    // Again: the same report, byte for byte, whatever order the copies finished in.
    std::fs::remove_dir_all(dir.path().join("b")).unwrap();
    succeeded(&maskstore(
        dir.path(),
        &["--config", &b, "put", "f", "mask/c/stale.png"],
        &env,
    ));
    let again = maskstore(dir.path(), sync, &env);
    assert_eq!((again.stdout, again.stderr), (out.stdout, out.stderr));
}

#[test]
fn transfers_out_of_range_are_refused_by_flag_and_by_config() {
    let dir = tempfile::tempdir().unwrap();
    let env = vars(&[]);
    let (a, b) = (local_config(dir.path(), "a"), local_config(dir.path(), "b"));
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    for n in ["0", "257"] {
        let out = maskstore(
            dir.path(),
            &["sync", "--from", &a, "--to", &b, "--transfers", n],
            &env,
        );
        assert_eq!(out.status.code(), Some(2), "{n}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("--transfers"),
            "{}",
            text(&out.stderr)
        );
    }
    let env = vars(&[("APP_OBJECT_STORAGE__TRANSFERS", "0")]);
    let out = maskstore(dir.path(), &["sync", "--from", &a, "--to", &b], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("object_storage.transfers")
            && text(&out.stderr).contains("is 0"),
        "{}",
        text(&out.stderr)
    );
}

/// Lists everything twice (a server repeating its pages).
#[derive(Debug, Clone)]
struct Twice;

impl Intercept for Twice {
    fn name(&self) -> &str {
        "twice"
    }

    fn list(
        &self,
        _prefix: &StorePath,
        list: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        futures::stream::once(async move {
            let once: Vec<_> = list.collect().await;
            let again = once.iter().map(|item| match item {
                Ok(meta) => Ok(meta.clone()),
                Err(e) => Err(object_store::Error::Generic {
                    store: "twice",
                    source: e.to_string().into(),
                }),
            });
            let all: Vec<_> = again.collect::<Vec<_>>().into_iter().chain(once).collect();
            futures::stream::iter(all)
        })
        .flatten()
        .boxed()
    }
}

/// Names listed twice count once, in the totals too: the share --max-delete guards is of
/// the objects there are, not of the entries a repeating server listed (2 of 4 here is
/// half the destination, not a quarter).
#[tokio::test]
async fn names_listed_twice_count_once_in_the_totals_the_delete_guard_uses() {
    let (from, to) = (Storage::memory(), Storage::memory());
    put_all(&from, ["d/a.png", "d/b.png"].map(String::from)).await;
    put_all(
        &to,
        ["d/a.png", "d/b.png", "d/c.png", "d/e.png"].map(String::from),
    )
    .await;
    let (from, to) = (from.layer(Twice), to.layer(Twice));
    let mut deletes = 0;
    let totals = sync::decide_each(&from, &to, "mask/d", true, 3, |d| {
        deletes += usize::from(matches!(d, Decision::Delete { .. }));
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(deletes, 2);
    assert_eq!((totals.source_objects, totals.destination_objects), (2, 4));
}

/// Objects at or above the destination's multipart threshold (256 KiB onto local disk)
/// still copy several at once: each holds what its own upload holds (a 1 MiB object
/// never 40 MiB of the budget), so a bucket of 1 MiB masks is not copied one at a time.
#[tokio::test]
async fn objects_above_the_multipart_threshold_still_copy_several_at_once() {
    let from = Storage::memory();
    for i in 0..12 {
        let key = from.key(&format!("l/{i:02}.bin")).unwrap();
        from.put(&key, vec![i as u8; 1024 * 1024]).await.unwrap();
    }
    let local = maskstore_testkit::temp_dir();
    assert!(local.multipart_threshold() < 1024 * 1024);
    let watch = InFlight::default();
    let to = (*local).clone().layer(watch.clone());
    let plan = sync::plan(&from, &to, "mask/l", false).await.unwrap();
    let copies = plan.to_copy.into_iter().map(Ok);
    let done: Vec<_> = sync::copy_each(&from, &to, copies, 4).collect().await;
    assert!(done.iter().all(|d| matches!(d, Ok((_, Ok(_))))), "{done:?}");
    let most = watch.most.load(SeqCst);
    assert!(most > 1 && most <= 4, "{most} in flight with --transfers 4");
}
