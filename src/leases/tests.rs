//! The lease decisions the end-to-end instance tests (tests/instances.rs) rely on, without a
//! database or a clock: renewal cadence, give-up, claim budget, hand-over, claim backoff.

use std::time::{Duration, Instant};

use super::*;

const LEASE: Duration = Duration::from_secs(30);

fn mac(n: u8) -> Mac {
    Mac::from_bytes([0, 0x15, 0x65, 0, 0, n])
}

fn book(now: Instant) -> LeaseBook {
    LeaseBook::new(LEASE, 500, now)
}

#[test]
fn lease_renewal_runs_every_third_of_a_lease_one_at_a_time() {
    let t0 = Instant::now();
    let mut book = book(t0);
    assert_eq!(book.renew_every(), LEASE / 3);
    assert_eq!(book.renew_due(t0), Some(LeaseAction::Renew { claim: 5_000 }));
    assert_eq!(book.renew_due(t0 + LEASE / 3), None, "one renewal at a time");
    book.renewal_failed();
    assert!(
        book.renew_due(t0 + LEASE / 3).is_some(),
        "a failed one lets the next run"
    );
    assert!(book.renewed(&[], &|_| true, &[], &[]).is_empty());
    assert!(book.renew_due(t0 + LEASE * 2 / 3).is_some());
}

#[test]
fn lease_claim_budget_is_what_the_connect_gate_links_before_the_next_renewal() {
    assert_eq!(
        claim_budget(Duration::from_secs(30), 500),
        5_000,
        "500/s for 10 s"
    );
    assert_eq!(claim_budget(Duration::from_secs(3), 500), 500, "500/s for 1 s");
    assert_eq!(claim_budget(Duration::from_secs(3), 10), 100, "at least 100");
    let mut book = LeaseBook::new(Duration::from_secs(3), 500, Instant::now());
    assert_eq!(
        book.renew_due(Instant::now()),
        Some(LeaseAction::Renew { claim: 500 })
    );
}

#[test]
fn lease_links_close_after_two_thirds_of_a_lease_unrenewed_checked_every_twelfth() {
    let t0 = Instant::now();
    let mut book = book(t0);
    assert_eq!(book.check_every(), LEASE / 12);
    assert_eq!(
        LeaseBook::new(Duration::from_secs(1), 500, t0).check_every(),
        Duration::from_millis(250),
        "never more often than 4 times a second"
    );
    assert_eq!(book.check(t0 + LEASE / 2), None, "renewed recently enough");
    // Renewals that fail do not count.
    assert!(book.renew_due(t0 + LEASE / 3).is_some());
    book.renewal_failed();
    let late = t0 + LEASE * 2 / 3;
    assert_eq!(
        book.check(late),
        Some(LeaseAction::GiveUp {
            unrenewed_for: LEASE * 2 / 3
        })
    );
    assert_eq!(book.check(late + LEASE / 12), None, "given up once");
    // The next successful renewal allows links again and counts from its start.
    let start = late + LEASE / 12;
    assert!(book.renew_due(start).is_some());
    assert_eq!(
        book.renewed(&[], &|_| true, &[], &[]),
        vec![LeaseAction::AllowLinks]
    );
    assert_eq!(book.check(start + LEASE / 2), None);
    assert!(
        book.check(start + LEASE * 2 / 3).is_some(),
        "and gives up again when stale"
    );
}

#[test]
fn lease_a_renewal_ends_what_is_not_held_and_links_what_was_gained() {
    let t0 = Instant::now();
    let mut book = book(t0);
    let held = [mac(1), mac(4), mac(5), mac(6)];
    let holds = |m: &Mac| held.contains(m);
    // 6 is being handed over: neither retired by the renewal nor linked again.
    assert!(book.asked(mac(6), "other", "me", true));
    assert!(book.renew_due(t0).is_some());
    let actions = book.renewed(
        &[mac(1), mac(2), mac(3), mac(6)],
        &holds,
        &[mac(3)],
        &[mac(1), mac(4), mac(5), mac(6), mac(7)],
    );
    assert_eq!(
        actions,
        vec![
            LeaseAction::Retire(mac(2)),
            LeaseAction::Retire(mac(3)),
            LeaseAction::Link(mac(4)),
            LeaseAction::Link(mac(5)),
        ],
        "2 is running unheld, 3 was lost; 1 runs already, 6 is leaving, 7 is not held"
    );
}

#[test]
fn lease_hand_over_happens_once_and_never_to_itself() {
    let mut book = book(Instant::now());
    let p = mac(1);
    assert!(!book.asked(p, "me", "me", true), "not to itself");
    assert!(!book.asked(p, "other", "me", false), "not what it does not hold");
    assert!(book.asked(p, "other", "me", true));
    assert!(
        !book.asked(p, "third", "me", true),
        "a second ask meanwhile is ignored"
    );
    assert!(!book.holds(&p, true), "a phone being handed over is not held");
    assert_eq!(book.route(&p, true), Route::Claim(LEASE + Duration::from_secs(2)));
    assert!(!book.may_restart(&p, true));
    book.handed(&p);
    assert!(book.holds(&p, true));
    assert_eq!(book.route(&p, true), Route::Now);
}

