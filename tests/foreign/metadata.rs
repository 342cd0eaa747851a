//! Metadata other tools wrote: boto3's `my_field` and `dicom.series`, the Azure SDK's
//! `annotator` beside `ms_annotator`, the GCS SDK's `Dr. Müller`. maskstore reads each
//! (a non-ASCII value included), and `sync` carries it to every other provider and back
//! as the destination can hold it, reports what it cannot, and copies nothing the second
//! time. `put --meta` keeps its strict rules.

use std::collections::BTreeMap;

use maskstore::sync::{self, SOURCE_ETAG};
use maskstore::{Config, KeyPrefix, Storage};
use maskstore_testkit::servers;

use super::{python, writers_available};
use crate::support::{maskstore, succeeded, text, vars};

/// Who writes the foreign object: an official client.
#[derive(Clone, Copy)]
enum Writer {
    /// boto3 on SeaweedFS or moto (the `MASKSTORE_TEST_<server>_*` name).
    Boto3(&'static str),
    /// azure-storage-blob on Azurite.
    AzureSdk,
    /// google-cloud-storage on fake-gcs-server.
    GcsSdk,
}

impl Writer {
    /// Writes `mask` at `key` with `metadata`, as the client does.
    fn write(self, key: &str, metadata: &[(&str, &str)]) {
        let metadata: BTreeMap<&str, &str> = metadata.iter().copied().collect();
        let json = serde_json::to_string(&metadata).unwrap();
        let code = match self {
            Writer::Boto3(server) => format!(
                "import json\nc = s3('{server}')\nc.put_object(Bucket=bucket('{server}'), \
                 Key=sys.argv[1], Body=b'mask', Metadata=json.loads(sys.argv[2]))"
            ),
            Writer::AzureSdk => "import json\nazure().get_blob_client(sys.argv[1])\
                 .upload_blob(b'mask', metadata=json.loads(sys.argv[2]))"
                .to_string(),
            Writer::GcsSdk => "import json\nb = gcs().blob(sys.argv[1])\n\
                 b.metadata = json.loads(sys.argv[2])\nb.upload_from_string(b'mask')"
                .to_string(),
        };
        python(&code, &[key, &json]);
    }

