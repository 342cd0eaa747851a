//! Performs a history's operations on a `Storage` and holds every answer to the model.

use futures::TryStreamExt;
use maskstore_backends::{
    ByteRange, Error, Object, ObjectInfo, ReadOptions, SignOptions, SignedMethod, Storage,
    UploadShape, WriteMode, WriteOptions,
};
use maskstore_core::ObjectKey;

use super::etags::Etags;
use super::known::{Hits, Known};
use super::op::{Body, EtagRef, Mode, Op, RangeSpec, ReadCond};
use super::state::{DEFAULT_TYPE, Expected, META_NAME, Model, SIGNED_TYPE, Version};

/// A divergence: what the backend answered against what the model says, in words.
pub type Divergence = String;

/// Runs one history on one storage (scoped to the history's own prefix).
pub struct Runner {
    pub(super) storage: Storage,
    pub(super) model: Model,
    pub(super) etags: Etags,
    http: reqwest::Client,
    part_size: usize,
    known: Vec<Known>,
    pub(super) hits: Hits,
}

impl Runner {
    /// A runner over `storage`, whose streaming uploads ask for parts of `part_size`.
    /// Answers matching one of the documented engine departures `known` are counted
    /// ([`Runner::hits`]), not failed.
    pub fn new(storage: Storage, part_size: usize, known: &[Known]) -> Runner {
        Runner {
            storage,
            model: Model::new(),
            etags: Etags::default(),
            http: reqwest::Client::new(),
            part_size,
            known: known.to_vec(),
            hits: Hits::default(),
        }
    }

    /// The documented engine departures met so far.
    pub fn hits(&self) -> &Hits {
        &self.hits
    }

    /// Records the etag a write reported for `version`.
    pub(super) fn observe_written(
        &mut self,
        key: &str,
        version: &Version,
        etag: &str,
    ) -> Result<(), Divergence> {
        self.etags.observe(key, version, etag)
    }

    fn excused(&mut self, known: Known) -> bool {
        let declared = self.known.contains(&known);
        if declared {
            *self.hits.0.entry(known).or_default() += 1;
        }
        declared
    }

    /// The model as the history has left it.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Performs `op` and compares the answer with the model.
    pub async fn run(&mut self, op: &Op) -> Result<(), Divergence> {
        let op = self.effective(op);
        match &op {
            Op::Together(ops) => super::together::run(self, ops).await,
            Op::Put { .. } => self.put(&op).await,
            Op::Get { key, range, cond } => self.get(&op, key, range.as_ref(), *cond).await,
            Op::Head { key } => {
                let got = self.storage.head(&self.key(key)?).await;
                match self.model.step(&op) {
                    Expected::Info(v) => {
                        let info =
                            got.map_err(|e| format!("expected write #{}, got {e}", v.write))?;
                        self.check_info(key, &info, &v, true)
                    }
                    expected => same_error(&expected, got.map(drop)),
                }
            }
            Op::Delete { key } => {
                let got = self.storage.delete(&self.key(key)?).await;
                done(self.model.step(&op), got)
            }
            Op::DeleteMany { keys } => {
                let keys = keys
                    .iter()
                    .map(|k| self.key(k))
                    .collect::<Result<Vec<_>, _>>()?;
                let got = self.storage.delete_many(&keys).await;
                done(self.model.step(&op), got)
            }
            Op::List { folder } => self.list(&op, folder.as_deref()).await,
            Op::ListLevel { folder } => self.level(&op, folder.as_deref()).await,
            Op::Copy {
                from,
                to,
                if_absent,
            }
            | Op::Rename {
                from,
                to,
                if_absent,
            } => {
                let rename = matches!(op, Op::Rename { .. });
                self.copy(&op, from, to, *if_absent, rename).await
            }
            Op::Upload {
                key,
                body,
                content_type,
                abort,
            } => {
                self.upload(&op, key, *body, content_type.as_deref(), *abort)
                    .await
            }
            Op::SignedGet { key } => self.signed_get(&op, key).await,
            Op::SignedPut { key, body } => self.signed_put(&op, key, *body).await,
        }
    }

