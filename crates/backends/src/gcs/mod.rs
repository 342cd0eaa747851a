//! The `gcs` provider: Google Cloud Storage (and fake-gcs-server), configured from
//! `[object_storage]`: reads, listings and deletes through object_store's
//! `GoogleCloudStorage` (GCS's XML API), writes and copies through GCS's JSON API with the
//! same credentials ([`json`]); its signed URLs are V4 signed URLs made by object_store's
//! `Signer`.
//!
//! A V4 URL binds the method, the object, the expiry and the signed headers: a PUT URL
//! asked to bind a content type signs `Content-Type`, one asked to bind a length signs
//! `x-goog-content-length-range: N,N` (which the client must send, see
//! [`SignedUrl::headers`](crate::SignedUrl)); GCS refuses an upload carrying another type
//! (403) or another size (400, GCS's answer for a size outside the range). Signing needs the service account's private key (given as
//! `service_account_key`, or by `GOOGLE_APPLICATION_CREDENTIALS`); under the metadata
//! server's credentials object_store asks IAM's `signBlob` instead, which needs the
//! `iam.serviceAccounts.signBlob` permission.

mod advice;
pub(crate) mod error;
pub(crate) mod json;
mod key_file;
pub(crate) mod names;
pub(crate) mod native;
pub(crate) mod policy;
mod post;
mod store;

pub(crate) use advice::PROFILE;
pub(crate) use store::GcsStore;

use std::sync::Arc;
use std::time::{Duration, Instant};

use maskstore_core::{Config, Origin};
use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder};
use object_store::path::Path;
use object_store::signer::{HeaderMap, HeaderValue, Method, SignedUrlOptions, Signer};

use crate::metadata::{MetadataRules, NameRule, ValueRule};
use crate::providers::{Backend, Built, Declared, Extras};
use crate::service_urls::{ServiceSigner, ServiceUrl};
use crate::signing::{SignOptions, SignedMethod};
use crate::storage::UrlSigner;
use crate::{Error, Result};

/// What GCS keeps of user metadata as maskstore reads it: names as the XML API's headers
/// give them back (lowercase), UTF-8 values (written through the JSON API, as the GCS
/// SDKs write it; control characters and outer spaces, which the XML API's headers cannot
/// give back, as an encoded word), 8 KiB in all (Cloud Storage quotas, "custom metadata"). GCS's "Object
/// metadata" page advises against non-ASCII because the XML API's headers cannot carry
/// it and does not say how such a value is sent back there; whatever comes, raw bytes
/// or encoded words, reads (see [`crate::metadata`]).
pub(crate) const METADATA: MetadataRules = MetadataRules {
    names: NameRule::LowercaseToken,
    values: ValueRule::Utf8Header,
    max_total: 8192,
    json_document: false,
};

/// The `gcs` provider as the facade takes it: V4 URLs the service verifies (binding the
/// content type and length, not a SHA-256), over the store that reads through GCS's XML
/// API and writes through its JSON API.
pub(crate) fn connect(config: &Config) -> Result<Built> {
    let account = service_account(config)?;
    let gcs = build_client(config, account.clone())?;
    let signer = V4Signer::new(gcs.clone(), post_signer(config, account));
    let (store, api) = store_and_api(config, gcs)?;
    Ok(Built {
        store: Arc::new(store),
        urls: UrlSigner::Service(Arc::new(signer)),
        declared: Declared {
            metadata: METADATA,
            ..Declared::PLAIN
        },
        extras: Extras {
            names: Some(Arc::new(names::GcsNames { api })),
            ..Extras::default()
        },
    })
}

/// The config's service account key, re-read from `service_account_key_file` when it
/// changes ([`key_file`]); `None` without a key.
fn service_account(config: &Config) -> Result<Option<Arc<key_file::ServiceAccount>>> {
    key_file::ServiceAccount::of(config)
        .transpose()
        .map_err(|e| not_built(config, e))
}

/// GCS's own address, where no endpoint is configured.
const GCS_BASE_URL: &str = "https://storage.googleapis.com";

