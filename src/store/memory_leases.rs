//! In-memory leases: several "instances" ([`MemoryLeases`]) sharing one [`LeaseTable`] whose
//! clock a test moves, so that expiry, takeover and hand-over are testable without sleeping
//! and without a database. The same contract as the PostgreSQL leases
//! ([`leases_conformance`](super::leases_conformance)).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::leases::{Claim, Leases, Renewal, Token, reconcile, taken_over};
use super::{Store, StoreError};
use crate::mac::Mac;
use crate::phone::PhoneRecord;

/// One phone's lease in the table.
#[derive(Debug, Clone)]
struct Row {
    /// The holding instance's owner name.
    owner: String,
    /// The current fencing token.
    token: Token,
    /// When it expires, on the table's clock.
    expires: Duration,
}

/// What the table keeps behind its one lock.
#[derive(Debug, Default)]
struct Table {
    /// Each leased phone's row.
    rows: BTreeMap<Mac, Row>,
    /// The last token handed out (tokens only grow).
    last_token: Token,
    /// The table's clock: time since it was made, moved only by [`LeaseTable::advance`].
    now: Duration,
    /// Every `want` so far, as (phone, asking owner): what a NOTIFY would have carried.
    asks: Vec<(Mac, String)>,
    /// The owners whose session ended ([`LeaseTable::end_session`]): what a database's
    /// released session lock would show.
    ended: HashSet<String>,
}

impl Table {
    fn next_token(&mut self) -> Token {
        self.last_token += 1;
        self.last_token
    }

    /// Whether `row` has expired by now.
    fn expired(&self, row: &Row) -> bool {
        row.expires < self.now
    }
}

/// The lease table the instances share (the database's `leases` table in memory).
#[derive(Debug, Default)]
pub struct LeaseTable {
    /// The rows, the token counter, the clock and the asks, under one lock (a statement).
    table: Mutex<Table>,
}

impl LeaseTable {
    /// An empty table at time zero.
    pub fn new() -> Arc<LeaseTable> {
        Arc::new(LeaseTable::default())
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every change is made whole under the lock before anything can panic.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the table's clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.lock().now += by;
    }

    /// Every `want` so far: (phone, asking owner).
    pub fn asks(&self) -> Vec<(Mac, String)> {
        self.lock().asks.clone()
    }

    /// Ends `owner`'s session, as a crash would: its leases stay in the table, unexpired,
    /// until another instance finds it [`departed`](Leases::departed).
    pub fn end_session(&self, owner: &str) {
        self.lock().ended.insert(owner.to_string());
    }
}

/// One instance's side of a shared [`LeaseTable`].
pub struct MemoryLeases {
    /// The table shared with the other instances.
    table: Arc<LeaseTable>,
    /// The phones' store: claims of free phones read it, fenced writes go to it.
    store: Arc<dyn Store>,
    /// This instance's owner name.
    owner: String,
    /// How long a lease lasts unless renewed.
    lease: Duration,
    /// The phones this instance holds, with their tokens.
    held: Mutex<HashMap<Mac, Token>>,
}

