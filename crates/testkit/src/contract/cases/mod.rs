//! The cases, grouped by operation. Each takes a storage scoped to its own empty prefix.
//!
//! One file per group; this one lists them all (`all`) and holds the helpers they share.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use maskstore_backends::{SignOptions, SignedMethod, Storage};
use maskstore_core::ObjectKey;

use super::{Case, Counting, Need};

macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            other => panic!("expected {}, got {:?}", stringify!($pattern), other),
        }
    };
}

mod concurrency;
mod conditional;
mod copy;
mod delete;
mod get;
mod integrity;
mod isolation;
mod keys;
mod list;
mod put;
mod range;
mod rename;
mod signed_url;
mod signed_url_checks;
mod upload;

pub use concurrency::*;
pub use conditional::*;
pub use copy::*;
pub use delete::*;
pub use get::*;
pub use integrity::*;
pub use isolation::*;
pub use keys::*;
pub use list::*;
pub use put::*;
pub use range::*;
pub use rename::*;
pub use signed_url::*;
pub use signed_url_checks::*;
pub use upload::*;

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
        if_match_on_a_missing_key_is_not_found,
        if_match_with_current_etag_returns_the_object,
    ],
    integrity / Nothing: [
        checksum_is_present_after_each_write_path,
        range_read_of_a_checksummed_object_works,
        object_without_checksum_reads_as_unverified,
        writing_the_checksum_metadata_yourself_is_refused,
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
        ranges_of_an_empty_object,
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
        copy_onto_itself_keeps_the_object,
    ],
    rename / Nothing: [
        rename_moves_the_object,
        rename_overwrites_the_destination,
        rename_of_missing_source_is_not_found,
        rename_if_absent_to_an_existing_key_keeps_both,
        rename_onto_itself_keeps_the_object,
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
        write_from_file_stores_the_file_with_its_checksum,
        write_from_file_of_a_missing_or_non_regular_file_stores_nothing,
        write_from_file_of_a_fifo_or_a_proc_file_is_refused_at_once,
        write_from_file_honours_create_only_and_if_match,
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
        segment_of_255_bytes_round_trips,
        segment_of_256_bytes_is_refused,
        unicode_format_character_is_refused,
        key_outside_the_prefix_is_refused_before_io,
    ],
    concurrency / Nothing: [
        fifty_writers_and_readers_see_only_whole_versions,
        hundred_writers_and_readers_of_different_sizes_see_whole_versions,
        concurrent_puts_of_distinct_keys_all_land,
        fifty_tasks_mixing_overwrite_update_and_delete_never_lose_a_write,
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
        upload_binding_is_issued_only_where_urls_can_bind,
        bound_headers_on_other_methods_are_refused_at_issue,
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
        url_signed_by_another_secret_is_refused,
    ],
    signed_url_bound / BoundUploads: [
        signed_put_of_the_bound_length_stores_it,
    ],
    signed_url_bound_checks / BoundUploadChecks: [
        put_with_another_content_type_than_bound_is_refused,
        put_of_another_length_than_bound_is_refused,
        put_bound_to_type_and_length_needs_both,
    ],
}

// ---------------------------------------------------------------------------------------
// helpers shared by the groups

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

/// A storage over the same backend that counts the calls reaching it.
fn counted(storage: &Storage) -> (Storage, Arc<std::sync::atomic::AtomicUsize>) {
    let counting = Counting::new();
    (storage.layer(counting.clone()), counting.counter())
}

// signed URLs, used by the signed_url and signed_url_checks groups

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
        sha256: None,
    }
}
