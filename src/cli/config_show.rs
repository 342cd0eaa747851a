//! `maskstore config show`.

use maskstore::Config;
use serde_json::json;

use super::output::{Failure, print_json};

pub(crate) fn run(config: &Config, as_json: bool) -> Result<(), Failure> {
    let mut rows = vec![(
        "environment".to_string(),
        Some(config.environment.clone()),
        config
            .origin("environment")
            .map(ToString::to_string)
            .unwrap_or_default(),
        "APP_ENV".to_string(),
    )];
    rows.extend(
        config
            .entries()
            .into_iter()
            .map(|e| (e.key, e.value, e.origin.to_string(), e.env_var)),
    );
    if as_json {
        let items: Vec<_> = rows
            .iter()
            .map(|(key, value, origin, env)| {
                json!({"key": key, "value": value, "origin": origin, "env": env})
            })
            .collect();
        print_json(&json!(items));
        return Ok(());
    }
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let shown: Vec<String> = rows
        .iter()
        .map(|(_, value, _, _)| value.clone().unwrap_or_else(|| "(unset)".to_string()))
        .collect();
    let value_width = shown.iter().map(|v| v.chars().count()).max().unwrap_or(0);
    for ((key, _, origin, _), value) in rows.iter().zip(&shown) {
        println!("{key:<width$}  {value:<value_width$}  # {origin}");
    }
    Ok(())
}
