//! Copying the objects under a prefix from one [`Storage`] to another, skipping what is
//! already there — the engine of `maskstore sync`, usable with any two storages (layered
//! ones included).
//!
//! [`plan`] lists both sides and decides, object by object, what to copy and (with
//! deletes) what the destination holds that the source lacks; [`copy`] carries out one
//! copy. Whether an object is already there is decided, in this order, by:
//!
//! 1. checksums, when both sides have one ([`Fingerprint::checksum`]);
//! 2. etags, when both sides list one and the two stores make etags from the content
//!    alone (two S3 engines), or when the destination records the source's etag
//!    (`maskstore-source-etag`, written by [`copy`]);
//! 3. otherwise the size, plus a HEAD of the source for its etag (some engines list none).
//!
//! So a second run copies nothing on every engine.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use maskstore::{Storage, sync};
//! let (from, to) = (Storage::memory(), Storage::memory());
//! from.put(&from.key("a.png")?, "mask").await?;
//! let first = sync::plan(&from, &to, from.prefix().as_str(), false).await?;
//! for info in &first.to_copy {
//!     sync::copy(&from, &to, &info.key).await?;
//! }
//! let second = sync::plan(&from, &to, from.prefix().as_str(), false).await?;
//! assert_eq!((first.to_copy.len(), second.to_copy.len(), second.skipped), (1, 0, 1));
//! # Ok::<(), maskstore::Error>(())
//! # }).unwrap();
//! ```

use maskstore_backends::{Error, LeftOut, ObjectInfo, Result, Storage, WriteOptions};
use maskstore_core::ObjectKey;
use serde::{Deserialize, Serialize};

mod decide;
pub mod spill;
mod transfers;

pub use decide::{Decision, Totals, decide_each, spill_error};
pub use transfers::{BYTES_IN_FLIGHT, copy_each};

/// Metadata naming the source version a synced object was copied from.
pub const SOURCE_ETAG: &str = "maskstore-source-etag";

/// Source objects compared at once (each comparison may send a HEAD to either side).
const COMPARE_CONCURRENCY: usize = 16;

/// What identifies an object's content on one side, as far as that side says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Size in bytes.
    pub size: u64,
    /// The checksum that verifies the object (`algorithm:base64`: maskstore's own, else the
    /// provider's full-object one), from a HEAD (listings carry none); compared first when
    /// both sides have one of the same algorithm.
    pub checksum: Option<String>,
    /// The etag, when the side gave one.
    pub etag: Option<String>,
    /// The source etag the object was copied from (`maskstore-source-etag`), destination
    /// side only.
    pub recorded_source_etag: Option<String>,
}

impl Fingerprint {
    /// What a listing or HEAD said about an object.
    pub fn of(info: &ObjectInfo) -> Fingerprint {
        Fingerprint {
            size: info.size,
            // maskstore's own, else the provider's (a boto3 object's CRC32).
            checksum: info.verifying_checksum().map(str::to_string),
            etag: info.etag.clone(),
            recorded_source_etag: info.metadata.get(SOURCE_ETAG).cloned(),
        }
    }
}

/// The answer of [`compare`]: the same content, different content, or not enough known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The destination holds the source's content.
    Same,
    /// It does not: copy.
    Differs,
    /// Nothing compared says either way; ask for more (a HEAD).
    Unknown,
}

/// Compares a source and destination fingerprint: checksums first, then etags, sizes
/// always. `comparable_etags` says whether the two stores' etags derive from the content
/// alone (two S3 engines), so equal etags mean equal content.
pub fn compare(source: &Fingerprint, dest: &Fingerprint, comparable_etags: bool) -> Verdict {
    if source.size != dest.size {
        return Verdict::Differs;
    }
    // Only checksums of one algorithm (`sha256:…` against `sha256:…`) compare.
    if let (Some(a), Some(b)) = (&source.checksum, &dest.checksum)
        && a.split_once(':').map(|p| p.0) == b.split_once(':').map(|p| p.0)
    {
        return if a == b {
            Verdict::Same
        } else {
            Verdict::Differs
        };
    }
    let Some(etag) = &source.etag else {
        return Verdict::Unknown;
    };
    if dest.recorded_source_etag.as_ref() == Some(etag) {
        return Verdict::Same;
    }
    if comparable_etags && let Some(dest_etag) = &dest.etag {
        return if dest_etag == etag {
            Verdict::Same
        } else {
            Verdict::Differs
        };
    }
    Verdict::Differs
}

