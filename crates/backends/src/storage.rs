//! [`Storage`]: one API over every backend, scoped to the configured key prefix.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use maskstore_core::{Config, KeyPrefix, ObjectKey, Provider, Secret, TtlPolicy};
use object_store::path::Path;
use object_store::{
    Attributes, GetOptions, GetRange, GetResult, GetResultPayload, ObjectStore, ObjectStoreExt,
    PutMode, PutOptions, UpdateVersion, WriteMultipart,
};

use crate::checksum::{CHECKSUM_METADATA, Hasher, LateChecksum, Verifier, verify_stream};
use crate::layers::Layer;
use crate::layers::instrumented::{Instrumentation, Measured, Recorder};
use crate::local::file_io::{copy_file_range, copy_hashing, file_stream};
use crate::local::{LocalError, ReadChecksum};
use crate::monitor::{AlarmSettings, Monitor, Outcome};
use crate::providers::Backend;
use crate::signing::{GatewaySigner, SignOptions, SignedMethod, SignedUrl};
use crate::types::{
    ByteRange, IncompleteUpload, Listing, Object, ObjectInfo, ObjectStream, PutOutcome,
    ReadOptions, Source, WriteMode, WriteOptions, info_of,
};
use crate::{Error, Result};
use maskstore_core::ChecksumAlgorithm;

/// Part size of streaming uploads: above S3's 5 MiB minimum. Chosen with
/// [`UPLOAD_MAX_IN_FLIGHT`] by measurement of every part size in {5, 8, 16, 32} MiB × parts
/// in flight in {2, 4, 8}, on loopback and behind 25 ms per request (BENCHMARKS.md,
/// "Multipart part size and parts in flight"): none was faster within the memory bound.
pub const UPLOAD_PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one streaming upload in flight at once; with [`UPLOAD_PART_SIZE`] this bounds
/// an upload's buffered memory to about 40 MiB whatever the object's size (48 MiB with the
/// part [`Storage::write_from_file`] reads ahead).
pub const UPLOAD_MAX_IN_FLIGHT: usize = 4;
/// Streaming uploads of fewer bytes than this are one PUT; this many or more are multipart
/// uploads of [`UPLOAD_PART_SIZE`] parts. The README states it. (The local provider, whose
/// multipart uploads are invisible, streams into its temporary file from
/// [`LOCAL_UPLOAD_PART_SIZE`] on.)
pub const MULTIPART_THRESHOLD: usize = UPLOAD_PART_SIZE;
/// Part size of streaming uploads to the local provider, which writes each part straight
/// into the upload's temporary file: with [`LOCAL_UPLOAD_MAX_IN_FLIGHT`] an upload holds
/// at most about 512 KiB in memory.
pub const LOCAL_UPLOAD_PART_SIZE: usize = 256 * 1024;
/// Parts of one local streaming upload in flight at once.
pub const LOCAL_UPLOAD_MAX_IN_FLIGHT: usize = 1;
/// The smallest part [`Storage::upload_with_part_size`] uses, so that a small request does
/// not turn every few bytes into a write of its own.
pub const MIN_UPLOAD_PART_SIZE: usize = 64 * 1024;

/// Object storage scoped to one key prefix, built from a [`Config`].
///
/// Every key passed in must lie below [`Storage::prefix`]; anything else is refused with
/// [`Error::InvalidKey`] before any I/O, as the deployment guide's IAM policy would.
///
/// ```
/// # tokio_test_block_on(async {
/// use maskstore_backends::Storage;
/// let storage = Storage::memory();
/// let key = storage.key("1.2/3.4/liver.png")?;
/// storage.put(&key, "pixels").await?;
/// assert_eq!(storage.get(&key).await?.data, "pixels");
/// # Ok::<(), maskstore_backends::Error>(())
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Runtime::new().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct Storage {
    /// The provider's own store, unwrapped.
    base: Arc<dyn ObjectStore>,
    /// The layers over it, innermost first.
    layers: Vec<Arc<dyn Layer>>,
    /// What operations go through: the layers over `base`, instrumented outside them all.
    store: Arc<dyn ObjectStore>,
    backend: Backend,
    prefix: KeyPrefix,
    ttl: TtlPolicy,
    verify_folders: bool,
    urls: UrlSigner,
    monitor: Arc<Monitor>,
    recorder: Recorder,
    /// The checksum every write stores.
    checksum: ChecksumAlgorithm,
    /// Whether whole reads verify the stored checksum (off only for forensics).
    verify_reads: bool,
    /// The local provider itself, when it is the base store: files are stored into it by
    /// the kernel ([`Storage::write_from_file`]).
    local: Option<crate::local::LocalStore>,
    /// Part size and parts in flight of streaming uploads instead of the defaults, for
    /// measuring them ([`Storage::with_upload_shape`]); never set by a config.
    upload_shape: Option<(usize, usize)>,
}

/// An object's data file, opened for reading by [`Storage::open_file`] beneath a local
/// provider's root (never by a path joined from its key), with what a HEAD of that very
/// file says. Only `open_file` makes one, so holding one means the file is the object's;
/// [`Storage::write_from_open_file`] stores it elsewhere and checks its stored checksum.
#[derive(Debug)]
pub struct ObjectFile {
    file: std::fs::File,
    /// Its `fstat` when opened, compared with the file's after a copy.
    stat: std::fs::Metadata,
    info: ObjectInfo,
    /// Its path, for messages only.
    shown: String,
    /// The backend it was opened from, named should its bytes not match its checksum.
    backend: Backend,
    /// Whether copies check its stored checksum (the source storage's reads verify).
    verify: bool,
}

impl ObjectFile {
    /// What a HEAD of the object says (size, etag, content type, metadata, checksum), read
    /// from the open file itself.
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }
}

/// What a storage can do beyond the contract every backend follows; commands and
/// applications ask this instead of matching on the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Who verifies the signed URLs this storage issues.
    pub signed_urls: UrlIssuer,
    /// Whether the signed URLs stay valid beyond this process (false when the gateway
    /// signs with a per-process secret: provider memory without a configured one).
    pub urls_outlive_process: bool,
    /// Whether the backend keeps incomplete streaming uploads that can be listed and
    /// aborted (S3); the others keep none.
    pub incomplete_uploads: bool,
    /// Whether etags derive from the content alone, so that two stores of this kind give
    /// the same etag to the same bytes written the same way (S3's MD5 etags); local and
    /// memory etags name a version, not the content.
    pub content_etags: bool,
    /// Whether a PUT URL can bind the upload's content type and length, so that the server
    /// refuses another (S3 and GCS sign them, the gateway checks them; an Azure SAS cannot
    /// sign request headers, so on Azure a binding is refused at issue).
    pub binds_upload_headers: bool,
    /// Whether a PUT URL can bind the upload's SHA-256, so that an altered body is refused
    /// (S3 signs `x-amz-checksum-sha256`, the gateway checks its own parameter; Azure and
    /// GCS verify no SHA-256 a URL could bind, so there a binding is refused at issue).
    pub binds_upload_sha256: bool,
}

/// Who serves and verifies a storage's signed URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlIssuer {
    /// The backend itself (S3 presigned URLs): no gateway is needed.
    Backend,
    /// maskstore's gateway (`maskstore serve`), which must run and share the signing secret.
    Gateway,
    /// Nobody: the storage was built from a bare object_store without a signer.
    None,
}

/// The gateway's signer, and whether its secret dies with the process.
struct Gateway {
    signer: GatewaySigner,
    ephemeral: bool,
}

/// Who signs URLs for a storage.
#[derive(Clone)]
enum UrlSigner {
    /// The S3 client (for its incomplete uploads) and the SigV4 presigner of its URLs.
    S3(Arc<object_store::aws::AmazonS3>, Arc<crate::s3::Presigner>),
    /// maskstore's HMAC URLs, served by the gateway.
    Gateway(Arc<Gateway>),
    /// URLs the cloud service verifies itself (Azure SAS, GCS V4).
    Service(Arc<dyn crate::service_urls::ServiceSigner>),
    /// A storage built from a bare object_store, without a gateway signer.
    None,
}

impl std::fmt::Debug for Storage {
    // The inner store's Debug may carry endpoints and key ids; say only what it is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.backend)
            .field("prefix", &self.prefix)
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// Builds the backend the config's `provider` names (a missing local root is created).
    pub fn connect(config: &Config) -> Result<Storage> {
        Storage::build(config, crate::local::Root::MayCreate)
    }

    /// Like [`Storage::connect`], for a store that is only read from (such as a sync
    /// source): a local root that does not exist is an error naming it, not an empty
    /// store created on the spot.
    pub fn connect_existing(config: &Config) -> Result<Storage> {
        Storage::build(config, crate::local::Root::MustExist)
    }

    fn build(config: &Config, root: crate::local::Root) -> Result<Storage> {
        let os = &config.object_storage;
        let gw = &config.gateway;
        let gateway = |secret: Secret, ephemeral: bool| {
            let previous = gw.previous_signing_secret.clone();
            let signer = match &gw.signing_secret_file {
                // A URL signed just before a rotation lives at most max_ttl.
                Some(file) if !ephemeral => GatewaySigner::rotating(
                    &gw.public_url,
                    secret,
                    previous,
                    file.clone(),
                    std::time::Duration::from_secs(config.signed_url.max_ttl),
                ),
                _ => GatewaySigner::new(&gw.public_url, secret, previous),
            };
            UrlSigner::Gateway(Arc::new(Gateway { signer, ephemeral }))
        };
        let mut local = None;
        let (store, urls): (Arc<dyn ObjectStore>, UrlSigner) = match os.provider {
            Provider::S3 => {
                let (s3, presigner) = crate::s3::build(config)?;
                let s3 = Arc::new(s3);
                (s3.clone(), UrlSigner::S3(s3, Arc::new(presigner)))
            }
            Provider::Local => {
                let (store, secret) = crate::local::build(config, root)?;
                local = Some(store.clone());
                (Arc::new(store), gateway(secret, false))
            }
            Provider::Memory => {
                let (store, secret, ephemeral) = crate::memory::build(config);
                (Arc::new(store), gateway(secret, ephemeral))
            }
            Provider::Azure => {
                let azure = crate::azure::build(config)?;
                let signer = crate::azure::SasSigner::new(azure.clone(), config)?;
                let store = crate::azure::AzureStore::new(azure);
                (Arc::new(store), UrlSigner::Service(Arc::new(signer)))
            }
            Provider::Gcs => {
                let gcs = crate::gcs::build(config)?;
                let signer = crate::gcs::V4Signer::new(gcs.clone());
                let store = crate::gcs::store(config, gcs)?;
                (Arc::new(store), UrlSigner::Service(Arc::new(signer)))
            }
        };
        let monitor = Arc::new(Monitor::new(AlarmSettings::from_config(&config.monitoring)));
        let mut storage = Storage::assemble(
            store,
            Backend::of(os.provider),
            os.prefix.clone(),
            monitor,
            config.ttl_policy(),
            os.provider == Provider::S3 && os.verify_folders.unwrap_or(os.endpoint.is_some()),
            urls,
        )
        .with_checksum(os.checksum);
        storage.local = local;
        Ok(storage)
    }

