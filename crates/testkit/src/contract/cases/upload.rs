//! The `upload` cases: streaming upload.

use bytes::Bytes;
use futures::StreamExt;
use maskstore_backends::{Storage, WriteOptions};
use sha2::{Digest, Sha256};

use super::{data, key, listed, pattern, put};

/// An upload in progress is not visible: neither get nor list see it.
pub async fn upload_is_invisible_until_finished(s: Storage) {
    let k = key(&s, "up.bin");
    let mut upload = s.upload(&k, &WriteOptions::default()).await.unwrap();
    upload.write(pattern(9 * 1024 * 1024, 4)).await.unwrap();
    assert!(!s.exists(&k).await.unwrap(), "visible before finish");
    assert!(listed(&s, None).await.is_empty(), "listed before finish");
    upload.finish().await.unwrap();
    assert_eq!(s.head(&k).await.unwrap().size, 9 * 1024 * 1024);
}

/// An aborted upload leaves no object behind, and an older version stays intact.
pub async fn aborted_upload_leaves_nothing(s: Storage) {
    let fresh = key(&s, "fresh.bin");
    let mut upload = s.upload(&fresh, &WriteOptions::default()).await.unwrap();
    upload.write(pattern(9 * 1024 * 1024, 5)).await.unwrap();
    upload.abort().await.unwrap();
    assert!(!s.exists(&fresh).await.unwrap());

    let existing = put(&s, "existing.bin", "previous").await;
    let mut upload = s.upload(&existing, &WriteOptions::default()).await.unwrap();
    upload.write(pattern(1024, 6)).await.unwrap();
    upload.abort().await.unwrap();
    assert_eq!(data(&s, &existing).await, "previous");
    assert_eq!(listed(&s, None).await, vec![existing.to_string()]);
}

/// A 64 MiB streaming upload reads back byte for byte (SHA-256 compared).
pub async fn upload_of_64_mib_round_trips_byte_for_byte(s: Storage) {
    let k = key(&s, "volume.nii");
    let chunk_len = 1024 * 1024;
    let mut written = Sha256::new();
    let mut upload = s.upload(&k, &WriteOptions::default()).await.unwrap();
    for i in 0..64u8 {
        let chunk = pattern(chunk_len, i);
        written.update(&chunk);
        upload.write(chunk).await.unwrap();
    }
    upload.finish().await.unwrap();
    let mut read = Sha256::new();
    let mut size = 0;
    let mut stream = s.get_stream(&k).await.unwrap().stream;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        size += chunk.len();
        read.update(&chunk);
    }
    assert_eq!(size, 64 * chunk_len);
    assert_eq!(read.finalize(), written.finalize(), "checksums differ");
}

/// An upload stores its content type and metadata.
pub async fn upload_keeps_content_type_and_metadata(s: Storage) {
    let k = key(&s, "typed.nrrd");
    let options =
        WriteOptions::content_type("application/octet-stream").with_metadata("series", "3");
    let mut upload = s.upload(&k, &options).await.unwrap();
    upload.write(Bytes::from_static(b"nrrd")).await.unwrap();
    upload.finish().await.unwrap();
    let head = s.head(&k).await.unwrap();
    assert_eq!(
        head.content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(head.metadata, options.metadata);
}

/// An upload with no data creates an empty object.
pub async fn empty_upload_creates_an_empty_object(s: Storage) {
    let k = key(&s, "empty-upload.bin");
    let upload = s.upload(&k, &WriteOptions::default()).await.unwrap();
    upload.finish().await.unwrap();
    assert_eq!(s.head(&k).await.unwrap().size, 0);
}

/// A finished upload replaces the object that was there.
pub async fn upload_replaces_an_existing_object(s: Storage) {
    let k = put(&s, "replace.bin", "old content that is longer").await;
    let mut upload = s.upload(&k, &WriteOptions::default()).await.unwrap();
    upload.write(Bytes::from_static(b"new")).await.unwrap();
    upload.finish().await.unwrap();
    assert_eq!(data(&s, &k).await, "new");
}

/// upload_stream aborts when its source fails: no object, the error reported.
pub async fn upload_stream_aborts_on_a_failing_source(s: Storage) {
    let k = key(&s, "broken.bin");
    let source = futures::stream::iter(vec![
        Ok(pattern(6 * 1024 * 1024, 1)),
        Err(std::io::Error::other("the network dropped")),
    ]);
    let err = s
        .upload_stream(&k, &WriteOptions::default(), source)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the network dropped"), "{err}");
    assert!(!s.exists(&k).await.unwrap());
}
