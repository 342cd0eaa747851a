//! The model's state: which version each key holds, and what every operation must answer.

use std::collections::BTreeMap;
use std::ops::Range;

use super::op::{Body, EtagRef, Mode, Op, RangeSpec, ReadCond};

/// The content type an object stored without one reads back as, on every backend.
pub const DEFAULT_TYPE: &str = "application/octet-stream";
/// The content type the runner's signed PUTs send (and bind, where URLs can bind one).
pub const SIGNED_TYPE: &str = "application/x-maskstore-model";
/// The metadata name the model's puts use.
pub const META_NAME: &str = "model";

/// One stored version of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Which write made it: every write, copy and rename makes a new one. Etags are
    /// opaque: the runner learns which etag names which write.
    pub write: u64,
    /// The bytes.
    pub body: Body,
    /// The content type reads report.
    pub content_type: String,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Written through `Storage`, so it must carry maskstore's checksum. A signed-URL
    /// upload on S3, Azure or GCS never passes maskstore: its checksum may be absent (the
    /// provider's own then verifies), but one that is there must be right.
    pub checksummed: bool,
    /// The keys the bytes were written and then copied or renamed under, in order. An
    /// engine that types an untyped object by its key's extension (see [`super::Known`])
    /// may have typed it by any of them: a copy may carry the type its source was stored
    /// with, or take its own key's.
    pub keys: Vec<String>,
}

/// What an operation must answer, by the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Success; for a write, the key now holds [`Model::get`]'s version.
    Done,
    /// This error (by name: `NotFound`, `AlreadyExists`, `Precondition`, `NotModified`,
    /// `InvalidRange`).
    Error(&'static str),
    /// A read of `range` of this version.
    Read(Version, Range<u64>),
    /// A head of this version.
    Info(Version),
    /// A listing: relative keys and sizes, sorted.
    Keys(Vec<(String, u64)>),
    /// A listing with delimiter: objects (relative keys, sizes) and folders (relative,
    /// ending in `/`), each sorted by bytes.
    Level(Vec<(String, u64)>, Vec<String>),
    /// A signed GET: 200 with this version, or 404.
    Fetched(Option<Version>),
}

/// The whole store, as the contract says it must behave.
#[derive(Debug, Clone, Default)]
pub struct Model {
    objects: BTreeMap<String, Version>,
    writes: u64,
}

impl Model {
    /// An empty store.
    pub fn new() -> Model {
        Model::default()
    }

