//! A hostile peer against the release binary, over loopback: password guessing from one
//! address, connections that never log in, and the open-files limit.

use std::time::{Duration, Instant};

use innoprov_actors::sim::client::AppWsClient;
use innoprov_actors::sim::pbx::PbxSim;
use innoprov_actors::sim::users::UsersSim;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{APP_PATH, PASSWORD, Service, config_text, idle_upgrade};

#[tokio::test]
async fn password_guessing_from_one_address_is_slowed_and_a_correct_login_still_works() {
    let (service, _dir) = Service::start("");
    let url = service.ws_url();
    let users = UsersSim::new("innoprov", PASSWORD);
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (url, identity, answered) = (url.clone(), users.identity.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < Duration::from_secs(3) {
                let Ok(mut c) = AppWsClient::connect(&url).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                c.timeout = Duration::from_secs(10);
                if let Ok(reply) = c.login(&identity, "guess").await
                    && reply.get("ok").is_none()
                {
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let guesses = answered.load(std::sync::atomic::Ordering::Relaxed);
    // Unthrottled, eight connections answer thousands of guesses in three seconds.
    assert!(guesses < 30, "{guesses} guesses answered in ~3 s");
    assert!(
        service
            .wait_for_log("logins from 127.0.0.1: too many failures", Duration::from_secs(1))
            .await
    );
    // The right password from that very address is accepted (after the same wait).
    let mut good = AppWsClient::connect(&url).await.expect("connect");
    good.timeout = Duration::from_secs(15);
    assert_eq!(
        good.login(&users.identity, PASSWORD).await.expect("login")["ok"],
        true
    );
}

#[tokio::test]
async fn connections_that_never_log_in_are_capped_with_a_reserve_for_the_pbx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_text(dir.path(), "").replace(
        "[store]",
        "[websocket]\nmax_pending_logins = 4\npending_logins_per_address = 3\n[store]",
    );
    let file = dir.path().join("config.toml");
    std::fs::write(&file, config).expect("config");
    let service = Service::start_with_config_file(&file);
    // The PBX (127.0.0.1) has logged in once.
    let pbx = PbxSim::new(
        "innoprov",
        &format!("http://{}{APP_PATH}", service.addr),
        PASSWORD,
    );
    let first = pbx.connect(&service.ws_url()).await.expect("PBX login");
    // One address may hold three idle connections, not four.
    let mut idle = Vec::new();
    for n in 0..3 {
        let (status, tcp) = idle_upgrade(service.addr, "127.0.0.2").await;
        assert_eq!(status, 101, "idle connection {n}");
        idle.push(tcp);
    }
    assert_eq!(
        idle_upgrade(service.addr, "127.0.0.2").await.0,
        503,
        "per address"
    );
    let (status, tcp) = idle_upgrade(service.addr, "127.0.0.3").await;
    assert_eq!(status, 101);
    idle.push(tcp);
    // The cap is reached. A newcomer takes the oldest slot of the address holding the most
    // (127.0.0.2: 3), whose connection the service closes; again while that address holds
    // more than the newcomer would.
    for newcomer in ["127.0.0.4", "127.0.0.5"] {
        let (status, tcp) = idle_upgrade(service.addr, newcomer).await;
        assert_eq!(status, 101, "{newcomer} takes a slot of 127.0.0.2");
        idle.push(tcp);
    }
    let mut closed = 0;
    for tcp in idle.iter_mut().take(3) {
        let mut byte = [0u8; 64];
        // The evicted connections get a close frame, then EOF; the kept one stays silent.
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut byte)).await
            && n > 0
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 2, "127.0.0.2's two oldest connections were closed");
    // Every address holds one now: nobody holds more than a newcomer would.
    assert_eq!(
        idle_upgrade(service.addr, "127.0.0.6").await.0,
        503,
        "service-wide"
    );
    // The PBX reconnecting still gets in, from the reserve.
    drop(first);
    pbx.connect(&service.ws_url())
        .await
        .expect("the PBX logs in while the cap is reached");
    // Downloads are not websocket logins: unaffected.
    let download = innoprov_actors::sim::phone::get(service.addr, "/example.com/innoprov/prov/x.cfg", &[])
        .await
        .expect("GET");
    assert_eq!(download.status, 404);
    // A closed idle connection gives its place back (once the service has seen it close).
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, tcp) = idle_upgrade(service.addr, "127.0.0.6").await;
        if status == 101 {
            drop(tcp);
            break;
        }
        assert!(Instant::now() < deadline, "the places did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_open_files_limit_is_raised_to_the_hard_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.toml");
    std::fs::write(&file, config_text(dir.path(), "")).expect("config");
    let service = Service::start_with_open_files(&file, 256);
    assert!(
        service
            .wait_for_log("open files: soft limit", Duration::from_secs(5))
            .await
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", service.pid())).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft = hard: {line}");
    assert_ne!(numbers[0], "256");
    assert!(
        service.logs().contains("open files: soft limit 256 raised to"),
        "{}",
        service.logs()
    );
}

