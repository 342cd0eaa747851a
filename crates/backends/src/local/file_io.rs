//! Reading a local object's open file: streamed in large chunks, or copied file to file by
//! the kernel.

use std::ops::Range;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

/// Chunk size of streamed local reads: object_store reads files 8 KiB at a time, one
/// blocking task each, which caps a 1 GiB download far below the disk's speed.
const FILE_READ_CHUNK: u64 = 1024 * 1024;

/// A local file's `range` as a stream of 1 MiB chunks, each read in a blocking task.
pub(crate) fn file_stream(
    file: std::fs::File,
    range: Range<u64>,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    futures::stream::try_unfold(
        (file, range.start, range.end),
        |(file, pos, end)| async move {
            if pos >= end {
                return Ok(None);
            }
            let len = (end - pos).min(FILE_READ_CHUNK) as usize;
            let (file, buf) = tokio::task::spawn_blocking(move || {
                read_chunk(&file, pos, len).map(|buf| (file, buf))
            })
            .await?
            .map_err(|e| {
                object_store::Error::from(super::LocalError::io("(a streamed read)", e))
            })?;
            Ok(Some((Bytes::from(buf), (file, pos + len as u64, end))))
        },
    )
    .boxed()
}

/// Reads `len` bytes at `pos` into a buffer that is never zeroed first (reading into
/// uninitialised capacity saves a memset of every chunk); a short file is an error.
fn read_chunk(file: &std::fs::File, pos: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = file;
    file.seek(SeekFrom::Start(pos))?;
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the file ended {} bytes early", len - buf.len()),
        ));
    }
    Ok(buf)
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
