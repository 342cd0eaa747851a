//! Integrity: the checksum every write stores with an object (computed while the bytes
//! stream) and every whole read verifies.
//!
//! One rule on every backend: the checksum is kept as the user metadata entry
//! [`CHECKSUM_METADATA`] (`maskstore-checksum: sha256:<base64>` or
//! `crc64nvme:<base64>`), which S3, SeaweedFS, the local provider's attributes record and
//! memory all keep. On S3 the request also carries S3's own checksum header
//! (`x-amz-checksum-*`), which the engine verifies on receipt where it supports it.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use maskstore_core::ChecksumAlgorithm;
use sha2::Digest;

use crate::{Error, Result};

/// The user metadata entry holding an object's checksum, `algorithm:base64`. Reserved:
/// writes that set it themselves are refused.
pub const CHECKSUM_METADATA: &str = "maskstore-checksum";

/// A checksum being computed over bytes as they stream: maskstore's own algorithms
/// (sha256, crc64nvme) and those providers keep natively (crc32, crc32c, md5, sha1; see
/// [`NativeChecksum`]).
pub(crate) enum Hasher {
    Sha256(Box<sha2::Sha256>),
    Crc64Nvme(Box<crc_fast::Digest>),
    /// CRC-32 (ISO-HDLC, S3's `crc32`) or CRC-32C (Castagnoli, S3's and GCS's `crc32c`),
    /// named as stored.
    Crc32(&'static str, Box<crc_fast::Digest>),
    Md5(Box<md5::Md5>),
    Sha1(Box<sha1::Sha1>),
}

impl Hasher {
    /// A hasher of `algorithm`; `None` for [`ChecksumAlgorithm::None`].
    pub(crate) fn new(algorithm: ChecksumAlgorithm) -> Option<Hasher> {
        match algorithm {
            ChecksumAlgorithm::Sha256 => Some(Hasher::Sha256(Box::default())),
            ChecksumAlgorithm::Crc64Nvme => Some(Hasher::Crc64Nvme(Box::new(
                crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme),
            ))),
            ChecksumAlgorithm::None => None,
        }
    }

    /// A hasher of the algorithm a stored checksum names; `None` when the stored text
    /// names no algorithm maskstore writes: a `maskstore-checksum` naming another (`md5:`)
    /// was not written by maskstore and vouches for nothing.
    pub(crate) fn for_stored(stored: &str) -> Option<Hasher> {
        let (name, _) = stored.split_once(':')?;
        match name.parse::<ChecksumAlgorithm>().ok()? {
            ChecksumAlgorithm::None => None,
            algorithm => Hasher::new(algorithm),
        }
    }

    /// A hasher of the algorithm a provider's checksum names ([`NativeChecksum::value`]):
    /// maskstore's own, and crc32, crc32c, md5 and sha1.
    pub(crate) fn for_native(stored: &str) -> Option<Hasher> {
        let (name, _) = stored.split_once(':')?;
        let crc32 = |name, algorithm| {
            Some(Hasher::Crc32(
                name,
                Box::new(crc_fast::Digest::new(algorithm)),
            ))
        };
        match name {
            "crc32" => crc32("crc32", crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            "crc32c" => crc32("crc32c", crc_fast::CrcAlgorithm::Crc32Iscsi),
            "md5" => Some(Hasher::Md5(Box::default())),
            "sha1" => Some(Hasher::Sha1(Box::default())),
            _ => Hasher::for_stored(stored),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Crc64Nvme(h) | Hasher::Crc32(_, h) => h.update(data),
            Hasher::Md5(h) => md5::Digest::update(h.as_mut(), data),
            Hasher::Sha1(h) => sha1::Digest::update(h.as_mut(), data),
        }
    }

    /// The checksum as stored: `sha256:<base64>` or `crc64nvme:<base64 of the 8 big-endian
    /// bytes>` (the encodings of S3's `x-amz-checksum-*` headers).
    pub(crate) fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => labelled("sha256", &h.finalize()),
            Hasher::Crc64Nvme(h) => labelled("crc64nvme", &h.finalize().to_be_bytes()),
            // A 32-bit CRC as its 4 big-endian bytes (S3's and GCS's encoding).
            Hasher::Crc32(name, h) => {
                let crc = u32::try_from(h.finalize()).unwrap_or(u32::MAX);
                labelled(name, &crc.to_be_bytes())
            }
            Hasher::Md5(h) => labelled("md5", &md5::Digest::finalize(*h)),
            Hasher::Sha1(h) => labelled("sha1", &sha1::Digest::finalize(*h)),
        }
    }
}

