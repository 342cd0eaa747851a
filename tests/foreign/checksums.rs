//! Checksums other tools wrote count, and what cannot be verified says so.
//!
//! boto3 and the AWS CLI store S3 flexible checksums (boto3's default is CRC32), the GCS
//! SDK's objects carry GCS's crc32c/md5, the Azure SDK's blobs a Content-MD5: `verify`
//! over what they wrote reports every object verified and names the checksum, a damaged
//! object is corrupt, a composite (per-part) checksum is reported as such and never as a
//! mismatch, and a second `sync` copies nothing. A GCS object stored gzip-encoded reads as
//! stored. On local disk, a file placed by `cp` (no attribute record) is honestly
//! unverified, while a record that exists but no longer parses is corrupt (exit 6), and
//! `verify --require-checksum` (or `object_storage.require_checksum`) fails on unverified
//! objects.
//!
//! Damaged bytes behind an intact provider checksum cannot be written through these
//! servers (SeaweedFS and Azurite refuse a checksum that does not match, moto and
//! fake-gcs-server drop or recompute it), so the damage is made where it happens in life:
//! on the way, by [`Damaging`], a TCP relay in front of the server that alters the object's
//! bytes and nothing else. On Azure the stale-checksum case is also made directly: the
//! blob's Content-MD5 is replaced (Set Blob Properties) while its bytes stay.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;

use maskstore_testkit::servers;
use serde_json::Value;

use super::{python, writers_available};
use crate::support::{maskstore, succeeded, text};

/// The bytes every foreign object here holds, repeated: [`Damaging`] alters each
/// occurrence of [`MARK`] it relays.
const MARK: &str = "intact-mask-bytes";
/// What [`Damaging`] turns [`MARK`] into (same length: only the bytes change).
const DAMAGED: &str = "DAMAGED-mask-byte";

fn body() -> String {
    MARK.repeat(64)
}

fn prefix() -> String {
    format!("mask/foreign-sums-{:016x}/", rand::random::<u64>())
}

/// The JSON a `--json` command printed.
fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// `vars` with `name` set to `value` (replacing it).
fn with(vars: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = vars.iter().filter(|(k, _)| k != name).cloned().collect();
    vars.push((name.to_string(), value.to_string()));
    vars
}

/// A TCP relay to `upstream` that alters every [`MARK`] the server sends back into
/// [`DAMAGED`]: the object's bytes arrive damaged, its headers (and checksums) intact, as
/// after bit rot on disk or on the way. Requests pass unchanged (signatures hold), but
/// with `own_host` their `Host` names the server (fake-gcs-server routes by it; no
/// signature covers it there).
struct Damaging {
    endpoint: String,
}

impl Damaging {
    fn start(upstream: &str, own_host: bool) -> Damaging {
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let path = upstream
            .trim_start_matches("http://")
            .split_once('/')
            .map(|(_, p)| format!("/{p}"))
            .unwrap_or_default();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay_host = listener.local_addr().unwrap().to_string();
        let endpoint = format!("http://{relay_host}{path}");
        let hosts = own_host.then(|| (relay_host, target.clone()));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (client_in, server_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let hosts = hosts.clone();
                std::thread::spawn(move || relay(client_in, server_out, Alter::Host(hosts)));
                std::thread::spawn(move || relay(server, client, Alter::Mark));
            }
        });
        Damaging { endpoint }
    }
}

/// What a relay direction alters: the object's bytes coming back, or (requests) the
/// `Host` named, when it is to be the server's.
enum Alter {
    Mark,
    Host(Option<(String, String)>),
}

fn relay(mut from: TcpStream, mut to: TcpStream, alter: Alter) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = match &alter {
            Alter::Mark => replaced(&buffer[..n], MARK, DAMAGED),
            Alter::Host(Some((relay, server))) => replaced(
                &buffer[..n],
                &format!("ost: {relay}\r\n"),
                &format!("ost: {server}\r\n"),
            ),
            Alter::Host(None) => buffer[..n].to_vec(),
        };
        if to.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// `bytes` with every `from` replaced by `to`.
