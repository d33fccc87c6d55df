//! An in-memory store: the same contract as sled without a disk, for tests and benches.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Store, StoreError, decode, encode};
use crate::mac::Mac;
use crate::phone::PhoneRecord;

/// Records as encoded bytes, so encoding faults show up here as they would on disk.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Encoded records by MAC bytes.
    phones: Mutex<BTreeMap<[u8; 6], Vec<u8>>>,
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
        Ok(self.lock().remove(&mac.bytes()).is_some())
    }

    fn phones(&self) -> Result<Vec<PhoneRecord>, StoreError> {
        self.lock().iter().map(|(k, v)| decode(k, v)).collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