#[test]
fn lease_routes_provisionings_and_deletes() {
    let book = book(Instant::now());
    let p = mac(1);
    assert_eq!(book.route(&p, true), Route::Now);
    assert_eq!(
        book.route(&p, false),
        Route::Claim(LEASE + Duration::from_secs(2))
    );
    assert_eq!(book.claim_before_delete(&p, true), None);
    assert_eq!(
        book.claim_before_delete(&p, false),
        Some(LEASE + Duration::from_secs(2))
    );
    assert_eq!(book.provision_after_claim(&p, true), Ok(()));
    assert_eq!(book.provision_after_claim(&p, false), Err(ClaimRefused::MovedOn));
    assert!(book.release_unstored(&p, true));
    assert!(!book.release_unstored(&p, false));
}

#[test]
fn lease_shutdown_takes_nothing_new() {
    let t0 = Instant::now();
    let mut book = book(t0);
    assert!(book.renew_due(t0).is_some());
    book.stop();
    assert!(book.stopping());
    assert!(
        book.renewed(&[mac(1)], &|_| false, &[mac(1)], &[mac(2)])
            .is_empty(),
        "a late renewal changes nothing"
    );
    assert_eq!(book.renew_due(t0 + LEASE), None);
    assert_eq!(book.check(t0 + LEASE), None, "no give-up during a shutdown");
    let p = mac(1);
    assert_eq!(book.route(&p, true), Route::Busy);
    assert_eq!(
        book.provision_after_claim(&p, true),
        Err(ClaimRefused::ShuttingDown)
    );
    assert_eq!(book.claim_before_delete(&p, false), None);
    assert!(!book.may_restart(&p, true));
    assert!(!book.release_unstored(&p, true));
    assert!(!book.asked(p, "other", "me", true));
}

#[test]
fn lease_claim_backs_off_from_100_ms_doubling_to_1_s_and_asks_every_2_s() {
    let t0 = Instant::now();
    let wait = LEASE + Duration::from_secs(2);
    let mut claim = ClaimWait::new(t0, wait);
    let owner = || Claim::HeldBy("other".into());
    let mut now = t0;
    let mut steps = Vec::new();
    for _ in 0..7 {
        let step = claim.after(now, owner());
        if let ClaimStep::Wait { retry, .. } = &step {
            now += *retry;
        }
        steps.push(step);
    }
    let ms = Duration::from_millis;
    assert_eq!(
        steps,
        vec![
            ClaimStep::Wait {
                ask: true,
                retry: ms(100)
            },
            ClaimStep::Wait {
                ask: false,
                retry: ms(200)
            },
            ClaimStep::Wait {
                ask: false,
                retry: ms(400)
            },
            ClaimStep::Wait {
                ask: false,
                retry: ms(800)
            },
            ClaimStep::Wait {
                ask: false,
                retry: ms(1_000)
            },
            ClaimStep::Wait {
                ask: true,
                retry: ms(1_000)
            },
            ClaimStep::Wait {
                ask: false,
                retry: ms(1_000)
            },
        ],
        "asked at once, again once more than 2 s passed (at 2.5 s)"
    );
    assert_eq!(claim.after(now, Claim::Held), ClaimStep::Held);
    assert_eq!(
        claim.after(t0 + wait + ms(1), owner()),
        ClaimStep::TimedOut {
            owner: "other".into()
        },
        "held past the wait"
    );
}

#[test]
fn a_departed_owner_loses_its_leases_only_when_seen_so_on_two_looks() {
    let t0 = Instant::now();
    let mut book = book(t0);
    assert_eq!(book.look_every(), Duration::from_secs(1), "30 s / 30");
    assert_eq!(
        LeaseBook::new(Duration::from_secs(3), 500, t0).look_every(),
        Duration::from_millis(250),
        "never faster than 250 ms"
    );
    let gone = || vec!["b".to_string()];
    let step = book.look_every();
    assert!(
        book.departed(t0, &gone()).is_empty(),
        "one sighting is not enough"
    );
    assert_eq!(book.departed(t0 + step, &gone()), gone(), "the second one is");
    // Back in between (a reconnect): the count starts again.
    assert!(book.departed(t0 + step * 2, &["c".to_string()]).is_empty());
    assert!(book.departed(t0 + step * 3, &[]).is_empty(), "c came back");
    assert!(book.departed(t0 + step * 4, &["c".to_string()]).is_empty());
    assert!(
        book.departed(t0 + step * 4 + step / 4, &["c".to_string()])
            .is_empty(),
        "two looks too close together are one"
    );
    assert_eq!(
        book.departed(t0 + step * 5, &["c".to_string()]),
        vec!["c".to_string()]
    );
    book.stop();
    assert!(book.departed(t0 + step * 6, &gone()).is_empty());
    assert!(
        book.departed(t0 + step * 7, &gone()).is_empty(),
        "nothing at shutdown"
    );
}
