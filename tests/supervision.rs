//! Supervision and lifecycle, driven in-process (the actor system of the binary, started by the
//! test) so a test can inject a fault into one phone's job and delete a phone.

use std::time::Duration;

use innoprov::{Config, Mac};
use innoprov_actors::phones::phone_job::{InjectFault, InjectPause, InjectSocketFault};
use innoprov_actors::phones::phone_state::Phase;
use innoprov_actors::phones::registry::{DeletePhone, JobOf, PhoneStatusOf};
use innoprov_actors::service::RunningService;
use innoprov_actors::sim::devices::{DevicesEvent, DevicesSim};
use innoprov_actors::sim::users::UsersSim;
use innoprov_actors::store::persistence::GetPhone;

use crate::common::{APP_PATH, PASSWORD, config_text, devices_config, phone};

async fn start(sim: &DevicesSim, dir: &std::path::Path) -> RunningService {
    start_with(sim, dir, "").await
}

/// [`start`] with `extra` configuration.
async fn start_with(sim: &DevicesSim, dir: &std::path::Path, extra: &str) -> RunningService {
    let text = config_text(dir, &format!("{}{extra}", devices_config(sim)));
    let config = Config::parse(&text, "test").expect("config");
    RunningService::start(&config).await.expect("service starts")
}

async fn wait_for(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Whether, within `limit`, `victim` answered Devices' challenge with its stored password and
/// holds exactly one link again.
async fn relinked_once(sim: &DevicesSim, victim: Mac, limit: Duration) -> bool {
    let mac = victim.to_string();
    sim.wait_until(limit, |s| {
        s.events().contains(&DevicesEvent::ChallengeAnswered {
            mac: mac.clone(),
            ok: true,
        }) && s.connected_macs().iter().filter(|m| **m == mac).count() == 1
    })
    .await
}

/// A service with two configured phones `a` and `b` (numbers of `phone`); their MACs and the
/// job of `a`, with the simulator's events cleared.
async fn two_phones(
    sim: &DevicesSim,
    dir: &std::path::Path,
    a: u32,
    b: u32,
) -> (
    RunningService,
    Mac,
    Mac,
    actix::Addr<innoprov_actors::phones::phone_job::PhoneJob>,
) {
    let service = start(sim, dir).await;
    let url = format!("ws://{}{APP_PATH}", service.addr);
    let mut conn = UsersSim::new("innoprov", PASSWORD).connect(&url).await.unwrap();
    for n in [a, b] {
        assert_eq!(conn.provision(&phone(sim, n)).await.unwrap()["result"], "ok");
    }
    let victim: Mac = format!("001565{a:06x}").parse().unwrap();
    let bystander: Mac = format!("001565{b:06x}").parse().unwrap();
    let job = service.registry.send(JobOf(victim)).await.unwrap().expect("job");
    sim.clear_events();
    (service, victim, bystander, job)
}

#[actix_web::test]
async fn a_panicking_job_is_restarted_and_its_phone_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let sim = DevicesSim::start().await;
    let (service, victim, bystander, job) = two_phones(&sim, dir.path(), 40, 41).await;
    job.do_send(InjectFault);

    // The registry notices the dead job, starts a new one, which links again with a digest.
    let recovered = wait_for(Duration::from_secs(10), async || {
        let new_job = service.registry.send(JobOf(victim)).await.unwrap();
        let status = service.registry.send(PhoneStatusOf(victim)).await.unwrap();
        new_job.is_some_and(|j| j != job) && status.is_some_and(|s| s.phase == Phase::Configured)
    })
    .await;
    assert!(recovered, "{:?}", sim.events());
    assert!(
        relinked_once(&sim, victim, Duration::from_secs(5)).await,
        "the old link is gone and the new one answered the challenge: {:?}",
        sim.events()
    );
    // The other phone was never touched.
    let status = service
        .registry
        .send(PhoneStatusOf(bystander))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((status.phase, status.config_version), (Phase::Configured, 1));
    assert!(
        !sim.events()
            .iter()
            .any(|e| format!("{e:?}").contains(&bystander.to_string()))
    );
    service.shutdown().await.unwrap();
}

