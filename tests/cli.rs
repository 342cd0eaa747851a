//! The `maskstore` binary, run as a user would run it.

use maskstore_testkit::servers;

use crate::support::{maskstore, succeeded, text, vars};

#[test]
fn check_passes_on_the_embedded_default_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(dir.path(), &["check"], &[]);
    let stdout = succeeded(&out);
    assert!(
        stdout.contains("provider local (folder ./data)"),
        "{stdout}"
    );
    for step in ["list", "put", "get", "delete"] {
        assert!(stdout.contains(&format!("{step:<8} ok")), "{stdout}");
    }
    for rule in [
        "client_error_rate: 4xx share > 5.0% over 300 s",
        "server_error_rate: 5xx share > 1.0% over 300 s",
        "request_surge: requests/s over 60 s > 3 × the rate over the 240 s before (from 1/s)",
    ] {
        assert!(stdout.contains(rule), "{stdout}");
    }
    assert!(dir.path().join("data").is_dir());
    // The probe is gone: nothing left under mask/.
    assert!(!dir.path().join("data/mask").exists());
}

#[test]
fn check_json_reports_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["--json", "check"],
        &vars(&[("APP_OBJECT_STORAGE__PROVIDER", "memory")]),
    );
    succeeded(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["provider"], "memory");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["connect", "list", "put", "get", "delete"]);
}

#[test]
fn check_json_includes_the_alarm_rules_from_monitoring() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["--json", "check"],
        &vars(&[
            ("APP_OBJECT_STORAGE__PROVIDER", "memory"),
            ("APP_MONITORING__SERVER_ERROR_RATE_ALARM", "0.02"),
        ]),
    );
    succeeded(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let alarms = &report["alarms"];
    assert_eq!(alarms["window_secs"], 300, "{alarms}");
    let rules = alarms["rules"].as_array().unwrap();
    let names: Vec<&str> = rules.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["client_error_rate", "server_error_rate", "request_surge"]
    );
    assert_eq!(rules[0]["threshold"], 0.05);
    assert_eq!(rules[1]["threshold"], 0.02);
    assert_eq!(rules[2]["factor"], 3.0);
    let line = rules[1]["rule"].as_str().unwrap();
    assert!(
        line.starts_with("server_error_rate: 5xx share > 2.0% over 300 s"),
        "{line}"
    );
}

#[test]
fn config_show_redacts_secrets_and_names_origins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/staging.toml"),
        "[object_storage]\nprovider = \"s3\"\nbucket_name = \"pacs-masks-staging\"\nregion = \"ap-northeast-2\"\nsecret_key = \"FILE-SECRET-123\"\naccess_key = \"AKIAFILE\"\n",
    )
    .unwrap();
    let env = vars(&[
        ("APP_ENV", "staging"),
        ("APP_OBJECT_STORAGE__SECRET_KEY", "ENV-SECRET-456"),
    ]);
    for args in [&["config", "show"][..], &["--json", "config", "show"][..]] {
        let out = maskstore(dir.path(), args, &env);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        succeeded(&out);
        assert!(
            !all.contains("SECRET-123") && !all.contains("SECRET-456"),
            "{all}"
        );
        assert!(all.contains("[redacted]"), "{all}");
        assert!(all.contains("env APP_OBJECT_STORAGE__SECRET_KEY"), "{all}");
        assert!(all.contains("pacs-masks-staging"), "{all}");
        assert!(all.contains("config/staging.toml"), "{all}");
    }
}

#[test]
fn unknown_provider_fails_listing_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["check"],
        &vars(&[("APP_OBJECT_STORAGE__PROVIDER", "google")]),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("APP_OBJECT_STORAGE__PROVIDER"), "{stderr}");
    assert!(
        stderr.contains("known providers: s3, local, memory, azure, gcs"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "one sentence, no backtrace: {stderr}"
    );
}

