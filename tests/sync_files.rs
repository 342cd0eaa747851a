//! `sync` from the local provider by open file: the object's file is opened beneath the
//! root (`Storage::open_file`) and stored by `Storage::write_from_open_file` (a kernel copy
//! onto local disk, parts read ahead of the upload onto S3 and memory), its bytes checked
//! against the source's stored checksum before anything is committed. Happy copies keep
//! bytes, content type, metadata and the source-etag record; damaged, symlinked or changing
//! sources store nothing and leave the destination's object as it was.

use crate::support::flip_one_byte;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use maskstore::sync::{self, SOURCE_ETAG};
use maskstore::{ChecksumAlgorithm, Config, Error, KeyPrefix, ObjectKey, Storage, WriteOptions};

use crate::support::{maskstore, succeeded, text, vars};

const MIB: usize = 1024 * 1024;

/// Sizes that take every path: empty, one PUT, past the local provider's inline reads,
/// and past both the 8 MiB copy step and S3's multipart threshold.
const SIZES: [usize; 4] = [0, 1000, 300_000, 9 * MIB + 17];

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 31 + seed as u64) as u8)
        .collect()
}

/// A local storage at `root` under `prefix`, storing `checksum`.
fn local(root: &Path, prefix: &KeyPrefix, checksum: ChecksumAlgorithm) -> Storage {
    Storage::connect(
        &Config::local(root)
            .with_prefix(prefix.clone())
            .with_checksum(checksum),
    )
    .unwrap()
}

fn prefix() -> KeyPrefix {
    KeyPrefix::parse(format!("mask/sync-{:08x}/", rand::random::<u32>())).unwrap()
}

/// The destinations every test runs against: local with the source's algorithm and with
/// another, memory, and SeaweedFS when the test servers run.
fn destinations(dir: &Path, prefix: &KeyPrefix) -> Vec<(String, Storage)> {
    let mut out = vec![
        (
            "local sha256".to_string(),
            local(&dir.join("to-sha"), prefix, ChecksumAlgorithm::Sha256),
        ),
        (
            "local crc64nvme".to_string(),
            local(&dir.join("to-crc"), prefix, ChecksumAlgorithm::Crc64Nvme),
        ),
        (
            "memory".to_string(),
            Storage::connect(&Config::memory().with_prefix(prefix.clone())).unwrap(),
        ),
    ];
    if let Some(server) = maskstore_testkit::servers::seaweedfs() {
        let config = server.config().with_prefix(prefix.clone());
        out.push(("s3".to_string(), Storage::connect(&config).unwrap()));
    }
    out
}

/// A layer that passes every call through: enough to make a storage layered.
#[derive(Debug)]
struct Passthrough;

impl maskstore::Layer for Passthrough {
    fn wrap(
        &self,
        inner: std::sync::Arc<dyn object_store::ObjectStore>,
    ) -> std::sync::Arc<dyn object_store::ObjectStore> {
        inner
    }
}

fn object_path(root: &Path, key: &ObjectKey) -> PathBuf {
    root.join(key.as_str())
}

