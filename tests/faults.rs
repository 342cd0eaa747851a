//! Real faults: a stopped or stalled S3 server, a killed local writer, a full disk, and the
//! gateway under load.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use maskstore_backends::{Error, SignOptions, SignedMethod, Storage, WriteOptions};
use maskstore_core::{Config, Secret};

use crate::support::{command, maskstore, succeeded};

fn s3_at(endpoint: &str) -> Storage {
    let config = Config::s3("pacs-masks-dev", "us-east-1")
        .unwrap()
        .with_endpoint(endpoint)
        .unwrap()
        .with_credentials("AKIA", Secret::new("secret"))
        .with_connect_timeout(Duration::from_secs(1))
        .unwrap()
        .with_request_timeout(Duration::from_secs(2))
        .unwrap()
        .with_max_retries(1)
        .with_retry_timeout(Duration::from_secs(4));
    Storage::connect(&config).unwrap()
}

/// Every operation against `storage`, each with how long it took and what it returned.
async fn every_operation(storage: &Storage) -> Vec<(&'static str, Duration, Result<(), Error>)> {
    let key = storage.key("fault/probe.bin").unwrap();
    let other = storage.key("fault/other.bin").unwrap();
    let timed = |name: &'static str, f: futures::future::BoxFuture<'static, Result<(), Error>>| async move {
        let started = Instant::now();
        let result = f.await;
        (name, started.elapsed(), result)
    };
    let s = storage.clone();
    let (k1, k2, k3, k4, k5, k6) = (
        key.clone(),
        key.clone(),
        key.clone(),
        key.clone(),
        key.clone(),
        key.clone(),
    );
    let (s1, s2, s3, s4, s5, s6, s7, s8) = (
        s.clone(),
        s.clone(),
        s.clone(),
        s.clone(),
        s.clone(),
        s.clone(),
        s.clone(),
        s.clone(),
    );
    futures::future::join_all(vec![
        timed(
            "put",
            Box::pin(async move { s1.put(&k1, "x").await.map(drop) }),
        ),
        timed("get", Box::pin(async move { s2.get(&k2).await.map(drop) })),
        timed(
            "head",
            Box::pin(async move { s3.head(&k3).await.map(drop) }),
        ),
        timed("delete", Box::pin(async move { s4.delete(&k4).await })),
        timed(
            "list",
            Box::pin(async move { s5.list(None)?.try_collect::<Vec<_>>().await.map(drop) }),
        ),
        timed(
            "list_with_delimiter",
            Box::pin(async move { s6.list_with_delimiter(None).await.map(drop) }),
        ),
        timed("copy", Box::pin(async move { s7.copy(&k5, &other).await })),
        timed(
            "upload",
            Box::pin(async move {
                let mut upload = s8.upload(&k6, &WriteOptions::default()).await?;
                upload.write(Bytes::from(vec![0u8; 1024])).await?;
                upload.finish().await.map(drop)
            }),
        ),
    ])
    .await
}

#[tokio::test]
async fn stopped_server_fails_every_operation_as_unreachable_quickly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    for (name, took, result) in every_operation(&s3_at(&endpoint)).await {
        assert!(
            matches!(result, Err(Error::Unreachable { .. })),
            "{name}: {result:?}"
        );
        assert!(took < Duration::from_secs(10), "{name} took {took:?}");
    }
}

#[tokio::test]
async fn stalled_server_fails_every_operation_within_the_timeouts() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    // request_timeout 2 s, one retry, retry_timeout 4 s: no operation may hang past ~10 s.
    for (name, took, result) in every_operation(&s3_at(&endpoint)).await {
        assert!(result.is_err(), "{name} succeeded against a silent server");
        assert!(
            matches!(
                result,
                Err(Error::Unreachable { .. } | Error::Backend { .. })
            ),
            "{name}: {result:?}"
        );
        assert!(took < Duration::from_secs(12), "{name} hung for {took:?}");
    }
    held.abort();
}

