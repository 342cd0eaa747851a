//! The `local` provider: an [`ObjectStore`] over a folder, written for maskstore's contract.
//!
//! object_store's `LocalFileSystem` differs from S3 where an application would notice:
//! it cannot store content types or metadata, cannot do a conditional update, reports a
//! missing key on delete, follows symlinks out of its root, and does not fsync unless
//! asked. This store keeps S3's behaviour instead:
//!
//! - every write goes to a temporary file under `<root>/.maskstore/tmp`, is fsynced (unless
//!   `fsync = false`), then renamed into place and the folder fsynced: a reader sees the
//!   old object or the new one, never a torn file, and an acknowledged write survives a
//!   power cut;
//! - content type, content disposition/encoding/language, cache control and user metadata
//!   live in one extended attribute (`user.maskstore.attributes`) of the data file, set
//!   before the rename, so data and attributes change together;
//! - create-only puts hard-link the temporary file into place (atomic, fails if the key
//!   exists); updates compare the etag under an exclusive lock file;
//! - deleting a missing key succeeds, and folders left empty by a delete are removed, so
//!   listings never show empty common prefixes;
//! - a symlink anywhere below the root is never followed: reads see "not found", writes
//!   through it are refused, listings skip it;
//! - `<root>/.maskstore/` is maskstore's own and never listed.
//!
//! The etag is derived from inode, modification time and size, so it changes on every
//! overwrite.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions, RenameTargetMode, UploadPart,
};

mod attributes;
mod builder;
pub mod error;
pub(crate) mod file_io;

use attributes::{StoredAttributes, XATTR, probe_xattrs, read_attributes};
pub(crate) use builder::{Root, build};
pub use error::LocalError;
/// The folder below the root that holds maskstore's own files.
pub const RESERVED_DIR: &str = ".maskstore";
/// Temporary files older than this are left over from a crash and removed at start.
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 60 * 60);

type Result<T, E = object_store::Error> = std::result::Result<T, E>;

/// An [`ObjectStore`] over a local folder that follows maskstore's contract (see the
/// module docs).
#[derive(Debug, Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    tmp: PathBuf,
    lock: PathBuf,
    fsync: bool,
    xattrs: bool,
}

impl std::fmt::Display for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalStore({})", self.inner.root.display())
    }
}

impl LocalStore {
    /// Opens (creating if missing) the folder `root`. With `fsync`, every acknowledged
    /// write is on stable storage.
    pub fn open(root: impl AsRef<FsPath>, fsync: bool) -> io::Result<Self> {
        let root = root.as_ref();
        fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let tmp = root.join(RESERVED_DIR).join("tmp");
        fs::create_dir_all(&tmp)?;
        let lock = root.join(RESERVED_DIR).join("update.lock");
        remove_stale_temp_files(&tmp);
        let xattrs = probe_xattrs(&tmp);
        if !xattrs {
            tracing::warn!(
                root = %root.display(),
                "the filesystem under the local root does not support extended attributes; \
                 content types and metadata cannot be stored there"
            );
        }
        Ok(LocalStore {
            inner: Arc::new(Inner {
                root,
                tmp,
                lock,
                fsync,
                xattrs,
            }),
        })
    }