    /// A fresh in-memory storage under the default prefix `mask/`.
    pub fn memory() -> Storage {
        Storage::connect(&Config::memory()).expect("the memory config always connects")
    }

    /// Wraps any object_store under `prefix`, named `backend` in errors (for wrappers and
    /// new backends that want maskstore's API and contract).
    pub fn from_object_store(
        store: Arc<dyn ObjectStore>,
        backend: &str,
        prefix: KeyPrefix,
    ) -> Storage {
        Storage::assemble(
            store,
            Backend::foreign(backend),
            prefix,
            Arc::new(Monitor::new(AlarmSettings::default())),
            TtlPolicy::default(),
            false,
            UrlSigner::None,
        )
    }

    fn assemble(
        base: Arc<dyn ObjectStore>,
        backend: Backend,
        prefix: KeyPrefix,
        monitor: Arc<Monitor>,
        ttl: TtlPolicy,
        verify_folders: bool,
        urls: UrlSigner,
    ) -> Storage {
        let recorder = Recorder::new(backend.clone(), Arc::clone(&monitor));
        let mut storage = Storage {
            store: Arc::clone(&base),
            base,
            layers: Vec::new(),
            backend,
            prefix,
            ttl,
            verify_folders,
            urls,
            monitor,
            recorder,
            checksum: Config::memory().object_storage.checksum,
            verify_reads: true,
            local: None,
            upload_shape: None,
        };
        storage.rebuild();
        storage
    }

    /// Stacks the layers over the base store, and the instrumentation over them all, so
    /// each operation is counted once, under this storage's backend label.
    fn rebuild(&mut self) {
        let mut store = Arc::clone(&self.base);
        for layer in &self.layers {
            store = layer.wrap(store);
        }
        self.store = Instrumentation::new(self.recorder.clone()).wrap(store);
    }

    /// This storage with its calls passing through `layer` (above the layers it already
    /// has). Prefix, URL signer, TTL policy, monitor, metrics and settings stay as they
    /// are; `self` is unchanged. See [`crate::layers`].
    pub fn layer(&self, layer: impl Layer) -> Storage {
        let mut layered = self.clone();
        layered.layers.push(Arc::new(layer));
        layered.rebuild();
        layered
    }

    /// This storage, issuing gateway URLs with `signer` (for wrappers and tests that serve
    /// a storage built with [`Storage::from_object_store`] through the gateway).
    pub fn with_gateway_signer(mut self, signer: GatewaySigner) -> Storage {
        self.urls = UrlSigner::Gateway(Arc::new(Gateway {
            signer,
            ephemeral: false,
        }));
        self
    }

    /// The object_store all of this storage's calls go through: its layers over the
    /// provider's store, instrumented, so calls through it are counted and layered like the
    /// storage's own. For libraries that take an object_store; it is not scoped to
    /// [`Storage::prefix`]. To add behaviour, use [`Storage::layer`] instead of wrapping it.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The alarms fed by this storage's operations.
    pub fn monitor(&self) -> &Arc<Monitor> {
        &self.monitor
    }

    /// This storage, feeding `monitor` instead (one with its own settings or clock).
    pub fn with_monitor(mut self, monitor: Arc<Monitor>) -> Storage {
        self.recorder = Recorder::new(self.backend.clone(), Arc::clone(&monitor));
        self.monitor = monitor;
        self.rebuild();
        self
    }

    /// The signer of gateway URLs, for the gateway that verifies them; `None` on S3.
    pub fn gateway_signer(&self) -> Option<&GatewaySigner> {
        match &self.urls {
            UrlSigner::Gateway(gateway) => Some(&gateway.signer),
            _ => None,
        }
    }

