//! Each vendor's phone emulator (sim::handset, written from docs/vendors) walks its boot
//! sequence against the real binary over HTTP and HTTPS: enrolment, the credentialed re-check at
//! the URL the file itself gives, a Devices update, the vendor's NOTIFY (challenged where the
//! file says so) and the fetch that sees the change. Plus the office behind one address, the
//! operator's vendor catalogue, and a reverse proxy.

use base64::Engine;
use std::collections::HashMap;
use std::time::Duration;

use innoprov_actors::sim::devices::DevicesSim;
use innoprov_actors::sim::handset::{Handset, HttpClient, SipListener, Url};
use innoprov_actors::sim::phone::{Auth, PhoneSim};
use innoprov_actors::sim::users::{SimPhone, UsersConnection, UsersSim};

use crate::common::{PASSWORD, Service, devices_config, start_with_devices};

const PROV: &str = "/example.com/innoprov/prov";

fn tls_section() -> String {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    format!(
        "[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
        fixtures.join("cert.pem").display(),
        fixtures.join("key.pem").display()
    )
}

fn client(https: bool) -> HttpClient {
    HttpClient::new(
        "",
        https.then(|| HttpClient::tls_trusting(include_bytes!("fixtures/cert.pem"))),
    )
}

/// The URL DHCP option 66 would give the phone.
fn dhcp_url(service: &Service, https: bool) -> Url {
    let text = match (https, service.https_addr) {
        (true, Some(addr)) => format!("https://localhost:{}{PROV}/", addr.port()),
        _ => format!("http://127.0.0.1:{}{PROV}/", service.addr.port()),
    };
    Url::parse(&text).expect("url")
}

async fn provision(sim: &DevicesSim, conn: &mut UsersConnection, mac: &str, n: u32) -> SimPhone {
    let phone = SimPhone {
        mac: mac.to_string(),
        code: sim.issue_code(),
        ..SimPhone::numbered(n)
    };
    let reply = conn.provision(&phone).await.expect("provision");
    assert_eq!(reply["result"], "ok", "{reply}");
    phone
}

fn mac_of(vendor: &str, n: u32) -> String {
    let oui = match vendor {
        "yealink" => "805ec0",
        "snom" => "000413",
        "grandstream" => "000b82",
        "poly" => "0004f2",
        "gigaset" => "7c2f80",
        // A P-series in Snom's block: the file name and User-Agent tell it from a Snom.
        "gigaset_p" => "000413",
        _ => "0c383e",
    };
    format!("{oui}{n:06x}")
}

