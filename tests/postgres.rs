//! The PostgreSQL store against a real server (Debian's `postgresql`, started by the test in a
//! temporary directory): the conformance suites every store and every lease implementation
//! pass, the seal-key check, and the release binary serving on `store.backend = "postgres"`.

use std::sync::Arc;
use std::time::Duration;

use innoprov::Sealer;
use innoprov::store::{Claim, Leases, Store, conformance, leases_conformance};
use innoprov_actors::sim::postgres::TestPostgres;
use innoprov_actors::sim::users::UsersSim;
use innoprov_actors::store::postgres_store::{PostgresLeases, PostgresSettings, PostgresStore, StoreEvent};

use crate::common::{PASSWORD, Service, devices_config, phone};
use crate::instances::cluster;

fn settings(url: &str) -> PostgresSettings {
    PostgresSettings {
        url: url.to_string(),
        password: None,
        pool_size: 2,
        lease: None,
    }
}

#[test]
fn the_postgres_store_passes_the_store_conformance_suite() {
    let pg = TestPostgres::start().expect("postgres");
    let sealer = Sealer::from_key(&[7; 32]);
    let url = pg.create_database("conformance").expect("database");
    conformance::run(&PostgresStore::open(&settings(&url), &sealer).expect("open"));
    let url = pg.create_database("reopen").expect("database");
    conformance::survives_reopen(pg.dir(), |_| {
        PostgresStore::open(&settings(&url), &sealer).expect("open again")
    });
}

/// Opens an instance's store on `url` with leases of `secs`, and its leases.
fn leased(url: &str, secs: f64, sealer: &Sealer) -> (Arc<PostgresStore>, PostgresLeases) {
    let settings = PostgresSettings {
        lease: Some(Duration::from_secs_f64(secs)),
        ..settings(url)
    };
    let store = Arc::new(PostgresStore::open(&settings, sealer).expect("instance"));
    let leases = PostgresLeases::of(&store).expect("leases are on");
    (store, leases)
}

/// The lease contract every implementation passes (the in-memory one in the core's unit
/// tests), here on two instances of one database with leases of 2 s that really expire.
#[test]
fn the_postgres_leases_pass_the_lease_conformance_suite() {
    let pg = TestPostgres::start().expect("postgres");
    let url = pg.create_database("lease_conformance").expect("database");
    let sealer = Sealer::from_key(&[7; 32]);
    let lease = 2.0;
    let (_a_store, a) = leased(&url, lease, &sealer);
    let (_b_store, b) = leased(&url, lease, &sealer);
    let reader = PostgresStore::open(&settings(&url), &sealer).expect("unleased");
    let expire = || std::thread::sleep(Duration::from_secs_f64(lease + 0.3));
    leases_conformance::run(&leases_conformance::Instances {
        store: &reader,
        a: &a,
        b: &b,
        expire: &expire,
    });
}

/// The departure part of the lease contract on real sessions: an instance whose process
/// ends (its store dropped, its connections closed) is found departed by the database's
/// session lock while its 60 s leases run, a live one never is.
#[test]
fn the_postgres_leases_pass_the_departure_part_of_the_conformance_suite() {
    let pg = TestPostgres::start().expect("postgres");
    let url = pg.create_database("lease_departure").expect("database");
    let sealer = Sealer::from_key(&[7; 32]);
    // 3 s: the survivor may judge others once its own session lock is 1 s old.
    let (_survivor_store, survivor) = leased(&url, 3.0, &sealer);
    let reader = PostgresStore::open(&settings(&url), &sealer).expect("unleased");
    let claim_all = |leases: &PostgresLeases, phones: &[innoprov::Mac]| {
        for mac in phones {
            assert_eq!(leases.claim(mac).expect("claim"), Claim::Held);
        }
    };
    let crash = |phones: &[innoprov::Mac]| {
        let (store, leases) = leased(&url, 60.0, &sealer);
        assert!(store.holds_session_lock(), "open waits for the session lock");
        claim_all(&leases, phones);
        let owner = leases.owner().to_string();
        drop(leases);
        drop(store);
        owner
    };
    let live = |phones: &[innoprov::Mac]| -> Box<dyn Leases> {
        let (_store, leases) = leased(&url, 60.0, &sealer);
        claim_all(&leases, phones);
        Box::new(leases)
    };
    leases_conformance::run_departure(&leases_conformance::Departure {
        store: &reader,
        survivor: &survivor,
        crash: &crash,
        live: &live,
        pause: &|| std::thread::sleep(Duration::from_millis(100)),
    });
}

