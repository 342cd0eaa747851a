//! One round trip through every Storage operation, per backend.

use bytes::Bytes;
use futures::TryStreamExt;
use maskstore_backends::{ByteRange, Error, Storage, WriteMode, WriteOptions};
use maskstore_core::{MaskKey, ObjectKey};
use maskstore_testkit::servers;

async fn round_trip(storage: &Storage) {
    let mask: MaskKey = "mask/1.2.840.1/1.2.840.2/liver.nii.gz".parse().unwrap();
    let relative = mask.to_string();
    let relative = relative.strip_prefix("mask/").unwrap();
    let key = storage.key(relative).unwrap();
    let options =
        WriteOptions::content_type(mask.content_type()).with_metadata("annotator", "dr-kim");

    // put / get / head carry content, content type and metadata
    let first = storage
        .put_with(&key, "first version", &options)
        .await
        .unwrap();
    let object = storage.get(&key).await.unwrap();
    assert_eq!(object.data, "first version");
    assert_eq!(
        object.info.content_type.as_deref(),
        Some("application/gzip")
    );
    let head = storage.head(&key).await.unwrap();
    assert_eq!(head.size, 13);
    assert_eq!(
        head.metadata.get("annotator").map(String::as_str),
        Some("dr-kim")
    );
    assert_eq!(head.etag, first.etag);

    // overwrite changes the etag; conditional writes follow it
    let second = storage
        .put_with(&key, "second version!", &options)
        .await
        .unwrap();
    assert_ne!(first.etag, second.etag);
    let stale = WriteOptions::default().with_mode(WriteMode::IfMatch(first.etag.clone().unwrap()));
    assert!(matches!(
        storage.put_with(&key, "x", &stale).await,
        Err(Error::Precondition { .. })
    ));
    let current =
        WriteOptions::default().with_mode(WriteMode::IfMatch(second.etag.clone().unwrap()));
    storage
        .put_with(&key, "third version", &current)
        .await
        .unwrap();
    assert!(matches!(
        storage.put_if_absent(&key, "x").await,
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(storage.get(&key).await.unwrap().data, "third version");

    // byte ranges
    let part = storage.get_range(&key, 0..5).await.unwrap();
    assert_eq!(part.data, "third");
    assert_eq!(part.info.size, 13);
    assert_eq!(
        storage
            .get_range(&key, ByteRange::Suffix(7))
            .await
            .unwrap()
            .data,
        "version"
    );
    assert_eq!(
        storage
            .get_range(&key, ByteRange::From(6))
            .await
            .unwrap()
            .data,
        "version"
    );

    // list and list with delimiter
    let listed: Vec<ObjectKey> = storage
        .list(None)
        .unwrap()
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed, vec![key.clone()]);
    let level = storage.list_with_delimiter(None).await.unwrap();
    assert!(level.objects.is_empty());
    assert_eq!(
        level.prefixes,
        vec![format!("{}1.2.840.1/", storage.prefix())]
    );

    // copy and rename
    let copy = storage.key("copies/liver.nii.gz").unwrap();
    storage.copy(&key, &copy).await.unwrap();
    let moved = storage.key("moved/liver.nii.gz").unwrap();
    storage.rename(&copy, &moved).await.unwrap();
    assert!(!storage.exists(&copy).await.unwrap());
    assert_eq!(storage.get(&moved).await.unwrap().data, "third version");

    // streaming upload of 20 MiB (three parts on S3)
    let big = storage.key("big/volume.nii").unwrap();
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut upload = storage
        .upload(&big, &WriteOptions::default())
        .await
        .unwrap();
    for _ in 0..20 {
        upload.write(Bytes::from(chunk.clone())).await.unwrap();
    }
    assert!(
        !storage.exists(&big).await.unwrap(),
        "invisible until finished"
    );
    upload.finish().await.unwrap();
    let back = storage.get(&big).await.unwrap();
    assert_eq!(back.data.len(), 20 * 1024 * 1024);
    assert!(back.data.chunks(chunk.len()).all(|c| c == chunk.as_slice()));

    // delete, and delete again
    storage
        .delete_many(&[key.clone(), moved.clone(), big.clone()])
        .await
        .unwrap();
    assert!(matches!(
        storage.get(&key).await,
        Err(Error::NotFound { .. })
    ));
    storage.delete(&key).await.unwrap();
    let left: Vec<_> = storage.list(None).unwrap().try_collect().await.unwrap();
    assert!(left.is_empty(), "{left:?}");

    // a key outside the prefix never reaches the backend
    let outside = ObjectKey::parse("other/file.png").unwrap();
    assert!(matches!(
        storage.put(&outside, "x").await,
        Err(Error::InvalidKey { .. })
    ));
}

#[tokio::test]
async fn memory_round_trip() {
    round_trip(&maskstore_testkit::memory()).await;
}

#[tokio::test]
async fn local_round_trip() {
    let storage = maskstore_testkit::temp_dir();
    round_trip(&storage).await;
}

#[tokio::test]
async fn seaweedfs_round_trip() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    round_trip(&server.storage()).await;
}

