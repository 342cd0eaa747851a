//! The open files of recently read objects, with what their attribute records said, so
//! that a read of a small object costs one `pread` from the kept descriptor and a check
//! of its path (an `O_PATH` open beneath the root, one `statx` of it, `close`) instead of
//! opening it beneath the root, `fstat`, `fgetxattr`, `pread`, `fstat` and `close`
//! (nginx's `open_file_cache`, without its time window).
//!
//! Every read through a kept file is revalidated, so that read-after-write and
//! read-after-delete hold exactly as without it: after the bytes are read from the kept
//! descriptor, the key's path opened beneath the root as every read opens it (`openat2`
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, here `O_PATH`) and one `statx` of it must
//! find the same device, inode, size, modification and status-change time (with their
//! nanoseconds) as the file had when it was opened; anything else drops the kept file and
//! the read is answered as if it had never been kept (opened beneath the root with no
//! symlink followed, which refuses what it refuses today). Why that is exact:
//!
//! - A file is kept only once its last change has settled ([`super::stamp`]): any change
//!   after it was opened gets a later status-change time, whatever else it keeps. A
//!   rewrite in place (even of the same size with the modification time set back), a
//!   truncation, a new attribute record (`setxattr`), a new hard link or a rename of the
//!   file itself all set it; so does `unlink` of one of its names.
//! - The check runs after the bytes are read: the file had the kept status at the
//!   `statx`, so no change touched it before then, so none before or while the bytes were
//!   read. The bytes are the kept file's own, read now (never a copy from earlier), and
//!   the attribute record kept with them is the one that file still holds.
//! - A key whose name now leads to another file (replaced by a rename, a new put, a
//!   folder or a symlink at its place, or deleted and written again) finds another inode,
//!   or none. The kept descriptor holds the old inode alive, so its number cannot be
//!   given to a new file while it is kept: a matching number is the same file.
//! - The check follows no symlink anywhere on the path, as the full open: a symlink
//!   swapped in for a folder on the path fails it even when it points at that very folder
//!   moved away (which keeps the file's status-change time), and the read is refused as
//!   the full open refuses it.
//! - The lock and temporary files live in the reserved folder, which no key can name.
//!
//! The names the check walks are pinned in the kernel's dentry cache by the kept
//! descriptor while they lead to it; on the caller's thread the check resolves only from
//! that cache (`RESOLVE_CACHED`: a replaced name the kernel let go is checked in a blocking
//! task), and the kept file's bytes are read as any cached read (`RWF_NOWAIT` on the
//! caller's thread, else in a blocking task).
//!
//! Bounds: at most [`MOST_KEPT`] files of at most [`KEPT_SIZE_MAX`] bytes, fewer where
//! the process may open few descriptors (an eighth of `RLIMIT_NOFILE`), replaced in CLOCK
//! order (a file read again since the hand last passed stays), so a client asking for a
//! million different keys turns the same few slots over. A kept file unused for
//! [`INACTIVE`] goes at the next read through the store (there is no timer): a file
//! another program deleted keeps its disk space until then, 128 MiB at most in all. The
//! store's own writes, renames and deletes drop the key's file at once.
//! The last close of a file another program deleted frees its blocks, which may wait for
//! the disk: a read that must not wait leaves that close to a blocking task ([`release`]).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use object_store::{Attributes, ObjectMeta};
use rustix::fs::{AtFlags, FileType, OFlags, StatxFlags};
use rustix::io::Errno;

use super::stamp::{FileStamp, SETTLED_AFTER};
use super::{UnreadableRecord, beneath};

/// The most files kept open.
pub(crate) const MOST_KEPT: usize = 512;

/// The largest file kept: the small objects whose open and record cost more than their
/// read, and a bound on the disk space deleted files can hold while kept (128 MiB).
pub(crate) const KEPT_SIZE_MAX: u64 = 256 * 1024;

/// How long a kept file may go unread before it is closed.
pub(crate) const INACTIVE: Duration = Duration::from_secs(30);

/// How often the kept files are swept for inactive ones, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What an object's open file says of it besides its bytes: its metadata and attribute
/// record.
#[derive(Debug, Clone)]
pub(crate) struct Described {
    pub(crate) meta: ObjectMeta,
    pub(crate) attributes: Attributes,
    /// The stored checksum, for a read that hashes as it reads.
    pub(crate) checksum: Option<String>,
    /// Why the record exists but cannot be read.
    pub(crate) unreadable: Option<UnreadableRecord>,
}

