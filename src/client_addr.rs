//! The client's address behind trusted reverse proxies.
//!
//! Behind nginx or a load balancer every TCP peer is the proxy, so the
//! per-address connection cap, the chat API's rate limiter, the logs and the
//! console would all see one address. `server.trusted_proxies` lists the
//! proxies whose word is taken: only when the TCP peer is in one of those
//! ranges is the client read from `Forwarded` (RFC 7239 `for=`) or, when that
//! header is absent, `X-Forwarded-For`. The hops are walked from the right
//! (the nearest proxy's entry) skipping trusted addresses; the first untrusted
//! one is the client, since everything left of it was written by the client
//! itself and may be forged. A header that cannot be read in full leaves the
//! TCP peer in place. actix's `realip_remote_addr()` is not used: it believes
//! the header from any peer.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use actix_web::http::header::{HeaderMap, HeaderName, FORWARDED, X_FORWARDED_FOR};
use actix_web::{web, HttpRequest};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::http::AppState;

/// The client address of `req`: the forwarded one when the TCP peer is a
/// trusted proxy (see the module docs), else the TCP peer. `None` only when
/// the connection has no peer address (not over TCP).
pub fn client_addr(req: &HttpRequest) -> Option<SocketAddr> {
    let peer = req.peer_addr();
    match req.app_data::<web::Data<AppState>>() {
        Some(state) => state
            .config
            .server
            .trusted_proxies
            .client_addr(peer, req.headers()),
        None => peer,
    }
}

/// The IP address of [`client_addr`], the key of per-address limits.
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    client_addr(req).map(|addr| addr.ip())
}

/// One range of `server.trusted_proxies`: a CIDR block, or a single address
/// (a `/32` or `/128`), with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange(IpNet);

impl IpRange {
    /// Whether `ip` lies in the block (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not an IP address or a CIDR range like 10.0.0.0/8");
        let net = match text.split_once('/') {
            None => IpNet::from(text.parse::<IpAddr>().map_err(|_| bad())?),
            Some((address, digits)) => {
                let address: IpAddr = address.parse().map_err(|_| bad())?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let bits = if address.is_ipv4() { 32 } else { 128 };
                digits
                    .parse::<u8>()
                    .ok()
                    .and_then(|prefix| IpNet::new(address, prefix).ok())
                    .ok_or_else(|| format!("`{text}`: the prefix length must be at most {bits}"))?
            }
        };
        Ok(IpRange(net.trunc()))
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `server.trusted_proxies`: the peers whose forwarding headers are
/// believed. Empty (the default): none, every client is its TCP peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpRange>);

impl TrustedProxies {
    /// Parses each entry; the error names the first bad one.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| entry.as_ref().trim().parse())
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }

    /// The client behind `peer`: the forwarded address when `peer` is
    /// trusted and its header reads in full, else `peer` itself. A forwarded
    /// address without a port has port 0.
    pub fn client_addr(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<SocketAddr> {
        let tcp_peer = peer?;
        if !self.trusts(tcp_peer.ip()) {
            return peer;
        }
        let (name, hops) = if headers.contains_key(FORWARDED) {
            (FORWARDED, forwarded_hops(headers))
        } else if headers.contains_key(X_FORWARDED_FOR) {
            (X_FORWARDED_FOR, x_forwarded_for_hops(headers))
        } else {
            return peer;
        };
        match hops.and_then(|hops| self.client_of(&hops)) {
            Some(client) => Some(client),
            None => {
                log::debug!(
                    "unreadable {name} from proxy {tcp_peer}: {:?}; using the proxy's address",
                    joined(headers, &name)
                );
                peer
            }
        }
    }

    /// The rightmost untrusted hop, or the leftmost when all are trusted;
    /// `None` when an unknown (obfuscated) hop comes first.
    fn client_of(&self, hops: &[Hop]) -> Option<SocketAddr> {
        for hop in hops.iter().rev() {
            let Hop::Known(addr) = hop else {
                return None;
            };
            if !self.trusts(addr.ip()) {
                return Some(canonical(*addr));
            }
        }
        match hops.first()? {
            Hop::Known(addr) => Some(canonical(*addr)),
            Hop::Unknown => None,
        }
    }
}

impl Serialize for TrustedProxies {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // An environment variable may give one comma-separated string.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            Text(String),
        }
        let entries = match Raw::deserialize(d)? {
            Raw::List(list) => list,
            Raw::Text(text) => text
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned)
                .collect(),
        };
        TrustedProxies::parse(&entries).map_err(serde::de::Error::custom)
    }
}

/// `addr` with an IPv4-mapped IPv6 address as plain IPv4, so one client
/// has one per-address key however a proxy writes it.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// One proxy hop as a header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    /// An address (port 0 when none was given).
    Known(SocketAddr),
    /// `unknown` or an obfuscated identifier (RFC 7239 §6).
    Unknown,
}