async fn provision_one(service: &Service, sim: &innoprov_actors::sim::devices::DevicesSim, mac: &str) {
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let phone = innoprov_actors::sim::users::SimPhone {
        mac: mac.to_string(),
        code: sim.issue_code(),
        ..innoprov_actors::sim::users::SimPhone::numbered(40)
    };
    assert_eq!(conn.provision(&phone).await.expect("reply")["result"], "ok");
}

#[tokio::test]
async fn a_phone_with_its_credentials_is_served_behind_an_address_over_its_miss_limit() {
    use innoprov_actors::sim::phone::{Auth, PhoneSim};
    let (service, _dir, sim) =
        crate::common::start_with_devices("[provisioning]\nmisses_per_minute = 3\n").await;
    provision_one(&service, &sim, "805ec0000040").await;
    let phone = PhoneSim {
        addr: service.addr,
        user_agent: "Yealink SIP-T46U 108.86.0.90 80:5e:c0:00:00:40".into(),
    };
    let path = "/example.com/innoprov/prov/805ec0000040.cfg";
    let first = phone.fetch(path, &Auth::None, None).await.expect("GET");
    assert_eq!(first.status, 200);
    let (user, password) = yealink_credentials(&first.body);
    let credentials = Auth::Basic(user.clone(), password);
    // Someone else behind the same address scans.
    for n in 0..5u32 {
        phone
            .fetch(
                &format!("/example.com/innoprov/prov/805ec0ff{n:04x}.cfg"),
                &Auth::None,
                None,
            )
            .await
            .expect("GET");
    }
    assert_eq!(
        phone.fetch(path, &Auth::None, None).await.expect("GET").status,
        429
    );
    assert_eq!(
        phone.fetch(path, &credentials, None).await.expect("GET").status,
        200
    );
    let wrong = Auth::Basic(user, "guess".into());
    assert_eq!(phone.fetch(path, &wrong, None).await.expect("GET").status, 429);
}

#[tokio::test]
async fn refused_downloads_of_a_phone_are_logged_once_a_minute() {
    use innoprov_actors::sim::phone::{Auth, PhoneSim};
    let (service, _dir, sim) = crate::common::start_with_devices(
        "[provisioning]\nenrolment_window_minutes = 0\nmisses_per_minute = 1000\n",
    )
    .await;
    provision_one(&service, &sim, "805ec0000041").await;
    let phone = PhoneSim {
        addr: service.addr,
        user_agent: "Yealink SIP-T46U".into(),
    };
    for _ in 0..200 {
        let r = phone
            .fetch("/example.com/innoprov/prov/805ec0000041.cfg", &Auth::None, None)
            .await
            .expect("GET");
        assert_eq!(r.status, 401);
    }
    let logs = service.logs();
    let info_lines = logs
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains("credentials required"))
        .count();
    assert_eq!(info_lines, 1, "200 refusals, one info line");
}

