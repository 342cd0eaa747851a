//! Storing a file of the operator's as an object: the kernel copies it into the temporary
//! file (`copy_file_range`, as `cp` does) while a second thread hashes what landed there
//! and a third starts its write-back, so the final fsync waits for the last step only.
//!
//! Also the other direction's first step: an object's own file, opened beneath the root
//! (never by a joined path), for `Storage::open_file` to store elsewhere.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::mpsc;

use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, GetResultPayload, ObjectMeta, PutMode, PutResult,
};
use rustix::fs::{Mode, OFlags, openat};

use super::{Inner, LocalStore, etag, io_error};
use crate::checksum::{CHECKSUM_METADATA, Hasher, Verifier};
use maskstore_core::ChecksumAlgorithm;

/// Bytes the kernel copies per step (between progress reports and hashing hand-offs).
const COPY_STEP: u64 = 8 * 1024 * 1024;
/// Bytes copied between write-backs started while the copy runs (the last window is
/// written back by the final fsync).
const FLUSH_STEP: u64 = 64 * 1024 * 1024;
/// Bytes the hashing thread reads back at a time (one buffer, reused).
const HASH_BLOCK: usize = 1024 * 1024;

/// Why storing a file failed: reading the source, or the store itself.
#[derive(Debug)]
pub(crate) enum FromFileError {
    /// The source file could not be read, or changed while it was copied.
    Source(io::Error),
    Store(object_store::Error),
    /// The bytes stored do not hash to the checksum the source object was stored with
    /// ([`crate::Error::Corrupt`] naming the source); nothing was committed.
    Corrupt(crate::Error),
}

impl From<object_store::Error> for FromFileError {
    fn from(e: object_store::Error) -> Self {
        FromFileError::Store(e)
    }
}

/// Progress of a copy: bytes copied so far and the total.
pub(crate) type Progress = dyn Fn(u64, u64) + Send + Sync;

/// An object's data file opened beneath the root for reading, with what a HEAD of it says.
#[derive(Debug)]
pub(crate) struct OpenedObject {
    /// The open regular file, at offset 0.
    pub(crate) file: File,
    /// Its `fstat` when it was opened: a copy compares it with the file's after the copy.
    pub(crate) stat: std::fs::Metadata,
    /// Size, etag and modification time, as a read reports them.
    pub(crate) meta: ObjectMeta,
    /// Content type, metadata and the stored checksum, from the file's own attributes.
    pub(crate) attributes: Attributes,
    /// The file's path under the root, for messages only (never opened by it).
    pub(crate) shown: std::path::PathBuf,
    /// Why its attribute record cannot be read, when it exists but is damaged.
    pub(crate) unreadable_checksum: Option<String>,
}

impl LocalStore {
    /// Opens the object at `location` for reading, beneath the root handle with no symlink
    /// followed (as every read: a symlink anywhere on the path, a folder, a FIFO or a
    /// missing file is not found), and reads its attributes from the open file, so data
    /// and attributes are those of one version.
    pub(crate) async fn open_file(&self, location: Path) -> object_store::Result<OpenedObject> {
        self.blocking(move |inner| {
            let head = GetOptions {
                head: true,
                ..Default::default()
            };
            let got = inner.get_blocking(&location, head)?;
            let GetResultPayload::File(file, shown) = got.payload else {
                return Err(io_error(
                    &location,
                    io::Error::other("the provider answered without the object's file"),
                ));
            };
            let stat = file.metadata().map_err(|e| io_error(&location, e))?;
            // Attributes and size must be those of the file as it is now.
            if stat.len() != got.meta.size {
                return Err(io_error(
                    &location,
                    io::Error::other("the object changed while it was opened; retry"),
                ));
            }
            let unreadable_checksum = got
                .extensions
                .get::<super::UnreadableRecord>()
                .map(|record| record.0.clone());
            Ok(OpenedObject {
                file,
                stat,
                meta: got.meta,
                attributes: got.attributes,
                shown,
                unreadable_checksum,
            })
        })
        .await
    }

