//! Typed constructors: a validated [`Config`] from code, without key strings.
//!
//! Each constructor starts from the built-in defaults. A setter whose value can break a
//! rule (a URL, a timeout of 0, a short signing secret, a bucket name) returns
//! `Result<Config, Error>` and checks the whole config again; a setter whose value cannot
//! (a bool, a retry count, an already-valid [`KeyPrefix`] or [`TtlPolicy`]) returns the
//! `Config`. Every value set here has [`Origin::Code`].

use std::path::PathBuf;
use std::time::Duration;

use super::schema::{ACCESS_KEY, ACCOUNT, ACCOUNT_KEY, CONTAINER, SERVICE_ACCOUNT_KEY};
use super::schema::{
    AnyKey, BUCKET_NAME, CHECKSUM, CONNECT_TIMEOUT, DEFAULT_TTL, ENDPOINT, FSYNC, MAX_RETRIES,
    MAX_TTL, PREFIX, PROVIDER, PUBLIC_URL, REGION, REQUEST_TIMEOUT, RETRY_TIMEOUT, ROOT,
    SECRET_KEY, SIGNING_SECRET,
};
use super::validate::validate;
use super::{ChecksumAlgorithm, Config, Origin, Provider};
use crate::{Error, KeyPrefix, Secret, TtlPolicy};

impl Config {
    /// An in-memory configuration, for tests and examples.
    pub fn memory() -> Config {
        Config::embedded_default().set(&PROVIDER, |c| c.object_storage.provider = Provider::Memory)
    }

    /// A configuration of the `local` provider in the folder `root` (created on connect).
    pub fn local(root: impl Into<PathBuf>) -> Config {
        let root = root.into();
        Config::embedded_default()
            .set(&PROVIDER, |c| c.object_storage.provider = Provider::Local)
            .set(&ROOT, |c| c.object_storage.root = root)
    }

    /// A configuration of the `s3` provider: `bucket` in `region`, on AWS with the
    /// standard credential chain until [`Config::with_endpoint`] and
    /// [`Config::with_credentials`] say otherwise.
    ///
    /// Fails when S3 would refuse the bucket name or the region is not a region name.
    pub fn s3(bucket: impl Into<String>, region: impl Into<String>) -> Result<Config, Error> {
        let (bucket, region) = (bucket.into(), region.into());
        BUCKET_NAME.check(&bucket, &Origin::Code)?;
        REGION.check(&region, &Origin::Code)?;
        Config::embedded_default()
            .set(&PROVIDER, |c| c.object_storage.provider = Provider::S3)
            .set(&BUCKET_NAME, |c| {
                c.object_storage.bucket_name = Some(bucket)
            })
            .set(&REGION, |c| c.object_storage.region = Some(region))
            .validated()
    }

    /// A configuration of the `azure` provider: `container` in the storage account
    /// `account`, with Azure's credential chain until [`Config::with_account_key`] says
    /// otherwise, on Azure itself until [`Config::with_endpoint`] names an emulator's account
    /// URL (Azurite: `http://127.0.0.1:10000/<account>`).
    ///
    /// Fails when Azure would refuse the account or container name.
    pub fn azure(
        account: impl Into<String>,
        container: impl Into<String>,
    ) -> Result<Config, Error> {
        let (account, container) = (account.into(), container.into());
        ACCOUNT.check(&account, &Origin::Code)?;
        CONTAINER.check(&container, &Origin::Code)?;
        Config::embedded_default()
            .set(&PROVIDER, |c| c.object_storage.provider = Provider::Azure)
            .set(&ACCOUNT, |c| c.object_storage.account = Some(account))
            .set(&CONTAINER, |c| c.object_storage.container = Some(container))
            .validated()
    }

    /// The Azure storage account key instead of Azure's credential chain.
    pub fn with_account_key(self, key: Secret) -> Config {
        self.set(&ACCOUNT_KEY, |c| c.object_storage.account_key = Some(key))
            .still_valid()
    }

    /// A configuration of the `gcs` provider: `bucket`, with Google's application default
    /// credentials until [`Config::with_service_account_key`] says otherwise.
    ///
    /// Fails when the bucket name breaks the naming rules.
    pub fn gcs(bucket: impl Into<String>) -> Result<Config, Error> {
        let bucket = bucket.into();
        BUCKET_NAME.check(&bucket, &Origin::Code)?;
        Config::embedded_default()
            .set(&PROVIDER, |c| c.object_storage.provider = Provider::Gcs)
            .set(&BUCKET_NAME, |c| {
                c.object_storage.bucket_name = Some(bucket)
            })
            .validated()
    }

    /// The GCS service account key (its JSON document) instead of Google's application
    /// default credentials.
    pub fn with_service_account_key(self, key: Secret) -> Config {
        self.set(&SERVICE_ACCOUNT_KEY, |c| {
            c.object_storage.service_account_key = Some(key)
        })
        .still_valid()
    }

