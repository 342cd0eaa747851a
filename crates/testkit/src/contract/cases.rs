//! The cases, grouped by operation. Each takes a storage scoped to its own empty prefix.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use maskstore_backends::{
    ByteRange, DEFAULT_CONTENT_TYPE, Error, ReadOptions, SignOptions, SignedMethod, Storage,
    WriteMode, WriteOptions,
};
use maskstore_core::{MAX_KEY_BYTES, ObjectKey};
use sha2::{Digest, Sha256};

use super::{Case, Counting, Need};

macro_rules! cases {
    ($($group:ident / $need:ident: [$($name:ident),* $(,)?]),* $(,)?) => {
        /// Every case of the suite, in group order.
        pub fn all() -> Vec<Case> {
            vec![$($(Case {
                group: stringify!($group),
                name: stringify!($name),
                needs: Need::$need,
                run: |storage| Box::pin($name(storage)),
            },)*)*]
        }
    };
}

cases! {
    put / Nothing: [
        put_empty_object_round_trips,
        put_small_object_round_trips,
        put_object_over_5_mib_round_trips,
        overwrite_replaces_whole_content,
        content_type_round_trips,
        user_metadata_round_trips,
        object_without_content_type_reads_as_octet_stream,
        put_returns_the_etag_head_reports,
        etag_changes_on_overwrite,
        invalid_metadata_is_refused_before_io,
    ],
    get / Nothing: [
        get_of_missing_key_is_not_found,
        head_of_missing_key_is_not_found,
        get_of_a_folder_is_not_found,
        head_of_a_folder_is_not_found,
        head_reports_size_etag_and_last_modified,
        get_stream_yields_the_whole_object,
        read_to_file_writes_the_whole_object_after_what_is_there,
        read_to_file_of_missing_key_is_not_found_and_writes_nothing,
        read_to_file_into_a_read_only_file_is_a_destination_error,
        exists_tells_presence,
        if_none_match_with_current_etag_is_not_modified,
        if_none_match_with_other_etag_returns_the_object,
        if_match_with_stale_etag_is_precondition_failed,
        if_match_with_current_etag_returns_the_object,
    ],
    range / Nothing: [
        bounded_range_returns_exact_bytes,
        range_from_offset_reads_to_the_end,
        suffix_range_returns_the_last_bytes,
        suffix_longer_than_object_returns_all_of_it,
        range_end_past_the_object_is_cut_at_the_end,
        range_starting_past_the_end_is_invalid,
        empty_or_reversed_range_is_refused_before_io,
        range_read_reports_the_whole_size,
    ],
    list / Nothing: [
        list_returns_everything_under_the_prefix,
        list_of_1100_keys_is_complete_without_duplicates,
        list_reports_sizes_and_etags,
        list_with_delimiter_returns_objects_and_folders,
        list_with_delimiter_is_sorted_by_key,
        list_prefix_matches_whole_segments,
        list_of_missing_prefix_is_empty,
        list_with_delimiter_of_missing_prefix_is_empty,
        list_after_delete_omits_deleted_keys,
        list_after_delete_shows_no_empty_folder,
        list_outside_the_prefix_is_refused,
    ],
    delete / Nothing: [
        delete_then_get_is_not_found,
        delete_of_missing_key_is_ok,
        delete_many_removes_every_key,
        delete_many_with_missing_keys_is_ok,
        delete_leaves_siblings_intact,
        delete_of_a_folder_name_deletes_nothing,
    ],
    copy / Nothing: [
        copy_duplicates_content_and_attributes,
        copy_overwrites_the_destination,
        copy_from_missing_source_is_not_found,
        copy_if_absent_to_a_new_key_copies,
        copy_if_absent_to_an_existing_key_is_already_exists,
    ],
    rename / Nothing: [
        rename_moves_the_object,
        rename_overwrites_the_destination,
        rename_of_missing_source_is_not_found,
        rename_if_absent_to_an_existing_key_keeps_both,
    ],
    conditional / Nothing: [
        create_only_put_on_a_new_key_writes,
        create_only_put_on_an_existing_key_is_already_exists,
        update_with_stale_etag_is_precondition_failed,
        update_with_current_etag_writes,
        update_of_missing_key_is_precondition_failed,
        twenty_concurrent_create_only_puts_have_one_winner,
    ],
    upload / Nothing: [
        upload_is_invisible_until_finished,
        aborted_upload_leaves_nothing,
        upload_of_64_mib_round_trips_byte_for_byte,
        upload_keeps_content_type_and_metadata,
        empty_upload_creates_an_empty_object,
        upload_replaces_an_existing_object,
        upload_stream_aborts_on_a_failing_source,
    ],
    keys / Nothing: [
        key_with_spaces_round_trips,
        key_with_plus_and_percent_round_trips,
        key_with_equals_and_ampersand_round_trips,
        key_with_hash_and_question_mark_round_trips,
        key_with_unicode_round_trips,
        key_with_emoji_round_trips,
        key_of_1024_bytes_round_trips,
        dot_dot_segment_is_refused,
        empty_segment_is_refused,
        control_character_is_refused,
        backslash_is_refused,
        key_over_1024_bytes_is_refused,
        key_outside_the_prefix_is_refused_before_io,
    ],
    concurrency / Nothing: [
        fifty_writers_and_readers_see_only_whole_versions,
        hundred_writers_and_readers_of_different_sizes_see_whole_versions,
        concurrent_puts_of_distinct_keys_all_land,
    ],
    isolation / Nothing: [
        storages_with_different_prefixes_never_see_each_other,
        scoped_storage_refuses_its_parents_keys,
    ],
    signed_url / Nothing: [
        signed_get_returns_the_bytes,
        signed_put_stores_the_bytes,
        signed_head_reports_the_size,
        signed_delete_removes_the_object,
        signed_get_of_unusual_key_works,
        ttl_above_the_maximum_is_refused_at_issue,
        no_ttl_means_the_default_ttl,
        key_outside_the_prefix_is_refused_at_issue,
    ],
    signed_url_checks / SignatureChecks: [
        expired_url_is_refused,
        url_with_changed_signature_is_refused,
        url_with_changed_key_is_refused,
        url_with_changed_expiry_is_refused,
        url_used_with_another_method_is_refused,
        put_with_another_content_type_than_bound_is_refused,
        url_signed_by_another_secret_is_refused,
    ],
}

