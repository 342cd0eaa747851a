//! The seam between [`crate::Storage`] and the providers. Every provider's `connect`
//! returns a [`Built`]: its store, its URL signer, what it declares it can do, and the
//! operations only it has; its [`Profile`] says what it says of itself (error codes, words,
//! advice). [`entry`] is the one `match` that lists the providers. A
//! storage's [`Backend`] says which provider it is, as a typed value the facade and the
//! error classifier ask instead of comparing names.

use std::fmt;
use std::sync::Arc;

use maskstore_core::{Config, Provider, Secret};
use object_store::ObjectStore;
use object_store::path::Path;

use crate::local::{LocalStore, Root};
use crate::metadata::MetadataRules;
use crate::policy::PolicyDocument;
use crate::signing::GatewaySigner;
use crate::storage::{UPLOAD_MAX_IN_FLIGHT, UPLOAD_PART_SIZE, UrlSigner};
use crate::{IncompleteUpload, PutOutcome, Result, UploadShape};

/// A storage's backend: its name in messages and metrics, and the provider it is (none for
/// a storage wrapped around a bare object_store, which gets no provider's rules).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Backend {
    label: Arc<str>,
    provider: Option<Provider>,
}

impl Backend {
    /// The backend of `provider`, named as the config spells it.
    pub(crate) fn of(provider: Provider) -> Backend {
        Backend {
            label: provider.as_str().into(),
            provider: Some(provider),
        }
    }

    /// A backend no provider of maskstore's built, named `label` (a wrapper's store).
    pub(crate) fn foreign(label: &str) -> Backend {
        Backend {
            label: label.into(),
            provider: None,
        }
    }

    /// The provider it is, when maskstore built it.
    pub(crate) fn provider(&self) -> Option<Provider> {
        self.provider
    }
}

impl std::ops::Deref for Backend {
    type Target = str;

    fn deref(&self) -> &str {
        &self.label
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.label, f)
    }
}

/// What a provider's `connect` returns, the same shape for every provider: its store, who
/// signs its URLs, what it declares it can do, and the operations only it has.
pub(crate) struct Built {
    /// The provider's own store, unwrapped (the facade layers and instruments it).
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Who signs its URLs.
    pub(crate) urls: UrlSigner,
    /// What it declares of itself.
    pub(crate) declared: Declared,
    /// Operations beyond object_store's that only some providers have.
    pub(crate) extras: Extras,
}

/// What a provider declares of itself when built; the facade reads this instead of asking
/// which provider it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Declared {
    /// The store hashes a put's bytes as it writes them when the put asks
    /// ([`crate::checksum::HashOnWrite`]): one pass over the bytes instead of two.
    pub(crate) hashes_on_write: bool,
    /// The store's bytes cannot rot, so a put may leave their checksum owed: stored as
    /// [`crate::memory::owed`] and computed the first time a read asks for it (memory).
    /// The store resolves it in every answer but a whole read's without
    /// [`crate::memory::ResolveOwed`], which the facade resolves from the bytes it read.
    pub(crate) owes_checksums: bool,
    /// The store reads a whole range into memory in the call that opens the object when
    /// the caller will hold it whole, hashing it as it reads when the read is verified
    /// ([`crate::local::ReadAll`], answered with [`crate::local::ReadChecksum`]).
    pub(crate) reads_whole: bool,
    /// Its read answers hold their bytes already (a stream of the one buffer it keeps, as
    /// `InMemory` answers): nothing is read from it after the answer.
    pub(crate) answers_whole: bool,
    /// Etags derive from the content alone (S3's MD5 etags).
    pub(crate) content_etags: bool,
    /// Its listings can show folders that hold no object any more (engines with real
    /// directories, such as SeaweedFS), so listed folders are checked for one.
    pub(crate) verify_folders: bool,
    /// The parts of its streaming uploads.
    pub(crate) uploads: UploadLimits,
    /// What it keeps of user metadata.
    pub(crate) metadata: MetadataRules,
}

impl Declared {
    /// A store that declares nothing beyond the contract: it hashes nothing as it writes,
    /// its etags name versions, its listings show no empty folders, its parts have S3's
    /// limits, its metadata has S3's. What Azure and GCS declare (with their own
    /// metadata rules), and what a store of unknown kind is taken to be.
    pub(crate) const PLAIN: Declared = Declared {
        hashes_on_write: false,
        owes_checksums: false,
        reads_whole: false,
        answers_whole: false,
        content_etags: false,
        verify_folders: false,
        uploads: UploadLimits::REMOTE,
        metadata: crate::s3::METADATA,
    };
}

