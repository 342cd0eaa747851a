//! Storing a file of the operator's as an object: the kernel copies it into the temporary
//! file (`copy_file_range`, as `cp` does) while a second thread hashes what landed there
//! and a third starts its write-back, so the final fsync waits for the last step only.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::mpsc;

use object_store::path::Path;
use object_store::{Attribute, Attributes, PutMode, PutResult};
use rustix::fs::{Mode, OFlags, openat};

use super::{Inner, LocalStore, etag, io_error};
use crate::checksum::{CHECKSUM_METADATA, Hasher};
use maskstore_core::ChecksumAlgorithm;

/// Bytes the kernel copies per step (between progress reports and hashing hand-offs).
const COPY_STEP: u64 = 8 * 1024 * 1024;
/// Bytes copied between write-backs started while the copy runs.
const FLUSH_STEP: u64 = 64 * 1024 * 1024;
/// Bytes the hashing thread reads back at a time (one buffer, reused).
const HASH_BLOCK: usize = 1024 * 1024;

/// Why storing a file failed: reading the source, or the store itself.
#[derive(Debug)]
pub(crate) enum FromFileError {
    /// The source file could not be read, or changed while it was copied.
    Source(io::Error),
    Store(object_store::Error),
}

impl From<object_store::Error> for FromFileError {
    fn from(e: object_store::Error) -> Self {
        FromFileError::Store(e)
    }
}

/// Progress of a copy: bytes copied so far and the total.
pub(crate) type Progress = dyn Fn(u64, u64) + Send + Sync;

impl LocalStore {
    /// Stores the regular file `source` at `location` with `attributes` and the checksum
    /// of `algorithm` of the bytes stored, committed by `mode` as a put is. Returns the
    /// put's result and the bytes stored.
    pub(crate) async fn write_from_file(
        &self,
        location: Path,
        source: File,
        attributes: Attributes,
        mode: PutMode,
        algorithm: ChecksumAlgorithm,
        progress: Box<Progress>,
    ) -> Result<(PutResult, u64), FromFileError> {
        let inner = std::sync::Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            inner.write_from_file(&location, &source, attributes, &mode, algorithm, &*progress)
        })
        .await
        .map_err(|e| FromFileError::Store(e.into()))?
    }
}

impl Inner {
    fn write_from_file(
        &self,
        location: &Path,
        source: &File,
        mut attributes: Attributes,
        mode: &PutMode,
        algorithm: ChecksumAlgorithm,
        progress: &Progress,
    ) -> Result<(PutResult, u64), FromFileError> {
        self.parts(location)?;
        let before = source.metadata().map_err(FromFileError::Source)?;
        let total = before.len();
        let (temp, file) = self.temp_file()?;
        let written = (|| {
            let checksum =
                self.copy_hashing(location, source, &temp, &file, total, algorithm, progress)?;
            // The source must not have changed while it was copied: then the object would be
            // a mix of two versions of the file.
            super::file_io::source_unchanged(source, &before).map_err(FromFileError::Source)?;
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
    /// bytes. Returns the checksum (`None` for [`ChecksumAlgorithm::None`]).
    #[allow(clippy::too_many_arguments)]
    fn copy_hashing(
        &self,
        location: &Path,
        source: &File,
        temp: &str,
        file: &File,
        total: u64,
        algorithm: ChecksumAlgorithm,
        progress: &Progress,
    ) -> Result<Option<String>, FromFileError> {
        let hasher = Hasher::new(algorithm);
        let readback = match hasher {
            Some(_) => Some(File::from(
                openat(
                    self.tmp.as_fd(),
                    temp,
                    OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                    Mode::empty(),
                )
                .map_err(|e| io_error(location, e.into()))?,
            )),
            None => None,
        };
        std::thread::scope(|scope| {
            let (copied_tx, copied_rx) = mpsc::channel::<u64>();
            let hashing = match (hasher, &readback) {
                (Some(hasher), Some(readback)) => Some(
                    std::thread::Builder::new()
                        .name("maskstore-hash".into())
                        .spawn_scoped(scope, move || hash_behind(readback, hasher, copied_rx))
                        .map_err(|e| io_error(location, e))?,
                ),
                _ => None,
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
                if done % FLUSH_STEP == 0 || done == total {
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
                Some(hashed) => Ok(Some(
                    hashed
                        .unwrap_or_else(|_| Err(io::Error::other("the hashing thread panicked")))
                        .map_err(|e| io_error(location, e))?,
                )),
                None => Ok(None),
            }
        })
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

/// Hashes `file` from its start up to each length received, as the copy announces it;
/// returns the checksum once the copy is over.
fn hash_behind(file: &File, mut hasher: Hasher, copied: mpsc::Receiver<u64>) -> io::Result<String> {
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
            hasher.update(&buf[..n]);
            hashed += n as u64;
        }
    }
    Ok(hasher.finish())
}