    /// A URL granting `method` on `key` for `ttl_secs` seconds (none: the configured
    /// default; above the maximum: [`Error::InvalidTtl`], never clamped).
    ///
    /// On S3 it is a SigV4 presigned URL; on local and memory a gateway URL. For PUT, a
    /// bound content type and length make any other upload fail (403), and a bound SHA-256
    /// makes an altered body fail (S3: 400 `BadDigest`; gateway: 400, the upload aborted);
    /// on other methods they are refused here ([`Error::InvalidMetadata`]), as a promise
    /// no server keeps.
    pub async fn signed_url(
        &self,
        method: SignedMethod,
        key: &ObjectKey,
        ttl_secs: Option<u64>,
        options: &SignOptions,
    ) -> Result<SignedUrl> {
        let started = std::time::Instant::now();
        let result = self.sign(method, key, ttl_secs, options).await;
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::of_kind(e.kind()),
        };
        self.recorder.finish(Measured::Sign, outcome, started);
        result
    }

    async fn sign(
        &self,
        method: SignedMethod,
        key: &ObjectKey,
        ttl_secs: Option<u64>,
        options: &SignOptions,
    ) -> Result<SignedUrl> {
        let path = self.path(key)?;
        let ttl = self.ttl.resolve(ttl_secs)?;
        let bound_by_extension;
        let binds = self.capabilities().binds_upload_headers;
        let options = match default_put_binding(method, key, options).filter(|_| binds) {
            Some(bound) => {
                bound_by_extension = bound;
                &bound_by_extension
            }
            None => options,
        };
        if let Some(ct) = &options.content_type {
            WriteOptions::content_type(ct.clone()).validate()?;
        }
        if method != SignedMethod::Put {
            // A bound header is a promise about an upload; on another method no server
            // would keep it, so the URL would promise what it does not hold.
            let bound = [
                ("content-type", options.content_type.is_some()),
                ("content-length", options.content_length.is_some()),
                ("sha256", options.sha256.is_some()),
            ];
            if let Some((name, _)) = bound.iter().find(|(_, set)| *set) {
                return Err(Error::InvalidMetadata {
                    name: name.to_string(),
                    reason: format!(
                        "only a PUT URL binds what the upload sends; sign {method} without it, or sign put"
                    ),
                });
            }
        }
        if !binds && (options.content_type.is_some() || options.content_length.is_some()) {
            return Err(Error::Unsupported {
                backend: self.backend.to_string(),
                operation: "bind a signed URL to a content type or length".to_string(),
                detail: "its signed URLs cannot sign request headers (an Azure SAS binds the \
                         blob, the method and the expiry only); sign the URL without \
                         content_type and content_length, and check uploads after they land"
                    .to_string(),
            });
        }
        if options.sha256.is_some() && !self.capabilities().binds_upload_sha256 {
            // Azure and GCS verify an upload's MD5 or CRC, never a SHA-256 the URL could sign:
            // a URL that claimed the binding would let an altered body land.
            return Err(Error::Unsupported {
                backend: self.backend.to_string(),
                operation: "bind a signed URL to a SHA-256".to_string(),
                detail: "the service verifies no SHA-256 a signed URL could bind; sign the \
                         URL without sha256 and check the upload after it lands \
                         (maskstore verify)"
                    .to_string(),
            });
        }
        let now = Utc::now();
        let expires_at = now + ttl;
        let mut service_headers = Vec::new();
        let url = match &self.urls {
            UrlSigner::Service(signer) => {
                let signed = signer
                    .sign(&self.backend, method, &path, ttl, options)
                    .await?;
                service_headers = signed.headers;
                signed.url
            }
            UrlSigner::S3(_, presigner) => {
                presigner
                    .presign(&self.backend, method, &path, now, ttl, options)
                    .await?
            }
            UrlSigner::Gateway(gateway) => {
                gateway
                    .signer
                    .sign(method, key, expires_at.timestamp(), options)
            }
            UrlSigner::None => {
                return Err(Error::Unsupported {
                    backend: self.backend.to_string(),
                    operation: "sign URLs".to_string(),
                    detail: "this storage was built from a bare object_store; give it a gateway signer with with_gateway_signer".to_string(),
                });
            }
        };
        let mut headers = Vec::new();
        if let Some(ct) = &options.content_type {
            headers.push(("Content-Type".to_string(), ct.clone()));
        }
        headers.extend(service_headers);
        if let (Some(digest), UrlSigner::S3(..)) = (&options.sha256, &self.urls) {
            headers.push(("x-amz-checksum-sha256".to_string(), digest.base64()));
            headers.push((format!("x-amz-meta-{CHECKSUM_METADATA}"), digest.stored()));
        }
        Ok(SignedUrl {
            url,
            method,
            expires_at,
            headers,
        })
    }

    /// This storage, storing `algorithm`'s checksum with every write (the config's
    /// `object_storage.checksum`; `none` writes objects without one).
    pub fn with_checksum(mut self, algorithm: ChecksumAlgorithm) -> Storage {
        self.checksum = algorithm;
        self
    }

    /// This storage, streaming uploads (other than the local provider's) in parts of
    /// `part_size` bytes with at most `max_in_flight` of them in flight, instead of
    /// [`UPLOAD_PART_SIZE`] and [`UPLOAD_MAX_IN_FLIGHT`]: for the benchmark that chose
    /// those (`benches/peers`, BENCHMARKS.md), not for operators. `part_size` is raised to
    /// S3's minimum part (5 MiB) and `max_in_flight` to 1.
    #[doc(hidden)]
    pub fn with_upload_shape(mut self, part_size: usize, max_in_flight: usize) -> Storage {
        /// S3's smallest part but the last (S3 API reference, UploadPart).
        const S3_MIN_PART: usize = 5 * 1024 * 1024;
        self.upload_shape = Some((part_size.max(S3_MIN_PART), max_in_flight.max(1)));
        self
    }

    /// The checksum every write stores.
    pub fn checksum_algorithm(&self) -> ChecksumAlgorithm {
        self.checksum
    }

    /// This storage, with whole reads no longer verifying stored checksums: for forensics
    /// on an object reported corrupt (`--no-verify`), never for normal use.
    pub fn without_verification(&self) -> Storage {
        Storage {
            verify_reads: false,
            ..self.clone()
        }
    }

    /// Whether whole reads verify stored checksums.
    pub fn verifies_reads(&self) -> bool {
        self.verify_reads
    }

    /// The verifier of a whole read of the object `info` describes, when reads verify and
    /// it has a checksum.
    fn verifier(&self, info: &ObjectInfo, whole: bool) -> Option<Verifier> {
        if !self.verify_reads || !whole {
            return None;
        }
        Verifier::new(&self.backend, info.key.as_str(), info.checksum.as_deref())
    }

    /// `attributes` with the checksum of `data` added (unless checksums are off).
    fn with_checksum_of(&self, mut attributes: Attributes, data: &[u8]) -> Attributes {
        if let Some(mut hasher) = Hasher::new(self.checksum) {
            hasher.update(data);
            attributes.insert(
                object_store::Attribute::Metadata(CHECKSUM_METADATA.into()),
                hasher.finish().into(),
            );
        }
        attributes
    }

    /// The backend name (`s3`, `local`, `memory`, or a wrapper's).
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The prefix every key must lie below.
    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    /// The signed-URL lifetime policy of the config.
    pub fn ttl_policy(&self) -> TtlPolicy {
        self.ttl
    }

    /// What this storage can do beyond the contract every backend follows.
    pub fn capabilities(&self) -> Capabilities {
        let s3 = matches!(self.urls, UrlSigner::S3(..));
        Capabilities {
            signed_urls: match &self.urls {
                UrlSigner::S3(..) | UrlSigner::Service(_) => UrlIssuer::Backend,
                UrlSigner::Gateway(_) => UrlIssuer::Gateway,
                UrlSigner::None => UrlIssuer::None,
            },
            urls_outlive_process: match &self.urls {
                UrlSigner::S3(..) | UrlSigner::Service(_) => true,
                UrlSigner::Gateway(gateway) => !gateway.ephemeral,
                UrlSigner::None => false,
            },
            incomplete_uploads: s3,
            content_etags: s3,
            binds_upload_headers: match &self.urls {
                UrlSigner::Service(signer) => signer.binds_upload_headers(),
                UrlSigner::S3(..) | UrlSigner::Gateway(_) | UrlSigner::None => true,
            },
            binds_upload_sha256: !matches!(self.urls, UrlSigner::Service(_)),
        }
    }

    /// The same backend scoped to a narrower prefix `sub` below this one.
    pub fn scoped(&self, sub: &str) -> Result<Storage> {
        Ok(Storage {
            prefix: self.prefix.child(sub)?,
            ..self.clone()
        })
    }

    /// The key `relative` below the prefix.
    pub fn key(&self, relative: &str) -> Result<ObjectKey> {
        Ok(self.prefix.key(relative)?)
    }

    fn path(&self, key: &ObjectKey) -> Result<Path> {
        if !key.is_within(&self.prefix) {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: format!(
                    "it lies outside the configured prefix {:?}; this storage only touches keys below it",
                    self.prefix.as_str()
                ),
            });
        }
        Path::parse(key.as_str()).map_err(|e| Error::InvalidKey {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }

    /// The folder `prefix` (a full key prefix such as `mask/1.2/`, with or without the
    /// trailing `/`), checked to lie at or below the configured prefix.
    fn folder(&self, prefix: Option<&str>) -> Result<Path> {
        let text = prefix.unwrap_or(self.prefix.as_str());
        let with_slash = if text.ends_with('/') {
            text.to_string()
        } else {
            format!("{text}/")
        };
        let folder = KeyPrefix::parse(with_slash)?;
        if !self.prefix.contains_prefix(&folder) {
            return Err(Error::InvalidKey {
                key: text.to_string(),
                reason: format!(
                    "it lies outside the configured prefix {:?}",
                    self.prefix.as_str()
                ),
            });
        }
        Path::parse(folder.as_str().trim_end_matches('/')).map_err(|e| Error::InvalidKey {
            key: text.to_string(),
            reason: e.to_string(),
        })
    }

    fn err(&self, key: &impl AsRef<str>) -> impl Fn(object_store::Error) -> Error + '_ {
        let key = key.as_ref().to_string();
        move |e| Error::from_store(&self.backend, &key, e)
    }

    /// Stores `data` at `key`, replacing any object there.
    pub async fn put(&self, key: &ObjectKey, data: impl Into<Bytes>) -> Result<PutOutcome> {
        self.put_with(key, data, &WriteOptions::default()).await
    }

    /// Stores `data` at `key` with a content type, metadata and write mode.
    pub async fn put_with(
        &self,
        key: &ObjectKey,
        data: impl Into<Bytes>,
        options: &WriteOptions,
    ) -> Result<PutOutcome> {
        let path = self.path(key)?;
        options.validate()?;
        let mode = match &options.mode {
            WriteMode::Overwrite => PutMode::Overwrite,
            WriteMode::CreateOnly => PutMode::Create,
            WriteMode::IfMatch(etag) => PutMode::Update(UpdateVersion {
                e_tag: Some(etag.clone()),
                version: None,
            }),
        };
        let data: Bytes = data.into();
        // The local provider hashes the bytes as it writes them (one pass); elsewhere the
        // checksum is computed first, to send with the request.
        let hash_on_write = (self.backend.provider() == Some(Provider::Local)
            && self.checksum != ChecksumAlgorithm::None)
            .then(|| crate::checksum::HashOnWrite {
                algorithm: self.checksum,
                done: LateChecksum::default(),
            });
        let mut opts = PutOptions {
            mode,
            attributes: match hash_on_write {
                Some(_) => options.attributes(),
                None => self.with_checksum_of(options.attributes(), &data),
            },
            ..Default::default()
        };
        if let Some(request) = &hash_on_write {
            opts.extensions.insert(request.clone());
        }
        let sent = hash_on_write.as_ref().map(|_| data.clone());
        let result = match self.store.put_opts(&path, data.into(), opts).await {
            Ok(result) => result,
            // S3 answers an if-match write to a missing key with 404; the condition failed.
            Err(object_store::Error::NotFound { .. })
                if matches!(options.mode, WriteMode::IfMatch(_)) =>
            {
                return Err(Error::Precondition {
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(Error::from_store(&self.backend, key.as_str(), e)),
        };
        let outcome = PutOutcome {
            etag: result.e_tag,
            version: result.version,
        };
        if let (Some(request), Some(sent)) = (hash_on_write, sent)
            && !request.done.stored()
            && let Some(checksum) = crate::checksum::checksum_of(self.checksum, &sent)
        {
            // A store that ignored the request (a bare object_store named local).
            return self.stamp(key, &path, outcome, checksum).await;
        }
        Ok(outcome)
    }

    /// Stores `data` only if `key` does not exist yet.
    pub async fn put_if_absent(
        &self,
        key: &ObjectKey,
        data: impl Into<Bytes>,
    ) -> Result<PutOutcome> {
        self.put_with(
            key,
            data,
            &WriteOptions::default().with_mode(WriteMode::CreateOnly),
        )
        .await
    }

    /// Reads the whole object.
    pub async fn get(&self, key: &ObjectKey) -> Result<Object> {
        self.read(key, ReadOptions::default()).await
    }

    /// Reads a byte range of the object; `info.size` still reports the whole object.
    pub async fn get_range(&self, key: &ObjectKey, range: impl Into<ByteRange>) -> Result<Object> {
        let options = ReadOptions {
            range: Some(range.into()),
            ..Default::default()
        };
        self.read(key, options).await
    }

    /// Reads the object (or part of it) into memory, with conditions.
    ///
    /// A whole read (no range) verifies the stored checksum: damaged bytes fail with
    /// [`Error::Corrupt`]. A range read cannot be verified (the checksum covers the whole
    /// object) and is returned as read.
    pub async fn read(&self, key: &ObjectKey, options: ReadOptions) -> Result<Object> {
        let whole = options.range.is_none();
        let result = self.get_result_with(key, options, true).await?;
        let info = info_of(key.clone(), &result.meta, &result.attributes, Source::Read);
        let range = result.range.clone();
        let verifier = self.verifier(&info, whole);
        let Some(mut verifier) = verifier else {
            // `bytes()` reads a local file's range in one go instead of chunk by chunk.
            let data = result.bytes().await.map_err(self.err(key))?;
            return Ok(Object { info, range, data });
        };
        if let Some(computed) = result.extensions.get::<ReadChecksum>().cloned() {
            let data = result.bytes().await.map_err(self.err(key))?;
            if computed.data.as_ptr() == data.as_ptr() && computed.data.len() == data.len() {
                // Hashed by the local provider as it read this very buffer.
                verifier.finish_with(computed.checksum)?;
            } else {
                verifier.update(&data);
                verifier.finish()?;
            }
            return Ok(Object { info, range, data });
        }
        // Each chunk is hashed and copied into the one buffer as it arrives, while still in
        // the cache, and dropped: one pass over fresh bytes, as `bytes()` reads. (Holding
        // the chunks to join them at the end cost a second pass over cold memory and twice
        // the pages: +36 ms on a 64 MiB read from SeaweedFS, BENCHMARKS.md issue 16.)
        let expected = usize::try_from(range.end.saturating_sub(range.start)).unwrap_or(0);
        let data = collect_hashing(result.into_stream(), expected, |chunk| {
            verifier.update(chunk)
        })
        .await
        .map_err(self.err(key))?;
        verifier.finish()?;
        Ok(Object { info, range, data })
    }

    /// Reads the object as a stream, with memory bounded whatever its size.
    pub async fn get_stream(&self, key: &ObjectKey) -> Result<ObjectStream> {
        self.read_stream(key, ReadOptions::default()).await
    }

    /// Reads the object (or part of it) as a stream, with conditions.
    ///
    /// A whole read verifies the stored checksum: a stream of damaged bytes ends in
    /// [`Error::Corrupt`] instead of its last chunk. Range reads are not verified.
    pub async fn read_stream(&self, key: &ObjectKey, options: ReadOptions) -> Result<ObjectStream> {
        let whole = options.range.is_none();
        let result = self.get_result(key, options).await?;
        let info = info_of(key.clone(), &result.meta, &result.attributes, Source::Read);
        let verifier = self.verifier(&info, whole);
        let range = result.range.clone();
        let backend = self.backend.clone();
        let key_text = key.to_string();
        let stream = match result.payload {
            GetResultPayload::File(file, _) => file_stream(file, range.clone()),
            GetResultPayload::Stream(stream) => stream,
        };
        let stream = stream
            .map_err(move |e| Error::from_store(&backend, &key_text, e))
            .boxed();
        let stream = match verifier {
            Some(verifier) => verify_stream(stream, verifier),
            None => stream,
        };
        Ok(ObjectStream {
            info,
            range,
            stream,
        })
    }

    /// Writes the whole object into `file` from its current position and returns what was
    /// read; `progress` is told the bytes written so far and the total as the copy advances.
    ///
    /// A local object is copied by the kernel, file to file, as `cp` does; any other
    /// backend's body streams to a writer thread, so reading and writing overlap and at
    /// most four chunks are held in memory. The file is not synced: that is the caller's
    /// choice.
    ///
    /// The stored checksum is verified (a local object is then read a second time, from
    /// the page cache, by a hashing thread beside the kernel's copy): on [`Error::Corrupt`]
    /// the file holds damaged bytes and must be discarded.
    pub async fn read_to_file(
        &self,
        key: &ObjectKey,
        file: &std::fs::File,
        progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<ObjectInfo> {
        use std::io::Write;
        let destination = |source: std::io::Error| Error::Destination {
            key: key.to_string(),
            source,
        };
        let result = self.get_result(key, ReadOptions::default()).await?;
        let info = info_of(key.clone(), &result.meta, &result.attributes, Source::Read);
        let mut verifier = self.verifier(&info, true);
        let dest = file.try_clone().map_err(destination)?;
        let expected = result.range.end - result.range.start;
        let written = match result.payload {
            // Verifying needs the bytes: the kernel copies the file while a second thread
            // reads and hashes the same range, all in one blocking task.
            GetResultPayload::File(source, _) if verifier.is_some() => {
                let range = result.range.clone();
                let mut hashing = verifier.take();
                let copied = tokio::task::spawn_blocking(move || {
                    let mut inspect = |chunk: &[u8]| {
                        if let Some(verifier) = &mut hashing {
                            verifier.update(chunk);
                        }
                    };
                    let copied = copy_hashing(&source, range, &dest, &mut inspect, &progress);
                    (copied, hashing)
                })
                .await;
                match copied {
                    Ok((Ok(Err(read)), _)) => {
                        let read = LocalError::io("(a local read)", read);
                        return Err(self.err(key)(read.into()));
                    }
                    Ok((copied, hashing)) => {
                        verifier = hashing;
                        Ok(copied.map(|c| c.unwrap_or_default()))
                    }
                    Err(e) => Err(e),
                }
            }
            GetResultPayload::File(source, _) => {
                let range = result.range.clone();
                tokio::task::spawn_blocking(move || {
                    copy_file_range(&source, range, &dest, &progress)
                })
                .await
            }
            GetResultPayload::Stream(mut stream) => {
                let (sender, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
                let writer = tokio::task::spawn_blocking(move || {
                    let mut dest = dest;
                    let mut written = 0;
                    while let Some(chunk) = receiver.blocking_recv() {
                        dest.write_all(&chunk)?;
                        written += chunk.len() as u64;
                        progress(written, expected);
                    }
                    Ok(written)
                });
                let mut failed = None;
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        // A closed channel means the writer failed; it reports why below.
                        Ok(chunk) => {
                            if let Some(verifier) = &mut verifier {
                                verifier.update(&chunk);
                            }
                            if sender.send(chunk).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                drop(sender);
                let written = writer.await;
                // The writer has stopped, so nothing writes to the file after this returns.
                if let Some(e) = failed {
                    return Err(self.err(key)(e));
                }
                written
            }
        };
        let written = written
            .map_err(std::io::Error::other)
            .and_then(|w| w)
            .map_err(destination)?;
        if written != expected {
            return Err(Error::Backend {
                backend: self.backend.to_string(),
                key: key.to_string(),
                source: format!("the body ended after {written} of {expected} bytes").into(),
            });
        }
        if let Some(verifier) = verifier {
            verifier.finish()?;
        }
        Ok(info)
    }

    /// Stores the file at `path` as `key` (the mirror of [`Storage::read_to_file`]), with
    /// the checksum of the bytes stored, like any write; `progress` is told the bytes stored
    /// so far and the total as the copy advances.
    ///
    /// On the local provider the kernel copies the file into the object's temporary file
    /// (`copy_file_range`, as `cp` does) while the bytes landed are hashed on a second
    /// thread and their write-back started on a third; every write mode works. Elsewhere
    /// (S3, memory, or a storage with layers, which must see the write) the file is read
    /// in parts on a blocking thread, ahead of the upload, as a streaming upload: memory
    /// stays under [`UPLOAD_PART_SIZE`] × ([`UPLOAD_MAX_IN_FLIGHT`] + 2); there a
    /// conditional mode takes files of at most [`MULTIPART_THRESHOLD`] bytes (one PUT).
    ///
    /// A file that is missing, unreadable, not a regular file, or that changes size while
    /// it is stored is [`Error::Source`], and nothing is stored.
    pub async fn write_from_file(
        &self,
        key: &ObjectKey,
        path: &std::path::Path,
        options: &WriteOptions,
        progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<PutOutcome> {
        // A bad key or option is refused before the file is opened.
        self.path(key)?;
        options.validate()?;
        let source_error = |source: std::io::Error| Error::Source {
            key: key.to_string(),
            path: path.display().to_string(),
            source,
        };
        let opened = {
            let path = path.to_path_buf();
            tokio::task::spawn_blocking(
                move || -> std::io::Result<(std::fs::File, std::fs::Metadata)> {
                    // Non-blocking, so a FIFO (or a device) put at the path, even after the
                    // caller looked at it, is refused below instead of waiting for a writer.
                    use std::os::unix::fs::OpenOptionsExt;
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                        .open(&path)?;
                    let md = file.metadata()?;
                    if !md.is_file() {
                        return Err(std::io::Error::other(
                            "not a regular file (a folder, a device or a pipe); stream it instead",
                        ));
                    }
                    rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty())?;
                    Ok((file, md))
                },
            )
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
        };
        let (file, before) = opened.map_err(source_error)?;
        let shown = path.display().to_string();
        self.store_file(key, file, before, &shown, None, options, progress)
            .await
    }

    /// The file of the object at `key`, opened for reading beneath the local provider's
    /// root handle (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, as every local
    /// read: a symlink anywhere on the key's path, a folder or a FIFO is
    /// [`Error::NotFound`], never followed or waited on), with what a HEAD would say of
    /// that very file. Store it elsewhere with [`Storage::write_from_open_file`], which
    /// checks its bytes against its stored checksum.
    ///
    /// `Ok(None)` when this storage is not the local provider, or has layers (which must
    /// see every read): read the object with [`Storage::get_stream`] instead. Counted as a
    /// get of the object's size.
    pub async fn open_file(&self, key: &ObjectKey) -> Result<Option<ObjectFile>> {
        let (Some(local), true) = (&self.local, self.layers.is_empty()) else {
            return Ok(None);
        };
        let location = self.path(key)?;
        let started = std::time::Instant::now();
        let operation = crate::layers::Operation::Get;
        match local.open_file(location.clone()).await {
            Ok(opened) => {
                self.recorder.bytes(operation, opened.meta.size);
                self.recorder
                    .finish(Measured::Store(operation), Outcome::Success, started);
                Ok(Some(ObjectFile {
                    info: info_of(key.clone(), &opened.meta, &opened.attributes, Source::Read),
                    file: opened.file,
                    stat: opened.stat,
                    shown: opened.shown.display().to_string(),
                    backend: self.backend.clone(),
                    verify: self.verify_reads,
                }))
            }
            Err(e) => {
                let kind = Error::kind_of_store(&self.backend, location.as_ref(), &e);
                self.recorder
                    .finish(Measured::Store(operation), Outcome::of_kind(kind), started);
                Err(Error::from_store(&self.backend, key.as_str(), e))
            }
        }
    }

    /// Stores an object's file opened by [`Storage::open_file`] (of this storage or
    /// another) as `key`, as [`Storage::write_from_file`] stores a file: the kernel copies
    /// it on the local provider, parts are read ahead of a streaming upload elsewhere; the
    /// checksum stored is this storage's, of the bytes stored.
    ///
    /// The bytes are also checked against the checksum the source object was stored with
    /// (unless its storage reads without verification), before anything is committed: on
    /// the local provider the bytes landed in the temporary file are hashed (with the
    /// source's algorithm; once when it is also this storage's), elsewhere the bytes read
    /// from the file as they are uploaded. A mismatch is [`Error::Corrupt`] naming the
    /// source's key and backend, and nothing is stored: the key keeps the object it had (the
    /// temporary file is removed; a multipart upload is aborted, a single PUT never sent).
    /// A source without a checksum is copied unverified. A file that changes size or
    /// modification time while it is copied is [`Error::Source`], nothing stored.
    pub async fn write_from_open_file(
        &self,
        key: &ObjectKey,
        source: ObjectFile,
        options: &WriteOptions,
        progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<PutOutcome> {
        let verify = if source.verify {
            Verifier::new(
                &source.backend,
                source.info.key.as_str(),
                source.info.checksum.as_deref(),
            )
        } else {
            None
        };
        self.store_file(
            key,
            source.file,
            source.stat,
            &source.shown,
            verify,
            options,
            progress,
        )
        .await
    }

    /// Stores the open regular `file`, whose `fstat` before the copy was `before` (named
    /// `shown` in errors), as `key`; with `verify`, refuses bytes that do not match it
    /// before the commit. See [`Storage::write_from_file`] and
    /// [`Storage::write_from_open_file`].
    #[allow(clippy::too_many_arguments)]
    async fn store_file(
        &self,
        key: &ObjectKey,
        file: std::fs::File,
        before: std::fs::Metadata,
        shown: &str,
        verify: Option<Verifier>,
        options: &WriteOptions,
        progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<PutOutcome> {
        let location = self.path(key)?;
        options.validate()?;
        let (key_text, shown_text) = (key.to_string(), shown.to_string());
        let source_error = move |source: std::io::Error| Error::Source {
            key: key_text.clone(),
            path: shown_text.clone(),
            source,
        };
        let size = before.len();
        let mode = match &options.mode {
            WriteMode::Overwrite => PutMode::Overwrite,
            WriteMode::CreateOnly => PutMode::Create,
            WriteMode::IfMatch(etag) => PutMode::Update(UpdateVersion {
                e_tag: Some(etag.clone()),
                version: None,
            }),
        };
        if let (Some(local), true) = (&self.local, self.layers.is_empty()) {
            // Counted as a put, as the instrumentation layer would.
            let started = std::time::Instant::now();
            let stored = local
                .write_from_file(
                    location.clone(),
                    file,
                    before,
                    options.attributes(),
                    mode,
                    self.checksum,
                    verify,
                    Box::new(progress),
                )
                .await;
            let operation = crate::layers::Operation::Put;
            let (outcome, result) = match stored {
                Ok((result, bytes)) => {
                    self.recorder.bytes(operation, bytes);
                    (Outcome::Success, Ok(result))
                }
                Err(crate::local::FromFileError::Source(e)) => {
                    let e = source_error(e);
                    (Outcome::of_kind(e.kind()), Err(e))
                }
                Err(crate::local::FromFileError::Corrupt(e)) => {
                    (Outcome::of_kind(e.kind()), Err(e))
                }
                Err(crate::local::FromFileError::Store(e)) => {
                    let kind = Error::kind_of_store(&self.backend, location.as_ref(), &e);
                    (
                        Outcome::of_kind(kind),
                        Err(Error::from_store(&self.backend, key.as_str(), e)),
                    )
                }
            };
            self.recorder
                .finish(Measured::Store(operation), outcome, started);
            let result = result?;
            return Ok(PutOutcome {
                etag: result.e_tag,
                version: result.version,
            });
        }
        if options.mode != WriteMode::Overwrite {
            if size > MULTIPART_THRESHOLD as u64 {
                return Err(Error::Unsupported {
                    backend: self.backend.to_string(),
                    operation: "store a large file conditionally".to_string(),
                    detail: format!(
                        "create-only and if-match writes of files over {MULTIPART_THRESHOLD} \
                         bytes are streaming uploads, which always overwrite; store it without \
                         the condition"
                    ),
                });
            }
            let data = tokio::task::spawn_blocking(move || {
                let read = || {
                    let data = crate::local::file_io::read_chunk(&file, 0, size as usize)?;
                    crate::local::file_io::source_unchanged(&file, &before)?;
                    Ok(data)
                };
                let data = read().map_err(&source_error)?;
                if let Some(mut verify) = verify {
                    verify.update(&data);
                    verify.finish()?;
                }
                Ok::<_, Error>(data)
            })
            .await
            .map_err(|e| Error::Backend {
                backend: self.backend.to_string(),
                key: key.to_string(),
                source: e.into(),
            })??;
            let outcome = self.put_with(key, data, options).await?;
            progress(size, size);
            return Ok(outcome);
        }
        // Parts are read on a blocking thread, one ahead of the upload.
        let part = self.multipart_threshold();
        let (parts, mut incoming) = tokio::sync::mpsc::channel::<Result<Bytes>>(1);
        let reader_error = source_error.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let source_error = reader_error;
            let mut verify = verify;
            let mut at = 0;
            while at < size {
                let len = (size - at).min(part as u64) as usize;
                let read = crate::local::file_io::read_chunk(&file, at, len)
                    .map(Bytes::from)
                    .map_err(&source_error);
                if let (Ok(chunk), Some(verify)) = (&read, &mut verify) {
                    verify.update(chunk);
                }
                let failed = read.is_err();
                if parts.blocking_send(read).is_err() || failed {
                    return;
                }
                at += len as u64;
            }
            // Last: the upload completes only after the file was found as it was read, and
            // its bytes as the source's checksum says.
            let checked = crate::local::file_io::source_unchanged(&file, &before)
                .map_err(&source_error)
                .and_then(|()| verify.map_or(Ok(()), Verifier::finish));
            if let Err(e) = checked {
                let _ = parts.blocking_send(Err(e));
            }
        });
        let mut upload = self.upload(key, options).await?;
        let mut sent = 0;
        let mut failed = None;
        while let Some(read) = incoming.recv().await {
            let written = match read {
                Ok(chunk) => {
                    sent += chunk.len() as u64;
                    upload.write(chunk).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                failed = Some(e);
                break;
            }
            progress(sent, size);
        }
        drop(incoming);
        let _ = reader.await;
        if failed.is_none() && sent != size {
            failed = Some(source_error(std::io::Error::other(format!(
                "read {sent} of its {size} bytes"
            ))));
        }
        if let Some(e) = failed {
            // The upload's own error is the one to report; abort is best effort.
            let _ = upload.abort().await;
            return Err(e);
        }
        upload.finish().await
    }

    async fn get_result(&self, key: &ObjectKey, options: ReadOptions) -> Result<GetResult> {
        self.get_result_with(key, options, false).await
    }

    /// The backend's answer to a read; with `into_memory`, the caller holds the whole range
    /// in memory, so the local provider reads it in the same call that opens the file.
    async fn get_result_with(
        &self,
        key: &ObjectKey,
        options: ReadOptions,
        into_memory: bool,
    ) -> Result<GetResult> {
        if let Some(ByteRange::Bounded(r)) = &options.range
            && r.end <= r.start
        {
            return Err(Error::InvalidRange {
                key: key.to_string(),
                detail: format!("{}..{} is empty or reversed", r.start, r.end),
            });
        }
        let path = self.path(key)?;
        let options_whole = options.range.is_none();
        let mut get = GetOptions {
            if_match: options.if_match,
            if_none_match: options.if_none_match,
            range: options.range.map(|r| match r {
                ByteRange::Bounded(r) => GetRange::Bounded(r),
                ByteRange::From(o) => GetRange::Offset(o),
                ByteRange::Suffix(n) => GetRange::Suffix(n),
            }),
            ..Default::default()
        };
        if into_memory {
            // A whole read is verified: the provider may hash it as it reads.
            let hash = self.verify_reads && options_whole;
            get.extensions.insert(crate::local::ReadAll { hash });
        }
        self.store.get_opts(&path, get).await.map_err(self.err(key))
    }

    /// What is known about the object, without its content.
    pub async fn head(&self, key: &ObjectKey) -> Result<ObjectInfo> {
        let path = self.path(key)?;
        let options = GetOptions {
            head: true,
            ..Default::default()
        };
        let result = match self.store.get_opts(&path, options).await {
            Ok(result) => result,
            // A HEAD answer has no body, so S3 cannot say whether the credentials or the
            // policy refused it; a GET's error body does.
            Err(object_store::Error::PermissionDenied { .. }) => {
                return Err(self.explain_refused_head(&path, key).await);
            }
            Err(e) => return Err(Error::from_store(&self.backend, key.as_str(), e)),
        };
        Ok(info_of(
            key.clone(),
            &result.meta,
            &result.attributes,
            Source::Read,
        ))
    }

    async fn explain_refused_head(&self, path: &Path, key: &ObjectKey) -> Error {
        match self.store.get_opts(path, GetOptions::default()).await {
            Err(e) => Error::from_store(&self.backend, key.as_str(), e),
            Ok(_) => Error::PermissionDenied {
                backend: self.backend.to_string(),
                provider: self.backend.provider(),
                key: key.to_string(),
                detail: "HEAD was refused (403) while GET is allowed".to_string(),
            },
        }
    }

    /// Whether an object exists at `key`.
    pub async fn exists(&self, key: &ObjectKey) -> Result<bool> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the object. Deleting a missing key succeeds, on every backend.
    pub async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::from_store(&self.backend, key.as_str(), e)),
        }
    }

    /// Deletes many objects (batched where the backend can); missing keys are fine.
    pub async fn delete_many(&self, keys: &[ObjectKey]) -> Result<()> {
        let paths = keys
            .iter()
            .map(|k| self.path(k))
            .collect::<Result<Vec<_>>>()?;
        let input = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut results = self.store.delete_stream(input);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::from_store(&self.backend, "(many keys)", e)),
            }
        }
        Ok(())
    }

    /// Every object below `prefix` (default: the configured prefix), streamed.
    ///
    /// Prefixes are whole segments: `mask/a` lists `mask/a/…`, never `mask/ab`. The order
    /// is unspecified (S3 sorts, other engines do not); collect and sort when order matters.
    pub fn list(&self, prefix: Option<&str>) -> Result<BoxStream<'static, Result<ObjectInfo>>> {
        let folder = self.folder(prefix)?;
        let backend = self.backend.clone();
        let folder_text = folder.to_string();
        Ok(self
            .store
            .list(Some(&folder))
            .map(move |item| {
                let meta = item.map_err(|e| Error::from_store(&backend, &folder_text, e))?;
                let key = ObjectKey::parse(meta.location.as_ref())?;
                Ok(info_of(key, &meta, &Attributes::new(), Source::Listing))
            })
            .boxed())
    }

    /// One level below `prefix`: the objects there and the folders below it, both sorted.
    pub async fn list_with_delimiter(&self, prefix: Option<&str>) -> Result<Listing> {
        let folder = self.folder(prefix)?;
        let result = self
            .store
            .list_with_delimiter(Some(&folder))
            .await
            .map_err(self.err(&folder))?;
        let mut objects = result
            .objects
            .iter()
            .map(|meta| {
                let key = ObjectKey::parse(meta.location.as_ref())?;
                Ok(info_of(key, meta, &Attributes::new(), Source::Listing))
            })
            .collect::<Result<Vec<_>>>()?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        let folders = if self.verify_folders {
            self.folders_holding_objects(result.common_prefixes).await?
        } else {
            result.common_prefixes
        };
        let mut prefixes: Vec<String> = folders.iter().map(|p| format!("{p}/")).collect();
        prefixes.sort();
        Ok(Listing { objects, prefixes })
    }

    /// The folders that still hold at least one object. Engines with real directories
    /// (SeaweedFS) keep a folder after its last object is deleted; S3 never lists one.
    async fn folders_holding_objects(&self, folders: Vec<Path>) -> Result<Vec<Path>> {
        let checks = folders.into_iter().map(|folder| async move {
            match self.store.list(Some(&folder)).next().await {
                None => Ok(None),
                Some(Ok(_)) => Ok(Some(folder)),
                Some(Err(e)) => Err(Error::from_store(&self.backend, folder.as_ref(), e)),
            }
        });
        let kept: Vec<Option<Path>> = futures::stream::iter(checks)
            .buffered(16)
            .try_collect()
            .await?;
        Ok(kept.into_iter().flatten().collect())
    }

    /// Copies `from` to `to` (content, content type and metadata), replacing any object
    /// at `to`.
    pub async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        if from == to {
            return self.onto_itself(from, false).await;
        }
        let result = self.store.copy(&src, &dst).await;
        result.map_err(|e| self.pair_err(from, to, e))
    }

    /// Copies `from` to `to` only if `to` does not exist; else [`Error::AlreadyExists`].
    ///
    /// Where the backend has no conditional copy (plain S3), the object is read and written
    /// back with a create-only put, which S3 checks atomically.
    pub async fn copy_if_absent(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        if from == to {
            return self.onto_itself(from, true).await;
        }
        match self.store.copy_if_not_exists(&src, &dst).await {
            Ok(()) => Ok(()),
            Err(
                object_store::Error::NotSupported { .. }
                | object_store::Error::NotImplemented { .. },
            ) => {
                let source = self.store.get(&src).await.map_err(self.err(from))?;
                let attributes = source.attributes.clone();
                let data = source.bytes().await.map_err(self.err(from))?;
                let opts = PutOptions {
                    mode: PutMode::Create,
                    attributes,
                    ..Default::default()
                };
                self.store
                    .put_opts(&dst, data.into(), opts)
                    .await
                    .map(|_| ())
                    .map_err(self.err(to))
            }
            Err(e) => Err(self.pair_err(from, to, e)),
        }
    }

    /// Moves `from` to `to`, replacing any object at `to`.
    pub async fn rename(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        if from == to {
            return self.onto_itself(from, false).await;
        }
        let result = self.store.rename(&src, &dst).await;
        result.map_err(|e| self.pair_err(from, to, e))
    }

    /// Moves `from` to `to` only if `to` does not exist; else [`Error::AlreadyExists`] and
    /// `from` stays where it is.
    pub async fn rename_if_absent(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        self.copy_if_absent(from, to).await?;
        self.delete(from).await
    }

    /// A copy or rename of `key` onto itself keeps the object (object_store's memory store
    /// would delete it on rename, S3 refuses a plain self-copy): the key must exist, and a
    /// create-only one finds it taken.
    async fn onto_itself(&self, key: &ObjectKey, create_only: bool) -> Result<()> {
        self.head(key).await?;
        if create_only {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        Ok(())
    }

    /// Maps an error of a two-key operation to the key it is about.
    fn pair_err(&self, from: &ObjectKey, to: &ObjectKey, e: object_store::Error) -> Error {
        match e {
            object_store::Error::AlreadyExists { .. } => Error::AlreadyExists {
                key: to.to_string(),
            },
            other => Error::from_store(&self.backend, from.as_str(), other),
        }
    }

    /// Streaming uploads under `prefix` (default: the configured prefix) that were started
    /// and neither completed nor aborted — left by a crash or by an abort sent while the
    /// server was down. On S3 they are invisible but stored (and billed); local and memory
    /// keep none.
    pub async fn incomplete_uploads(&self, prefix: Option<&str>) -> Result<Vec<IncompleteUpload>> {
        let folder = self.folder(prefix)?;
        match &self.urls {
            UrlSigner::S3(s3, _) => crate::s3::incomplete_uploads(s3, &self.backend, &folder).await,
            UrlSigner::Gateway(_) | UrlSigner::Service(_) | UrlSigner::None => Ok(Vec::new()),
        }
    }

    /// Aborts every incomplete streaming upload under `prefix`; returns how many.
    pub async fn abort_incomplete_uploads(&self, prefix: Option<&str>) -> Result<usize> {
        let uploads = self.incomplete_uploads(prefix).await?;
        let UrlSigner::S3(s3, _) = &self.urls else {
            return Ok(0);
        };
        for upload in &uploads {
            let path = self.path(&upload.key)?;
            crate::s3::abort_upload(s3, &self.backend, &path, &upload.upload_id).await?;
        }
        Ok(uploads.len())
    }

    /// Starts a streaming upload to `key`: invisible until [`Upload::finish`], with memory
    /// bounded by [`UPLOAD_PART_SIZE`] × ([`UPLOAD_MAX_IN_FLIGHT`] + 1), on the local
    /// provider by [`LOCAL_UPLOAD_PART_SIZE`] × ([`LOCAL_UPLOAD_MAX_IN_FLIGHT`] + 1).
    ///
    /// Nothing is sent until one part's worth is written ([`MULTIPART_THRESHOLD`]; on the
    /// local provider [`LOCAL_UPLOAD_PART_SIZE`]): an object smaller than that is stored
    /// with one PUT at [`Upload::finish`] (a plain MD5 etag, one request, as every S3 tool
    /// expects), a larger one as a multipart upload.
    pub async fn upload(&self, key: &ObjectKey, options: &WriteOptions) -> Result<Upload> {
        self.upload_with_part_size(key, options, self.upload_shape().0)
            .await
    }

    /// [`Storage::upload`] holding at most `part_size` bytes per part instead of
    /// [`UPLOAD_PART_SIZE`], for a server that holds many uploads at once (the gateway):
    /// an upload that stalls holds under one part, and an object of `part_size` bytes or
    /// more is streamed as parts into the backend's temporary file.
    ///
    /// Only the stores the gateway serves (local, memory) take parts of any size; on S3 and
    /// a bare object_store, whose parts have a minimum size, `part_size` is ignored. It is
    /// raised to [`MIN_UPLOAD_PART_SIZE`] and capped at [`UPLOAD_PART_SIZE`].
    pub async fn upload_with_part_size(
        &self,
        key: &ObjectKey,
        options: &WriteOptions,
        part_size: usize,
    ) -> Result<Upload> {
        let part_size = if matches!(
            self.backend.provider(),
            Some(Provider::Local | Provider::Memory)
        ) {
            part_size.clamp(MIN_UPLOAD_PART_SIZE, UPLOAD_PART_SIZE)
        } else {
            self.upload_shape().0
        };
        if options.mode != WriteMode::Overwrite {
            return Err(Error::Unsupported {
                backend: self.backend.to_string(),
                operation: "stream an upload conditionally".to_string(),
                detail: "streaming uploads always overwrite; use put_with for create-only or \
                         if-match writes"
                    .to_string(),
            });
        }
        let path = self.path(key)?;
        options.validate()?;
        Ok(Upload {
            key: key.clone(),
            path,
            attributes: options.attributes(),
            storage: self.clone(),
            written: 0,
            part_size,
            max_in_flight: self.upload_shape().1,
            state: UploadState::Buffered(Vec::new()),
            hasher: Hasher::new(self.checksum),
            late: LateChecksum::default(),
        })
    }

    /// Streaming uploads to this storage of fewer bytes than this are one PUT; larger ones
    /// are multipart: [`MULTIPART_THRESHOLD`], or [`LOCAL_UPLOAD_PART_SIZE`] on the local
    /// provider, which streams into its temporary file from there on.
    pub fn multipart_threshold(&self) -> usize {
        self.upload_shape().0
    }

    /// Part size and parts in flight of this storage's streaming uploads: S3 needs parts of
    /// at least 5 MiB; the local provider writes each part straight to its temporary file,
    /// so small parts keep an upload's memory small.
    fn upload_shape(&self) -> (usize, usize) {
        if self.backend.provider() == Some(Provider::Local) {
            (LOCAL_UPLOAD_PART_SIZE, LOCAL_UPLOAD_MAX_IN_FLIGHT)
        } else {
            self.upload_shape
                .unwrap_or((UPLOAD_PART_SIZE, UPLOAD_MAX_IN_FLIGHT))
        }
    }

    /// Stores `checksum` with a just-completed multipart upload whose provider could not
    /// take it at completion (memory): the object is read back, and rewritten with the
    /// checksum only if it is still the version written (if-match) and its bytes hash to
    /// `checksum`; otherwise it is left as it is, unverified.
    async fn stamp(
        &self,
        key: &ObjectKey,
        path: &Path,
        outcome: PutOutcome,
        checksum: String,
    ) -> Result<PutOutcome> {
        let Some(etag) = outcome.etag.clone() else {
            return Ok(outcome);
        };
        let got = self
            .store
            .get_opts(
                path,
                GetOptions {
                    if_match: Some(etag.clone()),
                    ..Default::default()
                },
            )
            .await;
        let Ok(got) = got else {
            return Ok(outcome);
        };
        let mut attributes = got.attributes.clone();
        let Ok(data) = got.bytes().await else {
            return Ok(outcome);
        };
        if crate::checksum::checksum_of(self.checksum, &data).as_deref() != Some(&checksum) {
            return Ok(outcome);
        }
        attributes.insert(
            object_store::Attribute::Metadata(CHECKSUM_METADATA.into()),
            checksum.into(),
        );
        let opts = PutOptions {
            mode: PutMode::Update(UpdateVersion {
                e_tag: Some(etag),
                version: None,
            }),
            attributes,
            ..Default::default()
        };
        match self.store.put_opts(path, data.into(), opts).await {
            Ok(result) => Ok(PutOutcome {
                etag: result.e_tag,
                version: result.version,
            }),
            Err(object_store::Error::Precondition { .. }) => Ok(outcome),
            Err(e) => Err(Error::from_store(&self.backend, key.as_str(), e)),
        }
    }

    /// Stores `checksum` with a just-completed S3 multipart upload: the object is copied
    /// onto itself with its metadata replaced (CopyObject, `x-amz-metadata-directive:
    /// REPLACE`) only while it is still the version completed (`x-amz-copy-source-if-match`
    /// with the completion's etag). The metadata sent is what a HEAD of that version
    /// shows (so the engine's content type and every user entry are kept) plus the
    /// checksum. Server-side: no byte travels again.
    ///
    /// The object stays unverified, and the upload succeeds, when another write replaced it
    /// in between, when it is over CopyObject's 5 GiB, or when the copy fails (logged).
    async fn stamp_s3(
        &self,
        s3: &object_store::aws::AmazonS3,
        bucket: &str,
        path: &Path,
        outcome: PutOutcome,
        checksum: String,
    ) -> PutOutcome {
        /// CopyObject's limit (S3 API reference, CopyObject).
        const COPY_OBJECT_MAX: u64 = 5 * 1024 * 1024 * 1024;
        let Some(etag) = outcome.etag.clone() else {
            return outcome;
        };
        let head = self
            .store
            .get_opts(
                path,
                GetOptions {
                    if_match: Some(etag.clone()),
                    head: true,
                    ..Default::default()
                },
            )
            .await;
        let got = match head {
            Ok(got) if got.meta.size <= COPY_OBJECT_MAX => got,
            Ok(_) => {
                tracing::warn!(%path, "over 5 GiB: the upload is stored without a maskstore checksum (CopyObject's limit)");
                return outcome;
            }
            Err(e) => {
                tracing::warn!(%path, error = %e, "the upload is stored without a maskstore checksum: its HEAD failed");
                return outcome;
            }
        };
        let mut headers = reqwest::header::HeaderMap::new();
        let mut add = |name: String, value: &str| {
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        };
        for (attribute, value) in &got.attributes {
            use object_store::Attribute as A;
            let name = match attribute {
                A::ContentType => "content-type".to_string(),
                A::CacheControl => "cache-control".to_string(),
                A::ContentDisposition => "content-disposition".to_string(),
                A::ContentEncoding => "content-encoding".to_string(),
                A::ContentLanguage => "content-language".to_string(),
                A::StorageClass => "x-amz-storage-class".to_string(),
                A::Metadata(name) if name.as_ref() == CHECKSUM_METADATA => continue,
                A::Metadata(name) => format!("x-amz-meta-{name}"),
                _ => continue,
            };
            add(name, value.as_ref());
        }
        add(format!("x-amz-meta-{CHECKSUM_METADATA}"), &checksum);
        match crate::s3::copy_in_place(s3, &self.backend, bucket, path, &etag, headers).await {
            Ok(Some(copied)) => PutOutcome {
                etag: copied.etag.or(outcome.etag),
                version: copied.version.or(outcome.version),
            },
            Ok(None) => outcome,
            Err(e) => {
                tracing::warn!(%path, error = %e, "the upload is stored without a maskstore checksum: the copy in place failed");
                outcome
            }
        }
    }

    /// Starts the multipart upload behind an [`Upload`] that outgrew one PUT.
    async fn start_multipart(
        &self,
        key: &ObjectKey,
        path: &Path,
        attributes: Attributes,
        late: &LateChecksum,
        part_size: usize,
    ) -> Result<(WriteMultipart, Option<Confirm>)> {
        let mut opts = object_store::PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        // The whole-object checksum is known only at completion; a provider that can
        // store it then (local) takes it from here.
        opts.extensions.insert(late.clone());
        let upload = self
            .store
            .put_multipart_opts(path, opts)
            .await
            .map_err(self.err(key))?;
        // object_store retries a completion whose 200 answer merely contains
        // "InternalError" or "SlowDown", and S3's answer repeats the key: for such keys the
        // completion may be reported failed although it took effect. Note the version before,
        // so that `finish` can tell.
        let confirm = if self.capabilities().incomplete_uploads
            && crate::s3::completion_answer_is_misread(key.as_str())
        {
            // Without a readable version before, no confirmation is possible: the upload
            // goes ahead and reports what the completion says.
            match self.head(key).await {
                Ok(info) => Some(Confirm {
                    storage: self.clone(),
                    before: info.etag,
                }),
                Err(Error::NotFound { .. }) => Some(Confirm {
                    storage: self.clone(),
                    before: None,
                }),
                Err(_) => None,
            }
        } else {
            None
        };
        Ok((
            WriteMultipart::new_with_chunk_size(upload, part_size),
            confirm,
        ))
    }

    /// Streams `stream` into `key` through [`Storage::upload`]; aborts on the first error.
    pub async fn upload_stream<S, E>(
        &self,
        key: &ObjectKey,
        options: &WriteOptions,
        stream: S,
    ) -> Result<PutOutcome>
    where
        S: futures::Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::error::Error + Send + Sync + 'static,
    {
        self.upload_stream_with_part_size(key, options, stream, self.upload_shape().0)
            .await
    }

    /// [`Storage::upload_stream`] through [`Storage::upload_with_part_size`].
    pub async fn upload_stream_with_part_size<S, E>(
        &self,
        key: &ObjectKey,
        options: &WriteOptions,
        mut stream: S,
        part_size: usize,
    ) -> Result<PutOutcome>
    where
        S: futures::Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::error::Error + Send + Sync + 'static,
    {
        let mut upload = self.upload_with_part_size(key, options, part_size).await?;
        while let Some(chunk) = stream.next().await {
            let written = match chunk {
                Ok(chunk) => upload.write(chunk).await,
                Err(e) => Err(Error::Backend {
                    backend: self.backend.to_string(),
                    key: key.to_string(),
                    source: Box::new(e),
                }),
            };
            if let Err(e) = written {
                // The upload's own error is the one to report; abort is best effort.
                let _ = upload.abort().await;
                return Err(e);
            }
        }
        upload.finish().await
    }
}

