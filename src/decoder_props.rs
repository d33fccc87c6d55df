//! Every decoder that reads network input, fed arbitrary and near-valid input (proptest, run in
//! CI as a fuzz target of equivalent depth): none may panic, and the ones with an encoder
//! round-trip. Inputs: AppWebsocket messages, sysclient frames, HTTP `Authorization` headers,
//! Digest nonces, MACs, requested file names, Devices' POSIX time zones, ProvisioningPhone.

use proptest::prelude::*;

use crate::appws::{AppMessage, Inbound, login_role};
use crate::mac::Mac;
use crate::phone::ProvisionRequest;
use crate::provisioning::Vendors;
use crate::provisioning::auth::{self, NonceKey};
use crate::provisioning::timezone::PosixTz;
use crate::sysclient::SysclientFrame;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        ..ProptestConfig::default()
    }
}

/// Text that looks like what each decoder expects, with arbitrary pieces inside.
fn near_json() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "AppLogin",
            "ProvisioningPhone",
            "PbxInfo",
            "AppCheckLogin",
            "x",
        ]),
        ".{0,40}",
        prop::sample::select(vec![
            "",
            ",\"info\":{}",
            ",\"info\":[1]",
            ",\"api\":7",
            ",\"src\":null",
        ]),
    )
        .prop_map(|(mt, junk, tail)| {
            format!(
                "{{\"mt\":\"{mt}\",\"sip\":{:?},\"mac\":{:?},\"code\":{:?}{tail}}}",
                junk, junk, junk
            )
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn appwebsocket_messages_never_panic(text in prop_oneof![".{0,200}", near_json()]) {
        if let Ok(msg) = Inbound::parse(&text) {
            match AppMessage::decode(&msg) {
                AppMessage::AppLogin(login) => {
                    let _ = login_role(&login, None);
                    let _ = login_role(&login, Some("innoprov"));
                }
                AppMessage::ProvisioningPhone(phone) => {
                    let _ = ProvisionRequest::from_message(&phone, "d58c77eae0c1c1f37a9f545e207643c926ad9ea4932016a83a4a01029de37760");
                }
                _ => {}
            }
        }
    }

    #[test]
    fn sysclient_frames_never_panic_and_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(frame) = SysclientFrame::decode(&bytes) {
            let again = SysclientFrame::decode(&frame.encode()).expect("an encoded frame decodes");
            prop_assert_eq!(again.encode(), frame.encode());
        }
    }

    #[test]
    fn authorization_headers_never_panic(
        header in prop_oneof![
            ".{0,200}",
            "(Basic|Digest|basic|digest) .{0,150}",
            "Digest (username|realm|nonce|uri|nc|cnonce|response|qop|algorithm)=\"?[^\"]{0,40}\"?(, [a-z]{1,8}=.{0,20}){0,6}",
        ]
    ) {
        let keys = NonceKey::random();
        if let Some(credentials) = auth::parse_authorization(&header) {
            let _ = credentials.user();
            let _ = auth::verify(&credentials, "GET", "/p/x.cfg", "u", "pw", &keys, 1_700_000_000, std::net::IpAddr::from([127, 0, 0, 1]));
        }
    }

    #[test]
    fn nonces_from_clients_never_panic(nonce in "[0-9a-fA-F+\\- ]{0,60}") {
        let keys = NonceKey::random();
        prop_assert!(!keys.valid(&nonce, 1_700_000_000, std::net::IpAddr::from([127, 0, 0, 1])));
    }

    #[test]
    fn macs_never_panic_and_round_trip(text in prop_oneof![".{0,30}", "[0-9a-fA-F:.\\-]{0,20}"]) {
        if let Ok(mac) = text.parse::<Mac>() {
            prop_assert_eq!(mac.to_string().parse::<Mac>().expect("own form"), mac);
        }
    }

    #[test]
    fn requested_file_names_never_panic(
        file in prop_oneof![
            ".{0,60}",
            "(cfg|snom|y|f0|F0)?[0-9a-fA-F]{0,14}[A-Za-z0-9.\\-]{0,12}(\\.cfg|\\.xml|\\.htm|\\.boot|\\.bin)?",
        ]
    ) {
        let vendors = Vendors::builtin();
        for candidate in vendors.candidates(&file) {
            prop_assert!(candidate.vendor < vendors.all().len());
        }
        let _ = vendors.probe(&file);
    }

    #[test]
    fn posix_time_zones_never_panic_and_round_trip(
        tz in prop_oneof![
            ".{0,60}",
            "[A-Z<>+\\-0-9]{3,8}[+\\-]?[0-9]{1,2}(:[0-9]{2})?([A-Z]{3,5}([+\\-]?[0-9]{1,2})?(,(M[0-9]{1,2}\\.[0-9]\\.[0-9]|J?[0-9]{1,3})(/[+\\-]?[0-9]{1,3}(:[0-9]{2})?)?){0,2})?",
        ]
    ) {
        if let Ok(parsed) = PosixTz::parse(&tz) {
            let explicit = parsed.to_posix_explicit();
            prop_assert_eq!(PosixTz::parse(&explicit).expect("explicit form parses"), parsed);
        }
    }
}