/// A local put killed with SIGKILL leaves the old version or the new one, never a torn
/// file, and nothing temporary shows in listings.
#[tokio::test]
async fn killed_local_put_leaves_old_or_new_never_torn() {
    let dir = tempfile::tempdir().unwrap();
    let old = vec![1u8; 1024 * 1024];
    let new: Vec<u8> = (0..200 * 1024 * 1024u32)
        .map(|i| (i % 249) as u8 + 2)
        .collect();
    std::fs::write(dir.path().join("old.bin"), &old).unwrap();
    std::fs::write(dir.path().join("new.bin"), &new).unwrap();
    let key = "mask/killed/put.bin";
    let storage = Storage::connect(&Config::local(dir.path().join("data"))).unwrap();
    let object_key = storage.key("killed/put.bin").unwrap();
    let mut outcomes = Vec::new();
    for delay_ms in [30u64, 120, 300, 800] {
        succeeded(&maskstore(dir.path(), &["put", "old.bin", key], &[]));
        let mut child = command(dir.path(), &["put", "new.bin", key], &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let stored = storage.get(&object_key).await.unwrap().data;
        let which = if stored == old.as_slice() {
            "old"
        } else if stored == new.as_slice() {
            "new"
        } else {
            panic!(
                "a torn object of {} bytes after a kill at {delay_ms} ms",
                stored.len()
            );
        };
        outcomes.push(which);
        let listed: Vec<_> = storage.list(None).unwrap().try_collect().await.unwrap();
        assert_eq!(listed.len(), 1, "temporary files visible: {listed:?}");
    }
    assert!(
        outcomes.contains(&"old"),
        "no put was interrupted: {outcomes:?}"
    );
}

/// A put that fills the disk fails with a clear error, leaves no partial file and keeps
/// the previous version.
#[tokio::test]
async fn full_disk_fails_the_put_and_keeps_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var("CI").is_err(),
            "CI must be able to mount a small tmpfs (root) for the full-disk test"
        );
        eprintln!("skipping the full-disk test: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mount);
    let storage = Storage::connect(&Config::local(mount.join("data"))).unwrap();
    let key = storage.key("full/mask.png").unwrap();
    storage
        .put_with(
            &key,
            vec![3u8; 1024 * 1024],
            &WriteOptions::content_type("image/png"),
        )
        .await
        .unwrap();
    let err = storage
        .put(&key, vec![4u8; 12 * 1024 * 1024])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("No space left on device")
            && text.contains("disk holding the local root is full"),
        "{text}"
    );
    let kept = storage.get(&key).await.unwrap();
    assert!(
        kept.data.iter().all(|b| *b == 3) && kept.data.len() == 1024 * 1024,
        "previous version damaged"
    );
    assert_eq!(kept.info.content_type.as_deref(), Some("image/png"));
    let temps = std::fs::read_dir(mount.join("data/.maskstore/tmp"))
        .unwrap()
        .count();
    assert_eq!(temps, 0, "a partial temporary file was left");
    // And the space is free again: a small put works.
    storage.put(&key, "small").await.unwrap();
}

