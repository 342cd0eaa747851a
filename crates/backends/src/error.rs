//! The one semantic error type of maskstore's storage layer, and its one classification.
//!
//! Every error has an [`ErrorKind`]; the CLI's exit code, the gateway's HTTP status and the
//! metric outcome are each derived from the kind by an exhaustive match, so a new kind
//! cannot fall through to a default anywhere. Errors of object_store are turned into
//! [`Error`] here once ([`Error::from_store`]): refusals from their status and `<Code>`
//! element only ([`crate::answer`]), read with the refusing provider's codes, and
//! local-provider failures from their typed [`LocalError`], never from text that could
//! contain the key. What a message advises comes from the provider's profile
//! ([`crate::providers::profile_of`]); nothing here knows a provider by name.

use maskstore_core::{Origin, Provider, shown, shown_cut};

use crate::answer::{self, Answer, MAX_CODE_SHOWN, MAX_MESSAGE_SHOWN, Meaning};
use crate::http_client::Misanswer;
use crate::local::error::LocalError;
use crate::providers::{Backend, profile_of};

/// What kind of failure an [`Error`] is: the one classification everything outward derives
/// from (exit codes, HTTP statuses, metric outcomes, retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No object at the key (or no bucket): 404.
    NotFound,
    /// The key is taken, or the write conflicts with what is stored (an object where a
    /// folder is needed): 409.
    Conflict,
    /// A condition of a conditional read or write did not hold: 412.
    Precondition,
    /// A conditional read found the object unchanged: 304.
    NotModified,
    /// The request itself is wrong (key, metadata, TTL, a name the store cannot hold): 400.
    InvalidInput,
    /// A byte range outside the object: 416.
    InvalidRange,
    /// The backend's policy or file permissions refuse the operation: 403.
    PermissionDenied,
    /// The backend rejected the credentials, the signature or the clock: 403 from S3.
    Credentials,
    /// The configuration is wrong (bad value, missing bucket setting, wrong region).
    Misconfigured,
    /// The backend could not be reached or is overloaded; retrying may help: 503.
    Unavailable,
    /// The backend cannot do this at all: 501.
    Unsupported,
    /// The stored bytes do not match the checksum stored with them: the object is damaged
    /// (500: the client asked nothing wrong).
    Corrupt,
    /// The backend failed in a way not listed above: 500.
    Internal,
}

impl ErrorKind {
    /// Whether the failure is the request's own (the 4xx family) rather than the backend's.
    pub fn is_client_error(self) -> bool {
        match self {
            ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::Precondition
            | ErrorKind::NotModified
            | ErrorKind::InvalidInput
            | ErrorKind::InvalidRange
            | ErrorKind::PermissionDenied
            | ErrorKind::Credentials
            | ErrorKind::Misconfigured => true,
            ErrorKind::Unavailable
            | ErrorKind::Unsupported
            | ErrorKind::Corrupt
            | ErrorKind::Internal => false,
        }
    }

