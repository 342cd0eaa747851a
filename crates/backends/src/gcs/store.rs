//! The GCS store as maskstore uses it: object_store's `GoogleCloudStorage` for reads,
//! listings and deletes, GCS's JSON API for writes and copies (see [`super::json`]), and
//! if-match writes made by generation.
//!
//! GCS makes a conditional write conditional on the object's *generation*
//! (`x-goog-if-generation-match`), and object_store's GCS client refuses
//! `PutMode::Update` without one ("Version required for conditional update"), while
//! maskstore's if-match writes, and the checksum stamp of a finished upload, name an
//! etag. Here the etag is turned into the generation of the object that has it (a HEAD
//! with `If-Match`), and the write is made on that generation: since every write gives a
//! new generation, the write still lands only on the version the etag named.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    RenameTargetMode, Result, UpdateVersion,
};

use super::json::{Condition, JsonApi, Resumable};

/// An object store whose if-match writes name an etag, over one that wants a generation.
#[derive(Clone)]
pub(crate) struct GcsStore<T> {
    inner: Arc<T>,
    /// The JSON API writes go through; `None` writes through `inner` (tests over memory).
    json: Option<JsonApi>,
}

impl<T> std::fmt::Debug for GcsStore<T> {
    // The client's Debug holds its credentials: never show them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsStore").finish_non_exhaustive()
    }
}

impl<T> GcsStore<T> {
    /// Wraps a store that also takes the writes (tests over memory).
    #[cfg(test)]
    pub(crate) fn new(inner: T) -> GcsStore<T> {
        GcsStore {
            inner: Arc::new(inner),
            json: None,
        }
    }

    /// Reads through `inner`, writes through GCS's JSON API.
    pub(crate) fn with_json(inner: T, json: JsonApi) -> GcsStore<T> {
        GcsStore {
            inner: Arc::new(inner),
            json: Some(json),
        }
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

/// The etag (as the XML API's reads give it) of `location` at `generation`: an upload
/// through the JSON API answers with the JSON API's etag, which no read shows. `None` when
/// that generation is already replaced.
async fn etag_at(
    store: &dyn ObjectStore,
    location: &Path,
    generation: Option<String>,
) -> Result<Option<String>> {
    let head = GetOptions {
        head: true,
        version: generation,
        ..Default::default()
    };
    match store.get_opts(location, head).await {
        Ok(found) => Ok(found.meta.e_tag),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The etag given for generation `generation` when it was replaced before it could be read.
fn gone_etag(generation: &str) -> String {
    format!("\"replaced-generation-{generation}\"")
}

/// A resumable upload whose result carries the stored object's etag.
struct WithEtag {
    upload: Resumable,
    reads: Arc<dyn ObjectStore>,
    location: Path,
}

impl std::fmt::Debug for WithEtag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithEtag")
            .field("upload", &self.upload)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl MultipartUpload for WithEtag {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        self.upload.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let done = self.upload.complete().await?;
        let e_tag = etag_at(self.reads.as_ref(), &self.location, done.version.clone())
            .await?
            .or_else(|| done.version.as_ref().map(|g| gone_etag(g)));
        Ok(PutResult {
            e_tag,
            version: done.version,
            extensions: Default::default(),
        })
    }

    async fn abort(&mut self) -> Result<()> {
        self.upload.abort().await
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
            // A server that ignores If-Match on HEAD still cannot make a stale etag pass.
            if meta.e_tag.as_deref() != Some(e_tag.as_str()) {
                return Err(precondition(location, "the object has another etag"));
            }
            if let Some(generation) = meta.version {
                opts.mode = PutMode::Update(UpdateVersion {
                    e_tag: Some(e_tag.clone()),
                    version: Some(generation),
                });
            }
        }
        let Some(json) = &self.json else {
            return self.inner.put_opts(location, payload, opts).await;
        };
        let condition = match &opts.mode {
            PutMode::Overwrite => Condition::None,
            PutMode::Create => Condition::Absent,
            PutMode::Update(UpdateVersion {
                version: Some(generation),
                ..
            }) => Condition::Generation(generation.clone()),
            PutMode::Update(_) => {
                return Err(object_store::Error::Generic {
                    store: "GCS",
                    source: "a conditional update needs the object's generation, and GCS \
                             named none for it"
                        .into(),
                });
            }
        };
        let generation = json
            .insert(location, payload, &opts.attributes, &condition)
            .await?;
        let e_tag = etag_at(self.inner.as_ref(), location, generation.clone()).await?;
        // Replaced or deleted before it could be read: an etag no read will show again,
        // so an if-match naming it fails, as for any replaced version.
        let e_tag = e_tag.or_else(|| generation.as_ref().map(|g| gone_etag(g)));
        Ok(PutResult {
            e_tag,
            version: generation,
            extensions: Default::default(),
        })
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let Some(json) = &self.json else {
            return self.inner.put_multipart_opts(location, opts).await;
        };
        let session = json.start_resumable(location, &opts.attributes).await?;
        let reads: Arc<dyn ObjectStore> = self.inner.clone();
        Ok(Box::new(WithEtag {
            upload: Resumable::new(json.clone(), location.clone(), session),
            reads,
            location: location.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, mut options: GetOptions) -> Result<GetResult> {
        // The bytes as stored, never decompressed on the way (see `native.rs`).
        options.extensions.insert(super::native::StoredBytes);
        // GCS answers If-Match and If-None-Match itself; fake-gcs-server ignores them, so
        // they are checked again on what came back (a no-op where GCS already did).
        let conditions = GetOptions {
            if_match: options.if_match.clone(),
            if_none_match: options.if_none_match.clone(),
            if_modified_since: options.if_modified_since,
            if_unmodified_since: options.if_unmodified_since,
            ..Default::default()
        };
        let found = self.inner.get_opts(location, options).await?;
        conditions.check_preconditions(&found.meta)?;
        Ok(found)
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
        let Some(json) = &self.json else {
            return self.inner.copy_opts(from, to, options).await;
        };
        match options.mode {
            CopyMode::Overwrite => json.rewrite(from, to).await.map(|_| ()),
            // maskstore then copies by a read and a create-only upload, which GCS (and
            // fake-gcs-server, which ignores the preconditions of `rewriteTo`) checks.
            CopyMode::Create => Err(object_store::Error::NotSupported {
                source: "a create-only copy is made by a read and a create-only upload".into(),
            }),
        }
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        if self.json.is_none() {
            return self.inner.rename_opts(from, to, options).await;
        }
        let mode = match options.target_mode {
            RenameTargetMode::Overwrite => CopyMode::Overwrite,
            RenameTargetMode::Create => CopyMode::Create,
        };
        let copy = CopyOptions {
            mode,
            ..Default::default()
        };
        self.copy_opts(from, to, copy).await?;
        self.inner
            .delete_stream(Box::pin(futures::stream::once(futures::future::ready(Ok(
                from.clone(),
            )))))
            .next()
            .await
            .unwrap_or(Ok(from.clone()))
            .map(|_| ())
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
