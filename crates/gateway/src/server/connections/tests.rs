//! The connection threads: where connections are served, how a shutdown and a dropped
//! server end them, and that the threads end with the server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::{Limits, Routes};

/// The tests here count the process's connection threads: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The names of this process's threads that serve connections.
fn connection_threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| name.starts_with("gateway-") && !name.ends_with("-blk"))
        .collect();
    names.sort();
    names
}

/// Waits until this process has `count` connection threads (they end a moment after the
/// server's future).
async fn until_threads(count: usize) -> Vec<String> {
    for _ in 0..200 {
        if connection_threads().len() == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    connection_threads()
}

/// Routes answering `/thread` with the name of the thread serving it, and `/sleep?ms=N`
/// after N ms.
fn routes() -> Routes {
    Router::new()
        .route(
            "/thread",
            get(|| async { std::thread::current().name().unwrap_or("").to_string() }),
        )
        .route(
            "/sleep",
            get(|Query(query): Query<HashMap<String, u64>>| async move {
                tokio::time::sleep(Duration::from_millis(query["ms"])).await;
                "slept"
            }),
        )
        .into()
}

/// Serves [`routes`] with `threads` connection threads and `grace`; its address, the
/// sender that shuts it down, and its task.
async fn serve(
    threads: usize,
    grace: Duration,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), crate::GatewayError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        connection_threads: threads,
        shutdown_grace: grace,
        ..Limits::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let stopped = async move {
            let _ = stopped.await;
        };
        crate::serve_with_limits(listener, routes(), &limits, stopped).await
    });
    (addr, stop, server)
}

/// Sends a keep-alive GET of `target` on `stream`.
async fn send(stream: &mut TcpStream, target: &str) {
    let request = format!("GET {target} HTTP/1.1\r\nHost: gateway\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
}

/// The body of the one answer `stream` receives next (read until its length is reached),
/// or `None` if the connection closes first.
async fn answer(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .map(|n| n.trim().parse().unwrap())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                assert!(head.starts_with("http/1.1 200"), "{head}");
                return Some(String::from_utf8_lossy(&got[end + 4..end + 4 + length]).into());
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Connections are spread over the threads, the fewest-served first, and every request of
/// a connection is served on its thread; without threads of their own, on the caller's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_spread_over_the_threads_and_stay_on_theirs() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (addr, stop, server) = serve(2, Duration::from_secs(5)).await;
    assert_eq!(until_threads(2).await, ["gateway-0", "gateway-1"]);
    let mut streams = Vec::new();
    let mut served_on = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        send(&mut stream, "/thread").await;
        served_on.push(answer(&mut stream).await.unwrap());
        streams.push(stream);
    }
    // One each in turn: the fewest-served thread takes the next connection.
    assert_eq!(
        served_on,
        ["gateway-0", "gateway-1", "gateway-0", "gateway-1"]
    );
    // Later requests of a connection stay on its thread.
    for (stream, thread) in streams.iter_mut().zip(&served_on) {
        for _ in 0..3 {
            send(stream, "/thread").await;
            assert_eq!(answer(stream).await.as_deref(), Some(thread.as_str()));
        }
    }
    // A closed connection leaves room on its thread: the next one goes there.
    drop(streams.remove(2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut next = TcpStream::connect(addr).await.unwrap();
    send(&mut next, "/thread").await;
    assert_eq!(answer(&mut next).await.unwrap(), "gateway-0");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        until_threads(0).await.is_empty(),
        "the threads end with the server"
    );

    // Without threads of their own: the caller's runtime serves.
    let (addr, stop, server) = serve(0, Duration::from_secs(5)).await;
    assert!(connection_threads().is_empty());
    let mut stream = TcpStream::connect(addr).await.unwrap();
    send(&mut stream, "/thread").await;
    let thread = answer(&mut stream).await.unwrap();
    assert!(!thread.starts_with("gateway-"), "{thread}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// After the shutdown signal, a request in flight on every thread finishes within the
/// grace and its connection closes right after its answer; one still running when the
/// grace ends is dropped, and the server returns then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_gives_the_requests_in_flight_the_grace_on_every_thread() {
    let _one = ONE_AT_A_TIME.lock().await;
    for threads in [2, 0] {
        let grace = Duration::from_secs(3);
        let (addr, stop, server) = serve(threads, grace).await;
        let mut quick = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            send(&mut stream, "/sleep?ms=300").await;
            quick.push(stream);
        }
        let mut slow = TcpStream::connect(addr).await.unwrap();
        send(&mut slow, "/sleep?ms=60000").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stopped_at = std::time::Instant::now();
        stop.send(()).unwrap();
        for stream in &mut quick {
            assert_eq!(answer(stream).await.as_deref(), Some("slept"), "{threads}");
            assert_eq!(stream.read(&mut [0u8; 16]).await.unwrap(), 0);
        }
        // Closed once answered, not kept open until the grace ends.
        let closed = stopped_at.elapsed();
        assert!(closed < grace / 2, "{threads} threads: {closed:?}");
        assert_eq!(answer(&mut slow).await, None, "dropped after the grace");
        server.await.unwrap().unwrap();
        let took = stopped_at.elapsed();
        assert!(
            took >= grace - Duration::from_millis(100) && took < grace * 3,
            "{threads} threads: {took:?}"
        );
        assert!(until_threads(0).await.is_empty());
    }
}

/// A server whose future is dropped drops its connections at once, on every thread, and
/// its threads end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_server_drops_its_connections_and_its_threads_end() {
    let _one = ONE_AT_A_TIME.lock().await;
    for threads in [2, 0] {
        let (addr, _stop, server) = serve(threads, Duration::from_secs(30)).await;
        let mut streams = Vec::new();
        for _ in 0..3 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            send(&mut stream, "/sleep?ms=60000").await;
            streams.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(connection_threads().len(), threads);
        server.abort();
        for stream in &mut streams {
            let closed = tokio::time::timeout(Duration::from_secs(5), answer(stream)).await;
            assert_eq!(closed, Ok(None), "{threads} threads");
        }
        assert!(until_threads(0).await.is_empty());
    }
}

