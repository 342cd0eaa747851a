//! The `azure` provider: Azure Blob Storage (and Azurite) through object_store's
//! `MicrosoftAzure`, configured from `[object_storage]`; its signed URLs are service SAS
//! (or user delegation SAS under Entra ID credentials) made by object_store's `Signer`.
//!
//! What a SAS binds: the blob, the permission (`r` for GET and HEAD, `w` for PUT, `d` for
//! DELETE, so a URL cannot be used with another method), the start and expiry. It cannot
//! bind a request's `Content-Type` or length (the `rsct` field only overrides the type of a
//! *response*), so [`Capabilities::binds_upload_headers`](crate::Capabilities) is false:
//! a PUT URL asked to bind them is refused at issue instead of promising what Azure does
//! not check.

mod advice;
pub(crate) mod error;
pub(crate) mod key_file;
pub(crate) mod names;
pub(crate) mod native;
pub(crate) mod policy;
mod store;

pub(crate) use advice::PROFILE;
#[cfg(test)]
pub(crate) use store::read_names;
pub(crate) use store::{AzureStore, stored_name};

use std::sync::Arc;
use std::time::Duration;

use maskstore_core::{Config, Origin};
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::path::Path;
use object_store::signer::{Method, Signer};

use crate::metadata::{MetadataRules, NameRule, ValueRule};
use crate::providers::{Backend, Built, Declared, Extras};
use crate::service_urls::{ServiceSigner, ServiceUrl};
use crate::signing::{SignOptions, SignedMethod};
use crate::storage::UrlSigner;
use crate::{Error, Result};

/// What Azure keeps of user metadata: any name through [`stored_name`], values as HTTP
/// headers, 8 KiB in all (Set Blob Metadata).
pub(crate) const METADATA: MetadataRules = MetadataRules {
    names: NameRule::Azure,
    values: ValueRule::Header,
    max_total: 8192,
    json_document: false,
};

/// The blob type header every Put Blob request must carry, a SAS upload included.
pub(crate) const BLOB_TYPE_HEADER: (&str, &str) = ("x-ms-blob-type", "BlockBlob");

/// The `azure` provider as the facade takes it: SAS URLs the service verifies (they bind
/// neither headers nor a SHA-256), and the store that maps metadata names to Azure's.
pub(crate) fn connect(config: &Config) -> Result<Built> {
    let key = key_file::AccountKey::of(config);
    let azure = build(config, key.clone())?;
    let signer = SasSigner::new(azure.clone(), config, key)?;
    // Names object_store cannot hold are reached with SAS URLs signed here: with a key.
    let names = signer.keyed.clone().map(|(account, key, container_url)| {
        Arc::new(names::AzureNames {
            account,
            key,
            container_url,
            client: reqwest::Client::new(),
        }) as Arc<dyn crate::providers::FoundNames>
    });
    Ok(Built {
        store: Arc::new(AzureStore::new(azure)),
        urls: UrlSigner::Service(Arc::new(signer)),
        declared: Declared {
            metadata: METADATA,
            ..Declared::PLAIN
        },
        extras: Extras {
            names,
            ..Extras::default()
        },
    })
}

/// Builds the Azure client from the config. With `account_key` the requests are signed
/// with the shared key; without it object_store's credential chain applies (`AZURE_*`
/// variables: client secret, workload identity, managed identity, Azure CLI). `key` is
/// the config's key as [`key_file::AccountKey`] keeps it, re-read when its file changes.
pub(crate) fn build(
    config: &Config,
    key: Option<Arc<key_file::AccountKey>>,
) -> Result<MicrosoftAzure> {
    let os = &config.object_storage;
    let mut builder = match &os.account_key {
        // An explicit key: ignore AZURE_* variables so they cannot mix with the config's.
        Some(_) => MicrosoftAzureBuilder::new(),
        None => MicrosoftAzureBuilder::from_env(),
    };
    builder = builder
        .with_account(os.account.clone().unwrap_or_default())
        .with_container_name(os.container.clone().unwrap_or_default())
        .with_client_options(crate::http_client::client_options(os))
        .with_retry(crate::http_client::retry_config(os))
        .with_http_connector(crate::http_client::GuardedConnector::new(
            crate::http_client::Wire::Azure,
        ));
    if let Some(endpoint) = &os.endpoint {
        builder = builder
            .with_endpoint(endpoint.clone())
            .with_allow_http(endpoint.starts_with("http://"));
    }
    match (key, &os.account_key) {
        (Some(key), _) => builder = builder.with_credentials(key),
        // Not base64: the builder refuses it, naming the setting.
        (None, Some(key)) => builder = builder.with_access_key(key.expose()),
        (None, None) => {}
    }
    builder.build().map_err(|e| Error::Config {
        key: "object_storage".to_string(),
        origin: config
            .origin("object_storage.provider")
            .cloned()
            .unwrap_or(Origin::Default),
        // object_store's builder errors name settings, never the key's value.
        problem: format!("the Azure client could not be built: {e}"),
        fix: "check account, container, endpoint and account_key (a base64 account key as \
              the Azure portal shows it)"
            .to_string(),
    })
}

