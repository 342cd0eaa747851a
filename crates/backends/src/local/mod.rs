//! The `local` provider: an [`ObjectStore`] over a folder, written for maskstore's contract.
//!
//! object_store's `LocalFileSystem` differs from S3 where an application would notice:
//! it cannot store content types or metadata, cannot do a conditional update, reports a
//! missing key on delete, follows symlinks out of its root, and does not fsync unless
//! asked. This store keeps S3's behaviour instead:
//!
//! - the root is opened once, and every path is resolved beneath that handle with no
//!   symlink followed (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, see
//!   `beneath.rs`); folders are created one level at a time on handles already resolved,
//!   renames, links and unlinks use the `*at` calls on those handles, and reads go through
//!   the handle that was checked: swapping a folder for a symlink at any moment can make
//!   an operation fail, never reach outside the root;
//! - every write goes to a temporary file under `<root>/.maskstore/tmp`, is fsynced (unless
//!   `fsync = false`), then renamed into place and the folder fsynced, as is every folder
//!   the write created, in its own parent: a reader sees the old object or the new one,
//!   never a torn file, and an acknowledged write survives a power cut; the temporary
//!   files of a writer that died go at the next open that finds no other store using the
//!   root (those older than a day at any open);
//! - content type, content disposition/encoding/language, cache control, user metadata
//!   and the write's random generation live in one extended attribute
//!   (`user.maskstore.attributes`) of the data file, set before the rename, so data and
//!   attributes change together;
//! - every change of a key (put, create-only put, if-match update, delete, copy onto,
//!   rename onto and from) happens under that key's lock (see `locks.rs`, shared with other
//!   processes on the same root), so each is atomic against the others: an update that
//!   succeeds replaced exactly the version it named, a delete that succeeds is not undone;
//! - create-only puts hard-link the temporary file into place (atomic, fails if the key
//!   exists);
//! - deleting a missing key succeeds, and folders left empty by a delete are removed, so
//!   listings never show empty common prefixes;
//! - a symlink anywhere below the root is never followed: reads see "not found", writes
//!   through it are refused, listings report it as an error naming it;
//! - `<root>/.maskstore/` is maskstore's own and never listed.
//! - the open files of recently read small objects are kept (at most 512) and a read
//!   through one costs a `pread` and one `statx` of the key's path that must find that
//!   very file unchanged, else the read opens the key afresh as above: a replaced, deleted
//!   or rewritten file is never served from a kept one (see `open_files.rs`).
//!
//! The etag is inode, modification time, size and the write's generation: the first three
//! can all repeat across writes (inodes are reused, timestamps can be coarse), the
//! generation does not. On a file system without extended attributes (where no generation
//! can be kept) it falls back to the first three.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload,
    ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, RenameOptions, RenameTargetMode, UploadPart,
};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, linkat, mkdirat, openat, renameat, unlinkat};
use rustix::io::Errno;

mod advice;
pub(crate) mod attributes;
pub(crate) mod beneath;
mod builder;
mod dev_secret;
pub mod error;
pub(crate) mod file_io;
mod from_file;
pub(crate) mod locks;
mod names;
mod open_files;
pub(crate) mod stamp;
mod trusted;

use crate::checksum::{CHECKSUM_METADATA, HASH_ON_WRITE_SLICE, HashOnWrite, Hasher, LateChecksum};
pub(crate) use advice::PROFILE;
use attributes::{StoredAttributes, XATTR, probe_xattrs, read_checked, read_stored};
pub(crate) use builder::{Root, connect};
pub use error::LocalError;
pub(crate) use from_file::FromFileError;
use maskstore_core::MAX_KEY_BYTES;
use open_files::{Described, OpenFiles, OpenObject};
pub use trusted::TrustedFile;
/// Part size of streaming uploads to the local provider, which writes each part straight
/// into the upload's temporary file: with [`LOCAL_UPLOAD_MAX_IN_FLIGHT`] an upload holds
/// at most about 512 KiB in memory.
pub const LOCAL_UPLOAD_PART_SIZE: usize = 256 * 1024;
/// Parts of one local streaming upload in flight at once.
pub const LOCAL_UPLOAD_MAX_IN_FLIGHT: usize = 1;
/// The folder below the root that holds maskstore's own files.
pub const RESERVED_DIR: &str = ".maskstore";
/// Temporary files older than this are left over from a crash and removed at start, even
/// while other stores have the root open (see [`clean_temp_files`]).
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// Ranges of at most this many bytes are read in the same blocking call that opens the
/// object, and come back as one chunk; larger ones come back as the open file.
pub(crate) const INLINE_READ: u64 = 256 * 1024;

/// A whole read into memory of at most this many bytes is answered on the caller's thread
/// when its data is in the page cache (a copy of about 60 µs at most here, cheaper than
/// the two thread switches of a blocking task on a busy machine); larger ones go to a
/// blocking task.
const NOWAIT_READ: u64 = 1024 * 1024;

/// Marks a read (in [`GetOptions::extensions`]) whose whole range the caller will hold in
/// memory: the local provider then reads it in the call that opens the object, whatever
/// its size; with `hash`, one read in a blocking task is hashed with the stored checksum's
/// algorithm as it is read (each block while it is still in the CPU's cache), see
/// [`ReadChecksum`]. The memory provider answers it with the checksum it keeps of the
/// buffer it returns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadAll {
    pub(crate) hash: bool,
}

/// The checksum of `data`, computed by the local provider as it read it (or kept by the
/// memory provider with the buffer it holds), in the [`GetResult::extensions`] of a
/// [`ReadAll`] read. It vouches for these very bytes only:
/// a caller uses it only for a payload that is this same buffer (same address and length),
/// never for bytes a layer in between may have replaced.
#[derive(Debug, Clone)]
pub(crate) struct ReadChecksum {
    pub(crate) data: Bytes,
    pub(crate) checksum: String,
}

/// Why a local object's attribute record, which holds its checksum, exists but cannot be
/// read: in the [`GetResult::extensions`] of a read of it, so that the facade reports the
/// object corrupt instead of unverified.
#[derive(Debug, Clone)]
pub(crate) struct UnreadableRecord(pub(crate) String);

/// How often a write retries when a concurrent delete removes the folder it writes into
/// between resolving it and renaming into it.
const PRUNED_RETRIES: usize = 32;

type Result<T, E = object_store::Error> = std::result::Result<T, E>;

/// An [`ObjectStore`] over a local folder that follows maskstore's contract (see the
/// module docs).
#[derive(Debug, Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The canonical root path: for messages and the paths reported with files.
    root_path: PathBuf,
    /// The root, opened once; everything is resolved beneath it.
    root: OwnedFd,
    /// `<root>/.maskstore/tmp`.
    tmp: OwnedFd,
    /// `<root>/.maskstore/locks`.
    locks: OwnedFd,
    fsync: bool,
    xattrs: bool,
    /// The open files of recently read objects (see [`open_files`]).
    open_files: OpenFiles,
}

impl std::fmt::Display for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalStore({})", self.inner.root_path.display())
    }
}

impl LocalStore {
    /// Opens (creating if missing) the folder `root`. With `fsync`, every acknowledged
    /// write is on stable storage.
    pub fn open(root: impl AsRef<FsPath>, fsync: bool) -> io::Result<Self> {
        let root = root.as_ref();
        fs::create_dir_all(root)?;
        let root_path = root.canonicalize()?;
        let root = rustix::fs::open(
            &root_path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let reserved = own_folder(&root, RESERVED_DIR)?;
        let tmp = own_folder(&reserved, "tmp")?;
        let locks = own_folder(&reserved, "locks")?;
        clean_temp_files(&tmp);
        let xattrs = probe_xattrs(&tmp);
        if !xattrs {
            tracing::warn!(
                root = %root_path.display(),
                "the filesystem under the local root does not support extended attributes; \
                 content types and metadata cannot be stored there, and etags fall back to \
                 inode, size and modification time"
            );
        }
        Ok(LocalStore {
            inner: Arc::new(Inner {
                root_path,
                root,
                tmp,
                locks,
                fsync,
                xattrs,
                open_files: OpenFiles::new(),
            }),
        })
    }

    /// The canonical root folder.
    pub fn root(&self) -> &FsPath {
        &self.inner.root_path
    }

    /// The store keeping `open_files` in place of its own (tests: a small capacity, no
    /// settling time).
    #[cfg(test)]
    fn with_open_files(mut self, open_files: OpenFiles) -> LocalStore {
        Arc::get_mut(&mut self.inner)
            .expect("a new store")
            .open_files = open_files;
        self
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner)).await?
    }
}

/// The folder of a key, resolved beneath the root.
struct Parent {
    /// The key's folder (`None`: the root). Only this one is held: a handle per level
    /// would hold up to 511 descriptors per key for the whole write.
    dir: Option<OwnedFd>,
    /// The key's components; the last is the file name.
    parts: Vec<String>,
}

impl Parent {
    fn dir<'a>(&'a self, root: &'a OwnedFd) -> BorrowedFd<'a> {
        self.dir.as_ref().unwrap_or(root).as_fd()
    }

    fn name(&self) -> &str {
        self.parts.last().expect("a key has a name")
    }
}

/// What resolving a key's folders found.
enum Lookup {
    Found(Parent),
    /// A folder on the way is missing.
    Absent,
    /// A folder on the way is a symlink.
    Symlink,
    /// The path (below the root) is an object, not a folder.
    UnderObject(String),
}

/// One entry of a folder, as a listing sees it.
enum Entry {
    File,
    Folder,
    Symlink,
}

impl Inner {
    /// The components of `location`, refusing the empty location, maskstore's reserved
    /// folder and names longer than the file system keeps.
    fn parts(&self, location: &Path) -> Result<Vec<String>> {
        let parts: Vec<String> = location.parts().map(|p| p.as_ref().to_string()).collect();
        if parts.is_empty() {
            return Err(LocalError::Empty.into());
        }
        if parts[0] == RESERVED_DIR {
            return Err(LocalError::Reserved {
                key: location.to_string(),
            }
            .into());
        }
        if parts.iter().any(|p| p.len() > error::NAME_MAX) {
            return Err(LocalError::NameTooLong {
                key: location.to_string(),
            }
            .into());
        }
        Ok(parts)
    }

