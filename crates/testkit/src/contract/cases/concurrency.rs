//! The `concurrency` cases: concurrency.
//!
//! Each case waits for every task it started before it asserts anything, and keeps them in
//! a [`JoinSet`], so a case that fails or is cancelled leaves no writer running into the
//! cleanup that follows.

use bytes::Bytes;
use tokio::task::JoinSet;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use maskstore_backends::{Error, Storage, WriteMode, WriteOptions};
use maskstore_core::ObjectKey;

use super::{data, key};

/// 50 tasks writing and reading one key: every read is one complete written version.
pub async fn fifty_writers_and_readers_see_only_whole_versions(s: Storage) {
    let k = key(&s, "contended.bin");
    let version = |i: u8| Bytes::from(vec![i; 256 * 1024]);
    s.put(&k, version(0)).await.unwrap();
    let mut tasks = JoinSet::new();
    for i in 1..=50u8 {
        let (s, k) = (s.clone(), k.clone());
        tasks.spawn(async move {
            if i % 2 == 0 {
                s.put(&k, version(i)).await.map(|_| None)
            } else {
                s.get(&k).await.map(|o| Some(o.data))
            }
        });
    }
    for outcome in tasks.join_all().await {
        if let Some(read) = outcome.unwrap() {
            assert_eq!(read.len(), 256 * 1024, "torn read: wrong length");
            let first = read[0];
            assert!(first % 2 == 0, "read a version nobody wrote: {first}");
            assert!(
                read.iter().all(|b| *b == first),
                "torn read: mixed versions"
            );
        }
    }
}

/// 100 tasks (50 writing versions of different sizes, 50 reading) on one key: every read
/// is exactly one written version, its length matching its content.
pub async fn hundred_writers_and_readers_of_different_sizes_see_whole_versions(s: Storage) {
    let k = key(&s, "contended-sizes.bin");
    let version = |i: u8| Bytes::from(vec![i; 64 * 1024 + usize::from(i) * 1024]);
    s.put(&k, version(0)).await.unwrap();
    let mut tasks = JoinSet::new();
    for i in 1..=100u8 {
        let (s, k) = (s.clone(), k.clone());
        tasks.spawn(async move {
            if i % 2 == 0 {
                s.put(&k, version(i)).await.map(|_| None)
            } else {
                s.get(&k).await.map(|o| Some(o.data))
            }
        });
    }
    let mut reads = 0;
    for outcome in tasks.join_all().await {
        if let Some(read) = outcome.unwrap() {
            reads += 1;
            let first = read[0];
            assert!(first % 2 == 0, "read a version nobody wrote: {first}");
            assert_eq!(
                read.len(),
                version(first).len(),
                "torn read: length of another version"
            );
            assert!(
                read.iter().all(|b| *b == first),
                "torn read: mixed versions"
            );
        }
    }
    assert_eq!(reads, 50);
}

/// Many concurrent puts of distinct keys all land.
pub async fn concurrent_puts_of_distinct_keys_all_land(s: Storage) {
    let keys: Vec<ObjectKey> = (0..40).map(|i| key(&s, &format!("par/{i}.bin"))).collect();
    let mut tasks = JoinSet::new();
    for k in &keys {
        let (s, k) = (s.clone(), k.clone());
        tasks.spawn(async move { s.put(&k, k.to_string()).await });
    }
    for outcome in tasks.join_all().await {
        outcome.unwrap();
    }
    for k in &keys {
        assert_eq!(data(&s, k).await, k.to_string());
    }
}

/// One acknowledged change of the contended key: when it ran, and the etag it wrote.
#[derive(Debug, Clone)]
struct Change {
    start: Instant,
    end: Instant,
    /// `None` for a delete.
    wrote: Option<String>,
}

/// A successful if-match update: when it ran, and the version it named and when that
/// version was seen current.
#[derive(Debug)]
struct Update {
    named: String,
    seen_at: Instant,
    start: Instant,
}

/// 50 tasks mixing overwrites, if-match updates and deletes of one key never lose an
/// acknowledged write: no two successful updates name the same version, and no change
/// acknowledged entirely between seeing a version and an update naming it lets that update
/// succeed (the update would have replaced a version other than the one it named).
pub async fn fifty_tasks_mixing_overwrite_update_and_delete_never_lose_a_write(s: Storage) {
    let k = key(&s, "linearisable.bin");
    let changes = Arc::new(Mutex::new(Vec::<Change>::new()));
    let updates = Arc::new(Mutex::new(Vec::<Update>::new()));
    let tasks: Vec<_> = (0..50usize)
        .map(|t| {
            let (s, k) = (s.clone(), k.clone());
            let (changes, updates) = (Arc::clone(&changes), Arc::clone(&updates));
            tokio::spawn(async move {
                for i in 0..8usize {
                    // Every body differs, so every version has its own etag on every backend.
                    let body = format!("task {t} step {i}");
                    match (t + i) % 4 {
                        0 => {
                            let start = Instant::now();
                            let etag = s.put(&k, body).await.unwrap().etag.unwrap();
                            let end = Instant::now();
                            changes.lock().unwrap().push(Change {
                                start,
                                end,
                                wrote: Some(etag),
                            });
                        }
                        3 => {
                            let start = Instant::now();
                            s.delete(&k).await.unwrap();
                            let end = Instant::now();
                            changes.lock().unwrap().push(Change {
                                start,
                                end,
                                wrote: None,
                            });
                        }
                        _ => {
                            let Ok(seen) = s.head(&k).await else { continue };
                            let seen_at = Instant::now();
                            let named = seen.etag.unwrap();
                            let options = WriteOptions::default()
                                .with_mode(WriteMode::IfMatch(named.clone()));
                            let start = Instant::now();
                            match s.put_with(&k, body, &options).await {
                                Ok(out) => {
                                    let end = Instant::now();
                                    changes.lock().unwrap().push(Change {
                                        start,
                                        end,
                                        wrote: out.etag,
                                    });
                                    updates.lock().unwrap().push(Update {
                                        named,
                                        seen_at,
                                        start,
                                    });
                                }
                                Err(Error::Precondition { .. }) => {}
                                Err(e) => panic!("update: {e}"),
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let changes = std::mem::take(&mut *changes.lock().unwrap());
    let updates = std::mem::take(&mut *updates.lock().unwrap());
    let mut named: Vec<&str> = updates.iter().map(|u| u.named.as_str()).collect();
    let succeeded = named.len();
    named.sort_unstable();
    named.dedup();
    assert_eq!(
        named.len(),
        succeeded,
        "two updates replaced the same version"
    );
    for update in updates.iter() {
        let between = changes
            .iter()
            .find(|c| c.start > update.seen_at && c.end < update.start);
        assert!(
            between.is_none(),
            "an update naming {} succeeded although {between:?} was acknowledged after that \
             version was seen and before the update began",
            update.named
        );
    }
    // The key ends as the last acknowledged write left it, readable whole.
    if let Ok(object) = s.get(&k).await {
        let body = String::from_utf8(object.data.to_vec()).unwrap();
        assert!(body.starts_with("task "), "{body}");
        let etag = object.info.etag.unwrap();
        assert!(
            changes
                .iter()
                .any(|c| c.wrote.as_deref() == Some(etag.as_str())),
            "the final version {etag} was never acknowledged"
        );
    }
}
