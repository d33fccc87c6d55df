//! The redirect work as a plain type: which phone goes to which service next, when a failed
//! call is tried again (the one backoff policy: backon's jittered exponential), and how many
//! calls a second each service gets. The runtime feeds it jobs and verdicts and carries the
//! calls; what must survive a restart is in the store (module doc of [`super`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use backon::ExponentialBackoff;

use super::{RedirectOp, RedirectState, RedirectStatus, Verdict};
use crate::Mac;

/// The retry policy: the first delay and the cap.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The first retry's delay.
    pub min: Duration,
    /// The longest delay between two tries.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            min: Duration::from_secs(2),
            max: Duration::from_secs(600),
        }
    }
}

/// One phone's pending work.
struct Queued {
    /// What to do.
    op: RedirectOp,
    /// The service's name (the vendor's).
    service: String,
    /// Not before (ms, the caller's clock).
    due_ms: u64,
    /// A call for it is under way.
    in_flight: bool,
    /// What came in while a call was under way: done next, whatever the call's verdict.
    then: Option<(RedirectOp, String)>,
    /// The delays of its retries.
    backoff: Option<ExponentialBackoff>,
    /// Tries so far.
    attempts: u32,
}

/// What a finished call leaves.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// A registration's end (or its retry): the phone's status to store.
    Status(RedirectStatus),
    /// A deregistration is over (done, or the service says the phone is not ours): its
    /// durable note can go.
    Deregistered {
        /// What the service said, for the log.
        detail: String,
    },
    /// A deregistration failed and is tried again later.
    DeregisterRetry {
        /// Why.
        detail: String,
    },
}

/// The queue.
pub struct RedirectQueue {
    /// Work by phone: one entry per phone, the latest wish wins.
    jobs: BTreeMap<Mac, Queued>,
    /// Per service: the least gap between two calls (ms), and when the last one started.
    pace: HashMap<String, (u64, u64)>,
    /// The retry policy.
    policy: RetryPolicy,
}

impl RedirectQueue {
    /// An empty queue.
    pub fn new(policy: RetryPolicy) -> RedirectQueue {
        RedirectQueue {
            jobs: BTreeMap::new(),
            pace: HashMap::new(),
            policy,
        }
    }

    /// Lets `service` take at most `per_second` calls a second (at least one).
    pub fn pace(&mut self, service: &str, per_second: u32) {
        let gap = 1000 / u64::from(per_second.max(1));
        self.pace.entry(service.to_string()).or_insert((0, 0)).0 = gap;
    }

    /// Work waiting or under way.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The phone's pending operation, if any.
    pub fn pending(&self, mac: &Mac) -> Option<RedirectOp> {
        self.jobs
            .get(mac)
            .map(|q| q.then.as_ref().map_or(q.op, |(op, _)| *op))
    }

    /// Wants `op` for `mac` at `service`, now. The latest wish for a phone wins: a
    /// registration after a deregistration that has not run yet replaces it, and the
    /// reverse.
    pub fn push(&mut self, mac: Mac, op: RedirectOp, service: &str, now_ms: u64) {
        match self.jobs.get_mut(&mac) {
            Some(queued) if queued.in_flight => queued.then = Some((op, service.to_string())),
            _ => {
                self.jobs.insert(
                    mac,
                    Queued {
                        op,
                        service: service.to_string(),
                        due_ms: now_ms,
                        in_flight: false,
                        then: None,
                        backoff: None,
                        attempts: 0,
                    },
                );
            }
        }
    }

    /// The next call to make at `now_ms`: a due job whose service's pace allows a call.
    pub fn take_due(&mut self, now_ms: u64) -> Option<(Mac, RedirectOp, String)> {
        let pace = &mut self.pace;
        let (mac, queued) = self.jobs.iter_mut().find(|(_, q)| {
            !q.in_flight
                && q.due_ms <= now_ms
                && pace
                    .get(&q.service)
                    .is_none_or(|(gap, last)| *last == 0 || now_ms >= last + gap)
        })?;
        if let Some(entry) = pace.get_mut(&queued.service) {
            entry.1 = now_ms.max(1);
        }
        queued.in_flight = true;
        queued.attempts += 1;
        Some((*mac, queued.op, queued.service.clone()))
    }

