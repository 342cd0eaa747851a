//! `maskstore check --cors ORIGIN`: a CORS preflight like a browser's before an upload.

use maskstore::{Config, Provider};

use super::output::Failure;

/// The answer to a preflight.
pub(crate) struct Verdict {
    /// Whether a browser would go on with the upload.
    pub allowed: bool,
    /// Why, in a sentence.
    pub detail: String,
}

/// Where the browser would send its upload: the bucket (S3) or the gateway (local, memory).
fn probe_url(config: &Config) -> String {
    let os = &config.object_storage;
    let key = format!("{}maskstore-check/cors-probe", os.prefix);
    match os.provider {
        Provider::S3 => {
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
        Provider::Local | Provider::Memory => {
            format!(
                "{}/o/{key}",
                config.gateway.public_url.trim_end_matches('/')
            )
        }
    }
}

pub(crate) async fn preflight(config: &Config, origin: &str) -> Result<Verdict, Failure> {
    let url = probe_url(config);
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
                match config.object_storage.provider {
                    Provider::S3 => "check object_storage.endpoint and the network",
                    _ =>
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