    /// The config of the store it writes to, under `prefix`.
    fn config(self, prefix: &KeyPrefix) -> Option<Config> {
        let config = match self {
            Writer::Boto3("SEAWEEDFS") => servers::seaweedfs()?.config(),
            Writer::Boto3(_) => servers::moto()?.config(),
            Writer::AzureSdk => servers::azurite()?.config(),
            Writer::GcsSdk => servers::fake_gcs()?.config(),
        };
        Some(config.with_prefix(prefix.clone()))
    }
}

/// Every store a foreign object is synced to, by name, under `prefix` (local disk in
/// `dir`); the servers that are not running are left out (under CI they fail instead).
fn destinations(prefix: &KeyPrefix, dir: &std::path::Path) -> Vec<(&'static str, Config)> {
    let mut all: Vec<(&'static str, Config)> = Vec::new();
    if let Some(s) = servers::seaweedfs() {
        all.push((s.name, s.config()));
    }
    if let Some(s) = servers::moto() {
        all.push((s.name, s.config()));
    }
    if let Some(s) = servers::azurite() {
        all.push((s.name, s.config()));
    }
    if let Some(s) = servers::fake_gcs() {
        all.push((s.name, s.config()));
    }
    all.push(("local", Config::local(dir.join("data"))));
    all.into_iter()
        .map(|(name, config)| (name, config.with_prefix(prefix.clone())))
        .collect()
}

fn fresh_prefix() -> KeyPrefix {
    KeyPrefix::parse(format!("mask/meta-{:016x}/", rand::random::<u64>())).unwrap()
}

/// The user metadata of `key` in `storage`, without the sync record.
async fn metadata_of(storage: &Storage, key: &maskstore::ObjectKey) -> BTreeMap<String, String> {
    let mut metadata = storage.head(key).await.unwrap().metadata;
    metadata.remove(SOURCE_ETAG);
    metadata
}

/// Syncs `from` into `to` under `prefix`: the object is copied (`copies`: at most one
/// when etags may already settle it), the metadata left out is returned, and a second
/// run copies nothing.
async fn sync_once(from: &Storage, to: &Storage, prefix: &str, copies: usize) -> Vec<String> {
    let plan = sync::plan(from, to, prefix, false).await.unwrap();
    assert!(plan.failed.is_empty(), "{:?}", plan.failed);
    assert!(
        plan.to_copy.len() <= 1 && plan.to_copy.len() >= copies,
        "{plan:?}"
    );
    let mut left = Vec::new();
    for info in &plan.to_copy {
        let copied = sync::copy(from, to, &info.key).await.unwrap();
        left.extend(copied.left_out.into_iter().map(|l| l.name));
    }
    let again = sync::plan(from, to, prefix, false).await.unwrap();
    assert!(again.failed.is_empty(), "{:?}", again.failed);
    assert_eq!((again.to_copy.len(), again.skipped), (0, 1), "second run");
    left
}

/// `writer` stores an object with `written`; maskstore reads it with `read`; for every
/// other store, `sync` there and back carries it, leaving out exactly what
/// `left_out(destination)` names.
async fn carried_everywhere(
    writer: Writer,
    source_name: &str,
    written: &[(&str, &str)],
    read: &[(&str, &str)],
    left_out: impl Fn(&str) -> Vec<&'static str>,
) {
    let read: BTreeMap<String, String> = read
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    for (dest_name, _) in destinations(&fresh_prefix(), dir.path()) {
        if dest_name == source_name {
            continue;
        }
        // A fresh object per destination, so that a copy back changes no other run.
        let prefix = fresh_prefix();
        let Some(source_config) = writer.config(&prefix) else {
            return;
        };
        let source = Storage::connect(&source_config).unwrap();
        let key = source.key("foreign.bin").unwrap();
        writer.write(key.as_str(), written);
        assert_eq!(metadata_of(&source, &key).await, read, "{source_name} read");
        assert_eq!(source.get(&key).await.unwrap().data, "mask");

        let (_, dest_config) = destinations(&prefix, dir.path())
            .into_iter()
            .find(|(n, _)| *n == dest_name)
            .unwrap();
        let dest = Storage::connect(&dest_config).unwrap();
        let context = format!("{source_name} → {dest_name}");
        let left = sync_once(&source, &dest, prefix.as_str(), 1).await;
        let want_left = left_out(dest_name);
        assert_eq!(left, want_left, "{context}: left out");
        let mut kept = read.clone();
        kept.retain(|name, _| !want_left.contains(&name.as_str()));
        assert_eq!(metadata_of(&dest, &key).await, kept, "{context}: carried");
        assert_eq!(dest.get(&key).await.unwrap().data, "mask", "{context}");

        // And back: what came over is what the source reads again.
        let back = sync_once(&dest, &source, prefix.as_str(), 0).await;
        assert!(back.is_empty(), "{context} and back: {back:?}");
        assert_eq!(metadata_of(&source, &key).await, kept, "{context} and back");
    }
}

/// What AWS returns for a non-ASCII value (RFC 2047; boto3 refuses to send non-ASCII).
const MULLER_ENCODED: &str = "=?UTF-8?B?RHIuIE3DvGxsZXI=?=";

/// boto3's names with `_` and `.` and an encoded non-ASCII value, on both S3 servers:
/// read, and carried to every provider and back in full.
#[tokio::test]
async fn boto3_metadata_reads_and_syncs_to_every_provider_and_back() {
    if !writers_available() {
        return;
    }
    for (server, name) in [("SEAWEEDFS", "s3-seaweedfs"), ("MOTO", "s3-moto")] {
        carried_everywhere(
            Writer::Boto3(server),
            name,
            &[
                ("my_field", "a"),
                ("dicom.series", "1.2.840.5"),
                ("who", MULLER_ENCODED),
            ],
            &[
                ("my_field", "a"),
                ("dicom.series", "1.2.840.5"),
                ("who", "Dr. Müller"),
            ],
            |_| vec![],
        )
        .await;
    }
}

/// The Azure SDK's `my_field`, `annotator` beside `ms_annotator` (each read under its
/// own name, every time), `Ms_Reviewer` (read lowercase, as the `ms_` name an earlier
/// version wrote for `reviewer`), and a non-ASCII value: Azure's documentation asks for
/// ASCII values, but the Python SDK sends UTF-8 and Azurite keeps it, so maskstore reads
/// what it finds.
#[tokio::test]
async fn azure_sdk_metadata_reads_without_collisions_and_syncs_everywhere() {
    if !writers_available() {
        return;
    }
    carried_everywhere(
        Writer::AzureSdk,
        "azure-azurite",
        &[
            ("my_field", "a"),
            ("annotator", "B"),
            ("ms_annotator", "A"),
            ("Ms_Reviewer", "R"),
            ("who", "Dr. Müller"),
        ],
        &[
            ("my_field", "a"),
            ("annotator", "B"),
            ("ms_annotator", "A"),
            // Header names come back lowercase, so this is an earlier version's name.
            ("reviewer", "R"),
            ("who", "Dr. Müller"),
        ],
        |_| vec![],
    )
    .await;
}

/// The GCS SDK's `Dr. Müller`, `_` and `.` names, and a 2100-byte value: read, carried
/// everywhere, except the long value to S3 (2 KiB of metadata per object), which is
/// reported while the copy succeeds.
#[tokio::test]
async fn gcs_sdk_metadata_reads_and_what_s3_cannot_hold_is_reported() {
    if !writers_available() {
        return;
    }
    let notes = "n".repeat(2100);
    let entries = [
        ("who", "Dr. Müller"),
        ("my_field", "a"),
        ("dicom.series", "1.2.840.5"),
        ("notes", notes.as_str()),
    ];
    carried_everywhere(Writer::GcsSdk, "gcs-fake", &entries, &entries, |dest| {
        if dest.starts_with("s3-") {
            vec!["notes"]
        } else {
            vec![]
        }
    })
    .await;
}

/// The CLI over an Azure blob another tool wrote: `stat` shows its names and its
/// non-ASCII value, `sync` to local disk succeeds and says which entry it could not
/// carry, a second run copies nothing; `put --meta` still refuses a name with `_`.
#[test]
fn cli_sync_reports_metadata_left_out_and_put_meta_stays_strict() {
    let Some(server) = servers::azurite() else {
        return;
    };
    if !writers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = server.config().object_storage.prefix.to_string();
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.to_string_lossy().into_owned()
    };
    let local = write(
        "local.toml",
        &format!(
            "[object_storage]\nprovider = \"local\"\nroot = \"./data\"\nprefix = \"{prefix}\"\n"
        ),
    );
    let azure = write(
        "azure.toml",
        &format!(
            "[object_storage]\nprovider = \"azure\"\naccount = \"{}\"\ncontainer = \"{}\"\nendpoint = \"{}\"\nprefix = \"{prefix}\"\n",
            server.account, server.container, server.endpoint
        ),
    );
    let env = vars(&[(
        "APP_OBJECT_STORAGE__ACCOUNT_KEY",
        server.account_key.expose(),
    )]);
    let run = |args: &[&str]| maskstore(dir.path(), args, &env);
    let key = format!("{prefix}foreign.bin");
    // Local disk keeps about 3 KiB of metadata per object; Azure 8 KiB.
    let long = "n".repeat(4000);
    Writer::AzureSdk.write(
        &key,
        &[("my_field", "a"), ("who", "Dr. Müller"), ("notes", &long)],
    );

    let stat = succeeded(&run(&["--config", &azure, "stat", &key]));
    assert!(stat.contains("my_field=a"), "{stat}");
    assert!(stat.contains("who=Dr. Müller"), "{stat}");

    // The destination holds an object the source lacks: `--delete` removes it only if
    // every copy succeeded.
    let file = write("f.bin", "mask");
    let stale = format!("{prefix}stale.bin");
    succeeded(&run(&["--config", &local, "put", &file, &stale]));

    let sync = |label: &str| -> (serde_json::Value, String) {
        let out = run(&[
            "--json",
            "sync",
            "--from",
            &azure,
            "--to",
            &local,
            "--delete",
            "--yes",
            "--max-delete",
            "1",
        ]);
        let summary =
            serde_json::from_str(&succeeded(&out)).unwrap_or_else(|e| panic!("{label}: {e}"));
        (summary, text(&out.stderr))
    };
    let (first, stderr) = sync("first");
    assert_eq!(
        (
            first["copied"].as_u64(),
            first["failed"].as_u64(),
            first["deleted"].as_u64()
        ),
        (Some(1), Some(0), Some(1)),
        "{first}"
    );
    assert_eq!(first["metadata_left_out"][0]["name"], "notes", "{first}");
    assert!(
        stderr.contains(&format!("copied without metadata: {key}: notes (no room")),
        "{stderr}"
    );
    let stat = succeeded(&run(&["--config", &local, "stat", &key]));
    assert!(
        stat.contains("who=Dr. Müller") && stat.contains("my_field=a"),
        "{stat}"
    );
    assert!(!stat.contains("notes="), "{stat}");
    let (second, _) = sync("second");
    assert_eq!(
        (second["copied"].as_u64(), second["skipped"].as_u64()),
        (Some(0), Some(1)),
        "{second}"
    );

    let out = run(&[
        "--config",
        &local,
        "put",
        "--meta",
        "my_field=x",
        &file,
        &format!("{prefix}mine.bin"),
    ]);
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(
        err.contains("my_field") && err.contains("lowercase letters, digits and '-'"),
        "{err}"
    );
}

/// A SAS URL for a key with characters URLs and the Azure SDK treat specially downloads
/// with the Azure SDK (`BlobClient.from_blob_url`) and with plain HTTP.
#[tokio::test]
async fn azure_sas_urls_of_keys_with_special_characters_work_with_the_sdk() {
    let Some(server) = servers::azurite() else {
        return;
    };
    if !writers_available() {
        return;
    }
    let storage = server.storage();
    for name in [
        "semi;colon.bin",
        "per%25cent.bin",
        "plus+sign.bin",
        "hash#tag.bin",
        "ques?tion.bin",
        "a space.bin",
        "amp&er=sand.bin",
        "한글 é.bin",
        "semi;dir/x;y.bin",
    ] {
        let key = storage.key(name).unwrap();
        storage.put(&key, format!("data of {name}")).await.unwrap();
        let url = storage
            .signed_url(
                maskstore::SignedMethod::Get,
                &key,
                None,
                &maskstore::SignOptions::default(),
            )
            .await
            .unwrap()
            .url;
        let got = python(
            "import urllib.request\n\
             from azure.storage.blob import BlobClient\n\
             sdk = BlobClient.from_blob_url(sys.argv[1]).download_blob().readall()\n\
             plain = urllib.request.urlopen(sys.argv[1]).read()\n\
             assert sdk == plain, (sdk, plain)\n\
             sys.stdout.write(sdk.decode())",
            &[&url],
        );
        assert_eq!(got, format!("data of {name}"), "{name}: {url}");
    }
}

/// A `Content-Disposition` naming a file with an accent (`Müller.png`), as boto3 and the
/// Azure SDK send it (ISO-8859-1 bytes: Python's `http.client`) and the GCS SDK stores
/// it: the object reads, HEADs and syncs on every cloud. object_store refuses such a
/// header outright ("Content-Disposition header contained non UTF-8 characters"), which
/// made the object unreadable by any command.
#[tokio::test]
async fn a_non_ascii_content_disposition_from_another_tool_does_not_block_the_object() {
    if !writers_available() {
        return;
    }
    let disposition = "attachment; filename=\"Müller.png\"";
    let boto3 = |server: &str| {
        format!(
            "c = s3('{server}')\nc.put_object(Bucket=bucket('{server}'), Key=sys.argv[1], \
             Body=b'mask', ContentType='image/png', ContentDisposition=sys.argv[2])"
        )
    };
    let writers = [
        (Writer::Boto3("SEAWEEDFS"), boto3("SEAWEEDFS")),
        (Writer::Boto3("MOTO"), boto3("MOTO")),
        (
            Writer::AzureSdk,
            "from azure.storage.blob import ContentSettings\nazure().get_blob_client(sys.argv[1])\
             .upload_blob(b'mask', content_settings=ContentSettings(content_type='image/png', \
             content_disposition=sys.argv[2]))"
                .to_string(),
        ),
        (
            Writer::GcsSdk,
            "b = gcs().blob(sys.argv[1])\nb.content_disposition = sys.argv[2]\n\
             b.upload_from_string(b'mask', content_type='image/png')"
                .to_string(),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (writer, code) in writers {
        let prefix = fresh_prefix();
        let Some(config) = writer.config(&prefix) else {
            continue;
        };
        python(&code, &[&format!("{prefix}scan.png"), disposition]);
        let storage = Storage::connect(&config).unwrap();
        let key = storage.key("scan.png").unwrap();
        let read = storage.get(&key).await.unwrap();
        assert_eq!(read.data, "mask", "{code}");
        assert_eq!(read.info.content_type.as_deref(), Some("image/png"));
        assert_eq!(storage.head(&key).await.unwrap().size, 4);
        let local = Config::local(dir.path().join("data")).with_prefix(prefix.clone());
        let local = Storage::connect(&local).unwrap();
        sync_once(&storage, &local, prefix.as_str(), 1).await;
    }
}

/// Values GCS's XML API cannot give back in a header (an ESC, which fake-gcs-server sends
/// raw and no HTTP client parses; a line break, which comes back a space; outer spaces),
/// found in another store and carried to GCS, read back exactly: maskstore writes them as
/// an encoded word. Written raw, the object could not be read or even HEADed again.
#[tokio::test]
async fn values_gcs_headers_cannot_carry_are_carried_encoded_and_read_back_exactly() {
    let Some(server) = servers::fake_gcs() else {
        return;
    };
    let gcs = Storage::connect(&server.config().with_prefix(fresh_prefix())).unwrap();
    for (i, value) in ["a\u{1b}[2Jb", "line\nbreak", " outer ", "Dr. Müller\t"]
        .iter()
        .enumerate()
    {
        let key = gcs.key(&format!("c{i}.bin")).unwrap();
        let found = [("note".to_string(), value.to_string())].into();
        let carried = gcs.carry(&found, None);
        let options = maskstore::WriteOptions {
            carried: carried.kept,
            ..Default::default()
        };
        gcs.put_with(&key, "mask", &options).await.unwrap();
        let read = gcs.head(&key).await.unwrap().metadata;
        assert_eq!(read.get("note").map(String::as_str), Some(*value));
    }
}
