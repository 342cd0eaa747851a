//! Operator commands that cannot wipe a bucket and work on any S3 engine: `sync --delete`
//! refusals, one-request small puts, `sync` without listed etags, `stat` and `put --meta`,
//! `get` keeping a file's mode, and config mistakes that must neither abort nor echo.

use std::path::Path;
use std::process::Command;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use maskstore::sync;
use maskstore::{Storage, WriteOptions};
use maskstore_backends::layers::{Call, Intercept};
use maskstore_testkit::chaos::{Chaos, Op};
use maskstore_testkit::servers::{self, S3Server};
use object_store::ObjectMeta;
use object_store::path::Path as StorePath;

use crate::support::{MASKSTORE, command, maskstore, succeeded, text, vars};

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

fn local_config(dir: &Path, name: &str, root: &str, prefix: &str) -> String {
    write(
        dir,
        name,
        &format!(
            "[object_storage]\nprovider = \"local\"\nroot = \"{root}\"\nprefix = \"{prefix}\"\n"
        ),
    )
}

fn s3_config(dir: &Path, name: &str, server: &S3Server, prefix: &str) -> String {
    write(
        dir,
        name,
        &format!(
            "[object_storage]\nprovider = \"s3\"\nbucket_name = \"{}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\nprefix = \"{prefix}\"\n",
            server.bucket, server.endpoint
        ),
    )
}

/// Where `sync --delete` writes, in the refusal tests.
enum Destination<'a> {
    Local,
    SeaweedFs(&'a S3Server),
}

