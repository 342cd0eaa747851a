//! The `copy` cases: copy.

use maskstore_backends::{Error, Storage, WriteOptions};

use super::{data, key, put};

/// Copy duplicates content, content type and metadata; the source stays.
pub async fn copy_duplicates_content_and_attributes(s: Storage) {
    let from = key(&s, "src.png");
    let options = WriteOptions::content_type("image/png").with_metadata("annotator", "lee");
    s.put_with(&from, "pixels", &options).await.unwrap();
    let to = key(&s, "dst/copy.png");
    s.copy(&from, &to).await.unwrap();
    let copy = s.get(&to).await.unwrap();
    assert_eq!(copy.data, "pixels");
    assert_eq!(copy.info.content_type.as_deref(), Some("image/png"));
    assert_eq!(copy.info.metadata, options.metadata);
    assert_eq!(data(&s, &from).await, "pixels");
}

/// Copy replaces whatever was at the destination.
pub async fn copy_overwrites_the_destination(s: Storage) {
    let from = put(&s, "src.bin", "new").await;
    let to = put(&s, "dst.bin", "old and longer").await;
    s.copy(&from, &to).await.unwrap();
    assert_eq!(data(&s, &to).await, "new");
}

/// Copy from a missing source is NotFound and creates nothing.
pub async fn copy_from_missing_source_is_not_found(s: Storage) {
    let to = key(&s, "dst.bin");
    assert_err!(
        s.copy(&key(&s, "missing"), &to).await,
        Error::NotFound { .. }
    );
    assert!(!s.exists(&to).await.unwrap());
}

/// copy_if_absent to a new key copies.
pub async fn copy_if_absent_to_a_new_key_copies(s: Storage) {
    let from = put(&s, "src.bin", "content").await;
    let to = key(&s, "fresh.bin");
    s.copy_if_absent(&from, &to).await.unwrap();
    assert_eq!(data(&s, &to).await, "content");
}

/// copy_if_absent to an existing key is AlreadyExists and changes nothing.
pub async fn copy_if_absent_to_an_existing_key_is_already_exists(s: Storage) {
    let from = put(&s, "src.bin", "new").await;
    let to = put(&s, "taken.bin", "old").await;
    assert_err!(
        s.copy_if_absent(&from, &to).await,
        Error::AlreadyExists { .. }
    );
    assert_eq!(data(&s, &to).await, "old");
}

/// Copying an object onto itself keeps it; create-only finds the key taken; a missing key
/// is NotFound.
pub async fn copy_onto_itself_keeps_the_object(s: Storage) {
    let k = put(&s, "self.bin", "kept").await;
    s.copy(&k, &k).await.unwrap();
    assert_eq!(data(&s, &k).await, "kept");
    assert_err!(s.copy_if_absent(&k, &k).await, Error::AlreadyExists { .. });
    assert_eq!(data(&s, &k).await, "kept");
    let missing = key(&s, "missing.bin");
    assert_err!(s.copy(&missing, &missing).await, Error::NotFound { .. });
}
