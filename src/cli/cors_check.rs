//! `maskstore check --cors ORIGIN`: a CORS preflight like a browser's before an upload.

use maskstore::maskstore_backends::advice;
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
    let status = response.status();
    let allow_origin = header("access-control-allow-origin");
    let allow_methods = header("access-control-allow-methods").unwrap_or_default();
    // Only the start of an error body is read: enough for its <Code>, never all of
    // whatever the endpoint sends.
    let mut body = Vec::new();
    if !status.is_success() {
        let mut response = response;
        while body.len() < ERROR_BODY_LIMIT
            && let Ok(Some(chunk)) = response.chunk().await
        {
            body.extend_from_slice(&chunk[..chunk.len().min(ERROR_BODY_LIMIT - body.len())]);
        }
    }
    let verdict = verdict(
        &url,
        origin,
        status.as_u16(),
        allow_origin.as_deref(),
        &allow_methods,
        &body,
        advice::cors_refused(config),
    );
    Ok(verdict)
}

/// Judges a preflight answer; `cors_refused` is the provider's cause and fix of a 403.
/// What it does not recognise it reports as seen (status and S3 error code), never with a
/// guessed cause.
fn verdict(
    url: &str,
    origin: &str,
    status: u16,
    allow_origin: Option<&str>,
    allow_methods: &str,
    body: &[u8],
    cors_refused: &str,
) -> Verdict {
    let refused = |detail: String| Verdict {
        allowed: false,
        detail,
    };
    if !(200..300).contains(&status) {
        let code = error_code(body)
            .map(|code| format!(" {code}"))
            .unwrap_or_default();
        return refused(match status {
            // S3, Azure and the gateway answer a preflight their CORS rules do not grant
            // with 403; each provider names its own rules and the command to apply them.
            403 => format!("the preflight to {url} was refused (403{code}): {cors_refused}"),
            501 => format!(
                "the preflight to {url} was answered 501{code}: the engine does not implement CORS, so browsers cannot upload to it directly; put a proxy that answers preflights in front of it, or use an engine that implements CORS"
            ),
            _ => format!(
                "the preflight to {url} was answered {status}{code}, which maskstore does not recognise as a CORS answer; see the engine's documentation on CORS preflights (OPTIONS)"
            ),
        });
    }
    let origin_ok = allow_origin.is_some_and(|o| o == origin || o == "*");
    let put_ok = allow_methods
        .split(',')
        .any(|m| m.trim().eq_ignore_ascii_case("PUT") || m.trim() == "*");
    if !origin_ok {
        refused(format!(
            "{url} does not grant the origin (Access-Control-Allow-Origin: {}); add {origin} to the CORS AllowedOrigins (cors.allowed_origins)",
            allow_origin.unwrap_or("none")
        ))
    } else if !put_ok {
        refused(format!(
            "{url} does not grant PUT (Access-Control-Allow-Methods: {allow_methods}); add PUT to cors.allowed_methods"
        ))
    } else {
        Verdict {
            allowed: true,
            detail: format!("{url} grants PUT with Content-Type to {origin}"),
        }
    }
}

/// How much of an error answer's body is read for its S3 error code.
const ERROR_BODY_LIMIT: usize = 8192;

