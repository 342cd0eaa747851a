//! SigV4 query presigning of one object's URL ("Authenticating Requests: Using Query
//! Parameters" of the S3 API reference), binding the headers a signed upload promises.
//!
//! Our own, on `hmac` and `sha2`, rather than object_store's `Signer` (which refuses to
//! sign `content-length`) or the `aws-sigv4` crate (about 70 crates, and it derives the
//! signing key anew for every URL): the derived key changes once a day per region and
//! credential, so it is derived once and kept, and a URL costs one SHA-256 of the
//! canonical request and one HMAC.
//!
//! The key is URI-encoded as S3 canonicalises it (every byte but `A-Za-z0-9-._~` and `/`
//! as `%XY`), once: the encoded path in the URL is the canonical URI.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use hmac::{Hmac, Mac};
use maskstore_core::S3_MAX_PRESIGN_SECS;
use object_store::aws::{AwsCredential, AwsCredentialProvider};
use object_store::path::Path;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

use crate::checksum::CHECKSUM_METADATA;
use crate::providers::Backend;
use crate::service_urls::{ServiceSigner, ServiceUrl};
use crate::signing::{PostPolicy, SignOptions, SignedMethod, SignedPost};
use crate::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// Bytes kept as they are in a query value: the unreserved characters of RFC 3986.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Bytes kept as they are in an object key: the unreserved ones and `/`.
const KEY: &AsciiSet = &UNRESERVED.remove(b'/');

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Where a bucket's objects are addressed: `<scheme>://<host[:port]><base path>/<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port]`, the port only when it is not the scheme's default.
    origin: String,
    /// The `Host` header a client sends to `origin` (the port as in `origin`).
    host: String,
    /// The path before the key, URI-encoded, without a trailing `/`: `/<bucket>` in path
    /// style, empty in virtual-hosted style.
    base_path: String,
}

impl Endpoint {
    /// The endpoint of the bucket at `url` (object_store's bucket endpoint: the bucket's
    /// virtual host, or the endpoint with `/<bucket>` after it).
    pub(crate) fn parse(url: &str) -> std::result::Result<Endpoint, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{url:?} is not an http or https URL"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("the endpoint carries a user name or password".to_string());
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(format!("{url:?} has a query or fragment"));
        }
        let Some(host) = parsed.host_str() else {
            return Err(format!("{url:?} names no host"));
        };
        let host = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let path = percent_decode_str(parsed.path().trim_end_matches('/'))
            .decode_utf8()
            .map_err(|_| format!("the path of {url:?} is not UTF-8"))?;
        Ok(Endpoint {
            origin: format!("{}://{host}", parsed.scheme()),
            host,
            base_path: utf8_percent_encode(&path, KEY).to_string(),
        })
    }
}

/// The date and time of a signature, as SigV4 writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    /// `YYYYMMDDTHHMMSSZ`; the first 8 bytes are the scope's date.
    datetime: [u8; 16],
}

impl Stamp {
    fn of(now: DateTime<Utc>) -> Stamp {
        fn digits(out: &mut [u8], mut n: u32) {
            for byte in out.iter_mut().rev() {
                *byte = b'0' + (n % 10) as u8;
                n /= 10;
            }
        }
        let mut datetime = *b"00000000T000000Z";
        digits(&mut datetime[0..4], now.year().clamp(0, 9999) as u32);
        digits(&mut datetime[4..6], now.month());
        digits(&mut datetime[6..8], now.day());
        digits(&mut datetime[9..11], now.hour());
        digits(&mut datetime[11..13], now.minute());
        digits(&mut datetime[13..15], now.second());
        Stamp { datetime }
    }

    fn datetime(&self) -> &str {
        std::str::from_utf8(&self.datetime).expect("ASCII digits")
    }

    fn date(&self) -> &str {
        &self.datetime()[..8]
    }
}

/// What one credential on one date in one region signs with: the derived signing key
/// (already keyed into an HMAC), and the scope parameters written into every URL.
struct Derived {
    credential: Arc<AwsCredential>,
    date: [u8; 8],
    mac: HmacSha256,
    /// `<date>/<region>/s3/aws4_request`.
    scope: String,
    /// The `X-Amz-Credential` value, encoded.
    credential_param: String,
    /// The `X-Amz-Security-Token` value, encoded.
    token_param: Option<String>,
}

