//! What Azure Blob Storage's error codes mean. Azure answers a refused request with an
//! `<Error><Code>…</Code><Message>…</Message></Error>` body, which
//! [`crate::answer::answer_of`] reads from the answer alone (never from text holding
//! the key); the codes are Azure's own
//! (<https://learn.microsoft.com/en-us/rest/api/storageservices/blob-service-error-codes>).

use crate::answer::{Answer, Codes, Meaning};

/// Azure's codes, by what they mean.
const CODES: Codes = Codes {
    bucket_missing: &[
        "ContainerNotFound",
        "ContainerBeingDeleted",
        "ContainerDisabled",
    ],
    clock_skew: &["RequestTimeTooSkewed"],
    credentials: &[
        "AuthenticationFailed",
        "InvalidAuthenticationInfo",
        "NoAuthenticationInformation",
        "KeyVaultAccessTokenCannotBeAcquired",
    ],
    wrong_region: &[],
    // The policy (RBAC, SAS permissions, firewall) refuses.
    denied: &[
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationServiceMismatch",
        "AuthorizationSourceIPMismatch",
        "AuthorizationProtocolMismatch",
        "InsufficientAccountPermissions",
        "AccountIsDisabled",
    ],
    altered: &["Md5Mismatch", "Crc64Mismatch", "InvalidMd5"],
    invalid_range: &["InvalidRange"],
    busy: &["ServerBusy", "InternalError", "OperationTimedOut"],
};

/// The message Azure documents for `AuthenticationFailed`.
const AUTHENTICATION_FAILED_MESSAGE: &str = "Server failed to authenticate the request.";

/// What an Azure answer means; `None` when the status alone decides (a 404's
/// `BlobNotFound`, a 412's `ConditionNotMet`, a 409's `BlobAlreadyExists`).
pub(crate) fn meaning(answer: &Answer) -> Option<Meaning> {
    // Azurite answers a bad shared key or SAS signature with `AuthorizationFailure` but
    // AuthenticationFailed's documented message; Azure itself sends `AuthenticationFailed`.
    // The message is the server's own sentence (it never holds the blob's name).
    let azurite_authentication = answer.code.as_deref() == Some("AuthorizationFailure")
        && answer
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with(AUTHENTICATION_FAILED_MESSAGE));
    if azurite_authentication {
        return Some(Meaning::Credentials);
    }
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
    fn azure_codes_mean_what_azure_documents() {
        assert_eq!(
            meaning(&answer(403, "AuthenticationFailed")),
            Some(Meaning::Credentials)
        );
        assert_eq!(
            meaning(&answer(403, "AuthorizationPermissionMismatch")),
            Some(Meaning::AccessDenied)
        );
        assert_eq!(
            meaning(&answer(404, "ContainerNotFound")),
            Some(Meaning::BucketMissing)
        );
        assert_eq!(meaning(&answer(404, "BlobNotFound")), None);
        assert_eq!(meaning(&answer(412, "ConditionNotMet")), None);
        assert_eq!(meaning(&answer(503, "ServerBusy")), Some(Meaning::Busy));
        assert_eq!(meaning(&answer(400, "Md5Mismatch")), Some(Meaning::Altered));
        assert!(matches!(
            meaning(&answer(400, "InvalidHeaderValue")),
            Some(Meaning::Unknown { status: 400, .. })
        ));
    }

    #[test]
    fn azurites_authorization_failure_with_the_authentication_message_is_credentials() {
        let mut azurite = answer(403, "AuthorizationFailure");
        azurite.message = Some(
            "Server failed to authenticate the request. Make sure the value of the \
             Authorization header is formed correctly including the signature.\nRequestId:x"
                .to_string(),
        );
        assert_eq!(meaning(&azurite), Some(Meaning::Credentials));
        // Azure's own AuthorizationFailure (a firewall or network rule) is a refusal.
        let mut denied = answer(403, "AuthorizationFailure");
        denied.message = Some("This request is not authorized to perform this operation.".into());
        assert_eq!(meaning(&denied), Some(Meaning::AccessDenied));
    }

    #[test]
    fn s3_codes_do_not_leak_into_azure() {
        // `NoSuchBucket` is not an Azure code: reported as given, not as a missing container.
        assert!(matches!(
            meaning(&answer(400, "NoSuchBucket")),
            Some(Meaning::Unknown { .. })
        ));
    }
}
