//! Fault injection for application tests: a wrapper around any `Storage`'s backend that
//! fails a share of calls, or the n-th call, of a chosen operation with a chosen error,
//! adds latency, or cuts a download stream midway.
//!
//! An application test proving its save path retries a failed upload:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use maskstore_backends::{Error, Storage};
//! use maskstore_testkit::chaos::{Chaos, Fault, Op, When};
//!
//! // The application's code under test: retries a put once on a backend failure.
//! async fn save(storage: &Storage, name: &str, bytes: &'static [u8]) -> Result<(), Error> {
//!     let key = storage.key(name)?;
//!     match storage.put(&key, bytes).await {
//!         Err(Error::Backend { .. } | Error::Unreachable { .. }) => storage.put(&key, bytes).await.map(drop),
//!         other => other.map(drop),
//!     }
//! }
//!
//! let storage = Chaos::over(&maskstore_testkit::memory())
//!     .rule(Op::Put, When::Nth(1), Fault::Unavailable)
//!     .storage();
//! save(&storage, "seg.png", b"mask").await.unwrap();
//! assert_eq!(storage.get(&storage.key("seg.png").unwrap()).await.unwrap().data, "mask");
//! # });
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use maskstore_backends::Storage;
use maskstore_backends::layers::{Call, Intercept};
use object_store::path::Path;
use object_store::{GetResult, GetResultPayload, ObjectMeta, Result};

/// The operations a rule can target. A streaming upload is an `Upload` hit when its
/// multipart upload starts, at `Storage::multipart_threshold` bytes; a smaller one is one `Put`.
pub use maskstore_backends::Operation as Op;

/// Which calls of the operation a rule hits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    /// Every call.
    Always,
    /// Each call with this probability (0..=1). Which calls are hit follows from the seed,
    /// the operation and the call's number alone, so the schedule is the same however
    /// calls of other operations interleave.
    Share(f64),
    /// Only the n-th call (1-based).
    Nth(u64),
}

/// What happens to a hit call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// The backend is unavailable (like a 503): a server error.
    Unavailable,
    /// The backend refuses (like a 403): a client error.
    PermissionDenied,
    /// The key is not there.
    NotFound,
    /// The call waits this long first, then proceeds.
    Latency(Duration),
    /// A download's stream fails after this many bytes.
    CutStreamAfter(u64),
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    op: Op,
    when: When,
    fault: Fault,
}

/// The fault-injecting layer's builder. Build it with [`Chaos::over`], add rules, then take
/// the [`Chaos::storage`] (or the [`Chaos::layer`] to put on a storage yourself).
#[derive(Debug)]
pub struct Chaos {
    base: Storage,
    state: Arc<State>,
}

/// The fault-injecting layer: a [`maskstore_backends::Layer`] applying a [`Chaos`]'s rules.
#[derive(Debug, Clone)]
pub struct Faults {
    state: Arc<State>,
}

/// The rules, call counts and seed, shared with the streams a call returns.
#[derive(Debug)]
struct State {
    rules: Vec<Rule>,
    calls: [AtomicU64; 8],
    seed: u64,
}

