//! The PBX's phonebook at scale (issue 21): the PBX double replicates a user table of 10,000
//! users to the release binary, then 10,000 provisioned Yealink phones fetch their phonebook
//! at once, each with its own credentials on a new connection, as phones do. Reports the
//! replication time, the phonebook's size, requests/s and the service's RSS.
//!
//! `cargo bench --bench phonebook_load` (1,000 users and phones),
//! `INNOPROV_BENCH=full cargo bench --bench phonebook_load` (10,000 of each).

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

use innoprov_actors::sim::devices::DevicesSim;
use innoprov_actors::sim::pbx::PbxSim;
use innoprov_actors::sim::phone::{Auth, PhoneSim};
use innoprov_actors::sim::users::SimPhone;

mod support;

use support::{APP_PATH, PASSWORD, ServiceProcess, provision_phones, rate, take};

const PROV: &str = "/example.com/innoprov/prov";
const USER_AGENT: &str = "Yealink SIP-T46U 108.86.0.90";

/// A phone's provisioning credentials and its phonebook path, from its first file.
fn credentials_and_phonebook(file: &str) -> Option<(String, String, String)> {
    let field = |key: &str| {
        file.lines().find_map(|l| {
            l.split_once('=')
                .filter(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_string())
        })
    };
    let url = field("remote_phonebook.data.1.url")?;
    let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}"))?;
    Some((
        field("static.auto_provision.server.username")?,
        field("static.auto_provision.server.password")?,
        path,
    ))
}

fn users(count: u32) -> Vec<serde_json::Value> {
    (0..count)
        .map(|n| {
            serde_json::json!({
                "guid": format!("{n:032x}"), "h323": format!("user{n}"), "cn": format!("User {n}"),
                "dn": format!("Nachname{n}, Vorname & Co"), "e164": format!("{}", 10_000 + n),
                "hide": n % 50 == 0, "config": "Standard"
            })
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: u32 = if std::env::var("INNOPROV_BENCH").as_deref() == Ok("full") {
        10_000
    } else {
        1_000
    };
    let sim = DevicesSim::start().await;
    let service = ServiceProcess::start(
        &format!(
            "[devices]\nsysclient_url = \"{}\"\nconnects_per_second = 20000\n",
            sim.sysclient_url()
        ),
        "warn",
    );
    let rss_start = service.rss_kib();

    // The PBX's user table.
    let app_url = format!("http://{}{APP_PATH}", service.addr);
    let mut pbx = PbxSim::new("innoprov", &app_url, PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("PBX login");
    pbx.send_pbx_info(&["PbxApi", "PbxTableUsers"])
        .await
        .expect("PbxInfo");
    let started = Instant::now();
    pbx.serve_user_table(&users(count)).await.expect("replication");
    let replicated = started.elapsed();

    // The phones, provisioned and enrolled (their first file gives them their credentials).
    let codes: Arc<Vec<String>> = Arc::new((0..count).map(|_| sim.issue_code()).collect());
    let provisioned = provision_phones(&service.ws_url(), codes, 0, count, 16, 32).await;
    let device = PhoneSim {
        addr: service.addr,
        user_agent: USER_AGENT.into(),
    };
    let mut phones = Vec::with_capacity(count as usize);
    for n in 0..count {
        let mac = SimPhone::numbered(n).mac;
        let first = device
            .fetch(&format!("{PROV}/{mac}.cfg"), &Auth::None, None)
            .await
            .expect("file");
        phones.push(credentials_and_phonebook(&first.body).expect("credentials and phonebook in the file"));
    }
    let probe = &phones[0];
    let book = device
        .fetch(&probe.2, &Auth::Basic(probe.0.clone(), probe.1.clone()), None)
        .await
        .expect("phonebook");
    assert_eq!(book.status, 200);
    let entries = book.body.matches("<DirectoryEntry>").count();
    let rss_before = service.rss_kib();

    // Every phone fetches its phonebook at once: 64 in flight, a new connection each.
    let phones = Arc::new(phones);
    let served = Arc::new(AtomicU32::new(0));
    let per_second = rate(count, 64, |counter| {
        let (phones, device, served) = (phones.clone(), device.clone(), served.clone());
        async move {
            while let Some(i) = take(&counter, count) {
                let (user, password, path) = &phones[i as usize];
                let reply = device
                    .fetch(path, &Auth::Basic(user.clone(), password.clone()), None)
                    .await
                    .expect("fetch");
                assert_eq!(reply.status, 200);
                served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    })
    .await;
    let rss_after = service.rss_kib();
    println!("phonebook_load ({count} users, {count} Yealink phones, service = release binary, loopback)");
    println!(
        "  replication of {count} users      {:>8.2} s ({:.0} rows/s, one ReplicateNext per row)",
        replicated.as_secs_f64(),
        f64::from(count) / replicated.as_secs_f64()
    );
    println!("  phones provisioned               {provisioned:>8.0} /s");
    println!(
        "  phonebook                        {entries} entries, {} bytes",
        book.body.len()
    );
    println!(
        "  {count} phones fetching at once    {per_second:>8.0} req/s (64 in flight, Basic auth, a connection each)"
    );
    println!(
        "  RSS                              {rss_start} KiB at start, {rss_before} KiB with the table and the phones, {rss_after} KiB after the fetches"
    );
    drop(pbx);
}