fn replaced(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from.as_bytes()) {
            out.extend_from_slice(to.as_bytes());
            i += from.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// `verify --json` over `prefix`.
fn verify(dir: &Path, vars: &[(String, String)], prefix: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--json", "verify", "--prefix", prefix];
    args.extend_from_slice(extra);
    maskstore(dir, &args, vars)
}

/// Asserts that `verify` over `prefix` reports all `count` objects verified, by the
/// checksums `by` (each with how many), exit 0.
#[track_caller]
fn all_verified(
    dir: &Path,
    vars: &[(String, String)],
    prefix: &str,
    count: u64,
    by: &[(&str, u64)],
) {
    let out = verify(dir, vars, prefix, &["--require-checksum"]);
    let report = json(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{report}\n{}",
        text(&out.stderr)
    );
    assert_eq!(report["verified"], count, "{report}");
    assert_eq!(report["unverified"], serde_json::json!([]), "{report}");
    for (source, n) in by {
        assert_eq!(report["verified_by"][source], *n, "{source}: {report}");
    }
    // The human output names the provider's checksum too.
    let human = succeeded(&maskstore(dir, &["verify", "--prefix", prefix], vars));
    for (source, n) in by {
        assert!(
            human.contains(&format!("verified by {source}: {n}")),
            "{human}"
        );
    }
}

/// Asserts that `verify` over `prefix` (through a damaging relay) reports `key` corrupt,
/// exit 6, and that `get` of it fails the same way and leaves no file.
#[track_caller]
fn corrupt_through(dir: &Path, vars: &[(String, String)], prefix: &str, key: &str) {
    let out = verify(dir, vars, prefix, &[]);
    let report = json(&out);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{report}\n{}",
        text(&out.stderr)
    );
    assert!(
        report["corrupt"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == key),
        "{report}"
    );
    let out = maskstore(dir, &["get", key, "damaged.bin"], vars);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(!dir.join("damaged.bin").exists());
}

/// `sync` from `from` (a config file) to a local folder, twice: the second copies nothing;
/// then back from that folder onto `from`, twice: the first replaces the foreign objects
/// with maskstore's copies (their source checksums differ in algorithm and they record no
/// source), the second copies nothing.
#[track_caller]
fn sync_both_ways(dir: &Path, vars: &[(String, String)], from: &str, prefix: &str, count: u64) {
    let local = dir.join("local.toml");
    std::fs::write(
        &local,
        format!(
            "[object_storage]\nprovider = \"local\"\nroot = \"./copy\"\nprefix = \"{prefix}\"\n"
        ),
    )
    .unwrap();
    let local = local.display().to_string();
    let run = |from: &str, to: &str| {
        json(&maskstore(
            dir,
            &["--json", "sync", "--from", from, "--to", to],
            vars,
        ))
    };
    for (from, to, copies) in [(from, local.as_str(), Some(count)), (&local, from, None)] {
        let first = run(from, to);
        if let Some(copies) = copies {
            assert_eq!(first["copied"], copies, "{from} -> {to}: {first}");
        }
        assert_eq!(first["failed"], 0, "{from} -> {to}: {first}");
        let second = run(from, to);
        assert_eq!(
            (second["copied"].as_u64(), second["skipped"].as_u64()),
            (Some(0), Some(count)),
            "{from} -> {to}: {second}"
        );
    }
}