/// The SAS version maskstore signs (the 16-field string to sign of 2020-12-06 and later).
const SAS_VERSION: &str = "2022-11-02";

/// The SAS issuer of one container: a service SAS made here with the account key, or,
/// under Entra ID credentials, object_store's user delegation SAS.
pub(crate) struct SasSigner {
    store: MicrosoftAzure,
    /// The account, its key, and the container's URL, when a key is configured.
    keyed: Option<(String, Arc<key_file::AccountKey>, url::Url)>,
}

impl std::fmt::Debug for SasSigner {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SasSigner")
            .field("keyed", &self.keyed.is_some())
            .finish_non_exhaustive()
    }
}

impl SasSigner {
    /// Signs with the config's account key, or else the client's own credentials.
    ///
    /// With a key the SAS is made here rather than by object_store, whose canonicalized
    /// resource keeps the blob name percent-encoded: Azure signs the decoded name, so its
    /// URLs for keys with spaces or unicode are refused (403).
    pub(crate) fn new(
        store: MicrosoftAzure,
        config: &Config,
        key: Option<Arc<key_file::AccountKey>>,
    ) -> Result<SasSigner> {
        let os = &config.object_storage;
        let keyed = match (&os.account, key, &os.container) {
            (Some(account), Some(key), Some(container)) => {
                let base = os
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
                let mut url = url::Url::parse(&base).map_err(|e| Error::Config {
                    key: "object_storage.endpoint".to_string(),
                    origin: config
                        .origin("object_storage.endpoint")
                        .cloned()
                        .unwrap_or(Origin::Default),
                    problem: format!("{base:?} is not a URL ({e})"),
                    fix: "give the account's URL, such as http://127.0.0.1:10000/devstoreaccount1"
                        .to_string(),
                })?;
                url.path_segments_mut()
                    .map_err(|()| Error::Config {
                        key: "object_storage.endpoint".to_string(),
                        origin: Origin::Default,
                        problem: format!("{base:?} cannot hold a path"),
                        fix: "give an http(s) URL".to_string(),
                    })?
                    .pop_if_empty()
                    .push(container);
                Some((account.clone(), key, url))
            }
            _ => None,
        };
        Ok(SasSigner { store, keyed })
    }
}