/// A source object a plan copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToCopy {
    /// Its key.
    pub key: ObjectKey,
    /// Its size as listed.
    pub size: u64,
    /// A foreign name the destination listed under that exact name: only such a name is
    /// overwritten ([`copy_planned`]).
    pub replacing: bool,
}

/// What a sync would do, decided before anything changes, held in memory (the CLI keeps
/// its plan on disk instead, from [`decide_each`]).
#[derive(Debug, Default)]
pub struct Plan {
    /// Objects the source listed.
    pub source_objects: u64,
    /// Objects the destination listed under the prefix.
    pub destination_objects: u64,
    /// Source objects to copy (absent or different at the destination), sorted.
    pub to_copy: Vec<ToCopy>,
    /// Source objects already at the destination.
    pub skipped: u64,
    /// Source objects that could not be compared, with the error, sorted.
    pub failed: Vec<(ObjectKey, Error)>,
    /// Destination objects the source lacks, sorted (filled only when deletes are asked).
    pub to_delete: Vec<ObjectKey>,
    /// Source objects whose names are not valid keys (found keys, see
    /// [`ObjectKey::foreign`]), sorted: planned like the others, listed here to report.
    pub foreign: Vec<ObjectKey>,
    /// The foreign names to copy that the destination listed under that exact name,
    /// sorted: only those are overwritten ([`copy_planned`]).
    pub replacing: Vec<ObjectKey>,
}

impl Plan {
    /// The share of the destination's objects the plan deletes (0 for an empty one).
    pub fn delete_share(&self) -> f64 {
        delete_share(self.to_delete.len() as u64, self.destination_objects)
    }

    /// Adds one decision (they come in key order, so every list stays sorted).
    fn add(&mut self, decision: Decision) {
        let source = match &decision {
            Decision::Copy(ToCopy { key, .. })
            | Decision::Skip { key }
            | Decision::Failed { key, .. } => Some(key),
            Decision::Delete { .. } => None,
        };
        if let Some(key) = source.filter(|k| k.is_foreign()) {
            self.foreign.push(key.clone());
        }
        match decision {
            Decision::Copy(copy) => {
                if copy.replacing {
                    self.replacing.push(copy.key.clone());
                }
                self.to_copy.push(copy);
            }
            Decision::Skip { .. } => self.skipped += 1,
            Decision::Failed { key, error } => self.failed.push((key, error)),
            Decision::Delete { key } => self.to_delete.push(key),
        }
    }
}

/// The share of `destination_objects` that `deletes` is (0 for an empty destination).
pub fn delete_share(deletes: u64, destination_objects: u64) -> f64 {
    if destination_objects == 0 {
        0.0
    } else {
        deletes as f64 / destination_objects as f64
    }
}

/// Lists both sides under `prefix` and decides what to copy and, with `deletes`, what to
/// delete, into a plan held in memory ([`decide_each`] streams it). Changes nothing.
pub async fn plan(from: &Storage, to: &Storage, prefix: &str, deletes: bool) -> Result<Plan> {
    let mut plan = Plan::default();
    let totals = decide_each(from, to, prefix, deletes, spill::RUN_LEN, |decision| {
        plan.add(decision);
        Ok(())
    })
    .await?;
    plan.source_objects = totals.source_objects;
    plan.destination_objects = totals.destination_objects;
    Ok(plan)
}