#[test]
fn boto3_and_aws_cli_checksums_verify_every_object_and_damage_is_corrupt() {
    if !writers_available() {
        return;
    }
    for server in servers::all() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = prefix();
        let name = if server.name.contains("moto") {
            "MOTO"
        } else {
            "SEAWEEDFS"
        };
        std::fs::write(dir.path().join("cli.bin"), body()).unwrap();
        python(
            "c = s3(sys.argv[1]); b = bucket(sys.argv[1]); p = sys.argv[2]; body = sys.argv[3].encode()\n\
             c.put_object(Bucket=b, Key=p + 'boto3-default.bin', Body=body)\n\
             for alg in ['CRC32C', 'CRC64NVME', 'SHA256']:\n\
             \x20   c.put_object(Bucket=b, Key=p + alg.lower() + '.bin', Body=body, ChecksumAlgorithm=alg)\n\
             import subprocess\n\
             argv, env = aws_cli_env(sys.argv[1])\n\
             subprocess.run(argv + ['s3', 'cp', sys.argv[4], f's3://{b}/{p}aws-cli.bin'], env=env, check=True, capture_output=True)",
            &[
                name,
                &prefix,
                &body(),
                &dir.path().join("cli.bin").display().to_string(),
            ],
        );
        let vars = server.app_env();
        // boto3's default is CRC32, and so is the AWS CLI's (1.46, as installed); another
        // CLI version may choose CRC64NVME: both count.
        all_verified(
            dir.path(),
            &vars,
            &prefix,
            5,
            &[("x-amz-checksum-crc32c", 1), ("x-amz-checksum-sha256", 1)],
        );
        let report = json(&verify(dir.path(), &vars, &prefix, &[]));
        let by = &report["verified_by"];
        assert_eq!(
            by["x-amz-checksum-crc32"].as_u64().unwrap_or(0)
                + by["x-amz-checksum-crc64nvme"].as_u64().unwrap_or(0),
            3,
            "{}: {report}",
            server.name
        );
        let key = format!("{prefix}boto3-default.bin");
        let stat = succeeded(&maskstore(dir.path(), &["stat", &key], &vars));
        assert!(stat.contains("(x-amz-checksum-crc32)"), "{stat}");
        let got = succeeded(&maskstore(dir.path(), &["get", &key, "-"], &vars));
        assert_eq!(got, body());

        let relay = Damaging::start(&server.endpoint, false);
        let damaged = with(&vars, "APP_OBJECT_STORAGE__ENDPOINT", &relay.endpoint);
        corrupt_through(dir.path(), &damaged, &prefix, &key);

        let from = dir.path().join("s3.toml");
        std::fs::write(
            &from,
            format!(
                "[object_storage]\nprovider = \"s3\"\nbucket_name = \"{}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\nprefix = \"{prefix}\"\n",
                server.bucket, server.endpoint
            ),
        )
        .unwrap();
        let secrets: Vec<(String, String)> = vars
            .iter()
            .filter(|(k, _)| k.ends_with("_KEY"))
            .cloned()
            .collect();
        sync_both_ways(
            dir.path(),
            &secrets,
            &from.display().to_string(),
            &prefix,
            5,
        );
    }
}

#[test]
fn a_composite_multipart_checksum_is_reported_as_such_never_as_a_mismatch() {
    if !writers_available() {
        return;
    }
    for server in servers::all() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = prefix();
        let name = if server.name.contains("moto") {
            "MOTO"
        } else {
            "SEAWEEDFS"
        };
        python(
            "c = s3(sys.argv[1]); b = bucket(sys.argv[1]); k = sys.argv[2] + 'multipart.bin'\n\
             up = c.create_multipart_upload(Bucket=b, Key=k, ChecksumAlgorithm='CRC32')\n\
             parts = []\n\
             for i, body in enumerate([b'x' * (5 * 1024 * 1024), b'y' * 10]):\n\
             \x20   r = c.upload_part(Bucket=b, Key=k, UploadId=up['UploadId'], PartNumber=i + 1, Body=body, ChecksumAlgorithm='CRC32')\n\
             \x20   parts.append({'PartNumber': i + 1, 'ETag': r['ETag'], 'ChecksumCRC32': r['ChecksumCRC32']})\n\
             c.complete_multipart_upload(Bucket=b, Key=k, UploadId=up['UploadId'], MultipartUpload={'Parts': parts})",
            &[name, &prefix],
        );
        let vars = server.app_env();
        let key = format!("{prefix}multipart.bin");
        let out = verify(dir.path(), &vars, &prefix, &[]);
        let report = json(&out);
        assert_eq!(out.status.code(), Some(0), "{}: {report}", server.name);
        assert_eq!(report["corrupt"], serde_json::json!([]), "{report}");
        assert_eq!(report["composite"][0]["key"], key.as_str(), "{report}");
        assert_eq!(
            report["composite"][0]["checksum"], "x-amz-checksum-crc32",
            "{report}"
        );
        let human = succeeded(&maskstore(
            dir.path(),
            &["verify", "--prefix", &prefix],
            &vars,
        ));
        assert!(human.contains("is composite"), "{human}");
        let stat = succeeded(&maskstore(dir.path(), &["stat", &key], &vars));
        assert!(stat.contains("composite"), "{stat}");
        // Readable, and said to be unverified.
        let out = maskstore(dir.path(), &["get", &key, "-"], &vars);
        assert_eq!(out.stdout.len(), 5 * 1024 * 1024 + 10);
        assert!(
            text(&out.stderr).contains("composite"),
            "{}",
            text(&out.stderr)
        );
        // A scrub that requires a checksum fails on it.
        let out = verify(dir.path(), &vars, &prefix, &["--require-checksum"]);
        assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    }
}

