//! `maskstore policy iam|cors|lifecycle`: the JSON documents an operator applies with the
//! provider's own CLI, derived from the same config the application uses: the AWS CLI for
//! `s3` (and local/memory, whose documents describe the S3 bucket they stand in for), the
//! Azure CLI for `azure`, gcloud for `gcs`. Each provider writes its own documents
//! ([`maskstore::maskstore_backends::policy_document`]).

use maskstore::Config;
use maskstore::maskstore_backends::{PolicyDocument, policy_document};

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
}

impl From<Document> for PolicyDocument {
    fn from(document: Document) -> Self {
        match document {
            Document::Iam => PolicyDocument::Iam,
            Document::Cors => PolicyDocument::Cors,
            Document::Lifecycle => PolicyDocument::Lifecycle,
        }
    }
}

pub(crate) fn run(config: &Config, document: Document) -> Result<(), Failure> {
    print_json(&policy_document(config, document.into())?);
    Ok(())
}
