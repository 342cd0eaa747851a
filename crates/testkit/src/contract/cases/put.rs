//! The `put` cases: put.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use maskstore_backends::{DEFAULT_CONTENT_TYPE, Error, Storage, WriteOptions};

use super::{counted, data, key, pattern, put};

/// An empty object is stored and read back empty, with size 0.
pub async fn put_empty_object_round_trips(s: Storage) {
    let k = put(&s, "empty.bin", Bytes::new()).await;
    assert_eq!(data(&s, &k).await.len(), 0);
    assert_eq!(s.head(&k).await.unwrap().size, 0);
}

/// A small object reads back identical.
pub async fn put_small_object_round_trips(s: Storage) {
    let k = put(&s, "small.bin", "mask bytes").await;
    assert_eq!(data(&s, &k).await, "mask bytes");
}

/// An object above S3's 5 MiB multipart threshold reads back identical.
pub async fn put_object_over_5_mib_round_trips(s: Storage) {
    let body = pattern(5 * 1024 * 1024 + 17, 3);
    let k = put(&s, "large.bin", body.clone()).await;
    assert!(data(&s, &k).await == body, "content differs");
}

/// Overwriting with shorter content leaves none of the old bytes.
pub async fn overwrite_replaces_whole_content(s: Storage) {
    let k = put(&s, "over.bin", "a much longer first version").await;
    s.put(&k, "short").await.unwrap();
    assert_eq!(data(&s, &k).await, "short");
    assert_eq!(s.head(&k).await.unwrap().size, 5);
}

/// The content type given at put is reported by get and head.
pub async fn content_type_round_trips(s: Storage) {
    let k = key(&s, "seg.nii.gz");
    s.put_with(&k, "x", &WriteOptions::content_type("application/gzip"))
        .await
        .unwrap();
    assert_eq!(
        s.get(&k).await.unwrap().info.content_type.as_deref(),
        Some("application/gzip")
    );
    assert_eq!(
        s.head(&k).await.unwrap().content_type.as_deref(),
        Some("application/gzip")
    );
}

/// User metadata given at put is reported by get and head, exactly.
pub async fn user_metadata_round_trips(s: Storage) {
    let k = key(&s, "meta.png");
    let options = WriteOptions::content_type("image/png")
        .with_metadata("annotator", "dr-kim")
        .with_metadata("model-version", "2.3.1 (beta)");
    s.put_with(&k, "x", &options).await.unwrap();
    let head = s.head(&k).await.unwrap();
    assert_eq!(head.metadata, options.metadata);
    assert_eq!(s.get(&k).await.unwrap().info.metadata, options.metadata);
}

/// An object stored without a content type reads back as application/octet-stream.
pub async fn object_without_content_type_reads_as_octet_stream(s: Storage) {
    let k = put(&s, "plain", "x").await;
    assert_eq!(
        s.head(&k).await.unwrap().content_type.as_deref(),
        Some(DEFAULT_CONTENT_TYPE)
    );
}

/// The etag a put returns is the one head reports.
pub async fn put_returns_the_etag_head_reports(s: Storage) {
    let k = key(&s, "etag.bin");
    let outcome = s.put(&k, "x").await.unwrap();
    assert!(outcome.etag.is_some(), "put returned no etag");
    assert_eq!(s.head(&k).await.unwrap().etag, outcome.etag);
}

/// Every overwrite gives a new etag, even with content of the same size.
pub async fn etag_changes_on_overwrite(s: Storage) {
    let k = key(&s, "etag.bin");
    let first = s.put(&k, "aaaa").await.unwrap().etag;
    let second = s.put(&k, "bbbb").await.unwrap().etag;
    assert_ne!(first, second);
    assert_eq!(s.head(&k).await.unwrap().etag, second);
}

/// Metadata that some backend could not keep is refused before any I/O.
pub async fn invalid_metadata_is_refused_before_io(s: Storage) {
    let (s, calls) = counted(&s);
    let k = key(&s, "m.bin");
    for options in [
        WriteOptions::default().with_metadata("Upper", "x"),
        WriteOptions::default().with_metadata("under_score", "x"),
        WriteOptions::default().with_metadata("ok", "line\nbreak"),
        WriteOptions::default().with_metadata("ok", "한국어"),
        // HTTP drops a field value's outer whitespace: S3 would keep "padded".
        WriteOptions::default().with_metadata("ok", " padded "),
        WriteOptions::default().with_metadata("ok", "trailing "),
        WriteOptions::content_type(""),
    ] {
        assert_err!(
            s.put_with(&k, "x", &options).await,
            Error::InvalidMetadata { .. }
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a refused put reached the backend"
    );
}
