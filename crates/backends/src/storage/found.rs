//! Names found in a store that are not valid keys ([`ObjectKey::found`]): listed, read and
//! deleted, never written.
//!
//! A listing goes through object_store (and so through the storage's layers) and carries
//! every name it finds as a found key. object_store cannot hold some names a store can
//! (`a//b`, a `.` or `..` segment, an ASCII control character): it fails a whole listing
//! page on one. When that happens on a provider that lists by exact names itself
//! ([`FoundNames`]: S3, Azure, GCS), the listing goes on with the provider's own requests,
//! after the last name listed (exact, a folder marker's with its `/`): S3's `start-after`,
//! GCS's `startOffset`, Azure's listing started over and read past that name (Azure has no
//! "start after", and its order is not UTF-8's). Nothing is listed twice or left out. Every
//! name listed must lie below the folder asked for: one outside it is the server's error.
//! Such a name is read and deleted through the provider's own requests too.

use std::borrow::Cow;

use futures::stream::{BoxStream, StreamExt};
use maskstore_core::ObjectKey;
use object_store::path::{Error as PathError, Path};
use object_store::{Attributes, GetOptions, GetResult, ObjectMeta};

use super::Storage;
use crate::providers::{Backend, FoundNames};
use crate::types::{ObjectInfo, Source, info_of};
use crate::{Error, Result};

/// Where a key is, for a read or a delete.
pub(super) enum Location<'k> {
    /// A name object_store can address: the key's own parsed form, kept with it
    /// ([`store_path`]).
    Path(Cow<'k, Path>),
    /// A found name object_store's `Path` cannot hold, exact.
    Name(String),
}

impl Storage {
    /// Where `key` is, for a read or a delete: a found (foreign) key too, even one that
    /// object_store cannot address.
    pub(super) fn location<'k>(&self, key: &'k ObjectKey) -> Result<Location<'k>> {
        self.check_within(key)?;
        match store_path(key) {
            // `Path::parse` drops a trailing `/`, so a folder marker's name is its own.
            Ok(path) if AsRef::<str>::as_ref(&*path) == key.as_str() => Ok(Location::Path(path)),
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
            Location::Path(path) => self.store().get_opts(path.as_ref(), options).await,
            Location::Name(name) => self.found_names(key)?.get(&name, options).await,
        }
        .map_err(self.err(key))
    }

    /// Every object below `folder`, found names included, streamed.
    pub(super) fn list_found(&self, folder: &Path) -> BoxStream<'static, Result<ObjectInfo>> {
        let state = Listing::Store {
            stream: self.store().list(Some(folder)),
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

/// object_store's `Path` of `key`, parsed once per key value: kept with the key (and its
/// clones) for the next call, as object_store's own callers parse a `Path` once and pass
/// it by reference.
pub(super) fn store_path(key: &ObjectKey) -> std::result::Result<Cow<'_, Path>, PathError> {
    key.provider_form(|text| Path::parse(text))
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
    let (item, state) = next_listed(state, context).await?;
    let (backend, folder, _) = context;
    Some((item.and_then(|info| below(backend, folder, info)), state))
}

/// `info` when its key lies below `folder`, the folder listed; else the server's error: a
/// listing that names an object outside what was asked for (a wrong or hostile server) must
/// never make `rm --prefix` or `sync --delete` touch it.
fn below(backend: &Backend, folder: &str, info: ObjectInfo) -> Result<ObjectInfo> {
    let name = info.key.as_str();
    if name.len() > folder.len() && name.starts_with(folder) {
        return Ok(info);
    }
    Err(Error::Backend {
        backend: backend.to_string(),
        key: maskstore_core::shown(folder).into_owned(),
        source: format!(
            "the listing of {} named {}, which lies outside it; the server's listing \
             cannot be trusted, so nothing listed was acted on",
            maskstore_core::shown(folder),
            info.key
        )
        .into(),
    })
}

