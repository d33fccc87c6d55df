//! The PostgreSQL store against a real server (Debian's `postgresql`, started by the test in a
//! temporary directory): the conformance suite every store passes, the seal-key check, and the
//! release binary serving on `store.backend = "postgres"`.

use std::time::Duration;

use innoprov::Sealer;
use innoprov::store::{Store, conformance};
use innoprov_actors::postgres_store::{PostgresSettings, PostgresStore};
use innoprov_actors::sim::devices::DevicesSim;
use innoprov_actors::sim::postgres::TestPostgres;
use innoprov_actors::sim::users::UsersSim;

use crate::common::{PASSWORD, Service, devices_config, phone};

fn settings(url: &str) -> PostgresSettings {
    PostgresSettings {
        url: url.to_string(),
        password: None,
        pool_size: 2,
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
    let pg = TestPostgres::start().expect("postgres");
    let url = pg.create_database("service").expect("database");
    let sim = DevicesSim::start().await;
    let dir = tempfile::tempdir().unwrap();
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
    let mut pg = TestPostgres::start().expect("postgres");
    let url = pg.create_database("down").expect("database");
    let sim = DevicesSim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "backend = \"postgres\"\nurl = \"{url}\"\n{}",
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
