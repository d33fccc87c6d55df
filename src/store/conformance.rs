//! The one test suite every `Store` implementation must pass (Garage's `db/test.rs` pattern).
//! Public so that a backend in another crate can run it too.

use std::path::Path;

use super::Store;
use crate::mac::Mac;
use crate::phone::PhoneRecord;
use crate::provisioning::{AuditEntry, PhoneAccess};

/// A record for `mac` whose fields all depend on `n`, so replacements are visible.
pub fn sample_record(mac: &str, n: u64) -> PhoneRecord {
    let mac: Mac = mac.parse().unwrap_or_else(|_| Mac::from_bytes([0; 6]));
    PhoneRecord {
        mac,
        code: format!("{n}"),
        hwid: mac.to_string(),
        username: format!("user{n}"),
        cn: format!("Ünïcode Üser {n}"),
        domain: "example.com".into(),
        dns: "pbx.example.com".into(),
        // A fixed sealed-looking value: sealing is random, and the suite compares records.
        password: serde_json::from_value(serde_json::Value::String(format!("v1:{n:064x}"))).ok(),
        provisioned_at: 1_700_000_000 + n,
        generation: n,
        sysclient_password: None,
        admin_password: None,
        configs: Vec::new(),
        config_version: n * 2,
        changed_at: 0,
        sealed_code: None,
        configured_at: None,
        prov_username: format!("p{n}"),
        prov_password: None,
        web_password: None,
    }
}

/// A served download at `n` (Unix seconds), of `<n>.cfg` and configuration version `n`.
pub fn sample_entry(n: u64) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at: n,
        client: "127.0.0.1:5060".into(),
        user_agent: "Yealink".into(),
        file: format!("{n}.cfg"),
        vendor: "yealink".into(),
        status: 200,
        outcome: "served".into(),
        config_version: n,
        state: None,
    }
}

/// The contract: put, get, replace, list in MAC order, delete, flush. Panics on a breach.
pub fn run(store: &dyn Store) {
    let a: Mac = "0015651a2b3c".parse().unwrap_or_else(|_| unreachable!());
    assert_eq!(
        store.get_phone(&a).expect("get missing"),
        None,
        "empty store has no phone"
    );
    assert!(store.phones().expect("list empty").is_empty());

    let first = sample_record("0015651a2b3c", 1);
    let epoch = store.write_epoch();
    store.put_phone(&first).expect("put");
    assert_ne!(store.write_epoch(), epoch, "a record write changes the epoch");
    assert_eq!(store.get_phone(&a).expect("get"), Some(first.clone()));

    let bytes = store.get_phone_bytes(&a).expect("bytes").expect("stored bytes");
    assert_eq!(
        super::decode_record(&a, &bytes).expect("decode"),
        first,
        "bytes decode to the record"
    );
    assert_eq!(
        store.phone_changed(&a, &bytes).expect("fresh"),
        super::Freshness::Unchanged
    );
    let replaced = sample_record("0015651a2b3c", 2);
    store.put_phone(&replaced).expect("replace");
    assert_eq!(
        store.get_phone(&a).expect("get replaced"),
        Some(replaced.clone()),
        "replace wins"
    );
    let super::Freshness::Changed(new_bytes) = store.phone_changed(&a, &bytes).expect("changed") else {
        panic!("a replaced record is not fresh")
    };
    assert_eq!(super::decode_record(&a, &new_bytes).expect("decode"), replaced);

    for mac in ["ffffffffffff", "000000000001", "80000000aa00"] {
        store.put_phone(&sample_record(mac, 3)).expect("put more");
    }
    let macs: Vec<String> = store
        .phones()
        .expect("list")
        .iter()
        .map(|r| r.mac.to_string())
        .collect();
    assert_eq!(
        macs,
        ["000000000001", "0015651a2b3c", "80000000aa00", "ffffffffffff"],
        "MAC order"
    );

    assert!(store.delete_phone(&a).expect("delete"));
    assert!(
        !store.delete_phone(&a).expect("delete again"),
        "second delete finds nothing"
    );
    assert_eq!(store.get_phone(&a).expect("get deleted"), None);
    assert_eq!(
        store.phone_changed(&a, &new_bytes).expect("missing"),
        super::Freshness::Missing
    );
    assert_eq!(store.phones().expect("list after delete").len(), 3);
    store.flush().expect("flush");
    access_and_audit(store);
    settings(store);
    phones_with_access(store);
    checked_writes(store);
}