/// Whether the source object `key`, listed as `source_listed`, must be copied to a
/// destination that listed `listed` under that name.
async fn needs_copy(
    from: &Storage,
    to: &Storage,
    key: &ObjectKey,
    source_listed: &Fingerprint,
    listed: Option<&Fingerprint>,
    comparable_etags: bool,
) -> Result<bool> {
    let Some(listed) = listed else {
        return Ok(true);
    };
    // What both listings say: sizes, checksums and comparable etags need no request.
    match compare(source_listed, listed, comparable_etags) {
        Verdict::Same => return Ok(false),
        Verdict::Differs if source_listed.size != listed.size => return Ok(true),
        Verdict::Differs | Verdict::Unknown => {}
    }
    // The destination's HEAD carries the source etag a sync recorded.
    let dest = match to.head(key).await {
        Ok(info) => Fingerprint::of(&info),
        Err(Error::NotFound { .. }) => return Ok(true),
        Err(e) => return Err(e),
    };
    let source = match source_listed.etag {
        // The destination has a checksum and the etags did not settle it: the source's
        // HEAD may carry one of the same algorithm, which does.
        Some(_)
            if dest.checksum.is_some()
                && compare(source_listed, &dest, comparable_etags) != Verdict::Same =>
        {
            match from.head(key).await {
                Ok(info) => Fingerprint::of(&info),
                Err(Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Some(_) => source_listed.clone(),
        // The source listed no etag: its HEAD says.
        None => match from.head(key).await {
            Ok(info) => Fingerprint::of(&info),
            // Gone since the listing: nothing to copy.
            Err(Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        },
    };
    Ok(compare(&source, &dest, comparable_etags) != Verdict::Same)
}

/// What [`copy`] did: the bytes it copied, and the source's metadata entries the
/// destination could not hold, which the copy went without.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    /// The object's size.
    pub size: u64,
    /// Metadata entries left out (the name as found, and why).
    pub left_out: Vec<LeftOut>,
}

/// Copies one object from `from` to `to` (content, content type, metadata), recording the
/// source etag where the metadata has room for it. Below the multipart threshold it is
/// one PUT.
///
/// The source's metadata was chosen by whoever wrote it (another tool's `my_field`,
/// `dicom.series`, non-ASCII values), so it is not held to `put --meta`'s rules: the
/// destination carries it as its provider can hold it ([`Storage::carry`]), and what it
/// cannot hold is left out, said in [`Copied::left_out`], and the copy still made.
///
/// From the local provider, the object's file is opened beneath the root
/// ([`Storage::open_file`]) and stored by [`Storage::write_from_open_file`]: a kernel copy
/// onto local disk, parts read ahead of the upload elsewhere, and in both cases its bytes
/// checked against the checksum stored with the source before the copy is committed.
/// Elsewhere the object streams from `from` into `to`, checked likewise (the last chunk is
/// held back until the checksum matched, so a damaged object's upload is aborted). Either
/// way a damaged source is [`Error::Corrupt`] and the destination keeps what it had.
///
/// An object another tool named with a name that is not a valid key (a found key, see
/// [`ObjectKey::foreign`]) is carried under that exact name when the destination can hold
/// it ([`Storage::carrying_found_names`]); when it cannot, or when the destination already
/// answers for that name (see [`copy_planned`], which a plan's copies use), the copy is
/// refused with [`Error::InvalidKey`] and the destination is left as it was.
pub async fn copy(from: &Storage, to: &Storage, key: &ObjectKey) -> Result<Copied> {
    copy_planned(from, to, key, false).await
}

/// [`copy`], knowing whether the destination listed `key` under that exact name (a
/// [`Plan`]'s `replacing`). Some stores keep a name as another (SeaweedFS stores `a\\b` as
/// `a/b`; AWS keeps it): a foreign name the destination did not list but answers for is
/// such a name, and carrying it would overwrite that other object. It is refused with
/// [`Error::InvalidKey`] (not carried), the destination left as it was (one HEAD per
/// foreign name the destination did not list).
pub async fn copy_planned(
    from: &Storage,
    to: &Storage,
    key: &ObjectKey,
    listed_at_destination: bool,
) -> Result<Copied> {
    if key.is_foreign() && !listed_at_destination && to.exists(key).await? {
        return Err(Error::InvalidKey {
            key: key.to_string(),
            reason: "the destination answers for this name but never lists it (it keeps the \
                     name as another: SeaweedFS stores '\\' as '/'), so carrying it would \
                     overwrite that object"
                .to_string(),
        });
    }
    copy_to(from, to, key).await
}

async fn copy_to(from: &Storage, to: &Storage, key: &ObjectKey) -> Result<Copied> {
    let carrying;
    let to = if key.is_foreign() {
        carrying = to.carrying_found_names();
        &carrying
    } else {
        to
    };
    if let Some(source) = from.open_file(key).await? {
        let (options, left_out) = copy_options(to, source.info());
        let size = source.info().size;
        to.write_from_open_file(key, source, &options, |_, _| {})
            .await?;
        return Ok(Copied { size, left_out });
    }
    let object = from.get_stream(key).await?;
    let (options, left_out) = copy_options(to, &object.info);
    let size = object.info.size;
    to.upload_stream(key, &options, object.stream).await?;
    Ok(Copied { size, left_out })
}

/// How a copy of the object `info` describes is written to `to`: its content type and
/// metadata as `to` can hold it, and its etag as [`SOURCE_ETAG`] where the metadata has
/// room for it after the rest (without it, later runs compare this object by etag or a
/// HEAD, rather than never copy it); and the entries left out.
fn copy_options(to: &Storage, info: &ObjectInfo) -> (WriteOptions, Vec<LeftOut>) {
    let mut found = info.metadata.clone();
    // A copy of a copy must not claim the first source's version.
    found.remove(SOURCE_ETAG);
    let record = info.etag.as_deref().map(|etag| (SOURCE_ETAG, etag));
    let mut carried = to.carry(&found, record);
    // The record is maskstore's, not the source's: no room for it is no loss to report.
    carried.left_out.retain(|left| left.name != SOURCE_ETAG);
    let content_type = info.content_type.clone().filter(|ct| {
        let holds = WriteOptions::content_type(ct.clone()).validate().is_ok();
        if !holds {
            carried.left_out.push(LeftOut {
                name: "content-type".to_string(),
                reason: "not printable ASCII, which no HTTP header carries; the copy has the \
                         default content type"
                    .to_string(),
            });
        }
        holds
    });
    let options = WriteOptions {
        content_type,
        carried: carried.kept,
        // The bytes are copied as stored (GCS reads never decompress them): so is the
        // encoding that says what they are.
        content_encoding: info.content_encoding.clone(),
        ..Default::default()
    };
    (options, carried.left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(size: u64, etag: Option<&str>) -> Fingerprint {
        Fingerprint {
            size,
            etag: etag.map(str::to_string),
            ..Fingerprint::default()
        }
    }

    #[test]
    fn sizes_that_differ_always_differ() {
        let mut dest = print(4, Some("a"));
        dest.recorded_source_etag = Some("a".into());
        assert_eq!(compare(&print(5, Some("a")), &dest, true), Verdict::Differs);
    }

    #[test]
    fn checksums_of_different_algorithms_do_not_compare() {
        let mut source = print(10, Some("e1"));
        let mut dest = print(10, Some("e1"));
        source.checksum = Some("sha256:AAAA".into());
        dest.checksum = Some("crc64nvme:BBBB".into());
        // Undecided by checksums, the etags speak (comparable here: same).
        assert_eq!(compare(&source, &dest, true), Verdict::Same);
        dest.checksum = Some("sha256:BBBB".into());
        assert_eq!(compare(&source, &dest, true), Verdict::Differs);
    }

    #[test]
    fn checksums_decide_before_etags() {
        let mut source = print(4, Some("a"));
        let mut dest = print(4, Some("a"));
        source.checksum = Some("c1".into());
        dest.checksum = Some("c2".into());
        assert_eq!(compare(&source, &dest, true), Verdict::Differs);
        dest.checksum = Some("c1".into());
        dest.etag = Some("other".into());
        assert_eq!(compare(&source, &dest, false), Verdict::Same);
    }

    #[test]
    fn etags_compare_only_when_comparable_or_recorded() {
        let source = print(4, Some("a"));
        assert_eq!(compare(&source, &print(4, Some("a")), true), Verdict::Same);
        assert_eq!(
            compare(&source, &print(4, Some("b")), true),
            Verdict::Differs
        );
        // Local/memory etags name versions: equal text proves nothing.
        assert_eq!(
            compare(&source, &print(4, Some("a")), false),
            Verdict::Differs
        );
        let mut recorded = print(4, Some("b"));
        recorded.recorded_source_etag = Some("a".into());
        assert_eq!(compare(&source, &recorded, false), Verdict::Same);
    }

    /// An object whose metadata leaves no room for the record under S3's 2 KiB is still
    /// copied, whole and with its metadata; only the record is left out.
    #[tokio::test]
    async fn metadata_near_the_limit_is_copied_without_the_record() {
        let (from, to) = (Storage::memory(), Storage::memory());
        let key = from.key("full.png").unwrap();
        let options = WriteOptions::default().with_metadata("notes", "n".repeat(1952 - 5));
        from.put_with(&key, "mask", &options).await.unwrap();
        let copied = copy(&from, &to, &key).await.unwrap();
        assert_eq!((copied.size, copied.left_out), (4, vec![]));
        let copied = to.head(&key).await.unwrap();
        assert_eq!(copied.metadata, options.metadata);
        assert_eq!(to.get(&key).await.unwrap().data, "mask");
    }

    #[test]
    fn a_source_without_etag_or_checksum_is_unknown() {
        assert_eq!(
            compare(&print(4, None), &print(4, Some("a")), true),
            Verdict::Unknown
        );
    }
}
