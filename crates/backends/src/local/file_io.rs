//! Reading a local object's open file: streamed in large chunks, or copied file to file by
//! the kernel.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::stamp::FileStamp;

/// Chunk size of streamed local reads: object_store reads files 8 KiB at a time, one
/// blocking task each, which caps a 1 GiB download far below the disk's speed.
const FILE_READ_CHUNK: u64 = 1024 * 1024;

/// A local file's `range` as a stream of 1 MiB chunks, each read in a blocking task. With
/// `vouched` (a version served under a kept verdict, not hashed as it is read), the last
/// chunk is read and then held back until the file is found to still have the stamp, else
/// the stream ends in an error instead: bytes read while another program rewrote the file
/// in place are never all served under the stamp's verdict (see [`super::stamp`]).
pub(crate) fn stamped_file_stream(
    file: Arc<std::fs::File>,
    range: Range<u64>,
    vouched: Option<Vouched>,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    futures::stream::try_unfold(
        (file, range.start, range.end, vouched),
        |(file, pos, end, mut vouched)| async move {
            if pos >= end {
                return Ok(None);
            }
            let len = (end - pos).min(FILE_READ_CHUNK) as usize;
            let next = pos + len as u64;
            let check = if next == end { vouched.take() } else { None };
            // A blocking task even for cached data: a 1 MiB copy on the caller's thread,
            // into a pooled buffer or a zeroed fresh one, halved the gateway's rate of
            // 1 MiB GETs at 32 clients (BENCHMARKS.md, issue 30).
            let (file, buf) = tokio::task::spawn_blocking(move || {
                let buf = read_chunk(&file, pos, len)?;
                if let Some(check) = check {
                    check.confirm(&file)?;
                }
                Ok::<_, std::io::Error>((file, Bytes::from(buf)))
            })
            .await?
            .map_err(|e| {
                object_store::Error::from(super::LocalError::io("(a streamed read)", e))
            })?;
            Ok(Some((buf, (file, next, end, vouched))))
        },
    )
    .boxed()
}

/// What a stream of a version served under a kept verdict checks before its last chunk:
/// the file's stamp, and, when the stamp changed, the whole file it holds open against the
/// checksum it was verified against.
pub(crate) struct Vouched {
    pub(crate) stamp: FileStamp,
    pub(crate) verifier: Option<crate::checksum::Verifier>,
}

impl Vouched {
    /// Ok when the open `file` did not change since its stamp was taken, or changed only
    /// in what does not touch its bytes (the name replaced or deleted, which sets the
    /// status-change time of the file still open) and its bytes still match the checksum
    /// (read again whole: a change of the data is caught, unless undone byte for byte
    /// before this check).
    pub(crate) fn confirm(self, file: &std::fs::File) -> std::io::Result<()> {
        if self.stamp.still(file) {
            return Ok(());
        }
        let changed = || {
            std::io::Error::other(
                "the file changed while it was read (rewritten in place by another program)",
            )
        };
        let mut verifier = self.verifier.ok_or_else(changed)?;
        let size = self.stamp.size();
        let mut pos = 0;
        while pos < size {
            let len = (size - pos).min(FILE_READ_CHUNK) as usize;
            verifier.update(&read_chunk(file, pos, len)?);
            pos += len as u64;
        }
        if file.metadata()?.len() != size {
            return Err(changed());
        }
        verifier.finish().map_err(|_| changed())
    }
}

/// Reads `len` bytes at `pos` into a buffer that is never zeroed first (`pread` straight
/// into the vector's spare capacity: no memset, no probing read at the end, one system
/// call for a file in the page cache); a short file is an error.
pub(crate) fn read_chunk(file: &std::fs::File, pos: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    read_into(file, pos, len, &mut buf)?;
    Ok(buf)
}

