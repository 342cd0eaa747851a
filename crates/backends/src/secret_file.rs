//! Secrets kept in files (`*_file` keys): the convention of container secrets
//! (`/run/secrets/<name>`) and of secrets-manager drivers that mount secrets as files.
//!
//! A file is refused, with the fix, when group or others may read or write it, when it is
//! a symlink that leads out of its folder (Kubernetes' `..data` links stay inside it), when
//! it is not a regular file, empty or larger than [`MAX_SECRET_FILE_BYTES`]. Surrounding
//! whitespace and the trailing newline editors and `echo` leave are trimmed; an invisible
//! character inside the secret (a zero-width space, a no-break space) is refused.
//!
//! One reader (`PrivateFile`, crate-internal) reads every private secret file: the
//! operator's, and the development signing secret the local provider generates, which
//! differs only in that no symlink is followed and the fix is to delete it.
//!
//! [`SecretFiles`] watches a group of such files for a rotation: one `stat` per file per
//! check, the files are read again only when their identity (device, inode, size, modified
//! and changed times) differs, and a change is adopted once it has held for
//! [`SETTLE`], so that an access key and its secret written one after the other are taken
//! together.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The largest secret file read, in bytes.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// How long a changed set of files must stay unchanged before it is read.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Metric: secrets rotated from their files, by `secret` (`s3_credentials`,
/// `gateway_signing_secret`).
pub const SECRET_ROTATIONS_TOTAL: &str = "maskstore_secret_rotations_total";

/// Why a secret file cannot be used; Display says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}; {fix}")]
pub struct SecretFileError {
    /// What is wrong with the file.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

/// The stamps of a group of files, `None` for one that cannot be examined.
type Stamps = Vec<Option<Stamp>>;

fn stamp(path: &Path) -> Option<Stamp> {
    // Follows the links: a Kubernetes update swaps `..data`, the target's inode changes.
    std::fs::metadata(path).ok().map(|m| stamp_of(&m))
}

fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        modified: (m.mtime(), m.mtime_nsec()),
        changed: (m.ctime(), m.ctime_nsec()),
    }
}

/// Reads the secret in `path`, refusing a file others may read, a symlink out of its
/// folder, and anything that is not a small non-empty regular file.
pub fn read_secret_file(path: &Path) -> Result<String, SecretFileError> {
    read_secret_stamped(path).map(|(secret, _)| secret)
}

/// [`read_secret_file`], with the identity of the version read.
fn read_secret_stamped(path: &Path) -> Result<(String, Stamp), SecretFileError> {
    let file = PrivateFile {
        path,
        called: "the secret file",
        writer: Writer::Operator,
        shortest: 1,
    };
    file.read()?.ok_or_else(|| file.missing())
}

/// Who writes a secret file. That decides whether a symlink may lead to it and what a
/// refusal advises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    /// The operator (`*_file` keys, container secrets): a symlink to a file in the same
    /// folder is followed (Kubernetes' `..data` links), and a refusal says how to repair
    /// the file.
    Operator,
    /// maskstore, which generates the file when there is none (the development signing
    /// secret): no symlink is followed, and every refusal advises deleting the file so that
    /// a new one is generated, or `otherwise`.
    Maskstore {
        /// The other way out, such as "set gateway.signing_secret".
        otherwise: &'static str,
    },
}

/// A file holding one secret, read by the one reader of such files ([`PrivateFile::read`]).
///
/// The file is refused, with the fix, when group or others may read or write it, when it
/// is a symlink maskstore may not follow, when it is not a regular file (a folder or a
/// FIFO is refused at once, never waited on), larger than [`MAX_SECRET_FILE_BYTES`],
/// changed while it was read, not one line of UTF-8 text, or shorter than `shortest`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PrivateFile<'a> {
    /// Where it is.
    pub(crate) path: &'a Path,
    /// What the messages call it ("the secret file", "the development signing secret").
    pub(crate) called: &'a str,
    /// Who writes it.
    pub(crate) writer: Writer,
    /// The fewest bytes the secret may have (1: not empty).
    pub(crate) shortest: usize,
}