async fn walk(vendor: &str, https: bool) {
    // The operator's NOTIFY port. The phone learns it from its file only: the emulator binds
    // where the file says, so a file that leaves the port out (a Snom then picks a random
    // one) loses every resync.
    // A Gigaset base listens on 5060 and no file can move it: innoprov's default port is
    // left as it is, and the emulator binds 5060 (the Gigaset tests run one at a time).
    let (notify_port, notify_line) = if vendor == "gigaset" {
        (5060, String::new())
    } else {
        let port = SipListener::bind().await.expect("a free port").port();
        (port, format!("notify_port = {port}\n"))
    };
    let tls = if https { tls_section() } else { String::new() };
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let (service, _dir, sim) = start_with_devices(&format!(
        "[provisioning]\n{notify_line}enrolment_once = true\ntrust_anchors = \"{}\"\n{tls}",
        fixtures.join("pbx-ca.pem").display()
    ))
    .await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let mac = mac_of(vendor, 0x10 + u32::from(https));
    let user = provision(&sim, &mut conn, &mac, 7).await;
    let dhcp = dhcp_url(&service, https);
    let mut phone = Handset::new(vendor, &mac, dhcp.clone(), client(https)).expect("vendor");

    // Boot inside the enrolment window.
    phone
        .provision()
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", phone.http().requests()));
    let registration = phone.registration().unwrap_or_else(|e| panic!("{e}"));
    // What a real phone takes from its file: where it listens for the NOTIFY, how often it
    // checks again, and that a DHCP-offered server no longer moves it.
    assert_eq!(phone.sip_port(), Some(notify_port), "{vendor}: its SIP port");
    assert_eq!(phone.recheck_minutes(), Some(60), "{vendor}: periodic re-check");
    match &phone {
        // No source names a parameter that stops DHCP option 114 from moving a Gigaset base
        // (docs/vendors/gigaset.md): the file closes SIP multicast discovery, the one channel
        // it can.
        Handset::Gigaset(base) => {
            assert!(!phone.ignores_dhcp_server());
            assert!(
                base.multicast_discovery_off(),
                "gigaset: SIP multicast still open"
            );
        }
        _ => assert!(
            phone.ignores_dhcp_server(),
            "{vendor}: DHCP option 66 still moves it"
        ),
    }
    let sip = phone.sip_listener().await.expect("the phone's SIP port");
    // The PBX's certificate (signed by the private CA of provisioning.trust_anchors) is
    // trusted where the vendor documents how a file installs a CA; a certificate of another
    // CA for the same name is not.
    if ["yealink", "snom", "gigaset_p", "grandstream", "poly"].contains(&vendor) {
        phone
            .verify_server(include_bytes!("fixtures/pbx-cert.pem"), "pbx.example.com")
            .unwrap_or_else(|e| panic!("{vendor}: {e}"));
        assert!(
            phone
                .verify_server(include_bytes!("fixtures/pbx-cert-foreign.pem"), "pbx.example.com")
                .is_err(),
            "{vendor}: another CA's certificate is trusted"
        );
    }
    assert_eq!(
        (registration.server.as_str(), registration.port, registration.tls),
        ("pbx.example.com", 5061, true),
        "{vendor}: registrar gk1 over TLS"
    );
    assert_eq!(registration.user, user.username);
    assert_eq!(registration.auth_user, user.username);
    assert_eq!(
        registration.password, user.password,
        "{vendor}: the decrypted user password"
    );
    assert_eq!(registration.display_name, user.cn);
    let boot = phone.http().requests();
    let version_after_boot = match &phone {
        Handset::Fanvil(f) => f.version,
        _ => 0.0,
    };
    assert!(
        boot.iter().all(|(_, status)| *status == 200 || *status == 404),
        "{vendor}: {boot:?}"
    );

    // The file keeps the phone on innoprov (same scheme and place) with its own credentials.
    let (server, credentials) = phone.next_check();
    assert_eq!(
        (server.scheme.as_str(), server.port),
        (dhcp.scheme.as_str(), dhcp.port),
        "{vendor}"
    );
    assert_eq!(server.path.trim_end_matches('/'), PROV, "{vendor}");
    assert!(credentials.is_some(), "{vendor}: provisioning credentials");

    // The periodic check: at that URL, with those credentials.
    phone.provision().await.unwrap_or_else(|e| panic!("{e}"));
    let recheck = &phone.http().requests()[boot.len()..];
    assert!(recheck.iter().any(|(_, s)| *s == 200), "{vendor}: {recheck:?}");
    assert!(
        recheck.iter().all(|(_, s)| *s == 200 || *s == 404),
        "{vendor}: {recheck:?}"
    );
    // Enrolled: without credentials the phone's file is now refused.
    let own_file = boot
        .iter()
        .rev()
        .find(|(path, status)| *status == 200 && path.to_ascii_lowercase().contains(&mac))
        .map(|(path, _)| path.clone())
        .expect("the phone's own file");
    let anonymous = client(https)
        .get(
            &Url {
                path: own_file,
                ..dhcp.clone()
            },
            None,
            innoprov_actors::sim::handset::AuthStyle::Basic,
        )
        .await
        .expect("GET");
    assert_eq!(
        anonymous.status, 401,
        "{vendor}: enrolled phones need their credentials"
    );

    // Devices changes the registrar: NOTIFY, (challenge,) fetch, new registrar.
    let update = r#"{"id":3,"domainId":1,"type":"PHONE","categories":[],"gk1":"pbx2.example.com","coder":"G711A","frameSize":20}"#;
    assert_eq!(sim.push_update(&mac, update), 1);
    phone
        .await_resync(&sip, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{vendor}: {e}"));
    phone.provision().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        phone.registration().expect("registration").server,
        "pbx2.example.com",
        "{vendor}: the update reached the phone"
    );
    let log = service.logs();
    assert!(
        log.contains("NOTIFY check-sync sent to 127.0.0.1:") && log.contains("accepted (200)"),
        "{vendor}: {log}"
    );
    if let Handset::Fanvil(f) = &phone {
        assert!(
            f.version > version_after_boot,
            "the version rises with every change"
        );
        assert!(
            f.refused_by_version >= 1,
            "an unchanged file is not applied twice"
        );
    }
}

