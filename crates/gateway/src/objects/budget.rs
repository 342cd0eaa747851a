//! Memory budgets for what requests hold in flight. Every GET body reserves the bytes it
//! may hold (its read chunk, the one the verifier holds back, and hyper's write), so
//! readers that stop reading cost a bounded total whatever `gateway.max_connections` is;
//! a conditional upload reserves its body.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::reply::reply;

/// The bytes all download bodies in flight may hold at once: 64 MiB.
pub const DOWNLOAD_MEMORY_BUDGET: u64 = 64 * 1024 * 1024;

/// The most one download holds: the read chunk in hyper's hands and the next one the
/// verifier holds back (the local provider reads 1 MiB chunks).
const MAX_HELD_PER_DOWNLOAD: u64 = 2 * 1024 * 1024;

/// How long a request waits for room in the budget before it is answered 503.
const BUDGET_WAIT: Duration = Duration::from_secs(5);

/// Budget units are KiB, so a semaphore's count covers the budget.
const UNIT: u64 = 1024;

/// A memory budget shared by the requests of a router.
#[derive(Debug, Clone)]
pub(crate) struct MemoryBudget {
    permits: Arc<Semaphore>,
    /// How long a request waits for room ([`BUDGET_WAIT`]).
    wait: Duration,
}

/// The download memory budget of a router.
pub(crate) fn download_budget() -> MemoryBudget {
    MemoryBudget::new(DOWNLOAD_MEMORY_BUDGET)
}

/// `bytes` in budget units, rounded up.
fn units(bytes: u64) -> usize {
    usize::try_from(bytes.div_ceil(UNIT)).unwrap_or(usize::MAX)
}

impl MemoryBudget {
    /// A budget of `bytes`.
    pub(crate) fn new(bytes: u64) -> MemoryBudget {
        MemoryBudget {
            permits: Arc::new(Semaphore::new(units(bytes))),
            wait: BUDGET_WAIT,
        }
    }

    /// Reserves what a download body of `length` bytes may hold (at most
    /// [`MAX_HELD_PER_DOWNLOAD`]).
    pub(crate) async fn reserve_download(
        &self,
        length: u64,
    ) -> Result<OwnedSemaphorePermit, Box<Response>> {
        self.reserve(length.clamp(1, MAX_HELD_PER_DOWNLOAD)).await
    }

    /// Reserves `bytes`, waiting up to [`BUDGET_WAIT`]; else a 503 with `Retry-After`.
    pub(crate) async fn reserve(&self, bytes: u64) -> Result<OwnedSemaphorePermit, Box<Response>> {
        let wanted = units(bytes.max(1));
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        let acquire = Arc::clone(&self.permits).acquire_many_owned(wanted);
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                let mut response = reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the gateway's memory for requests in flight is taken; try again shortly",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                Err(Box::new(response))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn downloads_beyond_the_budget_wait_and_are_refused() {
        let budget = MemoryBudget {
            wait: Duration::from_millis(10),
            ..download_budget()
        };
        let held = DOWNLOAD_MEMORY_BUDGET / MAX_HELD_PER_DOWNLOAD;
        let mut permits = Vec::new();
        for _ in 0..held {
            permits.push(
                budget
                    .reserve_download(4 << 20)
                    .await
                    .expect("within the budget"),
            );
        }
        let refused = budget
            .reserve_download(10)
            .await
            .expect_err("beyond the budget");
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        permits.pop();
        assert!(budget.reserve_download(4 << 20).await.is_ok());
    }
}