// ---------------------------------------------------------------------------------------
// helpers

fn key(storage: &Storage, relative: &str) -> ObjectKey {
    storage
        .key(relative)
        .unwrap_or_else(|e| panic!("test key {relative:?}: {e}"))
}

async fn put(storage: &Storage, relative: &str, data: impl Into<Bytes>) -> ObjectKey {
    let key = key(storage, relative);
    storage.put(&key, data).await.expect("put");
    key
}

async fn data(storage: &Storage, key: &ObjectKey) -> Bytes {
    storage.get(key).await.expect("get").data
}

async fn listed(storage: &Storage, prefix: Option<&str>) -> Vec<String> {
    storage
        .list(prefix)
        .expect("list")
        .map_ok(|info| info.key.to_string())
        .try_collect()
        .await
        .expect("list items")
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<_>>()
        .into()
}

macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            other => panic!("expected {}, got {:?}", stringify!($pattern), other),
        }
    };
}

/// A storage over the same backend that counts the calls reaching it.
fn counted(storage: &Storage) -> (Storage, Arc<std::sync::atomic::AtomicUsize>) {
    let counting = Counting::new();
    (storage.layer(counting.clone()), counting.counter())
}

// ---------------------------------------------------------------------------------------
// put

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

// ---------------------------------------------------------------------------------------
// get and head

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

// ---------------------------------------------------------------------------------------
// range

const RANGE_BODY: &str = "0123456789abcdefghij";

/// A bounded range returns exactly those bytes.
pub async fn bounded_range_returns_exact_bytes(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    let part = s.get_range(&k, 3..7).await.unwrap();
    assert_eq!(part.data, "3456");
    assert_eq!(part.range, 3..7);
}

/// A range from an offset reads to the end.
pub async fn range_from_offset_reads_to_the_end(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    assert_eq!(
        s.get_range(&k, ByteRange::From(15)).await.unwrap().data,
        "fghij"
    );
}

/// A suffix range returns the last n bytes.
pub async fn suffix_range_returns_the_last_bytes(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    let part = s.get_range(&k, ByteRange::Suffix(4)).await.unwrap();
    assert_eq!(part.data, "ghij");
    assert_eq!(part.range, 16..20);
}