/// The `<Code>` of an S3 error body, if it has a plausible one (letters and digits only,
/// so nothing else a server sends reaches the terminal).
fn error_code(body: &[u8]) -> Option<String> {
    // Lossy: the read may stop inside a character.
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_LIMIT)]);
    let start = text.find("<Code>")? + "<Code>".len();
    let code = &text[start..start + text[start..].find("</Code>")?];
    (!code.is_empty() && code.len() <= 64 && code.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| code.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://s3.example/bucket/mask/probe";
    const ORIGIN: &str = "https://app.example";
    const S3_REFUSED: &str = "the bucket's CORS rules do not grant PUT from this origin";

    #[test]
    fn a_501_says_the_engine_does_not_implement_cors() {
        let v = verdict(
            URL,
            ORIGIN,
            501,
            None,
            "",
            b"<Error><Code>NotImplemented</Code></Error>",
            S3_REFUSED,
        );
        assert!(!v.allowed);
        assert!(v.detail.contains("501 NotImplemented"), "{}", v.detail);
        assert!(v.detail.contains("does not implement CORS"), "{}", v.detail);
        assert!(!v.detail.contains("no CORS rule"), "{}", v.detail);
    }

    #[test]
    fn an_unrecognised_answer_is_reported_as_seen_without_a_cause() {
        let v = verdict(
            URL,
            ORIGIN,
            400,
            None,
            "",
            b"<Error><Code>WeirdThing</Code></Error>",
            S3_REFUSED,
        );
        assert!(!v.allowed);
        assert!(v.detail.contains("400 WeirdThing"), "{}", v.detail);
        assert!(v.detail.contains("does not recognise"), "{}", v.detail);
        assert!(!v.detail.contains("rule"), "{}", v.detail);
        // Without an error body: the status alone.
        let v = verdict(URL, ORIGIN, 405, None, "", b"", S3_REFUSED);
        assert!(v.detail.contains("answered 405,"), "{}", v.detail);
    }

    #[test]
    fn a_403_names_the_cors_rules() {
        let v = verdict(URL, ORIGIN, 403, None, "", b"<Error><Code>AccessForbidden</Code><Message>CORSResponse: This CORS request is not allowed.</Message></Error>", S3_REFUSED);
        assert!(!v.allowed);
        assert!(v.detail.contains("403 AccessForbidden"), "{}", v.detail);
        assert!(v.detail.contains("CORS rules"), "{}", v.detail);
    }

    #[test]
    fn each_provider_names_its_own_cors_command() {
        let s3 = Config::s3("pacs-masks", "us-east-1").unwrap();
        let azure = Config::azure("pacsmasks", "pacs-masks").unwrap();
        assert!(advice::cors_refused(&s3).contains("aws s3api put-bucket-cors"));
        let refused = advice::cors_refused(&azure);
        assert!(refused.contains("az storage account"), "{refused}");
        assert!(!refused.contains("s3api"), "{refused}");
    }

    #[test]
    fn a_hostile_error_code_is_not_echoed() {
        let v = verdict(
            URL,
            ORIGIN,
            500,
            None,
            "",
            b"<Code>\x1b[2Jevil</Code>",
            S3_REFUSED,
        );
        assert!(v.detail.contains("answered 500,"), "{}", v.detail);
        assert!(!v.detail.contains("evil"), "{}", v.detail);
        assert_eq!(error_code(b"<Code>unterminated"), None);
        // A body cut inside a character (as the bounded read may) still has its code.
        let mut cut = b"<Error><Code>NotImplemented</Code><Message>".to_vec();
        cut.extend_from_slice(&"\u{d55c}".as_bytes()[..2]);
        assert_eq!(error_code(&cut).as_deref(), Some("NotImplemented"));
    }

    /// An endpoint answering the preflight 501 with an S3 error, then a body that never
    /// ends: the doctor reads a few KiB of it, not the whole stream until the timeout.
    #[tokio::test]
    async fn an_endless_error_body_is_read_only_as_far_as_the_code() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 501 Not Implemented\r\nContent-Length: 1000000000000\r\n\r\n\
                        <Error><Code>NotImplemented</Code></Error>";
            socket.write_all(head.as_bytes()).await.unwrap();
            // 64 MiB of filler at most, then the connection stays open.
            let filler = vec![b' '; 1024 * 1024];
            let mut sent = 0usize;
            for _ in 0..64 {
                if socket.write_all(&filler).await.is_err() {
                    return sent;
                }
                sent += filler.len();
            }
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            sent
        });
        let config = Config::s3("probe-bucket", "us-east-1")
            .unwrap()
            .with_endpoint(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .with_credentials(
                "AKIAPROBE",
                maskstore::Secret::new("probe-secret-0123456789"),
            );
        let started = std::time::Instant::now();
        let verdict = preflight(&config, ORIGIN)
            .await
            .map_err(|f| f.message)
            .unwrap();
        assert!(
            verdict.detail.contains("501 NotImplemented"),
            "{}",
            verdict.detail
        );
        // Not a timing assert on speed: the 10 s request timeout is what the unbounded
        // read waited for.
        assert!(started.elapsed() < std::time::Duration::from_secs(9));
        server.abort();
    }

    #[test]
    fn a_granting_answer_is_allowed_and_a_partial_one_names_what_is_missing() {
        assert!(verdict(URL, ORIGIN, 200, Some(ORIGIN), "GET, PUT", b"", S3_REFUSED).allowed);
        let v = verdict(
            URL,
            ORIGIN,
            200,
            Some("https://other.example"),
            "PUT",
            b"",
            S3_REFUSED,
        );
        assert!(
            !v.allowed && v.detail.contains("does not grant the origin"),
            "{}",
            v.detail
        );
        let v = verdict(URL, ORIGIN, 200, Some("*"), "GET", b"", S3_REFUSED);
        assert!(
            !v.allowed && v.detail.contains("does not grant PUT"),
            "{}",
            v.detail
        );
    }
}
