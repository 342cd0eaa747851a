//! `POST /o`: browser form uploads, with S3's form shape (the fields, then the file as
//! `file`; `key` may end in `${filename}`), under a policy the gateway signed
//! ([`maskstore_backends::Storage::signed_post`]).
//!
//! The form streams: the fields are read within a small budget (each at most
//! [`MAX_POLICY_BYTES`], at most [`MAX_FORM_FIELDS`] of them, [`MAX_FORM_FIELDS_BYTES`] in
//! all, part headers included, within `gateway.header_timeout`), the policy's signature,
//! expiry and conditions are checked when the file's part begins, one of the gateway's
//! and of the client's upload slots is taken then, and the file streams into the store
//! under the policy's length range, the gateway's size limit and idle timeout, and a
//! bound SHA-256; a file that breaks one is aborted, so nothing is stored. The multipart
//! parsing is `multer`'s (axum's own multipart extractor is built on it): it streams part
//! by part and never holds a whole part unless asked.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use maskstore_backends::signing::{
    FILE_FIELD, FILENAME_PLACEHOLDER, GATEWAY_SHA256_FIELD, GATEWAY_SIGNATURE_FIELD,
    MAX_POLICY_BYTES, POLICY_FIELD, PostPolicy,
};
use maskstore_backends::{ContentSha256, PutOutcome, Sha256Hasher, UploadShape, WriteOptions};
use maskstore_core::ObjectKey;

use super::headers::{harden, quote, set};
use super::upload::{UPLOAD_BUFFER_PART_SIZE, upload_slot_of};
use crate::reply::{RefusedBeforeStore, Unsigned, error_reply, refuse, refuse_unsigned, reply};
use crate::routers::Gateway;
use crate::shares::client_of;

/// The most fields a form may send before its file.
pub const MAX_FORM_FIELDS: usize = 32;
/// The most bytes a form may send before its file begins (S3 allows 20 KB of fields; this
/// leaves room for part headers and a maximal policy).
pub const MAX_FORM_FIELDS_BYTES: u64 = 64 * 1024;

/// The handler of `POST /o`: whatever the answer, it carries the object responses'
/// hardening headers.
pub(crate) async fn form(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let mut response = form_response(&gateway, request).await;
    if let Some(RefusedBeforeStore(outcome)) = response.extensions().get().copied() {
        // As for `/o/<key>`: a refusal after the policy's signature held is one of the
        // store's clients' errors, counted by the alarms.
        gateway.storage.monitor().record(outcome);
    }
    harden(response.headers_mut());
    response
}

async fn form_response(gateway: &Gateway, request: Request) -> Response {
    if request.method() != Method::POST {
        let mut response = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "a form upload is a POST of multipart/form-data",
        );
        // RFC 9110 (15.5.6): a 405 names the methods the resource takes.
        set(response.headers_mut(), header::ALLOW, "POST");
        return response;
    }
    let Some(boundary) = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
    else {
        return refuse_unsigned(
            StatusCode::BAD_REQUEST,
            Unsigned::Signature,
            "a form upload is multipart/form-data with a boundary",
        );
    };
    let limits = &gateway.limits;
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| {
        n > limits
            .max_upload_bytes
            .saturating_add(MAX_FORM_FIELDS_BYTES)
    }) {
        return refuse_unsigned(
            StatusCode::PAYLOAD_TOO_LARGE,
            Unsigned::Signature,
            super::upload::too_large(limits.max_upload_bytes),
        );
    }
    // The upload slot is taken once the policy's signature held (in `store_file`): before
    // that the request is anyone's, and holds only its connection.
    let client = client_of(&request, &limits.trusted_proxies);
    let deadline = tokio::time::Instant::now() + limits.request_timeout;
    match tokio::time::timeout_at(deadline, receive(gateway, request, boundary, client)).await {
        Ok(response) => response,
        // Dropping the work drops the upload in progress: nothing of it is kept.
        Err(_) => reply(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the form took longer than the gateway allows ({} s, gateway.request_timeout)",
                limits.request_timeout.as_secs()
            ),
        ),
    }
}

/// Why the body failed below the multipart parser; the parser reports only that its
/// stream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFailure {
    /// Nothing arrived for `gateway.body_idle_timeout`.
    Stalled,
    /// The fields before the file came to more than [`MAX_FORM_FIELDS_BYTES`].
    FieldsTooLarge,
    /// The body itself failed (cut off).
    Broken,
}