/// The refusals of `sync --delete`, from a local source onto `destination`: a mistyped
/// root, a source folder that is a symlink, no terminal without --yes, and more than
/// --max-delete of the destination without --force. Each exits non-zero and deletes
/// nothing; --force --yes then deletes.
fn sync_delete_refusals(destination: Destination<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (prefix, env) = match &destination {
        Destination::Local => ("mask/".to_string(), Vec::new()),
        Destination::SeaweedFs(server) => (
            server.config().object_storage.prefix.to_string(),
            vars(&[
                ("APP_OBJECT_STORAGE__ACCESS_KEY", &server.access_key),
                ("APP_OBJECT_STORAGE__SECRET_KEY", server.secret_key.expose()),
            ]),
        ),
    };
    let src = local_config(d, "src.toml", "./src", &prefix);
    let typo = local_config(d, "typo.toml", "./scr", &prefix);
    let linked = local_config(d, "linked.toml", "./linked", &prefix);
    let dst = match &destination {
        Destination::Local => local_config(d, "dst.toml", "./dst", &prefix),
        Destination::SeaweedFs(server) => s3_config(d, "dst.toml", server, &prefix),
    };
    let run = |args: &[&str]| maskstore(d, args, &env);
    let listed = || -> usize { succeeded(&run(&["--config", &dst, "ls"])).lines().count() };

    let names = ["a.png", "b.png", "c/d.nii.gz", "c/e.nii.gz"];
    std::fs::write(d.join("f"), b"mask").unwrap();
    for name in names {
        succeeded(&run(&[
            "--config",
            &src,
            "put",
            "f",
            &format!("{prefix}{name}"),
        ]));
    }
    succeeded(&run(&["sync", "--from", &src, "--to", &dst]));
    assert_eq!(listed(), 4);
    // The source's prefix folder, reached through a symlink in another root.
    let folder = prefix.trim_end_matches('/');
    let link = d.join("linked").join(folder);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(d.join("src").join(folder), &link).unwrap();

    // A mistyped source root: an error naming the empty listing, and never created.
    let out = run(&["sync", "--from", &typo, "--to", &dst, "--delete", "--yes"]);
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("does not exist") && err.contains("empty"),
        "{err}"
    );
    assert!(
        !d.join("scr").exists(),
        "the mistyped source root was created"
    );
    assert_eq!(listed(), 4, "a mistyped source deleted objects");

    // A source whose prefix folder is a symlink lists nothing (or fails): refused.
    let out = run(&["sync", "--from", &linked, "--to", &dst, "--delete", "--yes"]);
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("empty") || err.contains("symlink"), "{err}");
    assert_eq!(listed(), 4, "a symlinked source deleted objects");
    // Even as a dry run the plan says it would refuse.
    let out = run(&[
        "sync",
        "--from",
        &linked,
        "--to",
        &dst,
        "--delete",
        "--dry-run",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(listed(), 4);

    // One object gone from the source (25 %, within --max-delete): asks, and without a
    // terminal refuses unless --yes.
    succeeded(&run(&["--config", &src, "rm", &format!("{prefix}a.png")]));
    let out = run(&["sync", "--from", &src, "--to", &dst, "--delete"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("about to delete 1 objects") && err.contains("--yes"),
        "{err}"
    );
    assert!(err.contains(&format!("{prefix}a.png")), "{err}");
    assert_eq!(listed(), 4, "deleted without confirmation");

    // Three of four gone (75 %): refused even with --yes, unless --force.
    for name in ["b.png", "c/d.nii.gz"] {
        succeeded(&run(&["--config", &src, "rm", &format!("{prefix}{name}")]));
    }
    let out = run(&["sync", "--from", &src, "--to", &dst, "--delete", "--yes"]);
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("3 of the 4") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(listed(), 4, "an over-threshold delete went ahead");
    // The dry run shows the same plan.
    let out = run(&[
        "sync",
        "--from",
        &src,
        "--to",
        &dst,
        "--delete",
        "--dry-run",
    ]);
    let plan = text(&out.stdout);
    assert_eq!(plan.matches("would delete").count(), 3, "{plan}");
    assert!(text(&out.stderr).contains("a run would refuse"));
    assert_eq!(listed(), 4);
    // A larger --max-delete, or --force, lets it through.
    let out = run(&[
        "--json", "sync", "--from", &src, "--to", &dst, "--delete", "--yes", "--force",
    ]);
    let summary: serde_json::Value = serde_json::from_str(&succeeded(&out)).unwrap();
    assert_eq!(summary["deleted"], 3, "{summary}");
    assert_eq!(
        succeeded(&run(&["--config", &dst, "ls"])).trim(),
        format!("{prefix}c/e.nii.gz")
    );
    if let Destination::SeaweedFs(_) = destination {
        succeeded(&run(&[
            "--config", &dst, "rm", "--prefix", &prefix, "--yes",
        ]));
    }
}

#[test]
fn sync_delete_refuses_wrong_sources_and_unconfirmed_deletes_on_local_disk() {
    sync_delete_refusals(Destination::Local);
}

#[test]
fn sync_delete_refuses_wrong_sources_and_unconfirmed_deletes_on_seaweedfs() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    sync_delete_refusals(Destination::SeaweedFs(&server));
}

/// A source whose subfolder is a symlink cannot list what lies behind it (symlinks are
/// never followed): the listing fails naming the symlink, and nothing is deleted.
#[test]
fn a_symlinked_source_subfolder_is_named_before_deletes_are_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = local_config(d, "src.toml", "./src", "mask/");
    let dst = local_config(d, "dst.toml", "./dst", "mask/");
    let run = |args: &[&str]| maskstore(d, args, &[]);
    std::fs::write(d.join("f"), b"mask").unwrap();
    for name in ["a.png", "b.png", "c.png", "moved/d.png"] {
        succeeded(&run(&[
            "--config",
            &src,
            "put",
            "f",
            &format!("mask/{name}"),
        ]));
    }
    succeeded(&run(&["sync", "--from", &src, "--to", &dst]));
    // The folder moved to another disk and linked back.
    std::fs::rename(d.join("src/mask/moved"), d.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(d.join("elsewhere"), d.join("src/mask/moved")).unwrap();
    let out = run(&["sync", "--from", &src, "--to", &dst, "--delete"]);
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("about to delete"), "planned deletes: {err}");
    assert!(
        err.contains("symlink") && err.contains("mask/moved"),
        "the symlink went unmentioned: {err}"
    );
    assert!(d.join("dst/mask/moved/d.png").exists());
}

