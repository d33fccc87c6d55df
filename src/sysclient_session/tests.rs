//! The session without sockets. Devices' frames are written out as bytes here (class, big-endian
//! type, JSON: devices-sysclient.md §2.1), and what the session sends is read back from its
//! bytes, so a mistake shared with the frame encoder cannot hide.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::*;

const MAC: &str = "0015651a2b3c";
const PASSWORD: &str = "7iICN04agQq38j!hmbN7P5LLI1YePz1w";

fn sealer() -> Sealer {
    Sealer::from_key(&[7u8; 32])
}

fn backoff() -> Backoff {
    Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_secs(4),
    }
}

fn session(code: Option<&str>, password: Option<&str>) -> SysclientSession {
    SysclientSession::new(
        MAC.parse().expect("mac"),
        code.map(str::to_string),
        password.map(Secret::new),
        backoff(),
    )
}

/// A Devices→app admin frame: 0x01, the type as two big-endian bytes, the JSON text.
fn admin_frame(kind: u16, json: &str) -> Vec<u8> {
    let mut out = vec![0x01, (kind >> 8) as u8, (kind & 0xff) as u8];
    out.extend_from_slice(json.as_bytes());
    out
}

/// The JSON of an admin frame the session sends, checked for class and type.
fn sent_admin(action: &SessionAction, kind: u16) -> serde_json::Map<String, Value> {
    let SessionAction::Send(frame) = action else {
        panic!("expected a frame, got {action:?}")
    };
    let bytes = frame.encode();
    assert_eq!(&bytes[..3], &[0x01, (kind >> 8) as u8, (kind & 0xff) as u8]);
    match serde_json::from_slice(&bytes[3..]).expect("JSON after the header") {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn feed(s: &mut SysclientSession, bytes: &[u8]) -> Vec<SessionAction> {
    s.handle(SessionEvent::Frame(bytes), &sealer())
}

fn names(actions: &[SessionAction]) -> Vec<&'static str> {
    actions
        .iter()
        .map(|a| match a {
            SessionAction::Send(_) => "send",
            SessionAction::Accepted => "accepted",
            SessionAction::StorePassword(_) => "store-password",
            SessionAction::AdminPassword(_) => "admin-password",
            SessionAction::ConfigComplete(_) => "complete",
            SessionAction::ConfigUpdate(_) => "update",
            SessionAction::CodeRefused(_) => "code-refused",
            SessionAction::Rejected(_) => "rejected",
            SessionAction::Reconnect { .. } => "reconnect",
        })
        .collect()
}

#[test]
fn a_new_phone_identifies_with_its_code_stores_its_password_and_collects_until_last() {
    let mut s = session(Some("123456789012"), None);
    let out = s.handle(SessionEvent::Connected, &sealer());
    assert_eq!(out.len(), 1);
    let identify = sent_admin(&out[0], 0x0000);
    assert_eq!(identify["id"], MAC);
    assert_eq!(identify["provisioningCode"], "123456789012");
    assert_eq!(identify["other"], true);
    assert_eq!(identify["platform"]["type"], "PHONE");
    assert!(identify.get("digest").is_none());

    let out = feed(
        &mut s,
        &admin_frame(0x0001, &format!(r#"{{"password":"{PASSWORD}"}}"#)),
    );
    assert_eq!(names(&out), ["accepted", "store-password"]);
    let SessionAction::StorePassword(stored) = &out[1] else {
        unreachable!()
    };
    assert_eq!(stored.expose(), PASSWORD);

    let phone = r#"{"config":{"id":3,"type":"PHONE","gk1":"pbx.example.com"}}"#;
    assert!(
        feed(&mut s, &admin_frame(0x0006, phone)).is_empty(),
        "collected, not yet handed over"
    );
    let ntp = r#"{"config":{"id":9,"type":"NTP","ntp1":"pool.ntp.org"},"last":true}"#;
    let out = feed(&mut s, &admin_frame(0x0006, ntp));
    assert_eq!(names(&out), ["complete"]);
    let SessionAction::ConfigComplete(items) = &out[0] else {
        unreachable!()
    };
    let kinds: Vec<&str> = items.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(kinds, ["PHONE", "NTP"]);
    assert!(s.is_complete());

    // Later items are updates, one by one.
    let update = r#"{"config":{"id":3,"type":"PHONE","gk1":"pbx2.example.com"}}"#;
    assert_eq!(names(&feed(&mut s, &admin_frame(0x0006, update))), ["update"]);

    // After a reconnect the code is gone: the phone identifies for a challenge.
    let out = s.handle(SessionEvent::Closed("closed by Devices"), &sealer());
    assert_eq!(names(&out), ["reconnect"]);
    let out = s.handle(SessionEvent::Connected, &sealer());
    let identify = sent_admin(&out[0], 0x0000);
    assert!(identify.get("provisioningCode").is_none(), "{identify:?}");
    assert!(!s.is_complete(), "a new connection collects afresh");
}

#[test]
fn a_known_phone_answers_the_challenge_with_the_digest_of_the_spec() {
    let mut s = session(None, Some(PASSWORD));
    let out = s.handle(SessionEvent::Connected, &sealer());
    assert!(sent_admin(&out[0], 0x0000).get("provisioningCode").is_none());
    let out = feed(&mut s, &admin_frame(0x0002, r#"{"challenge":"1446931255"}"#));
    assert_eq!(out.len(), 1);
    let answer = sent_admin(&out[0], 0x0000);
    // §2.4: lowercase hex SHA-256 of id:product:version:challenge:password.
    let expected = hex::encode(Sha256::digest(format!(
        "{MAC}:{}:{}:1446931255:{PASSWORD}",
        answer["product"].as_str().expect("product"),
        answer["version"].as_str().expect("version")
    )));
    assert_eq!(answer["digest"], expected.as_str());
    assert_eq!(answer["id"], MAC);
}

#[test]
fn the_admin_password_vector_of_the_spec_decrypts() {
    // §2.5: seed wJQog70GUK!GPTN2, pwd 22f91ebb, sysclient password 7iIC... → "test".
    let mut s = session(None, Some(PASSWORD));
    s.handle(SessionEvent::Connected, &sealer());
    let out = feed(
        &mut s,
        &admin_frame(0x0003, r#"{"seed":"wJQog70GUK!GPTN2","pwd":"22f91ebb"}"#),
    );
    assert_eq!(names(&out), ["admin-password"]);
    let SessionAction::AdminPassword(admin) = &out[0] else {
        unreachable!()
    };
    assert_eq!(admin.expose(), "test");
    // Without a password to decrypt it, nothing comes of it.
    let mut bare = session(Some("1"), None);
    bare.handle(SessionEvent::Connected, &sealer());
    assert!(
        feed(
            &mut bare,
            &admin_frame(0x0003, r#"{"seed":"x","pwd":"22f91ebb"}"#)
        )
        .is_empty()
    );
}

#[test]
fn a_challenge_without_a_password_ends_the_session() {
    let mut s = session(Some("123456789012"), None);
    s.handle(SessionEvent::Connected, &sealer());
    let out = feed(&mut s, &admin_frame(0x0002, r#"{"challenge":"1"}"#));
    assert_eq!(names(&out), ["rejected"]);
    assert!(s.is_rejected() && !s.can_link());
    assert!(s.handle(SessionEvent::Closed("gone"), &sealer()).is_empty());
    assert!(s.handle(SessionEvent::Connected, &sealer()).is_empty());
}

#[test]
fn a_refused_code_ends_a_new_phone_and_leaves_a_known_one_on_its_password() {
    let mut new = session(Some("123456789012"), None);
    new.handle(SessionEvent::Connected, &sealer());
    assert_eq!(
        names(&new.handle(SessionEvent::Closed("1008"), &sealer())),
        ["rejected"]
    );

    let mut known = session(Some("123456789012"), Some(PASSWORD));
    known.handle(SessionEvent::Connected, &sealer());
    let out = known.handle(SessionEvent::Closed("1008"), &sealer());
    assert_eq!(names(&out), ["code-refused", "reconnect"]);
    let out = known.handle(SessionEvent::Connected, &sealer());
    assert!(sent_admin(&out[0], 0x0000).get("provisioningCode").is_none());

    // Giving the connection up ourselves is no refusal either.
    let mut moved = session(Some("123456789012"), None);
    moved.handle(SessionEvent::Connected, &sealer());
    assert_eq!(
        names(&moved.handle(SessionEvent::Abandoned("Devices URL changed"), &sealer())),
        ["reconnect"]
    );
    let out = moved.handle(SessionEvent::Connected, &sealer());
    assert_eq!(
        sent_admin(&out[0], 0x0000)["provisioningCode"],
        "123456789012",
        "the code is still presented"
    );

    // A failed connection attempt (never connected) is no refusal.
    let mut unlucky = session(Some("123456789012"), None);
    assert_eq!(
        names(&unlucky.handle(SessionEvent::Closed("connection refused"), &sealer())),
        ["reconnect"]
    );
    assert!(unlucky.can_link());
}

#[test]
fn reconnect_delays_grow_to_the_bound_and_start_over_once_accepted() {
    let mut s = session(None, Some(PASSWORD));
    let delay = |out: Vec<SessionAction>| match out.last() {
        Some(SessionAction::Reconnect { after, .. }) => *after,
        other => panic!("{other:?}"),
    };
    let mut delays = Vec::new();
    for _ in 0..12 {
        delays.push(delay(s.handle(SessionEvent::Closed("down"), &sealer())));
    }
    // Jittered, but within [min, 2 × max] and growing from the first to the bound.
    assert!(
        delays
            .iter()
            .all(|d| *d >= backoff().min && *d <= backoff().max * 2),
        "{delays:?}"
    );
    assert!(delays[0] < Duration::from_millis(400), "{delays:?}");
    assert!(delays[11] >= backoff().max, "{delays:?}");
    s.handle(SessionEvent::Connected, &sealer());
    let out = feed(&mut s, &admin_frame(0x0006, r#"{"last":true}"#));
    assert_eq!(names(&out), ["accepted", "complete"]);
    let again = delay(s.handle(SessionEvent::Closed("down"), &sealer()));
    assert!(again < Duration::from_millis(400), "reset: {again:?}");
}

#[test]
fn configuration_items_are_bounded() {
    let mut s = session(None, Some(PASSWORD));
    s.handle(SessionEvent::Connected, &sealer());
    for n in 0..MAX_CONFIG_ITEMS + 20 {
        let item = format!(r#"{{"config":{{"id":{n},"type":"NTP"}}}}"#);
        feed(&mut s, &admin_frame(0x0006, &item));
    }
    let out = feed(&mut s, &admin_frame(0x0006, r#"{"last":true}"#));
    let Some(SessionAction::ConfigComplete(items)) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(items.len(), MAX_CONFIG_ITEMS);
}

#[test]
fn tunnel_requests_get_the_minimal_answers() {
    let mut s = session(None, Some(PASSWORD));
    s.handle(SessionEvent::Connected, &sealer());
    // Tunnel: 0x02, session id, event (both big-endian dwords), data. Event 1 = receive.
    let out = feed(&mut s, &[0x02, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 16, 0]);
    let [SessionAction::Send(frame)] = out.as_slice() else {
        panic!("{out:?}")
    };
    let bytes = frame.encode();
    assert_eq!(
        &bytes[..9],
        &[0x02, 0, 0, 0, 5, 0, 0, 0, 2],
        "receive result on session 5"
    );
    assert!(bytes[9..].starts_with(b"HTTP/1.1 404"));
    // Garbage is ignored.
    assert!(feed(&mut s, &[0x07, 1, 2]).is_empty());
    assert!(feed(&mut s, b"").is_empty());
}

#[test]
fn frames_before_a_connection_are_ignored() {
    let mut s = session(Some("1"), None);
    assert!(feed(&mut s, &admin_frame(0x0001, r#"{"password":"p"}"#)).is_empty());
}

proptest! {
    /// Whatever Devices sends, in whatever order with reconnects: no panic, at most one complete
    /// configuration per connection, never more than the item bound, nothing after a rejection,
    /// and a code only in the identify of a session that still holds one.
    #[test]
    fn any_sequence_keeps_the_invariants(
        steps in proptest::collection::vec(
            prop_oneof![
                Just(None),
                Just(Some(admin_frame(0x0001, r#"{"password":"pw"}"#))),
                Just(Some(admin_frame(0x0002, r#"{"challenge":"42"}"#))),
                Just(Some(admin_frame(0x0006, r#"{"config":{"id":1,"type":"PHONE"}}"#))),
                Just(Some(admin_frame(0x0006, r#"{"last":true}"#))),
                proptest::collection::vec(any::<u8>(), 0..40).prop_map(Some),
            ],
            0..60,
        ),
        with_code in any::<bool>(),
        with_password in any::<bool>(),
    ) {
        let mut s = session(with_code.then_some("123456789012"), with_password.then_some(PASSWORD));
        let mut completes_this_connection = 0;
        let mut rejected = false;
        let mut code_gone = !with_code;
        for step in steps {
            let out = match &step {
                None => {
                    completes_this_connection = 0;
                    let mut out = s.handle(SessionEvent::Closed("x"), &sealer());
                    out.extend(s.handle(SessionEvent::Connected, &sealer()));
                    out
                }
                Some(bytes) => feed(&mut s, bytes),
            };
            if rejected {
                prop_assert!(out.is_empty());
            }
            for action in &out {
                match action {
                    SessionAction::ConfigComplete(items) => {
                        completes_this_connection += 1;
                        prop_assert!(items.len() <= MAX_CONFIG_ITEMS);
                        code_gone = true;
                    }
                    SessionAction::Rejected(_) => rejected = true,
                    SessionAction::StorePassword(_) | SessionAction::CodeRefused(_) => code_gone = true,
                    SessionAction::Send(frame) => {
                        let bytes = frame.encode();
                        if bytes[0] == 0x01 {
                            let json: Value = serde_json::from_slice(&bytes[3..]).expect("json");
                            if json.get("provisioningCode").is_some() {
                                prop_assert!(!code_gone, "code sent after it was used up");
                            }
                        }
                    }
                    _ => {}
                }
            }
            prop_assert!(completes_this_connection <= 1);
        }
    }
}