#[tokio::test]
async fn moto_round_trip() {
    let Some(server) = servers::moto() else {
        return;
    };
    round_trip(&server.storage()).await;
}

#[tokio::test]
async fn seaweedfs_wrong_secret_is_credentials_rejected() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let storage = Storage::connect(&server.config_with_secret("not-the-secret")).unwrap();
    let key = storage.key("probe.png").unwrap();
    let err = storage.put(&key, "x").await.unwrap_err();
    assert!(matches!(err, Error::CredentialsRejected { .. }), "{err}");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
    let err = storage
        .list(None)
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CredentialsRejected { .. }), "{err}");
}

/// The parts a streaming upload hands its store: the largest, and the most in flight at
/// once.
#[derive(Debug, Clone, Default)]
struct PartWatch {
    largest: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most_in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Debug)]
struct WatchedUpload {
    inner: Box<dyn object_store::MultipartUpload>,
    watch: PartWatch,
}

#[async_trait::async_trait]
impl object_store::MultipartUpload for WatchedUpload {
    fn put_part(&mut self, data: object_store::PutPayload) -> object_store::UploadPart {
        use std::sync::atomic::Ordering::SeqCst;
        let watch = self.watch.clone();
        watch.largest.fetch_max(data.content_length(), SeqCst);
        let now = watch.in_flight.fetch_add(1, SeqCst) + 1;
        watch.most_in_flight.fetch_max(now, SeqCst);
        let part = self.inner.put_part(data);
        Box::pin(async move {
            let done = part.await;
            watch.in_flight.fetch_sub(1, SeqCst);
            done
        })
    }

    async fn complete(&mut self) -> object_store::Result<object_store::PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

impl maskstore_backends::layers::Intercept for PartWatch {
    fn name(&self) -> &str {
        "part-watch"
    }

    fn upload(
        &self,
        _location: &object_store::path::Path,
        upload: Box<dyn object_store::MultipartUpload>,
    ) -> Box<dyn object_store::MultipartUpload> {
        Box::new(WatchedUpload {
            inner: upload,
            watch: self.clone(),
        })
    }
}

/// A streaming upload to the local provider writes straight into its temporary file in
/// small parts, one at a time: at most one 256 KiB part in flight and one being filled,
/// whatever the object's size (S3 needs 8 MiB parts, four in flight).
#[tokio::test]
async fn local_streaming_upload_holds_at_most_two_small_parts() {
    use std::sync::atomic::Ordering::SeqCst;
    let local = maskstore_testkit::temp_dir();
    let watch = PartWatch::default();
    let storage = local.layer(watch.clone());
    let key = storage.key("big/stream.bin").unwrap();
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..256u32)
        .map(|i| Ok(Bytes::from(vec![(i % 251) as u8; 64 * 1024])))
        .collect();
    storage
        .upload_stream(
            &key,
            &WriteOptions::default(),
            futures::stream::iter(chunks),
        )
        .await
        .unwrap();
    let data = storage.get(&key).await.unwrap().data;
    assert_eq!(data.len(), 16 * 1024 * 1024);
    assert!(
        data.chunks(64 * 1024)
            .enumerate()
            .all(|(i, c)| c.iter().all(|b| *b == (i % 251) as u8))
    );
    assert_eq!(
        watch.largest.load(SeqCst),
        maskstore_backends::LOCAL_UPLOAD_PART_SIZE
    );
    assert_eq!(watch.most_in_flight.load(SeqCst), 1);
    const { assert!(maskstore_backends::LOCAL_UPLOAD_PART_SIZE * 2 <= 512 * 1024) };
}