    /// The name used in JSON output (`not_found`, `conflict`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Precondition => "precondition",
            ErrorKind::NotModified => "not_modified",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::InvalidRange => "invalid_range",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Credentials => "credentials",
            ErrorKind::Misconfigured => "misconfigured",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// The write conflicts with what is stored: on the local provider, a key below an
    /// existing object, or a key that is a folder of other keys.
    #[error("{key} conflicts with what is stored: {reason}")]
    Conflict {
        /// The key written.
        key: String,
        /// What it conflicts with, and what to do.
        reason: String,
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
        "{backend} denied access to {key}: {detail}; {}",
        profile_of(*provider).permission_fix
    )]
    PermissionDenied {
        /// The backend name.
        backend: String,
        /// The provider that refused (none for a store maskstore did not build), whose
        /// advice the message gives.
        provider: Option<Provider>,
        /// The key (or prefix) concerned.
        key: String,
        /// The backend's own words.
        detail: String,
    },
    /// The backend rejected the credentials (wrong access key or secret, expired token,
    /// or a request signed for the wrong region).
    #[error(
        "{backend} rejected the credentials: {detail}; {}",
        profile_of(*provider).credentials_fix
    )]
    CredentialsRejected {
        /// The backend name.
        backend: String,
        /// The provider that refused (none for a store maskstore did not build), whose
        /// advice the message gives.
        provider: Option<Provider>,
        /// The backend's own words (never the secret).
        detail: String,
    },
    /// The bucket does not exist (or not in this region/account).
    #[error(
        "the {} does not exist: {detail}; {}",
        profile_of(*provider).bucket_word,
        profile_of(*provider).bucket_fix
    )]
    BucketMissing {
        /// The backend name.
        backend: String,
        /// The provider that refused (none for a store maskstore did not build), whose
        /// words and advice the message gives.
        provider: Option<Provider>,
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
    /// The server refused the request with an error code maskstore does not interpret; the
    /// code and status are reported as the server gave them.
    #[error(
        "{backend} refused the request on {key}: {} {code}{}; look the code up in the \
         engine's documentation (maskstore does not know it)",
        status_shown(*status),
        message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
    )]
    Refused {
        /// The backend name.
        backend: String,
        /// The key (or prefix) concerned.
        key: String,
        /// The HTTP status (0 when the error came inside a 200 answer).
        status: u16,
        /// The server's error code, escaped ([`maskstore_core::shown`]) and cut short.
        code: String,
        /// The server's message, if it sent one, escaped and cut short.
        message: Option<String>,
    },
    /// The backend could not be reached in time.
    #[error("cannot reach the {backend} backend: {detail}; {}", reach_fix(backend))]
    Unreachable {
        /// The backend name.
        backend: String,
        /// What failed.
        detail: String,
    },
    /// The server was reached and failed on its side (a 500 `InternalError`): not the
    /// network, not the request; retrying later may help.
    #[error(
        "the {backend} server failed on its side: {detail}; it was reached and answered, so \
         the endpoint and network are fine: retry later, and if it persists report it to \
         whoever runs that server (with the answer above)"
    )]
    ServerFailed {
        /// The backend name.
        backend: String,
        /// The server's answer.
        detail: String,
    },
    /// The server's answer broke what a storage service sends (a body past maskstore's
    /// bound, a listing that is not one): a wrong endpoint, a proxy's page, or a server
    /// misbehaving. Nothing of the answer was used.
    #[error(
        "{backend} answered in a way no storage service does: {detail}; check that \
         object_storage.endpoint (APP_OBJECT_STORAGE__ENDPOINT) names the storage service \
         itself and not a proxy or another service, and report the answer to whoever runs \
         that server"
    )]
    Misbehaved {
        /// The backend name.
        backend: String,
        /// The request (endpoint and path, never the query) and what was wrong, escaped.
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
    /// Reading the caller's file to store it failed (missing, unreadable, not a regular
    /// file, or changed while it was stored). Nothing was stored.
    #[error("cannot store {path} as {key}: {source}; check the file and its permissions")]
    Source {
        /// The key being written.
        key: String,
        /// The file being stored.
        path: String,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes read do not match the checksum stored with the object: it was damaged
    /// on disk or on the way. Nothing read should be used.
    #[error(
        "{key} on {backend} is corrupt: its stored checksum is {expected} but its bytes hash to {actual}; \
         restore it from a backup or a replica (read it with --no-verify only for forensics)"
    )]
    Corrupt {
        /// The backend name.
        backend: String,
        /// The damaged object's key.
        key: String,
        /// The checksum stored with the object (`algorithm:base64`).
        expected: String,
        /// The checksum of the bytes read.
        actual: String,
    },
    /// Any other failure of the backend. Its source's text may hold what a server sent, so
    /// it is shown escaped and cut short.
    #[error(
        "{backend} backend failed on {key}: {}",
        shown_cut(&source.to_string(), MAX_SOURCE_SHOWN)
    )]
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

