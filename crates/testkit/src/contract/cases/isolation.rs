//! The `isolation` cases: isolation.

use maskstore_backends::{Error, Storage};

use super::{data, listed, put};

/// Two storages with different prefixes over one backend never see each other's keys.
pub async fn storages_with_different_prefixes_never_see_each_other(s: Storage) {
    let left = s.scoped("left").unwrap();
    let right = s.scoped("right").unwrap();
    let l = put(&left, "same-name.bin", "left").await;
    let r = put(&right, "same-name.bin", "right").await;
    assert_ne!(l, r);
    assert_eq!(listed(&left, None).await, vec![l.to_string()]);
    assert_eq!(listed(&right, None).await, vec![r.to_string()]);
    assert_err!(left.get(&r).await, Error::InvalidKey { .. });
    assert_err!(right.delete(&l).await, Error::InvalidKey { .. });
    assert_eq!(data(&left, &l).await, "left");
}

/// A storage scoped below another refuses the outer one's keys.
pub async fn scoped_storage_refuses_its_parents_keys(s: Storage) {
    let outer = put(&s, "outer.bin", "x").await;
    let inner = s.scoped("inner").unwrap();
    assert_err!(inner.get(&outer).await, Error::InvalidKey { .. });
    assert!(listed(&inner, None).await.is_empty());
}
