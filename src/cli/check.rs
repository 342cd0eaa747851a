//! `maskstore check`: the deployment guide's test procedure through the application's own
//! config, and a doctor that names the cause and the fix when a step fails.

use maskstore::maskstore_backends::Operation;
use maskstore::maskstore_backends::advice;
use maskstore::maskstore_backends::monitor;
use maskstore::{Config, Error, Origin, Storage, WriteOptions};
use serde_json::json;

use super::output::{Failure, print_json};

/// What a step did, for the report.
struct Step {
    name: &'static str,
    outcome: Result<String, Diagnosis>,
}

/// Why a step failed and what to do, in the operator's terms (the provider's advice), and
/// the exit code.
struct Diagnosis {
    cause: String,
    fix: String,
    code: u8,
}

pub(crate) async fn run(config: &Config, cors: Option<&str>, as_json: bool) -> Result<(), Failure> {
    let os = &config.object_storage;
    let sources = sources(config);
    if !as_json {
        println!("config sources: {}", describe_sources(&sources));
        println!(
            "checking provider {} ({}), prefix {}, environment {}",
            os.provider,
            advice::describe(config),
            os.prefix,
            config.environment
        );
    }
    let steps = steps(config).await;
    let failed = steps
        .iter()
        .find_map(|s| s.outcome.as_ref().err().map(|d| (s.name, d)));

    let preflight = match (cors, failed) {
        (Some(origin), None) => Some(super::cors_check::preflight(config, origin).await),
        _ => None,
    };

    if as_json {
        let items: Vec<_> = steps
            .iter()
            .map(|s| match &s.outcome {
                Ok(detail) => json!({"step": s.name, "ok": true, "detail": detail}),
                Err(d) => json!({"step": s.name, "ok": false, "cause": d.cause, "fix": d.fix}),
            })
            .collect();
        let cors = preflight.as_ref().map(|p| match p {
            Ok(verdict) => {
                json!({"origin": cors, "allowed": verdict.allowed, "detail": verdict.detail})
            }
            Err(f) => json!({"origin": cors, "allowed": false, "detail": f.message}),
        });
        print_json(&json!({
            "provider": os.provider.as_str(),
            "prefix": os.prefix.as_str(),
            "ok": failed.is_none() && preflight.as_ref().is_none_or(|p| p.as_ref().is_ok_and(|v| v.allowed)),
            "steps": items,
            "cors": cors,
            "alarms": alarm_rules(config),
            "config_sources": sources
                .iter()
                .map(|(source, keys)| json!({"source": source, "keys": keys}))
                .collect::<Vec<_>>(),
        }));
    } else {
        let total = steps.len();
        for (i, step) in steps.iter().enumerate() {
            match &step.outcome {
                Ok(detail) => println!("[{}/{total}] {:<8} ok   {detail}", i + 1, step.name),
                Err(d) => {
                    println!("[{}/{total}] {:<8} FAILED", i + 1, step.name);
                    println!("      cause: {}", d.cause);
                    println!("      fix:   {}", d.fix);
                }
            }
        }
        if failed.is_none() {
            println!("all steps passed");
        }
        // What `GET /health` of `maskstore serve` will alarm on, from [monitoring].
        println!("alarms (GET /health):");
        for rule in
            monitor::Monitor::new(monitor::AlarmSettings::from_config(&config.monitoring)).rules()
        {
            println!("  {rule}");
        }
        if let (Some(origin), Some(Ok(verdict))) = (cors, &preflight) {
            let word = if verdict.allowed {
                "allowed"
            } else {
                "REFUSED"
            };
            println!(
                "cors: a browser upload from {origin} would be {word}: {}",
                verdict.detail
            );
        }
    }
    if let Some((name, d)) = failed {
        return Err(Failure {
            message: format!("check failed at step {name:?}: {}; {}", d.cause, d.fix),
            code: d.code,
        });
    }
    match preflight {
        Some(Err(failure)) => Err(failure),
        Some(Ok(verdict)) if !verdict.allowed => Err(Failure {
            message: format!(
                "a browser upload from {} would be refused: {}",
                cors.unwrap_or_default(),
                verdict.detail
            ),
            code: 4,
        }),
        _ => Ok(()),
    }
}

/// What `GET /health` of `maskstore serve` will alarm on, from `[monitoring]`: the
/// thresholds as numbers (shares as fractions, windows in seconds) and each rule as `check`
/// prints it.
fn alarm_rules(config: &Config) -> serde_json::Value {
    let s = monitor::AlarmSettings::from_config(&config.monitoring);
    let rules = monitor::Monitor::new(s).rules();
    let (window, surge_window) = (s.window.as_secs(), s.surge_window.as_secs());
    json!({
        "window_secs": window,
        "min_requests": s.min_requests,
        "rules": [
            {"name": "client_error_rate", "threshold": s.client_error_rate, "rule": rules[0]},
            {"name": "server_error_rate", "threshold": s.server_error_rate, "rule": rules[1]},
            {
                "name": "request_surge",
                "factor": s.surge_factor,
                "min_rate": s.surge_min_rate,
                "recent_secs": surge_window,
                "baseline_secs": window.saturating_sub(surge_window),
                "rule": rules[2],
            },
        ],
    })
}

