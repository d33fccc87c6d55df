//! Reading a reverse proxy's forwarding headers: the client from `X-Forwarded-For` when present
//! (what common proxies set), else from `Forwarded` (RFC 7239); scheme and host from
//! `Forwarded`, else `X-Forwarded-Proto` / `-Host`. Only called for requests whose TCP peer is in
//! `http.trusted_proxies`; anyone else's headers are ignored, since they would let a client
//! pick the address its misses are counted against or the URL written into its file.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderMap;

/// Longest header value looked at; a longer chain is a client's invention, not a proxy's.
const MAX_HEADER_BYTES: usize = 2048;

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.len() <= MAX_HEADER_BYTES)
        .collect()
}

/// A node of `Forwarded`'s `for=` (`192.0.2.1`, `"[2001:db8::1]:4711"`, `"192.0.2.1:80"`).
fn parse_node(text: &str) -> Option<SocketAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

/// Every `Forwarded` element's parameters, in order (nearest proxy last).
fn forwarded_elements(headers: &HeaderMap) -> Vec<Vec<(String, String)>> {
    values(headers, "forwarded")
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((
                        k.trim().to_ascii_lowercase(),
                        v.trim().trim_matches('"').to_string(),
                    ))
                })
                .collect()
        })
        .collect()
}

/// `http.trusted_proxies`: whose forwarding headers name the client. Every door counts a
/// client by the address this gives (websocket login slots and throttle, admin throttle,
/// download limits and audit), so that behind a proxy each client has its own budget.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<innoprov::config::IpNet>);

impl TrustedProxies {
    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client of a request from `peer` with `headers`: the peer itself, or behind a
    /// trusted proxy the address it forwarded for; `None` when a trusted proxy's headers name
    /// no usable client.
    pub fn client(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<SocketAddr> {
        let peer = peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        if !self.contains(peer.ip()) {
            return Some(peer);
        }
        client(headers, &|ip| self.contains(ip)).ok()
    }
}

/// The client as the proxies saw it: walking from the nearest hop back, the first address that
/// is not itself a trusted proxy. One header family is read: `X-Forwarded-For` when present
/// (what common proxies set, appending to whatever the client sent), else `Forwarded`; a hop
/// that does not parse ends the walk. `Err` when the headers name no usable client (missing,
/// too long, or unparseable where it matters): the caller refuses the request rather than
/// count it against the proxy.
pub fn client(headers: &HeaderMap, trusted: &dyn Fn(IpAddr) -> bool) -> Result<SocketAddr, NoClient> {
    let too_long = |name: &str| headers.get_all(name).any(|v| v.len() > MAX_HEADER_BYTES);
    if too_long("x-forwarded-for") || too_long("forwarded") {
        return Err(NoClient);
    }
    let xff = values(headers, "x-forwarded-for");
    let hops: Vec<Option<SocketAddr>> = if !xff.is_empty() {
        xff.into_iter()
            .flat_map(|v| v.split(','))
            .map(parse_node)
            .collect()
    } else {
        forwarded_elements(headers)
            .iter()
            .map(|params| {
                params
                    .iter()
                    .find(|(k, _)| k == "for")
                    .and_then(|(_, v)| parse_node(v))
            })
            .collect()
    };
    let mut last = None;
    for hop in hops.into_iter().rev() {
        let hop = hop.ok_or(NoClient)?;
        if !trusted(hop.ip()) {
            return Ok(hop);
        }
        last = Some(hop);
    }
    // Every hop is a trusted proxy: the farthest one is the best we know.
    last.ok_or(NoClient)
}

/// A trusted proxy's headers name no usable client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the forwarding headers name no usable client")]
pub struct NoClient;

/// Whether `host` can go into a URL as its authority (letters, digits, `.-:[]`).
pub fn plausible_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

/// The scheme and host the client used, from the farthest proxy's view.
pub fn proto_and_host(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let elements = forwarded_elements(headers);
    let first_of = |key: &str| {
        elements
            .iter()
            .find_map(|params| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    };
    let first_value = |name: &str| {
        values(headers, name)
            .first()
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
    };
    let proto = first_of("proto")
        .or_else(|| first_value("x-forwarded-proto"))
        .map(|p| p.to_ascii_lowercase())
        .filter(|p| p == "http" || p == "https");
    let host = first_of("host")
        .or_else(|| first_value("x-forwarded-host"))
        .filter(|h| plausible_host(h));
    (proto, host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn proxy(ip: IpAddr) -> bool {
        ip == IpAddr::from([10, 0, 0, 1]) || ip == IpAddr::from([10, 0, 0, 2])
    }

    #[test]
    fn nearest_untrusted_hop_is_the_client() {
        let h = headers(&[("x-forwarded-for", "198.51.100.7, 203.0.113.9, 10.0.0.2")]);
        assert_eq!(client(&h, &proxy).unwrap().ip(), IpAddr::from([203, 0, 113, 9]));
        // An unparseable hop nearer than any usable one ends the walk: no guessing.
        let h = headers(&[("x-forwarded-for", "198.51.100.7, unknown, 10.0.0.2")]);
        assert!(client(&h, &proxy).is_err());
        let long = format!("192.0.2.1{}", ", 192.0.2.1".repeat(300));
        assert!(client(&headers(&[("x-forwarded-for", long.as_str())]), &proxy).is_err());
        let h = headers(&[(
            "forwarded",
            "for=198.51.100.7;proto=https;host=prov.example.com, for=\"[2001:db8::1]:4711\"",
        )]);
        assert_eq!(client(&h, &proxy).unwrap().to_string(), "[2001:db8::1]:4711");
        assert_eq!(
            proto_and_host(&h),
            (Some("https".into()), Some("prov.example.com".into()))
        );
        // X-Forwarded-For wins: a proxy that sets it passes the client's own Forwarded on.
        let h = headers(&[("forwarded", "for=192.0.2.3"), ("x-forwarded-for", "192.0.2.4")]);
        assert_eq!(client(&h, &proxy).unwrap().ip(), IpAddr::from([192, 0, 2, 4]));
        assert!(client(&headers(&[]), &proxy).is_err());
        assert!(client(&headers(&[("x-forwarded-for", "garbage")]), &proxy).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_forwarding_headers_never_panic(value in "[ -~]{0,120}") {
            for name in ["forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    let mut map = HeaderMap::new();
                    map.append(HeaderName::from_static(name), v);
                    let _ = client(&map, &proxy);
                    let _ = proto_and_host(&map);
                }
            }
        }
    }

    #[test]
    fn implausible_hosts_and_schemes_are_ignored() {
        let h = headers(&[
            ("x-forwarded-proto", "javascript"),
            ("x-forwarded-host", "evil.example/x?"),
        ]);
        assert_eq!(proto_and_host(&h), (None, None));
    }
}