impl Described {
    /// A copy of what an answer carries (the stored checksum is for a read that hashes,
    /// which a kept file's read never is).
    pub(crate) fn for_answer(&self) -> Described {
        Described {
            meta: self.meta.clone(),
            attributes: self.attributes.clone(),
            checksum: None,
            unreadable: self.unreadable.clone(),
        }
    }
}

/// An object's open file, with its stamp and what it said when it was opened.
#[derive(Debug)]
pub(crate) struct OpenObject {
    pub(crate) file: File,
    /// Its stamp when it was opened (settled, see [`super::stamp`]).
    pub(crate) stamp: FileStamp,
    pub(crate) described: Described,
}

/// What the check of a kept file found at its key's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// This very file, unchanged since it was opened.
    Same,
    /// Another file, none, a symlink on the way, or this file changed.
    Changed,
    /// Not known without waiting for the disk (a name not in the dentry cache).
    Unknown,
}

impl OpenObject {
    /// Whether `path` beneath `root` is still this very file, unchanged since it was
    /// opened: the path opened beneath the root with no symlink followed (`O_PATH`; with
    /// `nowait`, only from the dentry cache) and one `statx` of what it found (see the
    /// module docs for why that is enough).
    pub(crate) fn still_at(&self, root: BorrowedFd<'_>, path: &str, nowait: bool) -> Found {
        let open = match nowait {
            true => beneath::open_cached,
            false => beneath::open,
        };
        let fd = match open(root, path, OFlags::PATH) {
            Ok(fd) => fd,
            Err(Errno::AGAIN) => return Found::Unknown,
            Err(_) => return Found::Changed,
        };
        match rustix::fs::statx(&fd, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS) {
            Ok(st)
                if FileType::from_raw_mode(st.stx_mode.into()) == FileType::RegularFile
                    && st.stx_mask & StatxFlags::BASIC_STATS.bits()
                        == StatxFlags::BASIC_STATS.bits()
                    && FileStamp::of_statx(&st) == self.stamp =>
            {
                Found::Same
            }
            _ => Found::Changed,
        }
    }
}

/// Where the last descriptor of a file no name leads to any more was closed: its inode and
/// the closing thread (tests: that such a close, which frees the file's blocks, does not
/// run on the thread of a read that must not wait for the disk).
#[cfg(test)]
pub(crate) static CLOSED_UNLINKED: Mutex<Vec<(u64, std::thread::ThreadId)>> =
    Mutex::new(Vec::new());

#[cfg(test)]
impl Drop for OpenObject {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(md) = self.file.metadata()
            && md.nlink() == 0
        {
            let closed = (md.ino(), std::thread::current().id());
            CLOSED_UNLINKED.lock().unwrap().push(closed);
        }
    }
}

/// The kept files, by key.
#[derive(Debug)]
pub(crate) struct OpenFiles {
    slots: Mutex<Slots>,
    capacity: usize,
    /// Reads answered from a kept file (tests: that the kept path was taken).
    #[cfg(test)]
    pub(crate) served: std::sync::atomic::AtomicUsize,
    /// How long ago a file's last change must lie for it to be kept: [`SETTLED_AFTER`].
    pub(crate) settle: Duration,
}

#[derive(Debug)]
struct Slots {
    index: HashMap<String, usize>,
    kept: Vec<Slot>,
    /// The CLOCK hand: the next slot considered for replacement.
    hand: usize,
    swept: Instant,
}

#[derive(Debug)]
struct Slot {
    key: String,
    object: Arc<OpenObject>,
    /// Read since the hand last passed.
    referenced: bool,
    used: Instant,
}

impl OpenFiles {
    /// Room for [`MOST_KEPT`] files, or an eighth of the descriptors the process may open
    /// when that is fewer.
    pub(crate) fn new() -> OpenFiles {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let share = limit.map_or(MOST_KEPT, |n| usize::try_from(n / 8).unwrap_or(MOST_KEPT));
        OpenFiles::with_capacity(MOST_KEPT.min(share))
    }