/// Checked group writes with leases on: the holder's fenced write lands, an older generation
/// under the current token is stale, a token handed away is taken over and writes nothing.
#[test]
fn fenced_group_writes_tell_a_taken_over_lease_from_a_stale_generation() {
    use innoprov::store::{CheckedWrite, WriteMode, WriteOutcome};
    let pg = TestPostgres::start().expect("postgres");
    let url = pg.create_database("checked").expect("database");
    let sealer = Sealer::from_key(&[7; 32]);
    let (a_store, a) = leased(&url, 30.0, &sealer);
    let (b_store, b) = leased(&url, 30.0, &sealer);
    let mac: innoprov::Mac = "0015651a2e01".parse().unwrap();
    let record = |n| conformance::sample_record("0015651a2e01", n);
    let write = |record, token| CheckedWrite {
        record,
        mode: WriteMode::Provision,
        fence: Some(token),
    };
    let stored = || b_store.get_phone(&mac).expect("read").map(|r| r.generation);

    assert_eq!(a.claim(&mac).expect("claim"), Claim::Held);
    let token = a.token(&mac).expect("token");
    let (five, four, six) = (record(5), record(4), record(6));
    assert_eq!(
        a_store.put_phones_checked(&[write(&five, token)]).expect("write"),
        vec![WriteOutcome::Written]
    );
    assert_eq!(
        a_store.put_phones_checked(&[write(&four, token)]).expect("write"),
        vec![WriteOutcome::Stale],
        "an older generation under the current token"
    );
    assert!(a.holds(&mac), "a stale write keeps the lease");
    assert!(a.hand_over(&mac, b.owner()).expect("hand over"));
    assert_eq!(
        a_store.put_phones_checked(&[write(&six, token)]).expect("write"),
        vec![WriteOutcome::TakenOver]
    );
    assert_eq!(stored(), Some(5), "nothing written with the old token");
    b.renew().expect("renew");
    let b_token = b.token(&mac).expect("b holds it now");
    assert_eq!(
        b_store
            .put_phones_checked(&[write(&six, b_token)])
            .expect("write"),
        vec![WriteOutcome::Written]
    );
    assert_eq!(stored(), Some(6));
}