/// Checked group writes: each write's mode meets the stored generation (a newer record is
/// never replaced, an update needs the same generation and a stored record), the outcomes
/// come back in order, and a fence on a store without leases refuses the whole group.
pub fn checked_writes(store: &dyn Store) {
    use super::{CheckedWrite, WriteMode, WriteOutcome};
    let (x, y) = ("0015651a2d01", "0015651a2d02");
    let write = |record, mode| CheckedWrite {
        record,
        mode,
        fence: None,
    };
    let x5 = sample_record(x, 5);
    let y5 = sample_record(y, 5);
    assert_eq!(
        store
            .put_phones_checked(&[write(&x5, WriteMode::Provision), write(&y5, WriteMode::Update)])
            .expect("group"),
        vec![WriteOutcome::Written, WriteOutcome::Stale],
        "a new phone is provisioned; an update of a phone not stored is stale"
    );
    assert_eq!(store.get_phone(&x5.mac).expect("get"), Some(x5.clone()));
    assert_eq!(store.get_phone(&y5.mac).expect("get"), None, "nothing written");

    let x4 = sample_record(x, 4);
    let mut x5_updated = x5.clone();
    x5_updated.code = "updated".into();
    assert_eq!(
        store
            .put_phones_checked(&[write(&x4, WriteMode::Provision)])
            .expect("older"),
        vec![WriteOutcome::Stale],
        "an older generation never replaces a newer one"
    );
    assert_eq!(
        store
            .put_phones_checked(&[
                write(&x5_updated, WriteMode::Update),
                write(&y5, WriteMode::Provision)
            ])
            .expect("group"),
        vec![WriteOutcome::Written, WriteOutcome::Written]
    );
    assert_eq!(store.get_phone(&x5.mac).expect("get"), Some(x5_updated.clone()));
    let x6 = sample_record(x, 6);
    assert_eq!(
        store
            .put_phones_checked(&[write(&x6, WriteMode::Update)])
            .expect("update"),
        vec![WriteOutcome::Stale],
        "an update of another generation is stale"
    );
    assert_eq!(
        store
            .put_phones_checked(&[write(&x6, WriteMode::Provision)])
            .expect("newer"),
        vec![WriteOutcome::Written],
        "a newer generation replaces"
    );
    assert!(store.put_phones_checked(&[]).expect("nothing").is_empty());

    let fenced = CheckedWrite {
        record: &sample_record(y, 9),
        mode: WriteMode::Provision,
        fence: Some(1),
    };
    store
        .put_phones_checked(&[write(&sample_record(x, 9), WriteMode::Provision), fenced])
        .expect_err("a fence without leases");
    assert_eq!(
        store.get_phone(&x6.mac).expect("get").map(|r| r.generation),
        Some(6),
        "nothing of the refused group was written"
    );
    store.delete_phone(&x6.mac).expect("clean up");
    store.delete_phone(&y5.mac).expect("clean up");
}

/// Service-wide settings: missing, set, replaced, removed, independent of each other.
pub fn settings(store: &dyn Store) {
    assert_eq!(store.get_setting("pbx_identity").expect("missing"), None);
    store.put_setting("pbx_identity", Some(b"innoprov")).expect("set");
    store.put_setting("other", Some(b"")).expect("set empty");
    assert_eq!(
        store.get_setting("pbx_identity").expect("get").as_deref(),
        Some(&b"innoprov"[..])
    );
    store
        .put_setting("pbx_identity", Some(b"pbx-2"))
        .expect("replace");
    assert_eq!(
        store.get_setting("pbx_identity").expect("get").as_deref(),
        Some(&b"pbx-2"[..])
    );
    assert_eq!(
        store.get_setting("other").expect("other").as_deref(),
        Some(&b""[..])
    );
    store.put_setting("pbx_identity", None).expect("remove");
    store.put_setting("pbx_identity", None).expect("remove again");
    assert_eq!(store.get_setting("pbx_identity").expect("removed"), None);
    store.put_setting("other", None).expect("remove other");
    update_setting_loses_no_writer(store);
    store.flush().expect("flush");
}

