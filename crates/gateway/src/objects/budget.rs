//! Memory budgets for what requests hold in flight. Every GET body reserves the bytes it
//! may hold (its read chunk, the one the verifier holds back, and hyper's write; a body
//! sent with `sendfile` only its 4 KiB tail, see [`crate::sendfile`]), so
//! readers that stop reading cost a bounded total whatever `gateway.max_connections` is;
//! a conditional upload reserves its body. One client address holds at most its share of
//! a budget, so its stalled readers cannot leave every other client waiting for room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::reply::{over_share, reply};

/// The bytes all download bodies in flight may hold at once: 64 MiB.
pub const DOWNLOAD_MEMORY_BUDGET: u64 = 64 * 1024 * 1024;

/// The bytes one client address's download bodies may hold at once: 8 MiB, four stalled
/// downloads of 2 MiB or more (an eighth of [`DOWNLOAD_MEMORY_BUDGET`]).
pub const DOWNLOAD_MEMORY_PER_CLIENT: u64 = DOWNLOAD_MEMORY_BUDGET / 8;

/// The most one download holds: the read chunk in hyper's hands and the next one the
/// verifier holds back (the local provider reads 1 MiB chunks).
const MAX_HELD_PER_DOWNLOAD: u64 = 2 * 1024 * 1024;

/// How long a request waits for room in the budget before it is answered 503.
const BUDGET_WAIT: Duration = Duration::from_secs(5);

/// Budget units are KiB, so a semaphore's count covers the budget.
const UNIT: u64 = 1024;

/// A memory budget shared by the requests of a router, and each client's share of it.
#[derive(Debug, Clone)]
pub(crate) struct MemoryBudget {
    permits: Arc<Semaphore>,
    /// How long a request waits for room ([`BUDGET_WAIT`]).
    wait: Duration,
    /// The units one client address may hold.
    per_client: usize,
    /// The clients holding or waiting for room, each with its share.
    clients: Arc<Mutex<HashMap<IpAddr, Arc<Semaphore>>>>,
}

/// Room reserved in a budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct Reserved {
    _global: OwnedSemaphorePermit,
    _client: Option<ClientRoom>,
}

/// A client's part of a [`Reserved`]: its share's permit, and what forgets the client once
/// it holds nothing and nobody waits.
#[derive(Debug)]
struct ClientRoom {
    permit: Option<OwnedSemaphorePermit>,
    share: Arc<Semaphore>,
    client: IpAddr,
    budget: MemoryBudget,
}

impl Drop for ClientRoom {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.budget.forget_if_idle(self.client, &self.share);
    }
}

/// The download memory budget of a router.
pub(crate) fn download_budget() -> MemoryBudget {
    MemoryBudget::new(DOWNLOAD_MEMORY_BUDGET, DOWNLOAD_MEMORY_PER_CLIENT)
}

/// `bytes` in budget units, rounded up.
fn units(bytes: u64) -> usize {
    usize::try_from(bytes.div_ceil(UNIT)).unwrap_or(usize::MAX)
}

/// `wanted` permits of `semaphore`: at once when they are free (no timer is set up for
/// the common case), else waiting for them until `until`; `None` once that passed.
async fn acquire_until(
    semaphore: &Arc<Semaphore>,
    wanted: u32,
    until: tokio::time::Instant,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = Arc::clone(semaphore).try_acquire_many_owned(wanted) {
        return Some(permit);
    }
    let acquire = Arc::clone(semaphore).acquire_many_owned(wanted);
    tokio::time::timeout_at(until, acquire).await.ok()?.ok()
}

/// A 503 with `Retry-After` saying `why`.
fn busy(why: &str) -> Box<Response> {
    let mut response = reply(StatusCode::SERVICE_UNAVAILABLE, why);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    Box::new(response)
}

impl MemoryBudget {
    /// A budget of `bytes`, of which one client may hold `per_client`.
    pub(crate) fn new(bytes: u64, per_client: u64) -> MemoryBudget {
        MemoryBudget {
            permits: Arc::new(Semaphore::new(units(bytes))),
            wait: BUDGET_WAIT,
            per_client: units(per_client.min(bytes)),
            clients: Arc::default(),
        }
    }