/// A suffix longer than the object returns all of it.
pub async fn suffix_longer_than_object_returns_all_of_it(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    assert_eq!(
        s.get_range(&k, ByteRange::Suffix(100)).await.unwrap().data,
        RANGE_BODY
    );
}

/// A bounded range whose end passes the object's end is cut at the end.
pub async fn range_end_past_the_object_is_cut_at_the_end(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    let part = s.get_range(&k, 17..100).await.unwrap();
    assert_eq!(part.data, "hij");
    assert_eq!(part.range, 17..20);
}

/// A range starting at or past the end is InvalidRange.
pub async fn range_starting_past_the_end_is_invalid(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    assert_err!(s.get_range(&k, 20..30).await, Error::InvalidRange { .. });
    assert_err!(
        s.get_range(&k, ByteRange::From(25)).await,
        Error::InvalidRange { .. }
    );
}

/// An empty or reversed range is refused before any I/O.
pub async fn empty_or_reversed_range_is_refused_before_io(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    let (s, calls) = counted(&s);
    assert_err!(s.get_range(&k, 5..5).await, Error::InvalidRange { .. });
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 7..3;
    assert_err!(s.get_range(&k, reversed).await, Error::InvalidRange { .. });
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// A range read still reports the whole object's size.
pub async fn range_read_reports_the_whole_size(s: Storage) {
    let k = put(&s, "r.txt", RANGE_BODY).await;
    assert_eq!(s.get_range(&k, 0..2).await.unwrap().info.size, 20);
}

// ---------------------------------------------------------------------------------------
// list

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

// ---------------------------------------------------------------------------------------
// delete

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

// ---------------------------------------------------------------------------------------
// copy

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

// ---------------------------------------------------------------------------------------
// rename

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

// ---------------------------------------------------------------------------------------
// conditional writes

fn create_only() -> WriteOptions {
    WriteOptions::default().with_mode(WriteMode::CreateOnly)
}

fn if_match(etag: &str) -> WriteOptions {
    WriteOptions::default().with_mode(WriteMode::IfMatch(etag.to_string()))
}

/// A create-only put of a new key writes it.
pub async fn create_only_put_on_a_new_key_writes(s: Storage) {
    let k = key(&s, "new.bin");
    s.put_with(&k, "first", &create_only()).await.unwrap();
    assert_eq!(data(&s, &k).await, "first");
}

/// A create-only put of an existing key is AlreadyExists; the content is unchanged.
pub async fn create_only_put_on_an_existing_key_is_already_exists(s: Storage) {
    let k = put(&s, "taken.bin", "original").await;
    assert_err!(
        s.put_with(&k, "intruder", &create_only()).await,
        Error::AlreadyExists { .. }
    );
    assert_eq!(data(&s, &k).await, "original");
}

/// An update with a stale etag is Precondition; the content is unchanged.
pub async fn update_with_stale_etag_is_precondition_failed(s: Storage) {
    let k = key(&s, "u.bin");
    let stale = s.put(&k, "v1").await.unwrap().etag.unwrap();
    s.put(&k, "v2").await.unwrap();
    assert_err!(
        s.put_with(&k, "v3", &if_match(&stale)).await,
        Error::Precondition { .. }
    );
    assert_eq!(data(&s, &k).await, "v2");
}

/// An update with the current etag writes and returns a new etag.
pub async fn update_with_current_etag_writes(s: Storage) {
    let k = key(&s, "u.bin");
    let current = s.put(&k, "v1").await.unwrap().etag.unwrap();
    let next = s.put_with(&k, "v2", &if_match(&current)).await.unwrap();
    assert_eq!(data(&s, &k).await, "v2");
    assert_ne!(next.etag.as_deref(), Some(current.as_str()));
}

/// An update of a key that does not exist is Precondition and creates nothing.
pub async fn update_of_missing_key_is_precondition_failed(s: Storage) {
    let k = key(&s, "absent.bin");
    assert_err!(
        s.put_with(&k, "x", &if_match("\"some-etag\"")).await,
        Error::Precondition { .. }
    );
    assert!(!s.exists(&k).await.unwrap());
}

/// Of 20 concurrent create-only puts of one key, exactly one succeeds, and its content is
/// the one stored.
pub async fn twenty_concurrent_create_only_puts_have_one_winner(s: Storage) {
    let k = key(&s, "race.bin");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (s, k) = (s.clone(), k.clone());
            tokio::spawn(async move {
                (
                    i,
                    s.put_with(&k, format!("writer-{i}"), &create_only()).await,
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (i, Ok(_)) => winners.push(i),
            (_, Err(Error::AlreadyExists { .. } | Error::Precondition { .. })) => {}
            (_, Err(e)) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(data(&s, &k).await, format!("writer-{}", winners[0]));
}

// ---------------------------------------------------------------------------------------
// streaming upload

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

// ---------------------------------------------------------------------------------------
// keys

async fn unusual_key_round_trips(s: &Storage, relative: &str) {
    let k = key(s, relative);
    s.put(&k, relative.to_string()).await.unwrap();
    assert_eq!(data(s, &k).await, relative.to_string());
    assert_eq!(s.head(&k).await.unwrap().key, k);
    assert_eq!(
        listed(s, None).await,
        vec![k.to_string()],
        "listed differently"
    );
    s.delete(&k).await.unwrap();
    assert!(!s.exists(&k).await.unwrap());
}

/// Spaces in keys round-trip and list exactly.
pub async fn key_with_spaces_round_trips(s: Storage) {
    unusual_key_round_trips(&s, "with space/a  b .png").await;
}

/// `+` and `%` (including a valid-looking escape) are kept literally.
pub async fn key_with_plus_and_percent_round_trips(s: Storage) {
    unusual_key_round_trips(&s, "a+b/100%/c%20d%2Fe").await;
}

/// `=` and `&` are kept literally.
pub async fn key_with_equals_and_ampersand_round_trips(s: Storage) {
    unusual_key_round_trips(&s, "q=1&r=2/x=y&z").await;
}

/// `#` and `?` are kept literally.
pub async fn key_with_hash_and_question_mark_round_trips(s: Storage) {
    unusual_key_round_trips(&s, "why?/#1 seg?x=1#frag").await;
}

/// Non-ASCII letters round-trip.
pub async fn key_with_unicode_round_trips(s: Storage) {
    unusual_key_round_trips(&s, "환자/Müller/マスク/naïve.nii.gz").await;
}

/// Emoji round-trip.
pub async fn key_with_emoji_round_trips(s: Storage) {
    unusual_key_round_trips(&s, "🧠/🫀 mask 🩻.png").await;
}

/// A key of exactly 1024 bytes (segments of at most 200 bytes) round-trips.
pub async fn key_of_1024_bytes_round_trips(s: Storage) {
    let prefix_len = s.prefix().as_str().len();
    let mut relative = String::new();
    while prefix_len + relative.len() < MAX_KEY_BYTES {
        if !relative.is_empty() {
            relative.push('/');
        }
        let room = (MAX_KEY_BYTES - prefix_len - relative.len()).min(200);
        relative.push_str(&"k".repeat(room));
    }
    assert_eq!(prefix_len + relative.len(), MAX_KEY_BYTES);
    unusual_key_round_trips(&s, &relative).await;
}

fn assert_invalid(s: &Storage, relative: &str) {
    match s.key(relative) {
        Err(Error::InvalidKey { reason, .. }) => assert!(!reason.is_empty()),
        other => panic!("{relative:?}: expected InvalidKey, got {other:?}"),
    }
}

/// A `..` segment is refused.
pub async fn dot_dot_segment_is_refused(s: Storage) {
    assert_invalid(&s, "../escape.png");
    assert_invalid(&s, "a/../../b");
}

/// An empty segment (`//`, leading or trailing `/`) is refused.
pub async fn empty_segment_is_refused(s: Storage) {
    assert_invalid(&s, "a//b");
    assert_invalid(&s, "a/");
    assert_invalid(&s, "");
}

/// Control characters are refused.
pub async fn control_character_is_refused(s: Storage) {
    assert_invalid(&s, "a\nb");
    assert_invalid(&s, "a\u{0}b");
    assert_invalid(&s, "tab\there");
}

/// Backslashes are refused.
pub async fn backslash_is_refused(s: Storage) {
    assert_invalid(&s, "a\\b");
}

/// A key over 1024 bytes is refused.
pub async fn key_over_1024_bytes_is_refused(s: Storage) {
    assert_invalid(&s, &"k/".repeat(520));
}

/// A valid key outside the storage's prefix is refused by every operation before I/O.
pub async fn key_outside_the_prefix_is_refused_before_io(s: Storage) {
    let (s, calls) = counted(&s);
    let outside = ObjectKey::parse("outside/the/prefix.png").unwrap();
    let inside = key(&s, "inside.png");
    assert_err!(s.put(&outside, "x").await, Error::InvalidKey { .. });
    assert_err!(s.get(&outside).await, Error::InvalidKey { .. });
    assert_err!(s.head(&outside).await, Error::InvalidKey { .. });
    assert_err!(s.delete(&outside).await, Error::InvalidKey { .. });
    assert_err!(
        s.delete_many(std::slice::from_ref(&outside)).await,
        Error::InvalidKey { .. }
    );
    assert_err!(s.copy(&inside, &outside).await, Error::InvalidKey { .. });
    assert_err!(s.rename(&outside, &inside).await, Error::InvalidKey { .. });
    assert_err!(
        s.upload(&outside, &WriteOptions::default()).await,
        Error::InvalidKey { .. }
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a refused key reached the backend"
    );
}

// ---------------------------------------------------------------------------------------
// concurrency

/// 50 tasks writing and reading one key: every read is one complete written version.
pub async fn fifty_writers_and_readers_see_only_whole_versions(s: Storage) {
    let k = key(&s, "contended.bin");
    let version = |i: u8| Bytes::from(vec![i; 256 * 1024]);
    s.put(&k, version(0)).await.unwrap();
    let tasks: Vec<_> = (1..=50u8)
        .map(|i| {
            let (s, k) = (s.clone(), k.clone());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    s.put(&k, version(i)).await.map(|_| None)
                } else {
                    s.get(&k).await.map(|o| Some(o.data))
                }
            })
        })
        .collect();
    for task in tasks {
        if let Some(read) = task.await.unwrap().unwrap() {
            assert_eq!(read.len(), 256 * 1024, "torn read: wrong length");
            let first = read[0];
            assert!(first % 2 == 0, "read a version nobody wrote: {first}");
            assert!(
                read.iter().all(|b| *b == first),
                "torn read: mixed versions"
            );
        }
    }
}

/// 100 tasks (50 writing versions of different sizes, 50 reading) on one key: every read
/// is exactly one written version, its length matching its content.
pub async fn hundred_writers_and_readers_of_different_sizes_see_whole_versions(s: Storage) {
    let k = key(&s, "contended-sizes.bin");
    let version = |i: u8| Bytes::from(vec![i; 64 * 1024 + usize::from(i) * 1024]);
    s.put(&k, version(0)).await.unwrap();
    let tasks: Vec<_> = (1..=100u8)
        .map(|i| {
            let (s, k) = (s.clone(), k.clone());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    s.put(&k, version(i)).await.map(|_| None)
                } else {
                    s.get(&k).await.map(|o| Some(o.data))
                }
            })
        })
        .collect();
    let mut reads = 0;
    for task in tasks {
        if let Some(read) = task.await.unwrap().unwrap() {
            reads += 1;
            let first = read[0];
            assert!(first % 2 == 0, "read a version nobody wrote: {first}");
            assert_eq!(
                read.len(),
                version(first).len(),
                "torn read: length of another version"
            );
            assert!(
                read.iter().all(|b| *b == first),
                "torn read: mixed versions"
            );
        }
    }
    assert_eq!(reads, 50);
}