#[test]
fn explicit_config_file_is_used_and_a_missing_one_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mine.toml"),
        "[object_storage]\nprovider = \"memory\"\n",
    )
    .unwrap();
    let out = maskstore(dir.path(), &["--config", "mine.toml", "check"], &[]);
    succeeded(&out);
    assert!(text(&out.stdout).contains("provider memory"));
    let out = maskstore(dir.path(), &["--config", "nope.toml", "check"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nope.toml"));
}

#[test]
fn check_passes_against_seaweedfs_from_app_variables() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(dir.path(), &["check"], &server.app_env());
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    succeeded(&out);
    assert!(all.contains("all steps passed"), "{all}");
    assert!(!all.contains(server.secret_key.expose()), "{all}");
}

#[test]
fn check_with_a_wrong_secret_says_the_credentials_were_rejected() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut env = server.app_env();
    env.retain(|(k, _)| k != "APP_OBJECT_STORAGE__SECRET_KEY");
    env.push((
        "APP_OBJECT_STORAGE__SECRET_KEY".into(),
        "WRONG-SECRET-789".into(),
    ));
    let out = maskstore(dir.path(), &["check"], &env);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(stderr.contains("credentials were rejected"), "{stderr}");
    assert!(stdout.contains("list     FAILED"), "{stdout}");
    assert!(!stdout.contains("WRONG-SECRET") && !stderr.contains("WRONG-SECRET"));
}

#[test]
fn config_show_names_the_secret_file_and_a_file_open_to_others_is_refused_with_chmod_600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("s3_secret_key");
    std::fs::write(&secret_file, "wJalrFROMFILEsecretvalue\n").unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = secret_file.display().to_string();
    let env = vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
        ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs-masks"),
        ("APP_OBJECT_STORAGE__REGION", "us-east-1"),
        ("APP_OBJECT_STORAGE__ACCESS_KEY", "AKIAEXAMPLE"),
        ("APP_OBJECT_STORAGE__SECRET_KEY_FILE", &path),
    ]);
    let out = maskstore(dir.path(), &["config", "show"], &env);
    let stdout = succeeded(&out);
    let line = stdout
        .lines()
        .find(|l| {
            l.contains("object_storage.secret_key ") || l.starts_with("object_storage.secret_key\t")
        })
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.contains("[redacted]") && line.contains(&format!("secret file {path}")),
        "{line}"
    );
    assert!(!stdout.contains("wJalrFROMFILE"), "{stdout}");
    for key in [
        "monitoring.surge_factor",
        "monitoring.surge_min_rate",
        "monitoring.surge_window",
    ] {
        assert!(stdout.contains(key), "{stdout}");
    }

    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = maskstore(dir.path(), &["config", "show"], &env);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains(&format!("chmod 600 {path}")), "{stderr}");
    assert!(stderr.contains("mode 644"), "{stderr}");
    assert!(!stderr.contains("wJalrFROMFILE") && !text(&out.stdout).contains("wJalr"));
}

/// A /proc file says size 0 but reads its content: `put` stores that content, not an empty
/// object (and a FIFO given by path streams what is written to it).
#[test]
fn put_of_a_proc_file_stores_its_content_not_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["put", "/proc/self/mountinfo", "mask/proc/mountinfo.txt"],
        &[],
    );
    succeeded(&out);
    let stored = std::fs::read(dir.path().join("data/mask/proc/mountinfo.txt")).unwrap();
    assert!(!stored.is_empty(), "stored empty");
    assert!(text(&stored).contains(" / "), "{}", text(&stored));
}

#[test]
fn logs_into_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = maskstore(
        dir.path(),
        &["check"],
        &vars(&[
            ("APP_OBJECT_STORAGE__PROVIDER", "memory"),
            ("MASKSTORE_LOG", "trace"),
        ]),
    );
    succeeded(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "no log lines: {stderr}"
    );
    assert!(
        !out.stderr.contains(&0x1b),
        "an escape byte in piped logs: {stderr:?}"
    );
}
