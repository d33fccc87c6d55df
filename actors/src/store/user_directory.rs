//! The PBX's user table and the key profiles, as the downloads, the admin doors and the PBX's
//! session share them (interface.md "Directory and function keys").
//!
//! Both live in memory for the downloads (an `Arc` swapped on change: a phonebook render never
//! waits for a writer) and in the store as settings (`pbx_users`, `key_profiles`), so a restart
//! serves the last replicated table until the PBX's new replication ends, and every instance
//! on one PostgreSQL reads the same profiles. Writes block on the store: callers run them off
//! the actix workers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use innoprov::pbx_users::{PhonebookEntry, UserTable};
use innoprov::provisioning::keys::{FunctionKey, KeyProfile};
use innoprov::store::{Store, StoreError, decode_json, encode_json};
use innoprov::{PhoneRecord, provisioning::PhoneAccess};
use serde::Serialize;

/// The settings key of the replicated user table.
pub const USERS_SETTING: &str = "pbx_users";
/// The settings key of the key profiles.
pub const PROFILES_SETTING: &str = "key_profiles";
/// Written after each write of either setting, with a value no write repeats: another
/// instance reads these two small values to learn whether there is anything new to read.
const STAMPS: [&str; 2] = ["pbx_users_stamp", "key_profiles_stamp"];

/// What the admin page and REST show of the directory.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DirectoryStatus {
    /// Users in the table.
    pub rows: usize,
    /// Users the phonebook lists (not hidden, with something to dial).
    pub listed: usize,
    /// When (Unix seconds) the table last changed.
    pub last_change: Option<u64>,
    /// Whether the PBX's connection replicates it now.
    pub replicating: bool,
    /// Why there is no replication, or what went wrong last (e.g. the App object lacks
    /// TableUsers).
    pub problem: Option<String>,
}

/// The shared directory.
pub struct UserDirectory {
    /// Where both are kept.
    store: Arc<dyn Store>,
    /// The user table as last replicated.
    table: RwLock<Arc<UserTable>>,
    /// The key profiles by name.
    profiles: RwLock<Arc<BTreeMap<String, KeyProfile>>>,
    /// Counts changes of either: rendered files that carry keys or a phonebook are cached
    /// under it.
    version: AtomicU64,
    /// The status the doors show.
    status: Mutex<DirectoryStatus>,
    /// The published table is newer than the stored one.
    unsaved: std::sync::atomic::AtomicBool,
    /// Held while the table is written: writes of a burst of changes queue here, and all but
    /// one find nothing left to write.
    saving: Mutex<()>,
    /// The stored bytes of both settings as last read or written: [`reload`] takes another
    /// instance's writes only when they differ.
    ///
    /// [`reload`]: UserDirectory::reload
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
    /// Held through a profile's read, change and write: two edits on this instance never
    /// write over each other.
    editing: Mutex<()>,
    /// The two stamps as [`follow`] last read them.
    ///
    /// [`follow`]: UserDirectory::follow
    stamps: Mutex<[Vec<u8>; 2]>,
    /// The phonebook's entries with the version they were built at: sorted once per change.
    entries: Mutex<(u64, Arc<Vec<PhonebookEntry>>)>,
}

fn read<T: Clone>(lock: &RwLock<Arc<T>>) -> Arc<T> {
    Arc::clone(&lock.read().unwrap_or_else(|p| p.into_inner()))
}

fn write<T>(lock: &RwLock<Arc<T>>, value: T) {
    *lock.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
}

impl UserDirectory {
    /// The directory as stored (empty when never stored).
    pub fn load(store: Arc<dyn Store>) -> Result<UserDirectory, StoreError> {
        let users_bytes = store.get_setting(USERS_SETTING)?.unwrap_or_default();
        let profiles_bytes = store.get_setting(PROFILES_SETTING)?.unwrap_or_default();
        let (table, profiles) = decode_both(&users_bytes, &profiles_bytes)?;
        let status = DirectoryStatus {
            rows: table.len(),
            listed: table.listed(),
            ..DirectoryStatus::default()
        };
        Ok(UserDirectory {
            store,
            table: RwLock::new(Arc::new(table)),
            profiles: RwLock::new(Arc::new(
                profiles.into_iter().map(|p| (p.name.clone(), p)).collect(),
            )),
            version: AtomicU64::new(1),
            status: Mutex::new(status),
            unsaved: std::sync::atomic::AtomicBool::new(false),
            saving: Mutex::new(()),
            seen: Mutex::new((users_bytes, profiles_bytes)),
            entries: Mutex::new((0, Arc::default())),
            stamps: Mutex::new([Vec::new(), Vec::new()]),
            editing: Mutex::new(()),
        })
    }