/// Reads `len` bytes at `pos` only if they are all in the page cache (`RWF_NOWAIT`), so
/// the caller's thread never waits for the disk: `None` otherwise. A short file is an
/// error. Reads above [`POOLED_FROM`] bytes (up to [`POOLED_SIZE`]) go into a reused
/// buffer (see [`Pooled`]): `RWF_NOWAIT` reads only into initialised memory, and zeroing a
/// fresh 1 MiB buffer first cost about 27 µs per read here, a third of the whole read.
pub(crate) fn read_nowait(
    file: &std::fs::File,
    pos: u64,
    len: usize,
) -> std::io::Result<Option<Bytes>> {
    use rustix::io::{Errno, ReadWriteFlags};
    let mut pooled = Pooled::take(len);
    let buf = &mut pooled.buf[..len];
    let mut done = 0;
    while done < len {
        let mut slices = [std::io::IoSliceMut::new(&mut buf[done..])];
        match rustix::io::preadv2(file, &mut slices, pos + done as u64, ReadWriteFlags::NOWAIT) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file ended {} bytes early", len - done),
                ));
            }
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            // Not cached, or no `RWF_NOWAIT` here: the blocking read answers.
            Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    pooled.len = len;
    Ok(Some(pooled.into_bytes()))
}

/// Reads above this size borrow a pooled buffer instead of zeroing a new one.
const POOLED_FROM: usize = 64 * 1024;
/// The size of a pooled buffer: the largest read answered without a blocking task.
const POOLED_SIZE: usize = 1024 * 1024;
/// Pooled buffers kept when idle at most (4 MiB).
const POOL_MAX: usize = 4;
/// Initialised buffers of [`POOLED_SIZE`] bytes, free to reuse.
static POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// A read's buffer: fresh, or borrowed from [`POOL`] and given back when the last `Bytes`
/// of it is dropped. Only its first `len` bytes (all overwritten by the read) are ever
/// handed out; what a previous read left beyond them is never shown.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
}

impl Pooled {
    fn take(len: usize) -> Pooled {
        let buf = if len > POOLED_FROM && len <= POOLED_SIZE {
            let reused = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
            reused.unwrap_or_else(|| vec![0u8; POOLED_SIZE])
        } else {
            vec![0u8; len]
        };
        Pooled { buf, len: 0 }
    }

    fn into_bytes(self) -> Bytes {
        if self.buf.len() == POOLED_SIZE && self.len > POOLED_FROM {
            Bytes::from_owner(self)
        } else {
            let mut this = self;
            let mut buf = std::mem::take(&mut this.buf);
            buf.truncate(this.len);
            Bytes::from(buf)
        }
    }
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if self.buf.len() == POOLED_SIZE {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < POOL_MAX {
                pool.push(std::mem::take(&mut self.buf));
            }
        }
    }
}

/// Block by block: what [`read_whole`] reads and then hashes at a time, small enough to be
/// still in the CPU's cache when it is hashed.
const HASH_BLOCK: usize = 256 * 1024;

/// Whole reads at least this large go into memory of their own, mapped for the read and
/// advised into huge pages (see [`read_whole`]).
pub(crate) const HUGE_FROM: usize = 2 * 1024 * 1024;

/// What [`read_whole`] hands each block to as soon as it is read (the checksum).
pub(crate) type BlockSink<'a> = &'a mut dyn FnMut(&[u8]);

/// Reads `len` bytes at `pos` into memory, handing each block of [`HASH_BLOCK`] bytes to
/// `hash` right after it is read, while it is still in the CPU's cache (a pass over cold
/// memory after the read cost more than the hash itself); a short file is an error.
///
/// From [`HUGE_FROM`] bytes the buffer is anonymous memory of its own advised into
/// transparent huge pages (`MADV_HUGEPAGE`): what a large read into fresh memory mostly
/// waits for is the kernel faulting in and zeroing one 4 KiB page at a time (16,384 faults
/// per 64 MiB), and a 2 MiB page costs one fault. The memory goes back to the kernel when
/// the last [`Bytes`] of it is dropped. Where huge pages are off the advice is refused and
/// the read proceeds with small pages.
pub(crate) fn read_whole(
    file: &std::fs::File,
    pos: u64,
    len: usize,
    mut hash: Option<BlockSink<'_>>,
) -> std::io::Result<Bytes> {
    let mut fill = |buf: &mut [u8]| -> std::io::Result<()> {
        let mut at = pos;
        for block in buf.chunks_mut(HASH_BLOCK) {
            read_exact_at(file, block, at, len as u64 - (at - pos))?;
            at += block.len() as u64;
            if let Some(hash) = hash.as_mut() {
                hash(block);
            }
        }
        Ok(())
    };
    if len < HUGE_FROM {
        let buf = read_chunk(file, pos, len)?;
        if let Some(hash) = hash {
            buf.chunks(HASH_BLOCK).for_each(hash);
        }
        return Ok(Bytes::from(buf));
    }
    let mut buf = memmap2::MmapMut::map_anon(len)?;
    // Refused where transparent huge pages are compiled out: small pages then.
    let _ = buf.advise(memmap2::Advice::HugePage);
    fill(&mut buf)?;
    Ok(Bytes::from_owner(buf))
}

