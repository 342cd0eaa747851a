//! maskstore: one storage API for segmentation masks over AWS S3 (and S3-compatible
//! engines), Azure Blob Storage, Google Cloud Storage, a local folder, and memory — chosen
//! by the `provider` field of the config.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use maskstore::{Config, MaskKey, Storage, WriteOptions};
//!
//! // In the application: `maskstore::load_config(&Default::default())?` reads
//! // config/*.toml and APP_* variables; tests use memory.
//! let storage = Storage::connect(&Config::memory())?;
//! let mask: MaskKey = "mask/1.2.840.1/1.2.840.2/liver.nii.gz".parse()?;
//! storage
//!     .put_with(&mask.to_object_key(), vec![1, 2, 3], &WriteOptions::content_type(mask.content_type()))
//!     .await?;
//! let object = storage.get(&mask.to_object_key()).await?;
//! assert_eq!(object.data.as_ref(), [1, 2, 3]);
//! # Ok::<(), maskstore::Error>(())
//! # }).unwrap();
//! ```
//!
//! | crate | what it holds |
//! |---|---|
//! | [`maskstore_core`] | keys, mask keys, TTL policy, config, secrets (pure, no I/O) |
//! | [`maskstore_backends`] | [`Storage`] over s3, azure, gcs, local and memory; config loading |
//! | `maskstore-testkit` | fixtures for application tests (dev-dependency) |

pub use maskstore_backends::{
    ByteRange, CHECKSUM_METADATA, Capabilities, ChecksumAlgorithm, ConfigSource, ContentSha256,
    ContentTypeRule, Error, ErrorKind, Layer, Listing, NativeChecksum, Object, ObjectFile,
    ObjectInfo, ObjectStream, PostOptions, PostTarget, PutOutcome, ReadOptions, Result,
    Sha256Hasher, SignOptions, SignedMethod, SignedPost, SignedUrl, Storage, UPLOAD_PART_SIZE,
    Upload, UploadShape, UrlIssuer, WriteMode, WriteOptions, checksum_of, load_config,
    load_config_from,
};
pub use maskstore_core::{
    Config, KeyPrefix, MaskFormat, MaskKey, ObjectKey, Origin, Provider, Secret, TtlPolicy,
};
pub use {maskstore_backends, maskstore_core, maskstore_gateway};

pub mod sync;

/// The README's examples, compiled as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