impl PrivateFile<'_> {
    /// The secret, without the surrounding whitespace, trailing newline and byte-order mark
    /// editors leave, and the identity of the version read: the file is the same (size,
    /// times) before and after the read, or it is refused as changed mid-read. `None` when
    /// there is no file at the path; the caller says whether that is an error
    /// ([`PrivateFile::missing`]).
    pub(crate) fn read(&self) -> Result<Option<(String, Stamp)>, SecretFileError> {
        let Some((mut file, metadata)) = self.open()? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        (&mut file)
            .take(MAX_SECRET_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.cannot("read", e))?;
        // A file rewritten in place (`echo new > file`) may be caught truncated or half
        // written: what was read must be the whole of one version.
        let before = stamp_of(&metadata);
        let after = file.metadata().map_err(|e| self.cannot("inspect", e))?;
        if stamp_of(&after) != before || bytes.len() as u64 != before.size {
            return Err(self.refuse(
                format!("{} changed while it was being read", self.shown()),
                format!(
                    "write the new secret to a temporary file in the same folder and rename it onto {} (mv), so it is never seen half written",
                    self.path.display()
                ),
            ));
        }
        Ok(Some((self.one_secret(bytes)?, before)))
    }

    /// The refusal of a file that is not there, where one must be.
    pub(crate) fn missing(&self) -> SecretFileError {
        self.refuse(
            format!("cannot inspect {}: there is no such file", self.shown()),
            self.check_the_path(),
        )
    }

    /// The file opened, without waiting and without following a link maskstore may not
    /// follow, and its metadata once it is known to be a private regular file of a
    /// secret's size; `None` when there is none.
    fn open(&self) -> Result<Option<(File, Metadata)>, SecretFileError> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let target = match self.writer {
            Writer::Operator => match self.resolve()? {
                Some(target) => target,
                None => return Ok(None),
            },
            Writer::Maskstore { .. } => self.path.to_path_buf(),
        };
        // O_NOFOLLOW: a link in the last part (or a swap of the resolved path's last part)
        // leads nowhere, and what is checked is the file opened, not the name. O_NONBLOCK:
        // a FIFO put there opens at once (and is refused below) instead of waiting forever
        // for a writer, at start-up or in a rotation check.
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&target)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(self.refuse(
                    format!("{} is a symlink, which is not followed", self.shown()),
                    "point the setting at the file it links to".to_string(),
                ));
            }
            Err(e) => return Err(self.cannot("open", e)),
        };
        let metadata = file.metadata().map_err(|e| self.cannot("inspect", e))?;
        if !metadata.is_file() {
            return Err(self.refuse(
                format!("{} is not a regular file", self.shown()),
                "give the path of a file holding only the secret".to_string(),
            ));
        }
        let mode = metadata.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(self.refuse(
                format!(
                    "{} is open to group or others (mode {mode:03o}), so other users of this machine can read the secret",
                    self.shown()
                ),
                format!(
                    "chmod 600 {} (Kubernetes: defaultMode: 0400 on the secret volume; Docker: mode: 0400 on the secret)",
                    self.path.display()
                ),
            ));
        }
        if metadata.size() > MAX_SECRET_FILE_BYTES {
            return Err(self.refuse(
                format!(
                    "{} holds {} bytes, more than the {MAX_SECRET_FILE_BYTES} a secret may have",
                    self.shown(),
                    metadata.size()
                ),
                "give the path of a file holding only the secret".to_string(),
            ));
        }
        Ok(Some((file, metadata)))
    }

    /// An operator's file, a symlink resolved when it stays within the file's folder;
    /// `None` when there is no file.
    fn resolve(&self) -> Result<Option<PathBuf>, SecretFileError> {
        let link = match std::fs::symlink_metadata(self.path) {
            Ok(link) => link,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.cannot("inspect", e)),
        };
        if !link.file_type().is_symlink() {
            return Ok(Some(self.path.to_path_buf()));
        }
        let folder = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let folder =
            std::fs::canonicalize(folder).map_err(|e| self.cannot("resolve the folder of", e))?;
        let target = std::fs::canonicalize(self.path).map_err(|e| self.cannot("resolve", e))?;
        if !target.starts_with(&folder) {
            return Err(self.refuse(
                format!(
                    "{} is a symlink to {}, outside its folder {}",
                    self.shown(),
                    target.display(),
                    folder.display()
                ),
                format!(
                    "put the secret itself in {} (chmod 600), or point the setting at the file it links to",
                    folder.display()
                ),
            ));
        }
        Ok(Some(target))
    }

    /// The one secret in `bytes`: UTF-8, trimmed, one line, nothing invisible in it, at
    /// least `shortest` bytes.
    fn one_secret(&self, bytes: Vec<u8>) -> Result<String, SecretFileError> {
        let shown = self.path.display();
        let text = String::from_utf8(bytes).map_err(|_| {
            self.refuse(
                format!("{} is not UTF-8 text", self.shown()),
                "write the secret as text (hex or base64 for binary keys)".to_string(),
            )
        })?;
        // The byte-order mark some Windows editors put first is no part of the secret.
        let secret = text.strip_prefix('\u{feff}').unwrap_or(&text).trim();
        if secret.is_empty() {
            return Err(self.refuse(
                format!("{} is empty", self.shown()),
                format!("write the secret into {shown}"),
            ));
        }
        // Two lines (an access key and its secret in one file) or a stray control character
        // would be sent or hashed as part of the secret and fail every request obscurely.
        // A JSON document (a GCS service-account key as the console downloads it) spans
        // lines by design; a raw control character inside its strings is no valid JSON.
        if let Some(at) = secret
            .find(char::is_control)
            .filter(|_| !json_document(secret))
        {
            let line = secret[..at].matches('\n').count() + 1;
            return Err(self.refuse(
                format!(
                    "{} holds a line break or control character (line {line}, byte {at} of the secret), so it is not one secret",
                    self.shown()
                ),
                format!("write only the secret into {shown}, on one line (one file per secret)"),
            ));
        }
        if let Some((at, c)) = maskstore_core::invisible_character(secret) {
            return Err(self.refuse(
                format!(
                    "{} holds an invisible character, U+{:04X}, at byte {at} of the secret (pasted from a web page, chat or document?), which would be sent as part of it",
                    self.shown(),
                    u32::from(c)
                ),
                format!("retype or paste the secret into {shown} as plain text, or write it with: printf '%s' 'SECRET' > {shown}"),
            ));
        }
        if secret.len() < self.shortest {
            return Err(self.refuse(
                format!("{} is shorter than {} bytes", self.shown(), self.shortest),
                format!(
                    "write a secret of at least {} bytes into {shown} (generate one with: openssl rand -hex 32)",
                    self.shortest
                ),
            ));
        }
        Ok(secret.to_string())
    }

    /// What the messages name: "the secret file /run/secrets/key".
    fn shown(&self) -> String {
        format!("{} {}", self.called, self.path.display())
    }

    fn check_the_path(&self) -> String {
        format!(
            "check the path, and that this user may read it (ls -l {})",
            self.path.display()
        )
    }

    fn cannot(&self, what: &str, e: std::io::Error) -> SecretFileError {
        self.refuse(
            format!("cannot {what} {}: {e}", self.shown()),
            self.check_the_path(),
        )
    }

    /// A refusal of the file: `repair` is the fix for an operator's file; one maskstore
    /// writes is replaced instead.
    fn refuse(&self, problem: String, repair: String) -> SecretFileError {
        let fix = match self.writer {
            Writer::Operator => repair,
            Writer::Maskstore { otherwise } => format!(
                "delete it (rm {}) so a new private one is generated, or {otherwise}",
                self.path.display()
            ),
        };
        SecretFileError { problem, fix }
    }
}

