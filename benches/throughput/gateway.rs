//! `gateway`: the gateway against direct `Storage` and plain HTTP, 1 and 32 clients.

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use maskstore::{SignOptions, SignedMethod, Storage};

use crate::MIB;
use crate::common::full_run;
use crate::common::stats::median;

/// MiB/s of `ops` operations of 1 MiB each, `clients` at a time.
async fn rate<F, Fut>(ops: usize, clients: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    futures::stream::iter(0..ops)
        .map(&op)
        .buffer_unordered(clients)
        .collect::<Vec<()>>()
        .await;
    ops as f64 / started.elapsed().as_secs_f64()
}

/// The ceiling of HTTP over loopback with the same client: an axum server that answers a
/// GET with 1 MiB from memory and reads a PUT's body into memory, with no store, no
/// signature and no disk. Returns its URL.
async fn plain_http_server(body: Bytes) -> String {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/blob", listener.local_addr().unwrap());
    let router = axum::Router::new().route(
        "/blob",
        get(move || {
            let body = body.clone();
            async move { body }
        })
        .put(|received: Bytes| async move { received.len().to_string() }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// What the gateway benchmark measures, each a rate of 1 MiB operations.
#[derive(Clone, Copy)]
enum Transfer {
    DirectGet,
    GatewayGet,
    PlainGet,
    DirectPut,
    GatewayPut,
    PlainPut,
}

/// Everything one gateway measurement needs.
struct GatewayBench {
    storage: Storage,
    keys: Vec<maskstore::ObjectKey>,
    get_urls: Vec<String>,
    put_urls: Vec<String>,
    plain: String,
    http: reqwest::Client,
    body: Bytes,
}

impl GatewayBench {
    /// Objects per second of `ops` transfers, `clients` at a time.
    async fn rate(&self, transfer: Transfer, ops: usize, clients: usize) -> f64 {
        let n = self.keys.len();
        rate(ops, clients, |i| async move {
            match transfer {
                Transfer::DirectGet => {
                    let object = self.storage.get(&self.keys[i % n]).await.unwrap();
                    assert_eq!(object.data.len(), MIB as usize);
                }
                Transfer::DirectPut => {
                    self.storage
                        .put(&self.keys[i % n], self.body.clone())
                        .await
                        .unwrap();
                }
                Transfer::GatewayGet | Transfer::PlainGet => {
                    let url = match transfer {
                        Transfer::GatewayGet => &self.get_urls[i % n],
                        _ => &self.plain,
                    };
                    let response = self.http.get(url).send().await.unwrap();
                    assert!(response.status().is_success());
                    assert_eq!(response.bytes().await.unwrap().len(), MIB as usize);
                }
                Transfer::GatewayPut | Transfer::PlainPut => {
                    let url = match transfer {
                        Transfer::GatewayPut => &self.put_urls[i % n],
                        _ => &self.plain,
                    };
                    let response = self.http.put(url).body(self.body.clone()).send().await;
                    assert!(response.unwrap().status().is_success());
                }
            }
        })
        .await
    }
}

/// Signed URLs of `method` for every key.
async fn urls(
    storage: &Storage,
    keys: &[maskstore::ObjectKey],
    method: SignedMethod,
) -> Vec<String> {
    let mut urls = Vec::new();
    for key in keys {
        let signed = storage
            .signed_url(method, key, None, &SignOptions::default())
            .await
            .unwrap();
        urls.push(signed.url);
    }
    urls
}

/// The gateway against direct `Storage` and against a plain HTTP server, at 1 and 32
/// clients. Each figure is the median of five rounds, the six transfers in rotating order
/// within a round, so a slow spell of the machine does not land on one column only.
fn gateway() -> Vec<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let served = maskstore_testkit::temp_dir_served().await;
        let storage: Storage = (*served).clone();
        let body = Bytes::from(vec![1u8; MIB as usize]);
        let keys: Vec<_> = (0..64)
            .map(|i| storage.key(&format!("gw/{i}.bin")).unwrap())
            .collect();
        for key in &keys {
            storage.put(key, body.clone()).await.unwrap();
        }
        let bench = GatewayBench {
            get_urls: urls(&storage, &keys, SignedMethod::Get).await,
            put_urls: urls(&storage, &keys, SignedMethod::Put).await,
            plain: plain_http_server(body.clone()).await,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            storage,
            keys,
            body,
        };
        let (ops, rounds) = if full_run() { (512, 5) } else { (32, 1) };
        let transfers = [
            Transfer::DirectGet,
            Transfer::GatewayGet,
            Transfer::PlainGet,
            Transfer::DirectPut,
            Transfer::GatewayPut,
            Transfer::PlainPut,
        ];
        let mut rows = Vec::new();
        for clients in [1usize, 32] {
            let mut rates: Vec<Vec<f64>> = vec![Vec::new(); transfers.len()];
            for round in 0..rounds {
                for i in 0..transfers.len() {
                    let which = (i + round) % transfers.len();
                    rates[which].push(bench.rate(transfers[which], ops, clients).await);
                }
            }
            let m: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
            // If the gateway were exactly a store operation followed by a plain HTTP
            // transfer, each costing what it costs alone, its rate would be this.
            let added = |direct: f64, plain: f64| 1.0 / (1.0 / direct + 1.0 / plain);
            for (method, direct, gateway, plain) in
                [("GET", m[0], m[1], m[2]), ("PUT", m[3], m[4], m[5])]
            {
                let added = added(direct, plain);
                rows.push(format!(
                    "| {method} | {clients} | {direct:.0} | {gateway:.0} | {:.0} % | {plain:.0} | {added:.0} | {:.0} % |",
                    gateway / direct * 100.0,
                    gateway / added * 100.0
                ));
            }
        }
        drop(served);
        rows
    })
}

/// Prints the `gateway` section.
pub fn print() {
    println!("\n## Gateway vs direct Storage, 1 MiB objects, local backend (objects per second)\n");
    println!(
        "| method | clients | direct | gateway | gateway/direct | plain HTTP | direct and plain added | gateway/added |\n|---|---|---|---|---|---|---|---|"
    );
    for row in gateway() {
        println!("{row}");
    }
}