    /// The version at `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Version> {
        self.objects.get(key)
    }

    /// Every key and its version.
    pub fn objects(&self) -> &BTreeMap<String, Version> {
        &self.objects
    }

    /// Sets `key` to `version` (or removes it), as a concurrent group's observed winner.
    pub fn set(&mut self, key: &str, version: Option<Version>) {
        match version {
            Some(version) => self.objects.insert(key.to_string(), version),
            None => self.objects.remove(key),
        };
    }

    /// A new version (the next write number).
    pub fn version(
        &mut self,
        key: &str,
        body: Body,
        content_type: &str,
        meta: Option<&str>,
    ) -> Version {
        self.writes += 1;
        Version {
            write: self.writes,
            body,
            content_type: content_type.to_string(),
            metadata: meta
                .map(|v| BTreeMap::from([(META_NAME.to_string(), v.to_string())]))
                .unwrap_or_default(),
            checksummed: true,
            keys: vec![key.to_string()],
        }
    }

    /// Performs `op` on the model and says what the backend must answer. `fresh` says
    /// whether an etag reference names the key's current version (the runner resolves
    /// references; only [`EtagRef::Fresh`] of an existing key does).
    pub fn step(&mut self, op: &Op) -> Expected {
        match op {
            Op::Put {
                key,
                body,
                content_type,
                meta,
                mode,
            } => {
                let exists = self.objects.contains_key(key);
                match mode {
                    Mode::CreateOnly if exists => return Expected::Error("AlreadyExists"),
                    Mode::IfMatch(r) if !(exists && *r == EtagRef::Fresh) => {
                        return Expected::Error("Precondition");
                    }
                    _ => {}
                }
                let ct = content_type.as_deref().unwrap_or(DEFAULT_TYPE);
                let version = self.version(key, *body, ct, meta.as_deref());
                self.objects.insert(key.clone(), version);
                Expected::Done
            }
            Op::Get { key, range, cond } => self.read(key, range.as_ref(), cond.as_ref()),
            Op::Head { key } => match self.objects.get(key) {
                Some(v) => Expected::Info(v.clone()),
                None => Expected::Error("NotFound"),
            },
            Op::Delete { key } => {
                self.objects.remove(key);
                Expected::Done
            }
            Op::DeleteMany { keys } => {
                for key in keys {
                    self.objects.remove(key);
                }
                Expected::Done
            }
            Op::List { folder } => Expected::Keys(self.below(folder.as_deref())),
            Op::ListLevel { folder } => self.level(folder.as_deref()),
            Op::Copy {
                from,
                to,
                if_absent,
            } => self.copy(from, to, *if_absent, false),
            Op::Rename {
                from,
                to,
                if_absent,
            } => self.copy(from, to, *if_absent, true),
            Op::Upload {
                key,
                body,
                content_type,
                abort,
            } => {
                if !abort {
                    let ct = content_type.as_deref().unwrap_or(DEFAULT_TYPE);
                    let version = self.version(key, *body, ct, None);
                    self.objects.insert(key.clone(), version);
                }
                Expected::Done
            }
            Op::SignedGet { key } => Expected::Fetched(self.objects.get(key).cloned()),
            Op::SignedPut { key, body } => {
                let mut version = self.version(key, *body, SIGNED_TYPE, None);
                version.checksummed = false;
                self.objects.insert(key.clone(), version);
                Expected::Done
            }
            Op::Together(_) => unreachable!("a group is checked by model::Together"),
        }
    }

    /// A read: the key must exist; then the condition (RFC 9110 evaluates preconditions
    /// before the range); then the range.
    fn read(&self, key: &str, range: Option<&RangeSpec>, cond: Option<&ReadCond>) -> Expected {
        let size = self.objects.get(key).map_or(0, |v| u64::from(v.body.len));
        let wanted = range.map(|r| resolve(r, size));
        // An empty or reversed bounded range is refused before any I/O.
        if let Some(Resolved::Empty) = wanted {
            return Expected::Error("InvalidRange");
        }
        let Some(version) = self.objects.get(key) else {
            return Expected::Error("NotFound");
        };
        match cond {
            Some(ReadCond::IfMatch(r)) if *r != EtagRef::Fresh => {
                return Expected::Error("Precondition");
            }
            Some(ReadCond::IfNoneMatch(EtagRef::Fresh)) => return Expected::Error("NotModified"),
            _ => {}
        }
        match wanted {
            None => Expected::Read(version.clone(), 0..size),
            Some(Resolved::Bytes(range)) => Expected::Read(version.clone(), range),
            Some(Resolved::Empty | Resolved::Unsatisfiable) => Expected::Error("InvalidRange"),
        }
    }

    /// Keys below `folder` (whole segments), with sizes, sorted.
    fn below(&self, folder: Option<&str>) -> Vec<(String, u64)> {
        let base = folder.map(|f| format!("{f}/")).unwrap_or_default();
        self.objects
            .iter()
            .filter(|(k, _)| k.starts_with(&base))
            .map(|(k, v)| (k.clone(), u64::from(v.body.len)))
            .collect()
    }

    /// One level at `folder`: its objects and the folders directly below it.
    fn level(&self, folder: Option<&str>) -> Expected {
        let base = folder.map(|f| format!("{f}/")).unwrap_or_default();
        let mut objects = Vec::new();
        let mut folders = Vec::new();
        for (key, size) in self.below(folder) {
            match key[base.len()..].find('/') {
                Some(i) => folders.push(key[..base.len() + i + 1].to_string()),
                None => objects.push((key, size)),
            }
        }
        folders.dedup();
        objects.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        folders.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Expected::Level(objects, folders)
    }

    /// Copy or rename. A missing source is `NotFound` whatever the destination (the
    /// source is read first, as S3's CopyObject does). Onto itself, the object stays as
    /// it is (same version); the `_if_absent` forms find the key taken.
    fn copy(&mut self, from: &str, to: &str, if_absent: bool, rename: bool) -> Expected {
        let Some(source) = self.objects.get(from).cloned() else {
            return Expected::Error("NotFound");
        };
        if if_absent && self.objects.contains_key(to) {
            return Expected::Error("AlreadyExists");
        }
        if from == to {
            return Expected::Done;
        }
        let mut version = source.clone();
        self.writes += 1;
        version.write = self.writes;
        version.keys.push(to.to_string());
        self.objects.insert(to.to_string(), version);
        if rename {
            self.objects.remove(from);
        }
        Expected::Done
    }
}

/// A range resolved against an object's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Empty or reversed: refused before any I/O.
    Empty,
    /// Starts at or past the end (or any range of an empty object): `InvalidRange`.
    Unsatisfiable,
    /// These bytes.
    Bytes(Range<u64>),
}

/// Resolves `spec` against an object of `size` bytes, by the contract: a bounded end past
/// the end is cut there; a start at or past the end is unsatisfiable; a suffix longer than
/// the object is all of it, of an empty object too (no bytes); a suffix of 0 bytes is
/// unsatisfiable (RFC 9110 §14.1.1).
pub fn resolve(spec: &RangeSpec, size: u64) -> Resolved {
    match *spec {
        RangeSpec::Bounded { start, end } => {
            let (start, end) = (start.at(size), end.at(size));
            if end <= start {
                Resolved::Empty
            } else if start >= size {
                Resolved::Unsatisfiable
            } else {
                Resolved::Bytes(start..end.min(size))
            }
        }
        RangeSpec::From(pos) => {
            let start = pos.at(size);
            if start >= size {
                Resolved::Unsatisfiable
            } else {
                Resolved::Bytes(start..size)
            }
        }
        // The contract's rule holds for an empty object too: all of it, no bytes.
        RangeSpec::Suffix(0) => Resolved::Unsatisfiable,
        RangeSpec::Suffix(n) => Resolved::Bytes(size - u64::from(n).min(size)..size),
    }
}
