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
use crate::metrics::{Track, render};
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
    Ok(Router::new()
        .route(FORM_PATH, any(form))
        .layer(cors)
        .with_state(gateway)
        .layer(track)
        .route_service(&format!("{OBJECT_PATH}{{*key}}"), objects))
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
