//! Who may download a phone's files, and the record of every download.
//!
//! A phone's files are served without credentials only inside its enrolment window (opened by
//! ProvisioningPhone, or reopened by an admin) and only until the phone has fetched with the
//! provisioning credentials the first file gave it (interface.md). With
//! `provisioning.enrolment_once`, only once: every later request must present the credentials
//! the handed-out file carries. Phones that answer a challenge rather than send credentials up
//! front (Yealink, Snom, Grandstream) then get the 401 they need to use them at once; a second
//! party asking inside the window gets the same 401, and the audit shows who fetched the file.
//! Once the window has closed, files carrying secrets need the credentials in any case.

use serde::{Deserialize, Serialize};

use crate::phone::PhoneRecord;

/// Per-phone download state, stored beside the record (the phone's job does not own it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneAccess {
    /// The record generation whose credentials the phone has used; enrolment is over for it.
    pub enrolled_generation: Option<u64>,
    /// When an admin reopened the enrolment window (Unix seconds).
    pub window_reopened_at: Option<u64>,
    /// A vendor an admin pinned the phone to (overrides OUI and User-Agent).
    pub pinned_vendor: Option<String>,
    /// The record generation whose file was served once without credentials: enrolment for it
    /// now needs the credentials that file carried.
    #[serde(default)]
    pub handed_out_generation: Option<u64>,
    /// The address the file of `handed_out_generation` was first served to without
    /// credentials (compared with the address that later enrols with its credentials).
    #[serde(default)]
    pub handed_out_to: Option<String>,
    /// The key profile an admin gave the phone (else its user's PBX config template names one).
    #[serde(default)]
    pub key_profile: Option<String>,
    /// The phone's registration with its vendor's redirect service (zero touch).
    #[serde(default)]
    pub redirect: Option<crate::redirect::RedirectStatus>,
    /// The code printed on the device that its redirect service names it by (Gigaset's
    /// MAC-ID check code), entered by an admin: it cannot be derived from the MAC.
    #[serde(default)]
    pub device_code: Option<String>,
}

/// What to do with a request for a phone's own file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve it; `enrolling` when served without credentials inside the window.
    Serve {
        /// Served without credentials.
        enrolling: bool,
    },
    /// 401.
    Unauthorized,
}

impl PhoneAccess {
    /// Whether the phone has completed enrolment for `record`'s generation.
    pub fn enrolled(&self, record: &PhoneRecord) -> bool {
        self.enrolled_generation == Some(record.generation)
    }

    /// Whether the enrolment window is open at `now`.
    pub fn window_open(&self, record: &PhoneRecord, now: u64, window_secs: u64) -> bool {
        let opened = self.window_reopened_at.unwrap_or(0).max(record.provisioned_at);
        now < opened.saturating_add(window_secs)
    }

    /// The decision for a request that is `authenticated` (valid credentials) or not; with
    /// `once`, a file already handed out without credentials is not handed out again.
    pub fn decide(
        &self,
        record: &PhoneRecord,
        now: u64,
        window_secs: u64,
        once: bool,
        authenticated: bool,
    ) -> Decision {
        let handed_out = once && self.handed_out_generation == Some(record.generation);
        if authenticated {
            Decision::Serve { enrolling: false }
        } else if !self.enrolled(record) && !handed_out && self.window_open(record, now, window_secs) {
            Decision::Serve { enrolling: true }
        } else {
            Decision::Unauthorized
        }
    }
}

/// Enrolment entries kept per phone besides the ring of ordinary downloads.
pub const ENROLMENT_ENTRIES: usize = 16;

/// Trims a phone's audit (oldest first) to the newest `keep` ordinary downloads plus the newest
/// [`ENROLMENT_ENTRIES`] enrolment entries, in order: a client asking in a loop cannot push
/// out who was handed the phone's secrets.
pub fn trim_audit(entries: &mut Vec<AuditEntry>, keep: usize) {
    trim_audit_by(entries, keep, AuditEntry::is_enrolment);
}

