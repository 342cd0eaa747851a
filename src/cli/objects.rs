//! The object chores of the deployment guide's test section: `ls`, `put`, `get`, `rm`,
//! `cp`, `mv` — through the application's own config.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use maskstore::{Error, MaskFormat, ObjectKey, Storage, WriteOptions};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::{Failure, print_json};

/// Files above this size get a progress bar (when stderr is a terminal).
const PROGRESS_THRESHOLD: u64 = 4 * 1024 * 1024;
/// Read size when streaming a file or stdin into the store.
const CHUNK: usize = 1024 * 1024;

/// Parses a full object key, refusing keys outside the configured prefix with a clear
/// message before anything is sent.
pub(crate) fn key(storage: &Storage, text: &str) -> Result<ObjectKey, Failure> {
    let key = ObjectKey::parse(text).map_err(|e| Failure::from(Error::from(e)))?;
    if !key.is_within(storage.prefix()) {
        return Err(Failure {
            message: format!(
                "{text:?} lies outside the configured prefix {:?}; keys are full object keys such as {}…",
                storage.prefix().as_str(),
                storage.prefix()
            ),
            code: 2,
        });
    }
    Ok(key)
}

fn progress(len: Option<u64>, label: &str) -> ProgressBar {
    let visible = std::io::stderr().is_terminal() && len.is_none_or(|n| n > PROGRESS_THRESHOLD);
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("a valid template"),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                .expect("a valid template"),
        ),
    };
    bar.set_message(label.to_string());
    bar
}

/// `ls [PREFIX] [--long]`: streams the listing, one key per line.
pub(crate) async fn ls(
    storage: &Storage,
    prefix: Option<&str>,
    long: bool,
    as_json: bool,
) -> Result<(), Failure> {
    let mut items = storage.list(prefix)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut count = 0u64;
    while let Some(item) = items.next().await {
        let info = item?;
        count += 1;
        let line = if as_json {
            json!({
                "key": info.key.as_str(),
                "size": info.size,
                "last_modified": info.last_modified.to_rfc3339(),
                "etag": info.etag,
            })
            .to_string()
        } else if long {
            format!(
                "{:>12}  {}  {}  {}",
                info.size,
                info.last_modified.format("%Y-%m-%dT%H:%M:%SZ"),
                info.etag.as_deref().unwrap_or("-"),
                info.key
            )
        } else {
            info.key.to_string()
        };
        let written = writeln!(out, "{line}");
        // Flush now and then so a long listing shows as it streams.
        let flushed = if count.is_multiple_of(1000) {
            out.flush()
        } else {
            Ok(())
        };
        if let Err(e) = written.and(flushed) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(Failure {
                message: format!("cannot write the listing: {e}"),
                code: 1,
            });
        }
    }
    let _ = out.flush();
    Ok(())
}

/// `put <FILE|-> <KEY>`: streams into a streaming upload, memory bounded for any size.
pub(crate) async fn put(
    storage: &Storage,
    source: &str,
    key_text: &str,
    content_type: Option<String>,
    as_json: bool,
) -> Result<(), Failure> {
    let key = key(storage, key_text)?;
    let content_type = content_type.unwrap_or_else(|| {
        MaskFormat::for_key(key.as_str())
            .map(|f| f.content_type())
            .unwrap_or(maskstore::maskstore_backends::DEFAULT_CONTENT_TYPE)
            .to_string()
    });
    let (reader, len): (Box<dyn tokio::io::AsyncRead + Unpin + Send>, Option<u64>) =
        if source == "-" {
            (Box::new(tokio::io::stdin()), None)
        } else {
            let file = tokio::fs::File::open(source).await.map_err(|e| Failure {
                message: format!("cannot read {source}: {e}"),
                code: 2,
            })?;
            let len = file.metadata().await.ok().map(|m| m.len());
            (Box::new(file), len)
        };
    let bar = progress(len, &format!("put {key}"));
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, CHUNK).map({
        let bar = bar.clone();
        move |chunk| {
            if let Ok(chunk) = &chunk {
                bar.inc(chunk.len() as u64);
            }
            chunk
        }
    });
    let options = WriteOptions::content_type(content_type.clone());
    let outcome = storage
        .upload_stream(&key, &options, Box::pin(stream))
        .await;
    bar.finish_and_clear();
    let outcome = outcome?;
    let size = storage.head(&key).await?.size;
    if as_json {
        print_json(
            &json!({"key": key.as_str(), "size": size, "etag": outcome.etag, "content_type": content_type}),
        );
    } else {
        println!("uploaded {size} bytes to {key} ({content_type})");
    }
    Ok(())
}

/// Whether `get` waits for the file to reach the disk before linking it into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Sync first (the default): even a power loss leaves the old file or the whole new one.
    Synced,
    /// Link as soon as the copy is done, as cp does.
    Unsynced,
}

