//! The one test suite every [`Leases`] implementation must pass, on two instances sharing one
//! lease table and one store (the [`conformance`](super::conformance) pattern). Public so that
//! the PostgreSQL leases in `innoprov-actors` run it too.

use std::collections::HashSet;

use super::Store;
use super::conformance::sample_record;
use super::leases::{Claim, Leases};
use crate::mac::Mac;

/// Two instances on one lease table and one store.
pub struct Instances<'a> {
    /// The shared store, written without a lease (seeding phones) and read back.
    pub store: &'a dyn Store,
    /// The first instance.
    pub a: &'a dyn Leases,
    /// The second instance.
    pub b: &'a dyn Leases,
    /// Lets every lease taken so far expire (a test clock moved past the lease, or a real
    /// wait); leases taken afterwards are fresh.
    pub expire: &'a dyn Fn(),
}

fn mac(text: &str) -> Mac {
    text.parse().unwrap_or_else(|_| unreachable!("a literal MAC"))
}

/// The stored generation of `m`.
fn stored(store: &dyn Store, m: &Mac) -> Option<u64> {
    store.get_phone(m).expect("read").map(|r| r.generation)
}

/// The contract: one owner at a time, takeover after expiry with a new token, fenced writes,
/// renewal reporting what was lost and adopted, claims of free phones within their limit,
/// release, hand-over. Panics on a breach.
pub fn run(i: &Instances<'_>) {
    let (a, b) = (i.a, i.b);
    assert_ne!(a.owner(), b.owner(), "each instance has its own name");
    let first = one_owner_and_fencing(i);
    takeover_after_expiry(i, first);
    free_phones_within_the_limit(i);
    hand_over_and_release(i);
}

/// Claim a free phone: held, with a token; the other instance sees its owner. Returns the
/// token.
fn one_owner_and_fencing(i: &Instances<'_>) -> i64 {
    let (a, b) = (i.a, i.b);
    let p = mac("0015651a2b3c");
    assert_eq!(
        a.claim(&p).expect("claim"),
        Claim::Held,
        "a free phone is claimed"
    );
    let token = a.token(&p).expect("a holds a token");
    assert!(a.holds(&p));
    assert_eq!(
        a.claim(&p).expect("claim again"),
        Claim::Held,
        "its own lease again"
    );
    assert_eq!(
        a.token(&p),
        Some(token),
        "re-claiming its own lease keeps the token"
    );
    assert_eq!(
        b.claim(&p).expect("claim"),
        Claim::HeldBy(a.owner().to_string()),
        "a live lease is not taken"
    );
    assert!(!b.holds(&p));
    assert_eq!(b.held_elsewhere().expect("elsewhere"), HashSet::from([p]));
    assert!(a.held_elsewhere().expect("elsewhere").is_empty());

    a.put_phone_fenced(&sample_record("0015651a2b3c", 1), token)
        .expect("the owner writes with its token");
    assert_eq!(stored(i.store, &p), Some(1));
    b.put_phone_fenced(&sample_record("0015651a2b3c", 2), token)
        .expect_err("another instance cannot write with the owner's token");
    assert_eq!(stored(i.store, &p), Some(1), "nothing written");
    token
}

/// Once a's lease expires, b takes the phone over with a new token; a's renewal reports it
/// lost; a's stale write is refused, b's current one is not.
fn takeover_after_expiry(i: &Instances<'_>, first: i64) {
    let (a, b) = (i.a, i.b);
    let p = mac("0015651a2b3c");
    (i.expire)();
    assert!(
        b.held_elsewhere().expect("elsewhere").is_empty(),
        "an expired lease is nobody's"
    );
    assert_eq!(
        b.claim(&p).expect("claim"),
        Claim::Held,
        "an expired lease is taken over"
    );
    let second = b.token(&p).expect("b's token");
    assert_ne!(second, first, "a takeover brings a new token");
    assert_eq!(
        a.renew().expect("renew").lost,
        vec![p],
        "a learns it lost the phone"
    );
    assert!(!a.holds(&p));

    let refused = a
        .put_phone_fenced(&sample_record("0015651a2b3c", 3), first)
        .expect_err("a stale token's write is refused");
    assert!(refused.to_string().contains("taken over"), "{refused}");
    assert_eq!(stored(i.store, &p), Some(1), "the stale write changed nothing");
    b.put_phone_fenced(&sample_record("0015651a2b3c", 4), second)
        .expect("the current token writes");
    assert_eq!(stored(i.store, &p), Some(4));
    assert_eq!(b.renew().expect("renew"), Default::default(), "b lost nothing");
    assert_eq!(b.token(&p), Some(second), "renewal keeps the token");
}

