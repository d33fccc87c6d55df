//! The PBX's user table as innoprov keeps it (interface.md "Directory and function keys"):
//! replicated from the PBX (PbxTableUsers), keyed by `guid`, and the phonebook it makes.
//!
//! [`UserTable`] holds the rows and applies the replication's adds, updates (only the columns
//! sent change) and deletes; [`UserTable::phonebook`] is what every vendor's phonebook file
//! lists: one entry per user not hidden, name `dn` (else `cn`), number `e164` (else the SIP
//! name `h323`), sorted by name. Its [`version`](UserTable::version) changes with every change
//! that shows in the phonebook, so a rendered phonebook is cached per version and format.

pub mod replication;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most users kept: a bound on what a PBX (or a peer posing as one) can make us hold.
pub const MAX_USERS: usize = 100_000;
/// Longest value kept of any column (longer ones are cut at a character boundary).
pub const MAX_VALUE: usize = 256;

/// One user of the PBX, the columns innoprov uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PbxUser {
    /// The row's key.
    pub guid: String,
    /// The SIP name (`h323`): the BLF target, the number when there is no `e164`.
    #[serde(default)]
    pub h323: String,
    /// The login name (`cn`): the name when there is no `dn`.
    #[serde(default)]
    pub cn: String,
    /// The display name (`dn`).
    #[serde(default)]
    pub dn: String,
    /// The user's number (`e164`).
    #[serde(default)]
    pub e164: String,
    /// Hidden from directories (`hide`).
    #[serde(default)]
    pub hide: bool,
    /// The user's PBX config template (`config`): names the key profile of phones without one.
    #[serde(default)]
    pub config: String,
}

/// One phonebook entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhonebookEntry {
    /// What the phone shows.
    pub name: String,
    /// What it dials.
    pub number: String,
}

/// Why a row was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The row has no guid.
    #[error("a user row without a guid")]
    NoGuid,
    /// The table is full.
    #[error("more than {MAX_USERS} users; the row of {0} is not kept")]
    Full(String),
}

/// The replicated user table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserTable {
    /// The rows by guid.
    rows: BTreeMap<String, PbxUser>,
    /// Counts changes: the phonebook's version and ETag follow it.
    #[serde(default)]
    version: u64,
}

/// `text` cut to [`MAX_VALUE`] bytes at a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_VALUE {
        let mut end = MAX_VALUE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl PbxUser {
    /// The user with every value bounded.
    fn bounded(self) -> PbxUser {
        PbxUser {
            guid: bounded(self.guid),
            h323: bounded(self.h323),
            cn: bounded(self.cn),
            dn: bounded(self.dn),
            e164: bounded(self.e164),
            hide: self.hide,
            config: bounded(self.config),
        }
    }

    /// The user's phonebook entry, unless hidden or without anything to dial.
    pub fn entry(&self) -> Option<PhonebookEntry> {
        if self.hide {
            return None;
        }
        let number = [&self.e164, &self.h323].into_iter().find(|n| !n.is_empty())?;
        let name = [&self.dn, &self.cn, &self.h323]
            .into_iter()
            .find(|n| !n.is_empty())?;
        Some(PhonebookEntry {
            name: name.clone(),
            number: number.clone(),
        })
    }
}

impl UserTable {
    /// The number of users.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A number that changes with every change of the table.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The user with SIP name `h323`.
    pub fn by_sip_name(&self, h323: &str) -> Option<&PbxUser> {
        self.rows.values().find(|u| u.h323 == h323)
    }

    /// Every user, by guid.
    pub fn users(&self) -> impl Iterator<Item = &PbxUser> {
        self.rows.values()
    }

    /// Adds or replaces a whole row.
    pub fn put(&mut self, user: PbxUser) -> Result<(), TableError> {
        if user.guid.is_empty() {
            return Err(TableError::NoGuid);
        }
        let user = user.bounded();
        if self.rows.len() >= MAX_USERS && !self.rows.contains_key(&user.guid) {
            return Err(TableError::Full(user.guid));
        }
        if self.rows.get(&user.guid) != Some(&user) {
            self.rows.insert(user.guid.clone(), user);
            self.version += 1;
        }
        Ok(())
    }

