//! Persistence behind one narrow trait. `SledStore` is the production store; `MemoryStore`
//! serves tests and benches. Both pass the same conformance suite (`conformance`), so a third
//! backend (redb, stack.md §1) is a drop-in once it passes it too.

mod memory;
mod sled_store;

pub mod conformance;

pub use memory::MemoryStore;
pub use sled_store::SledStore;

use crate::mac::Mac;
use crate::phone::PhoneRecord;
use crate::provisioning::{AuditEntry, PhoneAccess};

/// Audit entries are trimmed when a phone's sequence number is a multiple of this.
pub const AUDIT_TRIM_EVERY: u64 = 16;

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
    /// Removes a phone's record, download state and audit; whether there was a record.
    fn delete_phone(&self, mac: &Mac) -> Result<bool, StoreError>;
    /// Every stored phone, in MAC order.
    fn phones(&self) -> Result<Vec<PhoneRecord>, StoreError>;
    /// A phone's download state (the default when none is stored).
    fn get_access(&self, mac: &Mac) -> Result<PhoneAccess, StoreError>;
    /// Replaces a phone's download state.
    fn put_access(&self, mac: &Mac, access: &PhoneAccess) -> Result<(), StoreError>;
    /// Appends a download to the phone's audit, keeping about the latest `keep` entries (the
    /// oldest are trimmed in batches, so at most `keep + AUDIT_TRIM_EVERY` are stored).
    fn append_audit(&self, mac: &Mac, entry: &AuditEntry, keep: usize) -> Result<(), StoreError>;
    /// The phone's latest `limit` downloads, oldest first.
    fn audit(&self, mac: &Mac, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;
}

/// Encoding of a record value: versioned JSON, so later fields can be added with defaults.
fn encode(record: &PhoneRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| StoreError::Backend(format!("encode {}: {e}", record.mac)))
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<PhoneRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        mac: hex::encode(key),
        reason: e.to_string(),
    })
}

fn encode_json<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(format!("encode {what}: {e}")))
}

fn decode_json<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        mac: hex::encode(key),
        reason: e.to_string(),
    })
}

/// Audit key: the MAC, then the big-endian sequence number (so a prefix scan is in order).
fn audit_key(mac: &Mac, seq: u64) -> [u8; 14] {
    let mut key = [0u8; 14];
    key[..6].copy_from_slice(&mac.bytes());
    key[6..].copy_from_slice(&seq.to_be_bytes());
    key
}
