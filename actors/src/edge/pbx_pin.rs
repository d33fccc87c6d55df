//! `PbxPin`: who the PBX is. With `app.object` configured, that name; unset, the first App
//! object login that acts as the PBX (sends PbxInfo) is pinned in the store under
//! [`PBX_SETTING`], and from then on every other App object name is refused as the PBX (the
//! decision itself is `innoprov::appws::role::pbx_verdict`). The admin page and REST show the
//! pin and can reset it.
//!
//! The pin is written and flushed before the PBX connection is subscribed, so a restart keeps
//! it. Store calls here block: callers run them off the actix workers (`spawn_blocking`).
//! With several instances on one database the pin is shared: an instance that has none cached
//! reads the store again before pinning, so two instances never pin two names.

use std::sync::{Arc, Mutex, RwLock};

use innoprov::Store;
use innoprov::appws::role::{PbxVerdict, pbx_verdict};
use innoprov::store::StoreError;

/// The store setting that holds the pinned PBX App object name.
pub const PBX_SETTING: &str = "pbx_identity";

/// The PBX's identity: configured, pinned, or still to be pinned.
pub struct PbxPin {
    /// `app.object`, when configured (then nothing is pinned).
    configured: Option<String>,
    /// The pinned name, as last read or written.
    pinned: RwLock<Option<String>>,
    /// Serialises pinning and resetting in this process (read, decide, write).
    writing: Mutex<()>,
    /// Where the pin is kept.
    store: Arc<dyn Store>,
}

/// What the admin doors show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PbxIdentity {
    /// `app.object`, when configured.
    pub object: Option<String>,
    /// The name pinned at the PBX's first PbxInfo (when `app.object` is unset).
    pub pinned: Option<String>,
}

impl PbxPin {
    /// Reads the pin from the store (blocking; at start).
    pub fn load(configured: Option<String>, store: Arc<dyn Store>) -> Result<PbxPin, StoreError> {
        let pinned = read(&*store)?;
        match (&configured, &pinned) {
            (Some(object), _) => log::info!("the PBX is app.object {object:?}"),
            (None, Some(name)) => log::info!(
                "the PBX is pinned as {name:?} (its first PbxInfo); an administrator can reset the pin"
            ),
            (None, None) => log::info!(
                "app.object is unset: the first App object login that sends PbxInfo is pinned as the PBX"
            ),
        }
        Ok(PbxPin {
            configured,
            pinned: RwLock::new(pinned),
            writing: Mutex::new(()),
            store,
        })
    }

    /// The PBX's name as far as it is known: `app.object`, else the pin.
    pub fn own_object(&self) -> Option<String> {
        self.configured.clone().or_else(|| self.cached())
    }

    fn cached(&self) -> Option<String> {
        self.pinned.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_cached(&self, value: Option<String>) {
        *self.pinned.write().unwrap_or_else(|p| p.into_inner()) = value;
    }

    /// The verdict for `sip` from what is known now (no store call).
    pub fn verdict(&self, sip: &str) -> PbxVerdict {
        pbx_verdict(self.configured.as_deref(), self.cached().as_deref(), sip)
    }

    /// Pins `sip` unless a name is configured or pinned already (in this process or, read
    /// again, by another instance); returns the verdict for `sip` afterwards. Blocking.
    pub fn pin(&self, sip: &str) -> Result<PbxVerdict, StoreError> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let stored = read(&*self.store)?;
        if stored.is_some() {
            self.set_cached(stored);
            return Ok(self.verdict(sip));
        }
        if self.configured.is_none() {
            self.store.put_setting(PBX_SETTING, Some(sip.as_bytes()))?;
            self.store.flush()?;
            self.set_cached(Some(sip.to_string()));
            log::info!("the PBX is pinned as {sip:?}: other App object logins are not the PBX");
        }
        Ok(self.verdict(sip))
    }

    /// Forgets the pin: the next App object login that sends PbxInfo is pinned. Blocking.
    pub fn reset(&self) -> Result<Option<String>, StoreError> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let was = read(&*self.store)?.or_else(|| self.cached());
        self.store.put_setting(PBX_SETTING, None)?;
        self.store.flush()?;
        self.set_cached(None);
        log::warn!("the PBX pin {was:?} was reset: the next App object login that sends PbxInfo is pinned");
        Ok(was)
    }

    /// What the admin doors show.
    pub fn identity(&self) -> PbxIdentity {
        PbxIdentity {
            object: self.configured.clone(),
            pinned: self.cached(),
        }
    }
}

fn read(store: &dyn Store) -> Result<Option<String>, StoreError> {
    Ok(store
        .get_setting(PBX_SETTING)?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .filter(|name| !name.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use innoprov::store::MemoryStore;

    #[test]
    fn the_first_pbx_is_pinned_durably_and_can_be_reset() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let pin = PbxPin::load(None, Arc::clone(&store)).unwrap();
        assert_eq!(pin.verdict("innoprov"), PbxVerdict::PinNow);
        assert_eq!(pin.pin("innoprov").unwrap(), PbxVerdict::Known);
        assert_eq!(
            pin.verdict("users"),
            PbxVerdict::Refused {
                pbx: "innoprov".into()
            }
        );
        // A second pin of another name does not replace the first.
        assert_eq!(
            pin.pin("users").unwrap(),
            PbxVerdict::Refused {
                pbx: "innoprov".into()
            }
        );
        // A restart (or another instance) reads it back.
        let again = PbxPin::load(None, Arc::clone(&store)).unwrap();
        assert_eq!(again.own_object().as_deref(), Some("innoprov"));
        assert_eq!(again.reset().unwrap().as_deref(), Some("innoprov"));
        assert_eq!(again.verdict("users"), PbxVerdict::PinNow);
        // An instance with a stale empty cache reads the store before pinning.
        again.pin("pbx-2").unwrap();
        let stale = PbxPin::load(None, Arc::new(MemoryStore::new())).unwrap();
        drop(stale);
        assert_eq!(
            pin.pin("users").unwrap(),
            PbxVerdict::Refused { pbx: "pbx-2".into() },
            "the other holder read the store again"
        );
    }

    #[test]
    fn a_configured_object_is_never_pinned_over() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let pin = PbxPin::load(Some("innoprov".into()), Arc::clone(&store)).unwrap();
        assert_eq!(
            pin.pin("users").unwrap(),
            PbxVerdict::Refused {
                pbx: "innoprov".into()
            }
        );
        assert_eq!(store.get_setting(PBX_SETTING).unwrap(), None);
        assert_eq!(pin.pin("innoprov").unwrap(), PbxVerdict::Known);
    }
}
