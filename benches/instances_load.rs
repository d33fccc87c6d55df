//! Several instances on one PostgreSQL database (issue 11): (1) phones provisioned end to end
//! across two instances, one Users login to each carrying half the phones, default connect
//! gate; (2) failover: SIGKILL of one of the two, and the time until every phone it held has
//! answered Devices' challenge on a new link from the other; (3) ProvisioningPhone throughput
//! of one instance on PostgreSQL and one on sled, side by side, same load, gate opened wide.
//!
//! `cargo bench --bench instances_load` (2,000 phones, 5 s leases),
//! `INNOPROV_BENCH=full cargo bench --bench instances_load` (10,000 phones, the default 15 s
//! leases). PostgreSQL is Debian's, started in a temporary directory (as `.ci/run` installs
//! it); everything runs on 127.0.0.1, and every phase is bounded in time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use innoprov_actors::sim::devices::{DevicesEvent, DevicesSim};
use innoprov_actors::sim::postgres::TestPostgres;

mod support;

use support::{PHASE_LIMIT, ServiceProcess, provision_phones};

const LOG: &str = "warn,innoprov_actors::service=info";

fn postgres_keys(url: &str, key: &std::path::Path, lease_secs: u32) -> String {
    format!(
        "backend = \"postgres\"\nurl = \"{url}\"\nseal_key_file = \"{}\"\nlease_secs = {lease_secs}\npool_size = 16\n",
        key.display()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::var("INNOPROV_BENCH").as_deref() == Ok("full");
    let (phones, lease_secs, throughput_phones): (u32, u32, u32) = if full {
        (10_000, 15, 10_000)
    } else {
        (2_000, 5, 3_000)
    };
    let pg = TestPostgres::start().expect("postgres");
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("seal.key");

    // 1. Two instances, half the phones through each, default gate (500/s each).
    let url = pg.create_database("two").expect("database");
    let sim = DevicesSim::start().await;
    let devices = format!(
        "[devices]\nsysclient_url = \"{}\"\nprovisioning_timeout_secs = 120\n",
        sim.sysclient_url()
    );
    let store = postgres_keys(&url, &key, lease_secs);
    let mut a = ServiceProcess::start_with_store(&store, &devices, LOG);
    let b = ServiceProcess::start_with_store(&store, &devices, LOG);
    let half = phones / 2;
    let codes_a: Arc<Vec<String>> = Arc::new((0..half).map(|_| sim.issue_code()).collect());
    let codes_b: Arc<Vec<String>> = Arc::new((0..half).map(|_| sim.issue_code()).collect());
    let (url_a, url_b) = (a.ws_url(), b.ws_url());
    let start = Instant::now();
    let (rate_a, rate_b) = tokio::join!(
        provision_phones(&url_a, codes_a, 0, half, 8, 64),
        provision_phones(&url_b, codes_b, half, half, 8, 64),
    );
    let provisioned_in = start.elapsed();
    let linked = sim.connected_macs();
    let distinct: HashSet<&String> = linked.iter().collect();
    assert_eq!(distinct.len(), phones as usize, "every phone linked");
    assert_eq!(linked.len(), distinct.len(), "one link per phone");

    // 2. SIGKILL a: b takes a's phones over once their leases expire.
    sim.clear_events();
    let a_phones: Vec<String> = (0..half).map(|n| format!("001565{n:06x}")).collect();
    let killed = Instant::now();
    a.kill9();
    let mut first_back = None;
    let deadline = Instant::now() + PHASE_LIMIT;
    let taken_over = loop {
        let events = sim.events();
        let back: HashSet<&String> = events
            .iter()
            .filter_map(|e| match e {
                DevicesEvent::ChallengeAnswered { mac, ok: true } => Some(mac),
                _ => None,
            })
            .collect();
        if first_back.is_none() && !back.is_empty() {
            first_back = Some(killed.elapsed());
        }
        if a_phones.iter().all(|m| back.contains(m)) {
            break killed.elapsed();
        }
        assert!(Instant::now() < deadline, "failover within {PHASE_LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(sim.two_links().is_empty(), "never two links for one phone");
    drop(b);
    drop(sim);

    // 3. ProvisioningPhone throughput, PostgreSQL and sled, one instance each, gate wide open.
    let mut throughput = Vec::new();
    for backend in ["postgres", "sled"] {
        let sim = DevicesSim::start().await;
        let devices = format!(
            "[devices]\nsysclient_url = \"{}\"\nconnects_per_second = 20000\n",
            sim.sysclient_url()
        );
        let store = match backend {
            "postgres" => postgres_keys(&pg.create_database("throughput").expect("database"), &key, 15),
            _ => String::new(),
        };
        let service = ServiceProcess::start_with_store(&store, &devices, LOG);
        let codes: Arc<Vec<String>> = Arc::new((0..throughput_phones).map(|_| sim.issue_code()).collect());
        let rate = provision_phones(&service.ws_url(), codes, 0, throughput_phones, 16, 32).await;
        throughput.push((backend, rate));
    }

    println!(
        "instances_load ({} run: {phones} phones, {lease_secs} s leases, default gate 500/s per instance)",
        if full { "full" } else { "quick" }
    );
    println!(
        "  two instances, end to end   {:>7.1} s   ({:.0} phones/s; {:.0} + {:.0} per instance)",
        provisioned_in.as_secs_f64(),
        f64::from(phones) / provisioned_in.as_secs_f64(),
        rate_a,
        rate_b
    );
    println!(
        "  failover of {half} phones   {:>7.1} s   (SIGKILL to the last one linked by the other; first after {:.1} s)",
        taken_over.as_secs_f64(),
        first_back.unwrap_or_default().as_secs_f64()
    );
    for (backend, rate) in throughput {
        println!(
            "  ProvisioningPhone, {backend:<8} {rate:>7.0} phones/s   ({throughput_phones} phones, 16 connections x 32 in flight, gate 20,000/s)"
        );
    }
}