    /// `op` with every fresh etag reference whose etag is not known turned bogus, so
    /// that the model and the request agree on what is sent.
    fn effective(&self, op: &Op) -> Op {
        let fix = |key: &str, r: EtagRef| {
            let known = self.etags.names_current(key, self.model.get(key), r);
            if r == EtagRef::Fresh && !known {
                EtagRef::Bogus
            } else {
                r
            }
        };
        let mut op = op.clone();
        match &mut op {
            Op::Put {
                key,
                mode: Mode::IfMatch(r),
                ..
            } => *r = fix(key, *r),
            Op::Get {
                key,
                cond: Some(ReadCond::IfMatch(r) | ReadCond::IfNoneMatch(r)),
                ..
            } => *r = fix(key, *r),
            _ => {}
        }
        op
    }

    pub(super) fn key(&self, relative: &str) -> Result<ObjectKey, Divergence> {
        self.storage
            .key(relative)
            .map_err(|e| format!("the key {relative:?} was refused: {e}"))
    }

    fn relative(&self, key: &ObjectKey) -> String {
        let prefix = self.storage.prefix().as_str();
        key.as_str()
            .strip_prefix(prefix)
            .unwrap_or(key.as_str())
            .to_string()
    }

    async fn put(&mut self, op: &Op) -> Result<(), Divergence> {
        let Op::Put {
            key,
            body,
            content_type,
            meta,
            mode,
        } = op
        else {
            unreachable!("put")
        };
        let mode = match mode {
            Mode::Overwrite => WriteMode::Overwrite,
            Mode::CreateOnly => WriteMode::CreateOnly,
            Mode::IfMatch(r) => {
                WriteMode::IfMatch(self.etags.resolve(key, self.model.get(key), *r))
            }
        };
        let mut options = WriteOptions {
            content_type: content_type.clone(),
            mode,
            ..Default::default()
        };
        if let Some(value) = meta {
            options = options.with_metadata(META_NAME, value.clone());
        }
        let got = self
            .storage
            .put_with(&self.key(key)?, body.bytes(), &options)
            .await;
        match self.model.step(op) {
            Expected::Done => {
                let outcome = got.map_err(|e| format!("expected success, got {e}"))?;
                let version = self.current(key)?;
                match outcome.etag {
                    Some(etag) => self.observe_written(key, &version, &etag)?,
                    None => return Err("a put returned no etag".to_string()),
                }
                self.learn(key).await
            }
            expected => same_error(&expected, got.map(drop)),
        }
    }

    pub(super) fn current(&self, key: &str) -> Result<Version, Divergence> {
        self.model
            .get(key)
            .cloned()
            .ok_or_else(|| format!("the model lost {key:?}"))
    }

    /// Heads `key` after a write and checks it against the model, binding its etag.
    pub(super) async fn learn(&mut self, key: &str) -> Result<(), Divergence> {
        let version = self.current(key)?;
        let info = self
            .storage
            .head(&self.key(key)?)
            .await
            .map_err(|e| format!("head after the write: {e}"))?;
        self.check_info(key, &info, &version, true)
    }

    async fn get(
        &mut self,
        op: &Op,
        key: &str,
        range: Option<&RangeSpec>,
        cond: Option<ReadCond>,
    ) -> Result<(), Divergence> {
        let current = self.model.get(key).cloned();
        let size = current.as_ref().map_or(0, |v| u64::from(v.body.len));
        let mut options = ReadOptions {
            range: range.map(|r| concrete(r, size)),
            ..Default::default()
        };
        match cond {
            Some(ReadCond::IfMatch(r)) => {
                options.if_match = Some(self.etags.resolve(key, current.as_ref(), r))
            }
            Some(ReadCond::IfNoneMatch(r)) => {
                options.if_none_match = Some(self.etags.resolve(key, current.as_ref(), r))
            }
            None => {}
        }
        let got = self.storage.read(&self.key(key)?, options).await;
        let expected = self.model.step(op);
        match expected {
            Expected::Read(v, wanted) => self.check_read(key, got, &v, wanted, range.is_none()),
            expected => same_error(&expected, got.map(drop)),
        }
    }