    /// Stores the regular file `source` (whose `fstat` before the copy is `before`) at
    /// `location` with `attributes` and the checksum of `algorithm` of the bytes stored,
    /// committed by `mode` as a put is. With `verify`, the bytes stored are also checked
    /// against the checksum the source was stored with before anything is committed.
    /// Returns the put's result and the bytes stored.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn write_from_file(
        &self,
        location: Path,
        source: File,
        before: std::fs::Metadata,
        attributes: Attributes,
        mode: PutMode,
        algorithm: ChecksumAlgorithm,
        verify: Option<Verifier>,
        progress: Box<Progress>,
    ) -> Result<(PutResult, u64), FromFileError> {
        let inner = std::sync::Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let how = CopyPlan {
                mode: &mode,
                algorithm,
                verify,
                progress: &*progress,
            };
            inner.write_from_file(&location, &source, &before, attributes, how)
        })
        .await
        .map_err(|e| FromFileError::Store(e.into()))?
    }
}

/// How [`Inner::write_from_file`] stores and checks what it copies.
struct CopyPlan<'a> {
    mode: &'a PutMode,
    /// The checksum stored with the object.
    algorithm: ChecksumAlgorithm,
    /// The source's own stored checksum, checked before the commit.
    verify: Option<Verifier>,
    progress: &'a Progress,
}

impl Inner {
    fn write_from_file(
        &self,
        location: &Path,
        source: &File,
        before: &std::fs::Metadata,
        mut attributes: Attributes,
        how: CopyPlan<'_>,
    ) -> Result<(PutResult, u64), FromFileError> {
        self.parts(location)?;
        let total = before.len();
        let CopyPlan {
            mode,
            algorithm,
            verify,
            progress,
        } = how;
        let (temp, file) = self.temp_file()?;
        let written = (|| {
            let (checksum, verify) = self.copy_hashing(
                location, source, &temp, &file, total, algorithm, verify, progress,
            )?;
            // The source must not have changed while it was copied: then the object would be
            // a mix of two versions of the file.
            super::file_io::source_unchanged(source, before).map_err(FromFileError::Source)?;
            // Before the commit: bytes that are not the source's as it was stored are
            // refused, and the temporary file is removed below.
            match (verify, &checksum) {
                (Some(verify), Some(ours)) if verify.is_of(algorithm) => {
                    verify.finish_with(ours.clone())
                }
                (Some(verify), _) => verify.finish(),
                (None, _) => Ok(()),
            }
            .map_err(FromFileError::Corrupt)?;
            if let Some(checksum) = checksum {
                attributes.insert(
                    Attribute::Metadata(CHECKSUM_METADATA.into()),
                    checksum.into(),
                );
            }
            let generation = self.write_attributes(location, &file, &attributes)?;
            if self.fsync {
                file.sync_all().map_err(|e| io_error(location, e))?;
            }
            let md = file.metadata().map_err(|e| io_error(location, e))?;
            Ok(etag(&md, generation.as_deref()))
        })();
        drop(file);
        let result = written.and_then(|etag| {
            self.commit(location, &temp, mode)?;
            Ok(etag)
        });
        match result {
            Ok(etag) => Ok((
                PutResult {
                    e_tag: Some(etag),
                    version: None,
                    extensions: Default::default(),
                },
                total,
            )),
            Err(e) => {
                self.remove_temp(&temp);
                Err(e)
            }
        }
    }