/// A group of secret files watched together (the parts of one credential).
pub(crate) struct SecretFiles {
    /// The metric label and log name of what they hold.
    name: &'static str,
    paths: Vec<PathBuf>,
    state: Mutex<Watch>,
    /// Reads one file ([`read_secret_stamped`]; tests wrap it to change a file mid-poll).
    read: fn(&Path) -> Result<(String, Stamp), SecretFileError>,
}

impl std::fmt::Debug for SecretFiles {
    // Names the files; the state holds values read early, which never show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFiles")
            .field("name", &self.name)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

struct Watch {
    /// The stamps of the values in use.
    current: Vec<Option<Stamp>>,
    /// Stamps seen to differ, and since when.
    pending: Option<(Vec<Option<Stamp>>, Instant)>,
    /// A change read before it settled ([`SecretFiles::poll_early`]): its stamps, and its
    /// values when they read well, so it is read once, not on every call.
    early: Option<(Stamps, Option<Vec<String>>)>,
}

impl SecretFiles {
    /// Watches `paths`, whose values in use were read just now.
    pub(crate) fn new(name: &'static str, paths: Vec<PathBuf>) -> SecretFiles {
        let current = paths.iter().map(|p| stamp(p)).collect();
        SecretFiles {
            name,
            paths,
            state: Mutex::new(Watch {
                current,
                pending: None,
                early: None,
            }),
            read: read_secret_stamped,
        }
    }

