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

/// A file in a temporary folder holding `body`.
fn file_of(body: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("source.bin");
    std::fs::write(&path, body).unwrap();
    (dir, path)
}

/// write_from_file stores the file byte for byte, empty, small and multipart, with its
/// content type, metadata and the checksum of its bytes, and reports progress to the end.
pub async fn write_from_file_stores_the_file_with_its_checksum(s: Storage) {
    use std::sync::atomic::{AtomicU64, Ordering};
    for (i, len) in [0, 300 * 1024, 9 * 1024 * 1024].into_iter().enumerate() {
        let body = pattern(len, 40 + i as u8);
        let (_dir, path) = file_of(&body);
        let k = key(&s, &format!("from-file-{len}.bin"));
        let options = WriteOptions::content_type("image/png").with_metadata("study", "s1");
        let done = std::sync::Arc::new(AtomicU64::new(u64::MAX));
        let seen = std::sync::Arc::clone(&done);
        let outcome = s
            .write_from_file(&k, &path, &options, move |done, total| {
                assert_eq!(total, len as u64);
                seen.store(done, Ordering::Relaxed);
            })
            .await
            .unwrap();
        if len > 0 {
            assert_eq!(
                done.load(Ordering::Relaxed),
                len as u64,
                "progress to the end"
            );
        }
        let got = s.get(&k).await.unwrap();
        assert_eq!(got.data, body, "{len} bytes");
        assert_eq!(got.info.etag, outcome.etag);
        assert_eq!(got.info.content_type.as_deref(), Some("image/png"));
        assert_eq!(
            got.info.metadata.get("study").map(String::as_str),
            Some("s1")
        );
        // Every backend, multipart S3 included (its checksum is set when the upload ends).
        assert_eq!(
            got.info.checksum.as_ref(),
            maskstore_backends::checksum_of(s.checksum_algorithm(), &body).as_ref(),
            "{len} bytes: the checksum of the file's bytes"
        );
    }
}

/// A missing file, a folder, or a file that is no regular file is `Error::Source` naming
/// it, and nothing is stored or replaced.
pub async fn write_from_file_of_a_missing_or_non_regular_file_stores_nothing(s: Storage) {
    let existing = put(&s, "kept.bin", "previous").await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.bin");
    for (path, what) in [(missing, "missing"), (dir.path().to_path_buf(), "a folder")] {
        for k in [existing.clone(), key(&s, "never.bin")] {
            let err = s
                .write_from_file(&k, &path, &WriteOptions::default(), |_, _| {})
                .await
                .unwrap_err();
            assert!(
                matches!(&err, maskstore_backends::Error::Source { path: p, .. } if p == &path.display().to_string()),
                "{what}: {err:?}"
            );
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
    }
    assert_eq!(data(&s, &existing).await, "previous");
    assert!(!s.exists(&key(&s, "never.bin")).await.unwrap());
}

/// A FIFO is refused at once, not waited on for a writer; a /proc file (size 0, content
/// behind it) is refused rather than stored empty as a success. Either way, overwriting or
/// create-only, the key keeps what it held and no new key appears.
pub async fn write_from_file_of_a_fifo_or_a_proc_file_is_refused_at_once(s: Storage) {
    use maskstore_backends::{Error, WriteMode};
    let existing = put(&s, "kept-special.bin", "previous").await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let proc_file = std::path::PathBuf::from("/proc/self/status");
    assert_eq!(std::fs::metadata(&proc_file).unwrap().len(), 0);
    for (path, says) in [
        (fifo, "not a regular file"),
        (proc_file, "reads past its size"),
    ] {
        for mode in [WriteMode::Overwrite, WriteMode::CreateOnly] {
            let options = WriteOptions::default().with_mode(mode.clone());
            for k in [existing.clone(), key(&s, "never-special.bin")] {
                let attempt = s.write_from_file(&k, &path, &options, |_, _| {});
                let Ok(result) =
                    tokio::time::timeout(std::time::Duration::from_secs(20), attempt).await
                else {
                    // Open the other end, so the thread stuck opening the FIFO ends and
                    // the test fails instead of hanging.
                    let _ = std::fs::OpenOptions::new().write(true).open(&path);
                    panic!("{}: waited instead of refusing", path.display());
                };
                let err = result.unwrap_err();
                if k == existing && mode == WriteMode::CreateOnly {
                    // The key exists: either refusal is right, as long as nothing changed.
                    assert!(
                        matches!(err, Error::Source { .. } | Error::AlreadyExists { .. }),
                        "{err:?}"
                    );
                } else {
                    assert!(
                        matches!(&err, Error::Source { path: p, .. } if p == &path.display().to_string()),
                        "{}: {err:?}",
                        path.display()
                    );
                    assert!(err.to_string().contains(says), "{err}");
                }
            }
        }
    }
    assert_eq!(data(&s, &existing).await, "previous");
    assert!(!s.exists(&key(&s, "never-special.bin")).await.unwrap());
}

/// write_from_file honours create-only and if-match like a put.
pub async fn write_from_file_honours_create_only_and_if_match(s: Storage) {
    use maskstore_backends::{Error, WriteMode};
    let existing = put(&s, "cond.bin", "previous").await;
    let (_dir, path) = file_of(b"from the file");
    let create_only = WriteOptions::default().with_mode(WriteMode::CreateOnly);
    let err = s
        .write_from_file(&existing, &path, &create_only, |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    let stale = WriteOptions::default().with_mode(WriteMode::IfMatch("\"stale\"".into()));
    let err = s
        .write_from_file(&existing, &path, &stale, |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Precondition { .. }), "{err:?}");
    assert_eq!(data(&s, &existing).await, "previous");
    let etag = s.head(&existing).await.unwrap().etag.unwrap();
    let current = WriteOptions::default().with_mode(WriteMode::IfMatch(etag));
    s.write_from_file(&existing, &path, &current, |_, _| {})
        .await
        .unwrap();
    assert_eq!(data(&s, &existing).await, "from the file");
    let fresh = key(&s, "cond-new.bin");
    s.write_from_file(&fresh, &path, &create_only, |_, _| {})
        .await
        .unwrap();
    assert_eq!(data(&s, &fresh).await, "from the file");
}
