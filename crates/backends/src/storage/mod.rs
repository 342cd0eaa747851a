//! [`Storage`]: one API over every backend, scoped to the configured key prefix.

mod files;
mod found;
mod objects;
mod post;
mod upload;
mod urls;

pub use files::ObjectFile;
pub use upload::{MIN_UPLOAD_PART_SIZE, UPLOAD_MAX_IN_FLIGHT, UPLOAD_PART_SIZE, Upload};
pub(crate) use urls::UrlSigner;

use std::borrow::Cow;
use std::sync::Arc;

use maskstore_core::{Config, KeyPrefix, ObjectKey, TtlPolicy};
use object_store::path::Path;
use object_store::{Attributes, ObjectStore};

use crate::checksum::{CHECKSUM_METADATA, Hasher, Verifier};
use crate::layers::Layer;
use crate::layers::instrumented::{Instrumentation, Recorder};
use crate::monitor::{AlarmSettings, Monitor};
use crate::providers::{Backend, Built, Declared, Extras};
use crate::types::ObjectInfo;
use crate::{Error, Result};
use maskstore_core::ChecksumAlgorithm;

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
    /// `store` as [`Storage::object_store`] hands it out: where the provider owes
    /// checksums (memory), its reads pay them, as the facade's own do. Behind one more
    /// `Arc`, a thin pointer: a `Storage` is held by value in enums and futures.
    exposed: Arc<Arc<dyn ObjectStore>>,
    backend: Backend,
    prefix: KeyPrefix,
    ttl: TtlPolicy,
    urls: UrlSigner,
    /// What the provider declared of itself when built.
    pub(crate) declared: Declared,
    /// The operations only the provider has.
    extras: Extras,
    monitor: Arc<Monitor>,
    recorder: Recorder,
    /// The checksum every write stores.
    checksum: ChecksumAlgorithm,
    /// Whether whole reads verify the stored checksum (off only for forensics).
    verify_reads: bool,
    /// Whether writes take found (foreign) keys object_store can hold exactly: only for
    /// carrying an object another tool named between stores ([`Storage::carrying_found_names`]).
    carries_found: bool,
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
    /// Whether it issues browser form uploads ([`Storage::signed_post`]): S3 and GCS
    /// verify a POST policy, the gateway its own; Azure Blob Storage has no form upload.
    pub signs_post_policy: bool,
    /// Whether a form upload can bind the file's SHA-256 (the gateway hashes the file as
    /// it streams; no service documents a SHA-256 form field it verifies).
    pub binds_post_sha256: bool,
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
        let built = crate::providers::build(config, root)?;
        let monitor = Arc::new(Monitor::new(AlarmSettings::from_config(&config.monitoring)));
        let storage = Storage::assemble(
            built,
            Backend::of(os.provider),
            os.prefix.clone(),
            monitor,
            config.ttl_policy(),
        );
        Ok(storage.with_checksum(os.checksum))
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
        let built = Built {
            store,
            urls: UrlSigner::None,
            declared: Declared::PLAIN,
            extras: Extras::default(),
        };
        Storage::assemble(
            built,
            Backend::foreign(backend),
            prefix,
            Arc::new(Monitor::new(AlarmSettings::default())),
            TtlPolicy::default(),
        )
    }

    pub(crate) fn assemble(
        built: Built,
        backend: Backend,
        prefix: KeyPrefix,
        monitor: Arc<Monitor>,
        ttl: TtlPolicy,
    ) -> Storage {
        let recorder = Recorder::new(backend.clone(), Arc::clone(&monitor));
        let mut storage = Storage {
            store: Arc::clone(&built.store),
            exposed: Arc::new(Arc::clone(&built.store)),
            base: built.store,
            layers: Vec::new(),
            backend,
            prefix,
            ttl,
            urls: built.urls,
            declared: built.declared,
            extras: built.extras,
            monitor,
            recorder,
            checksum: Config::memory().object_storage.checksum,
            verify_reads: true,
            carries_found: false,
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
        // A layer may cut or replace an answer's stream: only the provider's own answers
        // are known to hold their bytes.
        let answers_whole = self.declared.answers_whole && self.layers.is_empty();
        self.store = Instrumentation::new(self.recorder.clone(), answers_whole).wrap(store);
        self.exposed = Arc::new(match self.declared.owes_checksums {
            true => Arc::new(crate::memory::Paying::new(Arc::clone(&self.store))),
            false => Arc::clone(&self.store),
        });
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

    /// The object_store all of this storage's calls go through: its layers over the
    /// provider's store, instrumented, so calls through it are counted and layered like the
    /// storage's own. For libraries that take an object_store; it is not scoped to
    /// [`Storage::prefix`]. To add behaviour, use [`Storage::layer`] instead of wrapping it.
    /// On the memory provider its reads report the checksum a put left owed computed, as
    /// this storage's own reads do (`maskstore-checksum`, see docs/integrity.md).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.exposed
    }

    /// The store calls go through, itself: called through the `Arc`, object_store's `Arc`
    /// impl would box each call's future once more around the store's own.
    fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
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

    /// This storage, storing `algorithm`'s checksum with every write (the config's
    /// `object_storage.checksum`; `none` writes objects without one).
    pub fn with_checksum(mut self, algorithm: ChecksumAlgorithm) -> Storage {
        self.checksum = algorithm;
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

    /// This storage, its writes taking a found key ([`ObjectKey::found`], a name another
    /// tool gave an object that is not a valid key) when it can hold that name exactly: the
    /// one way such a name is written, for carrying an object from one store to another
    /// under the name it has (sync). Never for names of new objects. A name this storage
    /// cannot hold (object_store's `Path` cannot hold `a//b`, a `.` segment or a control
    /// character) is still refused, with [`Error::InvalidKey`] saying so.
    pub fn carrying_found_names(&self) -> Storage {
        Storage {
            carries_found: true,
            ..self.clone()
        }
    }

    /// Whether whole reads verify stored checksums.
    pub fn verifies_reads(&self) -> bool {
        self.verify_reads
    }

    /// The verifier of a whole read of the object `info` describes, when reads verify and
    /// it has a checksum (its own, else the provider's); [`Error::Corrupt`] at once when
    /// its checksum record exists but cannot be read (see [`Verifier::of`]).
    fn verifier(&self, info: &ObjectInfo, whole: bool) -> Result<Option<Verifier>> {
        if !self.verify_reads || !whole {
            return Ok(None);
        }
        Verifier::of(&self.backend, info)
    }

    /// Adds the checksum of `data` to `attributes` (unless checksums are off); returns it
    /// for a provider that keeps it with the bytes ([`crate::memory::KeptChecksums`]).
    fn checksum_into(
        &self,
        attributes: &mut Attributes,
        data: &[u8],
    ) -> Option<crate::memory::KeptSum> {
        let mut hasher = Hasher::new(self.checksum)?;
        hasher.update(data);
        let checksum = hasher.finish();
        let kept = self
            .extras
            .kept
            .as_ref()
            .and_then(|_| crate::memory::KeptSum::new(&checksum));
        attributes.insert(
            object_store::Attribute::Metadata(CHECKSUM_METADATA.into()),
            checksum.into(),
        );
        kept
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
        let (signed_urls, urls_outlive_process) = match &self.urls {
            UrlSigner::Service(_) => (UrlIssuer::Backend, true),
            UrlSigner::Gateway(gateway) => (UrlIssuer::Gateway, !gateway.ephemeral),
            UrlSigner::None => (UrlIssuer::None, false),
        };
        let (binds_upload_headers, binds_upload_sha256) = match &self.urls {
            UrlSigner::Service(signer) => {
                (signer.binds_upload_headers(), signer.binds_upload_sha256())
            }
            UrlSigner::Gateway(_) | UrlSigner::None => (true, true),
        };
        let (signs_post_policy, binds_post_sha256) = match &self.urls {
            UrlSigner::Service(signer) => (signer.signs_post_policy(), signer.binds_post_sha256()),
            UrlSigner::Gateway(_) => (true, true),
            UrlSigner::None => (false, false),
        };
        Capabilities {
            signed_urls,
            urls_outlive_process,
            incomplete_uploads: self.extras.multipart.is_some(),
            content_etags: self.declared.content_etags,
            binds_upload_headers,
            binds_upload_sha256,
            signs_post_policy,
            binds_post_sha256,
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

    /// Where `key` is, for a write (and any operation that is not a read or delete): a
    /// foreign key, a name found in a store ([`ObjectKey::found`]), is refused.
    fn path<'k>(&self, key: &'k ObjectKey) -> Result<Cow<'k, Path>> {
        if self.carries_found
            && key.is_foreign()
            && let found::Location::Path(path) = self.location(key)?
        {
            return Ok(path);
        }
        if let Some(reason) = key.foreign() {
            if self.carries_found {
                return Err(Error::InvalidKey {
                    key: key.to_string(),
                    reason: format!(
                        "{reason}, and the {} store cannot hold this name, so it cannot be \
                         carried here; copy it under a valid key with the tool that wrote it",
                        self.backend
                    ),
                });
            }
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: format!(
                    "{reason}. The name was found in the store, written by another tool: \
                     maskstore reads and deletes such an object but never writes one; \
                     give a valid key"
                ),
            });
        }
        self.check_within(key)?;
        found::store_path(key).map_err(|e| Error::InvalidKey {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }

    fn check_within(&self, key: &ObjectKey) -> Result<()> {
        if !key.is_within(&self.prefix) {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: format!(
                    "it lies outside the configured prefix {:?}; this storage only touches keys below it",
                    self.prefix.as_str()
                ),
            });
        }
        Ok(())
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

    fn err<'a>(
        &'a self,
        key: &'a (impl AsRef<str> + ?Sized),
    ) -> impl Fn(object_store::Error) -> Error + 'a {
        // A found key may hold control characters: its messages show it escaped (only when
        // there is an error: escaping on every call cost a scan and an allocation).
        move |e| Error::from_store(&self.backend, &maskstore_core::shown(key.as_ref()), e)
    }
}

