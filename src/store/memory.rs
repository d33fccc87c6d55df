//! An in-memory store: the same contract as sled without a disk, for tests and benches.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Freshness, Store, StoreError, decode, decode_json, encode, encode_json, latest};
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
    /// Encoded audits by MAC bytes.
    audit: Mutex<BTreeMap<[u8; 6], Vec<u8>>>,
    /// Bumped by every record or download-state write.
    epoch: std::sync::atomic::AtomicU64,
    /// Service-wide settings by key.
    settings: Mutex<BTreeMap<String, Vec<u8>>>,
}

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

impl MemoryStore {
    fn bump(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Store for MemoryStore {
    fn put_phone(&self, record: &PhoneRecord) -> Result<(), StoreError> {
        let bytes = encode(record)?;
        self.lock().insert(record.mac.bytes(), bytes);
        self.bump();
        Ok(())
    }

    fn get_phone(&self, mac: &Mac) -> Result<Option<PhoneRecord>, StoreError> {
        let key = mac.bytes();
        self.lock().get(&key).map(|b| decode(&key, b)).transpose()
    }

    fn get_phone_bytes(&self, mac: &Mac) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(&mac.bytes()).cloned())
    }

    fn phone_changed(&self, mac: &Mac, cached: &[u8]) -> Result<Freshness, StoreError> {
        Ok(match self.lock().get(&mac.bytes()) {
            None => Freshness::Missing,
            Some(bytes) if bytes.as_slice() == cached => Freshness::Unchanged,
            Some(bytes) => Freshness::Changed(bytes.clone()),
        })
    }

    fn delete_phone(&self, mac: &Mac) -> Result<bool, StoreError> {
        lock(&self.access).remove(&mac.bytes());
        lock(&self.audit).remove(&mac.bytes());
        let removed = self.lock().remove(&mac.bytes()).is_some();
        // After the removal, as every write: a reader of the new epoch sees the phone gone.
        self.bump();
        Ok(removed)
    }

    fn get_access(&self, mac: &Mac) -> Result<PhoneAccess, StoreError> {
        let key = mac.bytes();
        lock(&self.access)
            .get(&key)
            .map_or(Ok(PhoneAccess::default()), |b| decode_json(&key, b))
    }

    fn update_access(
        &self,
        mac: &Mac,
        change: &mut dyn FnMut(&mut PhoneAccess),
    ) -> Result<PhoneAccess, StoreError> {
        let key = mac.bytes();
        let mut map = lock(&self.access);
        let mut access: PhoneAccess = match map.get(&key) {
            Some(bytes) => decode_json(&key, bytes)?,
            None => PhoneAccess::default(),
        };
        change(&mut access);
        map.insert(key, encode_json("access", &access)?);
        drop(map);
        self.bump();
        Ok(access)
    }

    fn put_audit(&self, mac: &Mac, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let bytes = encode_json("audit", &entries)?;
        lock(&self.audit).insert(mac.bytes(), bytes);
        Ok(())
    }

    fn audit(&self, mac: &Mac, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let key = mac.bytes();
        let entries: Vec<AuditEntry> = match lock(&self.audit).get(&key) {
            Some(bytes) => decode_json(&key, bytes)?,
            None => Vec::new(),
        };
        Ok(latest(entries, limit))
    }

    fn phones(&self) -> Result<Vec<PhoneRecord>, StoreError> {
        self.lock().iter().map(|(k, v)| decode(k, v)).collect()
    }

    fn get_setting(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.settings).get(key).cloned())
    }

    fn put_setting(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let mut settings = lock(&self.settings);
        match value {
            Some(value) => settings.insert(key.to_string(), value.to_vec()),
            None => settings.remove(key),
        };
        Ok(())
    }

    fn update_setting(
        &self,
        key: &str,
        change: &mut dyn FnMut(Option<Vec<u8>>) -> Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let mut settings = lock(&self.settings);
        match change(settings.get(key).cloned()) {
            Some(value) => settings.insert(key.to_string(), value),
            None => settings.remove(key),
        };
        Ok(())
    }

    fn write_epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