/// What the body stream below the parser shares with the handler: whether the file has
/// begun (the fields' budget no longer applies), and why the body failed.
#[derive(Clone, Default)]
struct BodyState {
    file_started: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<BodyFailure>>>,
}

impl BodyState {
    fn fail(&self, why: BodyFailure, message: String) -> std::io::Result<Bytes> {
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(why);
        }
        Err(std::io::Error::other(message))
    }

    fn failure(&self) -> Option<BodyFailure> {
        self.failure.lock().ok().and_then(|slot| *slot)
    }
}

/// The request body as the parser reads it: each read within the idle timeout, and, until
/// the file's part has begun, within the fields' budget. The parser asks for more only
/// when what it holds does not complete the part it reads, so a form whose fields fit the
/// budget is never cut by a large first chunk of its file.
fn bounded_body(
    gateway: &Gateway,
    request: Request,
    state: BodyState,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let idle = gateway.limits.body_idle_timeout;
    let data = request.into_body().into_data_stream();
    futures::stream::unfold((data, 0u64, false), move |(mut data, received, done)| {
        let state = state.clone();
        async move {
            if done {
                return None;
            }
            if !state.file_started.load(Ordering::Acquire) && received > MAX_FORM_FIELDS_BYTES {
                let message = format!(
                    "the form sends more than {MAX_FORM_FIELDS_BYTES} bytes before its file; \
                         send the fields the application gave, then the file"
                );
                return Some((
                    state.fail(BodyFailure::FieldsTooLarge, message),
                    (data, received, true),
                ));
            }
            match tokio::time::timeout(idle, data.next()).await {
                Err(_) => {
                    let message = format!(
                        "the form sent nothing for {} s (gateway.body_idle_timeout)",
                        idle.as_secs()
                    );
                    Some((
                        state.fail(BodyFailure::Stalled, message),
                        (data, received, true),
                    ))
                }
                Ok(None) => None,
                Ok(Some(Err(e))) => {
                    let message = format!("the request body failed: {e}");
                    Some((
                        state.fail(BodyFailure::Broken, message),
                        (data, received, true),
                    ))
                }
                Ok(Some(Ok(chunk))) => {
                    let received = received + chunk.len() as u64;
                    Some((Ok(chunk), (data, received, false)))
                }
            }
        }
    })
}

/// Reads the fields, then hands the file's part to [`store_file`].
async fn receive(
    gateway: &Gateway,
    request: Request,
    boundary: String,
    client: Option<IpAddr>,
) -> Response {
    let state = BodyState::default();
    let body = bounded_body(gateway, request, state.clone());
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .per_field(MAX_POLICY_BYTES as u64)
            .for_field(FILE_FIELD, u64::MAX),
    );
    let mut multipart = multer::Multipart::with_constraints(body, boundary, constraints);
    // Until the policy's signature is checked the request is anyone's: its fields are held
    // to the time a request's head is (gateway.header_timeout), not to the upload's.
    let limit = gateway.limits.header_timeout;
    match tokio::time::timeout(limit, fields_before_file(&mut multipart, &state)).await {
        Ok(Ok((fields, file))) => store_file(gateway, fields, file, &state, client).await,
        Ok(Err(refusal)) => *refusal,
        Err(_) => form_refused(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the form took longer than {} s (gateway.header_timeout) to send the fields \
                 before its file; send them at once, then the file",
                limit.as_secs()
            ),
        ),
    }
}

/// The fields before the file, and the file's part (its start marked in `state`); or the
/// refusal naming what was wrong.
async fn fields_before_file(
    multipart: &mut multer::Multipart<'static>,
    state: &BodyState,
) -> Result<(Vec<(String, String)>, multer::Field<'static>), Box<Response>> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut fields_bytes = 0usize;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => {
                return Err(Box::new(form_refused(
                    StatusCode::BAD_REQUEST,
                    "the form has no file field: send the fields, then the file as \"file\"",
                )));
            }
            Err(e) => return Err(Box::new(parse_failure(&e, state.failure()))),
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == FILE_FIELD {
            state.file_started.store(true, Ordering::Release);
            return Ok((fields, field));
        }
        check_field_name(&name, &fields)?;
        match field.text().await {
            Ok(value) => {
                fields_bytes += name.len() + value.len();
                fields.push((name.to_ascii_lowercase(), value));
            }
            Err(e) => return Err(Box::new(parse_failure(&e, state.failure()))),
        }
        if fields_bytes as u64 > MAX_FORM_FIELDS_BYTES {
            return Err(Box::new(parse_failure_of(BodyFailure::FieldsTooLarge)));
        }
    }
}