    /// Copies `total` bytes of `source` into the temporary file `file` (named `temp`) in
    /// the kernel, step by step. Beside the copy, one thread hashes each step as it lands
    /// in the temporary file (read back from the page cache, so the checksum is that of the
    /// bytes stored), and, with fsync, another starts the write-back every [`FLUSH_STEP`]
    /// bytes. Returns the checksum (`None` for [`ChecksumAlgorithm::None`]), and `verify`
    /// having seen the same bytes, unless it checks a checksum of `algorithm` (then the
    /// returned checksum is the one to compare, and the bytes are hashed once).
    #[allow(clippy::too_many_arguments)]
    fn copy_hashing(
        &self,
        location: &Path,
        source: &File,
        temp: &str,
        file: &File,
        total: u64,
        algorithm: ChecksumAlgorithm,
        mut verify: Option<Verifier>,
        progress: &Progress,
    ) -> Result<(Option<String>, Option<Verifier>), FromFileError> {
        let hasher = Hasher::new(algorithm);
        let beside = verify.as_mut().filter(|v| !v.is_of(algorithm));
        let readback = match (&hasher, &beside) {
            (None, None) => None,
            _ => Some(File::from(
                openat(
                    self.tmp.as_fd(),
                    temp,
                    OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                    Mode::empty(),
                )
                .map_err(|e| io_error(location, e.into()))?,
            )),
        };
        let checksum = std::thread::scope(|scope| -> Result<Option<String>, FromFileError> {
            let (copied_tx, copied_rx) = mpsc::channel::<u64>();
            let hashing = match &readback {
                Some(readback) => Some(
                    std::thread::Builder::new()
                        .name("maskstore-hash".into())
                        .spawn_scoped(scope, move || {
                            hash_behind(readback, hasher, beside, copied_rx)
                        })
                        .map_err(|e| io_error(location, e))?,
                ),
                None => None,
            };
            let (flush_tx, flush_rx) = mpsc::sync_channel::<()>(1);
            let flushing = if self.fsync {
                Some(
                    std::thread::Builder::new()
                        .name("maskstore-flush".into())
                        .spawn_scoped(scope, move || -> io::Result<()> {
                            while flush_rx.recv().is_ok() {
                                file.sync_data()?;
                            }
                            Ok(())
                        })
                        .map_err(|e| io_error(location, e))?,
                )
            } else {
                None
            };
            let copied = copy_steps(source, file, total, progress, &|done| {
                // A hashing thread that stopped reports why at the join below.
                let _ = copied_tx.send(done);
                // The last window is left to the final fsync: a write-back of it here
                // was a second journal commit per object (16 × 16 MiB synced by open file
                // ran at 0.93× the stream with it, 1.10× without: BENCHMARKS.md, issue 18).
                if done % FLUSH_STEP == 0 && done < total {
                    // A write-back already asked for covers this one too.
                    let _ = flush_tx.try_send(());
                }
            });
            drop(copied_tx);
            drop(flush_tx);
            let flushed = flushing.map(|t| t.join());
            let hashed = hashing.map(|t| t.join());
            copied?;
            if let Some(flushed) = flushed {
                flushed
                    .unwrap_or_else(|_| Err(io::Error::other("the write-back thread panicked")))
                    .map_err(|e| io_error(location, e))?;
            }
            match hashed {
                Some(hashed) => Ok(hashed
                    .unwrap_or_else(|_| Err(io::Error::other("the hashing thread panicked")))
                    .map_err(|e| io_error(location, e))?),
                None => Ok(None),
            }
        })?;
        Ok((checksum, verify))
    }
}

/// Copies `total` bytes of `source` (from its start) into `dest` in the kernel, in steps
/// of [`COPY_STEP`], telling `copied` and `progress` after each. A source shorter than
/// `total` is an error of the source; a failed write one of the store.
fn copy_steps(
    source: &File,
    mut dest: &File,
    total: u64,
    progress: &Progress,
    copied: &dyn Fn(u64),
) -> Result<(), FromFileError> {
    let mut done = 0;
    while done < total {
        let step = (total - done).min(COPY_STEP);
        // std's copy uses `copy_file_range` between files (falling back to `sendfile` or
        // a read/write loop where the file systems refuse it).
        let n = io::copy(&mut source.take(step), &mut dest).map_err(|e| {
            FromFileError::Store(super::LocalError::io("(the temporary file)", e).into())
        })?;
        if n < step {
            return Err(FromFileError::Source(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ended {} bytes early (it shrank while it was being stored)",
                    total - done - n
                ),
            )));
        }
        done += n;
        copied(done);
        progress(done, total);
    }
    Ok(())
}

/// Hashes `file` from its start up to each length received, as the copy announces it,
/// into `hasher` and `verify` alike; returns the checksum of `hasher` once the copy is over.
fn hash_behind(
    file: &File,
    mut hasher: Option<Hasher>,
    mut verify: Option<&mut Verifier>,
    copied: mpsc::Receiver<u64>,
) -> io::Result<Option<String>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; HASH_BLOCK];
    let mut hashed = 0u64;
    while let Ok(upto) = copied.recv() {
        while hashed < upto {
            let want = ((upto - hashed) as usize).min(HASH_BLOCK);
            let n = match file.read_at(&mut buf[..want], hashed) {
                Ok(0) => {
                    return Err(io::Error::other(
                        "the temporary file is shorter than what was copied into it",
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if let Some(hasher) = &mut hasher {
                hasher.update(&buf[..n]);
            }
            if let Some(verify) = &mut verify {
                verify.update(&buf[..n]);
            }
            hashed += n as u64;
        }
    }
    Ok(hasher.map(Hasher::finish))
}
