//! The NOTIFY's Digest answer, sans-IO: reading a SIP response (status line and headers), its
//! `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge, and the `Authorization` /
//! `Proxy-Authorization` line that answers it (RFC 3261 §22.2; RFC 2617 §3.2.2 MD5, with or
//! without `qop=auth`, as RFC 7616 keeps it). The notifier (`innoprov-actors`) only carries the
//! bytes over UDP and waits.

use md5::{Digest as _, Md5};

/// The nonce count of the one answer the notifier sends per challenge.
const NONCE_COUNT: &str = "00000001";

/// A SIP response as far as the notifier reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipResponse {
    /// The status code (`401` of `SIP/2.0 401 Unauthorized`).
    pub status: u16,
    /// The headers in order, names lowercase, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl SipResponse {
    /// Whether this is a provisional answer (1xx), after which the final one is still due.
    pub fn provisional(&self) -> bool {
        self.status < 200
    }

    /// Whether this asks for credentials (`401` or `407`).
    pub fn challenges(&self) -> bool {
        self.status == 401 || self.status == 407
    }
}

/// The status code and headers of a SIP response; `None` for anything else (a request, bytes
/// that are not UTF-8, a status line without a code).
pub fn parse_sip_response(raw: &[u8]) -> Option<SipResponse> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(SipResponse { status, headers })
}

/// A Digest MD5 challenge's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    /// The protection space; part of HA1.
    pub realm: String,
    /// The server's nonce; part of the response.
    pub nonce: String,
    /// Returned unchanged when the server sent one.
    pub opaque: Option<String>,
    /// Whether the server offers `qop=auth` (then the answer carries `nc` and `cnonce`).
    pub qop_auth: bool,
}

impl DigestChallenge {
    /// The challenge in a `WWW-Authenticate` / `Proxy-Authenticate` value; `None` unless it
    /// is Digest with a realm and a nonce and MD5 (named or by default).
    pub fn parse(header: &str) -> Option<DigestChallenge> {
        let params = params(header.trim().strip_prefix("Digest")?);
        let value = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        };
        if value("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("MD5")) {
            return None;
        }
        let qop_auth = value("qop").is_some_and(|q| q.split(',').any(|q| q.trim() == "auth"));
        Some(DigestChallenge {
            realm: value("realm")?,
            nonce: value("nonce")?,
            opaque: value("opaque"),
            qop_auth,
        })
    }

    /// The `response` value for `method` on `uri` (RFC 2617 §3.2.2.1).
    pub fn response(&self, method: &str, user: &str, password: &str, uri: &str, cnonce: &str) -> String {
        let ha1 = md5_hex(&format!("{user}:{}:{password}", self.realm));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let nonce = &self.nonce;
        match self.qop_auth {
            true => md5_hex(&format!("{ha1}:{nonce}:{NONCE_COUNT}:{cnonce}:auth:{ha2}")),
            false => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
        }
    }

    /// The credentials answering this challenge for `method` on `uri` (the header's value).
    pub fn answer(&self, method: &str, user: &str, password: &str, uri: &str, cnonce: &str) -> String {
        let response = self.response(method, user, password, uri, cnonce);
        let (realm, nonce) = (&self.realm, &self.nonce);
        let opaque = self
            .opaque
            .as_ref()
            .map(|o| format!(", opaque=\"{o}\""))
            .unwrap_or_default();
        let qop = match self.qop_auth {
            true => format!(", qop=auth, nc={NONCE_COUNT}, cnonce=\"{cnonce}\""),
            false => String::new(),
        };
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5{qop}{opaque}"
        )
    }
}

/// A challenge's `key=value` parameters, split at the commas outside quoted strings, quotes
/// removed (RFC 7235 §2.1 auth-param).
fn params(text: &str) -> Vec<(String, String)> {
    let mut parts = Vec::new();
    let (mut part, mut quoted) = (String::new(), false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => parts.push(std::mem::take(&mut part)),
            c => part.push(c),
        }
    }
    parts.push(part);
    parts
        .iter()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// Answers a SIP Digest challenge (`WWW-Authenticate` / `Proxy-Authenticate` value) for a