/// `name:base64(digest)`, written into one buffer of the right size (through `format!`, a
/// 4 KiB memory put spent a tenth of its time here).
fn labelled(name: &str, digest: &[u8]) -> String {
    // The longest digest is SHA-256's 32 bytes: 44 base64 characters.
    let mut encoded = [0u8; 64];
    let n = STANDARD
        .encode_slice(digest, &mut encoded)
        .expect("a digest of at most 48 bytes fits 64 base64 characters");
    let encoded = std::str::from_utf8(&encoded[..n]).expect("base64 is ASCII");
    let mut text = String::with_capacity(name.len() + 1 + n);
    text.push_str(name);
    text.push(':');
    text.push_str(encoded);
    text
}

/// A checksum a provider keeps with an object itself, read when maskstore's own
/// ([`CHECKSUM_METADATA`]) is absent (an object another tool wrote): S3's flexible
/// checksums (`x-amz-checksum-crc32`, `-crc32c`, `-crc64nvme`, `-sha1`, `-sha256`, asked
/// for with `x-amz-checksum-mode: ENABLED`), GCS's `crc32c` and `md5Hash` (`x-goog-hash`),
/// Azure's `Content-MD5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeChecksum {
    /// `algorithm:base64`, in the form maskstore's own are stored (`crc32:DUoRhQ==`); for
    /// a composite checksum, as the provider gave it (`crc32:1Vdryw==-2`).
    pub value: String,
    /// Where the provider keeps it, as its documentation names it
    /// (`x-amz-checksum-crc32`, `gcs crc32c`, `azure Content-MD5`).
    pub source: String,
    /// A checksum of the parts' checksums of a multipart upload (S3's `COMPOSITE` type),
    /// not of the object's bytes: reported as such, never compared with them.
    pub composite: bool,
}

impl NativeChecksum {
    /// A full-object checksum `algorithm:base64` kept at `source`.
    pub(crate) fn full(value: String, source: impl Into<String>) -> NativeChecksum {
        NativeChecksum {
            value,
            source: source.into(),
            composite: false,
        }
    }

    /// What a whole read can verify: the value, unless it is composite.
    pub fn verifiable(&self) -> Option<&str> {
        (!self.composite).then_some(self.value.as_str())
    }
}

/// A provider's checksum of an object, as its HTTP answer carried it, in the extensions of
/// that answer (and so of object_store's `GetResult`): see [`crate::http_client`].
#[derive(Debug, Clone)]
pub(crate) struct NativeAnswer(pub(crate) NativeChecksum);

/// The checksum algorithm of a base64 digest of `bytes` bytes named `name`, as maskstore
/// writes it (`crc32:…`); `None` when `value` is not base64 of that many bytes.
pub(crate) fn native_value(name: &str, value: &str, bytes: usize) -> Option<String> {
    let decoded = STANDARD.decode(value.trim()).ok()?;
    (decoded.len() == bytes).then(|| format!("{name}:{}", value.trim()))
}

/// The checksum of `data` with `algorithm`, as stored; `None` for `none`.
pub fn checksum_of(algorithm: ChecksumAlgorithm, data: &[u8]) -> Option<String> {
    let mut hasher = Hasher::new(algorithm)?;
    hasher.update(data);
    Some(hasher.finish())
}

/// The SHA-256 an upload's body must have, as a presigned PUT binds it
/// ([`crate::SignOptions::sha256`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ContentSha256([u8; 32]);

impl std::fmt::Debug for ContentSha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContentSha256({})", self.hex())
    }
}

