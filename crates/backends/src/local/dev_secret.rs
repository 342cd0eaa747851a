//! The development signing secret of the local provider's gateway URLs: kept beside the
//! root (never inside it, so it does not travel with copies of the data), created once,
//! owner-only, and shared by every process on that root (`maskstore presign` and
//! `maskstore serve` agree).

use std::io::Write;
use std::path::{Path, PathBuf};

use maskstore_core::Secret;

use crate::secret_file::{PrivateFile, SecretFileError, Writer};
use crate::signing::random_secret;

/// `<parent of root>/.<root name>.signing-secret`: beside the root, so that copying the
/// root does not copy the secret. `None` for a root without a parent (`/`).
pub(crate) fn development_secret_path(root: &Path) -> Option<PathBuf> {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let name = root.file_name()?.to_string_lossy().into_owned();
    Some(root.parent()?.join(format!(".{name}.signing-secret")))
}

/// The development signing secret kept in `path`, so that `maskstore presign` and
/// `maskstore serve` agree across processes.
///
/// A missing file is created atomically (written in full to a private temporary file,
/// then linked into place) with mode 0600. An existing file is read by the one reader of
/// secret files ([`PrivateFile`]) and refused, never followed or repaired, when it is a
/// symlink, not a regular file, readable or writable by group or others, or shorter than a
/// secret.
pub(crate) fn development_secret(path: &Path) -> Result<Secret, SecretFileError> {
    let file = PrivateFile {
        path,
        called: "the development signing secret",
        writer: Writer::Maskstore {
            otherwise: "set gateway.signing_secret",
        },
        shortest: maskstore_core::config::MIN_SIGNING_SECRET_BYTES,
    };
    let shown = path.display();
    // Two processes may race to create it: the loser reads the winner's.
    for _ in 0..2 {
        if let Some((secret, _)) = file.read()? {
            return Ok(Secret::new(secret));
        }
        let secret = random_secret();
        let temp = path.with_file_name(format!(
            ".{}.{:016x}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            rand::random::<u64>()
        ));
        let written = write_private(&temp, secret.expose().as_bytes());
        let linked = written.and_then(|()| std::fs::hard_link(&temp, path));
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                tracing::info!(
                    path = %shown,
                    "generated a development signing secret for signed URLs (set gateway.signing_secret to choose one)"
                );
                return Ok(secret);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(SecretFileError {
                    problem: format!("cannot create the development signing secret {shown}: {e}"),
                    fix: "set gateway.signing_secret (APP_GATEWAY__SIGNING_SECRET), or make that folder writable by this user only".to_string(),
                });
            }
        }
    }
    Err(SecretFileError {
        problem: format!("the development signing secret {shown} keeps changing while it is read"),
        fix: "stop the other process writing it, or set gateway.signing_secret".to_string(),
    })
}

/// Writes `bytes` to a new file at `path` (never an existing one or a link) with mode
/// 0600, and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret_file::testing;

    #[test]
    fn development_secret_is_created_once_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing-secret");
        let first = development_secret(&path).unwrap();
        let second = development_secret(&path).unwrap();
        assert_eq!(first, second);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Nothing but the secret is left in the folder (no temporary file).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn development_secret_open_to_group_or_others_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing-secret");
        let secret = development_secret(&path).unwrap();
        for mode in [0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = development_secret(&path).unwrap_err();
            assert!(e.problem.contains("group or others"), "{e}");
            assert!(e.fix.contains("rm "), "{e}");
            assert!(!e.to_string().contains(secret.expose()), "{e}");
        }
    }

    #[test]
    fn development_secret_behind_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "a".repeat(64)).unwrap();
        let path = dir.path().join("signing-secret");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let e = development_secret(&path).unwrap_err();
        assert!(e.problem.contains("symlink"), "{e}");
        // A dangling link is refused too, not created through.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("missing"), &dangling).unwrap();
        assert!(development_secret(&dangling).is_err());
        assert!(!dir.path().join("missing").exists());
    }

    #[test]
    fn development_secret_that_is_a_folder_or_a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        let e = development_secret(&folder).unwrap_err();
        assert!(e.problem.contains("not a regular file"), "{e}");
        // A FIFO: opening it for reading must not wait for a writer.
        let fifo = dir.path().join("fifo");
        testing::fifo(&fifo);
        let e = testing::at_once(move || development_secret(&fifo)).unwrap_err();
        assert!(e.problem.contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_short_development_secret_is_refused_not_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing-secret");
        std::fs::write(&path, "short").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = development_secret(&path).unwrap_err();
        assert!(e.problem.contains("shorter"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "short");
    }
}
