//! The `rename` cases: rename.

use maskstore_backends::{Error, Storage, WriteOptions};

use super::{data, key, put};

/// Rename moves content and attributes; the source is gone.
pub async fn rename_moves_the_object(s: Storage) {
    let from = key(&s, "before/seg.dcm");
    s.put_with(
        &from,
        "dicom",
        &WriteOptions::content_type("application/dicom"),
    )
    .await
    .unwrap();
    let to = key(&s, "after/seg.dcm");
    s.rename(&from, &to).await.unwrap();
    assert_err!(s.get(&from).await, Error::NotFound { .. });
    let moved = s.get(&to).await.unwrap();
    assert_eq!(moved.data, "dicom");
    assert_eq!(
        moved.info.content_type.as_deref(),
        Some("application/dicom")
    );
}

/// Rename replaces whatever was at the destination.
pub async fn rename_overwrites_the_destination(s: Storage) {
    let from = put(&s, "a.bin", "winner").await;
    let to = put(&s, "b.bin", "loser").await;
    s.rename(&from, &to).await.unwrap();
    assert_eq!(data(&s, &to).await, "winner");
    assert!(!s.exists(&from).await.unwrap());
}

/// Rename of a missing source is NotFound and creates nothing.
pub async fn rename_of_missing_source_is_not_found(s: Storage) {
    let to = key(&s, "b.bin");
    assert_err!(
        s.rename(&key(&s, "missing"), &to).await,
        Error::NotFound { .. }
    );
    assert!(!s.exists(&to).await.unwrap());
}

/// rename_if_absent onto an existing key is AlreadyExists and both objects stay.
pub async fn rename_if_absent_to_an_existing_key_keeps_both(s: Storage) {
    let from = put(&s, "a.bin", "a").await;
    let to = put(&s, "b.bin", "b").await;
    assert_err!(
        s.rename_if_absent(&from, &to).await,
        Error::AlreadyExists { .. }
    );
    assert_eq!(data(&s, &from).await, "a");
    assert_eq!(data(&s, &to).await, "b");
    let fresh = key(&s, "c.bin");
    s.rename_if_absent(&from, &fresh).await.unwrap();
    assert!(!s.exists(&from).await.unwrap());
    assert_eq!(data(&s, &fresh).await, "a");
}

/// Renaming an object onto itself keeps it; create-only finds the key taken; a missing
/// key is NotFound.
pub async fn rename_onto_itself_keeps_the_object(s: Storage) {
    let k = put(&s, "self.bin", "kept").await;
    s.rename(&k, &k).await.unwrap();
    assert_eq!(data(&s, &k).await, "kept");
    assert_err!(
        s.rename_if_absent(&k, &k).await,
        Error::AlreadyExists { .. }
    );
    assert_eq!(data(&s, &k).await, "kept");
    let missing = key(&s, "missing.bin");
    assert_err!(s.rename(&missing, &missing).await, Error::NotFound { .. });
}
