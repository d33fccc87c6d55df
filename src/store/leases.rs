//! Leases: which instance holds each phone's Devices link when several instances share one
//! database (design.md, flow step 8), behind one trait beside [`Store`](super::Store).
//!
//! A lease names its owner, lasts [`Leases::lease`] unless renewed, and carries a fencing
//! token that is new whenever the owner changes. A phone's record is written by a lease
//! holder only through [`Leases::put_phone_fenced`]: the write happens while the token it
//! names is still the phone's current one and this instance its owner, so a paused former
//! owner can never overwrite what the new owner stored. Every implementation decides that
//! check itself; there is no default that ignores the fence.
//!
//! A lease ends when it runs out, or earlier when its owner's session with the table ended
//! ([`Leases::departed`], [`Leases::expire_departed`]): a crashed instance's phones are
//! taken over in seconds instead of a lease, while an instance that is only paused or cut
//! off keeps its session (or cannot be judged) and so keeps its phones until the lease ends.
//!
//! Implementations: [`MemoryLeases`](super::MemoryLeases) (instances sharing one in-memory
//! table with a clock tests set) and the PostgreSQL store's leases (`innoprov-actors`). Both
//! pass [`leases_conformance`](super::leases_conformance).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::StoreError;
use crate::mac::Mac;
use crate::phone::PhoneRecord;

/// A fencing token: new (and larger) whenever a phone's lease changes owner.
pub type Token = i64;

/// Who holds a phone after a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This instance (new lease, taken over an expired one, or already its own).
    Held,
    /// Another live instance, by its owner name.
    HeldBy(String),
}

/// What a renewal found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Renewal {
    /// Held here but no longer ours in the table (taken over after expiry, or the phone was
    /// deleted): their jobs must stop.
    pub lost: Vec<Mac>,
    /// Ours in the table but not held here (forgotten during an outage, still unexpired).
    pub adopted: Vec<Mac>,
}

/// This instance's side of the shared lease table.
///
/// Every call may block on the database for its round trip: callers on an async runtime run
/// them on a blocking pool.
pub trait Leases: Send + Sync + 'static {
    /// Who this instance is in the lease table (unique per running process).
    fn owner(&self) -> &str;
    /// How long a lease lasts unless renewed.
    fn lease(&self) -> Duration;
    /// The fencing token this instance holds for `mac`, if it holds the phone.
    fn token(&self, mac: &Mac) -> Option<Token>;
    /// Whether this instance holds `mac`'s lease.
    fn holds(&self, mac: &Mac) -> bool {
        self.token(mac).is_some()
    }
    /// Takes `mac`'s lease if it is free, expired or already ours.
    fn claim(&self, mac: &Mac) -> Result<Claim, StoreError>;
    /// Takes the leases of up to `limit` stored phones that nobody holds (never leased,
    /// expired or released); the phones now held.
    fn claim_free(&self, limit: usize) -> Result<Vec<Mac>, StoreError>;
    /// Extends every lease this instance holds; what it lost and what it found ours again.
    fn renew(&self) -> Result<Renewal, StoreError>;
    /// Forgets every lease locally (the table could not be reached for too long to be sure of
    /// them); [`renew`](Leases::renew) adopts those still ours once it is back.
    fn forget(&self);
    /// Gives up `macs` (their links are closed) so that any instance may take them at once.
    fn release(&self, macs: &[Mac]) -> Result<(), StoreError>;
    /// Gives up every lease this instance holds (a graceful shutdown); how many.
    fn release_all(&self) -> Result<usize, StoreError>;
    /// Hands `mac`'s lease straight to `to` (who asked for it), with a new token; whether it
    /// was still ours to hand.
    fn hand_over(&self, mac: &Mac, to: &str) -> Result<bool, StoreError>;
    /// Asks `mac`'s owner to hand its lease to this instance.
    fn want(&self, mac: &Mac) -> Result<(), StoreError>;
    /// The phones whose unexpired lease another instance holds.
    fn held_elsewhere(&self) -> Result<HashSet<Mac>, StoreError>;
    /// The other owners of unexpired leases whose session with the table has ended (their
    /// process died), as seen now. Empty while this instance cannot judge: its own session
    /// is too young to tell a dead owner from one still reconnecting.
    fn departed(&self) -> Result<Vec<String>, StoreError>;
    /// Ends at once the unexpired leases of those `owners` whose session is still gone (the
    /// check is made again here), so that any instance may claim their phones; how many
    /// leases ended. Fencing is unchanged: a claim brings a new token.
    fn expire_departed(&self, owners: &[String]) -> Result<usize, StoreError>;
    /// Writes `record` only while `fence` is the phone's current token and this instance its
    /// owner; otherwise nothing is written, the error says why, and the token is forgotten
    /// here if it is the one held.
    fn put_phone_fenced(&self, record: &PhoneRecord, fence: Token) -> Result<(), StoreError>;
}

/// The refusal of a fenced write whose token is no longer current.
pub fn taken_over(mac: &Mac) -> StoreError {
    StoreError::Backend(format!(
        "phone {mac}: its lease was taken over by another instance; not written"
    ))
}

/// What a renewal means for the tokens `held` here: `before` is what was held when the
/// renewal started, `ours` what the table says is ours now. Claims, hand-overs and releases
/// may run meanwhile, so only what was held before and is still held unchanged can be lost,
/// and only what was neither held before nor is now can be adopted. Updates `held`.
pub fn reconcile(
    before: &HashMap<Mac, Token>,
    ours: &HashMap<Mac, Token>,
    held: &mut HashMap<Mac, Token>,
) -> Renewal {
    let mut renewal = Renewal::default();
    for (mac, token) in before {
        if ours.get(mac) != Some(token) && held.get(mac) == Some(token) {
            held.remove(mac);
            renewal.lost.push(*mac);
        }
    }
    for (mac, token) in ours {
        if !before.contains_key(mac) && !held.contains_key(mac) {
            held.insert(*mac, *token);
            renewal.adopted.push(*mac);
        }
    }
    renewal.lost.sort();
    renewal.adopted.sort();
    renewal
}
