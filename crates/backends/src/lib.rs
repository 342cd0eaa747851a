//! maskstore-backends: [`Storage`], one API over the `s3`, `azure`, `gcs`, `local` and
//! `memory` providers, built from a [`maskstore_core::Config`] through object_store.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use maskstore_backends::{Storage, WriteOptions};
//! use maskstore_core::{Config, MaskKey};
//!
//! let storage = Storage::connect(&Config::memory())?;
//! let mask: MaskKey = "mask/1.2.840.1/1.2.840.2/liver.png".parse()?;
//! let key = mask.to_object_key();
//! storage
//!     .put_with(&key, vec![0u8; 16], &WriteOptions::content_type(mask.content_type()))
//!     .await?;
//! let info = storage.head(&key).await?;
//! assert_eq!(info.size, 16);
//! assert_eq!(info.content_type.as_deref(), Some("image/png"));
//! # Ok::<(), maskstore_backends::Error>(())
//! # }).unwrap();
//! ```
//!
//! The rules every backend follows (the contract):
//! - keys outside the configured prefix, and keys breaking the key rules, are refused
//!   before any I/O ([`Error::InvalidKey`]);
//! - deleting a missing key succeeds;
//! - content type and user metadata round-trip on every backend, local disk included;
//! - create-only and if-match writes work on every backend;
//! - `list` streams in unspecified order, `list_with_delimiter` returns sorted results;
//! - a streaming upload is invisible until finished, and leaves nothing when aborted;
//! - the local provider never follows symlinks and fsyncs every write unless
//!   `object_storage.fsync = false`.

pub mod advice;
mod answer;
mod azure;
mod checksum;
mod env_file;
mod error;
mod gcs;
mod http_client;
pub mod layers;
mod load;
pub mod local;
mod memory;
pub mod metadata;
pub mod monitor;
mod policy;
mod providers;
mod read_answer;
mod s3;
pub mod secret_file;
mod service_urls;
pub mod signing;
mod storage;
mod types;

#[cfg(test)]
mod parsers_fuzz;

pub use checksum::{CHECKSUM_METADATA, ContentSha256, NativeChecksum, Sha256Hasher, checksum_of};
pub use env_file::MAX_ENV_FILE_BYTES;
pub use error::{Error, ErrorKind, Result};
pub use layers::instrumented;
pub use layers::{Layer, Operation};
pub use load::{ConfigSource, load_config, load_config_from};
pub use local::{LOCAL_UPLOAD_MAX_IN_FLIGHT, LOCAL_UPLOAD_PART_SIZE, TrustedFile};
pub use maskstore_core::ChecksumAlgorithm;
pub use metadata::{Carried, LeftOut};
pub use policy::{PolicyDocument, policy_document};
pub use signing::{
    ContentTypeRule, PostOptions, PostTarget, SignOptions, SignedMethod, SignedPost, SignedUrl,
};
pub use storage::{
    Capabilities, MIN_UPLOAD_PART_SIZE, ObjectFile, Storage, UPLOAD_MAX_IN_FLIGHT,
    UPLOAD_PART_SIZE, Upload, UrlIssuer,
};
pub use types::{
    ByteRange, DEFAULT_CONTENT_TYPE, IncompleteUpload, Listing, Object, ObjectInfo, ObjectStream,
    PutOutcome, ReadOptions, ReadVersion, UploadShape, WriteMode, WriteOptions,
};