#[actix_web::test]
async fn a_panicking_socket_task_is_restarted_by_its_job_which_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let sim = DevicesSim::start().await;
    let (service, victim, bystander, job) = two_phones(&sim, dir.path(), 42, 43).await;
    assert!(
        job.send(InjectSocketFault).await.unwrap(),
        "the fault reached the socket task"
    );

    // The task dies; its job hears it (the guard reports while unwinding), reconnects, and
    // answers Devices' challenge with the stored password. The job itself is not restarted.
    assert!(
        relinked_once(&sim, victim, Duration::from_secs(10)).await,
        "{:?}",
        sim.events()
    );
    let recovered = wait_for(Duration::from_secs(10), async || {
        service
            .registry
            .send(PhoneStatusOf(victim))
            .await
            .unwrap()
            .is_some_and(|s| s.phase == Phase::Configured && s.link_down_since.is_none())
    })
    .await;
    assert!(recovered);
    assert_eq!(
        service.registry.send(JobOf(victim)).await.unwrap(),
        Some(job),
        "the same job drives the phone"
    );
    let status = service
        .registry
        .send(PhoneStatusOf(victim))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.config_version, 1,
        "the same configuration is no new version"
    );
    assert!(
        !sim.events()
            .iter()
            .any(|e| format!("{e:?}").contains(&bystander.to_string())),
        "the other phone's link was not touched"
    );
    service.shutdown().await.unwrap();
}

#[actix_web::test]
async fn deleting_a_phone_closes_its_link_and_removes_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let sim = DevicesSim::start().await;
    let service = start(&sim, dir.path()).await;
    let url = format!("ws://{}{APP_PATH}", service.addr);
    let mut conn = UsersSim::new("innoprov", PASSWORD).connect(&url).await.unwrap();
    assert_eq!(conn.provision(&phone(&sim, 50)).await.unwrap()["result"], "ok");
    let mac: Mac = "001565000032".parse().unwrap();
    assert_eq!(sim.connected_macs(), [mac.to_string()]);

    assert!(
        service.registry.send(DeletePhone(mac)).await.unwrap().unwrap(),
        "it existed"
    );
    assert!(
        sim.wait_until(Duration::from_secs(5), |s| s.connected_macs().is_empty())
            .await,
        "link closed"
    );
    assert_eq!(
        service.persistence.send(GetPhone(mac)).await.unwrap().unwrap(),
        None,
        "data removed"
    );
    assert!(service.registry.send(JobOf(mac)).await.unwrap().is_none());
    assert!(
        !service.registry.send(DeletePhone(mac)).await.unwrap().unwrap(),
        "second delete finds nothing"
    );
    // A late configuration from Devices cannot bring it back: the link is gone, and a stale
    // job's write would be refused by generation.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        service.persistence.send(GetPhone(mac)).await.unwrap().unwrap(),
        None
    );
    service.shutdown().await.unwrap();
}

#[actix_web::test]
async fn an_admin_pin_and_reopened_window_change_what_a_phone_gets() {
    use innoprov::provisioning::{Vendors, admin};
    use innoprov_actors::sim::phone::{Auth, PhoneSim};
    let dir = tempfile::tempdir().unwrap();
    let sim = DevicesSim::start().await;
    let service = start(&sim, dir.path()).await;
    let url = format!("ws://{}{APP_PATH}", service.addr);
    let mut conn = UsersSim::new("innoprov", PASSWORD).connect(&url).await.unwrap();
    assert_eq!(conn.provision(&phone(&sim, 60)).await.unwrap()["result"], "ok");
    let mac: Mac = "00156500003c".parse().unwrap();
    let path = "/example.com/innoprov/prov/00156500003c.cfg";
    let fanvil = PhoneSim {
        addr: service.addr,
        user_agent: "Fanvil X4U 2.4.12".into(),
    };
    // A Yealink OUI asked for by a Fanvil: refused, until an admin pins the phone to Fanvil.
    assert_eq!(fanvil.fetch(path, &Auth::None, None).await.unwrap().status, 404);
    admin::pin_vendor(service.store.as_ref(), &Vendors::builtin(), &mac, Some("fanvil")).unwrap();
    let first = fanvil.fetch(path, &Auth::None, None).await.unwrap();
    assert_eq!(first.status, 200);
    assert!(first.body.starts_with("<<VOIP CONFIG FILE>>"), "{}", first.body);
    let field = |key: &str| {
        first.body.lines().find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_string())
        })
    };
    let creds = Auth::Basic(
        field("Default Username").unwrap(),
        field("Default Password").unwrap(),
    );
    assert_eq!(fanvil.fetch(path, &creds, None).await.unwrap().status, 200);
    assert_eq!(
        fanvil.fetch(path, &Auth::None, None).await.unwrap().status,
        401,
        "enrolled"
    );
    // After a factory reset the phone has no credentials: an admin reopens its window.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    admin::reopen_enrolment(service.store.as_ref(), &mac, now).unwrap();
    assert_eq!(
        fanvil.fetch(path, &Auth::None, None).await.unwrap().status,
        200,
        "reopened"
    );
    let audit = service.audit.recent(&mac, 10).unwrap();
    let statuses: Vec<u16> = audit
        .iter()
        .filter(|e| e.state.is_none())
        .map(|e| e.status)
        .collect();
    assert_eq!(
        statuses,
        [200, 200, 401, 200],
        "the refused 404 happened before the pin: no vendor to audit it under"
    );
    service.shutdown().await.unwrap();
}

