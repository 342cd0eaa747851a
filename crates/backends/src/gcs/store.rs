//! The GCS store as maskstore uses it: object_store's `GoogleCloudStorage`, with if-match
//! writes made by generation.
//!
//! GCS makes a conditional write conditional on the object's *generation*
//! (`x-goog-if-generation-match`), and object_store's GCS client refuses
//! `PutMode::Update` without one ("Version required for conditional update"), while
//! maskstore's if-match writes, and the checksum stamp of a finished upload, name an
//! etag. Here the etag is turned into the generation of the object that has it (a HEAD
//! with `If-Match`), and the write is made on that generation: since every write gives a
//! new generation, the write still lands only on the version the etag named.

use std::ops::Range;

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    UpdateVersion,
};

/// An object store whose if-match writes name an etag, over one that wants a generation.
#[derive(Clone)]
pub(crate) struct GcsStore<T> {
    inner: T,
}

impl<T> std::fmt::Debug for GcsStore<T> {
    // The client's Debug holds its credentials: never show them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsStore").finish_non_exhaustive()
    }
}

impl<T> GcsStore<T> {
    /// Wraps the client.
    pub(crate) fn new(inner: T) -> GcsStore<T> {
        GcsStore { inner }
    }
}

impl<T: std::fmt::Display> std::fmt::Display for GcsStore<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GcsStore({})", self.inner)
    }
}

fn precondition(location: &Path, why: &str) -> object_store::Error {
    object_store::Error::Precondition {
        path: location.to_string(),
        source: why.to_string().into(),
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl<T: ObjectStore> ObjectStore for GcsStore<T> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> Result<PutResult> {
        if let PutMode::Update(UpdateVersion {
            e_tag: Some(e_tag),
            version: None,
        }) = &opts.mode
        {
            let head = GetOptions {
                head: true,
                if_match: Some(e_tag.clone()),
                ..Default::default()
            };
            let meta = match self.inner.get_opts(location, head).await {
                Ok(found) => found.meta,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(precondition(location, "no object to update"));
                }
                Err(e) => return Err(e),
            };
            if let Some(generation) = meta.version {
                opts.mode = PutMode::Update(UpdateVersion {
                    e_tag: Some(e_tag.clone()),
                    version: Some(generation),
                });
            }
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

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
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
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    fn update(e_tag: &str) -> PutOptions {
        PutOptions {
            mode: PutMode::Update(UpdateVersion {
                e_tag: Some(e_tag.to_string()),
                version: None,
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn an_etag_update_lands_on_that_version_only() {
        let store = GcsStore::new(InMemory::new());
        let path = Path::from("mask/a.png");
        let first = store.put(&path, "one".into()).await.unwrap();
        let etag = first.e_tag.unwrap();
        store
            .put_opts(&path, "two".into(), update(&etag))
            .await
            .unwrap();
        // The etag named a version that is gone: the write is refused, nothing changes.
        let stale = store.put_opts(&path, "three".into(), update(&etag)).await;
        assert!(
            matches!(stale, Err(object_store::Error::Precondition { .. })),
            "{stale:?}"
        );
        let got = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(got, "two");
        // No object at all: a failed condition, not a missing key.
        let missing = store
            .put_opts(&Path::from("mask/none.png"), "x".into(), update(&etag))
            .await;
        assert!(
            matches!(missing, Err(object_store::Error::Precondition { .. })),
            "{missing:?}"
        );
    }
}
