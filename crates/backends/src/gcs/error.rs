//! What Google Cloud Storage's error codes mean. object_store speaks GCS's XML API, whose
//! error body is S3's `<Error><Code>…</Code>` document with GCS's codes
//! (<https://cloud.google.com/storage/docs/xml-api/reference-status>): most are named as
//! S3 names them (`NoSuchBucket`, `AccessDenied`, `SignatureDoesNotMatch`), a few are
//! GCS's own. A refusal of the JSON API (the provider's writes) travels as an
//! [`Answer`] carrying the XML code it stands for (`super::json`), so it is read here too.

use crate::answer::{Answer, Codes, Meaning};

/// GCS's codes, by what they mean. The XML API names its codes as S3 does, and the S3
/// names GCS does not document among them (`RequestTimeout`, `AuthorizationHeaderMalformed`,
/// …) keep the meaning they have on S3, as they had when GCS answers were read with S3's
/// table behind GCS's own.
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
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "AuthFailure",
    ],
    wrong_region: &[
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
    ],
    denied: &[
        "AccessDenied",
        "UserProjectMissing",
        "UserProjectAccountProblem",
    ],
    altered: &["BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"],
    invalid_range: &["InvalidRange"],
    busy: &[
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
    ],
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

    /// The XML API answers in S3's names, and GCS was read with S3's table behind its own:
    /// every S3 code still means on GCS what it means on S3 (a `RequestTimeout` is busy, not
    /// an unknown refusal).
    #[test]
    fn every_s3_code_means_on_gcs_what_it_means_on_s3() {
        let s3 = crate::s3::error::CODES;
        let lists = [
            s3.bucket_missing,
            s3.clock_skew,
            s3.credentials,
            s3.wrong_region,
            s3.denied,
            s3.altered,
            s3.invalid_range,
            s3.busy,
        ];
        for code in lists.into_iter().flatten() {
            for status in [400, 403, 404, 500, 503] {
                let answer = answer(status, Some(code));
                assert_eq!(
                    meaning(&answer),
                    crate::s3::error::meaning(&answer),
                    "{status} {code}"
                );
            }
        }
    }
}