/// Temporary files left under a local root's `.maskstore/tmp`.
fn temp_files(root: &Path) -> usize {
    std::fs::read_dir(root.join(".maskstore/tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn clean(to: &Storage, keys: &[ObjectKey]) {
    to.delete_many(keys).await.unwrap();
}

#[tokio::test]
async fn sync_from_local_copies_bytes_content_type_metadata_and_checksum_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let from = local(&dir.path().join("from"), &prefix, ChecksumAlgorithm::Sha256);
    let mut keys = Vec::new();
    for (i, size) in SIZES.iter().enumerate() {
        let key = from.key(&format!("1.2/{i}/mask.png")).unwrap();
        let options = WriteOptions::content_type("image/png")
            .with_metadata("series", format!("s{i}"))
            .with_metadata("labels", "liver,spleen");
        from.put_with(&key, body(*size, i as u8), &options)
            .await
            .unwrap();
        keys.push(key);
    }
    // The source opens by file (local, no layers); others say to stream.
    let opened = from.open_file(&keys[1]).await.unwrap().unwrap();
    assert_eq!(opened.info().size, 1000);
    assert!(opened.info().checksum.is_some());
    drop(opened);
    let memory = Storage::memory();
    assert!(
        memory
            .open_file(&memory.key("a").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let layered = from.layer(Passthrough);
    assert!(layered.open_file(&keys[1]).await.unwrap().is_none());

    for (name, to) in destinations(dir.path(), &prefix) {
        for (i, key) in keys.iter().enumerate() {
            let size = sync::copy(&from, &to, key).await.unwrap().size;
            assert_eq!(size, SIZES[i] as u64, "{name} {key}");
            let source = from.head(key).await.unwrap();
            let copied = to.get(key).await.unwrap();
            assert_eq!(copied.data, body(SIZES[i], i as u8), "{name} {key}");
            assert_eq!(
                copied.info.content_type.as_deref(),
                Some("image/png"),
                "{name}"
            );
            let mut expected: BTreeMap<String, String> = source.metadata.clone();
            expected.insert(SOURCE_ETAG.to_string(), source.etag.clone().unwrap());
            assert_eq!(copied.info.metadata, expected, "{name} {key}");
            assert_eq!(
                copied.info.checksum,
                maskstore::checksum_of(to.checksum_algorithm(), &copied.data),
                "{name} {key}"
            );
        }
        // A second plan finds everything there.
        let plan = sync::plan(&from, &to, prefix.as_str(), false)
            .await
            .unwrap();
        assert_eq!((plan.to_copy.len(), plan.skipped), (0, 4), "{name}");
        clean(&to, &keys).await;
    }
}

/// A byte flipped in the source's file (its attributes, so its checksum, kept): every
/// destination refuses the copy with `Corrupt` naming the key on local, keeps the object it
/// had, creates nothing where there was none, and leaves no temporary file or incomplete
/// upload behind.
#[tokio::test]
async fn a_damaged_source_file_is_refused_and_the_destination_keeps_its_object() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let root = dir.path().join("from");
    let from = local(&root, &prefix, ChecksumAlgorithm::Sha256);
    for (name, to) in destinations(dir.path(), &prefix) {
        for size in [1000, 300_000, 9 * MIB + 17] {
            let kept = from.key(&format!("kept-{size}.png")).unwrap();
            let fresh = from.key(&format!("fresh-{size}.png")).unwrap();
            for key in [&kept, &fresh] {
                from.put(key, body(size, 3)).await.unwrap();
                flip_one_byte(&object_path(&root, key));
            }
            to.put(&kept, "the old object").await.unwrap();
            for key in [&kept, &fresh] {
                match sync::copy(&from, &to, key).await {
                    Err(Error::Corrupt {
                        key: k, backend, ..
                    }) => {
                        assert_eq!((k.as_str(), backend.as_str()), (key.as_str(), "local"));
                    }
                    other => panic!("{name} {key}: expected Corrupt, got {other:?}"),
                }
            }
            assert_eq!(
                to.get(&kept).await.unwrap().data,
                "the old object",
                "{name}"
            );
            assert!(!to.exists(&fresh).await.unwrap(), "{name} {fresh}");
            assert!(
                to.incomplete_uploads(None).await.unwrap().is_empty(),
                "{name}: an upload was left open"
            );
            clean(&to, &[kept, fresh]).await;
        }
    }
    for local in ["to-sha", "to-crc"] {
        assert_eq!(temp_files(&dir.path().join(local)), 0, "{local}");
    }
    // Forensics stay possible: a source read without verification copies as read.
    let to = local(
        &dir.path().join("forensics"),
        &prefix,
        ChecksumAlgorithm::Sha256,
    );
    let key = from.key("kept-1000.png").unwrap();
    sync::copy(&from.without_verification(), &to, &key)
        .await
        .unwrap();
    assert_ne!(to.get(&key).await.unwrap().data, body(1000, 3));
}

/// A source key that is a symlink out of the root, or whose folder was swapped for one
/// after the listing, is not found: nothing outside the root is read or copied.
#[tokio::test]
async fn a_source_behind_a_symlink_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let root = dir.path().join("from");
    let from = local(&root, &prefix, ChecksumAlgorithm::Sha256);
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("a.png"), "OUTSIDE THE ROOT").unwrap();

    // The key itself is a symlink to a file outside.
    let linked = from.key("linked.png").unwrap();
    from.put(&from.key("placeholder").unwrap(), "x")
        .await
        .unwrap();
    std::os::unix::fs::symlink(outside.join("a.png"), object_path(&root, &linked)).unwrap();
    // The key's folder is swapped for a symlink to a folder outside after it was listed.
    let swapped = from.key("study/a.png").unwrap();
    from.put(&swapped, "inside").await.unwrap();
    let folder = object_path(&root, &swapped).parent().unwrap().to_path_buf();
    std::fs::rename(&folder, dir.path().join("moved-away")).unwrap();
    std::os::unix::fs::symlink(&outside, &folder).unwrap();

    for (name, to) in destinations(dir.path(), &prefix) {
        for key in [&linked, &swapped] {
            match from.open_file(key).await {
                Err(Error::NotFound { .. }) => {}
                other => panic!("{key}: expected NotFound, got {other:?}"),
            }
            match sync::copy(&from, &to, key).await {
                Err(Error::NotFound { .. }) => {}
                other => panic!("{name} {key}: expected NotFound, got {other:?}"),
            }
            assert!(!to.exists(key).await.unwrap(), "{name} {key}");
        }
    }
}