impl Error {
    /// The kind of failure: what the exit code, HTTP status and metric outcome derive from.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } | Error::BucketMissing { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } | Error::Conflict { .. } => ErrorKind::Conflict,
            Error::Precondition { .. } => ErrorKind::Precondition,
            Error::NotModified { .. } => ErrorKind::NotModified,
            Error::InvalidRange { .. } => ErrorKind::InvalidRange,
            Error::InvalidKey { .. } | Error::InvalidMetadata { .. } | Error::InvalidTtl { .. } => {
                ErrorKind::InvalidInput
            }
            Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Error::CredentialsRejected { .. } | Error::ClockSkew { .. } => ErrorKind::Credentials,
            Error::RegionMismatch { .. } | Error::Config { .. } => ErrorKind::Misconfigured,
            Error::Refused { status, .. } => kind_of_status(*status),
            Error::Unreachable { .. } => ErrorKind::Unavailable,
            Error::Misbehaved { .. } | Error::ServerFailed { .. } => ErrorKind::Internal,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Destination { .. } | Error::Source { .. } | Error::Backend { .. } => {
                ErrorKind::Internal
            }
        }
    }

    /// Whether the error is about the request (4xx-like) rather than the backend.
    pub fn is_client_error(&self) -> bool {
        self.kind().is_client_error()
    }

    /// Maps an object_store error on `key` of `backend` to the semantic error.
    pub(crate) fn from_store(backend: &Backend, key: &str, e: object_store::Error) -> Error {
        match Error::describe(backend, key, &e) {
            // Keep the original error as the source, for callers that inspect it.
            Error::Backend { backend, key, .. } => Error::Backend {
                backend,
                key,
                source: Box::new(e),
            },
            other => other,
        }
    }

    /// The kind [`Error::from_store`] would give `e` (for metrics, which pass the error on).
    pub(crate) fn kind_of_store(
        backend: &Backend,
        key: &str,
        e: &object_store::Error,
    ) -> ErrorKind {
        Error::describe(backend, key, e).kind()
    }

    /// The one classification of object_store errors.
    fn describe(source: &Backend, key: &str, e: &object_store::Error) -> Error {
        let key = key.to_string();
        let backend = source.to_string();
        if let Some(local) = local_error(e) {
            return from_local(source, key, local);
        }
        // A refusal in a success answer goes on to be read like any refusal.
        if let Some(misanswer) = in_chain::<Misanswer>(e).filter(|m| !m.is_refusal()) {
            return Error::Misbehaved {
                backend,
                detail: misanswer.to_string(),
            };
        }
        if let Some(unreachable) = unreachable(e) {
            return Error::Unreachable {
                backend,
                detail: unreachable,
            };
        }
        let meaning = profile_of(source.provider()).meaning;
        let answer = answer::answer_of(e);
        // object_store already turned the status into a variant, in the context of the
        // request (a create-only put's 412 is `AlreadyExists`); those stand, and the code
        // only tells a missing bucket from a missing key. Refusals and other failures are
        // read from their code.
        let code_decides = match e {
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. } => false,
            object_store::Error::NotFound { .. } => answer
                .as_ref()
                .is_some_and(|a| meaning(a) == Some(Meaning::BucketMissing)),
            _ => true,
        };
        if code_decides
            && let Some(error) = answer
                .as_ref()
                .and_then(|answer| from_answer(source, &key, answer))
        {
            return error;
        }
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound { key },
            object_store::Error::AlreadyExists { .. } => Error::AlreadyExists { key },
            object_store::Error::Precondition { .. } => Error::Precondition { key },
            object_store::Error::NotModified { .. } => Error::NotModified { key },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Error::PermissionDenied {
                backend,
                provider: source.provider(),
                key,
                detail: answer.map_or_else(
                    || "refused without a reason (a HEAD answer has no body)".to_string(),
                    |a| a.describe(),
                ),
            },
            // object_store's reason quotes the name as listed, whatever it holds.
            object_store::Error::InvalidPath { source } => Error::InvalidKey {
                key,
                reason: shown(&source.to_string()).into_owned(),
            },
            object_store::Error::NotImplemented { operation, .. } => Error::Unsupported {
                backend,
                operation: operation.clone(),
                detail: "not implemented by this backend".to_string(),
            },
            object_store::Error::NotSupported { source } => Error::Unsupported {
                backend,
                operation: "do this".to_string(),
                detail: source.to_string(),
            },
            other => from_generic(source, key, answer, other),
        }
    }
}

/// The most of an error's source text shown (object_store's carries a server's whole
/// error body).
const MAX_SOURCE_SHOWN: usize = 2000;

/// What to check when the backend labelled `backend` cannot be reached, in its
/// provider's own settings (no region on Azure or GCS).
fn reach_fix(backend: &str) -> &'static str {
    profile_of(backend.parse::<Provider>().ok()).reach_fix
}

/// `403`, or what a status of 0 stands for in [`Error::Refused`].
fn status_shown(status: u16) -> String {
    match status {
        0 => "an error document in a success answer:".to_string(),
        status => status.to_string(),
    }
}

