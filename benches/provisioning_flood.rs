//! ProvisioningPhone flood (issue 10): far more ProvisioningPhone messages than the service
//! can carry through Devices, sent at ten times the sustainable rate (the default connect gate
//! lets 500 phones/s through end to end; the flood sends 5,000/s over 10 connections) to a
//! Devices that never answers, while the service's RSS is sampled every second. What is taken
//! is bounded (4,096 in progress service-wide, 512 per connection); the rest is answered "busy"
//! at once, and what was taken fails at the provisioning timeout, keeping nothing, so the RSS
//! levels off instead of growing with the flood. The provisioning timeout is set to 10 s (the
//! default is 60 s), so places are given back and taken again while the flood goes on.
//!
//! `cargo bench --bench provisioning_flood` (20,000 messages),
//! `INNOPROV_BENCH=full cargo bench --bench provisioning_flood` (100,000).
//! Every loop is bounded in count and time, and only 127.0.0.1 is contacted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use innoprov_actors::sim::devices::DevicesSim;
use innoprov_actors::sim::users::{SimPhone, UsersSim};
use tokio_tungstenite::tungstenite::Message;

mod support;

use support::{PASSWORD, ServiceProcess};

/// Connections the flood comes over.
const CONNECTIONS: u32 = 10;
/// Messages per second per connection (10 × 500 = 5,000/s, ten times the default gate).
const PER_SECOND: u32 = 500;

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    busy: AtomicU64,
    other: AtomicU64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: u32 = if std::env::var("INNOPROV_BENCH").as_deref() == Ok("full") {
        100_000
    } else {
        20_000
    };
    // A Devices that accepts connections and never answers: nothing completes, every message
    // taken holds its place until the provisioning timeout (10 s), the worst case for memory.
    let sim = DevicesSim::start().await;
    sim.set_stall(true);
    let service = ServiceProcess::start(
        &format!(
            "[devices]\nsysclient_url = \"{}\"\nprovisioning_timeout_secs = 10\n",
            sim.sysclient_url()
        ),
        "error,innoprov_actors::service=info",
    );
    let url = service.ws_url();
    let users = UsersSim::new("innoprov", PASSWORD);
    let counts = Arc::new(Counts::default());
    let share = total / CONNECTIONS;
    let baseline = service.rss_kib();

    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let mut conn = users.connect(&url).await.expect("login");
        // Every message is made before the flood starts, so sending is only sending.
        let texts: Vec<String> = (0..share)
            .map(|i| {
                let n = 0x10_0000 + c * share + i;
                let phone = SimPhone {
                    code: sim.issue_code(),
                    ..SimPhone::numbered(n)
                };
                conn.provisioning_text(&phone, Some(&n.to_string()))
                    .expect("text")
            })
            .collect();
        let (mut sink, mut stream) = conn.client.into_stream().split();
        let writer = tokio::spawn(async move {
            // 5 messages every 10 ms: PER_SECOND per connection.
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for batch in texts.chunks((PER_SECOND / 100) as usize) {
                tick.tick().await;
                for text in batch {
                    if sink.send(Message::text(text.as_str())).await.is_err() {
                        return sink;
                    }
                }
            }
            sink
        });
        let counts = Arc::clone(&counts);
        let reader = tokio::spawn(async move {
            let mut answered = 0;
            // The flood, then the provisioning timeout (10 s) of the last ones taken, and slack.
            let deadline = Instant::now() + Duration::from_secs(u64::from(share / PER_SECOND) + 30);
            while answered < share && Instant::now() < deadline {
                let Ok(Some(Ok(message))) =
                    tokio::time::timeout(Duration::from_secs(60), stream.next()).await
                else {
                    break;
                };
                let Message::Text(text) = message else { continue };
                let Ok(reply) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                if reply["mt"] != "ProvisioningPhoneResult" {
                    continue;
                }
                answered += 1;
                let counter = if reply["result"] == "ok" {
                    &counts.ok
                } else if reply["error"].as_str().is_some_and(|e| e.starts_with("busy")) {
                    &counts.busy
                } else {
                    &counts.other
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            answered
        });
        tasks.push((writer, reader));
    }

    // Sample the RSS every second while the flood runs and its answers come back.
    let started = Instant::now();
    let sampling = {
        let counts = Arc::clone(&counts);
        let pid_rss = move || service.rss_kib();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let answered = counts.ok.load(Ordering::Relaxed)
                    + counts.busy.load(Ordering::Relaxed)
                    + counts.other.load(Ordering::Relaxed);
                samples.push((started.elapsed().as_secs(), answered, pid_rss()));
                if answered >= u64::from(share * CONNECTIONS) || samples.len() > 120 {
                    return samples;
                }
            }
        })
    };
    let mut answered = 0;
    for (writer, reader) in tasks {
        let _sink = writer.await.expect("writer");
        answered += reader.await.expect("reader");
    }
    let elapsed = started.elapsed();
    let samples = sampling.await.expect("sampler");

    println!(
        "provisioning_flood ({total} ProvisioningPhone, {CONNECTIONS} connections x {PER_SECOND}/s, default connect gate 500/s, Devices never answers, provisioning timeout 10 s)"
    );
    println!(
        "  answered {answered} in {:.1} s: ok {}, busy {}, other failures {}",
        elapsed.as_secs_f64(),
        counts.ok.load(Ordering::Relaxed),
        counts.busy.load(Ordering::Relaxed),
        counts.other.load(Ordering::Relaxed)
    );
    println!("  RSS before the flood {baseline} KiB; every second (s, answered, RSS KiB):");
    for chunk in samples.chunks(6) {
        let line: Vec<String> = chunk
            .iter()
            .map(|(s, a, r)| format!("{s:>3} s {a:>6} {r:>7}"))
            .collect();
        println!("    {}", line.join(" | "));
    }
    let peak = samples.iter().map(|s| s.2).max().unwrap_or(0);
    let half = samples.get(samples.len() / 2).map_or(0, |s| s.2);
    println!(
        "  RSS peak {peak} KiB; at half time {half} KiB; at the end {} KiB",
        samples.last().map_or(0, |s| s.2)
    );
}