/// A source folder whose files cannot be examined (`chmod -R 644` took the folders'
/// search bit) fails the listing instead of leaving those files out of it.
#[test]
fn a_source_listing_that_cannot_examine_a_file_fails_instead_of_skipping_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = local_config(d, "src.toml", "./src", "mask/");
    for name in ["ok.png", "locked/x.png"] {
        succeeded(&maskstore(
            d,
            &["--config", &src, "put", "src.toml", &format!("mask/{name}")],
            &[],
        ));
    }
    // Root ignores permissions: run as nobody, over files nobody owns.
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(d).unwrap()) == 0;
    if root {
        let out = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(d)
            .output()
            .unwrap();
        succeeded(&out);
    }
    let locked = d.join("src/mask/locked");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut ls = command(d, &["--config", &src, "ls"], &[]);
    if root {
        // As nobody: std drops the supplementary groups with the uid, as setpriv's
        // --clear-groups does.
        use std::os::unix::process::CommandExt;
        ls.uid(65534).gid(65534);
    }
    let out = ls.output().unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = text(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(0),
        "listed without the locked file: {}",
        text(&out.stdout)
    );
    assert!(
        err.contains("mask/locked/x.png") || err.contains("ermission"),
        "{err}"
    );
}

#[test]
fn sync_delete_flags_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["sync", "--from", "a", "--to", "b", "--yes"],
        &[],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--delete"), "{err}");
    // Every value outside 0..=1 reaches the share parser (`=`, so "-1" is not read as a
    // flag) and is refused naming the share.
    for value in ["1.5", "-1", "NaN", "inf", "-0.1", "", "a quarter"] {
        let flag = format!("--max-delete={value}");
        let out = maskstore(
            dir.path(),
            &["sync", "--from", "a", "--to", "b", "--delete", &flag],
            &[],
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(err.contains("is not a share from 0 to 1"), "{flag}: {err}");
    }
}