/// Claims of free stored phones take at most `limit`, never a live lease.
fn free_phones_within_the_limit(i: &Instances<'_>) {
    let (a, b) = (i.a, i.b);
    let free = ["0015651a2b40", "0015651a2b41", "0015651a2b42"];
    for (n, text) in free.iter().enumerate() {
        i.store
            .put_phone(&sample_record(text, 10 + n as u64))
            .expect("seed");
    }
    let taken = a.claim_free(2).expect("claim free");
    assert_eq!(taken.len(), 2, "the limit holds: {taken:?}");
    assert!(taken.iter().all(|m| a.holds(m)));
    let rest = b.claim_free(10).expect("claim free");
    assert_eq!(rest.len(), 1, "only the one nobody holds: {rest:?}");
    assert!(!taken.contains(&rest[0]));
    assert!(a.claim_free(10).expect("claim free").is_empty(), "nothing left");
    assert!(b.claim_free(0).expect("claim none").is_empty());
}

/// A hand-over moves a lease with a new token; releases free leases at once; a forgotten
/// lease is adopted again at renewal.
fn hand_over_and_release(i: &Instances<'_>) {
    let (a, b) = (i.a, i.b);
    let free = ["0015651a2b40", "0015651a2b41", "0015651a2b42"].map(mac);
    let p = *free.iter().find(|m| a.holds(m)).expect("a took free phones");
    let old = a.token(&p).expect("token");
    b.want(&p).expect("b asks for it");
    assert!(a.hand_over(&p, b.owner()).expect("hand over"), "handed");
    assert!(!a.holds(&p));
    assert!(
        !a.hand_over(&p, b.owner()).expect("again"),
        "no longer a's to hand"
    );
    assert_eq!(
        b.renew().expect("renew").adopted,
        vec![p],
        "b finds it at renewal"
    );
    let new = b.token(&p).expect("b's token");
    assert_ne!(new, old, "a hand-over brings a new token");
    let text = p.to_string();
    a.put_phone_fenced(&sample_record(&text, 20), old)
        .expect_err("the former owner's token is refused");
    b.put_phone_fenced(&sample_record(&text, 21), new)
        .expect("the new owner writes");
    assert_eq!(stored(i.store, &p), Some(21));

    // a forgets what it holds (an outage); its renewal adopts what is still its own.
    let held_by_a: Vec<Mac> = free.iter().copied().filter(|m| a.holds(m)).collect();
    assert!(!held_by_a.is_empty());
    a.forget();
    assert!(held_by_a.iter().all(|m| !a.holds(m)), "forgotten here");
    let mut adopted = a.renew().expect("renew").adopted;
    adopted.sort();
    assert_eq!(adopted, held_by_a, "still a's in the table");

    // Released leases are free at once, to anyone.
    a.release(&held_by_a[..1]).expect("release");
    assert!(!a.holds(&held_by_a[0]));
    assert_eq!(
        b.claim(&held_by_a[0]).expect("claim"),
        Claim::Held,
        "free at once"
    );
    let b_held = b.release_all().expect("release all");
    assert!(
        b_held >= 3,
        "b held the taken-over phone, the handed one and more: {b_held}"
    );
    let a_held = a.release_all().expect("release all");
    assert!(
        b.held_elsewhere().expect("elsewhere").is_empty(),
        "nobody holds anything"
    );
    let all = b.claim_free(100).expect("claim free");
    assert_eq!(
        all.len(),
        b_held + a_held,
        "every released phone is free: {all:?}"
    );
    assert_eq!(b.release_all().expect("release all"), all.len());
}
