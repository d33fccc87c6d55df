//! Soak (issue 23, item 4): two instances on one PostgreSQL under churn for a set time, to
//! show that nothing grows without bound and no acknowledged phone is lost.
//!
//! `cargo bench --bench soak` runs 10 minutes; `INNOPROV_SOAK_SECS=3600` an hour;
//! `INNOPROV_SOAK_PHONES` sets the phones (default 400). The churn, all at once through the
//! run: ProvisioningPhone again for a random phone through either instance (about 4/s),
//! deletes through the other instance's REST API, the phones fetching their files (enrolling
//! first, then re-checking with Basic and If-None-Match), a Users (PBX) reconnect to both
//! instances every minute, a Devices restart every 150 s, a PostgreSQL restart every 240 s.
//! Every minute it prints each instance's RSS, open fds and threads, and the database's size
//! and phone count. It fails if the last minute's RSS, fds or threads grew past the first
//! half's highest (RSS: 30 % and 8 MiB of slack; fds 64; threads 16), or if any phone whose
//! latest ProvisioningPhone was acknowledged, and not deleted since, is not stored or not
//! linked at the end. Everything is on 127.0.0.1, every wait is bounded.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use innoprov_actors::sim::devices::DevicesSim;
use innoprov_actors::sim::phone::{Auth, PhoneSim};
use innoprov_actors::sim::postgres::TestPostgres;
use innoprov_actors::sim::users::{SimPhone, UsersConnection, UsersSim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;

use support::{PASSWORD, ServiceProcess, provision_phones};

const LOG: &str = "warn";
const TOKEN: &str = "soak-admin-token-6d1f0a9c3e7b4a8f2c51d9e0";
const API: &str = "/example.com/innoprov/api/v1";
const PROV: &str = "/example.com/innoprov/prov";
const USER_AGENT: &str = "Yealink SIP-T46S 66.86.0.15";

/// One look at one instance.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    /// Resident memory, KiB.
    rss_kib: u64,
    /// Open file descriptors.
    fds: u64,
    /// Threads.
    threads: u64,
}

fn sample(pid: u32) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Sample {
        rss_kib: field("VmRSS:"),
        fds: support::open_files(pid),
        threads: field("Threads:"),
    }
}

/// The database's size (bytes) and stored phones, `None` while it is down.
async fn store_size(url: &str) -> Option<(i64, HashSet<String>)> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.ok()?;
    let driver = tokio::spawn(connection);
    let size = client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .ok()?
        .get::<_, i64>(0);
    let macs = client
        .query("SELECT mac FROM phones", &[])
        .await
        .ok()?
        .iter()
        .map(|r| hex::encode(r.get::<_, Vec<u8>>(0)))
        .collect();
    drop(client);
    driver.abort();
    Some((size, macs))
}

/// DELETE of a phone through the REST API; the status, `None` if no answer came.
async fn delete(addr: SocketAddr, mac: &str) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "DELETE {API}/phones/{mac} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
}

/// A phone's download credentials and the ETag of its file.
#[derive(Default)]
struct Fetcher {
    /// Per phone: user, password, ETag.
    known: HashMap<u32, (String, String, Option<String>)>,
    /// Responses by status.
    statuses: HashMap<u16, u64>,
}

impl Fetcher {
    /// Phone `n` fetches its file: enrols if it has no credentials, else re-checks.
    async fn fetch(&mut self, addr: SocketAddr, n: u32) {
        let phone = PhoneSim {
            addr,
            user_agent: USER_AGENT.into(),
        };
        let path = format!("{PROV}/{}.cfg", SimPhone::numbered(n).mac);
        let (auth, etag) = match self.known.get(&n) {
            Some((user, password, etag)) => (Auth::Basic(user.clone(), password.clone()), etag.clone()),
            None => (Auth::None, None),
        };
        let Ok(response) = phone.fetch(&path, &auth, etag.as_deref()).await else {
            *self.statuses.entry(0).or_default() += 1;
            return;
        };
        *self.statuses.entry(response.status).or_default() += 1;
        match (response.status, &auth) {
            (200, _) => {
                let field = |key: &str| {
                    response.body.lines().find_map(|l| {
                        l.split_once('=')
                            .filter(|(k, _)| k.trim() == key)
                            .map(|(_, v)| v.trim().to_string())
                    })
                };
                let user = field("static.auto_provision.server.username");
                let password = field("static.auto_provision.server.password");
                if let (Some(user), Some(password)) = (user, password) {
                    let etag = response.headers.get("etag").cloned();
                    self.known.insert(n, (user, password, etag));
                }
            }
            (401 | 403 | 404, Auth::Basic(..)) => {
                self.known.remove(&n);
            }
            _ => {}
        }
    }
}