    /// The name of what the files hold.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The files.
    pub(crate) fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Whether every file differs from the version in use (a whole new key pair is there,
    /// not half of one being written).
    pub(crate) fn all_changed(&self) -> bool {
        let state = self.state.lock().expect("secret watch lock");
        self.paths
            .iter()
            .zip(&state.current)
            .all(|(path, current)| stamp(path) != *current)
    }

    /// The files' new values, in order, when they changed at least [`SETTLE`] before `now`
    /// and read well; `None` otherwise (the values in use stay). A file that cannot be
    /// read is logged, by path only, and tried again when it changes.
    pub(crate) fn poll(&self, now: Instant) -> Option<Vec<String>> {
        self.poll_settled(now, SETTLE)
    }

    /// [`SecretFiles::poll`] with another settle time (zero: adopt a change at once).
    pub(crate) fn poll_settled(&self, now: Instant, settle: Duration) -> Option<Vec<String>> {
        let seen: Vec<Option<Stamp>> = self.paths.iter().map(|p| stamp(p)).collect();
        let mut state = self.state.lock().expect("secret watch lock");
        if seen == state.current {
            state.pending = None;
            return None;
        }
        match &state.pending {
            Some((pending, since)) if *pending == seen => {
                if now.saturating_duration_since(*since) < settle {
                    return None;
                }
            }
            _ if settle.is_zero() => {}
            _ => {
                state.pending = Some((seen, now));
                return None;
            }
        }
        state.pending = None;
        match self.read_all(&seen) {
            Reading::Values(values) => {
                state.current = seen;
                state.early = None;
                Some(values)
            }
            Reading::Unusable => {
                // Not tried again until the files change.
                state.current = seen;
                None
            }
            Reading::Changed => {
                // Rewritten since the stat: what was read is not what settled. Wait for
                // the new version to settle in turn.
                let fresh = self.paths.iter().map(|p| stamp(p)).collect();
                state.pending = Some((fresh, now));
                None
            }
        }
    }

    /// The files' changed values before they settle, adopted only when `accept` takes
    /// them (the gateway: they verify a URL its issuer signed with them). A change is read
    /// once, however often this is asked; otherwise it waits for [`SecretFiles::poll`].
    pub(crate) fn poll_early(&self, accept: impl Fn(&[String]) -> bool) -> Option<Vec<String>> {
        let seen: Vec<Option<Stamp>> = self.paths.iter().map(|p| stamp(p)).collect();
        let mut state = self.state.lock().expect("secret watch lock");
        if seen == state.current {
            return None;
        }
        let values = match &state.early {
            Some((stamps, values)) if *stamps == seen => values.clone(),
            _ => {
                let values = match self.read_all(&seen) {
                    Reading::Values(values) => Some(values),
                    Reading::Unusable | Reading::Changed => None,
                };
                state.early = Some((seen.clone(), values.clone()));
                values
            }
        };
        let values = values.filter(|values| accept(values))?;
        state.current = seen;
        state.pending = None;
        state.early = None;
        Some(values)
    }

    /// Reads every file, each of which must be the version stamped `seen`.
    fn read_all(&self, seen: &[Option<Stamp>]) -> Reading {
        let mut values = Vec::with_capacity(self.paths.len());
        for (path, seen) in self.paths.iter().zip(seen) {
            match (self.read)(path) {
                Ok((value, read)) if Some(read) == *seen => values.push(value),
                Ok(_) => return Reading::Changed,
                Err(e) => {
                    tracing::warn!(secret = self.name, error = %e, "a changed secret file cannot be used; the secret in use stays");
                    return Reading::Unusable;
                }
            }
        }
        Reading::Values(values)
    }
}

/// What reading a group of files gave.
enum Reading {
    Values(Vec<String>),
    /// A file was refused (logged).
    Unusable,
    /// A file was not the version whose stamp was seen.
    Changed,
}

/// Counts and logs a rotation of `name` (never its values).
pub(crate) fn rotated(name: &'static str, files: &[PathBuf]) {
    metrics::counter!(SECRET_ROTATIONS_TOTAL, "secret" => name).increment(1);
    let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    tracing::info!(
        secret = name,
        files = files.join(", "),
        "secret rotated: its files changed, requests from now on use the new value"
    );
}

/// What the tests of secret files share.
/// Whether `secret` is a JSON object: one secret written over several lines (a GCS
/// service-account key file), never two secrets on two lines.
fn json_document(secret: &str) -> bool {
    secret.starts_with('{')
        && serde_json::from_str::<serde_json::Value>(secret).is_ok_and(|v| v.is_object())
}

#[cfg(test)]
pub(crate) mod testing {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::time::Duration;