/// What happens to the source file while it is copied, by the copy's own progress: the
/// callback runs after the first step (8 MiB) is stored, of an object of five; parts are
/// read at most two ahead of the upload, so the last ones are read after the change.
#[derive(Debug, Clone, Copy)]
enum Meanwhile {
    /// Cut short (`truncate`): nothing stored.
    Truncated,
    /// Appended to: nothing stored (its first bytes alone would verify).
    Extended,
    /// Rewritten in place, same size: nothing stored.
    Rewritten,
    /// Replaced by a rename over it (as every write to a local store does): the open file
    /// is the old version, which is stored whole and verified.
    Replaced,
}

#[tokio::test]
async fn a_source_that_changes_during_the_copy_stores_nothing_or_the_version_opened() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let root = dir.path().join("from");
    let from = local(&root, &prefix, ChecksumAlgorithm::Sha256);
    let size = 33 * MIB + 17;
    for (name, to) in destinations(dir.path(), &prefix) {
        for meanwhile in [
            Meanwhile::Truncated,
            Meanwhile::Extended,
            Meanwhile::Rewritten,
            Meanwhile::Replaced,
        ] {
            let key = from.key("changing.png").unwrap();
            from.put(&key, body(size, 1)).await.unwrap();
            to.put(&key, "the old object").await.unwrap();
            let source = from.open_file(&key).await.unwrap().unwrap();
            let etag = source.info().etag.clone();
            let path = object_path(&root, &key);
            let replacement = root.join("replacement");
            std::fs::write(&replacement, body(size, 2)).unwrap();
            let once = std::sync::Once::new();
            let result = to
                .write_from_open_file(&key, source, &WriteOptions::default(), move |done, _| {
                    if done == 0 {
                        return;
                    }
                    once.call_once(|| match meanwhile {
                        Meanwhile::Truncated => {
                            let f = std::fs::OpenOptions::new().write(true).open(&path);
                            f.unwrap().set_len(4 * MIB as u64).unwrap();
                        }
                        Meanwhile::Extended => {
                            use std::io::Write;
                            let f = std::fs::OpenOptions::new().append(true).open(&path);
                            f.unwrap().write_all(b"appended").unwrap();
                        }
                        Meanwhile::Rewritten => {
                            use std::os::unix::fs::FileExt;
                            let f = std::fs::OpenOptions::new().write(true).open(&path);
                            f.unwrap().write_all_at(&body(size, 5), 0).unwrap();
                        }
                        Meanwhile::Replaced => std::fs::rename(&replacement, &path).unwrap(),
                    })
                })
                .await;
            let stored = to.get(&key).await.unwrap();
            match meanwhile {
                Meanwhile::Truncated | Meanwhile::Extended | Meanwhile::Rewritten => {
                    match result {
                        Err(Error::Source { .. }) => {}
                        other => panic!("{name} {meanwhile:?}: expected Source, got {other:?}"),
                    }
                    assert_eq!(stored.data, "the old object", "{name} {meanwhile:?}");
                }
                Meanwhile::Replaced => {
                    result.unwrap();
                    assert_eq!(stored.data, body(size, 1), "{name}");
                    assert!(etag.is_some());
                }
            }
            assert!(
                to.incomplete_uploads(None).await.unwrap().is_empty(),
                "{name} {meanwhile:?}: an upload was left open"
            );
            let _ = std::fs::remove_file(root.join("replacement"));
            clean(&to, &[key]).await;
        }
    }
    for local in ["to-sha", "to-crc"] {
        assert_eq!(temp_files(&dir.path().join(local)), 0, "{local}");
    }
}