/// The next item of the listing, as the store or the provider named it.
async fn next_listed(state: Listing, context: &Context) -> Option<(Result<ObjectInfo>, Listing)> {
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
                let name = listed_name(names.as_deref(), &meta).await;
                // The name as listed (a folder marker's with its `/`): where the provider's
                // own listing would go on.
                let last = Some(name.clone());
                let info = ObjectKey::found(name)
                    .map(|key| info_of(key, &meta, &Attributes::new(), Source::Listing))
                    .map_err(Error::from);
                Some((info, Listing::Store { stream, last }))
            }
            Err(object_store::Error::InvalidPath { source }) if names.is_some() => {
                let names = names.as_ref().expect("checked");
                match names.list_after(backend, folder, last.clone()) {
                    // object_store's listing ended at the name: the provider's goes on.
                    Some(own) => Box::pin(next_listed(Listing::Own(own), context)).await,
                    // It named the object and goes on: describe that one and list on.
                    None => {
                        let state = Listing::Store { stream, last };
                        match describe(names.as_ref(), backend, &source).await {
                            Some(item) => Some((item, state)),
                            None => Box::pin(next_listed(state, context)).await,
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

/// The name of the object object_store listed as `meta`. object_store drops the trailing
/// `/` of a folder marker (`mask/f4/`, an empty object the AWS console and other tools
/// write), so on a provider whose names can end in `/` an empty object is asked for by
/// the name listed: when there is none, the name listed was the folder marker's. One HEAD
/// per empty object (masks are never empty; folder markers always are).
async fn listed_name(names: Option<&dyn FoundNames>, meta: &ObjectMeta) -> String {
    let listed = meta.location.as_ref();
    let Some(names) = names.filter(|n| meta.size == 0 && n.holds_folder_markers()) else {
        return listed.to_string();
    };
    let head = GetOptions {
        head: true,
        ..Default::default()
    };
    match names.get(listed, head).await {
        Err(object_store::Error::NotFound { .. }) => format!("{listed}/"),
        _ => listed.to_string(),
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
        Err(e) => Some(Err(Error::from_store(
            backend,
            &maskstore_core::shown(key.as_str()),
            e,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;

    /// Keys the listing gave, with whether each is foreign, sorted.
    async fn listed(storage: &Storage) -> Vec<(String, bool)> {
        let mut keys: Vec<(String, bool)> = storage
            .list(None)
            .unwrap()
            .map_ok(|info| (info.key.as_str().to_string(), info.key.is_foreign()))
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    #[tokio::test]
    async fn memory_lists_reads_and_deletes_names_that_are_not_keys_and_never_writes_one() {
        let storage = Storage::memory();
        storage
            .put(&storage.key("a.png").unwrap(), "a")
            .await
            .unwrap();
        // Another writer through the same object_store: names a Path holds, keys do not.
        for name in ["mask/back\\slash.png", "mask/joined\u{200D}.png"] {
            let payload = PutPayload::from_static(b"odd");
            let path = Path::parse(name).unwrap();
            storage.object_store().put(&path, payload).await.unwrap();
        }
        storage
            .put(&storage.key("zz.png").unwrap(), "z")
            .await
            .unwrap();
        let keys = listed(&storage).await;
        assert_eq!(
            keys,
            [
                ("mask/a.png".to_string(), false),
                ("mask/back\\slash.png".to_string(), true),
                ("mask/joined\u{200D}.png".to_string(), true),
                ("mask/zz.png".to_string(), false),
            ]
        );
        let odd = ObjectKey::found("mask/back\\slash.png").unwrap();
        assert_eq!(storage.get(&odd).await.unwrap().data, "odd");
        assert_eq!(storage.head(&odd).await.unwrap().size, 3);
        // Every write refuses it, naming it escaped and saying why.
        let refused = storage.put(&odd, "new").await.unwrap_err().to_string();
        assert!(refused.contains("slash.png"), "{refused}");
        assert!(refused.contains("never writes one"), "{refused}");
        let to = storage.key("b.png").unwrap();
        assert!(storage.copy(&to, &odd).await.is_err());
        assert!(storage.upload(&odd, &Default::default()).await.is_err());
        // It can be given a valid key, and deleted.
        storage.copy(&odd, &to).await.unwrap();
        storage.delete(&odd).await.unwrap();
        let joined = ObjectKey::found("mask/joined\u{200D}.png").unwrap();
        storage.delete_many(&[joined]).await.unwrap();
        assert_eq!(listed(&storage).await.len(), 3);
    }

    #[tokio::test]
    async fn local_lists_reads_and_deletes_a_file_named_with_a_control_character() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let storage = Storage::connect(&maskstore_core::Config::local(&root)).unwrap();
        storage
            .put(&storage.key("a/b.png").unwrap(), "b")
            .await
            .unwrap();
        std::fs::create_dir_all(root.join("mask/a")).unwrap();
        std::fs::write(root.join("mask/a/new\nline\u{1b}.png"), "odd").unwrap();
        storage
            .put(&storage.key("a/z.png").unwrap(), "z")
            .await
            .unwrap();
        let keys = listed(&storage).await;
        let odd = "mask/a/new\nline\u{1b}.png";
        assert_eq!(
            keys,
            [
                ("mask/a/b.png".to_string(), false),
                (odd.to_string(), true),
                ("mask/a/z.png".to_string(), false),
            ]
        );
        let key = ObjectKey::found(odd).unwrap();
        assert_eq!(storage.get(&key).await.unwrap().data, "odd");
        assert_eq!(storage.head(&key).await.unwrap().size, 3);
        // Carrying it here is refused: object_store cannot write this name.
        let carried = storage.carrying_found_names().put(&key, "x").await;
        let why = carried.unwrap_err().to_string();
        assert!(why.contains("cannot hold this name"), "{why}");
        assert!(!why.contains('\u{1b}') && !why.contains('\n'), "{why}");
        storage.delete(&key).await.unwrap();
        assert!(!root.join("mask/a/new\nline\u{1b}.png").exists());
        assert_eq!(listed(&storage).await.len(), 2);
        // A name it can hold is carried.
        let slash = ObjectKey::found("mask/back\\slash.png").unwrap();
        storage
            .carrying_found_names()
            .put(&slash, "x")
            .await
            .unwrap();
        assert!(root.join("mask/back\\slash.png").exists());
    }
}
