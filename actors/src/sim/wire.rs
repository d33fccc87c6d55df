//! The simulators' own implementations of the AppWebsocket primitives (appwebsocket.md §4.2:
//! textbook RC4, hex, SHA-256 over `:`-joined text), independent of the `innoprov` core.

use sha2::{Digest, Sha256};

/// Textbook RC4 (KSA, then PRGA XOR), whole key, no keystream drop.
pub fn rc4(key: &[u8], data: &mut [u8]) {
    let mut s: [u8; 256] = std::array::from_fn(|i| i as u8);
    let mut j: u8 = 0;
    for i in 0..256 {
        j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
        s.swap(i, j as usize);
    }
    let (mut i, mut j) = (0u8, 0u8);
    for byte in data.iter_mut() {
        i = i.wrapping_add(1);
        j = j.wrapping_add(s[i as usize]);
        s.swap(i as usize, j as usize);
        *byte ^= s[s[i as usize].wrapping_add(s[j as usize]) as usize];
    }
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| {
            [
                DIGITS[(b >> 4) as usize] as char,
                DIGITS[(b & 15) as usize] as char,
            ]
        })
        .collect()
}

/// Lowercase hex SHA-256 of text.
pub fn sha256_hex(text: &str) -> String {
    to_hex(&Sha256::digest(text.as_bytes()))
}

/// The session key both ends derive after a login.
pub fn session_key(challenge: &str, password: &str) -> String {
    sha256_hex(&format!("innovaphoneAppSessionKey:{challenge}:{password}"))
}

/// AppWebsocket Encrypt as a peer computes it.
pub fn encrypt(seed: &str, key: &str, plaintext: &str) -> String {
    let mut data = plaintext.as_bytes().to_vec();
    rc4(format!("{seed}:{key}").as_bytes(), &mut data);
    to_hex(&data)
}

/// A JSON string literal as JSON.stringify writes it.
pub fn json_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vectors() {
        let mut data = b"Plaintext".to_vec();
        rc4(b"Key", &mut data);
        assert_eq!(to_hex(&data), "bbf316e8d940af0ad3");
        let k1 = session_key("0123456789abcdef", "pwd");
        assert_eq!(
            k1,
            "d58c77eae0c1c1f37a9f545e207643c926ad9ea4932016a83a4a01029de37760"
        );
        assert_eq!(encrypt("seed1", &k1, "secret"), "8c0a8a363ecb");
        let k3 = session_key("a1b2c3d4e5f60718", "secret");
        assert_eq!(encrypt("10046478319880090512700", &k3, "1234"), "601c2609");
        assert_eq!(json_str("a\"\\/\u{1}é"), "\"a\\\"\\\\/\\u0001é\"");
    }
}