/// A field's name must be new, and the field one of at most [`MAX_FORM_FIELDS`].
fn check_field_name(name: &str, fields: &[(String, String)]) -> Result<(), Box<Response>> {
    if name.is_empty() {
        return Err(Box::new(form_refused(
            StatusCode::BAD_REQUEST,
            "the form has a part without a field name",
        )));
    }
    if fields.len() >= MAX_FORM_FIELDS {
        return Err(Box::new(form_refused(
            StatusCode::BAD_REQUEST,
            format!("the form sends more than {MAX_FORM_FIELDS} fields before its file"),
        )));
    }
    if fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
        // Which of two values the policy was checked against would be a guess: refused.
        return Err(Box::new(form_refused(
            StatusCode::BAD_REQUEST,
            format!(
                "the form sends the field {:?} twice; send each field once",
                maskstore_core::shown_cut(name, 64)
            ),
        )));
    }
    Ok(())
}

/// The answer to a form the parser could not read, or whose body broke below it.
fn parse_failure(e: &multer::Error, failure: Option<BodyFailure>) -> Response {
    if let Some(failure) = failure {
        return parse_failure_of(failure);
    }
    match e {
        multer::Error::FieldSizeExceeded { field_name, limit } => form_refused(
            StatusCode::BAD_REQUEST,
            format!(
                "the form field {:?} is longer than {limit} bytes",
                maskstore_core::shown_cut(field_name.as_deref().unwrap_or(""), 64)
            ),
        ),
        other => form_refused(
            StatusCode::BAD_REQUEST,
            format!("the form is not readable multipart/form-data: {other}"),
        ),
    }
}

/// The answer to a form whose body broke a bound below the parser.
fn parse_failure_of(failure: BodyFailure) -> Response {
    match failure {
        BodyFailure::Stalled => reply(
            StatusCode::REQUEST_TIMEOUT,
            "the form sent nothing for too long (gateway.body_idle_timeout)",
        ),
        BodyFailure::FieldsTooLarge => form_refused(
            StatusCode::BAD_REQUEST,
            format!(
                "the form sends more than {MAX_FORM_FIELDS_BYTES} bytes before its file; send \
                 the fields the application gave, then the file"
            ),
        ),
        BodyFailure::Broken => form_refused(StatusCode::BAD_REQUEST, "the request body failed"),
    }
}

/// A refusal before the policy's signature held: counted apart from the store's alarms.
fn form_refused(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    refuse_unsigned(status, Unsigned::Signature, reason)
}

/// What a form that passed its policy uploads: where, with which type, held to what.
struct Admitted {
    key: ObjectKey,
    content_type: Option<String>,
    min: u64,
    max: u64,
    sha256: Option<ContentSha256>,
}

/// The policy's signature, expiry and conditions checked against the fields (the key's
/// `${filename}` replaced by the file's name), or the refusal naming what was wrong.
fn admit(
    gateway: &Gateway,
    mut fields: Vec<(String, String)>,
    filename: Option<&str>,
) -> Result<Admitted, Box<Response>> {
    let take = |fields: &mut Vec<(String, String)>, name: &str| {
        let at = fields.iter().position(|(n, _)| n == name)?;
        Some(fields.remove(at).1)
    };
    let missing = |name: &str| {
        Box::new(form_refused(
            StatusCode::BAD_REQUEST,
            format!(
                "the form has no {name:?} field before its file; send the fields the \
                 application gave, then the file last"
            ),
        ))
    };
    let policy_text = take(&mut fields, POLICY_FIELD).ok_or_else(|| missing(POLICY_FIELD))?;
    let signature = take(&mut fields, GATEWAY_SIGNATURE_FIELD)
        .ok_or_else(|| missing(GATEWAY_SIGNATURE_FIELD))?;
    let signer = gateway
        .storage
        .gateway_signer()
        .expect("objects_router() only serves storages with a gateway signer");
    if !signer.verify_policy(&policy_text, &signature) {
        return Err(Box::new(form_refused(
            StatusCode::FORBIDDEN,
            "the policy's signature does not match: the policy was changed or signed with \
             another secret",
        )));
    }
    let policy = PostPolicy::from_base64(&policy_text)
        .map_err(|why| Box::new(form_refused(StatusCode::BAD_REQUEST, why)))?;
    if chrono::Utc::now() > policy.expiration {
        return Err(Box::new(form_refused(
            StatusCode::FORBIDDEN,
            format!(
                "the form's policy expired at {}; ask the application for a new form",
                policy.expiration.to_rfc3339()
            ),
        )));
    }
    substitute_filename(&mut fields, filename)?;
    policy
        .check(&fields)
        .map_err(|why| Box::new(refuse(StatusCode::FORBIDDEN, why)))?;
    admitted(gateway, &policy, &fields)
}

