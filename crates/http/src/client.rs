//! Who the client is, by address: the peer, or what a trusted proxy (the
//! gateway) says in `X-Forwarded-For`. What throttles and rate limits count.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;

/// CIDR ranges of trusted proxies (the gateway). Anyone else who reaches the
/// service directly is taken to be the client, whatever header it sends.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses comma-separated ranges (`10.0.0.0/8,::1/128`; a bare address is one host).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (addr, bits) = match part.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (part, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("`{part}` is not an address range"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("`{part}` has a bad prefix length"))?,
            };
            ranges.push((addr, bits));
        }
        Ok(Self(ranges))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|(net, bits)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*bits)).unwrap_or(0);
                u32::from(*n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*bits)).unwrap_or(0);
                u128::from(*n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }
}

/// The address a request is counted against: the last `X-Forwarded-For`
/// entry when the peer is a trusted proxy (the gateway writes it), else the
/// peer; see [`key_of`].
pub fn client_key(trusted: &TrustedProxies, headers: &HeaderMap, peer: Option<IpAddr>) -> String {
    let forwarded = peer.filter(|ip| trusted.contains(*ip)).and_then(|_| {
        headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .and_then(|v| v.parse::<IpAddr>().ok())
    });
    match forwarded.or(peer) {
        Some(ip) => key_of(ip),
        None => "unknown".to_owned(),
    }
}

/// The peer's address from the connection (what the server records).
pub fn peer_of(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
}

/// An address as throttles count it: IPv4 as is (also when written as
/// IPv4-mapped IPv6), IPv6 by its /64, which one subscriber usually holds whole.
pub fn key_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        v4 => v4.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ranges_match_by_prefix() {
        let t = TrustedProxies::parse("10.1.0.0/16, ::1/128,192.0.2.7").unwrap();
        for (ip, trusted) in [
            ("10.1.200.3", true),
            ("10.2.0.1", false),
            ("::1", true),
            ("::2", false),
            ("192.0.2.7", true),
            ("192.0.2.8", false),
            ("::ffff:10.1.0.9", true),
        ] {
            assert_eq!(t.contains(ip.parse().unwrap()), trusted, "{ip}");
        }
        assert!(TrustedProxies::parse("").unwrap().0.is_empty());
        assert!(
            TrustedProxies::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("gateway").is_err());
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let key = |s: &str| key_of(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
    }

    #[test]
    fn only_a_trusted_peer_names_the_client_and_its_last_entry_counts() {
        let trusted = TrustedProxies::parse("127.0.0.1/32").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        let gateway = Some("127.0.0.1".parse().unwrap());
        let stranger = Some("198.51.100.4".parse().unwrap());
        assert_eq!(client_key(&trusted, &headers, gateway), "203.0.113.9");
        assert_eq!(client_key(&trusted, &headers, stranger), "198.51.100.4");
        assert_eq!(
            client_key(&trusted, &HeaderMap::new(), gateway),
            "127.0.0.1"
        );
        assert_eq!(client_key(&trusted, &headers, None), "unknown");
    }
}
