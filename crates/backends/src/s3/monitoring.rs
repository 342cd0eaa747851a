//! The monitoring documents of an S3 bucket (the deployment guide's "모니터링 설정"):
//! request metrics filtered on the prefix, and the three alarms of `[monitoring]` as
//! CloudWatch metric-math alarms on those metrics (`4xxErrors`, `5xxErrors`,
//! `AllRequests` of namespace `AWS/S3`, dimensions `BucketName` and `FilterId`).
//!
//! S3 publishes request metrics once a minute, so every period is a whole number of
//! minutes: a window of `[monitoring]` that is not is rounded up to the next minute.

use maskstore_core::Config;
use serde_json::{Value, json};

use crate::Result;
use crate::policy::bucket_needed;

/// The id of the request-metrics configuration (the `FilterId` dimension of its metrics):
/// `maskstore-<prefix>`, in the characters S3 allows, at most 64.
pub(crate) fn metrics_id(config: &Config) -> String {
    let prefix = config.object_storage.prefix.as_str().trim_end_matches('/');
    let id: String = format!("maskstore-{prefix}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    id.chars().take(64).collect()
}

/// The input of `aws s3api put-bucket-metrics-configuration --cli-input-json`: request
/// metrics of the objects under the prefix.
pub(crate) fn metrics(config: &Config) -> Result<Value> {
    let bucket = bucket(config, "metrics configuration")?;
    let id = metrics_id(config);
    Ok(json!({
        "Bucket": bucket,
        "Id": id,
        "MetricsConfiguration": {
            "Id": id,
            "Filter": {"Prefix": config.object_storage.prefix.as_str()},
        },
    }))
}

/// The three alarms, each the input of `aws cloudwatch put-metric-alarm --cli-input-json`:
/// the 4xx and 5xx shares of `AllRequests` over `alarm_window` (from `alarm_min_requests`
/// requests), and a surge of requests.
pub(crate) fn alarms(config: &Config) -> Result<Value> {
    let bucket = bucket(config, "alarms")?;
    let m = &config.monitoring;
    let window = minutes(m.alarm_window_secs);
    Ok(json!([
        error_rate_alarm(
            config,
            bucket,
            "4xxErrors",
            "client-error-rate",
            m.client_error_rate_alarm,
            window
        ),
        error_rate_alarm(
            config,
            bucket,
            "5xxErrors",
            "server-error-rate",
            m.server_error_rate_alarm,
            window
        ),
        surge_alarm(config, bucket),
    ]))
}

fn bucket<'a>(config: &'a Config, document: &str) -> Result<&'a str> {
    config
        .object_storage
        .bucket_name
        .as_deref()
        .ok_or_else(|| bucket_needed(config, document))
}

/// `seconds` rounded up to whole minutes, at least one: S3's request-metric granularity.
fn minutes(seconds: u64) -> u64 {
    seconds.div_ceil(60).max(1) * 60
}

/// A query of one S3 request metric (`Sum` per `period`), not itself alarmed on.
fn metric(config: &Config, bucket: &str, id: &str, name: &str, period: u64) -> Value {
    json!({
        "Id": id,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/S3",
                "MetricName": name,
                "Dimensions": [
                    {"Name": "BucketName", "Value": bucket},
                    {"Name": "FilterId", "Value": metrics_id(config)},
                ],
            },
            "Period": period,
            "Stat": "Sum",
        },
        "ReturnData": false,
    })
}

fn alarm_name(config: &Config, bucket: &str, rule: &str) -> String {
    format!(
        "maskstore-{bucket}-{}-{rule}",
        metrics_id(config).trim_start_matches("maskstore-")
    )
}

fn error_rate_alarm(
    config: &Config,
    bucket: &str,
    errors: &str,
    rule: &str,
    threshold: f64,
    period: u64,
) -> Value {
    let min = config.monitoring.alarm_min_requests;
    json!({
        "AlarmName": alarm_name(config, bucket, rule),
        "AlarmDescription": format!(
            "maskstore [monitoring]: {errors} share of AllRequests above {threshold} over {period} s, from {min} requests (s3://{bucket}/{})",
            config.object_storage.prefix
        ),
        "Metrics": [
            metric(config, bucket, "errors", errors, period),
            metric(config, bucket, "requests", "AllRequests", period),
            {
                "Id": "share",
                "Label": format!("{errors} / AllRequests"),
                "Expression": format!("IF(requests >= {min}, errors / requests, 0)"),
                "ReturnData": true,
            },
        ],
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": threshold,
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "TreatMissingData": "notBreaching",
    })
}

