//! The `s3` provider: AWS S3 and S3-compatible engines through object_store's `AmazonS3`,
//! plus what object_store does not offer — presigned URLs with bound headers, listing and
//! aborting incomplete multipart uploads — what S3's error codes mean, and its advice
//! to operators (`advice.rs`).

mod advice;
pub(crate) mod builder;
pub(crate) mod error;
mod monitoring;
mod multipart;
pub(crate) mod names;
pub(crate) mod native;
pub(crate) mod policy;
mod presign;
pub(crate) mod secrets_manager;
mod uploads;

use crate::metadata::{MetadataRules, NameRule, ValueRule};
pub(crate) use advice::PROFILE;
pub(crate) use builder::build;
pub(crate) use presign::Presigner;
use uploads::{abort_upload, completion_answer_is_misread, copy_in_place, incomplete_uploads};

use std::sync::Arc;

use maskstore_core::Config;

use crate::Result;
use crate::providers::{Built, Declared, Extras, UploadLimits};
use crate::storage::UrlSigner;

/// What S3 keeps of user metadata: names and values travel as HTTP headers (names come
/// back lowercase), 2 KiB in all (S3 user guide, "User-defined object metadata").
pub(crate) const METADATA: MetadataRules = MetadataRules {
    names: NameRule::LowercaseToken,
    values: ValueRule::Header,
    max_total: 2048,
    json_document: false,
};

/// The `s3` provider as the facade takes it: SigV4 URLs of its own, MD5 etags, incomplete
/// uploads kept by the service, and checksums stamped onto multipart uploads by a copy in
/// place.
pub(crate) fn connect(config: &Config) -> Result<Built> {
    let os = &config.object_storage;
    let (s3, presigner) = build(config)?;
    let s3 = Arc::new(s3);
    let presigner = Arc::new(presigner);
    let names = names::S3Names {
        s3: Arc::clone(&s3),
        presigner: Arc::clone(&presigner),
    };
    let multipart = multipart::S3Multipart {
        s3: Arc::clone(&s3),
        bucket: presigner.bucket().to_string(),
    };
    Ok(Built {
        store: Arc::clone(&s3) as Arc<dyn object_store::ObjectStore>,
        urls: UrlSigner::Service(presigner),
        declared: Declared {
            hashes_on_write: false,
            owes_checksums: false,
            reads_whole: false,
            answers_whole: false,
            content_etags: true,
            // An engine other than AWS may keep real directories (SeaweedFS).
            verify_folders: os.verify_folders.unwrap_or(os.endpoint.is_some()),
            uploads: UploadLimits::REMOTE,
            metadata: METADATA,
        },
        extras: Extras {
            multipart: Some(Arc::new(multipart)),
            files: None,
            native: Some(Arc::new(native::S3Checksums {
                s3: Arc::clone(&s3),
                client: native::client(os)?,
                attempts: os.max_retries.saturating_add(1),
            })),
            names: Some(Arc::new(names)),
            kept: None,
        },
    })
}
