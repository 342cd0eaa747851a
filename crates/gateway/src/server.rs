//! Serving a router until a shutdown signal, and the accept loop behind it: a connection
//! cap and each client's share of it that refuse the excess at once, connections reserved
//! for `/health` and `/metrics`, a first-byte and hyper's header-read timeout, a
//! write-stall timeout, and a shutdown deadline after which requests still in flight are
//! dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use futures::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::reply::Unsigned;
use crate::routers::Routes;
use crate::sendfile::{Sendfile, hole_offset, poll_head};
use crate::shares::{ClientShares, Share, client_key, is_trusted};
use crate::{GatewayError, Limits};

/// The most a connection's read buffer grows to: a request head must fit, so this bounds
/// the headers and the URI (well above [`maskstore_backends::signing::MAX_QUERY_BYTES`],
/// so an oversize query is answered 414 by the gateway rather than cut off by hyper).
const MAX_CONNECTION_BUFFER: usize = 128 * 1024;

/// What an excess connection is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 64\r\n\r\nthe gateway serves its maximum of connections; try again shortly\n";

/// Serves `router` on `listener` with the default [`Limits`] until `shutdown` completes,
/// then gives the requests in flight the shutdown grace to finish.
pub async fn serve(
    listener: TcpListener,
    routes: impl Into<Routes>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    serve_with_limits(listener, routes, &Limits::default(), shutdown).await
}

/// Serves `router` on `listener` until `shutdown` completes: at most
/// `limits.max_connections` connections (the excess is answered 503 and closed), headers
/// within `limits.header_timeout`, writes that stall no longer than
/// `limits.body_idle_timeout`. After `shutdown`, requests in flight get
/// `limits.shutdown_grace` to finish and are then dropped (an unfinished upload leaves
/// nothing behind).
pub async fn serve_with_limits(
    listener: TcpListener,
    routes: impl Into<Routes>,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let routes = routes.into();
    let gate = Gate::new(limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let builders = Builders::new(limits);
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted:
                    // wait a moment rather than spin, and keep serving.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Some(slot) = gate.admit(&stream, peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let sendfile = Sendfile::default();
        let io = TokioIo::new(StallGuard::new(stream, limits, sendfile.clone()));
        let service = connection_service(routes.clone(), peer, slot.reserved, sendfile);
        let service = TowerToHyperService::new(service);
        let builder = if slot.reserved {
            &builders.reserved
        } else {
            &builders.regular
        };
        let connection = builder.serve_connection(io, service);
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "gateway connection ended");
                    }
                }
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drain(tasks, limits.shutdown_grace).await;
    Ok(())
}