    /// Room for `capacity` files (none: nothing is kept).
    pub(crate) fn with_capacity(capacity: usize) -> OpenFiles {
        OpenFiles {
            slots: Mutex::new(Slots {
                index: HashMap::new(),
                kept: Vec::new(),
                hand: 0,
                swept: Instant::now(),
            }),
            capacity,
            #[cfg(test)]
            served: Default::default(),
            settle: SETTLED_AFTER,
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kept file of `key`, if any (not yet checked: see [`OpenObject::still_at`]);
    /// `nowait` as for [`release`].
    pub(crate) fn get(&self, key: &str, nowait: bool) -> Option<Arc<OpenObject>> {
        let now = Instant::now();
        let mut slots = self.slots();
        let gone = slots.sweep(now);
        let found = slots.index.get(key).copied().map(|at| {
            let slot = &mut slots.kept[at];
            slot.referenced = true;
            slot.used = now;
            Arc::clone(&slot.object)
        });
        drop(slots);
        // Closed outside the lock.
        release(gone, nowait);
        found
    }

    /// Keeps `object` as the file of `key`, in place of any other; `nowait` as for
    /// [`release`].
    pub(crate) fn keep(&self, key: &str, object: OpenObject, nowait: bool) {
        if self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        let object = Arc::new(object);
        let mut slots = self.slots();
        let gone = slots.sweep(now);
        let replaced = match slots.index.get(key).copied() {
            Some(at) => Some(std::mem::replace(&mut slots.kept[at].object, object)),
            None => slots.add(key, object, now, self.capacity),
        };
        drop(slots);
        release(gone.into_iter().chain(replaced), nowait);
    }

    /// Drops the kept file of `key`, if any; `nowait` as for [`release`].
    pub(crate) fn forget(&self, key: &str, nowait: bool) {
        let mut slots = self.slots();
        let gone = slots.index.get(key).copied().map(|at| slots.remove(at));
        drop(slots);
        release(gone, nowait);
    }

    /// How many files are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots().kept.len()
    }
}

/// Closes the files of `objects` that no one else holds. The last close of a file whose
/// every name was removed frees its blocks, a journal transaction that may wait for the
/// disk; with `nowait` (the caller is a read on a runtime's thread that must not wait)
/// that close runs in a blocking task. (A file whose last name goes between the check and
/// the close is closed here, as any file deleted while a read holds it open.)
pub(crate) fn release(objects: impl IntoIterator<Item = Arc<OpenObject>>, nowait: bool) {
    use std::os::unix::fs::MetadataExt;
    for object in objects {
        let Some(object) = Arc::into_inner(object) else {
            continue;
        };
        let unlinked = || object.file.metadata().is_ok_and(|md| md.nlink() == 0);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if nowait && unlinked() => {
                runtime.spawn_blocking(move || drop(object));
            }
            _ => drop(object),
        }
    }
}

impl Slots {
    /// Adds `object` as the file of the new key `key`, replacing the first slot the CLOCK
    /// hand finds unreferenced when all `capacity` are taken; the replaced file.
    fn add(
        &mut self,
        key: &str,
        object: Arc<OpenObject>,
        now: Instant,
        capacity: usize,
    ) -> Option<Arc<OpenObject>> {
        let slot = Slot {
            key: key.to_owned(),
            object,
            referenced: false,
            used: now,
        };
        if self.kept.len() < capacity {
            self.index.insert(slot.key.clone(), self.kept.len());
            self.kept.push(slot);
            return None;
        }
        loop {
            let at = self.hand % self.kept.len();
            self.hand = at + 1;
            if std::mem::take(&mut self.kept[at].referenced) {
                continue;
            }
            self.index.remove(&self.kept[at].key);
            self.index.insert(slot.key.clone(), at);
            return Some(std::mem::replace(&mut self.kept[at], slot).object);
        }
    }

    /// Removes the slot `at`; its file.
    fn remove(&mut self, at: usize) -> Arc<OpenObject> {
        let slot = self.kept.swap_remove(at);
        self.index.remove(&slot.key);
        if let Some(moved) = self.kept.get(at)
            && let Some(place) = self.index.get_mut(&moved.key)
        {
            *place = at;
        }
        slot.object
    }

    /// Removes the files unused for [`INACTIVE`], at most every [`SWEEP_EVERY`]; them.
    fn sweep(&mut self, now: Instant) -> Vec<Arc<OpenObject>> {
        if now.duration_since(self.swept) < SWEEP_EVERY {
            return Vec::new();
        }
        self.swept = now;
        let mut gone = Vec::new();
        let mut at = 0;
        while at < self.kept.len() {
            if now.duration_since(self.kept[at].used) >= INACTIVE {
                gone.push(self.remove(at));
            } else {
                at += 1;
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests;