#[tokio::test]
async fn the_store_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (service, dir) = Service::start("");
    let (status, _) = service.terminate();
    assert!(status.success());
    let store = dir.path().join("store");
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&store), 0o700);
    let mut files = 0;
    for entry in std::fs::read_dir(&store).expect("store") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            files += 1;
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    assert!(files >= 2, "sled's files and seal.key");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// A peer that never logs in announces a 1 GiB frame and streams data after it: the service
/// closes with 1009 at the header and its memory does not grow with what was sent.
#[tokio::test]
async fn a_huge_frame_header_closes_at_once_with_1009_and_costs_no_memory() {
    let (service, _dir) = Service::start("");
    let before = rss_kib(service.pid());
    let (status, mut tcp) = idle_upgrade(service.addr, "127.0.0.1").await;
    assert_eq!(status, 101);
    // FIN + text, masked, 64-bit length 2^30.
    let mut header = vec![0x81u8, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.expect("header");
    let chunk = vec![0x5au8; 1 << 20];
    let mut sent = 0usize;
    for _ in 0..64 {
        match tokio::time::timeout(Duration::from_secs(2), tcp.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            _ => break,
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    // A close frame (0x88) whose status is 1009 (0x03f1).
    assert!(
        answer
            .windows(4)
            .any(|w| w[0] == 0x88 && w[2] == 0x03 && w[3] == 0xf1),
        "close 1009 expected, got {:02x?}",
        &answer[..answer.len().min(16)]
    );
    let after = rss_kib(service.pid());
    assert!(
        after < before + 16 * 1024,
        "RSS {before} KiB -> {after} KiB after {} MiB sent",
        sent >> 20
    );
}

/// Starts the service behind a "proxy" at 127.0.0.1, so tests can speak as any client address.
async fn behind_proxy(
    extra_provisioning: &str,
) -> (
    Service,
    tempfile::TempDir,
    innoprov_actors::sim::devices::DevicesSim,
) {
    let sim = innoprov_actors::sim::devices::DevicesSim::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_text(
        dir.path(),
        &format!(
            "{}[provisioning]\n{extra_provisioning}",
            crate::common::devices_config(&sim)
        ),
    )
    .replace("[http]\n", "[http]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    let file = dir.path().join("config.toml");
    std::fs::write(&file, config).expect("config");
    (Service::start_with_config_file(&file), dir, sim)
}

async fn fetch_as(
    service: &Service,
    client: &str,
    path: &str,
    authorization: Option<&str>,
) -> innoprov_actors::sim::phone::Response {
    let mut headers = vec![
        ("X-Forwarded-For", client),
        ("User-Agent", "Yealink SIP-T46U 108.86.0.90"),
    ];
    if let Some(a) = authorization {
        headers.push(("Authorization", a));
    }
    innoprov_actors::sim::phone::get(service.addr, path, &headers)
        .await
        .expect("GET")
}

/// The provisioning credentials a Yealink file gives the phone.
fn yealink_credentials(body: &str) -> (String, String) {
    let value = |key: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .expect("key")
            .to_string()
    };
    (
        value("static.auto_provision.server.username"),
        value("static.auto_provision.server.password"),
    )
}

fn basic(body: &str) -> String {
    use base64::Engine;
    let (user, password) = yealink_credentials(body);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn who_got_a_phones_secrets_stays_in_the_audit_and_a_foreign_enrolment_is_flagged() {
    let (service, dir, sim) = behind_proxy("enrolment_once = true\nmisses_per_minute = 1000\n").await;
    provision_one(&service, &sim, "805ec0000042").await;
    let path = "/example.com/innoprov/prov/805ec0000042.cfg";
    // A thief on 198.51.100.66 takes the file inside the window...
    let stolen = fetch_as(&service, "198.51.100.66", path, None).await;
    assert_eq!(stolen.status, 200);
    // ...then buries it under 150 refused requests.
    for _ in 0..150 {
        assert_eq!(fetch_as(&service, "198.51.100.66", path, None).await.status, 401);
    }
    // The real phone on 10.1.2.3 uses the credentials: enrolled, flagged.
    let authorization = basic(&stolen.body);
    assert_eq!(
        fetch_as(&service, "10.1.2.3", path, Some(&authorization))
            .await
            .status,
        200
    );
    assert!(
        service
            .wait_for_log(
                "phone 805ec0000042: enrolled from 10.1.2.3, but its file was handed out to 198.51.100.66",
                Duration::from_secs(2)
            )
            .await
    );
    let (status, _) = service.terminate();
    assert!(status.success());
    let (store, _) = crate::common::open_store(dir.path());
    let audit = innoprov::Store::audit(&store, &"805ec0000042".parse().expect("mac"), 1000).expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.outcome == "served for enrolment" && e.client.starts_with("198.51.100.66")),
        "the theft is still in the audit"
    );
    assert!(
        audit
            .iter()
            .any(|e| e.outcome == "enrolled (file was handed out to 198.51.100.66)")
    );
    assert!(audit.len() <= 100 + innoprov::provisioning::ENROLMENT_ENTRIES);
}

#[tokio::test]
async fn secrets_without_credentials_only_to_the_phone_networks() {
    let (service, _dir, sim) = behind_proxy("enrol_from = [\"10.0.0.0/8\"]\nmisses_per_minute = 3\n").await;
    provision_one(&service, &sim, "805ec0000043").await;
    let path = "/example.com/innoprov/prov/805ec0000043.cfg";
    let refused = fetch_as(&service, "198.51.100.66", path, None).await;
    assert_eq!(
        refused.status, 401,
        "a known phone: credentials required, with a challenge"
    );
    assert!(refused.headers.contains_key("www-authenticate"));
    assert!(!refused.body.contains("account.1.password"));
    for _ in 0..3 {
        fetch_as(&service, "198.51.100.66", path, None).await;
    }
    assert_eq!(
        fetch_as(&service, "198.51.100.66", path, None).await.status,
        429,
        "refused enrolments count as misses"
    );
    assert_eq!(fetch_as(&service, "10.9.8.7", path, None).await.status, 200);
}

/// Re-provisioning a working phone with a code Devices rejects (a stolen or mistyped one)
/// leaves the phone as it was: its file, its credentials, its Devices link.
#[tokio::test]
async fn a_rejected_reprovisioning_leaves_the_working_phone_alone() {
    use innoprov_actors::sim::users::SimPhone;
    let (service, _dir, sim) = crate::common::start_with_devices("").await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let mac = "805ec0000044";
    let owner = SimPhone {
        mac: mac.into(),
        code: sim.issue_code(),
        ..SimPhone::numbered(44)
    };
    assert_eq!(conn.provision(&owner).await.expect("reply")["result"], "ok");
    let path = format!("/example.com/innoprov/prov/{mac}.cfg");
    let ua = [("User-Agent", "Yealink SIP-T46U 108.86.0.90")];
    let before = innoprov_actors::sim::phone::get(service.addr, &path, &ua)
        .await
        .expect("GET");
    assert_eq!(before.status, 200);
    let attacker = SimPhone {
        mac: mac.into(),
        code: "111111111111".into(),
        username: "mallory".into(),
        password: "stolen-line".into(),
        ..SimPhone::numbered(45)
    };
    let reply = conn.provision(&attacker).await.expect("reply");
    assert_eq!(reply["result"], "failed", "{reply}");
    let after = innoprov_actors::sim::phone::get(service.addr, &path, &ua)
        .await
        .expect("GET");
    assert_eq!(after.status, 200);
    assert!(
        after
            .body
            .contains(&format!("account.1.user_name = {}", owner.username)),
        "{}",
        after.body
    );
    assert!(
        after
            .body
            .contains(&format!("account.1.password = {}", owner.password))
    );
    assert!(!after.body.contains("mallory"));
    // The stored phone is linked again with its own credentials and takes updates.
    assert!(
        service
            .wait_for_log(
                &format!("phone {mac}: re-provisioning failed"),
                Duration::from_secs(5)
            )
            .await
    );
    // An update pushed while the relinked phone is still collecting its configuration is
    // overwritten by it (Devices sends the whole set): push until it is stored.
    let update = r#"{"id":3,"type":"PHONE","gk1":"pbx9.example.com"}"#;
    let stored = format!("phone {mac}: configuration stored (4 items, version 2)");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        sim.push_update(mac, update);
        if service.wait_for_log(&stored, Duration::from_secs(1)).await {
            break;
        }
        assert!(Instant::now() < deadline, "{}", service.logs());
    }
}

/// A Digest answer is good once, and only from the address its nonce was issued to.
#[tokio::test]
async fn digest_answers_cannot_be_replayed_or_used_from_elsewhere() {
    let (service, _dir, sim) = behind_proxy("").await;
    provision_one(&service, &sim, "805ec0000046").await;
    let path = "/example.com/innoprov/prov/805ec0000046.cfg";
    let first = fetch_as(&service, "10.0.0.5", path, None).await;
    assert_eq!(first.status, 200);
    let (user, password) = yealink_credentials(&first.body);
    // Enrol with Basic, so that credential-less requests are challenged from now on.
    let basic = basic(&first.body);
    assert_eq!(
        fetch_as(&service, "10.0.0.5", path, Some(&basic)).await.status,
        200
    );
    let challenge = |client: &'static str| {
        let service = &service;
        async move {
            let r = fetch_as(service, client, path, None).await;
            assert_eq!(r.status, 401);
            r.headers["www-authenticate"]
                .lines()
                .find(|c| c.starts_with("Digest") && c.contains("MD5"))
                .expect("an MD5 challenge")
                .to_string()
        }
    };
    let answer = |c: &str| {
        innoprov_actors::sim::phone::digest_authorization(c, &user, &password, path).expect("answer")
    };
    // Issued to 10.0.0.5, answered from 10.0.0.6: refused.
    let elsewhere = answer(&challenge("10.0.0.5").await);
    assert_eq!(
        fetch_as(&service, "10.0.0.6", path, Some(&elsewhere))
            .await
            .status,
        401
    );
    // Answered from the right address: served once; the same answer again is a replay.
    let good = answer(&challenge("10.0.0.5").await);
    assert_eq!(
        fetch_as(&service, "10.0.0.5", path, Some(&good)).await.status,
        200
    );
    assert_eq!(
        fetch_as(&service, "10.0.0.5", path, Some(&good)).await.status,
        401,
        "replay"
    );
}

