//! The `list` cases: list.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use futures::TryStreamExt;
use maskstore_backends::{Error, Storage};
use maskstore_core::ObjectKey;

use super::{counted, key, listed, pattern, put};

/// list returns every key below the prefix, at any depth, and nothing else.
pub async fn list_returns_everything_under_the_prefix(s: Storage) {
    let mut expected = BTreeSet::new();
    for rel in ["a.bin", "x/b.bin", "x/y/c.bin", "x/y/z/d.bin"] {
        expected.insert(put(&s, rel, "x").await.to_string());
    }
    let got: BTreeSet<String> = listed(&s, None).await.into_iter().collect();
    assert_eq!(got, expected);
}

/// 1,100 keys (more than one S3 page) list completely, each once.
pub async fn list_of_1100_keys_is_complete_without_duplicates(s: Storage) {
    let keys: Vec<ObjectKey> = (0..1100)
        .map(|i| key(&s, &format!("many/{:02}/{i:05}.bin", i % 7)))
        .collect();
    for chunk in keys.chunks(32) {
        let puts = chunk.iter().map(|k| {
            let (s, k) = (s.clone(), k.clone());
            tokio::spawn(async move { s.put(&k, "x").await })
        });
        for put in futures::future::join_all(puts).await {
            put.unwrap().unwrap();
        }
    }
    let got = listed(&s, None).await;
    assert_eq!(got.len(), 1100, "listed {} keys", got.len());
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), 1100, "duplicates in the listing");
    let expected: BTreeSet<String> = keys.iter().map(ToString::to_string).collect();
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected);
}

/// Listed entries carry size and etag.
pub async fn list_reports_sizes_and_etags(s: Storage) {
    let k = put(&s, "sized.bin", pattern(777, 2)).await;
    let items: Vec<_> = s.list(None).unwrap().try_collect().await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].key, k);
    assert_eq!(items[0].size, 777);
    assert!(items[0].etag.is_some());
}

/// list_with_delimiter returns the objects at one level and the folders below it.
pub async fn list_with_delimiter_returns_objects_and_folders(s: Storage) {
    let top = put(&s, "top.bin", "x").await;
    put(&s, "f1/a.bin", "x").await;
    put(&s, "f1/deep/b.bin", "x").await;
    put(&s, "f2/c.bin", "x").await;
    let level = s.list_with_delimiter(None).await.unwrap();
    let objects: Vec<_> = level.objects.iter().map(|o| o.key.clone()).collect();
    assert_eq!(objects, vec![top]);
    let p = s.prefix().as_str();
    assert_eq!(level.prefixes, vec![format!("{p}f1/"), format!("{p}f2/")]);
    let inner = s
        .list_with_delimiter(Some(&format!("{p}f1/")))
        .await
        .unwrap();
    assert_eq!(inner.objects.len(), 1);
    assert_eq!(inner.prefixes, vec![format!("{p}f1/deep/")]);
}

/// list_with_delimiter sorts objects and folders by key bytes.
pub async fn list_with_delimiter_is_sorted_by_key(s: Storage) {
    let names = ["b", "a", "Z", "a-b", "a0", "é", "_", "10", "9"];
    for name in names {
        put(&s, name, "x").await;
        put(&s, &format!("{name}-dir/x"), "x").await;
    }
    let level = s.list_with_delimiter(None).await.unwrap();
    let keys: Vec<String> = level.objects.iter().map(|o| o.key.to_string()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys.len(), names.len());
    assert_eq!(keys, sorted);
    let mut sorted_prefixes = level.prefixes.clone();
    sorted_prefixes.sort();
    assert_eq!(level.prefixes.len(), names.len());
    assert_eq!(level.prefixes, sorted_prefixes);
}

/// A prefix names whole segments: `a/b` lists `a/b/…` but never `a/bc`.
pub async fn list_prefix_matches_whole_segments(s: Storage) {
    let inside = put(&s, "a/b/in.bin", "x").await;
    put(&s, "a/bc/out.bin", "x").await;
    put(&s, "a/b.bin", "x").await;
    let p = s.prefix().as_str();
    for prefix in [format!("{p}a/b"), format!("{p}a/b/")] {
        assert_eq!(
            listed(&s, Some(&prefix)).await,
            vec![inside.to_string()],
            "prefix {prefix}"
        );
    }
}

/// Listing a prefix that holds nothing yields nothing.
pub async fn list_of_missing_prefix_is_empty(s: Storage) {
    put(&s, "present/x.bin", "x").await;
    let p = s.prefix().as_str();
    assert!(listed(&s, Some(&format!("{p}absent/"))).await.is_empty());
}

/// list_with_delimiter of a prefix that holds nothing is empty.
pub async fn list_with_delimiter_of_missing_prefix_is_empty(s: Storage) {
    put(&s, "present/x.bin", "x").await;
    let p = s.prefix().as_str();
    let level = s
        .list_with_delimiter(Some(&format!("{p}absent/")))
        .await
        .unwrap();
    assert!(
        level.objects.is_empty() && level.prefixes.is_empty(),
        "{level:?}"
    );
}

/// Deleted keys are gone from listings at once.
pub async fn list_after_delete_omits_deleted_keys(s: Storage) {
    let keep = put(&s, "keep.bin", "x").await;
    let gone = put(&s, "gone.bin", "x").await;
    s.delete(&gone).await.unwrap();
    assert_eq!(listed(&s, None).await, vec![keep.to_string()]);
}

/// A folder whose objects were all deleted no longer appears as a folder.
pub async fn list_after_delete_shows_no_empty_folder(s: Storage) {
    let a = put(&s, "emptied/deep/a.bin", "x").await;
    let b = put(&s, "emptied/b.bin", "x").await;
    put(&s, "kept/c.bin", "x").await;
    s.delete_many(&[a, b]).await.unwrap();
    let p = s.prefix().as_str();
    let level = s.list_with_delimiter(None).await.unwrap();
    assert_eq!(level.prefixes, vec![format!("{p}kept/")]);
    let inner = s
        .list_with_delimiter(Some(&format!("{p}emptied/")))
        .await
        .unwrap();
    assert!(
        inner.prefixes.is_empty() && inner.objects.is_empty(),
        "{inner:?}"
    );
}

/// A listing prefix outside the storage's prefix is refused before any I/O.
pub async fn list_outside_the_prefix_is_refused(s: Storage) {
    let (s, calls) = counted(&s);
    assert_err!(
        s.list(Some("elsewhere/")).map(drop),
        Error::InvalidKey { .. }
    );
    assert_err!(
        s.list_with_delimiter(Some("elsewhere/")).await,
        Error::InvalidKey { .. }
    );
    assert_err!(
        s.list(Some("mask/../x/")).map(drop),
        Error::InvalidKey { .. }
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
