//! A layer that counts the calls reaching the backend, to prove that refused input never
//! does; also run under the whole contract (`contract[local+counting]`), since a layer must
//! keep every rule of the storage it wraps.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use maskstore_backends::layers::{Call, Intercept};
use object_store::path::Path;
use object_store::{ObjectMeta, Result};

/// Counts every call passing through it: one per call, per listing and per deleted key.
#[derive(Debug, Clone, Default)]
pub struct Counting {
    calls: Arc<AtomicUsize>,
}

impl Counting {
    /// A layer that has counted nothing yet.
    pub fn new() -> Self {
        Counting::default()
    }

    /// A handle on the count, readable after the layer is moved into a `Storage`.
    pub fn counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.calls)
    }

    /// The calls counted so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn tick(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

impl Intercept for Counting {
    fn name(&self) -> &str {
        "counting"
    }

    fn call<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        let _ = call;
        self.tick();
        run
    }

    fn list(
        &self,
        prefix: &Path,
        list: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let _ = prefix;
        self.tick();
        list
    }

    fn delete(
        &self,
        locations: BoxStream<'static, Result<Path>>,
        delete: &dyn Fn(BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let calls = Arc::clone(&self.calls);
        let counted = locations
            .inspect(move |_| {
                calls.fetch_add(1, Ordering::SeqCst);
            })
            .boxed();
        delete(counted)
    }
}
