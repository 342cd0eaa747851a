//! The routers an application mounts or serves: signed-URL objects on one side, `/health`
//! and `/metrics` on the other, merged or apart.

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get};
use maskstore_backends::Storage;
use maskstore_backends::signing::{FORM_PATH, OBJECT_PATH};
use maskstore_core::config::CorsConfig;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;
use tower::Layer;

use crate::cors::{ObjectCors, cors_layer};
use crate::health::health;
use crate::metrics::{Track, Tracked, render};
use crate::objects::budget::{MemoryBudget, download_budget};
use crate::objects::conditional_budget;
use crate::objects::verified::VerifiedVersions;
use crate::objects::{ObjectService, form};
use crate::shares::ClientShares;
use crate::{GatewayError, Limits};

/// What every object request is served from, shared by all of them behind one `Arc` (a
/// request's state is a reference count, not a copy of the storage's names and layers).
pub(crate) struct Gateway {
    pub(crate) storage: Storage,
    pub(crate) limits: Arc<Limits>,
    pub(crate) uploads: Arc<Semaphore>,
    /// Each client's share of the upload slots.
    pub(crate) upload_shares: Arc<ClientShares>,
    /// The download memory budget.
    pub(crate) downloads: MemoryBudget,
    /// The conditional-upload memory budget.
    pub(crate) conditional: MemoryBudget,
    /// Versions whose checksum a whole read verified, for range reads.
    pub(crate) verified: Arc<VerifiedVersions>,
}

/// The gateway as a router an application can mount or serve: objects and `/health`, with
/// the default [`Limits`].
pub fn router(storage: Storage, cors: &CorsConfig) -> Result<Router, GatewayError> {
    router_with_limits(storage, cors, &Limits::default())
}

/// The object route as it is served: counted, under CORS.
pub(crate) type ObjectRoute = Tracked<ObjectCors<ObjectService>>;

/// What [`crate::serve_with_limits`] serves: a router, and the gateway's object route kept
/// beside it, so a request of `/o/…` is answered without the router's match (its path
/// search, its captured key, its boxed route cloned per request). The router holds the
/// object route as well: merged routes that clash with it are refused as before, and
/// [`Routes::into_router`] serves the same answers. A plain [`Router`] converts into one.
#[derive(Clone)]
pub struct Routes {
    router: Router,
    objects: Option<ObjectRoute>,
}

impl Routes {
    /// Signed-URL objects (`/o/…`), as [`objects_router`], kept as routes.
    pub fn objects(
        storage: Storage,
        cors: &CorsConfig,
        limits: &Limits,
    ) -> Result<Routes, GatewayError> {
        let (router, objects) = object_routes(storage, cors, limits)?;
        Ok(Routes {
            router,
            objects: Some(objects),
        })
    }

    /// These routes and `other`'s (which must not clash, as [`Router::merge`] says).
    pub fn merge(self, other: Router) -> Routes {
        Routes {
            router: self.router.merge(other),
            objects: self.objects,
        }
    }

    /// The routes as one router.
    pub fn into_router(self) -> Router {
        self.router
    }

    pub(crate) fn router(&self) -> &Router {
        &self.router
    }

    /// The object route, when `path` is one of its paths (`/o/` and at least one byte:
    /// the router's `/o/{*key}` does not match an empty key either).
    pub(crate) fn objects_at(&self, path: &str) -> Option<&ObjectRoute> {
        let key = path.strip_prefix(OBJECT_PATH)?;
        self.objects.as_ref().filter(|_| !key.is_empty())
    }
}

impl From<Router> for Routes {
    fn from(router: Router) -> Routes {
        Routes {
            router,
            objects: None,
        }
    }
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("router", &self.router)
            .field("objects", &self.objects.is_some())
            .finish()
    }
}

/// [`router`] with the given limits.
pub fn router_with_limits(
    storage: Storage,
    cors: &CorsConfig,
    limits: &Limits,
) -> Result<Router, GatewayError> {
    let health = admin_router(storage.clone(), None);
    Ok(objects_router(storage, cors, limits)?.merge(health))
}

