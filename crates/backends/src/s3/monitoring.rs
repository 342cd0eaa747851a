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

/// The surge rule: the request rate over the last `surge_window` above `surge_factor` ×
/// the mean rate of the periods before it within `alarm_window`, from `surge_min_rate`
/// requests per second. The alarm evaluates `n` periods of `surge_window`; `AVG` of the
/// series is their mean, from which the last period is taken out.
fn surge_alarm(config: &Config, bucket: &str) -> Value {
    let m = &config.monitoring;
    let period = minutes(m.surge_window_secs);
    let n = (minutes(m.alarm_window_secs) / period).max(2);
    let expression = format!(
        "IF(requests / PERIOD(requests) >= {min_rate} AND requests > {factor} * ({n} * AVG(requests) - requests) / {before}, 1, 0)",
        min_rate = m.surge_min_rate,
        factor = m.surge_factor,
        before = n - 1,
    );
    json!({
        "AlarmName": alarm_name(config, bucket, "request-surge"),
        "AlarmDescription": format!(
            "maskstore [monitoring]: requests/s over {period} s above {} x the rate of the {} s before, from {}/s (s3://{bucket}/{})",
            m.surge_factor,
            period * (n - 1),
            m.surge_min_rate,
            config.object_storage.prefix
        ),
        "Metrics": [
            metric(config, bucket, "requests", "AllRequests", period),
            {"Id": "surge", "Label": "request surge", "Expression": expression, "ReturnData": true},
        ],
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 0,
        "EvaluationPeriods": n,
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
        assert_eq!(alarms[2]["EvaluationPeriods"], 5);
        assert_eq!(alarms[2]["Metrics"][0]["MetricStat"]["Period"], 60);
        let surge = alarms[2]["Metrics"][1]["Expression"].as_str().unwrap();
        assert!(
            surge.contains(">= 1 AND requests > 3 * (5 * AVG(requests) - requests) / 4"),
            "{surge}"
        );
        assert_eq!(
            alarms[0]["Metrics"][0]["MetricStat"]["Metric"]["Dimensions"][1]["Value"],
            "maskstore-mask-2026-v1"
        );
    }

    #[test]
    fn windows_are_whole_minutes() {
        assert_eq!(minutes(1), 60);
        assert_eq!(minutes(60), 60);
        assert_eq!(minutes(61), 120);
        assert_eq!(minutes(300), 300);
    }
}