#[test]
fn gcs_sdk_checksums_verify_and_a_gzip_object_reads_as_stored() {
    if !writers_available() {
        return;
    }
    let Some(gcs) = servers::fake_gcs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    python(
        "import gzip\n\
         b = gcs(); p = sys.argv[1]; body = sys.argv[2].encode()\n\
         b.blob(p + 'plain.bin').upload_from_string(body)\n\
         z = b.blob(p + 'report.txt')\n\
         z.content_encoding = 'gzip'\n\
         packed = gzip.compress(body)\n\
         z.upload_from_string(packed, content_type='text/plain')\n\
         open(sys.argv[3], 'wb').write(packed)",
        &[
            &prefix,
            &body(),
            &dir.path().join("packed.gz").display().to_string(),
        ],
    );
    let vars = gcs.app_env();
    all_verified(dir.path(), &vars, &prefix, 2, &[("gcs crc32c", 2)]);
    // The gzip object comes down as stored, compressed, and says so.
    let key = format!("{prefix}report.txt");
    succeeded(&maskstore(dir.path(), &["get", &key, "report.gz"], &vars));
    assert_eq!(
        std::fs::read(dir.path().join("report.gz")).unwrap(),
        std::fs::read(dir.path().join("packed.gz")).unwrap()
    );
    let stat = json(&maskstore(dir.path(), &["--json", "stat", &key], &vars));
    assert_eq!(stat["content_encoding"], "gzip", "{stat}");
    assert_eq!(stat["checked_by"], "gcs crc32c", "{stat}");
    let human = succeeded(&maskstore(dir.path(), &["stat", &key], &vars));
    assert!(human.contains("encoding       gzip"), "{human}");

    let relay = Damaging::start(&gcs.endpoint, true);
    let damaged = with(&vars, "APP_OBJECT_STORAGE__ENDPOINT", &relay.endpoint);
    corrupt_through(dir.path(), &damaged, &prefix, &format!("{prefix}plain.bin"));

    let from = dir.path().join("gcs.toml");
    std::fs::write(
        &from,
        format!(
            "[object_storage]\nprovider = \"gcs\"\nbucket_name = \"{}\"\nendpoint = \"{}\"\nservice_account_key_file = \"{}\"\nprefix = \"{prefix}\"\n",
            gcs.bucket,
            gcs.endpoint,
            gcs.service_account_file.display()
        ),
    )
    .unwrap();
    sync_both_ways(dir.path(), &[], &from.display().to_string(), &prefix, 2);
    // The copy keeps the encoding with the compressed bytes.
    let copy = dir.path().join("local.toml").display().to_string();
    let stat = json(&maskstore(
        dir.path(),
        &["--config", &copy, "--json", "stat", &key],
        &[],
    ));
    assert_eq!(stat["content_encoding"], "gzip", "{stat}");
    // The gateway serves the copy's stored bytes saying what they are, as GCS does for a
    // client that accepts gzip: without the header a browser keeps the compressed bytes.
    let copy_root = dir.path().join("copy").display().to_string();
    let served = crate::support::vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "local"),
        ("APP_OBJECT_STORAGE__ROOT", &copy_root),
        ("APP_OBJECT_STORAGE__PREFIX", &prefix),
        ("APP_GATEWAY__SIGNING_SECRET", &"s".repeat(64)),
    ]);
    let serve = crate::support::Serve::start(dir.path(), &served);
    let url = serve.sign(maskstore_backends::SignedMethod::Get, &key);
    let answer = http_get(&serve.addr, &url).to_ascii_lowercase();
    let packed = std::fs::read(dir.path().join("packed.gz")).unwrap();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(
        answer.contains("\r\ncontent-encoding: gzip\r\n"),
        "{answer}"
    );
    let length = format!("\r\ncontent-length: {}\r\n", packed.len());
    assert!(answer.contains(&length), "{answer}");
    drop(serve);
    // So does the copy synced back onto GCS, which reads back as stored.
    let back = json(&maskstore(dir.path(), &["--json", "stat", &key], &vars));
    assert_eq!(back["content_encoding"], "gzip", "{back}");
    assert_eq!(back["checked_by"], "maskstore-checksum", "{back}");
    succeeded(&maskstore(dir.path(), &["get", &key, "back.gz"], &vars));
    assert_eq!(
        std::fs::read(dir.path().join("back.gz")).unwrap(),
        std::fs::read(dir.path().join("packed.gz")).unwrap()
    );
    assert_eq!(
        stat["size"],
        std::fs::metadata(dir.path().join("packed.gz"))
            .unwrap()
            .len(),
        "{stat}"
    );
}

