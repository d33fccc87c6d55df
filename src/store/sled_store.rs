//! The production store: sled 0.34, one tree per kind of record, big-endian MAC keys.

use std::path::Path;

use super::{Freshness, Store, StoreError, decode, decode_json, encode, encode_json, latest};
use crate::mac::Mac;
use crate::phone::PhoneRecord;
use crate::provisioning::{AuditEntry, PhoneAccess};

/// Name of the tree that holds phone records.
const PHONES_TREE: &str = "phones";

/// A sled database opened once for the whole process.
#[derive(Debug, Clone)]
pub struct SledStore {
    /// The database, kept for `flush`.
    db: sled::Db,
    /// Phone records by MAC bytes.
    phones: sled::Tree,
    /// Download states by MAC bytes.
    access: sled::Tree,
    /// Audits (latest downloads) by MAC bytes.
    audit: sled::Tree,
    /// Service-wide settings by key (the pinned PBX, the addresses that logged in before).
    settings: sled::Tree,
    /// Bumped by every record or download-state write (shared by clones).
    epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

fn backend(what: &str, e: sled::Error) -> StoreError {
    StoreError::Backend(format!("{what}: {e}"))
}

impl SledStore {
    /// Opens (creating if missing) the database in `dir`.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            // Durability comes from explicit flushes before every acknowledgement; the
            // background flush only bounds what a crash loses of unacknowledged writes.
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| backend(&format!("open {}", dir.display()), e))?;
        let phones = db.open_tree(PHONES_TREE).map_err(|e| backend("open tree", e))?;
        let access = db.open_tree("access").map_err(|e| backend("open tree", e))?;
        let audit = db.open_tree("audit").map_err(|e| backend("open tree", e))?;
        let settings = db.open_tree("settings").map_err(|e| backend("open tree", e))?;
        Ok(SledStore {
            db,
            phones,
            access,
            audit,
            settings,
            epoch: Default::default(),
        })
    }
}

/// Bumps the write epoch when dropped (after the write it guards).
struct EpochBump<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for EpochBump<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl SledStore {
    fn bump(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Store for SledStore {
    fn put_phone(&self, record: &PhoneRecord) -> Result<(), StoreError> {
        let bytes = encode(record)?;
        let written = self.phones.insert(record.mac.bytes(), bytes);
        self.bump();
        written
            .map(|_| ())
            .map_err(|e| backend(&format!("write {}", record.mac), e))
    }

    fn get_phone(&self, mac: &Mac) -> Result<Option<PhoneRecord>, StoreError> {
        let key = mac.bytes();
        match self
            .phones
            .get(key)
            .map_err(|e| backend(&format!("read {mac}"), e))?
        {
            Some(bytes) => decode(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn get_phone_bytes(&self, mac: &Mac) -> Result<Option<Vec<u8>>, StoreError> {
        let found = self
            .phones
            .get(mac.bytes())
            .map_err(|e| backend(&format!("read {mac}"), e))?;
        Ok(found.map(|bytes| bytes.to_vec()))
    }

    fn phone_changed(&self, mac: &Mac, cached: &[u8]) -> Result<Freshness, StoreError> {
        Ok(
            match self
                .phones
                .get(mac.bytes())
                .map_err(|e| backend(&format!("read {mac}"), e))?
            {
                None => Freshness::Missing,
                Some(bytes) if bytes.as_ref() == cached => Freshness::Unchanged,
                Some(bytes) => Freshness::Changed(bytes.to_vec()),
            },
        )
    }

    fn delete_phone(&self, mac: &Mac) -> Result<bool, StoreError> {
        // Bumped on the way out whatever happens: a cache must re-read after any attempt.
        let _bump = EpochBump(&self.epoch);
        self.access
            .remove(mac.bytes())
            .map_err(|e| backend(&format!("delete {mac}"), e))?;
        self.audit
            .remove(mac.bytes())
            .map_err(|e| backend(&format!("delete {mac}"), e))?;
        self.phones
            .remove(mac.bytes())
            .map(|old| old.is_some())
            .map_err(|e| backend(&format!("delete {mac}"), e))
    }

    fn phones(&self) -> Result<Vec<PhoneRecord>, StoreError> {
        self.phones
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(|e| backend("scan", e))?;
                decode(&k, &v)
            })
            .collect()
    }

    fn get_access(&self, mac: &Mac) -> Result<PhoneAccess, StoreError> {
        match self
            .access
            .get(mac.bytes())
            .map_err(|e| backend(&format!("read {mac}"), e))?
        {
            Some(bytes) => decode_json(&mac.bytes(), &bytes),
            None => Ok(PhoneAccess::default()),
        }
    }

    fn update_access(
        &self,
        mac: &Mac,
        change: &mut dyn FnMut(&mut PhoneAccess),
    ) -> Result<PhoneAccess, StoreError> {
        let key = mac.bytes();
        let mut failed = None;
        let updated = self.access.update_and_fetch(key, |old| {
            let mut access = match old.map(|bytes| decode_json::<PhoneAccess>(&key, bytes)) {
                Some(Ok(access)) => access,
                Some(Err(e)) => {
                    // Keep the damaged value rather than overwrite what we cannot read.
                    failed = Some(e);
                    return old.map(<[u8]>::to_vec);
                }
                None => PhoneAccess::default(),
            };
            change(&mut access);
            match encode_json("access", &access) {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    failed = Some(e);
                    old.map(<[u8]>::to_vec)
                }
            }
        });
        self.bump();
        if let Some(e) = failed {
            return Err(e);
        }
        match updated.map_err(|e| backend(&format!("write {mac}"), e))? {
            Some(bytes) => decode_json(&key, &bytes),
            None => Ok(PhoneAccess::default()),
        }
    }

    fn put_audit(&self, mac: &Mac, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let bytes = encode_json("audit", &entries)?;
        self.audit
            .insert(mac.bytes(), bytes)
            .map(|_| ())
            .map_err(|e| backend(&format!("audit {mac}"), e))
    }

    fn audit(&self, mac: &Mac, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let entries: Vec<AuditEntry> = match self
            .audit
            .get(mac.bytes())
            .map_err(|e| backend(&format!("audit {mac}"), e))?
        {
            Some(bytes) => decode_json(&mac.bytes(), &bytes)?,
            None => Vec::new(),
        };
        Ok(latest(entries, limit))
    }

    fn get_setting(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.settings
            .get(key.as_bytes())
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| backend(&format!("setting {key}"), e))
    }

    fn put_setting(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        match value {
            Some(value) => self.settings.insert(key.as_bytes(), value).map(|_| ()),
            None => self.settings.remove(key.as_bytes()).map(|_| ()),
        }
        .map_err(|e| backend(&format!("setting {key}"), e))
    }

    fn update_setting(
        &self,
        key: &str,
        change: &mut dyn FnMut(Option<Vec<u8>>) -> Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        self.settings
            .update_and_fetch(key.as_bytes(), |old| change(old.map(<[u8]>::to_vec)))
            .map(|_| ())
            .map_err(|e| backend(&format!("setting {key}"), e))
    }

    fn write_epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(|e| backend("flush", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sled_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        super::super::conformance::run(&SledStore::open(&path).unwrap());
        super::super::conformance::survives_reopen(&dir.path().join("db2"), |p| SledStore::open(p).unwrap());
    }
}
