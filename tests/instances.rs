//! Several instances of the release binary on one PostgreSQL database (a real server the test
//! starts) and one Devices simulator: each phone linked by exactly one instance (the simulator
//! counts a phone identifying on a second open link), downloads and updates served by any
//! instance, ownership moving with a ProvisioningPhone, and the phones of a SIGKILLed or
//! SIGTERMed instance taken over by the others.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use innoprov::store::Leases;
use innoprov_actors::sim::devices::{DevicesEvent, DevicesSim, admin_frame, example_configs};
use innoprov_actors::sim::phone::{Auth, PhoneSim};
use innoprov_actors::sim::postgres::TestPostgres;
use innoprov_actors::sim::users::UsersSim;
use innoprov_actors::store::postgres_store::{PostgresLeases, PostgresSettings, PostgresStore};

use crate::admin::call;
use crate::common::{PASSWORD, Service, devices_config, phone};
use crate::downloads::{credentials, key_values};

const PROV: &str = "/example.com/innoprov/prov";
const TOKEN: &str = "instances-admin-token-9b2e7d4c1a6f";

/// One instance in its own directory under `root`, sharing the database and the seal key.
fn instance(root: &Path, name: &str, url: &str, sim: &DevicesSim, lease_secs: u32) -> Service {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("instance dir");
    let extra = format!(
        "backend = \"postgres\"\nurl = \"{url}\"\nseal_key_file = \"{}\"\nlease_secs = {lease_secs}\n{}[admin]\ntoken = \"{TOKEN}\"\n",
        root.join("seal.key").display(),
        devices_config(sim)
    );
    Service::start_in(&dir, &extra)
}

/// A PostgreSQL server with database `db`, a Devices simulator and a directory for instances.
pub(crate) async fn cluster(db: &str) -> (TestPostgres, String, DevicesSim, tempfile::TempDir) {
    let pg = TestPostgres::start().expect("postgres");
    let url = pg.create_database(db).expect("database");
    (
        pg,
        url,
        DevicesSim::start().await,
        tempfile::tempdir().expect("tempdir"),
    )
}

/// The database as the instances see it, opened without leases (a reader).
fn check_store(url: &str, root: &Path) -> PostgresStore {
    let settings = PostgresSettings {
        url: url.to_string(),
        password: None,
        pool_size: 1,
        lease: None,
    };
    let sealer = innoprov::Sealer::load_or_create(&root.join("seal.key")).expect("key");
    PostgresStore::open(&settings, &sealer).expect("open")
}

/// SIGTERM, and a clean exit; the logs.
fn stop(service: Service) -> String {
    let (status, logs) = service.terminate();
    assert!(status.success(), "{logs}");
    logs
}

/// The simulator never saw a phone identify on a second open link.
fn assert_one_link_each(sim: &DevicesSim) {
    assert_eq!(
        sim.two_links(),
        Vec::<String>::new(),
        "never two links for one phone"
    );
}