fn store_keys(url: &str, key: &std::path::Path) -> String {
    format!(
        "backend = \"postgres\"\nurl = \"{url}\"\nseal_key_file = \"{}\"\nlease_secs = 15\npool_size = 8\n",
        key.display()
    )
}

/// Whether the last of `samples` grew past the first half's highest.
fn grew(samples: &[Sample], what: &str, value: fn(&Sample) -> u64, slack: fn(u64) -> u64) -> Option<String> {
    let half = &samples[1..(samples.len() / 2).max(2).min(samples.len())];
    let highest = half.iter().map(value).max()?;
    let last = value(samples.last()?);
    (last > highest + slack(highest))
        .then(|| format!("{what} grew: {highest} in the first half, {last} at the end"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let run_for = Duration::from_secs(support::env_u64("INNOPROV_SOAK_SECS", 600));
    let phones = u32::try_from(support::env_u64("INNOPROV_SOAK_PHONES", 400)).unwrap_or(400);
    let mut pg = TestPostgres::start().expect("postgres");
    let url = pg.create_database("soak").expect("database");
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("seal.key");
    let sim = Arc::new(DevicesSim::start().await);
    let extra = format!(
        "[devices]\nsysclient_url = \"{}\"\n[admin]\ntoken = \"{TOKEN}\"\n",
        sim.sysclient_url()
    );
    let instances = [
        ServiceProcess::start_with_store(&store_keys(&url, &key), &extra, LOG),
        ServiceProcess::start_with_store(&store_keys(&url, &key), &extra, LOG),
    ];
    let codes: Arc<Vec<String>> = Arc::new((0..phones).map(|_| sim.issue_code()).collect());
    provision_phones(&instances[0].ws_url(), codes, 0, phones, 4, 32).await;
    let mut acknowledged: HashSet<u32> = (0..phones).collect();
    let mut uncertain: HashSet<u32> = HashSet::new();
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut connections: Vec<Option<UsersConnection>> = Vec::new();
    for instance in &instances {
        connections.push(users.connect(&instance.ws_url()).await.ok());
    }
    let mut fetcher = Fetcher::default();
    let mut samples: Vec<[Sample; 2]> = Vec::new();
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let started = Instant::now();
    let (mut next_minute, mut next_reconnect) = (Duration::ZERO, Duration::from_secs(60));
    let (mut next_devices, mut next_postgres) = (Duration::from_secs(150), Duration::from_secs(240));
    let mut round: u64 = 0;
    println!(
        "soak: {phones} phones, two instances on PostgreSQL, {} s",
        run_for.as_secs()
    );
    println!(
        "  minute   rss A/B (MiB)   fds A/B   threads A/B   database (MiB)   phones stored   acknowledged"
    );
    loop {
        let now = started.elapsed();
        if now >= next_minute || now >= run_for {
            let look = [sample(instances[0].pid()), sample(instances[1].pid())];
            let (size, stored) = store_size(&url).await.map_or((-1, 0), |(s, m)| (s, m.len()));
            println!(
                "  {:>6.1}   {:>6.1} / {:<6.1}   {:>4} / {:<4}   {:>4} / {:<4}   {:>14.1}   {:>13}   {:>12}",
                now.as_secs_f64() / 60.0,
                look[0].rss_kib as f64 / 1024.0,
                look[1].rss_kib as f64 / 1024.0,
                look[0].fds,
                look[1].fds,
                look[0].threads,
                look[1].threads,
                size as f64 / 1_048_576.0,
                stored,
                acknowledged.len()
            );
            samples.push(look);
            sim.clear_events();
            next_minute += Duration::from_secs(60);
        }
        if now >= run_for {
            break;
        }
        if now >= next_reconnect {
            for (slot, instance) in connections.iter_mut().zip(&instances) {
                *slot = None;
                *slot = users.connect(&instance.ws_url()).await.ok();
            }
            *counts.entry("PBX reconnects").or_default() += 1;
            next_reconnect += Duration::from_secs(60);
        }
        if now >= next_devices {
            sim.restart(Duration::from_secs(2)).await;
            *counts.entry("Devices restarts").or_default() += 1;
            next_devices += Duration::from_secs(150);
        }
        if now >= next_postgres {
            pg.stop();
            tokio::time::sleep(Duration::from_secs(3)).await;
            pg.start_again().expect("PostgreSQL back");
            *counts.entry("PostgreSQL restarts").or_default() += 1;
            next_postgres += Duration::from_secs(240);
        }
        round += 1;
        let n = u32::try_from(round.wrapping_mul(2_654_435_761) % u64::from(phones)).unwrap_or(0);
        let side = (round % 2) as usize;
        // ProvisioningPhone again, through one instance.
        if let Some(conn) = connections[side].as_mut() {
            let phone = SimPhone {
                code: sim.issue_code(),
                ..SimPhone::numbered(n)
            };
            match tokio::time::timeout(Duration::from_secs(60), conn.provision(&phone)).await {
                Ok(Ok(reply)) if reply["result"] == "ok" => {
                    acknowledged.insert(n);
                    uncertain.remove(&n);
                    fetcher.known.remove(&n);
                    *counts.entry("ProvisioningPhone ok").or_default() += 1;
                }
                Ok(Ok(_)) => *counts.entry("ProvisioningPhone refused").or_default() += 1,
                _ => {
                    // No answer: stored or not is unknown until the next one is acknowledged.
                    uncertain.insert(n);
                    connections[side] = users.connect(&instances[side].ws_url()).await.ok();
                }
            }
        }
        // A delete through the other instance, one round in ten.
        if round.is_multiple_of(10) {
            let gone = u32::try_from((round / 10).wrapping_mul(97) % u64::from(phones)).unwrap_or(0);
            match delete(instances[1 - side].addr, &SimPhone::numbered(gone).mac).await {
                Some(200 | 204 | 404) => {
                    acknowledged.remove(&gone);
                    *counts.entry("deletes").or_default() += 1;
                }
                _ => {
                    uncertain.insert(gone);
                }
            }
        }
        // Two phones fetch or re-check their files.
        for k in [n, (n * 7 + 3) % phones] {
            fetcher.fetch(instances[side].addr, k).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The end: every acknowledged phone stored and linked again.
    let expected: HashSet<String> = acknowledged
        .difference(&uncertain)
        .map(|n| SimPhone::numbered(*n).mac)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut missing, mut unlinked) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        let stored = store_size(&url).await.map(|(_, m)| m).unwrap_or_default();
        let linked: HashSet<String> = sim.connected_macs().into_iter().collect();
        missing = expected
            .iter()
            .filter(|m| !stored.contains(*m))
            .cloned()
            .collect();
        unlinked = expected
            .iter()
            .filter(|m| !linked.contains(*m))
            .cloned()
            .collect();
        if missing.is_empty() && unlinked.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut counts: Vec<(&str, u64)> = counts.into_iter().collect();
    counts.sort();
    println!("  churn: {counts:?}");
    let mut statuses: Vec<(u16, u64)> = fetcher.statuses.into_iter().collect();
    statuses.sort();
    println!("  phone fetches by status (0: no answer): {statuses:?}");
    println!(
        "  acknowledged at the end: {} ({} uncertain left out), never two links: {}",
        expected.len(),
        uncertain.len(),
        sim.two_links().is_empty()
    );
    let mut failures = Vec::new();
    for (i, name) in ["A", "B"].iter().enumerate() {
        let series: Vec<Sample> = samples.iter().map(|s| s[i]).collect();
        let checks = [
            grew(&series, "RSS (KiB)", |s| s.rss_kib, |h| h * 3 / 10 + 8 * 1024),
            grew(&series, "fds", |s| s.fds, |_| 64),
            grew(&series, "threads", |s| s.threads, |_| 16),
        ];
        failures.extend(
            checks
                .into_iter()
                .flatten()
                .map(|f| format!("instance {name}: {f}")),
        );
    }
    if !missing.is_empty() {
        failures.push(format!("acknowledged phones not stored: {missing:?}"));
    }
    if !unlinked.is_empty() {
        failures.push(format!("acknowledged phones not linked: {unlinked:?}"));
    }
    assert!(failures.is_empty(), "soak failed:\n{}", failures.join("\n"));
    println!("  soak passed");
}
