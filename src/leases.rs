//! `LeaseBook`: the registry's lease decisions as a plain type (now + what the store answered
//! → renew / claim / give up / hand over / ask the owner), and `ClaimWait`, one
//! ProvisioningPhone's wait for a phone another instance holds. No sockets, no runtime: the
//! registry (`innoprov-actors`, `phones/registry/leased.rs`) runs the timers and the store
//! calls these decide on, and reports back what they found.
//!
//! The rules (design.md, flow step 8):
//! - Every `lease / 3` all leases are renewed in one statement, and up to
//!   [`claim_budget`] free phones are claimed: what the Devices connect gate links before
//!   the next renewal, so the survivors of a failed instance share its phones instead of the
//!   first one taking all. One renewal at a time.
//! - A renewal ends every job whose lease is gone (lost at renewal, or not held any more
//!   while it ran) and links every newly held phone not already running.
//! - If no renewal has succeeded for `2/3` of a lease (checked every `lease / 12`, at least
//!   250 ms), every link closes at once and stays closed until a renewal succeeds: by the
//!   lease's end another instance may take the phones over, and two links for one phone must
//!   never exist.
//! - Another instance asking for a phone held here gets it once its job retired; a second
//!   ask meanwhile is ignored. A phone being handed over counts as not held.
//! - A ProvisioningPhone for a phone held elsewhere claims it, asking the owner (again every
//!   2 s), retrying after 100 ms doubling to 1 s, for at most a lease and 2 s.
//! - Every `lease / 30` (250 ms to 1 s) it looks for instances whose database session ended
//!   (a crash: the database released their session lock). One seen so on two looks in a row
//!   has its leases ended at once, and the renewal that follows claims its phones, still
//!   within [`claim_budget`] and with new fencing tokens. One sighting is not enough: an
//!   instance reconnecting its session is absent for a moment.
//! - At shutdown nothing new is claimed or provisioned.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::mac::Mac;
use crate::store::Claim;

/// The first wait between two claims of a phone another instance holds.
pub const CLAIM_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between two claims.
pub const CLAIM_RETRY_MAX: Duration = Duration::from_secs(1);
/// How often a waiting claim repeats its request to the owner (a NOTIFY may be missed during
/// a reconnect).
pub const ASK_AGAIN: Duration = Duration::from_secs(2);
/// The least time between two checks for stale leases, or two looks for departed owners.
const LEAST_CHECK: Duration = Duration::from_millis(250);
/// The most time between two looks for departed owners.
const MOST_LOOK: Duration = Duration::from_secs(1);
/// The least number of free phones one renewal claims.
const LEAST_CLAIM: usize = 100;

/// How many free phones one renewal claims: what a connect gate of `connects_per_second`
/// links before the next renewal (`lease / 3`), at least 100.
pub fn claim_budget(lease: Duration, connects_per_second: u32) -> usize {
    let per_renewal = f64::from(connects_per_second) * (lease / 3).as_secs_f64();
    (per_renewal as usize).max(LEAST_CLAIM)
}

/// What the registry does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// Renew every lease, then claim up to `claim` free phones; report the outcome with
    /// [`LeaseBook::renewed`] or [`LeaseBook::renewal_failed`].
    Renew {
        /// Most free phones to claim.
        claim: usize,
    },
    /// Forget the leases, close every link at once and refuse new ones until a renewal
    /// succeeds.
    GiveUp {
        /// Since when no renewal succeeded (for the log).
        unrenewed_for: Duration,
    },
    /// A renewal succeeded after a give-up: links are allowed again.
    AllowLinks,
    /// The phone's lease is gone (taken over or deleted): end its job.
    Retire(Mac),
    /// The phone is newly held and not running: start its job from its stored record.
    Link(Mac),
}

/// Where a ProvisioningPhone goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This instance holds the phone: provision at once.
    Now,
    /// Shutting down: answer busy.
    Busy,
    /// Claim it first (asking its owner), waiting at most this long.
    Claim(Duration),
}

/// The registry's leases: the decisions and the little state they need.
#[derive(Debug)]
pub struct LeaseBook {
    /// How long a lease lasts.
    lease: Duration,
    /// Most free phones claimed per renewal.
    claim_budget: usize,
    /// When the latest successful renewal started.
    last_renewed: Instant,
    /// When the renewal under way started, if one is.
    renewing: Option<Instant>,
    /// Whether the links were closed because renewals failed.
    gave_up: bool,
    /// Phones being handed to another instance (their job retiring).
    handing_over: HashSet<Mac>,
    /// Set at shutdown: nothing is claimed or provisioned any more.
    stopping: bool,
    /// Owners found departed on the latest look, with when they were first seen so.
    suspects: HashMap<String, Instant>,
}