/// A config file `NAME.toml` in `dir` for a local root `./NAME`; its path.
fn local_config(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("[object_storage]\nprovider = \"local\"\nroot = \"./{name}\"\n"),
    )
    .unwrap();
    path.display().to_string()
}

/// `maskstore sync` between two local roots copies every object with its metadata, fails
/// the damaged one by name (exit 1), and copies it once it is repaired.
#[test]
fn the_cli_sync_between_local_roots_copies_by_file_and_names_a_damaged_object() {
    let dir = tempfile::tempdir().unwrap();
    let env = vars(&[]);
    let (a, b) = (local_config(dir.path(), "a"), local_config(dir.path(), "b"));
    for (i, name) in ["mask/x.png", "mask/s/y.nii.gz", "mask/s/z.dcm"]
        .iter()
        .enumerate()
    {
        std::fs::write(dir.path().join("f"), body(300_000 * i + 10, i as u8)).unwrap();
        let out = maskstore(
            dir.path(),
            &["--config", &a, "put", "--meta", "k=v", "f", name],
            &env,
        );
        succeeded(&out);
    }
    flip_one_byte(&dir.path().join("a/mask/s/z.dcm"));
    let out = maskstore(
        dir.path(),
        &["--json", "sync", "--from", &a, "--to", &b],
        &env,
    );
    // Its only failures are corrupt sources: exit 6, as `get` and `verify` (issue 31).
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["copied"], 2, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    let failure = summary["failures"][0].as_str().unwrap();
    assert!(
        failure.starts_with("mask/s/z.dcm: ") && failure.contains("corrupt"),
        "{failure}"
    );
    assert!(!dir.path().join("b/mask/s/z.dcm").exists());
    let out = maskstore(
        dir.path(),
        &["--config", &b, "--json", "stat", "mask/s/y.nii.gz"],
        &env,
    );
    succeeded(&out);
    let head: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(head["metadata"]["k"], "v", "{head}");
    assert_eq!(
        std::fs::read(dir.path().join("b/mask/s/y.nii.gz")).unwrap(),
        body(300_010, 1)
    );
    // Repaired, it is copied by the next run; the others are skipped.
    flip_one_byte(&dir.path().join("a/mask/s/z.dcm"));
    let out = maskstore(
        dir.path(),
        &["--json", "sync", "--from", &a, "--to", &b],
        &env,
    );
    succeeded(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["copied"].as_u64(), summary["skipped"].as_u64()),
        (Some(1), Some(2))
    );
}

/// Sets the stored checksum in a local object's attributes (as someone with write access
/// to the root can). A JSON record keeps everything else; maskstore's own compact record is
/// replaced by a JSON one holding the checksum alone (its generation, so its etag, goes).
fn set_stored_checksum(path: &Path, checksum: &str) {
    const XATTR: &str = "user.maskstore.attributes";
    let json = xattr::get(path, XATTR).unwrap().unwrap_or(b"{}".to_vec());
    // maskstore writes its records in a compact binary form and reads JSON ones too; the
    // objects here hold nothing but a checksum and a generation, and no test here reads
    // the generation, so a JSON record replaces a compact one.
    let mut stored: serde_json::Value =
        serde_json::from_slice(&json).unwrap_or_else(|_| serde_json::json!({}));
    stored["metadata"]["maskstore-checksum"] = checksum.into();
    xattr::set(path, XATTR, &serde_json::to_vec(&stored).unwrap()).unwrap();
}