/// 2,000 signed requests from 50 concurrent clients, mixed GET and PUT, through the
/// gateway: none fails and every body is intact.
async fn gateway_under_load(storage: &Storage) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let clients = (0..50).map(|client| {
        let (http, storage) = (http.clone(), storage.clone());
        async move {
            for round in 0..20 {
                let key = storage
                    .key(&format!("load/{client}/{}", round % 4))
                    .unwrap();
                let body = format!("client {client} round {round} {}", "x".repeat(round * 100));
                let put = storage
                    .signed_url(SignedMethod::Put, &key, None, &SignOptions::default())
                    .await
                    .unwrap();
                let response = http.put(&put.url).body(body.clone()).send().await.unwrap();
                assert!(response.status().is_success(), "PUT {}", response.status());
                let get = storage
                    .signed_url(SignedMethod::Get, &key, None, &SignOptions::default())
                    .await
                    .unwrap();
                let response = http.get(&get.url).send().await.unwrap();
                assert_eq!(response.status().as_u16(), 200);
                assert_eq!(response.text().await.unwrap(), body, "body damaged");
            }
        }
    });
    let started = Instant::now();
    futures::future::join_all(clients.map(tokio::spawn))
        .await
        .into_iter()
        .for_each(|joined| joined.unwrap());
    println!(
        "gateway[{}]: 2000 requests from 50 clients in {:?}",
        storage.backend(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_serves_2000_requests_from_50_clients_on_memory() {
    let served = maskstore_testkit::memory_served().await;
    gateway_under_load(&served).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_serves_2000_requests_from_50_clients_on_local_disk() {
    let served = maskstore_testkit::temp_dir_served().await;
    gateway_under_load(&served).await;
}

/// A loopback proxy in front of an S3 server. Of the new connections starting with a GET,
/// the 1st, 5th, 9th… never answer (a stall); of the other new connections whose first
/// request is not a POST (object_store does not retry those after a reset), the 1st, 4th,
/// 7th… answer 503 and the 2nd, 5th, 8th… are reset. The rest are forwarded untouched.
/// Each kind is counted on its own, so which faults occur does not depend on the order in
/// which connections of different kinds arrive.
struct FaultyProxy {
    addr: std::net::SocketAddr,
    faults: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyProxy {
    async fn start(upstream: std::net::SocketAddr) -> FaultyProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let faults = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        let counted = std::sync::Arc::clone(&faults);
        let task = tokio::spawn(async move {
            let gets = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let others = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            while let Ok((mut client, _)) = listener.accept().await {
                let counted = std::sync::Arc::clone(&counted);
                let (gets, others) = (std::sync::Arc::clone(&gets), std::sync::Arc::clone(&others));
                tokio::spawn(async move {
                    let mut head = vec![0u8; 8];
                    if client.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let method = String::from_utf8_lossy(&head)
                        .split(' ')
                        .next()
                        .unwrap_or("")
                        .to_string();
                    use std::sync::atomic::Ordering::SeqCst;
                    let stall = method == "GET" && gets.fetch_add(1, SeqCst) % 4 == 0;
                    let fault = if stall {
                        Some("stall")
                    } else if method == "POST" {
                        None
                    } else {
                        match others.fetch_add(1, SeqCst) % 3 {
                            0 => Some("503"),
                            1 => Some("reset"),
                            _ => None,
                        }
                    };
                    if let Some(fault) = fault {
                        *counted.lock().unwrap().entry(fault).or_insert(0) += 1;
                    }
                    match fault {
                        Some("503") => {
                            let mut rest = [0u8; 4096];
                            let _ = tokio::time::timeout(
                                Duration::from_millis(50),
                                client.read(&mut rest),
                            )
                            .await;
                            let _ = client
                                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                                .await;
                        }
                        Some("reset") => {
                            // A zero linger makes the close an RST, as a crashed peer would.
                            #[allow(deprecated)]
                            let _ = client.set_linger(Some(Duration::ZERO));
                            drop(client);
                        }
                        Some(_) => {
                            // Stall: hold the connection open, answer nothing.
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                        None => {
                            let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await
                            else {
                                return;
                            };
                            if server.write_all(&head).await.is_err() {
                                return;
                            }
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }
                });
            }
        });
        FaultyProxy { addr, faults, task }
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Puts, gets, lists and streaming uploads through 503s, resets and stalls all succeed
/// through retries, and every object reads back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_carry_operations_through_503s_resets_and_stalls() {
    let Some(server) = maskstore_testkit::servers::seaweedfs() else {
        return;
    };
    let upstream: std::net::SocketAddr = server
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = FaultyProxy::start(upstream).await;
    let mut config = server.config();
    config.object_storage.endpoint = Some(format!("http://{}", proxy.addr));
    config.object_storage.max_retries = 10;
    config.object_storage.retry_timeout_secs = 120;
    config.object_storage.request_timeout_secs = 3;
    config.object_storage.retry_initial_backoff_ms = 20;
    config.object_storage.retry_max_backoff_ms = 200;
    let storage = Storage::connect(&config).unwrap();

    let mut expected = std::collections::BTreeMap::new();
    for i in 0..20u32 {
        let key = storage.key(&format!("retry/small-{i}.bin")).unwrap();
        let body: Vec<u8> = (0..10_000 + i).map(|b| (b % 251) as u8).collect();
        storage.put(&key, body.clone()).await.unwrap();
        expected.insert(key, body);
    }
    let big = storage.key("retry/volume.nii").unwrap();
    let body: Vec<u8> = (0..24 * 1024 * 1024u32).map(|b| (b % 241) as u8).collect();
    let mut upload = storage
        .upload(&big, &WriteOptions::default())
        .await
        .unwrap();
    for chunk in body.chunks(1024 * 1024) {
        upload.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    upload.finish().await.unwrap();
    expected.insert(big, body);

    // Concurrent reads open new connections, which meet the faults too.
    let reads = expected.iter().map(|(key, body)| {
        let storage = storage.clone();
        async move {
            let got = storage.get(key).await.unwrap().data;
            assert!(got == body.as_slice(), "{key} differs after retries");
        }
    });
    futures::future::join_all(reads).await;
    let listed: Vec<_> = storage.list(None).unwrap().try_collect().await.unwrap();
    assert_eq!(listed.len(), expected.len());
    let faults = proxy.faults.lock().unwrap().clone();
    println!("faults injected: {faults:?}");
    for fault in ["503", "reset", "stall"] {
        assert!(
            faults.get(fault).copied().unwrap_or(0) > 0,
            "no {fault} was injected: {faults:?}"
        );
    }
    // Clean up past the proxy.
    let keys: Vec<_> = expected.keys().cloned().collect();
    config.object_storage.endpoint = Some(server.endpoint.clone());
    Storage::connect(&config)
        .unwrap()
        .delete_many(&keys)
        .await
        .unwrap();
}

/// An upload abandoned without finish or abort is listed as incomplete, and
/// `abort_incomplete_uploads` removes it; nothing of it is ever visible as an object.
async fn abandoned_upload_is_listed_and_aborted(server: maskstore_testkit::servers::S3Server) {
    let storage = server.storage();
    let key = storage.key("abandoned/volume.nii").unwrap();
    let mut upload = storage
        .upload(&key, &WriteOptions::default())
        .await
        .unwrap();
    upload
        .write(Bytes::from(vec![5u8; 9 * 1024 * 1024]))
        .await
        .unwrap();
    // Let the first part reach the server, then walk away.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(upload);
    assert!(!storage.exists(&key).await.unwrap());
    let incomplete = storage.incomplete_uploads(None).await.unwrap();
    assert_eq!(incomplete.len(), 1, "{incomplete:?}");
    assert_eq!(incomplete[0].key, key);
    assert_eq!(storage.abort_incomplete_uploads(None).await.unwrap(), 1);
    assert!(storage.incomplete_uploads(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn abandoned_upload_is_listed_and_aborted_on_seaweedfs() {
    let Some(server) = maskstore_testkit::servers::seaweedfs() else {
        return;
    };
    abandoned_upload_is_listed_and_aborted(server).await;
}

#[tokio::test]
async fn abandoned_upload_is_listed_and_aborted_on_moto() {
    let Some(server) = maskstore_testkit::servers::moto() else {
        return;
    };
    abandoned_upload_is_listed_and_aborted(server).await;
}

/// A SeaweedFS of the test's own, which it may kill and restart on the same data.
struct OwnSeaweedFs {
    weed: String,
    dir: tempfile::TempDir,
    base: u16,
    child: Option<std::process::Child>,
}

impl OwnSeaweedFs {
    const ACCESS: &'static str = "own-access";
    const SECRET: &'static str = "own-secret-for-the-kill-test";
    const BUCKET: &'static str = "pacs-masks-kill";

    fn start(weed: String) -> OwnSeaweedFs {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("identities.json"),
            format!(
                r#"{{"identities":[{{"name":"own","credentials":[{{"accessKey":"{}","secretKey":"{}"}}],"actions":["Admin","Read","Write","List"]}}]}}"#,
                Self::ACCESS,
                Self::SECRET
            ),
        )
        .unwrap();
        // Five ports and their gRPC twins, below the ephemeral range.
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        let base = (0..200)
            .map(|_| 10_000 + rand::random::<u16>() % 12_000)
            .find(|b| (0..5).all(|i| free(b + i) && free(b + i + 10_000)))
            .expect("free ports");
        let mut own = OwnSeaweedFs {
            weed,
            dir,
            base,
            child: None,
        };
        own.launch();
        own
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.base + 4)
    }

    fn launch(&mut self) {
        let b = self.base;
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let port = |name: &str, p: u16| {
            [
                format!("-{name}.port={p}"),
                format!("-{name}.port.grpc={}", p + 10_000),
            ]
        };
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-master.telemetry=false".into(),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!(
                "-s3.config={}",
                self.dir.path().join("identities.json").display()
            ),
            format!("-bucket={}", Self::BUCKET),
        ];
        for (name, p) in [
            ("master", b),
            ("volume", b + 1),
            ("filer", b + 2),
            ("admin", b + 3),
            ("s3", b + 4),
        ] {
            args.extend(port(name, p));
        }
        let log = std::fs::File::create(self.dir.path().join("weed.log")).unwrap();
        self.child = Some(
            Command::new(&self.weed)
                .args(&args)
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("weed starts"),
        );
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn config(&self) -> Config {
        Config::s3(Self::BUCKET, "us-east-1")
            .unwrap()
            .with_endpoint(self.endpoint())
            .unwrap()
            .with_credentials(Self::ACCESS, Secret::new(Self::SECRET))
            .with_max_retries(1)
            .with_retry_timeout(Duration::from_secs(5))
            .with_request_timeout(Duration::from_secs(10))
            .unwrap()
    }

    /// Waits until the bucket answers a listing.
    async fn ready(&self) -> Storage {
        let storage = Storage::connect(&self.config()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if storage.list_with_delimiter(None).await.is_ok() {
                return storage;
            }
            assert!(
                Instant::now() < deadline,
                "own SeaweedFS did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for OwnSeaweedFs {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SeaweedFS killed in the middle of a 200 MiB streaming upload: the upload fails, the key
/// keeps its previous version, and after the abort no incomplete upload is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_killed_mid_upload_leaves_the_previous_version_and_nothing_incomplete() {
    let Ok(weed) = std::env::var("MASKSTORE_TEST_WEED") else {
        assert!(
            std::env::var("CI").is_err(),
            "scripts/test-servers exports MASKSTORE_TEST_WEED"
        );
        eprintln!("skipping: MASKSTORE_TEST_WEED is not set (run scripts/test)");
        return;
    };
    let mut weed = OwnSeaweedFs::start(weed);
    let storage = weed.ready().await;
    let key = storage.key("killed/volume.nii").unwrap();
    storage.put(&key, vec![9u8; 1024 * 1024]).await.unwrap();

    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let upload = {
        let (storage, key, written) = (
            storage.clone(),
            key.clone(),
            std::sync::Arc::clone(&written),
        );
        tokio::spawn(async move {
            let chunks = (0..200u32).map(move |i| {
                written.fetch_add(1024 * 1024, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, std::io::Error>(Bytes::from(vec![(i % 200) as u8 + 10; 1024 * 1024]))
            });
            storage
                .upload_stream(
                    &key,
                    &WriteOptions::default(),
                    futures::stream::iter(chunks),
                )
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while written.load(std::sync::atomic::Ordering::SeqCst) < 48 * 1024 * 1024 {
        assert!(Instant::now() < deadline, "the upload did not progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    weed.kill();
    let result = upload.await.unwrap();
    assert!(result.is_err(), "the upload survived the server's death");

    weed.launch();
    let storage = weed.ready().await;
    // A restarted SeaweedFS lists before its volume serves reads: a 500 or a refused
    // connection while it settles is waited out (60 s), any other answer fails.
    let deadline = Instant::now() + Duration::from_secs(60);
    let kept = loop {
        match storage.get(&key).await {
            Ok(object) => break object.data,
            Err(e @ (Error::ServerFailed { .. } | Error::Unreachable { .. })) => {
                assert!(
                    Instant::now() < deadline,
                    "the restarted server never served: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the previous version cannot be read: {e}"),
        }
    };
    assert!(
        kept.len() == 1024 * 1024 && kept.iter().all(|b| *b == 9),
        "the previous version is damaged"
    );
    // The abort sent while the server was down could not reach it; abort what is left.
    let left = storage.incomplete_uploads(None).await.unwrap();
    println!("incomplete uploads after the restart: {}", left.len());
    assert_eq!(
        storage.abort_incomplete_uploads(None).await.unwrap(),
        left.len()
    );
    assert!(storage.incomplete_uploads(None).await.unwrap().is_empty());
    assert_eq!(storage.get(&key).await.unwrap().data.len(), 1024 * 1024);
}

/// Permanent failures are not retried: with a 2 s first backoff, a retried request would
/// take over 2 s; not found, a failed precondition and rejected credentials come back at once.
#[tokio::test]
async fn permanent_failures_are_not_retried() {
    let Some(server) = maskstore_testkit::servers::seaweedfs() else {
        return;
    };
    let slow_retries = |secret: &str| {
        let mut config = server.config_with_secret(secret);
        config.object_storage.max_retries = 5;
        config.object_storage.retry_initial_backoff_ms = 2000;
        Storage::connect(&config).unwrap()
    };
    let storage = slow_retries(server.secret_key.expose());
    let key = storage.key("permanent/missing.bin").unwrap();
    let started = Instant::now();
    assert!(matches!(
        storage.get(&key).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        storage.head(&key).await,
        Err(Error::NotFound { .. })
    ));
    let stale = WriteOptions::default()
        .with_mode(maskstore_backends::WriteMode::IfMatch("\"stale\"".into()));
    storage.put(&key, "x").await.unwrap();
    assert!(matches!(
        storage.put_with(&key, "y", &stale).await,
        Err(Error::Precondition { .. })
    ));
    let rejected = slow_retries("a-wrong-secret");
    let elsewhere = rejected.key("permanent/any.bin").unwrap();
    assert!(matches!(
        rejected.get(&elsewhere).await,
        Err(Error::CredentialsRejected { .. })
    ));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a permanent failure was retried: {:?}",
        started.elapsed()
    );
    storage.delete(&key).await.unwrap();
}

/// A loopback proxy that forwards every exchange untouched, except that it loses the
/// answers to as many requests `chosen` picks (by method and target) as it is told to
/// ([`AnswerLosingProxy::lose`]): the request reaches the server, which carries it out,
/// and the client's connection is then reset, as when a server, a proxy or a load
/// balancer drops a connection mid-answer.
struct AnswerLosingProxy {
    addr: std::net::SocketAddr,
    plan: std::sync::Arc<LosingPlan>,
    task: tokio::task::JoinHandle<()>,
}

/// How an answer is lost.
#[derive(Debug, Clone, Copy)]
enum Loss {
    /// The connection is reset (RST): a crashed peer, a load balancer's idle cut.
    Reset,
    /// The connection is closed (FIN) before the answer: a server that shut down.
    Close,
    /// The answer's head arrives, then the connection is reset while its body is awaited.
    MidAnswer,
    /// A new connection is closed before anything is read from it: the request never
    /// arrives (a server restarting); chosen by order, not by request.
    Unsent,
}

struct LosingPlan {
    upstream: std::net::SocketAddr,
    loss: Loss,
    /// The `Host` the server must see (fake-gcs-server routes by it), if not the proxy's.
    host: Option<String>,
    chosen: fn(&str, &str) -> bool,
    /// Answers still to lose.
    to_lose: std::sync::atomic::AtomicU64,
    lost: std::sync::atomic::AtomicU64,
}

impl AnswerLosingProxy {
    async fn start(
        upstream: std::net::SocketAddr,
        loss: Loss,
        host: Option<String>,
        chosen: fn(&str, &str) -> bool,
    ) -> AnswerLosingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let plan = std::sync::Arc::new(LosingPlan {
            upstream,
            loss,
            host,
            chosen,
            to_lose: 0.into(),
            lost: 0.into(),
        });
        let shared = std::sync::Arc::clone(&plan);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay_losing(client, std::sync::Arc::clone(&shared)));
            }
        });
        AnswerLosingProxy { addr, plan, task }
    }

    /// Loses the answers to the next `n` chosen requests.
    fn lose(&self, n: u64) {
        self.plan
            .to_lose
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many answers were lost so far.
    fn lost(&self) -> u64 {
        self.plan.lost.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `endpoint` (`http://host:port/rest`) with this proxy's address in place of its own.
    fn endpoint_for(&self, endpoint: &str) -> String {
        let rest = endpoint.trim_start_matches("http://");
        let path = rest.find('/').map_or("", |at| &rest[at..]);
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for AnswerLosingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client connection relayed to the server, the answer to a chosen request lost.
async fn relay_losing(client: tokio::net::TcpStream, plan: std::sync::Arc<LosingPlan>) {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let taken = |plan: &LosingPlan| {
        let left = &plan.to_lose;
        left.fetch_update(SeqCst, SeqCst, |b| b.checked_sub(1))
            .is_ok()
    };
    if matches!(plan.loss, Loss::Unsent) && taken(&plan) {
        plan.lost.fetch_add(1, SeqCst);
        return;
    }
    let Ok(server) = tokio::net::TcpStream::connect(plan.upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let lose = std::sync::Arc::new(AtomicBool::new(false));
    let (marked, sender) = (std::sync::Arc::clone(&lose), std::sync::Arc::clone(&plan));
    let requests = tokio::spawn(async move {
        let plan = sender;
        let mut heads = RequestHeads::default();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (out, requests) = heads.feed(&buffer[..n], plan.host.as_deref());
            // Marked before the request goes on, so its answer cannot slip through.
            let picked = requests.iter().any(|(m, t)| (plan.chosen)(m, t));
            let chooses = !matches!(plan.loss, Loss::Unsent);
            if picked && chooses && taken(&plan) {
                marked.store(true, SeqCst);
            }
            if server_write.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match server_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if lose.load(SeqCst) {
            plan.lost.fetch_add(1, SeqCst);
            if let Loss::MidAnswer = plan.loss {
                // The head only, read by the client before the reset comes.
                let head = buffer[..n].windows(4).position(|w| w == b"\r\n\r\n");
                let head = head.map_or(n, |at| at + 4);
                let _ = client_write.write_all(&buffer[..head]).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            match plan.loss {
                Loss::Reset | Loss::MidAnswer | Loss::Unsent => {
                    // A zero linger makes the close an RST; forgotten, the write half sends
                    // no FIN first, and the socket closes when the read half goes below.
                    #[allow(deprecated)]
                    let _ = client_write.as_ref().set_linger(Some(Duration::ZERO));
                    client_write.forget();
                }
                Loss::Close => drop(client_write),
            }
            requests.abort();
            let _ = requests.await;
            return;
        }
        if client_write.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    requests.abort();
    let _ = requests.await;
}

/// The requests a client sends on one connection, read as they pass (no pipelining,
/// bodies by `Content-Length`; after a chunked body it reads nothing more).
#[derive(Default)]
struct RequestHeads {
    head: Vec<u8>,
    body_left: usize,
    opaque: bool,
}

impl RequestHeads {
    /// The bytes to pass on for `bytes`, with each head's `Host` set to `host` when given,
    /// and the method and target of each request whose head ends in `bytes`.
    fn feed(&mut self, bytes: &[u8], host: Option<&str>) -> (Vec<u8>, Vec<(String, String)>) {
        let (mut out, mut found) = (Vec::new(), Vec::new());
        let mut pending = bytes.to_vec();
        while !pending.is_empty() {
            if self.opaque {
                out.append(&mut pending);
                break;
            }
            if self.body_left > 0 {
                let n = self.body_left.min(pending.len());
                self.body_left -= n;
                out.extend(pending.drain(..n));
                continue;
            }
            self.head.append(&mut pending);
            let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                break;
            };
            pending = self.head.split_off(end + 4);
            let head = String::from_utf8_lossy(&self.head).into_owned();
            self.head.clear();
            let mut lines = head.trim_end().split("\r\n");
            let request_line = lines.next().unwrap_or_default();
            out.extend_from_slice(request_line.as_bytes());
            out.extend_from_slice(b"\r\n");
            for line in lines {
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                match (name.as_str(), host) {
                    ("content-length", _) => self.body_left = value.parse().unwrap_or(0),
                    ("transfer-encoding", _) => self.opaque = true,
                    ("host", Some(host)) => {
                        out.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
                        continue;
                    }
                    _ => {}
                }
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            let mut parts = request_line.split(' ');
            let method = parts.next().unwrap_or_default().to_string();
            found.push((method, parts.next().unwrap_or_default().to_string()));
        }
        (out, found)
    }
}

/// Whether a request deletes: a `DELETE`, or Azure's `POST ?comp=batch`.
fn a_delete(method: &str, target: &str) -> bool {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    method == "DELETE" || (method == "POST" && query.split('&').any(|kv| kv == "comp=batch"))
}

/// A delete whose answer is lost (the connection reset after the server deleted) is sent
/// again and succeeds, alone and in a batch: a delete is idempotent and a missing key is
/// deleted. object_store alone sends no delete again after a reset; one such reset on a
/// pooled connection failed a whole `delete_many` (CI, fake-gcs-server). Azure's deletes
/// are batches, whose answer has a body: it is also cut midway.
async fn a_lost_delete_answer_is_sent_again(
    name: &str,
    endpoint: &str,
    mut config: maskstore_core::Config,
    host: Option<String>,
    losses: &[Loss],
) {
    let upstream = endpoint
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    for &loss in losses {
        let proxy =
            AnswerLosingProxy::start(upstream.parse().unwrap(), loss, host.clone(), a_delete).await;
        config.object_storage.endpoint = Some(proxy.endpoint_for(endpoint));
        config.object_storage.retry_initial_backoff_ms = 20;
        let storage = Storage::connect(&config).unwrap();
        let keys: Vec<_> = (0..3)
            .map(|i| storage.key(&format!("lost/{i}.bin")).unwrap())
            .collect();
        for key in &keys {
            storage.put(key, "mask").await.unwrap();
        }
        proxy.lose(1);
        storage.delete(&keys[0]).await.unwrap_or_else(|e| {
            panic!("{name}: a delete whose answer was lost ({loss:?}) failed: {e}")
        });
        assert_eq!(proxy.lost(), 1, "{name} {loss:?}");
        proxy.lose(1);
        storage.delete_many(&keys[1..]).await.unwrap_or_else(|e| {
            panic!("{name}: a batch whose answer was lost ({loss:?}) failed: {e}")
        });
        assert_eq!(proxy.lost(), 2, "{name} {loss:?}");
        for key in &keys {
            assert!(!storage.exists(key).await.unwrap(), "{name}: {key} is left");
        }
    }
}

#[tokio::test]
async fn a_lost_delete_answer_is_sent_again_on_every_cloud() {
    use maskstore_testkit::servers;
    let (reset, close, cut) = (Loss::Reset, Loss::Close, Loss::MidAnswer);
    if let Some(s) = servers::seaweedfs() {
        let losses = [reset, close];
        a_lost_delete_answer_is_sent_again(s.name, &s.endpoint, s.config(), None, &losses).await;
    }
    if let Some(s) = servers::azurite() {
        let losses = [reset, close, cut];
        a_lost_delete_answer_is_sent_again(s.name, &s.endpoint, s.config(), None, &losses).await;
    }
    if let Some(s) = servers::fake_gcs() {
        // fake-gcs-server routes by the Host it was started for.
        let host = Some(s.endpoint.trim_start_matches("http://").to_string());
        let losses = [reset, close];
        a_lost_delete_answer_is_sent_again(s.name, &s.endpoint, s.config(), host, &losses).await;
    }
}

/// The other side: a create-only put is sent again only when it cannot have arrived. One
/// whose connection was reset after it was sent is not (a second try would meet its own
/// object and report it as another writer's); it fails and says so, and the server kept
/// it. One whose connection closed before it was written is sent again and succeeds.
#[tokio::test]
async fn a_create_only_put_is_sent_again_only_when_it_cannot_have_arrived() {
    let Some(server) = maskstore_testkit::servers::seaweedfs() else {
        return;
    };
    let upstream = server
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    for loss in [Loss::Reset, Loss::Unsent] {
        let proxy = AnswerLosingProxy::start(upstream, loss, None, |m, _| m == "PUT").await;
        let mut config = server.config();
        config.object_storage.endpoint = Some(proxy.endpoint_for(&server.endpoint));
        config.object_storage.retry_initial_backoff_ms = 20;
        let storage = Storage::connect(&config).unwrap();
        let key = storage.key("lost/create-only.bin").unwrap();
        proxy.lose(1);
        let created = storage.put_if_absent(&key, "mask").await;
        assert_eq!(proxy.lost(), 1, "{loss:?}");
        match loss {
            Loss::Unsent => {
                created.unwrap_or_else(|e| panic!("a put that never arrived failed: {e}"));
            }
            _ => assert!(
                !matches!(created, Ok(_) | Err(Error::AlreadyExists { .. })),
                "a create-only put whose answer was lost was sent again: {created:?}"
            ),
        }
        assert_eq!(storage.get(&key).await.unwrap().data, "mask".as_bytes());
        storage.delete(&key).await.unwrap();
    }
}
