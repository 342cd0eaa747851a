//! The kept open files: served only while the key still names the very file unchanged,
//! whatever changed it (this store, another program, a symlink, a folder), and bounded.

use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use super::*;
use crate::local::LocalStore;

/// A store over `<dir>/root` keeping files as it does in use, once settled.
fn store() -> (tempfile::TempDir, LocalStore, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let store = LocalStore::open(&root, false).unwrap();
    (dir, store, root)
}

/// A store keeping every file at once (no settling time), `capacity` at most.
fn eager_store(capacity: usize) -> (tempfile::TempDir, LocalStore, PathBuf) {
    let (dir, store, root) = store();
    let mut open_files = OpenFiles::with_capacity(capacity);
    open_files.settle = Duration::ZERO;
    (dir, store.with_open_files(open_files), root)
}

/// Waits until every file written so far has settled and may be kept.
async fn settle() {
    tokio::time::sleep(SETTLED_AFTER + Duration::from_millis(300)).await;
}

fn write(root: &FsPath, key: &str, body: &[u8]) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

/// Replaces the file of `key` as another program does: a new file renamed over it.
fn replace(root: &FsPath, key: &str, body: &[u8]) {
    let staged = root.parent().unwrap().join("staged");
    std::fs::write(&staged, body).unwrap();
    std::fs::rename(staged, root.join(key)).unwrap();
}

async fn read(store: &LocalStore, key: &str) -> object_store::Result<Bytes> {
    let got = store
        .get_opts(&Path::from(key), GetOptions::default())
        .await?;
    got.bytes().await
}

/// How many reads the kept files answered so far.
fn served(store: &LocalStore) -> usize {
    store.inner.open_files.served.load(Ordering::Relaxed)
}

fn kept(store: &LocalStore) -> usize {
    store.inner.open_files.len()
}

