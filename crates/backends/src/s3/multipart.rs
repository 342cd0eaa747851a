//! What S3 keeps of multipart uploads beyond object_store: incomplete uploads listed and
//! aborted, and the checksum stamped onto a completed upload by a copy in place.

use std::sync::Arc;

use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore};

use super::{abort_upload, completion_answer_is_misread, copy_in_place, incomplete_uploads};
use crate::Result;
use crate::checksum::CHECKSUM_METADATA;
use crate::providers::{Backend, MultipartUploads};
use crate::types::{IncompleteUpload, PutOutcome};

/// S3's multipart operations, through its client, on one bucket.
pub(crate) struct S3Multipart {
    pub(crate) s3: Arc<AmazonS3>,
    /// The bucket's name, for the `x-amz-copy-source` of a copy in place.
    pub(crate) bucket: String,
}

#[async_trait::async_trait]
impl MultipartUploads for S3Multipart {
    async fn incomplete(&self, backend: &Backend, folder: &Path) -> Result<Vec<IncompleteUpload>> {
        incomplete_uploads(&self.s3, backend, folder).await
    }

    async fn abort(&self, backend: &Backend, path: &Path, upload_id: &str) -> Result<()> {
        abort_upload(&self.s3, backend, path, upload_id).await
    }

    /// Stores `checksum` with a just-completed S3 multipart upload: the object is copied
    /// onto itself with its metadata replaced (CopyObject, `x-amz-metadata-directive:
    /// REPLACE`) only while it is still the version completed (`x-amz-copy-source-if-match`
    /// with the completion's etag). The metadata sent is what a HEAD of that version
    /// shows (so the engine's content type and every user entry are kept) plus the
    /// checksum. Server-side: no byte travels again.
    ///
    /// The object stays unverified, and the upload succeeds, when another write replaced it
    /// in between, when it is over CopyObject's 5 GiB, or when the copy fails (logged).
    async fn stamp(
        &self,
        store: &dyn ObjectStore,
        backend: &Backend,
        path: &Path,
        outcome: PutOutcome,
        checksum: String,
    ) -> PutOutcome {
        /// CopyObject's limit (S3 API reference, CopyObject).
        const COPY_OBJECT_MAX: u64 = 5 * 1024 * 1024 * 1024;
        let Some(etag) = outcome.etag.clone() else {
            return outcome;
        };
        let head = store
            .get_opts(
                path,
                GetOptions {
                    if_match: Some(etag.clone()),
                    head: true,
                    ..Default::default()
                },
            )
            .await;
        let got = match head {
            Ok(got) if got.meta.size <= COPY_OBJECT_MAX => got,
            Ok(_) => {
                tracing::warn!(%path, "over 5 GiB: the upload is stored without a maskstore checksum (CopyObject's limit)");
                return outcome;
            }
            Err(e) => {
                tracing::warn!(%path, error = %e, "the upload is stored without a maskstore checksum: its HEAD failed");
                return outcome;
            }
        };
        let mut headers = reqwest::header::HeaderMap::new();
        let mut add = |name: String, value: &str| {
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        };
        for (attribute, value) in &got.attributes {
            use object_store::Attribute as A;
            let name = match attribute {
                A::ContentType => "content-type".to_string(),
                A::CacheControl => "cache-control".to_string(),
                A::ContentDisposition => "content-disposition".to_string(),
                A::ContentEncoding => "content-encoding".to_string(),
                A::ContentLanguage => "content-language".to_string(),
                A::StorageClass => "x-amz-storage-class".to_string(),
                A::Metadata(name) if name.as_ref() == CHECKSUM_METADATA => continue,
                A::Metadata(name) => format!("x-amz-meta-{name}"),
                _ => continue,
            };
            add(name, value.as_ref());
        }
        add(format!("x-amz-meta-{CHECKSUM_METADATA}"), &checksum);
        match copy_in_place(&self.s3, backend, &self.bucket, path, &etag, headers).await {
            Ok(Some(copied)) => PutOutcome {
                etag: copied.etag.or(outcome.etag),
                version: copied.version.or(outcome.version),
            },
            Ok(None) => outcome,
            Err(e) => {
                tracing::warn!(%path, error = %e, "the upload is stored without a maskstore checksum: the copy in place failed");
                outcome
            }
        }
    }

    fn completion_may_be_misread(&self, key: &str) -> bool {
        completion_answer_is_misread(key)
    }
}