/// Where the settings came from, each with how many keys it set, in order of first use:
/// so a check that ran on the defaults because nothing was read says so.
fn sources(config: &Config) -> Vec<(String, usize)> {
    let mut sources: Vec<(String, usize)> = Vec::new();
    for entry in config.entries() {
        let source = match &entry.origin {
            Origin::File(path) => format!("file {}", path.display()),
            Origin::EnvFile { path, .. } => format!("env file {}", path.display()),
            Origin::Env(_) => "environment variables".to_string(),
            Origin::SecretFile(path) => format!("secret file {}", path.display()),
            Origin::Default => "built-in defaults".to_string(),
            other => other.to_string(),
        };
        match sources.iter_mut().find(|(s, _)| *s == source) {
            Some((_, keys)) => *keys += 1,
            None => sources.push((source, 1)),
        }
    }
    sources
}

fn describe_sources(sources: &[(String, usize)]) -> String {
    if sources
        .iter()
        .all(|(source, _)| source == "built-in defaults")
    {
        return "built-in defaults only: no config file, .env file or APP_* variable set any key"
            .to_string();
    }
    let parts: Vec<String> = sources
        .iter()
        .map(|(source, keys)| {
            let noun = if *keys == 1 { "key" } else { "keys" };
            format!("{source} ({keys} {noun})")
        })
        .collect();
    parts.join(", ")
}

/// The steps in order: connect, list, put, get, delete. After a failed connect, list or
/// put nothing else runs; a failed read still deletes the probe.
async fn steps(config: &Config) -> Vec<Step> {
    let mut steps = Vec::new();
    let storage = match Storage::connect(config) {
        Ok(storage) => storage,
        Err(e) => {
            steps.push(Step {
                name: "connect",
                outcome: Err(diagnose(None, &e, config)),
            });
            return steps;
        }
    };
    steps.push(Step {
        name: "connect",
        outcome: Ok(format!("{} storage ready", storage.backend())),
    });
    let step = |operation: Operation, outcome: Result<String, Error>| Step {
        name: operation.as_str(),
        outcome: outcome.map_err(|e| diagnose(Some(operation), &e, config)),
    };

    let listed = storage.list_with_delimiter(None).await.map(|l| {
        format!(
            "{} objects and {} folders directly under {}",
            l.objects.len(),
            l.prefixes.len(),
            storage.prefix()
        )
    });
    let list_failed = listed.is_err();
    steps.push(step(Operation::List, listed));
    if list_failed {
        return steps;
    }

    let key = match storage.key(&format!(
        "maskstore-check/probe-{:016x}.txt",
        rand::random::<u64>()
    )) {
        Ok(key) => key,
        Err(e) => {
            steps.push(step(Operation::Put, Err(e)));
            return steps;
        }
    };
    let body = format!("maskstore check probe {key}");
    let put = storage
        .put_with(
            &key,
            body.clone(),
            &WriteOptions::content_type("text/plain"),
        )
        .await
        .map(|_| format!("wrote {} bytes to {key}", body.len()));
    let put_failed = put.is_err();
    steps.push(step(Operation::Put, put));
    if put_failed {
        return steps;
    }

    let read = match storage.get(&key).await {
        Ok(object) if object.data == body.as_bytes() => {
            Ok(format!("read {} bytes back, identical", object.data.len()))
        }
        Ok(object) => Err(Error::Backend {
            backend: storage.backend().to_string(),
            key: key.to_string(),
            source: format!(
                "read back {} bytes that differ from the {} written",
                object.data.len(),
                body.len()
            )
            .into(),
        }),
        Err(e) => Err(e),
    };
    steps.push(step(Operation::Get, read));
    let deleted = match storage.delete(&key).await {
        Ok(()) => match storage.exists(&key).await {
            Ok(false) => Ok(format!("deleted {key}")),
            Ok(true) => Err(Error::Backend {
                backend: storage.backend().to_string(),
                key: key.to_string(),
                source: "the probe is still there after delete".into(),
            }),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    steps.push(step(Operation::Delete, deleted));
    steps
}

/// The provider's cause and fix of a failed step (`None` while connecting).
fn diagnose(operation: Option<Operation>, e: &Error, config: &Config) -> Diagnosis {
    let advice = advice::diagnose(operation, e, config);
    Diagnosis {
        cause: advice.cause,
        fix: advice.fix,
        code: super::output::exit_code(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_carries_the_advice_and_the_exit_code() {
        let skew = Error::ClockSkew {
            backend: "memory".to_string(),
            detail: "RequestTimeTooSkewed".to_string(),
        };
        let d = diagnose(Some(Operation::List), &skew, &Config::memory());
        assert!(d.cause.contains("clock"), "{}", d.cause);
        assert!(d.fix.contains("NTP"), "{}", d.fix);
        assert_eq!(d.code, super::super::output::exit_code(&skew));
    }
}
