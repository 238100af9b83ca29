//! Which address a request comes from. Behind a reverse proxy every
//! connection comes from the proxy, and the client's address is in a header
//! the proxy adds; but any client can send that header too. So it is read
//! only from a peer in `trusted_proxies`, walking the header's hops from the
//! right (the nearest) and taking the first address that is not itself a
//! trusted proxy: hops further left were written by whoever the proxy
//! talked to, and may be lies.
//!
//! The result replaces the connection's address in the request
//! (`ConnectInfo`), so IP allow-lists, throttles, audit entries and logs all
//! see the same client.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

/// The header a trusted proxy writes the client's address into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239: `Forwarded: for=client;proto=https, for="[2001:db8::1]:443"`.
    Forwarded,
}

/// `trusted_proxies`: the networks whose forwarded headers are believed;
/// a list in TOML, comma-separated in `KEYWARD_TRUSTED_PROXIES`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            List(Vec<String>),
            Text(String),
        }
        let items = match Given::deserialize(d)? {
            Given::List(items) => items,
            Given::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        items
            .iter()
            .map(|s| parse_net(s).map_err(serde::de::Error::custom))
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

/// A CIDR, or a single address (a /32 or /128).
fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("trusted_proxies: {s:?} is not an address or a CIDR such as 10.0.0.0/8")
        })
}

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request that arrived from `peer`.
    pub fn client(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        header: ForwardedHeader,
    ) -> SocketAddr {
        if self.0.is_empty() || !self.trusts(peer.ip()) {
            return peer;
        }
        let hops = match header {
            ForwardedHeader::XForwardedFor => hops(headers, "x-forwarded-for", parse_xff),
            ForwardedHeader::Forwarded => hops(headers, "forwarded", parse_forwarded),
        };
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            // A hop that cannot be read (`unknown`, an obfuscated name,
            // garbage): nothing to its left can be trusted either.
            let Some(addr) = hop else { break };
            client = addr;
            if !self.trusts(addr.ip()) {
                break;
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Every hop in every occurrence of the header, left to right.
fn hops(
    headers: &HeaderMap,
    name: &str,
    parse: fn(&str) -> Option<SocketAddr>,
) -> Vec<Option<SocketAddr>> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(text) => text.split(',').map(parse).collect::<Vec<_>>(),
            Err(_) => vec![None],
        })
        .collect()
}

/// One `X-Forwarded-For` hop: an address, maybe with a port.
fn parse_xff(hop: &str) -> Option<SocketAddr> {
    parse_addr(hop.trim())
}

/// One `Forwarded` element: its `for=` parameter.
fn parse_forwarded(element: &str) -> Option<SocketAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        parse_addr(value.trim().trim_matches('"'))
    })
}

/// `1.2.3.4`, `1.2.3.4:5`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:5`.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(SocketAddr::new(canonical(addr.ip()), addr.port()));
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(canonical(ip), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies(nets.iter().map(|n| parse_net(n).unwrap()).collect())
    }

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, v.parse().unwrap());
        }
        h
    }

    fn client(t: &TrustedProxies, peer: &str, h: &HeaderMap, header: ForwardedHeader) -> String {
        t.client(peer.parse().unwrap(), h, header).ip().to_string()
    }

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = headers("x-forwarded-for", &["1.2.3.4"]);
        assert_eq!(client(&t, "203.0.113.9:5000", &h, XFF), "203.0.113.9");
        assert_eq!(
            client(&TrustedProxies::default(), "10.0.0.1:5000", &h, XFF),
            "10.0.0.1"
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let t = trusted(&["10.0.0.0/8", "192.168.1.1"]);
        // The client forged "6.6.6.6"; the proxies appended the rest.
        let h = headers("x-forwarded-for", &["6.6.6.6, 198.51.100.7", "192.168.1.1"]);
        assert_eq!(client(&t, "10.0.0.2:1", &h, XFF), "198.51.100.7");
    }

    #[test]
    fn all_trusted_hops_give_the_leftmost_and_no_header_gives_the_peer() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = headers("x-forwarded-for", &["10.1.1.1, 10.2.2.2"]);
        assert_eq!(client(&t, "10.0.0.2:1", &h, XFF), "10.1.1.1");
        assert_eq!(client(&t, "10.0.0.2:1", &HeaderMap::new(), XFF), "10.0.0.2");
    }

    #[test]
    fn an_unreadable_hop_stops_the_walk_at_the_last_proxy() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = headers("x-forwarded-for", &["1.2.3.4, garbage, 10.9.9.9"]);
        assert_eq!(client(&t, "10.0.0.2:1", &h, XFF), "10.9.9.9");
    }

    #[test]
    fn forwarded_elements_with_ports_and_ipv6_are_read() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = headers(
            "forwarded",
            &[r#"for=6.6.6.6, for="[2001:db8::1]:4711";proto=https, for=10.0.0.5"#],
        );
        assert_eq!(
            client(&t, "10.0.0.2:1", &h, ForwardedHeader::Forwarded),
            "2001:db8::1"
        );
        // The other header is not read when Forwarded is configured.
        let xff = headers("x-forwarded-for", &["1.2.3.4"]);
        assert_eq!(
            client(&t, "10.0.0.2:1", &xff, ForwardedHeader::Forwarded),
            "10.0.0.2"
        );
    }

    #[test]
    fn a_mapped_ipv4_peer_matches_an_ipv4_network() {
        let t = trusted(&["127.0.0.1"]);
        let h = headers("x-forwarded-for", &["198.51.100.7"]);
        assert_eq!(client(&t, "[::ffff:127.0.0.1]:80", &h, XFF), "198.51.100.7");
    }

    #[test]
    fn the_setting_reads_a_list_or_comma_separated_text_and_names_a_bad_entry() {
        let from_text: TrustedProxies = serde_json::from_str(r#""10.0.0.0/8, 127.0.0.1""#).unwrap();
        assert_eq!(from_text.0.len(), 2);
        let from_list: TrustedProxies = serde_json::from_str(r#"["::1"]"#).unwrap();
        assert_eq!(from_list.0.len(), 1);
        let err = serde_json::from_str::<TrustedProxies>(r#""10.0.0.0/33""#).unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/33"), "{err}");
    }
}
