//! Names found in a store that are not valid keys ([`ObjectKey::found`]): listed, read and
//! deleted, never written.
//!
//! A listing goes through object_store (and so through the storage's layers) and carries
//! every name it finds as a found key. object_store cannot hold some names a store can
//! (`a//b`, a `.` or `..` segment, an ASCII control character): it fails a whole listing
//! page on one. When that happens on a provider that lists by exact names itself
//! ([`FoundNames`], S3), the listing goes on with the provider's own requests, after the
//! last name object_store listed (S3 lists in UTF-8 byte order, so nothing is listed twice
//! or left out). Such a name is read and deleted through the provider's own requests too.

use futures::stream::{BoxStream, StreamExt};
use maskstore_core::ObjectKey;
use object_store::path::Path;
use object_store::{Attributes, GetOptions, GetResult, ObjectMeta};

use super::Storage;
use crate::providers::{Backend, FoundNames};
use crate::types::{ObjectInfo, Source, info_of};
use crate::{Error, Result};

/// Where a key is, for a read or a delete.
pub(super) enum Location {
    /// A name object_store can address.
    Path(Path),
    /// A found name object_store's `Path` cannot hold, exact.
    Name(String),
}

impl Storage {
    /// Where `key` is, for a read or a delete: a found (foreign) key too, even one that
    /// object_store cannot address.
    pub(super) fn location(&self, key: &ObjectKey) -> Result<Location> {
        self.check_within(key)?;
        match Path::parse(key.as_str()) {
            // `Path::parse` drops a trailing `/`, so a folder marker's name is its own.
            Ok(path) if path.as_ref() == key.as_str() => Ok(Location::Path(path)),
            _ if key.is_foreign() => Ok(Location::Name(key.as_str().to_string())),
            Ok(path) => Ok(Location::Path(path)),
            Err(e) => Err(Error::InvalidKey {
                key: key.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// The provider's own access by exact name, for a name object_store cannot hold.
    pub(super) fn found_names(&self, key: &ObjectKey) -> Result<&dyn FoundNames> {
        self.extras
            .names
            .as_deref()
            .ok_or_else(|| Error::Unsupported {
                backend: self.backend.to_string(),
                operation: format!("address the object named {key}"),
                detail: "object_store cannot hold this name and this provider has no requests of \
                     its own for it; use the tool that wrote it"
                    .to_string(),
            })
    }

    /// A read (or HEAD) of `key` wherever it is.
    pub(super) async fn get_at(&self, key: &ObjectKey, options: GetOptions) -> Result<GetResult> {
        match self.location(key)? {
            Location::Path(path) => self.store.get_opts(&path, options).await,
            Location::Name(name) => self.found_names(key)?.get(&name, options).await,
        }
        .map_err(self.err(key))
    }

    /// Every object below `folder`, found names included, streamed.
    pub(super) fn list_found(&self, folder: &Path) -> BoxStream<'static, Result<ObjectInfo>> {
        let state = Listing::Store {
            stream: self.store.list(Some(folder)),
            last: None,
        };
        let context = (
            self.backend.clone(),
            format!("{folder}/"),
            self.extras.names.clone(),
        );
        futures::stream::unfold((state, context), |(state, context)| async move {
            let (item, state) = next(state, &context).await?;
            Some((item, (state, context)))
        })
        .boxed()
    }
}

/// A listing under way: through object_store, or by the provider's own requests after
/// object_store failed on a name it cannot hold.
enum Listing {
    Store {
        stream: BoxStream<'static, object_store::Result<ObjectMeta>>,
        /// The last name listed, where the provider's listing would go on.
        last: Option<String>,
    },
    Own(BoxStream<'static, Result<crate::providers::FoundObject>>),
}

type Context = (Backend, String, Option<std::sync::Arc<dyn FoundNames>>);

/// The listing's next item and its state after it.
async fn next(state: Listing, context: &Context) -> Option<(Result<ObjectInfo>, Listing)> {
    let (backend, folder, names) = context;
    match state {
        Listing::Own(mut stream) => {
            let item = stream.next().await?;
            let info = item.and_then(|found| {
                let key = ObjectKey::found(found.name)?;
                Ok(info_of(
                    key,
                    &found.meta,
                    &Attributes::new(),
                    Source::Listing,
                ))
            });
            Some((info, Listing::Own(stream)))
        }
        Listing::Store { mut stream, last } => match stream.next().await? {
            Ok(meta) => {
                let info = ObjectKey::found(meta.location.as_ref())
                    .map(|key| info_of(key, &meta, &Attributes::new(), Source::Listing))
                    .map_err(Error::from);
                let last = Some(meta.location.as_ref().to_string());
                Some((info, Listing::Store { stream, last }))
            }
            Err(object_store::Error::InvalidPath { source }) if names.is_some() => {
                let names = names.as_ref().expect("checked");
                match names.list_after(backend, folder, last.clone()) {
                    // object_store's listing ended at the name: the provider's goes on.
                    Some(own) => Box::pin(next(Listing::Own(own), context)).await,
                    // It named the object and goes on: describe that one and list on.
                    None => {
                        let state = Listing::Store { stream, last };
                        match describe(names.as_ref(), backend, &source).await {
                            Some(item) => Some((item, state)),
                            None => Box::pin(next(state, context)).await,
                        }
                    }
                }
            }
            Err(e) => Some((
                Err(Error::from_store(backend, folder.trim_end_matches('/'), e)),
                Listing::Store { stream, last },
            )),
        },
    }
}

/// The object a listing named in `error` (a name object_store cannot hold), from a HEAD
/// by that name; `None` when it is gone since it was listed.
async fn describe(
    names: &dyn FoundNames,
    backend: &Backend,
    error: &object_store::path::Error,
) -> Option<Result<ObjectInfo>> {
    use object_store::path::Error as PathError;
    let name = match error {
        PathError::BadSegment { path, .. } | PathError::EmptySegment { path } => path.clone(),
        other => {
            let e = object_store::Error::Generic {
                store: "listing",
                source: other.to_string().into(),
            };
            return Some(Err(Error::from_store(backend, "(listing)", e)));
        }
    };
    let head = GetOptions {
        head: true,
        ..Default::default()
    };
    let key = match ObjectKey::found(name.as_str()) {
        Ok(key) => key,
        Err(e) => return Some(Err(e.into())),
    };
    match names.get(&name, head).await {
        Ok(result) => Some(Ok(info_of(
            key,
            &result.meta,
            &Attributes::new(),
            Source::Listing,
        ))),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => Some(Err(Error::from_store(backend, &key.to_string(), e))),
    }
}