/// A uniform draw in [0, 1) fixed by its inputs (SplitMix64 over them).
fn draw(seed: u64, op: Op, rule: usize, n: u64) -> f64 {
    let mut z = seed
        ^ (op as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (rule as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9)
        ^ n.wrapping_mul(0x94d0_49bb_1331_11eb);
    for _ in 0..2 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
    }
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// What the rules decided for one call.
#[derive(Debug, Default)]
struct Decision {
    latency: Duration,
    cut: Option<u64>,
    error: Option<object_store::Error>,
}

impl State {
    /// Counts one call of `op` and applies every matching rule, in the order added.
    fn decide(&self, op: Op, location: &Path) -> Decision {
        let n = self.calls[op as usize].fetch_add(1, Ordering::SeqCst) + 1;
        let mut decision = Decision::default();
        for (index, rule) in self.rules.iter().enumerate().filter(|(_, r)| r.op == op) {
            let hit = match rule.when {
                When::Always => true,
                When::Nth(k) => k == n,
                When::Share(p) => draw(self.seed, op, index, n) < p.clamp(0.0, 1.0),
            };
            if !hit {
                continue;
            }
            let error = match rule.fault {
                Fault::Latency(d) => {
                    decision.latency += d;
                    continue;
                }
                Fault::CutStreamAfter(bytes) => {
                    decision.cut = Some(bytes);
                    continue;
                }
                Fault::Unavailable => object_store::Error::Generic {
                    store: "chaos",
                    source: format!("injected: service unavailable ({op:?} call {n})").into(),
                },
                Fault::PermissionDenied => object_store::Error::PermissionDenied {
                    path: location.to_string(),
                    source: format!("injected: access denied ({op:?} call {n})").into(),
                },
                Fault::NotFound => object_store::Error::NotFound {
                    path: location.to_string(),
                    source: format!("injected: not found ({op:?} call {n})").into(),
                },
            };
            decision.error = Some(error);
            break;
        }
        decision
    }
}

impl Chaos {
    /// Faults for `storage` (same prefix, data, signer, settings and metrics).
    pub fn over(storage: &Storage) -> Chaos {
        Chaos {
            base: storage.clone(),
            state: Arc::new(State {
                rules: Vec::new(),
                calls: Default::default(),
                seed: 0x6d61736b,
            }),
        }
    }

    fn state_mut(&mut self) -> &mut State {
        Arc::get_mut(&mut self.state).expect("rules are set before the storage is taken")
    }

    /// Seeds the schedule of [`When::Share`] (runs are reproducible per seed).
    pub fn seed(mut self, seed: u64) -> Chaos {
        self.state_mut().seed = seed;
        self
    }

    /// Adds a rule; every matching rule applies, in the order added.
    pub fn rule(mut self, op: Op, when: When, fault: Fault) -> Chaos {
        self.state_mut().rules.push(Rule { op, when, fault });
        self
    }

    /// The layer applying these rules.
    pub fn layer(&self) -> Faults {
        Faults {
            state: Arc::clone(&self.state),
        }
    }

    /// The storage whose calls go through the faults: the one given to [`Chaos::over`],
    /// layered.
    pub fn storage(self) -> Storage {
        self.base.layer(self.layer())
    }
}

impl Faults {
    /// How many calls of `op` were made.
    pub fn calls(&self, op: Op) -> u64 {
        self.state.calls[op as usize].load(Ordering::SeqCst)
    }
}

/// Applies the rules for one call of `op`; returns the stream cut, if any.
async fn enter(state: &State, op: Op, location: &Path) -> Result<Option<u64>> {
    let decision = state.decide(op, location);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    match decision.error {
        Some(e) => Err(e),
        None => Ok(decision.cut),
    }
}

fn cut_stream(
    stream: BoxStream<'static, Result<Bytes>>,
    after: u64,
) -> BoxStream<'static, Result<Bytes>> {
    let cut = move || object_store::Error::Generic {
        store: "chaos",
        source: format!("injected: stream cut after {after} bytes").into(),
    };
    // State: the inner stream, bytes passed on, and the phase.
    #[derive(Clone, Copy, PartialEq)]
    enum Phase {
        Passing,
        CutNext,
        Done,
    }
    futures::stream::unfold(
        (stream, 0u64, Phase::Passing),
        move |(mut stream, sent, phase)| async move {
            match phase {
                Phase::Done => None,
                Phase::CutNext => Some((Err(cut()), (stream, sent, Phase::Done))),
                Phase::Passing => match stream.next().await? {
                    Err(e) => Some((Err(e), (stream, sent, Phase::Done))),
                    // More bytes than allowed are coming: cut here.
                    Ok(_) if sent >= after => Some((Err(cut()), (stream, sent, Phase::Done))),
                    Ok(chunk) => {
                        let room = (after - sent).min(chunk.len() as u64) as usize;
                        let next = if room < chunk.len() {
                            Phase::CutNext
                        } else {
                            Phase::Passing
                        };
                        Some((Ok(chunk.slice(..room)), (stream, sent + room as u64, next)))
                    }
                },
            }
        },
    )
    .boxed()
}

impl Intercept for Faults {
    fn name(&self) -> &str {
        "chaos"
    }

