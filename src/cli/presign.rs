//! `maskstore presign`: a signed URL for one object, or a browser form upload.

use maskstore::{
    Config, ContentSha256, ObjectKey, Sha256Hasher, SignOptions, SignedMethod, Storage,
};
use serde_json::json;

/// What `presign` issues: a URL for one method, or a form upload (`post`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// A signed URL.
    Url(SignedMethod),
    /// A browser form upload (a POST policy).
    Post,
}

impl std::str::FromStr for Grant {
    type Err = String;
    fn from_str(s: &str) -> Result<Grant, String> {
        if s.eq_ignore_ascii_case("post") {
            return Ok(Grant::Post);
        }
        s.parse().map(Grant::Url).map_err(|_| {
            format!(
                "{s:?} is not what presign issues; use get, put, head, delete, or post (a \
                 browser form upload)"
            )
        })
    }
}

use super::output::{Failure, print_json};

mod post;

/// The arguments of `maskstore presign`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// What the URL grants: get, put, head or delete; or post, a browser form upload.
    method: Grant,
    /// The full object key (mask/…); post takes --prefix instead to let the form choose
    /// a key below it.
    #[arg(required_unless_present = "prefix")]
    key: Option<String>,
    /// post: any key below this prefix (the form's key is <PREFIX>${filename}).
    #[arg(long, value_name = "PREFIX", conflicts_with = "key")]
    prefix: Option<String>,
    /// post: the largest file in bytes the form may upload.
    #[arg(long, value_name = "BYTES")]
    max_size: Option<u64>,
    /// post: the smallest file in bytes the form may upload (default 0).
    #[arg(long, value_name = "BYTES")]
    min_size: Option<u64>,
    /// post: print a minimal HTML upload form instead.
    #[arg(long)]
    html: bool,
    /// Lifetime in seconds (default signed_url.default_ttl; at most signed_url.max_ttl).
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<u64>,
    /// PUT: the Content-Type the upload must carry; post: the same, or, ending in `/`
    /// (image/), the start of it.
    #[arg(long, value_name = "TYPE")]
    content_type: Option<String>,
    /// PUT: the exact size in bytes the upload must have.
    #[arg(long, value_name = "BYTES")]
    content_length: Option<u64>,
    /// PUT: the SHA-256 the body must have, as 64 hex digits or base64; an altered body is
    /// refused and nothing is stored.
    #[arg(long, value_name = "HEX|BASE64", conflicts_with = "sha256_of")]
    sha256: Option<String>,
    /// PUT: bind the SHA-256 of this file (the file to be uploaded).
    #[arg(long, value_name = "FILE")]
    sha256_of: Option<std::path::PathBuf>,
}

/// The SHA-256 the arguments bind, if any.
pub(super) fn bound_sha256(args: &Args) -> Result<Option<ContentSha256>, Failure> {
    if let Some(text) = &args.sha256 {
        return Ok(Some(ContentSha256::parse(text)?));
    }
    let Some(path) = &args.sha256_of else {
        return Ok(None);
    };
    let unreadable = |e: std::io::Error| Failure {
        message: format!("--sha256-of {}: cannot read it: {e}", path.display()),
        code: 2,
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let mut hasher = Sha256Hasher::default();
    let mut buffer = vec![0u8; 1 << 20];
    let mut read = 0u64;
    loop {
        let n = std::io::Read::read(&mut file, &mut buffer).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        read += n as u64;
    }
    // Both bound but of different sizes: no body could ever be stored through the URL.
    if let Some(length) = args.content_length
        && length != read
    {
        return Err(Failure {
            message: format!(
                "--content-length {length} but --sha256-of {} has {read} bytes: no upload \
                 could match both; give the file's size or leave --content-length out",
                path.display()
            ),
            code: 2,
        });
    }
    Ok(Some(hasher.finish()))
}

/// The storage to sign with, refused when its signatures would be valid nowhere.
pub(super) fn signing_storage(config: &Config) -> Result<Storage, Failure> {
    let storage = Storage::connect(config)?;
    if !storage.capabilities().urls_outlive_process {
        return Err(Failure {
            message: "provider memory signs with a per-process secret when none is configured, \
                      so a URL printed here would be valid nowhere; set \
                      APP_GATEWAY__SIGNING_SECRET for both presign and serve"
                .to_string(),
            code: 2,
        });
    }
    Ok(storage)
}

pub(crate) async fn run(config: &Config, args: &Args, as_json: bool) -> Result<(), Failure> {
    let method = match args.method {
        Grant::Url(method) => method,
        Grant::Post => return post::run(config, args, as_json).await,
    };
    let usage = |message: &str| Failure {
        message: message.to_string(),
        code: 2,
    };
    if args.prefix.is_some() || args.max_size.is_some() || args.min_size.is_some() || args.html {
        return Err(usage(
            "--prefix, --max-size, --min-size and --html are for presign post (a form upload)",
        ));
    }
    let key = args
        .key
        .clone()
        .ok_or_else(|| usage("give the key to sign"))?;
    let key = ObjectKey::parse(key).map_err(|e| Failure::from(maskstore::Error::from(e)))?;
    let sha256 = bound_sha256(args)?;
    let storage = signing_storage(config)?;
    let options = SignOptions {
        content_type: args.content_type.clone(),
        content_length: args.content_length,
        sha256,
    };
    let signed = storage.signed_url(method, &key, args.ttl, &options).await?;
    let seconds = (signed.expires_at - chrono::Utc::now())
        .num_seconds()
        .max(0);
    if as_json {
        print_json(&json!({
            "url": signed.url,
            "method": signed.method.as_str(),
            "expires_at": signed.expires_at.to_rfc3339(),
            "headers": signed.headers.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        }));
    } else {
        println!("{}", signed.url);
        eprintln!(
            "expires {} (in {seconds} s)",
            signed.expires_at.to_rfc3339()
        );
        for (name, value) in &signed.headers {
            eprintln!("send header {name}: {value}");
        }
    }
    Ok(())
}