/// Stored checksums an attacker with write access to the root can leave: of an unknown
/// algorithm, malformed, empty, another object's, and a non-empty object's on an empty
/// file. None vouches for the bytes: every destination (local without checksums too)
/// refuses with `Corrupt`, keeps what it had and leaves no temporary file.
#[tokio::test]
async fn a_source_checksum_that_cannot_vouch_for_its_bytes_is_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let root = dir.path().join("from");
    let from = local(&root, &prefix, ChecksumAlgorithm::Sha256);
    let other = from.key("other.png").unwrap();
    from.put(&other, body(1000, 9)).await.unwrap();
    let others = from.head(&other).await.unwrap().checksum.unwrap();
    let mut destinations = destinations(dir.path(), &prefix);
    destinations.push((
        "local none".to_string(),
        local(
            &dir.path().join("to-none"),
            &prefix,
            ChecksumAlgorithm::None,
        ),
    ));
    let hostile = [
        "md5:1B2M2Y8AsgTpgAmY7PhCfg==".to_string(),
        "sha256:%%% not base64 %%%".to_string(),
        "sha256:".to_string(),
        String::new(),
        others,
    ];
    for (name, to) in &destinations {
        for size in [0, 1000, 300_000, 9 * MIB + 17] {
            for (i, checksum) in hostile.iter().enumerate() {
                let key = from.key(&format!("hostile-{size}-{i}.png")).unwrap();
                // Empty objects hash to the empty checksum: give them a non-empty one's.
                let checksum = if size == 0 && i == 4 {
                    &hostile[4]
                } else {
                    checksum
                };
                from.put(&key, body(size, 4)).await.unwrap();
                set_stored_checksum(&object_path(&root, &key), checksum);
                to.put(&key, "the old object").await.unwrap();
                match sync::copy(&from, to, &key).await {
                    Err(Error::Corrupt {
                        key: k, backend, ..
                    }) => {
                        assert_eq!((k.as_str(), backend.as_str()), (key.as_str(), "local"));
                    }
                    other => panic!("{name} {key} {checksum:?}: expected Corrupt, got {other:?}"),
                }
                assert_eq!(to.get(&key).await.unwrap().data, "the old object", "{name}");
                clean(to, &[key]).await;
            }
        }
        assert!(
            to.incomplete_uploads(None).await.unwrap().is_empty(),
            "{name}: an upload was left open"
        );
    }
    for local in ["to-sha", "to-crc", "to-none"] {
        assert_eq!(temp_files(&dir.path().join(local)), 0, "{local}");
    }
}

/// An object copied onto itself (one storage, or two on the same root and prefix) keeps
/// its bytes and metadata, whatever its size; the open file is the version copied.
#[tokio::test]
async fn an_object_copied_onto_itself_keeps_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let root = dir.path().join("from");
    let from = local(&root, &prefix, ChecksumAlgorithm::Sha256);
    let again = local(&root, &prefix, ChecksumAlgorithm::Crc64Nvme);
    for size in SIZES {
        let key = from.key(&format!("self-{size}.png")).unwrap();
        let options = WriteOptions::content_type("image/png").with_metadata("k", "v");
        from.put_with(&key, body(size, 6), &options).await.unwrap();
        for to in [&from, &again] {
            assert_eq!(sync::copy(&from, to, &key).await.unwrap().size, size as u64);
            let copied = from.get(&key).await.unwrap();
            assert_eq!(copied.data, body(size, 6), "{size}");
            assert_eq!(copied.info.metadata["k"], "v");
            assert_eq!(copied.info.content_type.as_deref(), Some("image/png"));
        }
        // Create-only onto itself: refused, kept.
        let source = from.open_file(&key).await.unwrap().unwrap();
        let create = WriteOptions::default().with_mode(maskstore::WriteMode::CreateOnly);
        let refused = from
            .write_from_open_file(&key, source, &create, |_, _| {})
            .await;
        assert!(
            matches!(refused, Err(Error::AlreadyExists { .. })),
            "{refused:?}"
        );
        assert_eq!(from.get(&key).await.unwrap().data, body(size, 6));
    }
    assert_eq!(temp_files(&root), 0);
}

