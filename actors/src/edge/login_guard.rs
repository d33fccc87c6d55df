//! `LoginGuard`: what an unauthenticated AppWebsocket peer may cost. Every client is counted by
//! its address (behind a trusted proxy, the address the proxy forwarded for; IPv6 by its /64).
//!
//! - **Login slots.** Connections not yet logged in are capped service-wide and per address,
//!   with a reserve for addresses that logged in before (the PBX's, the Users service's). The
//!   caps follow the open-files limit the process got ([`LoginLimits::for_open_files`]). When
//!   the cap is reached, a newcomer takes the oldest slot of the address holding the most, if
//!   that address holds more than the newcomer would: a handful of addresses can never lock
//!   everyone else out. The slot's connection is told to close ([`PendingSlot::evicted`]).
//! - **Known addresses** are remembered (at most [`MAX_KNOWN`], the oldest login forgotten
//!   first, none older than [`KNOWN_FOR`]) and kept in the store, so the reserve survives a
//!   restart.
//! - **Failed logins** are counted per address: past [`FREE_FAILURES`] a minute, every answer
//!   to that address (right or wrong) waits, doubling up to [`MAX_DELAY`].
//! - **A service-wide budget**: past [`BUDGET_FAILURES`] failed logins a minute across all
//!   addresses, every answer to an address that never logged in waits [`MAX_DELAY`], and those
//!   addresses together hold at most an eighth of the slots: guessing from many addresses is
//!   bounded too, while the PBX, Users and every known address are unaffected.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::ops::limits::MinuteCounts;

/// Failed logins one address may make in a minute before its answers are delayed.
pub const FREE_FAILURES: u32 = 5;
/// The first delay once throttled; it doubles with every further failure.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(8);
/// Failed logins a minute across all addresses past which addresses that never logged in are
/// slowed as a whole.
pub const BUDGET_FAILURES: u32 = 100;
/// Pending connections beyond the cap kept for addresses that have logged in before.
const RESERVE: usize = 64;
/// Most addresses whose failures are counted at once.
const MAX_ADDRESSES: usize = 50_000;
/// Most addresses remembered as having logged in.
pub const MAX_KNOWN: usize = 4096;
/// How long an address that logged in is remembered.
pub const KNOWN_FOR: Duration = Duration::from_secs(90 * 24 * 3600);
/// Connections not yet logged in one throttled address may hold: with answers delayed up to
/// 8 s, about one guess a second.
const THROTTLED_PER_ADDRESS: usize = 8;
/// Files kept for everything but pending logins: listeners, the store, logs, PostgreSQL.
const FILES_RESERVED: u64 = 256;

/// The key an address is counted under: IPv4 as is, IPv6 by its /64 (one host's addresses).
pub(crate) fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & (u128::MAX << 64);
                IpAddr::V6(prefix.into())
            }
        },
        v4 => v4,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Settings of the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Connections not yet logged in, service-wide.
    pub max_pending: usize,
    /// Connections not yet logged in, per address.
    pub per_address: usize,
}

impl LoginLimits {
    /// The configured caps, lowered to what `open_files` allows: half of what is left after
    /// `FILES_RESERVED` (256) may wait for a login, the other half serves Devices links and
    /// downloads; lowered so, one address gets at most a quarter of the pending slots.
    pub fn for_open_files(configured: LoginLimits, open_files: u64) -> LoginLimits {
        let spare = usize::try_from(open_files.saturating_sub(FILES_RESERVED) / 2).unwrap_or(usize::MAX);
        if configured.max_pending <= spare {
            return LoginLimits {
                per_address: configured.per_address.min(configured.max_pending),
                ..configured
            };
        }
        let max_pending = spare.max(1);
        LoginLimits {
            max_pending,
            per_address: configured.per_address.min(max_pending.div_ceil(4)).max(1),
        }
    }
}

