//! object_store's own integration suite (its `integration` module) against the local
//! provider (fsync on and off) and against the store a `Storage` sends its calls through,
//! for local and memory: every function that applies to a store without multipart-part
//! or paginated-listing APIs (object_store's LocalFileSystem and InMemory run the same).

use maskstore_backends::Storage;
use maskstore_backends::local::LocalStore;
use maskstore_core::Config;
use object_store::DynObjectStore;
use object_store::integration::*;

/// The functions object_store runs on its own stores that apply to `store`;
/// `supports_update`: whether if-match puts work (they do on every maskstore backend).
async fn suite(store: &DynObjectStore) {
    put_get_delete_list(store).await;
    list_with_offset_exclusivity(store).await;
    get_opts(store).await;
    list_uses_directories_correctly(store).await;
    list_with_delimiter(store).await;
    rename_and_copy(store).await;
    copy_if_not_exists(store).await;
    copy_rename_nonexistent_object(store).await;
    stream_get(store).await;
    put_opts(store, true).await;
    put_get_attributes(store).await;
    multipart_race_condition(store, true).await;
    multipart_out_of_order(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_suite_on_local_store_with_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), true).unwrap();
    suite(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_suite_on_local_store_without_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), false).unwrap();
    suite(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_suite_on_a_local_storage() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::connect(&Config::local(dir.path())).unwrap();
    suite(storage.object_store().as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_suite_on_a_memory_storage() {
    let storage = Storage::memory();
    suite(storage.object_store().as_ref()).await;
}
