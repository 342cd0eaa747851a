//! The open file of a local read served under a kept verdict, for a caller that sends its
//! bytes without reading them (the gateway's `sendfile`): the file, the range read, and the
//! check that the bytes are still those the verdict was reached on.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use super::file_io::Vouched;

/// The open file of a local read whose version a caller's kept verdict vouches for (see
/// [`crate::Storage::read_stream_trusting`]), and the range the read asked for. The
/// caller may send the bytes straight from the file; before the last of them leaves, it
/// reads them into memory and calls [`TrustedFile::unchanged`] and, when that says no,
/// [`TrustedFile::confirm`]: bytes sent before a passing check were read before it.
pub struct TrustedFile {
    file: Arc<File>,
    range: Range<u64>,
    vouched: Vouched,
}

impl TrustedFile {
    pub(crate) fn new(file: Arc<File>, range: Range<u64>, vouched: Vouched) -> TrustedFile {
        TrustedFile {
            file,
            range,
            vouched,
        }
    }

    /// The open file, shared: it stays open as long as any holder keeps it.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// The byte range of the file the read asked for.
    pub fn range(&self) -> Range<u64> {
        self.range.clone()
    }

    /// Whether nothing changed the file since its version was named (one `fstat`).
    pub fn unchanged(&self) -> bool {
        self.vouched.stamp.still(&self.file)
    }

    /// Ok when the file did not change, or changed only in what does not touch its bytes
    /// (its name replaced or deleted) and, read again whole, still matches the checksum it
    /// was verified against; a whole file read when the stamp changed, so a blocking call.
    pub fn confirm(self) -> io::Result<()> {
        self.vouched.confirm(&self.file)
    }
}

impl std::fmt::Debug for TrustedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedFile")
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}