/// A PUT URL for a key with a mask extension (`.png`, `.nii.gz`, …) and no bound content
/// type binds the format's type, so the holder cannot store `text/html` or an SVG under a
/// mask's name.
fn default_put_binding(
    method: SignedMethod,
    key: &ObjectKey,
    options: &SignOptions,
) -> Option<SignOptions> {
    if method != SignedMethod::Put || options.content_type.is_some() {
        return None;
    }
    let format = maskstore_core::MaskFormat::for_key(key.as_str())?;
    Some(SignOptions {
        content_type: Some(format.content_type().to_string()),
        ..options.clone()
    })
}

/// A streaming upload in progress. Dropping it without [`Upload::finish`] abandons it.
pub struct Upload {
    key: ObjectKey,
    path: Path,
    attributes: Attributes,
    storage: Storage,
    /// Part size, which is also the size from which the upload turns multipart.
    part_size: usize,
    /// Parts in flight at most.
    max_in_flight: usize,
    written: u64,
    state: UploadState,
    /// The checksum of the bytes written so far (none when checksums are off).
    hasher: Option<Hasher>,
    /// The whole-object checksum handed to the provider at completion.
    late: LateChecksum,
}

/// Where an upload's bytes are: held for one PUT, or streaming as parts.
enum UploadState {
    /// Fewer than the part size ([`MULTIPART_THRESHOLD`] by default) so far, none sent.
    Buffered(Vec<Bytes>),
    /// A multipart upload, and how to confirm its completion (see [`Confirm`]).
    Multipart {
        writer: Box<WriteMultipart>,
        confirm: Option<Box<Confirm>>,
    },
}

