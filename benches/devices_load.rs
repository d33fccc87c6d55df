//! Devices link load harness (issue 3 targets): N phones provisioned end to end through the
//! simulators (Users → innoprov → Devices → ok), phones/s and p50/p99 time to ok; the
//! service's RSS per connected phone link; and the reconnect storm after a Devices restart:
//! time until every phone is configured again, and the most connects seen in any second.
//!
//! `cargo bench --bench devices_load` (1,000 phones),
//! `INNOPROV_BENCH=full cargo bench --bench devices_load` (10,000 phones),
//! `INNOPROV_BENCH=scale cargo bench --bench devices_load` (as many links as one process' open
//! files allow, the simulator in several processes: [`scale`]).
//! The service is the release binary in its own process; everything runs on 127.0.0.1, and
//! every phase is bounded in time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use innoprov_actors::sim::devices::{DevicesEvent, DevicesSim};
use innoprov_actors::sim::users::{SimPhone, UsersSim};

#[path = "devices_load/scale.rs"]
mod scale;
mod support;

use support::{PASSWORD, ServiceProcess};

const CONNECTS_PER_SECOND: u32 = 500;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Some(group) = scale::member_group() {
        return scale::run_member(group).await;
    }
    if std::env::var("INNOPROV_BENCH").as_deref() == Ok("scale") {
        return scale::run().await;
    }
    let full = std::env::var("INNOPROV_BENCH").as_deref() == Ok("full");
    let phones: u32 = if full { 10_000 } else { 1_000 };
    let (connections, window) = (16u32, 64u32);
    let sim = DevicesSim::start().await;
    let service = ServiceProcess::start(
        &format!(
            "[devices]\nsysclient_url = \"{}\"\nconnects_per_second = {CONNECTS_PER_SECOND}\nprovisioning_timeout_secs = 120\n",
            sim.sysclient_url()
        ),
        "warn,innoprov_actors::service=info",
    );
    let url = service.ws_url();
    let users = UsersSim::new("innoprov", PASSWORD);
    let codes: Arc<Vec<String>> = Arc::new((0..phones).map(|_| sim.issue_code()).collect());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = service.rss_kib();

    // 1. Provision every phone end to end; latency from send to ok.
    let next = Arc::new(AtomicU32::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(phones as usize)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (url, users, next, codes, latencies) = (
            url.clone(),
            users.clone(),
            next.clone(),
            codes.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = users.connect(&url).await.expect("login");
            let mut sent: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
            loop {
                while (sent.len() as u32) < window {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= phones {
                        break;
                    }
                    let phone = SimPhone {
                        code: codes[n as usize].clone(),
                        ..SimPhone::numbered(n)
                    };
                    let text = conn
                        .provisioning_text(&phone, Some(&n.to_string()))
                        .expect("text");
                    conn.client.send_raw(&text).await.expect("send");
                    sent.insert(n.to_string(), Instant::now());
                }
                if sent.is_empty() {
                    break;
                }
                conn.client.timeout = Duration::from_secs(120);
                let reply = conn
                    .client
                    .recv_mt("ProvisioningPhoneResult")
                    .await
                    .expect("result");
                assert_eq!(reply["result"], "ok", "{reply}");
                let src = reply["src"].as_str().unwrap_or_default().to_string();
                if let Some(t) = sent.remove(&src) {
                    latencies
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(t.elapsed());
                }
            }
            conn
        }));
    }
    let mut open = Vec::new();
    for t in tasks {
        open.push(
            tokio::time::timeout(Duration::from_secs(300), t)
                .await
                .expect("in time")
                .expect("task"),
        );
    }
    let provision_time = start.elapsed();
    let mut lat = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    lat.sort();

    // 2. RSS per connected link.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let linked = sim.connected_count();
    let rss_after = service.rss_kib();
    let per_link = rss_after.saturating_sub(rss_before) as f64 / linked.max(1) as f64;

    // 3. Devices restart: everyone reconnects (challenge + digest) and is configured again.
    sim.clear_events();
    let storm = Instant::now();
    sim.restart(Duration::from_millis(500)).await;
    let back = sim
        .wait_until(Duration::from_secs(180), |s| {
            s.count_events(|e| matches!(e, DevicesEvent::ConfigSent { .. })) >= phones as usize
                && s.connected_count() >= phones as usize
        })
        .await;
    let storm_time = storm.elapsed();
    let times = sim.connect_times();
    let max_per_second = (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|u| u.duration_since(times[i]) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    let bad_digests = sim.count_events(|e| matches!(e, DevicesEvent::ChallengeAnswered { ok: false, .. }));
    drop(open);

    println!(
        "devices_load ({} run: {phones} phones, service = release binary, loopback)",
        if full { "full" } else { "quick" }
    );
    println!(
        "  provisioned end to end  {:>8.0} phones/s  ({phones} in {:.1} s, {connections} Users connections x {window} in flight)",
        f64::from(phones) / provision_time.as_secs_f64(),
        provision_time.as_secs_f64()
    );
    println!(
        "  time to ok              p50 {:.0} ms, p99 {:.0} ms (connect gate {CONNECTS_PER_SECOND}/s)",
        percentile(&lat, 0.5).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0
    );
    println!(
        "  RSS per connected link  {per_link:>8.1} KiB   ({linked} links: {rss_before} KiB -> {rss_after} KiB)"
    );
    println!(
        "  Devices restart         all {phones} configured again: {back} after {:.1} s; max {max_per_second} connects in any second; {bad_digests} bad digests",
        storm_time.as_secs_f64()
    );
}