/// A database of schema version 3 (no generation column) migrates with each record's
/// generation read from its JSON, and an unreadable record kept with none: an update of the
/// stored generation lands, an older ProvisioningPhone is stale, and a new one may replace the
/// unreadable record.
#[test]
fn the_generation_column_is_filled_from_the_records_an_older_version_stored() {
    use innoprov::store::{CheckedWrite, WriteMode, WriteOutcome};
    let pg = TestPostgres::start().expect("postgres");
    let url = pg.create_database("v3").expect("database");
    let sealer = Sealer::from_key(&[7; 32]);
    let record = |mac, n| conformance::sample_record(mac, n);
    {
        let store = PostgresStore::open(&settings(&url), &sealer).expect("open");
        store.put_phone(&record("0015651a2f01", 7)).expect("put");
        store.put_phone(&record("0015651a2f02", 7)).expect("put");
    }
    // As version 3 left it: no column, no history of version 4, one record damaged.
    pg.psql(
        "v3",
        "ALTER TABLE phones DROP COLUMN generation; \
         DELETE FROM refinery_schema_history WHERE version = 4; \
         UPDATE phones SET record = '\\xff00'::bytea WHERE mac = '\\x0015651a2f02'::bytea;",
    )
    .expect("shape version 3");
    let store = PostgresStore::open(&settings(&url), &sealer).expect("migrate");
    let write = |record, mode| CheckedWrite {
        record,
        mode,
        fence: None,
    };
    let (update, older) = (record("0015651a2f01", 7), record("0015651a2f01", 6));
    let (healed, damaged) = (record("0015651a2f02", 8), "0015651a2f02".parse().unwrap());
    assert_eq!(
        store
            .put_phones_checked(&[
                write(&older, WriteMode::Provision),
                write(&healed, WriteMode::Update)
            ])
            .expect("group"),
        vec![WriteOutcome::Stale, WriteOutcome::Stale],
        "generation 7 came from the JSON; the damaged record has none to update"
    );
    assert_eq!(
        store
            .put_phones_checked(&[
                write(&update, WriteMode::Update),
                write(&healed, WriteMode::Provision)
            ])
            .expect("group"),
        vec![WriteOutcome::Written, WriteOutcome::Written]
    );
    assert_eq!(store.get_phone(&damaged).expect("healed"), Some(healed));
}

/// What the PostgreSQL leases add to the contract: a store with leases on writes a record
/// (unfenced `put_phone`) only for the lease holder, other instances' writes reach this
/// one's download path through NOTIFY, `wanted`/`handed`/`released` messages travel between
/// the instances, and a deleted phone's lease goes with it.
#[test]
fn postgres_leases_tell_the_other_instances_and_go_with_a_deleted_phone() {
    let pg = TestPostgres::start().expect("postgres");
    let url = pg.create_database("leases").expect("database");
    let sealer = Sealer::from_key(&[7; 32]);
    let (a_store, a) = leased(&url, 30.0, &sealer);
    let (b_store, b) = leased(&url, 30.0, &sealer);
    let mut a_events = a_store.events();
    let mut b_events = b_store.events();
    let mac: innoprov::Mac = "0015651a2b3c".parse().unwrap();
    let record = |n| conformance::sample_record("0015651a2b3c", n);

    assert_eq!(a.claim(&mac).expect("claim"), Claim::Held);
    a_store.put_phone(&record(1)).expect("the owner writes");
    let refused = b_store.put_phone(&record(2)).expect_err("not the owner");
    assert!(
        refused.to_string().contains("does not hold its lease"),
        "{refused}"
    );

    // Another instance's write reaches a's download path: a's epoch moves without a writing.
    let epoch = a_store.write_epoch();
    let reader = PostgresStore::open(&settings(&url), &sealer).expect("unleased");
    reader
        .update_access(&mac, &mut |access| access.window_reopened_at = Some(1))
        .expect("access");
    assert!(
        wait(|| a_store.write_epoch() > epoch),
        "another instance's write bumps the epoch"
    );

    // b asks a for the phone; a hands it over; b hears of it at once.
    b.want(&mac).expect("want");
    let wanted = recv_event(&mut a_events, |e| matches!(e, StoreEvent::Wanted { .. }));
    let by = b.owner().to_string();
    assert_eq!(wanted, StoreEvent::Wanted { mac, by: by.clone() });
    assert!(a.hand_over(&mac, b.owner()).expect("hand over"));
    let handed = recv_event(&mut b_events, |e| matches!(e, StoreEvent::Handed { .. }));
    assert_eq!(
        handed,
        StoreEvent::Handed { mac, to: by },
        "the new owner hears of it"
    );
    assert_eq!(b.renew().expect("renew").adopted, vec![mac]);
    b_store.put_phone(&record(3)).expect("b owns it now");

    // b releases everything and says so.
    assert_eq!(b.release_all().expect("release"), 1);
    recv_event(&mut a_events, |e| *e == StoreEvent::Released);
    assert_eq!(a.claim_free(100).expect("claim free"), vec![mac]);
    // A deleted phone's lease goes with it: the owner's renewal reports it lost.
    reader.delete_phone(&mac).expect("delete");
    assert_eq!(a.renew().expect("renew").lost, vec![mac]);
    assert!(!a.holds(&mac));
}