/// Conditional writes by open file: create-only onto an existing key and if-match with a
/// stale etag are refused and keep the object; if-match with the current etag replaces it.
#[tokio::test]
async fn conditional_copies_by_open_file_keep_or_replace_as_their_condition_says() {
    use maskstore::WriteMode;
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let root = dir.path().join("from");
    let from = local(&root, &prefix, ChecksumAlgorithm::Sha256);
    for (name, to) in destinations(dir.path(), &prefix) {
        for size in [0, 1000, 300_000] {
            let key = from.key(&format!("cond-{size}.png")).unwrap();
            from.put(&key, body(size, 7)).await.unwrap();
            let old = to.put(&key, "the old object").await.unwrap();
            let stale = WriteOptions::default().with_mode(WriteMode::IfMatch("\"stale\"".into()));
            let create = WriteOptions::default().with_mode(WriteMode::CreateOnly);
            for options in [&create, &stale] {
                let source = from.open_file(&key).await.unwrap().unwrap();
                let refused = to
                    .write_from_open_file(&key, source, options, |_, _| {})
                    .await;
                assert!(
                    matches!(
                        refused,
                        Err(Error::AlreadyExists { .. } | Error::Precondition { .. })
                    ),
                    "{name} {size} {:?}: {refused:?}",
                    options.mode
                );
                assert_eq!(to.get(&key).await.unwrap().data, "the old object", "{name}");
            }
            let current = WriteOptions::default().with_mode(WriteMode::IfMatch(old.etag.unwrap()));
            let source = from.open_file(&key).await.unwrap().unwrap();
            to.write_from_open_file(&key, source, &current, |_, _| {})
                .await
                .unwrap();
            assert_eq!(to.get(&key).await.unwrap().data, body(size, 7), "{name}");
            clean(&to, &[key]).await;
        }
    }
    for local in ["to-sha", "to-crc"] {
        assert_eq!(temp_files(&dir.path().join(local)), 0, "{local}");
    }
}

/// Progress by open file, on every destination: totals are the object's size, bytes done
/// never go back nor past it, and a non-empty copy ends at its size.
#[tokio::test]
async fn progress_of_a_copy_by_open_file_counts_up_to_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let from = local(&dir.path().join("from"), &prefix, ChecksumAlgorithm::Sha256);
    for (name, to) in destinations(dir.path(), &prefix) {
        for size in [1000, 9 * MIB + 17, 17 * MIB + 5] {
            let key = from.key(&format!("progress-{size}.png")).unwrap();
            from.put(&key, body(size, 8)).await.unwrap();
            let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let source = from.open_file(&key).await.unwrap().unwrap();
            let record = std::sync::Arc::clone(&seen);
            to.write_from_open_file(
                &key,
                source,
                &WriteOptions::default(),
                move |done, total| {
                    record.lock().unwrap().push((done, total));
                },
            )
            .await
            .unwrap();
            let seen = seen.lock().unwrap().clone();
            assert_eq!(
                seen.last(),
                Some(&(size as u64, size as u64)),
                "{name} {seen:?}"
            );
            assert!(
                seen.windows(2).all(|w| w[0].0 <= w[1].0)
                    && seen.iter().all(|s| s.1 == size as u64),
                "{name} {seen:?}"
            );
            clean(&to, &[key]).await;
        }
    }
}

