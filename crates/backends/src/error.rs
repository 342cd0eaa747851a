//! The one semantic error type of maskstore's storage layer.

use maskstore_core::Origin;

/// What went wrong with a storage operation. Every backend reports the same variant for
/// the same situation; every message says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No object exists at the key.
    #[error("no object at {key}; check the key, or list its folder to see what exists")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// A create-only write found the key already taken.
    #[error("{key} already exists; choose another key or overwrite it with a plain put")]
    AlreadyExists {
        /// The key written.
        key: String,
    },
    /// A conditional operation's condition did not hold (e.g. the etag changed).
    #[error(
        "the condition on {key} did not hold (the object changed or is missing); read it again and retry"
    )]
    Precondition {
        /// The key written or read.
        key: String,
    },
    /// A conditional read found the object unchanged (`if-none-match`).
    #[error("{key} has not changed since the version you hold")]
    NotModified {
        /// The key read.
        key: String,
    },
    /// A byte range outside the object was asked for.
    #[error(
        "the byte range asked of {key} is not satisfiable: {detail}; ask for a range inside the object"
    )]
    InvalidRange {
        /// The key read.
        key: String,
        /// Which range, where known.
        detail: String,
    },
    /// The backend refused the operation for lack of permission.
    #[error(
        "{backend} denied access to {key}: {detail}; the policy must grant s3:PutObject, \
         s3:GetObject and s3:DeleteObject on arn:aws:s3:::<bucket>/<prefix>* and \
         s3:ListBucket on the bucket (local: check the folder's file permissions)"
    )]
    PermissionDenied {
        /// The backend name.
        backend: String,
        /// The key (or prefix) concerned.
        key: String,
        /// The backend's own words.
        detail: String,
    },
    /// The backend rejected the credentials (wrong access key or secret, expired token,
    /// or a request signed for the wrong region).
    #[error(
        "{backend} rejected the credentials: {detail}; check object_storage.access_key and \
         secret_key (APP_OBJECT_STORAGE__ACCESS_KEY, APP_OBJECT_STORAGE__SECRET_KEY), the \
         region, and the machine's clock"
    )]
    CredentialsRejected {
        /// The backend name.
        backend: String,
        /// The backend's own words (never the secret).
        detail: String,
    },
    /// The bucket does not exist (or not in this region/account).
    #[error(
        "the bucket does not exist: {detail}; check object_storage.bucket_name \
         (APP_OBJECT_STORAGE__BUCKET_NAME) and the account, or create the bucket"
    )]
    BucketMissing {
        /// The backend name.
        backend: String,
        /// The backend's own words.
        detail: String,
    },
    /// The bucket lives in another region than the one configured.
    #[error(
        "the bucket is in region {}, not the configured one: {detail}; set object_storage.region \
         (APP_OBJECT_STORAGE__REGION) to it",
        expected.as_deref().unwrap_or("(another)")
    )]
    RegionMismatch {
        /// The backend name.
        backend: String,
        /// The bucket's real region, when the server says.
        expected: Option<String>,
        /// The backend's own words.
        detail: String,
    },
    /// The machine's clock is too far from the server's for signatures to be accepted.
    #[error(
        "the server refused the request because this machine's clock is off: {detail}; \
         synchronise the clock (NTP) and retry"
    )]
    ClockSkew {
        /// The backend name.
        backend: String,
        /// The backend's own words.
        detail: String,
    },
    /// The backend could not be reached in time.
    #[error(
        "cannot reach the {backend} backend: {detail}; check object_storage.endpoint and \
         region, the network, and that the server is running"
    )]
    Unreachable {
        /// The backend name.
        backend: String,
        /// What failed.
        detail: String,
    },
    /// A key broke the key rules or lay outside the configured prefix. Nothing was sent.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// The rule it broke and how to fix it.
        reason: String,
    },
    /// User metadata or a content type that not every backend could keep.
    #[error("invalid metadata {name:?}: {reason}")]
    InvalidMetadata {
        /// The metadata name.
        name: String,
        /// The rule it broke.
        reason: String,
    },
    /// A signed-URL lifetime was zero or above the maximum.
    #[error(
        "invalid TTL {requested} s: it must be between 1 and {max} seconds (signed_url.max_ttl)"
    )]
    InvalidTtl {
        /// The requested lifetime in seconds.
        requested: u64,
        /// The largest allowed.
        max: u64,
    },
    /// The configuration is wrong.
    #[error("config key {key} ({origin}): {problem}; {fix}")]
    Config {
        /// The dotted key.
        key: String,
        /// Where the value came from.
        origin: Origin,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// The backend cannot do this at all.
    #[error("{backend} cannot {operation}: {detail}")]
    Unsupported {
        /// The backend name.
        backend: String,
        /// The operation.
        operation: String,
        /// Why.
        detail: String,
    },
    /// Writing a read object into the caller's file failed (a full disk, a closed file).
    #[error(
        "cannot write {key} into the destination file: {source}; check the target's disk and permissions"
    )]
    Destination {
        /// The key being read.
        key: String,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// Any other failure of the backend.
    #[error("{backend} backend failed on {key}: {source}")]
    Backend {
        /// The backend name.
        backend: String,
        /// The key (or prefix) concerned.
        key: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

/// The result type of maskstore's storage layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<maskstore_core::Error> for Error {
    fn from(e: maskstore_core::Error) -> Self {
        match e {
            maskstore_core::Error::InvalidKey { key, reason } => Error::InvalidKey { key, reason },
            maskstore_core::Error::InvalidMaskKey { key, reason } => {
                Error::InvalidKey { key, reason }
            }
            maskstore_core::Error::InvalidTtl { requested, max } => {
                Error::InvalidTtl { requested, max }
            }
            maskstore_core::Error::Config {
                key,
                origin,
                problem,
                fix,
            } => Error::Config {
                key,
                origin,
                problem,
                fix,
            },
            other => Error::Config {
                key: "(unknown)".to_string(),
                origin: Origin::Default,
                problem: other.to_string(),
                fix: "see the message".to_string(),
            },
        }
    }
}

/// S3 error codes that mean the credentials, not the policy, are at fault.
const CREDENTIAL_CODES: &[&str] = &[
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
    "AuthFailure",
];

impl Error {
    /// Maps an object_store error on `key` of `backend` to the semantic error.
    pub(crate) fn from_store(backend: &str, key: &str, e: object_store::Error) -> Error {
        let key = key.to_string();
        let backend = backend.to_string();
        let text = chain_text(&e);
        if text.contains("NoSuchBucket") {
            return Error::BucketMissing {
                backend,
                detail: s3_detail(&text),
            };
        }
        if text.contains("RequestTimeTooSkewed") {
            return Error::ClockSkew {
                backend,
                detail: s3_detail(&text),
            };
        }
        if [
            "AuthorizationHeaderMalformed",
            "PermanentRedirect",
            "IllegalLocationConstraintException",
        ]
        .iter()
        .any(|code| text.contains(code))
        {
            return Error::RegionMismatch {
                backend,
                expected: expected_region(&text),
                detail: s3_detail(&text),
            };
        }
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound { key },
            object_store::Error::AlreadyExists { .. } => Error::AlreadyExists { key },
            object_store::Error::Precondition { .. } => Error::Precondition { key },
            object_store::Error::NotModified { .. } => Error::NotModified { key },
            object_store::Error::PermissionDenied { source, .. }
            | object_store::Error::Unauthenticated { source, .. } => {
                let text = chain_text(source.as_ref());
                let detail = s3_detail(&text);
                if CREDENTIAL_CODES.iter().any(|c| text.contains(c)) {
                    Error::CredentialsRejected { backend, detail }
                } else {
                    Error::PermissionDenied {
                        backend,
                        key,
                        detail,
                    }
                }
            }
            object_store::Error::NotImplemented { operation, .. } => Error::Unsupported {
                backend,
                operation,
                detail: "not implemented by this backend".to_string(),
            },
            object_store::Error::NotSupported { source } => Error::Unsupported {
                backend,
                operation: "do this".to_string(),
                detail: source.to_string(),
            },
            other => classify_generic(backend, key, other),
        }
    }

    /// Whether the error is about the input (4xx-like) rather than the backend.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            Error::Unreachable { .. } | Error::Backend { .. } | Error::Unsupported { .. }
        )
    }
}

