//! `maskstore policy iam|cors|lifecycle|metrics|alarms|prometheus`: the JSON documents an operator applies with the
//! provider's own CLI, derived from the same config the application uses: the AWS CLI for
//! `s3` (and local/memory, whose documents describe the S3 bucket they stand in for), the
//! Azure CLI for `azure`, gcloud for `gcs`. Each provider writes its own documents
//! ([`maskstore::maskstore_backends::policy_document`]).

use maskstore::Config;
use maskstore::maskstore_backends::{PolicyDocument, policy_document};
use maskstore::maskstore_gateway::prometheus_rules;

use super::output::{Failure, print_json};

/// Which document to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Document {
    /// Least privilege: an IAM policy (`aws iam put-user-policy`), an Azure role (`az role definition create`) or a GCS binding (`gcloud storage buckets set-iam-policy`).
    Iam,
    /// CORS rules: `aws s3api put-bucket-cors`, `az storage account blob-service-properties update --cors-rules` or `gcloud storage buckets update --cors-file`.
    Cors,
    /// Lifecycle rules: `aws s3api put-bucket-lifecycle-configuration`, `az storage account management-policy create` or `gcloud storage buckets update --lifecycle-file`.
    Lifecycle,
    /// S3 request metrics filtered on the prefix: `aws s3api put-bucket-metrics-configuration --cli-input-json "$(maskstore policy metrics)"`.
    Metrics,
    /// The three CloudWatch alarms of [monitoring] on those metrics, one JSON document a line, each for `aws cloudwatch put-metric-alarm --cli-input-json`.
    Alarms,
    /// Prometheus alerting rules (YAML) of [monitoring] on the gateway's /metrics, for `promtool check rules` and Prometheus' rule_files.
    Prometheus,
}

impl Document {
    /// The provider's document this is; `None` for the Prometheus rules, which are the
    /// process's own whatever the provider.
    fn of_provider(self) -> Option<PolicyDocument> {
        match self {
            Document::Iam => Some(PolicyDocument::Iam),
            Document::Cors => Some(PolicyDocument::Cors),
            Document::Lifecycle => Some(PolicyDocument::Lifecycle),
            Document::Metrics => Some(PolicyDocument::Metrics),
            Document::Alarms => Some(PolicyDocument::Alarms),
            Document::Prometheus => None,
        }
    }
}

pub(crate) fn run(config: &Config, document: Document) -> Result<(), Failure> {
    match document.of_provider() {
        None => print!("{}", prometheus_rules(&config.monitoring)),
        // One alarm a line, so a shell loop hands each to put-metric-alarm.
        Some(PolicyDocument::Alarms) => {
            let alarms = policy_document(config, PolicyDocument::Alarms)?;
            for alarm in alarms.as_array().into_iter().flatten() {
                println!("{alarm}");
            }
        }
        Some(other) => print_json(&policy_document(config, other)?),
    }
    Ok(())
}