    /// Resolves the folders of `parts` beneath the root, one level at a time; with
    /// `create`, missing folders are made (and, with fsync, made durable in their parents).
    /// A folder pruned by a concurrent delete while it is walked is walked again.
    fn open_parent(&self, parts: Vec<String>, create: bool) -> io::Result<Lookup> {
        let folders = parts.len() - 1;
        // Folders that exist already (every write but a key's first) resolve in one call,
        // as safely as level by level (`openat2` beneath the root, no symlink followed);
        // anything else is walked below, which creates what is missing and says what is
        // in the way.
        if folders > 1
            && let Ok(fd) = beneath::open(
                self.root.as_fd(),
                &parts[..folders].join("/"),
                OFlags::RDONLY | OFlags::DIRECTORY,
            )
        {
            return Ok(Lookup::Found(Parent {
                dir: Some(fd),
                parts,
            }));
        }
        // Walks started again because a folder on the way was pruned; a key may need
        // many new folders, which are no retries.
        let mut restarts = 0;
        'walk: loop {
            let mut dir: Option<OwnedFd> = None;
            for i in 0..folders {
                let at = dir.as_ref().unwrap_or(&self.root).as_fd();
                let name = parts[i].as_str();
                let mut made = 0;
                let fd = loop {
                    match beneath::open(at, name, OFlags::RDONLY | OFlags::DIRECTORY) {
                        Ok(fd) => break fd,
                        Err(Errno::NOENT) if create && made < PRUNED_RETRIES => {
                            made += 1;
                            match mkdirat(at, name, Mode::from_raw_mode(0o777)) {
                                Ok(()) if self.fsync => rustix::fs::fsync(at)?,
                                Ok(()) | Err(Errno::EXIST) => {}
                                // `at` itself was pruned meanwhile: start again from the root.
                                Err(Errno::NOENT) if restarts < PRUNED_RETRIES => {
                                    restarts += 1;
                                    continue 'walk;
                                }
                                Err(Errno::NOENT) => return Ok(Lookup::Absent),
                                Err(e) => return Err(e.into()),
                            }
                        }
                        // Missing, or (creating) pruned again each time it was made.
                        Err(Errno::NOENT) => return Ok(Lookup::Absent),
                        Err(Errno::LOOP) => return Ok(Lookup::Symlink),
                        Err(Errno::NOTDIR) => {
                            return Ok(Lookup::UnderObject(parts[..=i].join("/")));
                        }
                        Err(e) => return Err(e.into()),
                    }
                };
                dir = Some(fd);
            }
            return Ok(Lookup::Found(Parent { dir, parts }));
        }
    }

    /// The folders of a key about to be written, created as needed.
    fn writable_parent(&self, location: &Path, parts: Vec<String>) -> Result<Parent> {
        match self
            .open_parent(parts, true)
            .map_err(|e| io_error(location, e))?
        {
            Lookup::Found(parent) => Ok(parent),
            Lookup::Symlink => Err(LocalError::CrossesSymlink {
                key: location.to_string(),
            }
            .into()),
            Lookup::UnderObject(object) => Err(LocalError::UnderAnObject {
                key: location.to_string(),
                object,
            }
            .into()),
            Lookup::Absent => Err(io_error(
                location,
                io::Error::other("its folder kept disappearing while it was written; retry"),
            )),
        }
    }

    /// Refuses, before any data is written, a key that cannot be written (below a symlink
    /// or an object, or naming a folder). Nothing is created.
    fn check_writable(&self, location: &Path, parts: Vec<String>) -> Result<()> {
        match self
            .open_parent(parts, false)
            .map_err(|e| io_error(location, e))?
        {
            Lookup::Found(parent) => match beneath::kind(parent.dir(&self.root), parent.name()) {
                Ok(Some(FileType::Directory)) => Err(LocalError::IsAFolder {
                    key: location.to_string(),
                }
                .into()),
                Ok(_) => Ok(()),
                Err(e) => Err(io_error(location, e.into())),
            },
            Lookup::Absent => Ok(()),
            Lookup::Symlink => Err(LocalError::CrossesSymlink {
                key: location.to_string(),
            }
            .into()),
            Lookup::UnderObject(object) => Err(LocalError::UnderAnObject {
                key: location.to_string(),
                object,
            }
            .into()),
        }
    }

    /// The open file of the object at `location`; symlinks and folders count as missing.
    fn open_object(&self, location: &Path) -> Result<(File, fs::Metadata)> {
        self.open_object_by(location, beneath::open)?
            .ok_or_else(|| io_error(location, Errno::AGAIN.into()))
    }

    /// [`Inner::open_object`] opening with `open`; `None` if it answered `EAGAIN` (see
    /// [`beneath::open_cached`]).
    fn open_object_by(
        &self,
        location: &Path,
        open: fn(BorrowedFd<'_>, &str, OFlags) -> Result<OwnedFd, Errno>,
    ) -> Result<Option<(File, fs::Metadata)>> {
        let path = self.parts(location)?.join("/");
        let fd = match open(self.root.as_fd(), &path, OFlags::RDONLY | OFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(Errno::AGAIN) => return Ok(None),
            Err(Errno::LOOP) => {
                return Err(not_found(
                    location,
                    "the path crosses a symlink, which is never followed",
                ));
            }
            Err(Errno::NOENT | Errno::NOTDIR) => {
                return Err(not_found(location, "no such object"));
            }
            // A socket cannot be opened (a FIFO or device can, and fails the check below).
            Err(Errno::NXIO) => return Err(not_found(location, "not a regular file")),
            Err(e) => return Err(io_error(location, e.into())),
        };
        let file = File::from(fd);
        let md = file.metadata().map_err(|e| io_error(location, e))?;
        if md.is_dir() {
            return Err(not_found(location, "a folder is not an object"));
        }
        if !md.is_file() {
            return Err(not_found(location, "not a regular file"));
        }
        Ok(Some((file, md)))
    }

    /// Locks `keys` (see `locks.rs`).
    fn lock(&self, keys: &[&str]) -> Result<locks::Guard> {
        locks::lock(&self.locks, keys).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                return self.own_folder_removed("locks");
            }
            LocalError::io("(a key lock under .maskstore/locks)", e).into()
        })
    }

    /// The error for a write after maskstore's folder `.maskstore/<name>` was removed
    /// while the store was open (a file cannot be made in a removed folder): without it
    /// every write failed as "not found", which the gateway answers 404.
    fn own_folder_removed(&self, name: &str) -> object_store::Error {
        LocalError::Io {
            key: format!("(maskstore's own folder {RESERVED_DIR}/{name})"),
            source: io::Error::other(format!(
                "{} was removed while this process had the local root open, so nothing                  can be written; restart the process, which makes it again (never delete                  {RESERVED_DIR}/ while maskstore runs)",
                self.root_path.join(RESERVED_DIR).join(name).display()
            )),
        }
        .into()
    }

    fn temp_file(&self) -> Result<(String, File)> {
        loop {
            let name = format!("{:016x}.tmp", rand::random::<u64>());
            match openat(
                self.tmp.as_fd(),
                name.as_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            ) {
                Ok(fd) => return Ok((name, File::from(fd))),
                Err(Errno::EXIST) => continue,
                Err(Errno::NOENT) => return Err(self.own_folder_removed("tmp")),
                Err(e) => return Err(LocalError::io("(a temporary file)", e.into()).into()),
            }
        }
    }

    fn remove_temp(&self, name: &str) {
        let _ = unlinkat(self.tmp.as_fd(), name, AtFlags::empty());
    }

    /// Stores `attributes` and a fresh generation with `file`; returns the generation
    /// stored (none where the file system keeps no extended attributes).
    fn write_attributes(
        &self,
        location: &Path,
        file: &File,
        attributes: &Attributes,
    ) -> Result<Option<String>> {
        let mut stored = StoredAttributes::from_attributes(attributes);
        if !self.xattrs {
            if stored.is_empty() {
                return Ok(None);
            }
            return Err(LocalError::NoAttributes {
                key: location.to_string(),
                root: self.root_path.clone(),
            }
            .into());
        }
        let generation = format!("{:016x}", rand::random::<u64>());
        stored.generation = Some(generation.clone());
        let failed = |detail: String| LocalError::Attributes {
            key: location.to_string(),
            detail,
        };
        let record = stored.encode().map_err(failed)?;
        xattr::FileExt::set_xattr(file, XATTR, &record).map_err(|e| failed(e.to_string()))?;
        Ok(Some(generation))
    }

    /// The etag of the object named `name` in `dir` (`None`: no object there).
    fn etag_at(&self, dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<String>> {
        match beneath::open(dir, name, OFlags::RDONLY | OFlags::NONBLOCK) {
            Ok(fd) => {
                let file = File::from(fd);
                let md = file.metadata()?;
                Ok(md
                    .is_file()
                    .then(|| etag(&md, read_stored(&file).generation.as_deref())))
            }
            // A socket (`ENXIO`) is no object either.
            Err(Errno::NOENT | Errno::LOOP | Errno::NXIO) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves the finished temporary file `temp` to `location` according to `mode`, under
    /// the key's lock.
    fn commit(&self, location: &Path, temp: &str, mode: &PutMode) -> Result<()> {
        let parts = self.parts(location)?;
        let guard = self.lock(&[location.as_ref()])?;
        for _ in 0..PRUNED_RETRIES {
            let parent = self.writable_parent(location, parts.clone())?;
            let (dir, name) = (parent.dir(&self.root), parent.name());
            let done = match mode {
                PutMode::Overwrite => renameat(self.tmp.as_fd(), temp, dir, name),
                PutMode::Create => {
                    let linked = linkat(self.tmp.as_fd(), temp, dir, name, AtFlags::empty());
                    if linked.is_ok() {
                        self.remove_temp(temp);
                    }
                    linked
                }
                PutMode::Update(version) => {
                    let current = self.etag_at(dir, name).map_err(|e| io_error(location, e))?;
                    if current.is_none() || current != version.e_tag {
                        return Err(LocalError::Stale {
                            key: location.to_string(),
                            expected: version.e_tag.clone(),
                            found: current,
                        }
                        .into());
                    }
                    renameat(self.tmp.as_fd(), temp, dir, name)
                }
            };
            match done {
                Ok(()) => {
                    drop(guard);
                    // Released now rather than found replaced at the next read.
                    self.open_files.forget(location.as_ref(), false);
                    return self.sync(dir, location);
                }
                // The folder was pruned by a concurrent delete after it was resolved.
                Err(Errno::NOENT) => continue,
                Err(Errno::EXIST) => return Err(already_exists(location)),
                Err(Errno::ISDIR | Errno::NOTEMPTY) => {
                    return Err(LocalError::IsAFolder {
                        key: location.to_string(),
                    }
                    .into());
                }
                Err(e) => return Err(io_error(location, e.into())),
            }
        }
        Err(io_error(
            location,
            io::Error::other("its folder kept disappearing while it was written; retry"),
        ))
    }

    /// Fsyncs the folder `dir` (with `fsync = true`).
    fn sync(&self, dir: BorrowedFd<'_>, location: &Path) -> Result<()> {
        if !self.fsync {
            return Ok(());
        }
        rustix::fs::fsync(dir).map_err(|e| {
            LocalError::io(format!("(fsync of the folder of {location})"), e.into()).into()
        })
    }

    /// Removes the folders of `parent` that became empty, and makes the removal durable in
    /// the first folder that remains. Each folder above the key's is resolved again beneath
    /// the root (no symlink followed) once the one below it is removed.
    fn prune(&self, parent: &Parent, location: &Path) -> Result<()> {
        let parts = &parent.parts;
        // The folder at level `i` once it is no longer the key's own.
        let mut held: Option<OwnedFd> = None;
        for i in (0..parts.len() - 1).rev() {
            let current = held
                .as_ref()
                .map_or(parent.dir(&self.root), |fd| fd.as_fd());
            let above = match i {
                0 => None,
                _ => match beneath::open(
                    self.root.as_fd(),
                    &parts[..i].join("/"),
                    OFlags::RDONLY | OFlags::DIRECTORY,
                ) {
                    Ok(fd) => Some(fd),
                    // Pruned or replaced meanwhile: another writer's business now.
                    Err(_) => return self.sync(current, location),
                },
            };
            let at = above.as_ref().unwrap_or(&self.root).as_fd();
            if unlinkat(at, parts[i].as_str(), AtFlags::REMOVEDIR).is_err() {
                return self.sync(current, location);
            }
            held = above;
        }
        self.sync(self.root.as_fd(), location)
    }

    fn put_blocking(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.parts(location)?;
        let (temp, mut file) = self.temp_file()?;
        // Storage's checksum, computed here slice by slice as each is written (issue 16).
        let hash_on_write = opts.extensions.get::<HashOnWrite>();
        let mut hasher = hash_on_write.and_then(|request| Hasher::new(request.algorithm));
        let written = (|| {
            for chunk in payload.iter() {
                let Some(hasher) = &mut hasher else {
                    file.write_all(chunk).map_err(|e| io_error(location, e))?;
                    continue;
                };
                for slice in chunk.chunks(HASH_ON_WRITE_SLICE) {
                    file.write_all(slice).map_err(|e| io_error(location, e))?;
                    hasher.update(slice);
                }
            }
            let mut hashed = None;
            if let (Some(request), Some(hasher)) = (hash_on_write, hasher.take()) {
                let mut attributes = opts.attributes.clone();
                attributes.insert(
                    Attribute::Metadata(CHECKSUM_METADATA.into()),
                    hasher.finish().into(),
                );
                hashed = Some((request, attributes));
            }
            let attributes = hashed.as_ref().map_or(&opts.attributes, |(_, a)| a);
            let generation = self.write_attributes(location, &file, attributes)?;
            if let Some((request, attributes)) = &hashed
                && let Some(value) = attributes.get(&Attribute::Metadata(CHECKSUM_METADATA.into()))
            {
                request.done.set(value.to_string());
                request.done.take();
            }
            if self.fsync {
                file.sync_all().map_err(|e| io_error(location, e))?;
            }
            let md = file.metadata().map_err(|e| io_error(location, e))?;
            Ok(etag(&md, generation.as_deref()))
        })();
        drop(file);
        let result = written.and_then(|etag| {
            self.commit(location, &temp, &opts.mode)?;
            Ok(etag)
        });
        match result {
            Ok(etag) => Ok(PutResult {
                e_tag: Some(etag),
                version: None,
                extensions: Default::default(),
            }),
            Err(e) => {
                self.remove_temp(&temp);
                Err(e)
            }
        }
    }

    fn get_blocking(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let (file, md) = self.open_object(location)?;
        self.answer(location, file, &md, &options, false)?
            .ok_or_else(|| io_error(location, Errno::AGAIN.into()))
    }

    /// A read in a blocking task: from the key's kept file if it is still the key's, else
    /// from the file opened beneath the root.
    fn get_waiting(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        match self.answer_kept(location, &options, false)? {
            Some(answered) => Ok(answered),
            None => self.get_blocking(location, options),
        }
    }

    /// A read answered on the caller's thread, without waiting for the disk: `None` unless
    /// the path is in the dentry cache and (for a range read here) the data in the page
    /// cache; the read then goes to a blocking task.
    fn get_cached(&self, location: &Path, options: &GetOptions) -> Result<Option<GetResult>> {
        if let Some(answered) = self.answer_kept(location, options, true)? {
            return Ok(Some(answered));
        }
        match self.open_object_by(location, beneath::open_cached)? {
            Some((file, md)) => self.answer(location, file, &md, options, true),
            None => Ok(None),
        }
    }

    /// The answer to a read of the open object `file`: attributes, preconditions, range,
    /// and the data of a small range, or of any range the caller holds in memory whole
    /// ([`ReadAll`]), read here; a larger range comes back as the open file. With `nowait`
    /// nothing waits for the disk: `None` if the data is not in the page cache, or is to
    /// be read whole and is larger than [`NOWAIT_READ`]. A settled file whose data was
    /// read here is kept open for the next read (see [`open_files`]).
    fn answer(
        &self,
        location: &Path,
        file: File,
        md: &fs::Metadata,
        options: &GetOptions,
        nowait: bool,
    ) -> Result<Option<GetResult>> {
        let described = describe(location, &file, md);
        options.check_preconditions(&described.meta)?;
        // Taken before any byte is read: see `stamp`.
        let now = SystemTime::now();
        let settled = stamp::FileStamp::settled(md, now);
        let keep = stamp::FileStamp::settled_after(md, now, self.open_files.settle)
            .filter(|_| md.len() <= open_files::KEPT_SIZE_MAX);
        let Some(read) = self.read(location, &file, &described, options, nowait)? else {
            return Ok(None);
        };
        // Data read here vouches for the stamp only if nothing changed the file meanwhile;
        // a file handed back is checked by its reader once it has read it.
        let stamp = settled
            .filter(|_| options.extensions.get::<stamp::WantStamp>().is_some())
            .filter(|s| read.data.is_none() || s.still(&file));
        let (file, payload) = match read.data {
            Some(_) => (Some(file), None),
            None => {
                let path = self.root_path.join(location.as_ref());
                (None, Some(GetResultPayload::File(file, path)))
            }
        };
        // A file read by a name no key can hold ([`names`]: the location is empty) is not
        // kept: no read of a key finds it, and its delete would not drop it.
        if let (Some(file), Some(stamp), false) = (file, keep, location.as_ref().is_empty()) {
            let described = described.clone();
            let object = OpenObject {
                file,
                stamp,
                described,
            };
            self.open_files.keep(location.as_ref(), object, nowait);
        }
        Ok(Some(answered(described, read, stamp, payload)))
    }

    /// The answer from the kept open file of `location` (see [`open_files`]), `None` when
    /// there is none, it is no longer the key's file as it was, the read would hand the
    /// file itself out (a large range, read by the caller), or (with `nowait`) it would
    /// wait for the disk: the read is then answered as if nothing had been kept.
    fn answer_kept(
        &self,
        location: &Path,
        options: &GetOptions,
        nowait: bool,
    ) -> Result<Option<GetResult>> {
        let key = location.as_ref();
        let Some(object) = self.open_files.get(key, nowait) else {
            return Ok(None);
        };
        let answer = self.answer_from(location, &object, options, nowait);
        // This may be the last holder: a file deleted meanwhile is closed off this thread.
        open_files::release([object], nowait);
        answer
    }

    /// [`Inner::answer_kept`] from the kept `object`.
    fn answer_from(
        &self,
        location: &Path,
        object: &OpenObject,
        options: &GetOptions,
        nowait: bool,
    ) -> Result<Option<GetResult>> {
        let key = location.as_ref();
        let described = &object.described;
        let read = match self.read(location, &object.file, described, options, nowait) {
            Ok(Some(read)) if read.data.is_some() || options.head => read,
            Ok(_) => return Ok(None),
            // A failed read (or a range error) is the opened file's to tell.
            Err(_) => {
                self.open_files.forget(key, nowait);
                return Ok(None);
            }
        };
        // After the read: see `open_files` for why this one check is enough.
        match object.still_at(self.root.as_fd(), key, nowait) {
            open_files::Found::Same => {}
            // Kept for the read that may wait to check.
            open_files::Found::Unknown => return Ok(None),
            open_files::Found::Changed => {
                self.open_files.forget(key, nowait);
                return Ok(None);
            }
        }
        options.check_preconditions(&described.meta)?;
        let stamp = options
            .extensions
            .get::<stamp::WantStamp>()
            .map(|_| object.stamp);
        #[cfg(test)]
        self.open_files
            .served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(answered(described.for_answer(), read, stamp, None)))
    }

    /// The range `options` asks of the object `described`, and its data when it is read
    /// here (a small range, or a whole read into memory, never for a HEAD): `None` when,
    /// with `nowait`, that would wait for the disk.
    fn read(
        &self,
        location: &Path,
        file: &File,
        described: &Described,
        options: &GetOptions,
        nowait: bool,
    ) -> Result<Option<Read>> {
        let size = described.meta.size;
        let range = match &options.range {
            Some(range) => range
                .as_range(size)
                // object_store's own range error, which the storage layer reads as such.
                .map_err(|e| object_store::Error::Generic {
                    store: "local",
                    source: Box::new(e),
                })?,
            None => 0..size,
        };
        let len = range.end - range.start;
        let whole = options.extensions.get::<ReadAll>().copied();
        if options.head || !(len <= INLINE_READ || whole.is_some()) {
            return Ok(Some(Read {
                range,
                data: None,
                computed: None,
            }));
        }
        if nowait && len > NOWAIT_READ {
            return Ok(None);
        }
        if nowait {
            return match file_io::read_nowait(file, range.start, len as usize) {
                Ok(Some(data)) => Ok(Some(Read {
                    range,
                    data: Some(data),
                    computed: None,
                })),
                Ok(None) => Ok(None),
                Err(e) => Err(io_error(location, e)),
            };
        }
        // The checksum to compute while reading: a whole read into memory of an object
        // with a stored checksum of a known algorithm.
        let mut hasher = match (whole, &described.checksum) {
            (Some(ReadAll { hash: true }), Some(checksum)) => {
                crate::checksum::Hasher::for_stored(checksum)
            }
            _ => None,
        };
        let data = match hasher.as_mut() {
            Some(h) => file_io::read_whole(
                file,
                range.start,
                len as usize,
                Some(&mut |block: &[u8]| h.update(block)),
            ),
            None => file_io::read_whole(file, range.start, len as usize, None),
        }
        .map_err(|e| io_error(location, e))?;
        Ok(Some(Read {
            range,
            data: Some(data),
            computed: hasher.map(|h| h.finish()),
        }))
    }

    fn delete_blocking(&self, location: &Path) -> Result<()> {
        let parts = self.parts(location)?;
        let guard = self.lock(&[location.as_ref()])?;
        let parent = match self
            .open_parent(parts, false)
            .map_err(|e| io_error(location, e))?
        {
            Lookup::Found(parent) => parent,
            // Missing keys, and keys behind a symlink or below an object: nothing to delete,
            // as on S3.
            _ => return Ok(()),
        };
        let (dir, name) = (parent.dir(&self.root), parent.name());
        match beneath::kind(dir, name) {
            Ok(Some(FileType::RegularFile)) => {}
            // Folders and symlinks are not objects.
            Ok(_) => return Ok(()),
            Err(e) => return Err(io_error(location, e.into())),
        }
        match unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(io_error(location, e.into())),
        }
        drop(guard);
        // Its disk space is freed now, not when the kept file would next be found gone.
        self.open_files.forget(location.as_ref(), false);
        self.prune(&parent, location)
    }

    fn copy_blocking(&self, from: &Path, to: &Path, mode: CopyMode) -> Result<()> {
        let (mut source, _) = self.open_object(from)?;
        if from == to {
            // Copying an object onto itself keeps it.
            return match mode {
                CopyMode::Overwrite => Ok(()),
                CopyMode::Create => Err(already_exists(to)),
            };
        }
        self.parts(to)?;
        // A copy must not turn an object whose checksum record is damaged into one that
        // merely has none.
        let attributes = read_checked(&source)
            .map_err(|detail| LocalError::UnreadableAttributes {
                key: from.to_string(),
                detail,
            })?
            .into_attributes();
        let (temp, mut file) = self.temp_file()?;
        let written = (|| {
            io::copy(&mut source, &mut file).map_err(|e| io_error(from, e))?;
            self.write_attributes(to, &file, &attributes)?;
            if self.fsync {
                file.sync_all().map_err(|e| io_error(to, e))?;
            }
            Ok(())
        })();
        drop(file);
        let mode = match mode {
            CopyMode::Overwrite => PutMode::Overwrite,
            CopyMode::Create => PutMode::Create,
        };
        let result = written.and_then(|()| self.commit(to, &temp, &mode));
        if result.is_err() {
            self.remove_temp(&temp);
        }
        result
    }

    fn rename_blocking(&self, from: &Path, to: &Path, mode: RenameTargetMode) -> Result<()> {
        if from == to {
            // Renaming an object onto itself keeps it.
            self.open_object(from)?;
            return match mode {
                RenameTargetMode::Overwrite => Ok(()),
                RenameTargetMode::Create => Err(already_exists(to)),
            };
        }
        let (from_parts, to_parts) = (self.parts(from)?, self.parts(to)?);
        let guard = self.lock(&[from.as_ref(), to.as_ref()])?;
        let source = match self
            .open_parent(from_parts, false)
            .map_err(|e| io_error(from, e))?
        {
            Lookup::Found(parent) => parent,
            Lookup::Symlink => {
                return Err(not_found(
                    from,
                    "the path crosses a symlink, which is never followed",
                ));
            }
            Lookup::Absent | Lookup::UnderObject(_) => {
                return Err(not_found(from, "no such object"));
            }
        };
        let (source_dir, source_name) = (source.dir(&self.root), source.name());
        match beneath::kind(source_dir, source_name) {
            Ok(Some(FileType::RegularFile)) => {}
            Ok(Some(FileType::Directory)) => {
                return Err(not_found(from, "a folder is not an object"));
            }
            Ok(Some(FileType::Symlink)) => {
                return Err(not_found(from, "a symlink is never followed"));
            }
            Ok(_) => return Err(not_found(from, "no such object")),
            Err(e) => return Err(io_error(from, e.into())),
        }
        let mut attempts = 0;
        let dest = loop {
            attempts += 1;
            let dest = self.writable_parent(to, to_parts.clone())?;
            let (dir, name) = (dest.dir(&self.root), dest.name());
            let done = match mode {
                RenameTargetMode::Overwrite => renameat(source_dir, source_name, dir, name),
                RenameTargetMode::Create => {
                    linkat(source_dir, source_name, dir, name, AtFlags::empty())
                        .and_then(|()| unlinkat(source_dir, source_name, AtFlags::empty()))
                }
            };
            match done {
                Ok(()) => break dest,
                Err(Errno::NOENT) if attempts < PRUNED_RETRIES => continue,
                Err(Errno::EXIST) => return Err(already_exists(to)),
                Err(Errno::ISDIR | Errno::NOTEMPTY) => {
                    return Err(LocalError::IsAFolder {
                        key: to.to_string(),
                    }
                    .into());
                }
                Err(e) => return Err(io_error(to, e.into())),
            }
        };
        drop(guard);
        self.open_files.forget(from.as_ref(), false);
        self.open_files.forget(to.as_ref(), false);
        self.sync(dest.dir(&self.root), to)?;
        self.prune(&source, from)
    }

    /// The folder a listing of `prefix` reads and its path below the root (`None`: no
    /// such folder, so nothing to list). The root prefix (none, or the empty path) is the
    /// root.
    fn open_prefix(&self, prefix: Option<&Path>) -> Result<Option<(OwnedFd, String)>> {
        let parts: Vec<String> = prefix
            .map(|p| p.parts().map(|part| part.as_ref().to_string()).collect())
            .unwrap_or_default();
        if parts.is_empty() {
            let root = self
                .root
                .try_clone()
                .map_err(|e| LocalError::io("(listing the local root)", e))?;
            return Ok(Some((root, String::new())));
        }
        if parts[0] == RESERVED_DIR {
            return Ok(None);
        }
        let path = parts.join("/");
        match beneath::open(self.root.as_fd(), &path, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => Ok(Some((fd, path))),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(Errno::LOOP) => Err(LocalError::Symlink { path }.into()),
            Err(e) => Err(LocalError::io(format!("(listing {path})"), e.into()).into()),
        }
    }

    /// The entries of the folder `dir` (at `path` below the root), sorted by name, without
    /// `.maskstore/`. Entries that are neither files, folders nor symlinks are no objects.
    fn entries(&self, dir: &OwnedFd, path: &str) -> Result<Vec<(String, Entry)>> {
        let failed = |e: Errno| -> object_store::Error {
            LocalError::io(format!("(listing {})", display_path(path)), e.into()).into()
        };
        let mut entries = Vec::new();
        for entry in rustix::fs::Dir::read_from(dir).map_err(failed)? {
            let entry = entry.map_err(failed)?;
            let bytes = entry.file_name().to_bytes();
            if bytes == b"."
                || bytes == b".."
                || (path.is_empty() && bytes == RESERVED_DIR.as_bytes())
            {
                continue;
            }
            let Ok(name) = std::str::from_utf8(bytes) else {
                tracing::warn!(folder = %maskstore_core::shown(display_path(path)), name = %maskstore_core::shown(&String::from_utf8_lossy(bytes)), "skipping a file whose name is not UTF-8, so no key");
                continue;
            };
            let mut file_type = entry.file_type();
            if file_type == FileType::Unknown {
                match beneath::kind(dir.as_fd(), name) {
                    Ok(Some(t)) => file_type = t,
                    Ok(None) => continue,
                    Err(e) => return Err(failed(e)),
                }
            }
            let kind = match file_type {
                FileType::RegularFile => Entry::File,
                FileType::Directory => Entry::Folder,
                FileType::Symlink => Entry::Symlink,
                _ => {
                    tracing::warn!(path = %maskstore_core::shown(&join(path, name)), "skipping a special file (neither file, folder nor symlink)");
                    continue;
                }
            };
            entries.push((name.to_string(), kind));
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(entries)
    }

    /// The object named `name` in `dir` (at `path` below the root); `None` if it vanished
    /// meanwhile or its name is no key.
    fn meta_at(&self, dir: &OwnedFd, name: &str, path: &str) -> Result<Option<ObjectMeta>> {
        let file = match beneath::open(dir.as_fd(), name, OFlags::RDONLY | OFlags::NONBLOCK) {
            Ok(fd) => File::from(fd),
            // Vanished, or replaced by a socket since the folder was read.
            Err(Errno::NOENT | Errno::NXIO) => return Ok(None),
            Err(Errno::LOOP) => {
                return Err(LocalError::Symlink {
                    path: path.to_string(),
                }
                .into());
            }
            Err(e) => return Err(LocalError::io(format!("(listing {path})"), e.into()).into()),
        };
        let md = file
            .metadata()
            .map_err(|e| LocalError::io(format!("(listing {path})"), e))?;
        if !md.is_file() {
            return Ok(None);
        }
        // A file name object_store cannot hold (a control character): reported as an
        // error naming it, and the listing goes on (`names.rs` reads and deletes it).
        let location = Path::parse(path)?;
        let generation = read_stored(&file).generation;
        Ok(Some(object_meta(location, &md, generation.as_deref())))
    }

    /// The folder named `name` in `dir` (at `path`); `None` if it vanished meanwhile, or
    /// became an object (its keys were deleted, the folder pruned and the name written
    /// since the folder was read: a listing need not show a write that began after it).
    fn open_folder(&self, dir: &OwnedFd, name: &str, path: &str) -> Result<Option<OwnedFd>> {
        match beneath::open(dir.as_fd(), name, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(Errno::LOOP) => Err(LocalError::Symlink {
                path: path.to_string(),
            }
            .into()),
            Err(e) => Err(LocalError::io(format!("(listing {path})"), e.into()).into()),
        }
    }

    fn list_blocking(
        &self,
        prefix: Option<&Path>,
        emit: &mut dyn FnMut(Result<ObjectMeta>) -> bool,
    ) {
        match self.open_prefix(prefix) {
            Ok(Some((dir, path))) => {
                self.walk(dir, path, emit);
            }
            Ok(None) => {}
            Err(e) => {
                emit(Err(e));
            }
        }
    }

    /// Emits every object below `dir` (at `path`), depth first in name order; false once
    /// the receiver is gone. The walk keeps its own stack (a tree thousands of folders deep
    /// overflowed the thread's stack and aborted the process) and does not descend below
    /// [`MAX_FOLDER_DEPTH`], reporting such a folder instead.
    fn walk(
        &self,
        dir: OwnedFd,
        path: String,
        emit: &mut dyn FnMut(Result<ObjectMeta>) -> bool,
    ) -> bool {
        /// A folder being walked: its handle, its path and the entries still to visit.
        struct Level {
            dir: OwnedFd,
            path: String,
            entries: std::vec::IntoIter<(String, Entry)>,
        }
        let mut stack = match self.entries(&dir, &path) {
            Ok(entries) => vec![Level {
                dir,
                path,
                entries: entries.into_iter(),
            }],
            Err(e) => return emit(Err(e)),
        };
        while let Some(level) = stack.last_mut() {
            let Some((name, kind)) = level.entries.next() else {
                stack.pop();
                continue;
            };
            let child = join(&level.path, &name);
            let mut deeper = None;
            let going = match kind {
                Entry::Symlink => emit(Err(LocalError::Symlink { path: child }.into())),
                Entry::File => match self.meta_at(&level.dir, &name, &child) {
                    Ok(Some(meta)) => emit(Ok(meta)),
                    Ok(None) => true,
                    Err(e) => emit(Err(e)),
                },
                Entry::Folder if depth_of(&child) > MAX_FOLDER_DEPTH => emit(Err(too_deep(&child))),
                Entry::Folder => match self.open_folder(&level.dir, &name, &child) {
                    Ok(Some(sub)) => match self.entries(&sub, &child) {
                        Ok(entries) => {
                            deeper = Some(Level {
                                dir: sub,
                                path: child,
                                entries: entries.into_iter(),
                            });
                            true
                        }
                        Err(e) => emit(Err(e)),
                    },
                    Ok(None) => true,
                    Err(e) => emit(Err(e)),
                },
            };
            if !going {
                return false;
            }
            stack.extend(deeper);
        }
        true
    }

    /// Whether the folder `dir` (at `path`) holds at least one object; whatever would
    /// fail its listing (a symlink, a folder too deep) is an error here too.
    fn holds_objects(&self, dir: OwnedFd, path: String) -> Result<bool> {
        let mut found = Ok(false);
        self.walk(dir, path, &mut |item| {
            found = match item {
                // A file whose name object_store cannot hold is an object all the same.
                Ok(_) | Err(object_store::Error::InvalidPath { .. }) => Ok(true),
                Err(e) => Err(e),
            };
            false
        });
        found
    }

    fn list_with_delimiter_blocking(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        let Some((dir, path)) = self.open_prefix(prefix)? else {
            return Ok(result);
        };
        // Entries come sorted by name, so objects and common prefixes are sorted by key.
        for (name, kind) in self.entries(&dir, &path)? {
            let child = join(&path, &name);
            match kind {
                Entry::Symlink => return Err(LocalError::Symlink { path: child }.into()),
                Entry::File => match self.meta_at(&dir, &name, &child) {
                    Ok(Some(meta)) => result.objects.push(meta),
                    Ok(None) => {}
                    // A name object_store cannot hold: `Storage::list` lists it.
                    Err(object_store::Error::InvalidPath { .. }) => {
                        tracing::warn!(path = %maskstore_core::shown(&child), "a listing with a delimiter leaves out a file whose name object_store cannot hold");
                    }
                    Err(e) => return Err(e),
                },
                Entry::Folder => {
                    if depth_of(&child) > MAX_FOLDER_DEPTH {
                        return Err(too_deep(&child));
                    }
                    if let Some(sub) = self.open_folder(&dir, &name, &child)?
                        && self.holds_objects(sub, child.clone())?
                    {
                        match Path::parse(&child) {
                            Ok(location) => result.common_prefixes.push(location),
                            Err(_) => {
                                tracing::warn!(path = %child, "skipping a folder whose name is not a valid key")
                            }
                        }
                    }
                }
            }
        }
        Ok(result)
    }
}

/// How many folders deep a listing goes: a key of at most [`MAX_KEY_BYTES`] bytes has at
/// most this many folders, so no deeper folder holds an object.
const MAX_FOLDER_DEPTH: usize = MAX_KEY_BYTES / 2 - 1;

/// The number of segments of `path` below the root.
fn depth_of(path: &str) -> usize {
    path.split('/').count()
}

/// The error for a folder deeper than any key reaches.
fn too_deep(path: &str) -> object_store::Error {
    LocalError::Io {
        key: path.to_string(),
        source: io::Error::other(format!(
            "this folder is more than {MAX_FOLDER_DEPTH} folders deep below the local root, \
             so it can hold no object (a key has at most {MAX_KEY_BYTES} bytes); move it out \
             of the root"
        )),
    }
    .into()
}

/// `name` below `path` (`""` is the root).
fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}/{name}")
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "the local root"
    } else {
        path
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let location = location.clone();
        self.blocking(move |s| s.put_blocking(&location, payload, opts))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let location = location.clone();
        let store = self.clone();
        self.blocking(move |s| {
            let parts = s.parts(&location)?;
            s.check_writable(&location, parts)?;
            let (temp, file) = s.temp_file()?;
            let generation = match s.write_attributes(&location, &file, &opts.attributes) {
                Ok(generation) => generation,
                Err(e) => {
                    s.remove_temp(&temp);
                    return Err(e);
                }
            };
            Ok(Box::new(LocalUpload {
                store,
                location,
                temp: Some(temp),
                generation,
                file: Arc::new(file),
                offset: 0,
                attributes: opts.attributes,
                late: opts.extensions.get::<LateChecksum>().cloned(),
                closed: Default::default(),
            }) as Box<dyn MultipartUpload>)
        })
        .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        // Whatever is in the kernel's caches is answered here; the rest waits for the disk
        // in one blocking task.
        if let Some(answered) = self.inner.get_cached(location, &options).transpose() {
            return answered;
        }
        let location = location.clone();
        self.blocking(move |s| s.get_waiting(&location, options))
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let store = self.clone();
        locations
            .map(move |location| {
                let store = store.clone();
                async move {
                    let location = location?;
                    let target = location.clone();
                    store.blocking(move |s| s.delete_blocking(&target)).await?;
                    Ok(location)
                }
            })
            .buffered(8)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.cloned();
        tokio::task::spawn_blocking(move || {
            inner.list_blocking(prefix.as_ref(), &mut |item| tx.blocking_send(item).is_ok());
        });
        futures::stream::unfold(rx, |mut rx| async move {
            let item = rx.recv().await?;
            Some((item, rx))
        })
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let prefix = prefix.cloned();
        self.blocking(move |s| s.list_with_delimiter_blocking(prefix.as_ref()))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let (from, to) = (from.clone(), to.clone());
        self.blocking(move |s| s.copy_blocking(&from, &to, options.mode))
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let (from, to) = (from.clone(), to.clone());
        self.blocking(move |s| s.rename_blocking(&from, &to, options.target_mode))
            .await
    }
}