/// Behind a trusted proxy, a request whose forwarding headers name no usable client is refused
/// (400) and counted against nobody, rather than against the proxy.
#[tokio::test]
async fn unusable_forwarding_headers_are_refused_not_blamed_on_the_proxy() {
    let (service, _dir, _sim) = behind_proxy("misses_per_minute = 2\n").await;
    let path = "/example.com/innoprov/prov/805ec0ffff01.cfg";
    let long = format!("192.0.2.1{}", ", 192.0.2.1".repeat(300));
    for bad in ["unknown", "198.51.100.1, _hidden", long.as_str()] {
        let r = innoprov_actors::sim::phone::get(service.addr, path, &[("X-Forwarded-For", bad)])
            .await
            .expect("GET");
        assert_eq!(r.status, 400, "{bad:.40}");
    }
    // The proxy's own address was not pushed over the miss limit by them.
    let r = fetch_as(&service, "198.51.100.9", path, None).await;
    assert_eq!(r.status, 404);
}

/// A service whose Devices takes connections and never answers (every ProvisioningPhone stays
/// in progress until `timeout_secs`), and the service configured to use it.
async fn stalled_devices(
    timeout_secs: u32,
) -> (
    innoprov_actors::sim::devices::DevicesSim,
    Service,
    tempfile::TempDir,
) {
    let stalled = innoprov_actors::sim::devices::DevicesSim::start().await;
    stalled.set_stall(true);
    let config = crate::common::devices_config(&stalled).replace(
        "provisioning_timeout_secs = 10",
        &format!("provisioning_timeout_secs = {timeout_secs}"),
    );
    let (service, dir) = Service::start(&config);
    (stalled, service, dir)
}

