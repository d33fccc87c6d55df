//! The AppWebsocket cryptography of appwebsocket.md §3.4 and §4: the login digest, the session
//! key and the RC4-based Encrypt / Decrypt / Hash that carry secrets such as the user password
//! in ProvisioningPhone.

use rc4::{KeyInit, Rc4, StreamCipher};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Number of random bytes in a challenge; hex-encoded they give the 16 characters the SDK sends.
const CHALLENGE_BYTES: usize = 8;

/// A fresh login challenge: 8 bytes from the operating system's CSPRNG, lowercase hex.
pub fn new_challenge() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; CHALLENGE_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Lowercase hex SHA-256 of `text`.
pub fn sha256_hex(text: &[u8]) -> String {
    hex::encode(Sha256::digest(text))
}

/// The identity fields an AppLogin digest covers, in the order they are hashed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginFields<'a> {
    /// The app name: the last path segment of the App object URL.
    pub app: &'a str,
    /// The PBX's system name (or the instance domain for password logins).
    pub domain: &'a str,
    /// SIP name of the logging-in object.
    pub sip: &'a str,
    /// GUID of the logging-in object, hex.
    pub guid: &'a str,
    /// Display name of the logging-in object.
    pub dn: &'a str,
}

/// `info` re-serialised the way the SDK's encoder writes it: members in received order, no
/// whitespace, only `"` `\` and control characters escaped (control characters as lowercase
/// `\u00xx` unless they have a short form), `/` and non-ASCII raw. serde_json with
/// `preserve_order` writes exactly this.
pub fn compact_json(value: &impl serde::Serialize) -> String {
    // Serialising a `Value` or a map of them cannot fail: their keys are always strings.
    serde_json::to_string(value).unwrap_or_default()
}

/// The AppLogin digest: SHA-256 over `app:domain:sip:guid:dn[:info]:challenge:password`,
/// where `:info` is present if and only if the message carried an `info` member.
pub fn login_digest(
    fields: &LoginFields<'_>,
    info: Option<&Value>,
    challenge: &str,
    password: &str,
) -> String {
    let mut text = String::with_capacity(256);
    for part in [fields.app, fields.domain, fields.sip, fields.guid, fields.dn] {
        text.push_str(part);
        text.push(':');
    }
    if let Some(info) = info {
        text.push_str(&compact_json(info));
        text.push(':');
    }
    text.push_str(challenge);
    text.push(':');
    text.push_str(password);
    sha256_hex(text.as_bytes())
}

/// Exact comparison as the SDK does it (`strcmp` of lowercase hex), so an uppercase digest
/// fails; in constant time over the whole length (`subtle`), to give no timing hint.
pub fn digest_matches(expected: &str, received: &str) -> bool {
    use subtle::ConstantTimeEq;
    let (a, b) = (expected.as_bytes(), received.as_bytes());
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The per-connection session key: hex SHA-256 of `innovaphoneAppSessionKey:challenge:password`.
pub fn session_key(challenge: &str, password: &str) -> String {
    sha256_hex(format!("innovaphoneAppSessionKey:{challenge}:{password}").as_bytes())
}

/// RC4 over `data` in place with key bytes `seed ":" key` (whole key, no keystream drop).
fn rc4_in_place(seed: &str, key: &str, data: &mut [u8]) {
    let key_bytes = format!("{seed}:{key}");
    // RC4 accepts keys of 1..=256 bytes; ours always has the ':' and is shortened to the
    // 256 bytes RC4's key schedule can use anyway.
    let key_bytes = &key_bytes.as_bytes()[..key_bytes.len().min(256)];
    if let Ok(mut cipher) = Rc4::new_from_slice(key_bytes) {
        cipher.apply_keystream(data);
    }
}

/// AppWebsocket Encrypt: RC4 under `seed:key` over the UTF-8 text, lowercase hex out.
pub fn encrypt(seed: &str, key: &str, plaintext: &str) -> String {
    let mut bytes = plaintext.as_bytes().to_vec();
    rc4_in_place(seed, key, &mut bytes);
    hex::encode(bytes)
}

/// Why a ciphertext could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// The ciphertext is not an even-length string of hex digits.
    #[error("not hex")]
    NotHex,
    /// The decrypted bytes are not UTF-8: wrong key, seed or session.
    #[error("does not decrypt to UTF-8 text")]
    NotText,
}

/// AppWebsocket Decrypt: hex (either case) in, RC4 under `seed:key`, UTF-8 text out.
pub fn decrypt(seed: &str, key: &str, ciphertext_hex: &str) -> Result<String, DecryptError> {
    let mut bytes = hex::decode(ciphertext_hex).map_err(|_| DecryptError::NotHex)?;
    rc4_in_place(seed, key, &mut bytes);
    String::from_utf8(bytes).map_err(|_| DecryptError::NotText)
}

