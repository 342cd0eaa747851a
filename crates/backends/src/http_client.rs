//! The HTTP client settings shared by the S3, Azure and GCS clients, from the same config
//! keys (`request_timeout_secs`, `connect_timeout_secs`, `max_retries`,
//! `retry_timeout_secs`, `retry_initial_backoff_ms`, `retry_max_backoff_ms`).

use std::time::Duration;

use maskstore_core::config::ObjectStorageConfig;
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