/// Waits (10 s at most) until every phone in `macs` has a stored configuration item whose
/// text contains `needle`.
async fn all_hold(url: &str, root: &Path, macs: &[String], needle: &str) -> bool {
    let check = check_store(url, root);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = macs.iter().all(|m| {
            let mac: innoprov::Mac = m.parse().expect("mac");
            innoprov::Store::get_phone(&check, &mac)
                .ok()
                .flatten()
                .is_some_and(|r| r.configs.iter().any(|c| c.body.text().contains(needle)))
        });
        if held || Instant::now() > deadline {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Devices changes every phone's registrar to `registrar` and pushes the update on its links.
fn change_registrar(sim: &DevicesSim, macs: &[String], registrar: &str) {
    let mut configs = example_configs();
    configs[0] = configs[0].replace("pbx.example.com", registrar);
    sim.set_configs(configs);
    let update = format!(
        r#"{{"id":3,"domainId":1,"type":"PHONE","categories":[],"gk1":"{registrar}","coder":"G722","frameSize":20}}"#
    );
    for m in macs {
        sim.push_update(m, &update);
    }
}

fn mac(n: u32) -> String {
    format!("001565{n:06x}")
}

/// Waits until every phone in `macs` has an open link at Devices.
async fn all_linked(sim: &DevicesSim, macs: &[String], limit: Duration) -> bool {
    sim.wait_until(limit, |s| {
        let linked: HashSet<String> = s.connected_macs().into_iter().collect();
        macs.iter().all(|m| linked.contains(m))
    })
    .await
}

/// The simulator's own check: a phone identifying on a second open link is recorded.
#[tokio::test]
async fn the_devices_simulator_records_a_phone_on_two_open_links() {
    let sim = DevicesSim::start().await;
    let identify = admin_frame(
        0,
        &format!(
            r#"{{"mt":"Identify","id":"001565abcdef","product":"p","version":"1","provisioningCode":"{}"}}"#,
            sim.issue_code()
        ),
    );
    let (mut first, _) = tokio_tungstenite::connect_async(sim.sysclient_url())
        .await
        .expect("first");
    first.send(identify.clone().into()).await.expect("send");
    assert!(
        sim.wait_until(Duration::from_secs(5), |s| s.connected_macs().len() == 1)
            .await
    );
    assert!(sim.two_links().is_empty(), "one link is fine");
    let (mut second, _) = tokio_tungstenite::connect_async(sim.sysclient_url())
        .await
        .expect("second");
    second.send(identify.into()).await.expect("send");
    assert!(
        sim.wait_until(Duration::from_secs(5), |s| !s.two_links().is_empty())
            .await
    );
    assert_eq!(sim.two_links(), vec!["001565abcdef".to_string()]);
    let _ = first.close(None).await;
    let _ = second.next().await;
}

#[tokio::test]
async fn two_instances_share_the_phones_one_link_each_and_any_serves_downloads_and_updates() {
    let (_pg, url, sim, root) = cluster("two").await;
    let a = instance(root.path(), "a", &url, &sim, 5);
    let b = instance(root.path(), "b", &url, &sim, 5);
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut to_a = users.connect(&a.ws_url()).await.expect("login a");
    let mut to_b = users.connect(&b.ws_url()).await.expect("login b");
    for n in 0..6 {
        let conn = if n % 2 == 0 { &mut to_a } else { &mut to_b };
        let reply = conn.provision(&phone(&sim, n)).await.expect("reply");
        assert_eq!(reply["result"], "ok", "{reply}");
    }
    let macs: Vec<String> = (0..6).map(mac).collect();
    assert!(all_linked(&sim, &macs, Duration::from_secs(10)).await);
    let mut linked = sim.connected_macs();
    linked.sort();
    assert_eq!(linked, macs, "one link per phone");
    // Each instance's admin list: its own phones live, the other's as held elsewhere.
    let (status, list) = call(
        &b,
        "GET",
        "/example.com/innoprov/api/v1/phones",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let states: Vec<(String, String)> = list["phones"]
        .as_array()
        .expect("phones")
        .iter()
        .map(|p| {
            (
                p["state"].as_str().unwrap_or("").into(),
                p["link"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = (0..6)
        .map(|n| match n % 2 {
            0 => ("elsewhere".into(), "elsewhere".into()),
            _ => ("configured".into(), "up".into()),
        })
        .collect();
    assert_eq!(states, expected, "{list}");

    // Phone 0 was provisioned through a; it fetches its file from b.
    let device = PhoneSim {
        addr: b.addr,
        user_agent: "Yealink SIP-T46U 108.86.0.90".into(),
    };
    let path = format!("{PROV}/{}.cfg", mac(0));
    let first = device.fetch(&path, &Auth::None, None).await.expect("GET");
    assert_eq!(first.status, 200, "{}", first.body);
    let (user, password) = credentials("yealink", &first.body);
    let creds = Auth::Basic(user, password);
    let etag = first.headers["etag"].clone();

    // Devices updates phone 0 on a's link; b's download path serves the new file promptly.
    let update = r#"{"id":3,"domainId":1,"type":"PHONE","categories":[],"gk1":"pbx2.example.com","coder":"OPUS-WB","frameSize":20}"#;
    assert_eq!(sim.push_update(&mac(0), update), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    let changed = loop {
        let r = device.fetch(&path, &creds, Some(&etag)).await.expect("GET");
        if r.status == 200 {
            break r;
        }
        assert_eq!(r.status, 304);
        assert!(Instant::now() < deadline, "b never served a's update");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        key_values(&changed.body, '=')["account.1.sip_server.1.address"],
        "pbx2.example.com"
    );

    // Phone 0 provisioned again, now through b: a hands it over only once Devices has ended
    // its link (slow here), b answers, one link.
    sim.set_slow_close(Duration::from_millis(500));
    let again = phone(&sim, 0);
    let reply = to_b.provision(&again).await.expect("reply");
    assert_eq!(reply["result"], "ok", "{reply}");
    assert!(
        a.wait_for_log(
            &format!("phone {}: handing it over", mac(0)),
            Duration::from_secs(5)
        )
        .await,
        "{}",
        a.logs()
    );
    assert!(all_linked(&sim, &macs, Duration::from_secs(10)).await);
    assert_eq!(sim.connected_macs().len(), 6);
    assert_one_link_each(&sim);
    stop(a);
    stop(b);
}

/// SIGKILL of one of three instances in the middle of provisioning and of an update: every
/// acknowledged phone is linked again by the others before the killed instance's leases run
/// out (its database session ended with the process, and the others saw it), with the
/// configuration Devices holds now, and never on two links.
#[tokio::test]
async fn the_phones_of_a_killed_instance_are_taken_over_by_the_others() {
    let (_pg, url, sim, root) = cluster("three").await;
    let lease = 20;
    let a = instance(root.path(), "a", &url, &sim, lease);
    let b = instance(root.path(), "b", &url, &sim, lease);
    let c = instance(root.path(), "c", &url, &sim, lease);
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut to_a = users.connect(&a.ws_url()).await.expect("login a");
    for n in 0..10 {
        let reply = to_a.provision(&phone(&sim, n)).await.expect("reply");
        assert_eq!(reply["result"], "ok", "{reply}");
    }
    // Mid-provisioning: more phones sent, a few acknowledged.
    let mut acknowledged: Vec<String> = (0..10).map(mac).collect();
    for n in 10..30 {
        let text = to_a
            .provisioning_text(&phone(&sim, n), Some(&n.to_string()))
            .expect("text");
        to_a.client.send_raw(&text).await.expect("send");
    }
    for _ in 0..3 {
        let reply = to_a
            .client
            .recv_mt("ProvisioningPhoneResult")
            .await
            .expect("result");
        assert_eq!(reply["result"], "ok", "{reply}");
        let src: u32 = reply["src"].as_str().and_then(|s| s.parse().ok()).expect("src");
        acknowledged.push(mac(src));
    }
    // Mid-update: Devices changes every phone's registrar and tells a, which dies at once.
    change_registrar(&sim, &acknowledged, "pbx3.example.com");
    sim.clear_events();
    let killed_at = Instant::now();
    a.kill9();

    // Linked again: each phone answered Devices' challenge on a new link, from b or c.
    let relinked = |s: &DevicesSim| {
        let events = s.events();
        acknowledged.iter().all(|m| {
            events.contains(&DevicesEvent::ChallengeAnswered {
                mac: m.clone(),
                ok: true,
            })
        })
    };
    assert!(
        sim.wait_until(Duration::from_secs(30), relinked).await,
        "events: {:?}",
        sim.events()
    );
    assert!(all_linked(&sim, &acknowledged, Duration::from_secs(5)).await);
    let took = killed_at.elapsed();
    assert!(
        took < Duration::from_secs(u64::from(lease)),
        "taken over in {took:?}, not before a's {lease} s leases ran out"
    );
    assert_one_link_each(&sim);
    let (b_logs, c_logs) = (b.logs(), c.logs());
    assert!(
        b_logs.contains("phones' leases") || c_logs.contains("phones' leases"),
        "{b_logs}\n{c_logs}"
    );
    assert!(
        b_logs.contains("database session ended") || c_logs.contains("database session ended"),
        "{b_logs}\n{c_logs}"
    );
    // Each phone's stored configuration is what Devices holds now.
    assert!(all_hold(&url, root.path(), &acknowledged, "pbx3.example.com").await);
    stop(b);
    stop(c);
}

/// SIGTERM releases the leases after the links closed: the other instance links the phones at
/// once, long before the lease would have expired; a rolling restart back does the same, and
/// an update Devices sends while an instance stops is not lost.
#[tokio::test]
async fn sigterm_hands_the_phones_over_at_once_and_a_rolling_restart_keeps_one_link_each() {
    let (_pg, url, sim, root) = cluster("rolling").await;
    let lease = 60;
    let a = instance(root.path(), "a", &url, &sim, lease);
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut to_a = users.connect(&a.ws_url()).await.expect("login a");
    for n in 0..10 {
        let reply = to_a.provision(&phone(&sim, n)).await.expect("reply");
        assert_eq!(reply["result"], "ok", "{reply}");
    }
    drop(to_a);
    let macs: Vec<String> = (0..10).map(mac).collect();
    let b = instance(root.path(), "b", &url, &sim, lease);
    assert!(b.wait_for_log("store postgres", Duration::from_secs(5)).await);
    // An update from Devices as a stops: none is lost (b gets the whole set on linking).
    change_registrar(&sim, &macs, "pbx4.example.com");
    let stopped_at = Instant::now();
    let logs = stop(a);
    assert!(logs.contains("released 10 leases"), "{logs}");
    assert!(all_linked(&sim, &macs, Duration::from_secs(10)).await);
    assert!(all_hold(&url, root.path(), &macs, "pbx4.example.com").await);
    assert!(
        stopped_at.elapsed() < Duration::from_secs(10),
        "taken over after {:?}, not after the {lease} s lease",
        stopped_at.elapsed()
    );
    // And back: a starts again, b stops.
    let a = instance(root.path(), "a", &url, &sim, lease);
    assert!(a.wait_for_log("store postgres", Duration::from_secs(5)).await);
    change_registrar(&sim, &macs, "pbx5.example.com");
    stop(b);
    assert!(all_linked(&sim, &macs, Duration::from_secs(10)).await);
    assert!(all_hold(&url, root.path(), &macs, "pbx5.example.com").await);
    assert!(
        a.wait_for_log("took 10 phones' leases", Duration::from_secs(5))
            .await,
        "{}",
        a.logs()
    );
    assert_one_link_each(&sim);
    stop(a);
}

/// PostgreSQL restarted while two instances provision: every ProvisioningPhone is answered (ok
/// only when stored), every acknowledged phone is stored and linked once afterwards, and
/// provisioning goes on without restarting either instance.
#[tokio::test]
async fn a_postgres_restart_under_load_loses_no_acknowledged_phone() {
    let (mut pg, url, sim, root) = cluster("restart").await;
    let a = instance(root.path(), "a", &url, &sim, 6);
    let b = instance(root.path(), "b", &url, &sim, 6);
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conns = vec![
        users.connect(&a.ws_url()).await.expect("login a"),
        users.connect(&b.ws_url()).await.expect("login b"),
    ];
    let phones: Vec<_> = (0..40).map(|n| phone(&sim, n)).collect();
    let load = {
        let mut conns = std::mem::take(&mut conns);
        let phones = phones.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for (i, p) in phones.iter().enumerate() {
                let reply = conns[i % 2]
                    .provision(p)
                    .await
                    .expect("every ProvisioningPhone is answered");
                answers.push((p.mac.clone(), reply));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.start_again().expect("start again");
    let answers = tokio::time::timeout(Duration::from_secs(90), load)
        .await
        .expect("load finished")
        .expect("load task");
    let ok: Vec<String> = answers
        .iter()
        .filter(|(_, r)| r["result"] == "ok")
        .map(|(m, _)| m.clone())
        .collect();
    for (mac, reply) in &answers {
        assert!(
            reply["result"] == "ok" || reply["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{mac}: {reply}"
        );
    }
    assert!(ok.len() >= 20, "most went through: {answers:?}");
    let check = check_store(&url, root.path());
    for mac in &ok {
        let record = innoprov::Store::get_phone(&check, &mac.parse().unwrap()).expect("read");
        assert!(
            record.is_some_and(|r| r.configured_at.is_some()),
            "acknowledged phone {mac} is stored"
        );
    }
    assert!(all_linked(&sim, &ok, Duration::from_secs(20)).await);
    assert_one_link_each(&sim);
    // And it goes on.
    let mut again = users.connect(&b.ws_url()).await.expect("login b");
    let reply = again.provision(&phone(&sim, 100)).await.expect("reply");
    assert_eq!(reply["result"], "ok", "{reply}");
    drop(check);
    stop(a);
    stop(b);
}

/// A phone provisioned again on the same instance: the new job links only once Devices has
/// seen the old job's link close (slow here), so Devices never has two links for it.
#[tokio::test]
async fn a_reprovisioned_phone_is_never_on_two_links_even_on_one_instance() {
    let (service, _dir, sim) = crate::common::start_with_devices("").await;
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conn = users.connect(&service.ws_url()).await.expect("login");
    assert_eq!(
        conn.provision(&phone(&sim, 7)).await.expect("reply")["result"],
        "ok"
    );
    sim.set_slow_close(Duration::from_millis(500));
    let reply = conn.provision(&phone(&sim, 7)).await.expect("reply");
    assert_eq!(reply["result"], "ok", "{reply}");
    assert!(all_linked(&sim, &[mac(7)], Duration::from_secs(5)).await);
    assert_one_link_each(&sim);
}

/// An admin deletes, through b, a phone a links: the phone moves to b first (a's link closes),
/// then it is gone everywhere; provisioned again through b, it is linked once.
#[tokio::test]
async fn deleting_a_phone_through_another_instance_ends_its_link_first() {
    let (_pg, url, sim, root) = cluster("delete").await;
    let a = instance(root.path(), "a", &url, &sim, 30);
    let b = instance(root.path(), "b", &url, &sim, 30);
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut to_a = users.connect(&a.ws_url()).await.expect("login a");
    assert_eq!(
        to_a.provision(&phone(&sim, 3)).await.expect("reply")["result"],
        "ok"
    );
    sim.set_slow_close(Duration::from_millis(300));
    let path = format!("/example.com/innoprov/api/v1/phones/{}", mac(3));
    let (status, body) = call(&b, "DELETE", &path, Some(TOKEN), None).await;
    assert!(status == 200 || status == 204, "{status} {body}");
    // Answered only once a handed the phone over, after Devices saw a's link close.
    assert_eq!(
        sim.connected_macs(),
        Vec::<String>::new(),
        "a's link closed first"
    );
    let (status, _) = call(&a, "GET", &path, Some(TOKEN), None).await;
    assert_eq!(status, 404, "gone for a too");
    let mut to_b = users.connect(&b.ws_url()).await.expect("login b");
    assert_eq!(
        to_b.provision(&phone(&sim, 3)).await.expect("reply")["result"],
        "ok"
    );
    assert!(all_linked(&sim, &[mac(3)], Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.connected_macs(), vec![mac(3)]);
    assert_one_link_each(&sim);
}

/// With the database gone for longer than 2/3 of a lease, an instance closes its links itself
/// (another could take the phones over at the lease's end), and links them again once its
/// renewals succeed.
#[tokio::test]
async fn an_instance_that_cannot_renew_its_leases_closes_its_links_in_time() {
    let (mut pg, url, sim, root) = cluster("outage").await;
    let lease = 3;
    let a = instance(root.path(), "a", &url, &sim, lease);
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut to_a = users.connect(&a.ws_url()).await.expect("login a");
    let macs: Vec<String> = (0..5).map(mac).collect();
    for n in 0..5 {
        assert_eq!(
            to_a.provision(&phone(&sim, n)).await.expect("reply")["result"],
            "ok"
        );
    }
    assert!(all_linked(&sim, &macs, Duration::from_secs(5)).await);
    pg.stop();
    let stopped = Instant::now();
    assert!(
        sim.wait_until(Duration::from_secs(u64::from(lease)), |s| s
            .connected_macs()
            .is_empty())
            .await,
        "links still open {:?} after the database went away: {}",
        stopped.elapsed(),
        a.logs()
    );
    pg.start_again().expect("start again");
    assert!(
        all_linked(&sim, &macs, Duration::from_secs(20)).await,
        "{}",
        a.logs()
    );
    assert!(a.logs().contains("leases renewed again"), "{}", a.logs());
    assert_one_link_each(&sim);
}

/// A new phone whose code Devices refuses leaves no lease behind (a peer sending phones that
/// never come to be cannot grow the lease table or the renewals), while a stored phone keeps
/// its lease.
#[tokio::test]
async fn a_refused_new_phone_leaves_no_lease_behind() {
    let (_pg, url, sim, root) = cluster("refused").await;
    let a = instance(root.path(), "a", &url, &sim, 10);
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut to_a = users.connect(&a.ws_url()).await.expect("login a");
    assert_eq!(
        to_a.provision(&phone(&sim, 1)).await.expect("reply")["result"],
        "ok"
    );
    let refused = innoprov_actors::sim::users::SimPhone {
        code: "111111111111".into(),
        ..innoprov_actors::sim::users::SimPhone::numbered(2)
    };
    let reply = to_a.provision(&refused).await.expect("reply");
    assert_eq!(reply["result"], "failed", "{reply}");
    // An observer instance's view of the leases others hold.
    let observer = std::sync::Arc::new(
        PostgresStore::open(
            &PostgresSettings {
                url: url.clone(),
                password: None,
                pool_size: 1,
                lease: Some(Duration::from_secs(10)),
            },
            &innoprov::Sealer::load_or_create(&root.path().join("seal.key")).expect("key"),
        )
        .expect("open"),
    );
    let observer = PostgresLeases::of(&observer).expect("leases are on");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let held = observer.held_elsewhere().expect("leases");
        let (stored, refused) = (mac(1).parse().unwrap(), mac(2).parse().unwrap());
        assert!(held.contains(&stored), "the stored phone keeps its lease");
        if !held.contains(&refused) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refused phone's lease is still held"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        a.logs()
            .contains(&format!("phone {}: not stored; its lease is released", mac(2)))
    );
    drop(observer);
    stop(a);
}

/// The directory of issue 21 on several instances: the PBX replicates its users through one
/// instance, a key profile is edited through another, and each instance serves the same
/// phonebook and keys (every instance follows the others' writes through the database).
#[tokio::test]
async fn every_instance_serves_the_phonebook_and_keys_whichever_instance_got_them() {
    use innoprov_actors::sim::handset::{Handset, HttpClient, Url};
    let (_pg, url, sim, root) = cluster("directory").await;
    let a = instance(root.path(), "a", &url, &sim, 15);
    let b = instance(root.path(), "b", &url, &sim, 15);
    let mut pbx = crate::directory::pbx_with(&a, &["PbxApi", "PbxTableUsers"]).await;
    pbx.serve_user_table(&crate::directory::rows())
        .await
        .expect("replication");
    let api = "/example.com/innoprov/api/v1";
    let keys = serde_json::json!({"keys":[{"type":"blf","target":"alice","label":"Alice"}]});
    let (status, body) = call(
        &b,
        "PUT",
        &format!("{api}/key-profiles/sales"),
        Some(TOKEN),
        Some(&keys.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&a.ws_url())
        .await
        .expect("login a");
    let reply = conn.provision(&phone(&sim, 0)).await.expect("reply");
    assert_eq!(reply["result"], "ok", "{reply}");
    let mac = mac(0);
    let (status, body) = call(
        &a,
        "PUT",
        &format!("{api}/phones/{mac}/key-profile"),
        Some(TOKEN),
        Some(r#"{"profile":"sales"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Each instance, as the phone sees it: its phonebook and its keys (bounded wait: the
    // instances follow each other every few seconds).
    for service in [&a, &b] {
        let server = Url::parse(&format!("http://127.0.0.1:{}{PROV}/", service.addr.port())).expect("url");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut handset =
                Handset::new("yealink", &mac, server.clone(), HttpClient::new("", None)).expect("yealink");
            handset.provision().await.expect("provision");
            let book: Vec<(String, String)> = handset
                .fetch_phonebook(&mac)
                .await
                .map(|lines| lines.into_iter().map(|l| (l.name, l.number)).collect())
                .unwrap_or_default();
            let keys: Vec<String> = handset.function_keys().into_iter().map(|k| k.value).collect();
            let want_book =
                [("Archer, Alice", "201"), ("Bob Baker", "bob")].map(|(n, d)| (n.to_string(), d.to_string()));
            if book == want_book && keys == ["alice"] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: phonebook {book:?}, keys {keys:?}",
                service.addr
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