/// Gives the connections in `tasks` `grace` to finish, then drops them.
async fn drain(mut tasks: JoinSet<()>, grace: Duration) {
    let drained = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            grace_secs = grace.as_secs(),
            "requests still in flight after the shutdown grace are dropped; unfinished uploads leave nothing behind"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// The connection settings: a regular connection's, and a reserved one's (one request, its
/// head within `first_byte_timeout`).
struct Builders {
    regular: hyper::server::conn::http1::Builder,
    reserved: hyper::server::conn::http1::Builder,
}

impl Builders {
    fn new(limits: &Limits) -> Builders {
        let make = |head: Duration, keep_alive: bool| {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(head)
                .max_buf_size(MAX_CONNECTION_BUFFER)
                // A client that shuts its write side after sending (HTTP/1.0 tools, some
                // proxies) still gets its answer: otherwise hyper takes the EOF for an
                // abort, and a PUT's client could not know whether it happened.
                .half_close(true)
                .keep_alive(keep_alive);
            builder
        };
        Builders {
            regular: make(limits.header_timeout, true),
            reserved: make(limits.first_byte_timeout, false),
        }
    }
}

/// Connections reserved for `/health` and `/metrics` beyond `gateway.max_connections`, so
/// an orchestrator's probe is answered while every connection is taken.
pub const RESERVED_FOR_HEALTH: usize = 4;

/// Who may connect: the connection cap, each client's share of it, and the connections
/// reserved for `/health` and `/metrics` (one per client at a time).
struct Gate {
    connections: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
    per_client: Arc<ClientShares>,
    reserve_per_client: Arc<ClientShares>,
    trusted_proxies: Vec<std::net::IpAddr>,
}

/// What an admitted connection holds until it ends.
struct Slot {
    _permit: OwnedSemaphorePermit,
    _shares: (Option<Share>, Option<Share>),
    /// A reserved connection: `/health` and `/metrics` only.
    reserved: bool,
}

impl Gate {
    fn new(limits: &Limits) -> Gate {
        Gate {
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            reserve: Arc::new(Semaphore::new(RESERVED_FOR_HEALTH)),
            per_client: ClientShares::new(limits.max_connections_per_client),
            reserve_per_client: ClientShares::new(1),
            trusted_proxies: limits.trusted_proxies.clone(),
        }
    }

    /// The slot of a new connection from `client`, or `None` once it was answered 503.
    /// A reverse proxy we trust carries many clients' connections: its share is the whole
    /// cap (its clients' uploads are shared by their forwarded address).
    fn admit(&self, stream: &TcpStream, peer: std::net::IpAddr) -> Option<Slot> {
        let client = client_key(peer);
        let share = if is_trusted(peer, &self.trusted_proxies) {
            None
        } else {
            match self.per_client.take(client) {
                Some(share) => Some(share),
                None => {
                    refuse(stream, CLIENT_BUSY, Unsigned::ClientShare);
                    return None;
                }
            }
        };
        if let Ok(permit) = Arc::clone(&self.connections).try_acquire_owned() {
            return Some(Slot {
                _permit: permit,
                _shares: (share, None),
                reserved: false,
            });
        }
        let reserved = self.reserve_per_client.take(client).and_then(|reserved| {
            let permit = Arc::clone(&self.reserve).try_acquire_owned().ok()?;
            Some(Slot {
                _permit: permit,
                _shares: (share, Some(reserved)),
                reserved: true,
            })
        });
        if reserved.is_none() {
            refuse(stream, BUSY, Unsigned::Connections);
        }
        reserved
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight within gateway.shutdown_grace");
}

/// What a client holding its share of connections is told before the excess is closed.
const CLIENT_BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 76\r\n\r\nthis client holds its share of the gateway's connections; try again shortly\n";

/// Answers an excess connection 503 without reading it and closes it: no task, no timer.
fn refuse(stream: &TcpStream, answer: &[u8], why: Unsigned) {
    // A fresh socket's send buffer takes this at once; if not, closing is answer enough.
    let _ = stream.try_write(answer);
    metrics::counter!(crate::GATEWAY_REFUSED_TOTAL, "reason" => why.label()).increment(1);
    tracing::debug!(reason = why.label(), "refused a connection");
}

/// What a connection's requests are served by: `router`, with the peer address in every
/// request's extensions as axum's `ConnectInfo` (where [`crate::shares::client_of`] finds
/// it), and the connection's [`Sendfile`] queue. On a reserved connection only `/health`
/// and `/metrics` are served.
fn connection_service(
    routes: Routes,
    peer: SocketAddr,
    reserved: bool,
    sendfile: Sendfile,
) -> impl tower::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future + Send,
> + Clone
+ Send {
    tower::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(sendfile.clone());
        let path = request.uri().path();
        let not_health = reserved && !matches!(path, "/health" | "/metrics");
        let route = match routes.objects_at(path) {
            Some(objects) => Either::Left(objects.clone()),
            None => Either::Right(routes.router().clone()),
        };
        async move {
            if not_health {
                return Ok(reserved_only());
            }
            match route {
                Either::Left(objects) => objects.oneshot(request.map(Body::new)).await,
                Either::Right(router) => router.oneshot(request).await,
            }
        }
    })
}

/// The answer to an object request on a connection reserved for `/health` and `/metrics`.
fn reserved_only() -> axum::response::Response {
    let mut response = crate::reply::reply(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "the gateway serves its maximum of connections; try again shortly",
    );
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    response
}