/// `update_setting` from four threads at once: every change kept (none read a value another
/// was replacing), and `None` removes.
pub fn update_setting_loses_no_writer(store: &dyn Store) {
    std::thread::scope(|scope| {
        for thread in 0..4 {
            scope.spawn(move || {
                for n in 0..25 {
                    store
                        .update_setting("tally", &mut |old| {
                            let mut text = old
                                .map(|b| String::from_utf8_lossy(&b).into_owned())
                                .unwrap_or_default();
                            text.push_str(&format!("{thread}-{n},"));
                            Some(text.into_bytes())
                        })
                        .expect("update");
                }
            });
        }
    });
    let tally = store.get_setting("tally").expect("tally").unwrap_or_default();
    let text = String::from_utf8_lossy(&tally);
    assert_eq!(text.split(',').filter(|e| !e.is_empty()).count(), 100, "{text}");
    store.update_setting("tally", &mut |_| None).expect("remove");
    assert_eq!(store.get_setting("tally").expect("removed"), None);
}

/// Download state and audit: defaults, replacement, order, bound, and removal with the phone.
pub fn access_and_audit(store: &dyn Store) {
    let mac: Mac = "0015650000aa".parse().unwrap_or_else(|_| unreachable!());
    let other: Mac = "0015650000ab".parse().unwrap_or_else(|_| unreachable!());
    store.put_phone(&sample_record("0015650000aa", 5)).expect("put");
    access_state(store, &mac);
    audit_trail(store, &mac, &other);
    removed_with_the_phone(store, &mac, &other);
}

/// A phone's download state: the default, a whole update, one field changed, the epoch.
fn access_state(store: &dyn Store, mac: &Mac) {
    let mac = *mac;
    assert_eq!(
        store.get_access(&mac).expect("default access"),
        PhoneAccess::default()
    );
    let access = PhoneAccess {
        enrolled_generation: Some(5),
        window_reopened_at: Some(9),
        pinned_vendor: Some("snom".into()),
        handed_out_generation: Some(5),
        handed_out_to: Some("192.0.2.1".into()),
        key_profile: Some("sales".into()),
        redirect: Some(crate::redirect::RedirectStatus::new(
            crate::redirect::RedirectState::OwnedElsewhere,
            "yealink: registered elsewhere",
            "yealink",
            7,
            Some("1234".into()),
        )),
        device_code: Some("X7K2".into()),
    };
    let epoch = store.write_epoch();
    let written = store
        .update_access(&mac, &mut |a| *a = access.clone())
        .expect("update access");
    assert_eq!(written, access);
    let pinned = store
        .update_access(&mac, &mut |a| a.pinned_vendor = None)
        .expect("change one field");
    assert_eq!(
        (pinned.enrolled_generation, pinned.pinned_vendor),
        (Some(5), None),
        "the other fields stay"
    );
    store
        .update_access(&mac, &mut |a| a.pinned_vendor = Some("snom".into()))
        .expect("pin again");
    assert_ne!(
        store.write_epoch(),
        epoch,
        "a download-state write changes the epoch"
    );
    assert_eq!(store.get_access(&mac).expect("access"), access);
}