impl Derived {
    fn new(credential: Arc<AwsCredential>, stamp: &Stamp, region: &str) -> Derived {
        let date = stamp.date();
        let hmac = |key: &[u8], data: &str| -> [u8; 32] {
            let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data.as_bytes());
            mac.finalize().into_bytes().into()
        };
        let secret = format!("AWS4{}", credential.secret_key);
        let k_date = hmac(secret.as_bytes(), date);
        let k_region = hmac(&k_date, region);
        let k_service = hmac(&k_region, "s3");
        let k_signing = hmac(&k_service, "aws4_request");
        let scope = format!("{date}/{region}/s3/aws4_request");
        let credential_param =
            utf8_percent_encode(&format!("{}/{scope}", credential.key_id), UNRESERVED).to_string();
        let token_param = credential
            .token
            .as_deref()
            .map(|token| utf8_percent_encode(token, UNRESERVED).to_string());
        Derived {
            date: stamp.datetime[..8].try_into().expect("8 bytes"),
            mac: HmacSha256::new_from_slice(&k_signing).expect("HMAC takes any key length"),
            scope,
            credential_param,
            token_param,
            credential,
        }
    }

    /// Whether this key signs for `credential` on `stamp`'s date. A rotated credential
    /// (the AWS chain's temporary ones) is a new `Arc` with other contents.
    fn serves(&self, credential: &Arc<AwsCredential>, stamp: &Stamp) -> bool {
        self.date[..] == stamp.datetime[..8]
            && (Arc::ptr_eq(&self.credential, credential)
                || (self.credential.key_id == credential.key_id
                    && self.credential.secret_key == credential.secret_key
                    && self.credential.token == credential.token))
    }
}

/// The headers a URL binds, besides `host`: sorted by name as SigV4 lists them, values in
/// canonical form (trimmed, inner runs of spaces as one).
///
/// A bound SHA-256 adds `x-amz-checksum-sha256` and `x-amz-meta-maskstore-checksum`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Bound<'a> {
    headers: Vec<(&'static str, Cow<'a, str>)>,
}

