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

/// Instances for the departure part of the contract: an owner whose session ended loses its
/// leases before they run out, a live one never does.
pub struct Departure<'a> {
    /// The shared store: the crashed owner's phones are seeded here, so that a claim of free
    /// phones can take them.
    pub store: &'a dyn Store,
    /// The instance that looks for departed owners and takes their phones.
    pub survivor: &'a dyn Leases,
    /// Starts another instance, has it claim `phones`, and ends it as a crash would (its
    /// session gone, its leases unexpired); its owner name.
    pub crash: &'a dyn Fn(&[Mac]) -> String,
    /// Starts another instance that claims `phones` and stays alive while it is kept.
    pub live: &'a dyn Fn(&[Mac]) -> Box<dyn Leases>,
    /// Waits between two looks (a real session ends a moment after its process).
    pub pause: &'a dyn Fn(),
}

/// How many looks the departure suite takes at most before it gives up.
const LOOKS: usize = 100;

/// The departure contract: a crashed owner is found departed (and a live one never) while
/// its leases are unexpired; looking changes nothing; expiring ends only the departed
/// owner's leases, whose phones are then free to claim with new tokens. Panics on a breach.
pub fn run_departure(d: &Departure<'_>) {
    let survivor = d.survivor;
    let live_phone = mac("0015651a2c01");
    let gone_phones = [mac("0015651a2c02"), mac("0015651a2c03")];
    for m in gone_phones.iter().chain([&live_phone]) {
        d.store
            .put_phone(&sample_record(&m.to_string(), 30))
            .expect("seed");
    }
    let alive = (d.live)(&[live_phone]);
    let alive_token = alive.token(&live_phone).expect("the live owner holds its phone");
    let gone = (d.crash)(&gone_phones);
    assert_ne!(gone, alive.owner());

    let mut found = Vec::new();
    for _ in 0..LOOKS {
        found = survivor.departed().expect("look for departed owners");
        assert!(
            !found.iter().any(|o| o == alive.owner() || o == survivor.owner()),
            "a live owner is never departed: {found:?}"
        );
        if found.contains(&gone) {
            break;
        }
        (d.pause)();
    }
    assert_eq!(found, vec![gone.clone()], "the crashed owner is found departed");
    assert_eq!(
        survivor.claim(&gone_phones[0]).expect("claim"),
        Claim::HeldBy(gone.clone()),
        "looking alone takes nothing"
    );

    let ended = survivor
        .expire_departed(&[gone.clone(), alive.owner().to_string()])
        .expect("expire departed");
    assert_eq!(ended, gone_phones.len(), "only the departed owner's leases end");
    assert_eq!(survivor.claim(&gone_phones[0]).expect("claim"), Claim::Held);
    assert_eq!(
        survivor.claim_free(10).expect("claim free"),
        vec![gone_phones[1]],
        "the departed owner's other phone is free, the live owner's is not"
    );
    assert_eq!(
        survivor.claim(&live_phone).expect("claim"),
        Claim::HeldBy(alive.owner().to_string())
    );
    alive
        .put_phone_fenced(&sample_record(&live_phone.to_string(), 31), alive_token)
        .expect("the live owner still writes");
    assert!(
        survivor.departed().expect("look again").is_empty(),
        "nothing departed holds a lease any more"
    );
    survivor.release(&gone_phones).expect("release");
    alive.release_all().expect("release");
}