/// At most this many earlier periods make the surge baseline: an alarm holds at most 10
/// expressions (`PutMetricAlarm`, `Metrics`), one of which is the rule itself.
const MAX_BASELINE_PERIODS: u64 = 8;

/// The requests with every minute S3 reported no point for (no requests) as 0.
const FILLED: &str = "FILL(requests, 0)";

/// The surge rule: the request rate over the last `surge_window` above `surge_factor` ×
/// the mean rate of the periods before it within `alarm_window` (at most
/// [`MAX_BASELINE_PERIODS`] of them), from `surge_min_rate` requests per second.
///
/// Each earlier period is taken with `DIFF` alone (`prev1 = requests - DIFF(requests)`,
/// `prev2 = prev1 - DIFF(prev1)`, …), never with `AVG`: CloudWatch's function table
/// ("Functions supported for metric math", using-metric-math) says of `AVG`, `MAX`, `MIN`,
/// `DATAPOINT_COUNT` and `RUNNING_SUM` "We recommend that you do not use this function in
/// CloudWatch alarms. Whenever an alarm evaluates whether to change state, CloudWatch
/// attempts to retrieve a higher number of data points than the number specified as
/// Evaluation Periods. This function acts differently when extra data is requested", so a
/// baseline of `n * AVG(requests) - requests` is not the `n` periods it assumes. `DIFF`
/// and `PERIOD` work point by point, and the rule is an `IF` of the metric, so the alarm
/// watches one time series, as an alarm on metric math must. `DIFF` steps to the preceding
/// *reported* point, and S3 reports none for a minute without requests, so the chain starts
/// from [`FILLED`]: a quiet minute counts as 0 requests, as in `/health`, instead of being
/// passed over for a busy minute hours before (which would hide a surge after a quiet
/// night).
fn surge_alarm(config: &Config, bucket: &str) -> Value {
    let m = &config.monitoring;
    let period = minutes(m.surge_window_secs);
    let before = (minutes(m.alarm_window_secs) / period)
        .saturating_sub(1)
        .clamp(1, MAX_BASELINE_PERIODS);
    let mut metrics = vec![metric(config, bucket, "requests", "AllRequests", period)];
    let mut earlier = Vec::new();
    for i in 1..=before {
        let newer = if i == 1 {
            FILLED.to_string()
        } else {
            format!("prev{}", i - 1)
        };
        metrics.push(json!({
            "Id": format!("prev{i}"),
            "Label": format!("AllRequests {i} periods before"),
            "Expression": format!("{newer} - DIFF({newer})"),
            "ReturnData": false,
        }));
        earlier.push(format!("prev{i}"));
    }
    let expression = format!(
        "IF(requests / PERIOD(requests) >= {min_rate} AND requests > {factor} * ({sum}) / {before}, 1, 0)",
        min_rate = m.surge_min_rate,
        factor = m.surge_factor,
        sum = earlier.join(" + "),
    );
    metrics.push(json!({"Id": "surge", "Label": "request surge", "Expression": expression, "ReturnData": true}));
    json!({
        "AlarmName": alarm_name(config, bucket, "request-surge"),
        "AlarmDescription": format!(
            "maskstore [monitoring]: requests/s over {period} s above {} x the rate of the {} s before, from {}/s (s3://{bucket}/{})",
            m.surge_factor,
            period * before,
            m.surge_min_rate,
            config.object_storage.prefix
        ),
        "Metrics": metrics,
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 0,
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "TreatMissingData": "notBreaching",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use maskstore_core::KeyPrefix;

    fn config() -> Config {
        Config::s3("pacs-masks", "us-east-1")
            .unwrap()
            .with_prefix(KeyPrefix::parse("mask/2026.v1/").unwrap())
    }

    #[test]
    fn the_metrics_configuration_filters_on_the_prefix_under_an_id_s3_accepts() {
        let doc = metrics(&config()).unwrap();
        assert_eq!(doc["Bucket"], "pacs-masks");
        assert_eq!(doc["Id"], "maskstore-mask-2026-v1");
        assert_eq!(
            doc["MetricsConfiguration"]["Filter"]["Prefix"],
            "mask/2026.v1/"
        );
        let long = Config::s3("pacs-masks", "us-east-1")
            .unwrap()
            .with_prefix(KeyPrefix::parse(format!("{}/", "a".repeat(100))).unwrap());
        assert_eq!(metrics_id(&long).len(), 64);
    }

    #[test]
    fn the_alarms_carry_the_thresholds_and_windows_of_monitoring() {
        let doc = alarms(&config()).unwrap();
        let alarms = doc.as_array().unwrap();
        assert_eq!(alarms.len(), 3);
        assert_eq!(alarms[0]["Threshold"], 0.05);
        assert_eq!(alarms[1]["Threshold"], 0.01);
        assert_eq!(
            alarms[0]["Metrics"][0]["MetricStat"]["Metric"]["MetricName"],
            "4xxErrors"
        );
        assert_eq!(
            alarms[1]["Metrics"][0]["MetricStat"]["Metric"]["MetricName"],
            "5xxErrors"
        );
        assert_eq!(alarms[0]["Metrics"][1]["MetricStat"]["Period"], 300);
        assert_eq!(
            alarms[0]["Metrics"][2]["Expression"],
            "IF(requests >= 20, errors / requests, 0)"
        );
        assert_eq!(alarms[2]["EvaluationPeriods"], 1);
        assert_eq!(alarms[2]["Metrics"][0]["MetricStat"]["Period"], 60);
        let surge = alarms[2]["Metrics"][5]["Expression"].as_str().unwrap();
        assert!(
            surge.contains(">= 1 AND requests > 3 * (prev1 + prev2 + prev3 + prev4) / 4"),
            "{surge}"
        );
        assert_eq!(
            alarms[2]["Metrics"][1]["Expression"],
            "FILL(requests, 0) - DIFF(FILL(requests, 0))"
        );
        assert_eq!(alarms[2]["Metrics"][4]["Expression"], "prev3 - DIFF(prev3)");
        assert_eq!(
            alarms[0]["Metrics"][0]["MetricStat"]["Metric"]["Dimensions"][1]["Value"],
            "maskstore-mask-2026-v1"
        );
    }

    /// The functions CloudWatch's table advises against in alarms (see [`surge_alarm`]).
    const NOT_IN_ALARMS: [&str; 6] = [
        "AVG(",
        "MAX(",
        "MIN(",
        "DATAPOINT_COUNT(",
        "RUNNING_SUM(",
        "REMOVE_EMPTY(",
    ];

    #[test]
    fn every_alarm_watches_one_series_of_point_by_point_functions_within_the_limits() {
        let mut config = config();
        for (window, surge) in [(300, 60), (600, 60), (43200, 60), (120, 60)] {
            config.monitoring.alarm_window_secs = window;
            config.monitoring.surge_window_secs = surge;
            for alarm in alarms(&config).unwrap().as_array().unwrap() {
                let metrics = alarm["Metrics"].as_array().unwrap();
                let returned = metrics.iter().filter(|m| m["ReturnData"] == true).count();
                assert_eq!(returned, 1, "{alarm}");
                let expressions: Vec<&str> = metrics
                    .iter()
                    .filter_map(|m| m["Expression"].as_str())
                    .collect();
                assert!(expressions.len() <= 10, "{window}: {}", expressions.len());
                for e in expressions {
                    for f in NOT_IN_ALARMS {
                        assert!(!e.contains(f), "{f} in {e}");
                    }
                }
            }
        }
    }

    /// The surge rule's value at the last point of a dense per-minute `series`, computed
    /// as CloudWatch's point-by-point `DIFF` does with the expressions of the document.
    fn surge_at_last(series: &[f64], before: usize) -> bool {
        let diff = |s: &[f64]| -> Vec<f64> { s.windows(2).map(|w| w[1] - w[0]).collect() };
        let mut prev = series.to_vec();
        let mut sum = 0.0;
        for _ in 0..before {
            let d = diff(&prev);
            prev = prev[1..].iter().zip(&d).map(|(v, d)| v - d).collect();
            sum += prev.last().unwrap();
        }
        let last = *series.last().unwrap();
        last / 60.0 >= 1.0 && last > 3.0 * sum / before as f64
    }

    #[test]
    fn the_surge_rule_compares_the_last_minute_with_the_mean_of_the_ones_before() {
        let doc = alarms(&config()).unwrap();
        let surge = doc[2]["Metrics"][5]["Expression"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            surge.contains("requests > 3 *") && surge.contains("/ 4"),
            "{surge}"
        );
        // prevK is the point K minutes before: the chain of DIFFs shifts the series.
        assert!(
            surge_at_last(&[10.0, 20.0, 30.0, 40.0, 200.0], 4),
            "200 > 3 x 25"
        );
        assert!(
            !surge_at_last(&[10.0, 20.0, 30.0, 40.0, 70.0], 4),
            "70 < 3 x 25"
        );
        assert!(
            !surge_at_last(&[60.0, 60.0, 60.0, 60.0, 179.0], 4),
            "179 < 180"
        );
        assert!(
            surge_at_last(&[60.0, 60.0, 60.0, 60.0, 181.0], 4),
            "181 > 180"
        );
        assert!(!surge_at_last(&[0.0, 0.0, 0.0, 0.0, 50.0], 4), "under 1/s");
    }

    /// One CloudWatch series: a value per minute of the queried range, `None` where no
    /// point is reported (S3 reports no `AllRequests` point for a minute without requests).
    type Series = Vec<Option<f64>>;

    /// The points of the series `expression` (an id or one of the forms below) evaluates to, as CloudWatch's metric math does point by
    /// point: `DIFF(X)` is each reported value minus the preceding *reported* one (none for
    /// the first), `FILL(X, v)` reports `v` at every missing minute of the range, and `-`
    /// is taken at the minutes both sides report.
    fn evaluate(metrics: &[Value], expression: &str, requests: &Series) -> Series {
        let Some((newer, diffed)) = expression.split_once(" - DIFF(") else {
            if let Some(inner) = expression
                .strip_prefix("FILL(")
                .and_then(|e| e.strip_suffix(", 0)"))
            {
                let series = evaluate(metrics, inner, requests);
                return series.iter().map(|v| Some(v.unwrap_or(0.0))).collect();
            }
            let item = metrics.iter().find(|m| m["Id"] == expression);
            return match item.expect(expression)["Expression"].as_str() {
                Some(inner) => evaluate(metrics, inner, requests),
                None => requests.clone(),
            };
        };
        assert_eq!(diffed, format!("{newer})"), "{expression}");
        let series = evaluate(metrics, newer, requests);
        let mut preceding = None;
        let mut out = Series::new();
        for value in &series {
            let diff = value.zip(preceding).map(|(v, p): (f64, f64)| v - p);
            out.push(value.zip(diff).map(|(v, d)| v - d));
            preceding = value.or(preceding);
        }
        out
    }

    /// Whether the surge alarm of `doc` is breaching at the last minute of `requests`,
    /// its expression's baseline taken from the series it names.
    fn surge_breaches(doc: &Value, requests: &Series) -> bool {
        let metrics = doc[2]["Metrics"].as_array().unwrap();
        let surge = metrics.iter().find(|m| m["Id"] == "surge").unwrap();
        let expression = surge["Expression"].as_str().unwrap();
        let (_, rest) = expression.split_once("* (").unwrap();
        let (sum, rest) = rest.split_once(") / ").unwrap();
        let before: f64 = rest.split_once(',').unwrap().0.parse().unwrap();
        let mut baseline = 0.0;
        for id in sum.split(" + ") {
            match *evaluate(metrics, id, requests).last().unwrap() {
                Some(v) => baseline += v,
                None => return false, // no point: notBreaching
            }
        }
        let Some(last) = *requests.last().unwrap() else {
            return false;
        };
        last / 60.0 >= 1.0 && last > 3.0 * baseline / before
    }

    #[test]
    fn the_surge_baseline_counts_minutes_without_requests_as_none() {
        let doc = alarms(&config()).unwrap();
        let dense = |values: &[f64]| -> Series { values.iter().map(|v| Some(*v)).collect() };
        assert!(surge_breaches(
            &doc,
            &dense(&[10.0, 20.0, 30.0, 40.0, 200.0])
        ));
        assert!(!surge_breaches(
            &doc,
            &dense(&[10.0, 20.0, 30.0, 40.0, 70.0])
        ));
        // Busy an hour ago, then quiet: 2/s now is a surge over the quiet minutes before
        // it (the rule of [monitoring] and of /health), not a fall from the busy ones.
        let mut woken: Series = vec![Some(600.0); 5];
        woken.extend(vec![None; 55]);
        woken.push(Some(120.0));
        assert!(surge_breaches(&doc, &woken), "120 after quiet minutes");
        // A quiet minute inside the window counts as 0: (60 + 0 + 60 + 60) / 4 = 45.
        let gap = vec![
            Some(600.0),
            Some(60.0),
            None,
            Some(60.0),
            Some(60.0),
            Some(140.0),
        ];
        assert!(surge_breaches(&doc, &gap), "140 > 3 x 45");
        let steady = vec![
            Some(600.0),
            Some(600.0),
            None,
            Some(600.0),
            Some(600.0),
            Some(700.0),
        ];
        assert!(!surge_breaches(&doc, &steady), "700 < 3 x 450");
    }

    #[test]
    fn windows_are_whole_minutes() {
        assert_eq!(minutes(1), 60);
        assert_eq!(minutes(60), 60);
        assert_eq!(minutes(61), 120);
        assert_eq!(minutes(300), 300);
    }
}