#[tokio::test]
async fn yealink_boots_rechecks_and_resyncs_over_http() {
    walk("yealink", false).await;
}

#[tokio::test]
async fn yealink_boots_rechecks_and_resyncs_over_https() {
    walk("yealink", true).await;
}

#[tokio::test]
async fn snom_boots_rechecks_and_resyncs_over_http() {
    walk("snom", false).await;
}

#[tokio::test]
async fn snom_boots_rechecks_and_resyncs_over_https() {
    walk("snom", true).await;
}

#[tokio::test]
async fn grandstream_boots_rechecks_and_resyncs_over_http() {
    walk("grandstream", false).await;
}

#[tokio::test]
async fn grandstream_boots_rechecks_and_resyncs_over_https() {
    walk("grandstream", true).await;
}

#[tokio::test]
async fn fanvil_boots_rechecks_and_resyncs_over_http() {
    walk("fanvil", false).await;
}

#[tokio::test]
async fn fanvil_boots_rechecks_and_resyncs_over_https() {
    walk("fanvil", true).await;
}

#[tokio::test]
async fn poly_boots_rechecks_and_resyncs_over_http() {
    walk("poly", false).await;
}

#[tokio::test]
async fn poly_boots_rechecks_and_resyncs_over_https() {
    walk("poly", true).await;
}

#[tokio::test]
async fn gigaset_base_boots_rechecks_and_resyncs_over_http() {
    walk("gigaset", false).await;
}

#[tokio::test]
async fn gigaset_base_boots_rechecks_and_resyncs_over_https() {
    walk("gigaset", true).await;
}

#[tokio::test]
async fn gigaset_p_series_boots_rechecks_and_resyncs_over_http() {
    walk("gigaset_p", false).await;
}

#[tokio::test]
async fn gigaset_p_series_boots_rechecks_and_resyncs_over_https() {
    walk("gigaset_p", true).await;
}