    /// The canonical root folder.
    pub fn root(&self) -> &FsPath {
        &self.inner.root
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

impl Inner {
    /// The file path of `location`, refusing maskstore's reserved folder.
    fn file_path(&self, location: &Path) -> Result<PathBuf> {
        let mut path = self.root.clone();
        for (i, part) in location.parts().enumerate() {
            if i == 0 && part.as_ref() == RESERVED_DIR {
                return Err(LocalError::Reserved {
                    key: location.to_string(),
                }
                .into());
            }
            path.push(part.as_ref());
        }
        if path == self.root {
            return Err(LocalError::Empty.into());
        }
        Ok(path)
    }

    /// Whether any existing component between the root and `path` (inclusive) is a symlink.
    fn crosses_symlink(&self, path: &FsPath) -> bool {
        let Ok(relative) = path.strip_prefix(&self.root) else {
            return true;
        };
        let mut current = self.root.clone();
        for component in relative.components() {
            current.push(component);
            match fs::symlink_metadata(&current) {
                Ok(md) if md.file_type().is_symlink() => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// The path of an existing object; symlinks and folders count as missing.
    fn existing(&self, location: &Path) -> Result<(PathBuf, fs::Metadata)> {
        let path = self.file_path(location)?;
        if self.crosses_symlink(&path) {
            return Err(not_found(
                location,
                "the path crosses a symlink, which is never followed",
            ));
        }
        match fs::symlink_metadata(&path) {
            Ok(md) if md.is_file() => Ok((path, md)),
            Ok(_) => Err(not_found(location, "a folder is not an object")),
            Err(e) => Err(io_error(location, e)),
        }
    }

    /// The path to write `location` to, with its parent folders created.
    fn writable(&self, location: &Path) -> Result<PathBuf> {
        let path = self.file_path(location)?;
        let parent = path.parent().expect("below the root");
        if let Err(e) = fs::create_dir_all(parent) {
            if let Some(object) = self.object_above(parent) {
                return Err(LocalError::UnderAnObject {
                    key: location.to_string(),
                    object,
                }
                .into());
            }
            return Err(LocalError::io(location.to_string(), e).into());
        }
        if self.crosses_symlink(parent) {
            return Err(LocalError::CrossesSymlink {
                key: location.to_string(),
            }
            .into());
        }
        if fs::symlink_metadata(&path).is_ok_and(|md| md.is_dir()) {
            return Err(LocalError::IsAFolder {
                key: location.to_string(),
            }
            .into());
        }
        if path
            .file_name()
            .is_some_and(|name| name.len() > error::NAME_MAX)
        {
            return Err(LocalError::NameTooLong {
                key: location.to_string(),
            }
            .into());
        }
        Ok(path)
    }

    /// The key of the object (a file) at `dir` or above it, below the root: what stands
    /// where a folder is needed.
    fn object_above(&self, dir: &FsPath) -> Option<String> {
        let mut current = Some(dir);
        while let Some(d) = current {
            if d == self.root || !d.starts_with(&self.root) {
                return None;
            }
            if fs::symlink_metadata(d).is_ok_and(|md| md.is_file()) {
                return self.location_of(d).map(|l| l.to_string());
            }
            current = d.parent();
        }
        None
    }

    fn temp_file(&self) -> Result<(PathBuf, File)> {
        loop {
            let name = format!("{:016x}.tmp", rand::random::<u64>());
            let path = self.tmp.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((path, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(LocalError::io("(a temporary file)", e).into()),
            }
        }
    }

    fn write_attributes(
        &self,
        location: &Path,
        file: &File,
        attributes: &Attributes,
    ) -> Result<()> {
        let stored = StoredAttributes::from_attributes(attributes);
        if stored.is_empty() {
            return Ok(());
        }
        if !self.xattrs {
            return Err(LocalError::NoAttributes {
                key: location.to_string(),
                root: self.root.clone(),
            }
            .into());
        }
        let failed = |detail: String| LocalError::Attributes {
            key: location.to_string(),
            detail,
        };
        let json = serde_json::to_vec(&stored).map_err(|e| failed(e.to_string()))?;
        xattr::FileExt::set_xattr(file, XATTR, &json).map_err(|e| failed(e.to_string()).into())
    }

    /// Moves a finished temporary file to `dest` according to `mode`.
    fn commit(&self, location: &Path, temp: &FsPath, dest: &FsPath, mode: &PutMode) -> Result<()> {
        match mode {
            PutMode::Overwrite => {
                into_place(dest, || fs::rename(temp, dest)).map_err(|e| io_error(location, e))?;
            }
            PutMode::Create => {
                let linked = into_place(dest, || fs::hard_link(temp, dest));
                let _ = fs::remove_file(temp);
                match linked {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(already_exists(location));
                    }
                    Err(e) => return Err(io_error(location, e)),
                }
            }
            PutMode::Update(version) => {
                let lock = self.update_lock()?;
                let current = match fs::symlink_metadata(dest) {
                    Ok(md) if md.is_file() => Some(etag(&md)),
                    _ => None,
                };
                if current.is_none() || current != version.e_tag {
                    drop(lock);
                    return Err(LocalError::Stale {
                        key: location.to_string(),
                        expected: version.e_tag.clone(),
                        found: current,
                    }
                    .into());
                }
                let renamed = into_place(dest, || fs::rename(temp, dest));
                drop(lock);
                renamed.map_err(|e| io_error(location, e))?;
            }
        }
        self.sync_dir(dest)
    }

    fn update_lock(&self) -> Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|e| LocalError::io("(the update lock)", e))?;
        file.lock()
            .map_err(|e| LocalError::io("(the update lock)", e))?;
        Ok(file)
    }

    /// Makes the entry of `path` in its folder durable.
    fn sync_dir(&self, path: &FsPath) -> Result<()> {
        match path.parent() {
            Some(dir) => self.sync_folder(dir),
            None => Ok(()),
        }
    }

    /// Fsyncs `dir`; if a concurrent delete pruned it meanwhile, its nearest remaining
    /// ancestor (which recorded the removal) instead.
    fn sync_folder(&self, dir: &FsPath) -> Result<()> {
        if !self.fsync {
            return Ok(());
        }
        let mut current = Some(dir);
        while let Some(d) = current {
            match File::open(d).and_then(|d| d.sync_all()) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound && d != self.root => {
                    current = d.parent();
                }
                Err(e) => {
                    return Err(LocalError::io(format!("(fsync of {})", d.display()), e).into());
                }
            }
        }
        Ok(())
    }

    /// Removes the folders between `path` and the root that became empty, and makes the
    /// removal durable in the first folder that remains.
    fn prune_empty_parents(&self, path: &FsPath) -> Result<()> {
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) || fs::remove_dir(d).is_err() {
                return self.sync_folder(d);
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn location_of(&self, path: &FsPath) -> Option<Path> {
        let relative = path.strip_prefix(&self.root).ok()?;
        let mut parts = Vec::new();
        for component in relative.components() {
            parts.push(component.as_os_str().to_str()?);
        }
        Path::parse(parts.join("/")).ok()
    }

    fn meta_of(&self, path: &FsPath, md: &fs::Metadata) -> Option<ObjectMeta> {
        Some(object_meta(self.location_of(path)?, md))
    }

    /// Whether the folder holds at least one object (symlinks do not count).
    fn holds_objects(&self, dir: &FsPath) -> bool {
        walkdir::WalkDir::new(dir)
            .follow_links(false)
            .into_iter()
            .filter_map(|e| e.ok())
            .any(|e| e.file_type().is_file())
    }

    fn put_blocking(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let dest = self.writable(location)?;
        let (temp, mut file) = self.temp_file()?;
        let written = (|| {
            for chunk in payload.iter() {
                file.write_all(chunk).map_err(|e| io_error(location, e))?;
            }
            self.write_attributes(location, &file, &opts.attributes)?;
            if self.fsync {
                file.sync_all().map_err(|e| io_error(location, e))?;
            }
            file.metadata().map_err(|e| io_error(location, e))
        })();
        let md = match written {
            Ok(md) => md,
            Err(e) => {
                let _ = fs::remove_file(&temp);
                return Err(e);
            }
        };
        drop(file);
        if let Err(e) = self.commit(location, &temp, &dest, &opts.mode) {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        Ok(PutResult {
            e_tag: Some(etag(&md)),
            version: None,
            extensions: Default::default(),
        })
    }

    fn get_blocking(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let (path, _) = self.existing(location)?;
        let file = File::open(&path).map_err(|e| io_error(location, e))?;
        let md = file.metadata().map_err(|e| io_error(location, e))?;
        let meta = object_meta(location.clone(), &md);
        options.check_preconditions(&meta)?;
        let range = match &options.range {
            Some(range) => range
                .as_range(meta.size)
                // object_store's own range error, which the storage layer reads as such.
                .map_err(|e| object_store::Error::Generic {
                    store: "local",
                    source: Box::new(e),
                })?,
            None => 0..meta.size,
        };
        let attributes = read_attributes(&file);
        Ok(GetResult {
            payload: GetResultPayload::File(file, path),
            meta,
            range,
            attributes,
            extensions: Default::default(),
        })
    }

    fn delete_blocking(&self, location: &Path) -> Result<()> {
        let path = self.file_path(location)?;
        if self.crosses_symlink(&path) {
            return Ok(());
        }
        match fs::symlink_metadata(&path) {
            Ok(md) if md.is_file() => {}
            // Missing keys and folders: nothing to delete, as on S3.
            _ => return Ok(()),
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(location, e)),
        }
        self.prune_empty_parents(&path)
    }

    fn copy_blocking(&self, from: &Path, to: &Path, mode: CopyMode) -> Result<()> {
        let (source_path, _) = self.existing(from)?;
        let dest = self.writable(to)?;
        let mut source = File::open(&source_path).map_err(|e| io_error(from, e))?;
        let attributes = read_attributes(&source);
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
        let result = written.and_then(|()| self.commit(to, &temp, &dest, &mode));
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    fn rename_blocking(&self, from: &Path, to: &Path, mode: RenameTargetMode) -> Result<()> {
        let (source, _) = self.existing(from)?;
        let dest = self.writable(to)?;
        match mode {
            RenameTargetMode::Overwrite => {
                into_place(&dest, || fs::rename(&source, &dest)).map_err(|e| io_error(from, e))?;
            }
            RenameTargetMode::Create => {
                match into_place(&dest, || fs::hard_link(&source, &dest)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(already_exists(to));
                    }
                    Err(e) => return Err(io_error(to, e)),
                }
                fs::remove_file(&source).map_err(|e| io_error(from, e))?;
            }
        }
        self.sync_dir(&dest)?;
        self.prune_empty_parents(&source)
    }

    fn list_blocking(
        &self,
        prefix: Option<&Path>,
        mut emit: impl FnMut(Result<ObjectMeta>) -> bool,
    ) {
        let dir = match prefix {
            Some(prefix) => match self.file_path(prefix) {
                Ok(dir) => dir,
                Err(_) => return,
            },
            None => self.root.clone(),
        };
        if self.crosses_symlink(&dir) || !dir.is_dir() {
            return;
        }
        let reserved = self.root.join(RESERVED_DIR);
        let walk = walkdir::WalkDir::new(&dir)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| e.path() != reserved);
        for entry in walk {
            let entry = match entry {
                Ok(entry) => entry,
                // A file removed while walking is simply gone.
                Err(e)
                    if e.io_error()
                        .is_some_and(|e| e.kind() == io::ErrorKind::NotFound) =>
                {
                    continue;
                }
                Err(e) => {
                    let e = LocalError::Io {
                        key: format!("(listing {})", dir.display()),
                        source: e.into(),
                    };
                    if !emit(Err(e.into())) {
                        return;
                    }
                    continue;
                }
            };
            if entry.file_type().is_symlink() {
                // Never followed, so what it points to is missing from the listing: say so
                // (a sync --delete from here would delete it at the destination).
                tracing::warn!(
                    path = %entry.path().display(),
                    "skipping a symlink below the local root: maskstore never follows symlinks, so nothing behind it is listed"
                );
                continue;
            }
            if !entry.file_type().is_file() {
                continue;
            }
            let md = match entry.metadata() {
                Ok(md) => md,
                Err(e)
                    if e.io_error()
                        .is_some_and(|e| e.kind() == io::ErrorKind::NotFound) =>
                {
                    continue;
                }
                // Never a silent gap: a listing missing a file it cannot examine would
                // have sync --delete delete that file's copy.
                Err(e) => {
                    let e = LocalError::Io {
                        key: format!("(listing {})", entry.path().display()),
                        source: e.into(),
                    };
                    if !emit(Err(e.into())) {
                        return;
                    }
                    continue;
                }
            };
            let Some(meta) = self.meta_of(entry.path(), &md) else {
                tracing::warn!(path = %entry.path().display(), "skipping a file whose name is not a valid key");
                continue;
            };
            if !emit(Ok(meta)) {
                return;
            }
        }
    }

    fn list_with_delimiter_blocking(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        let dir = match prefix {
            Some(prefix) => self.file_path(prefix)?,
            None => self.root.clone(),
        };
        if self.crosses_symlink(&dir) || !dir.is_dir() {
            return Ok(result);
        }
        let reserved = self.root.join(RESERVED_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(result),
            Err(e) => {
                return Err(LocalError::io(format!("(listing {})", dir.display()), e).into());
            }
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if path == reserved || file_type.is_symlink() {
                continue;
            }
            if file_type.is_file() {
                if let Ok(md) = entry.metadata()
                    && let Some(meta) = self.meta_of(&path, &md)
                {
                    result.objects.push(meta);
                }
            } else if file_type.is_dir()
                && self.holds_objects(&path)
                && let Some(location) = self.location_of(&path)
            {
                result.common_prefixes.push(location);
            }
        }
        Ok(result)
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
            let dest = s.writable(&location)?;
            let (temp, file) = s.temp_file()?;
            if let Err(e) = s.write_attributes(&location, &file, &opts.attributes) {
                let _ = fs::remove_file(&temp);
                return Err(e);
            }
            Ok(Box::new(LocalUpload {
                store,
                location,
                dest,
                temp: Some(temp),
                file: Arc::new(file),
                offset: 0,
            }) as Box<dyn MultipartUpload>)
        })
        .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let location = location.clone();
        self.blocking(move |s| s.get_blocking(&location, options))
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
            inner.list_blocking(prefix.as_ref(), |item| tx.blocking_send(item).is_ok());
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

/// A streaming upload into a temporary file, renamed into place on completion.
#[derive(Debug)]
struct LocalUpload {
    store: LocalStore,
    location: Path,
    dest: PathBuf,
    /// `None` once completed or aborted.
    temp: Option<PathBuf>,
    file: Arc<File>,
    offset: u64,
}

#[async_trait]
impl MultipartUpload for LocalUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let file = Arc::clone(&self.file);
        let location = self.location.clone();
        async move {
            tokio::task::spawn_blocking(move || {
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
            return Err(LocalError::Io {
                key: self.location.to_string(),
                source: io::Error::other("the upload was already completed or aborted"),
            }
            .into());
        };
        let file = Arc::clone(&self.file);
        let (location, dest) = (self.location.clone(), self.dest.clone());
        let result = self
            .store
            .blocking(move |s| {
                if s.fsync {
                    file.sync_all().map_err(|e| io_error(&location, e))?;
                }
                let md = file.metadata().map_err(|e| io_error(&location, e))?;
                s.commit(&location, &temp, &dest, &PutMode::Overwrite)?;
                Ok(PutResult {
                    e_tag: Some(etag(&md)),
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
        if let Some(temp) = self.temp.take() {
            tokio::task::spawn_blocking(move || match fs::remove_file(&temp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(object_store::Error::from(
                    LocalError::io("(the temporary upload file)", e),
                )),
                _ => Ok(()),
            })
            .await??;
        }
        Ok(())
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // An upload dropped without complete or abort leaves nothing behind.
        if let Some(temp) = self.temp.take() {
            let _ = fs::remove_file(temp);
        }
    }
}

/// Runs `op` (a rename or link onto `dest`), recreating `dest`'s folder when a concurrent
/// delete pruned it between our `create_dir_all` and the operation.
fn into_place(dest: &FsPath, op: impl Fn() -> io::Result<()>) -> io::Result<()> {
    let mut attempts = 0;
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 8 => {
                attempts += 1;
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent)?;
                }
            }
            other => return other,
        }
    }
}

fn etag(md: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}-{:x}", md.ino(), mtime, md.len())
}

fn object_meta(location: Path, md: &fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        location,
        last_modified: md
            .modified()
            .map(chrono::DateTime::<chrono::Utc>::from)
            .unwrap_or_default(),
        size: md.len(),
        e_tag: Some(etag(md)),
        version: None,
    }
}

fn remove_stale_temp_files(tmp: &FsPath) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|md| md.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        if stale {
            let _ = fs::remove_file(entry.path());
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

        let key = Path::parse("link/secret").unwrap();
        assert!(matches!(
            store.get(&key).await,
            Err(object_store::Error::NotFound { .. })
        ));
        assert!(store.put(&key, "x".into()).await.is_err());
        assert_eq!(
            fs::read_to_string(outside.join("secret")).unwrap(),
            "outside data"
        );
        let listed: Vec<_> = store.list(None).collect().await;
        assert!(listed.is_empty(), "{listed:?}");
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
