//! CORS for browsers that upload and download straight from the gateway, as `[cors]` says.

use std::time::Duration;

use axum::http::Method;
use axum::http::header::{HeaderName, HeaderValue};
use maskstore_core::config::CorsConfig;
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
