//! Copies run a bounded number at a time.

use futures::{Stream, StreamExt};
use maskstore_backends::{Result, Storage, UPLOAD_MAX_IN_FLIGHT};
use maskstore_core::ObjectKey;
use tokio::sync::Semaphore;

use super::{Copied, ToCopy, copy_planned};

/// Copies each of `copies` from `from` to `to`, at most `transfers` at once (at least 1),
/// started in the order given and handed back as each finishes, in any order: the key
/// with what [`copy_planned`] did. An item of `copies` that is an error is handed back
/// as it is, and the others go on.
///
/// Bytes in flight stay bounded too: an object below the destination's multipart
/// threshold is one PUT and takes one of the `transfers` slots, a larger one keeps
/// [`UPLOAD_MAX_IN_FLIGHT`] parts in flight and takes that many slots and one more (all
/// of them when `transfers` is smaller).
pub fn copy_each<'a>(
    from: &'a Storage,
    to: &'a Storage,
    copies: impl Iterator<Item = Result<ToCopy>> + 'a,
    transfers: usize,
) -> impl Stream<Item = Result<(ObjectKey, Result<Copied>)>> + 'a {
    let transfers = transfers.max(1);
    let slots = std::sync::Arc::new(Semaphore::new(transfers));
    let large = (UPLOAD_MAX_IN_FLIGHT + 1).min(transfers) as u32;
    let threshold = to.multipart_threshold() as u64;
    futures::stream::iter(copies)
        .map(move |copy| {
            let slots = std::sync::Arc::clone(&slots);
            async move {
                let ToCopy {
                    key,
                    size,
                    replacing,
                } = copy?;
                let weight = if size >= threshold { large } else { 1 };
                let _slots = slots.acquire_many(weight).await.expect("never closed");
                let result = copy_planned(from, to, &key, replacing).await;
                Ok((key, result))
            }
        })
        .buffer_unordered(transfers)
}
