//! Per-key locks of the local provider, shared by every process using the same root.
//!
//! A key hashes (FNV-1a, the same in every build) to one of [`STRIPES`] lock files under
//! `<root>/.maskstore/locks/`; a lock is an exclusive `flock` on a freshly opened
//! descriptor of that file, so it excludes other threads and other processes alike and is
//! released when the guard is dropped (or the process dies). The table never grows beyond
//! [`STRIPES`] files. Two keys are locked in stripe order, so two operations locking the
//! same pair never deadlock.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags, openat};

/// Lock files per root.
pub(crate) const STRIPES: u32 = 256;

/// Held locks; dropping releases them.
#[derive(Debug)]
pub(crate) struct Guard {
    _files: Vec<File>,
}

/// The stripe of `key`.
pub(crate) fn stripe(key: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % STRIPES
}

/// Locks every key of `keys` (one or two), in stripe order.
pub(crate) fn lock(dir: &OwnedFd, keys: &[&str]) -> io::Result<Guard> {
    let mut stripes: Vec<u32> = keys.iter().map(|k| stripe(k)).collect();
    stripes.sort_unstable();
    stripes.dedup();
    let mut files = Vec::with_capacity(stripes.len());
    for s in stripes {
        let fd = openat(
            dir.as_fd(),
            format!("{s:02x}.lock"),
            OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )?;
        let file = File::from(fd);
        file.lock()?;
        files.push(file);
    }
    Ok(Guard { _files: files })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn dir() -> (tempfile::TempDir, Arc<OwnedFd>) {
        let dir = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        (dir, Arc::new(fd))
    }

    #[test]
    fn stripes_are_stable_and_bounded() {
        assert_eq!(stripe("mask/a"), stripe("mask/a"));
        let distinct: std::collections::HashSet<u32> =
            (0..10_000).map(|i| stripe(&format!("k{i}"))).collect();
        assert_eq!(distinct.len() as u32, STRIPES);
    }

    #[test]
    fn a_key_is_held_by_one_thread_at_a_time() {
        let (_tmp, dir) = dir();
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (dir, inside) = (Arc::clone(&dir), Arc::clone(&inside));
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _guard = lock(&dir, &["k"]).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn pairs_locked_in_both_orders_do_not_deadlock() {
        let (_tmp, dir) = dir();
        let (a, b) = ("x/1", "y/2");
        assert_ne!(stripe(a), stripe(b));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let dir = Arc::clone(&dir);
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        let keys = if i % 2 == 0 { [a, b] } else { [b, a] };
                        drop(lock(&dir, &keys).unwrap());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The same stripe twice is locked once (a second flock would wait on the first).
        drop(lock(&dir, &[a, a]).unwrap());
    }
}