    /// Replaces the secret file `path` with `text`, owner-only, as an operator's rotation
    /// does: written beside it, then renamed over it.
    pub(crate) fn rotate(path: &Path, text: &str) {
        let temp = path.with_extension("new");
        std::fs::write(&temp, text).unwrap();
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&temp, path).unwrap();
    }

    /// Makes a FIFO at `path`, owner-only: opened for reading, it would wait for a writer.
    pub(crate) fn fifo(path: &Path) {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// What `read` returns, failing the test when it has not returned within 10 seconds
    /// (it waits on a FIFO).
    pub(crate) fn at_once<T: Send + 'static>(read: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("reading a FIFO as a secret file blocked")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret_key");
        write(&path, "  s3cr3t-value\r\n\n", 0o600);
        assert_eq!(read_secret_file(&path).unwrap(), "s3cr3t-value");
        write(&path, "owner-only", 0o400);
        assert_eq!(read_secret_file(&path).unwrap(), "owner-only");
    }

    /// A GCS service-account key as the console downloads it spans lines; two secrets on
    /// two lines, or a JSON document cut short, are still refused.
    #[test]
    fn a_service_account_key_document_over_several_lines_is_one_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        let key = "{\n  \"type\": \"service_account\",\n  \"private_key\": \"-----BEGIN PRIVATE KEY-----\\nabc\\n-----END PRIVATE KEY-----\\n\"\n}";
        write(&path, &format!("{key}\n"), 0o600);
        assert_eq!(read_secret_file(&path).unwrap(), key);
        for refused in [
            "{\n  \"type\": \"service_account\",\n",
            "AKIAEXAMPLE\nsecret",
        ] {
            write(&path, refused, 0o600);
            let e = read_secret_file(&path).unwrap_err();
            assert!(e.problem.contains("line break"), "{}", e.problem);
        }
    }