/// Fills `block` from `file` at `at`; `left` (the bytes the whole read still expects)
/// names how early a short file ended.
fn read_exact_at(
    file: &std::fs::File,
    block: &mut [u8],
    at: u64,
    left: u64,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < block.len() {
        match file.read_at(&mut block[done..], at + done as u64) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file ended {} bytes early", left - done as u64),
                ));
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Appends `len` bytes of `file` at `pos` to `buf` (into its spare capacity, grown only
/// if too small); a short file is an error.
fn read_into(file: &std::fs::File, pos: u64, len: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let start = buf.len();
    buf.reserve(len);
    while buf.len() - start < len {
        let done = buf.len() - start;
        let n = rustix::io::retry_on_intr(|| {
            rustix::io::pread(file, rustix::buffer::spare_capacity(buf), pos + done as u64)
        })?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the file ended {} bytes early", len - done),
            ));
        }
    }
    // The spare capacity may have been larger than the range: what lies past it goes.
    buf.truncate(start + len);
    Ok(())
}

/// Checks that the operator's file `source`, of which the `before.len()` bytes its size
/// gave were stored, did not change meanwhile and has nothing past them: a file that grew,
/// was rewritten, or reads more than its size says (files under /proc and /sys say 0 or
/// 4096) would otherwise be stored cut short, reported as a success.
pub(crate) fn source_unchanged(
    source: &std::fs::File,
    before: &std::fs::Metadata,
) -> std::io::Result<()> {
    let after = source.metadata()?;
    if after.len() != before.len() || after.modified().ok() != before.modified().ok() {
        return Err(std::io::Error::other(
            "the file changed while it was being stored; store it again once nothing writes \
             to it",
        ));
    }
    let mut probe = [0u8; 1];
    let past = rustix::io::retry_on_intr(|| rustix::io::pread(source, &mut probe, before.len()))?;
    if past > 0 {
        return Err(std::io::Error::other(format!(
            "the file reads past its size of {} bytes (it grew, or it is a /proc or /sys \
             file whose size says nothing of its content); stream it instead: \
             `maskstore put - KEY < FILE`",
            before.len()
        )));
    }
    Ok(())
}

/// Bytes the kernel copies between progress reports when a local object is copied into a file.
const FILE_COPY_STEP: u64 = 64 * 1024 * 1024;

/// Copies `range` of a local object's file into `dest` in the kernel (`copy_file_range`
/// where the file system has it, as `cp` does), reporting progress every 64 MiB.
pub(crate) fn copy_file_range(
    source: &std::fs::File,
    range: Range<u64>,
    mut dest: &std::fs::File,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut source = source;
    source.seek(SeekFrom::Start(range.start))?;
    let total = range.end - range.start;
    let mut copied = 0;
    while copied < total {
        let step = (total - copied).min(FILE_COPY_STEP);
        let n = std::io::copy(&mut source.take(step), &mut dest)?;
        if n < step {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the object's file ended {} bytes early", total - copied - n),
            ));
        }
        copied += n;
        progress(copied, total);
    }
    Ok(copied)
}

/// Bytes the hashing thread of [`copy_hashing`] reads at a time (one buffer, reused).
const HASH_STEP: usize = 1024 * 1024;

