//! The operations of a history, as data: what the state machine generates, what a saved
//! regression history holds (JSON), and what the runner performs on a `Storage`.

use serde::{Deserialize, Serialize};

/// The bytes of a write, named instead of spelled out so that a history stays readable:
/// `len` bytes made from `tag` (see [`Body::bytes`]). Histories give every write its own
/// tag, so two writes hold the same bytes only when they are empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// Which write this is; picks the bytes.
    pub tag: u32,
    /// How many bytes.
    pub len: u32,
}

impl Body {
    /// The bytes: the tag in decimal, then a pattern that moves with the tag and the
    /// offset, so that a misplaced part or range shows as wrong bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let head = format!("<{}>", self.tag).into_bytes();
        (0..self.len as usize)
            .map(|i| match head.get(i) {
                Some(b) => *b,
                None => (i as u32)
                    .wrapping_mul(31)
                    .wrapping_add(self.tag.wrapping_mul(7)) as u8,
            })
            .collect()
    }
}

/// How a put treats an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Replace whatever is there.
    Overwrite,
    /// Only if the key is free (`if-none-match: *`).
    CreateOnly,
    /// Only if the object is still the version the etag names (`if-match`).
    IfMatch(EtagRef),
}

/// Which etag a conditional operation sends. The history names an etag by what it
/// refers to; the runner knows the strings the backend returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EtagRef {
    /// The etag of the key's current version (a missing key has none: [`EtagRef::Bogus`]).
    Fresh,
    /// An etag this key had before, for other bytes than it holds now (none yet: Bogus).
    Stale,
    /// An etag no backend ever returned.
    Bogus,
}

/// A condition on a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadCond {
    /// `if-match`.
    IfMatch(EtagRef),
    /// `if-none-match`.
    IfNoneMatch(EtagRef),
}

/// A position in an object, from its start or from its end (`End(-1)`: the last byte),
/// so that edges stay edges whatever the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pos {
    /// This many bytes from the start.
    Start(u32),
    /// The size plus this (negative: before the end), never below 0.
    End(i32),
}

impl Pos {
    /// The offset in an object of `size` bytes.
    pub fn at(self, size: u64) -> u64 {
        match self {
            Pos::Start(n) => u64::from(n),
            Pos::End(d) => size.saturating_add_signed(i64::from(d)),
        }
    }
}

/// A byte range of a read, as `Storage`'s `ByteRange` has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeSpec {
    /// `start..end`.
    Bounded {
        /// First byte.
        start: Pos,
        /// One past the last byte.
        end: Pos,
    },
    /// From an offset to the end.
    From(Pos),
    /// The last n bytes.
    Suffix(u32),
}

/// One step of a history. Keys are relative to the history's own prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `put_with`.
    Put {
        /// Where.
        key: String,
        /// What.
        body: Body,
        /// Content type (none: the default).
        content_type: Option<String>,
        /// Value of the metadata entry `model` (none: no metadata).
        meta: Option<String>,
        /// Overwrite, create-only or if-match.
        mode: Mode,
    },
    /// `read`: whole or a range, with or without a condition.
    Get {
        /// Where.
        key: String,
        /// Which bytes (none: all).
        range: Option<RangeSpec>,
        /// A condition (none: none).
        cond: Option<ReadCond>,
    },
    /// `head`.
    Head {
        /// Where.
        key: String,
    },
    /// `delete`.
    Delete {
        /// Where.
        key: String,
    },
    /// `delete_many`.
    DeleteMany {
        /// Which.
        keys: Vec<String>,
    },
    /// `list` below a folder (none: the whole history prefix).
    List {
        /// The folder, relative.
        folder: Option<String>,
    },
    /// `list_with_delimiter` at a folder (none: the history prefix).
    ListLevel {
        /// The folder, relative.
        folder: Option<String>,
    },
    /// `copy` or `copy_if_absent`.
    Copy {
        /// Source.
        from: String,
        /// Destination.
        to: String,
        /// The `_if_absent` form.
        if_absent: bool,
    },
    /// `rename` or `rename_if_absent`.
    Rename {
        /// Source.
        from: String,
        /// Destination.
        to: String,
        /// The `_if_absent` form.
        if_absent: bool,
    },
    /// A streaming upload (`upload`, `write`…, then `finish` or `abort`).
    Upload {
        /// Where.
        key: String,
        /// What (sizes around the part size make it multipart).
        body: Body,
        /// Content type (none: the default).
        content_type: Option<String>,
        /// Abort instead of finishing.
        abort: bool,
    },
    /// A signed GET URL, fetched with a plain HTTP client.
    SignedGet {
        /// Where.
        key: String,
    },
    /// A signed PUT URL, used with a plain HTTP client.
    SignedPut {
        /// Where.
        key: String,
        /// What.
        body: Body,
    },
    /// Operations started together. Only puts and whole gets, and all puts of one key
    /// in one mode (overwrite or create-only), so that the outcome is one of a known set:
    /// see [`crate::model::Together`].
    Together(Vec<Op>),
}

impl Op {
    /// The keys the operation writes.
    pub fn written(&self) -> Vec<&str> {
        match self {
            Op::Put { key, .. } | Op::Upload { key, .. } | Op::SignedPut { key, .. } => {
                vec![key]
            }
            Op::Delete { key } => vec![key],
            Op::DeleteMany { keys } => keys.iter().map(String::as_str).collect(),
            Op::Copy { to, .. } => vec![to],
            Op::Rename { from, to, .. } => vec![from, to],
            Op::Together(ops) => ops.iter().flat_map(Op::written).collect(),
            Op::Get { .. }
            | Op::Head { .. }
            | Op::List { .. }
            | Op::ListLevel { .. }
            | Op::SignedGet { .. } => Vec::new(),
        }
    }

    /// How many operations this is (a group counts each of its own).
    pub fn count(&self) -> usize {
        match self {
            Op::Together(ops) => ops.len(),
            _ => 1,
        }
    }
}