/// [`trim_audit`] for entries of any shape that can say whether they are part of enrolment.
pub fn trim_audit_by<T>(entries: &mut Vec<T>, keep: usize, is_enrolment: impl Fn(&T) -> bool) {
    let (mut ordinary, mut enrolment) = (0usize, 0usize);
    let mut kept: Vec<bool> = vec![false; entries.len()];
    for (i, entry) in entries.iter().enumerate().rev() {
        let count = if is_enrolment(entry) {
            &mut enrolment
        } else {
            &mut ordinary
        };
        let limit = if is_enrolment(entry) {
            ENROLMENT_ENTRIES
        } else {
            keep
        };
        if *count < limit {
            *count += 1;
            kept[i] = true;
        }
    }
    let mut flags = kept.into_iter();
    entries.retain(|_| flags.next().unwrap_or(false));
}

/// Whether a download's outcome is part of enrolment (see [`AuditEntry::is_enrolment`]).
pub fn is_enrolment_outcome(outcome: &str) -> bool {
    outcome.starts_with("served for enrolment") || outcome.starts_with("enrolled")
}

impl AuditEntry {
    /// Whether this entry is part of enrolment: the phone's secrets served without
    /// credentials, or its first fetch with them.
    pub fn is_enrolment(&self) -> bool {
        is_enrolment_outcome(&self.outcome)
    }

    /// An entry saying the phone entered `state` at `at` with configuration `config_version`.
    pub fn state_change(at: u64, state: &str, config_version: u64) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at,
            client: String::new(),
            user_agent: String::new(),
            file: String::new(),
            vendor: String::new(),
            status: 0,
            outcome: format!("state {state}"),
            config_version,
            state: Some(state.to_string()),
        }
    }
}

/// One download, or one change of the phone's state, as the audit keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Order of the entry among all downloads since start (set by the audit log).
    #[serde(default)]
    pub seq: u64,
    /// When (Unix seconds).
    pub at: u64,
    /// Client address (`ip:port`).
    pub client: String,
    /// The User-Agent, shortened.
    pub user_agent: String,
    /// The requested file.
    pub file: String,
    /// The vendor it was served as.
    pub vendor: String,
    /// HTTP status sent.
    pub status: u16,
    /// What happened, in words (`served`, `enrolment`, `unauthorized`, `not modified`, ...).
    pub outcome: String,
    /// The configuration version served (or stored, for a state change).
    pub config_version: u64,
    /// For a state change (`linking`, `configured`, `link_down`, ...) instead of a download:
    /// the new state; the admin's per-phone timeline interleaves both. Older entries lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64, outcome: &str) -> AuditEntry {
        AuditEntry {
            seq: n,
            at: n,
            client: String::new(),
            user_agent: String::new(),
            file: String::new(),
            vendor: String::new(),
            status: 200,
            outcome: outcome.into(),
            config_version: 1,
            state: None,
        }
    }

    #[test]
    fn noise_cannot_push_enrolment_out_of_the_audit() {
        let mut entries = vec![entry(0, "served for enrolment"), entry(1, "enrolled")];
        entries.extend((2..300).map(|n| entry(n, "credentials required")));
        trim_audit(&mut entries, 100);
        assert_eq!(entries.len(), 102);
        assert_eq!(entries[0].seq, 0, "the theft stays");
        assert_eq!(entries[1].seq, 1);
        assert_eq!(entries[2].seq, 200, "the newest 100 of the rest");
        let mut many: Vec<AuditEntry> = (0..40).map(|n| entry(n, "served for enrolment")).collect();
        trim_audit(&mut many, 100);
        assert_eq!(many.len(), ENROLMENT_ENTRIES);
        assert_eq!(many[0].seq, 40 - ENROLMENT_ENTRIES as u64);
    }
}
