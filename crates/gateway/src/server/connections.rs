//! Where admitted connections are served: on the caller's runtime, or on threads of their
//! own (`Limits::connection_threads`), each a single-threaded runtime that serves the
//! connections handed to it from their first byte to their close, so a request is read,
//! answered and written on one thread, with no hand-off between threads. That is nginx's
//! model (a worker per core): `maskstore serve` measured 19.7 µs of CPU per 4 KiB GET on
//! its own threads against 22.7 µs on a two-worker runtime (BENCHMARKS.md).
//!
//! A connection goes to the thread serving the fewest at the moment (of those still
//! running). What a thread does not share with the others: its timers, its blocking pool,
//! and its time on a core: a request that holds a thread delays that thread's other
//! connections, so none may hold it long (`sendfile` gives up its turn every 1 MiB, a
//! verifier hashes 1 MiB at a time, large hashes of the memory provider run in a blocking
//! task); a `sendfile` of a file not in the page cache still waits for the disk. Tasks a
//! handler spawns run on its connection's thread and end with the server.
//!
//! After the shutdown signal every connection finishes its request in flight within the
//! shutdown grace, then is dropped; a server whose future is dropped drops its connections
//! at once, on every thread, and the threads end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::{Builders, Slot, StallGuard, connection_service};
use crate::reply::Unsigned;
use crate::routers::Routes;
use crate::sendfile::Sendfile;
use crate::{GatewayError, Limits};

/// What a connection is told when no connection thread is left to serve it.
const NO_THREAD: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 58\r\n\r\nthe gateway cannot serve connections now; it must restart\n";

/// What the servers of connections are asked to do with them; once the sender is gone
/// (the server's future was dropped, or it finished), they drop them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Let the requests in flight finish within the shutdown grace, then drop them.
    Stopping,
}

/// An admitted connection on its way to its server, out of the accepting runtime's
/// reactor.
struct Handed {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
}

/// What every server of connections serves with.
struct Shared {
    routes: Routes,
    builders: Builders,
    limits: Limits,
}

/// The servers of the admitted connections: one task on the caller's runtime, or one per
/// connection thread.
pub(super) struct Connections {
    servers: Vec<Server>,
    phase: watch::Sender<Phase>,
}

/// One server of connections.
struct Server {
    handed: mpsc::UnboundedSender<Handed>,
    /// The connections it serves.
    live: Arc<AtomicUsize>,
    /// Completes (or fails) once it dropped or finished its last connection.
    done: oneshot::Receiver<()>,
}

impl Connections {
    /// The servers `limits.connection_threads` asks for: that many threads, each with a
    /// runtime of its own, or (0) one task on the caller's runtime.
    pub(super) async fn start(
        routes: Routes,
        limits: &Limits,
    ) -> Result<Connections, GatewayError> {
        let shared = Arc::new(Shared {
            routes,
            builders: Builders::new(limits),
            limits: limits.clone(),
        });
        let (phase, _) = watch::channel(Phase::Serving);
        let mut connections = Connections {
            servers: Vec::new(),
            phase,
        };
        if limits.connection_threads == 0 {
            let (server, serving) = connections.server(&shared);
            tokio::spawn(serving);
            connections.servers.push(server);
        }
        for n in 0..limits.connection_threads {
            // A thread that cannot start fails the server; those started before end as
            // `connections` is dropped (its phase's sender with it).
            let (server, serving) = connections.server(&shared);
            let (started, starting) = oneshot::channel();
            std::thread::Builder::new()
                .name(format!("gateway-{n}"))
                .spawn(move || {
                    // Built here, so a runtime is never dropped on the caller's.
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .thread_name(format!("gateway-{n}-blk"))
                        .build();
                    let runtime = match runtime {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = started.send(Err(e));
                            return;
                        }
                    };
                    let _ = started.send(Ok(()));
                    runtime.block_on(serving);
                    // Blocking reads still running finish on their own.
                    runtime.shutdown_background();
                })?;
            match starting.await {
                Ok(Ok(())) => connections.servers.push(server),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    return Err(GatewayError::Io(std::io::Error::other(
                        "a gateway connection thread ended as it started",
                    )));
                }
            }
        }
        Ok(connections)
    }

    /// A new server, and the work that serves its connections until it is told to stop.
    fn server(&self, shared: &Arc<Shared>) -> (Server, impl Future<Output = ()> + Send + 'static) {
        let (handed, receiver) = mpsc::unbounded_channel();
        let (finished, done) = oneshot::channel();
        let live = Arc::new(AtomicUsize::new(0));
        let serving = serve_handed(
            receiver,
            Arc::clone(shared),
            self.phase.subscribe(),
            Arc::clone(&live),
        );
        let serving = async move {
            serving.await;
            let _ = finished.send(());
        };
        let server = Server { handed, live, done };
        (server, serving)
    }

    /// Hands `stream` to the server serving the fewest connections, of those still
    /// running; with none left, it is answered 503 and closed.
    pub(super) fn hand(&self, stream: TcpStream, peer: SocketAddr, slot: Slot) {
        let Some(server) = self
            .servers
            .iter()
            .filter(|server| !server.handed.is_closed())
            .min_by_key(|server| server.live.load(Ordering::Relaxed))
        else {
            tracing::error!(
                "every gateway connection thread ended (see the errors before); restart maskstore serve"
            );
            super::refuse(&stream, NO_THREAD, Unsigned::Connections);
            return;
        };
        // Out of this runtime's reactor, into the server's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "cannot hand a connection over; it is closed");
                return;
            }
        };
        server.live.fetch_add(1, Ordering::Relaxed);
        if let Err(refused) = server.handed.send(Handed { stream, peer, slot }) {
            // It ended since it was chosen: the next connection goes to another.
            server.live.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("a gateway connection thread ended; a connection was closed");
            if let Ok(stream) = TcpStream::from_std(refused.0.stream) {
                super::refuse(&stream, NO_THREAD, Unsigned::Connections);
            }
        }
    }

    /// Tells the servers to stop and waits until every connection finished, or was dropped
    /// after the shutdown grace.
    pub(super) async fn finish(self) {
        let _ = self.phase.send(Phase::Stopping);
        // Every server's grace starts now, together: the hand-offs close first.
        let done: Vec<_> = self
            .servers
            .into_iter()
            .map(|server| {
                drop(server.handed);
                server.done
            })
            .collect();
        for done in done {
            let _ = done.await;
        }
        // `phase` lives until here: its drop would drop the connections at once.
        drop(self.phase);
    }
}

