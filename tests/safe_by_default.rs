//! Safe by default (issue 18), each finding of the second black-box probe against the binary:
//! the PBX's identity pinned, login slots shared fairly and their reserve kept over a restart,
//! forwarded clients counted apart, the admin token throttled, a service-wide failure budget,
//! no secret at trace level, a HEAD that uses up nothing, caps that follow the open-files limit,
//! and (issue 20) a slow store that delays no login and no ping on another connection.

use std::net::IpAddr;
use std::time::Duration;

use innoprov_actors::sim::client::AppWsClient;
use innoprov_actors::sim::devices::DevicesSim;
use innoprov_actors::sim::pbx::{PbxSim, devices_services};
use innoprov_actors::sim::phone::{get, request_from};
use innoprov_actors::sim::users::UsersSim;

use crate::common::{APP_PATH, PASSWORD, Service, config_text, idle_upgrade, idle_upgrade_with, phone};

const TOKEN: &str = "safe-by-default-token-5e1c9a7b3d2f8046";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

fn app_url(service: &Service) -> String {
    format!("http://{}{APP_PATH}", service.addr)
}

/// Devices' own URL as the PBX's Services API names it.
fn devices_http(sim: &DevicesSim) -> String {
    sim.sysclient_url()
        .replacen("ws://", "http://", 1)
        .replace("/sysclients", "/innovaphone-devices")
}

/// Another App Service's own login (case §3.3c without pbxObj): `sip` is its own App object.
fn app_service_login(name: &str, service: &Service) -> PbxSim {
    let mut sim = PbxSim::new("innoprov", &app_url(service), PASSWORD);
    sim.identity.sip = name.to_string();
    sim.identity.dn = name.to_string();
    sim.identity.info = Some(format!(
        "{{\"appobj\":\"{name}\",\"appdn\":\"{name}\",\"pbx\":\"master\",\"cn\":\"{name}\",\"apps\":[]}}"
    ));
    sim
}

/// Connects from the loopback address `from` (with `headers`, as a proxy would add them) and
/// logs in as `identity` with `password`, waiting at most `limit` for the answer.
async fn login_from(
    service: &Service,
    from: &str,
    headers: &[(&str, &str)],
    identity: &innoprov_actors::sim::client::Identity,
    password: &str,
    limit: Duration,
) -> Result<serde_json::Value, innoprov_actors::sim::client::ClientError> {
    let mut client = AppWsClient::connect_from(&service.ws_url(), ip(from), headers).await?;
    client.timeout = limit;
    client.login(identity, password).await
}

/// Whether [`login_from`] with the App password is accepted.
async fn logs_in(
    service: &Service,
    from: &str,
    headers: &[(&str, &str)],
    identity: &innoprov_actors::sim::client::Identity,
    limit: Duration,
) -> bool {
    login_from(service, from, headers, identity, PASSWORD, limit)
        .await
        .is_ok_and(|reply| reply["ok"] == true)
}