/// A streaming upload written straight into a temporary file (each part at its offset,
/// nothing buffered here), renamed into place on completion.
#[derive(Debug)]
struct LocalUpload {
    store: LocalStore,
    location: Path,
    /// The temporary file's name in `.maskstore/tmp`; `None` once completed or aborted.
    temp: Option<String>,
    /// The generation stored with the file.
    generation: Option<String>,
    file: Arc<File>,
    offset: u64,
    /// The attributes stored at the start, to store again with a late checksum.
    attributes: Attributes,
    /// Where [`crate::Storage`] hands the whole-object checksum at completion.
    late: Option<LateChecksum>,
    /// Whether the file was completed (it is the object now) or aborted: parts write
    /// under the read lock and refuse once it is set; completing holds the write lock.
    closed: Arc<std::sync::RwLock<bool>>,
}

/// The error for a part or completion after the upload was completed or aborted.
fn upload_closed(location: &Path) -> object_store::Error {
    LocalError::Io {
        key: location.to_string(),
        source: io::Error::other("the upload was already completed or aborted; start a new upload"),
    }
    .into()
}

#[async_trait]
impl MultipartUpload for LocalUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let file = Arc::clone(&self.file);
        let location = self.location.clone();
        let closed = Arc::clone(&self.closed);
        async move {
            tokio::task::spawn_blocking(move || {
                // A part written after completion would change the published object in
                // place, torn and under an etag that no longer describes it.
                let closed = closed.read().unwrap_or_else(|e| e.into_inner());
                if *closed {
                    return Err(upload_closed(&location));
                }
                let mut at = offset;
                for chunk in data.iter() {
                    std::os::unix::fs::FileExt::write_all_at(&*file, chunk, at)
                        .map_err(|e| io_error(&location, e))?;
                    at += chunk.len() as u64;
                }
                Ok(())
            })
            .await?
        }
        .boxed()
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let Some(temp) = self.temp.clone() else {
            return Err(upload_closed(&self.location));
        };
        let file = Arc::clone(&self.file);
        let location = self.location.clone();
        let mut generation = self.generation.clone();
        let late = self
            .late
            .as_ref()
            .and_then(LateChecksum::take)
            .map(|checksum| {
                let mut attributes = self.attributes.clone();
                attributes.insert(
                    Attribute::Metadata(CHECKSUM_METADATA.into()),
                    checksum.into(),
                );
                attributes
            });
        let closed = Arc::clone(&self.closed);
        let result = self
            .store
            .blocking(move |s| {
                // Parts being written finish first; later ones are refused.
                let mut closed = closed.write().unwrap_or_else(|e| e.into_inner());
                if *closed {
                    return Err(upload_closed(&location));
                }
                if let Some(attributes) = &late {
                    // Rewritten before the sync and the rename: data, attributes and the
                    // new generation land together.
                    generation = s.write_attributes(&location, &file, attributes)?;
                }
                if s.fsync {
                    file.sync_all().map_err(|e| io_error(&location, e))?;
                }
                let md = file.metadata().map_err(|e| io_error(&location, e))?;
                s.commit(&location, &temp, &PutMode::Overwrite)?;
                *closed = true;
                Ok(PutResult {
                    e_tag: Some(etag(&md, generation.as_deref())),
                    version: None,
                    extensions: Default::default(),
                })
            })
            .await;
        // Completed or not, the temporary file is gone or owned by Drop's cleanup.
        if result.is_ok() {
            self.temp = None;
        }
        result
    }

    async fn abort(&mut self) -> Result<()> {
        *self.closed.write().unwrap_or_else(|e| e.into_inner()) = true;
        if let Some(temp) = self.temp.take() {
            self.store
                .blocking(
                    move |s| match unlinkat(s.tmp.as_fd(), temp.as_str(), AtFlags::empty()) {
                        Ok(()) | Err(Errno::NOENT) => Ok(()),
                        Err(e) => {
                            Err(LocalError::io("(the temporary upload file)", e.into()).into())
                        }
                    },
                )
                .await?;
        }
        Ok(())
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // An upload dropped without complete or abort leaves nothing behind.
        if let Some(temp) = self.temp.take() {
            self.store.inner.remove_temp(&temp);
        }
    }
}