/// `<MAC>.xml` is a Gigaset base's own file and a Snom's boot probe: a Snom asking for it gets
/// 404 without a miss counted, however often, and a Gigaset base with that name gets its file.
#[tokio::test]
async fn one_vendors_file_is_anothers_probe_and_never_counts_as_a_miss() {
    let (service, _dir, sim) = start_with_devices("[provisioning]\nmisses_per_minute = 5\n").await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let snom = mac_of("snom", 0x400);
    provision(&sim, &mut conn, &snom, 400).await;
    let mut phone = Handset::new("snom", &snom, dhcp_url(&service, false), client(false)).expect("vendor");
    phone.provision().await.unwrap_or_else(|e| panic!("{e}"));
    let ua = phone.http().user_agent.clone();
    for _ in 0..12 {
        let status = get_with(
            service.addr,
            &format!("{PROV}/{}.xml", snom.to_ascii_uppercase()),
            &[("User-Agent", ua.as_str())],
        )
        .await;
        assert_eq!(status, 404, "the Snom's probe");
    }
    // Past 5 misses the address would get 429: the probes did not count.
    phone.provision().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        phone
            .http()
            .requests()
            .iter()
            .all(|(_, s)| *s == 200 || *s == 404),
        "{:?}",
        phone.http().requests()
    );
    let base = mac_of("gigaset", 0x400);
    provision(&sim, &mut conn, &base, 401).await;
    let mut base_phone =
        Handset::new("gigaset", &base, dhcp_url(&service, false), client(false)).expect("vendor");
    base_phone.provision().await.unwrap_or_else(|e| panic!("{e}"));
    base_phone.registration().unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn fifty_phones_rebooting_behind_one_address_are_never_throttled() {
    let (service, _dir, sim) = start_with_devices("[provisioning]\nmisses_per_minute = 10\n").await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let vendors = [
        "yealink",
        "snom",
        "grandstream",
        "fanvil",
        "poly",
        "gigaset",
        "gigaset_p",
    ];
    let mut phones = Vec::new();
    for n in 0..50u32 {
        let vendor = vendors[n as usize % vendors.len()];
        let mac = mac_of(vendor, 0x100 + n);
        provision(&sim, &mut conn, &mac, 200 + n).await;
        phones.push(Handset::new(vendor, &mac, dhcp_url(&service, false), client(false)).expect("vendor"));
    }
    for _reboot in 0..3 {
        for phone in &mut phones {
            phone.provision().await.unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for phone in &phones {
        for (_, status) in phone.http().requests() {
            *statuses.entry(status).or_default() += 1;
        }
        phone.registration().unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(!statuses.contains_key(&429), "{statuses:?}");
    assert!(
        statuses.get(&404).copied().unwrap_or(0) >= 13,
        "the boot probes were made: {statuses:?}"
    );
    // A scanner from that address is still throttled: probes are exempt, guesses are not.
    let scanner = PhoneSim {
        addr: service.addr,
        user_agent: "curl/8".into(),
    };
    let mut last = 0;
    for n in 0..15u32 {
        last = scanner
            .fetch(&format!("{PROV}/805ec0{n:06x}.cfg"), &Auth::None, None)
            .await
            .expect("GET")
            .status;
    }
    assert_eq!(last, 429);
}

#[tokio::test]
async fn the_operators_vendor_catalogue_adds_ouis_and_a_bad_one_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalogue = dir.path().join("vendors.toml");
    std::fs::write(
        &catalogue,
        "[[vendor]]\nname = \"yealink\"\nouis = [\"aabbcc\"]\n",
    )
    .expect("write");
    let sim = DevicesSim::start().await;
    let service = Service::start_in(
        dir.path(),
        &format!(
            "{}[provisioning]\nvendors_file = \"{}\"\n",
            devices_config(&sim),
            catalogue.display()
        ),
    );
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    provision(&sim, &mut conn, "aabbcc000001", 300).await;
    let mut phone = Handset::new(
        "yealink",
        "aabbcc000001",
        dhcp_url(&service, false),
        client(false),
    )
    .expect("vendor");
    phone.provision().await.unwrap_or_else(|e| panic!("{e}"));
    phone.registration().unwrap_or_else(|e| panic!("{e}"));
    drop(service);

    for (text, needle) in [
        ("[[vendor]]\nname = \"yealink\"\nouis = [\"XYZ\"]\n", "OUI"),
        ("[[vendor]]\nname = \"htek\"\nfiles = [\"{mac}.cfg\"]\n", "htek"),
        ("[[vendor]]\nname = \"yealink\"\ncolour = 1\n", "colour"),
        (
            "[[vendor]]\nname = \"yealink\"\nfiles = [\"{serial}.cfg\"]\n",
            "serial",
        ),
    ] {
        let bad = tempfile::tempdir().expect("tempdir");
        let file = bad.path().join("vendors.toml");
        std::fs::write(&file, text).expect("write");
        let config = bad.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "{}[provisioning]\nvendors_file = \"{}\"\n",
                crate::common::config_text(bad.path(), ""),
                file.display()
            ),
        )
        .expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_innoprov"))
            .args(["--config", config.to_str().expect("utf-8")])
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains("vendors_file") && stderr.contains(needle),
            "{stderr}"
        );
        assert!(!bad.path().join("store").exists(), "nothing written");
    }
}

