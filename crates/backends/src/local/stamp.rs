//! What tells the bytes of a local file apart from any other bytes it held or will hold,
//! for a caller that keeps a verdict on them (the gateway verifies a version once and then
//! serves it without hashing it again).
//!
//! The etag is not enough: it is inode, modification time, size and the generation kept
//! in the attribute record, and another program can rewrite a file in place without
//! changing any of them (`rsync --inplace --times` sets the modification time back; a
//! same-size write within one tick of the file system's clock leaves it as it was; the
//! attribute record is not touched by a write). The stamp adds the status-change time
//! (`ctime`), which the kernel sets on every change of the data or the attributes (a
//! write, a truncation, `utimensat`, a new attribute record) and which no system call lets
//! a program set back.
//!
//! A tick of the file system's clock can still hide a change: two writes within one tick
//! leave the same `ctime`. So a stamp is given only for a file whose last change lies
//! [`SETTLED_AFTER`] or more in the past when it is opened: any later change then gets a
//! later `ctime`, so a different stamp. (What it cannot see: a clock set back by the
//! administrator to that very tick, and file systems that do not keep `ctime`, such as
//! some FUSE mounts; the local root is meant to be an ordinary disk file system.) A file
//! changed more recently has no stamp, and its reads are verified every time, until it
//! has settled.

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

/// How long ago a file's last change must lie for its stamp to be given: more than the
/// coarsest timestamp granularity of the file systems Linux mounts (2 s, FAT), plus the
/// lag of the kernel's coarse clock.
pub(crate) const SETTLED_AFTER: Duration = Duration::from_secs(3);

/// Marks a read (in `GetOptions::extensions`) whose caller wants the file's [`FileStamp`]
/// in the answer's extensions: given only when the file has settled, and for data read in
/// the call that opened the file, only when the file did not change while it was read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WantStamp;

/// Device, inode, size, modification and status-change times of an open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    /// The stamp of a file with metadata `md`, `None` when its last change is less than
    /// [`SETTLED_AFTER`] before `now` (or after it: a clock that went back).
    pub(crate) fn settled(md: &Metadata, now: SystemTime) -> Option<FileStamp> {
        FileStamp::settled_after(md, now, SETTLED_AFTER)
    }

    /// [`FileStamp::settled`] with `after` in place of [`SETTLED_AFTER`] (tests of what
    /// keeps stamps shorten it).
    pub(crate) fn settled_after(
        md: &Metadata,
        now: SystemTime,
        after: Duration,
    ) -> Option<FileStamp> {
        let changed = SystemTime::UNIX_EPOCH.checked_add(Duration::new(
            u64::try_from(md.ctime()).ok()?,
            u32::try_from(md.ctime_nsec()).ok()?,
        ))?;
        let age = now.duration_since(changed).ok()?;
        (age >= after).then(|| FileStamp::of(md))
    }

    pub(crate) fn of(md: &Metadata) -> FileStamp {
        FileStamp {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }

    /// The stamp of what `statx` (`STATX_BASIC_STATS`) found, equal to [`FileStamp::of`]
    /// the same file's metadata (std's metadata is `statx` too, its device `makedev`).
    pub(crate) fn of_statx(st: &rustix::fs::Statx) -> FileStamp {
        FileStamp {
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            size: st.stx_size,
            mtime: (st.stx_mtime.tv_sec, i64::from(st.stx_mtime.tv_nsec)),
            ctime: (st.stx_ctime.tv_sec, i64::from(st.stx_ctime.tv_nsec)),
        }
    }

    /// The file's size when the stamp was taken.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Whether `file` still has this stamp: nothing changed it since the stamp was taken.
    pub(crate) fn still(&self, file: &File) -> bool {
        file.metadata().is_ok_and(|md| FileStamp::of(&md) == *self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    #[test]
    fn a_file_changed_just_now_has_no_stamp_and_any_change_breaks_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        std::fs::write(&path, b"0123456789").unwrap();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let md = file.metadata().unwrap();
        assert_eq!(FileStamp::settled(&md, SystemTime::now()), None);
        let later = SystemTime::now() + SETTLED_AFTER + Duration::from_secs(1);
        let stamp = FileStamp::settled(&md, later).expect("settled by then");
        assert!(stamp.still(&file));
        // Past a tick of the coarsest kernel clock, as a later writer would be.
        std::thread::sleep(Duration::from_millis(20));
        // A same-size rewrite in place, with the modification time set back: only the
        // status-change time tells.
        file.rewind().unwrap();
        file.write_all(b"0123456780").unwrap();
        file.set_modified(md.modified().unwrap()).unwrap();
        let now = file.metadata().unwrap();
        assert_eq!(
            (now.len(), now.ino(), now.modified().unwrap()),
            (md.len(), md.ino(), md.modified().unwrap())
        );
        assert!(!stamp.still(&file), "an in-place rewrite kept the stamp");
    }
}
