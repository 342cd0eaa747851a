//! Names other tools wrote that are not valid maskstore keys (`a//b`, a backslash, a
//! zero-width joiner, a newline or ESC): `ls` lists them and the keys after them, marked and
//! escaped, and counts them; `stat` and `get` read them; `verify` checks the rest and
//! reports them; `sync` carries them where the destination can hold them (both ways, a
//! second run copies nothing); `rm KEY` and `rm --prefix --yes` delete them.

use std::path::Path;
use std::process::Output;

use maskstore_testkit::servers;

use super::{python, writers_available};
use crate::support::{maskstore, succeeded, text, vars};

/// One store as the CLI reaches it: its config file (without a prefix line) and the
/// variables carrying its secrets.
struct Side {
    toml: String,
    env: Vec<(String, String)>,
}

/// What the test writes and expects under one random prefix.
struct Case<'a> {
    dir: &'a Path,
    prefix: String,
    remote: String,
    local: String,
    env: Vec<(String, String)>,
}

impl Case<'_> {
    fn run(&self, args: &[&str]) -> Output {
        maskstore(self.dir, args, &self.env)
    }

    fn on(&self, config: &str, args: &[&str]) -> Output {
        let mut all = vec!["--config", config];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        serde_json::from_str(&succeeded(&out)).unwrap_or_else(|e| panic!("{e}: {out:?}"))
    }
}

fn new_case<'a>(dir: &'a Path, side: &Side) -> Case<'a> {
    let prefix = format!("mask/test-{:016x}/", rand::random::<u64>());
    let write = |name: &str, body: String| {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path.display().to_string()
    };
    let remote = write(
        "remote.toml",
        format!("{}prefix = \"{prefix}\"\n", side.toml),
    );
    let local = write(
        "local.toml",
        format!(
            "[object_storage]\nprovider = \"local\"\nroot = \"./data\"\nprefix = \"{prefix}\"\n"
        ),
    );
    Case {
        dir,
        prefix,
        remote,
        local,
        env: side.env.clone(),
    }
}

/// Deletes everything below a prefix with the official client when dropped, so that a
/// failed test leaves no odd name behind for other tests listing `mask/` (never panics).
struct Sweep {
    /// Python code deleting everything below `sys.argv[1]`.
    code: &'static str,
    /// The prefix, then what else the code takes.
    args: Vec<String>,
}

/// `sys.argv[1]`: the prefix; `sys.argv[2]`: the server (`MOTO`, `SEAWEEDFS`).
const SWEEP_S3: &str = "c = s3(sys.argv[2]); b = bucket(sys.argv[2])\n\
    for page in c.get_paginator('list_objects_v2').paginate(Bucket=b, Prefix=sys.argv[1]):\n    \
        for o in page.get('Contents', []): c.delete_object(Bucket=b, Key=o['Key'])";
const SWEEP_AZURE: &str =
    "c = azure()\nfor b in c.list_blobs(name_starts_with=sys.argv[1]): c.delete_blob(b.name)";
const SWEEP_GCS: &str =
    "g = gcs()\nfor b in g.client.list_blobs(g, prefix=sys.argv[1]): b.delete()";

impl Drop for Sweep {
    fn drop(&mut self) {
        let Ok(interpreter) = std::env::var("MASKSTORE_TEST_PYTHON") else {
            return;
        };
        let here = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/foreign");
        let script = format!(
            "import sys\nsys.path.insert(0, {here:?})\nfrom clients import *\n{}",
            self.code
        );
        let _ = std::process::Command::new(interpreter)
            .arg("-c")
            .arg(script)
            .args(&self.args)
            .output();
    }
}

/// Asserts no raw ESC (or other C0 control but newline) reached a person's output.
#[track_caller]
fn no_raw_controls(what: &str, output: &str) {
    assert!(
        !output
            .chars()
            .any(|c| c.is_control() && c != '\n' || c == '\u{200D}'),
        "{what} shows a raw control or format character: {output:?}"
    );
}