/// GET with extra headers over plain HTTP.
async fn get_with(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    innoprov_actors::sim::phone::get(addr, path, headers)
        .await
        .expect("GET")
        .status
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_counts() {
    let sip = tokio::net::UdpSocket::bind("127.0.0.2:0")
        .await
        .expect("127.0.0.2");
    let port = sip.local_addr().expect("addr").port();
    let sim = DevicesSim::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::common::config_text(
        dir.path(),
        &format!(
            "{}[provisioning]\nmisses_per_minute = 5\nnotify_port = {port}\n",
            devices_config(&sim)
        ),
    )
    .replace("[http]\n", "[http]\ntrusted_proxies = [\"127.0.0.1/32\"]\n");
    let file = dir.path().join("config.toml");
    std::fs::write(&file, config).expect("write config");
    let service = Service::start_with_config_file(&file);
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let mac = mac_of("yealink", 0x500);
    provision(&sim, &mut conn, &mac, 500).await;
    let ua = "Yealink SIP-T46U 108.86.0.90 80:5e:c0:00:05:00";
    // Misses of one forwarded client do not block another behind the same proxy.
    for n in 0..6u32 {
        let path = format!("{PROV}/805ec0ff{n:04x}.cfg");
        get_with(
            service.addr,
            &path,
            &[("X-Forwarded-For", "198.51.100.7"), ("User-Agent", ua)],
        )
        .await;
    }
    let blocked = get_with(
        service.addr,
        &format!("{PROV}/{mac}.cfg"),
        &[("X-Forwarded-For", "198.51.100.7"), ("User-Agent", ua)],
    )
    .await;
    assert_eq!(blocked, 429);
    // Another client behind the proxy is served, and its file names the scheme and host the
    // client used at the proxy.
    let other = innoprov_actors::sim::phone::get(
        service.addr,
        &format!("{PROV}/{mac}.cfg"),
        &[
            ("Forwarded", "for=127.0.0.2;proto=https;host=prov.example.com"),
            ("User-Agent", ua),
        ],
    )
    .await
    .expect("GET");
    assert_eq!(other.status, 200, "another client behind the proxy is served");
    assert!(
        other.body.contains(
            "static.auto_provision.server.url = https://prov.example.com/example.com/innoprov/prov/"
        ),
        "{}",
        other.body
    );
    // The NOTIFY goes to the forwarded client's address.
    sim.push_update(&mac, r#"{"id":3,"type":"PHONE","gk1":"pbx3.example.com"}"#);
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), sip.recv_from(&mut buf))
        .await
        .expect("NOTIFY in time")
        .expect("recv");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("NOTIFY sip:user500@127.0.0.2:"));
    // Each way of reaching the service gets the URL of that way, never one rendered for
    // another: a host forwarded in two lines (the first counts), another host, and none (the
    // Host the proxy's request names).
    let (user, password) = crate::downloads::credentials("yealink", &other.body);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let own_url = format!("http://{}/example.com/innoprov/prov/", service.addr);
    let ways: [(&[(&str, &str)], &str); 3] = [
        (
            &[
                ("Forwarded", "for=127.0.0.3;proto=http;host=prov.example.com"),
                ("Forwarded", "for=127.0.0.4;proto=https;host=later.example.com"),
            ],
            "http://prov.example.com/example.com/innoprov/prov/",
        ),
        (
            &[("Forwarded", "for=127.0.0.3;proto=https;host=other.example.com")],
            "https://other.example.com/example.com/innoprov/prov/",
        ),
        (&[("Forwarded", "for=127.0.0.5")], &own_url),
    ];
    for (forwarded, url) in ways {
        let mut headers = vec![("User-Agent", ua), ("Authorization", basic.as_str())];
        headers.extend_from_slice(forwarded);
        let got = innoprov_actors::sim::phone::get(service.addr, &format!("{PROV}/{mac}.cfg"), &headers)
            .await
            .expect("GET");
        assert_eq!(got.status, 200, "{forwarded:?}");
        let line = format!("static.auto_provision.server.url = {url}");
        assert!(got.body.contains(&line), "{forwarded:?}: {}", got.body);
    }
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let (service, _dir, _sim) = start_with_devices("[provisioning]\nmisses_per_minute = 3\n").await;
    for n in 0..5u32 {
        // A scanner cannot dodge the limit by inventing a new address for every guess.
        let forwarded = format!("203.0.113.{n}");
        get_with(
            service.addr,
            &format!("{PROV}/805ec0ee{n:04x}.cfg"),
            &[("X-Forwarded-For", forwarded.as_str())],
        )
        .await;
    }
    let status = get_with(
        service.addr,
        &format!("{PROV}/805ec0ee0009.cfg"),
        &[("X-Forwarded-For", "203.0.113.99")],
    )
    .await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn a_value_no_phone_file_can_carry_fails_provisioning_and_stores_nothing() {
    let (service, dir, sim) = start_with_devices("").await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    for (field, phone) in [
        (
            "cn",
            SimPhone {
                cn: "Alice\u{2028}Admin".into(),
                ..SimPhone::numbered(600)
            },
        ),
        (
            "password",
            SimPhone {
                password: "%NULL%".into(),
                ..SimPhone::numbered(601)
            },
        ),
        (
            "usename",
            SimPhone {
                username: "bob<<END OF FILE>>".into(),
                ..SimPhone::numbered(602)
            },
        ),
        (
            "password",
            SimPhone {
                password: "secret ".into(),
                ..SimPhone::numbered(603)
            },
        ),
    ] {
        let phone = SimPhone {
            code: sim.issue_code(),
            ..phone
        };
        let reply = conn.provision(&phone).await.expect("reply");
        assert_eq!(reply["result"], "failed", "{reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(&format!("{field}:")), "{error}");
        assert!(
            !error.contains("NULL") || field != "password",
            "the value is not echoed: {error}"
        );
    }
    let (status, _) = service.terminate();
    assert!(status.success());
    let (store, _) = crate::common::open_store(dir.path());
    assert!(innoprov::Store::phones(&store).expect("phones").is_empty());
}

#[tokio::test]
async fn the_phones_web_password_is_random_sealed_readable_and_kept_on_reprovisioning() {
    let (service, dir, sim) = start_with_devices("").await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let mac = mac_of("yealink", 0x700);
    let web_password = |body: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix("static.security.user_password = admin:"))
            .map(str::to_string)
            .expect("web password in the file")
    };
    let mut first = Handset::new("yealink", &mac, dhcp_url(&service, false), client(false)).expect("vendor");
    provision(&sim, &mut conn, &mac, 700).await;
    first.provision().await.unwrap_or_else(|e| panic!("{e}"));
    let Handset::Yealink(phone) = &first else {
        unreachable!()
    };
    let password = phone.settings["static.security.user_password"].clone();
    assert!(
        password.starts_with("admin:") && password.len() == "admin:".len() + 16,
        "{password}"
    );
    // Re-provisioned (a new user on the same phone): a new file, the same web password.
    provision(&sim, &mut conn, &mac, 701).await;
    let again = innoprov_actors::sim::phone::get(
        service.addr,
        &format!("{PROV}/{mac}.cfg"),
        &[("User-Agent", "Yealink SIP-T46U 108.86.0.90")],
    )
    .await
    .expect("GET");
    assert_eq!(
        again.status, 200,
        "a new ProvisioningPhone hands the file out once more"
    );
    assert!(again.body.contains("account.1.user_name = user701"));
    assert_eq!(format!("admin:{}", web_password(&again.body)), password);
    let (status, _) = service.terminate();
    assert!(status.success());
    let (store, sealer) = crate::common::open_store(dir.path());
    let stored = innoprov::provisioning::admin::web_password(&store, &sealer, &mac.parse().expect("mac"))
        .expect("admin read")
        .expect("a web password");
    assert_eq!(format!("admin:{}", stored.expose()), password);
    let raw = std::fs::read_dir(dir.path().join("store"))
        .expect("store dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .any(|e| {
            std::fs::read(e.path()).is_ok_and(|b| b.windows(16).any(|w| w == stored.expose().as_bytes()))
        });
    assert!(!raw, "sealed at rest: the password is in no store file in clear");
}