/// NOTIFY to `uri`; `None` when the challenge is not Digest MD5.
pub fn digest_authorization(
    challenge: &str,
    user: &str,
    password: &str,
    uri: &str,
    cnonce: &str,
) -> Option<String> {
    DigestChallenge::parse(challenge).map(|c| c.answer("NOTIFY", user, password, uri, cnonce))
}

/// The header line (`Authorization: …` after a 401, `Proxy-Authorization: …` after a 407)
/// that answers `response`'s first Digest MD5 challenge to a NOTIFY to `uri`; `None` when the
/// response challenges nothing this client can answer.
pub fn notify_authorization(
    response: &SipResponse,
    user: &str,
    password: &str,
    uri: &str,
    cnonce: &str,
) -> Option<String> {
    let (challenge, answer) = match response.status {
        401 => ("www-authenticate", "Authorization"),
        407 => ("proxy-authenticate", "Proxy-Authorization"),
        _ => return None,
    };
    response
        .headers
        .iter()
        .filter(|(name, _)| name == challenge)
        .find_map(|(_, value)| digest_authorization(value, user, password, uri, cnonce))
        .map(|value| format!("{answer}: {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5: the challenge of its example.
    const RFC2617_CHALLENGE: &str = r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;

    #[test]
    fn digest_response_matches_the_rfc_2617_example() {
        // RFC 2617 §3.5: Mufasa / "Circle Of Life", GET /dir/index.html, cnonce 0a4f113b.
        let challenge = DigestChallenge::parse(RFC2617_CHALLENGE).expect("a Digest challenge");
        assert_eq!(challenge.realm, "testrealm@host.com");
        assert_eq!(challenge.nonce, "dcd98b7102dd2f0e8b11d0f600bfb0c093");
        assert_eq!(
            challenge.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        assert!(challenge.qop_auth, "qop=\"auth,auth-int\" offers auth");
        let response = challenge.response("GET", "Mufasa", "Circle Of Life", "/dir/index.html", "0a4f113b");
        assert_eq!(response, "6629fae49393a05397450978507c4ef1");
        let answer = challenge.answer("GET", "Mufasa", "Circle Of Life", "/dir/index.html", "0a4f113b");
        for part in [
            r#"username="Mufasa""#,
            r#"realm="testrealm@host.com""#,
            r#"nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093""#,
            r#"uri="/dir/index.html""#,
            "qop=auth",
            "nc=00000001",
            r#"cnonce="0a4f113b""#,
            r#"response="6629fae49393a05397450978507c4ef1""#,
            r#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        ] {
            assert!(answer.contains(part), "{part} in {answer}");
        }
    }

    #[test]
    fn digest_response_matches_the_rfc_7616_md5_example() {
        // RFC 7616 §3.9.1, MD5: Mufasa / "Circle of Life" (lower-case "of", errata 4495).
        let challenge = DigestChallenge::parse(
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
        )
        .expect("a Digest MD5 challenge");
        assert!(challenge.qop_auth);
        let response = challenge.response(
            "GET",
            "Mufasa",
            "Circle of Life",
            "/dir/index.html",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        assert_eq!(response, "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn digest_answer_for_a_sip_request_matches_the_sipping_example() {
        // draft-smith-sipping-auth-examples §3.2/3.3: bob / zanzibar, INVITE sip:bob@biloxi.com.
        let challenge = DigestChallenge::parse(
            r#"Digest realm="biloxi.com", qop="auth", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093""#,
        )
        .expect("challenge");
        let response = challenge.response("INVITE", "bob", "zanzibar", "sip:bob@biloxi.com", "0a4f113b");
        assert_eq!(response, "89eb0059246c02b2f6ee02c7961d5ea3");
    }

    #[test]
    fn digest_notify_answer_with_and_without_qop() {
        let answer = digest_authorization(
            RFC2617_CHALLENGE,
            "Mufasa",
            "Circle Of Life",
            "/dir/index.html",
            "0a4f113b",
        )
        .expect("answer");
        let expected = DigestChallenge::parse(RFC2617_CHALLENGE)
            .expect("challenge")
            .response(
                "NOTIFY",
                "Mufasa",
                "Circle Of Life",
                "/dir/index.html",
                "0a4f113b",
            );
        assert!(answer.contains(&format!("response=\"{expected}\"")), "{answer}");
        // RFC 2069 style (no qop): MD5(HA1:nonce:HA2), no nc or cnonce.
        let plain =
            digest_authorization(r#"Digest realm="r", nonce="n""#, "u", "p", "sip:u@h", "c").expect("answer");
        let ha1 = md5_hex("u:r:p");
        let ha2 = md5_hex("NOTIFY:sip:u@h");
        assert!(plain.contains(&format!("response=\"{}\"", md5_hex(&format!("{ha1}:n:{ha2}")))));
        assert!(!plain.contains("cnonce") && !plain.contains("opaque"), "{plain}");
    }

    #[test]
    fn digest_refuses_what_it_cannot_answer() {
        assert!(digest_authorization("Basic realm=x", "u", "p", "sip:x", "c").is_none());
        assert!(
            digest_authorization(
                r#"Digest realm="r", nonce="n", algorithm=SHA-256"#,
                "u",
                "p",
                "sip:x",
                "c"
            )
            .is_none()
        );
        assert!(
            digest_authorization(r#"Digest nonce="n""#, "u", "p", "sip:x", "c").is_none(),
            "no realm"
        );
        assert!(
            digest_authorization(r#"Digest realm="r""#, "u", "p", "sip:x", "c").is_none(),
            "no nonce"
        );
        assert!(
            DigestChallenge::parse(r#"Digest realm="r", nonce="n", qop="auth-int""#)
                .is_some_and(|c| !c.qop_auth),
            "auth-int alone is answered without qop"
        );
    }

    #[test]
    fn notify_parses_sip_responses() {
        let raw = b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP x\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\nContent-Length: 0\r\n\r\n";
        let response = parse_sip_response(raw).expect("a response");
        assert_eq!(response.status, 401);
        assert!(response.challenges() && !response.provisional());
        assert_eq!(
            response.headers[1],
            (
                "www-authenticate".into(),
                "Digest realm=\"r\", nonce=\"n\"".into()
            )
        );
        let line = notify_authorization(&response, "u", "p", "sip:u@h", "c").expect("answered");
        assert!(line.starts_with("Authorization: Digest username=\"u\""), "{line}");

        let proxy = parse_sip_response(b"SIP/2.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\n\r\n")
            .expect("a response");
        let line = notify_authorization(&proxy, "u", "p", "sip:u@h", "c").expect("answered");
        assert!(line.starts_with("Proxy-Authorization: Digest "), "{line}");

        let trying = parse_sip_response(b"SIP/2.0 100 Trying\r\n\r\n").expect("a response");
        assert!(trying.provisional());
        assert!(notify_authorization(&trying, "u", "p", "sip:u@h", "c").is_none());
        let ok = parse_sip_response(b"SIP/2.0 200 OK\r\n\r\n").expect("a response");
        assert!(!ok.challenges());
        assert!(
            parse_sip_response(b"NOTIFY sip:x SIP/2.0\r\n\r\n").is_none(),
            "a request"
        );
        assert!(parse_sip_response(b"SIP/2.0 2x\r\n").is_none(), "no code");
        assert!(parse_sip_response(&[0xff, 0xfe]).is_none(), "not UTF-8");
    }
}