impl ContentSha256 {
    /// Reads a SHA-256 given as 64 hex digits (what `sha256sum` prints) or as the base64 of
    /// its 32 bytes (what S3's `x-amz-checksum-sha256` carries).
    pub fn parse(text: &str) -> Result<ContentSha256> {
        let invalid = |why: &str| Error::InvalidMetadata {
            name: "sha256".to_string(),
            reason: format!(
                "{why}; give the body's SHA-256 as 64 hex digits (as sha256sum prints it) or as \
                 the 44-character base64 of its 32 bytes"
            ),
        };
        let text = text.trim();
        if text.len() == 64 {
            let mut out = [0u8; 32];
            for (i, pair) in text.as_bytes().chunks(2).enumerate() {
                let digit = |b: u8| (b as char).to_digit(16);
                match (digit(pair[0]), digit(pair[1])) {
                    (Some(hi), Some(lo)) => out[i] = (hi * 16 + lo) as u8,
                    _ => return Err(invalid("64 characters but not all hex digits")),
                }
            }
            return Ok(ContentSha256(out));
        }
        let bytes = STANDARD.decode(text).map_err(|_| {
            invalid(&format!(
                "{} characters that are neither hex nor base64",
                text.len()
            ))
        })?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            invalid(&format!(
                "base64 of {} bytes, not the 32 of a SHA-256",
                b.len()
            ))
        })?;
        Ok(ContentSha256(bytes))
    }

    /// The SHA-256 of `data`.
    pub fn of(data: &[u8]) -> ContentSha256 {
        ContentSha256(sha2::Sha256::digest(data).into())
    }

    /// As 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// As base64 of the 32 bytes (S3's `x-amz-checksum-sha256` form).
    pub fn base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The maskstore checksum of the same bytes (`sha256:<base64>`).
    pub fn stored(&self) -> String {
        format!("sha256:{}", self.base64())
    }
}

/// A SHA-256 computed over bytes as they stream, to compare with a [`ContentSha256`].
#[derive(Default)]
pub struct Sha256Hasher(sha2::Sha256);

impl Sha256Hasher {
    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The SHA-256 of everything added.
    pub fn finish(self) -> ContentSha256 {
        ContentSha256(self.0.finalize().into())
    }
}

/// Checks the bytes of a whole read against what is stored with the object.
pub(crate) struct Verifier {
    backend: String,
    key: String,
    expected: String,
    /// `None` when the stored text is not a checksum this build can compute.
    hasher: Option<Hasher>,
}

/// What a corruption error says was stored, for an object whose checksum record exists
/// but cannot be read (`why`, escaped).
pub(crate) fn unreadable_record(why: &str) -> String {
    // Our words around the file system's or the parser's (never the record's bytes).
    format!("unreadable ({})", maskstore_core::shown_cut(why, 400))
}

/// What a corruption error says the bytes hash to when nothing could be compared.
pub(crate) const NOT_COMPUTED: &str = "(not computed: there is nothing left to compare them with)";

impl Verifier {
    /// The verifier of a whole read of the object `info` describes: of maskstore's own
    /// checksum, else the provider's full-object one; `None` when it has neither (it reads
    /// unverified). An object whose checksum record exists but cannot be read is
    /// [`Error::Corrupt`] at once: its bytes can no longer be checked, and they must not
    /// pass as merely unverified.
    pub(crate) fn of(backend: &str, info: &crate::ObjectInfo) -> Result<Option<Verifier>> {
        if let Some(why) = &info.unreadable_checksum {
            return Err(Error::Corrupt {
                backend: backend.to_string(),
                key: info.key.to_string(),
                expected: unreadable_record(why),
                actual: NOT_COMPUTED.to_string(),
            });
        }
        if info.checksum.is_some() {
            return Ok(Verifier::new(
                backend,
                info.key.as_str(),
                info.checksum.as_deref(),
            ));
        }
        Ok(info
            .native_checksum
            .as_ref()
            .and_then(NativeChecksum::verifiable)
            .map(|expected| Verifier::native(backend, info.key.as_str(), expected)))
    }

    /// A verifier of the provider's full-object checksum `expected`.
    pub(crate) fn native(backend: &str, key: &str, expected: &str) -> Verifier {
        Verifier {
            backend: backend.to_string(),
            key: key.to_string(),
            expected: expected.to_string(),
            hasher: Hasher::for_native(expected),
        }
    }

    /// A verifier of the stored checksum `expected`, if there is one.
    pub(crate) fn new(backend: &str, key: &str, expected: Option<&str>) -> Option<Verifier> {
        let expected = expected?;
        Some(Verifier {
            backend: backend.to_string(),
            key: key.to_string(),
            expected: expected.to_string(),
            hasher: Hasher::for_stored(expected),
        })
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        if let Some(hasher) = &mut self.hasher {
            hasher.update(data);
        }
    }