/// Runs `work` in a blocking task when a tokio runtime runs this call, so the runtime's
/// thread serves its other tasks meanwhile (a large hash, a large file's read); outside one
/// (a foreign executor driving a store), here. A panic in `work` is the caller's to see:
/// it comes back as the join error.
pub(crate) async fn off_the_runtime_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, tokio::task::JoinError> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime.spawn_blocking(work).await,
        Err(_) => Ok(work()),
    }
}

/// How many times a ticker on this runtime (every 0.5 ms) ran while `work` ran: on a
/// one-thread runtime, none unless `work` let the thread go (tests of what must not hold it).
#[cfg(test)]
pub(crate) async fn ticks_during<T>(work: impl std::future::Future<Output = T>) -> (T, usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ticks = Arc::new(AtomicUsize::new(0));
    let ticking = Arc::clone(&ticks);
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_micros(500)).await;
            ticking.fetch_add(1, Ordering::Relaxed);
        }
    });
    tokio::task::yield_now().await;
    let before = ticks.load(Ordering::Relaxed);
    let done = work.await;
    let during = ticks.load(Ordering::Relaxed) - before;
    ticker.abort();
    (done, during)
}

#[cfg(test)]
mod tests {
    use super::*;
    use maskstore_core::Secret;

    /// `(signed_urls, urls_outlive_process, incomplete_uploads, content_etags,
    /// binds_upload_headers, binds_upload_sha256)`.
    fn matrix(storage: &Storage) -> (UrlIssuer, bool, bool, bool, bool, bool) {
        let c = storage.capabilities();
        (
            c.signed_urls,
            c.urls_outlive_process,
            c.incomplete_uploads,
            c.content_etags,
            c.binds_upload_headers,
            c.binds_upload_sha256,
        )
    }

