//! Checked writes: a phone record written only if what is stored allows it, decided inside the
//! write itself, and several of them committed together ([`Store::put_phones_checked`]). The
//! persistence actor groups the jobs' writes into them when the store runs writes side by
//! side (PostgreSQL: one transaction of pipelined statements, one commit for the group).

use super::{Store, StoreError, Token};
use crate::phone::PhoneRecord;

/// How a write may meet what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// A new ProvisioningPhone: replaces what is stored unless that is of a newer generation.
    Provision,
    /// A job's update: only onto the stored record of the same generation, so a late write of
    /// a replaced or deleted phone's job changes nothing.
    Update,
}

impl WriteMode {
    /// Whether a write of `generation` may meet a stored record of generation `stored`.
    pub fn allows(self, stored: Option<u64>, generation: u64) -> bool {
        match (self, stored) {
            (WriteMode::Provision, Some(stored)) => stored <= generation,
            (WriteMode::Provision, None) => true,
            (WriteMode::Update, Some(stored)) => stored == generation,
            (WriteMode::Update, None) => false,
        }
    }
}

/// One write of a group.
#[derive(Debug, Clone, Copy)]
pub struct CheckedWrite<'a> {
    /// The whole record.
    pub record: &'a PhoneRecord,
    /// What it may replace.
    pub mode: WriteMode,
    /// The phone's lease token when the writing job started (several instances): written
    /// only while it is current. A store without leases refuses the whole group.
    pub fence: Option<Token>,
}

/// What became of one write of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written (durable once the call returned).
    Written,
    /// Not written: what is stored is of another generation (re-provisioned or deleted).
    Stale,
    /// Not written: the lease's token is no longer the one given (taken over).
    TakenOver,
}

/// The default group write: one by one, each checked then written. Atomic per write only
/// while nothing else writes the phone meanwhile (the persistence actor holds each phone's
/// lock for the group), and durable only after [`Store::flush`].
pub fn one_by_one<S: Store + ?Sized>(
    store: &S,
    writes: &[CheckedWrite<'_>],
) -> Result<Vec<WriteOutcome>, StoreError> {
    if writes.iter().any(|w| w.fence.is_some()) {
        return Err(StoreError::Backend(
            "a fenced write on a store without leases".into(),
        ));
    }
    writes
        .iter()
        .map(|w| {
            let stored = store.get_phone(&w.record.mac)?.map(|r| r.generation);
            if !w.mode.allows(stored, w.record.generation) {
                return Ok(WriteOutcome::Stale);
            }
            store.put_phone(w.record)?;
            Ok(WriteOutcome::Written)
        })
        .collect()
}
