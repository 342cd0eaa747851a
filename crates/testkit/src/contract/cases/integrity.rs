//! The `integrity` cases: every write path stores the checksum, reads verify it, range
//! reads still work, and an object written without one reads as unverified.

use bytes::Bytes;
use maskstore_backends::{ChecksumAlgorithm, Error, Storage, WriteMode, WriteOptions, checksum_of};

use super::{key, pattern, put};

/// The checksum this storage stores for `data`.
fn expected(s: &Storage, data: &[u8]) -> Option<String> {
    checksum_of(s.checksum_algorithm(), data)
}

/// put, create-only, if-match, small and multipart streaming uploads, copy, copy-if-absent
/// and rename all leave the object with the checksum of its bytes.
pub async fn checksum_is_present_after_each_write_path(s: Storage) {
    let body = pattern(4096, 11);
    let want = expected(&s, &body);
    assert!(
        want.is_some(),
        "the contract runs with checksums on (the default)"
    );
    let check = |k: maskstore_core::ObjectKey, data: Bytes, what: &'static str| {
        let s = s.clone();
        async move {
            let info = s.head(&k).await.unwrap();
            assert_eq!(info.checksum, expected(&s, &data), "after {what}");
            assert!(
                !info.metadata.contains_key("maskstore-checksum"),
                "the checksum is not listed as user metadata after {what}"
            );
            // And the whole read verifies it.
            assert_eq!(s.get(&k).await.unwrap().data, data, "after {what}");
        }
    };
    let k = put(&s, "put.bin", body.clone()).await;
    check(k.clone(), body.clone(), "put").await;

    let created = key(&s, "created.bin");
    s.put_if_absent(&created, body.clone()).await.unwrap();
    check(created.clone(), body.clone(), "create-only put").await;

    let etag = s.head(&k).await.unwrap().etag.unwrap();
    let updated = pattern(5000, 12);
    let options = WriteOptions::default().with_mode(WriteMode::IfMatch(etag));
    s.put_with(&k, updated.clone(), &options).await.unwrap();
    check(k.clone(), updated.clone(), "if-match put").await;

    let small = key(&s, "small-upload.bin");
    s.upload_stream(
        &small,
        &WriteOptions::default(),
        futures::stream::iter([Ok::<_, std::io::Error>(body.clone())]),
    )
    .await
    .unwrap();
    check(small, body.clone(), "a small streaming upload").await;

    // A multipart upload (8 MiB and more on S3, where metadata is taken only when the
    // upload starts: the checksum is added by a copy in place after completion, which
    // must keep the content type and every user entry).
    let big = key(&s, "multipart-upload.bin");
    let big_body = pattern(s.multipart_threshold() * 2 + 17, 13);
    let chunks: Vec<std::io::Result<Bytes>> = big_body
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let options = WriteOptions::content_type("application/x-mask").with_metadata("study", "s-1");
    let outcome = s
        .upload_stream(&big, &options, futures::stream::iter(chunks))
        .await
        .unwrap();
    check(
        big.clone(),
        big_body.clone(),
        "a multipart streaming upload",
    )
    .await;
    let info = s.head(&big).await.unwrap();
    assert_eq!(info.content_type.as_deref(), Some("application/x-mask"));
    assert_eq!(info.metadata.get("study").map(String::as_str), Some("s-1"));
    assert_eq!(
        info.etag, outcome.etag,
        "the etag reported is the stored object's"
    );

    let copied = key(&s, "copied.bin");
    s.copy(&k, &copied).await.unwrap();
    check(copied.clone(), updated.clone(), "copy").await;
    let copied_if_absent = key(&s, "copied-if-absent.bin");
    s.copy_if_absent(&k, &copied_if_absent).await.unwrap();
    check(copied_if_absent, updated.clone(), "copy-if-absent").await;
    let renamed = key(&s, "renamed.bin");
    s.rename(&copied, &renamed).await.unwrap();
    check(renamed, updated, "rename").await;
}

/// A range read of a checksummed object returns its bytes (a range cannot be verified
/// against a whole-object checksum, and is not refused for it).
pub async fn range_read_of_a_checksummed_object_works(s: Storage) {
    let body = pattern(10_000, 14);
    let k = put(&s, "ranged.bin", body.clone()).await;
    assert!(s.head(&k).await.unwrap().checksum.is_some());
    let part = s.get_range(&k, 100..200).await.unwrap();
    assert_eq!(part.data, body.slice(100..200));
    assert_eq!(part.info.size, 10_000);
}

/// An object written without a checksum (another tool, or `checksum = none`) reads
/// normally through every read path and reports no checksum: unverified.
pub async fn object_without_checksum_reads_as_unverified(s: Storage) {
    let plain = s.clone().with_checksum(ChecksumAlgorithm::None);
    let body = pattern(3000, 15);
    let k = key(&s, "plain.bin");
    plain.put(&k, body.clone()).await.unwrap();
    let got = s.get(&k).await.unwrap();
    assert_eq!(got.data, body);
    assert_eq!(got.info.checksum, None);
    assert_eq!(s.head(&k).await.unwrap().checksum, None);
    let streamed = s.get_stream(&k).await.unwrap();
    let bytes: Vec<Bytes> = futures::TryStreamExt::try_collect(streamed.stream)
        .await
        .unwrap();
    assert_eq!(bytes.concat(), body.to_vec());
    let file = tempfile::tempfile().unwrap();
    let info = s.read_to_file(&k, &file, |_, _| {}).await.unwrap();
    assert_eq!(info.checksum, None);
}

/// A write that sets the reserved checksum metadata itself is refused before any I/O:
/// nobody forges the value reads trust.
pub async fn writing_the_checksum_metadata_yourself_is_refused(s: Storage) {
    let k = key(&s, "forged.bin");
    let options = WriteOptions::default().with_metadata("maskstore-checksum", "sha256:AAAA");
    let result = s.put_with(&k, "x", &options).await;
    assert!(
        matches!(result, Err(Error::InvalidMetadata { ref name, .. }) if name == "maskstore-checksum"),
        "{result:?}"
    );
    assert!(!s.exists(&k).await.unwrap());
}