/// How to confirm a completion object_store may misreport: the storage, and the etag the
/// key had before the upload started.
struct Confirm {
    storage: Storage,
    before: Option<String>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("key", &self.key)
            .field("written", &self.written)
            .field(
                "multipart",
                &matches!(self.state, UploadState::Multipart { .. }),
            )
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// Appends `data`, waiting while too many parts are in flight.
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        self.written += data.len() as u64;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&data);
        }
        match &mut self.state {
            UploadState::Buffered(held) => {
                held.push(data);
                if self.written >= self.part_size as u64 {
                    // Should the start fail, the bytes stay held: nothing is lost or cut.
                    let (mut writer, confirm) = self
                        .storage
                        .start_multipart(
                            &self.key,
                            &self.path,
                            self.attributes.clone(),
                            &self.late,
                            self.part_size,
                        )
                        .await?;
                    for chunk in std::mem::take(held) {
                        writer.put(chunk);
                    }
                    self.state = UploadState::Multipart {
                        writer: Box::new(writer),
                        confirm: confirm.map(Box::new),
                    };
                }
                Ok(())
            }
            UploadState::Multipart { writer, .. } => {
                writer
                    .wait_for_capacity(self.max_in_flight)
                    .await
                    .map_err(|e| Error::from_store(&self.storage.backend, self.key.as_str(), e))?;
                writer.put(data);
                Ok(())
            }
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Completes the upload; the object becomes visible whole.
    ///
    /// The checksum of the bytes written is stored with the object: with one PUT in its
    /// metadata; for a multipart upload, by the local provider as it commits the file, on
    /// memory by a conditional rewrite of the attributes, and on S3 (which takes metadata
    /// only when a multipart upload starts, before the value is known) by a server-side
    /// copy in place guarded by the completion's etag (see `stamp_s3`). An S3 object over
    /// 5 GiB, beyond CopyObject, keeps S3's own checksums but reads as unverified.
    pub async fn finish(mut self) -> Result<PutOutcome> {
        let checksum = self.hasher.take().map(Hasher::finish);
        let (writer, confirm) = match self.state {
            UploadState::Buffered(held) => {
                let mut attributes = self.attributes;
                if let Some(checksum) = checksum {
                    attributes.insert(
                        object_store::Attribute::Metadata(CHECKSUM_METADATA.into()),
                        checksum.into(),
                    );
                }
                let opts = PutOptions {
                    mode: PutMode::Overwrite,
                    attributes,
                    ..Default::default()
                };
                let payload: object_store::PutPayload = held.into_iter().collect();
                let result = self
                    .storage
                    .store
                    .put_opts(&self.path, payload, opts)
                    .await
                    .map_err(self.storage.err(&self.key))?;
                return Ok(PutOutcome {
                    etag: result.e_tag,
                    version: result.version,
                });
            }
            UploadState::Multipart { writer, confirm } => (writer, confirm),
        };
        if let Some(checksum) = &checksum {
            self.late.set(checksum.clone());
        }
        let error = match writer.finish().await {
            Ok(result) => {
                let outcome = PutOutcome {
                    etag: result.e_tag,
                    version: result.version,
                };
                if let Some(checksum) = checksum
                    && !self.late.stored()
                {
                    if let UrlSigner::S3(s3, presigner) = &self.storage.urls {
                        return Ok(self
                            .storage
                            .stamp_s3(s3, presigner.bucket(), &self.path, outcome, checksum)
                            .await);
                    }
                    if !self.storage.capabilities().incomplete_uploads {
                        return self
                            .storage
                            .stamp(&self.key, &self.path, outcome, checksum)
                            .await;
                    }
                }
                return Ok(outcome);
            }
            Err(e) => Error::from_store(&self.storage.backend, self.key.as_str(), e),
        };
        // The completion took effect if the key now holds a new version of our size.
        if let Some(confirm) = &confirm
            && let Ok(info) = confirm.storage.head(&self.key).await
            && info.size == self.written
            && info.etag.is_some()
            && info.etag != confirm.before
        {
            tracing::debug!(key = %self.key, "completion misreported by the client; the object is in place");
            return Ok(PutOutcome {
                etag: info.etag,
                version: None,
            });
        }
        Err(error)
    }

    /// Abandons the upload; nothing becomes visible and the parts are discarded.
    pub async fn abort(self) -> Result<()> {
        match self.state {
            // Nothing was sent.
            UploadState::Buffered(_) => Ok(()),
            UploadState::Multipart { writer, .. } => writer
                .abort()
                .await
                .map_err(|e| Error::from_store(&self.storage.backend, self.key.as_str(), e)),
        }
    }
}