/// Audits: per phone, the latest first-in order, replacement, appending and trimming.
fn audit_trail(store: &dyn Store, mac: &Mac, other: &Mac) {
    let (mac, other) = (*mac, *other);
    let entry = sample_entry;
    let entries: Vec<AuditEntry> = (0..20).map(entry).collect();
    store.put_audit(&mac, &entries).expect("put audit");
    store.put_audit(&other, &[entry(7)]).expect("put other audit");
    let latest = store.audit(&mac, 5).expect("audit");
    let ats: Vec<u64> = latest.iter().map(|e| e.at).collect();
    assert_eq!(ats, [15, 16, 17, 18, 19], "latest entries, oldest first");
    assert_eq!(store.audit(&mac, usize::MAX).expect("whole audit"), entries);
    store.put_audit(&mac, &entries[10..]).expect("replace audit");
    assert_eq!(
        store.audit(&mac, usize::MAX).expect("replaced audit").len(),
        10,
        "replaced, not appended"
    );
    assert_eq!(
        store.audit(&other, 10).expect("other audit").len(),
        1,
        "per phone"
    );
    // Appending keeps what is stored, adds in order and trims to `keep` ordinary downloads.
    store
        .append_audit(&other, vec![entry(8), entry(9)], 100)
        .expect("append");
    let ats: Vec<u64> = store
        .audit(&other, 10)
        .expect("appended")
        .iter()
        .map(|e| e.at)
        .collect();
    assert_eq!(ats, [7, 8, 9], "appended after what was stored");
    store
        .append_audit(&other, vec![entry(10)], 2)
        .expect("append and trim");
    let ats: Vec<u64> = store
        .audit(&other, 10)
        .expect("trimmed")
        .iter()
        .map(|e| e.at)
        .collect();
    assert_eq!(ats, [9, 10], "trimmed to the newest 2");
    store
        .put_audit(&other, &[entry(7)])
        .expect("put other audit again");
}

/// Deleting a phone takes its download state and audit with it, and no other phone's.
fn removed_with_the_phone(store: &dyn Store, mac: &Mac, other: &Mac) {
    let (mac, other) = (*mac, *other);
    let epoch = store.write_epoch();
    assert!(store.delete_phone(&mac).expect("delete"));
    assert_ne!(store.write_epoch(), epoch, "a delete changes the epoch");
    assert_eq!(
        store.get_access(&mac).expect("access after delete"),
        PhoneAccess::default()
    );
    assert!(store.audit(&mac, 10).expect("audit after delete").is_empty());
    assert_eq!(store.audit(&other, 10).expect("other audit").len(), 1);
}

/// The admin list: every phone with its download state, in MAC order, a phone without a
/// stored state with the default.
pub fn phones_with_access(store: &dyn Store) {
    let (a, b) = (
        sample_record("00156500aa01", 21),
        sample_record("00156500aa02", 22),
    );
    store.put_phone(&b).expect("put b");
    store.put_phone(&a).expect("put a");
    let pinned = store
        .update_access(&a.mac, &mut |access| access.pinned_vendor = Some("snom".into()))
        .expect("pin a");
    let listed = store.phones_with_access().expect("list with access");
    let ours: Vec<_> = listed
        .iter()
        .filter(|(r, _)| r.mac == a.mac || r.mac == b.mac)
        .collect();
    assert_eq!(ours.len(), 2, "both phones listed");
    assert_eq!(
        (&ours[0].0, &ours[0].1),
        (&a, &pinned),
        "MAC order, with the stored state"
    );
    assert_eq!(
        (&ours[1].0, &ours[1].1),
        (&b, &PhoneAccess::default()),
        "no state: the default"
    );
    let macs: Vec<Mac> = listed.iter().map(|(r, _)| r.mac).collect();
    let phones: Vec<Mac> = store.phones().expect("phones").iter().map(|r| r.mac).collect();
    assert_eq!(macs, phones, "the same phones, in the same order, as phones()");
    store.delete_phone(&a.mac).expect("delete a");
    store.delete_phone(&b.mac).expect("delete b");
}

/// What was flushed is there after the store is dropped and opened again.
pub fn survives_reopen<S: Store>(path: &Path, open: impl Fn(&Path) -> S) {
    {
        let store = open(path);
        store.put_phone(&sample_record("0a0b0c0d0e0f", 9)).expect("put");
        store
            .put_setting("pbx_identity", Some(b"innoprov"))
            .expect("setting");
        store.flush().expect("flush");
    }
    let store = open(path);
    let mac: Mac = "0a0b0c0d0e0f".parse().unwrap_or_else(|_| unreachable!());
    assert_eq!(
        store.get_phone(&mac).expect("get"),
        Some(sample_record("0a0b0c0d0e0f", 9))
    );
    assert_eq!(
        store.get_setting("pbx_identity").expect("setting").as_deref(),
        Some(&b"innoprov"[..])
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_store_conforms() {
        super::run(&super::super::MemoryStore::new());
    }
}
