//! The operator commands as processes, end to end, against local disk and SeaweedFS:
//! ls, put, get, rm, cp, mv, sync, policy, and each doctor diagnosis provoked for real.

use crate::support::flip_one_byte;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use maskstore_testkit::servers::{self, S3Server};
use serde::Deserialize;

use crate::support::{command, maskstore, succeeded, text, vars};

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(7919) % 251) as u8)
        .collect()
}

/// A place to run commands from, with the environment that selects the store.
struct Target {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    prefix: String,
}

impl Target {
    fn local() -> Target {
        Target {
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
            prefix: "mask/".to_string(),
        }
    }

    fn s3(server: &S3Server) -> Target {
        let prefix = server.config().object_storage.prefix.to_string();
        let mut env = server.app_env();
        env.push(("APP_OBJECT_STORAGE__PREFIX".into(), prefix.clone()));
        Target {
            dir: tempfile::tempdir().unwrap(),
            env,
            prefix,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        maskstore(self.dir.path(), args, &self.env)
    }

    fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = command(self.dir.path(), args, &self.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the maskstore binary runs");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Every object chore on one target: 20 MiB round trips by file and by pipe, ls, cp, mv,
/// rm, and the key-outside-the-prefix refusal.
fn chores(t: &Target) {
    let body = pattern(20 * 1024 * 1024 + 3);
    std::fs::write(t.path("volume.nii.gz"), &body).unwrap();
    let key = format!("{}1.2.840.1/1.2.840.2/volume.nii.gz", t.prefix);

    let out = succeeded(&t.run(&["put", "volume.nii.gz", &key]));
    assert!(
        out.contains("application/gzip"),
        "content type from the mask extension: {out}"
    );
    succeeded(&t.run(&["get", &key, "back.nii.gz"]));
    assert!(
        std::fs::read(t.path("back.nii.gz")).unwrap() == body,
        "file round trip differs"
    );
    // Over an existing file, without the sync.
    succeeded(&t.run(&["get", "--no-sync", &key, "back.nii.gz"]));
    assert!(
        std::fs::read(t.path("back.nii.gz")).unwrap() == body,
        "file round trip without sync differs"
    );

    let piped_key = format!("{}piped/from-stdin.bin", t.prefix);
    succeeded(&t.run_with_stdin(
        &[
            "put",
            "-",
            &piped_key,
            "--content-type",
            "application/x-test",
        ],
        &body,
    ));
    let out = t.run(&["get", &piped_key, "-"]);
    succeeded(&out);
    assert!(out.stdout == body, "pipe round trip differs");

    let listing = succeeded(&t.run(&["ls"]));
    assert_eq!(listing.lines().collect::<Vec<_>>().len(), 2, "{listing}");
    assert!(listing.lines().any(|l| l == key), "{listing}");
    let long = succeeded(&t.run(&["ls", "--long", &format!("{}1.2.840.1/", t.prefix)]));
    assert!(
        long.contains(&(20 * 1024 * 1024 + 3).to_string()) && long.contains(&key),
        "{long}"
    );
    let json_line = succeeded(&t.run(&["--json", "ls"]));
    for line in json_line.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["size"].is_u64() && v["key"].is_string(), "{line}");
    }

    let copy = format!("{}copies/volume.nii.gz", t.prefix);
    succeeded(&t.run(&["cp", &key, &copy]));
    let moved = format!("{}moved/volume.nii.gz", t.prefix);
    succeeded(&t.run(&["mv", &copy, &moved]));
    let listing = succeeded(&t.run(&["ls"]));
    assert!(
        !listing.contains("copies/") && listing.contains("moved/"),
        "{listing}"
    );

    let out = t.run(&["rm", "--prefix", &t.prefix]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "rm --prefix without a terminal needs --yes"
    );
    assert!(text(&out.stderr).contains("--yes"));
    assert_eq!(
        succeeded(&t.run(&["ls"])).lines().count(),
        3,
        "nothing deleted without --yes"
    );
    succeeded(&t.run(&["rm", &moved]));
    let out = succeeded(&t.run(&["--json", "rm", "--prefix", &t.prefix, "--yes"]));
    let deleted: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(deleted["deleted"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(succeeded(&t.run(&["ls"])), "");

    let out = t.run(&["get", &key, "gone.bin"]);
    assert_eq!(out.status.code(), Some(3), "not found");
    assert!(!t.path("gone.bin").exists(), "a failed get left a file");
    let out = t.run(&["put", "volume.nii.gz", "elsewhere/volume.nii.gz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("outside the configured prefix"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn object_chores_on_local_disk() {
    chores(&Target::local());
}

#[test]
fn object_chores_on_seaweedfs() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    chores(&Target::s3(&server));
}

/// A get killed mid-download leaves either nothing or the complete file: never a partial
/// one, and no temporary file in sight.
#[test]
fn killed_get_leaves_no_partial_file() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let t = Target::s3(&server);
    let body = pattern(96 * 1024 * 1024);
    std::fs::write(t.path("big.bin"), &body).unwrap();
    let key = format!("{}big.bin", t.prefix);
    succeeded(&t.run(&["put", "big.bin", &key]));
    std::fs::remove_file(t.path("big.bin")).unwrap();
    let out_dir = t.path("out");
    std::fs::create_dir(&out_dir).unwrap();

    let mut interrupted = 0;
    for delay_ms in [50u64, 150, 400] {
        let mut child = command(t.dir.path(), &["get", &key, "out/big.bin"], &t.env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let entries: Vec<_> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        match std::fs::read(out_dir.join("big.bin")) {
            Ok(bytes) => {
                assert!(
                    bytes == body,
                    "a partial file after a kill at {delay_ms} ms"
                );
                std::fs::remove_file(out_dir.join("big.bin")).unwrap();
            }
            Err(_) => {
                assert!(
                    entries.is_empty(),
                    "left behind after a kill at {delay_ms} ms: {entries:?}"
                );
                interrupted += 1;
            }
        }
    }
    // 96 MiB cannot arrive in 50 ms here, so at least that run was cut mid-download.
    assert!(
        interrupted > 0,
        "no get was interrupted; the test proved nothing"
    );
    succeeded(&t.run(&["rm", &key]));
}

fn write_config(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

#[test]
fn sync_local_to_seaweedfs_copies_once_and_dry_run_changes_nothing() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = server.config().object_storage.prefix.to_string();
    let local = write_config(
        dir.path(),
        "local.toml",
        &format!(
            "[object_storage]\nprovider = \"local\"\nroot = \"./data\"\nprefix = \"{prefix}\"\n"
        ),
    );
    let staging = write_config(
        dir.path(),
        "staging.toml",
        &format!(
            "[object_storage]\nprovider = \"s3\"\nbucket_name = \"{}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\nprefix = \"{prefix}\"\n",
            server.bucket, server.endpoint
        ),
    );
    // Secrets come from the environment, as the guide asks; they apply to both sides.
    let env = vars(&[
        ("APP_OBJECT_STORAGE__ACCESS_KEY", &server.access_key),
        ("APP_OBJECT_STORAGE__SECRET_KEY", server.secret_key.expose()),
    ]);
    let run = |args: &[&str]| maskstore(dir.path(), args, &env);
    let summary =
        |out: &Output| -> serde_json::Value { serde_json::from_str(&succeeded(out)).unwrap() };

    for (i, name) in ["a.png", "b/c.dcm", "b/d e.nii.gz"].iter().enumerate() {
        std::fs::write(dir.path().join("f"), pattern(1000 * (i + 1))).unwrap();
        succeeded(&run(&[
            "--config",
            &local,
            "put",
            "f",
            &format!("{prefix}{name}"),
        ]));
    }
    let first = summary(&run(&[
        "--json", "sync", "--from", &local, "--to", &staging,
    ]));
    assert_eq!(
        (first["copied"].as_u64(), first["skipped"].as_u64()),
        (Some(3), Some(0)),
        "{first}"
    );
    let second = summary(&run(&[
        "--json", "sync", "--from", &local, "--to", &staging,
    ]));
    assert_eq!(
        (second["copied"].as_u64(), second["skipped"].as_u64()),
        (Some(0), Some(3)),
        "{second}"
    );

    // Content types survive the trip.
    let listing = succeeded(&run(&["--config", &staging, "ls"]));
    assert_eq!(listing.lines().count(), 3, "{listing}");
    let out = run(&[
        "--config",
        &staging,
        "get",
        &format!("{prefix}b/c.dcm"),
        "-",
    ]);
    assert!(out.stdout == pattern(2000));

    // A changed source and an extra destination object: dry-run reports, changes nothing.
    std::fs::write(dir.path().join("f"), pattern(5000)).unwrap();
    succeeded(&run(&[
        "--config",
        &local,
        "put",
        "f",
        &format!("{prefix}a.png"),
    ]));
    succeeded(&run(&[
        "--config",
        &staging,
        "put",
        "f",
        &format!("{prefix}extra.bin"),
    ]));
    let dry = run(&[
        "sync",
        "--from",
        &local,
        "--to",
        &staging,
        "--dry-run",
        "--delete",
    ]);
    let dry_out = succeeded(&dry);
    assert!(
        dry_out.contains(&format!("would copy {prefix}a.png")),
        "{dry_out}"
    );
    assert!(
        dry_out.contains(&format!("would delete {prefix}extra.bin")),
        "{dry_out}"
    );
    let out = run(&["--config", &staging, "get", &format!("{prefix}a.png"), "-"]);
    assert!(
        out.stdout == pattern(1000),
        "dry run changed the destination"
    );
    assert_eq!(
        succeeded(&run(&["--config", &staging, "ls"]))
            .lines()
            .count(),
        4
    );

    let real = summary(&run(&[
        "--json", "sync", "--from", &local, "--to", &staging, "--delete", "--yes",
    ]));
    assert_eq!(
        (real["copied"].as_u64(), real["deleted"].as_u64()),
        (Some(1), Some(1)),
        "{real}"
    );
    let out = run(&["--config", &staging, "get", &format!("{prefix}a.png"), "-"]);
    assert!(out.stdout == pattern(5000));
    succeeded(&run(&[
        "--config", &staging, "rm", "--prefix", &prefix, "--yes",
    ]));
}

/// One S3 bucket at one endpoint named by two configs that differ only in the region
/// they claim and a trailing `/`: the same store, refused before anything connects.
#[test]
fn sync_of_one_bucket_under_two_regions_or_endpoint_spellings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str, region: &str, endpoint: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[object_storage]\nprovider = \"s3\"\nbucket_name = \"pacs-masks-dev\"\n\
                 region = \"{region}\"\nendpoint = \"{endpoint}\"\naccess_key = \"AKIA\"\n\
                 secret_key = \"not-a-real-secret\"\n"
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let from = config("from.toml", "us-east-1", "http://127.0.0.1:9");
    let to = config("to.toml", "ap-northeast-2", "http://127.0.0.1:9/");
    let out = maskstore(dir.path(), &["sync", "--from", &from, "--to", &to], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("same store"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sync_of_a_store_onto_itself_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["sync", "--from", "development", "--to", "development"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("same store"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sync_between_config_files_ignores_a_broken_default_environment() {
    let dir = tempfile::tempdir().unwrap();
    // The default environment (development) is broken, but sync never reads it: both sides
    // are named config files, which replace the config folder. (APP_* variables would apply
    // to both sides too, so the breakage has to live in the folder.)
    std::fs::create_dir(dir.path().join("config")).unwrap();
    write_config(
        &dir.path().join("config"),
        "development.toml",
        "[object_storage]\nprovider = \"bogus\"\n",
    );
    let broken = maskstore(dir.path(), &["config", "show"], &[]);
    assert_eq!(
        broken.status.code(),
        Some(2),
        "the default environment should be broken: {}",
        text(&broken.stderr)
    );
    let from = write_config(
        dir.path(),
        "a.toml",
        "[object_storage]\nprovider = \"local\"\nroot = \"./a\"\n",
    );
    let to = write_config(
        dir.path(),
        "b.toml",
        "[object_storage]\nprovider = \"local\"\nroot = \"./b\"\n",
    );
    std::fs::write(dir.path().join("f"), pattern(3000)).unwrap();
    let run = |args: &[&str]| maskstore(dir.path(), args, &[]);
    succeeded(&run(&["--config", &from, "put", "f", "mask/1/2/m.png"]));

    let summary: serde_json::Value = serde_json::from_str(&succeeded(&run(&[
        "--json", "sync", "--from", &from, "--to", &to,
    ])))
    .unwrap();
    assert_eq!(summary["copied"].as_u64(), Some(1), "{summary}");
    let out = run(&["--config", &to, "get", "mask/1/2/m.png", "-"]);
    assert!(out.stdout == pattern(3000), "{}", text(&out.stderr));
}

// --- policy documents, parsed with the shapes AWS expects -------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IamPolicy {
    #[serde(rename = "Version")]
    version: String,
    #[serde(rename = "Statement")]
    statement: Vec<IamStatement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IamStatement {
    #[serde(rename = "Sid")]
    _sid: Option<String>,
    #[serde(rename = "Effect")]
    effect: String,
    #[serde(rename = "Action")]
    action: OneOrMany,
    #[serde(rename = "Resource")]
    resource: String,
    #[serde(rename = "Condition", default)]
    condition: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn all(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct CorsConfiguration {
    #[serde(rename = "CORSRules")]
    cors_rules: Vec<CorsRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct CorsRule {
    allowed_headers: Vec<String>,
    allowed_methods: Vec<String>,
    allowed_origins: Vec<String>,
    expose_headers: Vec<String>,
    max_age_seconds: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct LifecycleConfiguration {
    rules: Vec<LifecycleRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct LifecycleRule {
    #[serde(rename = "ID")]
    id: String,
    status: String,
    filter: LifecycleFilter,
    transitions: Vec<Transition>,
    abort_incomplete_multipart_upload: AbortIncomplete,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct LifecycleFilter {
    prefix: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct Transition {
    days: u32,
    storage_class: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct AbortIncomplete {
    days_after_initiation: u32,
}

#[test]
fn policy_documents_have_the_shapes_aws_expects() {
    let dir = tempfile::tempdir().unwrap();
    let env = vars(&[
        ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs-masks-prod"),
        ("APP_OBJECT_STORAGE__PREFIX", "mask/"),
    ]);
    let run = |doc: &str| succeeded(&maskstore(dir.path(), &["policy", doc], &env));

    let iam: IamPolicy = serde_json::from_str(&run("iam")).unwrap();
    assert_eq!(iam.version, "2012-10-17");
    assert!(iam.statement.iter().all(|s| s.effect == "Allow"));
    let objects = iam
        .statement
        .iter()
        .find(|s| s.action.all().contains(&"s3:PutObject"))
        .unwrap();
    assert_eq!(objects.resource, "arn:aws:s3:::pacs-masks-prod/mask/*");
    for action in ["s3:GetObject", "s3:DeleteObject"] {
        assert!(objects.action.all().contains(&action));
    }
    let list = iam
        .statement
        .iter()
        .find(|s| s.action.all() == ["s3:ListBucket"])
        .unwrap();
    assert_eq!(list.resource, "arn:aws:s3:::pacs-masks-prod");
    let condition = serde_json::Value::Object(list.condition.clone().unwrap());
    assert_eq!(condition["StringLike"]["s3:prefix"][0], "mask/*");
    let granted: Vec<&str> = iam.statement.iter().flat_map(|s| s.action.all()).collect();
    assert!(
        !granted
            .iter()
            .any(|a| a.contains("CreateBucket") || a.ends_with('*')),
        "{granted:?}"
    );

    let cors: CorsConfiguration = serde_json::from_str(&run("cors")).unwrap();
    let rule = &cors.cors_rules[0];
    assert_eq!(
        rule.allowed_origins,
        ["http://localhost:3000", "http://localhost:8080"]
    );
    assert_eq!(rule.allowed_methods, ["GET", "PUT", "POST", "DELETE"]);
    assert_eq!(
        (
            rule.allowed_headers.as_slice(),
            rule.expose_headers.as_slice()
        ),
        (&["*".to_string()][..], &["ETag".to_string()][..])
    );
    assert_eq!(rule.max_age_seconds, 3000);

    let lifecycle: LifecycleConfiguration = serde_json::from_str(&run("lifecycle")).unwrap();
    let rule = &lifecycle.rules[0];
    assert!(!rule.id.is_empty() && rule.status == "Enabled");
    assert_eq!(rule.filter.prefix, "mask/");
    let transitions: Vec<(u32, &str)> = rule
        .transitions
        .iter()
        .map(|t| (t.days, t.storage_class.as_str()))
        .collect();
    assert_eq!(transitions, [(90, "STANDARD_IA"), (365, "GLACIER")]);
    assert_eq!(
        rule.abort_incomplete_multipart_upload.days_after_initiation,
        7
    );

    let out = maskstore(dir.path(), &["policy", "iam"], &[]);
    assert_eq!(out.status.code(), Some(2), "no bucket, no IAM policy");
    assert!(text(&out.stderr).contains("bucket_name"));
}

// --- the doctor, each diagnosis provoked for real --------------------------------------

fn diagnosis(dir: &Path, env: &[(String, String)], expected_code: i32, needles: &[&str]) -> String {
    let out = maskstore(dir, &["check"], env);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(expected_code), "{all}");
    for needle in needles {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "one line on stderr: {}",
        text(&out.stderr)
    );
    all
}

fn with(env: &[(String, String)], changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
        .cloned()
        .collect();
    env.extend(changes.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

#[test]
fn doctor_names_a_policy_without_list_bucket() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let (Ok(key), Ok(secret)) = (
        std::env::var("MASKSTORE_TEST_SEAWEEDFS_NOLIST_ACCESS_KEY"),
        std::env::var("MASKSTORE_TEST_SEAWEEDFS_NOLIST_SECRET_KEY"),
    ) else {
        panic!("scripts/test-servers exports the no-ListBucket identity");
    };
    let env = with(
        &server.app_env(),
        &[
            ("APP_OBJECT_STORAGE__ACCESS_KEY", &key),
            ("APP_OBJECT_STORAGE__SECRET_KEY", &secret),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    diagnosis(
        dir.path(),
        &env,
        4,
        &[
            "access denied by the policy",
            "s3:ListBucket on arn:aws:s3:::pacs-masks-test",
        ],
    );
}

#[test]
fn doctor_names_a_missing_bucket() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let missing = std::env::var("MASKSTORE_TEST_SEAWEEDFS_MISSING_BUCKET")
        .expect("exported by scripts/test-servers");
    let env = with(
        &server.app_env(),
        &[("APP_OBJECT_STORAGE__BUCKET_NAME", &missing)],
    );
    let dir = tempfile::tempdir().unwrap();
    diagnosis(
        dir.path(),
        &env,
        3,
        &[
            &format!("bucket {missing} does not exist"),
            "create the bucket",
        ],
    );
}

#[test]
fn doctor_names_rejected_credentials() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let env = with(
        &server.app_env(),
        &[("APP_OBJECT_STORAGE__SECRET_KEY", "not-the-secret-at-all")],
    );
    let dir = tempfile::tempdir().unwrap();
    diagnosis(
        dir.path(),
        &env,
        4,
        &["credentials were rejected", "SignatureDoesNotMatch"],
    );
}

#[test]
fn doctor_names_a_tls_failure() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let https = server.endpoint.replacen("http://", "https://", 1);
    let env = with(
        &server.app_env(),
        &[
            ("APP_OBJECT_STORAGE__ENDPOINT", &https),
            ("APP_OBJECT_STORAGE__MAX_RETRIES", "0"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    diagnosis(dir.path(), &env, 5, &["TLS handshake", "http://"]);
}

#[test]
fn doctor_names_a_stopped_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let env = vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
        ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs-masks-dev"),
        ("APP_OBJECT_STORAGE__REGION", "us-east-1"),
        ("APP_OBJECT_STORAGE__ENDPOINT", &endpoint),
        ("APP_OBJECT_STORAGE__ACCESS_KEY", "AKIA"),
        ("APP_OBJECT_STORAGE__SECRET_KEY", "x"),
        ("APP_OBJECT_STORAGE__MAX_RETRIES", "0"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    diagnosis(
        dir.path(),
        &env,
        5,
        &[
            &format!("the endpoint {endpoint} is unreachable"),
            "that the server is running",
        ],
    );
}

/// A GCS service account key of a fresh RSA key (openssl, as `scripts/test-servers` makes
/// the test servers' one), written private to `path`.
fn write_gcs_key(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let key = maskstore_testkit::gcs_service_account_key(
        "doctor@maskstore-test.iam.gserviceaccount.com",
        "doctor-test",
    );
    std::fs::write(path, key).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn doctor_names_a_stopped_gcs_or_azure_server_in_its_own_settings_without_a_region() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("service_account.json");
    write_gcs_key(&key_file);
    for (provider, own) in [
        (
            vec![
                ("APP_OBJECT_STORAGE__PROVIDER", "gcs"),
                ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs_masks"),
                (
                    "APP_OBJECT_STORAGE__SERVICE_ACCOUNT_KEY_FILE",
                    key_file.to_str().unwrap(),
                ),
            ],
            "storage.googleapis.com",
        ),
        (
            vec![
                ("APP_OBJECT_STORAGE__PROVIDER", "azure"),
                ("APP_OBJECT_STORAGE__ACCOUNT", "pacsmasks"),
                ("APP_OBJECT_STORAGE__CONTAINER", "pacs-masks"),
                ("APP_OBJECT_STORAGE__ACCOUNT_KEY", "Zmlyc3Q="),
            ],
            "object_storage.account",
        ),
    ] {
        let mut env = provider;
        env.extend([
            ("APP_OBJECT_STORAGE__ENDPOINT", endpoint.as_str()),
            ("APP_OBJECT_STORAGE__MAX_RETRIES", "0"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let out = diagnosis(
            dir.path(),
            &vars(&env),
            5,
            &[&format!("the endpoint {endpoint} is unreachable"), own],
        );
        assert!(!out.contains("region"), "{out}");
    }
}

#[test]
fn doctor_names_an_unwritable_local_root() {
    let dir = tempfile::tempdir().unwrap();
    // Not writable by anyone, root included.
    let env = vars(&[("APP_OBJECT_STORAGE__ROOT", "/proc/maskstore-data")]);
    diagnosis(
        dir.path(),
        &env,
        2,
        &[
            "the local root /proc/maskstore-data is not writable",
            "APP_OBJECT_STORAGE__ROOT",
        ],
    );
}

/// A symlink below a writable local root: the doctor names the symlink, and does not
/// call the root unwritable nor send the operator to move it.
#[test]
fn doctor_names_a_symlink_below_a_writable_local_root_not_an_unwritable_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    std::fs::create_dir_all(root.join("mask")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("mask/maskstore-check")).unwrap();
    let env = vars(&[("APP_OBJECT_STORAGE__ROOT", root.to_str().unwrap())]);
    diagnosis(dir.path(), &env, 4, &["is a symlink", "never follows"]);
    let out = maskstore(dir.path(), &["check"], &env);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains("is not writable"), "{all}");
    assert!(!all.contains("at a folder this user can create"), "{all}");
}

#[test]
fn check_cors_tells_whether_a_browser_upload_would_be_allowed() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["check", "--cors", "http://localhost:3000"],
        &server.app_env(),
    );
    assert!(succeeded(&out).contains("would be allowed"));
    let out = maskstore(
        dir.path(),
        &["check", "--cors", "https://evil.example"],
        &server.app_env(),
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stdout).contains("would be REFUSED"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn sync_exits_6_when_its_only_failures_are_corrupt_sources() {
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str, root: &str| {
        write_config(
            dir.path(),
            name,
            &format!("[object_storage]\nprovider = \"local\"\nroot = \"{root}\"\n"),
        )
    };
    let (from, to) = (config("from.toml", "./from"), config("to.toml", "./to"));
    std::fs::write(dir.path().join("f"), pattern(10_000)).unwrap();
    for key in ["mask/good.png", "mask/bad.png"] {
        succeeded(&maskstore(
            dir.path(),
            &["--config", &from, "put", "f", key],
            &[],
        ));
    }
    flip_one_byte(&dir.path().join("from/mask/bad.png"));

    let out = maskstore(dir.path(), &["sync", "--from", &from, "--to", &to], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("corrupt in the source"), "{stderr}");
    assert!(dir.path().join("to/mask/good.png").is_file());
    assert!(!dir.path().join("to/mask/bad.png").exists());

    // A failure of another kind as well: the run is not only corrupt objects, exit 1.
    std::fs::remove_dir_all(dir.path().join("to")).unwrap();
    std::fs::create_dir_all(dir.path().join("to/mask/good.png")).unwrap();
    std::fs::write(dir.path().join("to/mask/good.png/x"), b"x").unwrap();
    let out = maskstore(dir.path(), &["sync", "--from", &from, "--to", &to], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}