/// The key's `${filename}` becomes the name of the file the form sends, as on S3.
fn substitute_filename(
    fields: &mut [(String, String)],
    filename: Option<&str>,
) -> Result<(), Box<Response>> {
    let Some((_, key)) = fields.iter_mut().find(|(n, _)| n == "key") else {
        return Ok(());
    };
    if !key.contains(FILENAME_PLACEHOLDER) {
        return Ok(());
    }
    let Some(name) = filename.filter(|n| !n.is_empty()) else {
        return Err(Box::new(form_refused(
            StatusCode::BAD_REQUEST,
            "the key takes the file's name (${filename}), and the file part has none",
        )));
    };
    *key = key.replace(FILENAME_PLACEHOLDER, name);
    Ok(())
}

/// What the fields of a form that met its policy ask for, within the gateway's limits.
fn admitted(
    gateway: &Gateway,
    policy: &PostPolicy,
    fields: &[(String, String)],
) -> Result<Admitted, Box<Response>> {
    let value = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let key_text = value("key").unwrap_or_default();
    let key =
        ObjectKey::parse(key_text).map_err(|e| Box::new(refuse(StatusCode::BAD_REQUEST, e)))?;
    let sha256 = match value(GATEWAY_SHA256_FIELD) {
        Some(text) => Some(
            ContentSha256::parse(&text)
                .map_err(|e| Box::new(refuse(StatusCode::BAD_REQUEST, e)))?,
        ),
        None => None,
    };
    let (min, max) = policy
        .length_range()
        .map_or((0, u64::MAX), |r| (*r.start(), *r.end()));
    Ok(Admitted {
        key,
        content_type: value("content-type"),
        min,
        max: max.min(gateway.limits.max_upload_bytes),
        sha256,
    })
}

/// Why the file's part was refused while it streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileFailure {
    /// Longer than the policy's range allows.
    OverRange(u64),
    /// Shorter than the policy's range allows.
    UnderRange(u64),
    /// Not the SHA-256 the policy binds.
    Checksum(String),
    /// The body failed below the parser.
    Body,
}

/// Checks the form's policy, takes one of the gateway's and of `client`'s upload slots,
/// then streams its file into the store.
async fn store_file(
    gateway: &Gateway,
    fields: Vec<(String, String)>,
    file: multer::Field<'static>,
    state: &BodyState,
    client: Option<IpAddr>,
) -> Response {
    let admitted = match admit(gateway, fields, file.file_name()) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    let _slot = match upload_slot_of(gateway, client) {
        Ok(slot) => slot,
        Err(busy) => return *busy,
    };
    let options = WriteOptions {
        content_type: admitted.content_type.clone(),
        upload: UploadShape {
            part_size: Some(UPLOAD_BUFFER_PART_SIZE),
            max_in_flight: None,
        },
        ..Default::default()
    };
    let failure = Arc::new(Mutex::new(None));
    let body = guard_file(file, &admitted, Arc::clone(&failure));
    let outcome = gateway
        .storage
        .upload_stream(&admitted.key, &options, Box::pin(body))
        .await;
    let failed = failure.lock().ok().and_then(|f| f.clone());
    answer(
        outcome,
        failed,
        state.failure(),
        gateway.limits.max_upload_bytes,
    )
}

