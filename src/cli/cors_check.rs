//! `maskstore check --cors ORIGIN`: a CORS preflight like a browser's before an upload.

use maskstore::{Config, SignOptions, SignedMethod, Storage, UrlIssuer};

use super::output::Failure;

/// The answer to a preflight.
pub(crate) struct Verdict {
    /// Whether a browser would go on with the upload.
    pub allowed: bool,
    /// Why, in a sentence.
    pub detail: String,
}

/// Where a browser would send an upload: the object URL of a signed PUT, without its
/// signature (the bucket's own address on S3, the gateway's for local and memory).
async fn probe_url(storage: &Storage) -> Result<String, Failure> {
    if storage.capabilities().signed_urls == UrlIssuer::None {
        return Err(Failure {
            message: "this storage issues no signed URLs, so browsers cannot upload to it"
                .to_string(),
            code: 2,
        });
    }
    let key = storage.key("maskstore-check/cors-probe")?;
    let signed = storage
        .signed_url(SignedMethod::Put, &key, None, &SignOptions::default())
        .await?;
    Ok(signed
        .url
        .split_once('?')
        .map_or(signed.url.as_str(), |(object, _)| object)
        .to_string())
}

pub(crate) async fn preflight(config: &Config, origin: &str) -> Result<Verdict, Failure> {
    let storage = Storage::connect(config)?;
    let issuer = storage.capabilities().signed_urls;
    let url = probe_url(&storage).await?;
    let response = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "PUT")
        .header("Access-Control-Request-Headers", "content-type")
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| Failure {
            message: format!(
                "cannot send the CORS preflight to {url}: {e}; {}",
                match issuer {
                    UrlIssuer::Backend => "check object_storage.endpoint and the network",
                    UrlIssuer::Gateway | UrlIssuer::None =>
                        "start the gateway with maskstore serve (gateway.public_url must reach it)",
                }
            ),
            code: 5,
        })?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let allow_origin = header("access-control-allow-origin");
    let allow_methods = header("access-control-allow-methods").unwrap_or_default();
    let status = response.status();
    let origin_ok = allow_origin
        .as_deref()
        .is_some_and(|o| o == origin || o == "*");
    let put_ok = allow_methods
        .split(',')
        .any(|m| m.trim().eq_ignore_ascii_case("PUT") || m.trim() == "*");
    let verdict = if !status.is_success() {
        Verdict {
            allowed: false,
            detail: format!(
                "the preflight to {url} was answered {status}; the bucket has no CORS rule for this origin"
            ),
        }
    } else if !origin_ok {
        Verdict {
            allowed: false,
            detail: format!(
                "{url} does not grant the origin (Access-Control-Allow-Origin: {}); add {origin} to the CORS AllowedOrigins (cors.allowed_origins)",
                allow_origin.as_deref().unwrap_or("none")
            ),
        }
    } else if !put_ok {
        Verdict {
            allowed: false,
            detail: format!(
                "{url} does not grant PUT (Access-Control-Allow-Methods: {allow_methods}); add PUT to cors.allowed_methods"
            ),
        }
    } else {
        Verdict {
            allowed: true,
            detail: format!("{url} grants PUT with Content-Type to {origin}"),
        }
    };
    Ok(verdict)
}