/// `get <KEY> [FILE|-] [--no-sync]`: streams to stdout, or to a file that appears only
/// when complete.
pub(crate) async fn get(
    storage: &Storage,
    key_text: &str,
    target: Option<&str>,
    durability: Durability,
    as_json: bool,
) -> Result<(), Failure> {
    let key = key(storage, key_text)?;
    if target == Some("-") {
        let mut stdout = tokio::io::stdout();
        let mut stream = storage.get_stream(&key).await?.stream;
        while let Some(chunk) = stream.next().await {
            stdout.write_all(&chunk?).await.map_err(write_failure)?;
        }
        stdout.flush().await.map_err(write_failure)?;
        return Ok(());
    }
    let path = PathBuf::from(
        target
            .map(str::to_string)
            .unwrap_or_else(|| key.file_name().to_string()),
    );
    let size = download_to(storage, &key, &path, durability).await?;
    if as_json {
        print_json(&json!({"key": key.as_str(), "size": size, "file": path.display().to_string()}));
    } else {
        println!("downloaded {size} bytes from {key} to {}", path.display());
    }
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
/// process leaves a partial file. Returns the object's size.
async fn download_to(
    storage: &Storage,
    key: &ObjectKey,
    path: &Path,
    durability: Durability,
) -> Result<u64, Failure> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let pending = PendingFile::create(&dir, path).map_err(|e| Failure {
        message: format!("cannot write into {}: {e}", dir.display()),
        code: 1,
    })?;
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
    let info = read?;
    synced.map_err(write_failure)?;
    pending.commit().map_err(|e| Failure {
        message: format!(
            "cannot move the download into place at {}: {e}",
            path.display()
        ),
        code: 1,
    })?;
    Ok(info.size)
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
    fn create(dir: &Path, target: &Path) -> std::io::Result<PendingFile> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let unnamed = std::fs::OpenOptions::new()
                .write(true)
                .mode(0o644)
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

/// `rm <KEY>...` or `rm --prefix PREFIX`: lists what it will delete and asks first.
pub(crate) async fn rm(
    storage: &Storage,
    keys: &[String],
    prefix: Option<&str>,
    yes: bool,
    as_json: bool,
) -> Result<(), Failure> {
    let targets: Vec<ObjectKey> = match prefix {
        Some(prefix) => {
            let mut listed = Vec::new();
            let mut items = storage.list(Some(prefix))?;
            while let Some(item) = items.next().await {
                listed.push(item?.key);
            }
            listed.sort();
            listed
        }
        None => keys
            .iter()
            .map(|k| key(storage, k))
            .collect::<Result<_, _>>()?,
    };
    if targets.is_empty() {
        if as_json {
            print_json(&json!({"deleted": []}));
        } else {
            println!("nothing to delete");
        }
        return Ok(());
    }
    if prefix.is_some() && !yes {
        const SHOWN: usize = 20;
        eprintln!("about to delete {} objects:", targets.len());
        for k in targets.iter().take(SHOWN) {
            eprintln!("  {k}");
        }
        if targets.len() > SHOWN {
            eprintln!("  … and {} more", targets.len() - SHOWN);
        }
        if !std::io::stdin().is_terminal() {
            return Err(Failure {
                message: format!(
                    "refusing to delete {} objects without confirmation; pass --yes",
                    targets.len()
                ),
                code: 2,
            });
        }
        eprint!("delete them? [y/N] ");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| Failure {
                message: format!("cannot read the answer: {e}"),
                code: 2,
            })?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Failure {
                message: "nothing deleted".to_string(),
                code: 1,
            });
        }
    }
    for chunk in targets.chunks(1000) {
        storage.delete_many(chunk).await?;
    }
    if as_json {
        print_json(&json!({"deleted": targets.iter().map(ObjectKey::as_str).collect::<Vec<_>>()}));
    } else {
        for k in &targets {
            println!("deleted {k}");
        }
    }
    Ok(())
}

/// `cp` and `mv` within the store.
pub(crate) async fn copy_or_move(
    storage: &Storage,
    from: &str,
    to: &str,
    moving: bool,
    as_json: bool,
) -> Result<(), Failure> {
    let (from, to) = (key(storage, from)?, key(storage, to)?);
    if moving {
        storage.rename(&from, &to).await?;
    } else {
        storage.copy(&from, &to).await?;
    }
    let verb = if moving { "moved" } else { "copied" };
    if as_json {
        print_json(&json!({"from": from.as_str(), "to": to.as_str(), "action": verb}));
    } else {
        println!("{verb} {from} to {to}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
    fn flusher_syncs_a_real_file() {
        let file = tempfile::tempfile().unwrap();
        let flusher = Flusher::start(&file).unwrap();
        let nudge = flusher.nudger();
        (&file).write_all(b"written").unwrap();
        nudge.written(FLUSH_STEP);
        assert!(flusher.finish().is_ok());
    }
}
