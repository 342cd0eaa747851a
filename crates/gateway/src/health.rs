//! `GET /health`: liveness, and the store's alarms while any is raised.

use axum::body::Body;
use axum::http::header::{self, HeaderValue};
use axum::response::Response;
use maskstore_backends::Storage;

/// `{"status": "ok"}`, or `{"status": "degraded", "alarms": [...]}` naming each alarm.
pub(crate) async fn health(storage: Storage) -> Response {
    let alarms = storage.monitor().alarms();
    let body = if alarms.is_empty() {
        serde_json::json!({"status": "ok"})
    } else {
        serde_json::json!({
            "status": "degraded",
            "alarms": alarms.iter().map(|a| serde_json::json!({
                "name": a.name,
                "rate": a.rate,
                "threshold": a.threshold,
                "requests": a.requests,
                "baseline": a.baseline,
                "message": a.to_string(),
            })).collect::<Vec<_>>(),
        })
    };
    let mut response = Response::new(Body::from(format!("{body}\n")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
