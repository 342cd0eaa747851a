//! The `s3` provider: AWS S3 and S3-compatible engines through object_store's `AmazonS3`,
//! plus what object_store does not offer — presigned URLs with bound headers, listing and
//! aborting incomplete multipart uploads — and the reading of S3's error answers.

mod advice;
mod builder;
pub(crate) mod error;
mod presign;
mod uploads;

pub(crate) use advice::PROFILE;
pub(crate) use builder::build;
pub(crate) use presign::Presigner;
pub(crate) use uploads::{
    abort_upload, completion_answer_is_misread, copy_in_place, incomplete_uploads,
};