/// The whole story on `config` (where `odd` were written by another tool below the
/// prefix, and `a.png` and `zz/later.png` by maskstore): list, read, verify, sync out to
/// `other` and back, delete. `carried(name)` says whether `other` can hold `name`.
fn foreign_names_are_listed_read_verified_synced_and_deleted(
    case: &Case<'_>,
    config: &str,
    other: &str,
    odd: &[(&str, &str)],
    carried: impl Fn(&str) -> bool,
) {
    let p = &case.prefix;
    let valid = [format!("{p}a.png"), format!("{p}zz/later.png")];
    let total = valid.len() + odd.len();

    // ls: every object, the valid key after the odd ones too, odd ones marked and counted.
    let out = case.on(config, &["ls"]);
    let listing = succeeded(&out);
    no_raw_controls("ls", &listing);
    no_raw_controls("ls (stderr)", &text(&out.stderr));
    assert_eq!(listing.lines().count(), total, "{listing}");
    assert!(listing.contains(&valid[1]), "{listing}");
    assert_eq!(
        listing.matches("(foreign name)").count(),
        odd.len(),
        "{listing}"
    );
    assert!(
        text(&out.stderr).contains(&format!("{} of {total} objects", odd.len())),
        "{}",
        text(&out.stderr)
    );
    // One JSON document a line.
    let listed: Vec<serde_json::Value> = succeeded(&case.on(config, &["--json", "ls"]))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    for (name, body) in odd {
        let exact = format!("{p}{name}");
        let entry = listed
            .iter()
            .find(|e| e["key"] == exact.as_str())
            .unwrap_or_else(|| panic!("{exact:?} is not in ls --json: {listed:?}"));
        assert!(entry["foreign"].is_string(), "{entry}");
        // stat and get read it by its listed name.
        no_raw_controls("stat", &succeeded(&case.on(config, &["stat", &exact])));
        let got = case.on(config, &["get", &exact, "-"]);
        assert_eq!(text(&got.stdout), *body, "{}", text(&got.stderr));
    }

    // verify: the valid ones verified, the odd ones reported, nothing blocked.
    let out = case.on(config, &["verify"]);
    let report = succeeded(&out);
    no_raw_controls("verify", &report);
    // The valid ones verified (the odd ones too where the provider's own checksum came
    // with the read), none corrupt, none unreadable.
    let summary = report
        .lines()
        .find(|line| line.contains(" verified, "))
        .unwrap_or_else(|| panic!("no summary: {report}"));
    let verified: usize = summary.split(' ').next().unwrap().parse().unwrap();
    assert!(verified >= 2, "{report}");
    assert!(
        summary.contains(" 0 corrupt, 0 could not be read"),
        "{report}"
    );
    assert_eq!(
        report.matches("\nforeign ").count() + usize::from(report.starts_with("foreign ")),
        odd.len(),
        "{report}"
    );

    // sync out, twice: the second run copies nothing.
    let sync = |from: &str, to: &str| case.json(&["--json", "sync", "--from", from, "--to", to]);
    let holdable = odd.iter().filter(|(n, _)| carried(n)).count();
    let first = sync(config, other);
    assert_eq!(
        first["copied"].as_u64(),
        Some((2 + holdable) as u64),
        "{first}"
    );
    assert_eq!(first["failed"].as_u64(), Some(0), "{first}");
    assert_eq!(
        first["not_carried"].as_array().map(Vec::len),
        Some(odd.len() - holdable),
        "{first}"
    );
    assert_eq!(
        first["foreign"].as_array().map(Vec::len),
        Some(odd.len()),
        "{first}"
    );
    let second = sync(config, other);
    assert_eq!(second["copied"].as_u64(), Some(0), "{second}");

    // rm KEY deletes an odd name; rm --prefix --yes deletes everything else.
    let first_odd = format!("{p}{}", odd[0].0);
    succeeded(&case.on(config, &["rm", &first_odd]));
    let left = succeeded(&case.on(config, &["ls"]));
    assert_eq!(left.lines().count(), total - 1, "{left}");
    let out = case.on(config, &["rm", "--prefix", p, "--yes"]);
    let deleted = succeeded(&out);
    no_raw_controls("rm", &deleted);
    assert_eq!(
        succeeded(&case.on(config, &["ls"])),
        "",
        "rm --prefix left objects"
    );

    // And back: what was carried out comes back under the same names; again copies nothing.
    let back = sync(other, config);
    assert_eq!(
        back["copied"].as_u64(),
        Some((2 + holdable) as u64),
        "{back}"
    );
    assert_eq!(sync(other, config)["copied"].as_u64(), Some(0));
    for (name, body) in odd.iter().filter(|(n, _)| carried(n)) {
        let got = case.on(config, &["get", &format!("{p}{name}"), "-"]);
        assert_eq!(text(&got.stdout), *body, "{}", text(&got.stderr));
    }
    succeeded(&case.on(config, &["rm", "--prefix", p, "--yes"]));
}