    /// When (ms) something may next be due, for the runtime's timer.
    pub fn next_wake(&self) -> Option<u64> {
        self.jobs
            .values()
            .filter(|q| !q.in_flight)
            .map(|q| {
                let paced = self.pace.get(&q.service).map_or(0, |(gap, last)| last + gap);
                q.due_ms.max(paced)
            })
            .min()
    }

    /// Takes the verdict of the call for `mac` made at `service` (`at`: Unix seconds, for the
    /// status). What to store, or `None` when the phone's work was replaced meanwhile.
    pub fn finish(&mut self, mac: &Mac, verdict: Verdict, now_ms: u64, at: u64) -> Option<Settled> {
        let queued = self.jobs.get_mut(mac)?;
        queued.in_flight = false;
        let (op, service) = (queued.op, queued.service.clone());
        let settled =
            match (op, verdict) {
                (RedirectOp::Register, Verdict::Done { pin }) => Settled::Status(RedirectStatus::new(
                    RedirectState::Registered,
                    "registered",
                    &service,
                    at,
                    pin,
                )),
                (RedirectOp::Register, Verdict::OwnedElsewhere(detail)) => Settled::Status(
                    RedirectStatus::new(RedirectState::OwnedElsewhere, &detail, &service, at, None),
                ),
                (RedirectOp::Register, Verdict::Refused(detail)) => Settled::Status(RedirectStatus::new(
                    RedirectState::Failed,
                    &detail,
                    &service,
                    at,
                    None,
                )),
                (RedirectOp::Deregister, Verdict::Done { .. }) => Settled::Deregistered {
                    detail: "deregistered".into(),
                },
                (RedirectOp::Deregister, Verdict::OwnedElsewhere(detail) | Verdict::Refused(detail)) => {
                    Settled::Deregistered { detail }
                }
                (_, Verdict::Retry(detail)) => {
                    let policy = self.policy;
                    let delay = queued
                        .backoff
                        .get_or_insert_with(|| {
                            crate::sysclient_session::Backoff {
                                min: policy.min,
                                max: policy.max,
                            }
                            .delays()
                        })
                        .next()
                        .unwrap_or(policy.max);
                    queued.due_ms = now_ms + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX / 2);
                    let detail = format!("{detail} (try {} failed; trying again)", queued.attempts);
                    let settled = match op {
                        RedirectOp::Register => Settled::Status(RedirectStatus::new(
                            RedirectState::Failed,
                            &detail,
                            &service,
                            at,
                            None,
                        )),
                        RedirectOp::Deregister => Settled::DeregisterRetry { detail },
                    };
                    if let Some((op, service)) = queued.then.take() {
                        self.jobs.remove(mac);
                        self.push(*mac, op, &service, now_ms);
                        return None;
                    }
                    return Some(settled);
                }
            };
        let then = queued.then.take();
        self.jobs.remove(mac);
        if let Some((op, service)) = then {
            self.push(*mac, op, &service, now_ms);
            return None;
        }
        Some(settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        format!("0015650000{n:02x}").parse().expect("mac")
    }

    #[test]
    fn a_registration_runs_once_and_settles_registered() {
        let mut queue = RedirectQueue::new(RetryPolicy::default());
        queue.push(mac(1), RedirectOp::Register, "yealink", 0);
        let (m, op, service) = queue.take_due(0).expect("due");
        assert_eq!(
            (m, op, service.as_str()),
            (mac(1), RedirectOp::Register, "yealink")
        );
        assert!(queue.take_due(0).is_none(), "in flight: not twice");
        let settled = queue.finish(
            &mac(1),
            Verdict::Done {
                pin: Some("1234".into()),
            },
            10,
            7,
        );
        let Some(Settled::Status(status)) = settled else {
            panic!("{settled:?}");
        };
        assert_eq!(status.state, RedirectState::Registered);
        assert_eq!(status.pin.as_deref(), Some("1234"));
        assert!(queue.is_empty());
    }

