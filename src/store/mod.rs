//! Persistence behind one narrow trait. `SledStore` is the production store; `MemoryStore`
//! serves tests and benches. Both pass the same conformance suite (`conformance`), so a third
//! backend (redb, stack.md §1) is a drop-in once it passes it too.
//!
//! Several instances on one database hold each phone under a lease: the [`Leases`] trait
//! beside `Store`, with fencing part of it ([`Leases::put_phone_fenced`]), an in-memory
//! implementation ([`MemoryLeases`] on a shared [`LeaseTable`]) and its own conformance suite
//! ([`leases_conformance`]); the PostgreSQL store in `innoprov-actors` implements both.

mod checked;
mod leases;
mod memory;
mod memory_leases;
mod sled_store;

pub mod conformance;
pub mod leases_conformance;

pub use checked::{CheckedWrite, WriteMode, WriteOutcome, one_by_one};
pub use leases::{Claim, Leases, Renewal, Token, reconcile, taken_over};
pub use memory::MemoryStore;
pub use memory_leases::{LeaseTable, MemoryLeases};
pub use sled_store::SledStore;

use crate::mac::Mac;
use crate::phone::PhoneRecord;
use crate::provisioning::{AuditEntry, PhoneAccess};

/// Whether a cached copy of a record is still what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// The phone is no longer stored.
    Missing,
    /// The stored bytes equal the cached ones.
    Unchanged,
    /// The stored bytes differ; here they are.
    Changed(Vec<u8>),
}

/// A store failure, naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, corruption it detected, ...).
    #[error("store: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("store: record of {mac} is unreadable: {reason}")]
    Corrupt {
        /// The phone whose record is damaged.
        mac: String,
        /// The decoder's complaint.
        reason: String,
    },
}

