//! Durable downloads for `get`: the object is written into a file with no name (or a
//! hidden one) in the target's folder, written back to disk while it is copied, synced,
//! and only then linked into place, so a failed or killed download leaves nothing and,
//! unless [`Durability::Unsynced`], a power loss leaves the old file or the whole new one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};

use futures::StreamExt;
use indicatif::ProgressBar;
use maskstore::{ObjectKey, Storage};
use tokio::io::AsyncWriteExt;

use super::output::{Failure, progress};

/// Whether `get` waits for the file to reach the disk before linking it into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Sync first (the default): even a power loss leaves the old file or the whole new one.
    Synced,
    /// Link as soon as the copy is done, as cp does.
    Unsynced,
}

/// Streams the object to stdout, `describe` told first what is known about it (whether
/// it will be verified).
pub(crate) async fn to_stdout(
    storage: &Storage,
    key: &ObjectKey,
    describe: impl FnOnce(&maskstore::ObjectInfo),
) -> Result<(), Failure> {
    let mut stdout = tokio::io::stdout();
    let read = storage.get_stream(key).await?;
    describe(&read.info);
    let mut stream = read.stream;
    while let Some(chunk) = stream.next().await {
        stdout.write_all(&chunk?).await.map_err(write_failure)?;
    }
    stdout.flush().await.map_err(write_failure)?;
    Ok(())
}

fn write_failure(e: std::io::Error) -> Failure {
    Failure {
        message: format!("cannot write the download: {e}"),
        code: 1,
    }
}

/// Writes the object into an unnamed file in the target's folder, syncs it (unless told
/// not to), and links it into place only when complete, so neither a failure nor a killed
/// process leaves a partial file; nor does an object whose bytes fail their checksum.
/// Returns what is known about the object.
pub(crate) async fn to_file(
    storage: &Storage,
    key: &ObjectKey,
    path: &Path,
    durability: Durability,
) -> Result<maskstore::ObjectInfo, Failure> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // A file replaced keeps its mode (a 0600 mask stays private); a new one gets what cp
    // would give it, 0666 less the umask (applied by the kernel at creation). The file is
    // created no more open than that, so nobody can open it before the mode is set.
    let existing = existing_mode(path);
    let pending =
        PendingFile::create(&dir, path, existing.unwrap_or(0o666)).map_err(|e| Failure {
            message: format!("cannot write into {}: {e}", dir.display()),
            code: 1,
        })?;
    // Exactly the old mode, bits the umask removed at creation included.
    if let Some(mode) = existing {
        use std::os::unix::fs::PermissionsExt;
        pending
            .file
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| Failure {
                message: format!(
                    "cannot give the download the mode {mode:o} of {}: {e}",
                    path.display()
                ),
                code: 1,
            })?;
    }
    // The size is known once the read has started; the bar appears on the first report.
    let bar = Arc::new(OnceLock::<ProgressBar>::new());
    let label = format!("get {key}");
    let reporter = Arc::clone(&bar);
    let flusher = match durability {
        Durability::Synced => Some(Flusher::start(&pending.file).map_err(write_failure)?),
        Durability::Unsynced => None,
    };
    let nudge = flusher.as_ref().map(Flusher::nudger);
    let read = storage
        .read_to_file(key, &pending.file, move |done, total| {
            if let Some(nudge) = &nudge {
                nudge.written(done);
            }
            reporter
                .get_or_init(|| progress(Some(total), &label))
                .set_position(done)
        })
        .await;
    if let Some(bar) = bar.get() {
        bar.finish_and_clear();
    }
    // Waiting for the last write-back and the final fsync blocks: off the async workers.
    // A failed read leaves a file that is thrown away: stop the thread, skip the fsync.
    let file = pending.file.try_clone().map_err(write_failure)?;
    let complete = read.is_ok();
    let synced = tokio::task::spawn_blocking(move || match flusher {
        Some(flusher) if complete => flusher.finish().and_then(|()| file.sync_all()),
        Some(flusher) => flusher.finish(),
        None => Ok(()),
    })
    .await
    .map_err(|e| write_failure(std::io::Error::other(e)))?;
    // A corrupt object's bytes are in the pending file, which is dropped (removed) here.
    let info = read.map_err(|e| {
        let corrupt = matches!(e, maskstore::Error::Corrupt { .. });
        let mut failure = Failure::from(e);
        if corrupt {
            failure.message.push_str(&format!(
                "; nothing was written to {} (the damaged download was discarded)",
                path.display()
            ));
        }
        failure
    })?;
    synced.map_err(write_failure)?;
    pending.commit().map_err(|e| Failure {
        message: format!(
            "cannot move the download into place at {}: {e}",
            path.display()
        ),
        code: 1,
    })?;
    Ok(info)
}

/// The permission bits of the regular file at `path`, if one is there.
fn existing_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.permissions().mode() & 0o777)
}

/// Bytes written between two background write-backs of a download.
const FLUSH_STEP: u64 = 64 * 1024 * 1024;

/// Writes a download's data back to disk while the rest is still being copied, so the
/// fsync before it is linked into place waits for the last stretch, not the whole file.
struct Flusher {
    wake: mpsc::SyncSender<Flush>,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

/// What the write-back thread is asked to do.
enum Flush {
    /// Write back what is written so far.
    Now,
    /// Stop: the copy is over.
    Stop,
}

/// The copy's side of a [`Flusher`]: asks for a write-back every [`FLUSH_STEP`] bytes.
struct Nudge {
    wake: mpsc::SyncSender<Flush>,
    asked_at: AtomicU64,
}

impl Flusher {
    fn start(file: &std::fs::File) -> std::io::Result<Flusher> {
        let file = file.try_clone()?;
        let (wake, woken) = mpsc::sync_channel::<Flush>(1);
        let thread = std::thread::Builder::new()
            .name("maskstore-flush".to_string())
            .spawn(move || {
                while let Ok(Flush::Now) = woken.recv() {
                    file.sync_data()?;
                }
                Ok(())
            })?;
        Ok(Flusher { wake, thread })
    }

