//! `maskstore policy metrics|alarms|prometheus` as their consumers take them: the AWS CLI
//! (its own parameter validation, then moto's S3 and CloudWatch) and `promtool check rules`.

use std::process::Command;

use maskstore_testkit::servers;

use crate::support::{maskstore, succeeded, text, vars};

fn aws(moto: &str, args: &[&str]) -> String {
    let cli = std::env::var("MASKSTORE_TEST_AWS_CLI")
        .expect("scripts/test-servers exports MASKSTORE_TEST_AWS_CLI");
    let out = Command::new(cli)
        .args([
            "--endpoint-url",
            moto,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "moto-monitoring")
        .env("AWS_SECRET_ACCESS_KEY", "moto-monitoring-secret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aws {:?}: {}",
        &args[..2],
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Whether the AWS CLI accepts the call (a broken document must not be).
fn aws_accepts(moto: &str, args: &[&str]) -> bool {
    let cli = std::env::var("MASKSTORE_TEST_AWS_CLI").unwrap();
    Command::new(cli)
        .args(["--endpoint-url", moto, "--region", "us-east-1"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "moto-monitoring")
        .env("AWS_SECRET_ACCESS_KEY", "moto-monitoring-secret")
        .output()
        .unwrap()
        .status
        .success()
}

fn s3_env(bucket: &str, prefix: &str) -> Vec<(String, String)> {
    vars(&[
        ("APP_OBJECT_STORAGE__PROVIDER", "s3"),
        ("APP_OBJECT_STORAGE__BUCKET_NAME", bucket),
        ("APP_OBJECT_STORAGE__REGION", "us-east-1"),
        ("APP_OBJECT_STORAGE__PREFIX", prefix),
        ("APP_MONITORING__CLIENT_ERROR_RATE_ALARM", "0.07"),
        ("APP_MONITORING__ALARM_WINDOW", "600"),
    ])
}

#[test]
fn the_aws_cli_applies_the_metrics_configuration_and_the_three_alarms() {
    let Some(moto) = servers::moto() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    let env = s3_env(&moto.bucket, &format!("mask/t{tag}/"));

    let metrics = succeeded(&maskstore(dir.path(), &["policy", "metrics"], &env));
    aws(
        &moto.endpoint,
        &[
            "s3api",
            "put-bucket-metrics-configuration",
            "--cli-input-json",
            &metrics,
        ],
    );
    // moto (5.2.5) accepts put-bucket-metrics-configuration but keeps nothing (its get
    // answers `{}`): what holds the document to S3's API here is the AWS CLI's own
    // parameter validation (botocore), which a wrong shape fails.
    let broken = metrics
        .replace("\"Prefix\": \"mask/", "\"Prefix\": [\"mask/")
        .replace("/\"\n", "/\"]\n");
    assert_ne!(broken, metrics);
    assert!(!aws_accepts(
        &moto.endpoint,
        &[
            "s3api",
            "put-bucket-metrics-configuration",
            "--cli-input-json",
            &broken
        ]
    ));

    let alarms = succeeded(&maskstore(dir.path(), &["policy", "alarms"], &env));
    let lines: Vec<&str> = alarms.lines().collect();
    assert_eq!(lines.len(), 3, "{alarms}");
    for alarm in &lines {
        aws(
            &moto.endpoint,
            &["cloudwatch", "put-metric-alarm", "--cli-input-json", alarm],
        );
    }
    let names: Vec<String> = ["client-error-rate", "server-error-rate", "request-surge"]
        .iter()
        .map(|rule| format!("maskstore-{}-mask-t{tag}-{rule}", moto.bucket))
        .collect();
    let mut args = vec!["cloudwatch", "describe-alarms", "--alarm-names"];
    args.extend(names.iter().map(String::as_str));
    let described: serde_json::Value = serde_json::from_str(&aws(&moto.endpoint, &args)).unwrap();
    let described = described["MetricAlarms"].as_array().unwrap();
    assert_eq!(described.len(), 3, "{described:?}");
    let client = described
        .iter()
        .find(|a| a["AlarmName"] == names[0].as_str())
        .unwrap();
    assert_eq!(client["Threshold"], 0.07, "{client}");
    assert_eq!(
        client["Metrics"][0]["MetricStat"]["Period"], 600,
        "{client}"
    );

    // botocore's own validation refuses what the documents must never be: the test can fail.
    let broken = lines[0].replace("\"Threshold\":0.07", "\"Threshold\":\"high\"");
    let cli = std::env::var("MASKSTORE_TEST_AWS_CLI").unwrap();
    let out = Command::new(cli)
        .args(["--endpoint-url", &moto.endpoint, "--region", "us-east-1"])
        .args([
            "cloudwatch",
            "put-metric-alarm",
            "--cli-input-json",
            &broken,
        ])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a string threshold was accepted");
}

/// promtool: `MASKSTORE_TEST_PROMTOOL`, else on the PATH; `None` (a skip) outside CI only.
fn promtool() -> Option<String> {
    let promtool = std::env::var("MASKSTORE_TEST_PROMTOOL")
        .ok()
        .filter(|p| !p.is_empty())
        .or_else(|| {
            let found = Command::new("sh")
                .args(["-c", "command -v promtool"])
                .output()
                .ok()?;
            Some(text(&found.stdout).trim().to_string()).filter(|p| !p.is_empty())
        });
    let Some(promtool) = promtool else {
        assert!(
            std::env::var("CI").is_err(),
            "scripts/test-servers installs promtool (Debian's prometheus) and exports MASKSTORE_TEST_PROMTOOL"
        );
        eprintln!("skipping: promtool is not installed (run scripts/test-servers start)");
        return None;
    };
    Some(promtool)
}

#[test]
fn promtool_accepts_the_prometheus_rules() {
    let Some(promtool) = promtool() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rules = succeeded(&maskstore(
        dir.path(),
        &["policy", "prometheus"],
        &vars(&[("APP_MONITORING__SERVER_ERROR_RATE_ALARM", "0.02")]),
    ));
    assert!(rules.contains("> 0.02 and"), "{rules}");
    let file = dir.path().join("maskstore-rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{all}\n{rules}");
    assert!(all.contains("SUCCESS: 3 rules found"), "{all}");
    // promtool refuses a broken expression: the check can fail.
    std::fs::write(&file, rules.replace("sum(rate(", "sum(rate((")).unwrap();
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "promtool accepted a broken rule");
}

/// A `promtool test rules` case: the gateway's counters growing by `ok` successes, `client`
/// client errors and `server` server errors per sample for the first `steady` samples, then
/// by `surge` × those for the next 20, scraped every `scrape`.
fn rule_test(scrape: &str, steady: u32, surge: u32, counts: [u32; 3], alerts: &str) -> String {
    let series = ["success", "client_error", "server_error"]
        .iter()
        .zip(counts)
        .map(|(outcome, n)| {
            format!(
                "      - series: 'maskstore_operations_total{{backend=\"s3\",operation=\"get\",outcome=\"{outcome}\"}}'\n        values: '0+{n}x{steady} {}+{}x20'\n",
                n * steady,
                n * surge
            )
        })
        .collect::<String>();
    format!(
        "rule_files: [rules.yml]\nevaluation_interval: 15s\ntests:\n  - interval: {scrape}\n    input_series:\n{series}    alert_rule_test:\n{alerts}"
    )
}

/// An expected alert (`rule` and its summary) or none at `at`.
fn alert(at: &str, name: &str, rule: Option<(&str, &str)>) -> String {
    let expected = match rule {
        Some((rule, summary)) => format!(
            "\n          - exp_labels: {{severity: warning, rule: {rule}}}\n            exp_annotations: {{summary: \"{summary}\"}}"
        ),
        None => " []".to_string(),
    };
    format!("      - eval_time: {at}\n        alertname: {name}\n        exp_alerts:{expected}\n")
}

const SURGE: (&str, &str) = (
    "request_surge",
    "maskstore operations per second over 60 s above 3 x the rate of the 240 s before",
);

#[test]
fn the_prometheus_rules_fire_on_the_traffic_they_describe_and_hold_quiet_on_the_rest() {
    let Some(promtool) = promtool() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rules = succeeded(&maskstore(dir.path(), &["policy", "prometheus"], &[]));
    assert!(rules.contains("at least every 30s"), "{rules}");
    std::fs::write(dir.path().join("rules.yml"), &rules).unwrap();
    let run = |name: &str, test: String| {
        std::fs::write(dir.path().join(name), &test).unwrap();
        let out = Command::new(&promtool)
            .args(["test", "rules", name])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        (out.status.success(), format!("{all}\n{test}\n{rules}"))
    };
    // Scraped every 15 s: 1 op/s for 10 minutes, then 10/s with 10 % client and 2 % server
    // errors. Before: no alert; after: all three (the surge while the burst is young).
    let alerts = [
        alert("9m", "MaskstoreRequestSurge", None),
        alert("9m", "MaskstoreClientErrorRate", None),
        alert("9m", "MaskstoreServerErrorRate", None),
        alert("11m", "MaskstoreRequestSurge", Some(SURGE)),
        alert(
            "14m",
            "MaskstoreClientErrorRate",
            Some((
                "client_error_rate",
                "4xx-like share of maskstore operations above 0.05 over 300 s",
            )),
        ),
        alert(
            "14m",
            "MaskstoreServerErrorRate",
            Some((
                "server_error_rate",
                "5xx-like share of maskstore operations above 0.01 over 300 s",
            )),
        ),
    ]
    .concat();
    let steady_then_errors = |client: u32, server: u32| {
        rule_test("15s", 40, 10, [15, 0, 0], &alerts)
            .replacen("0+0x40 0+0x20", &format!("0+0x40 0+{client}x20"), 1)
            .replacen("0+0x40 0+0x20", &format!("0+0x40 0+{server}x20"), 1)
    };
    let (ok, all) = run("fire.yml", steady_then_errors(15, 3));
    assert!(ok, "{all}");
    // The same burst without errors: no error alarm, and promtool says so when expected.
    let (ok, all) = run("quiet.yml", steady_then_errors(0, 0));
    assert!(!ok && all.contains("MaskstoreClientErrorRate"), "{all}");
    // Scraped every minute (Prometheus' built-in default), a 60 s rate holds one sample:
    // the surge cannot fire, which is why the file names the scrape interval it needs.
    let slow = rule_test(
        "1m",
        10,
        10,
        [60, 0, 0],
        &alert("11m", "MaskstoreRequestSurge", Some(SURGE)),
    );
    let (ok, all) = run("slow.yml", slow);
    assert!(!ok, "{all}");
}

#[test]
fn azure_and_gcs_refuse_the_cloudwatch_documents_with_their_own_alternative() {
    let dir = tempfile::tempdir().unwrap();
    for (env, word) in [
        (
            vars(&[
                ("APP_OBJECT_STORAGE__PROVIDER", "azure"),
                ("APP_OBJECT_STORAGE__ACCOUNT", "pacsmasks"),
                ("APP_OBJECT_STORAGE__CONTAINER", "pacs-masks"),
            ]),
            "Azure Monitor",
        ),
        (
            vars(&[
                ("APP_OBJECT_STORAGE__PROVIDER", "gcs"),
                ("APP_OBJECT_STORAGE__BUCKET_NAME", "pacs-masks"),
            ]),
            "Cloud Monitoring",
        ),
    ] {
        for document in ["metrics", "alarms"] {
            let out = maskstore(dir.path(), &["policy", document], &env);
            let err = text(&out.stderr);
            assert_ne!(out.status.code(), Some(0), "{err}");
            assert!(
                err.contains(word) && err.contains("policy prometheus"),
                "{err}"
            );
        }
        // The Prometheus rules are the process's own, whatever the provider.
        succeeded(&maskstore(dir.path(), &["policy", "prometheus"], &env));
    }
}