/// The bytes of `stream` in one buffer, `inspect` seeing each chunk as it arrives. A
/// single chunk is returned as it came (no copy); more are copied into a buffer sized for
/// `expected` bytes (the length the server announced; a reservation the allocator refuses
/// falls back to growing as the bytes come).
async fn collect_hashing(
    mut stream: BoxStream<'static, object_store::Result<Bytes>>,
    expected: usize,
    mut inspect: impl FnMut(&[u8]),
) -> object_store::Result<Bytes> {
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        inspect(&chunk);
        if joined.is_empty() {
            match first.take() {
                None => {
                    first = Some(chunk);
                    continue;
                }
                Some(held) => {
                    let wanted = expected.max(held.len() + chunk.len());
                    if joined.try_reserve_exact(wanted).is_err() {
                        joined.reserve(held.len() + chunk.len());
                    }
                    joined.extend_from_slice(&held);
                }
            }
        }
        joined.extend_from_slice(&chunk);
    }
    Ok(match first {
        Some(only) => only,
        None => Bytes::from(joined),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_whole_read_collects_every_chunk_in_order_each_seen_once_and_stops_at_an_error() {
        let stream = |parts: Vec<object_store::Result<Bytes>>| futures::stream::iter(parts).boxed();
        let ok = |b: &'static [u8]| Ok(Bytes::from_static(b));
        // One chunk comes back as it came, without a copy.
        let only = Bytes::from_static(b"only");
        let got = collect_hashing(stream(vec![Ok(only.clone())]), 4, |_| {})
            .await
            .unwrap();
        assert_eq!(got.as_ptr(), only.as_ptr());
        // Several, empty ones among them, whatever length the server announced.
        for expected in [0, 3, 9, 1 << 40] {
            let mut seen = Vec::new();
            let got = collect_hashing(
                stream(vec![
                    ok(b""),
                    ok(b"ab"),
                    ok(b""),
                    ok(b"cde"),
                    ok(b"f"),
                    ok(b""),
                ]),
                expected,
                |c| seen.extend_from_slice(c),
            )
            .await
            .unwrap();
            assert_eq!(got.as_ref(), b"abcdef", "{expected}");
            assert_eq!(seen, b"abcdef");
        }
        let got = collect_hashing(stream(vec![ok(b""), ok(b"")]), 0, |_| {})
            .await
            .unwrap();
        assert!(got.is_empty());
        let got = collect_hashing(stream(vec![]), 0, |_| {}).await.unwrap();
        assert!(got.is_empty());
        // An error mid-stream is the result, not a short buffer.
        let failed = collect_hashing(
            stream(vec![
                ok(b"ab"),
                Err(object_store::Error::Generic {
                    store: "S3",
                    source: "connection reset".into(),
                }),
                ok(b"cd"),
            ]),
            4,
            |_| {},
        )
        .await;
        assert!(matches!(failed, Err(object_store::Error::Generic { .. })));
    }

    #[tokio::test]
    async fn a_put_stores_its_checksum_whether_or_not_the_store_hashes_as_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let data = Bytes::from((0..700_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let want = crate::checksum::checksum_of(ChecksumAlgorithm::Crc64Nvme, &data);
        // The local provider hashes each slice as it writes it.
        let local = Storage::connect(&Config::local(dir.path().join("data")))
            .unwrap()
            .with_checksum(ChecksumAlgorithm::Crc64Nvme);
        // A bare object_store named local ignores the request: the checksum is stored by
        // a conditional rewrite instead.
        let bare = Storage::from_object_store(
            Arc::new(object_store::memory::InMemory::new()),
            Provider::Local.as_str(),
            "mask/".parse().unwrap(),
        )
        .with_checksum(ChecksumAlgorithm::Crc64Nvme);
        for storage in [local, bare] {
            let key = storage.key("hashed.bin").unwrap();
            storage.put(&key, data.clone()).await.unwrap();
            assert_eq!(storage.head(&key).await.unwrap().checksum, want);
            assert_eq!(storage.get(&key).await.unwrap().data, data);
        }
    }

    #[tokio::test]
    async fn a_smaller_part_size_streams_parts_on_gateway_stores_only() {
        let key = ObjectKey::parse("mask/parts.bin").unwrap();
        let chunk = Bytes::from(vec![7u8; 100 * 1024]);
        // Memory (a gateway store): 300 KiB with 256 KiB parts is a multipart upload.
        let memory = Storage::memory();
        let mut upload = memory
            .upload_with_part_size(&key, &WriteOptions::default(), 256 * 1024)
            .await
            .unwrap();
        for _ in 0..3 {
            upload.write(chunk.clone()).await.unwrap();
        }
        assert!(
            format!("{upload:?}").contains("multipart: true"),
            "{upload:?}"
        );
        upload.finish().await.unwrap();
        assert_eq!(memory.get(&key).await.unwrap().data.len(), 300 * 1024);
        // A tiny part size is raised to the minimum: 60 KiB stays one PUT.
        let mut upload = memory
            .upload_with_part_size(&key, &WriteOptions::default(), 1)
            .await
            .unwrap();
        upload
            .write(Bytes::from(vec![7u8; MIN_UPLOAD_PART_SIZE - 4096]))
            .await
            .unwrap();
        assert!(
            format!("{upload:?}").contains("multipart: false"),
            "{upload:?}"
        );
        // A bare object_store (parts with a minimum size, as S3's) keeps the default.
        let store = Arc::new(object_store::memory::InMemory::new());
        let bare = Storage::from_object_store(store, "s3", "mask/".parse().unwrap());
        let mut upload = bare
            .upload_with_part_size(&key, &WriteOptions::default(), 256 * 1024)
            .await
            .unwrap();
        for _ in 0..3 {
            upload.write(chunk.clone()).await.unwrap();
        }
        assert!(
            format!("{upload:?}").contains("multipart: false"),
            "{upload:?}"
        );
    }

    #[tokio::test]
    async fn the_upload_shape_knob_sets_the_part_size_within_s3s_minimum() {
        let key = ObjectKey::parse("mask/shape.bin").unwrap();
        let store = Arc::new(object_store::memory::InMemory::new());
        let bare = Storage::from_object_store(store, "s3", "mask/".parse().unwrap());
        assert_eq!(bare.multipart_threshold(), UPLOAD_PART_SIZE);
        // 16 MiB parts: 12 MiB is still one PUT, where the default would be multipart.
        let wide = bare.clone().with_upload_shape(16 * 1024 * 1024, 8);
        assert_eq!(wide.multipart_threshold(), 16 * 1024 * 1024);
        let mut upload = wide.upload(&key, &WriteOptions::default()).await.unwrap();
        upload
            .write(Bytes::from(vec![1u8; 12 * 1024 * 1024]))
            .await
            .unwrap();
        assert!(
            format!("{upload:?}").contains("multipart: false"),
            "{upload:?}"
        );
        upload.finish().await.unwrap();
        // Below S3's 5 MiB minimum part, and no part in flight: raised to what works.
        let tiny = bare.with_upload_shape(1024, 0);
        assert_eq!(tiny.multipart_threshold(), 5 * 1024 * 1024);
        let data = Bytes::from(vec![2u8; 11 * 1024 * 1024]);
        let done = tiny
            .upload_stream(
                &key,
                &WriteOptions::default(),
                futures::stream::iter([Ok::<_, std::io::Error>(data.clone())]),
            )
            .await;
        done.unwrap();
        assert_eq!(tiny.get(&key).await.unwrap().data, data);
    }

    #[tokio::test]
    async fn a_put_url_for_a_mask_key_binds_its_format_unless_told_otherwise() {
        let storage = Storage::memory();
        let sign = |key: &str, content_type: Option<&str>| {
            let storage = storage.clone();
            let key = ObjectKey::parse(key).unwrap();
            let options = SignOptions {
                content_type: content_type.map(str::to_string),
                content_length: None,
                sha256: None,
            };
            async move {
                storage
                    .signed_url(SignedMethod::Put, &key, None, &options)
                    .await
                    .unwrap()
            }
        };
        let png = sign("mask/a/seg.png", None).await;
        assert!(
            png.url.contains("x-maskstore-content-type=image%2Fpng"),
            "{}",
            png.url
        );
        assert_eq!(
            png.headers,
            vec![("Content-Type".to_string(), "image/png".to_string())]
        );
        let nifti = sign("mask/a/seg.nii.gz", None).await;
        assert!(nifti.url.contains("application%2Fgzip"), "{}", nifti.url);
        // An explicit type wins; keys without a mask extension and other methods bind none.
        let chosen = sign("mask/a/seg.png", Some("application/octet-stream")).await;
        assert!(
            chosen.url.contains("application%2Foctet-stream"),
            "{}",
            chosen.url
        );
        let other = sign("mask/a/notes.bin", None).await;
        assert!(!other.url.contains("content-type"), "{}", other.url);
        let get = storage
            .signed_url(
                SignedMethod::Get,
                &ObjectKey::parse("mask/a/seg.png").unwrap(),
                None,
                &SignOptions::default(),
            )
            .await
            .unwrap();
        assert!(!get.url.contains("content-type"), "{}", get.url);
    }
}