/// The first element of `e`'s source chain of type `T`.
fn in_chain<T: std::error::Error + 'static>(e: &object_store::Error) -> Option<&T> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// The kind an HTTP status stands for, for answers whose code maskstore does not know.
fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        304 => ErrorKind::NotModified,
        401 => ErrorKind::Credentials,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        412 => ErrorKind::Precondition,
        416 => ErrorKind::InvalidRange,
        301 | 307 => ErrorKind::Misconfigured,
        429 | 503 => ErrorKind::Unavailable,
        501 => ErrorKind::Unsupported,
        400..=499 => ErrorKind::InvalidInput,
        _ => ErrorKind::Internal,
    }
}

/// The semantic error a server's answer means, read with the provider's codes, or `None`
/// when its status alone decides.
fn from_answer(source: &Backend, key: &str, answer: &Answer) -> Option<Error> {
    let backend = source.to_string();
    let provider = source.provider();
    let key = key.to_string();
    let detail = answer.describe();
    let error = match (profile_of(provider).meaning)(answer)? {
        Meaning::BucketMissing => Error::BucketMissing {
            backend,
            provider,
            detail,
        },
        Meaning::ClockSkew => Error::ClockSkew { backend, detail },
        Meaning::Credentials => Error::CredentialsRejected {
            backend,
            provider,
            detail,
        },
        Meaning::WrongRegion { expected } => Error::RegionMismatch {
            backend,
            expected: expected.map(|region| shown_cut(&region, MAX_CODE_SHOWN)),
            detail,
        },
        Meaning::AccessDenied => Error::PermissionDenied {
            backend,
            provider,
            key,
            detail,
        },
        Meaning::InvalidRange => Error::InvalidRange { key, detail },
        // A 500 (`InternalError`) is the server failing, not a server out of reach or
        // overloaded (429, 502, 503, 504, `SlowDown`).
        Meaning::Busy if answer.status == Some(500) => Error::ServerFailed { backend, detail },
        Meaning::Busy => Error::Unreachable { backend, detail },
        Meaning::Altered => Error::Backend {
            backend,
            key,
            source: format!(
                "the server says the bytes arrived altered ({detail}); maskstore computed the \
                 checksums it sent, so the network or the engine changed them: retry, and \
                 report it if it persists"
            )
            .into(),
        },
        Meaning::Unknown {
            status,
            code,
            message,
        } => Error::Refused {
            backend,
            key,
            status,
            code: shown_cut(&code, MAX_CODE_SHOWN),
            message: message.map(|m| shown_cut(&m, MAX_MESSAGE_SHOWN)),
        },
    };
    Some(error)
}

/// The local provider's typed error in `e`'s source chain.
fn local_error(e: &object_store::Error) -> Option<&LocalError> {
    in_chain::<LocalError>(e)
}

/// The local provider's errors name files, whose names another tool chose: their text is
/// escaped.
fn from_local(source: &Backend, key: String, e: &LocalError) -> Error {
    let backend = source.to_string();
    let text = || shown(&e.to_string()).into_owned();
    match e {
        LocalError::UnderAnObject { .. } | LocalError::IsAFolder { .. } => Error::Conflict {
            key,
            reason: text(),
        },
        LocalError::NameTooLong { .. } | LocalError::Reserved { .. } | LocalError::Empty => {
            Error::InvalidKey {
                key,
                reason: text(),
            }
        }
        LocalError::NotFound { .. } => Error::NotFound { key },
        LocalError::CrossesSymlink { .. }
        | LocalError::Symlink { .. }
        | LocalError::Denied { .. } => Error::PermissionDenied {
            backend,
            provider: source.provider(),
            key,
            detail: text(),
        },
        LocalError::Exists { .. } => Error::AlreadyExists { key },
        LocalError::Stale { .. } => Error::Precondition { key },
        LocalError::NoAttributes { .. } => Error::Unsupported {
            backend,
            operation: "store content types and metadata".to_string(),
            detail: text(),
        },
        LocalError::UnreadableAttributes { detail, .. } => Error::Corrupt {
            backend,
            key,
            expected: crate::checksum::unreadable_record(detail),
            actual: crate::checksum::NOT_COMPUTED.to_string(),
        },
        LocalError::DiskFull { .. } | LocalError::Io { .. } | LocalError::Attributes { .. } => {
            // Shown escaped by the variant's display.
            Error::Backend {
                backend,
                key,
                source: e.to_string().into(),
            }
        }
    }
}

