//! What Google Cloud Storage's XML API error codes mean. object_store speaks GCS's XML
//! API, whose error body is S3's `<Error><Code>…</Code>` document with GCS's codes
//! (<https://cloud.google.com/storage/docs/xml-api/reference-status>): most are S3's
//! (`NoSuchBucket`, `AccessDenied`, `SignatureDoesNotMatch`), a few are GCS's own. A refusal
//! of the JSON API (the provider's writes) is given the XML code it stands for by
//! `super::json`, so it is read here too.

use crate::s3::error::{Meaning, S3Answer};

/// GCS's own codes for rejected credentials, besides S3's.
const CREDENTIAL_CODES: &[&str] = &[
    "AuthenticationRequired",
    "InvalidSecurity",
    "MissingSecurityHeader",
    "ExpiredToken",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
];

/// What a GCS answer means; `None` when the status alone decides.
pub(crate) fn meaning(answer: &S3Answer) -> Option<Meaning> {
    match answer.code.as_deref() {
        Some(c) if CREDENTIAL_CODES.contains(&c) => Some(Meaning::Credentials),
        Some("UserProjectMissing" | "UserProjectAccountProblem") => Some(Meaning::AccessDenied),
        // A 401 without a known code is about the token.
        None if answer.status == Some(401) => Some(Meaning::Credentials),
        _ => answer.meaning(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: Option<&str>) -> S3Answer {
        S3Answer {
            status: Some(status),
            code: code.map(str::to_string),
            ..S3Answer::default()
        }
    }

    #[test]
    fn gcs_codes_mean_what_gcs_documents() {
        assert_eq!(
            meaning(&answer(401, Some("AuthenticationRequired"))),
            Some(Meaning::Credentials)
        );
        assert_eq!(meaning(&answer(401, None)), Some(Meaning::Credentials));
        assert_eq!(
            meaning(&answer(404, Some("NoSuchBucket"))),
            Some(Meaning::BucketMissing)
        );
        assert_eq!(
            meaning(&answer(403, Some("AccessDenied"))),
            Some(Meaning::AccessDenied)
        );
        assert_eq!(meaning(&answer(404, Some("NoSuchKey"))), None);
    }
}
