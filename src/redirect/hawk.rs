//! Hawk request authentication (the scheme Snom SRAPS and Gigaset GRAPE take), client side:
//! the `Authorization: Hawk id=…, ts=…, nonce=…, hash=…, mac=…` header of one request. The
//! normalized strings follow the Hawk specification (hueniverse/hawk, "Protocol Example" and
//! "Payload Validation"); docs/redirect/snom-gigaset.md gives the sources.

use base64::Engine;
use sha2::{Digest, Sha256};

/// HMAC-SHA256 (RFC 2104): the MAC Hawk computes over its normalized string.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| -> [u8; BLOCK] { std::array::from_fn(|i| block[i] ^ byte) };
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Hawk's payload hash: SHA-256 over `hawk.1.payload\n<content type>\n<payload>\n`, the content
/// type without parameters and in lower case.
pub fn payload_hash(content_type: &str, payload: &[u8]) -> String {
    let content_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let mut hasher = Sha256::new();
    hasher.update(format!("hawk.1.payload\n{content_type}\n").as_bytes());
    hasher.update(payload);
    hasher.update(b"\n");
    b64(&hasher.finalize())
}

/// One request as Hawk sees it.
#[derive(Debug, Clone)]
pub struct HawkRequest<'a> {
    /// `GET`, `PUT`, ...
    pub method: &'a str,
    /// The path with its query, as sent.
    pub resource: &'a str,
    /// The host, in lower case, without port.
    pub host: &'a str,
    /// The port (443 for https without one).
    pub port: u16,
    /// The payload hash ([`payload_hash`]); `None` for a request without a body.
    pub hash: Option<&'a str>,
    /// Application data (`ext`), none for the redirect services.
    pub ext: Option<&'a str>,
}

/// The credentials: key id and secret, algorithm sha256.
#[derive(Clone)]
pub struct HawkKey<'a> {
    /// The key's id (Snom: the access key id).
    pub id: &'a str,
    /// The shared secret.
    pub secret: &'a [u8],
}

/// The request's MAC over
/// `hawk.1.header\n<ts>\n<nonce>\n<METHOD>\n<resource>\n<host>\n<port>\n<hash>\n<ext>\n`.
pub fn request_mac(key: &HawkKey<'_>, request: &HawkRequest<'_>, ts: u64, nonce: &str) -> String {
    let normalized = format!(
        "hawk.1.header\n{ts}\n{nonce}\n{}\n{}\n{}\n{}\n{}\n{}\n",
        request.method.to_ascii_uppercase(),
        request.resource,
        request.host.to_ascii_lowercase(),
        request.port,
        request.hash.unwrap_or_default(),
        request.ext.unwrap_or_default(),
    );
    b64(&hmac_sha256(key.secret, normalized.as_bytes()))
}

/// The `Authorization` header value for `request` at `ts` (Unix seconds) with `nonce`.
pub fn authorization(key: &HawkKey<'_>, request: &HawkRequest<'_>, ts: u64, nonce: &str) -> String {
    let mac = request_mac(key, request, ts, nonce);
    let hash = request
        .hash
        .map(|h| format!(", hash=\"{h}\""))
        .unwrap_or_default();
    let ext = request.ext.map(|e| format!(", ext=\"{e}\"")).unwrap_or_default();
    format!(
        "Hawk id=\"{}\", ts=\"{ts}\", nonce=\"{nonce}\"{hash}{ext}, mac=\"{mac}\"",
        key.id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    /// The Hawk specification's two examples (docs/redirect/snom-gigaset.md, vectors A and B).
    #[test]
    fn the_specifications_examples() {
        let key = HawkKey {
            id: "dh37fgj492je",
            secret: b"werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn",
        };
        let mut request = HawkRequest {
            method: "GET",
            resource: "/resource/1?b=1&a=2",
            host: "example.com",
            port: 8000,
            hash: None,
            ext: Some("some-app-ext-data"),
        };
        assert_eq!(
            request_mac(&key, &request, 1353832234, "j4h3g2"),
            "6R4rV5iE+NPoym+WwjeHzjAGXUtLNIxmo1vpMofpLAE="
        );
        let hash = payload_hash("text/plain", b"Thank you for flying Hawk");
        assert_eq!(hash, "Yi9LfIIFRtBEPt74PVmbTF/xVAwPn7ub15ePICfgnuY=");
        request.method = "POST";
        request.hash = Some(&hash);
        assert_eq!(
            request_mac(&key, &request, 1353832234, "j4h3g2"),
            "aSe1DERmZuRl3pI36/9BdZmnErTw3sNzOOAUlfeKjVw="
        );
        let header = authorization(&key, &request, 1353832234, "j4h3g2");
        assert!(
            header.starts_with("Hawk id=\"dh37fgj492je\", ts=\"1353832234\", nonce=\"j4h3g2\", hash=\"Yi9L")
        );
        assert!(header.ends_with("mac=\"aSe1DERmZuRl3pI36/9BdZmnErTw3sNzOOAUlfeKjVw=\""));
    }
}
