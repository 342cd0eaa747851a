//! Opening files and folders beneath an open folder handle without following any symlink.
//!
//! `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` resolves a whole relative path
//! in the kernel, refusing every symlink (`ELOOP`) and every escape (`EXDEV`). Kernels
//! before 5.6 (or sandboxes that filter the call) lack it; there the path is walked one
//! component at a time with `openat(O_NOFOLLOW)`, which is as strict because a component
//! is never `.` or `..` (object_store's paths refuse them) and never holds a `/`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, openat, openat2, statat};
use rustix::io::Errno;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// Whether `openat2` answered `ENOSYS`/`EPERM` once: then the component walk is used.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens `path` (components separated by `/`, none `.`, `..` or empty) beneath `dir`
/// with `flags`, following no symlink: a symlink anywhere on the path is `ELOOP`.
pub(crate) fn open(dir: BorrowedFd<'_>, path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    debug_assert!(
        !path.is_empty()
            && path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..")
    );
    let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        // EAGAIN: the kernel could not rule out a race on `..`; we have none, but retry.
        for _ in 0..16 {
            match openat2(dir, path, flags, Mode::empty(), RESOLVE) {
                Err(Errno::AGAIN) => continue,
                Err(Errno::NOSYS | Errno::PERM) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                    break;
                }
                // `O_DIRECTORY` on a final symlink is `ENOTDIR`, not `ELOOP`.
                Err(Errno::NOTDIR) => return Err(final_symlink_as_loop(dir, path)),
                other => return other,
            }
        }
    }
    walk(dir, path, flags)
}

/// [`open`] without waiting for the disk: `Err(AGAIN)` unless every component of `path` is
/// in the kernel's dentry cache (`RESOLVE_CACHED`), or where `openat2` is missing; the
/// caller then opens it in a blocking task. Same refusals as [`open`] otherwise.
pub(crate) fn open_cached(
    dir: BorrowedFd<'_>,
    path: &str,
    flags: OFlags,
) -> Result<OwnedFd, Errno> {
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return Err(Errno::AGAIN);
    }
    let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    match openat2(
        dir,
        path,
        flags,
        Mode::empty(),
        RESOLVE.union(ResolveFlags::CACHED),
    ) {
        // Telling a final symlink from a file on the way may need the disk: let the
        // blocking open answer (`ENOSYS`/`EPERM`/`EINVAL`: no usable `openat2` here).
        Err(Errno::NOTDIR | Errno::NOSYS | Errno::PERM | Errno::INVAL) => Err(Errno::AGAIN),
        other => other,
    }
}

/// The component walk for kernels without `openat2`.
fn walk(dir: BorrowedFd<'_>, path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    let (folders, last) = match path.rsplit_once('/') {
        Some((folders, last)) => (Some(folders), last),
        None => (None, path),
    };
    let mut current: Option<OwnedFd> = None;
    for component in folders.into_iter().flat_map(|f| f.split('/')) {
        let at = current.as_ref().map_or(dir, |fd| fd.as_fd());
        let next = openat(
            at,
            component,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| symlink_as_loop(at, component, e))?;
        current = Some(next);
    }
    let at = current.as_ref().map_or(dir, |fd| fd.as_fd());
    openat(at, last, flags, Mode::empty()).map_err(|e| symlink_as_loop(at, last, e))
}

/// `ENOTDIR` from `openat2` for `path`, or `ELOOP` if its last component is a symlink
/// (which `O_DIRECTORY | O_NOFOLLOW` reports as `ENOTDIR`), so a folder path ending in a
/// symlink is told apart from one ending in a file at any depth.
fn final_symlink_as_loop(dir: BorrowedFd<'_>, path: &str) -> Errno {
    match path.rsplit_once('/') {
        None => symlink_as_loop(dir, path, Errno::NOTDIR),
        Some((folders, last)) => match openat2(
            dir,
            folders,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        ) {
            Ok(parent) => symlink_as_loop(parent.as_fd(), last, Errno::NOTDIR),
            Err(_) => Errno::NOTDIR,
        },
    }
}