/// A connection waiting for its login, as the guard holds it.
struct Waiting {
    /// Tells the slot apart from the address's others.
    id: u64,
    /// Whether its address had logged in before (counted apart when over budget).
    known: bool,
    /// Wakes the connection when its slot is taken from it.
    evicted: Arc<Notify>,
}

struct Inner {
    /// Connections not yet logged in, by address, oldest first.
    pending: HashMap<IpAddr, VecDeque<Waiting>>,
    /// Their total.
    total: usize,
    /// Those of addresses that never logged in.
    unknown_total: usize,
    /// Failed logins by address in the current minute.
    failures: MinuteCounts<IpAddr>,
    /// Failed logins of all addresses in the current minute.
    all_failures: MinuteCounts<()>,
    /// Addresses that have logged in, with the Unix time of their last login.
    known: HashMap<IpAddr, u64>,
    /// Whether `known` changed since it was last saved.
    known_changed: bool,
    /// The next slot's id.
    next_id: u64,
}

impl Inner {
    fn is_known(&self, ip: &IpAddr) -> bool {
        self.known
            .get(ip)
            .is_some_and(|at| unix_now().saturating_sub(*at) < KNOWN_FOR.as_secs())
    }

    fn over_budget(&self) -> bool {
        self.all_failures.count(&()) > BUDGET_FAILURES
    }

    /// Removes the slot `id` of `ip`; whether it was still held (not evicted).
    fn release(&mut self, ip: IpAddr, id: u64) -> bool {
        let Some(queue) = self.pending.get_mut(&ip) else {
            return false;
        };
        let Some(at) = queue.iter().position(|w| w.id == id) else {
            return false;
        };
        let waiting = queue.remove(at);
        if queue.is_empty() {
            self.pending.remove(&ip);
        }
        if let Some(waiting) = waiting {
            self.forget(&waiting);
        }
        true
    }

    fn forget(&mut self, waiting: &Waiting) {
        self.total = self.total.saturating_sub(1);
        if !waiting.known {
            self.unknown_total = self.unknown_total.saturating_sub(1);
        }
    }

    /// Takes the oldest slot of the address holding the most, if it holds more than
    /// `newcomer_after` (what the newcomer will hold) and `eligible` accepts it.
    fn evict_busiest(&mut self, newcomer_after: usize, eligible: impl Fn(&Waiting) -> bool) -> bool {
        let busiest = self
            .pending
            .iter()
            .filter(|(_, q)| q.front().is_some_and(&eligible))
            .max_by_key(|(_, q)| q.len())
            .map(|(ip, q)| (*ip, q.len()));
        let Some((victim, held)) = busiest.filter(|(_, held)| *held > newcomer_after) else {
            return false;
        };
        let Some(waiting) = self.pending.get_mut(&victim).and_then(VecDeque::pop_front) else {
            return false;
        };
        if held == 1 {
            self.pending.remove(&victim);
        }
        self.forget(&waiting);
        waiting.evicted.notify_one();
        crate::ops::metrics::metrics().login_slots_evicted.inc();
        log::debug!("websocket from {victim}: its oldest pending login gave its slot to another address");
        true
    }
}

/// The guard, shared by every session.
pub struct LoginGuard {
    /// Caps.
    limits: LoginLimits,
    /// Counters.
    inner: Mutex<Inner>,
    /// Whether any login has failed since start: until then no answer waits and the common
    /// path takes no lock for the delay.
    any_failure: AtomicBool,
}

/// A connection's place among those not yet logged in; given back when dropped.
pub struct PendingSlot {
    /// The guard to give it back to.
    guard: Arc<LoginGuard>,
    /// The address it counts against.
    ip: IpAddr,
    /// Which of the address's slots.
    id: u64,
    /// Notified when the slot is given to another address.
    evicted: Arc<Notify>,
}