fn not_found(result: object_store::Result<Bytes>) -> String {
    match result {
        Err(object_store::Error::NotFound { source, .. }) => source.to_string(),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn a_settled_object_is_served_from_its_kept_file_and_a_fresh_one_is_not() {
    let (_dir, store, root) = store();
    write(&root, "m/a", b"0123456789");
    read(&store, "m/a").await.unwrap();
    assert_eq!(kept(&store), 0, "a file changed just now was kept");
    settle().await;
    let want = || {
        let mut options = GetOptions::default();
        options.extensions.insert(crate::local::stamp::WantStamp);
        options
    };
    let opened = store.get_opts(&Path::from("m/a"), want()).await.unwrap();
    assert_eq!((kept(&store), served(&store)), (1, 0));
    let again = store.get_opts(&Path::from("m/a"), want()).await.unwrap();
    assert_eq!(served(&store), 1, "the second read opened the file again");
    // The same version as the read that opened it: the gateway's verdict still applies.
    let stamp = |got: &object_store::GetResult| got.extensions.get::<FileStamp>().copied();
    assert!(stamp(&opened).is_some());
    assert_eq!(stamp(&opened), stamp(&again));
    assert_eq!(opened.meta, again.meta);
    assert_eq!(opened.attributes, again.attributes);
    assert_eq!(&again.bytes().await.unwrap()[..], b"0123456789");
    // Ranges and HEADs from the kept file too.
    let range = GetOptions {
        range: Some(GetRange::Bounded(2..5)),
        ..Default::default()
    };
    let got = store.get_opts(&Path::from("m/a"), range).await.unwrap();
    assert_eq!(
        (got.range.clone(), &got.bytes().await.unwrap()[..]),
        (2..5, &b"234"[..])
    );
    let head = store.head(&Path::from("m/a")).await.unwrap();
    assert_eq!(head.size, 10);
    assert_eq!(served(&store), 3);
    // A larger file is read but not kept, even through a small range.
    write(&root, "m/big", &vec![7; KEPT_SIZE_MAX as usize + 1]);
    settle().await;
    let range = GetOptions {
        range: Some(GetRange::Bounded(0..5)),
        ..Default::default()
    };
    let got = store.get_opts(&Path::from("m/big"), range).await.unwrap();
    assert_eq!(&got.bytes().await.unwrap()[..], &[7; 5]);
    assert_eq!(kept(&store), 1);
}

#[tokio::test]
async fn a_kept_file_replaced_or_deleted_behind_the_stores_back_is_never_served() {
    let (_dir, store, root) = store();
    for key in ["m/renamed", "m/put", "m/deleted", "m/folder"] {
        write(&root, key, b"old bytes");
    }
    settle().await;
    for key in ["m/renamed", "m/put", "m/deleted", "m/folder"] {
        read(&store, key).await.unwrap();
        read(&store, key).await.unwrap();
    }
    assert_eq!((kept(&store), served(&store)), (4, 4));
    replace(&root, "m/renamed", b"new bytes");
    assert_eq!(&read(&store, "m/renamed").await.unwrap()[..], b"new bytes");
    store
        .put(
            &Path::from("m/put"),
            Bytes::from_static(b"put bytes").into(),
        )
        .await
        .unwrap();
    assert_eq!(&read(&store, "m/put").await.unwrap()[..], b"put bytes");
    std::fs::remove_file(root.join("m/deleted")).unwrap();
    not_found(read(&store, "m/deleted").await);
    std::fs::remove_file(root.join("m/folder")).unwrap();
    std::fs::create_dir(root.join("m/folder")).unwrap();
    let why = not_found(read(&store, "m/folder").await);
    assert!(why.contains("folder"), "{why}");
    // None of these was answered from its kept file, and none is kept any more (the new
    // files have not settled).
    assert_eq!((kept(&store), served(&store)), (0, 4));
}

#[tokio::test]
async fn a_rewrite_in_place_with_the_times_set_back_is_read_as_it_now_is() {
    use std::os::unix::fs::FileExt;
    let (_dir, store, root) = store();
    write(&root, "m/a", b"0123456789");
    settle().await;
    let want = || {
        let mut options = GetOptions::default();
        options.extensions.insert(crate::local::stamp::WantStamp);
        options
    };
    let before = store.get_opts(&Path::from("m/a"), want()).await.unwrap();
    let stamp = *before.extensions.get::<FileStamp>().unwrap();
    read(&store, "m/a").await.unwrap();
    assert_eq!(served(&store), 1);
    // What `rsync --inplace --times` does: same inode, size and modification time.
    let path = root.join("m/a");
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(b"ABCDE", 0).unwrap();
    file.set_modified(modified).unwrap();
    drop(file);
    let after = store.get_opts(&Path::from("m/a"), want()).await.unwrap();
    assert_eq!(after.meta.e_tag, before.meta.e_tag, "the etag cannot tell");
    // Not from the kept file, and under no stamp a verdict on the old bytes could match
    // (changed just now: no stamp at all).
    assert_eq!(served(&store), 1);
    assert_ne!(after.extensions.get::<FileStamp>(), Some(&stamp));
    assert_eq!(&after.bytes().await.unwrap()[..], b"ABCDE56789");
}

#[tokio::test]
async fn a_new_record_or_a_folder_swapped_on_the_path_is_read_as_it_now_is() {
    use object_store::Attribute;
    let (dir, store, root) = store();
    write(&root, "r/f", b"record");
    write(&root, "a/b/f", b"old tree");
    write(&dir.path().join("new"), "b/f", b"new tree");
    settle().await;
    for key in ["r/f", "a/b/f"] {
        read(&store, key).await.unwrap();
        read(&store, key).await.unwrap();
    }
    assert_eq!(served(&store), 2);
    // Another program sets the attribute record: only the status-change time tells.
    let record = br#"{"content_type":"text/x-new"}"#;
    xattr::set(root.join("r/f"), crate::local::XATTR, record).unwrap();
    let got = store
        .get_opts(&Path::from("r/f"), GetOptions::default())
        .await
        .unwrap();
    assert_eq!(
        got.attributes
            .get(&Attribute::ContentType)
            .map(|v| v.as_ref()),
        Some("text/x-new")
    );
    // A whole folder on the path swapped for another (the file itself untouched).
    std::fs::rename(root.join("a"), dir.path().join("old")).unwrap();
    std::fs::rename(dir.path().join("new"), root.join("a")).unwrap();
    assert_eq!(&read(&store, "a/b/f").await.unwrap()[..], b"new tree");
    assert_eq!(served(&store), 2);
}

#[tokio::test]
async fn a_symlink_swapped_in_for_a_folder_of_a_kept_file_is_refused() {
    let (dir, store, root) = store();
    write(&root, "a/b/f", b"inside");
    let outside = dir.path().join("outside");
    write(&outside, "b/f", b"OUTSIDE THE ROOT");
    settle().await;
    read(&store, "a/b/f").await.unwrap();
    read(&store, "a/b/f").await.unwrap();
    assert_eq!(served(&store), 1);
    std::fs::rename(root.join("a"), dir.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
    let why = not_found(read(&store, "a/b/f").await);
    assert!(why.contains("symlink"), "{why}");
    assert_eq!((kept(&store), served(&store)), (0, 1));
}

/// Descriptors this process holds open on files below `root`.
fn open_below(root: &FsPath) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(root))
        .count()
}

#[tokio::test]
async fn kept_files_stay_bounded_however_many_keys_are_read() {
    // The capacity a store takes in use, here.
    let capacity = OpenFiles::new().capacity;
    assert!((1..=MOST_KEPT).contains(&capacity), "{capacity}");
    let (_dir, store, root) = eager_store(capacity);
    let keys: Vec<String> = (0..capacity * 2 + 1).map(|i| format!("k/{i}")).collect();
    for key in &keys {
        write(&root, key, key.as_bytes());
    }
    for key in keys.iter().chain(&keys) {
        assert_eq!(read(&store, key).await.unwrap(), key.as_bytes());
    }
    assert_eq!(kept(&store), capacity);
    // The root itself and the reserved folders are open too.
    let held = open_below(&root);
    assert!(held >= capacity && held <= capacity + 4, "{held} open");
}

#[tokio::test]
async fn the_store_drops_a_kept_file_it_deletes_renames_or_overwrites_at_once() {
    let (_dir, store, root) = eager_store(8);
    for key in ["d", "r", "o"] {
        write(&root, key, b"x");
        read(&store, key).await.unwrap();
    }
    assert_eq!(kept(&store), 3);
    store.delete(&Path::from("d")).await.unwrap();
    store
        .rename(&Path::from("r"), &Path::from("r2"))
        .await
        .unwrap();
    store
        .put(&Path::from("o"), Bytes::from_static(b"y").into())
        .await
        .unwrap();
    assert_eq!(kept(&store), 0);
    assert_eq!(open_below(&root), 3, "a deleted file is still held open");
}

#[test]
fn the_clock_replaces_files_not_read_again_and_idle_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let object = |name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, name).unwrap();
        let file = File::open(&path).unwrap();
        let md = file.metadata().unwrap();
        let described = Described {
            meta: ObjectMeta {
                location: Path::from(name),
                last_modified: Default::default(),
                size: md.len(),
                e_tag: None,
                version: None,
            },
            attributes: Attributes::new(),
            checksum: None,
            unreadable: None,
        };
        OpenObject {
            file,
            stamp: FileStamp::of(&md),
            described,
        }
    };
    let files = OpenFiles::with_capacity(2);
    files.keep("a", object("a"), false);
    files.keep("b", object("b"), false);
    assert!(files.get("a", false).is_some(), "read again: stays");
    files.keep("c", object("c"), false);
    assert!(files.get("b", false).is_none(), "not read again: replaced");
    assert!(files.get("a", false).is_some() && files.get("c", false).is_some());
    files.keep("c", object("c2"), false);
    assert_eq!(files.len(), 2);
    files.forget("a", false);
    assert_eq!(files.len(), 1);
    assert_eq!(
        files
            .get("c", false)
            .unwrap()
            .described
            .meta
            .location
            .as_ref(),
        "c2"
    );
    let later = Instant::now() + INACTIVE + SWEEP_EVERY;
    let gone = files.slots().sweep(later);
    assert_eq!((gone.len(), files.len()), (1, 0));
    // Nothing kept where the process may open no descriptor to spare.
    let none = OpenFiles::with_capacity(0);
    none.keep("a", object("a"), false);
    assert!(none.get("a", false).is_none());
}