    #[test]
    fn a_failure_is_retried_later_and_later_up_to_the_cap() {
        let policy = RetryPolicy {
            min: Duration::from_secs(1),
            max: Duration::from_secs(8),
        };
        let mut queue = RedirectQueue::new(policy);
        queue.push(mac(1), RedirectOp::Register, "snom", 0);
        let mut now = 0;
        let mut delays = Vec::new();
        for _ in 0..6 {
            queue.take_due(now).expect("due");
            let settled = queue.finish(&mac(1), Verdict::Retry("HTTP 503".into()), now, 0);
            assert!(
                matches!(&settled, Some(Settled::Status(s)) if s.state == RedirectState::Failed && s.detail.contains("HTTP 503")),
                "{settled:?}"
            );
            let wake = queue.next_wake().expect("queued");
            assert!(queue.take_due(wake - 1).is_none(), "not before its time");
            delays.push(wake - now);
            now = wake;
        }
        assert!(
            delays[0] >= 1000 && delays.iter().all(|d| *d <= 16_000),
            "{delays:?}"
        );
        assert!(delays[4] >= 8000, "grows to the cap: {delays:?}");
    }

    #[test]
    fn owned_elsewhere_and_refusals_settle_without_retry() {
        let mut queue = RedirectQueue::new(RetryPolicy::default());
        queue.push(mac(1), RedirectOp::Register, "yealink", 0);
        queue.take_due(0);
        let settled = queue.finish(
            &mac(1),
            Verdict::OwnedElsewhere("device belongs to another user".into()),
            0,
            0,
        );
        assert!(
            matches!(settled, Some(Settled::Status(s)) if s.state == RedirectState::OwnedElsewhere && s.detail == "device belongs to another user")
        );
        assert!(queue.is_empty());
        queue.push(mac(2), RedirectOp::Deregister, "yealink", 0);
        queue.take_due(0);
        assert!(matches!(
            queue.finish(&mac(2), Verdict::OwnedElsewhere("not yours".into()), 0, 0),
            Some(Settled::Deregistered { .. })
        ));
    }

    #[test]
    fn the_latest_wish_wins_even_while_a_call_is_under_way() {
        let mut queue = RedirectQueue::new(RetryPolicy::default());
        queue.push(mac(1), RedirectOp::Register, "yealink", 0);
        queue.push(mac(1), RedirectOp::Deregister, "yealink", 0);
        assert_eq!(queue.pending(&mac(1)), Some(RedirectOp::Deregister));
        assert_eq!(queue.len(), 1);
        let (_, op, _) = queue.take_due(0).expect("due");
        assert_eq!(op, RedirectOp::Deregister);
        // Re-provisioned while the deregistration runs: registered next, whatever it said.
        queue.push(mac(1), RedirectOp::Register, "yealink", 0);
        assert_eq!(queue.finish(&mac(1), Verdict::Done { pin: None }, 0, 0), None);
        let (_, op, _) = queue.take_due(0).expect("the registration");
        assert_eq!(op, RedirectOp::Register);
    }

    #[test]
    fn each_service_gets_its_pace() {
        let mut queue = RedirectQueue::new(RetryPolicy::default());
        queue.pace("yealink", 2);
        for n in 1..=3 {
            queue.push(mac(n), RedirectOp::Register, "yealink", 0);
        }
        queue.push(mac(9), RedirectOp::Register, "fanvil", 0);
        let first = queue.take_due(100).expect("first");
        assert_eq!(first.2, "yealink");
        let other = queue.take_due(100).expect("another service is not held back");
        assert_eq!(other.2, "fanvil");
        assert!(queue.take_due(599).is_none(), "2 a second: 500 ms apart");
        assert_eq!(queue.next_wake(), Some(600));
        assert!(queue.take_due(600).is_some());
    }
}