/// The part sizes a provider's streaming uploads take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UploadLimits {
    /// Part size when the write asks for none; also the size from which an upload turns
    /// multipart.
    pub(crate) part_size: usize,
    /// Parts in flight when the write asks for no number.
    pub(crate) max_in_flight: usize,
    /// The smallest part a write may ask for.
    pub(crate) min_part: usize,
    /// The largest part a write may ask for.
    pub(crate) max_part: usize,
}

impl UploadLimits {
    /// S3's smallest part but the last (S3 API reference, UploadPart).
    const S3_MIN_PART: usize = 5 * 1024 * 1024;
    /// S3's largest part (S3 API reference, UploadPart).
    const S3_MAX_PART: usize = 5 * 1024 * 1024 * 1024;

    /// The parts of a service reached over HTTP (S3 and the stores sharing its limits):
    /// [`UPLOAD_PART_SIZE`] by default, within S3's part limits.
    pub(crate) const REMOTE: UploadLimits = UploadLimits {
        part_size: UPLOAD_PART_SIZE,
        max_in_flight: UPLOAD_MAX_IN_FLIGHT,
        min_part: UploadLimits::S3_MIN_PART,
        max_part: UploadLimits::S3_MAX_PART,
    };

    /// Parts in flight an upload may ask for at most: an upload holds part size × (parts in
    /// flight + 1) in memory, so a mistaken `usize::MAX` must not make that unbounded.
    pub(crate) const MAX_IN_FLIGHT: usize = 16;

    /// The part size and parts in flight of an upload asking for `shape`: what it asks,
    /// within these limits (1 to [`UploadLimits::MAX_IN_FLIGHT`] parts in flight), or the
    /// defaults.
    pub(crate) fn resolve(&self, shape: UploadShape) -> (usize, usize) {
        let part = shape
            .part_size
            .map_or(self.part_size, |p| p.clamp(self.min_part, self.max_part));
        let in_flight = shape.max_in_flight.map_or(self.max_in_flight, |n| {
            n.clamp(1, UploadLimits::MAX_IN_FLIGHT)
        });
        (part, in_flight)
    }
}

/// Operations beyond object_store's that only some providers have.
#[derive(Clone, Default)]
pub(crate) struct Extras {
    /// Incomplete multipart uploads kept by the service, and checksums stamped onto a
    /// completed one (S3).
    pub(crate) multipart: Option<Arc<dyn MultipartUploads>>,
    /// Files copied by the kernel into and out of the store (local).
    pub(crate) files: Option<LocalStore>,
    /// The provider's own checksums, where its read answers do not carry them unasked
    /// (S3).
    pub(crate) native: Option<Arc<dyn NativeChecksums>>,
    /// Objects listed, read and deleted by names object_store's `Path` cannot hold (S3).
    pub(crate) names: Option<Arc<dyn FoundNames>>,
    /// The checksums of the very buffers the store holds, kept beside them, so that a
    /// verified read of one is not hashed again (memory).
    pub(crate) kept: Option<crate::memory::KeptChecksums>,
}

/// A provider whose read answers carry its own checksums only when asked (S3 returns
/// `x-amz-checksum-*` only with `x-amz-checksum-mode: ENABLED`, which object_store does not
/// send): it asks on the facade's behalf, for objects without maskstore's checksum.
#[async_trait::async_trait]
pub(crate) trait NativeChecksums: Send + Sync {
    /// The full-object (or composite) checksum the provider keeps with the object at
    /// `path`, for its version `etag` (`None`: whichever is current); `Ok(None)` when it
    /// keeps none, or the object changed since (its bytes then cannot be checked with it).
    async fn checksum(
        &self,
        backend: &Backend,
        path: &Path,
        etag: Option<&str>,
    ) -> Result<Option<crate::NativeChecksum>>;
}

/// What a provider whose store can hold names object_store's `Path` cannot (`a//b`, a
/// `.` or `..` segment, an ASCII control character) does to list, read and delete them,
/// with requests of its own. object_store fails a whole listing page on such a name
/// (`Path::parse(key)?`) and cannot address it at all, so the facade lists through
/// object_store and turns to this listing only once object_store's has failed on one.
#[async_trait::async_trait]
pub(crate) trait FoundNames: Send + Sync {
    /// Every object whose name starts with `folder` (ending in `/`), names exact, in the
    /// provider's documented order; with `after`, only those after that name. `None` when
    /// object_store's listing of this provider goes on past such a name, reporting it as
    /// an `InvalidPath` error that names it (local): the facade then describes that one
    /// object with [`FoundNames::get`] and lists on.
    fn list_after(
        &self,
        backend: &Backend,
        folder: &str,
        after: Option<String>,
    ) -> Option<futures::stream::BoxStream<'static, Result<FoundObject>>>;