#[tokio::test]
async fn grandstream_phones_holding_the_old_trailing_slash_still_get_their_file() {
    let (service, _dir, sim) = start_with_devices("").await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let mac = mac_of("grandstream", 0x800);
    provision(&sim, &mut conn, &mac, 800).await;
    let ua = format!("Grandstream Model HW GXP2170 SW 1.0.11.16 DevId {mac}");
    let old_p237 = get_with(
        service.addr,
        &format!("{PROV}//cfg{mac}.xml"),
        &[("User-Agent", ua.as_str())],
    )
    .await;
    assert_eq!(
        old_p237, 200,
        "P237 ending in '/' (innoprov 0.3) makes the phone ask for prov//cfg<mac>.xml"
    );
}

#[tokio::test]
async fn by_default_the_window_serves_until_the_phone_uses_its_credentials() {
    let (service, _dir, sim) = start_with_devices("").await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let mac = mac_of("yealink", 0x900);
    provision(&sim, &mut conn, &mac, 900).await;
    let mut phone = Handset::new("yealink", &mac, dhcp_url(&service, false), client(false)).expect("vendor");
    phone.provision().await.unwrap_or_else(|e| panic!("{e}"));
    // interface.md: inside the window the file is served without credentials until the phone
    // has used them; a Yealink only sends them when challenged, so its re-check is anonymous.
    phone.provision().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        phone.http().requests().iter().all(|(_, s)| *s == 200),
        "{:?}",
        phone.http().requests()
    );
    let (url, credentials) = phone.next_check();
    let file = url.join(&format!("{mac}.cfg"));
    let style = innoprov_actors::sim::handset::AuthStyle::Basic;
    assert_eq!(
        client(false)
            .get(&file, credentials, style)
            .await
            .expect("GET")
            .status,
        200
    );
    assert_eq!(
        client(false).get(&file, None, style).await.expect("GET").status,
        401,
        "enrolled"
    );
}