/// The storage operations a process ran, from its debug log.
fn operations(stderr: &str) -> Vec<String> {
    // The log is coloured even into a pipe: drop the escape sequences.
    let mut plain = String::new();
    let mut chars = stderr.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .lines()
        .filter(|line| line.contains("storage operation"))
        .filter_map(|line| {
            let rest = line.split("operation=").nth(1)?;
            Some(
                rest.split_whitespace()
                    .next()?
                    .trim_matches('"')
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn small_puts_are_one_request_with_an_md5_etag_on_seaweedfs() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = server.config().object_storage.prefix.to_string();
    let mut env = server.app_env();
    env.push(("APP_OBJECT_STORAGE__PREFIX".into(), prefix.clone()));
    env.push(("MASKSTORE_LOG".into(), "debug".into()));
    let md5 = |etag: &str| {
        let hex = etag.trim_matches('"');
        hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
    };
    for size in [0usize, 6, 1024 * 1024, maskstore::UPLOAD_PART_SIZE - 1] {
        std::fs::write(dir.path().join("f"), vec![7u8; size]).unwrap();
        let key = format!("{prefix}small-{size}.bin");
        let out = maskstore(dir.path(), &["--json", "put", "f", &key], &env);
        let put: serde_json::Value = serde_json::from_str(&succeeded(&out)).unwrap();
        let etag = put["etag"].as_str().unwrap_or_default().to_string();
        assert!(
            md5(&etag),
            "{size} B: etag {etag:?} is not a single-part MD5"
        );
        assert_eq!(put["size"], size, "{put}");
        assert_eq!(
            operations(&text(&out.stderr)),
            ["put"],
            "{size} B: not exactly one PUT"
        );
        let out = maskstore(dir.path(), &["--json", "stat", &key], &env);
        let stat: serde_json::Value = serde_json::from_str(&succeeded(&out)).unwrap();
        assert_eq!(stat["etag"].as_str(), Some(etag.as_str()), "{stat}");
    }
    let big = 20 * 1024 * 1024;
    std::fs::write(dir.path().join("f"), vec![7u8; big]).unwrap();
    let key = format!("{prefix}big.bin");
    let out = maskstore(dir.path(), &["--json", "put", "f", &key], &env);
    let put: serde_json::Value = serde_json::from_str(&succeeded(&out)).unwrap();
    let etag = put["etag"].as_str().unwrap_or_default();
    // A 3-part upload; the copy in place that adds its checksum keeps that etag on
    // SeaweedFS, where S3 gives the copy a single-part MD5.
    assert!(
        etag.trim_matches('"').ends_with("-3") || md5(etag),
        "20 MiB is a 3-part upload: {etag}"
    );
    // The HEAD reads the metadata that the copy in place (which adds the checksum) keeps.
    assert_eq!(operations(&text(&out.stderr)), ["upload", "head"]);
    env.retain(|(k, _)| k != "MASKSTORE_LOG");
    succeeded(&maskstore(
        dir.path(),
        &["rm", "--prefix", &prefix, "--yes"],
        &env,
    ));
}

/// A layer that drops etags from listings, as engines that list none do.
#[derive(Debug, Clone)]
struct ListsNoEtags;

impl Intercept for ListsNoEtags {
    fn name(&self) -> &str {
        "lists-no-etags"
    }

    fn call<'a, T: Send + 'a>(
        &'a self,
        _call: Call<'a>,
        run: BoxFuture<'a, object_store::Result<T>>,
    ) -> BoxFuture<'a, object_store::Result<T>> {
        run
    }

    fn list(
        &self,
        _prefix: &StorePath,
        list: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        list.map(|item| {
            item.map(|mut meta| {
                meta.e_tag = None;
                meta
            })
        })
        .boxed()
    }
}

/// Runs `sync` twice from `from` (listing no etags) to `to`: 3 copies, then none.
async fn second_sync_copies_nothing(from: Storage, to: Storage) {
    let from = from.layer(ListsNoEtags);
    for (i, name) in ["a.png", "b/c.nii.gz", "b/d.dcm"].iter().enumerate() {
        from.put(&from.key(name).unwrap(), vec![i as u8; 1000 + i])
            .await
            .unwrap();
    }
    let listed: Vec<_> = from.list(None).unwrap().collect().await;
    assert!(listed.iter().all(|i| i.as_ref().unwrap().etag.is_none()));
    let prefix = from.prefix().to_string();
    for (round, copies) in [(1, 3), (2, 0)] {
        let plan = sync::plan(&from, &to, &prefix, true).await.unwrap();
        assert!(plan.failed.is_empty(), "{:?}", plan.failed);
        assert_eq!(
            plan.to_copy.len(),
            copies,
            "round {round} from {} to {}",
            from.backend(),
            to.backend()
        );
        for info in &plan.to_copy {
            sync::copy(&from, &to, &info.key).await.unwrap();
        }
        assert!(plan.to_delete.is_empty());
    }
    // A changed source object is copied again, even at the same size.
    let key = from.key("a.png").unwrap();
    from.put(&key, vec![9u8; 1000]).await.unwrap();
    let plan = sync::plan(&from, &to, &prefix, false).await.unwrap();
    assert_eq!(plan.to_copy.len(), 1, "a same-size change went unnoticed");
    for storage in [&from, &to] {
        let keys: Vec<_> = storage
            .list(None)
            .unwrap()
            .map(|i| i.unwrap().key)
            .collect()
            .await;
        storage.delete_many(&keys).await.unwrap();
    }
}

#[tokio::test]
async fn sync_without_listed_etags_copies_nothing_the_second_time() {
    second_sync_copies_nothing(Storage::memory(), Storage::memory()).await;
    let local = maskstore_testkit::temp_dir();
    second_sync_copies_nothing(local.clone(), Storage::memory()).await;
    let Some(seaweedfs) = servers::seaweedfs() else {
        return;
    };
    let s3 = seaweedfs.storage();
    let prefix = s3.prefix().clone();
    let memory = Storage::from_object_store(
        std::sync::Arc::new(object_store::memory::InMemory::new()),
        "memory",
        prefix,
    );
    second_sync_copies_nothing(s3.clone(), memory.clone()).await;
    second_sync_copies_nothing(memory, s3.clone()).await;
    if let Some(moto) = servers::moto() {
        // Two S3 engines: etags from the content compare directly.
        let config = moto.config().with_prefix(s3.prefix().clone());
        second_sync_copies_nothing(s3, Storage::connect(&config).unwrap()).await;
    }
}

/// One PUT below the multipart threshold on every path through `Storage`: streaming
/// upload, `sync`; at the threshold, a multipart upload.
async fn small_uploads_are_one_put(storage: Storage) {
    let chaos = Chaos::over(&storage);
    let counts = chaos.layer();
    let counted = chaos.storage();
    // Memory stores a multipart upload's whole-object checksum, known only at completion,
    // by one conditional rewrite of the object (local stores it as it commits the file).
    let stamp = u64::from(storage.backend() == "memory");
    for (size, puts, uploads) in [
        (0, 1, 0),
        (6, 2, 0),
        (storage.multipart_threshold() - 1, 3, 0),
        (storage.multipart_threshold(), 3 + stamp, 1),
    ] {
        let key = counted.key(&format!("up-{size}.bin")).unwrap();
        let chunks = futures::stream::iter(
            vec![7u8; size]
                .chunks(1024 * 1024)
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        counted
            .upload_stream(&key, &WriteOptions::default(), chunks)
            .await
            .unwrap();
        assert_eq!(
            (counts.calls(Op::Put), counts.calls(Op::Upload)),
            (puts, uploads),
            "{size} B on {}",
            storage.backend()
        );
        assert_eq!(counted.head(&key).await.unwrap().size, size as u64);
        counted.delete(&key).await.unwrap();
    }
    // sync's copy of a small object into this storage.
    let source = Storage::from_object_store(
        std::sync::Arc::new(object_store::memory::InMemory::new()),
        "memory",
        storage.prefix().clone(),
    );
    let key = source.key("synced.png").unwrap();
    source.put(&key, "mask").await.unwrap();
    let before = counts.calls(Op::Put);
    sync::copy(&source, &counted, &key).await.unwrap();
    assert_eq!(counts.calls(Op::Put), before + 1);
    assert_eq!(counts.calls(Op::Upload), 1);
    counted.delete(&key).await.unwrap();
}

#[tokio::test]
async fn uploads_below_the_threshold_are_one_put() {
    small_uploads_are_one_put(Storage::memory()).await;
    small_uploads_are_one_put(maskstore_testkit::temp_dir().clone()).await;
    if let Some(server) = servers::seaweedfs() {
        small_uploads_are_one_put(server.storage()).await;
    }
}

/// The Python of the test venv (boto3), or `None` to skip outside CI.
fn python() -> Option<std::path::PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var("CI").is_err(),
        "no test venv at {}; run scripts/test-servers start",
        python.display()
    );
    eprintln!("skipping the boto3 check: no {}", python.display());
    None
}

#[test]
fn stat_shows_content_type_and_metadata_from_put_meta_and_boto3() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = server.config().object_storage.prefix.to_string();
    let mut env = server.app_env();
    env.push(("APP_OBJECT_STORAGE__PREFIX".into(), prefix.clone()));
    let run = |args: &[&str]| maskstore(dir.path(), args, &env);
    std::fs::write(dir.path().join("liver.nii.gz"), b"voxels").unwrap();
    let ours = format!("{prefix}1.2/3.4/liver.nii.gz");
    succeeded(&run(&[
        "put",
        "liver.nii.gz",
        &ours,
        "--meta",
        "series=3",
        "--meta",
        "reader=dr-kim",
    ]));
    let theirs = format!("{prefix}1.2/3.4/boto.png");
    if let Some(python) = python() {
        let script = "import os, boto3\n\
            s3 = boto3.client('s3', endpoint_url=os.environ['ENDPOINT'], region_name='us-east-1',\n\
                aws_access_key_id=os.environ['ACCESS'], aws_secret_access_key=os.environ['SECRET'])\n\
            s3.put_object(Bucket=os.environ['BUCKET'], Key=os.environ['KEY'], Body=b'png!',\n\
                ContentType='image/png', Metadata={'annotator': 'boto', 'version': '7'})\n";
        let out = Command::new(python)
            .args(["-c", script])
            .env("ENDPOINT", &server.endpoint)
            .env("ACCESS", &server.access_key)
            .env("SECRET", server.secret_key.expose())
            .env("BUCKET", &server.bucket)
            .env("KEY", &theirs)
            .output()
            .unwrap();
        succeeded(&out);
        let shown = succeeded(&run(&["stat", &theirs]));
        assert!(shown.contains("content type   image/png"), "{shown}");
        assert!(shown.contains("metadata       annotator=boto"), "{shown}");
        assert!(shown.contains("metadata       version=7"), "{shown}");
        let json: serde_json::Value =
            serde_json::from_str(&succeeded(&run(&["--json", "stat", &theirs]))).unwrap();
        assert_eq!(json["content_type"], "image/png", "{json}");
        assert_eq!(json["metadata"]["annotator"], "boto", "{json}");
        assert_eq!(json["size"], 4, "{json}");
    }
    let shown = succeeded(&run(&["stat", &ours]));
    assert!(shown.contains("content type   application/gzip"), "{shown}");
    assert!(shown.contains("metadata       reader=dr-kim"), "{shown}");
    assert!(shown.contains("metadata       series=3"), "{shown}");
    assert!(shown.contains("size           6"), "{shown}");
    let json: serde_json::Value =
        serde_json::from_str(&succeeded(&run(&["--json", "stat", &ours]))).unwrap();
    assert_eq!(json["metadata"]["series"], "3", "{json}");
    assert_eq!(json["content_type"], "application/gzip", "{json}");
    assert!(
        json["etag"].is_string() && json["last_modified"].is_string(),
        "{json}"
    );
    // ls --long shows the content type; with --json, the metadata too.
    let long = succeeded(&run(&["ls", "--long", &format!("{prefix}1.2/")]));
    assert!(long.contains("application/gzip"), "{long}");
    let lines = succeeded(&run(&[
        "--json",
        "ls",
        "--long",
        &format!("{prefix}1.2/3.4/"),
    ]));
    let line = lines
        .lines()
        .find(|l| l.contains("liver"))
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["metadata"]["reader"], "dr-kim", "{v}");
    succeeded(&run(&["rm", "--prefix", &prefix, "--yes"]));
}