    /// The S3-compatible endpoint to use instead of AWS, such as `http://127.0.0.1:8333`.
    ///
    /// Fails unless it is an `http(s)://` URL without credentials, query or fragment.
    pub fn with_endpoint(self, url: impl Into<String>) -> Result<Config, Error> {
        let url = url.into();
        ENDPOINT.check(&url, &Origin::Code)?;
        self.set(&ENDPOINT, |c| c.object_storage.endpoint = Some(url))
            .validated()
    }

    /// Static S3 credentials instead of the standard AWS credential chain.
    pub fn with_credentials(self, access_key: impl Into<String>, secret_key: Secret) -> Config {
        let access_key = access_key.into();
        self.set(&ACCESS_KEY, |c| {
            c.object_storage.access_key = Some(access_key)
        })
        .set(&SECRET_KEY, |c| {
            c.object_storage.secret_key = Some(secret_key)
        })
        .still_valid()
    }

    /// The key prefix every object lives under.
    pub fn with_prefix(self, prefix: KeyPrefix) -> Config {
        self.set(&PREFIX, |c| c.object_storage.prefix = prefix)
            .still_valid()
    }

    /// Whether the `local` provider makes each write durable before acknowledging it.
    pub fn with_fsync(self, fsync: bool) -> Config {
        self.set(&FSYNC, |c| c.object_storage.fsync = fsync)
            .still_valid()
    }

    /// The checksum stored with every write and verified on whole reads.
    pub fn with_checksum(self, checksum: ChecksumAlgorithm) -> Config {
        self.set(&CHECKSUM, |c| c.object_storage.checksum = checksum)
            .still_valid()
    }

    /// How often a transient failure (S3, Azure, GCS) is retried.
    pub fn with_max_retries(self, retries: u32) -> Config {
        self.set(&MAX_RETRIES, |c| c.object_storage.max_retries = retries)
            .still_valid()
    }

    /// How long one S3 request may take, in whole seconds.
    ///
    /// Fails when it is under a second.
    pub fn with_request_timeout(self, timeout: Duration) -> Result<Config, Error> {
        self.set(&REQUEST_TIMEOUT, |c| {
            c.object_storage.request_timeout_secs = timeout.as_secs()
        })
        .validated()
    }

    /// How long connecting to S3 may take, in whole seconds.
    ///
    /// Fails when it is under a second.
    pub fn with_connect_timeout(self, timeout: Duration) -> Result<Config, Error> {
        self.set(&CONNECT_TIMEOUT, |c| {
            c.object_storage.connect_timeout_secs = timeout.as_secs()
        })
        .validated()
    }

    /// After how long retrying a failed S3 request stops, in whole seconds.
    pub fn with_retry_timeout(self, timeout: Duration) -> Config {
        self.set(&RETRY_TIMEOUT, |c| {
            c.object_storage.retry_timeout_secs = timeout.as_secs()
        })
        .still_valid()
    }

    /// The lifetimes of signed URLs.
    pub fn with_ttl(self, policy: TtlPolicy) -> Config {
        self.set(&DEFAULT_TTL, |c| {
            c.signed_url.default_ttl = policy.default_ttl().as_secs()
        })
        .set(&MAX_TTL, |c| {
            c.signed_url.max_ttl = policy.max_ttl().as_secs()
        })
        .still_valid()
    }

    /// The HMAC key of the gateway's signed URLs.
    ///
    /// Fails when it is shorter than [`MIN_SIGNING_SECRET_BYTES`](super::MIN_SIGNING_SECRET_BYTES).
    pub fn with_signing_secret(self, secret: Secret) -> Result<Config, Error> {
        self.set(&SIGNING_SECRET, |c| c.gateway.signing_secret = Some(secret))
            .validated()
    }

    /// The base URL the gateway's signed URLs point at, such as `https://masks.example.org`.
    ///
    /// Fails unless it is an `http(s)://` URL without credentials, query or fragment.
    pub fn with_public_url(self, url: impl Into<String>) -> Result<Config, Error> {
        let url = url.into();
        PUBLIC_URL.check(&url, &Origin::Code)?;
        self.set(&PUBLIC_URL, |c| c.gateway.public_url = url)
            .validated()
    }

    /// Applies `change` to the field of `key` and records that code set it.
    fn set(mut self, key: &dyn AnyKey, change: impl FnOnce(&mut Config)) -> Config {
        change(&mut self);
        self.origins.insert(key.name().to_string(), Origin::Code);
        self
    }

    fn validated(self) -> Result<Config, Error> {
        validate(&self)?;
        Ok(self)
    }

    /// For setters whose value cannot break a rule.
    fn still_valid(self) -> Config {
        debug_assert_eq!(validate(&self), Ok(()));
        self
    }
}