/// AppWebsocket Hash: hex SHA-256 of `seed:key:data`.
pub fn hash(seed: &str, key: &str, data: &str) -> String {
    sha256_hex(format!("{seed}:{key}:{data}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn no_info(app: &str, domain: &str, sip: &str, guid: &str, dn: &str) -> LoginFields<'static> {
        LoginFields {
            app: app.to_string().leak(),
            domain: domain.to_string().leak(),
            sip: sip.to_string().leak(),
            guid: guid.to_string().leak(),
            dn: dn.to_string().leak(),
        }
    }

    #[test]
    fn classic_rc4_vectors() {
        // RC4 with the key given directly: use an empty seed is impossible (':' is added), so
        // check the cipher itself through the crate as the spec's script does.
        let mut data = b"Plaintext".to_vec();
        Rc4::new_from_slice(b"Key")
            .map(|mut c| c.apply_keystream(&mut data))
            .ok();
        assert_eq!(hex::encode(&data), "bbf316e8d940af0ad3");
        let mut data = b"Attack at dawn".to_vec();
        Rc4::new_from_slice(b"Secret")
            .map(|mut c| c.apply_keystream(&mut data))
            .ok();
        assert_eq!(hex::encode(&data), "45a01f645fc35b383552544b9bf5");
    }

    #[test]
    fn d1_doc_example_without_info() {
        let f = no_info("pbxadminapi", "", "", "", "");
        assert_eq!(
            login_digest(&f, None, "0123456789abcdef", "pwd"),
            "a205299ed2ef2786c311e0be1b14db343f2cadd906a6ae7b564eee34bda5e9a1"
        );
    }

    fn digest_of_message(raw: &str, challenge: &str, password: &str) -> (String, String) {
        let v: Value = serde_json::from_str(raw).unwrap();
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
        let f = LoginFields {
            app: s("app"),
            domain: s("domain"),
            sip: s("sip"),
            guid: s("guid"),
            dn: s("dn"),
        };
        (
            login_digest(&f, v.get("info"), challenge, password),
            s("digest").to_string(),
        )
    }

    #[test]
    fn d2_d3_sdk_doc_examples_with_info() {
        // SDK AppWebsocket.htm examples 2, 3 and 4, pretty-printed there: the digest covers the
        // compact re-serialisation, not the received text.
        let ex2 = r#"{"app": "pbxadminapi", "digest": "57b23fe824b9222a7ac879597cb509bcdc865a1bfeb057d9d12118cef0c3ba34",
            "dn": "", "domain": "", "guid": "", "info": {}, "mt": "AppLogin", "sip": ""}"#;
        let ex3 = r#"{"app": "pbxadminapi", "digest": "96db3c3f657230c2b68194becc6d2a77f05de9f79f01fc81e9ca0fb196b10d9d",
            "dn": "", "domain": "", "guid": "", "info": { "cn": "Test User" }, "mt": "AppLogin", "sip": ""}"#;
        let ex4 = r#"{"app": "innovaphone-users", "digest": "ef1b811ffaa8f9255c39c653d8fb26b4687b2d8c4d9ac91b4821bff6bae3ff44",
            "dn": "Administrator User", "domain": "example.com", "guid": "0123456789abcdef0123456789abcdef",
            "info": { "appobj": "users", "apps": [ { "name": "users" }, { "name": "profile" } ],
                      "appurl": "https://1.2.3.4/example.com/usersapp/innovaphone-users", "unlicensed": true },
            "mt": "AppLogin", "pbxObj": "users", "sip": "administrator"}"#;
        for raw in [ex2, ex3, ex4] {
            let (computed, sent) = digest_of_message(raw, "0123456789abcdef", "pwd");
            assert_eq!(computed, sent);
        }
    }

    #[test]
    fn d4_captured_pbx_login() {
        let raw = r#"{"mt":"AppLogin","sip":"go-search","guid":"3954ae7854c96301c9dd009033400109","dn":"go-search","digest":"130f168773ff760701b74e629eca2544c6e62d5354e92e6f821001a982eb8951","domain":"fritz.box","app":"searchapi","info":{"appobj":"go-search","appdn":"go-search","appurl":"http://192.168.178.29:5000/fritz.box/go/instance/searchapi","pbx":"pbx-main","cn":"go-search","unlicensed":true,"apps":[]}}"#;
        let (computed, sent) = digest_of_message(raw, "16d7dbbcccb63612", "go");
        assert_eq!(computed, sent);
        assert!(digest_matches(&computed, &sent));
        assert!(!digest_matches(&computed, &sent.to_uppercase()));
    }

    #[test]
    fn captured_browser_login_ignores_pbx_obj() {
        let raw = r#"{"mt":"AppLogin","app":"admin","domain":"fritz.box","sip":"rico","guid":"f48b06484a8a61015853009033400109","dn":"Schulte, Rico","info":{"appobj":"go","appdn":"go","appurl":"http://192.168.178.29:5000/fritz.box/go/instance/admin","pbx":"pbx-main","cn":"rico","unlicensed":true,"groups":[],"apps":[]},"digest":"965b4dd4d4f127c99df796b1ed137b40454801f94f50aaf93b2ce98034f10d9c","pbxObj":"go"}"#;
        let (computed, sent) = digest_of_message(raw, "277f41a7a5b7b452", "go");
        assert_eq!(computed, sent);
    }

    #[test]
    fn d5_spec_pbx_login() {
        let raw = r#"{"mt":"AppLogin","sip":"acme-prov","guid":"0123456789abcdef0123456789abcdef","dn":"ACME Provisioning","digest":"ee509289b7fcf2cb3bce4e76ccd97d289d93b5de3fac2f801362b78f5971670b","domain":"example.com","app":"acme-provisioning-service","info":{"appobj":"acme-prov","appdn":"ACME Provisioning","appurl":"https://apps.example.com/example.com/acme/acme-provisioning-service","pbx":"master","cn":"ACME Provisioning","apps":[]}}"#;
        let (computed, sent) = digest_of_message(raw, "a1b2c3d4e5f60718", "secret");
        assert_eq!(computed, sent);
    }

    #[test]
    fn d6_password_login_without_info() {
        let f = no_info(
            "acme-provisioning-service",
            "",
            "acme-provisioning-service",
            "00000000000000000000000000000000",
            "Admin",
        );
        assert_eq!(
            login_digest(&f, None, "0123456789abcdef", "secret"),
            "4be611e4e678911ead6ed7c80f50a8b4739b15606037e85d0a13168a96f35400"
        );
    }

    #[test]
    fn empty_info_object_still_counts() {
        let f = no_info("a", "", "", "", "");
        let with = login_digest(&f, Some(&serde_json::json!({})), "c", "p");
        assert_eq!(with, sha256_hex(b"a:::::{}:c:p"));
        assert_ne!(with, login_digest(&f, None, "c", "p"));
    }

    #[test]
    fn compact_json_escapes_like_json_stringify() {
        let v: Value =
            serde_json::from_str("{\"b\":\"a/\\u00e9\\u0001\\n\\\"\",\"a\":[1,-2,true,null]}").unwrap();
        assert_eq!(
            compact_json(&v),
            "{\"b\":\"a/\u{e9}\\u0001\\n\\\"\",\"a\":[1,-2,true,null]}"
        );
    }

    #[test]
    fn session_keys_k1_k3() {
        assert_eq!(
            session_key("0123456789abcdef", "pwd"),
            "d58c77eae0c1c1f37a9f545e207643c926ad9ea4932016a83a4a01029de37760"
        );
        assert_eq!(
            session_key("a1b2c3d4e5f60718", "secret"),
            "e0b1cf7e8460b3a9facc9943c31092c4ef008a859b74013d785efe9015a3d501"
        );
    }

    #[test]
    fn encrypt_decrypt_hash_vectors() {
        let k1 = session_key("0123456789abcdef", "pwd");
        let k3 = session_key("a1b2c3d4e5f60718", "secret");
        assert_eq!(encrypt("seed1", &k1, "secret"), "8c0a8a363ecb");
        assert_eq!(decrypt("seed1", &k1, "8c0a8a363ecb").unwrap(), "secret");
        assert_eq!(decrypt("seed1", &k1, "8C0A8A363ECB").unwrap(), "secret");
        assert_eq!(encrypt("10046478319880090512700", &k3, "1234"), "601c2609");
        assert_eq!(
            hash("seed1", &k1, "secret"),
            "3bec12584a7578977829447885828b56fda4e23687c0f2f6217fb3d6d69ee83b"
        );
        assert_eq!(encrypt("s", &k1, ""), "");
        assert_eq!(decrypt("seed1", &k1, "8c0"), Err(DecryptError::NotHex));
    }

    #[test]
    fn challenges_are_16_lowercase_hex_and_differ() {
        let a = new_challenge().unwrap();
        let b = new_challenge().unwrap();
        assert_eq!(a.len(), 16);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn decrypt_inverts_encrypt(seed in ".{0,40}", key in "[0-9a-f]{64}", text in "\\PC{0,200}") {
            prop_assert_eq!(decrypt(&seed, &key, &encrypt(&seed, &key, &text)).unwrap(), text);
        }

        #[test]
        fn digest_check_never_panics(expected in ".{0,80}", received in ".{0,80}", json in ".{0,200}") {
            let info: Option<Value> = serde_json::from_str(&json).ok();
            let f = LoginFields { app: &expected, domain: &received, sip: &json, guid: "", dn: "" };
            let d = login_digest(&f, info.as_ref(), &received, &expected);
            prop_assert!(digest_matches(&d, &d));
            let _ = digest_matches(&expected, &received);
            let _ = decrypt(&expected, &received, &json);
        }
    }
}