    /// What each provider could do before the providers declared it themselves (when the
    /// facade read it from the URL signer's kind), pinned.
    #[test]
    fn each_provider_keeps_the_capabilities_it_had() {
        use UrlIssuer::{Backend as Service, Gateway, None as Nobody};
        let dir = tempfile::tempdir().unwrap();
        let s3 = Config::s3("pacs-masks-dev", "us-east-1")
            .unwrap()
            .with_credentials("AKIDEXAMPLE", Secret::new("wJalrXUtnFEMI/K7MDENG"));
        let azure = Config::azure("pacsmasks", "pacs-masks")
            .unwrap()
            .with_account_key(Secret::new("YW4tYXp1cmUtYWNjb3VudC1rZXktb2YtMzItYnl0ZXM="));
        let mut memory_with_secret = Config::memory();
        memory_with_secret.gateway.signing_secret = Some(Secret::new("s".repeat(64)));
        let bare = || {
            Storage::from_object_store(
                Arc::new(object_store::memory::InMemory::new()),
                "my-wrapper",
                "mask/".parse().unwrap(),
            )
        };
        let signer = crate::signing::GatewaySigner::new(
            "http://127.0.0.1:1",
            crate::signing::random_secret(),
            None,
        );
        let cases = [
            (
                "s3",
                Storage::connect(&s3).unwrap(),
                (Service, true, true, true, true, true),
            ),
            (
                "azure",
                Storage::connect(&azure).unwrap(),
                (Service, true, false, false, false, false),
            ),
            (
                "local",
                Storage::connect(&Config::local(dir.path().join("d"))).unwrap(),
                (Gateway, true, false, false, true, true),
            ),
            (
                "memory",
                Storage::memory(),
                (Gateway, false, false, false, true, true),
            ),
            (
                "memory with a secret",
                Storage::connect(&memory_with_secret).unwrap(),
                (Gateway, true, false, false, true, true),
            ),
            (
                "bare object_store",
                bare(),
                (Nobody, false, false, false, true, true),
            ),
            (
                "bare with a gateway signer",
                bare().with_gateway_signer(signer),
                (Gateway, true, false, false, true, true),
            ),
        ];
        let mut cases = cases.to_vec();
        // Without a key, GCS reads its credentials from the environment (a broken
        // GOOGLE_APPLICATION_CREDENTIALS fails the build); the clouds tests cover it there.
        if let Ok(gcs) = Storage::connect(&Config::gcs("pacs-masks").unwrap()) {
            cases.push(("gcs", gcs, (Service, true, false, false, true, false)));
        }
        for (name, storage, want) in cases {
            assert_eq!(matrix(&storage), want, "{name}");
            // Layers and narrower scopes keep what the provider declared.
            let scoped = storage.scoped("sub").unwrap();
            assert_eq!(matrix(&scoped), want, "{name} scoped");
        }
    }
}
