//! Serving a verified local object with the kernel's `sendfile`: the file's bytes go from
//! the page cache to the socket without passing through the gateway's memory.
//!
//! hyper stays the only HTTP framer. The response body carries, in place of the file's
//! bytes, placeholders: slices of one zeroed region ([`hole`]) of the lengths to send, each
//! registered first, with the open file and the offset its bytes come from, in the
//! connection's [`Sendfile`] queue. hyper queues body buffers without copying them when
//! the connection's IO writes vectored (its `WriteStrategy::Queue`), so the IO
//! ([`crate::server`]'s `StallGuard`) sees the placeholder by its address: it writes what
//! comes before it (the head) as usual, and the placeholder's registered range with
//! `sendfile`, reporting the bytes sent so hyper advances. A placeholder with no matching
//! registered frame fails the connection: zeros never reach the wire.
//!
//! The last bytes of a body are real ones: once every placeholder before them has been
//! sent, they are read from the file and the file is checked unchanged since its version
//! was verified ([`TrustedFile::unchanged`], else [`TrustedFile::confirm`]), so every byte
//! of the answer was read before a passing check, as on the streamed path. A file that
//! ends early (truncated while it is sent) fails the connection.
//!
//! What `sendfile` gives up against the streamed path (nginx gives up the same): the
//! kernel hands the page cache's pages to the socket, so bytes still in the socket's send
//! queue when the check passed (at most its send buffer) go out as the file holds them
//! when they are transmitted; a program rewriting the file in place in that instant can
//! change them. And `sendfile` of a file not in the page cache waits for the disk on the
//! runtime's thread (the streamed path reads in a blocking task).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::Stream;
use maskstore_backends::TrustedFile;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::objects::budget::{MemoryBudget, Reserved};

/// The longest placeholder: 1 MiB.
const HOLE_LEN: usize = 1024 * 1024;

/// The bytes at a body's end read into memory before the file is checked unchanged.
const TAIL: u64 = 4096;

/// The most a `sendfile` body holds in memory (its tail), what it reserves of the download
/// memory budget: the file's bytes before the tail never pass through the gateway.
pub(crate) const SENDFILE_HELD: u64 = TAIL;

/// Bodies of this many bytes or more are sent with `sendfile`; smaller ones are read and
/// written, which costs less than a second system call and the wait for the tail check.
pub(crate) const SENDFILE_FROM: u64 = 64 * 1024;

/// The zeroed region placeholders point into: allocated zeroed (pages the kernel maps on
/// first touch, and nothing touches them), never written, never sent.
fn hole() -> &'static [u8] {
    static HOLE: OnceLock<&'static [u8]> = OnceLock::new();
    HOLE.get_or_init(|| Box::leak(vec![0u8; HOLE_LEN].into_boxed_slice()))
}

/// Where `buf` starts within the placeholder region, if it lies there.
pub(crate) fn hole_offset(buf: &[u8]) -> Option<usize> {
    let base = hole().as_ptr() as usize;
    let at = (buf.as_ptr() as usize).checked_sub(base)?;
    (!buf.is_empty() && at < HOLE_LEN).then_some(at)
}

/// A placeholder's registered bytes: `len` bytes of `file` at `offset`, `sent` of them
/// written so far.
struct Frame {
    file: Arc<File>,
    offset: u64,
    len: usize,
    sent: usize,
}

#[derive(Default)]
struct Frames {
    queue: VecDeque<Frame>,
    /// The body waiting for every frame to be sent.
    drained: Option<Waker>,
}

/// One connection's placeholders still to send, in the order hyper writes them (a
/// connection writes one response at a time): shared by its IO and, through a request
/// extension, by the bodies of its responses.
#[derive(Clone, Default)]
pub(crate) struct Sendfile(Arc<Mutex<Frames>>);

impl std::fmt::Debug for Sendfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sendfile").finish_non_exhaustive()
    }
}

fn unmatched() -> io::Error {
    io::Error::other("a body placeholder without its registered file range: connection cut")
}

