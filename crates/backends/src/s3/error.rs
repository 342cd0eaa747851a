//! What S3's error codes mean
//! (<https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html>). The answer
//! itself is read by [`crate::answer`], from the answer alone (never from text holding
//! the key).

use crate::answer::{Answer, Codes, Meaning};

/// S3's codes, by what they mean.
pub(crate) const CODES: Codes = Codes {
    bucket_missing: &["NoSuchBucket"],
    clock_skew: &["RequestTimeTooSkewed"],
    credentials: &[
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "AuthFailure",
        "MissingSecurityHeader",
    ],
    wrong_region: &[
        "AuthorizationHeaderMalformed",
        "PermanentRedirect",
        "IllegalLocationConstraintException",
    ],
    denied: &["AccessDenied"],
    altered: &["BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"],
    invalid_range: &["InvalidRange"],
    busy: &[
        "SlowDown",
        "ServiceUnavailable",
        "RequestTimeout",
        "InternalError",
    ],
};

/// What an S3 answer means; `None` when the status alone decides.
pub(crate) fn meaning(answer: &Answer) -> Option<Meaning> {
    CODES.meaning(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: &str) -> Answer {
        Answer {
            status: Some(status),
            code: Some(code.to_string()),
            ..Answer::default()
        }
    }

    #[test]
    fn altered_bytes_and_unknown_codes_keep_their_own_meaning() {
        assert_eq!(meaning(&answer(400, "BadDigest")), Some(Meaning::Altered));
        assert_eq!(meaning(&answer(404, "NoSuchKey")), None);
        assert_eq!(
            meaning(&answer(404, "NoSuchBucket")),
            Some(Meaning::BucketMissing)
        );
        assert_eq!(
            meaning(&answer(403, "NotSignedUp")),
            Some(Meaning::Unknown {
                status: 403,
                code: "NotSignedUp".to_string(),
                message: None
            })
        );
    }

    #[test]
    fn a_region_code_names_the_region_of_the_answer() {
        let mut wrong = answer(400, "AuthorizationHeaderMalformed");
        wrong.region = Some("ap-northeast-2".to_string());
        assert_eq!(
            meaning(&wrong),
            Some(Meaning::WrongRegion {
                expected: Some("ap-northeast-2".to_string())
            })
        );
    }
}