/// Opens (creating if missing) maskstore's own folder `name` in `at`, refusing a symlink.
fn own_folder(at: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    match mkdirat(at, name, Mode::from_raw_mode(0o777)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    beneath::open(at.as_fd(), name, OFlags::RDONLY | OFlags::DIRECTORY).map_err(|e| {
        if e == Errno::LOOP || e == Errno::NOTDIR {
            io::Error::other(format!(
                "{name} (maskstore's own folder) is a symlink or a file; maskstore never \
                 follows symlinks below the local root: replace it with a folder"
            ))
        } else {
            e.into()
        }
    })
}

/// The etag of a file with metadata `md` and stored generation `generation`.
fn etag(md: &fs::Metadata, generation: Option<&str>) -> String {
    use std::os::unix::fs::MetadataExt;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    match generation {
        Some(generation) => format!("{:x}-{:x}-{:x}-{generation}", md.ino(), mtime, md.len()),
        None => format!("{:x}-{:x}-{:x}", md.ino(), mtime, md.len()),
    }
}

/// What the open `file` of `location`, with metadata `md`, says of the object: its
/// metadata and attribute record (read from the open file: data and record are those of
/// one version).
fn describe(location: &Path, file: &File, md: &fs::Metadata) -> Described {
    let (stored, unreadable) = match read_checked(file) {
        Ok(stored) => (stored, None),
        Err(why) => (StoredAttributes::default(), Some(UnreadableRecord(why))),
    };
    Described {
        meta: object_meta(location.clone(), md, stored.generation.as_deref()),
        checksum: stored.checksum().map(str::to_owned),
        attributes: stored.into_attributes(),
        unreadable,
    }
}

/// The range of a read and the data read in the call that opened the file.
struct Read {
    range: std::ops::Range<u64>,
    data: Option<Bytes>,
    /// The checksum computed as `data` was read.
    computed: Option<String>,
}

/// The answer to a read of the object `described`: its data when `read` holds it, else
/// `file` (the open file handed to the caller; none for a HEAD answered from a kept
/// file), with the file's `stamp` when it vouches for the bytes.
fn answered(
    described: Described,
    read: Read,
    stamp: Option<stamp::FileStamp>,
    file: Option<GetResultPayload>,
) -> GetResult {
    let mut extensions = object_store::Extensions::default();
    if let Some(unreadable) = described.unreadable {
        extensions.insert(unreadable);
    }
    if let Some(stamp) = stamp {
        extensions.insert(stamp);
    }
    // Small ranges, and whole reads into memory, are read in the call that opened the
    // file: one blocking hop per read at most instead of one to open and one to read.
    let payload = match read.data {
        Some(data) => {
            if let Some(checksum) = read.computed {
                extensions.insert(ReadChecksum {
                    data: data.clone(),
                    checksum,
                });
            }
            GetResultPayload::Stream(futures::stream::once(async move { Ok(data) }).boxed())
        }
        None => file.unwrap_or_else(|| GetResultPayload::Stream(futures::stream::empty().boxed())),
    };
    GetResult {
        payload,
        meta: described.meta,
        range: read.range,
        attributes: described.attributes,
        extensions,
    }
}

fn object_meta(location: Path, md: &fs::Metadata, generation: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        location,
        last_modified: md
            .modified()
            .map(chrono::DateTime::<chrono::Utc>::from)
            .unwrap_or_default(),
        size: md.len(),
        e_tag: Some(etag(md, generation)),
        version: None,
    }
}