    /// Whether its names can end in `/` (folder markers other tools write, which
    /// object_store lists without the `/`): S3, Azure and GCS, not a file system.
    fn holds_folder_markers(&self) -> bool;

    /// A read (a HEAD with `options.head`) of the object named `name`, with the range
    /// and conditions of `options`; refusals as object_store reports them.
    async fn get(
        &self,
        name: &str,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult>;

    /// Deletes the object named `name`; a missing one is fine.
    async fn delete(&self, name: &str) -> object_store::Result<()>;
}

/// One object of a [`FoundNames`] listing: its exact name, and what the listing says of
/// it (`meta.location` is empty: a `Path` cannot hold every name).
#[derive(Debug, Clone)]
pub(crate) struct FoundObject {
    /// The name exactly as the store holds it.
    pub(crate) name: String,
    /// Size, time, etag and version, as listed.
    pub(crate) meta: object_store::ObjectMeta,
}

/// What a provider that keeps incomplete multipart uploads (S3) does beyond object_store.
#[async_trait::async_trait]
pub(crate) trait MultipartUploads: Send + Sync {
    /// Every incomplete upload whose key starts with `folder/`.
    async fn incomplete(&self, backend: &Backend, folder: &Path) -> Result<Vec<IncompleteUpload>>;

    /// Aborts the upload `upload_id` of `path`.
    async fn abort(&self, backend: &Backend, path: &Path, upload_id: &str) -> Result<()>;

    /// Stores `checksum` with the just-completed multipart upload at `path` whose
    /// completion gave `outcome`, through `store` (the storage's layered store); the
    /// outcome of the object as it then is. The object stays unverified, and the upload
    /// succeeds, when that is not possible (logged).
    async fn stamp(
        &self,
        store: &dyn ObjectStore,
        backend: &Backend,
        path: &Path,
        outcome: PutOutcome,
        checksum: String,
    ) -> PutOutcome;

    /// Whether the client may report the completion of an upload to `key` failed although
    /// it took effect, so that the facade confirms it.
    fn completion_may_be_misread(&self, key: &str) -> bool;
}

/// Everything the facade reaches a provider by: how it is built, and what it says of
/// itself (its [`Profile`]).
pub(crate) struct Entry {
    /// Builds it from the config (`root`: whether a missing local root is created).
    pub(crate) connect: fn(&Config, Root) -> Result<Built>,
    /// Its words, codes and advice.
    pub(crate) profile: &'static Profile,
    /// The documents an operator applies with its CLI (`maskstore policy`).
    pub(crate) policy: fn(&Config, PolicyDocument) -> Result<serde_json::Value>,
}

/// The one place that lists the providers: exhaustive, so a new provider is a compile
/// error here until it has an entry.
pub(crate) fn entry(provider: Provider) -> Entry {
    match provider {
        Provider::S3 => Entry {
            connect: |config, _| crate::s3::connect(config),
            profile: &crate::s3::PROFILE,
            policy: crate::s3::policy::document,
        },
        // Local and memory stand in for an S3 bucket: their documents are that bucket's.
        Provider::Local => Entry {
            connect: crate::local::connect,
            profile: &crate::local::PROFILE,
            policy: crate::s3::policy::document,
        },
        Provider::Memory => Entry {
            connect: |config, _| Ok(crate::memory::connect(config)),
            profile: &crate::memory::PROFILE,
            policy: crate::s3::policy::document,
        },
        Provider::Azure => Entry {
            connect: |config, _| crate::azure::connect(config),
            profile: &crate::azure::PROFILE,
            policy: crate::azure::policy::document,
        },
        Provider::Gcs => Entry {
            connect: |config, _| crate::gcs::connect(config),
            profile: &crate::gcs::PROFILE,
            policy: crate::gcs::policy::document,
        },
    }
}

/// Builds the provider the config names.
pub(crate) fn build(config: &Config, root: Root) -> Result<Built> {
    (entry(config.object_storage.provider).connect)(config, root)
}

/// The gateway's URLs for a provider without signed URLs of its own (local, memory),
/// signed with `secret` (`ephemeral`: made for this process, valid nowhere else).
pub(crate) fn gateway_urls(config: &Config, secret: Secret, ephemeral: bool) -> UrlSigner {
    let gw = &config.gateway;
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
    UrlSigner::gateway(signer, ephemeral)
}

mod profile;
pub(crate) use profile::{CheckAdvice, NEUTRAL, Permissions, Profile, profile_of};
