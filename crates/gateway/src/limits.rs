//! What one client, and all of them together, may hold of the gateway: `[gateway]` as
//! durations and counts.

use std::net::IpAddr;
use std::time::Duration;

use maskstore_core::config::GatewayConfig;

/// The gateway's bounds on what clients may hold: time, connections, uploads. Built from
/// `[gateway]` with [`Limits::from_config`]; the default is `[gateway]`'s defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Time a client has to send a request's headers (also the keep-alive idle limit).
    pub header_timeout: Duration,
    /// Time an upload may send, or a download may take, nothing (for a download: less
    /// than about 64 KiB, as the connection's socket holds at most 128 KiB unsent).
    pub body_idle_timeout: Duration,
    /// Time one request may take in all.
    pub request_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// The largest upload, in bytes.
    pub max_upload_bytes: u64,
    /// Uploads in progress at once.
    pub max_concurrent_uploads: usize,
    /// Time requests in flight get after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Time a new connection has to send its first byte (at most `header_timeout`).
    pub first_byte_timeout: Duration,
    /// Connections one client address may hold (peers that are trusted proxies excepted).
    pub max_connections_per_client: usize,
    /// Uploads one client address may have in progress.
    pub max_uploads_per_client: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Limits {
    /// The limits `[gateway]` sets.
    pub fn from_config(gateway: &GatewayConfig) -> Limits {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let max_connections = count(gateway.max_connections);
        let max_uploads = count(gateway.max_concurrent_uploads);
        Limits {
            header_timeout: Duration::from_secs(gateway.header_timeout_secs),
            body_idle_timeout: Duration::from_secs(gateway.body_idle_timeout_secs),
            request_timeout: Duration::from_secs(gateway.request_timeout_secs),
            max_connections,
            max_upload_bytes: gateway.max_upload_bytes,
            max_concurrent_uploads: max_uploads,
            shutdown_grace: Duration::from_secs(gateway.shutdown_grace_secs),
            first_byte_timeout: Duration::from_secs(
                gateway
                    .first_byte_timeout_secs
                    .min(gateway.header_timeout_secs),
            ),
            max_connections_per_client: gateway
                .max_connections_per_client
                .map_or_else(|| (max_connections / 16).max(8), count)
                .min(max_connections),
            max_uploads_per_client: gateway
                .max_uploads_per_client
                .map_or_else(|| (max_uploads / 8).max(8), count)
                .min(max_uploads),
            // Validated as IP addresses when the config was built.
            trusted_proxies: gateway
                .trusted_proxies
                .iter()
                .filter_map(|p| p.trim().parse().ok())
                .collect(),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::from_config(&maskstore_core::Config::memory().gateway)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_the_config_defaults() {
        let limits = Limits::default();
        assert_eq!(limits.header_timeout, Duration::from_secs(10));
        assert_eq!(limits.max_connections, 512);
        assert_eq!(limits.max_upload_bytes, 1 << 30);
        assert_eq!(limits.max_concurrent_uploads, 64);
        assert_eq!(limits.shutdown_grace, Duration::from_secs(10));
        assert_eq!(limits.first_byte_timeout, Duration::from_secs(3));
        assert_eq!(limits.max_connections_per_client, 32);
        assert_eq!(limits.max_uploads_per_client, 8);
        assert!(limits.trusted_proxies.is_empty());
    }
}