/// The store of the config's bucket: object_store's client for reads, listings and
/// deletes, GCS's JSON API (with the client's credentials) for writes and copies.
/// Also the JSON API it writes through, which lists, reads and deletes names object_store
/// cannot hold (`names.rs`).
fn store_and_api(
    config: &Config,
    client: GoogleCloudStorage,
) -> Result<(GcsStore<GoogleCloudStorage>, json::JsonApi)> {
    let os = &config.object_storage;
    let base = os.endpoint.as_deref().unwrap_or(GCS_BASE_URL);
    let json = json::JsonApi::new(
        base,
        os.bucket_name.as_deref().unwrap_or_default(),
        client.credentials().clone(),
        Duration::from_secs(os.request_timeout_secs),
        Duration::from_secs(os.connect_timeout_secs),
        crate::http_client::retry_config(os),
    )
    .map_err(|e| Error::Config {
        key: "object_storage".to_string(),
        origin: config
            .origin("object_storage.provider")
            .cloned()
            .unwrap_or(Origin::Default),
        problem: format!("the HTTP client for GCS's JSON API could not be built: {e}"),
        fix: "check the machine's TLS setup (the system's root certificates)".to_string(),
    })?;
    Ok((GcsStore::with_json(client, json.clone()), json))
}

/// Builds the GCS client from the config. With `service_account_key` requests carry a
/// token the key in use signs itself ([`key_file`]); without it object_store's chain
/// applies (`GOOGLE_SERVICE_ACCOUNT*` variables, `GOOGLE_APPLICATION_CREDENTIALS`, then
/// the metadata server).
fn build_client(
    config: &Config,
    account: Option<Arc<key_file::ServiceAccount>>,
) -> Result<GoogleCloudStorage> {
    let os = &config.object_storage;
    let mut builder = match &account {
        Some(account) => GoogleCloudStorageBuilder::new()
            .with_credentials(Arc::new(key_file::Tokens(Arc::clone(account))))
            .with_signing_credentials(Arc::new(key_file::SigningKeys(Arc::clone(account)))),
        None => GoogleCloudStorageBuilder::from_env(),
    };
    let mut client_options = crate::http_client::client_options(os);
    if let Some(endpoint) = &os.endpoint {
        builder = builder.with_base_url(endpoint.trim_end_matches('/'));
        client_options = client_options.with_allow_http(endpoint.starts_with("http://"));
    }
    builder
        .with_bucket_name(os.bucket_name.clone().unwrap_or_default())
        .with_client_options(client_options)
        .with_retry(crate::http_client::retry_config(os))
        .with_http_connector(crate::http_client::GuardedConnector::new(
            crate::http_client::Wire::Gcs,
        ))
        .build()
        .map_err(|e| not_built(config, e))
}

/// The error of a GCS client that could not be built. A key that is not a service
/// account JSON document: object_store's error names the JSON problem (line and column),
/// never the key's text.
fn not_built(config: &Config, e: object_store::Error) -> Error {
    let os = &config.object_storage;
    Error::Config {
        key: if os.service_account_key.is_some() {
            "object_storage.service_account_key".to_string()
        } else {
            "object_storage".to_string()
        },
        origin: config
            .origin("object_storage.service_account_key")
            .or(config.origin("object_storage.provider"))
            .cloned()
            .unwrap_or(Origin::Default),
        problem: format!("the GCS client could not be built: {e}"),
        fix: "give the service account's JSON key as downloaded from the Google Cloud \
              console (with private_key, private_key_id and client_email), and check \
              bucket_name and endpoint"
            .to_string(),
    }
}

/// The V4 URL issuer of one bucket.
pub(crate) struct V4Signer {
    store: GoogleCloudStorage,
    /// What signs form policies: the service account's key, with GCS's address and the
    /// bucket; or why there is none.
    post: PostSigner,
}

