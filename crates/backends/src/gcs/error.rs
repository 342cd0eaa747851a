//! What Google Cloud Storage's error codes mean. object_store speaks GCS's XML API, whose
//! error body is S3's `<Error><Code>…</Code>` document with GCS's codes
//! (<https://cloud.google.com/storage/docs/xml-api/reference-status>): most are named as
//! S3 names them (`NoSuchBucket`, `AccessDenied`, `SignatureDoesNotMatch`), a few are
//! GCS's own. A refusal of the JSON API (the provider's writes) travels as an
//! [`Answer`] carrying the XML code it stands for (`super::json`), so it is read here too.

use crate::answer::{Answer, Codes, Meaning};

/// GCS's codes, by what they mean.
const CODES: Codes = Codes {
    bucket_missing: &["NoSuchBucket"],
    clock_skew: &["RequestTimeTooSkewed"],
    credentials: &[
        "AuthenticationRequired",
        "InvalidSecurity",
        "MissingSecurityHeader",
        "ExpiredToken",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
    ],
    wrong_region: &["PermanentRedirect"],
    denied: &[
        "AccessDenied",
        "UserProjectMissing",
        "UserProjectAccountProblem",
    ],
    altered: &["BadDigest", "InvalidDigest"],
    invalid_range: &["InvalidRange"],
    busy: &["SlowDown", "ServiceUnavailable", "InternalError"],
};

/// What a GCS answer means; `None` when the status alone decides.
pub(crate) fn meaning(answer: &Answer) -> Option<Meaning> {
    // A 401 without a code is about the token.
    if answer.code.is_none() && answer.status == Some(401) {
        return Some(Meaning::Credentials);
    }
    CODES.meaning(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: Option<&str>) -> Answer {
        Answer {
            status: Some(status),
            code: code.map(str::to_string),
            ..Answer::default()
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
        assert_eq!(
            meaning(&answer(400, Some("UserProjectMissing"))),
            Some(Meaning::AccessDenied)
        );
        assert_eq!(meaning(&answer(404, Some("NoSuchKey"))), None);
    }
}