/// Durable state of the service, keyed by MAC.
///
/// Writes are applied at once but are durable only after `flush` returns: callers acknowledge
/// nothing to a peer before that (the persistence actor batches many writes per flush).
pub trait Store: Send + Sync + 'static {
    /// Inserts or replaces a phone's record atomically.
    fn put_phone(&self, record: &PhoneRecord) -> Result<(), StoreError>;
    /// The phone's record, if stored.
    fn get_phone(&self, mac: &Mac) -> Result<Option<PhoneRecord>, StoreError>;
    /// The phone's record as stored bytes (for caches that compare instead of decoding).
    fn get_phone_bytes(&self, mac: &Mac) -> Result<Option<Vec<u8>>, StoreError>;
    /// Compares the stored record with `cached` bytes in place: the download path's check
    /// that its decoded copy is still current, without copying the record.
    fn phone_changed(&self, mac: &Mac, cached: &[u8]) -> Result<Freshness, StoreError>;
    /// Removes a phone's record, download state and audit; whether there was a record.
    fn delete_phone(&self, mac: &Mac) -> Result<bool, StoreError>;
    /// Every stored phone, in MAC order.
    fn phones(&self) -> Result<Vec<PhoneRecord>, StoreError>;
    /// Every stored phone with its download state, in MAC order: the admin list. A store on a
    /// server answers it in one round trip; the default reads each state (an embedded store's
    /// reads cost microseconds).
    fn phones_with_access(&self) -> Result<Vec<(PhoneRecord, PhoneAccess)>, StoreError> {
        self.phones()?
            .into_iter()
            .map(|record| {
                let access = self.get_access(&record.mac)?;
                Ok((record, access))
            })
            .collect()
    }
    /// A phone's download state (the default when none is stored).
    fn get_access(&self, mac: &Mac) -> Result<PhoneAccess, StoreError>;
    /// Changes a phone's download state atomically (read, `change`, write, with no other
    /// writer in between; `change` may run more than once) and returns the new state.
    fn update_access(
        &self,
        mac: &Mac,
        change: &mut dyn FnMut(&mut PhoneAccess),
    ) -> Result<PhoneAccess, StoreError>;
    /// Replaces the phone's stored audit (its latest downloads, oldest first; the caller bounds
    /// it). One value per phone: the download path batches audit writes in memory.
    fn put_audit(&self, mac: &Mac, entries: &[AuditEntry]) -> Result<(), StoreError>;
    /// Appends `new` to the phone's stored audit and trims it to the newest `keep` ordinary
    /// downloads plus its enrolment entries ([`trim_audit`](crate::provisioning::trim_audit)).
    /// A store shared by several instances does it atomically (each flushes its own batch);
    /// the default reads and writes, for a store with one writer.
    fn append_audit(&self, mac: &Mac, new: Vec<AuditEntry>, keep: usize) -> Result<(), StoreError> {
        let stored = self.audit(mac, keep + crate::provisioning::ENROLMENT_ENTRIES)?;
        self.put_audit(mac, &appended(stored, new, keep))
    }
    /// The phone's latest `limit` stored downloads, oldest first.
    fn audit(&self, mac: &Mac, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// A number that changes whenever a record or a download state is written or deleted (not
    /// A service-wide setting (the pinned PBX identity, the addresses that logged in before),
    /// `None` when never set.
    fn get_setting(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets a service-wide setting, or removes it with `None`; durable after `flush`.
    fn put_setting(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError>;
    /// Changes a setting atomically: `change` gets the stored value and returns the new one
    /// (`None` removes it), with no other writer in between, also another process sharing
    /// the store; `change` may run more than once. The default reads then writes, for a store
    /// with one writer.
    fn update_setting(
        &self,
        key: &str,
        change: &mut dyn FnMut(Option<Vec<u8>>) -> Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let new = change(self.get_setting(key)?);
        self.put_setting(key, new.as_deref())
    }
    /// the audit), so an in-process cache can skip re-reading while it is unchanged.
    fn write_epoch(&self) -> u64;
    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// Writes each of `writes` that what is stored allows (its mode against the stored
    /// generation, its fence against the lease), deciding inside the write; per write, what
    /// became of it. An error: nothing of the group was written by this call. A store with
    /// [`concurrent_writes`](Store::concurrent_writes) commits the group at once, durable
    /// when it returns; the default writes one by one ([`one_by_one`]).
    fn put_phones_checked(&self, writes: &[CheckedWrite<'_>]) -> Result<Vec<WriteOutcome>, StoreError> {
        one_by_one(self, writes)
    }
    /// How many writes may run at once, each durable when it returns (a database server with
    /// a pool of connections, whose concurrent commits share their log flushes). 0, the
    /// default: writes are applied one after another and made durable together by `flush`.
    fn concurrent_writes(&self) -> usize {
        0
    }
}

/// Encoding of a record value: versioned JSON, so later fields can be added with defaults.
pub fn encode(record: &PhoneRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| StoreError::Backend(format!("encode {}: {e}", record.mac)))
}

/// Decodes record bytes from [`Store::get_phone_bytes`].
pub fn decode_record(mac: &Mac, bytes: &[u8]) -> Result<PhoneRecord, StoreError> {
    decode(&mac.bytes(), bytes)
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<PhoneRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        mac: hex::encode(key),
        reason: e.to_string(),
    })
}

/// Encodes a value to store as JSON; `what` names it in the error.
pub fn encode_json<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(format!("encode {what}: {e}")))
}

/// Decodes a stored JSON value of the phone whose key (MAC bytes) is `key`.
pub fn decode_json<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        mac: hex::encode(key),
        reason: e.to_string(),
    })
}

/// A phone's audit with `new` appended: the stored entries a read of `keep` plus the enrolment
/// entries returns, then `new`, trimmed by [`trim_audit`](crate::provisioning::trim_audit).
pub fn appended(stored: Vec<AuditEntry>, new: Vec<AuditEntry>, keep: usize) -> Vec<AuditEntry> {
    let mut entries = latest(stored, keep + crate::provisioning::ENROLMENT_ENTRIES);
    entries.extend(new);
    crate::provisioning::trim_audit(&mut entries, keep);
    entries
}

/// The latest `limit` of `entries`.
pub fn latest(mut entries: Vec<AuditEntry>, limit: usize) -> Vec<AuditEntry> {
    let skip = entries.len().saturating_sub(limit);
    entries.drain(..skip);
    entries
}