/// The key, address and bucket of a bucket's form policies.
struct PostSigner {
    /// The service account whose key in use signs; `None` under object_store's chain.
    account: Option<Arc<key_file::ServiceAccount>>,
    base: String,
    bucket: String,
}

/// The form policy signer of the config's bucket.
fn post_signer(config: &Config, account: Option<Arc<key_file::ServiceAccount>>) -> PostSigner {
    let os = &config.object_storage;
    PostSigner {
        account,
        base: os.endpoint.as_deref().unwrap_or(GCS_BASE_URL).to_string(),
        bucket: os.bucket_name.clone().unwrap_or_default(),
    }
}

impl std::fmt::Debug for V4Signer {
    // Never the signing key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4Signer").finish_non_exhaustive()
    }
}

impl V4Signer {
    /// Signs with the client's signing credentials.
    fn new(store: GoogleCloudStorage, post: PostSigner) -> V4Signer {
        V4Signer { store, post }
    }
}

#[async_trait::async_trait]
impl ServiceSigner for V4Signer {
    fn binds_upload_headers(&self) -> bool {
        true
    }

    fn binds_upload_sha256(&self) -> bool {
        false
    }

    /// object_store's GCS signer reads the clock itself: `now` is not used.
    async fn sign(
        &self,
        backend: &Backend,
        method: SignedMethod,
        path: &Path,
        _now: chrono::DateTime<chrono::Utc>,
        ttl: Duration,
        options: &SignOptions,
    ) -> Result<ServiceUrl> {
        let http_method = match method {
            SignedMethod::Get => Method::GET,
            SignedMethod::Head => Method::HEAD,
            SignedMethod::Put => Method::PUT,
            SignedMethod::Delete => Method::DELETE,
        };
        let mut signed_headers = HeaderMap::new();
        let invalid = |name: &str| Error::InvalidMetadata {
            name: name.to_string(),
            reason: "not a valid header value; give printable ASCII".to_string(),
        };
        if let Some(content_type) = &options.content_type {
            let value = HeaderValue::from_str(content_type).map_err(|_| invalid("content-type"))?;
            signed_headers.insert("content-type", value);
        }
        // object_store will not sign `content-length` (the client sets it); GCS's own
        // `x-goog-content-length-range` binds the size instead, and the client must send it.
        let mut headers = Vec::new();
        if let Some(length) = options.content_length {
            let range = format!("{length},{length}");
            signed_headers.insert(
                "x-goog-content-length-range",
                HeaderValue::from_str(&range).map_err(|_| invalid("content-length"))?,
            );
            headers.push(("x-goog-content-length-range".to_string(), range));
        }
        let mut sign_options = SignedUrlOptions::default();
        sign_options.signed_headers = signed_headers;
        // object_store puts the key into the URL unescaped, so a `#`, `?` or `%` in it
        // would cut or garble the URL; the key is given escaped instead (GCS's canonical
        // URI is the escaped path, which the signer signs as it finds it).
        let escaped = Path::parse(json::escape_key(path.as_ref()))
            .map_err(|e| Error::from_store(backend, path.as_ref(), e.into()))?;
        let url = self
            .store
            .signed_url_opts(http_method, &escaped, ttl, &sign_options)
            .await
            .map_err(|e| Error::from_store(backend, path.as_ref(), e))?;
        Ok(ServiceUrl {
            url: url.to_string(),
            headers,
        })
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
        policy: crate::signing::PostPolicy,
        fields: Vec<(String, String)>,
        now: chrono::DateTime<chrono::Utc>,
        ttl: Duration,
    ) -> Result<crate::signing::SignedPost> {
        let post = &self.post;
        let target = (post.base.as_str(), post.bucket.as_str());
        let version = post.account.as_ref().map(|a| a.version(Instant::now()));
        let no_key = Err(
            "no service account key is configured (object_store keeps the key \
                          of its credential chain to itself)"
                .to_string(),
        );
        let key = version.as_ref().map_or(&no_key, |v| &v.post);
        post::sign_post(key, backend, target, policy, fields, now, ttl)
    }
}