/// A connection or timeout failure in `e`'s chain, described.
fn unreachable(e: &object_store::Error) -> Option<String> {
    let source: &(dyn std::error::Error + 'static) = e;
    let mut current = Some(source);
    while let Some(err) = current {
        if let Some(http) = err.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind;
            if matches!(http.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout) {
                return Some(shown_cut(&chain_text(source), MAX_SOURCE_SHOWN));
            }
        }
        current = err.source();
    }
    None
}

/// Requests to the AWS credential endpoints (instance and container metadata), as
/// object_store's failed-request error names them: the chain went that far because no
/// credentials were configured.
const CREDENTIAL_ENDPOINTS: &[&str] = &["http://169.254.169.254/", "http://169.254.170.2/"];

fn from_generic(
    store: &Backend,
    key: String,
    answer: Option<Answer>,
    e: &object_store::Error,
) -> Error {
    let backend = store.to_string();
    let source: &(dyn std::error::Error + 'static) = e;
    // object_store's own range errors (memory and object_store's local store).
    let mut current = Some(source);
    while let Some(err) = current {
        let text = err.to_string();
        if text.starts_with("Wanted range starting at") || text.starts_with("Range started at") {
            return Error::InvalidRange { key, detail: text };
        }
        if text == answer::BARE_REDIRECT {
            return Error::RegionMismatch {
                backend,
                expected: None,
                detail: text,
            };
        }
        // `Error performing GET http://169.254.169.254/… in …`: the request's own URL.
        let credential_request = text
            .strip_prefix("Error performing ")
            .and_then(|rest| rest.split_once(' '))
            .is_some_and(|(_, url)| CREDENTIAL_ENDPOINTS.iter().any(|e| url.starts_with(e)));
        if credential_request {
            return Error::CredentialsRejected {
                backend,
                provider: store.provider(),
                detail: profile_of(store.provider()).no_credentials.to_string(),
            };
        }
        current = err.source();
    }
    if let Some(answer) = answer.filter(|a| a.status.is_some()) {
        let status = answer.status.unwrap_or(0);
        if (400..500).contains(&status) {
            return Error::Refused {
                backend,
                key,
                status,
                code: answer.code.map_or_else(
                    || "(no code)".to_string(),
                    |code| shown_cut(&code, MAX_CODE_SHOWN),
                ),
                message: answer.message.map(|m| shown_cut(&m, MAX_MESSAGE_SHOWN)),
            };
        }
    }
    Error::Backend {
        backend,
        key,
        source: chain_text(source).into(),
    }
}

/// The whole source chain as one line (for logs of unreachable backends).
pub(crate) fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_permission_error_gives_local_advice_not_an_s3_policy() {
        let local = Error::PermissionDenied {
            backend: "local".to_string(),
            provider: Some(Provider::Local),
            key: "mask/a".to_string(),
            detail: "mask/a/link below the local root is a symlink".to_string(),
        }
        .to_string();
        assert!(!local.contains("s3:"), "{local}");
        assert!(local.contains("local root"), "{local}");
        let s3 = Error::PermissionDenied {
            backend: "s3".to_string(),
            provider: Some(Provider::S3),
            key: "mask/a".to_string(),
            detail: "AccessDenied".to_string(),
        }
        .to_string();
        assert!(s3.contains("s3:PutObject"), "{s3}");
    }

    #[test]
    fn a_foreign_stores_refusal_gets_neutral_advice_and_its_codes_are_not_guessed() {
        let wrapper = Backend::foreign("my-wrapper");
        let e = object_store::Error::PermissionDenied {
            path: "mask/a".into(),
            source: "refused".into(),
        };
        let e = Error::from_store(&wrapper, "mask/a", e);
        assert!(
            matches!(e, Error::PermissionDenied { provider: None, .. }),
            "{e:?}"
        );
        let text = e.to_string();
        for provider_advice in ["s3:", "Storage Blob", "roles/", "local root"] {
            assert!(!text.contains(provider_advice), "{text}");
        }
        // S3's code is S3's: a store of unknown kind reports it as given, by its status.
        let e = object_store::Error::PermissionDenied {
            path: "mask/a".into(),
            source: request(
                "mask/a",
                &format!("403 Forbidden: {}", body("AccessDenied", "no")),
            ),
        };
        let e = Error::from_store(&wrapper, "mask/a", e);
        assert!(
            matches!(&e, Error::Refused { status: 403, code, .. } if code == "AccessDenied"),
            "{e:?}"
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    }

    /// An error chain shaped like object_store's for a refused S3 request: the outer
    /// element names the request (and so the key), its source is the server's answer.
    #[derive(Debug)]
    struct Request {
        url: String,
        answer: Answer,
    }
    #[derive(Debug)]
    struct Answer(String);

    impl std::fmt::Display for Request {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "Error performing GET {} in 3ms - {}",
                self.url, self.answer
            )
        }
    }
    impl std::error::Error for Request {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.answer)
        }
    }
    impl std::fmt::Display for Answer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Server returned non-2xx status code: {}", self.0)
        }
    }
    impl std::error::Error for Answer {}

    fn request(key: &str, answer: &str) -> Box<Request> {
        Box::new(Request {
            url: format!("http://127.0.0.1:8333/bucket/{key}"),
            answer: Answer(answer.to_string()),
        })
    }

    fn body(code: &str, message: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
             <Message>{message}</Message><RequestId>18ECBB4A416BC24F</RequestId></Error>"
        )
    }

    #[test]
    fn a_missing_key_named_like_an_error_code_is_not_found() {
        for name in [
            "RequestTimeTooSkewed",
            "NoSuchBucket",
            "PermanentRedirect",
            "AccessDenied",
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
        ] {
            let key = format!("mask/{name}/x.png");
            let e = object_store::Error::NotFound {
                path: key.clone(),
                source: request(
                    &key,
                    &format!("404 Not Found: {}", body("NoSuchKey", "no such key")),
                ),
            };
            let e = Error::from_store(&Backend::of(Provider::S3), &key, e);
            assert!(matches!(e, Error::NotFound { .. }), "{name}: {e:?}");
            // A HEAD's 404 has no body at all.
            let e = object_store::Error::NotFound {
                path: key.clone(),
                source: request(&key, "404 Not Found: "),
            };
            let e = Error::from_store(&Backend::of(Provider::S3), &key, e);
            assert!(matches!(e, Error::NotFound { .. }), "{name}: {e:?}");
        }
    }

    #[test]
    fn the_code_names_a_missing_bucket_clock_skew_and_credentials() {
        type Expected = fn(&Error) -> bool;
        let cases: [(&str, &str, Expected); 5] = [
            ("404 Not Found", "NoSuchBucket", |e| {
                matches!(e, Error::BucketMissing { .. })
            }),
            ("403 Forbidden", "RequestTimeTooSkewed", |e| {
                matches!(e, Error::ClockSkew { .. })
            }),
            ("403 Forbidden", "SignatureDoesNotMatch", |e| {
                matches!(e, Error::CredentialsRejected { .. })
            }),
            ("403 Forbidden", "InvalidAccessKeyId", |e| {
                matches!(e, Error::CredentialsRejected { .. })
            }),
            ("403 Forbidden", "AccessDenied", |e| {
                matches!(e, Error::PermissionDenied { .. })
            }),
        ];
        for (status, code, expected) in cases {
            let source = request("mask/a.png", &format!("{status}: {}", body(code, "text")));
            let e = if status.starts_with("404") {
                object_store::Error::NotFound {
                    path: "mask/a.png".into(),
                    source,
                }
            } else {
                object_store::Error::PermissionDenied {
                    path: "mask/a.png".into(),
                    source,
                }
            };
            let e = Error::from_store(&Backend::of(Provider::S3), "mask/a.png", e);
            assert!(expected(&e), "{code}: {e:?}");
        }
    }

    #[test]
    fn an_unknown_refusal_is_reported_with_its_code_and_status() {
        let e = object_store::Error::PermissionDenied {
            path: "mask/a.png".into(),
            source: request(
                "mask/a.png",
                &format!(
                    "403 Forbidden: {}",
                    body("NotSignedUp", "Your account is not signed up")
                ),
            ),
        };
        let e = Error::from_store(&Backend::of(Provider::S3), "mask/a.png", e);
        assert!(
            matches!(&e, Error::Refused { status: 403, code, .. } if code == "NotSignedUp"),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(text.contains("403 NotSignedUp"), "{text}");
        assert!(!text.contains("s3:ListBucket"), "{text}");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    }

    #[test]
    fn region_errors_name_the_bucket_region() {
        let e = object_store::Error::Generic {
            store: "S3",
            source: request(
                "mask/",
                "400 Bad Request: <Error><Code>AuthorizationHeaderMalformed</Code>\
                 <Message>the region 'us-east-1' is wrong; expecting 'ap-northeast-2'</Message>\
                 <Region>ap-northeast-2</Region></Error>",
            ),
        };
        match Error::from_store(&Backend::of(Provider::S3), "mask/", e) {
            Error::RegionMismatch { expected, .. } => {
                assert_eq!(expected.as_deref(), Some("ap-northeast-2"))
            }
            other => panic!("{other:?}"),
        }
        let e = object_store::Error::Generic {
            store: "S3",
            source: request("mask/PermanentRedirect/a", "301 Moved Permanently: "),
        };
        assert!(matches!(
            Error::from_store(&Backend::of(Provider::S3), "mask/PermanentRedirect/a", e),
            Error::RegionMismatch { .. }
        ));
    }

    #[test]
    fn ranges_are_client_errors_from_the_status_or_object_store() {
        let e = object_store::Error::Generic {
            store: "S3",
            source: request("mask/a", "416 Range Not Satisfiable: "),
        };
        let e = Error::from_store(&Backend::of(Provider::S3), "mask/a", e);
        assert_eq!(e.kind(), ErrorKind::InvalidRange, "{e:?}");
        // The in-memory store's own range error.
        let memory = object_store::Error::Generic {
            store: "InMemory",
            source: "Wanted range starting at 10, but object was only 4 bytes long".into(),
        };
        let e = Error::from_store(&Backend::of(Provider::Memory), "mask/a", memory);
        assert_eq!(e.kind(), ErrorKind::InvalidRange, "{e:?}");
        assert!(e.is_client_error());
    }

    #[test]
    fn a_401_is_about_credentials_and_altered_bytes_are_the_backends_fault() {
        let e = object_store::Error::Generic {
            store: "S3",
            source: request(
                "mask/a",
                "401 Unauthorized: <Error><Code>Weird</Code></Error>",
            ),
        };
        assert_eq!(
            Error::from_store(&Backend::of(Provider::S3), "mask/a", e).kind(),
            ErrorKind::Credentials
        );
        let e = object_store::Error::Generic {
            store: "S3",
            source: request(
                "mask/a",
                &format!("400 Bad Request: {}", body("BadDigest", "md5")),
            ),
        };
        assert_eq!(
            Error::from_store(&Backend::of(Provider::S3), "mask/a", e).kind(),
            ErrorKind::Internal
        );
    }

    #[test]
    fn a_server_error_without_a_code_is_the_backends_fault() {
        let e = object_store::Error::Generic {
            store: "S3",
            source: request("mask/a", "500 Internal Server Error: oops"),
        };
        let e = Error::from_store(&Backend::of(Provider::S3), "mask/a", e);
        assert_eq!(e.kind(), ErrorKind::Internal, "{e:?}");
        let e = object_store::Error::Generic {
            store: "S3",
            source: request(
                "mask/a",
                &format!("503 Service Unavailable: {}", body("SlowDown", "slow")),
            ),
        };
        assert_eq!(
            Error::from_store(&Backend::of(Provider::S3), "mask/a", e).kind(),
            ErrorKind::Unavailable
        );
    }

    #[test]
    fn an_internal_error_is_the_server_failing_not_unreachable() {
        let e = object_store::Error::Generic {
            store: "S3",
            source: request(
                "mask/a",
                &format!(
                    "500 Internal Server Error: {}",
                    body("InternalError", "We encountered an internal error.")
                ),
            ),
        };
        let e = Error::from_store(&Backend::of(Provider::S3), "mask/a", e);
        assert!(matches!(e, Error::ServerFailed { .. }), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Internal);
        let config = maskstore_core::Config::s3("pacs-masks-dev", "us-east-1").unwrap();
        let d = crate::advice::diagnose(Some(crate::layers::Operation::List), &e, &config);
        for text in [e.to_string(), d.cause.clone(), d.fix.clone()] {
            assert!(
                !text.contains("unreachable") && !text.contains("cannot reach"),
                "{text}"
            );
        }
        assert!(
            d.cause.contains("failed on its side") && d.cause.contains("InternalError"),
            "{d:?}"
        );
    }

    #[test]
    fn a_missing_credential_chain_is_read_from_the_request_not_the_key() {
        let chain = object_store::Error::Generic {
            store: "S3",
            source: Box::new(Request {
                url: "http://169.254.169.254/latest/api/token".to_string(),
                answer: Answer("500 Internal Server Error: ".to_string()),
            }),
        };
        assert!(matches!(
            Error::from_store(&Backend::of(Provider::S3), "mask/a", chain),
            Error::CredentialsRejected { .. }
        ));
        let key = "mask/169.254.169.254/a";
        let e = object_store::Error::Generic {
            store: "S3",
            source: request(key, "500 Internal Server Error: "),
        };
        assert_eq!(
            Error::from_store(&Backend::of(Provider::S3), key, e).kind(),
            ErrorKind::Internal
        );
    }

    #[test]
    fn local_errors_caused_by_the_request_are_client_kinds() {
        let e: object_store::Error = LocalError::UnderAnObject {
            key: "mask/a/b".into(),
            object: "mask/a".into(),
        }
        .into();
        assert_eq!(
            Error::from_store(&Backend::of(Provider::Local), "mask/a/b", e).kind(),
            ErrorKind::Conflict
        );
        let e: object_store::Error = LocalError::io(
            "mask/x",
            std::io::Error::from_raw_os_error(36), // ENAMETOOLONG
        )
        .into();
        assert_eq!(
            Error::from_store(&Backend::of(Provider::Local), "mask/x", e).kind(),
            ErrorKind::InvalidInput
        );
        let e: object_store::Error = LocalError::io(
            "mask/x",
            std::io::Error::from_raw_os_error(13), // EACCES
        )
        .into();
        assert_eq!(
            Error::from_store(&Backend::of(Provider::Local), "mask/x", e).kind(),
            ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn server_text_reaches_no_message_raw() {
        let hostile = "Denied\u{1b}]0;owned\u{7}\r\nforged\u{9b}31m\u{202e}";
        let refusal = |status: &str, code: &str| {
            let body = format!("<Error><Code>{code}</Code><Message>{hostile}</Message></Error>");
            object_store::Error::Generic {
                store: "S3",
                source: request("mask/a", &format!("{status}: {body}")),
            }
        };
        for (status, code) in [
            ("403 Forbidden", hostile),
            ("403 Forbidden", "AccessDenied"),
            ("301 Moved Permanently", "PermanentRedirect"),
            ("500 Internal Server Error", hostile),
            ("503 Service Unavailable", "SlowDown"),
        ] {
            let e = Error::from_store(&Backend::of(Provider::S3), "mask/a", refusal(status, code));
            let text = e.to_string();
            for c in ['\u{1b}', '\u{7}', '\r', '\n', '\u{9b}', '\u{202e}'] {
                assert!(!text.contains(c), "{status} {code:?}: {text}");
            }
            assert!(text.contains("\\u{1b}") || text.contains("\\r"), "{text}");
        }
    }

    #[test]
    fn a_misbehaving_answer_is_its_own_error_naming_the_request() {
        use crate::http_client::{Misanswer, Problem};
        let misanswer = Misanswer {
            request: "GET http://store.example:9000/bucket".to_string(),
            problem: Problem::TooLong {
                status: http::StatusCode::OK,
                limit: 32 * 1024 * 1024,
                announced: None,
            },
        };
        let http = object_store::client::HttpError::new(
            object_store::client::HttpErrorKind::Decode,
            misanswer,
        );
        let e = object_store::Error::Generic {
            store: "S3",
            source: Box::new(http),
        };
        let e = Error::from_store(&Backend::of(Provider::S3), "mask/", e);
        assert!(matches!(e, Error::Misbehaved { .. }), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Internal);
        let text = e.to_string();
        assert!(
            text.contains("GET http://store.example:9000/bucket answered 200 OK"),
            "{text}"
        );
        assert!(
            text.contains("32 MiB") && text.contains("object_storage.endpoint"),
            "{text}"
        );
    }

    #[test]
    fn every_kind_has_one_outcome() {
        let client = [
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Precondition,
            ErrorKind::NotModified,
            ErrorKind::InvalidInput,
            ErrorKind::InvalidRange,
            ErrorKind::PermissionDenied,
            ErrorKind::Credentials,
            ErrorKind::Misconfigured,
        ];
        assert!(client.iter().all(|k| k.is_client_error()));
        for server in [
            ErrorKind::Unavailable,
            ErrorKind::Unsupported,
            ErrorKind::Internal,
        ] {
            assert!(!server.is_client_error(), "{server}");
        }
    }
}
