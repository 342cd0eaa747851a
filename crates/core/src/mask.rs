//! The domain key scheme for segmentation masks.

use std::fmt;

use crate::{Error, ObjectKey};

/// A mask file format maskstore stores, with its file extension and content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MaskFormat {
    /// DICOM Segmentation object, `.dcm`.
    DicomSeg,
    /// NIfTI-1, `.nii`.
    Nifti,
    /// Gzip-compressed NIfTI-1, `.nii.gz`.
    NiftiGz,
    /// NRRD, `.nrrd`.
    Nrrd,
    /// PNG label image, `.png`.
    Png,
}

impl MaskFormat {
    /// Every format, in the order they are listed in error messages.
    pub const ALL: [MaskFormat; 5] = [
        MaskFormat::DicomSeg,
        MaskFormat::Nifti,
        MaskFormat::NiftiGz,
        MaskFormat::Nrrd,
        MaskFormat::Png,
    ];

    /// The file extension without the leading dot (`nii.gz`).
    pub fn extension(self) -> &'static str {
        match self {
            MaskFormat::DicomSeg => "dcm",
            MaskFormat::Nifti => "nii",
            MaskFormat::NiftiGz => "nii.gz",
            MaskFormat::Nrrd => "nrrd",
            MaskFormat::Png => "png",
        }
    }

    /// The content type stored with the object and served to browsers.
    pub fn content_type(self) -> &'static str {
        match self {
            MaskFormat::DicomSeg => "application/dicom",
            // NIfTI and NRRD have no registered media type; octet-stream makes browsers
            // download rather than guess.
            MaskFormat::Nifti | MaskFormat::Nrrd => "application/octet-stream",
            // The file itself is gzip; not Content-Encoding, so clients keep the .gz bytes.
            MaskFormat::NiftiGz => "application/gzip",
            MaskFormat::Png => "image/png",
        }
    }

    /// The format whose extension is `ext` (without the dot).
    pub fn from_extension(ext: &str) -> Option<MaskFormat> {
        MaskFormat::ALL.into_iter().find(|f| f.extension() == ext)
    }

    /// The format of the file name at the end of `key`, if it has a known mask extension.
    pub fn for_key(key: &str) -> Option<MaskFormat> {
        let name = key.rsplit('/').next()?;
        let (_, ext) = name.split_once('.')?;
        MaskFormat::from_extension(ext)
    }

    fn known_list() -> String {
        MaskFormat::ALL
            .iter()
            .map(|f| f.extension())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The longest DICOM UID allowed by the standard (PS3.5 §9.1).
pub const MAX_UID_LEN: usize = 64;
/// The longest mask id maskstore accepts.
pub const MAX_MASK_ID_LEN: usize = 128;

/// A mask key: `mask/<study-uid>/<series-uid>/<mask-id>.<ext>`.
///
/// UIDs are DICOM UIDs (digits and dots, at most 64 characters, no empty component, no
/// leading zero in a multi-digit component). The mask id is 1..=128 characters of ASCII
/// letters, digits, `-` and `_`, starting with a letter or digit. The extension is one of
/// [`MaskFormat`]'s.
///
/// ```
/// use maskstore_core::{MaskFormat, MaskKey};
/// let key: MaskKey = "mask/1.2.840.1/1.2.840.2/liver-v2.nii.gz".parse().unwrap();
/// assert_eq!(key.format(), MaskFormat::NiftiGz);
/// assert_eq!(key.to_string(), "mask/1.2.840.1/1.2.840.2/liver-v2.nii.gz");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MaskKey {
    study_uid: String,
    series_uid: String,
    mask_id: String,
    format: MaskFormat,
}

impl MaskKey {
    /// The fixed first segment of every mask key.
    pub const ROOT: &'static str = "mask";

