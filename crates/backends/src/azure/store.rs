//! The Azure store as maskstore uses it: object_store's `MicrosoftAzure` with metadata
//! names made legal for Azure.
//!
//! Azure takes metadata names that are C# identifiers (letters, digits, `_`, not starting
//! with a digit), so `x-ms-meta-maskstore-checksum` is refused (`InvalidMetadata`), as is
//! any user name with a `-`. maskstore's names are lowercase letters, digits and `-`; here
//! each is stored as `ms_<name with - as _>` and read back the other way, a bijection on
//! maskstore's names. A stored name without the `ms_` prefix (written by another tool) is
//! read as it is.

use std::ops::Range;

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::azure::MicrosoftAzure;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, CopyOptions, GetOptions, GetRange, GetResult, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions, Result,
};

/// The prefix of every metadata name maskstore stores on Azure.
const PREFIX: &str = "ms_";

/// The Azure name of the maskstore metadata name `name`.
pub(crate) fn encode(name: &str) -> String {
    format!("{PREFIX}{}", name.replace('-', "_"))
}

/// The maskstore name of the stored Azure name `name`.
pub(crate) fn decode(name: &str) -> String {
    match name.strip_prefix(PREFIX) {
        Some(rest) => rest.replace('_', "-"),
        None => name.to_string(),
    }
}

fn map_names(attributes: Attributes, map: fn(&str) -> String) -> Attributes {
    attributes
        .iter()
        .map(|(key, value)| match key {
            Attribute::Metadata(name) => (Attribute::Metadata(map(name).into()), value.clone()),
            other => (other.clone(), value.clone()),
        })
        .collect()
}

/// `MicrosoftAzure` storing metadata under Azure-legal names.
#[derive(Clone)]
pub(crate) struct AzureStore {
    inner: MicrosoftAzure,
}

impl std::fmt::Debug for AzureStore {
    // object_store's Debug of the client prints the account key's bytes: never show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureStore").finish_non_exhaustive()
    }
}

impl AzureStore {
    /// Wraps the client.
    pub(crate) fn new(inner: MicrosoftAzure) -> AzureStore {
        AzureStore { inner }
    }
}

impl AzureStore {
    /// The last `n` bytes: Azure has no suffix ranges (`bytes=-n`), so the size is read
    /// first and the range asked from there, pinned to the version read (`If-Match`) so
    /// that a concurrent overwrite cannot mix two versions; a lost race is retried.
    async fn get_suffix(&self, location: &Path, options: GetOptions, n: u64) -> Result<GetResult> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let head = self
                .inner
                .get_opts(
                    location,
                    GetOptions {
                        head: true,
                        if_match: options.if_match.clone(),
                        if_none_match: options.if_none_match.clone(),
                        if_modified_since: options.if_modified_since,
                        if_unmodified_since: options.if_unmodified_since,
                        ..Default::default()
                    },
                )
                .await?;
            let size = head.meta.size;
            let mut ranged = options.clone();
            ranged.range = (size > 0).then(|| GetRange::Offset(size.saturating_sub(n)));
            let pinned = ranged.if_match.is_none() && head.meta.e_tag.is_some();
            if pinned {
                ranged.if_match = head.meta.e_tag.clone();
            }
            match self.inner.get_opts(location, ranged).await {
                Err(object_store::Error::Precondition { .. }) if pinned && attempt < 3 => continue,
                other => return other,
            }
        }
    }
}

impl std::fmt::Display for AzureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AzureStore({})", self.inner)
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for AzureStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> Result<PutResult> {
        opts.attributes = map_names(opts.attributes, encode);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        mut opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        opts.attributes = map_names(opts.attributes, encode);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let mut result = match options.range {
            Some(GetRange::Suffix(n)) => self.get_suffix(location, options, n).await?,
            _ => self.inner.get_opts(location, options).await?,
        };
        result.attributes = map_names(result.attributes, decode);
        Ok(result)
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

    #[test]
    fn maskstore_names_round_trip_through_azure_legal_names() {
        for name in [
            "maskstore-checksum",
            "study-uid",
            "a",
            "1x",
            "-lead",
            "x--y",
            "9-",
        ] {
            let stored = encode(name);
            assert!(
                stored
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !stored.starts_with(|c: char| c.is_ascii_digit()),
                "{stored}"
            );
            assert_eq!(decode(&stored), name);
        }
        // A name another tool stored is read as it is.
        assert_eq!(decode("Owner"), "Owner");
    }
}