/// Removes the temporary files no live writer owns, and marks `tmp` as in use for as long
/// as this store (its descriptor `tmp`) lives.
///
/// Every open store holds a shared `flock` on `.maskstore/tmp`, released when it is
/// dropped or its process dies (a SIGKILL too). An open that gets the exclusive lock first
/// knows no other store, in this process or another, has the root open: every temporary
/// file there was left by a writer that died, and all of them go. Otherwise they may be
/// live uploads of another process, and only those older than [`STALE_TEMP_AGE`] go.
/// Where the file system has no `flock`, only the old ones go.
fn clean_temp_files(tmp: &OwnedFd) {
    use rustix::fs::{FlockOperation, flock};
    let alone = flock(tmp, FlockOperation::NonBlockingLockExclusive).is_ok();
    remove_temp_files(
        tmp,
        if alone {
            Duration::ZERO
        } else {
            STALE_TEMP_AGE
        },
    );
    // Turning the exclusive lock into a shared one drops it for a moment: another open
    // then finds no store here either, and this one has no temporary file yet.
    let _ = flock(tmp, FlockOperation::LockShared);
}

/// Removes the files in `tmp` last modified more than `age` ago.
fn remove_temp_files(tmp: &OwnedFd, age: Duration) {
    let Ok(dir) = rustix::fs::Dir::read_from(tmp) else {
        return;
    };
    for entry in dir.flatten() {
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if name == "." || name == ".." {
            continue;
        }
        let stale = rustix::fs::statat(tmp, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
            let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64);
            age.is_zero() || modified.elapsed().is_ok_and(|elapsed| elapsed > age)
        });
        if stale {
            let _ = unlinkat(tmp, name, AtFlags::empty());
        }
    }
}

