//! Layers: wrappers around a [`Storage`](crate::Storage)'s backend store.
//!
//! A storage is built once from config, then only layered: [`Storage::layer`] returns a
//! new storage whose calls pass through the layer, keeping the prefix, URL signer, TTL
//! policy, monitor and settings of the one it came from, and counting each operation once
//! under its own backend label (instrumentation always sits outside every layer). The
//! storage it came from is unchanged.
//!
//! Most layers only need to see calls go by — wait, fail, count, cut a download short —
//! and implement [`Intercept`]; [`Layered`] turns an interceptor into a complete
//! `ObjectStore` that forwards every method (written once, checked by
//! `clippy::missing_trait_methods`, so a new method of the trait cannot silently fall
//! through to a default). A layer that needs a whole store of its own (object_store's
//! `LimitStore`, say) implements [`Layer`] directly.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use futures::future::BoxFuture;
//! use maskstore_backends::Storage;
//! use maskstore_backends::layers::{Call, Intercept};
//!
//! /// Counts calls.
//! #[derive(Debug, Clone, Default)]
//! struct Count(Arc<AtomicU64>);
//!
//! impl Intercept for Count {
//!     fn name(&self) -> &str {
//!         "count"
//!     }
//!     fn call<'a, T: Send + 'a>(
//!         &'a self,
//!         _call: Call<'a>,
//!         run: BoxFuture<'a, object_store::Result<T>>,
//!     ) -> BoxFuture<'a, object_store::Result<T>> {
//!         self.0.fetch_add(1, Ordering::SeqCst);
//!         run
//!     }
//! }
//!
//! let count = Count::default();
//! let storage = Storage::memory().layer(count.clone());
//! storage.put(&storage.key("a.png")?, "mask").await?;
//! assert_eq!(count.0.load(Ordering::SeqCst), 1);
//! # Ok::<(), maskstore_backends::Error>(())
//! # }).unwrap();
//! ```
//!
//! [`Storage::layer`]: crate::Storage::layer

mod forward;
pub mod instrumented;

use std::sync::Arc;

use object_store::ObjectStore;

pub use forward::{Call, Intercept, Layered, Operation};

/// Something a [`Storage`](crate::Storage) can be layered with: it wraps the store below
/// it. Every [`Intercept`] that is `Clone` is a layer (through [`Layered`]).
pub trait Layer: Send + Sync + std::fmt::Debug + 'static {
    /// The store that calls go through, wrapping `inner`.
    fn wrap(&self, inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>;
}

impl<I: Intercept + Clone> Layer for I {
    fn wrap(&self, inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(Layered::new(inner, self.clone()))
    }
}