    /// Takes what another instance stored since (several instances on one database): the
    /// profiles always, the table unless this instance replicates it itself. Blocks on the
    /// store; whether anything changed.
    pub fn reload(&self) -> Result<bool, StoreError> {
        let users_bytes = self.store.get_setting(USERS_SETTING)?.unwrap_or_default();
        let profiles_bytes = self.store.get_setting(PROFILES_SETTING)?.unwrap_or_default();
        let (users_new, profiles_new) = {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            (seen.0 != users_bytes, seen.1 != profiles_bytes)
        };
        let replicating = self.status().replicating;
        if !(profiles_new || users_new && !replicating) {
            return Ok(false);
        }
        let (table, profiles) = decode_both(&users_bytes, &profiles_bytes)?;
        if profiles_new {
            write(
                &self.profiles,
                profiles.into_iter().map(|p| (p.name.clone(), p)).collect(),
            );
        }
        if users_new && !replicating {
            self.show(table);
        }
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = (users_bytes, profiles_bytes);
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    /// What several instances on one database do every few seconds: reads the two stamps and
    /// takes the other instances' writes ([`reload`]) when a stamp moved, or always when
    /// `full` (two writers of one setting can leave a stamp that an instance wrote itself over
    /// data it did not: the periodic full read ends that). Blocks on the store; whether
    /// anything changed.
    ///
    /// [`reload`]: UserDirectory::reload
    pub fn follow(&self, full: bool) -> Result<bool, StoreError> {
        let mut now = [Vec::new(), Vec::new()];
        for (slot, key) in now.iter_mut().zip(STAMPS) {
            *slot = self.store.get_setting(key)?.unwrap_or_default();
        }
        let moved = *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) != now;
        if !(moved || full) {
            return Ok(false);
        }
        let changed = self.reload()?;
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) = now;
        Ok(changed)
    }

    /// Writes `bytes` under `which` (0: the table, 1: the profiles), then its stamp, and
    /// flushes.
    fn write_setting(&self, which: usize, bytes: &[u8]) -> Result<(), StoreError> {
        let key = [USERS_SETTING, PROFILES_SETTING][which];
        self.store.put_setting(key, Some(bytes))?;
        let stamp = new_stamp();
        self.store.put_setting(STAMPS[which], Some(&stamp))?;
        self.store.flush()?;
        self.stamps.lock().unwrap_or_else(|p| p.into_inner())[which] = stamp;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match which {
            0 => seen.0 = bytes.to_vec(),
            _ => seen.1 = bytes.to_vec(),
        }
        Ok(())
    }

    /// A number that changes whenever the table or a profile changes.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The user table.
    pub fn table(&self) -> Arc<UserTable> {
        read(&self.table)
    }

    /// The phonebook's entries (users not hidden, by name), built once per change.
    pub fn phonebook(&self) -> Arc<Vec<PhonebookEntry>> {
        let version = self.version();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.0 != version {
            *entries = (version, Arc::new(self.table().phonebook()));
        }
        Arc::clone(&entries.1)
    }

    /// Whether a profile `name` exists, asking the store when this instance has not seen it
    /// (another instance may have stored it a moment ago). Blocks on the store on a miss.
    pub fn has_profile(&self, name: &str) -> Result<bool, StoreError> {
        if self.profiles().contains_key(name) {
            return Ok(true);
        }
        self.reload()?;
        Ok(self.profiles().contains_key(name))
    }

    /// The key profiles by name.
    pub fn profiles(&self) -> Arc<BTreeMap<String, KeyProfile>> {
        read(&self.profiles)
    }

    /// What the doors show.
    pub fn status(&self) -> DirectoryStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Notes whether the PBX's connection replicates, and what went wrong.
    pub fn set_replication(&self, replicating: bool, problem: Option<String>) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.replicating = replicating;
        status.problem = problem;
    }

    /// Takes `table` as the current one at once (downloads see it from now on); [`save`]
    /// stores it.
    ///
    /// [`save`]: UserDirectory::save
    pub fn publish(&self, table: UserTable) {
        self.show(table);
        self.version.fetch_add(1, Ordering::AcqRel);
        self.unsaved.store(true, Ordering::Release);
    }

    /// Makes `table` the one the downloads and the status show.
    fn show(&self, table: UserTable) {
        {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            status.rows = table.len();
            status.listed = table.listed();
            status.last_change = Some(innoprov::clock::now_unix());
        }
        write(&self.table, table);
    }

    /// Stores the published table if it is newer than the stored one (blocks on the store; a
    /// burst of changes costs one write per writer that finds something left).
    pub fn save(&self) -> Result<(), StoreError> {
        let _saving = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        if !self.unsaved.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let table = self.table();
        let written = encode_json(USERS_SETTING, &*table).and_then(|bytes| self.write_setting(0, &bytes));
        if written.is_err() {
            self.unsaved.store(true, Ordering::Release);
        }
        written
    }

    /// Publishes and stores `table` (blocks on the store).
    pub fn put_table(&self, table: UserTable) -> Result<(), StoreError> {
        self.publish(table);
        self.save()
    }

    fn store_profiles(&self, profiles: BTreeMap<String, KeyProfile>) -> Result<(), StoreError> {
        let list: Vec<&KeyProfile> = profiles.values().collect();
        let bytes = encode_json(PROFILES_SETTING, &list)?;
        self.write_setting(1, &bytes)?;
        write(&self.profiles, profiles);
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Creates or replaces a profile, durably (blocks on the store). The list is read from the
    /// store first, so a profile another instance stored a moment ago is kept.
    pub fn put_profile(&self, profile: KeyProfile) -> Result<(), StoreError> {
        let _editing = self.editing.lock().unwrap_or_else(|p| p.into_inner());
        self.reload()?;
        let mut profiles = (*self.profiles()).clone();
        profiles.insert(profile.name.clone(), profile);
        self.store_profiles(profiles)
    }

    /// Deletes a profile; whether there was one (blocks on the store).
    pub fn delete_profile(&self, name: &str) -> Result<bool, StoreError> {
        let _editing = self.editing.lock().unwrap_or_else(|p| p.into_inner());
        self.reload()?;
        let mut profiles = (*self.profiles()).clone();
        if profiles.remove(name).is_none() {
            return Ok(false);
        }
        self.store_profiles(profiles)?;
        Ok(true)
    }

    /// The keys a phone gets: its own profile, else the profile named like its user's PBX
    /// config template; none when neither exists.
    pub fn keys_for(&self, record: &PhoneRecord, access: &PhoneAccess) -> Vec<FunctionKey> {
        let profiles = self.profiles();
        let own = access.key_profile.as_ref().and_then(|name| profiles.get(name));
        let table = self.table();
        let by_template = || {
            let user = table.by_sip_name(&record.username)?;
            profiles.get(&user.config)
        };
        own.or_else(by_template)
            .map(|p| p.keys.clone())
            .unwrap_or_default()
    }
}