    /// Reserves what a download body of `length` bytes may hold (at most
    /// [`MAX_HELD_PER_DOWNLOAD`]) for `client`.
    pub(crate) async fn reserve_download(
        &self,
        length: u64,
        client: Option<IpAddr>,
    ) -> Result<Reserved, Box<Response>> {
        self.reserve(length.clamp(1, MAX_HELD_PER_DOWNLOAD), client)
            .await
    }

    /// Reserves `bytes` for `client` (`None`: a router mounted without peer addresses),
    /// first within its share, then within the budget, waiting up to [`BUDGET_WAIT`] in
    /// all; else a 503 with `Retry-After`.
    pub(crate) async fn reserve(
        &self,
        bytes: u64,
        client: Option<IpAddr>,
    ) -> Result<Reserved, Box<Response>> {
        let wanted = u32::try_from(units(bytes.max(1))).unwrap_or(u32::MAX);
        let until = tokio::time::Instant::now() + self.wait;
        let client = match client {
            Some(client) => Some(self.reserve_share(client, wanted, until).await?),
            None => None,
        };
        match acquire_until(&self.permits, wanted, until).await {
            Some(permit) => Ok(Reserved {
                _global: permit,
                _client: client,
            }),
            None => Err(busy(
                "the gateway's memory for requests in flight is taken; try again shortly",
            )),
        }
    }

    /// `wanted` units of `client`'s share (all of it at most), waiting until `until`.
    async fn reserve_share(
        &self,
        client: IpAddr,
        wanted: u32,
        until: tokio::time::Instant,
    ) -> Result<ClientRoom, Box<Response>> {
        let per_client = self.per_client;
        let share = Arc::clone(
            self.lock()
                .entry(client)
                .or_insert_with(|| Arc::new(Semaphore::new(per_client))),
        );
        let wanted = wanted.min(u32::try_from(per_client).unwrap_or(u32::MAX));
        // The room forgets the client when it goes, however it goes: refused, or dropped
        // while it waits (its client went away), also just after its share was handed to
        // it. Its wait, which holds `share` too, is dropped before it.
        let mut room = ClientRoom {
            permit: None,
            share,
            client,
            budget: self.clone(),
        };
        room.permit = acquire_until(&room.share, wanted, until).await;
        if room.permit.is_some() {
            return Ok(room);
        }
        Err(Box::new(over_share(
            "1",
            "this client's requests in flight hold its share of the gateway's memory; \
             finish reading them or try again shortly",
        )))
    }

