//! Files whose names object_store's `Path` cannot hold (a newline, ESC or other ASCII
//! control character in a file name, placed by hand or by `cp -a`), read and deleted by
//! their exact name beneath the root, as S3 reads and deletes such a key.
//!
//! A listing through object_store reports each such file as an `InvalidPath` error naming
//! it and goes on with the rest ([`Inner::meta_at`]); the facade describes it with a HEAD
//! here. So a local root is listed like an S3 bucket holding the same names.

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{GetOptions, GetResult};
use rustix::fs::{AtFlags, FileType, OFlags, unlinkat};
use rustix::io::Errno;

use super::{Inner, LocalError, LocalStore, Lookup, RESERVED_DIR, beneath, error};
use crate::Result as CrateResult;
use crate::providers::{Backend, FoundNames, FoundObject};

type Result<T> = object_store::Result<T>;

/// The error naming `name` (escaped: it holds control characters).
fn missing(name: &str, why: &'static str) -> object_store::Error {
    LocalError::NotFound {
        key: maskstore_core::shown(name).into_owned(),
        why,
    }
    .into()
}

fn failed(name: &str, e: std::io::Error) -> object_store::Error {
    LocalError::io(maskstore_core::shown(name).into_owned(), e).into()
}

impl Inner {
    /// The components of the file name `name` below the root: none empty, none in
    /// maskstore's own folder, none longer than a file name can be.
    fn name_parts(&self, name: &str) -> Result<Vec<String>> {
        let parts: Vec<String> = name.split('/').map(str::to_string).collect();
        if parts.iter().any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(missing(name, "no file has this name"));
        }
        if parts[0] == RESERVED_DIR {
            return Err(LocalError::Reserved {
                key: maskstore_core::shown(name).into_owned(),
            }
            .into());
        }
        if parts.iter().any(|p| p.len() > error::NAME_MAX) {
            return Err(missing(name, "no file has this name"));
        }
        Ok(parts)
    }

    /// A read (or HEAD) of the file named `name`, as [`Inner::get_blocking`] reads a key.
    fn get_named(&self, name: &str, options: GetOptions) -> Result<GetResult> {
        self.name_parts(name)?;
        let fd = match beneath::open(self.root.as_fd(), name, OFlags::RDONLY | OFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(Errno::LOOP) => {
                return Err(missing(
                    name,
                    "the path crosses a symlink, which is never followed",
                ));
            }
            Err(Errno::NOENT | Errno::NOTDIR) => return Err(missing(name, "no such object")),
            Err(Errno::NXIO) => return Err(missing(name, "not a regular file")),
            Err(e) => return Err(failed(name, e.into())),
        };
        let file = File::from(fd);
        let md = file.metadata().map_err(|e| failed(name, e))?;
        if !md.is_file() {
            return Err(missing(name, "not a regular file"));
        }
        // The answer's location stays empty: a `Path` cannot hold this name.
        self.answer(&Path::default(), file, &md, &options, false)?
            .ok_or_else(|| failed(name, Errno::AGAIN.into()))
    }

    /// Deletes the file named `name` (a missing one is fine), as
    /// [`Inner::delete_blocking`] deletes a key, pruning folders left empty.
    fn delete_named(&self, name: &str) -> Result<()> {
        let parts = self.name_parts(name)?;
        let guard = self.lock(&[name])?;
        let parent = match self
            .open_parent(parts, false)
            .map_err(|e| failed(name, e))?
        {
            Lookup::Found(parent) => parent,
            _ => return Ok(()),
        };
        let (dir, file) = (parent.dir(&self.root), parent.name());
        match beneath::kind(dir, file) {
            Ok(Some(FileType::RegularFile)) => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(failed(name, e.into())),
        }
        match unlinkat(dir, file, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(failed(name, e.into())),
        }
        drop(guard);
        self.prune(&parent, &Path::default())
    }
}

#[async_trait::async_trait]
impl FoundNames for LocalStore {
    /// None: object_store's listing of a local root names such a file and goes on.
    fn list_after(
        &self,
        _backend: &Backend,
        _folder: &str,
        _after: Option<String>,
    ) -> Option<futures::stream::BoxStream<'static, CrateResult<FoundObject>>> {
        None
    }

    fn holds_folder_markers(&self) -> bool {
        false
    }

    async fn get(&self, name: &str, options: GetOptions) -> Result<GetResult> {
        let (inner, name) = (Arc::clone(&self.inner), name.to_string());
        tokio::task::spawn_blocking(move || inner.get_named(&name, options)).await?
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let (inner, name) = (Arc::clone(&self.inner), name.to_string());
        tokio::task::spawn_blocking(move || inner.delete_named(&name)).await?
    }
}