/// Every value of header `name`, in order, joined as one list; `None` when
/// one is not visible ASCII.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values = headers
        .get_all(name)
        .map(|v| v.to_str().ok())
        .collect::<Option<Vec<_>>>()?;
    Some(values.join(","))
}

/// The `for=` of every `Forwarded` element, left to right; `None` when the
/// header does not parse or an element has no single `for=`.
fn forwarded_hops(headers: &HeaderMap) -> Option<Vec<Hop>> {
    let text = joined(headers, &FORWARDED)?;
    split_unquoted(&text, b',')?
        .into_iter()
        .map(forwarded_for)
        .collect()
}

/// The node of one element's single `for=` pair.
fn forwarded_for(element: &str) -> Option<Hop> {
    let mut found = None;
    for pair in split_unquoted(element, b';')? {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some(node(&unquote(value.trim())?)?);
    }
    found
}

/// `X-Forwarded-For`'s addresses, left to right.
fn x_forwarded_for_hops(headers: &HeaderMap) -> Option<Vec<Hop>> {
    joined(headers, &X_FORWARDED_FOR)?
        .split(',')
        .map(|hop| match node(hop.trim())? {
            Hop::Known(addr) => Some(Hop::Known(addr)),
            Hop::Unknown => None,
        })
        .collect()
}

/// Splits `text` at `separator` outside double quotes; `None` for an
/// unterminated quoted string.
fn split_unquoted(text: &str, separator: u8) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, byte) in text.bytes().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b if b == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    parts.push(&text[start..]);
    Some(parts)
}

/// A token as is, or a quoted string without its quotes and escapes.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return (!value.contains(['"', '\\'])).then(|| value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(out)
}