/// A connection whose writes fail once they made no progress for `idle` (the client took
/// less than about 64 KiB in that time, see [`limit_unsent`]): a client that stops reading
/// a response does not hold its connection forever. Reads are left to the
/// header timeout and the upload idle timeout (hyper reads while a response is written, to
/// notice a closed connection, so a read timer would cut slow downloads).
///
/// Until the connection's first byte arrives, its reads fail after
/// `limits.first_byte_timeout`: a connection opened and left silent is let go well before
/// the header timeout a slow but sending client gets.
///
/// Its writes send the placeholders of [`crate::sendfile`] bodies with `sendfile`; it
/// writes vectored, so hyper hands it body buffers as they are, uncopied.
struct StallGuard {
    inner: TcpStream,
    sendfile: Sendfile,
    idle: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The most of its answers a connection's socket holds unsent: 128 KiB (see
/// [`limit_unsent`]).
const UNSENT_LIMIT: u32 = 128 * 1024;

/// Limits what the kernel holds unsent for `stream` to [`UNSENT_LIMIT`], so that a write
/// waits only for the client to take some bytes, not for a third of the send buffer.
///
/// Linux reports a TCP socket writable when a third of its send buffer is free
/// (`__sk_stream_is_writeable`, include/net/sock.h), and the send buffer grows to
/// `net.ipv4.tcp_wmem`'s maximum (4 MiB by default): a client reading 40 KB/s then frees
/// that third in 30 s or more, and the write-stall timeout took it for one that stopped.
/// With `TCP_NOTSENT_LOWAT` a write queues no more once this many bytes are unsent, and
/// the socket is woken writable once fewer than half of them are (`tcp_stream_memory_free`,
/// net/ipv4/tcp_ipv4.c; `tcp_notsent_lowat` in Documentation/networking/ip-sysctl.rst):
/// a write stays pending only while the client takes less than about 64 KiB (plus the
/// segment being built). The bytes sent and not yet acknowledged are not limited, so a
/// fast client on a long link is not slowed. A client that stops reading thus also leaves
/// about 128 KiB queued in the kernel for its connection, not a send buffer of 4 MiB.
fn limit_unsent(stream: &TcpStream) {
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_notsent_lowat(UNSENT_LIMIT) {
        // A kernel without it (before 3.12): the write-stall timeout then also cuts
        // clients that read less than a third of the send buffer within it.
        tracing::debug!(error = %e, "cannot limit the unsent bytes of a connection");
    }
}

impl StallGuard {
    fn new(inner: TcpStream, limits: &Limits, sendfile: Sendfile) -> Self {
        limit_unsent(&inner);
        StallGuard {
            inner,
            sendfile,
            idle: limits.body_idle_timeout,
            stalled: None,
            first_byte: Some(Box::pin(tokio::time::sleep(limits.first_byte_timeout))),
        }
    }

    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let idle = self.idle;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client read nothing for gateway.body_idle_timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let Some(timer) = self.first_byte.as_mut() else {
            return poll;
        };
        match poll {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.first_byte = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client sent nothing for gateway.first_byte_timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = match hole_offset(buf) {
            Some(_) => self.sendfile.poll_send(&self.inner, cx, buf),
            None => Pin::new(&mut self.inner).poll_write(cx, buf),
        };
        self.watch(cx, poll)
    }

    /// The buffers before the first placeholder are written as they are (held back for
    /// the file bytes that follow); a placeholder first in line is sent with `sendfile`.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = match bufs.iter().position(|buf| hole_offset(buf).is_some()) {
            Some(0) => self.sendfile.poll_send(&self.inner, cx, &bufs[0]),
            Some(first) => poll_head(&self.inner, cx, &bufs[..first]),
            None => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
        };
        self.watch(cx, poll)
    }

    /// Always: hyper then queues body buffers uncopied (its `WriteStrategy::Queue`), which
    /// the placeholders of [`crate::sendfile`] rely on.
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
