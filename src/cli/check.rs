//! `maskstore check`: the deployment guide's test procedure, through the application's
//! own config.

use maskstore::{Config, Error, Storage, WriteOptions};
use serde_json::json;

use super::{Failure, print_json};

/// What a step did, for the report.
struct Step {
    name: &'static str,
    outcome: Result<String, Failure>,
}

impl Step {
    fn new(name: &'static str, outcome: Result<String, Error>) -> Step {
        Step {
            name,
            outcome: outcome.map_err(Failure::from),
        }
    }
}

pub(crate) async fn run(config: &Config, as_json: bool) -> Result<(), Failure> {
    let os = &config.object_storage;
    let target = match os.provider {
        maskstore::Provider::S3 => format!(
            "bucket {} in {} at {}",
            os.bucket_name.as_deref().unwrap_or("?"),
            os.region.as_deref().unwrap_or("?"),
            os.endpoint.as_deref().unwrap_or("AWS")
        ),
        maskstore::Provider::Local => format!("folder {}", os.root.display()),
        maskstore::Provider::Memory => "process memory".to_string(),
    };
    if !as_json {
        println!(
            "checking provider {} ({target}), prefix {}, environment {}",
            os.provider, os.prefix, config.environment
        );
    }
    let storage = Storage::connect(config)?;
    let steps = steps(&storage).await;
    let failed = steps
        .iter()
        .find_map(|s| s.outcome.as_ref().err().map(|f| (s.name, f)));

    if as_json {
        let items: Vec<_> = steps
            .iter()
            .map(|s| match &s.outcome {
                Ok(detail) => json!({"step": s.name, "ok": true, "detail": detail}),
                Err(f) => json!({"step": s.name, "ok": false, "error": f.message}),
            })
            .collect();
        print_json(&json!({
            "provider": os.provider.as_str(),
            "prefix": os.prefix.as_str(),
            "ok": failed.is_none(),
            "steps": items,
        }));
    } else {
        let total = steps.len();
        for (i, step) in steps.iter().enumerate() {
            match &step.outcome {
                Ok(detail) => println!("[{}/{total}] {:<8} ok   {detail}", i + 1, step.name),
                Err(_) => println!("[{}/{total}] {:<8} FAILED", i + 1, step.name),
            }
        }
    }
    match failed {
        None => {
            if !as_json {
                println!("all steps passed");
            }
            Ok(())
        }
        Some((name, failure)) => Err(Failure {
            message: format!("check failed at step {name:?}: {}", failure.message),
            code: failure.code,
        }),
    }
}

/// The steps in order; after a failed put nothing else runs, but a failed read still
/// deletes the probe so a check never leaves litter behind.
async fn steps(storage: &Storage) -> Vec<Step> {
    let mut steps = Vec::new();
    let listed = storage.list_with_delimiter(None).await.map(|l| {
        format!(
            "{} objects and {} folders directly under {}",
            l.objects.len(),
            l.prefixes.len(),
            storage.prefix()
        )
    });
    let list_failed = listed.is_err();
    steps.push(Step::new("list", listed));
    if list_failed {
        return steps;
    }

    let key = match storage.key(&format!(
        "maskstore-check/probe-{:016x}.txt",
        rand::random::<u64>()
    )) {
        Ok(key) => key,
        Err(e) => {
            steps.push(Step::new("put", Err(e)));
            return steps;
        }
    };
    let body = format!("maskstore check probe {}", key);
    let put = storage
        .put_with(
            &key,
            body.clone(),
            &WriteOptions::content_type("text/plain"),
        )
        .await
        .map(|_| format!("wrote {} bytes to {key}", body.len()));
    let put_failed = put.is_err();
    steps.push(Step::new("put", put));
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
    steps.push(Step::new("get", read));
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
    steps.push(Step::new("delete", deleted));
    steps
}