/// An RFC 7239 node: `ipv4[:port]`, `[ipv6][:port]`, a bare IPv6 address
/// (as `X-Forwarded-For` writes it), `unknown` or `_obfuscated[:port]`.
fn node(text: &str) -> Option<Hop> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(Hop::Known(SocketAddr::new(ip, 0)));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(Hop::Known(addr));
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let ip = inner.parse::<std::net::Ipv6Addr>().ok()?;
        return Some(Hop::Known(SocketAddr::new(ip.into(), 0)));
    }
    let (name, port) = match text.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (text, None),
    };
    let obfuscated = |s: &str| {
        s.len() > 1
            && s.starts_with('_')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    let name_ok = name.eq_ignore_ascii_case("unknown") || obfuscated(name);
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok() || obfuscated(p));
    (name_ok && port_ok).then_some(Hop::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(list).unwrap()
    }

    fn peer(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn resolve(trusted: &[&str], from: &str, pairs: &[(HeaderName, &str)]) -> String {
        proxies(trusted)
            .client_addr(peer(from), &headers(pairs))
            .unwrap()
            .to_string()
    }

    #[test]
    fn ranges_parse_as_cidrs_or_single_addresses() {
        let r: IpRange = "10.1.2.3/8".parse().unwrap();
        assert_eq!(r.to_string(), "10.0.0.0/8");
        assert!(r.contains("10.255.0.1".parse().unwrap()));
        assert!(!r.contains("11.0.0.1".parse().unwrap()));
        assert!(r.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert_eq!(
            "127.0.0.1".parse::<IpRange>().unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!("::1".parse::<IpRange>().unwrap().to_string(), "::1/128");
        let v6: IpRange = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.7".parse().unwrap()));
        assert!(!all.contains("::1".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "proxy.local",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_or_an_empty_list_keeps_the_peer() {
        let xff = [(X_FORWARDED_FOR, "203.0.113.7")];
        assert_eq!(resolve(&[], "127.0.0.1:5000", &xff), "127.0.0.1:5000");
        assert_eq!(
            resolve(&["10.0.0.0/8"], "127.0.0.1:5000", &xff),
            "127.0.0.1:5000"
        );
        assert_eq!(
            resolve(&["127.0.0.1"], "127.0.0.1:5000", &[]),
            "127.0.0.1:5000"
        );
        assert_eq!(
            proxies(&["127.0.0.1"]).client_addr(None, &headers(&xff)),
            None
        );
    }

    #[test]
    fn x_forwarded_for_is_walked_from_the_right() {
        let t = ["127.0.0.1/32", "10.0.0.0/8"];
        let xff = |v| [(X_FORWARDED_FOR, v)];
        assert_eq!(
            resolve(&t, "127.0.0.1:1", &xff("203.0.113.7")),
            "203.0.113.7:0"
        );
        assert_eq!(
            resolve(&t, "127.0.0.1:1", &xff("1.2.3.4, 203.0.113.7")),
            "203.0.113.7:0"
        );
        assert_eq!(
            resolve(&t, "127.0.0.1:1", &xff("198.51.100.9, 10.1.2.3")),
            "198.51.100.9:0"
        );
        assert_eq!(
            resolve(&t, "127.0.0.1:1", &xff("10.9.9.9,10.1.2.3")),
            "10.9.9.9:0"
        );
        assert_eq!(
            resolve(&t, "127.0.0.1:1", &xff("2001:db8::5")),
            "[2001:db8::5]:0"
        );
        assert_eq!(
            resolve(&t, "127.0.0.1:1", &xff("198.51.100.9:4000")),
            "198.51.100.9:4000"
        );
        let two_lines = [
            (X_FORWARDED_FOR, "198.51.100.9"),
            (X_FORWARDED_FOR, "10.0.0.1"),
        ];
        assert_eq!(resolve(&t, "127.0.0.1:1", &two_lines), "198.51.100.9:0");
        let mapped_peer = resolve(&t, "[::ffff:127.0.0.1]:1", &xff("203.0.113.7"));
        assert_eq!(mapped_peer, "203.0.113.7:0");
        let mapped_hop = resolve(&t, "127.0.0.1:1", &xff("::ffff:203.0.113.7, 10.0.0.1"));
        assert_eq!(mapped_hop, "203.0.113.7:0");
    }

    #[test]
    fn forwarded_for_reads_quoted_and_bracketed_nodes() {
        let t = ["127.0.0.1", "10.0.0.0/8"];
        let fwd = |v| [(FORWARDED, v)];
        assert_eq!(
            resolve(&t, "127.0.0.1:1", &fwd("for=\"[2001:db8::1]:4711\"")),
            "[2001:db8::1]:4711"
        );
        assert_eq!(
            resolve(&t, "127.0.0.1:1", &fwd("for=\"[2001:db8::1]\"")),
            "[2001:db8::1]:0"
        );
        assert_eq!(
            resolve(
                &t,
                "127.0.0.1:1",
                &fwd("For=192.0.2.60;proto=http;by=203.0.113.43")
            ),
            "192.0.2.60:0"
        );
        assert_eq!(
            resolve(
                &t,
                "127.0.0.1:1",
                &fwd("for=192.0.2.43, for=198.51.100.17;by=\"a;b,c\", for=10.0.0.1")
            ),
            "198.51.100.17:0"
        );
        assert_eq!(
            resolve(&t, "127.0.0.1:1", &fwd("for=\"192.0.2.43:80\"")),
            "192.0.2.43:80"
        );
        let both = [
            (FORWARDED, "for=192.0.2.1"),
            (X_FORWARDED_FOR, "198.51.100.2"),
        ];
        assert_eq!(resolve(&t, "127.0.0.1:1", &both), "192.0.2.1:0");
    }

    #[test]
    fn unreadable_headers_and_unknown_hops_keep_the_peer() {
        let t = ["127.0.0.1", "10.0.0.0/8"];
        for (name, value) in [
            (X_FORWARDED_FOR, "garbage"),
            (X_FORWARDED_FOR, ""),
            (X_FORWARDED_FOR, "203.0.113.7,,10.0.0.1"),
            (X_FORWARDED_FOR, "unknown"),
            (X_FORWARDED_FOR, "203.0.113.7 10.0.0.1"),
            (FORWARDED, "for=\"[2001:db8::1]:4711"),
            (FORWARDED, "proto=https"),
            (FORWARDED, "for=192.0.2.1;for=192.0.2.2"),
            (FORWARDED, "for=192.0.2.1, for=unknown"),
            (FORWARDED, "for=_hidden, for=10.0.0.1"),
            (FORWARDED, "for"),
            (FORWARDED, "for=\"[2001:db8::1]:x\""),
        ] {
            assert_eq!(
                resolve(&t, "127.0.0.1:9", &[(name.clone(), value)]),
                "127.0.0.1:9",
                "{name}: {value}"
            );
        }
        // An unknown hop left of the client is the client's own business.
        assert_eq!(
            resolve(
                &t,
                "127.0.0.1:9",
                &[(FORWARDED, "for=unknown, for=192.0.2.9")]
            ),
            "192.0.2.9:0"
        );
    }

    #[test]
    fn the_config_form_round_trips_and_names_a_bad_entry() {
        let parsed: TrustedProxies = serde_json::from_str(r#"["10.0.0.1", "fd00::/8"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            r#"["10.0.0.1/32","fd00::/8"]"#
        );
        let one: TrustedProxies = serde_json::from_str(r#""10.0.0.0/8, 127.0.0.1""#).unwrap();
        assert_eq!(one, proxies(&["10.0.0.0/8", "127.0.0.1"]));
        let e = serde_json::from_str::<TrustedProxies>(r#"["10.0.0.0/8", "nginx"]"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("`nginx` is not an IP address or a CIDR range"),
            "{e}"
        );
    }
}