/// Copies `range` of a local object's file into `dest` in the kernel, as
/// [`copy_file_range`] does, while a second thread reads the same range (from the page
/// cache) and hands it to `inspect` (the checksum): the copy and the hash overlap instead
/// of one thread reading, hashing and writing in turn. A failed read of the object by the
/// hashing thread is `Ok(Err(_))`, a failed copy `Err(_)`.
pub(crate) fn copy_hashing(
    source: &std::fs::File,
    range: Range<u64>,
    dest: &std::fs::File,
    inspect: &mut (dyn FnMut(&[u8]) + Send),
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> std::io::Result<std::io::Result<u64>> {
    std::thread::scope(|scope| {
        let hashing = std::thread::Builder::new()
            .name("maskstore-hash".into())
            .spawn_scoped(scope, {
                let range = range.clone();
                move || -> std::io::Result<()> {
                    let mut buf = Vec::with_capacity(HASH_STEP);
                    let mut at = range.start;
                    while at < range.end {
                        let step = (range.end - at).min(HASH_STEP as u64) as usize;
                        buf.clear();
                        read_into(source, at, step, &mut buf)?;
                        inspect(&buf);
                        at += step as u64;
                    }
                    Ok(())
                }
            })?;
        let copied = copy_file_range(source, range, dest, progress);
        let hashed = hashing
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the hashing thread panicked")));
        let copied = copied?;
        Ok(hashed.map(|()| copied))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(dir: &tempfile::TempDir, name: &str, body: &[u8]) -> std::fs::File {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::File::open(path).unwrap()
    }

    #[test]
    fn pooled_reads_show_only_their_own_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let big = file_of(&dir, "big", &vec![0xAA; POOLED_SIZE]);
        let small = file_of(&dir, "small", &vec![0x55; POOLED_FROM + 10]);
        for _ in 0..POOL_MAX + 2 {
            // Cached (just written), unless RWF_NOWAIT is missing here.
            let Some(first) = read_nowait(&big, 0, POOLED_SIZE).unwrap() else {
                return;
            };
            assert!(first.iter().all(|&b| b == 0xAA));
            drop(first);
            let second = read_nowait(&small, 0, POOLED_FROM + 10).unwrap().unwrap();
            assert_eq!(second.len(), POOLED_FROM + 10);
            assert!(
                second.iter().all(|&b| b == 0x55),
                "a previous read shows through"
            );
            let offset = read_nowait(&small, 7, 100).unwrap().unwrap();
            assert_eq!(&offset[..], &vec![0x55; 100][..]);
        }
        assert!(POOL.lock().unwrap().len() <= POOL_MAX);
    }

    #[test]
    fn large_whole_reads_in_their_own_memory_are_exact_and_hashed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..HUGE_FROM * 3 / 2 + 5)
            .map(|i| (i % 251) as u8)
            .collect();
        let file = file_of(&dir, "big", &body);
        let mut seen = Vec::new();
        let data = read_whole(
            &file,
            3,
            body.len() - 3,
            Some(&mut |b| seen.extend_from_slice(b)),
        )
        .unwrap();
        assert_eq!(&data[..], &body[3..]);
        assert_eq!(seen, &body[3..]);
        // A file longer than the read (it grew since its size was taken): exactly the
        // bytes asked for, on both paths.
        for len in [HUGE_FROM - 1, HUGE_FROM] {
            let data = read_whole(&file, 0, len, None).unwrap();
            assert_eq!(&data[..], &body[..len]);
        }
        // Past the end on the same path: an error naming how much was missing.
        let err = read_whole(&file, 7, body.len(), None).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
        assert!(err.to_string().contains("7 bytes early"), "{err}");
    }

    #[test]
    fn short_files_are_errors_on_every_read_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_of(&dir, "f", b"0123456789");
        assert_eq!(read_chunk(&file, 2, 5).unwrap(), b"23456");
        for result in [
            read_chunk(&file, 4, 10).map(|_| ()),
            read_whole(&file, 4, 10, Some(&mut |_| {})).map(|_| ()),
            read_nowait(&file, 4, 10).map(|_| ()),
        ] {
            let err = result.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
        }
        let mut seen = Vec::new();
        let data = read_whole(&file, 1, 8, Some(&mut |b| seen.extend_from_slice(b))).unwrap();
        assert_eq!(
            (&data[..], seen.as_slice()),
            (&b"12345678"[..], &b"12345678"[..])
        );
    }
}
