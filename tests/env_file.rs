//! The deployment guide's `.env` block, saved as `.env` in an empty folder, is what the
//! binary runs on: `check` passes against S3 with it, fails with an unreachable endpoint
//! in it, and `config show` names its lines.

use std::path::Path;

use maskstore_testkit::servers;

use crate::support::{maskstore, succeeded, text, vars};

/// The guide's block ("환경변수 설정 → 1. .env 파일에 추가"), its comments kept, pointed at
/// `endpoint` with the given keys.
fn guide_env(dir: &Path, bucket: &str, endpoint: &str, access: &str, secret: &str) {
    let text = format!(
        "# AWS S3 설정\n\
         APP_OBJECT_STORAGE__PROVIDER=s3\n\
         APP_OBJECT_STORAGE__BUCKET_NAME={bucket}\n\
         APP_OBJECT_STORAGE__REGION=us-east-1\n\
         APP_OBJECT_STORAGE__ENDPOINT={endpoint}\n\
         APP_OBJECT_STORAGE__ACCESS_KEY={access}  # 실제 Access Key\n\
         APP_OBJECT_STORAGE__SECRET_KEY={secret}      # 실제 Secret Key\n\
         APP_OBJECT_STORAGE__PREFIX=mask/test-{:016x}/\n\
         \n\
         # Signed URL 설정\n\
         APP_SIGNED_URL__DEFAULT_TTL=600\n\
         APP_SIGNED_URL__MAX_TTL=3600\n",
        rand::random::<u64>()
    );
    std::fs::write(dir.join(".env"), text).unwrap();
}

#[test]
fn the_guides_env_file_in_an_empty_folder_makes_check_pass_against_s3() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let secret = server.secret_key.expose();
    guide_env(
        dir.path(),
        &server.bucket,
        &server.endpoint,
        &server.access_key,
        secret,
    );
    let out = maskstore(dir.path(), &["check"], &[]);
    let stdout = succeeded(&out);
    assert!(stdout.contains("provider s3"), "{stdout}");
    assert!(
        stdout.contains("config sources: env file .env (9 keys)"),
        "{stdout}"
    );
    assert!(stdout.contains("all steps passed"), "{stdout}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing went to local disk"
    );

    let out = maskstore(dir.path(), &["config", "show"], &[]);
    let shown = succeeded(&out);
    let line = |key: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .to_string()
    };
    assert!(
        line("object_storage.provider ").ends_with("# .env line 2"),
        "{shown}"
    );
    assert!(
        line("object_storage.secret_key ").ends_with("# .env line 7"),
        "{shown}"
    );
    assert!(
        line("signed_url.max_ttl ").ends_with("# .env line 12"),
        "{shown}"
    );
    assert!(!shown.contains(secret), "{shown}");

    // A real variable wins over the file.
    let out = maskstore(
        dir.path(),
        &["config", "show"],
        &vars(&[("APP_SIGNED_URL__MAX_TTL", "1800")]),
    );
    assert!(
        succeeded(&out).contains("env APP_SIGNED_URL__MAX_TTL"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn an_env_file_naming_an_unreachable_endpoint_makes_check_fail() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    guide_env(
        dir.path(),
        "pacs-masks",
        &format!("http://127.0.0.1:{port}"),
        "AKIAEXAMPLE",
        "s3cr3t-value-of-the-env-file",
    );
    let out = maskstore(
        dir.path(),
        &["check"],
        &vars(&[("APP_OBJECT_STORAGE__MAX_RETRIES", "0")]),
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("unreachable"), "{all}");
    assert!(!all.contains("all steps passed"), "{all}");
    assert!(!all.contains("s3cr3t-value"), "{all}");
}

#[test]
fn without_any_source_check_says_it_ran_on_the_defaults_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(dir.path(), &["check"], &[]);
    assert!(
        succeeded(&out).contains("config sources: built-in defaults only"),
        "{}",
        text(&out.stdout)
    );
    let out = maskstore(dir.path(), &["--json", "check"], &[]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["config_sources"][0]["source"], "built-in defaults");
}

#[test]
fn a_missing_env_file_flag_and_an_unknown_key_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(dir.path(), &["--env-file", "nope.env", "check"], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nope.env") && err.contains("--env-file"),
        "{err}"
    );

    std::fs::write(
        dir.path().join(".env"),
        "APP_OBJECT_STORAGE__PROVIDER=s3\nAPP_OBJECT_STORAGE__BUCKETNAME=pacs-masks\n",
    )
    .unwrap();
    let out = maskstore(dir.path(), &["check"], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(".env line 2") && err.contains("bucket_name"),
        "{err}"
    );
}

#[test]
fn a_symlinked_env_file_is_followed_and_its_targets_mode_checked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared.env");
    std::fs::write(
        &shared,
        "APP_ENV=staging\nAPP_OBJECT_STORAGE__PROVIDER=memory\nAPP_OBJECT_STORAGE__ALLOW_MEMORY_IN_PRODUCTION=true\nAPP_GATEWAY__SIGNING_SECRET=0123456789abcdef0123456789abcdef-env\n",
    )
    .unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::symlink(&shared, work.join(".env")).unwrap();
    let out = maskstore(&work, &["config", "show"], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("chmod 600 .env") && err.contains("mode 644"),
        "{err}"
    );
    assert!(!err.contains("0123456789abcdef"), "{err}");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = maskstore(&work, &["config", "show"], &[]);
    let shown = succeeded(&out);
    assert!(
        shown.contains("staging") && shown.contains(".env line 1"),
        "{shown}"
    );
}