/// The PBX's App object logged in, PbxInfo sent and Services served naming `devices`: a PBX
/// the service subscribed on (and pinned, when nothing was).
async fn pbx_subscribed(service: &Service, devices: &DevicesSim) -> innoprov_actors::sim::pbx::PbxConnection {
    let mut pbx = PbxSim::new("innoprov", &app_url(service), PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("PBX login");
    pbx.send_pbx_info(&["Services"]).await.expect("PbxInfo");
    pbx.serve_services(&devices_services(&devices_http(devices)))
        .await
        .expect("the PBX is subscribed");
    pbx
}

fn write_config(dir: &std::path::Path, extra: &str, sections: &str) -> std::path::PathBuf {
    let text = config_text(dir, extra).replace("[store]", &format!("{sections}[store]"));
    let file = dir.join("config.toml");
    std::fs::write(&file, text).expect("config");
    file
}

async fn rest(service: &Service, from: &str, method: &str, path: &str, token: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let reply = request_from(
        ip(from),
        method,
        service.addr,
        &format!("/example.com/innoprov/api/v1/{path}"),
        &[("Authorization", &auth)],
    )
    .await
    .expect("REST call");
    (reply.status, reply.body)
}

#[tokio::test]
async fn another_app_object_never_becomes_the_pbx_once_the_first_is_pinned() {
    let real = DevicesSim::start().await;
    let rogue = DevicesSim::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = format!("[admin]\ntoken = \"{TOKEN}\"\n");
    let service = Service::start_in(dir.path(), &admin);
    let pbx = pbx_subscribed(&service, &real).await;
    assert_eq!(
        rest(&service, "127.0.0.1", "GET", "pbx", TOKEN).await,
        (200, r#"{"object":null,"pinned":"innoprov"}"#.to_string())
    );

    // The Users service's own App object login tries to act as the PBX.
    let rogue_login = app_service_login("users", &service);
    let try_takeover = |service: &Service| {
        let (url, rogue_login, services) = (
            service.ws_url(),
            rogue_login.clone(),
            devices_services(&devices_http(&rogue)),
        );
        async move {
            let mut conn = rogue_login
                .connect(&url)
                .await
                .expect("an App Service may log in");
            conn.send_pbx_info(&["Services"]).await.expect("PbxInfo");
            conn.client.timeout = Duration::from_millis(800);
            let subscribed = conn.client.recv_mt("SubscribeServices").await.is_ok();
            if subscribed {
                let _ = conn.serve_services(&services).await;
            }
            (subscribed, conn)
        }
    };
    let (subscribed, _rogue_conn) = try_takeover(&service).await;
    assert!(!subscribed, "another App object was subscribed as the PBX");
    assert!(
        service
            .wait_for_log("ignoring PbxInfo from \"users\"", Duration::from_secs(2))
            .await
    );
    // The real PBX goes away; a new phone still links with the real Devices only.
    drop(pbx);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let new_phone = phone(&real, 0x51);
    let mut users = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("Users login");
    let reply = users.provision(&new_phone).await.expect("reply");
    assert_eq!(reply["result"], "ok", "{reply}");
    assert!(real.connected_macs().contains(&new_phone.mac));
    assert_eq!(rogue.connected_count(), 0, "a link went to the rogue Devices");

    // The pin survives a restart.
    let (status, logs) = service.terminate();
    assert!(status.success(), "{logs}");
    let service = Service::start_in(dir.path(), &admin);
    let (subscribed, rogue_conn) = try_takeover(&service).await;
    assert!(!subscribed, "the pin was lost in the restart");
    drop(rogue_conn);
    // An administrator resets it: the next App object that sends PbxInfo is pinned.
    assert_eq!(
        rest(&service, "127.0.0.1", "DELETE", "pbx/pin", TOKEN).await.0,
        204
    );
    let _pbx = pbx_subscribed(&service, &real).await;
    assert!(
        rest(&service, "127.0.0.1", "GET", "pbx", TOKEN)
            .await
            .1
            .contains("\"pinned\":\"innoprov\"")
    );
}

#[tokio::test]
async fn five_addresses_cannot_lock_the_others_out_and_the_reserve_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(
        dir.path(),
        "",
        "[websocket]\nmax_pending_logins = 40\npending_logins_per_address = 20\n",
    );
    let service = Service::start_with_config_file(&file);
    // The PBX, from its own address, has logged in before.
    let pbx = PbxSim::new("innoprov", &app_url(&service), PASSWORD);
    assert!(
        logs_in(&service, "127.0.0.9", &[], &pbx.identity, Duration::from_secs(10)).await,
        "login"
    );

    // Five addresses open 20 idle upgrades each: 100 for 40 slots.
    let mut idle = Vec::new();
    for n in 1..=5 {
        for _ in 0..20 {
            let (status, tcp) = idle_upgrade(service.addr, &format!("127.0.1.{n}")).await;
            if status == 101 {
                idle.push(tcp);
            }
        }
    }
    // A sixth address, never seen, still gets a slot: the busiest address gives one up.
    let (status, newcomer) = idle_upgrade(service.addr, "127.0.2.1").await;
    assert_eq!(status, 101, "an address that holds nothing was locked out");
    drop((newcomer, idle));

    // After a restart the PBX keeps its reserve while 40 addresses hold one slot each.
    let (stopped, logs) = service.terminate();
    assert!(stopped.success(), "{logs}");
    let service = Service::start_with_config_file(&file);
    let mut holders = Vec::new();
    for n in 1..=40 {
        let (status, tcp) = idle_upgrade(service.addr, &format!("127.0.3.{n}")).await;
        assert_eq!(status, 101);
        holders.push(tcp);
    }
    assert_eq!(
        idle_upgrade(service.addr, "127.0.4.1").await.0,
        503,
        "nobody holds more than a newcomer would"
    );
    assert!(
        logs_in(&service, "127.0.0.9", &[], &pbx.identity, Duration::from_secs(10)).await,
        "login"
    );
    drop(holders);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text(dir.path(), "")
        .replace("[http]\n", "[http]\ntrusted_proxies = [\"127.0.0.1\"]\n")
        .replace("[store]", "[websocket]\npending_logins_per_address = 3\n[store]");
    let file = dir.path().join("config.toml");
    std::fs::write(&file, text).expect("config");
    let service = Service::start_with_config_file(&file);
    let forwarded = |client: &'static str| [("X-Forwarded-For", client)];
    let mut held = Vec::new();
    for _ in 0..3 {
        let (status, tcp) = idle_upgrade_with(service.addr, "127.0.0.1", &forwarded("198.51.100.1")).await;
        assert_eq!(status, 101);
        held.push(tcp);
    }
    assert_eq!(
        idle_upgrade_with(service.addr, "127.0.0.1", &forwarded("198.51.100.1"))
            .await
            .0,
        503,
        "per forwarded client"
    );
    let (status, other) = idle_upgrade_with(service.addr, "127.0.0.1", &forwarded("198.51.100.2")).await;
    assert_eq!(
        status, 101,
        "another client behind the same proxy has its own slots"
    );
    drop((held, other));

    // Eight wrong logins of one client slow that client, not the others behind the proxy.
    let users = UsersSim::new("innoprov", PASSWORD);
    let guesser = forwarded("198.51.100.3");
    for _ in 0..8 {
        let guess = login_from(
            &service,
            "127.0.0.1",
            &guesser,
            &users.identity,
            "guess",
            Duration::from_secs(15),
        );
        let _ = guess.await;
    }
    assert!(
        service
            .wait_for_log(
                "logins from 198.51.100.3: too many failures",
                Duration::from_secs(2)
            )
            .await,
        "the throttle names the forwarded client"
    );
    // Throttled, this answer would wait 2 s.
    assert!(
        logs_in(
            &service,
            "127.0.0.1",
            &forwarded("198.51.100.4"),
            &users.identity,
            Duration::from_millis(1500)
        )
        .await,
        "not delayed"
    );
}

#[tokio::test]
async fn wrong_admin_tokens_are_slowed_then_refused_per_address() {
    let (service, _dir) = Service::start(&format!("[admin]\ntoken = \"{TOKEN}\"\n"));
    let wrong = "0123456789abcdef0123456789abcdef";
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(rest(&service, "127.0.0.2", "GET", "phones", wrong).await.0);
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert_eq!(&statuses[10..], &[429, 429], "{statuses:?}");
    assert_eq!(
        rest(&service, "127.0.0.2", "GET", "phones", TOKEN).await.0,
        429,
        "the right token from that address waits for the minute too"
    );
    assert_eq!(
        rest(&service, "127.0.0.3", "GET", "phones", TOKEN).await.0,
        200,
        "another address is not affected"
    );
    let auth = format!("Bearer {TOKEN}");
    let metrics = request_from(
        ip("127.0.0.3"),
        "GET",
        service.addr,
        "/metrics",
        &[("Authorization", &auth)],
    )
    .await
    .expect("metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("innoprov_admin_auth_failures_total 10"),
        "{}",
        metrics.body
    );
    let logs = service.logs();
    assert_eq!(
        logs.matches("admin API: a missing or wrong token from 127.0.0.2")
            .count(),
        1,
        "once a minute: {logs}"
    );
}

#[tokio::test]
async fn past_the_failure_budget_strangers_wait_and_known_addresses_do_not() {
    let (service, _dir) = Service::start("");
    let pbx = PbxSim::new("innoprov", &app_url(&service), PASSWORD);
    assert!(
        logs_in(&service, "127.0.0.9", &[], &pbx.identity, Duration::from_secs(10)).await,
        "login"
    );
    // 104 wrong logins from 26 addresses: four each, below any one address's own limit.
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut guesses = Vec::new();
    for n in 1..=26u8 {
        for _ in 0..4 {
            let (url, identity) = (service.ws_url(), users.identity.clone());
            guesses.push(tokio::spawn(async move {
                if let Ok(mut c) = AppWsClient::connect_from(&url, IpAddr::from([127, 0, 5, n]), &[]).await {
                    c.timeout = Duration::from_secs(2);
                    let _ = c.login(&identity, "guess").await;
                }
            }));
        }
    }
    for guess in guesses {
        let _ = guess.await;
    }
    assert!(
        service
            .wait_for_log(
                "failed logins in a minute: answers to addresses that never logged in",
                Duration::from_secs(2)
            )
            .await
    );
    // A stranger's answer waits, even with the right password; the PBX's does not.
    let stranger = login_from(
        &service,
        "127.0.6.1",
        &[],
        &users.identity,
        PASSWORD,
        Duration::from_secs(2),
    );
    assert!(stranger.await.is_err(), "not delayed");
    assert!(
        logs_in(&service, "127.0.0.9", &[], &pbx.identity, Duration::from_secs(2)).await,
        "at once"
    );
}

#[tokio::test]
async fn no_secret_reaches_the_log_at_trace_level() {
    let sim = DevicesSim::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.toml");
    std::fs::write(
        &file,
        config_text(dir.path(), &crate::common::devices_config(&sim)),
    )
    .expect("config");
    let service = Service::start_with_log_level(&file, "trace");
    let phone = phone(&sim, 0x52);
    let mut users = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("login");
    assert_eq!(users.provision(&phone).await.expect("reply")["result"], "ok");
    let sysclient = sim
        .password_of(&phone.mac)
        .expect("Devices gave a sysclient password");
    let update = innoprov_actors::sim::devices::example_configs()
        .pop()
        .expect("a configuration");
    assert!(sim.push_update(&phone.mac, &update) > 0);
    let fetched = get(
        service.addr,
        &format!("/example.com/innoprov/prov/{}.cfg", phone.mac),
        &[],
    )
    .await
    .expect("the phone's file");
    assert_eq!(fetched.status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, logs) = service.terminate();
    assert!(status.success());
    assert!(logs.contains("DEBUG"), "the log is at its finest level");
    let hex = |text: &str| text.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    for (what, secret) in [
        ("app password", PASSWORD.to_string()),
        ("SIP password", phone.password.clone()),
        ("provisioning code", phone.code.clone()),
        ("provisioning code in hex", hex(&phone.code)),
        ("sysclient password", sysclient.clone()),
        ("sysclient password in hex", hex(&sysclient)),
        ("TURN password", sim.turn_password()),
    ] {
        assert!(!logs.contains(&secret), "the {what} is in the log");
    }
}

#[tokio::test]
async fn a_head_uses_up_no_one_time_enrolment() {
    let (service, _dir, sim) = crate::common::start_with_devices(&format!(
        "[provisioning]\nenrolment_once = true\n[admin]\ntoken = \"{TOKEN}\"\n"
    ))
    .await;
    let phone = phone(&sim, 0x53);
    let mut users = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("login");
    assert_eq!(users.provision(&phone).await.expect("reply")["result"], "ok");
    let path = format!("/example.com/innoprov/prov/{}.cfg", phone.mac);
    let head = request_from(
        ip("127.0.0.1"),
        "HEAD",
        service.addr,
        &path,
        &[("User-Agent", "Yealink SIP-T46U 108.86.0.20")],
    )
    .await
    .expect("HEAD");
    assert_eq!(head.status, 200);
    let first = get(
        service.addr,
        &path,
        &[("User-Agent", "Yealink SIP-T46U 108.86.0.20")],
    )
    .await
    .expect("GET");
    assert_eq!(first.status, 200, "the HEAD used the one-time hand-out up");
    assert!(first.body.contains("auto_provision.server.password"));
    let second = get(service.addr, &path, &[]).await.expect("GET again");
    assert_eq!(second.status, 401, "handed out once");
    // The audit says what each request was (pending entries included).
    let (status, audit) = rest(
        &service,
        "127.0.0.1",
        "GET",
        &format!("phones/{}/audit", phone.mac),
        TOKEN,
    )
    .await;
    assert_eq!(status, 200);
    let outcomes: Vec<String> = serde_json::from_str::<serde_json::Value>(&audit).expect("JSON")["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["file"] != "")
        .map(|e| e["outcome"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        outcomes,
        ["checked (HEAD)", "served for enrolment", "credentials required"],
        "{audit}"
    );
}

#[tokio::test]
async fn with_a_hard_limit_of_1024_files_idle_upgrades_leave_room_for_logins_and_downloads() {
    // This test holds 1,100 sockets itself.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.toml");
    std::fs::write(&file, config_text(dir.path(), "")).expect("config");
    let service = Service::start_with_hard_open_files(&file, 1024);
    assert!(
        service
            .wait_for_log(
                "open files 1024: at most 384 connections waiting for a login (96 per address)",
                Duration::from_secs(2)
            )
            .await,
        "{}",
        service.logs()
    );
    let mut idle = Vec::new();
    for n in 1..=5 {
        for _ in 0..220 {
            let (status, tcp) = idle_upgrade(service.addr, &format!("127.0.7.{n}")).await;
            if status == 101 {
                idle.push(tcp);
            }
        }
    }
    let pbx = PbxSim::new("innoprov", &app_url(&service), PASSWORD);
    assert!(
        logs_in(&service, "127.0.0.9", &[], &pbx.identity, Duration::from_secs(10)).await,
        "login"
    );
    let download = get(service.addr, "/example.com/innoprov/prov/000000000000.cfg", &[])
        .await
        .expect("a download is still answered");
    assert!(
        download.status == 404 || download.status == 200,
        "{}",
        download.status
    );
    drop(idle);
}

/// The longest of `rounds` logins (connect, challenge, login) and of `rounds` websocket pings
/// on one logged-in connection, while other clients keep the store busy.
async fn worst_login_and_ping(service: &Service, rounds: u32) -> (Duration, Duration) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let identity = PbxSim::new("innoprov", &app_url(service), PASSWORD).identity;
    let (mut login_worst, mut ping_worst) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let started = std::time::Instant::now();
        let mut client = AppWsClient::connect(&service.ws_url()).await.expect("connect");
        let reply = client.login(&identity, PASSWORD).await.expect("login");
        assert_eq!(reply["ok"], true, "{reply}");
        login_worst = login_worst.max(started.elapsed());
        let mut stream = client.into_stream();
        let started = std::time::Instant::now();
        stream
            .send(Message::Ping(b"slow-store".to_vec().into()))
            .await
            .expect("ping");
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("a pong within 5 s")
                .expect("open")
                .expect("frame");
            if matches!(frame, Message::Pong(ref payload) if &payload[..] == b"slow-store") {
                break;
            }
        }
        ping_worst = ping_worst.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (login_worst, ping_worst)
}

#[tokio::test]
async fn a_slow_store_delays_no_login_and_no_ping_on_another_connection() {
    // Every store call takes 200 ms (the test fault), and twelve clients keep calling it:
    // downloads for phones that are not stored (each one a store read) and the admin list
    // (one scan each). The actix workers carry every websocket session; had any of these calls
    // run on them, a login or a ping would wait behind 200 ms calls.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "", &format!("[admin]\ntoken = \"{TOKEN}\"\n"));
    let service = Service::start_with_env(&config, &[("INNOPROV_TEST_STORE_DELAY_MS", "200")]);
    assert!(
        service
            .logs()
            .contains("test fault: every store call waits 200 ms")
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut load = Vec::new();
    for n in 0..12u32 {
        let (stop, served, addr) = (stop.clone(), served.clone(), service.addr);
        load.push(tokio::spawn(async move {
            let from = ip(&format!("127.0.3.{}", n + 1));
            let auth = format!("Bearer {TOKEN}");
            let mut round = 0u32;
            // Bounded: stops when told, or after 200 rounds (40 s of 200 ms calls).
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && round < 200 {
                round += 1;
                let reply = if n % 3 == 0 {
                    request_from(
                        from,
                        "GET",
                        addr,
                        "/example.com/innoprov/api/v1/phones",
                        &[("Authorization", &auth)],
                    )
                    .await
                } else {
                    let path = format!("/example.com/innoprov/prov/805ec0{:06x}.cfg", n * 1000 + round);
                    request_from(from, "GET", addr, &path, &[("Authorization", "Basic dTpw")]).await
                };
                if reply.is_ok() {
                    served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    // Let the load build up: every client has a store call in flight.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (login, ping) = worst_login_and_ping(&service, 5).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    let served = served.load(std::sync::atomic::Ordering::Relaxed);
    assert!(served >= 12, "the load ran: {served} answers");
    assert!(
        login < Duration::from_millis(200) && ping < Duration::from_millis(200),
        "a login took up to {login:?} and a ping up to {ping:?} while the store answered in 200 ms; \
         a store call ran on an actix worker"
    );
}
