//! The local provider under a symlink race: a folder below the root is swapped with a
//! symlink pointing out of the root (`renameat2(RENAME_EXCHANGE)` in a tight loop) while
//! signed GETs and PUTs go through the gateway and `Storage` puts, gets, lists and deletes
//! run directly. Nothing may be read from or written outside the root, and every refused
//! request is a clear 4xx (an error), never a 500.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::{StreamExt, TryStreamExt};
use maskstore_backends::{SignOptions, SignedMethod};
use maskstore_core::Config;

const GETS: usize = 20_000;
const PUTS: usize = 300;
const OBJECTS: usize = 10;
const OUTSIDE: &str = "OUTSIDE THE ROOT";

/// Every file and folder below `dir` (symlinks not followed), with file contents.
fn tree(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let md = std::fs::symlink_metadata(&path).unwrap();
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            if md.is_dir() {
                stack.push(path);
                found.insert(name, None);
            } else {
                found.insert(name, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    found
}

#[derive(Default, Debug)]
struct Tally {
    ok: AtomicUsize,
    refused: AtomicUsize,
    server_errors: AtomicUsize,
    outside_reads: AtomicUsize,
}

impl Tally {
    fn status(&self, status: u16) {
        match status {
            200..=299 => &self.ok,
            400..=499 => &self.refused,
            _ => &self.server_errors,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.ok.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.server_errors.load(Ordering::Relaxed),
            self.outside_reads.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_folder_swapped_with_a_symlink_out_of_the_root_leaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let storage = maskstore_testkit::served(Config::local(&root)).await;

    // Outside the root: a folder shaped like the one inside, holding other content.
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(outside.join("sub0")).unwrap();
    for i in 0..OBJECTS {
        std::fs::write(outside.join(format!("obj-{i}.png")), OUTSIDE).unwrap();
    }
    std::fs::write(outside.join("sub0/deep-0.png"), OUTSIDE).unwrap();
    let outside_before = tree(&outside);

    let key = |k: &str| storage.key(k).unwrap();
    for i in 0..OBJECTS {
        storage
            .put(&key(&format!("d/obj-{i}.png")), format!("inside {i}"))
            .await
            .unwrap();
    }
    let folder = root.join("mask/d");
    let link = root.join("mask/swap");
    std::os::unix::fs::symlink(&outside, &link).unwrap();

    // The attacker: swaps the folder and the symlink as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let attacker = {
        let (stop, swaps) = (Arc::clone(&stop), Arc::clone(&swaps));
        let (folder, link) = (folder.clone(), link.clone());
        std::thread::spawn(move || {
            use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
            while !stop.load(Ordering::Relaxed) {
                renameat2(
                    AT_FDCWD,
                    &folder,
                    AT_FDCWD,
                    &link,
                    RenameFlags::RENAME_EXCHANGE,
                )
                .unwrap();
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let http = reqwest::Client::new();
    let gets = Arc::new(Tally::default());
    let puts = Arc::new(Tally::default());
    let direct = Arc::new(Tally::default());

    // 20,000 signed GETs, 32 at a time.
    let mut urls = Vec::with_capacity(OBJECTS);
    for i in 0..OBJECTS {
        let k = key(&format!("d/obj-{i}.png"));
        let url = storage
            .signed_url(SignedMethod::Get, &k, None, &SignOptions::default())
            .await
            .unwrap()
            .url;
        urls.push(url);
    }
    let get_run = {
        let (http, gets) = (http.clone(), Arc::clone(&gets));
        futures::stream::iter(0..GETS).for_each_concurrent(32, move |n| {
            let (http, gets) = (http.clone(), Arc::clone(&gets));
            let url = urls[n % OBJECTS].clone();
            async move {
                let answer = http.get(&url).send().await.unwrap();
                let status = answer.status().as_u16();
                let body = answer.bytes().await.unwrap_or_default();
                if body.windows(OUTSIDE.len()).any(|w| w == OUTSIDE.as_bytes()) {
                    gets.outside_reads.fetch_add(1, Ordering::Relaxed);
                }
                if status == 200 {
                    assert!(body.starts_with(b"inside "), "{body:?}");
                }
                gets.status(status);
            }
        })
    };

    // 300 signed PUTs, into the swapped folder and into new folders below it.
    let mut put_urls = Vec::with_capacity(PUTS);
    for j in 0..PUTS {
        let relative = if j % 2 == 0 {
            format!("d/new-{j}.png")
        } else {
            format!("d/sub{}/deep-{j}.png", j % 5)
        };
        // A mask key's PUT URL binds its format's content type: send what it names.
        let signed = storage
            .signed_url(
                SignedMethod::Put,
                &key(&relative),
                None,
                &SignOptions::default(),
            )
            .await
            .unwrap();
        put_urls.push((signed.url, signed.headers));
    }
    let put_run = {
        let (http, puts) = (http.clone(), Arc::clone(&puts));
        futures::stream::iter(put_urls).for_each_concurrent(8, move |(url, headers)| {
            let (http, puts) = (http.clone(), Arc::clone(&puts));
            async move {
                // Small enough to be sent whole before an early refusal is answered (a
                // server refusing at the start of a larger body may close the connection
                // while the client still writes, and the client never reads the answer).
                let body = vec![b'p'; 16 * 1024];
                let mut request = http.put(&url).body(body);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let answer = request.send().await.unwrap();
                puts.status(answer.status().as_u16());
            }
        })
    };

    // Storage directly: put, get, list and delete in the swapped folder.
    let direct_run = {
        let (storage, direct) = (storage.clone(), Arc::clone(&direct));
        async move {
            for n in 0..300 {
                let k = storage.key(&format!("d/direct/{n}.png")).unwrap();
                let results = [
                    storage
                        .put(&k, format!("inside direct {n}"))
                        .await
                        .map(|_| ()),
                    match storage.get(&key_of(&storage, n % OBJECTS)).await {
                        Ok(object) => {
                            if object
                                .data
                                .windows(OUTSIDE.len())
                                .any(|w| w == OUTSIDE.as_bytes())
                            {
                                direct.outside_reads.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                    match storage.list(Some("d/")) {
                        Ok(stream) => {
                            stream
                                .try_for_each(|info| {
                                    let name = info.key.to_string();
                                    let direct = Arc::clone(&direct);
                                    async move {
                                        if !name.starts_with("mask/d/") {
                                            direct.outside_reads.fetch_add(1, Ordering::Relaxed);
                                        }
                                        Ok(())
                                    }
                                })
                                .await
                        }
                        Err(e) => Err(e),
                    },
                    storage.delete(&k).await,
                ];
                for result in results {
                    match result {
                        Ok(()) => direct.ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) if e.kind().is_client_error() => {
                            direct.refused.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => {
                            eprintln!("direct storage call failed as a server error: {e}");
                            direct.server_errors.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }
        }
    };

    tokio::join!(get_run, put_run, direct_run);
    stop.store(true, Ordering::Relaxed);
    attacker.join().unwrap();

    let swaps = swaps.load(Ordering::Relaxed);
    let (get_ok, get_refused, get_500, get_outside) = gets.counts();
    let (put_ok, put_refused, put_500, _) = puts.counts();
    let (direct_ok, direct_refused, direct_500, direct_outside) = direct.counts();
    println!(
        "symlink race: {swaps} swaps; GETs {get_ok} ok / {get_refused} refused / {get_500} 5xx / \
         {get_outside} outside; PUTs {put_ok} ok / {put_refused} refused / {put_500} 5xx; \
         direct {direct_ok} ok / {direct_refused} refused / {direct_500} server errors / \
         {direct_outside} outside"
    );
    assert_eq!(
        get_outside, 0,
        "GETs returned content from outside the root"
    );
    assert_eq!(direct_outside, 0, "Storage read or listed outside the root");
    assert_eq!(get_ok + get_refused + get_500, GETS);
    assert_eq!(put_ok + put_refused + put_500, PUTS);
    assert_eq!(
        (get_500, put_500, direct_500),
        (0, 0, 0),
        "refusals must be 4xx"
    );
    assert_eq!(
        tree(&outside),
        outside_before,
        "a file or folder appeared outside the root"
    );
    // The race was real: the folder was swapped throughout, and both outcomes happened.
    assert!(swaps > 1000, "{swaps} swaps");
    assert!(
        get_ok > 0 && get_refused > 0,
        "{get_ok} ok, {get_refused} refused"
    );
    assert!(
        put_ok > 0 && put_refused > 0,
        "{put_ok} ok, {put_refused} refused"
    );
}

fn key_of(storage: &maskstore_backends::Storage, i: usize) -> maskstore_core::ObjectKey {
    storage.key(&format!("d/obj-{i}.png")).unwrap()
}