/// Everything in a blob name but RFC 3986's unreserved characters and the `/` between
/// segments, percent-encoded: the Azure SDKs split a URL with Python's `urlparse` (a `;`
/// starts "parameters"), and a `%`, `+`, `#`, `?`, `&` or `=` left as it is means
/// something else in a URL; Azure decodes the escapes back to the blob's name.
const BLOB_NAME_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn escape_blob_name(blob: &str) -> String {
    blob.split('/')
        .map(|segment| {
            percent_encoding::utf8_percent_encode(segment, BLOB_NAME_ESCAPES).to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A service SAS for one blob, signed with the account key (base64, as Azure shows it).
fn service_sas(
    account: &str,
    key: &str,
    container_url: &url::Url,
    path: &Path,
    permission: &str,
    expiry: chrono::DateTime<chrono::Utc>,
) -> std::result::Result<url::Url, String> {
    sas(
        account,
        key,
        container_url,
        Some(path.as_ref()),
        permission,
        expiry,
    )
}

/// A service SAS for the blob named `blob` exactly (any name the container holds), or
/// without one for the container itself (`sr=c`: listing with permission `l`).
pub(crate) fn sas(
    account: &str,
    key: &str,
    container_url: &url::Url,
    blob: Option<&str>,
    permission: &str,
    expiry: chrono::DateTime<chrono::Utc>,
) -> std::result::Result<url::Url, String> {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|_| "the account key is not base64".to_string())?;
    let mut url = container_url.clone();
    if url.cannot_be_a_base() {
        return Err("the endpoint cannot hold a path".to_string());
    }
    if let Some(blob) = blob {
        let blob_path = format!(
            "{}/{}",
            url.path().trim_end_matches('/'),
            escape_blob_name(blob)
        );
        url.set_path(&blob_path);
    }
    let container = container_url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default()
        .to_string();
    let expiry = expiry.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // The canonicalized resource names the blob as stored: decoded, not as in the URL.
    let (resource, kind) = match blob {
        Some(blob) => (format!("/blob/{account}/{container}/{blob}"), "b"),
        None => (format!("/blob/{account}/{container}"), "c"),
    };
    let string_to_sign =
        format!("{permission}\n\n{expiry}\n{resource}\n\n\n\n{SAS_VERSION}\n{kind}\n\n\n\n\n\n\n");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key)
        .map_err(|_| "the account key is empty".to_string())?;
    mac.update(string_to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    url.query_pairs_mut()
        .append_pair("sv", SAS_VERSION)
        .append_pair("sr", kind)
        .append_pair("sp", permission)
        .append_pair("se", &expiry)
        .append_pair("sig", &signature);
    Ok(url)
}

#[async_trait::async_trait]
impl ServiceSigner for SasSigner {
    fn binds_upload_headers(&self) -> bool {
        false
    }

    fn binds_upload_sha256(&self) -> bool {
        false
    }

    async fn sign(
        &self,
        backend: &Backend,
        method: SignedMethod,
        path: &Path,
        now: chrono::DateTime<chrono::Utc>,
        ttl: Duration,
        _options: &SignOptions,
    ) -> Result<ServiceUrl> {
        // A HEAD (Get Blob Properties) needs the read permission, which a GET URL grants.
        let (http_method, permission) = match method {
            SignedMethod::Get | SignedMethod::Head => (Method::GET, "r"),
            SignedMethod::Put => (Method::PUT, "w"),
            SignedMethod::Delete => (Method::DELETE, "d"),
        };
        let url = match &self.keyed {
            Some((account, key, container_url)) => {
                let expiry = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
                service_sas(
                    account,
                    key.secret().expose(),
                    container_url,
                    path,
                    permission,
                    expiry,
                )
                .map_err(|problem| Error::Config {
                    key: "object_storage.account_key".to_string(),
                    origin: Origin::Default,
                    problem,
                    fix: "give key1 or key2 of the storage account, as the Azure portal shows it"
                        .to_string(),
                })?
            }
            None => self
                .store
                .signed_url(http_method, path, ttl)
                .await
                .map_err(|e| Error::from_store(backend, path.as_ref(), e))?,
        };
        let headers = match method {
            SignedMethod::Put => vec![(
                BLOB_TYPE_HEADER.0.to_string(),
                BLOB_TYPE_HEADER.1.to_string(),
            )],
            _ => Vec::new(),
        };
        Ok(ServiceUrl {
            url: url.to_string(),
            headers,
        })
    }

    fn signs_post_policy(&self) -> bool {
        false
    }

    fn binds_post_sha256(&self) -> bool {
        false
    }

    async fn sign_post(
        &self,
        backend: &Backend,
        _policy: crate::signing::PostPolicy,
        _fields: Vec<(String, String)>,
        _now: chrono::DateTime<chrono::Utc>,
        _ttl: Duration,
    ) -> Result<crate::signing::SignedPost> {
        Err(Error::Unsupported {
            backend: backend.to_string(),
            operation: "sign a browser form upload (POST policy)".to_string(),
            detail: "Azure Blob Storage takes no HTML form uploads: it has no POST policy; \
                     give the browser a signed PUT URL (maskstore presign put) instead"
                .to_string(),
        })
    }
}
