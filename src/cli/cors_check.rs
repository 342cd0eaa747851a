//! `maskstore check --cors ORIGIN`: a CORS preflight like a browser's before an upload.

use maskstore::{Config, Storage, UrlIssuer};

use super::output::Failure;

/// The answer to a preflight.
pub(crate) struct Verdict {
    /// Whether a browser would go on with the upload.
    pub allowed: bool,
    /// Why, in a sentence.
    pub detail: String,
}

/// Where the browser would send its upload: the backend itself (S3) or the gateway.
fn probe_url(config: &Config, issuer: UrlIssuer) -> Result<String, Failure> {
    let os = &config.object_storage;
    let key = format!("{}maskstore-check/cors-probe", os.prefix);
    Ok(match issuer {
        UrlIssuer::Backend => {
            let bucket = os.bucket_name.as_deref().unwrap_or_default();
            let region = os.region.as_deref().unwrap_or("us-east-1");
            let base = os
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
            let base = base.trim_end_matches('/');
            if os.virtual_hosted_style {
                match base.split_once("://") {
                    Some((scheme, host)) => format!("{scheme}://{bucket}.{host}/{key}"),
                    None => format!("{base}/{bucket}/{key}"),
                }
            } else {
                format!("{base}/{bucket}/{key}")
            }
        }
        UrlIssuer::Gateway => {
            format!(
                "{}/o/{key}",
                config.gateway.public_url.trim_end_matches('/')
            )
        }
        UrlIssuer::None => {
            return Err(Failure {
                message: "this storage issues no signed URLs, so browsers cannot upload to it"
                    .to_string(),
                code: 2,
            });
        }
    })
}

pub(crate) async fn preflight(config: &Config, origin: &str) -> Result<Verdict, Failure> {
    let issuer = Storage::connect(config)?.capabilities().signed_urls;
    let url = probe_url(config, issuer)?;
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