#[test]
fn azure_sdk_content_md5_verifies_and_a_stale_one_is_corrupt() {
    if !writers_available() {
        return;
    }
    let Some(azure) = servers::azurite() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let upload = "import hashlib\n\
         from azure.storage.blob import ContentSettings\n\
         c = azure(); p = sys.argv[1]; body = sys.argv[2].encode()\n\
         md5 = bytearray(hashlib.md5(body).digest())\n\
         c.upload_blob(p + sys.argv[3], body, content_settings=ContentSettings(content_md5=md5))\n\
         c.upload_blob(p + sys.argv[4], body, validate_content=True)";
    python(upload, &[&prefix, &body(), "with-md5.bin", "validated.bin"]);
    let vars = azure.app_env();
    all_verified(dir.path(), &vars, &prefix, 2, &[("azure Content-MD5", 2)]);

    let from = dir.path().join("azure.toml");
    std::fs::write(
        &from,
        format!(
            "[object_storage]\nprovider = \"azure\"\naccount = \"{}\"\ncontainer = \"{}\"\nendpoint = \"{}\"\nprefix = \"{prefix}\"\n",
            azure.account, azure.container, azure.endpoint
        ),
    )
    .unwrap();
    let secrets = with(
        &[],
        "APP_OBJECT_STORAGE__ACCOUNT_KEY",
        azure.account_key.expose(),
    );
    sync_both_ways(
        dir.path(),
        &secrets,
        &from.display().to_string(),
        &prefix,
        2,
    );

    // Two more blobs from the SDK; one's recorded MD5 is then replaced while its bytes
    // stay: they no longer match it.
    python(upload, &[&prefix, &body(), "stale.bin", "relayed.bin"]);
    python(
        "import hashlib\n\
         from azure.storage.blob import ContentSettings\n\
         b = azure().get_blob_client(sys.argv[1])\n\
         md5 = bytearray(hashlib.md5(b'other bytes').digest())\n\
         b.set_http_headers(ContentSettings(content_type='application/octet-stream', content_md5=md5))",
        &[&format!("{prefix}stale.bin")],
    );
    let key = format!("{prefix}stale.bin");
    let out = verify(dir.path(), &vars, &prefix, &[]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(6), "{report}");
    assert_eq!(report["corrupt"], serde_json::json!([key]), "{report}");
    let relay = Damaging::start(&azure.endpoint, false);
    let damaged = with(&vars, "APP_OBJECT_STORAGE__ENDPOINT", &relay.endpoint);
    corrupt_through(
        dir.path(),
        &damaged,
        &prefix,
        &format!("{prefix}relayed.bin"),
    );
}

/// A local store under `dir/data` with prefix `prefix`, as the CLI's environment.
fn local(dir: &Path, prefix: &str) -> Vec<(String, String)> {
    crate::support::vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "local"),
        (
            "APP_OBJECT_STORAGE__ROOT",
            &dir.join("data").display().to_string(),
        ),
        ("APP_OBJECT_STORAGE__PREFIX", prefix),
    ])
}