fn wait(check: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn recv_event(
    events: &mut tokio::sync::broadcast::Receiver<StoreEvent>,
    wanted: impl Fn(&StoreEvent) -> bool,
) -> StoreEvent {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        match events.try_recv() {
            Ok(event) if wanted(&event) => return event,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("events: {e}"),
        }
    }
    panic!("no such event within 5 s")
}

#[test]
fn an_instance_with_another_seal_key_is_refused_and_the_database_kept() {
    let pg = TestPostgres::start().expect("postgres");
    let url = pg.create_database("keys").expect("database");
    let first = PostgresStore::open(&settings(&url), &Sealer::from_key(&[1; 32])).expect("first instance");
    first
        .put_phone(&conformance::sample_record("0015651a2b3c", 1))
        .expect("put");
    let refused = PostgresStore::open(&settings(&url), &Sealer::from_key(&[2; 32]));
    let error = refused.err().expect("another key is refused").to_string();
    assert!(error.contains("seal key"), "{error}");
    assert!(error.contains("127.0.0.1"), "names the server: {error}");
    // The same key again is fine, and nothing was lost.
    let again = PostgresStore::open(&settings(&url), &Sealer::from_key(&[1; 32])).expect("same key");
    assert_eq!(again.phones().expect("list").len(), 1);
}

