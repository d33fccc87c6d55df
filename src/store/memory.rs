//! An in-memory store: the same contract as sled without a disk, for tests and benches.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{AUDIT_TRIM_EVERY, Store, StoreError, audit_key, decode, decode_json, encode, encode_json};
use crate::mac::Mac;
use crate::phone::PhoneRecord;
use crate::provisioning::{AuditEntry, PhoneAccess};

/// Records as encoded bytes, so encoding faults show up here as they would on disk.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Encoded records by MAC bytes.
    phones: Mutex<BTreeMap<[u8; 6], Vec<u8>>>,
    /// Encoded download states by MAC bytes.
    access: Mutex<BTreeMap<[u8; 6], Vec<u8>>>,
    /// Encoded audit entries by audit key, and the last sequence number handed out.
    audit: Mutex<AuditLog>,
}

/// Encoded audit entries by audit key, and the last sequence number handed out.
type AuditLog = (BTreeMap<[u8; 14], Vec<u8>>, u64);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every mutation is a single insert or remove, so a poisoned map is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<[u8; 6], Vec<u8>>> {
        // A panic while holding the lock cannot leave a half-written map: every mutation is
        // one insert or remove, so the poisoned state is still consistent.
        self.phones.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn put_phone(&self, record: &PhoneRecord) -> Result<(), StoreError> {
        let bytes = encode(record)?;
        self.lock().insert(record.mac.bytes(), bytes);
        Ok(())
    }

    fn get_phone(&self, mac: &Mac) -> Result<Option<PhoneRecord>, StoreError> {
        let key = mac.bytes();
        self.lock().get(&key).map(|b| decode(&key, b)).transpose()
    }

    fn delete_phone(&self, mac: &Mac) -> Result<bool, StoreError> {
        lock(&self.access).remove(&mac.bytes());
        lock(&self.audit).0.retain(|k, _| k[..6] != mac.bytes());
        Ok(self.lock().remove(&mac.bytes()).is_some())
    }

    fn get_access(&self, mac: &Mac) -> Result<PhoneAccess, StoreError> {
        let key = mac.bytes();
        lock(&self.access)
            .get(&key)
            .map_or(Ok(PhoneAccess::default()), |b| decode_json(&key, b))
    }

    fn put_access(&self, mac: &Mac, access: &PhoneAccess) -> Result<(), StoreError> {
        let bytes = encode_json("access", access)?;
        lock(&self.access).insert(mac.bytes(), bytes);
        Ok(())
    }

    fn append_audit(&self, mac: &Mac, entry: &AuditEntry, keep: usize) -> Result<(), StoreError> {
        let mut audit = lock(&self.audit);
        audit.1 += 1;
        let seq = audit.1;
        let entry = AuditEntry { seq, ..entry.clone() };
        audit.0.insert(audit_key(mac, seq), encode_json("audit", &entry)?);
        if seq.is_multiple_of(AUDIT_TRIM_EVERY) {
            let keys: Vec<[u8; 14]> = audit
                .0
                .range(audit_key(mac, 0)..=audit_key(mac, u64::MAX))
                .map(|(k, _)| *k)
                .collect();
            for key in keys.iter().take(keys.len().saturating_sub(keep)) {
                audit.0.remove(key);
            }
        }
        Ok(())
    }

    fn audit(&self, mac: &Mac, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let audit = lock(&self.audit);
        let mut out: Vec<AuditEntry> = audit
            .0
            .range(audit_key(mac, 0)..=audit_key(mac, u64::MAX))
            .rev()
            .take(limit)
            .map(|(k, v)| decode_json(k, v))
            .collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }

    fn phones(&self) -> Result<Vec<PhoneRecord>, StoreError> {
        self.lock().iter().map(|(k, v)| decode(k, v)).collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