    /// Builds a mask key from its parts, validating each.
    pub fn new(
        study_uid: &str,
        series_uid: &str,
        mask_id: &str,
        format: MaskFormat,
    ) -> Result<Self, Error> {
        let whole = format!(
            "{}/{study_uid}/{series_uid}/{mask_id}.{}",
            Self::ROOT,
            format.extension()
        );
        check_uid(&whole, "study UID", study_uid)?;
        check_uid(&whole, "series UID", series_uid)?;
        check_mask_id(&whole, mask_id)?;
        Ok(MaskKey {
            study_uid: study_uid.to_string(),
            series_uid: series_uid.to_string(),
            mask_id: mask_id.to_string(),
            format,
        })
    }

    /// Parses `mask/<study-uid>/<series-uid>/<mask-id>.<ext>`.
    pub fn parse(key: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::InvalidMaskKey {
            key: key.to_string(),
            reason,
        };
        let parts: Vec<&str> = key.split('/').collect();
        let [root, study, series, file] = parts[..] else {
            return Err(bad(format!(
                "expected 4 segments mask/<study-uid>/<series-uid>/<mask-id>.<ext>, found {}",
                parts.len()
            )));
        };
        if root != Self::ROOT {
            return Err(bad(format!(
                "mask keys start with \"{}/\", not {root:?}",
                Self::ROOT
            )));
        }
        let Some((mask_id, ext)) = file.split_once('.') else {
            return Err(bad(format!(
                "the file name {file:?} has no extension; add one of {}",
                MaskFormat::known_list()
            )));
        };
        let format = MaskFormat::from_extension(ext).ok_or_else(|| {
            bad(format!(
                "unknown mask extension {ext:?}; use one of {}",
                MaskFormat::known_list()
            ))
        })?;
        MaskKey::new(study, series, mask_id, format)
    }

    /// The study instance UID.
    pub fn study_uid(&self) -> &str {
        &self.study_uid
    }

    /// The series instance UID.
    pub fn series_uid(&self) -> &str {
        &self.series_uid
    }

    /// The mask id (the file name without extension).
    pub fn mask_id(&self) -> &str {
        &self.mask_id
    }

    /// The file format.
    pub fn format(&self) -> MaskFormat {
        self.format
    }

    /// The content type of the format.
    pub fn content_type(&self) -> &'static str {
        self.format.content_type()
    }

    /// The object key this mask is stored under.
    pub fn to_object_key(&self) -> ObjectKey {
        // Every part was validated to be a safe key segment.
        ObjectKey::parse(self.to_string()).expect("a valid MaskKey is a valid ObjectKey")
    }
}

impl fmt::Display for MaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}.{}",
            Self::ROOT,
            self.study_uid,
            self.series_uid,
            self.mask_id,
            self.format.extension()
        )
    }
}

impl std::str::FromStr for MaskKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        MaskKey::parse(s)
    }
}

impl From<&MaskKey> for ObjectKey {
    fn from(key: &MaskKey) -> Self {
        key.to_object_key()
    }
}

fn check_uid(whole: &str, what: &str, uid: &str) -> Result<(), Error> {
    let bad = |reason: String| {
        Err(Error::InvalidMaskKey {
            key: whole.to_string(),
            reason,
        })
    };
    if uid.is_empty() {
        return bad(format!(
            "the {what} is empty; give a DICOM UID such as 1.2.840.10008"
        ));
    }
    if uid.len() > MAX_UID_LEN {
        return bad(format!(
            "the {what} is {} characters; DICOM UIDs have at most {MAX_UID_LEN}",
            uid.len()
        ));
    }
    if let Some(c) = uid.chars().find(|c| !c.is_ascii_digit() && *c != '.') {
        return bad(format!(
            "the {what} {uid:?} contains {c:?}; DICOM UIDs are digits and dots only"
        ));
    }
    for component in uid.split('.') {
        if component.is_empty() {
            return bad(format!(
                "the {what} {uid:?} has an empty component; remove the extra dot"
            ));
        }
        if component.len() > 1 && component.starts_with('0') {
            return bad(format!(
                "the {what} {uid:?} has component {component:?} with a leading zero, which DICOM forbids"
            ));
        }
    }
    Ok(())
}