impl PendingSlot {
    /// Resolves when the guard gave this slot to another address: the connection closes.
    pub fn evicted(&self) -> impl std::future::Future<Output = ()> + 'static {
        let evicted = Arc::clone(&self.evicted);
        async move { evicted.notified().await }
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.guard.lock().release(self.ip, self.id);
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Too many connections from this address have not logged in.
    #[error("too many connections from this address have not logged in")]
    PerAddress,
    /// Too many connections service-wide have not logged in.
    #[error("too many connections have not logged in")]
    Total,
}

impl LoginGuard {
    /// A guard with these limits, remembering `known` addresses (as saved by
    /// [`LoginGuard::known_to_save`]).
    pub fn new(limits: LoginLimits, known: &[u8]) -> Arc<LoginGuard> {
        let known: HashMap<IpAddr, u64> = serde_json::from_slice::<Vec<(IpAddr, u64)>>(known)
            .unwrap_or_default()
            .into_iter()
            .map(|(ip, at)| (key(ip), at))
            .filter(|(_, at)| unix_now().saturating_sub(*at) < KNOWN_FOR.as_secs())
            .take(MAX_KNOWN)
            .collect();
        Arc::new(LoginGuard {
            limits,
            inner: Mutex::new(Inner {
                pending: HashMap::new(),
                total: 0,
                unknown_total: 0,
                failures: MinuteCounts::new(MAX_ADDRESSES),
                all_failures: MinuteCounts::new(2),
                known,
                known_changed: false,
                next_id: 0,
            }),
            any_failure: AtomicBool::new(false),
        })
    }

    /// The caps in force.
    pub fn limits(&self) -> LoginLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every change is completed under the lock before anything can panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection from `ip`, if the caps allow (taking the oldest slot of
    /// the busiest address when that is fair).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<PendingSlot, Refused> {
        let ip = key(ip);
        let own_throttled = !self.own_delay(ip).is_zero();
        let mut inner = self.lock();
        let known = inner.is_known(&ip);
        let budget = !known && inner.over_budget();
        let from_ip = inner.pending.get(&ip).map_or(0, VecDeque::len);
        let per_address = if own_throttled || budget {
            self.limits.per_address.min(THROTTLED_PER_ADDRESS)
        } else {
            self.limits.per_address
        };
        if from_ip >= per_address {
            return Err(Refused::PerAddress);
        }
        if budget && inner.unknown_total >= (self.limits.max_pending / 8).max(1) {
            // Over budget, newcomers take slots from other unknown addresses only.
            if !inner.evict_busiest(from_ip + 1, |w| !w.known) {
                return Err(Refused::Total);
            }
        }
        let cap = if known {
            self.limits.max_pending + RESERVE
        } else {
            self.limits.max_pending
        };
        if inner.total >= cap && !inner.evict_busiest(from_ip + 1, |_| true) {
            return Err(Refused::Total);
        }
        inner.total += 1;
        if !known {
            inner.unknown_total += 1;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let evicted = Arc::new(Notify::new());
        inner.pending.entry(ip).or_default().push_back(Waiting {
            id,
            known,
            evicted: Arc::clone(&evicted),
        });
        Ok(PendingSlot {
            guard: Arc::clone(self),
            ip,
            id,
            evicted,
        })
    }

    /// `ip` logged in: it keeps a reserve from now on (and after a restart).
    pub fn logged_in(&self, ip: IpAddr) {
        let ip = key(ip);
        let now = unix_now();
        let mut inner = self.lock();
        // Refreshed at most daily: a PBX reconnecting often does not rewrite the list.
        if inner
            .known
            .get(&ip)
            .is_some_and(|at| now.saturating_sub(*at) < 24 * 3600)
        {
            return;
        }
        if !inner.known.contains_key(&ip) && inner.known.len() >= MAX_KNOWN {
            let oldest = inner.known.iter().min_by_key(|(_, at)| **at).map(|(ip, _)| *ip);
            if let Some(oldest) = oldest {
                inner.known.remove(&oldest);
            }
        }
        inner.known.insert(ip, now);
        inner.known_changed = true;
    }

    /// The known addresses to keep in the store, when they changed since the last call.
    pub fn known_to_save(&self) -> Option<Vec<u8>> {
        let mut inner = self.lock();
        if !inner.known_changed {
            return None;
        }
        inner.known_changed = false;
        let list: Vec<(IpAddr, u64)> = inner.known.iter().map(|(ip, at)| (*ip, *at)).collect();
        serde_json::to_vec(&list).ok()
    }

    /// Records a failed login (or AppCheckLogin) from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let ip = key(ip);
        crate::ops::metrics::metrics().login_failures.inc();
        self.any_failure.store(true, Ordering::Relaxed);
        let mut inner = self.lock();
        if inner.failures.add(ip) == FREE_FAILURES + 1 {
            log::warn!("logins from {ip}: too many failures; answers are delayed");
        }
        if inner.all_failures.add(()) == BUDGET_FAILURES + 1 {
            log::warn!(
                "more than {BUDGET_FAILURES} failed logins in a minute: answers to addresses that never logged in are delayed"
            );
        }
    }

