//! The innovaphone sysclient protocol (devices-sysclient.md §2): binary websocket frames
//! between this service, acting as a sysclient on a phone's behalf, and innovaphone Devices.
//!
//! Admin frame: `0x01`, a 2-byte big-endian admin type, then a JSON object (UTF-8, no NUL).
//! Tunnel frame: `0x02`, a 4-byte big-endian session id, a 4-byte big-endian event, then data.

use serde_json::{Map, Value};

use crate::appws::crypto;

/// Class byte of admin frames.
pub const CLASS_ADMIN: u8 = 0x01;
/// Class byte of tunnel frames.
pub const CLASS_TUNNEL: u8 = 0x02;
/// Largest frame accepted from Devices.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Admin message types (§2.2).
pub mod admin {
    /// app→Devices: Identify.
    pub const IDENTIFY: u16 = 0x0000;
    /// Devices→app: the sysclient password, to be stored.
    pub const SYSCLIENT_PASSWORD: u16 = 0x0001;
    /// Devices→app: challenge; identify again with a digest.
    pub const CHALLENGE: u16 = 0x0002;
    /// Devices→app: new administrative password (encrypted).
    pub const ADMIN_PASSWORD: u16 = 0x0003;
    /// app→Devices: provision an FXS interface (not used for phones).
    pub const PROVISION: u16 = 0x0004;
    /// Devices→app: result of Provision.
    pub const PROVISION_RESULT: u16 = 0x0005;
    /// Devices→app: one configuration item.
    pub const CONFIGURATION: u16 = 0x0006;
}

/// Tunnel events (§2.6).
pub mod tunnel {
    /// HTTP bytes for the device.
    pub const SEND: u32 = 0;
    /// Devices asks for up to a number of bytes.
    pub const RECEIVE: u32 = 1;
    /// Answer to RECEIVE, with data.
    pub const RECEIVE_RESULT: u32 = 2;
    /// Answer to SEND.
    pub const SEND_RESULT: u32 = 3;
    /// End of the tunnel session (and its answer).
    pub const SHUTDOWN: u32 = 4;
}

/// One decoded sysclient frame.
#[derive(Debug, Clone, PartialEq)]
pub enum SysclientFrame {
    /// An admin message: its type and JSON object.
    Admin {
        /// Admin type (see [`admin`]).
        kind: u16,
        /// The JSON object.
        body: Map<String, Value>,
    },
    /// A tunnel message.
    Tunnel {
        /// Tunnel session id.
        session: u32,
        /// Event (see [`tunnel`]).
        event: u32,
        /// Payload after the event word.
        data: Vec<u8>,
    },
}

/// A Devices→app admin message, read from its frame (§2.5); types this service does not
/// know are kept as they came.
#[derive(Debug, Clone, PartialEq)]
pub enum DevicesMessage {
    /// 0x0001: the sysclient password, to be stored.
    SysclientPassword {
        /// The password (empty when the field is missing).
        password: String,
    },
    /// 0x0002: identify again with a digest over this challenge.
    Challenge {
        /// The challenge.
        challenge: String,
    },
    /// 0x0003: a new administrative password, encrypted.
    AdminPassword {
        /// The RC4 seed.
        seed: String,
        /// The hex ciphertext.
        pwd: String,
    },
    /// 0x0005: the result of a Provision (FXS only); a non-empty error is a failure.
    ProvisionResult {
        /// The error, empty on success.
        error: String,
    },
    /// 0x0006: one configuration message (see `devices::parse_configuration`).
    Configuration(Map<String, Value>),
    /// Any other admin type.
    Other {
        /// The admin type.
        kind: u16,
    },
}

impl DevicesMessage {
    /// The message an admin frame of `kind` with `body` carries.
    pub fn from_admin(kind: u16, body: Map<String, Value>) -> DevicesMessage {
        let text = |key: &str| {
            body.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        match kind {
            admin::SYSCLIENT_PASSWORD => DevicesMessage::SysclientPassword {
                password: text("password"),
            },
            admin::CHALLENGE => DevicesMessage::Challenge {
                challenge: text("challenge"),
            },
            admin::ADMIN_PASSWORD => DevicesMessage::AdminPassword {
                seed: text("seed"),
                pwd: text("pwd"),
            },
            admin::PROVISION_RESULT => DevicesMessage::ProvisionResult { error: text("error") },
            admin::CONFIGURATION => DevicesMessage::Configuration(body),
            kind => DevicesMessage::Other { kind },
        }
    }
}

/// Why bytes are not a sysclient frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than its header.
    #[error("frame of {0} bytes is shorter than its header")]
    Short(usize),
    /// Longer than [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes is too long")]
    TooLong(usize),
    /// The class byte is neither admin nor tunnel.
    #[error("unknown frame class 0x{0:02x}")]
    Class(u8),
    /// The admin payload is not a JSON object.
    #[error("admin 0x{kind:04x}: payload is not a JSON object: {reason}")]
    Json {
        /// The admin type.
        kind: u16,
        /// What the parser said.
        reason: String,
    },
}

