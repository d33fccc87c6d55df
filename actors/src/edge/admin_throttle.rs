//! `AdminThrottle`: what guessing the admin token costs. Missing or wrong bearer tokens are
//! counted per client address (behind a trusted proxy, the forwarded one; IPv6 by its /64):
//! past [`FREE_FAILURES`] a minute every answer to that address waits, doubling up to
//! [`MAX_DELAY`]; past [`REFUSE_AFTER`] it gets 429 until its minute is over, the right token
//! included. Other addresses are not affected. Each failure is counted in
//! `innoprov_admin_auth_failures_total`; an address is logged once a minute.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::ops::limits::MinuteCounts;

/// Failed tokens one address may present in a minute before its answers wait.
pub const FREE_FAILURES: u32 = 5;
/// Failed tokens in a minute after which the address is refused (429).
pub const REFUSE_AFTER: u32 = 10;
/// The first delay; it doubles with every further failure.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// Most addresses counted at once.
const MAX_ADDRESSES: usize = 50_000;

/// What to do with a request before its token is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminVerdict {
    /// Check the token, answering after `delay`.
    Go {
        /// How long the answer waits (right or wrong, so the wait tells nothing).
        delay: Duration,
    },
    /// 429: too many failures from this address this minute.
    Refuse,
}

/// Failed admin tokens by address.
pub struct AdminThrottle {
    /// Failures by address in the current minute.
    failures: Mutex<MinuteCounts<IpAddr>>,
}

impl Default for AdminThrottle {
    fn default() -> Self {
        AdminThrottle {
            failures: Mutex::new(MinuteCounts::new(MAX_ADDRESSES)),
        }
    }
}

impl AdminThrottle {
    fn count(&self, ip: IpAddr) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .count(&crate::edge::login_guard::key(ip))
    }

    /// The verdict for a request from `ip`.
    pub fn verdict(&self, ip: IpAddr) -> AdminVerdict {
        let failures = self.count(ip);
        if failures >= REFUSE_AFTER {
            return AdminVerdict::Refuse;
        }
        let delay = match failures.checked_sub(FREE_FAILURES) {
            None => Duration::ZERO,
            Some(doublings) => FIRST_DELAY.saturating_mul(1 << doublings.min(16)).min(MAX_DELAY),
        };
        AdminVerdict::Go { delay }
    }

    /// Records a missing or wrong token from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let ip = crate::edge::login_guard::key(ip);
        crate::ops::metrics::metrics().admin_auth_failures.inc();
        let count = self.failures.lock().unwrap_or_else(|p| p.into_inner()).add(ip);
        if count == 1 {
            log::warn!("admin API: a missing or wrong token from {ip}");
        } else if count == REFUSE_AFTER {
            log::warn!(
                "admin API: {count} wrong tokens from {ip} this minute; it gets 429 until the minute is over"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_slow_then_refuse_one_address_for_a_minute() {
        let throttle = AdminThrottle::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..FREE_FAILURES {
            assert_eq!(
                throttle.verdict(a),
                AdminVerdict::Go {
                    delay: Duration::ZERO
                }
            );
            throttle.failed(a);
        }
        assert_eq!(throttle.verdict(a), AdminVerdict::Go { delay: FIRST_DELAY });
        throttle.failed(a);
        assert_eq!(
            throttle.verdict(a),
            AdminVerdict::Go {
                delay: FIRST_DELAY * 2
            }
        );
        while throttle.verdict(a) != AdminVerdict::Refuse {
            throttle.failed(a);
        }
        assert_eq!(throttle.count(a), REFUSE_AFTER);
        assert_eq!(
            throttle.verdict(b),
            AdminVerdict::Go {
                delay: Duration::ZERO
            },
            "per address"
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            throttle.verdict(a),
            AdminVerdict::Go {
                delay: Duration::ZERO
            },
            "a new minute"
        );
    }
}