impl Sendfile {
    fn lock(&self) -> std::sync::MutexGuard<'_, Frames> {
        // A frame queue is consistent between any two statements.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `len` bytes of `file` at `offset` and returns their placeholder.
    fn register(&self, file: &Arc<File>, offset: u64, len: usize) -> Bytes {
        self.lock().queue.push_back(Frame {
            file: Arc::clone(file),
            offset,
            len,
            sent: 0,
        });
        Bytes::from_static(&hole()[..len])
    }

    /// Ready once every registered frame was sent.
    fn poll_drained(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut frames = self.lock();
        if frames.queue.is_empty() {
            return Poll::Ready(());
        }
        frames.drained = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Writes the placeholder `buf` (see [`hole_offset`]) to `stream` as the file bytes it
    /// stands for: `sendfile` from the front frame, continuing where the last write ended.
    pub(crate) fn poll_send(
        &self,
        stream: &TcpStream,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut frames = self.lock();
        let Some(frame) = frames.queue.front_mut() else {
            return Poll::Ready(Err(unmatched()));
        };
        if hole_offset(buf) != Some(frame.sent) || buf.len() != frame.len - frame.sent {
            return Poll::Ready(Err(unmatched()));
        }
        let sent = loop {
            std::task::ready!(stream.poll_write_ready(cx))?;
            let mut offset = frame.offset + frame.sent as u64;
            let sent = stream.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(stream, &*frame.file, Some(&mut offset), buf.len())
                    .map_err(io::Error::from)
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => break other?,
            }
        };
        if sent == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended before the length served (truncated while it was sent): connection cut",
            )));
        }
        metrics::counter!(crate::GATEWAY_SENDFILE_BYTES_TOTAL).increment(sent as u64);
        frame.sent += sent;
        if frame.sent == frame.len {
            frames.queue.pop_front();
            if frames.queue.is_empty()
                && let Some(waker) = frames.drained.take()
            {
                waker.wake();
            }
        }
        Poll::Ready(Ok(sent))
    }
}

/// Writes `bufs`, the head before a placeholder, to `stream` with `MSG_MORE`: the kernel
/// holds them back to go out in one segment with the file bytes that follow, as nginx's
/// `tcp_nopush` does (a head sent alone costs the client a wake-up of its own).
pub(crate) fn poll_head(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    use rustix::net::{SendAncillaryBuffer, SendFlags, sendmsg};
    loop {
        std::task::ready!(stream.poll_write_ready(cx))?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            let mut control = SendAncillaryBuffer::default();
            sendmsg(
                stream,
                bufs,
                &mut control,
                SendFlags::MORE | SendFlags::NOSIGNAL,
            )
            .map_err(io::Error::from)
        });
        match sent {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return Poll::Ready(other),
        }
    }
}

/// What the whole-file check of a changed file reads at a time: the local provider's read
/// chunk, reserved in the download budget while the check runs.
const CONFIRM_HELD: u64 = 1024 * 1024;

/// Where a `sendfile` body reserves the memory of a whole-file check when its file changed
/// (beyond the tail it holds from the start): the download budget, in its client's share.
pub(crate) struct Room {
    budget: MemoryBudget,
    client: Option<std::net::IpAddr>,
}

impl Room {
    pub(crate) fn new(budget: &MemoryBudget, client: Option<std::net::IpAddr>) -> Room {
        Room {
            budget: budget.clone(),
            client,
        }
    }
}

/// What a `sendfile` body still has to do.
struct Body {
    sendfile: Sendfile,
    file: Arc<File>,
    /// Checks the file before the tail; taken then.
    trusted: Option<TrustedFile>,
    pos: u64,
    tail_from: u64,
    end: u64,
    deadline: Instant,
    _permit: Reserved,
    room: Room,
}