/// Sends `count` ProvisioningPhone for phones numbered from `first`, without waiting.
async fn send_provisionings(
    conn: &mut innoprov_actors::sim::users::UsersConnection,
    devices: &innoprov_actors::sim::devices::DevicesSim,
    first: u32,
    count: u32,
) {
    for n in 0..count {
        let phone = innoprov_actors::sim::users::SimPhone {
            code: devices.issue_code(),
            ..innoprov_actors::sim::users::SimPhone::numbered(first + n)
        };
        let text = conn
            .provisioning_text(&phone, Some(&n.to_string()))
            .expect("text");
        conn.client.send_raw(&text).await.expect("send");
    }
}

#[tokio::test]
async fn a_flood_of_provisioning_phone_is_answered_busy_past_the_bound_and_keeps_nothing() {
    let (stalled, service, dir) = stalled_devices(3).await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let total = 600u32;
    send_provisionings(&mut conn, &stalled, 0x4000, total).await;
    // Past 512 in progress on one connection, at once: busy. The rest fail at the timeout.
    let (mut busy, mut timed_out) = (0, 0);
    conn.client.timeout = Duration::from_secs(15);
    for _ in 0..total {
        let reply = conn
            .client
            .recv_mt("ProvisioningPhoneResult")
            .await
            .expect("every message answered");
        assert_eq!(reply["result"], "failed", "{reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        if error.starts_with("busy: too many phones in progress on this connection") {
            assert_eq!(timed_out, 0, "busy answers come first, at once");
            busy += 1;
        } else {
            assert!(error.contains("nothing of it is kept"), "{reply}");
            timed_out += 1;
        }
    }
    assert_eq!((busy, timed_out), (total - 512, 512));
    // The connection is usable again: its places were given back.
    let again = innoprov_actors::sim::users::SimPhone {
        code: stalled.issue_code(),
        ..innoprov_actors::sim::users::SimPhone::numbered(0x5000)
    };
    let text = conn.provisioning_text(&again, Some("again")).expect("text");
    conn.client.send_raw(&text).await.expect("send");
    let reply = conn
        .client
        .recv_mt("ProvisioningPhoneResult")
        .await
        .expect("reply");
    assert!(
        reply["error"].as_str().is_some_and(|e| e.contains("within 3 s")),
        "not busy: {reply}"
    );
    let (status, _) = service.terminate();
    assert!(status.success());
    let (store, _) = crate::common::open_store(dir.path());
    assert!(
        innoprov::Store::phones(&store).expect("phones").is_empty(),
        "nothing kept"
    );
}