/// The valid objects maskstore writes beside the odd ones.
fn put_valid(case: &Case<'_>, config: &str) {
    std::fs::write(case.dir.join("valid"), "valid mask").unwrap();
    for name in ["a.png", "zz/later.png"] {
        succeeded(&case.on(config, &["put", "valid", &format!("{}{name}", case.prefix)]));
    }
}

fn s3_side(server: &servers::S3Server) -> Side {
    Side {
        toml: format!(
            "[object_storage]\nprovider = \"s3\"\nbucket_name = \"{}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\n",
            server.bucket, server.endpoint
        ),
        env: vars(&[
            ("APP_OBJECT_STORAGE__ACCESS_KEY", &server.access_key),
            ("APP_OBJECT_STORAGE__SECRET_KEY", server.secret_key.expose()),
        ]),
    }
}

/// boto3 writes each `(name, body)` below `prefix` on `server` (`SEAWEEDFS` or `MOTO`).
fn boto3_writes(server: &str, prefix: &str, odd: &[(&str, &str)]) {
    let mut args = vec![server.to_string()];
    for (name, body) in odd {
        args.push(format!("{prefix}{name}"));
        args.push(body.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python(
        "c = s3(sys.argv[1])\n\
         for k, b in zip(sys.argv[2::2], sys.argv[3::2]):\n    \
             c.put_object(Bucket=bucket(sys.argv[1]), Key=k, Body=b.encode())",
        &args,
    );
}

/// Local disk holds every name here but those a file name cannot be (`a//b`) and those
/// object_store cannot address on it (a control character).
fn local_holds(name: &str) -> bool {
    !name.contains("//") && !name.ends_with('/') && !name.chars().any(|c| c.is_ascii_control())
}

#[test]
fn boto3_names_on_moto_never_block_ls_verify_sync_or_rm() {
    let Some(server) = servers::moto() else {
        return;
    };
    if !writers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let case = new_case(dir.path(), &s3_side(&server));
    let _sweep = Sweep {
        code: SWEEP_S3,
        args: vec![case.prefix.clone(), "MOTO".to_string()],
    };
    put_valid(&case, &case.remote);
    // moto keeps `//` as AWS does; object_store cannot list (nor address) it or an ESC.
    // (moto answers 404 to a PUT of a key with a newline; SeaweedFS takes one, below.)
    let odd = [
        ("f4/typo//double.bin", "double"),
        ("back\\slash.png", "backslash"),
        ("family👨\u{200D}👩.png", "joiner"),
        ("esc\u{1b}]0;pwned\u{7}.bin", "escape"),
        // A folder marker, as the AWS console's "Create folder" writes one.
        ("folder/", ""),
    ];
    boto3_writes("MOTO", &case.prefix, &odd);
    let (remote, local) = (case.remote.clone(), case.local.clone());
    foreign_names_are_listed_read_verified_synced_and_deleted(
        &case,
        &remote,
        &local,
        &odd,
        local_holds,
    );
}

#[test]
fn boto3_names_on_seaweedfs_never_block_ls_verify_sync_or_rm() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    if !writers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let case = new_case(dir.path(), &s3_side(&server));
    let _sweep = Sweep {
        code: SWEEP_S3,
        args: vec![case.prefix.clone(), "SEAWEEDFS".to_string()],
    };
    put_valid(&case, &case.remote);
    // SeaweedFS collapses `//` into `/` and stores a backslash as `/` (AWS and moto keep
    // both), so neither here; it keeps control characters, which object_store cannot list.
    let odd = [
        ("family👨\u{200D}👩.png", "joiner"),
        ("esc\u{1b}]0;pwned\u{7}\nline.bin", "escape"),
        ("tab\tname.bin", "tab"),
    ];
    boto3_writes("SEAWEEDFS", &case.prefix, &odd);
    let (remote, local) = (case.remote.clone(), case.local.clone());
    foreign_names_are_listed_read_verified_synced_and_deleted(
        &case,
        &remote,
        &local,
        &odd,
        local_holds,
    );
}

#[test]
fn names_written_by_the_azure_sdk_on_azurite_never_block_the_rest() {
    let Some(azure) = servers::azurite() else {
        return;
    };
    if !writers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let side = Side {
        toml: format!(
            "[object_storage]\nprovider = \"azure\"\naccount = \"{}\"\ncontainer = \"{}\"\nendpoint = \"{}\"\n",
            azure.account, azure.container, azure.endpoint
        ),
        env: vars(&[(
            "APP_OBJECT_STORAGE__ACCOUNT_KEY",
            azure.account_key.expose(),
        )]),
    };
    let case = new_case(dir.path(), &side);
    let _sweep = Sweep {
        code: SWEEP_AZURE,
        args: vec![case.prefix.clone()],
    };
    put_valid(&case, &case.remote);
    // Azure keeps `//`, which object_store cannot list or address. (It takes control
    // characters too, but Azurite answers its own listing of them with 500.)
    let odd = [
        ("family👨\u{200D}👩.png", "joiner"),
        ("rtl\u{202E}gnp.exe", "override"),
        ("f4/typo//double.bin", "double"),
        ("folder/", ""),
    ];
    let mut args = Vec::new();
    for (name, body) in &odd {
        args.push(format!("{}{name}", case.prefix));
        args.push(body.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python(
        "c = azure()\n\
         for k, b in zip(sys.argv[1::2], sys.argv[2::2]):\n    \
             c.upload_blob(k, b.encode(), overwrite=True)",
        &args,
    );
    let (remote, local) = (case.remote.clone(), case.local.clone());
    foreign_names_are_listed_read_verified_synced_and_deleted(
        &case,
        &remote,
        &local,
        &odd,
        local_holds,
    );
}

#[test]
fn names_written_by_the_gcs_sdk_on_fake_gcs_never_block_the_rest() {
    let Some(gcs) = servers::fake_gcs() else {
        return;
    };
    if !writers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let side = Side {
        toml: format!(
            "[object_storage]\nprovider = \"gcs\"\nbucket_name = \"{}\"\nendpoint = \"{}\"\nservice_account_key_file = \"{}\"\n",
            gcs.bucket,
            gcs.endpoint,
            gcs.service_account_file.display()
        ),
        env: Vec::new(),
    };
    let case = new_case(dir.path(), &side);
    let _sweep = Sweep {
        code: SWEEP_GCS,
        args: vec![case.prefix.clone()],
    };
    put_valid(&case, &case.remote);
    // GCS keeps `//` and control characters, which object_store cannot list or address.
    let odd = [
        ("family👨\u{200D}👩.png", "joiner"),
        ("back\\slash.png", "backslash"),
        ("f4/typo//double.bin", "double"),
        ("esc\u{1b}]0;pwned\u{7}\nline.bin", "escape"),
    ];
    let mut args = Vec::new();
    for (name, body) in &odd {
        args.push(format!("{}{name}", case.prefix));
        args.push(body.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python(
        "b = gcs()\n\
         for k, v in zip(sys.argv[1::2], sys.argv[2::2]):\n    \
             b.blob(k).upload_from_string(v.encode())",
        &args,
    );
    let (remote, local) = (case.remote.clone(), case.local.clone());
    foreign_names_are_listed_read_verified_synced_and_deleted(
        &case,
        &remote,
        &local,
        &odd,
        local_holds,
    );
}

/// Files placed in a local root by hand (or `cp -a`) whose names are not keys, synced to
/// moto and back: the joiner and the backslash travel, the newline (which object_store
/// cannot send) is reported as not carried.
#[test]
fn local_files_named_with_a_joiner_backslash_or_newline_never_block_the_rest() {
    let Some(server) = servers::moto() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let case = new_case(dir.path(), &s3_side(&server));
    let _sweep = Sweep {
        code: SWEEP_S3,
        args: vec![case.prefix.clone(), "MOTO".to_string()],
    };
    put_valid(&case, &case.local);
    let odd = [
        ("family👨\u{200D}👩.png", "joiner"),
        ("back\\slash.png", "backslash"),
        ("new\nline\u{1b}[2J.png", "newline"),
    ];
    let root = dir.path().join("data").join(&case.prefix);
    for (name, body) in &odd {
        std::fs::write(root.join(name), body).unwrap();
    }
    let (remote, local) = (case.remote.clone(), case.local.clone());
    foreign_names_are_listed_read_verified_synced_and_deleted(
        &case,
        &local,
        &remote,
        &odd,
        local_holds,
    );
}

/// Incomplete multipart uploads boto3 started under names that are not keys are listed
/// (never a reason to stop listing the others); the one object_store can address is
/// aborted, the other left to its tool.
#[tokio::test]
async fn incomplete_uploads_to_foreign_names_are_listed_and_never_stop_the_listing() {
    let Some(server) = servers::moto() else {
        return;
    };
    if !writers_available() {
        return;
    }
    let storage = server.storage();
    let prefix = storage.prefix().to_string();
    let _sweep = Sweep {
        code: "c = s3('MOTO'); b = bucket('MOTO')\n\
               for u in c.list_multipart_uploads(Bucket=b, Prefix=sys.argv[1]).get('Uploads', []):\n    \
                   c.abort_multipart_upload(Bucket=b, Key=u['Key'], UploadId=u['UploadId'])",
        args: vec![prefix.clone()],
    };
    let names = [
        format!("{prefix}a//b.bin"),
        format!("{prefix}back\\slash.bin"),
        format!("{prefix}plain.bin"),
    ];
    let args: Vec<&str> = names.iter().map(String::as_str).collect();
    python(
        "c = s3('MOTO')\n\
         for k in sys.argv[1:]: c.create_multipart_upload(Bucket=bucket('MOTO'), Key=k)",
        &args,
    );
    let mut listed: Vec<(String, bool)> = storage
        .incomplete_uploads(None)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.key.as_str().to_string(), u.key.is_foreign()))
        .collect();
    listed.sort();
    let mut want = vec![
        (names[0].clone(), true),
        (names[1].clone(), true),
        (names[2].clone(), false),
    ];
    want.sort();
    assert_eq!(listed, want);
    // The `//` one cannot be addressed through object_store: left, the others aborted.
    assert_eq!(storage.abort_incomplete_uploads(None).await.unwrap(), 2);
    let left = storage.incomplete_uploads(None).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key.as_str(), names[0]);
}

/// A request for a found name that fails (here: nothing listens at the endpoint) says so
/// without the presigned URL it was sent to, whose query carries a signature.
#[tokio::test]
async fn a_found_name_whose_request_fails_shows_no_signature() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    if !writers_available() {
        return;
    }
    let config = server.config();
    let storage = maskstore_backends::Storage::connect(&config).unwrap();
    let prefix = storage.prefix().to_string();
    let _sweep = Sweep {
        code: SWEEP_S3,
        args: vec![prefix.clone(), "SEAWEEDFS".to_string()],
    };
    // A tab: object_store cannot address it, so maskstore sends its own request.
    boto3_writes("SEAWEEDFS", &prefix, &[("tab\tname.bin", "odd")]);
    let listed: Vec<_> = futures::TryStreamExt::try_collect(storage.list(None).unwrap())
        .await
        .unwrap();
    let found = listed.into_iter().find(|o| o.key.is_foreign()).unwrap().key;
    assert_eq!(storage.get(&found).await.unwrap().data, "odd".as_bytes());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut down = config.clone();
    down.object_storage.endpoint = Some(format!("http://{}", closed.local_addr().unwrap()));
    drop(closed);
    down.object_storage.max_retries = 0;
    let down = maskstore_backends::Storage::connect(&down).unwrap();
    let failures = [
        down.get(&found).await.unwrap_err(),
        down.head(&found).await.unwrap_err(),
        down.delete(&found).await.unwrap_err(),
    ];
    for e in failures {
        let shown = format!("{e} / {e:?}");
        for secret in ["Signature", "X-Amz-Credential", server.secret_key.expose()] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
    }
    storage.delete(&found).await.unwrap();
}

/// `sync --delete` treats foreign names like any other: a destination object whose exact
/// name the source lacks is deleted (here one boto3 named with `//`), and a source object
/// the destination cannot hold (a local file named with a newline, which object_store
/// cannot send) is reported as not carried without holding back the deletes.
#[test]
fn sync_delete_removes_foreign_names_the_source_lacks_and_is_not_held_back_by_one_not_carried() {
    let Some(server) = servers::moto() else {
        return;
    };
    if !writers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let case = new_case(dir.path(), &s3_side(&server));
    let _sweep = Sweep {
        code: SWEEP_S3,
        args: vec![case.prefix.clone(), "MOTO".to_string()],
    };
    put_valid(&case, &case.local);
    let root = dir.path().join("data").join(&case.prefix);
    std::fs::write(root.join("new\nline.png"), "newline").unwrap();
    boto3_writes("MOTO", &case.prefix, &[("f4/typo//double.bin", "double")]);
    let (local, remote) = (case.local.clone(), case.remote.clone());
    let summary = case.json(&[
        "--json", "sync", "--from", &local, "--to", &remote, "--delete", "--yes", "--force",
    ]);
    assert_eq!(summary["copied"].as_u64(), Some(2), "{summary}");
    assert_eq!(summary["failed"].as_u64(), Some(0), "{summary}");
    assert_eq!(summary["deleted"].as_u64(), Some(1), "{summary}");
    assert_eq!(
        summary["to_delete"][0].as_str().map(str::to_string),
        Some(format!("{}f4/typo//double.bin", case.prefix)),
        "{summary}"
    );
    assert_eq!(
        summary["not_carried"].as_array().map(Vec::len),
        Some(1),
        "{summary}"
    );
    let left = succeeded(&case.on(&remote, &["ls"]));
    assert_eq!(left.lines().count(), 2, "{left}");
    assert!(!left.contains("double"), "{left}");
}

/// A destination that stores a name as another (SeaweedFS turns `\` into `/`, so
/// `a\b.png` lands on `a/b.png`; AWS keeps it) must not have an object overwritten by a
/// foreign name carried onto it: a foreign name the destination did not list but answers
/// for is reported as not carried.
#[test]
fn a_foreign_name_carried_never_overwrites_an_object_the_destination_holds_as_another_name() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let case = new_case(dir.path(), &s3_side(&server));
    std::fs::write(dir.path().join("keep"), "keep").unwrap();
    let kept = format!("{}a/b.png", case.prefix);
    succeeded(&case.on(&case.remote, &["put", "keep", &kept]));
    let root = dir.path().join("data").join(&case.prefix);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a\\b.png"), "foreign").unwrap();
    let (local, remote) = (case.local.clone(), case.remote.clone());
    let summary = case.json(&["--json", "sync", "--from", &local, "--to", &remote]);
    let got = succeeded(&case.on(&remote, &["get", &kept, "-"]));
    assert_eq!(got, "keep", "{summary}");
    assert_eq!(
        summary["not_carried"].as_array().map(Vec::len),
        Some(1),
        "{summary}"
    );
    succeeded(&case.on(&remote, &["rm", &kept]));
}

/// A local file whose name is not UTF-8 (so no key on any provider) and a special file
/// are skipped with a warning that names them escaped, and the warning carries no colour
/// codes when stderr is not a terminal: no raw ESC reaches the operator's log or screen.
#[test]
fn local_files_no_key_can_name_are_warned_about_escaped_without_colour_codes() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data").join("mask");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("kept.png"), b"kept").unwrap();
    let not_utf8 = std::ffi::OsStr::from_bytes(b"bad\xff\x1b]0;pwned\x07.png");
    std::fs::write(root.join(not_utf8), b"x").unwrap();
    let fifo = root.join("pipe\u{1b}[2J");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let out = maskstore(dir.path(), &["ls"], &[]);
    let listed = succeeded(&out);
    assert!(listed.contains("mask/kept.png"), "{listed}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("not UTF-8") && stderr.contains("special file"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
        "{stderr:?}"
    );
    no_raw_controls("ls stderr", &stderr);
}