    fn own_delay(&self, ip: IpAddr) -> Duration {
        if !self.any_failure.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let failures = self.lock().failures.count(&ip);
        if failures < FREE_FAILURES {
            return Duration::ZERO;
        }
        let doublings = (failures - FREE_FAILURES).min(16);
        FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
    }

    /// How long to wait before answering a login check from `ip`.
    pub fn delay(&self, ip: IpAddr) -> Duration {
        if !self.any_failure.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let ip = key(ip);
        let own = self.own_delay(ip);
        let inner = self.lock();
        if inner.over_budget() && !inner.is_known(&ip) {
            return MAX_DELAY;
        }
        own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max_pending: usize, per_address: usize) -> Arc<LoginGuard> {
        LoginGuard::new(
            LoginLimits {
                max_pending,
                per_address,
            },
            b"",
        )
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn caps_per_address_and_total_with_a_reserve_for_known_addresses() {
        let guard = guard(3, 2);
        let (a, b, pbx) = (ip(1), ip(2), ip(9));
        let a1 = guard.admit(a).unwrap();
        let _a2 = guard.admit(a).unwrap();
        assert_eq!(guard.admit(a).err(), Some(Refused::PerAddress));
        let _b1 = guard.admit(b).unwrap();
        // b holds one and would hold two: a's two are not more, nothing is taken.
        assert_eq!(guard.admit(b).err(), Some(Refused::Total));
        guard.logged_in(pbx);
        let p = guard.admit(pbx).expect("the reserve");
        drop(a1);
        drop(p);
        assert!(guard.admit(a).is_ok(), "a slot comes back when dropped");
    }

    #[tokio::test]
    async fn a_newcomer_takes_the_oldest_slot_of_the_busiest_address() {
        let guard = guard(4, 4);
        let (a, b) = (ip(1), ip(2));
        let a_slots: Vec<_> = (0..4).map(|_| guard.admit(a).unwrap()).collect();
        let oldest = a_slots[0].evicted();
        let b1 = guard.admit(b).expect("b takes one of a's");
        tokio::time::timeout(Duration::from_secs(1), oldest)
            .await
            .expect("the oldest of a's connections is told to close");
        let _b2 = guard.admit(b).expect("a still holds more than b would");
        // Now a holds 2 and b would hold 3: b is refused, a keeps its slots.
        assert_eq!(guard.admit(b).err(), Some(Refused::Total));
        // Dropping an evicted slot gives nothing back twice.
        drop(a_slots);
        drop(b1);
        assert_eq!(guard.lock().total, 1);
    }

    #[test]
    fn the_caps_follow_the_open_files_limit() {
        let configured = LoginLimits {
            max_pending: 1024,
            per_address: 256,
        };
        assert_eq!(LoginLimits::for_open_files(configured, 65_536), configured);
        assert_eq!(
            LoginLimits::for_open_files(configured, 1024),
            LoginLimits {
                max_pending: 384,
                per_address: 96
            }
        );
        assert_eq!(LoginLimits::for_open_files(configured, 10).max_pending, 1);
    }

    #[test]
    fn known_addresses_survive_a_restart_bounded() {
        let guard = guard(1, 1);
        assert_eq!(guard.known_to_save(), None);
        guard.logged_in(ip(9));
        let saved = guard.known_to_save().expect("changed");
        assert_eq!(guard.known_to_save(), None, "saved once");
        let restarted = LoginGuard::new(guard.limits(), &saved);
        let _stranger = restarted.admit(ip(1)).unwrap();
        assert!(restarted.admit(ip(9)).is_ok(), "the reserve after a restart");
        // Too old: forgotten.
        let old = serde_json::to_vec(&vec![(ip(9), 1u64)]).unwrap();
        let restarted = LoginGuard::new(guard.limits(), &old);
        let _stranger = restarted.admit(ip(1)).unwrap();
        assert!(restarted.admit(ip(9)).is_err());
        // Bounded: the oldest goes first.
        let many = LoginGuard::new(guard.limits(), b"");
        for n in 0..=MAX_KNOWN as u32 {
            many.logged_in(IpAddr::from(n.to_be_bytes()));
        }
        assert_eq!(many.lock().known.len(), MAX_KNOWN);
    }

    #[test]
    fn failures_delay_answers_doubling_to_a_bound() {
        let guard = guard(10, 10);
        let a = ip(1);
        for _ in 0..FREE_FAILURES {
            assert_eq!(guard.delay(a), Duration::ZERO);
            guard.failed(a);
        }
        assert_eq!(guard.delay(a), FIRST_DELAY);
        guard.failed(a);
        assert_eq!(guard.delay(a), FIRST_DELAY * 2);
        for _ in 0..20 {
            guard.failed(a);
        }
        assert_eq!(guard.delay(a), MAX_DELAY);
        assert_eq!(guard.delay(ip(2)), Duration::ZERO, "per address");
        // IPv6: one /64 is one address.
        for n in 1..=FREE_FAILURES as u16 + 1 {
            guard.failed(IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, n]));
        }
        assert!(!guard.delay("2001:db8::ffff".parse().unwrap()).is_zero());
        assert!(guard.delay("2001:db8:0:1::1".parse().unwrap()).is_zero());
    }

    #[test]
    fn past_the_budget_unknown_addresses_wait_and_share_an_eighth_of_the_slots() {
        let guard = guard(64, 64);
        let pbx = ip(9);
        guard.logged_in(pbx);
        // Failures spread so thin that no address is throttled on its own.
        for n in 0..=BUDGET_FAILURES {
            guard.failed(IpAddr::from([10, 0, (n / 256) as u8, n as u8]));
        }
        assert_eq!(guard.delay(ip(1)), MAX_DELAY, "a stranger waits");
        assert_eq!(guard.delay(pbx), Duration::ZERO, "a known address does not");
        let strangers: Vec<_> = (1..=8).map(|n| guard.admit(ip(n)).unwrap()).collect();
        assert_eq!(guard.admit(ip(20)).err(), Some(Refused::Total), "an eighth of 64");
        assert!(guard.admit(pbx).is_ok(), "the PBX is not held back");
        drop(strangers);
    }

    #[test]
    fn a_throttled_address_holds_fewer_pending_connections() {
        let guard = guard(100, 50);
        let a = ip(1);
        for _ in 0..=FREE_FAILURES {
            guard.failed(a);
        }
        let slots: Vec<_> = (0..THROTTLED_PER_ADDRESS)
            .map(|_| guard.admit(a).unwrap())
            .collect();
        assert_eq!(guard.admit(a).err(), Some(Refused::PerAddress));
        drop(slots);
    }
}
