//! Reverse proxies the operator trusts (`trusted_proxies` in the configuration), and the client address
//! behind them. Behind nginx or a load balancer every connection comes from the proxy: without this, the
//! per-address limits (connections, failed logins) would treat all users as one client — one guesser would
//! make everybody wait, and the proxy's connections would hit the per-client cap.
//!
//! A connection from a trusted proxy is exempt from the per-client connection cap (the global cap still
//! holds), and its requests' client is the rightmost `X-Forwarded-For` address that is not itself a trusted
//! proxy (the first hop the operator does not control; addresses further left are the client's own
//! claims and could be forged). From any other peer `X-Forwarded-For` is ignored. Not for the limits
//! themselves (`connections.rs`, `gate.rs`).

use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;
use hyper::header::HeaderMap;
use ipnet::IpNet;

/// The header proxies add the address they received a request from to.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// The trusted proxies: addresses and networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From the configuration's entries: addresses (`10.0.0.5`, `::1`) or networks (`10.0.0.0/8`).
    pub fn parse(entries: &[String]) -> anyhow::Result<TrustedProxies> {
        let nets = entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry.parse::<IpNet>().or_else(|_| entry.parse::<IpAddr>().map(IpNet::from)).with_context(|| {
                    format!(
                        "trusted_proxies: '{entry}' is neither an IP address (10.0.0.5, ::1) nor a network \
                             (10.0.0.0/8)"
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(TrustedProxies(nets))
    }

    /// Whether `peer` is a trusted proxy.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.0.iter().any(|net| net.contains(&peer))
    }

    /// The client of a request that came from `peer` with `headers` (see the module's doc).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        let hops: Vec<&str> =
            headers.get_all(FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
        for hop in hops.iter().rev() {
            let Some(address) = address(hop) else { break };
            client = address;
            if !self.trusts(address) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, perhaps with a port (`1.2.3.4:5678`, `[::1]:80`).
fn address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip())).map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(FORWARDED_FOR, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let proxies = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        let proxy = ip("127.0.0.1");
        assert_eq!(proxies.client(proxy, &headers(&["203.0.113.7"])), ip("203.0.113.7"));
        // The client's own claim (left) is not believed; the hop our proxies saw is.
        assert_eq!(proxies.client(proxy, &headers(&["1.1.1.1, 203.0.113.7"])), ip("203.0.113.7"));
        // Through two of ours, as two header lines, with a port.
        assert_eq!(proxies.client(proxy, &headers(&["198.51.100.2:4711", "10.1.2.3"])), ip("198.51.100.2"));
        // IPv6, bracketed with a port, and IPv4 mapped into IPv6.
        assert_eq!(proxies.client(proxy, &headers(&["[2001:db8::1]:443"])), ip("2001:db8::1"));
        assert_eq!(proxies.client(ip("::ffff:127.0.0.1"), &headers(&["203.0.113.9"])), ip("203.0.113.9"));
        // No header, or garbage: the nearest address known, never a made-up one.
        assert_eq!(proxies.client(proxy, &headers(&[])), proxy);
        assert_eq!(proxies.client(proxy, &headers(&["unknown"])), proxy);
        assert_eq!(proxies.client(proxy, &headers(&["203.0.113.7, garbage, 10.0.0.9"])), ip("10.0.0.9"));
    }

    #[test]
    fn from_anyone_else_the_header_is_ignored() {
        let proxies = TrustedProxies::parse(&["10.0.0.5".into()]).unwrap();
        assert_eq!(proxies.client(ip("192.0.2.1"), &headers(&["203.0.113.7"])), ip("192.0.2.1"));
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.5"), &headers(&["203.0.113.7"])), ip("10.0.0.5"));
    }

    #[test]
    fn entries_must_be_addresses_or_networks() {
        assert!(TrustedProxies::parse(&["::1".into(), " 192.168.0.0/16 ".into()]).is_ok());
        let error = format!("{:#}", TrustedProxies::parse(&["nginx".into()]).unwrap_err());
        assert!(error.contains("'nginx' is neither an IP address"), "{error}");
    }
}