#[test]
fn a_bad_url_or_an_unreachable_server_is_a_clear_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    std::fs::write(
        &config,
        crate::common::config_text(
            dir.path(),
            &format!("backend = \"postgres\"\nurl = \"postgres://innoprov@127.0.0.1:{port}/x\"\n"),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_innoprov"))
        .args(["--config", config.to_str().unwrap()])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("connecting to postgres 127.0.0.1:{port}/x")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[tokio::test]
async fn the_service_provisions_on_postgres_and_resumes_its_phones_after_a_restart() {
    let (_pg, url, sim, dir) = cluster("service").await;
    let extra = format!(
        "backend = \"postgres\"\nurl = \"{url}\"\n{}",
        devices_config(&sim)
    );
    let service = Service::start_in(dir.path(), &extra);
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conn = users.connect(&service.ws_url()).await.expect("login");
    let reply = conn.provision(&phone(&sim, 0x90)).await.expect("reply");
    assert_eq!(reply["result"], "ok", "{reply}");
    let (status, logs) = service.terminate();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("store postgres 127.0.0.1:"), "{logs}");

    // Acknowledged means in the database, sealed with the installation's key.
    let sealer = Sealer::load_or_create(&dir.path().join("store").join("seal.key")).expect("key");
    let store = PostgresStore::open(&settings(&url), &sealer).expect("open");
    let record = store
        .get_phone(&"001565000090".parse().unwrap())
        .expect("read")
        .expect("stored");
    assert_eq!(record.config_version, 1);
    assert!(record.sysclient_password.is_some());
    drop(store);

    // A restart resumes the phone from the database: it answers Devices' challenge.
    sim.clear_events();
    let service = Service::start_in(dir.path(), &extra);
    let back = sim
        .wait_until(Duration::from_secs(20), |s| {
            s.connected_macs().contains(&"001565000090".to_string())
        })
        .await;
    let (_, logs) = service.terminate();
    assert!(back, "the stored phone did not link again: {logs}");
    assert!(logs.contains(": 1 phones"), "{logs}");
}

#[test]
fn writes_wait_for_a_restarted_server_and_fail_with_the_reason_when_it_stays_away() {
    let mut pg = TestPostgres::start().expect("postgres");
    let url = pg.create_database("outage").expect("database");
    let store = PostgresStore::open(&settings(&url), &Sealer::from_key(&[3; 32])).expect("open");
    store
        .put_phone(&conformance::sample_record("000000000001", 1))
        .expect("put");
    // Down for 2 s: a write made meanwhile waits, and succeeds once the server is back.
    pg.stop();
    let written = std::thread::scope(|s| {
        let writer = s.spawn(|| store.put_phone(&conformance::sample_record("000000000002", 2)));
        std::thread::sleep(Duration::from_secs(2));
        pg.start_again().expect("start again");
        writer.join().expect("writer")
    });
    written.expect("the write waited for the server");
    assert_eq!(store.phones().expect("list").len(), 2, "both phones stored");
    // Down for longer than RETRY_FOR: the write fails, naming why, and nothing is half done.
    pg.stop();
    let error = store
        .put_phone(&conformance::sample_record("000000000003", 3))
        .expect_err("no server, no acknowledgement")
        .to_string();
    assert!(error.contains("connection lost and not back within"), "{error}");
    pg.start_again().expect("start again");
    assert_eq!(store.phones().expect("list after recovery").len(), 2);
}

#[tokio::test]
async fn with_the_database_down_provisioning_fails_with_the_reason_and_recovers_when_it_is_back() {
    let (mut pg, url, sim, dir) = cluster("down").await;
    // The outage lasts over 10 s (the write retry window) and longer on a loaded machine: a
    // lease long enough that the instance does not also give its links up meanwhile (that
    // has its own tests in instances.rs), so this one sees only the store's recovery.
    let extra = format!(
        "backend = \"postgres\"\nurl = \"{url}\"\nlease_secs = 60\n{}",
        devices_config(&sim)
    );
    let service = Service::start_in(dir.path(), &extra);
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conn = users.connect(&service.ws_url()).await.expect("login");
    conn.client.timeout = Duration::from_secs(60);
    pg.stop();
    let reply = conn.provision(&phone(&sim, 0xa0)).await.expect("reply");
    assert_eq!(
        reply["result"], "failed",
        "never ok without the database: {reply}"
    );
    let error = reply["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("connection lost"), "the reason is given: {error}");
    // The database returns; the service goes on by itself.
    pg.start_again().expect("start again");
    let reply = conn.provision(&phone(&sim, 0xa1)).await.expect("reply");
    assert_eq!(reply["result"], "ok", "{reply}");
    let (status, logs) = service.terminate();
    assert!(status.success(), "{logs}");
    let store = PostgresStore::open(
        &settings(&url),
        &Sealer::load_or_create(&dir.path().join("store").join("seal.key")).expect("key"),
    )
    .expect("open");
    let macs: Vec<String> = store
        .phones()
        .expect("list")
        .iter()
        .map(|r| r.mac.to_string())
        .collect();
    assert_eq!(macs, ["0015650000a1"], "only the acknowledged phone is stored");
}

/// Two instances flushing downloads of the same phone at once keep each other's entries: the
/// append is one transaction with the audit row locked.
#[test]
fn two_instances_appending_to_one_phones_audit_lose_nothing() {
    let pg = TestPostgres::start().expect("postgres");
    let url = pg.create_database("audit").expect("database");
    let sealer = Sealer::from_key(&[5; 32]);
    let stores = [
        PostgresStore::open(&settings(&url), &sealer).expect("a"),
        PostgresStore::open(&settings(&url), &sealer).expect("b"),
    ];
    let mac: innoprov::Mac = "0015651a2b3c".parse().unwrap();
    std::thread::scope(|s| {
        for (i, store) in stores.iter().enumerate() {
            s.spawn(move || {
                for n in 0..40 {
                    store
                        .append_audit(&mac, vec![conformance::sample_entry(i as u64 * 1_000 + n)], 1_000)
                        .expect("append");
                }
            });
        }
    });
    let audit = stores[0].audit(&mac, 1_000).expect("audit");
    assert_eq!(audit.len(), 80, "every entry of both instances kept");
}