fn check_mask_id(whole: &str, id: &str) -> Result<(), Error> {
    let bad = |reason: String| {
        Err(Error::InvalidMaskKey {
            key: whole.to_string(),
            reason,
        })
    };
    if id.is_empty() || id.len() > MAX_MASK_ID_LEN {
        return bad(format!(
            "the mask id must be 1 to {MAX_MASK_ID_LEN} characters, found {}",
            id.len()
        ));
    }
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad(format!(
            "the mask id {id:?} must start with a letter or digit"
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return bad(format!(
            "the mask id {id:?} contains {c:?}; use letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(key: &str) -> String {
        match MaskKey::parse(key) {
            Err(Error::InvalidMaskKey { reason, .. }) => reason,
            other => panic!("expected InvalidMaskKey for {key:?}, got {other:?}"),
        }
    }

    #[test]
    fn every_format_round_trips_exactly() {
        for format in MaskFormat::ALL {
            let text = format!(
                "mask/1.2.840.10008.1/2.25.7/seg_01-a.{}",
                format.extension()
            );
            let key = MaskKey::parse(&text).unwrap();
            assert_eq!(key.format(), format);
            assert_eq!(key.to_string(), text);
            assert_eq!(key.to_object_key().as_str(), text);
            assert_eq!(MaskKey::parse(&key.to_string()).unwrap(), key);
        }
    }

    #[test]
    fn content_types_follow_the_format() {
        let ct = |k: &str| MaskKey::parse(k).unwrap().content_type();
        assert_eq!(ct("mask/1/2/a.dcm"), "application/dicom");
        assert_eq!(ct("mask/1/2/a.nii.gz"), "application/gzip");
        assert_eq!(ct("mask/1/2/a.png"), "image/png");
        assert_eq!(MaskFormat::for_key("mask/x/y.nrrd"), Some(MaskFormat::Nrrd));
        assert_eq!(MaskFormat::for_key("mask/x/y.txt"), None);
    }

    #[test]
    fn parts_are_exposed() {
        let key = MaskKey::parse("mask/1.2/3.4/liver.nii").unwrap();
        assert_eq!(key.study_uid(), "1.2");
        assert_eq!(key.series_uid(), "3.4");
        assert_eq!(key.mask_id(), "liver");
    }

    #[test]
    fn uid_rules_are_enforced() {
        assert!(reason("mask/1..2/3/a.png").contains("empty component"));
        assert!(reason("mask/.1/3/a.png").contains("empty component"));
        assert!(reason("mask/1.02/3/a.png").contains("leading zero"));
        assert!(reason("mask/1.2a/3/a.png").contains("digits and dots"));
        assert!(reason("mask//3/a.png").contains("study UID is empty"));
        let long = format!("mask/1/{}/a.png", "1".repeat(65));
        assert!(reason(&long).contains("at most 64"));
        MaskKey::parse(&format!("mask/1/{}/a.png", "1".repeat(64))).unwrap();
        MaskKey::parse("mask/0.0/1.0/a.png").unwrap();
    }

    #[test]
    fn mask_id_and_extension_rules_are_enforced() {
        assert!(reason("mask/1/2/-a.png").contains("start with a letter or digit"));
        assert!(reason("mask/1/2/a b.png").contains("contains ' '"));
        assert!(reason("mask/1/2/.png").contains("1 to 128"));
        assert!(reason("mask/1/2/a.jpg").contains("unknown mask extension \"jpg\""));
        assert!(reason("mask/1/2/a.jpg").contains("dcm, nii, nii.gz, nrrd, png"));
        assert!(reason("mask/1/2/a").contains("no extension"));
        assert!(reason("masks/1/2/a.png").contains("start with \"mask/\""));
        assert!(reason("mask/1/2/3/a.png").contains("found 5"));
    }
}