/// Signed-URL objects alone (`/o/…`), for the public listener when `/health` and
/// `/metrics` are served on an admin listener.
pub fn objects_router(
    storage: Storage,
    cors: &CorsConfig,
    limits: &Limits,
) -> Result<Router, GatewayError> {
    Ok(object_routes(storage, cors, limits)?.0)
}

/// The objects router, and its object route alone.
fn object_routes(
    storage: Storage,
    cors: &CorsConfig,
    limits: &Limits,
) -> Result<(Router, ObjectRoute), GatewayError> {
    if storage.gateway_signer().is_none() {
        return Err(GatewayError::NotServable {
            backend: storage.backend().to_string(),
        });
    }
    let gateway = Gateway {
        storage,
        limits: Arc::new(limits.clone()),
        uploads: Arc::new(Semaphore::new(limits.max_concurrent_uploads)),
        upload_shares: ClientShares::new(limits.max_uploads_per_client),
        downloads: download_budget(),
        conditional: conditional_budget(),
        verified: Arc::default(),
    };
    let gateway = Arc::new(gateway);
    let cors = cors_layer(cors)?;
    // The object route is added after the layers, already layered the same way (counted
    // outermost, CORS inside): as one service, not a layered handler boxed at each level.
    let track = Track::default();
    let objects = track.layer(ObjectCors::new(&cors, ObjectService(Arc::clone(&gateway))));
    let router = Router::new()
        .route(FORM_PATH, any(form))
        .layer(cors)
        .with_state(gateway)
        .layer(track)
        .route_service(&format!("{OBJECT_PATH}{{*key}}"), objects.clone());
    Ok((router, objects))
}

/// `GET /health`, and `GET /metrics` rendering `metrics` when given: what the admin
/// listener serves.
pub fn admin_router(storage: Storage, metrics: Option<PrometheusHandle>) -> Router {
    let monitor = Arc::clone(storage.monitor());
    let mut admin = Router::new().route("/health", get(move || health(storage.clone())));
    if let Some(handle) = metrics {
        admin = admin.route(
            "/metrics",
            get(move || std::future::ready(render(&monitor, &handle))),
        );
    }
    admin.layer(Track::default())
}

