//! The object chores of the deployment guide's test section: `ls`, `put`, `get`, `rm`,
//! `cp`, `mv` — through the application's own config.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
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

/// `get <KEY> [FILE|-]`: streams to stdout, or to a file that appears only when complete.
pub(crate) async fn get(
    storage: &Storage,
    key_text: &str,
    target: Option<&str>,
    as_json: bool,
) -> Result<(), Failure> {
    let key = key(storage, key_text)?;
    let object = storage.get_stream(&key).await?;
    let size = object.info.size;
    if target == Some("-") {
        let mut stdout = tokio::io::stdout();
        let mut stream = object.stream;
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
    let bar = progress(Some(size), &format!("get {key}"));
    let result = download_to(&path, object.stream, &bar).await;
    bar.finish_and_clear();
    result?;
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

/// Writes the stream into an unnamed file in the target's folder and links it into place
/// only when complete, so neither a failure nor a killed process leaves a partial file.
async fn download_to(
    path: &Path,
    mut stream: futures::stream::BoxStream<'static, maskstore::Result<Bytes>>,
    bar: &ProgressBar,
) -> Result<(), Failure> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let pending = PendingFile::create(&dir, path).map_err(|e| Failure {
        message: format!("cannot write into {}: {e}", dir.display()),
        code: 1,
    })?;
    let mut file = tokio::fs::File::from_std(pending.file.try_clone().map_err(write_failure)?);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        file.write_all(&chunk).await.map_err(write_failure)?;
        bar.inc(chunk.len() as u64);
    }
    file.flush().await.map_err(write_failure)?;
    file.sync_all().await.map_err(write_failure)?;
    drop(file);
    pending.commit().map_err(|e| Failure {
        message: format!(
            "cannot move the download into place at {}: {e}",
            path.display()
        ),
        code: 1,
    })
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