/// A stored checksum is text anyone with write access to the root chooses: in the error
/// it is shown without control characters (no forged lines or terminal escapes in the
/// operator's `sync` output) and cut short, while the key and backend stay named.
#[tokio::test]
async fn a_hostile_stored_checksum_is_shown_tamed_in_the_corrupt_error() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let root = dir.path().join("from");
    let from = local(&root, &prefix, ChecksumAlgorithm::Sha256);
    let to = local(
        &dir.path().join("to-sha"),
        &prefix,
        ChecksumAlgorithm::Sha256,
    );
    let key = from.key("escape.png").unwrap();
    from.put(&key, body(1000, 1)).await.unwrap();
    let hostile = format!(
        "sha256:\u{1b}[2J\u{1b}]0;owned\u{7}\nfailed: 0 objects\r{}",
        "A".repeat(3000)
    );
    set_stored_checksum(&object_path(&root, &key), &hostile);
    let err = sync::copy(&from, &to, &key).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(shown.len() < 1000, "{} bytes: {shown:?}", shown.len());
    assert!(
        shown.starts_with(&format!("{key} on local is corrupt")),
        "{shown}"
    );
    assert!(!to.exists(&key).await.unwrap());
}

/// `sync --delete` deletes nothing in a run where a copy failed (as rsync does after a
/// read error on the sending side): an object moved in the source whose new copy is
/// refused as damaged must not lose its last good copy, the destination's old key.
#[test]
fn sync_delete_deletes_nothing_when_a_copy_failed() {
    let dir = tempfile::tempdir().unwrap();
    let env = vars(&[]);
    let (a, b) = (local_config(dir.path(), "a"), local_config(dir.path(), "b"));
    let run = |args: &[&str]| maskstore(dir.path(), args, &env);
    for (i, name) in ["mask/1.png", "mask/2.png", "mask/3.png", "mask/moved.png"]
        .iter()
        .enumerate()
    {
        std::fs::write(dir.path().join("f"), body(1000, i as u8)).unwrap();
        let out = run(&["--config", &a, "put", "f", name]);
        succeeded(&out);
    }
    let out = run(&["sync", "--from", &a, "--to", &b]);
    succeeded(&out);
    // Moved in the source, and its new file damaged.
    let out = run(&["--config", &a, "mv", "mask/moved.png", "mask/new/moved.png"]);
    succeeded(&out);
    flip_one_byte(&dir.path().join("a/mask/new/moved.png"));
    let out = run(&[
        "--json", "sync", "--from", &a, "--to", &b, "--delete", "--yes",
    ]);
    // Its only failures are corrupt sources: exit 6, as `get` and `verify` (issue 31).
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["failed"].as_u64(), summary["deleted"].as_u64()),
        (Some(1), Some(0)),
        "{summary}"
    );
    assert!(
        text(&out.stderr).contains("nothing was deleted"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.path().join("b/mask/moved.png")).unwrap(),
        body(1000, 3),
        "the last good copy was deleted"
    );
    // Repaired, the next run copies it and deletes the old key.
    flip_one_byte(&dir.path().join("a/mask/new/moved.png"));
    let out = run(&[
        "--json", "sync", "--from", &a, "--to", &b, "--delete", "--yes",
    ]);
    succeeded(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["copied"].as_u64(), summary["deleted"].as_u64()),
        (Some(1), Some(1)),
        "{summary}"
    );
    assert!(!dir.path().join("b/mask/moved.png").exists());
}

/// A FIFO or a folder where a source object's file should be (left there by someone with
/// write access to the root after the listing) is not found, at once: never read, never
/// waited on for a writer.
#[tokio::test]
async fn a_fifo_or_folder_at_a_source_key_is_not_found_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let root = dir.path().join("from");
    let from = local(&root, &prefix, ChecksumAlgorithm::Sha256);
    let to = local(
        &dir.path().join("to-sha"),
        &prefix,
        ChecksumAlgorithm::Sha256,
    );
    let (fifo, folder) = (
        from.key("fifo.png").unwrap(),
        from.key("folder.png").unwrap(),
    );
    from.put(&from.key("placeholder").unwrap(), "x")
        .await
        .unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(object_path(&root, &fifo))
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::create_dir_all(object_path(&root, &folder).join("inside")).unwrap();
    for key in [&fifo, &folder] {
        let copied = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            sync::copy(&from, &to, key),
        )
        .await
        .expect("the copy waited on the source");
        assert!(
            matches!(copied, Err(Error::NotFound { .. })),
            "{key}: {copied:?}"
        );
        assert!(!to.exists(key).await.unwrap());
    }
}