#[test]
fn put_meta_refuses_malformed_metadata_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    for (meta, needle) in [
        ("novalue", "NAME=VALUE"),
        ("bad name=1", "lowercase"),
        ("ok=caf\u{e9}", "printable ASCII"),
        ("ok= padded ", "space"),
        // sync's record of the source version: set by hand, it would make sync skip.
        ("Maskstore-Source-Etag=\"abc\"", "sync"),
    ] {
        let out = maskstore(dir.path(), &["put", "f", "mask/a.bin", "--meta", meta], &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{meta}: {err}");
        assert!(err.contains(needle), "{meta}: {err}");
    }
    let out = maskstore(
        dir.path(),
        &["put", "f", "mask/a.bin", "--meta", "a=1", "--meta", "a=2"],
        &[],
    );
    assert!(text(&out.stderr).contains("twice"), "{}", text(&out.stderr));
    assert_eq!(
        succeeded(&maskstore(dir.path(), &["ls"], &[])),
        "",
        "a refused put wrote"
    );
    // stat of a missing key is "not found".
    let out = maskstore(dir.path(), &["stat", "mask/none.bin"], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

#[test]
fn get_keeps_an_existing_files_mode_and_gives_a_new_one_cps() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("f"), b"mask").unwrap();
    succeeded(&maskstore(d, &["put", "f", "mask/a.png"], &[]));
    let mode = |name: &str| {
        std::fs::metadata(d.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    // Under a known umask, as a shell would run it.
    let get = |args: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("umask 027; exec \"$0\" {args}"))
            .arg(MASKSTORE)
            .current_dir(d)
            .env_clear()
            .output()
            .unwrap();
        succeeded(&out);
    };
    std::fs::write(d.join("private.png"), b"old").unwrap();
    std::fs::set_permissions(
        d.join("private.png"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    get("get mask/a.png private.png");
    assert_eq!(std::fs::read(d.join("private.png")).unwrap(), b"mask");
    assert_eq!(mode("private.png"), 0o600, "a private file was opened up");
    get("get --no-sync mask/a.png private.png");
    assert_eq!(mode("private.png"), 0o600);
    get("get mask/a.png fresh.png");
    assert_eq!(
        mode("fresh.png"),
        0o640,
        "a new file gets 0666 less the umask"
    );
}

#[test]
fn a_huge_alarm_window_and_an_unquoted_digit_secret_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["ls"],
        &vars(&[("APP_MONITORING__ALARM_WINDOW", "1000000000000")]),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("monitoring.alarm_window") && err.contains("86400"),
        "{err}"
    );
    let digits = "31415926535897932384626433";
    std::fs::write(
        dir.path().join("prod.toml"),
        format!(
            "[object_storage]\nprovider = \"s3\"\nbucket_name = \"b\"\nregion = \"us-east-1\"\naccess_key = \"AKIAEXAMPLE\"\nsecret_key = {digits}\n"
        ),
    )
    .unwrap();
    for args in [
        &["--config", "prod.toml", "ls"][..],
        &["--config", "prod.toml", "config", "show"][..],
    ] {
        let out = maskstore(dir.path(), args, &[]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{all}");
        assert!(!all.contains(&digits[..10]), "the secret was echoed: {all}");
        assert!(
            all.contains("line 6") && all.contains("secret_key"),
            "{all}"
        );
    }
}

#[tokio::test]
async fn an_upload_whose_multipart_start_fails_neither_loses_nor_cuts_bytes() {
    use maskstore_testkit::chaos::{Fault, When};
    let storage = Chaos::over(&Storage::memory())
        .rule(Op::Upload, When::Nth(1), Fault::Unavailable)
        .storage();
    let key = storage.key("volume.nii").unwrap();
    let mut upload = storage
        .upload(&key, &WriteOptions::default())
        .await
        .unwrap();
    let half = maskstore::UPLOAD_PART_SIZE / 2;
    upload.write(vec![1u8; half].into()).await.unwrap();
    let err = upload.write(vec![2u8; half].into()).await.unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    assert!(
        !storage.exists(&key).await.unwrap(),
        "visible after a failed start"
    );
    // Finishing anyway stores every byte written, as one PUT, never a cut object.
    upload.finish().await.unwrap();
    let stored = storage.get(&key).await.unwrap().data;
    assert_eq!(stored.len(), 2 * half);
    assert!(stored[..half].iter().all(|b| *b == 1) && stored[half..].iter().all(|b| *b == 2));
}