impl<'a> Bound<'a> {
    /// The headers `options` bind on `method`; bound headers promise what an upload
    /// carries, so only PUT takes them (checked by [`crate::Storage`] before).
    fn of(options: &'a SignOptions) -> Result<Bound<'a>> {
        let mut headers = Vec::new();
        if let Some(n) = options.content_length {
            headers.push(("content-length", Cow::Owned(n.to_string())));
        }
        if let Some(ct) = &options.content_type {
            let value = canonical_value(ct);
            if value.is_empty() {
                return Err(Error::InvalidMetadata {
                    name: "content-type".to_string(),
                    reason: "a content type is not blank; give one such as image/png".to_string(),
                });
            }
            headers.push(("content-type", value));
        }
        if let Some(digest) = &options.sha256 {
            // S3 verifies the body against this header and refuses it (400 BadDigest)
            // when it differs; signed, the client must send it unchanged (403 otherwise).
            headers.push(("x-amz-checksum-sha256", Cow::Owned(digest.base64())));
            // The same digest as maskstore's checksum, so the object an application's
            // browser uploads reads back verified like one maskstore wrote.
            headers.push(("x-amz-meta-maskstore-checksum", Cow::Owned(digest.stored())));
        }
        headers.sort_by_key(|(name, _)| *name);
        Ok(Bound { headers })
    }
}

/// A header value as SigV4 canonicalises it: trimmed, runs of spaces as one.
fn canonical_value(value: &str) -> Cow<'_, str> {
    let trimmed = value.trim_matches(' ');
    if !trimmed.contains("  ") {
        return Cow::Borrowed(trimmed);
    }
    Cow::Owned(
        trimmed
            .split(' ')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// A request ready to sign: its URL path and query, and SigV4's canonical request.
struct Draft {
    /// The encoded path: the canonical URI.
    uri: String,
    /// The query without the signature: the canonical query string.
    query: String,
    canonical: String,
}

fn draft(
    endpoint: &Endpoint,
    derived: &Derived,
    stamp: &Stamp,
    method: SignedMethod,
    key: &str,
    expires: u64,
    bound: &Bound<'_>,
) -> Draft {
    let mut uri = String::with_capacity(endpoint.base_path.len() + key.len() * 3 / 2 + 1);
    uri.push_str(&endpoint.base_path);
    uri.push('/');
    uri.extend(utf8_percent_encode(key, KEY));

    // The headers in name order: `host` sorts after `content-*`, before `x-amz-*`.
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(bound.headers.len() + 1);
    let mut host_placed = false;
    for (name, value) in &bound.headers {
        if !host_placed && *name > "host" {
            headers.push(("host", &endpoint.host));
            host_placed = true;
        }
        headers.push((name, value));
    }
    if !host_placed {
        headers.push(("host", &endpoint.host));
    }

    // Parameters in byte order of their names: Algorithm, Credential, Date, Expires,
    // Security-Token, SignedHeaders.
    let mut query = String::with_capacity(256);
    query.push_str("X-Amz-Algorithm=");
    query.push_str(ALGORITHM);
    query.push_str("&X-Amz-Credential=");
    query.push_str(&derived.credential_param);
    query.push_str("&X-Amz-Date=");
    query.push_str(stamp.datetime());
    query.push_str("&X-Amz-Expires=");
    query.push_str(&expires.to_string());
    if let Some(token) = &derived.token_param {
        query.push_str("&X-Amz-Security-Token=");
        query.push_str(token);
    }
    query.push_str("&X-Amz-SignedHeaders=");
    for (i, (name, _)) in headers.iter().enumerate() {
        if i > 0 {
            query.push_str("%3B");
        }
        query.push_str(name);
    }

    let mut canonical = String::with_capacity(uri.len() + query.len() + 128);
    canonical.push_str(method.as_str());
    canonical.push('\n');
    canonical.push_str(&uri);
    canonical.push('\n');
    canonical.push_str(&query);
    canonical.push('\n');
    for (name, value) in &headers {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(value);
        canonical.push('\n');
    }
    canonical.push('\n');
    for (i, (name, _)) in headers.iter().enumerate() {
        if i > 0 {
            canonical.push(';');
        }
        canonical.push_str(name);
    }
    canonical.push('\n');
    canonical.push_str(UNSIGNED_PAYLOAD);
    Draft {
        uri,
        query,
        canonical,
    }
}

/// The hex signature of `draft`.
fn signature(derived: &Derived, stamp: &Stamp, draft: &Draft) -> String {
    let hashed = Sha256::digest(draft.canonical.as_bytes());
    let mut mac = derived.mac.clone();
    mac.update(ALGORITHM.as_bytes());
    mac.update(b"\n");
    mac.update(&stamp.datetime);
    mac.update(b"\n");
    mac.update(derived.scope.as_bytes());
    mac.update(b"\n");
    mac.update(hex(&hashed).as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Presigns URLs to one bucket with the credentials of its S3 client, keeping the derived
/// signing key until the date or the credential changes.
pub(crate) struct Presigner {
    credentials: AwsCredentialProvider,
    region: String,
    endpoint: Endpoint,
    /// The bucket's name, for the `x-amz-copy-source` of a copy in place.
    bucket: String,
    derived: RwLock<Option<Arc<Derived>>>,
}

impl Presigner {
    /// A presigner for the bucket at `endpoint` in `region`, signing with what
    /// `credentials` gives (asked on every URL: the AWS chain rotates them).
    pub(crate) fn new(
        credentials: AwsCredentialProvider,
        region: &str,
        endpoint: Endpoint,
        bucket: &str,
    ) -> Presigner {
        Presigner {
            credentials,
            region: region.to_string(),
            endpoint,
            bucket: bucket.to_string(),
            derived: RwLock::new(None),
        }
    }

    /// The bucket's name.
    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `key` URI-encoded as S3 canonicalises it (`x-amz-copy-source` takes this form).
    pub(crate) fn encode_key(key: &str) -> String {
        utf8_percent_encode(key, KEY).to_string()
    }

    /// A URL granting `method` on `path` from `now` for `ttl` (1 s to 7 days); for PUT,
    /// the content type and length in `options` are signed headers the upload must send
    /// unchanged.
    pub(crate) async fn presign(
        &self,
        backend: &Backend,
        method: SignedMethod,
        path: &Path,
        now: DateTime<Utc>,
        ttl: Duration,
        options: &SignOptions,
    ) -> Result<String> {
        let expires = ttl.as_secs();
        if expires == 0 || expires > S3_MAX_PRESIGN_SECS {
            return Err(Error::InvalidTtl {
                requested: expires,
                max: S3_MAX_PRESIGN_SECS,
            });
        }
        let bound = Bound::of(options)?;
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| Error::from_store(backend, path.as_ref(), e))?;
        let stamp = Stamp::of(now);
        let derived = self.derived(credential, &stamp);
        Ok(self.url(&derived, &stamp, method, path.as_ref(), expires, &bound))
    }

    /// A URL granting `method` (no bound header) on the object named `name` exactly as
    /// the bucket holds it, for `ttl`: how an object whose name object_store's `Path`
    /// cannot hold (`a//b`, a control character) is read and deleted.
    pub(crate) async fn presign_name(
        &self,
        method: SignedMethod,
        name: &str,
        ttl: Duration,
    ) -> object_store::Result<String> {
        let credential = self.credentials.get_credential().await?;
        let stamp = Stamp::of(Utc::now());
        let derived = self.derived(credential, &stamp);
        let bound = Bound::default();
        Ok(self.url(&derived, &stamp, method, name, ttl.as_secs(), &bound))
    }

    fn derived(&self, credential: Arc<AwsCredential>, stamp: &Stamp) -> Arc<Derived> {
        {
            let cached = self.derived.read().unwrap_or_else(|e| e.into_inner());
            if let Some(derived) = cached.as_ref()
                && derived.serves(&credential, stamp)
            {
                return Arc::clone(derived);
            }
        }
        let fresh = Arc::new(Derived::new(credential, stamp, &self.region));
        *self.derived.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&fresh));
        fresh
    }

    fn url(
        &self,
        derived: &Derived,
        stamp: &Stamp,
        method: SignedMethod,
        key: &str,
        expires: u64,
        bound: &Bound<'_>,
    ) -> String {
        let draft = draft(&self.endpoint, derived, stamp, method, key, expires, bound);
        let signature = signature(derived, stamp, &draft);
        let mut url = String::with_capacity(
            self.endpoint.origin.len() + draft.uri.len() + draft.query.len() + 82,
        );
        url.push_str(&self.endpoint.origin);
        url.push_str(&draft.uri);
        url.push('?');
        url.push_str(&draft.query);
        url.push_str("&X-Amz-Signature=");
        url.push_str(&signature);
        url
    }
}

mod post;
#[cfg(test)]
mod tests;

#[async_trait::async_trait]
impl ServiceSigner for Presigner {
    fn binds_upload_headers(&self) -> bool {
        true
    }

    fn binds_upload_sha256(&self) -> bool {
        true
    }

    /// A bound SHA-256 travels as `x-amz-checksum-sha256`, which S3 verifies, and as the
    /// maskstore checksum metadata, which the URL signs so that the object lands verified.
    async fn sign(
        &self,
        backend: &Backend,
        method: SignedMethod,
        path: &Path,
        now: DateTime<Utc>,
        ttl: Duration,
        options: &SignOptions,
    ) -> Result<ServiceUrl> {
        let url = self
            .presign(backend, method, path, now, ttl, options)
            .await?;
        let mut headers = Vec::new();
        if let Some(digest) = &options.sha256 {
            headers.push(("x-amz-checksum-sha256".to_string(), digest.base64()));
            headers.push((format!("x-amz-meta-{CHECKSUM_METADATA}"), digest.stored()));
        }
        Ok(ServiceUrl { url, headers })
    }

    fn signs_post_policy(&self) -> bool {
        true
    }

    fn binds_post_sha256(&self) -> bool {
        false
    }

    async fn sign_post(
        &self,
        backend: &Backend,
        policy: PostPolicy,
        fields: Vec<(String, String)>,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<SignedPost> {
        self.presign_post(backend, policy, fields, now, ttl).await
    }
}