    #[test]
    fn a_file_open_to_group_or_others_is_refused_naming_it_and_chmod_600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret_key");
        for mode in [0o644, 0o640, 0o604, 0o660] {
            write(&path, "s3cr3t-value", mode);
            let e = read_secret_file(&path).unwrap_err().to_string();
            assert!(e.contains(&path.display().to_string()), "{e}");
            assert!(e.contains(&format!("chmod 600 {}", path.display())), "{e}");
            assert!(e.contains(&format!("mode {mode:03o}")), "{e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn a_symlink_out_of_its_folder_is_refused_and_one_within_it_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(secrets.join("..2026_11_30")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        write(&elsewhere.join("key"), "outside-value", 0o600);
        std::os::unix::fs::symlink(elsewhere.join("key"), secrets.join("out")).unwrap();
        let e = read_secret_file(&secrets.join("out"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside its folder"), "{e}");
        assert!(!e.contains("outside-value"), "{e}");
        // Kubernetes' layout: key -> ..data/key, ..data -> ..<timestamp>.
        write(&secrets.join("..2026_11_30/key"), "k8s-value\n", 0o400);
        std::os::unix::fs::symlink("..2026_11_30", secrets.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/key", secrets.join("key")).unwrap();
        assert_eq!(read_secret_file(&secrets.join("key")).unwrap(), "k8s-value");
    }

    #[test]
    fn empty_huge_missing_and_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write(&path, " \n", 0o600);
        assert!(
            read_secret_file(&path)
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
        write(
            &path,
            &"x".repeat(MAX_SECRET_FILE_BYTES as usize + 1),
            0o600,
        );
        assert!(
            read_secret_file(&path)
                .unwrap_err()
                .to_string()
                .contains("more than")
        );
        let e = read_secret_file(&dir.path().join("missing")).unwrap_err();
        assert!(e.problem.contains("cannot inspect"), "{e}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = read_secret_file(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_fifo_as_the_secret_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        testing::fifo(&fifo);
        let e = testing::at_once(move || read_secret_file(&fifo))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_change_is_adopted_once_it_has_settled_and_a_bad_one_never() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write(&path, "first", 0o600);
        let files = SecretFiles::new("test", vec![path.clone()]);
        let t0 = Instant::now();
        assert_eq!(files.poll(t0), None);
        // Renamed into place, as an atomic update does.
        let next = dir.path().join("s.new");
        write(&next, "second", 0o600);
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(files.poll(t0), None, "not settled yet");
        assert_eq!(files.poll(t0 + SETTLE), Some(vec!["second".to_string()]));
        assert_eq!(files.poll(t0 + SETTLE * 2), None, "adopted once");
        // Opened to others: refused, the value in use stays, not retried until it changes.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(files.poll(t0 + SETTLE * 3), None);
        assert_eq!(files.poll(t0 + SETTLE * 5), None);
        assert_eq!(files.poll(t0 + SETTLE * 6), None);
    }

    #[test]
    fn a_byte_order_mark_is_dropped_and_two_lines_or_control_characters_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write(&path, "\u{feff}s3cr3t-value\r\n", 0o600);
        assert_eq!(read_secret_file(&path).unwrap(), "s3cr3t-value");
        for text in [
            "AKIAEXAMPLE\ns3cr3t-value\n",
            "AKIAEXAMPLE\r\ns3cr3t-value",
            "s3cr3t\tvalue",
            "s3cr3t\u{0}value",
        ] {
            write(&path, text, 0o600);
            let e = read_secret_file(&path).unwrap_err().to_string();
            assert!(e.contains("line break or control character"), "{e}");
            assert!(e.contains("on one line"), "{e}");
            assert!(!e.contains("s3cr3t") && !e.contains("AKIA"), "{e}");
        }
    }

    #[test]
    fn an_invisible_character_inside_the_secret_is_refused_naming_it() {
        // Pasted from a web console, a chat or a word processor, a secret can carry a
        // zero-width space, a second byte-order mark, a direction mark or a no-break space
        // that no editor shows; kept, it fails every signature with no hint why.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        for (text, named) in [
            ("s3cr3t-value\u{200b}\n", "U+200B"),
            ("\u{200b}s3cr3t-value", "U+200B"),
            ("\u{feff}\u{feff}s3cr3t-value", "U+FEFF"),
            (" \u{feff}s3cr3t-value", "U+FEFF"),
            ("s3cr3t\u{200e}-value", "U+200E"),
            ("s3cr3t\u{a0}value", "U+00A0"),
            ("s3cr3t\u{2028}value", "U+2028"),
            ("s3cr3t-value\u{ad}", "U+00AD"),
        ] {
            write(&path, text, 0o600);
            let e = read_secret_file(&path).unwrap_err().to_string();
            assert!(
                e.contains(named) && e.contains("invisible"),
                "{text:?}: {e}"
            );
            assert!(e.contains("retype"), "{text:?}: {e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
        // Letters of any script and an ASCII space inside stay part of the secret.
        write(&path, "\u{feff}pässwört mit Leerzeichen 비밀\n", 0o600);
        assert_eq!(
            read_secret_file(&path).unwrap(),
            "pässwört mit Leerzeichen 비밀"
        );
    }

    /// Rewrites the file in place, as if a writer came between the stat and the read.
    fn rewritten_then_read(path: &Path) -> Result<(String, Stamp), SecretFileError> {
        std::fs::write(path, "torn").unwrap();
        read_secret_stamped(path)
    }

    #[test]
    fn a_file_rewritten_between_the_stat_and_the_read_is_not_taken_until_it_settles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write(&path, "first", 0o600);
        let mut files = SecretFiles::new("test", vec![path.clone()]);
        files.read = rewritten_then_read;
        let t0 = Instant::now();
        write(&path, "second", 0o600);
        assert_eq!(files.poll(t0), None, "not settled yet");
        assert_eq!(
            files.poll(t0 + SETTLE),
            None,
            "what was read is not the version that settled"
        );
        files.read = read_secret_stamped;
        assert_eq!(
            files.poll(t0 + SETTLE * 3 / 2),
            None,
            "the new version settles in turn"
        );
        assert_eq!(
            files.poll(t0 + SETTLE * 5 / 2),
            Some(vec!["torn".to_string()])
        );
    }

    static EARLY_READS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

    fn counted(path: &Path) -> Result<(String, Stamp), SecretFileError> {
        EARLY_READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        read_secret_stamped(path)
    }

    #[test]
    fn an_early_read_is_adopted_only_when_accepted_and_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write(&path, "first", 0o600);
        let mut files = SecretFiles::new("test", vec![path.clone()]);
        files.read = counted;
        assert_eq!(files.poll_early(|_| true), None, "no change");
        write(&path, "second", 0o600);
        // Every forged URL asks; the changed file is read once.
        for _ in 0..100 {
            assert_eq!(files.poll_early(|_| false), None);
        }
        assert_eq!(EARLY_READS.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(
            files.poll_early(|v| v == ["second"]),
            Some(vec!["second".to_string()])
        );
        assert_eq!(
            files.poll(Instant::now() + SETTLE * 2),
            None,
            "adopted once"
        );
    }

    #[test]
    fn a_deleted_file_keeps_the_secret_in_use_and_its_return_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write(&path, "first", 0o600);
        let files = SecretFiles::new("test", vec![path.clone()]);
        let t0 = Instant::now();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(files.poll(t0), None);
        assert_eq!(
            files.poll(t0 + SETTLE),
            None,
            "missing: the value in use stays"
        );
        assert_eq!(files.poll(t0 + SETTLE * 3), None, "and it is not retried");
        write(&path, "second", 0o600);
        assert_eq!(files.poll(t0 + SETTLE * 4), None);
        assert_eq!(
            files.poll(t0 + SETTLE * 5),
            Some(vec!["second".to_string()])
        );
    }

    /// What a test subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn no_secret_reaches_the_log_an_error_or_debug_during_rotation_and_failed_reads() {
        use crate::signing::{GatewaySigner, SignOptions, SignedMethod};
        use maskstore_core::{ObjectKey, Secret};
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing_secret");
        let replace = |text: &str, mode: u32| {
            let temp = dir.path().join("next");
            write(&temp, text, mode);
            std::fs::rename(&temp, &path).unwrap();
        };
        let secrets = [
            "SECRET-ONE-0123456789abcdef0123456789abcdef",
            "SECRET-TWO-0123456789abcdef0123456789abcdef",
            "SECRET-THREE-0123456789abcdef0123456789abcd",
            "SECRET-SHORT",
            "SECRET-LINES-0123456789abcdef",
            "SECRET-OUTSIDE-0123456789abcdef",
        ];
        let mut shown = Vec::new();
        tracing::subscriber::with_default(subscriber, || {
            replace(secrets[0], 0o600);
            let base = "http://127.0.0.1:9000";
            let gateway = GatewaySigner::rotating(
                base,
                Secret::new(secrets[0]),
                None,
                path.clone(),
                Duration::from_secs(60),
            );
            let k = ObjectKey::parse("mask/a.png").unwrap();
            let sign =
                || gateway.sign(SignedMethod::Get, &k, i64::MAX / 2, &SignOptions::default());
            let forged = GatewaySigner::new(base, Secret::new("x".repeat(40)), None).sign(
                SignedMethod::Get,
                &k,
                i64::MAX / 2,
                &SignOptions::default(),
            );
            let (forged_path, forged_query) = forged
                .strip_prefix(&format!("{base}/o/"))
                .unwrap()
                .split_once('?')
                .unwrap();
            let settle = || std::thread::sleep(SETTLE + Duration::from_millis(50));
            // A rotation, read early by a forged URL first (its value held unadopted).
            replace(secrets[1], 0o600);
            let refused = gateway.verify("GET", forged_path, forged_query, chrono::Utc::now());
            shown.push(format!("{refused:?} {gateway:?}"));
            sign();
            settle();
            sign();
            // Rewrites that cannot be used: open to others, too short.
            replace(secrets[2], 0o644);
            sign();
            settle();
            sign();
            replace(secrets[3], 0o600);
            sign();
            settle();
            sign();
            shown.push(format!("{gateway:?}"));
            // Failed reads: two lines, a symlink out of its folder.
            let lines = dir.path().join("lines");
            write(&lines, &format!("AKIA\n{}", secrets[4]), 0o600);
            shown.push(read_secret_file(&lines).unwrap_err().to_string());
            let outside = tempfile::tempdir().unwrap();
            write(&outside.path().join("key"), secrets[5], 0o600);
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(outside.path().join("key"), &link).unwrap();
            shown.push(read_secret_file(&link).unwrap_err().to_string());
            // A watch holding a value read early (the S3 provider's Debug shows its watch).
            let files = SecretFiles::new("test", vec![path.clone()]);
            replace(secrets[2], 0o600);
            assert_eq!(files.poll_early(|_| false), None);
            shown.push(format!("{files:?}"));
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        for expected in ["secret rotated", "cannot be used", "shorter than"] {
            assert!(log.contains(expected), "{expected:?} not logged:\n{log}");
        }
        let shown = shown.join("\n");
        for secret in secrets {
            assert!(!log.contains(secret), "{secret} logged:\n{log}");
            assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
        }
    }
}