    /// Changes the columns `change` sets in the row of `guid` (an update of an unknown row adds
    /// it: the PBX's update may overtake a missed add).
    pub fn update(&mut self, guid: &str, change: impl FnOnce(&mut PbxUser)) -> Result<(), TableError> {
        let mut user = self.rows.get(guid).cloned().unwrap_or_else(|| PbxUser {
            guid: guid.to_string(),
            ..PbxUser::default()
        });
        change(&mut user);
        user.guid = guid.to_string();
        self.put(user)
    }

    /// Removes the row of `guid`; whether there was one.
    pub fn delete(&mut self, guid: &str) -> bool {
        let removed = self.rows.remove(guid).is_some();
        if removed {
            self.version += 1;
        }
        removed
    }

    /// Replaces every row by those of `fresh` (the end of an initial replication), counting
    /// one change when anything differs.
    pub fn replace_with(&mut self, fresh: UserTable) {
        if fresh.rows != self.rows {
            self.rows = fresh.rows;
            self.version += 1;
        }
    }

    /// How many entries the phonebook has (without building and sorting it).
    pub fn listed(&self) -> usize {
        self.rows.values().filter(|u| u.entry().is_some()).count()
    }

    /// The phonebook: one entry per user not hidden, by name then number.
    pub fn phonebook(&self) -> Vec<PhonebookEntry> {
        let mut entries: Vec<PhonebookEntry> = self.rows.values().filter_map(PbxUser::entry).collect();
        entries.sort_by(|a, b| (a.name.to_lowercase(), &a.number).cmp(&(b.name.to_lowercase(), &b.number)));
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(guid: &str, h323: &str, dn: &str, e164: &str) -> PbxUser {
        PbxUser {
            guid: guid.into(),
            h323: h323.into(),
            cn: h323.into(),
            dn: dn.into(),
            e164: e164.into(),
            ..PbxUser::default()
        }
    }

    #[test]
    fn the_phonebook_follows_the_interface_rules() {
        let mut table = UserTable::default();
        table.put(user("g1", "alice", "Alice Adams", "201")).expect("put");
        table.put(user("g2", "bob", "", "")).expect("put");
        table
            .put(PbxUser {
                hide: true,
                ..user("g3", "carol", "Carol", "203")
            })
            .expect("put");
        table.put(user("g4", "", "", "")).expect("put");
        assert_eq!(
            table.phonebook(),
            vec![
                PhonebookEntry {
                    name: "Alice Adams".into(),
                    number: "201".into()
                },
                PhonebookEntry {
                    name: "bob".into(),
                    number: "bob".into()
                },
            ],
            "dn else cn, e164 else h323, hidden and empty users left out"
        );
        assert_eq!(table.listed(), 2);
    }

    #[test]
    fn updates_change_only_what_they_set_and_count_versions() {
        let mut table = UserTable::default();
        table.put(user("g1", "alice", "Alice", "201")).expect("put");
        let v = table.version();
        table.put(user("g1", "alice", "Alice", "201")).expect("same");
        assert_eq!(table.version(), v, "an unchanged row is no change");
        table.update("g1", |u| u.e164 = "301".into()).expect("update");
        assert_eq!(table.version(), v + 1);
        assert_eq!(
            table
                .by_sip_name("alice")
                .map(|u| (u.dn.as_str(), u.e164.as_str())),
            Some(("Alice", "301"))
        );
        assert!(table.delete("g1"));
        assert!(!table.delete("g1"));
        assert_eq!(table.version(), v + 2);
        assert_eq!(table.put(user("", "x", "", "")), Err(TableError::NoGuid));
    }

    #[test]
    fn a_fresh_replication_replaces_the_rows_and_values_are_bounded() {
        let mut table = UserTable::default();
        table.put(user("old", "old", "Old", "1")).expect("put");
        let mut fresh = UserTable::default();
        fresh.put(user("new", "new", &"ü".repeat(300), "2")).expect("put");
        let v = table.version();
        table.replace_with(fresh.clone());
        assert_eq!(table.version(), v + 1);
        assert_eq!(table.len(), 1);
        let dn = &table.by_sip_name("new").expect("new").dn;
        assert!(dn.len() <= MAX_VALUE && dn.chars().all(|c| c == 'ü'));
        table.replace_with(fresh);
        assert_eq!(table.version(), v + 1, "the same rows again: no change");
    }
}