/// The body of `trusted`'s range sent with `sendfile` on the connection of `sendfile`:
/// placeholders up to the tail, then the tail read and checked. Like the streamed body,
/// it fails once `deadline` passes, and holds `permit` (its tail's room) until hyper drops
/// it; a whole-file check reserves its read in `room` first.
pub(crate) fn body(
    trusted: TrustedFile,
    sendfile: Sendfile,
    deadline: Instant,
    (permit, room): (Reserved, Room),
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let range = trusted.range();
    let state = Body {
        sendfile,
        file: Arc::clone(trusted.file()),
        trusted: Some(trusted),
        pos: range.start,
        tail_from: range.end.saturating_sub(TAIL).max(range.start),
        end: range.end,
        deadline,
        _permit: permit,
        room,
    };
    futures::stream::try_unfold(state, |mut body| async move {
        if body.pos >= body.end {
            return Ok(None);
        }
        if Instant::now() > body.deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the download took longer than gateway.request_timeout",
            ));
        }
        let chunk = if body.pos < body.tail_from {
            let len = (body.tail_from - body.pos).min(HOLE_LEN as u64) as usize;
            let placeholder = body.sendfile.register(&body.file, body.pos, len);
            body.pos += len as u64;
            placeholder
        } else {
            let tail = tail(&mut body).await?;
            body.pos = body.end;
            tail
        };
        Ok(Some((chunk, body)))
    })
}

/// The body's last bytes, read once every placeholder before them was sent, and given
/// only when the file is still the version verified.
async fn tail(body: &mut Body) -> io::Result<Bytes> {
    std::future::poll_fn(|cx| body.sendfile.poll_drained(cx)).await;
    let mut tail = vec![0u8; (body.end - body.pos) as usize];
    body.file.read_exact_at(&mut tail, body.pos)?;
    let trusted = body.trusted.take().ok_or_else(unmatched)?;
    if !trusted.unchanged() {
        // Its name replaced or deleted, or the file rewritten: the whole open file is
        // checked against its checksum (a blocking read, of a chunk at a time).
        let Room { budget, client } = &body.room;
        let _held = budget.reserve(CONFIRM_HELD, *client).await.map_err(|_| {
            io::Error::other(
                "no room in the download memory to check a changed file: connection cut",
            )
        })?;
        tokio::task::spawn_blocking(move || trusted.confirm())
            .await
            .map_err(io::Error::other)??;
    }
    Ok(Bytes::from(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    async fn send(sendfile: &Sendfile, stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| sendfile.poll_send(stream, cx, buf)).await
    }

    #[tokio::test]
    async fn a_placeholder_is_sent_as_its_file_bytes_and_never_as_zeros() {
        use tokio::io::AsyncReadExt;
        let (mut client, server) = pair().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let sendfile = Sendfile::default();
        // Nothing registered: no byte goes out.
        let unregistered = send(&sendfile, &server, &hole()[..4]).await;
        assert!(unregistered.is_err(), "{unregistered:?}");
        let placeholder = sendfile.register(&file, 2, 4);
        assert_eq!(hole_offset(&placeholder), Some(0));
        // Not where the front frame continues: refused.
        assert!(send(&sendfile, &server, &hole()[1..4]).await.is_err());
        assert!(send(&sendfile, &server, &hole()[..3]).await.is_err());
        assert_eq!(send(&sendfile, &server, &placeholder).await.unwrap(), 4);
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"2345");
        // A frame past the file's end (truncated meanwhile): an error, not zeros.
        let past = sendfile.register(&file, 8, 4);
        assert_eq!(send(&sendfile, &server, &past).await.unwrap(), 2);
        let rest = send(&sendfile, &server, &past[2..]).await;
        assert_eq!(rest.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn only_slices_of_the_hole_are_placeholders() {
        assert_eq!(hole_offset(&hole()[5..9]), Some(5));
        assert_eq!(hole_offset(&hole()[5..5]), None);
        assert_eq!(hole_offset(&[0u8; 16]), None);
        assert_eq!(hole_offset(&vec![0u8; HOLE_LEN]), None);
    }
}