    /// Ok when the bytes seen match; else [`Error::Corrupt`] naming the key. A stored
    /// value naming no known algorithm cannot vouch for anything: it is reported corrupt
    /// too, never silently accepted.
    pub(crate) fn finish(self) -> Result<()> {
        let actual = match self.hasher {
            Some(hasher) => hasher.finish(),
            None => "(nothing: the stored checksum names no known algorithm)".to_string(),
        };
        if actual == self.expected {
            return Ok(());
        }
        Err(Error::Corrupt {
            backend: self.backend,
            key: self.key,
            expected: shown(&self.expected),
            actual,
        })
    }
}

/// A stored checksum as an error shows it. It is text whoever could write the object
/// chose (its metadata, a local file's attributes), so it goes through the one escaper
/// ([`maskstore_core::shown`]: no terminal escapes, no forged lines) and a long one is cut
/// short (a real one is at most 51 characters). A well-formed checksum is shown as stored.
fn shown(stored: &str) -> String {
    maskstore_core::shown_cut(stored, 100)
}

impl Verifier {
    /// Whether the stored checksum is one of `algorithm` that this build computes: then a
    /// checksum of `algorithm` computed over the same bytes can be handed to
    /// [`Verifier::finish_with`] instead of hashing them a second time.
    pub(crate) fn is_of(&self, algorithm: ChecksumAlgorithm) -> bool {
        self.hasher.is_some()
            && self
                .expected
                .split_once(':')
                .and_then(|(name, _)| name.parse::<ChecksumAlgorithm>().ok())
                == Some(algorithm)
    }

    /// [`Verifier::finish`] for bytes whose checksum `actual` was computed as they were
    /// read (by the local provider, into the very buffer returned), not through `update`.
    pub(crate) fn finish_with(mut self, actual: String) -> Result<()> {
        if self.hasher.is_some() {
            self.hasher = None;
            if actual == self.expected {
                return Ok(());
            }
            return Err(Error::Corrupt {
                backend: self.backend,
                key: self.key,
                expected: shown(&self.expected),
                actual,
            });
        }
        self.finish()
    }
}

/// The most bytes a stream's verifier hashes before it lets the other tasks of its thread
/// run: 1 MiB, well under a millisecond with either algorithm.
pub(crate) const HASH_TURN: usize = 1024 * 1024;

/// Hashes `chunk` into `verifier` [`HASH_TURN`] bytes at a time, yielding between them:
/// the memory provider answers with one chunk the size of the object, whose hash alone held
/// a thread of the gateway's runtime for 0.4 s at 512 MiB (its other tasks waited).
async fn update_in_turns(verifier: &mut Verifier, chunk: &[u8]) {
    let mut turns = chunk.chunks(HASH_TURN).peekable();
    while let Some(turn) = turns.next() {
        verifier.update(turn);
        if turns.peek().is_some() {
            tokio::task::yield_now().await;
        }
    }
}

/// `stream`, checked against `verifier`: each chunk is held back until the next arrives,
/// so a stream of damaged bytes ends in [`Error::Corrupt`] instead of its last chunk.
pub(crate) fn verify_stream(
    stream: BoxStream<'static, Result<Bytes>>,
    verifier: Verifier,
) -> BoxStream<'static, Result<Bytes>> {
    struct State {
        inner: BoxStream<'static, Result<Bytes>>,
        verifier: Option<Verifier>,
        held: Option<Bytes>,
    }
    let state = State {
        inner: stream,
        verifier: Some(verifier),
        held: None,
    };
    futures::stream::unfold(state, |mut state| async move {
        let verifier = state.verifier.as_mut()?;
        loop {
            match state.inner.next().await {
                Some(Ok(chunk)) => {
                    update_in_turns(verifier, &chunk).await;
                    if let Some(previous) = state.held.replace(chunk) {
                        return Some((Ok(previous), state));
                    }
                }
                Some(Err(e)) => {
                    state.verifier = None;
                    return Some((Err(e), state));
                }
                None => {
                    let verifier = state.verifier.take()?;
                    return match verifier.finish() {
                        Ok(()) => {
                            let last = state.held.take()?;
                            Some((Ok(last), state))
                        }
                        Err(e) => Some((Err(e), state)),
                    };
                }
            }
        }
    })
    .boxed()
}

