//! maskstore-core: the pure rules of maskstore — object keys, mask keys, signed-URL
//! lifetimes, configuration and secrets. No I/O happens here; bad input becomes a typed
//! [`Error`] before any backend is touched.
//!
//! ```
//! use maskstore_core::{KeyPrefix, MaskKey, ObjectKey, TtlPolicy};
//!
//! let mask: MaskKey = "mask/1.2.840.1/1.2.840.2/liver.nii.gz".parse()?;
//! let key: ObjectKey = mask.to_object_key();
//! assert!(key.is_within(&KeyPrefix::default()));
//! assert_eq!(mask.content_type(), "application/gzip");
//! assert!(TtlPolicy::default().resolve(Some(86_400)).is_err());
//! # Ok::<(), maskstore_core::Error>(())
//! ```

pub mod config;
mod error;
mod key;
mod mask;
mod secret;
mod shown;
mod ttl;

pub use config::{ChecksumAlgorithm, Config, Origin, Provider};
pub use error::Error;
pub use key::{KeyPrefix, MAX_FOUND_BYTES, MAX_KEY_BYTES, MAX_SEGMENT_BYTES, ObjectKey};
pub use mask::{MAX_MASK_ID_LEN, MAX_UID_LEN, MaskFormat, MaskKey};
pub use secret::{REDACTED, Secret, invisible_character};
pub use shown::{shown, shown_cut};
pub use ttl::{S3_MAX_PRESIGN_SECS, TtlPolicy};