fn already_exists(location: &Path) -> object_store::Error {
    LocalError::Exists {
        key: location.to_string(),
    }
    .into()
}

fn not_found(location: &Path, why: &'static str) -> object_store::Error {
    LocalError::NotFound {
        key: location.to_string(),
        why,
    }
    .into()
}

fn io_error(location: &Path, e: io::Error) -> object_store::Error {
    LocalError::io(location.to_string(), e).into()
}
#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().join("root"), true).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn reserved_folder_is_refused_and_never_listed() {
        let (_dir, store) = store();
        let err = store
            .put(&Path::parse(".maskstore/x").unwrap(), "x".into())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
        store
            .put(&Path::parse("a/b").unwrap(), "x".into())
            .await
            .unwrap();
        let listed: Vec<_> = store
            .list(None)
            .map(|m| m.unwrap().location)
            .collect()
            .await;
        assert_eq!(listed, vec![Path::parse("a/b").unwrap()]);
    }

    #[tokio::test]
    async fn symlink_out_of_the_root_is_not_followed() {
        let (dir, store) = store();
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), "outside data").unwrap();
        std::os::unix::fs::symlink(&outside, store.root().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), store.root().join("file-link")).unwrap();
        let key = |k: &str| Path::parse(k).unwrap();

        for k in ["link/secret", "file-link"] {
            assert!(
                matches!(
                    store.get(&key(k)).await,
                    Err(object_store::Error::NotFound { .. })
                ),
                "{k}"
            );
            assert!(
                matches!(
                    store.head(&key(k)).await,
                    Err(object_store::Error::NotFound { .. })
                ),
                "{k}"
            );
            assert!(matches!(
                store.copy(&key(k), &key("copied")).await,
                Err(object_store::Error::NotFound { .. })
            ));
            assert!(matches!(
                store.rename(&key(k), &key("moved")).await,
                Err(object_store::Error::NotFound { .. })
            ));
            store.delete(&key(k)).await.unwrap();
        }
        // Writes through the symlinked folder are refused, and create nothing outside.
        for k in ["link/secret", "link/sub/deeper/x"] {
            let err = store.put(&key(k), "x".into()).await.unwrap_err();
            assert!(
                matches!(err, object_store::Error::PermissionDenied { .. }),
                "{err}"
            );
            assert!(err.to_string().contains("symlink"), "{err}");
            let err = store.put_multipart(&key(k)).await.unwrap_err();
            assert!(
                matches!(err, object_store::Error::PermissionDenied { .. }),
                "{err}"
            );
        }
        store.put(&key("inside"), "x".into()).await.unwrap();
        let err = store
            .copy(&key("inside"), &key("link/sub/c"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, object_store::Error::PermissionDenied { .. }),
            "{err}"
        );
        let err = store
            .rename(&key("inside"), &key("link/sub/r"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, object_store::Error::PermissionDenied { .. }),
            "{err}"
        );
        let mut outside_entries: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        outside_entries.sort();
        assert_eq!(outside_entries, vec!["secret"]);
        assert_eq!(
            fs::read_to_string(outside.join("secret")).unwrap(),
            "outside data"
        );

        // Listings name each symlink and the fix instead of skipping it.
        let listed: Vec<_> = store.list(None).collect().await;
        let errors: Vec<String> = listed
            .iter()
            .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
            .collect();
        assert_eq!(errors.len(), 2, "{listed:?}");
        assert!(
            errors[0].contains("file-link") && errors[0].contains("replace it"),
            "{errors:?}"
        );
        assert!(errors[1].contains("link"), "{errors:?}");
        assert!(
            listed
                .iter()
                .any(|r| r.as_ref().is_ok_and(|m| m.location == key("inside")))
        );
        let err = store
            .list(Some(&key("link")))
            .next()
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(err, object_store::Error::PermissionDenied { .. }),
            "{err}"
        );
        let err = store.list_with_delimiter(None).await.unwrap_err();
        assert!(err.to_string().contains("file-link"), "{err}");
        let err = store
            .list_with_delimiter(Some(&key("link")))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
    }

    #[tokio::test]
    async fn a_listing_of_a_prefix_ending_in_a_symlink_fails_naming_it() {
        let (dir, store) = store();
        store
            .put(&Path::parse("a/b/x").unwrap(), "x".into())
            .await
            .unwrap();
        fs::create_dir_all(dir.path().join("outside")).unwrap();
        fs::write(dir.path().join("outside/secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), store.root().join("a/b/l")).unwrap();
        let prefix = Path::parse("a/b/l").unwrap();
        let listed: Vec<_> = store.list(Some(&prefix)).collect().await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        let err = listed[0].as_ref().unwrap_err();
        assert!(
            matches!(err, object_store::Error::PermissionDenied { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("a/b/l"), "{err}");
        let err = store.list_with_delimiter(Some(&prefix)).await.unwrap_err();
        assert!(err.to_string().contains("a/b/l"), "{err}");
    }

    #[tokio::test]
    async fn writes_after_the_reserved_folder_is_removed_fail_saying_restart() {
        let (_dir, store) = store();
        let key = Path::parse("a/k").unwrap();
        store.put(&key, "x".into()).await.unwrap();
        // The lock folder alone, then everything of maskstore's.
        fs::remove_dir_all(store.root().join(".maskstore/locks")).unwrap();
        let err = store.delete(&key).await.unwrap_err();
        assert!(
            matches!(err, object_store::Error::Generic { .. }),
            "not a missing object: {err}"
        );
        assert!(
            err.to_string().contains(".maskstore/locks") && err.to_string().contains("restart"),
            "{err}"
        );
        fs::remove_dir_all(store.root().join(".maskstore")).unwrap();
        let err = store.put(&key, "y".into()).await.unwrap_err();
        assert!(
            matches!(err, object_store::Error::Generic { .. }),
            "not a missing object: {err}"
        );
        assert!(
            err.to_string().contains(".maskstore/tmp") && err.to_string().contains("restart"),
            "{err}"
        );
        let err = store.put_multipart(&key).await.unwrap_err();
        assert!(err.to_string().contains("restart"), "{err}");
        // A restart makes them again.
        let store = LocalStore::open(store.root(), true).unwrap();
        store.put(&key, "z".into()).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap().bytes().await.unwrap(), "z");
    }

    #[tokio::test]
    async fn a_socket_or_fifo_at_a_key_is_no_object() {
        let (_dir, store) = store();
        store
            .put(&Path::parse("a/x").unwrap(), "x".into())
            .await
            .unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(store.root().join("a/sock")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            store.root().join("a/fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o666),
            0,
        )
        .unwrap();
        for k in ["a/sock", "a/fifo"] {
            let key = Path::parse(k).unwrap();
            for err in [
                store.get(&key).await.map(|_| ()).unwrap_err(),
                store.head(&key).await.map(|_| ()).unwrap_err(),
                store
                    .copy(&key, &Path::parse("c").unwrap())
                    .await
                    .unwrap_err(),
                store
                    .put_opts(
                        &key,
                        "x".into(),
                        PutMode::Update(object_store::UpdateVersion {
                            e_tag: Some("x".into()),
                            version: None,
                        })
                        .into(),
                    )
                    .await
                    .map(|_| ())
                    .unwrap_err(),
            ] {
                assert!(
                    matches!(
                        err,
                        object_store::Error::NotFound { .. }
                            | object_store::Error::Precondition { .. }
                    ),
                    "{k}: {err}"
                );
            }
        }
        let listed: Vec<_> = store
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        assert_eq!(listed, ["a/x"]);
    }

    #[tokio::test]
    async fn a_key_of_many_new_folders_is_written() {
        let (_dir, store) = store();
        // 511 folders and a name: the deepest key of at most 1024 bytes.
        let key = Path::parse(vec!["a"; 512].join("/")).unwrap();
        store.put(&key, "deep".into()).await.unwrap();
        assert_eq!(
            store.get(&key).await.unwrap().bytes().await.unwrap(),
            "deep"
        );
        let moved = Path::parse(vec!["b"; 100].join("/")).unwrap();
        store.rename(&key, &moved).await.unwrap();
        store.copy(&moved, &key).await.unwrap();
        store.delete(&moved).await.unwrap();
        assert!(!store.root().join("b").exists(), "empty folders are pruned");
        let listed: Vec<_> = store
            .list(None)
            .map(|m| m.unwrap().location)
            .collect()
            .await;
        assert_eq!(listed, [key]);
    }

    /// A resolved key holds one folder handle, not one per level: a 511-folder key held
    /// 511 descriptors for the whole write, so two such writes at once exhausted the usual
    /// limit of 1024 open files (and with it the gateway's sockets).
    #[test]
    fn a_deep_key_holds_one_folder_handle() {
        let (_dir, store) = store();
        let parts: Vec<String> = vec!["a".to_string(); 512];
        // Only descriptors on files below this store's root: other tests of this binary
        // open files meanwhile (the kept-files tests hold hundreds at once).
        let root = store.root().to_path_buf();
        let open_files = || {
            fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
                .filter(|target| target.starts_with(&root))
                .count()
        };
        let before = open_files();
        let Lookup::Found(parent) = store.inner.open_parent(parts.clone(), true).unwrap() else {
            panic!("the folders were not made");
        };
        // A margin far below 511.
        let held = open_files().saturating_sub(before);
        // At least the parent's own handle (so the count sees this root's descriptors).
        assert!(
            (1..100).contains(&held),
            "{held} descriptors held for one key"
        );
        drop(parent);
        let Lookup::Found(parent) = store.inner.open_parent(parts, false).unwrap() else {
            panic!("the folders are there");
        };
        // Pruning resolves the folders above again as it goes.
        store.inner.prune(&parent, &Path::from("a")).unwrap();
        assert!(!store.root().join("a").exists(), "empty folders are pruned");
    }

    /// Folders nested far deeper than any key (made inside the root by hand or by a tool)
    /// fail a listing naming the folder; they overflowed the listing thread's stack and
    /// aborted the whole process.
    #[tokio::test]
    async fn a_tree_deeper_than_any_key_fails_its_listings_without_a_crash() {
        let (_dir, store) = store();
        // The deepest key there can be lists as usual.
        let deepest = Path::parse(vec!["a"; MAX_FOLDER_DEPTH + 1].join("/")).unwrap();
        assert_eq!(deepest.as_ref().len(), MAX_KEY_BYTES - 1);
        store.put(&deepest, "x".into()).await.unwrap();
        let listed: Vec<_> = store
            .list(None)
            .map(|m| m.unwrap().location)
            .collect()
            .await;
        assert_eq!(listed, [deepest]);
        // 5,000 folders below `z`, by handle (the path is longer than the kernel takes).
        let mut dir = rustix::fs::open(
            store.root(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        for _ in 0..5000 {
            mkdirat(&dir, "z", Mode::from_raw_mode(0o777)).unwrap();
            dir = openat(&dir, "z", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        }
        drop(
            openat(
                &dir,
                "x",
                OFlags::CREATE | OFlags::WRONLY,
                Mode::from_raw_mode(0o666),
            )
            .unwrap(),
        );
        let listed: Vec<_> = store.list(None).collect().await;
        assert_eq!(listed.len(), 2, "the deepest key, then the error");
        let err = listed[1].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("z/z/z") && err.contains("folders deep"),
            "{err}"
        );
        let err = store
            .list_with_delimiter(None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("folders deep"), "{err}");
        let err = store
            .list_with_delimiter(Some(&Path::parse("z").unwrap()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("folders deep"), "{err}");
    }

    /// A listing reads a folder's entries, then opens each sub-folder: one pruned and
    /// written as an object in between is passed over (it failed the listing with "Not a
    /// directory" while writes and deletes ran), and one that became a symlink still fails.
    #[tokio::test]
    async fn a_folder_that_became_an_object_meanwhile_is_passed_over() {
        let (dir, store) = store();
        store
            .put(&Path::parse("x").unwrap(), "now an object".into())
            .await
            .unwrap();
        let root = &store.inner.root;
        assert!(store.inner.open_folder(root, "x", "x").unwrap().is_none());
        std::os::unix::fs::symlink(dir.path(), store.root().join("l")).unwrap();
        let err = store.inner.open_folder(root, "l", "l").unwrap_err();
        assert!(
            matches!(err, object_store::Error::PermissionDenied { .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_symlink_deep_in_a_folder_fails_its_listings() {
        let (dir, store) = store();
        store
            .put(&Path::parse("a/b/c/x").unwrap(), "x".into())
            .await
            .unwrap();
        std::os::unix::fs::symlink(dir.path(), store.root().join("a/b/c/l")).unwrap();
        let err = store.list_with_delimiter(None).await.unwrap_err();
        assert!(err.to_string().contains("a/b/c/l"), "{err}");
        let listed: Vec<_> = store
            .list(Some(&Path::parse("a/b").unwrap()))
            .collect()
            .await;
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(
            listed[0]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("a/b/c/l")
        );
    }

    #[tokio::test]
    async fn root_prefix_lists_everything_with_sorted_common_prefixes() {
        let (_dir, store) = store();
        for k in ["z/1", "a/2/3", "m/1", "top", "b"] {
            store
                .put(&Path::parse(k).unwrap(), "x".into())
                .await
                .unwrap();
        }
        for prefix in [None, Some(Path::from(""))] {
            let mut listed: Vec<String> = store
                .list(prefix.as_ref())
                .map(|m| m.unwrap().location.to_string())
                .collect()
                .await;
            listed.sort();
            assert_eq!(listed, ["a/2/3", "b", "m/1", "top", "z/1"]);
            let result = store.list_with_delimiter(prefix.as_ref()).await.unwrap();
            let prefixes: Vec<String> = result
                .common_prefixes
                .iter()
                .map(|p| p.to_string())
                .collect();
            assert_eq!(prefixes, ["a", "m", "z"]);
            let objects: Vec<String> = result
                .objects
                .iter()
                .map(|m| m.location.to_string())
                .collect();
            assert_eq!(objects, ["b", "top"]);
        }
    }

    #[tokio::test]
    async fn etag_changes_even_when_inode_size_and_mtime_repeat() {
        use object_store::{PutMode, UpdateVersion};
        use std::os::unix::fs::MetadataExt;
        let (_dir, store) = store();
        let key = Path::parse("a/k").unwrap();
        let path = store.root().join("a/k");
        let mut seen: std::collections::HashMap<u64, (String, fs::Metadata)> = Default::default();
        // Same-size rewrites until the file system hands an inode out again.
        for i in 0..2000 {
            let written = store.put(&key, format!("v-{i:04}").into()).await.unwrap();
            let md = fs::metadata(&path).unwrap();
            let Some((old_etag, old)) = seen.get(&md.ino()) else {
                seen.insert(md.ino(), (written.e_tag.unwrap(), md));
                continue;
            };
            // As on a file system with coarse timestamps: the same modification time.
            let times = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: old.atime(),
                    tv_nsec: old.atime_nsec() as _,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: old.mtime(),
                    tv_nsec: old.mtime_nsec() as _,
                },
            };
            rustix::fs::utimensat(rustix::fs::CWD, &path, &times, AtFlags::SYMLINK_NOFOLLOW)
                .unwrap();
            let now = fs::metadata(&path).unwrap();
            assert_eq!(
                (now.ino(), now.len(), now.modified().unwrap()),
                (old.ino(), old.len(), old.modified().unwrap())
            );
            // What inode, size and mtime alone would say: the same etag.
            assert_eq!(etag(&now, None), etag(old, None));
            let current = store.head(&key).await.unwrap().e_tag.unwrap();
            assert_ne!(&current, old_etag);
            let stale = store
                .put_opts(
                    &key,
                    "stale!".into(),
                    PutMode::Update(UpdateVersion {
                        e_tag: Some(old_etag.clone()),
                        version: None,
                    })
                    .into(),
                )
                .await;
            assert!(
                matches!(stale, Err(object_store::Error::Precondition { .. })),
                "{stale:?}"
            );
            let data = store.get(&key).await.unwrap().bytes().await.unwrap();
            assert_eq!(data, format!("v-{i:04}"));
            return;
        }
        panic!("the file system never reused an inode in 2000 same-size rewrites");
    }

    #[tokio::test]
    async fn segments_up_to_255_bytes_work_and_longer_are_name_too_long() {
        let (_dir, store) = store();
        let ok = Path::parse(format!("a/{}", "k".repeat(255))).unwrap();
        store.put(&ok, "x".into()).await.unwrap();
        assert_eq!(store.get(&ok).await.unwrap().bytes().await.unwrap(), "x");
        let long = Path::parse(format!("a/{}/b", "k".repeat(256))).unwrap();
        for err in [
            store.put(&long, "x".into()).await.unwrap_err(),
            store.get(&long).await.unwrap_err(),
            store.delete(&long).await.unwrap_err(),
        ] {
            assert!(err.to_string().contains("255 bytes"), "{err}");
        }
    }

    #[tokio::test]
    async fn rename_and_copy_onto_the_same_key_keep_the_object() {
        let (_dir, store) = store();
        let key = Path::parse("a/k").unwrap();
        store.put(&key, "keep".into()).await.unwrap();
        store.rename(&key, &key).await.unwrap();
        store.copy(&key, &key).await.unwrap();
        assert!(matches!(
            store.copy_if_not_exists(&key, &key).await,
            Err(object_store::Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            store.rename_if_not_exists(&key, &key).await,
            Err(object_store::Error::AlreadyExists { .. })
        ));
        assert_eq!(
            store.get(&key).await.unwrap().bytes().await.unwrap(),
            "keep"
        );
        let missing = Path::parse("a/none").unwrap();
        assert!(matches!(
            store.rename(&missing, &missing).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }

    /// Writes into folders that concurrent deletes keep pruning (each task's delete empties
    /// the shared folders) always land: a folder pruned between being resolved and being
    /// written into is resolved (and made) again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writes_into_folders_being_pruned_always_land() {
        let (_dir, store) = store();
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    let key = Path::parse(format!("a/b/c/t{t}")).unwrap();
                    let moved = Path::parse(format!("a/b/d/t{t}")).unwrap();
                    for i in 0..60 {
                        store.put(&key, format!("{t}-{i}").into()).await.unwrap();
                        let data = store.get(&key).await.unwrap().bytes().await.unwrap();
                        assert_eq!(data, format!("{t}-{i}"));
                        if i % 2 == 0 {
                            store.rename(&key, &moved).await.unwrap();
                            store.delete(&moved).await.unwrap();
                        } else {
                            store.delete(&key).await.unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert!(!store.root().join("a").exists(), "empty folders are pruned");
    }

    /// Overwrites, if-match updates and deletes of one key from many threads: every
    /// successful update replaced exactly the version it named.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn updates_overwrites_and_deletes_of_one_key_are_linearisable() {
        use object_store::{PutMode, UpdateVersion};
        let (_dir, store) = store();
        let key = Path::parse("a/k").unwrap();
        let tasks: Vec<_> = (0..24)
            .map(|t| {
                let (store, key) = (store.clone(), key.clone());
                tokio::spawn(async move {
                    let mut updates = Vec::new();
                    for i in 0..30 {
                        let body = format!("{t}-{i}");
                        match (t + i) % 3 {
                            0 => {
                                store.put(&key, body.into()).await.unwrap();
                            }
                            // Retried until one lands (or the key stays gone), so that
                            // updates succeed even where every other step is slow.
                            1 => {
                                for _ in 0..50 {
                                    let Ok(seen) = store.head(&key).await else {
                                        continue;
                                    };
                                    let named = seen.e_tag.clone();
                                    let put = store
                                        .put_opts(
                                            &key,
                                            body.clone().into(),
                                            PutMode::Update(UpdateVersion {
                                                e_tag: named.clone(),
                                                version: None,
                                            })
                                            .into(),
                                        )
                                        .await;
                                    match put {
                                        Ok(r) => {
                                            updates.push((named.unwrap(), r.e_tag.unwrap()));
                                            break;
                                        }
                                        Err(object_store::Error::Precondition { .. }) => {}
                                        Err(e) => panic!("{e}"),
                                    }
                                }
                            }
                            _ => store.delete(&key).await.unwrap(),
                        }
                    }
                    updates
                })
            })
            .collect();
        let mut updates = Vec::new();
        for t in tasks {
            updates.extend(t.await.unwrap());
        }
        // Each version was replaced by at most one successful update.
        let mut named: Vec<_> = updates.iter().map(|(n, _)| n.clone()).collect();
        let total = named.len();
        named.sort();
        named.dedup();
        assert_eq!(named.len(), total, "two updates replaced the same version");
        assert!(total > 0);
    }

    /// A part written after completion (or polled only then) is refused: it wrote into
    /// the published object in place, changing it under its etag.
    #[tokio::test]
    async fn parts_after_completion_are_refused_and_leave_the_object_alone() {
        let (_dir, store) = store();
        let key = Path::parse("a/up").unwrap();
        let mut upload = store.put_multipart(&key).await.unwrap();
        upload.put_part(vec![b'a'; 8].into()).await.unwrap();
        let late = upload.put_part(vec![b'b'; 8].into());
        let done = upload.complete().await.unwrap();
        // The part made before completion but run after it: not in the object.
        let err = late.await.unwrap_err();
        assert!(err.to_string().contains("already completed"), "{err}");
        let err = upload.put_part(vec![b'c'; 8].into()).await.unwrap_err();
        assert!(err.to_string().contains("already completed"), "{err}");
        assert!(upload.complete().await.is_err());
        let object = store.get(&key).await.unwrap();
        assert_eq!(object.meta.e_tag, done.e_tag);
        assert_eq!(object.bytes().await.unwrap(), vec![b'a'; 8]);
        let mut aborted = store.put_multipart(&key).await.unwrap();
        aborted.abort().await.unwrap();
        assert!(aborted.put_part(vec![b'd'; 8].into()).await.is_err());
    }

    /// What a writer killed mid-write leaves: a fresh file in `.maskstore/tmp`.
    fn killed_writers_temp(root: &FsPath, name: &str) -> PathBuf {
        let temp = root.join(".maskstore/tmp").join(name);
        fs::write(&temp, b"half a mask").unwrap();
        temp
    }

    #[test]
    fn a_killed_writers_temporary_file_goes_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(LocalStore::open(dir.path(), true).unwrap());
        let temp = killed_writers_temp(dir.path(), "0123456789abcdef.tmp");
        let store = LocalStore::open(dir.path(), true).unwrap();
        assert!(
            !temp.exists(),
            "a dead writer's temporary file survived the open"
        );
        drop(store);
    }

    #[test]
    fn temporary_files_stay_while_another_store_has_the_root_open() {
        let dir = tempfile::tempdir().unwrap();
        let live = LocalStore::open(dir.path(), true).unwrap();
        // An upload in progress in `live` (or in another process holding the root open).
        let temp = killed_writers_temp(dir.path(), "00000000000000aa.tmp");
        let second = LocalStore::open(dir.path(), true).unwrap();
        assert!(temp.exists(), "a live store's temporary file was removed");
        drop((live, second));
        drop(LocalStore::open(dir.path(), true).unwrap());
        assert!(!temp.exists(), "the temporary file outlived every store");
    }

    #[tokio::test]
    async fn dropped_upload_leaves_no_temporary_file() {
        let (_dir, store) = store();
        let mut upload = store
            .put_multipart(&Path::parse("a/big").unwrap())
            .await
            .unwrap();
        upload.put_part(vec![1u8; 1024].into()).await.unwrap();
        drop(upload);
        let temps = fs::read_dir(store.root().join(".maskstore/tmp"))
            .unwrap()
            .count();
        assert_eq!(temps, 0);
    }
}