impl LeaseBook {
    /// A book for leases of `lease`, a connect gate of `connects_per_second`, started `now`.
    pub fn new(lease: Duration, connects_per_second: u32, now: Instant) -> LeaseBook {
        LeaseBook {
            lease,
            claim_budget: claim_budget(lease, connects_per_second),
            last_renewed: now,
            renewing: None,
            gave_up: false,
            handing_over: HashSet::new(),
            stopping: false,
            suspects: HashMap::new(),
        }
    }

    /// How often to renew: a third of a lease.
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// How often to check for stale leases: a twelfth of a lease, at least 250 ms.
    pub fn check_every(&self) -> Duration {
        (self.lease / 12).max(LEAST_CHECK)
    }

    /// How often to look for owners whose session ended: a thirtieth of a lease, between
    /// 250 ms and 1 s.
    pub fn look_every(&self) -> Duration {
        (self.lease / 30).clamp(LEAST_CHECK, MOST_LOOK)
    }

    /// A look at `now` found `departed` owners: those whose leases end now, the ones found
    /// departed on the previous look too, at least half a look earlier. Nothing at shutdown.
    pub fn departed(&mut self, now: Instant, departed: &[String]) -> Vec<String> {
        if self.stopping {
            self.suspects.clear();
            return Vec::new();
        }
        let confirm = self.look_every() / 2;
        let mut seen = HashMap::new();
        let mut confirmed = Vec::new();
        for owner in departed {
            let first = self.suspects.get(owner).copied().unwrap_or(now);
            if now.saturating_duration_since(first) >= confirm {
                confirmed.push(owner.clone());
            } else {
                seen.insert(owner.clone(), first);
            }
        }
        self.suspects = seen;
        confirmed.sort();
        confirmed
    }

    /// How long a ProvisioningPhone or a delete waits for another instance to hand over.
    pub fn claim_wait(&self) -> Duration {
        self.lease + Duration::from_secs(2)
    }

    /// Whether shutdown began.
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// Whether this instance holds `mac` (the store says `held`) and is not handing it over.
    pub fn holds(&self, mac: &Mac, held: bool) -> bool {
        held && !self.handing_over.contains(mac)
    }

    /// The renewal timer fired (or the database said phones were released, or the LISTEN
    /// connection is back): a renewal, unless one is under way or shutdown began.
    pub fn renew_due(&mut self, now: Instant) -> Option<LeaseAction> {
        if self.renewing.is_some() || self.stopping {
            return None;
        }
        self.renewing = Some(now);
        Some(LeaseAction::Renew {
            claim: self.claim_budget,
        })
    }

    /// The renewal failed (the database did not answer): the next one may start.
    pub fn renewal_failed(&mut self) {
        self.renewing = None;
    }

    /// The renewal succeeded. `running`: the phones with a job now; `held`: whether the store
    /// holds a phone now; `lost`: what the renewal reported lost; `gained`: the phones newly
    /// held (adopted or claimed) whose record is stored. What to do, in order.
    pub fn renewed(
        &mut self,
        running: &[Mac],
        held: &dyn Fn(&Mac) -> bool,
        lost: &[Mac],
        gained: &[Mac],
    ) -> Vec<LeaseAction> {
        let started = self.renewing.take();
        if self.stopping {
            return Vec::new();
        }
        if let Some(started) = started {
            self.last_renewed = started;
        }
        let mut actions = Vec::new();
        if std::mem::take(&mut self.gave_up) {
            actions.push(LeaseAction::AllowLinks);
        }
        // Whatever runs without being held now (lost at renewal, or while it ran) ends.
        let mut running: HashSet<Mac> = running.iter().copied().collect();
        let gone: Vec<Mac> = running
            .iter()
            .filter(|mac| !held(mac) && !self.handing_over.contains(mac))
            .chain(lost.iter().filter(|mac| running.contains(mac)))
            .copied()
            .collect::<std::collections::BTreeSet<Mac>>()
            .into_iter()
            .collect();
        for mac in gone {
            running.remove(&mac);
            actions.push(LeaseAction::Retire(mac));
        }
        for mac in gained {
            if self.holds(mac, held(mac)) && running.insert(*mac) {
                actions.push(LeaseAction::Link(*mac));
            }
        }
        actions
    }