/// `O_DIRECTORY | O_NOFOLLOW` on a symlink fails with `ENOTDIR`; `openat2` says `ELOOP`.
fn symlink_as_loop(at: BorrowedFd<'_>, name: &str, e: Errno) -> Errno {
    if e == Errno::NOTDIR && kind(at, name) == Ok(Some(FileType::Symlink)) {
        Errno::LOOP
    } else {
        e
    }
}

/// What the entry `name` of `dir` is, without following it (`None`: no such entry).
pub(crate) fn kind(dir: BorrowedFd<'_>, name: &str) -> Result<Option<FileType>, Errno> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn root() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("root/a/b")).unwrap();
        fs::write(dir.path().join("root/a/b/f"), "inside").unwrap();
        fs::create_dir_all(dir.path().join("outside")).unwrap();
        fs::write(dir.path().join("outside/f"), "outside").unwrap();
        let fd = rustix::fs::open(
            dir.path().join("root"),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        (dir, fd)
    }

    #[test]
    fn opens_below_and_refuses_symlinks_on_every_component() {
        let (dir, root) = root();
        open(root.as_fd(), "a/b/f", OFlags::RDONLY).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), dir.path().join("root/l")).unwrap();
        std::os::unix::fs::symlink("b/f", dir.path().join("root/a/fl")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), dir.path().join("root/a/dl"))
            .unwrap();
        for path in ["l/f", "l", "a/fl", "a/dl", "a/dl/f"] {
            assert_eq!(
                open(root.as_fd(), path, OFlags::RDONLY).unwrap_err(),
                Errno::LOOP,
                "{path}"
            );
            assert_eq!(
                walk(root.as_fd(), path, OFlags::RDONLY | OFlags::NOFOLLOW).unwrap_err(),
                Errno::LOOP,
                "{path}"
            );
            // The cached open refuses alike, or leaves the answer to the blocking one.
            let cached = open_cached(root.as_fd(), path, OFlags::RDONLY).unwrap_err();
            assert!(
                matches!(cached, Errno::LOOP | Errno::AGAIN),
                "{path}: {cached:?}"
            );
            // As a listing opens its prefix: a folder path ending in a symlink, at any depth.
            let folder = OFlags::RDONLY | OFlags::DIRECTORY;
            assert_eq!(
                open(root.as_fd(), path, folder).unwrap_err(),
                Errno::LOOP,
                "{path}"
            );
            assert_eq!(
                walk(root.as_fd(), path, folder | OFlags::NOFOLLOW).unwrap_err(),
                Errno::LOOP,
                "{path}"
            );
        }
        assert_eq!(
            open(root.as_fd(), "a/b/f", OFlags::RDONLY | OFlags::DIRECTORY).unwrap_err(),
            Errno::NOTDIR
        );
        assert_eq!(
            open(root.as_fd(), "a/b/f/x", OFlags::RDONLY).unwrap_err(),
            Errno::NOTDIR
        );
        assert_eq!(
            open(root.as_fd(), "a/missing", OFlags::RDONLY).unwrap_err(),
            Errno::NOENT
        );
        // A cached path opens without the disk (or `EAGAIN` where openat2 is missing).
        match open_cached(root.as_fd(), "a/b/f", OFlags::RDONLY) {
            Ok(_) | Err(Errno::AGAIN) => {}
            Err(e) => panic!("a/b/f: {e:?}"),
        }
        assert!(matches!(
            open_cached(root.as_fd(), "a/missing", OFlags::RDONLY),
            Err(Errno::NOENT | Errno::AGAIN)
        ));
        assert_eq!(kind(root.as_fd(), "l").unwrap(), Some(FileType::Symlink));
        assert_eq!(kind(root.as_fd(), "a").unwrap(), Some(FileType::Directory));
        assert_eq!(kind(root.as_fd(), "zz").unwrap(), None);
    }
}