#[tokio::test]
async fn the_service_wide_bound_holds_and_every_message_taken_is_answered_even_all_at_once() {
    // 10 connections × 450 ProvisioningPhone to a Devices that never answers: 4,096 are taken
    // (the service-wide bound), 404 are answered busy at once, and the 4,096 all time out
    // together: every answer reaches its connection (none is dropped for a full queue).
    let (stalled, service, _dir) = stalled_devices(4).await;
    let per_connection = 450u32;
    let mut conns = Vec::new();
    for c in 0..10u32 {
        let mut conn = UsersSim::new("innoprov", PASSWORD)
            .connect(&service.ws_url())
            .await
            .expect("users");
        send_provisionings(&mut conn, &stalled, 0x10000 + c * 1000, per_connection).await;
        conns.push(conn);
    }
    let (mut busy, mut timed_out) = (0, 0);
    for conn in &mut conns {
        conn.client.timeout = Duration::from_secs(20);
        for _ in 0..per_connection {
            let reply = conn
                .client
                .recv_mt("ProvisioningPhoneResult")
                .await
                .expect("every message answered on a live connection");
            let error = reply["error"].as_str().unwrap_or_default();
            if error.starts_with("busy: too many phones in progress;") {
                busy += 1;
            } else {
                assert!(error.contains("within 4 s; nothing of it is kept"), "{reply}");
                timed_out += 1;
            }
        }
    }
    assert_eq!(
        (timed_out, busy),
        (
            innoprov_actors::edge::app_session::MAX_PROVISIONINGS_IN_FLIGHT,
            4500 - 4096
        )
    );
    assert!(!service.logs().contains("dropping the connection"));
}