/// A stamp no other write repeats: the time in nanoseconds, the process and a counter.
fn new_stamp() -> Vec<u8> {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    format!("{nanos}-{}-{count}", std::process::id()).into_bytes()
}

/// The table and the profiles from their stored bytes (empty bytes: never stored).
fn decode_both(users: &[u8], profiles: &[u8]) -> Result<(UserTable, Vec<KeyProfile>), StoreError> {
    let table = match users.is_empty() {
        true => UserTable::default(),
        false => decode_json(USERS_SETTING.as_bytes(), users)?,
    };
    let profiles = match profiles.is_empty() {
        true => Vec::new(),
        false => decode_json(PROFILES_SETTING.as_bytes(), profiles)?,
    };
    Ok((table, profiles))
}

#[cfg(test)]
mod tests {
    use super::*;
    use innoprov::pbx_users::PbxUser;
    use innoprov::store::MemoryStore;
    use innoprov::store::conformance::sample_record;

    fn profile(name: &str, target: &str) -> KeyProfile {
        KeyProfile::new(
            name,
            vec![FunctionKey::Blf {
                target: target.into(),
                label: String::new(),
            }],
        )
        .expect("profile")
    }

    #[test]
    fn a_phone_gets_its_own_profile_else_its_users_template() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let directory = UserDirectory::load(Arc::clone(&store)).expect("load");
        let record = sample_record("0015651a2b3c", 1);
        let access = PhoneAccess::default();
        assert!(directory.keys_for(&record, &access).is_empty());
        directory.put_profile(profile("Sales", "alice")).expect("put");
        directory.put_profile(profile("own", "bob")).expect("put");
        let mut table = UserTable::default();
        table
            .put(PbxUser {
                guid: "g".into(),
                h323: record.username.clone(),
                config: "Sales".into(),
                ..PbxUser::default()
            })
            .expect("row");
        let before = directory.version();
        directory.put_table(table).expect("table");
        assert!(directory.version() > before);
        assert_eq!(
            directory.keys_for(&record, &access),
            profile("Sales", "alice").keys
        );
        let own = PhoneAccess {
            key_profile: Some("own".into()),
            ..PhoneAccess::default()
        };
        assert_eq!(directory.keys_for(&record, &own), profile("own", "bob").keys);
        // Both survive a restart.
        let again = UserDirectory::load(store).expect("reload");
        assert_eq!(again.keys_for(&record, &access), profile("Sales", "alice").keys);
        assert_eq!(again.status().rows, 1);
        // Another instance on the same store sees a new profile when it follows: the stamps
        // tell it there is something to read.
        let other = UserDirectory::load(Arc::clone(&again.store)).expect("another instance");
        assert!(!other.reload().expect("nothing new"));
        other.follow(true).expect("first follow");
        assert!(!other.follow(false).expect("no stamp moved"));
        again.put_profile(profile("late", "carol")).expect("put");
        let before = other.version();
        assert!(other.follow(false).expect("follow"));
        assert!(other.profiles().contains_key("late"));
        assert!(other.version() > before, "cached renders are dropped");
        assert!(!other.follow(false).expect("nothing moved since"));
        // An edit on one instance keeps what another stored a moment before, unfollowed.
        again.put_profile(profile("fresh", "dora")).expect("put");
        other.put_profile(profile("edited", "erin")).expect("put");
        assert!(other.profiles().contains_key("fresh"), "read before the write");
        assert!(again.has_profile("edited").expect("asks the store on a miss"));
        assert!(again.delete_profile("Sales").expect("delete"));
        assert!(!again.delete_profile("Sales").expect("gone"));
        assert!(again.keys_for(&record, &access).is_empty());
    }
}