/// A local file whose attribute record (another tool's, or restored from elsewhere) holds a
/// content type no HTTP header can carry (`Müller`, an ESC): `sync` copies it without that
/// content type, says so, and the second run copies nothing, instead of failing the object
/// every run (which also blocked `--delete`).
#[tokio::test]
async fn a_found_content_type_no_header_can_carry_is_left_out_not_failing_the_copy() {
    let Some(s3) = maskstore_testkit::servers::seaweedfs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("mask/ct-{:016x}/", rand::random::<u64>());
    let prefix = maskstore::KeyPrefix::parse(prefix).unwrap();
    let config = maskstore::Config::local(dir.path().join("data")).with_prefix(prefix.clone());
    let local = Storage::connect(&config).unwrap();
    let key = local.key("a.png").unwrap();
    local.put(&key, "mask").await.unwrap();
    let record = r#"{"content_type":"image/png; name=\"Müller\u001b[2J\"","metadata":{"k":"v"}}"#;
    let file = dir.path().join("data").join(key.as_str());
    xattr::set(&file, "user.maskstore.attributes", record.as_bytes()).unwrap();
    let to = Storage::connect(&s3.config().with_prefix(prefix.clone())).unwrap();
    let copied = maskstore::sync::copy(&local, &to, &key).await.unwrap();
    let left: Vec<&str> = copied.left_out.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(left, ["content-type"]);
    let read = to.head(&key).await.unwrap();
    assert_eq!(read.metadata.get("k").map(String::as_str), Some("v"));
    let again = maskstore::sync::plan(&local, &to, prefix.as_str(), false)
        .await
        .unwrap();
    assert_eq!((again.to_copy.len(), again.failed.len()), (0, 0));
}

/// A sync from memory, whose puts leave their checksum owed (computed when first asked
/// for): the destination stores the checksum of the bytes, never the marker, and the plan
/// compares the real checksums, so an object rewritten with other bytes of the same size
/// is copied again and an unchanged one is not.
#[tokio::test]
async fn a_sync_from_memory_carries_and_compares_the_checksums_its_puts_left_owed() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let destinations = destinations(dir.path(), &prefix);
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        assert!(
            destinations.iter().any(|(name, _)| name == "s3"),
            "SeaweedFS"
        );
    }
    for (name, to) in destinations {
        let from = Storage::connect(&Config::memory().with_prefix(prefix.clone())).unwrap();
        let mut keys = Vec::new();
        for (i, size) in [0usize, 1000, 300_000].into_iter().enumerate() {
            let key = from.key(&format!("owed/{i}.bin")).unwrap();
            from.put(&key, body(size, i as u8)).await.unwrap();
            keys.push((key, size));
        }
        let copy_all = async |from: &Storage| {
            let plan = sync::plan(from, &to, prefix.as_str(), false).await.unwrap();
            for info in &plan.to_copy {
                sync::copy(from, &to, &info.key).await.unwrap();
            }
            plan.to_copy.len()
        };
        assert_eq!(copy_all(&from).await, keys.len(), "{name}");
        for (key, size) in &keys {
            let data = body(*size, 0).len();
            let stored = to.head(key).await.unwrap().checksum.unwrap();
            assert!(!stored.ends_with(":owed"), "{name}: {stored}");
            let got = to.get(key).await.unwrap();
            assert_eq!(got.data.len(), data, "{name}");
            let want = maskstore::checksum_of(to.checksum_algorithm(), &got.data);
            assert_eq!(Some(stored), want, "{name}");
        }
        assert_eq!(
            copy_all(&from).await,
            0,
            "{name}: a second run copies nothing"
        );
        // Other bytes of the same size, their checksum owed again: copied again.
        let (key, size) = &keys[1];
        from.put(key, body(*size, 99)).await.unwrap();
        assert_eq!(copy_all(&from).await, 1, "{name}");
        assert_eq!(to.get(key).await.unwrap().data, body(*size, 99), "{name}");
        let all: Vec<ObjectKey> = keys.iter().map(|(k, _)| k.clone()).collect();
        clean(&to, &all).await;
    }
}
