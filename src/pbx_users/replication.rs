//! The replicator side of PbxTableUsers (docs/pbx-table-users.md, interface.md "Directory and
//! function keys") as a plain type: messages from the PBX in, messages to send and table
//! changes out, no sockets.
//!
//! `start` asks for the table (`ReplicateStart`, api `PbxTableUsers`); every
//! `ReplicateStartResult` and `ReplicateNextResult` with a row is answered with
//! `ReplicateNext`; a `ReplicateNextResult` without `columns` ends the initial copy, which then
//! replaces the table as a whole (rows the PBX no longer has are gone). Afterwards
//! `ReplicateAdd`, `ReplicateUpdate` and `ReplicateDel` change the live table.
//!
//! An update changes only the columns it carries (interface.md). A real PBX sends the whole row
//! and leaves its empty columns out (docs/pbx-table-users.md §2, captured updates), so a row
//! that carries `h323`, `cn` and `hide` together, as every captured full row does, is taken as
//! the whole row: a requested column it lacks is empty. A partial update (a few columns) never
//! carries all three and changes just those.
//!
//! Liberal in what it takes: `src` is ignored, unknown columns too; a `ReplicateNextResult`
//! whose `columns` is missing, empty or has no guid ends the copy; an answer with `error` keeps
//! the old table and asks for a retry. Strict in what it sends: only the columns below, never
//! `pwd`.

use serde_json::{Map, Value};

use super::{PbxUser, TableError, UserTable};
use crate::appws::message::{Inbound, Outbound};

/// The API name of the PBX's user table.
pub const API: &str = "PbxTableUsers";
/// The `src` this service puts on its replication messages.
pub const SRC: &str = "innoprov-users";
/// The columns asked for: what the phonebook and the key profiles need, and `pseudo` to leave
/// out objects that are no users (voicemail, waiting queues, ...).
pub const COLUMNS: [&str; 8] = ["guid", "h323", "cn", "dn", "e164", "hide", "config", "pseudo"];

/// What the session must do.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicationAction {
    /// Send this to the PBX.
    Send(Outbound),
    /// The table changed (the initial copy ended, or a live change): publish and store it.
    Changed,
    /// Something the admin should know (logged once per kind by the caller).
    Problem(String),
    /// The PBX refused: keep the table, and `start` again after a backoff.
    RetryLater,
}

/// Where the replication is.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Not started.
    Idle,
    /// Copying: the rows so far, replacing the table at the end.
    Initial(UserTable),
    /// Copied; live changes apply to the table.
    Live,
}

/// One PBX connection's replication of the user table.
#[derive(Debug, Clone)]
pub struct UserReplication {
    /// Where it is.
    phase: Phase,
    /// The table as replicated (the last complete copy and the live changes since).
    table: UserTable,
    /// Rows skipped (no guid, table full), for the status.
    skipped: usize,
}

fn text(row: &Map<String, Value>, column: &str) -> Option<String> {
    match row.get(column)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn flag(row: &Map<String, Value>, column: &str) -> Option<bool> {
    match row.get(column)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(matches!(s.as_str(), "true" | "1" | "on")),
        Value::Number(n) => Some(n.as_u64().is_some_and(|n| n != 0)),
        _ => None,
    }
}

/// Sets in `user` the columns `row` carries (and only those).
fn apply_columns(user: &mut PbxUser, row: &Map<String, Value>) {
    for (column, slot) in [
        ("h323", &mut user.h323),
        ("cn", &mut user.cn),
        ("dn", &mut user.dn),
        ("e164", &mut user.e164),
        ("config", &mut user.config),
    ] {
        if let Some(value) = text(row, column) {
            *slot = value;
        }
    }
    if let Some(hide) = flag(row, "hide") {
        user.hide = hide;
    }
}

/// A pseudo object (voicemail, waiting queue, trunk, ...) is no user for the phonebook; an
/// executive (a boss with a secretary) is.
fn is_pseudo(row: &Map<String, Value>) -> bool {
    text(row, "pseudo").is_some_and(|p| !p.trim().is_empty() && !p.contains("\"executive\""))
}

/// Whether `row` is a whole row as a real PBX sends it (see the module doc).
fn whole_row(row: &Map<String, Value>) -> bool {
    ["h323", "cn", "hide"].iter().all(|c| row.contains_key(*c))
}

/// An update: a whole row replaces the user's columns, a partial one changes what it carries.
fn apply_update(user: &mut PbxUser, row: &Map<String, Value>) {
    if whole_row(row) {
        *user = PbxUser {
            guid: std::mem::take(&mut user.guid),
            ..PbxUser::default()
        };
    }
    apply_columns(user, row);
}

impl UserReplication {
    /// A replication of `table` (the one stored, served until the new copy is complete).
    pub fn new(table: UserTable) -> UserReplication {
        UserReplication {
            phase: Phase::Idle,
            table,
            skipped: 0,
        }
    }

