//! The exchanges of docs/pbx-table-users.md §7, the PBX's side as raw JSON text.

use super::*;
use crate::pbx_users::PhonebookEntry;

fn pbx(text: &str) -> Inbound {
    Inbound::parse(text).expect("a PBX message")
}

fn sent(actions: &[ReplicationAction]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|a| match a {
            ReplicationAction::Send(out) => serde_json::from_str(&out.to_text()).ok(),
            _ => None,
        })
        .collect()
}

fn entry(name: &str, number: &str) -> PhonebookEntry {
    PhonebookEntry {
        name: name.into(),
        number: number.into(),
    }
}

const START_RESULT: &str = r#"{"api":"PbxTableUsers","mt":"ReplicateStartResult","src":"users","columns":{"guid":{},"h323":{},"cn":{},"dn":{},"e164":{},"hide":{},"config":{},"node":{},"loc":{},"pseudo":{}}}"#;
const ALICE: &str = r#"{"api":"PbxTableUsers","mt":"ReplicateNextResult","src":"users","columns":{"guid":"0f1e2d3c4b5a69788796a5b4c3d2e1f0","h323":"alice","cn":"Alice Archer","dn":"Archer, Alice","e164":"201","hide":false,"config":"Config Sales","node":"root","loc":"master"}}"#;
const BOB: &str = r#"{"api":"PbxTableUsers","mt":"ReplicateNextResult","src":"users","columns":{"guid":"1a2b3c4d5e6f708192a3b4c5d6e7f809","h323":"bob","cn":"Bob Baker","hide":false,"node":"root","loc":"master"}}"#;
const CHIEF: &str = r#"{"api":"PbxTableUsers","mt":"ReplicateNextResult","src":"users","columns":{"guid":"2b3c4d5e6f708192a3b4c5d6e7f8091a","h323":"ceo","cn":"Chief","dn":"Chief","e164":"100","hide":true,"node":"root","loc":"master"}}"#;
const QUEUE: &str = r#"{"api":"PbxTableUsers","mt":"ReplicateNextResult","src":"users","columns":{"guid":"5e6f708192a3b4c5d6e7f8091a2b3c4d","h323":"queue","cn":"Queue","e164":"300","hide":false,"pseudo":"<pseudo type=\"waiting\"/>"}}"#;
const END: &str = r#"{"api":"PbxTableUsers","mt":"ReplicateNextResult","src":"users"}"#;

/// 7.1: the whole initial copy; every answer but the end asks for the next row.
fn copied(replication: &mut UserReplication, rows: &[&str]) {
    let start: Value = serde_json::from_str(&replication.start().to_text()).expect("json");
    assert_eq!(start["api"], "PbxTableUsers");
    assert_eq!(start["mt"], "ReplicateStart");
    assert_eq!(
        (start["add"].clone(), start["del"].clone()),
        (Value::Bool(true), Value::Bool(true))
    );
    let columns = start["columns"].as_object().expect("columns object");
    for column in ["guid", "h323", "cn", "dn", "e164", "hide", "config"] {
        assert_eq!(columns.get(column), Some(&serde_json::json!({})), "{column}");
    }
    assert!(!columns.contains_key("pwd"), "never the user's password");
    let next = serde_json::json!({"mt":"ReplicateNext","api":"PbxTableUsers","src":SRC});
    assert_eq!(
        sent(&replication.on_message(&pbx(START_RESULT))),
        vec![next.clone()]
    );
    for row in rows {
        let actions = replication.on_message(&pbx(row));
        assert_eq!(sent(&actions), vec![next.clone()], "{row}");
        assert!(
            !actions.contains(&ReplicationAction::Changed),
            "nothing published mid-copy"
        );
    }
    assert!(!replication.live());
    assert_eq!(
        replication.on_message(&pbx(END)),
        vec![ReplicationAction::Changed]
    );
    assert!(replication.live());
}

#[test]
fn the_initial_copy_lists_users_leaves_out_hidden_and_pseudo_objects() {
    let mut replication = UserReplication::new(UserTable::default());
    copied(&mut replication, &[ALICE, BOB, CHIEF, QUEUE]);
    assert_eq!(
        replication.table().phonebook(),
        vec![entry("Archer, Alice", "201"), entry("Bob Baker", "bob")]
    );
    assert_eq!(
        replication.table().len(),
        3,
        "the hidden user is kept, just not listed"
    );
    assert_eq!(
        replication
            .table()
            .by_sip_name("alice")
            .map(|u| u.config.as_str()),
        Some("Config Sales")
    );
}

