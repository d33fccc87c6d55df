//! HTTP authentication of phone downloads: Basic and Digest (RFC 7616, MD5 and SHA-256, as
//! phones implement it), with stateless nonces that expire.

use std::collections::HashMap;

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

/// Issues and checks Digest nonces without server state: `time:hmac(time)`.
#[derive(Clone)]
pub struct NonceKey([u8; 32]);

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
        NonceKey(key)
    }

    fn tag(&self, time: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(time.to_be_bytes());
        hex::encode(&h.finalize()[..12])
    }

    /// A nonce issued at `now` (Unix seconds).
    pub fn issue(&self, now: u64) -> String {
        format!("{now:x}{}", self.tag(now))
    }

    /// Whether `nonce` was issued by this key less than [`NONCE_LIFETIME_SECS`] ago.
    pub fn valid(&self, nonce: &str, now: u64) -> bool {
        if nonce.len() <= 24 {
            return false;
        }
        let (time, tag) = nonce.split_at(nonce.len() - 24);
        let Ok(time) = u64::from_str_radix(time, 16) else {
            return false;
        };
        time <= now
            && now - time < NONCE_LIFETIME_SECS
            && crate::appws::crypto::digest_matches(&self.tag(time), tag)
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

/// Whether `credentials` prove knowledge of `user`/`password` for a `method` request of `path`.
pub fn verify(
    credentials: &Credentials,
    method: &str,
    path: &str,
    user: &str,
    password: &str,
    nonces: &NonceKey,
    now: u64,
) -> bool {
    let same = crate::appws::crypto::digest_matches;
    match credentials {
        Credentials::Basic { user: u, password: p } => same(u, user) & same(p, password),
        Credentials::Digest(f) => {
            let get = |k: &str| f.get(k).map_or("", String::as_str);
            if !same(get("username"), user) || get("realm") != REALM || !nonces.valid(get("nonce"), now) {
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
            expected.is_some_and(|e| same(&e, &get("response").to_ascii_lowercase()))
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
        assert!(verify(&basic, "GET", "/p", "user", "pass:word", &keys, 100));
        assert!(!verify(&basic, "GET", "/p", "user", "other", &keys, 100));

        let nonce = keys.issue(1000);
        let ha1 = hash_hex("MD5", &format!("u:{REALM}:pw")).unwrap();
        let ha2 = hash_hex("MD5", "GET:/prov/x.cfg").unwrap();
        let response = hash_hex("MD5", &format!("{ha1}:{nonce}:00000001:abc:auth:{ha2}")).unwrap();
        let header = format!(
            "Digest username=\"u\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"/prov/x.cfg\", qop=auth, nc=00000001, cnonce=\"abc\", response=\"{response}\", algorithm=MD5"
        );
        let digest = parse_authorization(&header).unwrap();
        assert!(verify(&digest, "GET", "/prov/x.cfg", "u", "pw", &keys, 1010));
        assert!(
            !verify(&digest, "GET", "/prov/y.cfg", "u", "pw", &keys, 1010),
            "other uri"
        );
        assert!(
            !verify(&digest, "GET", "/prov/x.cfg", "u", "pw2", &keys, 1010),
            "other password"
        );
        assert!(
            !verify(
                &digest,
                "GET",
                "/prov/x.cfg",
                "u",
                "pw",
                &keys,
                1000 + NONCE_LIFETIME_SECS
            ),
            "expired"
        );
        assert!(
            !verify(
                &digest,
                "GET",
                "/prov/x.cfg",
                "u",
                "pw",
                &NonceKey::random(),
                1010
            ),
            "foreign nonce"
        );
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