#[actix_web::test]
async fn a_failed_singleton_ends_the_service_with_a_fatal_outcome() {
    use innoprov_actors::ops::fatal::InjectFault as InjectSingletonFault;
    use innoprov_actors::service::{RunFailure, ShutdownSignals};
    let sim = DevicesSim::start().await;
    // Zero touch on, so that the redirect worker runs (its service is never reached here).
    let redirect = "[provisioning]\npublic_url = \"http://127.0.0.1:9/example.com/innoprov/prov/\"\n[redirect.yealink]\nurl = \"http://127.0.0.1:9/xmlrpc\"\nuser = \"u\"\npassword = \"p\"\n";
    for victim in [
        "persistence",
        "registry",
        "directory",
        "notifier",
        "redirect worker",
        "audit writer",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let service = start_with(&sim, dir.path(), redirect).await;
        assert_eq!(service.fatal.reported(), None);
        match victim {
            "persistence" => service.persistence.do_send(InjectSingletonFault),
            "registry" => service.registry.do_send(InjectSingletonFault),
            "directory" => service.directory.do_send(InjectSingletonFault),
            "notifier" => service
                .notifier
                .as_ref()
                .expect("notify is on by default")
                .do_send(InjectSingletonFault),
            "redirect worker" => service
                .redirect
                .as_ref()
                .expect("a redirect service is configured")
                .do_send(InjectSingletonFault),
            _ => service.audit.inject_fault(),
        }
        // The panicking actor's `stopped` runs (actix drops the dead context) and reports.
        let reported = wait_for(Duration::from_secs(5), async || {
            service.fatal.reported().is_some()
        })
        .await;
        assert!(reported, "{victim}: nothing reported");
        let reason = service.fatal.reported().unwrap_or_default();
        let expected = match victim {
            "persistence" => "the persistence actor ended",
            "registry" => "the phone registry ended",
            "directory" => "the service directory ended",
            "notifier" => "the notifier ended",
            "redirect worker" => "the redirect worker ended",
            _ => "the audit writer panicked",
        };
        assert_eq!(reason, expected);
        // The serving loop ends with the fatal outcome (the binary exits 1 on it), not Ok.
        let signals = ShutdownSignals::install().unwrap();
        match service.run_until_signal(signals).await {
            Err(RunFailure::Fatal(r)) => assert_eq!(r, expected),
            other => panic!("{victim}: {other:?}"),
        }
    }
}

#[actix_web::test]
async fn a_busy_job_stops_its_socket_task_reading_so_a_flood_from_devices_waits_in_tcp() {
    // devices_socket's promise: the task hands each frame to the job and waits for it to be
    // taken, so frames Devices sends faster than the job takes them stay in the connection
    // (TCP pushes back on Devices) instead of piling up in the service.
    let sim = DevicesSim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (service, victim, _, job) = two_phones(&sim, dir.path(), 0x70, 0x71).await;
    let before = service
        .persistence
        .send(GetPhone(victim))
        .await
        .unwrap()
        .unwrap()
        .expect("stored")
        .config_version;
    job.send(InjectPause(Duration::from_secs(3))).await.unwrap();
    // 300 distinct updates of 128 KiB each: 38 MiB, several times what loopback's socket
    // buffers hold (at most 4 MiB to send and 6 MiB to receive by Linux's defaults).
    let frames = 300;
    let pad = "x".repeat(128 * 1024);
    let mac = victim.to_string();
    for n in 0..frames {
        let update = format!(
            r#"{{"id":3,"domainId":1,"type":"PHONE","categories":[],"gk1":"pbx.example.com","n":{n},"pad":"{pad}"}}"#
        );
        assert_eq!(sim.push_update(&mac, &update), 1);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let written = sim.pushed_frames_written(&mac);
    assert!(
        written < frames / 2,
        "{written} of {frames} frames went out while the job took none: the service read ahead of its job"
    );
    // Once the job takes messages again, every update arrives, in order.
    let all_stored = wait_for(Duration::from_secs(60), async || {
        let record = service.persistence.send(GetPhone(victim)).await;
        record
            .ok()
            .and_then(Result::ok)
            .flatten()
            .is_some_and(|r| r.config_version == before + frames as u64)
    })
    .await;
    assert!(all_stored, "not every update was stored after the pause");
    assert_eq!(sim.pushed_frames_written(&mac), frames);
    service.shutdown().await.unwrap();
}
