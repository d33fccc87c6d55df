//! A fault for the tests (built with the `simulators` feature only, so never in the package):
//! with `INNOPROV_TEST_STORE_DELAY_MS` set, every store call waits that long first, as a
//! database across a congested network would. The test that a slow store delays no login and
//! no websocket ping on another connection runs the real binary with it
//! (tests/safe_by_default.rs).

use std::sync::Arc;
use std::time::Duration;

use innoprov::provisioning::{AuditEntry, PhoneAccess};
use innoprov::store::{Freshness, Store, StoreError};
use innoprov::{Mac, PhoneRecord};

/// The environment variable that turns the fault on (milliseconds per store call).
pub const DELAY_VARIABLE: &str = "INNOPROV_TEST_STORE_DELAY_MS";

/// `store`, slowed when [`DELAY_VARIABLE`] asks for it.
pub fn from_env(store: Arc<dyn Store>) -> Arc<dyn Store> {
    let delay = std::env::var(DELAY_VARIABLE)
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| *ms > 0);
    match delay {
        Some(ms) => {
            log::warn!("test fault: every store call waits {ms} ms ({DELAY_VARIABLE})");
            Arc::new(SlowStore {
                inner: store,
                delay: Duration::from_millis(ms),
            })
        }
        None => store,
    }
}

/// A store whose every call (but the in-memory epoch) waits first.
struct SlowStore {
    /// The real store.
    inner: Arc<dyn Store>,
    /// How long each call waits.
    delay: Duration,
}

impl SlowStore {
    fn wait(&self) -> &dyn Store {
        std::thread::sleep(self.delay);
        self.inner.as_ref()
    }
}

impl Store for SlowStore {
    fn put_phone(&self, record: &PhoneRecord) -> Result<(), StoreError> {
        self.wait().put_phone(record)
    }
    fn get_phone(&self, mac: &Mac) -> Result<Option<PhoneRecord>, StoreError> {
        self.wait().get_phone(mac)
    }
    fn get_phone_bytes(&self, mac: &Mac) -> Result<Option<Vec<u8>>, StoreError> {
        self.wait().get_phone_bytes(mac)
    }
    fn phone_changed(&self, mac: &Mac, cached: &[u8]) -> Result<Freshness, StoreError> {
        self.wait().phone_changed(mac, cached)
    }
    fn delete_phone(&self, mac: &Mac) -> Result<bool, StoreError> {
        self.wait().delete_phone(mac)
    }
    fn phones(&self) -> Result<Vec<PhoneRecord>, StoreError> {
        self.wait().phones()
    }
    fn phones_with_access(&self) -> Result<Vec<(PhoneRecord, PhoneAccess)>, StoreError> {
        self.wait().phones_with_access()
    }
    fn get_access(&self, mac: &Mac) -> Result<PhoneAccess, StoreError> {
        self.wait().get_access(mac)
    }
    fn update_access(
        &self,
        mac: &Mac,
        change: &mut dyn FnMut(&mut PhoneAccess),
    ) -> Result<PhoneAccess, StoreError> {
        self.wait().update_access(mac, change)
    }
    fn put_audit(&self, mac: &Mac, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.wait().put_audit(mac, entries)
    }
    fn append_audit(&self, mac: &Mac, new: Vec<AuditEntry>, keep: usize) -> Result<(), StoreError> {
        self.wait().append_audit(mac, new, keep)
    }
    fn audit(&self, mac: &Mac, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.wait().audit(mac, limit)
    }
    fn get_setting(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.wait().get_setting(key)
    }
    fn put_setting(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        self.wait().put_setting(key, value)
    }
    fn update_setting(
        &self,
        key: &str,
        change: &mut dyn FnMut(Option<Vec<u8>>) -> Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        self.wait().update_setting(key, change)
    }
    fn write_epoch(&self) -> u64 {
        self.inner.write_epoch()
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.wait().flush()
    }
    fn put_phones_checked(
        &self,
        writes: &[innoprov::store::CheckedWrite<'_>],
    ) -> Result<Vec<innoprov::store::WriteOutcome>, StoreError> {
        self.wait().put_phones_checked(writes)
    }
    fn concurrent_writes(&self) -> usize {
        self.inner.concurrent_writes()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_slowed_store_still_passes_the_conformance_suite() {
        let store = super::SlowStore {
            inner: std::sync::Arc::new(innoprov::store::MemoryStore::new()),
            delay: std::time::Duration::from_micros(50),
        };
        innoprov::store::conformance::run(&store);
    }
}
