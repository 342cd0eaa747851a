//! `maskstore presign post`: a browser form upload to one key or below a prefix, printed
//! as the URL and the fields, as JSON, or as a minimal HTML form.

use maskstore::{ContentTypeRule, KeyPrefix, ObjectKey, PostOptions, PostTarget, SignedPost};
use serde_json::json;

use super::{Args, bound_sha256, signing_storage};
use crate::cli::output::{Failure, print_json};

/// The largest file a form takes when only --min-size is given: S3's limit for one POST
/// (5 GiB, "POST Object"), which the gateway's own `gateway.max_upload_bytes` caps further.
const DEFAULT_MAX_SIZE: u64 = 5 * 1024 * 1024 * 1024;

pub(super) async fn run(
    config: &maskstore::Config,
    args: &Args,
    as_json: bool,
) -> Result<(), Failure> {
    let usage = |message: String| Failure { message, code: 2 };
    if args.content_length.is_some() {
        return Err(usage(
            "--content-length binds a PUT; a form takes --max-size and --min-size".to_string(),
        ));
    }
    let target = target(args)?;
    let options = PostOptions {
        length: match (args.min_size, args.max_size) {
            (None, None) => None,
            (min, max) => Some(min.unwrap_or(0)..=max.unwrap_or(DEFAULT_MAX_SIZE)),
        },
        content_type: args.content_type.clone().map(|t| {
            if t.ends_with('/') {
                ContentTypeRule::Prefix(t)
            } else {
                ContentTypeRule::Exact(t)
            }
        }),
        sha256: bound_sha256(args)?,
    };
    let storage = signing_storage(config)?;
    let signed = storage.signed_post(&target, args.ttl, &options).await?;
    let wants_type = matches!(options.content_type, Some(ContentTypeRule::Prefix(_)));
    if args.html {
        print!(
            "{}",
            html_form(
                &signed,
                wants_type.then_some(args.content_type.as_deref()).flatten()
            )
        );
    } else if as_json {
        let fields: serde_json::Map<String, serde_json::Value> = signed
            .fields
            .iter()
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect();
        print_json(&json!({
            "url": signed.url,
            "fields": fields,
            "file_field": maskstore::maskstore_backends::signing::FILE_FIELD,
            "expires_at": signed.expires_at.to_rfc3339(),
        }));
    } else {
        println!("{}", signed.url);
        for (name, value) in &signed.fields {
            println!("{name}={value}");
        }
        eprintln!("expires {}", signed.expires_at.to_rfc3339());
        eprintln!("post these fields as multipart/form-data, then the file as the field \"file\"");
        if wants_type {
            eprintln!("add the field Content-Type, starting with the given prefix");
        }
    }
    Ok(())
}

/// The key or prefix the arguments name.
fn target(args: &Args) -> Result<PostTarget, Failure> {
    let invalid = |e: maskstore::maskstore_core::Error| Failure::from(maskstore::Error::from(e));
    match (&args.key, &args.prefix) {
        (Some(key), None) => Ok(PostTarget::Key(
            ObjectKey::parse(key.clone()).map_err(invalid)?,
        )),
        (None, Some(prefix)) => {
            let prefix = if prefix.ends_with('/') {
                prefix.clone()
            } else {
                format!("{prefix}/")
            };
            Ok(PostTarget::Prefix(
                KeyPrefix::parse(prefix).map_err(invalid)?,
            ))
        }
        _ => Err(Failure {
            message: "give the key, or --prefix PREFIX, of the form upload".to_string(),
            code: 2,
        }),
    }
}

/// A minimal page with the form: the fields hidden, a box for the content type when the
/// policy wants one starting with `type_prefix`, the file chooser last. Every value is
/// escaped for HTML.
fn html_form(signed: &SignedPost, type_prefix: Option<&str>) -> String {
    let mut page = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Upload a mask</title></head><body>\n",
    );
    page.push_str(&format!(
        "<form action=\"{}\" method=\"post\" enctype=\"multipart/form-data\">\n",
        escape(&signed.url)
    ));
    for (name, value) in &signed.fields {
        page.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            escape(name),
            escape(value)
        ));
    }
    if let Some(prefix) = type_prefix {
        page.push_str(&format!(
            "<label>Content type <input type=\"text\" name=\"Content-Type\" value=\"{}\"></label>\n",
            escape(prefix)
        ));
    }
    page.push_str("<input type=\"file\" name=\"file\">\n<input type=\"submit\" value=\"Upload\">\n</form>\n</body></html>\n");
    page
}

/// Text as an HTML attribute value or element text.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_html_form_escapes_every_value() {
        let signed = SignedPost {
            url: "http://h/o?a=1&b=\"2\"".to_string(),
            fields: vec![("key".to_string(), "mask/<script>'x'</script>".to_string())],
            expires_at: chrono::Utc::now(),
        };
        let page = html_form(&signed, Some("image/\"><b>"));
        assert!(
            page.contains("action=\"http://h/o?a=1&amp;b=&quot;2&quot;\""),
            "{page}"
        );
        assert!(
            page.contains("value=\"mask/&lt;script&gt;&#39;x&#39;&lt;/script&gt;\""),
            "{page}"
        );
        assert!(
            page.contains("value=\"image/&quot;&gt;&lt;b&gt;\""),
            "{page}"
        );
        assert!(
            !page.contains("<script>") && !page.contains("<b>"),
            "{page}"
        );
        let file = page.find("name=\"file\"").unwrap();
        assert!(
            page.find("name=\"key\"").unwrap() < file,
            "the file comes last"
        );
    }
}