/// The file's part as the store reads it: chunks pass on while they stay within the range
/// and the limit; at its end, its length and SHA-256 are checked before the upload
/// completes, so a refused file aborts it.
fn guard_file(
    file: multer::Field<'static>,
    admitted: &Admitted,
    failure: Arc<Mutex<Option<FileFailure>>>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let rules = (admitted.min, admitted.max, admitted.sha256);
    let hasher = admitted.sha256.map(|_| Sha256Hasher::default());
    futures::stream::unfold(
        (file, 0u64, hasher, false),
        move |(mut file, received, mut hasher, done)| {
            let failure = Arc::clone(&failure);
            async move {
                if done {
                    return None;
                }
                let fail = |why: FileFailure| {
                    if let Ok(mut slot) = failure.lock() {
                        slot.get_or_insert(why.clone());
                    }
                    Err(std::io::Error::other(format!("{why:?}")))
                };
                let step = match file.next().await {
                    None => file_end(rules, received, hasher.take()).map(|()| None),
                    Some(Err(_)) => Err(FileFailure::Body),
                    Some(Ok(chunk)) => file_chunk(rules, received, &chunk, &mut hasher)
                        .map(|received| Some((chunk, received))),
                };
                match step {
                    Ok(None) => None,
                    Ok(Some((chunk, received))) => {
                        Some((Ok(chunk), (file, received, hasher, false)))
                    }
                    Err(why) => Some((fail(why), (file, received, None, true))),
                }
            }
        },
    )
}

type FileRules = (u64, u64, Option<ContentSha256>);

fn file_chunk(
    (_, max, _): FileRules,
    received: u64,
    chunk: &Bytes,
    hasher: &mut Option<Sha256Hasher>,
) -> Result<u64, FileFailure> {
    let received = received + chunk.len() as u64;
    if received > max {
        return Err(FileFailure::OverRange(max));
    }
    if let Some(hasher) = hasher {
        hasher.update(chunk);
    }
    Ok(received)
}

fn file_end(
    (min, _, sha256): FileRules,
    received: u64,
    hasher: Option<Sha256Hasher>,
) -> Result<(), FileFailure> {
    if received < min {
        return Err(FileFailure::UnderRange(min));
    }
    if let (Some(hasher), Some(bound)) = (hasher, sha256) {
        let sent = hasher.finish();
        if sent != bound {
            return Err(FileFailure::Checksum(format!(
                "the file's SHA-256 is {}, not the {} the form's policy binds; nothing was stored",
                sent.hex(),
                bound.hex()
            )));
        }
    }
    Ok(())
}

/// The answer once the store is done: 204 with the ETag (S3's answer to a form without
/// `success_action_status`), or what the file or the store failed on.
fn answer(
    outcome: maskstore_backends::Result<PutOutcome>,
    file: Option<FileFailure>,
    body: Option<BodyFailure>,
    gateway_max: u64,
) -> Response {
    match (outcome, file, body) {
        (Ok(outcome), _, _) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            if let Some(etag) = outcome.etag {
                set(response.headers_mut(), header::ETAG, &quote(&etag));
            }
            response
        }
        (Err(_), _, Some(BodyFailure::Stalled)) => reply(
            StatusCode::REQUEST_TIMEOUT,
            "the form sent nothing for too long (gateway.body_idle_timeout); nothing was stored",
        ),
        (Err(_), Some(FileFailure::OverRange(max)), _) if max >= gateway_max => reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            super::upload::too_large(gateway_max),
        ),
        (Err(_), Some(FileFailure::OverRange(max)), _) => reply(
            StatusCode::BAD_REQUEST,
            format!(
                "EntityTooLarge: the file is larger than the {max} bytes the form's policy \
                 allows; nothing was stored"
            ),
        ),
        (Err(_), Some(FileFailure::UnderRange(min)), _) => reply(
            StatusCode::BAD_REQUEST,
            format!(
                "EntityTooSmall: the file is smaller than the {min} bytes the form's policy \
                 wants; nothing was stored"
            ),
        ),
        (Err(_), Some(FileFailure::Checksum(why)), _) => reply(StatusCode::BAD_REQUEST, why),
        (Err(_), Some(FileFailure::Body), _) => reply(
            StatusCode::BAD_REQUEST,
            "the form's body broke off or is not valid multipart/form-data; nothing was stored",
        ),
        (Err(e), None, _) => error_reply(&e),
    }
}