#[test]
fn live_changes_add_update_and_delete() {
    let mut replication = UserReplication::new(UserTable::default());
    copied(&mut replication, &[ALICE, BOB, CHIEF]);
    // 7.2, as a real PBX sends them: the update is Alice's whole row without her number.
    for change in [
        r#"{"api":"PbxTableUsers","mt":"ReplicateAdd","src":"users","columns":{"guid":"3c4d5e6f708192a3b4c5d6e7f8091a2b","h323":"dora","cn":"Dora Diaz","dn":"Diaz, Dora","e164":"204","hide":false,"config":"Config Sales","node":"root","loc":"master"}}"#,
        r#"{"api":"PbxTableUsers","mt":"ReplicateUpdate","src":"users","columns":{"guid":"0f1e2d3c4b5a69788796a5b4c3d2e1f0","h323":"alice","cn":"Alice Archer","dn":"Archer, Alice","hide":false,"config":"Config Sales","node":"root","loc":"master"}}"#,
        r#"{"api":"PbxTableUsers","mt":"ReplicateDel","src":"users","columns":{"guid":"1a2b3c4d5e6f708192a3b4c5d6e7f809"}}"#,
    ] {
        assert_eq!(
            replication.on_message(&pbx(change)),
            vec![ReplicationAction::Changed],
            "{change}"
        );
    }
    assert_eq!(
        replication.table().phonebook(),
        vec![entry("Archer, Alice", "alice"), entry("Diaz, Dora", "204")],
        "no message goes back; Alice's whole row has no number now"
    );
    // A partial update (interface.md: only the columns sent change), another src, an extra member.
    let partial = r#"{"api":"PbxTableUsers","mt":"ReplicateUpdate","src":"src_1677998086155540423","usn":42,"columns":{"guid":"3c4d5e6f708192a3b4c5d6e7f8091a2b","e164":"404"}}"#;
    assert_eq!(
        replication.on_message(&pbx(partial)),
        vec![ReplicationAction::Changed]
    );
    assert!(
        replication
            .table()
            .phonebook()
            .contains(&entry("Diaz, Dora", "404"))
    );
    // 7.4(c): an update of an unknown guid is an add.
    let unknown = r#"{"api":"PbxTableUsers","mt":"ReplicateUpdate","columns":{"guid":"99","h323":"erik","cn":"Erik","hide":false,"e164":"205"}}"#;
    assert_eq!(
        replication.on_message(&pbx(unknown)),
        vec![ReplicationAction::Changed]
    );
    assert!(replication.table().phonebook().contains(&entry("Erik", "205")));
    // The same row again changes nothing; hiding a user takes it out.
    assert!(replication.on_message(&pbx(unknown)).is_empty());
    let hidden = r#"{"api":"PbxTableUsers","mt":"ReplicateUpdate","columns":{"guid":"99","hide":true}}"#;
    assert_eq!(
        replication.on_message(&pbx(hidden)),
        vec![ReplicationAction::Changed]
    );
    assert!(!replication.table().phonebook().iter().any(|e| e.name == "Erik"));
}

#[test]
fn a_reconnect_copies_afresh_and_sweeps_what_is_gone() {
    let mut replication = UserReplication::new(UserTable::default());
    copied(&mut replication, &[ALICE, BOB]);
    let before = replication.table().clone();
    // 7.3: a new session; until its end marker the old table stays.
    let mut again = UserReplication::new(before.clone());
    let erik = r#"{"api":"PbxTableUsers","mt":"ReplicateNextResult","columns":{"guid":"4d5e","h323":"erik","cn":"Erik","e164":"205","hide":false}}"#;
    let _ = again.start();
    let _ = again.on_message(&pbx(START_RESULT));
    let _ = again.on_message(&pbx(ALICE));
    let _ = again.on_message(&pbx(erik));
    assert_eq!(
        again.table(),
        &before,
        "served unchanged until the copy is complete"
    );
    // 7.4(d): `columns` empty is the end marker too.
    let end = r#"{"api":"PbxTableUsers","mt":"ReplicateNextResult","src":"users","columns":{}}"#;
    assert_eq!(again.on_message(&pbx(end)), vec![ReplicationAction::Changed]);
    assert_eq!(
        again.table().phonebook(),
        vec![entry("Archer, Alice", "201"), entry("Erik", "205")],
        "Bob, gone from the PBX meanwhile, is swept"
    );
}

#[test]
fn an_error_keeps_the_table_and_asks_for_a_retry() {
    let mut replication = UserReplication::new(UserTable::default());
    copied(&mut replication, &[ALICE]);
    let table = replication.table().clone();
    let _ = replication.start();
    let refused = r#"{"api":"PbxTableUsers","mt":"ReplicateStartResult","src":"users","error":1}"#;
    let actions = replication.on_message(&pbx(refused));
    assert!(
        matches!(
            &actions[..],
            [ReplicationAction::Problem(_), ReplicationAction::RetryLater]
        ),
        "{actions:?}"
    );
    assert_eq!(replication.table(), &table);
    // A row arriving now belongs to no copy: ignored.
    assert!(replication.on_message(&pbx(BOB)).is_empty());
    assert_eq!(replication.table(), &table);
}

#[test]
fn changes_during_the_copy_go_into_the_copy() {
    let mut replication = UserReplication::new(UserTable::default());
    let _ = replication.start();
    let _ = replication.on_message(&pbx(START_RESULT));
    let _ = replication.on_message(&pbx(ALICE));
    let during = r#"{"api":"PbxTableUsers","mt":"ReplicateDel","columns":{"guid":"0f1e2d3c4b5a69788796a5b4c3d2e1f0"}}"#;
    assert!(
        !replication
            .on_message(&pbx(during))
            .contains(&ReplicationAction::Changed)
    );
    let _ = replication.on_message(&pbx(BOB));
    assert_eq!(
        replication.on_message(&pbx(END)),
        vec![ReplicationAction::Changed]
    );
    assert_eq!(replication.table().phonebook(), vec![entry("Bob Baker", "bob")]);
}

#[test]
fn a_change_without_a_guid_is_reported_and_changes_nothing() {
    let mut replication = UserReplication::new(UserTable::default());
    copied(&mut replication, &[ALICE]);
    let version = replication.table().version();
    let actions = replication.on_message(&pbx(
        r#"{"api":"PbxTableUsers","mt":"ReplicateUpdate","columns":{"dn":"x"}}"#,
    ));
    assert!(
        matches!(&actions[..], [ReplicationAction::Problem(_)]),
        "{actions:?}"
    );
    assert_eq!(replication.table().version(), version);
    assert_eq!(replication.skipped(), 1);
}