/// Where a streaming upload's whole-object checksum goes when it is known only at
/// completion: the local provider reads it from the multipart options' extensions and
/// stores it with the attributes as it commits the file.
#[derive(Debug, Clone, Default)]
pub(crate) struct LateChecksum(Arc<Mutex<LateState>>);

#[derive(Debug, Default)]
struct LateState {
    value: Option<String>,
    stored: bool,
}

impl LateChecksum {
    pub(crate) fn set(&self, value: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).value = Some(value);
    }

    /// The value to store, taken by the provider that stores it.
    pub(crate) fn take(&self) -> Option<String> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let value = state.value.take();
        state.stored |= value.is_some();
        value
    }

    /// Whether a provider stored the value.
    pub(crate) fn stored(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).stored
    }
}

/// Asks a provider that writes the payload itself (local) to hash each slice right after
/// writing it, while it is still in the cache, and store the checksum with the attributes
/// it writes: one pass over the bytes instead of two. The provider marks `done` stored;
/// one that ignores the request leaves it unmarked and the caller stores it another way.
#[derive(Debug, Clone)]
pub(crate) struct HashOnWrite {
    pub(crate) algorithm: ChecksumAlgorithm,
    pub(crate) done: LateChecksum,
}

/// Bytes written and hashed per step of a [`HashOnWrite`] put.
pub(crate) const HASH_ON_WRITE_SLICE: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    /// One chunk of several [`HASH_TURN`]s (as the memory provider answers) is hashed a
    /// turn at a time: the stream is pending between turns, its thread free for others,
    /// and its bytes still verified.
    #[tokio::test]
    async fn a_large_chunk_is_hashed_in_turns() {
        use futures::StreamExt;
        let data = Bytes::from(vec![7u8; 3 * HASH_TURN + 5]);
        let sum = checksum_of(ChecksumAlgorithm::Crc64Nvme, &data).unwrap();
        let read = |data: Bytes, sum: &str| {
            let verifier = Verifier::new("memory", "mask/a", Some(sum)).unwrap();
            let chunk = futures::stream::once(async move { Ok(data) }).boxed();
            verify_stream(chunk, verifier)
        };
        let mut stream = read(data.clone(), &sum);
        let mut pending = 0;
        let first = loop {
            match futures::poll!(stream.next()) {
                std::task::Poll::Ready(item) => break item,
                std::task::Poll::Pending => {
                    pending += 1;
                    tokio::task::yield_now().await;
                }
            }
        };
        assert_eq!(first.unwrap().unwrap(), data);
        assert!(stream.next().await.is_none());
        assert_eq!(pending, 3, "one turn given up between each two of four");
        // Damaged bytes still fail, whole.
        let wrong = checksum_of(ChecksumAlgorithm::Crc64Nvme, b"other").unwrap();
        let mut stream = read(data, &wrong);
        assert!(matches!(
            stream.next().await,
            Some(Err(Error::Corrupt { .. }))
        ));
    }

    #[test]
    fn encodings_match_s3s() {
        // S3's documented examples: sha256 and crc64nvme of "hello world" would be checked
        // against values computed independently here.
        assert_eq!(
            checksum_of(ChecksumAlgorithm::Sha256, b"").unwrap(),
            "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        // CRC-64/NVME check value of "123456789" is 0xAE8B14860A799888.
        assert_eq!(
            checksum_of(ChecksumAlgorithm::Crc64Nvme, b"123456789").unwrap(),
            format!(
                "crc64nvme:{}",
                STANDARD.encode(0xAE8B_1486_0A79_9888u64.to_be_bytes())
            )
        );
        assert_eq!(checksum_of(ChecksumAlgorithm::None, b"x"), None);
    }

    #[test]
    fn every_algorithm_is_stored_as_its_name_and_the_base64_of_its_digest() {
        // Check values of "123456789" (CRC catalogue) and the digests of "" (RFC 1321,
        // FIPS 180), in the form the providers' headers carry.
        let b64 = |digest: &[u8]| STANDARD.encode(digest);
        let hex = |text: &str| {
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>()
        };
        let cases = [
            (
                "crc32:x",
                &b"123456789"[..],
                b64(&0xCBF4_3926u32.to_be_bytes()),
            ),
            ("crc32c:x", b"123456789", b64(&0xE306_9283u32.to_be_bytes())),
            (
                "crc64nvme:x",
                b"123456789",
                b64(&0xAE8B_1486_0A79_9888u64.to_be_bytes()),
            ),
            ("md5:x", b"", b64(&hex("d41d8cd98f00b204e9800998ecf8427e"))),
            (
                "sha1:x",
                b"",
                b64(&hex("da39a3ee5e6b4b0d3255bfef95601890afd80709")),
            ),
            (
                "sha256:x",
                b"",
                b64(&hex(
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                )),
            ),
        ];
        for (stored, data, digest) in cases {
            let mut hasher = Hasher::for_native(stored).unwrap();
            hasher.update(data);
            let name = stored.split_once(':').unwrap().0;
            assert_eq!(hasher.finish(), format!("{name}:{digest}"), "{stored}");
        }
    }

    async fn collect(stream: BoxStream<'static, Result<Bytes>>) -> Vec<Result<Bytes>> {
        stream.collect().await
    }

    fn chunks(parts: &[&'static [u8]]) -> BoxStream<'static, Result<Bytes>> {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
        .boxed()
    }

    #[tokio::test]
    async fn a_stream_of_good_bytes_yields_them_all() {
        let stored = checksum_of(ChecksumAlgorithm::Crc64Nvme, b"abcdef").unwrap();
        let verifier = Verifier::new("memory", "mask/k", Some(&stored)).unwrap();
        let out = collect(verify_stream(chunks(&[b"ab", b"cd", b"ef"]), verifier)).await;
        let bytes: Vec<u8> = out.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
        assert_eq!(bytes, b"abcdef");
    }

    #[tokio::test]
    async fn a_stream_of_damaged_bytes_ends_in_the_corruption_error_instead_of_its_last_chunk() {
        let stored = checksum_of(ChecksumAlgorithm::Sha256, b"abcdef").unwrap();
        let verifier = Verifier::new("memory", "mask/k", Some(&stored)).unwrap();
        let out = collect(verify_stream(chunks(&[b"ab", b"cd", b"eF"]), verifier)).await;
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].as_ref().unwrap().as_ref(), b"ab");
        assert_eq!(out[1].as_ref().unwrap().as_ref(), b"cd");
        match &out[2] {
            Err(Error::Corrupt { key, expected, .. }) => {
                assert_eq!(key, "mask/k");
                assert_eq!(expected, &stored);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn a_bound_sha256_reads_as_hex_or_base64_and_anything_else_is_refused_with_the_fix() {
        let digest = ContentSha256::of(b"");
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(digest.hex(), hex);
        assert_eq!(ContentSha256::parse(hex).unwrap(), digest);
        assert_eq!(ContentSha256::parse(&hex.to_uppercase()).unwrap(), digest);
        assert_eq!(ContentSha256::parse(&digest.base64()).unwrap(), digest);
        assert_eq!(
            digest.stored(),
            checksum_of(ChecksumAlgorithm::Sha256, b"").unwrap()
        );
        let mut hasher = Sha256Hasher::default();
        hasher.update(b"");
        assert_eq!(hasher.finish(), digest);
        for bad in [
            "",
            "abc",
            &hex[..63],
            &format!("{}g", &hex[..63]),
            "AAAA",
            &STANDARD.encode([0u8; 31]),
            "not base64 at all!!",
        ] {
            match ContentSha256::parse(bad) {
                Err(Error::InvalidMetadata { name, reason }) => {
                    assert_eq!(name, "sha256");
                    assert!(reason.contains("64 hex digits"), "{reason}");
                }
                other => panic!("{bad:?}: expected InvalidMetadata, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_hostile_stored_value_is_shown_escaped_and_cut_short() {
        let good = checksum_of(ChecksumAlgorithm::Sha256, b"x").unwrap();
        assert_eq!(shown(&good), good);
        assert_eq!(
            shown("md5:a\u{1b}[2J\nb\u{202e}"),
            "md5:a\\u{1b}[2J\\nb\\u{202e}"
        );
        let long = format!("sha256:{}", "A".repeat(5000));
        let cut = shown(&long);
        assert!(
            cut.len() < 130 && cut.ends_with("(5007 bytes in all)"),
            "{cut}"
        );
        let verifier = Verifier::new("local", "mask/k", Some(&long)).unwrap();
        match verifier.finish_with(good) {
            Err(Error::Corrupt { expected, .. }) => assert_eq!(expected, cut),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn the_providers_checksums_are_computed_in_their_documented_encodings() {
        // "hello world" as boto3, SeaweedFS, moto, fake-gcs-server and Azurite reported it.
        let cases = [
            ("crc32:DUoRhQ==", true),
            ("crc32c:yZRlqg==", true),
            ("crc64nvme:jSnVw/bqjr4=", true),
            ("sha1:Kq5sNclPz7QV2+lfQIuc6R7oRu0=", true),
            ("sha256:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=", true),
            ("md5:XrY7u+Ae7tCTyyK7j1rNww==", true),
            ("md5:xT8hOavzQS37ZfufYrGL+Q==", false),
        ];
        for (stored, matches) in cases {
            let mut verifier = Verifier::native("s3", "mask/k", stored);
            verifier.update(b"hello ");
            verifier.update(b"world");
            assert_eq!(verifier.finish().is_ok(), matches, "{stored}");
        }
        assert_eq!(
            native_value("crc32", "DUoRhQ==", 4).as_deref(),
            Some("crc32:DUoRhQ==")
        );
        assert_eq!(native_value("crc32", "DUoRhQ==", 8), None);
        assert_eq!(native_value("md5", "not base64!", 16), None);
    }

    #[test]
    fn an_object_verifies_with_its_own_checksum_else_the_providers_full_object_one() {
        let key: maskstore_core::ObjectKey = "mask/k".parse().unwrap();
        let meta = object_store::ObjectMeta {
            location: object_store::path::Path::from("mask/k"),
            last_modified: chrono::Utc::now(),
            size: 11,
            e_tag: None,
            version: None,
        };
        let mut info = crate::types::info_of(
            key,
            &meta,
            &object_store::Attributes::new(),
            crate::types::Source::Read,
        );
        assert_eq!(info.verifying_checksum(), None);
        info.native_checksum = Some(NativeChecksum {
            value: "crc32:1Vdryw==-2".into(),
            source: "x-amz-checksum-crc32".into(),
            composite: true,
        });
        // A composite checksum verifies nothing, and is no mismatch either.
        assert_eq!(info.verifying_checksum(), None);
        assert_eq!(info.checked_by(), None);
        assert!(Verifier::of("s3", &info).unwrap().is_none());
        info.native_checksum = Some(NativeChecksum::full(
            "crc32:DUoRhQ==".into(),
            "x-amz-checksum-crc32",
        ));
        assert_eq!(info.verifying_checksum(), Some("crc32:DUoRhQ=="));
        assert_eq!(info.checked_by(), Some("x-amz-checksum-crc32"));
        info.checksum = checksum_of(ChecksumAlgorithm::Crc64Nvme, b"hello world");
        assert_eq!(info.verifying_checksum(), info.checksum.as_deref());
        assert_eq!(info.checked_by(), Some(CHECKSUM_METADATA));
        // A record that exists but cannot be read is corrupt at once.
        info.unreadable_checksum = Some("its record does not parse".into());
        match Verifier::of("local", &info) {
            Err(Error::Corrupt { expected, .. }) => {
                assert!(expected.contains("does not parse"), "{expected}")
            }
            other => panic!("expected Corrupt, got {:?}", other.map(|v| v.is_some())),
        }
    }

    #[test]
    fn a_stored_value_naming_no_known_algorithm_is_reported_not_accepted() {
        // A provider's algorithm in maskstore's own record was not written by maskstore.
        let md5_of_data = "md5:jXd/OF09/siBXSD3SWAm3A==";
        for stored in [
            "md5:abc",
            md5_of_data,
            "crc32:x",
            "garbage",
            "none:x",
            "sha256:",
        ] {
            let mut verifier = Verifier::new("memory", "mask/k", Some(stored)).unwrap();
            verifier.update(b"data");
            assert!(
                matches!(verifier.finish(), Err(Error::Corrupt { .. })),
                "{stored}"
            );
        }
    }
}
