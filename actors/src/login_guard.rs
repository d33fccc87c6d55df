//! `LoginGuard`: what an unauthenticated AppWebsocket peer may cost. Connections that have not
//! logged in are capped service-wide and per address (with a reserve for addresses that have
//! logged in before, such as the PBX's), and failed logins are counted per address across
//! connections: past a few a minute, every answer to that address (right or wrong) is delayed,
//! doubling up to a bound, so guessing the App password from one address runs at a few tries a
//! second at most, while a correct login is still accepted, only later.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::limits::MinuteCounts;

/// Failed logins one address may make in a minute before its answers are delayed.
const FREE_FAILURES: u32 = 5;
/// The first delay once throttled; it doubles with every further failure.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(8);
/// Pending connections beyond the cap kept for addresses that have logged in before.
const RESERVE: usize = 64;
/// Most addresses remembered (failures, good logins); beyond, the oldest minute is forgotten.
const MAX_ADDRESSES: usize = 50_000;
/// Connections not yet logged in one throttled address may hold: with answers delayed up to
/// 8 s, about one guess a second.
const THROTTLED_PER_ADDRESS: usize = 8;

/// The key an address is counted under: IPv4 as is, IPv6 by its /64 (one host's addresses).
fn key(ip: IpAddr) -> IpAddr {
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

/// Settings of the guard.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Connections not yet logged in, service-wide.
    pub max_pending: usize,
    /// Connections not yet logged in, per address.
    pub per_address: usize,
}

struct Inner {
    /// Connections not yet logged in, by address.
    pending: HashMap<IpAddr, usize>,
    /// Their total.
    total: usize,
    /// Failed logins by address in the current minute.
    failures: MinuteCounts<IpAddr>,
    /// Addresses that have logged in (they keep a reserve when the cap is reached).
    known: HashSet<IpAddr>,
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
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut inner = self.guard.lock();
        inner.total = inner.total.saturating_sub(1);
        if let Some(n) = inner.pending.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                inner.pending.remove(&self.ip);
            }
        }
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
    /// A guard with these limits.
    pub fn new(limits: LoginLimits) -> Arc<LoginGuard> {
        Arc::new(LoginGuard {
            limits,
            inner: Mutex::new(Inner {
                pending: HashMap::new(),
                total: 0,
                failures: MinuteCounts::new(MAX_ADDRESSES),
                known: HashSet::new(),
            }),
            any_failure: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection from `ip`, if the caps allow.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<PendingSlot, Refused> {
        let ip = key(ip);
        let throttled = !self.delay(ip).is_zero();
        let mut inner = self.lock();
        let from_ip = inner.pending.get(&ip).copied().unwrap_or(0);
        let per_address = if throttled {
            self.limits.per_address.min(THROTTLED_PER_ADDRESS)
        } else {
            self.limits.per_address
        };
        if from_ip >= per_address {
            return Err(Refused::PerAddress);
        }
        let cap = if inner.known.contains(&ip) {
            self.limits.max_pending + RESERVE
        } else {
            self.limits.max_pending
        };
        if inner.total >= cap {
            return Err(Refused::Total);
        }
        inner.total += 1;
        *inner.pending.entry(ip).or_insert(0) += 1;
        Ok(PendingSlot {
            guard: Arc::clone(self),
            ip,
        })
    }

    /// `ip` logged in: it keeps a reserve from now on.
    pub fn logged_in(&self, ip: IpAddr) {
        let ip = key(ip);
        let mut inner = self.lock();
        if inner.known.contains(&ip) {
            return;
        }
        if inner.known.len() >= MAX_ADDRESSES {
            inner.known.clear();
        }
        inner.known.insert(ip);
    }

    /// Records a failed login (or AppCheckLogin) from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let ip = key(ip);
        crate::metrics::metrics().login_failures.inc();
        self.any_failure.store(true, Ordering::Relaxed);
        if self.lock().failures.add(ip) == FREE_FAILURES + 1 {
            log::warn!("logins from {ip}: too many failures; answers are delayed");
        }
    }

    /// How long to wait before answering a login check from `ip`.
    pub fn delay(&self, ip: IpAddr) -> Duration {
        if !self.any_failure.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let ip = key(ip);
        let failures = self.lock().failures.count(&ip);
        if failures < FREE_FAILURES {
            return Duration::ZERO;
        }
        let doublings = (failures - FREE_FAILURES).min(16);
        FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_total_with_a_reserve_for_known_addresses() {
        let guard = LoginGuard::new(LoginLimits {
            max_pending: 3,
            per_address: 2,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let pbx: IpAddr = "192.0.2.9".parse().unwrap();
        let a1 = guard.admit(a).unwrap();
        let _a2 = guard.admit(a).unwrap();
        assert_eq!(guard.admit(a).err(), Some(Refused::PerAddress));
        let _b1 = guard.admit(b).unwrap();
        assert_eq!(guard.admit(b).err(), Some(Refused::Total));
        guard.logged_in(pbx);
        let p = guard.admit(pbx).expect("the reserve");
        drop(a1);
        drop(p);
        assert!(guard.admit(a).is_ok(), "a slot comes back when dropped");
    }

    #[test]
    fn failures_delay_answers_doubling_to_a_bound() {
        let guard = LoginGuard::new(LoginLimits {
            max_pending: 10,
            per_address: 10,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
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
        assert_eq!(
            guard.delay("192.0.2.2".parse().unwrap()),
            Duration::ZERO,
            "per address"
        );
        // IPv6: one /64 is one address.
        for n in 1..=FREE_FAILURES as u16 + 1 {
            guard.failed(IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, n]));
        }
        assert!(!guard.delay("2001:db8::ffff".parse().unwrap()).is_zero());
        assert!(guard.delay("2001:db8:0:1::1".parse().unwrap()).is_zero());
    }

    #[test]
    fn a_throttled_address_holds_fewer_pending_connections() {
        let guard = LoginGuard::new(LoginLimits {
            max_pending: 100,
            per_address: 50,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
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