fn classify_generic(backend: String, key: String, e: object_store::Error) -> Error {
    let source: &(dyn std::error::Error + 'static) = &e;
    let mut current = Some(source);
    while let Some(err) = current {
        if let Some(http) = err.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind;
            if matches!(http.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout) {
                return Error::Unreachable {
                    backend,
                    detail: chain_text(source),
                };
            }
        }
        current = err.source();
    }
    let text = chain_text(source);
    if CREDENTIAL_CODES.iter().any(|c| text.contains(c)) {
        return Error::CredentialsRejected {
            backend,
            detail: s3_detail(&text),
        };
    }
    // object_store's own range errors (memory, local) and S3's 416 answer. Matched on whole
    // phrases: a bare "416" also turns up inside request ids.
    if [
        "Wanted range starting at",
        "Range started at",
        "status code: 416",
        "<Code>InvalidRange</Code>",
    ]
    .iter()
    .any(|needle| text.contains(needle))
    {
        return Error::InvalidRange {
            key,
            detail: s3_detail(&text),
        };
    }
    // List requests surface S3's 403 as a generic error; it is still a refusal by policy.
    if text.contains("AccessDenied") || text.contains("403 Forbidden") {
        return Error::PermissionDenied {
            backend,
            key,
            detail: s3_detail(&text),
        };
    }
    // With no keys configured, object_store walks the AWS chain down to instance metadata.
    if text.contains("169.254.169.254") || text.contains("169.254.170.2") {
        return Error::CredentialsRejected {
            backend,
            detail: format!(
                "no credentials were found: access_key and secret_key are unset and the AWS \
                 credential chain (AWS_* variables, web identity, container or instance \
                 metadata) gave none ({})",
                s3_detail(&text)
            ),
        };
    }
    Error::Backend {
        backend,
        key,
        source: Box::new(e),
    }
}

