//! Fair shares: what one client address may hold of the gateway's connections and upload
//! slots, and which address a request is from (the peer, or behind a trusted reverse proxy
//! the client its `X-Forwarded-For` names).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;

/// How many of a resource each client address holds, up to a share each.
#[derive(Debug)]
pub(crate) struct ClientShares {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One unit of a client's share, given back when dropped.
#[derive(Debug)]
pub(crate) struct Share {
    shares: Arc<ClientShares>,
    client: IpAddr,
}

impl ClientShares {
    /// Shares of `max` units per client.
    pub(crate) fn new(max: usize) -> Arc<ClientShares> {
        Arc::new(ClientShares {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A unit of `client`'s share, unless it holds all of it already. The map holds only
    /// clients holding something, so it is bounded by the units in use.
    pub(crate) fn take(self: &Arc<ClientShares>, client: IpAddr) -> Option<Share> {
        let mut held = self.lock();
        let count = held.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Share {
            shares: Arc::clone(self),
            client,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Counts are updated in one step each: a panic cannot leave one half-done.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut held = self.shares.lock();
        if let Some(count) = held.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.client);
            }
        }
    }
}

/// The client a request is from: the connection's peer, or when the peer is one of
/// `trusted` proxies, the last `X-Forwarded-For` address that is not itself a trusted
/// proxy. `None` when the router runs without the peer address (mounted in another server).
pub(crate) fn client_of(request: &Request, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()?
        .0
        .ip();
    Some(client_key(forwarded_client(
        peer,
        request.headers(),
        trusted,
    )))
}

/// The address a client's shares are kept by: an IPv4-mapped IPv6 address (a dual-stack
/// listener's IPv4 peer) as its IPv4 address, and an IPv6 address by its /64 prefix, the
/// least one subscriber is given: otherwise every one of its 2^64 addresses would be a
/// client with a share of its own.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// Whether `ip` is one of the `trusted` proxies, an IPv4 one also when a dual-stack
/// listener sees it as IPv4-mapped IPv6.
pub(crate) fn is_trusted(ip: IpAddr, trusted: &[IpAddr]) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|t| t.to_canonical() == ip)
}

/// One `X-Forwarded-For` entry: an address, or (as some proxies write it) an address and
/// port, `1.2.3.4:5678` or `[2001:db8::1]:443`.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// See [`client_of`]: a header from an untrusted peer is never read, and one a trusted
/// proxy passes on is read from the right, where that proxy appended what it saw.
fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(hop_address)
        .collect::<Vec<_>>();
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) if is_trusted(ip, trusted) => continue,
            Some(ip) => return ip,
            // An unreadable hop: what lies left of it cannot be trusted.
            None => break,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_it_back() {
        let shares = ClientShares::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = shares.take(a).unwrap();
        let _second = shares.take(a).unwrap();
        assert!(shares.take(a).is_none());
        assert!(shares.take(b).is_some());
        drop(first);
        assert!(shares.take(a).is_some());
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(forwarded_client(stranger, &headers, &[proxy]), stranger);
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(forwarded_client(proxy, &headers, &[proxy]), client);
        headers.insert("x-forwarded-for", "203.0.113.7, 10.0.0.5".parse().unwrap());
        assert_eq!(forwarded_client(proxy, &headers, &[proxy]), client);
        headers.insert("x-forwarded-for", "203.0.113.7, junk".parse().unwrap());
        assert_eq!(forwarded_client(proxy, &headers, &[proxy]), proxy);
    }

    #[test]
    fn a_trusted_proxy_is_known_on_a_dual_stack_listener_and_with_ports() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        // A listener on [::] sees an IPv4 peer as IPv4-mapped IPv6.
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.7:51234".parse().unwrap());
        assert_eq!(forwarded_client(mapped, &headers, &[proxy]), client);
        headers.insert(
            "x-forwarded-for",
            "[2001:db8::1]:443, ::ffff:10.0.0.5".parse().unwrap(),
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(forwarded_client(proxy, &headers, &[proxy]), v6);
    }

    #[test]
    fn an_ipv6_client_is_known_by_its_64_prefix() {
        let shares = ClientShares::new(1);
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let next: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _held = shares.take(client_key(first)).unwrap();
        assert!(shares.take(client_key(next)).is_none(), "the same /64");
        assert!(shares.take(client_key(other)).is_some());
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
