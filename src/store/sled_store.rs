//! The production store: sled 0.34, one tree per kind of record, big-endian MAC keys.

use std::path::Path;

use super::{AUDIT_TRIM_EVERY, Store, StoreError, audit_key, decode, decode_json, encode, encode_json};
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
    /// Audit entries by MAC bytes + sequence number.
    audit: sled::Tree,
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
        Ok(SledStore {
            db,
            phones,
            access,
            audit,
        })
    }
}

impl Store for SledStore {
    fn put_phone(&self, record: &PhoneRecord) -> Result<(), StoreError> {
        let bytes = encode(record)?;
        self.phones
            .insert(record.mac.bytes(), bytes)
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

    fn delete_phone(&self, mac: &Mac) -> Result<bool, StoreError> {
        self.access
            .remove(mac.bytes())
            .map_err(|e| backend(&format!("delete {mac}"), e))?;
        for item in self.audit.scan_prefix(mac.bytes()) {
            let (key, _) = item.map_err(|e| backend(&format!("delete {mac}"), e))?;
            self.audit
                .remove(key)
                .map_err(|e| backend(&format!("delete {mac}"), e))?;
        }
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

    fn put_access(&self, mac: &Mac, access: &PhoneAccess) -> Result<(), StoreError> {
        let bytes = encode_json("access", access)?;
        self.access
            .insert(mac.bytes(), bytes)
            .map(|_| ())
            .map_err(|e| backend(&format!("write {mac}"), e))
    }

    fn append_audit(&self, mac: &Mac, entry: &AuditEntry, keep: usize) -> Result<(), StoreError> {
        // Unique across concurrent writers; gaps are harmless.
        let seq = self.db.generate_id().map_err(|e| backend("audit id", e))?;
        let entry = AuditEntry { seq, ..entry.clone() };
        let bytes = encode_json("audit", &entry)?;
        self.audit
            .insert(audit_key(mac, seq), bytes)
            .map_err(|e| backend(&format!("audit {mac}"), e))?;
        if seq.is_multiple_of(AUDIT_TRIM_EVERY) {
            let keys: Vec<sled::IVec> = self
                .audit
                .scan_prefix(mac.bytes())
                .rev()
                .skip(keep)
                .filter_map(|item| item.ok().map(|(k, _)| k))
                .collect();
            for key in keys {
                self.audit
                    .remove(key)
                    .map_err(|e| backend(&format!("audit {mac}"), e))?;
            }
        }
        Ok(())
    }

    fn audit(&self, mac: &Mac, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        for item in self.audit.scan_prefix(mac.bytes()).rev().take(limit) {
            let (key, value) = item.map_err(|e| backend(&format!("audit {mac}"), e))?;
            out.push(decode_json(&key, &value)?);
        }
        out.reverse();
        Ok(out)
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