    fn nudger(&self) -> Nudge {
        Nudge {
            wake: self.wake.clone(),
            asked_at: AtomicU64::new(0),
        }
    }

    /// Stops the thread (after a write-back still asked for) and reports the first failed
    /// write-back. A failure must come from here: the kernel reports a write-back error
    /// once, to whichever fsync sees it first.
    fn finish(self) -> std::io::Result<()> {
        // Fails only when the thread has already stopped on an error, which join returns.
        let _ = self.wake.send(Flush::Stop);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the write-back thread panicked")))
    }
}

impl Nudge {
    fn written(&self, done: u64) {
        if done.saturating_sub(self.asked_at.load(Ordering::Relaxed)) >= FLUSH_STEP {
            self.asked_at.store(done, Ordering::Relaxed);
            // A write-back already asked for covers this one too.
            let _ = self.wake.try_send(Flush::Now);
        }
    }
}

/// A file being written that becomes visible at its path only on [`PendingFile::commit`].
///
/// On Linux it is an `O_TMPFILE` (no name until linked, so even SIGKILL leaves nothing);
/// elsewhere, or where the filesystem lacks it, a hidden temporary name removed on drop.
struct PendingFile {
    file: std::fs::File,
    target: PathBuf,
    named: Option<PathBuf>,
}

impl PendingFile {
    /// A pending file created with `mode` (less the umask).
    fn create(dir: &Path, target: &Path, mode: u32) -> std::io::Result<PendingFile> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let unnamed = std::fs::OpenOptions::new()
                .write(true)
                .mode(mode)
                .custom_flags(libc::O_TMPFILE)
                .open(dir);
            if let Ok(file) = unnamed {
                return Ok(PendingFile {
                    file,
                    target: target.to_path_buf(),
                    named: None,
                });
            }
        }
        PendingFile::create_named(dir, target, mode)
    }

    /// A pending file under a hidden temporary name, created with `mode` (less the umask):
    /// visible in the folder, so never more open than the download will be.
    fn create_named(dir: &Path, target: &Path, mode: u32) -> std::io::Result<PendingFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let name = dir.join(format!(
            ".{}.maskstore-partial-{:016x}",
            target
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("download"),
            rand::random::<u64>()
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&name)?;
        Ok(PendingFile {
            file,
            target: target.to_path_buf(),
            named: Some(name),
        })
    }

    fn commit(mut self) -> std::io::Result<()> {
        match self.named.take() {
            Some(name) => std::fs::rename(&name, &self.target),
            None => {
                #[cfg(target_os = "linux")]
                {
                    use std::os::fd::AsRawFd;
                    // Replace like rename would: link under a fresh name, then rename.
                    let staging = self.target.with_file_name(format!(
                        ".{}.maskstore-linking-{:016x}",
                        self.target
                            .file_name()
                            .and_then(|n| n.to_str())
                            .unwrap_or("download"),
                        rand::random::<u64>()
                    ));
                    let proc_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
                    nix::unistd::linkat(
                        nix::fcntl::AT_FDCWD,
                        proc_path.as_str(),
                        nix::fcntl::AT_FDCWD,
                        &staging,
                        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
                    )
                    .map_err(std::io::Error::from)?;
                    std::fs::rename(&staging, &self.target).inspect_err(|_| {
                        let _ = std::fs::remove_file(&staging);
                    })
                }
                #[cfg(not(target_os = "linux"))]
                unreachable!("unnamed files are only created on Linux")
            }
        }
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if let Some(name) = self.named.take() {
            let _ = std::fs::remove_file(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A file whose fsync always fails: the write end of a pipe (EINVAL).
    fn unsyncable() -> std::fs::File {
        let (_reader, writer) = std::io::pipe().unwrap();
        std::fs::File::from(std::os::fd::OwnedFd::from(writer))
    }

    #[test]
    fn flusher_writes_back_only_after_a_full_step() {
        let flusher = Flusher::start(&unsyncable()).unwrap();
        let nudge = flusher.nudger();
        nudge.written(1024);
        nudge.written(FLUSH_STEP - 1);
        // No write-back was asked for, so the failing fsync never ran.
        assert!(flusher.finish().is_ok());
    }

    #[test]
    fn flusher_reports_a_failed_write_back() {
        let flusher = Flusher::start(&unsyncable()).unwrap();
        let nudge = flusher.nudger();
        nudge.written(FLUSH_STEP);
        nudge.written(2 * FLUSH_STEP);
        let err = flusher.finish().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    }

    #[test]
    fn a_named_pending_file_is_never_more_open_than_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pending =
            PendingFile::create_named(dir.path(), &dir.path().join("private.png"), 0o600).unwrap();
        let name = pending.named.clone().unwrap();
        let mode = std::fs::metadata(&name).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o077,
            0,
            "created {mode:o}: others could open it first"
        );
        drop(pending);
        assert!(!name.exists(), "a dropped pending file stays");
    }

    #[test]
    fn flusher_syncs_a_real_file() {
        let file = tempfile::tempfile().unwrap();
        let flusher = Flusher::start(&file).unwrap();
        let nudge = flusher.nudger();
        (&file).write_all(b"written").unwrap();
        nudge.written(FLUSH_STEP);
        assert!(flusher.finish().is_ok());
    }
}