#[test]
fn a_local_file_placed_by_cp_is_unverified_and_a_scrub_can_require_a_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = "mask/1.2/";
    let vars = local(dir.path(), prefix);
    let placed = dir.path().join("data/mask/1.2/placed.bin");
    std::fs::create_dir_all(placed.parent().unwrap()).unwrap();
    std::fs::write(&placed, body()).unwrap();

    let out = maskstore(dir.path(), &["get", "mask/1.2/placed.bin", "-"], &vars);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), body());
    assert!(
        text(&out.stderr)
            .contains("mask/1.2/placed.bin is not verified: it has no stored checksum"),
        "{}",
        text(&out.stderr)
    );
    let out = maskstore(
        dir.path(),
        &["get", "mask/1.2/placed.bin", "placed.bin"],
        &vars,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("was not verified"),
        "{}",
        text(&out.stderr)
    );

    // Honestly unverified: a plain scrub passes and lists it...
    let out = verify(dir.path(), &vars, prefix, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        json(&out)["unverified"],
        serde_json::json!(["mask/1.2/placed.bin"])
    );
    // ...one that requires a checksum fails, by flag or by config.
    let out = verify(dir.path(), &vars, prefix, &["--require-checksum"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(
        text(&out.stderr).contains("require"),
        "{}",
        text(&out.stderr)
    );
    let required = with(&vars, "APP_OBJECT_STORAGE__REQUIRE_CHECKSUM", "true");
    assert_eq!(
        verify(dir.path(), &required, prefix, &[]).status.code(),
        Some(6)
    );
    // Once maskstore wrote it, it has a checksum and the scrub passes.
    succeeded(&maskstore(
        dir.path(),
        &["put", "placed.bin", "mask/1.2/placed.bin"],
        &vars,
    ));
    assert_eq!(
        verify(dir.path(), &required, prefix, &[]).status.code(),
        Some(0)
    );
}

#[test]
fn a_damaged_local_checksum_record_over_altered_bytes_is_corrupt_not_unverified() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = "mask/1.2/";
    let vars = local(dir.path(), prefix);
    std::fs::write(dir.path().join("src.bin"), body()).unwrap();
    for name in ["record.bin", "bytes.bin"] {
        succeeded(&maskstore(
            dir.path(),
            &["put", "src.bin", &format!("mask/1.2/{name}")],
            &vars,
        ));
    }
    // Bytes altered in place (the record kept), and bytes altered with a record that no
    // longer parses (a torn write, another tool's attribute, a bad restore).
    for name in ["record.bin", "bytes.bin"] {
        let file = dir.path().join("data/mask/1.2").join(name);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[3] ^= 1;
        let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.write_all(&bytes).unwrap();
    }
    let record = dir.path().join("data/mask/1.2/record.bin");
    xattr::set(
        &record,
        "user.maskstore.attributes",
        b"{\"metadata\":{\"maskstore-checks",
    )
    .unwrap();

    for name in ["record.bin", "bytes.bin"] {
        let key = format!("mask/1.2/{name}");
        let out = maskstore(dir.path(), &["get", &key, "out.bin"], &vars);
        assert_eq!(out.status.code(), Some(6), "{name}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("corrupt"),
            "{}",
            text(&out.stderr)
        );
        assert!(!dir.path().join("out.bin").exists(), "{name}");
        let out = maskstore(dir.path(), &["get", &key, "-"], &vars);
        assert_eq!(out.status.code(), Some(6), "{name}: {}", text(&out.stderr));
    }
    let out = verify(dir.path(), &vars, prefix, &[]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(6), "{report}");
    assert_eq!(
        report["corrupt"],
        serde_json::json!(["mask/1.2/bytes.bin", "mask/1.2/record.bin"]),
        "{report}"
    );
    // stat says why instead of failing; forensics can still read the bytes.
    let stat = succeeded(&maskstore(
        dir.path(),
        &["stat", "mask/1.2/record.bin"],
        &vars,
    ));
    assert!(stat.contains("corrupt: its attribute record"), "{stat}");
    let out = maskstore(
        dir.path(),
        &["get", "--no-verify", "mask/1.2/record.bin", "-"],
        &vars,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A copy cannot launder it into an object that merely has no checksum.
    let out = maskstore(
        dir.path(),
        &["cp", "mask/1.2/record.bin", "mask/1.2/copy.bin"],
        &vars,
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));

    // Nor can a sync: it reports the object and copies neither it nor its bytes.
    for (name, root) in [("from.toml", "./data"), ("to.toml", "./copy")] {
        std::fs::write(
            dir.path().join(name),
            format!(
                "[object_storage]\nprovider = \"local\"\nroot = \"{root}\"\nprefix = \"{prefix}\"\n"
            ),
        )
        .unwrap();
    }
    let out = maskstore(
        dir.path(),
        &["--json", "sync", "--from", "from.toml", "--to", "to.toml"],
        &[],
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("record.bin"),
        "{}",
        text(&out.stdout)
    );
    assert!(!dir.path().join("copy/mask/1.2/record.bin").exists());

    // The gateway refuses it before sending a byte, instead of 200 with the altered bytes.
    let secret = "s".repeat(64);
    let served = with(&vars, "APP_GATEWAY__SIGNING_SECRET", &secret);
    let serve = crate::support::Serve::start(dir.path(), &served);
    let url = serve.sign(maskstore_backends::SignedMethod::Get, "mask/1.2/record.bin");
    let answer = http_get(&serve.addr, &url);
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    assert!(
        !answer.contains("intact-mas") && !answer.contains(DAMAGED),
        "{answer}"
    );
}