impl MemoryLeases {
    /// Instance `owner` on `table`, its phones in `store`, leases of `lease`.
    pub fn new(table: Arc<LeaseTable>, store: Arc<dyn Store>, owner: &str, lease: Duration) -> MemoryLeases {
        MemoryLeases {
            table,
            store,
            owner: owner.to_string(),
            lease,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn held(&self) -> MutexGuard<'_, HashMap<Mac, Token>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh row of this instance's on `table`.
    fn row(&self, table: &mut Table, token: Option<Token>) -> Row {
        Row {
            owner: self.owner.clone(),
            token: token.unwrap_or_else(|| table.next_token()),
            expires: table.now + self.lease,
        }
    }
}

impl Leases for MemoryLeases {
    fn owner(&self) -> &str {
        &self.owner
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    fn token(&self, mac: &Mac) -> Option<Token> {
        self.held().get(mac).copied()
    }

    fn claim(&self, mac: &Mac) -> Result<Claim, StoreError> {
        let mut table = self.table.lock();
        let current = table.rows.get(mac).cloned();
        match current {
            Some(row) if row.owner != self.owner && !table.expired(&row) => {
                self.held().remove(mac);
                Ok(Claim::HeldBy(row.owner))
            }
            current => {
                let keep = current.filter(|r| r.owner == self.owner).map(|r| r.token);
                let row = self.row(&mut table, keep);
                self.held().insert(*mac, row.token);
                table.rows.insert(*mac, row);
                Ok(Claim::Held)
            }
        }
    }

    fn claim_free(&self, limit: usize) -> Result<Vec<Mac>, StoreError> {
        let phones = self.store.phones()?;
        let mut table = self.table.lock();
        let free: Vec<Mac> = phones
            .iter()
            .map(|record| record.mac)
            .filter(|mac| table.rows.get(mac).is_none_or(|row| table.expired(row)))
            .take(limit)
            .collect();
        let mut held = self.held();
        for mac in &free {
            let row = self.row(&mut table, None);
            held.insert(*mac, row.token);
            table.rows.insert(*mac, row);
        }
        Ok(free)
    }

    fn renew(&self) -> Result<Renewal, StoreError> {
        let before = self.held().clone();
        let mut table = self.table.lock();
        let expires = table.now + self.lease;
        let mut ours = HashMap::new();
        for (mac, row) in table.rows.iter_mut().filter(|(_, r)| r.owner == self.owner) {
            row.expires = expires;
            ours.insert(*mac, row.token);
        }
        drop(table);
        Ok(reconcile(&before, &ours, &mut self.held()))
    }

    fn forget(&self) {
        self.held().clear();
    }

    fn release(&self, macs: &[Mac]) -> Result<(), StoreError> {
        let mut table = self.table.lock();
        let mut held = self.held();
        for mac in macs {
            if table.rows.get(mac).is_some_and(|row| row.owner == self.owner) {
                table.rows.remove(mac);
            }
            held.remove(mac);
        }
        Ok(())
    }

    fn release_all(&self) -> Result<usize, StoreError> {
        let macs: Vec<Mac> = self.held().keys().copied().collect();
        self.release(&macs)?;
        Ok(macs.len())
    }

    fn hand_over(&self, mac: &Mac, to: &str) -> Result<bool, StoreError> {
        let mut table = self.table.lock();
        self.held().remove(mac);
        if table.rows.get(mac).is_none_or(|row| row.owner != self.owner) {
            return Ok(false);
        }
        let row = Row {
            owner: to.to_string(),
            token: table.next_token(),
            expires: table.now + self.lease,
        };
        table.rows.insert(*mac, row);
        Ok(true)
    }

    fn want(&self, mac: &Mac) -> Result<(), StoreError> {
        self.table.lock().asks.push((*mac, self.owner.clone()));
        Ok(())
    }

    fn held_elsewhere(&self) -> Result<HashSet<Mac>, StoreError> {
        let table = self.table.lock();
        Ok(table
            .rows
            .iter()
            .filter(|(_, row)| row.owner != self.owner && row.expires > table.now)
            .map(|(mac, _)| *mac)
            .collect())
    }

    fn departed(&self) -> Result<Vec<String>, StoreError> {
        let table = self.table.lock();
        let owners: std::collections::BTreeSet<String> = table
            .rows
            .values()
            .filter(|row| row.owner != self.owner && !table.expired(row))
            .filter(|row| table.ended.contains(&row.owner))
            .map(|row| row.owner.clone())
            .collect();
        Ok(owners.into_iter().collect())
    }

    fn expire_departed(&self, owners: &[String]) -> Result<usize, StoreError> {
        let mut table = self.table.lock();
        let before = table.rows.len();
        let ended = std::mem::take(&mut table.ended);
        let now = table.now;
        // The rows go: on this table's clock nothing but their absence is free at once.
        table.rows.retain(|_, row| {
            row.expires < now || !(owners.contains(&row.owner) && ended.contains(&row.owner))
        });
        table.ended = ended;
        Ok(before - table.rows.len())
    }

    fn put_phone_fenced(&self, record: &PhoneRecord, fence: Token) -> Result<(), StoreError> {
        // The table stays locked while the record is written: a takeover waits for it.
        let table = self.table.lock();
        let current = table
            .rows
            .get(&record.mac)
            .is_some_and(|row| row.owner == self.owner && row.token == fence);
        if current {
            return self.store.put_phone(record);
        }
        drop(table);
        let mut held = self.held();
        if held.get(&record.mac) == Some(&fence) {
            held.remove(&record.mac);
        }
        Err(taken_over(&record.mac))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{LeaseTable, MemoryLeases};
    use crate::store::leases::{Claim, Leases};
    use crate::store::{MemoryStore, Store, leases_conformance};

    const LEASE: Duration = Duration::from_secs(30);

    #[test]
    fn memory_leases_pass_the_lease_conformance_suite() {
        let table = LeaseTable::new();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a = MemoryLeases::new(Arc::clone(&table), Arc::clone(&store), "a", LEASE);
        let b = MemoryLeases::new(Arc::clone(&table), Arc::clone(&store), "b", LEASE);
        let expire = || table.advance(LEASE + Duration::from_secs(1));
        leases_conformance::run(&leases_conformance::Instances {
            store: store.as_ref(),
            a: &a,
            b: &b,
            expire: &expire,
        });
    }

    #[test]
    fn memory_leases_pass_the_departure_part_of_the_conformance_suite() {
        let table = LeaseTable::new();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let survivor = MemoryLeases::new(Arc::clone(&table), Arc::clone(&store), "survivor", LEASE);
        let start = |name: &str| MemoryLeases::new(Arc::clone(&table), Arc::clone(&store), name, LEASE);
        let crash = |phones: &[crate::Mac]| {
            let gone = start("crashed");
            for mac in phones {
                assert_eq!(gone.claim(mac).unwrap(), Claim::Held);
            }
            table.end_session("crashed");
            "crashed".to_string()
        };
        let live = |phones: &[crate::Mac]| -> Box<dyn Leases> {
            let alive = start("alive");
            for mac in phones {
                assert_eq!(alive.claim(mac).unwrap(), Claim::Held);
            }
            Box::new(alive)
        };
        leases_conformance::run_departure(&leases_conformance::Departure {
            store: store.as_ref(),
            survivor: &survivor,
            crash: &crash,
            live: &live,
            pause: &|| {},
        });
    }

    #[test]
    fn a_renewed_lease_outlives_its_first_term_and_a_want_is_heard() {
        let table = LeaseTable::new();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a = MemoryLeases::new(Arc::clone(&table), Arc::clone(&store), "a", LEASE);
        let b = MemoryLeases::new(Arc::clone(&table), Arc::clone(&store), "b", LEASE);
        let p = "0015651a2b3c".parse().unwrap();
        assert_eq!(a.claim(&p).unwrap(), Claim::Held);
        table.advance(LEASE * 2 / 3);
        assert!(a.renew().unwrap().lost.is_empty());
        table.advance(LEASE * 2 / 3);
        assert_eq!(
            b.claim(&p).unwrap(),
            Claim::HeldBy("a".into()),
            "renewed, still a's"
        );
        table.advance(LEASE);
        assert_eq!(b.claim(&p).unwrap(), Claim::Held, "unrenewed, it expired");
        a.want(&p).unwrap();
        assert_eq!(table.asks(), vec![(p, "a".to_string())]);
    }
}
