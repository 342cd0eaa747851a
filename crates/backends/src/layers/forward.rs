//! [`Layered`]: the one place `ObjectStore` methods are forwarded to a wrapped store, with
//! an [`Intercept`] seeing each call on its way.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// The operations a storage performs, as layers, metrics and fault rules name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Whole-object or range reads.
    Get,
    /// Metadata reads.
    Head,
    /// Single-request writes.
    Put,
    /// Streaming (multipart) uploads.
    Upload,
    /// Deletes, one per key.
    Delete,
    /// Listings (flat or by folder).
    List,
    /// Copies.
    Copy,
    /// Renames.
    Rename,
}

impl Operation {
    /// Every operation, in declaration order (`Operation as usize` indexes it).
    pub const ALL: [Operation; 8] = [
        Operation::Get,
        Operation::Head,
        Operation::Put,
        Operation::Upload,
        Operation::Delete,
        Operation::List,
        Operation::Copy,
        Operation::Rename,
    ];

    /// The name used in metrics (`get`, `put`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Head => "head",
            Operation::Put => "put",
            Operation::Upload => "upload",
            Operation::Delete => "delete",
            Operation::List => "list",
            Operation::Copy => "copy",
            Operation::Rename => "rename",
        }
    }
}

/// One call passing through a layer.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// What the call does.
    pub operation: Operation,
    /// The key (the source, for copies and renames; the prefix, for listings).
    pub location: &'a Path,
}

impl<'a> Call<'a> {
    fn new(operation: Operation, location: &'a Path) -> Call<'a> {
        Call {
            operation,
            location,
        }
    }
}

/// What a layer does to the calls passing through it. Every method has a default that
/// lets the call through unchanged, so an interceptor writes only what it changes.
pub trait Intercept: Send + Sync + std::fmt::Debug + 'static {
    /// The layer's name, shown as `name(inner)` when the store is displayed.
    fn name(&self) -> &str;

    /// Runs one call of any operation but listings and deletes (a get's body, an upload's
    /// parts and completion come later, through [`Intercept::get`] and
    /// [`Intercept::upload`]). May wait, fail the call without running it, or time it.
    fn call<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        let _ = call;
        run
    }

    /// Runs one read that returns a body (not a head, which goes through
    /// [`Intercept::call`]); may alter the result, e.g. cut or count its stream.
    fn get<'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<GetResult>>,
    ) -> BoxFuture<'a, Result<GetResult>> {
        self.call(call, run)
    }

    /// Bytes moved by a call that succeeded: a put's payload, the ranges of `get_ranges`.
    fn moved(&self, call: Call<'_>, bytes: u64) {
        let _ = (call, bytes);
    }

    /// A streaming upload that started, to wrap (its parts, completion and abort).
    fn upload(
        &self,
        location: &Path,
        upload: Box<dyn MultipartUpload>,
    ) -> Box<dyn MultipartUpload> {
        let _ = location;
        upload
    }

    /// A listing below `prefix`, to wrap. `list` is not yet polled.
    fn list(
        &self,
        prefix: &Path,
        list: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let _ = prefix;
        list
    }

    /// Deletes: `locations` on their way in, and `delete` to run them, whose results go out.
    fn delete(
        &self,
        locations: BoxStream<'static, Result<Path>>,
        delete: &dyn Fn(BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        delete(locations)
    }
}

/// A store whose calls pass through an [`Intercept`] on their way to `inner`.
#[derive(Debug)]
pub struct Layered<I> {
    inner: Arc<dyn ObjectStore>,
    intercept: I,
}

impl<I: Intercept> Layered<I> {
    /// `inner`, its calls passing through `intercept`.
    pub fn new(inner: Arc<dyn ObjectStore>, intercept: I) -> Self {
        Layered { inner, intercept }
    }

    /// The wrapped store itself: called through the `Arc`, object_store's `Arc` impl would
    /// box each call's future once more around the store's own (measured on memory gets).
    fn inner(&self) -> &dyn ObjectStore {
        self.inner.as_ref()
    }
}

impl<I: Intercept> std::fmt::Display for Layered<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.intercept.name(), self.inner)
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<I: Intercept> ObjectStore for Layered<I> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let call = Call::new(Operation::Put, location);
        let size = payload.content_length() as u64;
        let run = self.inner().put_opts(location, payload, opts);
        let result = self.intercept.call(call, run).await?;
        self.intercept.moved(call, size);
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let call = Call::new(Operation::Upload, location);
        let run = self.inner().put_multipart_opts(location, opts);
        let upload = self.intercept.call(call, run).await?;
        Ok(self.intercept.upload(location, upload))
    }

    // Written out rather than `async fn`: the interceptor's future is returned as it is,
    // not boxed once more around it (a read is the call where that shows).
    fn get_opts<'a, 'b, 'c>(
        &'a self,
        location: &'b Path,
        options: GetOptions,
    ) -> BoxFuture<'c, Result<GetResult>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        if options.head {
            let call = Call::new(Operation::Head, location);
            return self
                .intercept
                .call(call, self.inner().get_opts(location, options));
        }
        let call = Call::new(Operation::Get, location);
        self.intercept
            .get(call, self.inner().get_opts(location, options))
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let call = Call::new(Operation::Get, location);
        let run = self.inner().get_ranges(location, ranges);
        let parts = self.intercept.call(call, run).await?;
        self.intercept
            .moved(call, parts.iter().map(|p| p.len() as u64).sum());
        Ok(parts)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.intercept.delete(locations, &|locations| {
            self.inner().delete_stream(locations)
        })
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let at = prefix.cloned().unwrap_or_default();
        self.intercept.list(&at, self.inner().list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let at = prefix.cloned().unwrap_or_default();
        self.intercept
            .list(&at, self.inner().list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let at = prefix.cloned().unwrap_or_default();
        let call = Call::new(Operation::List, &at);
        self.intercept
            .call(call, self.inner().list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let call = Call::new(Operation::Copy, from);
        self.intercept
            .call(call, self.inner().copy_opts(from, to, options))
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let call = Call::new(Operation::Rename, from);
        self.intercept
            .call(call, self.inner().rename_opts(from, to, options))
            .await
    }
}