#[tokio::test]
async fn the_trust_anchors_are_served_as_certificates_only() {
    // An operator's PEM file that holds a private key beside the CA by mistake.
    let dir = tempfile::tempdir().expect("tempdir");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mixed = dir.path().join("anchors.pem");
    let ca = std::fs::read_to_string(fixtures.join("pbx-ca.pem")).expect("ca");
    let key = std::fs::read_to_string(fixtures.join("key.pem")).expect("key");
    std::fs::write(&mixed, format!("{key}{ca}")).expect("write");
    let (service, _dir) = Service::start(&format!(
        "[provisioning]\ntrust_anchors = \"{}\"\n",
        mixed.display()
    ));
    let served = innoprov_actors::sim::phone::get(service.addr, &format!("{PROV}/innoprov-ca.crt"), &[])
        .await
        .expect("GET");
    assert_eq!(served.status, 200);
    assert!(!served.body.contains("PRIVATE KEY"), "{}", served.body);
    let certs = innoprov_actors::sim::handset::pem_certificates("test", &served.body).expect("certificates");
    let expected = innoprov_actors::sim::handset::pem_certificates("test", &ca).expect("the CA");
    assert_eq!(certs, expected);

    // A file without a certificate stops the start.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, key).expect("write");
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        crate::common::config_text(
            dir.path(),
            &format!("[provisioning]\ntrust_anchors = \"{}\"\n", empty.display()),
        ),
    )
    .expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_innoprov"))
        .args(["check", "--config", config.to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("provisioning.trust_anchors"));
}