impl SysclientFrame {
    /// Decodes one binary websocket message.
    pub fn decode(bytes: &[u8]) -> Result<SysclientFrame, FrameError> {
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLong(bytes.len()));
        }
        match bytes.first() {
            None => Err(FrameError::Short(0)),
            Some(&CLASS_ADMIN) => {
                if bytes.len() < 3 {
                    return Err(FrameError::Short(bytes.len()));
                }
                let kind = u16::from_be_bytes([bytes[1], bytes[2]]);
                // Liberal: tolerate a NUL terminator some peers may add.
                let json = bytes[3..].strip_suffix(&[0]).unwrap_or(&bytes[3..]);
                match serde_json::from_slice::<Value>(json) {
                    Ok(Value::Object(body)) => Ok(SysclientFrame::Admin { kind, body }),
                    Ok(_) => Err(FrameError::Json {
                        kind,
                        reason: "not an object".into(),
                    }),
                    Err(e) => Err(FrameError::Json {
                        kind,
                        reason: e.to_string(),
                    }),
                }
            }
            Some(&CLASS_TUNNEL) => {
                if bytes.len() < 9 {
                    return Err(FrameError::Short(bytes.len()));
                }
                let session = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
                let event = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
                Ok(SysclientFrame::Tunnel {
                    session,
                    event,
                    data: bytes[9..].to_vec(),
                })
            }
            Some(&other) => Err(FrameError::Class(other)),
        }
    }

    /// Encodes the frame.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            SysclientFrame::Admin { kind, body } => {
                let json = crypto::compact_json(body);
                let mut out = Vec::with_capacity(3 + json.len());
                out.push(CLASS_ADMIN);
                out.extend_from_slice(&kind.to_be_bytes());
                out.extend_from_slice(json.as_bytes());
                out
            }
            SysclientFrame::Tunnel { session, event, data } => {
                let mut out = Vec::with_capacity(9 + data.len());
                out.push(CLASS_TUNNEL);
                out.extend_from_slice(&session.to_be_bytes());
                out.extend_from_slice(&event.to_be_bytes());
                out.extend_from_slice(data);
                out
            }
        }
    }
}

/// How this service identifies itself to Devices. `product` and `version` enter the challenge
/// digest, so they must stay the same across reconnects.
pub const PRODUCT: &str = "innoprov";
/// See [`PRODUCT`].
pub const VERSION: &str = "1";

/// The Identify admin frame for phone `id` (12 lowercase hex digits): with the provisioning
/// code on first use, with the challenge digest when answering a challenge.
pub fn identify(id: &str, code: Option<&str>, digest: Option<&str>) -> SysclientFrame {
    let mut body = Map::new();
    body.insert("id".into(), id.into());
    body.insert("product".into(), PRODUCT.into());
    body.insert("version".into(), VERSION.into());
    let mut platform = Map::new();
    platform.insert("type".into(), "PHONE".into());
    body.insert("platform".into(), Value::Object(platform));
    if let Some(code) = code {
        body.insert("provisioningCode".into(), code.into());
    }
    body.insert("other".into(), true.into());
    if let Some(digest) = digest {
        body.insert("digest".into(), digest.into());
    }
    SysclientFrame::Admin {
        kind: admin::IDENTIFY,
        body,
    }
}

/// The challenge answer: hex SHA-256 of `id:product:version:challenge:password`.
pub fn challenge_digest(id: &str, product: &str, version: &str, challenge: &str, password: &str) -> String {
    crypto::sha256_hex(format!("{id}:{product}:{version}:{challenge}:{password}").as_bytes())
}

/// Decrypts a secret Devices sends encrypted under the sysclient password (admin password
/// `pwd` with `seed`; MEDIA `turnPassword` with `turnSeed`; ALARM_SERVER `logPassword` with
/// `logSeed`): hex-decode, RC4 with key `seed:sysclientPassword`.
pub fn decrypt_secret(
    seed: &str,
    sysclient_password: &str,
    hex: &str,
) -> Result<String, crypto::DecryptError> {
    crypto::decrypt(seed, sysclient_password, hex)
}

