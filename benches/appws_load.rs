//! AppWebsocket load harness (issue 2 targets): logins per second, durably acknowledged
//! ProvisioningPhone per second over many concurrent connections, and the service's RSS per
//! idle logged-in session. It starts the release binary as its own process (so its RSS is its
//! own) on a loopback port, and drives it with the simulators in `innoprov_actors::sim`.
//!
//! `cargo bench --bench appws_load` (quick), `INNOPROV_BENCH=full cargo bench --bench appws_load`.
//! `INNOPROV_BENCH_PHASE=logins` (connect + login + close only, `INNOPROV_BENCH_LOGINS` of
//! them) or `=phones` runs only that part, to profile one of them: `perf record -a -g` beside
//! it, then `perf report --comm innoprov`.
//! Every loop is bounded in count and time, and only 127.0.0.1 is contacted.

use std::sync::Arc;
use std::time::Duration;

use innoprov_actors::sim::client::AppWsClient;
use innoprov_actors::sim::devices::DevicesSim;
use innoprov_actors::sim::users::UsersSim;

mod support;

use support::{PASSWORD, ServiceProcess, provision_phones, rate, take};

struct Sizes {
    connect_logins: u32,
    relogins: u32,
    login_concurrency: u32,
    phones: u32,
    phone_connections: u32,
    phone_window: u32,
    idle_sessions: u32,
}

/// ProvisioningPhone passes, each with new phones.
const PHONE_PASSES: u32 = 3;

fn sizes() -> Sizes {
    if std::env::var("INNOPROV_BENCH").as_deref() == Ok("full") {
        Sizes {
            connect_logins: 20_000,
            relogins: 100_000,
            login_concurrency: 64,
            // The most one process' open files allow here (each pass keeps its phones linked).
            phones: 18_000,
            phone_connections: 32,
            phone_window: 32,
            idle_sessions: 5_000,
        }
    } else {
        Sizes {
            connect_logins: 5_000,
            relogins: 20_000,
            login_concurrency: 64,
            phones: 10_000,
            phone_connections: 16,
            phone_window: 32,
            idle_sessions: 2_000,
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let sizes = sizes();
    let phase = std::env::var("INNOPROV_BENCH_PHASE").unwrap_or_default();
    // ProvisioningPhone is answered ok once the phone's Devices configuration is stored too, so
    // a Devices simulator takes part; its connect gate is opened wide to measure innoprov.
    let sim = DevicesSim::start().await;
    // ProvisioningPhone is measured first, on services of its own (each pass leaves its phones
    // linked to Devices, and three passes' sockets would pass the file limit).
    let mut phone_rates = Vec::new();
    for _ in 0..PHONE_PASSES {
        if phase != "logins" {
            phone_rates.push(provisioning_pass(&sizes).await);
        }
    }
    phone_rates.sort_by(f64::total_cmp);
    if phase == "phones" {
        return print_phones(&sizes, &phone_rates);
    }
    let service = ServiceProcess::start(
        &format!(
            "[devices]\nsysclient_url = \"{}\"\nconnects_per_second = 20000\n",
            sim.sysclient_url()
        ),
        "warn,innoprov_actors::service=info",
    );
    let url = service.ws_url();
    let users = UsersSim::new("innoprov", PASSWORD);

    // 1. Connect + challenge + login + close, many at once.
    let (u, us) = (url.clone(), users.clone());
    let total = u32::try_from(support::env_u64(
        "INNOPROV_BENCH_LOGINS",
        sizes.connect_logins.into(),
    ))
    .unwrap_or(sizes.connect_logins);
    let connect_rate = rate(total, sizes.login_concurrency, move |c| {
        let (url, users) = (u.clone(), us.clone());
        async move {
            while take(&c, total).is_some() {
                let conn = users.connect(&url).await.expect("login");
                drop(conn);
            }
        }
    })
    .await;
    if phase == "logins" {
        println!(
            "  connect+login+close     {connect_rate:>9.0} logins/s   ({total} logins, {} concurrent)",
            sizes.login_concurrency
        );
        return;
    }

    // 2. Logins on open connections: AppChallenge + AppLogin again and again.
    let (u, us) = (url.clone(), users.clone());
    let total = sizes.relogins;
    let relogin_rate = rate(total, sizes.login_concurrency, move |c| {
        let (url, users) = (u.clone(), us.clone());
        async move {
            let mut client = AppWsClient::connect(&url).await.expect("connect");
            while take(&c, total).is_some() {
                let reply = client
                    .login(&users.identity, &users.password)
                    .await
                    .expect("login");
                assert_eq!(reply["ok"], true);
            }
        }
    })
    .await;

    // 4. RSS per idle logged-in session.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = service.rss_kib();
    let mut idle = Vec::with_capacity(sizes.idle_sessions as usize);
    for _ in 0..sizes.idle_sessions {
        idle.push(users.connect(&url).await.expect("idle login"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = service.rss_kib();
    let per_session = (after.saturating_sub(before)) as f64 / f64::from(sizes.idle_sessions);
    drop(idle);

    drop(service);
    println!(
        "appws_load ({} run, 2 client threads, service = release binary, loopback)",
        if sizes.relogins > 20_000 { "full" } else { "quick" }
    );
    println!(
        "  connect+login+close     {:>9.0} logins/s   ({} logins, {} concurrent)",
        connect_rate, sizes.connect_logins, sizes.login_concurrency
    );
    println!(
        "  login on open sockets   {:>9.0} logins/s   ({} logins, {} connections)",
        relogin_rate, sizes.relogins, sizes.login_concurrency
    );
    print_phones(&sizes, &phone_rates);
    println!(
        "  RSS per idle session    {:>9.1} KiB        ({} sessions: {} KiB -> {} KiB)",
        per_session, sizes.idle_sessions, before, after
    );
}

/// The ProvisioningPhone passes' line: the median pass as phones/s and as the time the pass's
/// phones took end to end.
fn print_phones(sizes: &Sizes, rates: &[f64]) {
    let Some(median) = rates.get(rates.len() / 2) else {
        return;
    };
    println!(
        "  ProvisioningPhone ok    {median:>9.0} phones/s   ({} phones end to end in {:.2} s, median of {PHONE_PASSES} passes, {:.0}-{:.0}/s; {} connections x {} in flight, gate opened, ok after record + Devices configuration flushed)",
        sizes.phones,
        f64::from(sizes.phones) / median,
        rates[0],
        rates[rates.len() - 1],
        sizes.phone_connections,
        sizes.phone_window
    );
}

/// Phase 3: ProvisioningPhone for `sizes.phones` new phones on a new service and Devices simulator,
/// each acknowledged only once durably stored, a window of requests in flight per connection;
/// phones/s. On two cores shared with the client and the simulator one pass varies by a fifth,
/// so the figure is the median of [`PHONE_PASSES`].
async fn provisioning_pass(sizes: &Sizes) -> f64 {
    let sim = DevicesSim::start().await;
    let codes: Arc<Vec<String>> = Arc::new((0..sizes.phones).map(|_| sim.issue_code()).collect());
    let service = ServiceProcess::start(
        &format!(
            "[devices]\nsysclient_url = \"{}\"\nconnects_per_second = 20000\n",
            sim.sysclient_url()
        ),
        "warn,innoprov_actors::service=info",
    );
    let phones_per_second = provision_phones(
        &service.ws_url(),
        codes,
        0,
        sizes.phones,
        sizes.phone_connections,
        sizes.phone_window,
    )
    .await;
    drop(service);
    phones_per_second
}