/// Reads racing with replacements of the same keys, every file kept at once: a read
/// started after a replacement was published never sees an older version, and every
/// read is one whole version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_racing_with_replacements_never_see_an_older_version() {
    use rand::{Rng, SeedableRng};
    const KEYS: usize = 4;
    const REPLACEMENTS: u64 = 500;
    let (dir, store, root) = eager_store(KEYS);
    let seed: u64 = rand::random();
    println!("seed {seed}, {REPLACEMENTS} replacements of {KEYS} keys, 2 readers");
    let body = |version: u64| format!("version {version:012}").into_bytes();
    for k in 0..KEYS {
        write(&root, &format!("k{k}"), &body(0));
    }
    let published: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (published, done, root) = (published.clone(), done.clone(), root.clone());
        let staged = dir.path().join("staged");
        tokio::task::spawn_blocking(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            for version in 1..=REPLACEMENTS {
                let k = rng.random_range(0..KEYS);
                std::fs::write(&staged, body(version)).unwrap();
                std::fs::rename(&staged, root.join(format!("k{k}"))).unwrap();
                published[k].fetch_max(version, Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (store, published, done) = (store.clone(), published.clone(), done.clone());
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (r + 1));
                let mut reads = 0u64;
                while !done.load(Ordering::SeqCst) {
                    let k = rng.random_range(0..KEYS);
                    let floor = published[k].load(Ordering::SeqCst);
                    let got = read(&store, &format!("k{k}")).await.unwrap();
                    let text = std::str::from_utf8(&got).unwrap();
                    let version: u64 = text.strip_prefix("version ").unwrap().parse().unwrap();
                    assert!(
                        version >= floor,
                        "k{k}: read {version} after {floor} (seed {seed})"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    writer.await.unwrap();
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    println!("{reads} reads, {} from kept files", served(&store));
    assert!(served(&store) > 0, "the kept files were never used");
}

/// A file whose name no key can hold (read and deleted by that name) is never kept: it
/// would be kept under the empty key, which its delete does not drop, and hold its disk
/// space after the delete.
#[tokio::test]
async fn a_file_read_by_a_name_no_key_can_hold_is_not_kept() {
    use crate::providers::FoundNames;
    let (_dir, store, root) = eager_store(8);
    let name = "m/line\nbreak";
    write(&root, name, b"foreign");
    for _ in 0..2 {
        let got = FoundNames::get(&store, name, GetOptions::default())
            .await
            .unwrap();
        assert_eq!(&got.bytes().await.unwrap()[..], b"foreign");
    }
    assert_eq!(kept(&store), 0, "a file of a name no key holds was kept");
    FoundNames::delete(&store, name).await.unwrap();
    assert_eq!(open_below(&root), 3, "a deleted file is still held open");
}

/// The last close of a kept file whose name another program removed frees the file's
/// blocks (a journal transaction, its extent tree read), which may wait for the disk: it
/// does not run on the thread of a read answered without waiting (here the test's own, a
/// current-thread runtime's).
#[tokio::test]
async fn a_kept_file_deleted_elsewhere_is_closed_off_the_reading_thread() {
    use std::os::unix::fs::MetadataExt;
    let (_dir, store, root) = eager_store(8);
    write(&root, "m/a", b"0123456789");
    read(&store, "m/a").await.unwrap();
    read(&store, "m/a").await.unwrap();
    assert_eq!(served(&store), 1);
    let ino = std::fs::metadata(root.join("m/a")).unwrap().ino();
    std::fs::remove_file(root.join("m/a")).unwrap();
    not_found(read(&store, "m/a").await);
    let closed_on = || {
        let closed = CLOSED_UNLINKED.lock().unwrap();
        closed
            .iter()
            .find(|(i, _)| *i == ino)
            .map(|(_, thread)| *thread)
    };
    for _ in 0..500 {
        if closed_on().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let thread = closed_on().expect("the deleted file was never closed");
    assert_ne!(
        thread,
        std::thread::current().id(),
        "closed on the reading thread"
    );
}

/// A folder of a kept file's key moved away (out of the root) and replaced by a symlink to
/// itself: the file and its status-change time are unchanged, but the key now crosses a
/// symlink, which no read follows, so it is refused as the full open refuses it (not
/// served from the kept file while other keys of that folder are refused).
#[tokio::test]
async fn a_symlink_to_the_very_folder_moved_away_is_refused_for_a_kept_file() {
    let (dir, store, root) = eager_store(8);
    write(&root, "a/b/kept", b"inside");
    write(&root, "a/b/other", b"inside");
    read(&store, "a/b/kept").await.unwrap();
    read(&store, "a/b/kept").await.unwrap();
    assert_eq!(served(&store), 1);
    let moved = dir.path().join("moved");
    std::fs::rename(root.join("a"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, root.join("a")).unwrap();
    let other = not_found(read(&store, "a/b/other").await);
    assert!(other.contains("symlink"), "{other}");
    let kept = not_found(read(&store, "a/b/kept").await);
    assert!(kept.contains("symlink"), "{kept}");
    let head = store.head(&Path::from("a/b/kept")).await;
    assert!(
        matches!(head, Err(object_store::Error::NotFound { .. })),
        "{head:?}"
    );
    assert_eq!(served(&store), 1);
}