    pub(super) fn check_read(
        &mut self,
        key: &str,
        got: maskstore_backends::Result<Object>,
        version: &Version,
        wanted: std::ops::Range<u64>,
        whole: bool,
    ) -> Result<(), Divergence> {
        let object =
            got.map_err(|e| format!("expected {wanted:?} of write #{}, got {e}", version.write))?;
        let bytes = version.body.bytes();
        let expected = &bytes[wanted.start as usize..wanted.end as usize];
        if object.range != wanted || object.data.as_ref() != expected {
            return Err(format!(
                "read {:?} ({} bytes) where the model holds {wanted:?} ({} bytes) of write #{} ({:?})",
                object.range,
                object.data.len(),
                expected.len(),
                version.write,
                version.body
            ));
        }
        self.check_info(key, &object.info, version, whole)
    }

    /// Size, content type, metadata, checksum and etag against the version.
    pub(super) fn check_info(
        &mut self,
        key: &str,
        info: &ObjectInfo,
        version: &Version,
        whole: bool,
    ) -> Result<(), Divergence> {
        let size = u64::from(version.body.len);
        let shown = |what: &str, got: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
            format!(
                "{key:?} write #{}: {what} is {got:?}, the model says {want:?}",
                version.write
            )
        };
        if info.size != size {
            return Err(shown("size", &info.size, &size));
        }
        if !self.type_matches(key, version, info.content_type.as_deref()) {
            return Err(shown(
                "content type",
                &info.content_type,
                &version.content_type,
            ));
        }
        if info.metadata != version.metadata {
            return Err(shown("metadata", &info.metadata, &version.metadata));
        }
        let checksum = maskstore_backends::checksum_of(
            self.storage.checksum_algorithm(),
            &version.body.bytes(),
        );
        // Absent is allowed only where the model does not require it; wrong never is.
        let may_lack = !(version.checksummed && whole) && info.checksum.is_none();
        if info.checksum != checksum && !may_lack {
            return Err(shown("checksum", &info.checksum, &checksum));
        }
        match &info.etag {
            Some(etag) => self.etags.observe(key, version, etag),
            None => Err(shown("etag", &info.etag, &"an etag")),
        }
    }

    /// Whether `got` is the content type `version`, read at `key`, has: the one it was
    /// written with, or (an engine departure this run declares) the type an extension of
    /// one of the keys its untyped bytes were written or copied under names.
    fn type_matches(&mut self, key: &str, version: &Version, got: Option<&str>) -> bool {
        if got == Some(version.content_type.as_str()) {
            return true;
        }
        let by_extension =
            |key: &str| maskstore_core::MaskFormat::for_key(key).map(|f| f.content_type());
        version.content_type == DEFAULT_TYPE
            && got.is_some()
            && (got == by_extension(key) || version.keys.iter().any(|k| got == by_extension(k)))
            && self.excused(Known::SeaweedfsOctetStreamByExtension)
    }

    async fn list(&mut self, op: &Op, folder: Option<&str>) -> Result<(), Divergence> {
        let prefix = self.folder(folder);
        let got: maskstore_backends::Result<Vec<ObjectInfo>> =
            match self.storage.list(Some(&prefix)) {
                Ok(stream) => stream.try_collect().await,
                Err(e) => Err(e),
            };
        let Expected::Keys(want) = self.model.step(op) else {
            unreachable!("list")
        };
        let got = got.map_err(|e| format!("list {prefix:?}: {e}"))?;
        let mut got: Vec<(String, u64)> = got
            .iter()
            .map(|i| (self.relative(&i.key), i.size))
            .collect();
        got.sort();
        if got != want {
            return Err(format!(
                "list {folder:?} gave {got:?}, the model holds {want:?}"
            ));
        }
        Ok(())
    }

    async fn level(&mut self, op: &Op, folder: Option<&str>) -> Result<(), Divergence> {
        let prefix = self.folder(folder);
        let got = self.storage.list_with_delimiter(Some(&prefix)).await;
        let Expected::Level(objects, folders) = self.model.step(op) else {
            unreachable!("level")
        };
        let got = got.map_err(|e| format!("list_with_delimiter {prefix:?}: {e}"))?;
        let got_objects: Vec<(String, u64)> = got
            .objects
            .iter()
            .map(|i| (self.relative(&i.key), i.size))
            .collect();
        let base = self.storage.prefix().as_str();
        let got_folders: Vec<String> = got
            .prefixes
            .iter()
            .map(|p| p.strip_prefix(base).unwrap_or(p).to_string())
            .collect();
        if got_objects != objects || got_folders != folders {
            return Err(format!(
                "list_with_delimiter {folder:?} gave {got_objects:?} and folders \
                 {got_folders:?}, the model holds {objects:?} and {folders:?}"
            ));
        }
        Ok(())
    }

    fn folder(&self, folder: Option<&str>) -> String {
        let base = self.storage.prefix().as_str();
        match folder {
            Some(f) => format!("{base}{f}/"),
            None => base.to_string(),
        }
    }

    async fn copy(
        &mut self,
        op: &Op,
        from: &str,
        to: &str,
        if_absent: bool,
        rename: bool,
    ) -> Result<(), Divergence> {
        let (src, dst) = (self.key(from)?, self.key(to)?);
        let got = match (rename, if_absent) {
            (false, false) => self.storage.copy(&src, &dst).await,
            (false, true) => self.storage.copy_if_absent(&src, &dst).await,
            (true, false) => self.storage.rename(&src, &dst).await,
            (true, true) => self.storage.rename_if_absent(&src, &dst).await,
        };
        match self.model.step(op) {
            Expected::Done => {
                got.map_err(|e| format!("expected success, got {e}"))?;
                self.learn(to).await?;
                if rename && from != to {
                    let gone = self.storage.exists(&src).await.map_err(|e| e.to_string())?;
                    if gone {
                        return Err(format!("{from:?} still exists after its rename"));
                    }
                }
                Ok(())
            }
            expected => same_error(&expected, got),
        }
    }

    async fn upload(
        &mut self,
        op: &Op,
        key: &str,
        body: Body,
        content_type: Option<&str>,
        abort: bool,
    ) -> Result<(), Divergence> {
        let k = self.key(key)?;
        let options = WriteOptions {
            content_type: content_type.map(str::to_string),
            upload: UploadShape {
                part_size: Some(self.part_size),
                max_in_flight: None,
            },
            ..Default::default()
        };
        let mut upload = self
            .storage
            .upload(&k, &options)
            .await
            .map_err(|e| format!("upload: {e}"))?;
        let bytes = bytes::Bytes::from(body.bytes());
        // Chunks that do not divide the part size, so that parts are cut across writes.
        let chunk = (self.part_size / 3).max(1);
        for start in (0..bytes.len()).step_by(chunk) {
            let end = (start + chunk).min(bytes.len());
            upload
                .write(bytes.slice(start..end))
                .await
                .map_err(|e| format!("upload write: {e}"))?;
        }
        // Invisible until finished: the key still holds what it held.
        self.check_unchanged(key, "during an upload").await?;
        let Expected::Done = self.model.step(op) else {
            unreachable!("upload")
        };
        if abort {
            upload.abort().await.map_err(|e| format!("abort: {e}"))?;
            return self.check_unchanged(key, "after an aborted upload").await;
        }
        let outcome = upload.finish().await.map_err(|e| format!("finish: {e}"))?;
        if let Some(etag) = outcome.etag {
            let version = self.current(key)?;
            self.observe_written(key, &version, &etag)?;
        }
        self.learn(key).await
    }

    /// Heads `key` and checks it is what the model holds (maybe nothing).
    async fn check_unchanged(&mut self, key: &str, when: &str) -> Result<(), Divergence> {
        let got = self.storage.head(&self.key(key)?).await;
        match (self.model.get(key).cloned(), got) {
            (Some(v), Ok(info)) => self.check_info(key, &info, &v, true),
            (None, Err(Error::NotFound { .. })) => Ok(()),
            (want, got) => Err(format!(
                "{when}, {key:?} is {:?}, the model holds write {:?}",
                got.map(|i| i.size),
                want.map(|v| v.write)
            )),
        }
    }

    async fn signed_get(&mut self, op: &Op, key: &str) -> Result<(), Divergence> {
        let url = self
            .storage
            .signed_url(
                SignedMethod::Get,
                &self.key(key)?,
                None,
                &SignOptions::default(),
            )
            .await
            .map_err(|e| format!("sign get: {e}"))?;
        let response = self
            .http
            .get(&url.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let data = response.bytes().await.map_err(|e| e.to_string())?;
        match self.model.step(op) {
            Expected::Fetched(None) if status == 404 => Ok(()),
            Expected::Fetched(Some(v))
                if status == 200
                    && data.as_ref() == v.body.bytes().as_slice()
                    && self.type_matches(key, &v, content_type.as_deref()) =>
            {
                Ok(())
            }
            expected => Err(format!(
                "signed GET answered {status}, {} bytes, type {content_type:?}; the model \
                 says {expected:?}",
                data.len()
            )),
        }
    }

    async fn signed_put(&mut self, op: &Op, key: &str, body: Body) -> Result<(), Divergence> {
        let options = SignOptions {
            content_type: self
                .storage
                .capabilities()
                .binds_upload_headers
                .then(|| SIGNED_TYPE.to_string()),
            ..Default::default()
        };
        let url = self
            .storage
            .signed_url(SignedMethod::Put, &self.key(key)?, None, &options)
            .await
            .map_err(|e| format!("sign put: {e}"))?;
        let mut request = self
            .http
            .put(&url.url)
            .header("content-type", SIGNED_TYPE)
            // HTTP clients omit `Content-Length: 0` on an empty PUT; Azure requires it.
            .header("content-length", body.len.to_string())
            .body(body.bytes());
        for (name, value) in &url.headers {
            if !name.eq_ignore_ascii_case("content-type") {
                request = request.header(name, value);
            }
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let Expected::Done = self.model.step(op) else {
            unreachable!("signed put")
        };
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let text = maskstore_core::shown_cut(&text, 300);
            return Err(format!("signed PUT answered {status}: {text}"));
        }
        self.learn(key).await
    }

    /// Deletes everything below the history's prefix.
    pub async fn clean(&self) -> Result<(), String> {
        let keys: Vec<ObjectKey> = self
            .storage
            .list(None)
            .map_err(|e| e.to_string())?
            .map_ok(|info| info.key)
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        for chunk in keys.chunks(500) {
            self.storage
                .delete_many(chunk)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// The range sent for `spec` on an object of `size` bytes.
fn concrete(spec: &RangeSpec, size: u64) -> ByteRange {
    match *spec {
        RangeSpec::Bounded { start, end } => ByteRange::Bounded(start.at(size)..end.at(size)),
        RangeSpec::From(pos) => ByteRange::From(pos.at(size)),
        RangeSpec::Suffix(n) => ByteRange::Suffix(u64::from(n)),
    }
}

fn done(expected: Expected, got: maskstore_backends::Result<()>) -> Result<(), Divergence> {
    match expected {
        Expected::Done => got.map_err(|e| format!("expected success, got {e}")),
        expected => same_error(&expected, got),
    }
}

/// The answer must be the error the model names.
pub(super) fn same_error(
    expected: &Expected,
    got: maskstore_backends::Result<()>,
) -> Result<(), Divergence> {
    match (expected, got) {
        (Expected::Error(name), Err(e)) if error_name(&e) == *name => Ok(()),
        (expected, Ok(())) => Err(format!("expected {expected:?}, got success")),
        (expected, Err(e)) => Err(format!(
            "expected {expected:?}, got {} ({e})",
            error_name(&e)
        )),
    }
}

/// The variant's name, for the errors the contract names.
pub(super) fn error_name(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "NotFound",
        Error::AlreadyExists { .. } => "AlreadyExists",
        Error::Precondition { .. } => "Precondition",
        Error::NotModified { .. } => "NotModified",
        Error::InvalidRange { .. } => "InvalidRange",
        _ => "another error",
    }
}
