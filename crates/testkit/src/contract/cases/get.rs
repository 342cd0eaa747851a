//! The `get` cases: get and head.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use maskstore_backends::{Error, ReadOptions, Storage};

use super::{key, pattern, put};

/// Get of a key never written is NotFound.
pub async fn get_of_missing_key_is_not_found(s: Storage) {
    assert_err!(s.get(&key(&s, "missing")).await, Error::NotFound { .. });
}

/// Head of a key never written is NotFound.
pub async fn head_of_missing_key_is_not_found(s: Storage) {
    assert_err!(s.head(&key(&s, "missing")).await, Error::NotFound { .. });
}

/// Get of a prefix of existing keys is NotFound: folders are not objects.
pub async fn get_of_a_folder_is_not_found(s: Storage) {
    put(&s, "dir/child.bin", "x").await;
    assert_err!(s.get(&key(&s, "dir")).await, Error::NotFound { .. });
}

/// Head of a prefix of existing keys is NotFound.
pub async fn head_of_a_folder_is_not_found(s: Storage) {
    put(&s, "dir/child.bin", "x").await;
    assert_err!(s.head(&key(&s, "dir")).await, Error::NotFound { .. });
    assert!(!s.exists(&key(&s, "dir")).await.unwrap());
}

/// Head reports the size, an etag and a modification time close to now.
pub async fn head_reports_size_etag_and_last_modified(s: Storage) {
    let before = chrono::Utc::now();
    let k = put(&s, "h.bin", pattern(1234, 1)).await;
    let head = s.head(&k).await.unwrap();
    assert_eq!(head.size, 1234);
    assert!(head.etag.is_some());
    let skew = (head.last_modified - before).num_seconds().abs();
    assert!(
        skew < 300,
        "last_modified {} is {skew} s from now",
        head.last_modified
    );
}

/// A streamed get yields exactly the object's bytes.
pub async fn get_stream_yields_the_whole_object(s: Storage) {
    let body = pattern(3 * 1024 * 1024 + 5, 9);
    let k = put(&s, "stream.bin", body.clone()).await;
    let stream = s.get_stream(&k).await.unwrap();
    assert_eq!(stream.info.size, body.len() as u64);
    let chunks: Vec<Bytes> = stream.stream.try_collect().await.unwrap();
    assert!(chunks.concat() == body.as_ref(), "streamed content differs");
}

/// read_to_file writes exactly the object's bytes from the file's position (after bytes
/// already there), and reports progress up to the object's size.
pub async fn read_to_file_writes_the_whole_object_after_what_is_there(s: Storage) {
    use std::io::{Read, Seek, Write};
    let body = pattern(3 * 1024 * 1024 + 5, 11);
    let k = put(&s, "to-file.bin", body.clone()).await;
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(b"head:").unwrap();
    let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&reports);
    let info = s
        .read_to_file(&k, &file, move |done, total| {
            seen.lock().unwrap().push((done, total))
        })
        .await
        .unwrap();
    assert_eq!(info.size, body.len() as u64);
    let mut written = Vec::new();
    file.rewind().unwrap();
    file.read_to_end(&mut written).unwrap();
    assert!(
        written.starts_with(b"head:"),
        "the bytes already there were overwritten"
    );
    assert!(
        written[5..] == body[..],
        "the file's content differs from the object"
    );
    let reports = reports.lock().unwrap();
    let size = body.len() as u64;
    assert_eq!(reports.last(), Some(&(size, size)), "progress {reports:?}");
    assert!(
        reports.windows(2).all(|w| w[0].0 < w[1].0),
        "progress went backwards"
    );
}

/// read_to_file of a missing key is NotFound and leaves the file untouched.
pub async fn read_to_file_of_missing_key_is_not_found_and_writes_nothing(s: Storage) {
    let file = tempfile::tempfile().unwrap();
    assert_err!(
        s.read_to_file(&key(&s, "missing"), &file, |_, _| {}).await,
        Error::NotFound { .. }
    );
    assert_eq!(file.metadata().unwrap().len(), 0);
}

/// A file that refuses writes gets Destination, naming the key, not a backend error.
pub async fn read_to_file_into_a_read_only_file_is_a_destination_error(s: Storage) {
    let k = put(&s, "ro.bin", pattern(300_000, 3)).await;
    let named = tempfile::NamedTempFile::new().unwrap();
    let read_only = std::fs::File::open(named.path()).unwrap();
    let err = s.read_to_file(&k, &read_only, |_, _| {}).await.unwrap_err();
    assert!(
        matches!(&err, Error::Destination { key, .. } if key == k.as_str()),
        "{err:?}"
    );
}

/// exists is true after put and false after delete.
pub async fn exists_tells_presence(s: Storage) {
    let k = key(&s, "e.bin");
    assert!(!s.exists(&k).await.unwrap());
    s.put(&k, "x").await.unwrap();
    assert!(s.exists(&k).await.unwrap());
    s.delete(&k).await.unwrap();
    assert!(!s.exists(&k).await.unwrap());
}

/// if-none-match with the current etag → NotModified.
pub async fn if_none_match_with_current_etag_is_not_modified(s: Storage) {
    let k = key(&s, "c.bin");
    let etag = s.put(&k, "x").await.unwrap().etag.unwrap();
    let options = ReadOptions {
        if_none_match: Some(etag),
        ..Default::default()
    };
    assert_err!(s.read(&k, options).await, Error::NotModified { .. });
}

/// if-none-match with another etag returns the object.
pub async fn if_none_match_with_other_etag_returns_the_object(s: Storage) {
    let k = key(&s, "c.bin");
    let old = s.put(&k, "old").await.unwrap().etag.unwrap();
    s.put(&k, "new").await.unwrap();
    let options = ReadOptions {
        if_none_match: Some(old),
        ..Default::default()
    };
    assert_eq!(s.read(&k, options).await.unwrap().data, "new");
}

/// if-match with a stale etag → Precondition.
pub async fn if_match_with_stale_etag_is_precondition_failed(s: Storage) {
    let k = key(&s, "c.bin");
    let old = s.put(&k, "old").await.unwrap().etag.unwrap();
    s.put(&k, "new").await.unwrap();
    let options = ReadOptions {
        if_match: Some(old),
        ..Default::default()
    };
    assert_err!(s.read(&k, options).await, Error::Precondition { .. });
}

/// if-match on a missing key → NotFound, as S3 answers: RFC 9110 §13.2.1 has a server
/// ignore preconditions where the answer without them would be other than 2xx or 412
/// (here 404). Azure answers 412; its provider tells the two apart.
pub async fn if_match_on_a_missing_key_is_not_found(s: Storage) {
    let k = key(&s, "c.bin");
    let etag = s.put(&k, "gone").await.unwrap().etag.unwrap();
    s.delete(&k).await.unwrap();
    for range in [None, Some(maskstore_backends::ByteRange::Suffix(2))] {
        let options = ReadOptions {
            if_match: Some(etag.clone()),
            range,
            ..Default::default()
        };
        assert_err!(s.read(&k, options).await, Error::NotFound { .. });
    }
}

/// if-match with the current etag returns the object.
pub async fn if_match_with_current_etag_returns_the_object(s: Storage) {
    let k = key(&s, "c.bin");
    let etag = s.put(&k, "current").await.unwrap().etag.unwrap();
    let options = ReadOptions {
        if_match: Some(etag),
        ..Default::default()
    };
    assert_eq!(s.read(&k, options).await.unwrap().data, "current");
}