/// The minimal answers a sysclient gives in the tunnel when it has no web UI: acknowledge
/// sends, answer a receive with an HTTP 404, and confirm shutdowns.
pub fn tunnel_answer(session: u32, event: u32) -> Option<SysclientFrame> {
    const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let (event, data) = match event {
        tunnel::SEND => (tunnel::SEND_RESULT, Vec::new()),
        tunnel::RECEIVE => (tunnel::RECEIVE_RESULT, NOT_FOUND.to_vec()),
        tunnel::SHUTDOWN => (tunnel::SHUTDOWN, Vec::new()),
        _ => return None,
    };
    Some(SysclientFrame::Tunnel { session, event, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn admin_frames_read_as_typed_messages() {
        let read = |bytes: &[u8]| match SysclientFrame::decode(bytes).unwrap() {
            SysclientFrame::Admin { kind, body } => DevicesMessage::from_admin(kind, body),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            read(b"\x01\x00\x03{\"seed\":\"wJQog70GUK!GPTN2\",\"pwd\":\"22f91ebb\"}"),
            DevicesMessage::AdminPassword {
                seed: "wJQog70GUK!GPTN2".into(),
                pwd: "22f91ebb".into()
            }
        );
        assert_eq!(
            read(b"\x01\x00\x02{\"challenge\":\"1446931255\"}"),
            DevicesMessage::Challenge {
                challenge: "1446931255".into()
            }
        );
        assert_eq!(
            read(b"\x01\x00\x01{}"),
            DevicesMessage::SysclientPassword {
                password: String::new()
            }
        );
        assert_eq!(read(b"\x01\x12\x34{}"), DevicesMessage::Other { kind: 0x1234 });
        assert!(matches!(
            read(b"\x01\x00\x06{\"last\":true}"),
            DevicesMessage::Configuration(body) if body["last"] == true
        ));
    }

    #[test]
    fn configuration_frame_bytes() {
        let frame = SysclientFrame::decode(b"\x01\x00\x06{\"last\":true}").unwrap();
        let SysclientFrame::Admin { kind, body } = &frame else {
            panic!("admin")
        };
        assert_eq!(*kind, admin::CONFIGURATION);
        assert_eq!(body["last"], true);
        assert_eq!(frame.encode(), b"\x01\x00\x06{\"last\":true}");
    }

    #[test]
    fn identify_is_compact_and_ordered() {
        let bytes = identify("0015651a2b3c", Some("123456789012"), None).encode();
        assert_eq!(&bytes[..3], b"\x01\x00\x00");
        assert_eq!(
            std::str::from_utf8(&bytes[3..]).unwrap(),
            r#"{"id":"0015651a2b3c","product":"innoprov","version":"1","platform":{"type":"PHONE"},"provisioningCode":"123456789012","other":true}"#
        );
    }

    #[test]
    fn challenge_digest_vector() {
        // devices-sysclient.md §2.4, captured from a real Devices by go-myapps.
        assert_eq!(
            challenge_digest(
                "f19033480af9",
                "IP232",
                "13r2 dvl [13.4250/131286/1300]",
                "1446931255",
                "2jjH!u3ucXscEzHq8X!l83BX3!U8TPwA"
            ),
            "13cc86b3f0691e2ce1a626a9963a5aefeefcb78f7e5b23a8ede10e8204247c97"
        );
    }

    #[test]
    fn admin_password_vector() {
        // devices-sysclient.md §2.5.
        assert_eq!(
            decrypt_secret("wJQog70GUK!GPTN2", "7iICN04agQq38j!hmbN7P5LLI1YePz1w", "22f91ebb").unwrap(),
            "test"
        );
    }

    #[test]
    fn strict_length_checks() {
        assert_eq!(SysclientFrame::decode(b""), Err(FrameError::Short(0)));
        assert_eq!(SysclientFrame::decode(b"\x01\x00"), Err(FrameError::Short(2)));
        assert_eq!(
            SysclientFrame::decode(b"\x02\x00\x00\x00\x01\x00\x00\x00"),
            Err(FrameError::Short(8))
        );
        assert_eq!(SysclientFrame::decode(b"\x03abc"), Err(FrameError::Class(3)));
        assert!(matches!(
            SysclientFrame::decode(b"\x01\x00\x06[1]"),
            Err(FrameError::Json { kind: 6, .. })
        ));
        let tunnel = SysclientFrame::decode(b"\x02\x00\x00\x00\x07\x00\x00\x00\x01\x00\x00\x10\x00").unwrap();
        assert_eq!(
            tunnel,
            SysclientFrame::Tunnel {
                session: 7,
                event: tunnel::RECEIVE,
                data: vec![0, 0, 16, 0]
            }
        );
        let answer = tunnel_answer(7, tunnel::RECEIVE).unwrap().encode();
        assert_eq!(&answer[..9], b"\x02\x00\x00\x00\x07\x00\x00\x00\x02");
        assert!(answer.ends_with(b"\r\n\r\n"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = SysclientFrame::decode(&bytes);
        }

        #[test]
        fn frames_round_trip(kind in any::<u16>(), key in "[a-z]{1,8}", text in "\\PC{0,40}", session in any::<u32>(), event in any::<u32>(), data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut body = Map::new();
            body.insert(key, Value::String(text));
            let admin = SysclientFrame::Admin { kind, body };
            prop_assert_eq!(SysclientFrame::decode(&admin.encode()).unwrap(), admin);
            let tunnel = SysclientFrame::Tunnel { session, event, data };
            prop_assert_eq!(SysclientFrame::decode(&tunnel.encode()).unwrap(), tunnel);
        }
    }
}