    /// Drops `client`'s entry once nobody but the map and the caller holds `share` and all
    /// of it is free: the map holds only clients holding or waiting for room.
    fn forget_if_idle(&self, client: IpAddr, share: &Arc<Semaphore>) {
        let mut clients = self.lock();
        let known = clients.get(&client).is_some_and(|s| Arc::ptr_eq(s, share));
        if known && Arc::strong_count(share) == 2 && share.available_permits() == self.per_client {
            clients.remove(&client);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Arc<Semaphore>>> {
        // Entries are inserted and removed in one step each: a panic leaves none half-done.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many clients hold or wait for room.
    #[cfg(test)]
    fn clients_known(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(budget: MemoryBudget) -> MemoryBudget {
        MemoryBudget {
            wait: Duration::from_millis(10),
            ..budget
        }
    }

    #[tokio::test]
    async fn downloads_beyond_the_budget_wait_and_are_refused() {
        let budget = quick(download_budget());
        let held = DOWNLOAD_MEMORY_BUDGET / MAX_HELD_PER_DOWNLOAD;
        let mut permits = Vec::new();
        for i in 0..held {
            let client = IpAddr::from([10, 0, 0, u8::try_from(i).unwrap()]);
            permits.push(
                budget
                    .reserve_download(4 << 20, Some(client))
                    .await
                    .expect("within the budget"),
            );
        }
        let refused = budget
            .reserve_download(10, None)
            .await
            .expect_err("beyond the budget");
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        permits.pop();
        assert!(budget.reserve_download(4 << 20, None).await.is_ok());
    }

    /// A request dropped at any point of its reservation (its client went away) gives back
    /// all it took, and its client is forgotten once nothing of it is held or waited for:
    /// also when the share it waited for was handed to it just before it was dropped.
    #[tokio::test]
    async fn a_reservation_dropped_at_any_point_leaves_nothing_behind() {
        use std::future::Future;
        use std::task::Context;
        let poll_once = |f: &mut std::pin::Pin<Box<dyn Future<Output = _> + Send + '_>>| {
            f.as_mut()
                .poll(&mut Context::from_waker(std::task::Waker::noop()))
        };
        let budget = download_budget();
        let client = IpAddr::from([198, 51, 100, 8]);
        let other = IpAddr::from([203, 0, 113, 10]);
        for handed_over in [false, true] {
            // Waiting for its share, which the first request holds whole.
            let held = budget.reserve(DOWNLOAD_MEMORY_PER_CLIENT, Some(client));
            let held = held.await.unwrap();
            let mut waiting: std::pin::Pin<Box<dyn Future<Output = _> + Send>> =
                Box::pin(budget.reserve(1, Some(client)));
            assert!(poll_once(&mut waiting).is_pending());
            if handed_over {
                // Its share is handed to it, and it is dropped before it sees it.
                drop(held);
                drop(waiting);
            } else {
                drop(waiting);
                drop(held);
            }
            assert_eq!(budget.clients_known(), 0, "handed over: {handed_over}");
        }
        // Waiting for the budget, its share taken.
        let rest = DOWNLOAD_MEMORY_BUDGET - DOWNLOAD_MEMORY_PER_CLIENT;
        let mut held = Vec::new();
        for n in 0..rest / DOWNLOAD_MEMORY_PER_CLIENT {
            let hog = IpAddr::from([192, 0, 2, u8::try_from(n).unwrap()]);
            held.push(
                budget
                    .reserve(DOWNLOAD_MEMORY_PER_CLIENT, Some(hog))
                    .await
                    .unwrap(),
            );
        }
        let last = budget
            .reserve(DOWNLOAD_MEMORY_PER_CLIENT, Some(other))
            .await
            .unwrap();
        let mut waiting: std::pin::Pin<Box<dyn Future<Output = _> + Send>> =
            Box::pin(budget.reserve(1, Some(client)));
        assert!(poll_once(&mut waiting).is_pending());
        drop(last);
        drop(waiting);
        held.clear();
        assert_eq!(budget.clients_known(), 0);
        assert_eq!(
            budget.permits.available_permits(),
            units(DOWNLOAD_MEMORY_BUDGET)
        );
    }

    #[tokio::test]
    async fn one_client_holds_at_most_its_share_of_the_download_budget() {
        let budget = quick(download_budget());
        let hog = IpAddr::from([198, 51, 100, 7]);
        let share = DOWNLOAD_MEMORY_PER_CLIENT / MAX_HELD_PER_DOWNLOAD;
        let mut stalled = Vec::new();
        for _ in 0..share {
            stalled.push(budget.reserve_download(4 << 20, Some(hog)).await.unwrap());
        }
        let refused = budget
            .reserve_download(4 << 20, Some(hog))
            .await
            .expect_err("beyond the client's share");
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.headers().contains_key(header::RETRY_AFTER));
        let other = IpAddr::from([203, 0, 113, 9]);
        let served = budget.reserve_download(4 << 20, Some(other)).await;
        assert!(served.is_ok(), "another client still finds room");
        drop(served);
        stalled.clear();
        assert_eq!(
            budget.clients_known(),
            0,
            "clients holding nothing are forgotten"
        );
        assert_eq!(
            budget.permits.available_permits(),
            units(DOWNLOAD_MEMORY_BUDGET)
        );
    }
}