    fn call<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        async move {
            enter(&self.state, call.operation, call.location).await?;
            run.await
        }
        .boxed()
    }

    fn get<'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<GetResult>>,
    ) -> BoxFuture<'a, Result<GetResult>> {
        async move {
            let cut = enter(&self.state, call.operation, call.location).await?;
            let result = run.await?;
            let Some(after) = cut else { return Ok(result) };
            let (meta, range, attributes, extensions) = (
                result.meta.clone(),
                result.range.clone(),
                result.attributes.clone(),
                result.extensions.clone(),
            );
            Ok(GetResult {
                payload: GetResultPayload::Stream(cut_stream(result.into_stream(), after)),
                meta,
                range,
                attributes,
                extensions,
            })
        }
        .boxed()
    }

    fn list(
        &self,
        prefix: &Path,
        list: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let decision = self.state.decide(Op::List, prefix);
        let listing = match decision.error {
            Some(e) => futures::stream::once(async move { Err(e) }).boxed(),
            None => list,
        };
        if decision.latency.is_zero() {
            return listing;
        }
        futures::stream::once(tokio::time::sleep(decision.latency))
            .flat_map(move |()| futures::stream::empty())
            .chain(listing)
            .boxed()
    }

    fn delete(
        &self,
        locations: BoxStream<'static, Result<Path>>,
        delete: &dyn Fn(BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // Rules apply per key, as each delete is a call.
        let state = Arc::clone(&self.state);
        let checked = locations
            .then(move |location| {
                let state = Arc::clone(&state);
                async move {
                    let location = location?;
                    enter(&state, Op::Delete, &location).await?;
                    Ok(location)
                }
            })
            .boxed();
        delete(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use maskstore_backends::Error;

    #[tokio::test]
    async fn nth_call_fails_with_the_chosen_error_and_others_pass() {
        let storage = Chaos::over(&crate::memory())
            .rule(Op::Put, When::Nth(2), Fault::PermissionDenied)
            .storage();
        let key = storage.key("a").unwrap();
        storage.put(&key, "1").await.unwrap();
        assert!(matches!(
            storage.put(&key, "2").await,
            Err(Error::PermissionDenied { .. })
        ));
        storage.put(&key, "3").await.unwrap();
        assert_eq!(storage.get(&key).await.unwrap().data, "3");
    }

    #[tokio::test]
    async fn a_share_of_calls_fails_reproducibly() {
        let run = |seed| async move {
            let storage = Chaos::over(&crate::memory())
                .seed(seed)
                .rule(Op::Head, When::Share(0.5), Fault::Unavailable)
                .storage();
            let key = storage.key("a").unwrap();
            storage.put(&key, "x").await.unwrap();
            let mut failures = Vec::new();
            for i in 0..40 {
                if storage.head(&key).await.is_err() {
                    failures.push(i);
                }
            }
            failures
        };
        let first = run(7).await;
        assert!(
            (8..=32).contains(&first.len()),
            "{} of 40 failed",
            first.len()
        );
        assert_eq!(first, run(7).await, "same seed, same failures");
    }

    #[tokio::test]
    async fn a_share_of_calls_is_the_same_however_other_operations_interleave() {
        let run = |puts_between: bool| async move {
            let storage = Chaos::over(&crate::memory())
                .seed(11)
                .rule(Op::Head, When::Share(0.5), Fault::Unavailable)
                .rule(Op::Put, When::Share(0.5), Fault::Unavailable)
                .storage();
            let key = storage.key("a").unwrap();
            let mut failures = Vec::new();
            for i in 0..40 {
                if puts_between {
                    let _ = storage.put(&key, "x").await;
                }
                if storage
                    .head(&key)
                    .await
                    .is_err_and(|e| !matches!(e, Error::NotFound { .. }))
                {
                    failures.push(i);
                }
            }
            failures
        };
        let alone = run(false).await;
        assert!((8..=32).contains(&alone.len()), "{alone:?}");
        assert_eq!(
            alone,
            run(true).await,
            "puts in between moved the head failures"
        );
    }

    #[tokio::test]
    async fn a_cut_stream_fails_midway_whole_or_into_a_file() {
        let base = crate::memory();
        let key = base.key("big").unwrap();
        base.put(&key, vec![1u8; 10_000]).await.unwrap();
        let storage = Chaos::over(&base)
            .rule(Op::Get, When::Always, Fault::CutStreamAfter(4096))
            .storage();
        let err = storage.get(&key).await.unwrap_err();
        assert!(err.to_string().contains("cut after 4096"), "{err}");
        // Into a file, the store's error comes back, not a Destination error.
        let file = tempfile::tempfile().unwrap();
        let err = storage
            .read_to_file(&key, &file, |_, _| {})
            .await
            .unwrap_err();
        assert!(
            !matches!(err, Error::Destination { .. }) && err.to_string().contains("cut after 4096"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn every_fault_applies_to_listings_and_deletes_too() {
        let storage = Chaos::over(&crate::memory())
            .rule(Op::List, When::Nth(1), Fault::PermissionDenied)
            .rule(Op::Delete, When::Nth(2), Fault::NotFound)
            .storage();
        let listed: Result<Vec<_>, _> = storage.list(None).unwrap().try_collect().await;
        assert!(
            matches!(listed, Err(Error::PermissionDenied { .. })),
            "{listed:?}"
        );
        assert!(
            storage
                .list(None)
                .unwrap()
                .try_collect::<Vec<_>>()
                .await
                .is_ok()
        );
        let key = storage.key("a").unwrap();
        storage.delete(&key).await.unwrap();
        // Delete of a missing key is Ok by contract, so an injected NotFound is too.
        storage.delete(&key).await.unwrap();
        let failing = Chaos::over(&crate::memory())
            .rule(Op::Delete, When::Always, Fault::Unavailable)
            .storage();
        assert!(failing.delete(&failing.key("a").unwrap()).await.is_err());
    }

    #[tokio::test]
    async fn latency_delays_the_call() {
        let storage = Chaos::over(&crate::memory())
            .rule(
                Op::Put,
                When::Always,
                Fault::Latency(Duration::from_millis(120)),
            )
            .storage();
        let started = std::time::Instant::now();
        storage.put(&storage.key("a").unwrap(), "x").await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(120));
    }
}
