//! The model test can fail: a store with one defect injected (a range off by one, a
//! conditional put that ignores a stale etag, a listing that loses a folder) is caught by
//! the random histories and shrunk to a short history naming it.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use maskstore_backends::layers::Layer;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};

/// One defect, injected into every store the layer wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// A bounded range reads one byte more than asked.
    RangeOffByOne,
    /// An if-match put overwrites whatever is there.
    IfMatchIgnored,
    /// A listing with delimiter loses its last folder.
    FolderLost,
}

impl Layer for Defect {
    fn wrap(&self, inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(Defective {
            inner,
            defect: *self,
        })
    }
}

#[derive(Debug)]
struct Defective {
    inner: Arc<dyn ObjectStore>,
    defect: Defect,
}

impl std::fmt::Display for Defective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Defective({:?}, {})", self.defect, self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Defective {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> Result<PutResult> {
        if self.defect == Defect::IfMatchIgnored && matches!(opts.mode, PutMode::Update(_)) {
            opts.mode = PutMode::Overwrite;
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, mut options: GetOptions) -> Result<GetResult> {
        if self.defect == Defect::RangeOffByOne
            && let Some(GetRange::Bounded(r)) = &options.range
        {
            options.range = Some(GetRange::Bounded(r.start..r.end + 1));
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        if self.defect == Defect::FolderLost {
            listed.common_prefixes.sort();
            listed.common_prefixes.pop();
        }
        Ok(listed)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}