/// However many threads, a shutdown waits one grace in all, not one per thread: each
/// thread's grace starts with the signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_waits_one_grace_whatever_the_threads() {
    let _one = ONE_AT_A_TIME.lock().await;
    let grace = Duration::from_secs(1);
    for threads in [2, 4] {
        let (addr, stop, server) = serve(threads, grace).await;
        let mut slow = Vec::new();
        // One long request on every thread (the fewest-served takes each new connection).
        for _ in 0..threads {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            send(&mut stream, "/thread").await;
            answer(&mut stream).await.unwrap();
            send(&mut stream, "/sleep?ms=60000").await;
            slow.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stopped_at = std::time::Instant::now();
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        let took = stopped_at.elapsed();
        assert!(
            took < grace + Duration::from_millis(700),
            "{threads} threads: {took:?}"
        );
        assert!(until_threads(0).await.is_empty());
    }
}

/// A connection thread that ended gets no more connections: they go to the threads still
/// running; with none left, a connection is answered 503 and closed, never dropped
/// without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_thread_gets_no_connections() {
    use super::{Connections, Server, Slot};
    let _one = ONE_AT_A_TIME.lock().await;
    let limits = Limits {
        connection_threads: 2,
        ..Limits::default()
    };
    let gate = super::super::Gate::new(&limits);
    let mut connections = Connections::start(routes(), &limits).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // As a thread that ended leaves its server: its hand-off closed.
    let end = |server: &mut Server| {
        let (handed, _) = tokio::sync::mpsc::unbounded_channel();
        server.handed = handed;
    };
    end(&mut connections.servers[1]);
    let accept = async |listener: &TcpListener| -> (TcpStream, SocketAddr, Slot) {
        let (stream, peer) = listener.accept().await.unwrap();
        let slot = gate.admit(&stream, peer.ip()).unwrap();
        (stream, peer, slot)
    };
    let mut kept = Vec::new();
    for _ in 0..6 {
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (stream, peer, slot) = accept(&listener).await;
        connections.hand(stream, peer, slot);
        send(&mut client, "/thread").await;
        assert_eq!(answer(&mut client).await.as_deref(), Some("gateway-0"));
        kept.push(client);
    }
    end(&mut connections.servers[0]);
    let mut client = TcpStream::connect(addr).await.unwrap();
    let (stream, peer, slot) = accept(&listener).await;
    connections.hand(stream, peer, slot);
    let mut told = String::new();
    client.read_to_string(&mut told).await.unwrap();
    assert!(told.starts_with("HTTP/1.1 503"), "{told}");
    assert!(told.ends_with("it must restart\n"), "{told}");
    drop(kept);
    drop(connections);
    assert!(until_threads(0).await.is_empty());
}
