//! The `delete` cases: delete.

use maskstore_backends::{Error, Storage};

use super::{data, key, listed, put};

/// After delete, get is NotFound.
pub async fn delete_then_get_is_not_found(s: Storage) {
    let k = put(&s, "d.bin", "x").await;
    s.delete(&k).await.unwrap();
    assert_err!(s.get(&k).await, Error::NotFound { .. });
}

/// Deleting a key that does not exist succeeds (the rule on every backend).
pub async fn delete_of_missing_key_is_ok(s: Storage) {
    s.delete(&key(&s, "never-written")).await.unwrap();
    let k = put(&s, "twice.bin", "x").await;
    s.delete(&k).await.unwrap();
    s.delete(&k).await.unwrap();
}

/// delete_many removes every key given.
pub async fn delete_many_removes_every_key(s: Storage) {
    let mut keys = Vec::new();
    for i in 0..25 {
        keys.push(put(&s, &format!("batch/{i}.bin"), "x").await);
    }
    s.delete_many(&keys).await.unwrap();
    assert!(listed(&s, None).await.is_empty());
}

/// delete_many with keys that do not exist succeeds and removes the rest.
pub async fn delete_many_with_missing_keys_is_ok(s: Storage) {
    let present = put(&s, "p.bin", "x").await;
    s.delete_many(&[key(&s, "m1"), present.clone(), key(&s, "m2")])
        .await
        .unwrap();
    assert!(!s.exists(&present).await.unwrap());
}

/// Deleting one key leaves its neighbours alone.
pub async fn delete_leaves_siblings_intact(s: Storage) {
    let a = put(&s, "sib/a.bin", "a").await;
    let b = put(&s, "sib/b.bin", "b").await;
    s.delete(&a).await.unwrap();
    assert_eq!(data(&s, &b).await, "b");
}

/// Deleting a folder's name deletes nothing below it.
pub async fn delete_of_a_folder_name_deletes_nothing(s: Storage) {
    let child = put(&s, "folder/child.bin", "x").await;
    s.delete(&key(&s, "folder")).await.unwrap();
    assert_eq!(data(&s, &child).await, "x");
}