/// [`router`] plus `GET /metrics` rendering `handle` (see [`crate::install_prometheus`]).
pub fn router_with_metrics(
    storage: Storage,
    cors: &CorsConfig,
    handle: PrometheusHandle,
) -> Result<Router, GatewayError> {
    let admin = admin_router(storage.clone(), Some(handle));
    Ok(objects_router(storage, cors, &Limits::default())?.merge(admin))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The object route is layered apart from the router's other routes: its answers
    /// still carry CORS (a simple request's and a preflight's) and the hardening headers.
    #[tokio::test]
    async fn object_answers_carry_cors_and_the_hardening_headers() {
        use axum::body::Body;
        use axum::http::{Request, header};
        use maskstore_backends::signing::{SignOptions, SignedMethod};
        use tower::ServiceExt;

        let origin = "https://app.example";
        let mut config = maskstore_core::Config::memory()
            .with_signing_secret(maskstore_core::Secret::new(
                "0123456789abcdef0123456789abcdef",
            ))
            .unwrap();
        config.cors.allowed_origins = vec![origin.to_string()];
        let storage = Storage::connect(&config).unwrap();
        let key = "mask/cors.png".parse().unwrap();
        storage.put(&key, &b"png"[..]).await.unwrap();
        let signer = storage.gateway_signer().unwrap();
        let url = signer.sign(
            SignedMethod::Get,
            &key,
            i64::MAX / 2,
            &SignOptions::default(),
        );
        let path = url.strip_prefix(signer.public_url()).unwrap().to_string();
        let router = router(storage, &config.cors).unwrap();

        let get = Request::get(&path).header(header::ORIGIN, origin);
        let answer = router
            .clone()
            .oneshot(get.body(Body::empty()).unwrap())
            .await;
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 200);
        let headers = answer.headers();
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        assert!(headers.contains_key(header::VARY));
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");

        let preflight = Request::options(&path)
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "PUT");
        let answer = router.oneshot(preflight.body(Body::empty()).unwrap()).await;
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            origin
        );
        assert!(
            answer
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_METHODS)
        );
    }

    /// `request` sent alone on a new connection to `addr`, and the answer's bytes with its
    /// `date` line taken out.
    async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer)
            .split("\r\n")
            .filter(|line| !line.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    /// The object route kept beside the router answers every request byte for byte as the
    /// router does: signed or not, of every method, with or without an origin, ranges and
    /// conditions, at `/o/`, `/o` and paths beside them, on a regular connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_object_route_beside_the_router_answers_as_the_router_does() {
        use maskstore_backends::signing::{SignOptions, SignedMethod};

        let mut config = maskstore_core::Config::memory()
            .with_signing_secret(maskstore_core::Secret::new(
                "0123456789abcdef0123456789abcdef",
            ))
            .unwrap();
        config.cors.allowed_origins = vec!["https://app.example".to_string()];
        let storage = Storage::connect(&config).unwrap();
        let limits = Limits::default();
        for key in ["mask/a.png", "mask/b c.bin", "mask/put.png"] {
            let key = key.parse().unwrap();
            storage.put(&key, &b"0123456789"[..]).await.unwrap();
        }
        let signer = storage.gateway_signer().unwrap();
        let signed = |method, key: &str| {
            let url = signer.sign(
                method,
                &key.parse().unwrap(),
                i64::MAX / 2,
                &SignOptions::default(),
            );
            url.strip_prefix(signer.public_url()).unwrap().to_string()
        };
        let get = signed(SignedMethod::Get, "mask/a.png");
        let spaced = signed(SignedMethod::Get, "mask/b c.bin");
        let missing = signed(SignedMethod::Get, "mask/none.png");
        let delete = signed(SignedMethod::Delete, "mask/none.png");
        let forged = get.replace("sig=", "sig=0");
        let mut targets = vec![
            get.clone(),
            spaced,
            missing,
            delete,
            forged,
            "/o/".to_string(),
            "/o".to_string(),
            "/o/mask/a.png".to_string(),
            "/oo/mask/a.png".to_string(),
            "/health".to_string(),
            "/nowhere".to_string(),
        ];
        targets.push(get.replacen("/o/", "/o//", 1));
        let extras = [
            "",
            "Origin: https://app.example\r\n",
            "Origin: https://other.example\r\n",
            "Range: bytes=2-5\r\n",
            "Range: bytes=20-\r\n",
            "If-None-Match: *\r\n",
            "If-Match: \"nope\"\r\n",
            "Origin: https://app.example\r\nAccess-Control-Request-Method: PUT\r\n",
        ];

        let serve = |routes: Routes| async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let limits = Limits::default();
            tokio::spawn(async move {
                crate::serve_with_limits(listener, routes, &limits, std::future::pending()).await
            });
            addr
        };
        let routes = Routes::objects(storage.clone(), &config.cors, &limits)
            .unwrap()
            .merge(admin_router(storage.clone(), None));
        assert!(routes.objects.is_some());
        let beside = serve(routes.clone()).await;
        let router = serve(routes.into_router().into()).await;
        let mut compared = 0;
        for target in &targets {
            for method in ["GET", "HEAD", "OPTIONS", "DELETE", "POST", "PUT"] {
                for extra in extras {
                    let request = format!(
                        "{method} {target} HTTP/1.1\r\nHost: gateway\r\n{extra}Connection: close\r\n\r\n"
                    );
                    let (ours, theirs) = (
                        exchange(beside, &request).await,
                        exchange(router, &request).await,
                    );
                    assert_eq!(ours, theirs, "{request}");
                    compared += 1;
                }
            }
        }
        // The answers differ from one another: the comparison saw what it compares.
        let ok = exchange(
            beside,
            &format!("GET {get} HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with("0123456789"), "{ok}");
        assert_eq!(compared, targets.len() * 6 * extras.len());
    }

    #[test]
    fn s3_storage_is_not_servable() {
        let store = std::sync::Arc::new(object_store::memory::InMemory::new());
        let storage = Storage::from_object_store(store, "s3", "mask/".parse().unwrap());
        let cors = maskstore_core::Config::memory().cors;
        assert!(matches!(
            router(storage, &cors),
            Err(GatewayError::NotServable { .. })
        ));
    }
}