/// Many concurrent puts of distinct keys all land.
pub async fn concurrent_puts_of_distinct_keys_all_land(s: Storage) {
    let keys: Vec<ObjectKey> = (0..40).map(|i| key(&s, &format!("par/{i}.bin"))).collect();
    let tasks: Vec<_> = keys
        .iter()
        .map(|k| {
            let (s, k) = (s.clone(), k.clone());
            tokio::spawn(async move { s.put(&k, k.to_string()).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for k in &keys {
        assert_eq!(data(&s, k).await, k.to_string());
    }
}

// ---------------------------------------------------------------------------------------
// isolation

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

// ---------------------------------------------------------------------------------------
// signed URLs, used with a plain HTTP client that holds no credentials

async fn sign(s: &Storage, method: SignedMethod, k: &ObjectKey, options: &SignOptions) -> String {
    s.signed_url(method, k, None, options)
        .await
        .expect("signed_url")
        .url
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// The HTTP status of `method` on `url` with `body` and `headers`.
async fn status(method: &str, url: &str, headers: &[(&str, &str)], body: &'static str) -> u16 {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut request = http().request(method, url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .expect("the signed URL's server answers")
        .status()
        .as_u16()
}

fn png() -> SignOptions {
    SignOptions {
        content_type: Some("image/png".to_string()),
        content_length: None,
    }
}

/// A signed GET returns the object's bytes and content type to a client without
/// credentials.
pub async fn signed_get_returns_the_bytes(s: Storage) {
    let k = key(&s, "get.png");
    s.put_with(&k, "pixels", &WriteOptions::content_type("image/png"))
        .await
        .unwrap();
    let url = sign(&s, SignedMethod::Get, &k, &SignOptions::default()).await;
    let response = http().get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(content_type.as_deref(), Some("image/png"));
    assert_eq!(response.bytes().await.unwrap(), "pixels");
}

/// A signed PUT stores the body, with the bound content type, readable through Storage.
pub async fn signed_put_stores_the_bytes(s: Storage) {
    let k = key(&s, "put.png");
    let url = sign(&s, SignedMethod::Put, &k, &png()).await;
    let response = http()
        .put(&url)
        .header("content-type", "image/png")
        .body("uploaded")
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "PUT answered {}",
        response.status()
    );
    let stored = s.get(&k).await.unwrap();
    assert_eq!(stored.data, "uploaded");
    assert_eq!(stored.info.content_type.as_deref(), Some("image/png"));
}

/// A signed HEAD reports the size without a body.
pub async fn signed_head_reports_the_size(s: Storage) {
    let k = put(&s, "head.bin", "12345").await;
    let url = sign(&s, SignedMethod::Head, &k, &SignOptions::default()).await;
    let response = http().head(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let length = response
        .headers()
        .get("content-length")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(length.as_deref(), Some("5"));
}

/// A signed DELETE removes the object.
pub async fn signed_delete_removes_the_object(s: Storage) {
    let k = put(&s, "delete.bin", "x").await;
    let url = sign(&s, SignedMethod::Delete, &k, &SignOptions::default()).await;
    let code = status("DELETE", &url, &[], "").await;
    assert!((200..300).contains(&code), "DELETE answered {code}");
    assert!(!s.exists(&k).await.unwrap());
}

/// Signed URLs work for keys with spaces, `+`, `%`, `#`, `?` and unicode.
pub async fn signed_get_of_unusual_key_works(s: Storage) {
    let k = put(&s, "a b+c%d#e?f/환자 🧠.png", "unusual").await;
    let url = sign(&s, SignedMethod::Get, &k, &SignOptions::default()).await;
    let response = http().get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "{url}");
    assert_eq!(response.bytes().await.unwrap(), "unusual");
}

/// A TTL above the maximum is refused when the URL is issued, naming the maximum.
pub async fn ttl_above_the_maximum_is_refused_at_issue(s: Storage) {
    let k = key(&s, "ttl.bin");
    let max = s.ttl_policy().max_ttl().as_secs();
    match s
        .signed_url(
            SignedMethod::Get,
            &k,
            Some(max + 1),
            &SignOptions::default(),
        )
        .await
    {
        Err(Error::InvalidTtl {
            requested,
            max: said,
        }) => {
            assert_eq!((requested, said), (max + 1, max));
        }
        other => panic!("expected InvalidTtl, got {other:?}"),
    }
    assert_err!(
        s.signed_url(SignedMethod::Get, &k, Some(0), &SignOptions::default())
            .await,
        Error::InvalidTtl { .. }
    );
}

/// Without a TTL the URL lives the configured default.
pub async fn no_ttl_means_the_default_ttl(s: Storage) {
    let k = key(&s, "ttl.bin");
    let signed = s
        .signed_url(SignedMethod::Get, &k, None, &SignOptions::default())
        .await
        .unwrap();
    let lives = (signed.expires_at - chrono::Utc::now()).num_seconds();
    let default = s.ttl_policy().default_ttl().as_secs() as i64;
    assert!(
        (default - 5..=default).contains(&lives),
        "lives {lives} s, default {default} s"
    );
}

/// A key outside the storage's prefix is refused before signing.
pub async fn key_outside_the_prefix_is_refused_at_issue(s: Storage) {
    let outside = ObjectKey::parse("outside/x.png").unwrap();
    assert_err!(
        s.signed_url(SignedMethod::Get, &outside, None, &SignOptions::default())
            .await,
        Error::InvalidKey { .. }
    );
}

/// A URL used after its expiry is refused.
pub async fn expired_url_is_refused(s: Storage) {
    let k = put(&s, "expiring.bin", "x").await;
    let url = s
        .signed_url(SignedMethod::Get, &k, Some(1), &SignOptions::default())
        .await
        .unwrap()
        .url;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(status("GET", &url, &[], "").await, 403);
}

/// The query parameter whose name ends with `suffix` (case-insensitive), as (name, value).
fn param(url: &str, suffix: &str) -> (String, String) {
    let query = url.split_once('?').expect("a query").1;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| name.to_ascii_lowercase().ends_with(suffix))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .unwrap_or_else(|| panic!("no *{suffix} parameter in {url}"))
}

/// A URL whose signature was changed is refused.
pub async fn url_with_changed_signature_is_refused(s: Storage) {
    let k = put(&s, "sig.bin", "x").await;
    let url = sign(&s, SignedMethod::Get, &k, &SignOptions::default()).await;
    let (name, value) = param(&url, "signature");
    let flipped: String = value.chars().rev().collect();
    let tampered = url.replace(&format!("{name}={value}"), &format!("{name}={flipped}"));
    assert_ne!(tampered, url);
    assert_eq!(status("GET", &tampered, &[], "").await, 403);
}

/// A URL whose key was changed is refused: it does not open another object.
pub async fn url_with_changed_key_is_refused(s: Storage) {
    let k = put(&s, "granted.bin", "granted").await;
    put(&s, "grantee.bin", "other").await;
    let url = sign(&s, SignedMethod::Get, &k, &SignOptions::default()).await;
    let tampered = url.replacen("granted.bin", "grantee.bin", 1);
    assert_ne!(tampered, url);
    assert_eq!(status("GET", &tampered, &[], "").await, 403);
}

/// A URL whose expiry was changed is refused.
pub async fn url_with_changed_expiry_is_refused(s: Storage) {
    let k = put(&s, "exp.bin", "x").await;
    let url = sign(&s, SignedMethod::Get, &k, &SignOptions::default()).await;
    let (name, value) = param(&url, "expires");
    let later = value.parse::<u64>().expect("a number") + 1;
    let tampered = url.replace(&format!("{name}={value}"), &format!("{name}={later}"));
    assert_eq!(status("GET", &tampered, &[], "").await, 403);
}

/// A GET URL used for PUT or DELETE is refused and the object stays as it was.
pub async fn url_used_with_another_method_is_refused(s: Storage) {
    let k = put(&s, "method.bin", "original").await;
    let url = sign(&s, SignedMethod::Get, &k, &SignOptions::default()).await;
    assert_eq!(status("PUT", &url, &[], "overwritten").await, 403);
    assert_eq!(status("DELETE", &url, &[], "").await, 403);
    assert_eq!(data(&s, &k).await, "original");
}

/// A PUT with another content type than the bound one is refused and stores nothing.
pub async fn put_with_another_content_type_than_bound_is_refused(s: Storage) {
    let k = key(&s, "bound.png");
    let url = sign(&s, SignedMethod::Put, &k, &png()).await;
    assert_eq!(
        status("PUT", &url, &[("content-type", "text/html")], "<script>").await,
        403
    );
    assert!(!s.exists(&k).await.unwrap());
}

/// A URL signed for another storage's secret (or credentials) is refused here.
pub async fn url_signed_by_another_secret_is_refused(s: Storage) {
    let k = put(&s, "foreign.bin", "x").await;
    let url = sign(&s, SignedMethod::Get, &k, &SignOptions::default()).await;
    // Re-sign the same request with a random secret: same shape, wrong key.
    let (name, value) = param(&url, "signature");
    let forged: String = (0..value.len())
        .map(|i| if i % 2 == 0 { 'a' } else { '5' })
        .collect();
    let tampered = url.replace(&format!("{name}={value}"), &format!("{name}={forged}"));
    assert_eq!(status("GET", &tampered, &[], "").await, 403);
}
