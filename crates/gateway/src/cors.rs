//! CORS for browsers that upload and download straight from the gateway, as `[cors]` says.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Request, Response};
use futures::FutureExt;
use futures::future::Either;
use maskstore_backends::signing::OBJECT_PATH;
use maskstore_core::config::CorsConfig;
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};

use crate::GatewayError;

/// The `[cors]` section as a layer; a value that cannot be an HTTP header is refused here,
/// when the router is built, not on the first browser request.
pub(crate) fn cors_layer(cors: &CorsConfig) -> Result<CorsLayer, GatewayError> {
    let header_values = |key: &'static str, items: &[String]| {
        items
            .iter()
            .map(|item| {
                HeaderValue::from_str(item).map_err(|e| GatewayError::Cors {
                    key,
                    value: item.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let header_names = |key: &'static str, items: &[String]| {
        items
            .iter()
            .map(|item| {
                HeaderName::from_bytes(item.as_bytes()).map_err(|e| GatewayError::Cors {
                    key,
                    value: item.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let origins = if cors.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(header_values("allowed_origins", &cors.allowed_origins)?)
    };
    let methods = cors
        .allowed_methods
        .iter()
        .map(|m| {
            Method::from_bytes(m.as_bytes()).map_err(|e| GatewayError::Cors {
                key: "allowed_methods",
                value: m.clone(),
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let headers = if cors.allowed_headers.iter().any(|h| h == "*") {
        AllowHeaders::any()
    } else {
        AllowHeaders::list(header_names("allowed_headers", &cors.allowed_headers)?)
    };
    Ok(CorsLayer::new()
        .allow_origin(origins)
        .allow_methods(AllowMethods::list(methods))
        .allow_headers(headers)
        .expose_headers(ExposeHeaders::list(header_names(
            "expose_headers",
            &cors.expose_headers,
        )?))
        .max_age(Duration::from_secs(cors.max_age)))
}

/// The object route under `[cors]`: tower-http's layer answers a preflight and any request
/// that names an origin; a GET or HEAD that names none (a download by a script, a CLI or
/// an SDK, where CORS only adds the same headers every time) gets those headers, taken
/// once from the layer itself when the route is built, without the layer's work per
/// request.
#[derive(Clone)]
pub(crate) struct ObjectCors<S> {
    inner: S,
    /// Put around `inner` for the requests it answers: cloning it (its lists) is kept off
    /// the requests that do not need it.
    layer: Arc<CorsLayer>,
    /// What the layer adds to a GET without `Origin`, or `None` when it cannot be known
    /// ahead (an origin judged asynchronously): then every request goes through the layer.
    originless: Option<Arc<HeaderMap>>,
}

impl<S> ObjectCors<S> {
    pub(crate) fn new(layer: &CorsLayer, inner: S) -> ObjectCors<S> {
        ObjectCors {
            inner,
            layer: Arc::new(layer.clone()),
            originless: originless_headers(layer).map(Arc::new),
        }
    }
}

/// The headers `layer` adds to the answer of a GET that names no origin, from the layer's
/// own answer to one.
fn originless_headers(layer: &CorsLayer) -> Option<HeaderMap> {
    let empty = tower::service_fn(|_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(())))
    });
    let request = Request::get(OBJECT_PATH).body(()).ok()?;
    let answer = layer.layer(empty).oneshot(request).now_or_never()?;
    let Ok(answer) = answer;
    Some(answer.into_parts().0.headers)
}

impl<S, B> tower::Service<Request<B>> for ObjectCors<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>> + Clone,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<tower_http::cors::ResponseFuture<S::Future>, Originless<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match &self.originless {
            Some(headers)
                if matches!(*request.method(), Method::GET | Method::HEAD)
                    && !request.headers().contains_key(header::ORIGIN) =>
            {
                Either::Right(Originless {
                    inner: self.inner.call(request),
                    headers: Arc::clone(headers),
                })
            }
            _ => {
                // The service made ready is the one the layer wraps; its clone stays.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                Either::Left(self.layer.layer(ready).call(request))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// An answer to a request without `Origin`, given the CORS headers when it is ready.
    pub(crate) struct Originless<F> {
        #[pin]
        inner: F,
        headers: Arc<HeaderMap>,
    }
}

impl<F, E> Future for Originless<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        add_as_the_layer_does(response.headers_mut(), this.headers);
        Poll::Ready(Ok(response))
    }
}

/// `added` into `headers` as tower-http's layer puts them: `Vary` appended to any the
/// answer has, every other name replacing the answer's own.
fn add_as_the_layer_does(headers: &mut HeaderMap, added: &HeaderMap) {
    for name in added.keys() {
        let mut values = added.get_all(name).iter();
        if name != header::VARY
            && let Some(first) = values.next()
        {
            headers.insert(name.clone(), first.clone());
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inner answer that already carries `Vary` and an exposed-headers list.
    async fn answer(request: Request<Body>) -> Result<Response<Body>, Infallible> {
        let mut response = Response::new(Body::from(request.method().to_string()));
        let headers = response.headers_mut();
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-own"),
        );
        headers.insert(header::ETAG, HeaderValue::from_static("\"e\""));
        Ok(response)
    }

    fn configs() -> Vec<CorsConfig> {
        let mut configs = vec![maskstore_core::Config::memory().cors];
        let mut any = maskstore_core::Config::memory().cors;
        any.allowed_origins = vec!["*".into()];
        any.expose_headers = vec![];
        configs.push(any);
        let mut listed = maskstore_core::Config::memory().cors;
        listed.allowed_origins = vec!["https://a.example".into(), "https://b.example".into()];
        listed.expose_headers = vec!["etag".into(), "x-amz-meta-a".into(), "x-b".into()];
        configs.push(listed);
        configs
    }

    /// Every request, with or without an origin, of every method, is answered with the
    /// headers tower-http's layer gives it, in the same order, whether the layer or the
    /// headers taken from it once are used.
    #[tokio::test]
    async fn an_answer_carries_what_the_layer_would_give_it() {
        for config in configs() {
            let layer = cors_layer(&config).unwrap();
            assert!(originless_headers(&layer).is_some(), "{config:?}");
            for method in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "POST"] {
                for origin in [None, Some("https://a.example"), Some("https://c.example")] {
                    let request = || {
                        let mut request = Request::builder().method(method).uri("/o/mask/a");
                        if let Some(origin) = origin {
                            request = request.header(header::ORIGIN, origin);
                        }
                        request
                            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "PUT")
                            .body(Body::empty())
                            .unwrap()
                    };
                    let theirs = layer
                        .layer(tower::service_fn(answer))
                        .oneshot(request())
                        .await
                        .unwrap();
                    let ours = ObjectCors::new(&layer, tower::service_fn(answer))
                        .oneshot(request())
                        .await
                        .unwrap();
                    let seen = |response: &Response<Body>| {
                        response
                            .headers()
                            .iter()
                            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(theirs.status(), ours.status(), "{method} {origin:?}");
                    assert_eq!(seen(&theirs), seen(&ours), "{method} {origin:?} {config:?}");
                }
            }
        }
    }

    /// The headers are taken from the layer, not written here: a request without an
    /// origin gets the `Vary` and exposed headers the configuration names.
    #[test]
    fn the_headers_without_an_origin_follow_the_configuration() {
        let config = &configs()[2];
        let headers = originless_headers(&cors_layer(config).unwrap()).unwrap();
        assert_eq!(
            headers[header::ACCESS_CONTROL_EXPOSE_HEADERS],
            "etag,x-amz-meta-a,x-b"
        );
        assert!(headers.contains_key(header::VARY));
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        let any = originless_headers(&cors_layer(&configs()[1]).unwrap()).unwrap();
        assert_eq!(any[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(!any.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
    }
}