/// A server's work: serves the connections handed to it until it is told to stop, then
/// gives them the shutdown grace.
async fn serve_handed(
    mut handed: mpsc::UnboundedReceiver<Handed>,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    live: Arc<AtomicUsize>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            next = handed.recv() => match next {
                Some(connection) => serve(&mut tasks, connection, &shared, &phase, &live),
                None => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            () = dropped(&mut phase) => return,
        }
    }
    let grace = shared.limits.shutdown_grace;
    let drained = async { while tasks.join_next().await.is_some() {} };
    tokio::select! {
        finished = tokio::time::timeout(grace, drained) => {
            if finished.is_ok() {
                return;
            }
            tracing::warn!(
                connections = tasks.len(),
                grace_secs = grace.as_secs(),
                "requests still in flight after the shutdown grace are dropped; unfinished uploads leave nothing behind"
            );
        }
        () = dropped(&mut phase) => {}
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// Completes once `phase` leaves [`Phase::Serving`], or its sender is gone.
async fn stopping(phase: &mut watch::Receiver<Phase>) {
    let _ = phase
        .wait_for(|phase| *phase != Phase::Serving)
        .await
        .map(|_| ());
}

/// Completes once the sender of `phase` is gone: the server's future was dropped.
async fn dropped(phase: &mut watch::Receiver<Phase>) {
    while phase.changed().await.is_ok() {}
}

/// Serves the connection `handed` on this runtime, in `tasks`: counted in `live` until it
/// ends, asked to finish its request in flight once `phase` leaves [`Phase::Serving`].
fn serve(
    tasks: &mut JoinSet<()>,
    handed: Handed,
    shared: &Shared,
    phase: &watch::Receiver<Phase>,
    live: &Arc<AtomicUsize>,
) {
    /// Counts a connection out of its server's `live` when it ends.
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let counted = Counted(Arc::clone(live));
    let Handed { stream, peer, slot } = handed;
    let stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(error = %e, "cannot serve a handed connection; it is closed");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let sendfile = Sendfile::default();
    let io = TokioIo::new(StallGuard::new(stream, &shared.limits, sendfile.clone()));
    let service = connection_service(shared.routes.clone(), peer, slot.reserved, sendfile);
    let service = TowerToHyperService::new(service);
    let builder = if slot.reserved {
        &shared.builders.reserved
    } else {
        &shared.builders.regular
    };
    let connection = builder.serve_connection(io, service);
    let mut phase = phase.clone();
    tasks.spawn(async move {
        let _held = (counted, slot);
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "gateway connection ended");
                }
            }
            () = stopping(&mut phase) => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    });
}

#[cfg(test)]
mod tests;
