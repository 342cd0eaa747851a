//! The local provider's own typed errors. Each travels inside the object_store error the
//! store returns (as its source), so the storage layer classifies it by type, never by text.

use std::io;
use std::path::PathBuf;

/// Longest file name most Linux file systems keep (ext4, xfs, btrfs, tmpfs).
pub const NAME_MAX: usize = 255;

/// What went wrong in the local provider.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// A key lies below an existing object (`a` exists, `a/b` is written).
    #[error(
        "{object} is an object, so {key} cannot lie below it (on the local provider a file \
         cannot also be a folder); delete {object} or choose another key"
    )]
    UnderAnObject {
        /// The key written.
        key: String,
        /// The existing object in its way.
        object: String,
    },
    /// A key names a folder of other keys.
    #[error("{key} is a folder of other keys; on the local provider a key cannot also be a folder")]
    IsAFolder {
        /// The key written.
        key: String,
    },
    /// A segment of the key is longer than the file system allows.
    #[error(
        "a segment of {key} is longer than the {NAME_MAX} bytes a file name may have on the \
         local provider; shorten it"
    )]
    NameTooLong {
        /// The key.
        key: String,
    },
    /// The key lies in the folder reserved for maskstore's own files.
    #[error("{key}: the folder .maskstore/ is reserved by maskstore's local provider")]
    Reserved {
        /// The key.
        key: String,
    },
    /// An empty location names no object.
    #[error("an empty location names no object")]
    Empty,
    /// No object at the key.
    #[error("no object at {key}: {why}")]
    NotFound {
        /// The key.
        key: String,
        /// Why it counts as missing (absent, a folder, behind a symlink).
        why: &'static str,
    },
    /// A create-only write found the key taken.
    #[error("{key} already exists")]
    Exists {
        /// The key.
        key: String,
    },
    /// An if-match write found another etag.
    #[error("{key}: expected etag {expected:?}, found {found:?}")]
    Stale {
        /// The key.
        key: String,
        /// The etag the writer held.
        expected: Option<String>,
        /// The etag stored.
        found: Option<String>,
    },
    /// A write would pass through a symlink below the root.
    #[error(
        "{key}: the path crosses a symlink below the local root; maskstore never writes \
         through symlinks: replace the symlink with a real folder, or use another key"
    )]
    CrossesSymlink {
        /// The key.
        key: String,
    },
    /// A listing met a symlink below the root (or its prefix passes through one).
    #[error(
        "{path} below the local root is a symlink (or passes through one), which maskstore \
         never follows; replace it with the folder or file it points to, or move it out of \
         the root"
    )]
    Symlink {
        /// The path below the root.
        path: String,
    },
    /// The file system refused access.
    #[error("{key}: {source}; check the permissions of the local root's folders and files")]
    Denied {
        /// The key.
        key: String,
        /// The file system's error.
        source: io::Error,
    },
    /// The file system cannot keep extended attributes.
    #[error(
        "{key}: the filesystem under {} does not support extended attributes, so content \
         type and metadata cannot be stored; move the local root to ext4, xfs, btrfs or tmpfs",
        root.display()
    )]
    NoAttributes {
        /// The key.
        key: String,
        /// The local root.
        root: PathBuf,
    },
    /// The object's attribute record, which holds its checksum, exists but cannot be read:
    /// its bytes can no longer be checked.
    #[error(
        "{key} is corrupt: {detail}; its bytes can no longer be checked against the checksum \
         it was stored with: restore it from a backup or a replica"
    )]
    UnreadableAttributes {
        /// The key.
        key: String,
        /// What is wrong with the record.
        detail: String,
    },
    /// The stored attributes could not be written.
    #[error("{key}: cannot store attributes: {detail}")]
    Attributes {
        /// The key.
        key: String,
        /// What failed.
        detail: String,
    },
    /// The disk is full.
    #[error(
        "{key}: {source}; the disk holding the local root is full: free space or move \
         object_storage.root (nothing was changed)"
    )]
    DiskFull {
        /// The key.
        key: String,
        /// The file system's error.
        source: io::Error,
    },
    /// Any other failure of the file system.
    #[error("{key}: {source}")]
    Io {
        /// The key (or what was being done).
        key: String,
        /// The file system's error.
        source: io::Error,
    },
}

impl LocalError {
    /// The error for an I/O failure on `key`, sorted by what the file system said.
    pub fn io(key: impl Into<String>, source: io::Error) -> LocalError {
        let key = key.into();
        match source.kind() {
            io::ErrorKind::NotFound => LocalError::NotFound {
                key,
                why: "no such file",
            },
            io::ErrorKind::PermissionDenied => LocalError::Denied { key, source },
            io::ErrorKind::InvalidFilename => LocalError::NameTooLong { key },
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                LocalError::DiskFull { key, source }
            }
            _ => LocalError::Io { key, source },
        }
    }
}

impl From<LocalError> for object_store::Error {
    fn from(e: LocalError) -> Self {
        let path = match &e {
            LocalError::NotFound { key, .. }
            | LocalError::Exists { key }
            | LocalError::Stale { key, .. }
            | LocalError::Denied { key, .. }
            | LocalError::CrossesSymlink { key }
            | LocalError::Symlink { path: key } => key.clone(),
            _ => String::new(),
        };
        // The variants object_store callers match on keep their meaning; the typed error
        // rides along as the source.
        match e {
            LocalError::NotFound { .. } => object_store::Error::NotFound {
                path,
                source: Box::new(e),
            },
            LocalError::Exists { .. } => object_store::Error::AlreadyExists {
                path,
                source: Box::new(e),
            },
            LocalError::Stale { .. } => object_store::Error::Precondition {
                path,
                source: Box::new(e),
            },
            LocalError::Denied { .. }
            | LocalError::CrossesSymlink { .. }
            | LocalError::Symlink { .. } => object_store::Error::PermissionDenied {
                path,
                source: Box::new(e),
            },
            LocalError::NoAttributes { .. } => object_store::Error::NotSupported {
                source: Box::new(e),
            },
            other => object_store::Error::Generic {
                store: "local",
                source: Box::new(other),
            },
        }
    }
}