    /// The stale-lease timer fired: give up every link once no renewal succeeded for 2/3 of
    /// a lease (once, until a renewal succeeds again).
    pub fn check(&mut self, now: Instant) -> Option<LeaseAction> {
        let unrenewed_for = now.saturating_duration_since(self.last_renewed);
        if self.gave_up || self.stopping || unrenewed_for < self.lease * 2 / 3 {
            return None;
        }
        self.gave_up = true;
        Some(LeaseAction::GiveUp { unrenewed_for })
    }

    /// Where a ProvisioningPhone for `mac` goes (the store says `held`).
    pub fn route(&self, mac: &Mac, held: bool) -> Route {
        match (self.stopping, self.holds(mac, held)) {
            (true, _) => Route::Busy,
            (false, true) => Route::Now,
            (false, false) => Route::Claim(self.claim_wait()),
        }
    }

    /// Whether an admin's delete of `mac` must first claim it (and how long it may wait).
    pub fn claim_before_delete(&self, mac: &Mac, held: bool) -> Option<Duration> {
        (!self.holds(mac, held) && !self.stopping).then(|| self.claim_wait())
    }

    /// Whether a claimed phone may be provisioned now that the claim is done.
    pub fn provision_after_claim(&self, mac: &Mac, held: bool) -> Result<(), ClaimRefused> {
        match (self.stopping, self.holds(mac, held)) {
            (true, _) => Err(ClaimRefused::ShuttingDown),
            (false, true) => Ok(()),
            (false, false) => Err(ClaimRefused::MovedOn),
        }
    }

    /// Whether a phone whose job ended may keep its job restarted (held, not shutting down).
    pub fn may_restart(&self, mac: &Mac, held: bool) -> bool {
        self.holds(mac, held) && !self.stopping
    }

    /// Whether to release the lease of a phone whose job retired with nothing stored.
    pub fn release_unstored(&self, mac: &Mac, held: bool) -> bool {
        self.holds(mac, held) && !self.stopping
    }

    /// Another instance (`by`) asks for `mac`; `me` is this instance's owner name. Whether to
    /// retire its job and hand it over (then [`handed`](Self::handed) when done).
    pub fn asked(&mut self, mac: Mac, by: &str, me: &str, held: bool) -> bool {
        if by == me || !self.holds(&mac, held) || self.stopping {
            return false;
        }
        self.handing_over.insert(mac)
    }

    /// A hand-over of `mac` ended (done or failed).
    pub fn handed(&mut self, mac: &Mac) {
        self.handing_over.remove(mac);
    }

    /// Shutdown: nothing is claimed or provisioned from now on.
    pub fn stop(&mut self) {
        self.stopping = true;
    }
}

/// Why a claimed phone is not provisioned after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimRefused {
    /// Shutdown began while it was claimed.
    ShuttingDown,
    /// The lease moved on (a renewal or a hand-over) while it was claimed.
    MovedOn,
}

/// What a waiting claim does after one claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimStep {
    /// This instance holds the phone now.
    Held,
    /// Still held by `owner` at the deadline: give up.
    TimedOut {
        /// The owner that kept it.
        owner: String,
    },
    /// Claim again after `retry`, or as soon as the owner says it handed over; `ask` first:
    /// ask the owner to hand it over.
    Wait {
        /// Whether to (again) ask the owner.
        ask: bool,
        /// How long to wait before the next claim.
        retry: Duration,
    },
}

/// One claim of a phone another instance holds: claims, asks and the backoff between them.
#[derive(Debug, Clone)]
pub struct ClaimWait {
    /// When to stop waiting.
    deadline: Instant,
    /// When the owner was last asked.
    asked: Option<Instant>,
    /// The next wait between two claims.
    retry: Duration,
}

impl ClaimWait {
    /// A wait begun `now` for at most `wait`.
    pub fn new(now: Instant, wait: Duration) -> ClaimWait {
        ClaimWait {
            deadline: now + wait,
            asked: None,
            retry: CLAIM_RETRY,
        }
    }

    /// A claim at `now` answered `claim`: what next.
    pub fn after(&mut self, now: Instant, claim: Claim) -> ClaimStep {
        let owner = match claim {
            Claim::Held => return ClaimStep::Held,
            Claim::HeldBy(owner) => owner,
        };
        if now > self.deadline {
            return ClaimStep::TimedOut { owner };
        }
        let ask = self
            .asked
            .is_none_or(|at| now.saturating_duration_since(at) > ASK_AGAIN);
        if ask {
            self.asked = Some(now);
        }
        let retry = self.retry;
        self.retry = (self.retry * 2).min(CLAIM_RETRY_MAX);
        ClaimStep::Wait { ask, retry }
    }
}

#[cfg(test)]
mod tests;
