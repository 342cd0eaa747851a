//! The `concurrency` cases: concurrency.
//!
//! Each case waits for every task it started before it asserts anything, and keeps them in
//! a [`JoinSet`], so a case that fails or is cancelled leaves no writer running into the
//! cleanup that follows.

use bytes::Bytes;
use tokio::task::JoinSet;

use maskstore_backends::Storage;
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
