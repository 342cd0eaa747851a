//! Copies run a bounded number at a time.

use futures::{Stream, StreamExt};
use maskstore_backends::{Result, Storage};
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
/// one of the `transfers` slots and its size of that budget; a larger one keeps the
/// destination's parts in flight ([`Storage::upload_max_in_flight`]) and one read ahead,
/// and takes a slot for each of those it can have (all of them when `transfers` is
/// smaller) and what they hold of the budget (never more than its size): a 1 MiB object
/// onto local disk (256 KiB parts, one in flight) takes two slots and 1 MiB.
pub fn copy_each<'a>(
    from: &'a Storage,
    to: &'a Storage,
    copies: impl Iterator<Item = Result<ToCopy>> + 'a,
    transfers: usize,
) -> impl Stream<Item = Result<(ObjectKey, Result<Copied>)>> + 'a {
    let transfers = transfers.max(1);
    let slots = std::sync::Arc::new(Semaphore::new(transfers));
    let budget = std::sync::Arc::new(Semaphore::new(BYTES_IN_FLIGHT / KIB));
    let threshold = to.multipart_threshold().max(1) as u64;
    let held_parts = to.upload_max_in_flight() as u64 + 1;
    // What the largest upload holds, within the budget whatever the destination says.
    let most_bytes = (held_parts * threshold).min(BYTES_IN_FLIGHT as u64);
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
                let parts = size.div_ceil(threshold).clamp(1, held_parts);
                let weight = parts.min(transfers as u64) as u32;
                let bytes = size.min(most_bytes).div_ceil(KIB as u64) as u32;
                let _slots = slots.acquire_many(weight).await.expect("never closed");
                let _bytes = budget.acquire_many(bytes).await.expect("never closed");
                let result = copy_planned(from, to, &key, replacing).await;
                Ok((key, result))
            }
        })
        .buffer_unordered(transfers)
}
