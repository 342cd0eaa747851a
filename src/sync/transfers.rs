//! Copies run a bounded number at a time.

use futures::{Stream, StreamExt};
use maskstore_backends::{Result, Storage, UPLOAD_MAX_IN_FLIGHT, UPLOAD_PART_SIZE};
use maskstore_core::ObjectKey;
use tokio::sync::Semaphore;

use super::{Copied, ToCopy, copy_planned};

/// The bytes the copies of one run hold at once at most: what a large object's upload
/// holds (its parts in flight and one read ahead, 40 MiB) and room for small ones beside it.
pub const BYTES_IN_FLIGHT: usize = 64 * 1024 * 1024;

/// The budget's unit, so that it fits a semaphore's permits.
const KIB: usize = 1024;

/// Copies each of `copies` from `from` to `to`, at most `transfers` at once (at least 1),
/// started in the order given and handed back as each finishes, in any order: the key
/// with what [`copy_planned`] did. An item of `copies` that is an error is handed back
/// as it is, and the others go on.
///
/// Bytes in flight stay bounded too, to [`BYTES_IN_FLIGHT`] whatever `transfers` is: an
/// object below the destination's multipart threshold is one PUT of its size and takes
/// one of the `transfers` slots and its size of that budget; a larger one keeps
/// [`UPLOAD_MAX_IN_FLIGHT`] parts in flight and one read ahead, and takes that many slots
/// (all of them when `transfers` is smaller) and that many parts of the budget.
pub fn copy_each<'a>(
    from: &'a Storage,
    to: &'a Storage,
    copies: impl Iterator<Item = Result<ToCopy>> + 'a,
    transfers: usize,
) -> impl Stream<Item = Result<(ObjectKey, Result<Copied>)>> + 'a {
    let transfers = transfers.max(1);
    let slots = std::sync::Arc::new(Semaphore::new(transfers));
    let budget = std::sync::Arc::new(Semaphore::new(BYTES_IN_FLIGHT / KIB));
    let large = (UPLOAD_MAX_IN_FLIGHT + 1).min(transfers) as u32;
    let large_bytes = ((UPLOAD_MAX_IN_FLIGHT + 1) * UPLOAD_PART_SIZE / KIB) as u32;
    let threshold = to.multipart_threshold() as u64;
    futures::stream::iter(copies)
        .map(move |copy| {
            let (slots, budget) = (
                std::sync::Arc::clone(&slots),
                std::sync::Arc::clone(&budget),
            );
            async move {
                let ToCopy {
                    key,
                    size,
                    replacing,
                } = copy?;
                let (weight, bytes) = if size >= threshold {
                    (large, large_bytes)
                } else {
                    (1, size.div_ceil(KIB as u64).min(large_bytes as u64) as u32)
                };
                let _slots = slots.acquire_many(weight).await.expect("never closed");
                let _bytes = budget.acquire_many(bytes).await.expect("never closed");
                let result = copy_planned(from, to, &key, replacing).await;
                Ok((key, result))
            }
        })
        .buffer_unordered(transfers)
}
