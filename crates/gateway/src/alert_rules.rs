//! `maskstore policy prometheus`: the alarms of `[monitoring]` (the ones `GET /health`
//! computes in the process) as Prometheus alerting rules over the operations the gateway
//! exports on `/metrics` ([`OPERATIONS_TOTAL`] by `outcome`), for a self-hosted operator's
//! Prometheus. `promtool check rules` accepts the file (a CI test runs it).

use maskstore_backends::instrumented::OPERATIONS_TOTAL;
use maskstore_core::config::MonitoringConfig;

/// The rule file: one group, `maskstore`, of the three alerts `MaskstoreClientErrorRate`,
/// `MaskstoreServerErrorRate` and `MaskstoreRequestSurge`, with the thresholds and windows
/// of `monitoring`.
pub fn prometheus_rules(monitoring: &MonitoringConfig) -> String {
    let m = monitoring;
    let window = m.alarm_window_secs.max(1);
    let recent = m.surge_window_secs.clamp(1, (window / 2).max(1));
    let before = window.saturating_sub(recent).max(1);
    let all = format!("sum(increase({OPERATIONS_TOTAL}[{window}s]))");
    let share = |outcome: &str| {
        format!("sum(increase({OPERATIONS_TOTAL}{{outcome=\"{outcome}\"}}[{window}s])) / {all}")
    };
    let rate = format!("sum(rate({OPERATIONS_TOTAL}[{recent}s]))");
    let rules = [
        Rule {
            alert: "MaskstoreClientErrorRate",
            name: "client_error_rate",
            expr: format!(
                "({}) > {} and {all} >= {}",
                share("client_error"),
                m.client_error_rate_alarm,
                m.alarm_min_requests
            ),
            summary: format!(
                "4xx-like share of maskstore operations above {} over {window} s",
                m.client_error_rate_alarm
            ),
        },
        Rule {
            alert: "MaskstoreServerErrorRate",
            name: "server_error_rate",
            expr: format!(
                "({}) > {} and {all} >= {}",
                share("server_error"),
                m.server_error_rate_alarm,
                m.alarm_min_requests
            ),
            summary: format!(
                "5xx-like share of maskstore operations above {} over {window} s",
                m.server_error_rate_alarm
            ),
        },
        Rule {
            alert: "MaskstoreRequestSurge",
            name: "request_surge",
            expr: format!(
                "{rate} > {} * sum(increase({OPERATIONS_TOTAL}[{before}s] offset {recent}s)) / {before} and {rate} >= {}",
                m.surge_factor, m.surge_min_rate
            ),
            summary: format!(
                "maskstore operations per second over {recent} s above {} x the rate of the {before} s before",
                m.surge_factor
            ),
        },
    ];
    // rate() over a range needs two samples in it: at Prometheus' built-in scrape interval
    // (1 m) a 60 s surge window holds one, and the surge alert could never fire.
    let mut out = format!(
        "# maskstore alerting rules from [monitoring] (maskstore policy prometheus).\n\
         # The same alarms GET /health computes; check with: promtool check rules <file>\n\
         # Scrape the gateway's /metrics at least every {}s (half the shortest window here):\n\
         # a rate over {recent}s needs two samples in it.\n\
         groups:\n  - name: maskstore\n    rules:\n",
        (recent / 2).max(1)
    );
    for rule in rules {
        out.push_str(&rule.yaml());
    }
    out
}

/// One alerting rule.
struct Rule {
    alert: &'static str,
    name: &'static str,
    expr: String,
    summary: String,
}

impl Rule {
    fn yaml(&self) -> String {
        // A JSON string is a valid YAML double-quoted scalar: the quotes inside the
        // expressions are escaped for both.
        let quoted = |text: &str| serde_json::Value::String(text.to_string()).to_string();
        format!(
            "      - alert: {}\n        expr: {}\n        labels:\n          severity: warning\n          rule: {}\n        annotations:\n          summary: {}\n",
            self.alert,
            quoted(&self.expr),
            self.name,
            quoted(&self.summary)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maskstore_core::Config;

    #[test]
    fn the_rules_carry_the_thresholds_and_windows_of_monitoring() {
        let rules = prometheus_rules(&Config::memory().monitoring);
        assert!(rules.contains("alert: MaskstoreClientErrorRate"), "{rules}");
        assert!(
            rules.contains(
                r#"expr: "(sum(increase(maskstore_operations_total{outcome=\"client_error\"}[300s])) / sum(increase(maskstore_operations_total[300s]))) > 0.05 and sum(increase(maskstore_operations_total[300s])) >= 20""#
            ),
            "{rules}"
        );
        assert!(rules.contains("[300s]))) > 0.01 and"), "{rules}");
        assert!(
            rules.contains(
                "sum(rate(maskstore_operations_total[60s])) > 3 * sum(increase(maskstore_operations_total[240s] offset 60s)) / 240 and sum(rate(maskstore_operations_total[60s])) >= 1"
            ),
            "{rules}"
        );
    }
}