    /// The table as replicated so far (the stored one until the initial copy ends).
    pub fn table(&self) -> &UserTable {
        &self.table
    }

    /// Whether the initial copy has ended.
    pub fn live(&self) -> bool {
        self.phase == Phase::Live
    }

    /// Rows skipped so far.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Starts (or restarts) the copy: the `ReplicateStart` to send.
    pub fn start(&mut self) -> Outbound {
        self.phase = Phase::Initial(UserTable::default());
        let columns: Map<String, Value> = COLUMNS
            .iter()
            .map(|c| (c.to_string(), Value::Object(Map::new())))
            .collect();
        Outbound::new("ReplicateStart")
            .with("api", API)
            .with("src", SRC)
            .with("add", true)
            .with("del", true)
            .with("columns", Value::Object(columns))
            .with("pseudo", serde_json::json!(["", "executive"]))
    }

    fn next() -> ReplicationAction {
        ReplicationAction::Send(Outbound::new("ReplicateNext").with("api", API).with("src", SRC))
    }

    /// Takes one message of api `PbxTableUsers` from the PBX.
    pub fn on_message(&mut self, msg: &Inbound) -> Vec<ReplicationAction> {
        let refused = msg
            .body
            .get("error")
            .filter(|e| !e.is_null() && *e != &Value::Bool(false));
        if let Some(error) = refused {
            if matches!(self.phase, Phase::Initial(_)) {
                self.phase = Phase::Idle;
            }
            let problem = format!("the PBX answered {} with error {error}", msg.mt);
            return vec![ReplicationAction::Problem(problem), ReplicationAction::RetryLater];
        }
        let row = msg
            .body
            .get("columns")
            .and_then(Value::as_object)
            .filter(|row| text(row, "guid").is_some_and(|g| !g.is_empty()));
        match (msg.mt.as_str(), &mut self.phase) {
            ("ReplicateStartResult", Phase::Initial(_)) => vec![Self::next()],
            ("ReplicateNextResult", Phase::Initial(fresh)) => match row {
                Some(row) => {
                    let problem = Self::put_row(fresh, row, &mut self.skipped);
                    problem.into_iter().chain([Self::next()]).collect()
                }
                None => {
                    if let Phase::Initial(fresh) = std::mem::replace(&mut self.phase, Phase::Live) {
                        self.table.replace_with(fresh);
                    }
                    vec![ReplicationAction::Changed]
                }
            },
            ("ReplicateAdd" | "ReplicateUpdate" | "ReplicateDel", Phase::Initial(fresh)) => {
                // A change during the copy: applied to the copy under way.
                Self::live_change(fresh, &msg.mt, row, &mut self.skipped)
                    .into_iter()
                    .filter(|a| *a != ReplicationAction::Changed)
                    .collect()
            }
            ("ReplicateAdd" | "ReplicateUpdate" | "ReplicateDel", Phase::Live) => {
                Self::live_change(&mut self.table, &msg.mt, row, &mut self.skipped)
            }
            _ => Vec::new(),
        }
    }

    /// Adds a whole row of the initial copy (pseudo objects left out).
    fn put_row(
        table: &mut UserTable,
        row: &Map<String, Value>,
        skipped: &mut usize,
    ) -> Option<ReplicationAction> {
        if is_pseudo(row) {
            return None;
        }
        let mut user = PbxUser {
            guid: text(row, "guid").unwrap_or_default(),
            ..PbxUser::default()
        };
        apply_columns(&mut user, row);
        Self::taken(table.put(user), skipped)
    }

    fn taken(result: Result<(), TableError>, skipped: &mut usize) -> Option<ReplicationAction> {
        match result {
            Ok(()) => None,
            Err(e) => {
                *skipped += 1;
                Some(ReplicationAction::Problem(e.to_string()))
            }
        }
    }

    fn live_change(
        table: &mut UserTable,
        mt: &str,
        row: Option<&Map<String, Value>>,
        skipped: &mut usize,
    ) -> Vec<ReplicationAction> {
        let Some(row) = row else {
            // A change without a guid names no row.
            *skipped += 1;
            return vec![ReplicationAction::Problem(format!("{mt} without a guid ignored"))];
        };
        let guid = text(row, "guid").unwrap_or_default();
        let before = table.version();
        let problem = match mt {
            "ReplicateDel" => {
                table.delete(&guid);
                None
            }
            // An object that turned into a pseudo object leaves the phonebook.
            _ if is_pseudo(row) => {
                table.delete(&guid);
                None
            }
            "ReplicateAdd" => {
                let mut user = PbxUser {
                    guid,
                    ..PbxUser::default()
                };
                apply_columns(&mut user, row);
                Self::taken(table.put(user), skipped)
            }
            _ => Self::taken(table.update(&guid, |user| apply_update(user, row)), skipped),
        };
        let changed = (table.version() != before).then_some(ReplicationAction::Changed);
        problem.into_iter().chain(changed).collect()
    }
}

#[cfg(test)]
mod tests;