/// The region S3 says the bucket is in: `<Region>…</Region>` or "expecting '…'".
fn expected_region(text: &str) -> Option<String> {
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let end = text[start..].find(close)? + start;
        Some(text[start..end].to_string())
    };
    between("<Region>", "</Region>")
        .or_else(|| between("expecting '", "'"))
        .filter(|r| !r.is_empty())
}

/// The whole source chain as one line.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut current = e.source();
    while let Some(err) = current {
        let next = err.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        current = err.source();
    }
    text
}

/// The `<Code>` and `<Message>` of an S3 error body, or the text itself when there is none.
fn s3_detail(text: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&close)? + start;
        Some(text[start..end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => {
            let mut short: String = text.chars().take(300).collect();
            if short.len() < text.len() {
                short.push('…');
            }
            short
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_mismatch_names_the_bucket_region() {
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Client error with status 400 Bad Request: <Error><Code>AuthorizationHeaderMalformed</Code>\
                     <Message>The authorization header is malformed; the region 'us-east-1' is wrong; \
                     expecting 'ap-northeast-2'</Message><Region>ap-northeast-2</Region></Error>"
                .into(),
        };
        match Error::from_store("s3", "mask/", e) {
            Error::RegionMismatch { expected, .. } => {
                assert_eq!(expected.as_deref(), Some("ap-northeast-2"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn digits_of_a_request_id_are_not_a_status() {
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 403 Forbidden: <Error><Code>SignatureDoesNotMatch\
                     </Code><RequestId>18ECBB4A416BC24F</RequestId></Error>"
                .into(),
        };
        assert!(matches!(
            Error::from_store("s3", "mask/", e),
            Error::CredentialsRejected { .. }
        ));
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 416 Range Not Satisfiable: <Error><Code>InvalidRange</Code></Error>".into(),
        };
        assert!(matches!(
            Error::from_store("s3", "mask/a", e),
            Error::InvalidRange { .. }
        ));
    }

    #[test]
    fn clock_skew_is_named() {
        let e = object_store::Error::PermissionDenied {
            path: "mask/".into(),
            source: "<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the \
                     request time and the current time is too large.</Message></Error>"
                .into(),
        };
        let e = Error::from_store("s3", "mask/", e);
        assert!(matches!(e, Error::ClockSkew { .. }), "{e:?}");
        assert!(e.to_string().contains("NTP"), "{e}");
    }

    #[test]
    fn missing_bucket_is_not_a_missing_key() {
        let e = object_store::Error::NotFound {
            path: "mask/".into(),
            source: "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>".into(),
        };
        assert!(matches!(
            Error::from_store("s3", "mask/", e),
            Error::BucketMissing { .. }
        ));
    }

    #[test]
    fn s3_error_body_is_reduced_to_code_and_message() {
        let body = "Client error with status 403 Forbidden: <?xml version=\"1.0\"?><Error>\
                    <Code>SignatureDoesNotMatch</Code><Message>The request signature we \
                    calculated does not match</Message><StringToSign>AWS4…</StringToSign></Error>";
        assert_eq!(
            s3_detail(body),
            "SignatureDoesNotMatch: The request signature we calculated does not match"
        );
    }

    #[test]
    fn signature_mismatch_is_credentials_rejected_and_access_denied_is_permission() {
        let denied = |body: &str| object_store::Error::PermissionDenied {
            path: "mask/a".into(),
            source: body.to_string().into(),
        };
        let e = Error::from_store("s3", "mask/a", denied("<Code>SignatureDoesNotMatch</Code>"));
        assert!(matches!(e, Error::CredentialsRejected { .. }), "{e}");
        let e = Error::from_store("s3", "mask/a", denied("<Code>AccessDenied</Code>"));
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e}");
        assert!(e.to_string().contains("s3:ListBucket"), "{e}");
    }
}