/// The whole answer to a GET of `url` from `addr` (HTTP/1.1, connection closed after).
fn http_get(addr: &str, url: &str) -> String {
    let target = url.split_once(addr).map_or(url, |(_, rest)| rest);
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// A gzip object under a name object_store cannot hold (`a//b`, which GCS keeps) is read
/// through GCS's JSON API by its exact name: as stored too, never decompressed on the way,
/// and verified by GCS's CRC32C.
#[test]
fn a_gcs_gzip_object_with_a_foreign_name_reads_as_stored_and_verifies() {
    if !writers_available() {
        return;
    }
    let Some(gcs) = servers::fake_gcs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    python(
        "import gzip\n\
         b = gcs(); p = sys.argv[1]; body = sys.argv[2].encode()\n\
         z = b.blob(p + 'odd//report.txt')\n\
         z.content_encoding = 'gzip'\n\
         packed = gzip.compress(body)\n\
         z.upload_from_string(packed, content_type='text/plain')\n\
         open(sys.argv[3], 'wb').write(packed)",
        &[
            &prefix,
            &body(),
            &dir.path().join("packed.gz").display().to_string(),
        ],
    );
    let vars = gcs.app_env();
    let key = format!("{prefix}odd//report.txt");
    let got = maskstore(dir.path(), &["get", &key, "report.gz"], &vars);
    let said = text(&got.stderr);
    succeeded(&got);
    assert_eq!(
        std::fs::read(dir.path().join("report.gz")).unwrap(),
        std::fs::read(dir.path().join("packed.gz")).unwrap(),
        "{said}"
    );
    assert!(!said.contains("not verified"), "{said}");
    let stat = json(&maskstore(dir.path(), &["--json", "stat", &key], &vars));
    assert_eq!(stat["content_encoding"], "gzip", "{stat}");
    succeeded(&maskstore(dir.path(), &["rm", &key], &vars));
}

/// A blob under a name object_store cannot hold (`a//b`, which Azure keeps) is read by its
/// exact name with a SAS URL, and verified by its Content-MD5 like any other blob; its
/// bytes altered on the way are corrupt.
#[test]
fn an_azure_blob_with_a_foreign_name_verifies_by_its_content_md5() {
    if !writers_available() {
        return;
    }
    let Some(azure) = servers::azurite() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let key = format!("{prefix}odd//blob.bin");
    python(
        "c = azure(); c.upload_blob(sys.argv[1], sys.argv[2].encode(), overwrite=True)",
        &[&key, &body()],
    );
    let vars = azure.app_env();
    let got = maskstore(dir.path(), &["get", &key, "blob.bin"], &vars);
    let said = text(&got.stderr);
    succeeded(&got);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("blob.bin")).unwrap(),
        body()
    );
    assert!(!said.contains("not verified"), "{said}");
    let relay = Damaging::start(&azure.endpoint, false);
    let damaged = with(&vars, "APP_OBJECT_STORAGE__ENDPOINT", &relay.endpoint);
    let out = maskstore(dir.path(), &["get", &key, "damaged.bin"], &damaged);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    succeeded(&maskstore(dir.path(), &["rm", &key], &vars));
}
