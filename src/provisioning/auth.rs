//! HTTP authentication of phone downloads: Basic and Digest (RFC 7616, MD5 and SHA-256, as
//! phones implement it), with stateless nonces that expire.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use md5::{Digest as _, Md5};
use sha2::Sha256;

/// Realm of the provisioning credentials.
pub const REALM: &str = "innoprov";
/// How long a Digest nonce stays valid.
pub const NONCE_LIFETIME_SECS: u64 = 300;

/// Credentials as a client sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Basic base64(user:password)`.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// `Digest k=v, ...`.
    Digest(HashMap<String, String>),
}

impl Credentials {
    /// The user name the client claims.
    pub fn user(&self) -> &str {
        match self {
            Credentials::Basic { user, .. } => user,
            Credentials::Digest(fields) => fields.get("username").map_or("", String::as_str),
        }
    }
}

/// Parses an `Authorization` header; `None` for anything else.
pub fn parse_authorization(header: &str) -> Option<Credentials> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("basic") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (user, password) = text.split_once(':')?;
        return Some(Credentials::Basic {
            user: user.into(),
            password: password.into(),
        });
    }
    if scheme.eq_ignore_ascii_case("digest") {
        return Some(Credentials::Digest(parse_params(rest)));
    }
    None
}

/// `k=v, k="v, with comma"` into a map (keys lowercase).
fn parse_params(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            value.push(next);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// Most nonces whose highest nonce-count is remembered (replays of older counts are refused).
const MAX_TRACKED_NONCES: usize = 100_000;

/// Issues and checks Digest nonces: `time ‖ mac(time, client)`, so a nonce is good only for
/// the address it was issued to and for [`NONCE_LIFETIME_SECS`]; with `qop=auth`, each
/// nonce-count is accepted once and only rising (RFC 7616 §3.4: the server may refuse a
/// repeated `nc`).
#[derive(Clone)]
pub struct NonceKey {
    /// The MAC key.
    key: [u8; 32],
    /// The highest `nc` accepted per nonce.
    counts: Arc<Mutex<HashMap<String, u64>>>,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

impl NonceKey {
    /// A fresh random key (nonces do not survive a restart; phones simply retry).
    pub fn random() -> NonceKey {
        let mut key = [0u8; 32];
        let _ = getrandom::fill(&mut key);
        NonceKey {
            key,
            counts: Arc::default(),
        }
    }

    fn tag(&self, time: u64, salt: u32, client: IpAddr) -> String {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(time.to_be_bytes());
        h.update(salt.to_be_bytes());
        match client {
            IpAddr::V4(ip) => h.update(ip.to_ipv6_mapped().octets()),
            IpAddr::V6(ip) => h.update(ip.octets()),
        }
        hex::encode(&h.finalize()[..12])
    }

    /// A nonce issued at `now` (Unix seconds) to `client`; a random salt makes every nonce
    /// different, so nonce-counts of two challenges never collide.
    pub fn issue(&self, now: u64, client: IpAddr) -> String {
        let mut salt = [0u8; 4];
        let _ = getrandom::fill(&mut salt);
        let salt = u32::from_be_bytes(salt);
        format!("{now:x}{salt:08x}{}", self.tag(now, salt, client))
    }

    /// Whether `nonce` was issued by this key to `client` less than [`NONCE_LIFETIME_SECS`] ago.
    pub fn valid(&self, nonce: &str, now: u64, client: IpAddr) -> bool {
        if nonce.len() <= 32 || nonce.len() > 32 + 16 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let (time_salt, tag) = nonce.split_at(nonce.len() - 24);
        let (time, salt) = time_salt.split_at(time_salt.len() - 8);
        let (Ok(time), Ok(salt)) = (u64::from_str_radix(time, 16), u32::from_str_radix(salt, 16)) else {
            return false;
        };
        time <= now
            && now - time < NONCE_LIFETIME_SECS
            && crate::appws::crypto::digest_matches(&self.tag(time, salt, client), tag)
    }

    /// Accepts `nc` (8 hex digits) for `nonce` only if it is higher than every count accepted
    /// for it before.
    fn fresh_count(&self, nonce: &str, nc: &str) -> bool {
        if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let Ok(count) = u64::from_str_radix(nc, 16) else {
            return false;
        };
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= MAX_TRACKED_NONCES && !counts.contains_key(nonce) {
            // Nonces live five minutes: forgetting them all at this size costs a phone at most
            // one more challenge.
            counts.clear();
        }
        match counts.get(nonce) {
            Some(&seen) if count <= seen => false,
            _ => {
                counts.insert(nonce.to_string(), count);
                true
            }
        }
    }
}

/// The `WWW-Authenticate` values of a 401: Digest (MD5 and SHA-256) and Basic.
pub fn challenges(nonce: &str) -> [String; 3] {
    [
        format!("Digest realm=\"{REALM}\", qop=\"auth\", algorithm=SHA-256, nonce=\"{nonce}\""),
        format!("Digest realm=\"{REALM}\", qop=\"auth\", algorithm=MD5, nonce=\"{nonce}\""),
        format!("Basic realm=\"{REALM}\""),
    ]
}

fn hash_hex(algorithm: &str, text: &str) -> Option<String> {
    match algorithm.to_ascii_uppercase().as_str() {
        "" | "MD5" => Some(hex::encode(Md5::digest(text.as_bytes()))),
        "SHA-256" => Some(hex::encode(Sha256::digest(text.as_bytes()))),
        _ => None,
    }
}

/// Whether `credentials` prove knowledge of `user`/`password` for a `method` request of `path`
/// from `client`.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    credentials: &Credentials,
    method: &str,
    path: &str,
    user: &str,
    password: &str,
    nonces: &NonceKey,
    now: u64,
    client: IpAddr,
) -> bool {
    let same = crate::appws::crypto::digest_matches;
    match credentials {
        Credentials::Basic { user: u, password: p } => same(u, user) & same(p, password),
        Credentials::Digest(f) => {
            let get = |k: &str| f.get(k).map_or("", String::as_str);
            if !same(get("username"), user)
                || get("realm") != REALM
                || !nonces.valid(get("nonce"), now, client)
            {
                return false;
            }
            // The uri must be this request's (with or without a query).
            let uri = get("uri");
            if uri != path && uri.split('?').next() != Some(path) {
                return false;
            }
            let algorithm = get("algorithm");
            let Some(ha1) = hash_hex(algorithm, &format!("{user}:{REALM}:{password}")) else {
                return false;
            };
            let Some(ha2) = hash_hex(algorithm, &format!("{method}:{uri}")) else {
                return false;
            };
            let expected = match get("qop") {
                "" => hash_hex(algorithm, &format!("{ha1}:{}:{ha2}", get("nonce"))),
                "auth" => hash_hex(
                    algorithm,
                    &format!(
                        "{ha1}:{}:{}:{}:auth:{ha2}",
                        get("nonce"),
                        get("nc"),
                        get("cnonce")
                    ),
                ),
                _ => None,
            };
            // The nonce-count is checked last, so a wrong response cannot use up a count. Every
            // challenge offers qop=auth; an answer without it (RFC 2069) has no count and could
            // be replayed, so it is refused.
            get("qop") == "auth"
                && expected.is_some_and(|e| same(&e, &get("response").to_ascii_lowercase()))
                && nonces.fresh_count(get("nonce"), get("nc"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7616_sha256_example() {
        // RFC 7616 §3.9.1 (Mufasa), with our realm-independent parts checked by recomputation.
        let ha1 = hash_hex("SHA-256", "Mufasa:http-auth@example.org:Circle of Life").unwrap();
        let ha2 = hash_hex("SHA-256", "GET:/dir/index.html").unwrap();
        let response = hash_hex(
            "SHA-256",
            &format!("{ha1}:7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v:00000001:f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ:auth:{ha2}"),
        )
        .unwrap();
        assert_eq!(
            response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn basic_and_digest_round_trip() {
        let keys = NonceKey::random();
        let basic = parse_authorization("Basic dXNlcjpwYXNzOndvcmQ=").unwrap();
        assert_eq!(
            basic,
            Credentials::Basic {
                user: "user".into(),
                password: "pass:word".into()
            }
        );
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other_ip: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(verify(&basic, "GET", "/p", "user", "pass:word", &keys, 100, ip));
        assert!(!verify(&basic, "GET", "/p", "user", "other", &keys, 100, ip));

        let nonce = keys.issue(1000, ip);
        let ha1 = hash_hex("MD5", &format!("u:{REALM}:pw")).unwrap();
        let ha2 = hash_hex("MD5", "GET:/prov/x.cfg").unwrap();
        let response = hash_hex("MD5", &format!("{ha1}:{nonce}:00000001:abc:auth:{ha2}")).unwrap();
        let header = format!(
            "Digest username=\"u\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"/prov/x.cfg\", qop=auth, nc=00000001, cnonce=\"abc\", response=\"{response}\", algorithm=MD5"
        );
        let digest = parse_authorization(&header).unwrap();
        assert!(
            !verify(&digest, "GET", "/prov/x.cfg", "u", "pw", &keys, 1010, other_ip),
            "a nonce is good only for the address it was issued to"
        );
        assert!(verify(&digest, "GET", "/prov/x.cfg", "u", "pw", &keys, 1010, ip));
        assert!(
            !verify(&digest, "GET", "/prov/x.cfg", "u", "pw", &keys, 1011, ip),
            "the same nonce-count again is a replay"
        );
        let next = |nc: &str| {
            let response = hash_hex("MD5", &format!("{ha1}:{nonce}:{nc}:abc:auth:{ha2}")).unwrap();
            parse_authorization(&format!(
                "Digest username=\"u\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"/prov/x.cfg\", qop=auth, nc={nc}, cnonce=\"abc\", response=\"{response}\", algorithm=MD5"
            ))
            .unwrap()
        };
        assert!(
            verify(
                &next("00000002"),
                "GET",
                "/prov/x.cfg",
                "u",
                "pw",
                &keys,
                1012,
                ip
            ),
            "rising counts"
        );
        assert!(
            !verify(
                &next("+0000003"),
                "GET",
                "/prov/x.cfg",
                "u",
                "pw",
                &keys,
                1012,
                ip
            ),
            "nc is 8 hex digits"
        );
        assert!(
            !verify(&digest, "GET", "/prov/y.cfg", "u", "pw", &keys, 1010, ip),
            "other uri"
        );
        assert!(
            !verify(
                &next("00000005"),
                "GET",
                "/prov/x.cfg",
                "u",
                "pw2",
                &keys,
                1010,
                ip
            ),
            "other password"
        );
        assert!(
            !verify(
                &next("00000006"),
                "GET",
                "/prov/x.cfg",
                "u",
                "pw",
                &keys,
                1000 + NONCE_LIFETIME_SECS,
                ip
            ),
            "expired"
        );
        assert!(
            !verify(
                &next("00000007"),
                "GET",
                "/prov/x.cfg",
                "u",
                "pw",
                &NonceKey::random(),
                1010,
                ip
            ),
            "foreign nonce"
        );
        assert!(
            !keys.valid(&format!("+{nonce}"), 1010, ip),
            "a '+' sign is not hex"
        );
        assert_ne!(keys.issue(1010, ip), keys.issue(1010, ip), "every nonce differs");
        // RFC 2069 (no qop, no count): replayable, refused.
        let bare = keys.issue(1010, ip);
        let response = hash_hex("MD5", &format!("{ha1}:{bare}:{ha2}")).unwrap();
        let rfc2069 = parse_authorization(&format!(
            "Digest username=\"u\", realm=\"{REALM}\", nonce=\"{bare}\", uri=\"/prov/x.cfg\", response=\"{response}\""
        ))
        .unwrap();
        assert!(!verify(
            &rfc2069,
            "GET",
            "/prov/x.cfg",
            "u",
            "pw",
            &keys,
            1011,
            ip
        ));
    }

    #[test]
    fn garbage_headers_are_ignored() {
        for h in [
            "",
            "Basic",
            "Basic !!!",
            "Bearer x",
            "Digest",
            "Digest a",
            "Digest a=\"unterminated",
        ] {
            let _ = parse_authorization(h);
        }
        assert_eq!(parse_params("a=1, b=\"x, \\\"y\\\"\", c=3")["b"], "x, \"y\"");
    }
}
