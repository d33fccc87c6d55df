//! Issue 22, zero touch against the release binary and the doubles of Yealink RPS, Snom SRAPS,
//! Fanvil FDPS and Poly ZTP (`sim::redirect`, written from docs/redirect/): a phone answered ok is registered
//! with the account's credentials and innoprov's URL; a factory-fresh emulated phone asks the
//! double, follows the redirect and provisions from innoprov; a delete deregisters; a MAC of
//! another account shows as such and is no error for the PBX; a SIGKILL before the
//! registration or the deregistration loses neither.

use std::path::Path;
use std::time::{Duration, Instant};

use innoprov_actors::sim::devices::DevicesSim;
use innoprov_actors::sim::handset::{Handset, HttpClient, Url, fanvil, poly, yealink};
use innoprov_actors::sim::redirect::{FdpsSim, GigasetRedirectSim, PolyZtpSim, SrapsSim, YealinkRpsSim};
use innoprov_actors::sim::users::{SimPhone, UsersSim};
use serde_json::Value;

use crate::admin::call;
use crate::common::{APP_PATH, PASSWORD, Service, devices_config};

const TOKEN: &str = "zero-touch-admin-token-4e8b1c9d2a7f";
const API: &str = "/example.com/innoprov/api/v1";

/// A loopback port free a moment ago: the public URL must name the port before the start.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The service in `dir` on `port`, with `[redirect.yealink]` pointing at `rps` with
/// `password`.
fn start(dir: &Path, port: u16, sim: &DevicesSim, rps: &YealinkRpsSim, password: &str) -> Service {
    let (user, _) = rps.account();
    let table = format!(
        "[redirect.yealink]\nurl = \"{}\"\nuser = \"{user}\"\npassword = \"{password}\"\n",
        rps.url()
    );
    start_with(dir, port, sim, &table)
}

/// The service in `dir` on `port` with the redirect `table`.
fn start_with(dir: &Path, port: u16, sim: &DevicesSim, table: &str) -> Service {
    start_provisioning(dir, port, sim, "", table)
}

/// The service in `dir` on `port` with the redirect `table` and more `[provisioning]` keys.
fn start_provisioning(dir: &Path, port: u16, sim: &DevicesSim, provisioning: &str, table: &str) -> Service {
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n[app]\npath = \"{APP_PATH}\"\npassword = \"{PASSWORD}\"\n[store]\npath = \"{}\"\n{}[provisioning]\npublic_url = \"{}\"\n{provisioning}[admin]\ntoken = \"{TOKEN}\"\n{table}",
        dir.join("store").display(),
        devices_config(sim),
        public_url(port),
    );
    let file = dir.join("config.toml");
    std::fs::write(&file, config).expect("config");
    Service::start_with_config_file(&file)
}

fn public_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/example.com/innoprov/prov/")
}

/// Provisions the Yealink `n` through Users; its MAC.
async fn provision(service: &Service, sim: &DevicesSim, n: u32) -> String {
    provision_mac(service, sim, n, &format!("805ec0{n:06x}")).await
}

/// Provisions the phone `n` with `mac` through Users; its MAC.
async fn provision_mac(service: &Service, sim: &DevicesSim, n: u32, mac: &str) -> String {
    let mac = mac.to_string();
    let phone = SimPhone {
        mac: mac.clone(),
        code: sim.issue_code(),
        ..SimPhone::numbered(n)
    };
    let mut users = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let reply = users.provision(&phone).await.expect("provision");
    assert_eq!(reply["result"], "ok", "the PBX sees no error: {reply}");
    mac
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The phone's `redirect` member in REST, once it is not pending.
async fn redirect_of(service: &Service, mac: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = call(service, "GET", &format!("{API}/phones/{mac}"), Some(TOKEN), None).await;
        assert_eq!(status, 200, "{body}");
        if body["redirect"]["state"] != "pending" || Instant::now() > deadline {
            return body["redirect"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A factory-fresh `vendor` phone sent to `server` by its redirect service: it provisions
/// from there and registers as the user of test phone `n`.
async fn boot_from(vendor: &str, mac: &str, server: Url, n: u32) {
    let mut phone = Handset::new(vendor, mac, server, HttpClient::new("", None)).expect("vendor");
    phone
        .provision()
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", phone.http().requests()));
    assert_eq!(
        phone.registration().expect("registration").user,
        SimPhone::numbered(n).username
    );
}

/// Deletes the phone through REST.
async fn delete(service: &Service, mac: &str) {
    let (status, _) = call(
        service,
        "DELETE",
        &format!("{API}/phones/{mac}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn a_phone_is_registered_a_fresh_phone_follows_the_redirect_and_a_delete_deregisters() {
    let rps = YealinkRpsSim::start("acme-rps", "rps-pass-1").await.expect("rps");
    let sim = DevicesSim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let service = start(dir.path(), port, &sim, &rps, "rps-pass-1");
    let mac = provision(&service, &sim, 0x51).await;
    let upper = mac.to_ascii_uppercase();
    until("registered at RPS", Duration::from_secs(10), || {
        rps.devices().contains_key(&upper)
    })
    .await;
    assert_eq!(
        rps.devices()[&upper],
        public_url(port),
        "innoprov's URL, nothing else"
    );
    let calls = rps.calls();
    assert!(
        calls.iter().all(|c| c.authorized),
        "Basic with the account: {calls:?}"
    );
    let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        ["redirect.checkDevice", "redirect.registerDeviceWithUniqueUrl"]
    );
    assert_eq!(
        calls[1].params,
        [upper.clone(), "innoprov".into(), public_url(port), "1".into()]
    );
    assert_eq!(redirect_of(&service, &mac).await["state"], "registered");
    // A phone out of the box asks RPS and provisions from where it is sent.
    let http = HttpClient::new("", None);
    let rps_url = Url::parse(&rps.phone_url()).expect("url");
    let server = yealink::ask_rps(&mac, &rps_url, &http)
        .await
        .expect("ask")
        .expect("RPS knows the phone");
    boot_from("yealink", &mac, server, 0x51).await;
    // A delete deregisters.
    delete(&service, &mac).await;
    until("deregistered", Duration::from_secs(10), || {
        !rps.devices().contains_key(&upper)
    })
    .await;
    assert_eq!(
        rps.calls().last().map(|c| (c.method.clone(), c.params.clone())),
        Some(("redirect.deRegisterDevice".into(), vec![upper.clone()]))
    );
    assert_eq!(yealink::ask_rps(&mac, &rps_url, &http).await.expect("ask"), None);
}

#[tokio::test]
async fn another_accounts_phone_and_wrong_credentials_show_on_the_phone_and_harm_nothing() {
    let rps = YealinkRpsSim::start("acme-rps", "rps-pass-2").await.expect("rps");
    let sim = DevicesSim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let service = start(dir.path(), free_port(), &sim, &rps, "rps-pass-2");
    rps.owned_by_another("805ec0000061");
    let mac = provision(&service, &sim, 0x61).await;
    let shown = redirect_of(&service, &mac).await;
    assert_eq!(shown["state"], "owned_elsewhere", "{shown}");
    assert!(
        shown["detail"]
            .as_str()
            .unwrap_or("")
            .contains("registered elsewhere"),
        "{shown}"
    );
    assert!(rps.devices().is_empty());
    assert!(
        !rps.calls()
            .iter()
            .any(|c| c.method == "redirect.registerDeviceWithUniqueUrl"),
        "not registered over another account"
    );
    // "Register again" goes to the service once more.
    let before = rps.calls().len();
    let (status, body) = call(
        &service,
        "POST",
        &format!("{API}/phones/{mac}/redirect"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    until("asked again", Duration::from_secs(10), || {
        rps.calls().len() > before
    })
    .await;
    drop(service);
    // Wrong credentials: failed, with the reason; the phone itself is stored and configured.
    let dir = tempfile::tempdir().expect("dir");
    let service = start(dir.path(), free_port(), &sim, &rps, "wrong-password");
    let mac = provision(&service, &sim, 0x62).await;
    let shown = redirect_of(&service, &mac).await;
    assert_eq!(shown["state"], "failed", "{shown}");
    assert!(shown["detail"].as_str().unwrap_or("").contains("401"), "{shown}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = call(&service, "GET", &format!("{API}/phones/{mac}"), Some(TOKEN), None).await;
        if body["state"] == "configured" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the phone is configured all the same: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !service.logs().contains("wrong-password"),
        "secrets never reach the log"
    );
}

#[tokio::test]
async fn a_sigkill_before_the_registration_or_the_deregistration_loses_neither() {
    let rps = YealinkRpsSim::start("acme-rps", "rps-pass-3").await.expect("rps");
    let sim = DevicesSim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let service = start(dir.path(), port, &sim, &rps, "rps-pass-3");
    rps.fail_next(1000);
    let mac = provision(&service, &sim, 0x71).await;
    let upper = mac.to_ascii_uppercase();
    until("a first try", Duration::from_secs(10), || !rps.calls().is_empty()).await;
    service.kill9();
    rps.fail_next(0);
    let service = start(dir.path(), port, &sim, &rps, "rps-pass-3");
    until("registered after the restart", Duration::from_secs(10), || {
        rps.devices().contains_key(&upper)
    })
    .await;
    assert_eq!(redirect_of(&service, &mac).await["state"], "registered");
    rps.fail_next(1000);
    delete(&service, &mac).await;
    let tried = rps.calls().len();
    until("a deregistration try", Duration::from_secs(10), || {
        rps.calls().len() > tried
    })
    .await;
    service.kill9();
    rps.fail_next(0);
    let _service = start(dir.path(), port, &sim, &rps, "rps-pass-3");
    until("deregistered after the restart", Duration::from_secs(10), || {
        !rps.devices().contains_key(&upper)
    })
    .await;
}

#[tokio::test]
async fn a_snom_is_registered_at_sraps_with_hawk_and_finds_innoprov_through_it() {
    let sraps = SrapsSim::start("snomkey01", "sraps-secret-4f7a")
        .await
        .expect("sraps");
    let sim = DevicesSim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let table = format!(
        "[redirect.snom]\nurl = \"{}\"\nkey_id = \"snomkey01\"\nkey_secret = \"sraps-secret-4f7a\"\n",
        sraps.url()
    );
    let service = start_with(dir.path(), port, &sim, &table);
    let mac = provision_mac(&service, &sim, 0x81, "000413000081").await;
    until("registered at SRAPS", Duration::from_secs(10), || {
        sraps.endpoints().contains_key(&mac)
    })
    .await;
    assert_eq!(
        sraps.endpoints()[&mac],
        public_url(port),
        "the phone-settings setting_server"
    );
    let calls = sraps.calls();
    assert!(
        calls.iter().all(|(_, _, hawk)| *hawk),
        "every call signed: {calls:?}"
    );
    // Token, company, the settings list's two pages of 1000 (the setting is on the second),
    // the PUT.
    assert_eq!(
        calls.iter().map(|(m, _, _)| m.as_str()).collect::<Vec<_>>(),
        ["GET", "GET", "GET", "GET", "PUT"]
    );
    assert!(calls[3].1.ends_with("page_size=1000&page=2"), "{calls:?}");
    assert_eq!(redirect_of(&service, &mac).await["state"], "registered");
    // What SRAPS hands the phone is its setting server (the phone's own request to SRAPS is
    // unsettled, docs/redirect/snom-gigaset.md §4): the emulated Snom provisions from it.
    let server = Url::parse(&sraps.endpoints()[&mac]).expect("url");
    boot_from("snom", &mac, server, 0x81).await;
    delete(&service, &mac).await;
    until("deleted at SRAPS", Duration::from_secs(10), || {
        sraps.endpoints().is_empty()
    })
    .await;
    // Another company's MAC: owned elsewhere, in SRAPS's words.
    sraps.owned_by_another("000413000082");
    let mac = provision_mac(&service, &sim, 0x82, "000413000082").await;
    let shown = redirect_of(&service, &mac).await;
    assert_eq!(shown["state"], "owned_elsewhere", "{shown}");
    assert!(
        shown["detail"]
            .as_str()
            .unwrap_or("")
            .contains("taken_mac_or_forbidden"),
        "{shown}"
    );
    assert!(
        !service.logs().contains("sraps-secret-4f7a"),
        "secrets never reach the log"
    );
}

#[tokio::test]
async fn a_fanvil_is_registered_at_fdps_in_a_group_of_its_own_and_finds_innoprov_through_it() {
    let fdps = FdpsSim::start("acme-fdps", "fdps-pass-5").await.expect("fdps");
    let sim = DevicesSim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let table = format!(
        "[redirect.fanvil]\nurl = \"{}\"\nuser = \"acme-fdps\"\npassword = \"fdps-pass-5\"\n",
        fdps.url()
    );
    let service = start_with(dir.path(), port, &sim, &table);
    let mac = provision_mac(&service, &sim, 0x91, "0c383e000091").await;
    let upper = mac.to_ascii_uppercase();
    until("registered at FDPS", Duration::from_secs(10), || {
        fdps.devices().contains_key(&upper)
    })
    .await;
    let material = &fdps.devices()[&upper];
    assert_eq!(material["cfgPfSrv"], format!("127.0.0.1:{port}"));
    assert_eq!(material["cfgPfName"], "example.com/innoprov/prov/");
    assert_eq!(material["cfgPfProt"], "4", "HTTP");
    let calls = fdps.calls();
    assert!(
        calls.iter().all(|c| c.authorized),
        "Basic with the hashed password: {calls:?}"
    );
    assert_eq!(
        calls.iter().map(|c| c.method.as_str()).collect::<Vec<_>>(),
        [
            "redirect.deRegisterDevice",
            "redirect.deleteServer",
            "redirect.addMaterialServer",
            "redirect.registerDevice"
        ]
    );
    assert_eq!(redirect_of(&service, &mac).await["state"], "registered");
    let http = HttpClient::new("", None);
    let fdps_url = Url::parse(&fdps.phone_url()).expect("url");
    let server = fanvil::ask_fdps(&mac, &fdps_url, &http)
        .await
        .expect("ask")
        .expect("FDPS knows the phone");
    assert_eq!(server, Url::parse(&public_url(port)).expect("url"));
    boot_from("fanvil", &mac, server, 0x91).await;
    delete(&service, &mac).await;
    until("deregistered at FDPS", Duration::from_secs(10), || {
        fdps.devices().is_empty() && fdps.groups().is_empty()
    })
    .await;
    assert_eq!(fanvil::ask_fdps(&mac, &fdps_url, &http).await.expect("ask"), None);
    // Another account's MAC: FDPS refuses the bind after our own release of it.
    fdps.owned_by_another("0c383e000092");
    let mac = provision_mac(&service, &sim, 0x92, "0c383e000092").await;
    let shown = redirect_of(&service, &mac).await;
    assert_eq!(shown["state"], "owned_elsewhere", "{shown}");
    assert!(
        shown["detail"]
            .as_str()
            .unwrap_or("")
            .contains("device_had_existed"),
        "{shown}"
    );
    assert!(
        !service.logs().contains("fdps-pass-5"),
        "secrets never reach the log"
    );
}

#[tokio::test]
async fn a_poly_gets_its_own_login_through_ztp_and_provisions_after_its_window_closed() {
    let ztp = PolyZtpSim::start("ztp-key-6c1d").await.expect("ztp");
    let sim = DevicesSim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let table = format!(
        "[redirect.poly]\nurl = \"{}\"\napi_key = \"ztp-key-6c1d\"\n",
        ztp.url()
    );
    // No enrolment window: only the phone's own credentials get its file.
    let service = start_provisioning(dir.path(), port, &sim, "enrolment_window_minutes = 0\n", &table);
    let mac = provision_mac(&service, &sim, 0xa1, "0004f20000a1").await;
    until("registered at ZTP", Duration::from_secs(10), || {
        ztp.devices().contains_key(&mac)
    })
    .await;
    assert!(ztp.calls().iter().all(|(_, _, key)| *key), "{:?}", ztp.calls());
    assert_eq!(ztp.profile_names(), [format!("innoprov-{mac}")]);
    assert_eq!(redirect_of(&service, &mac).await["state"], "registered");
    let http = HttpClient::new("", None);
    let ztp_url = Url::parse(&ztp.phone_url()).expect("url");
    let handout = poly::ask_ztp(&mac, &ztp_url, &http)
        .await
        .expect("ask")
        .expect("ZTP knows the phone");
    assert_eq!(handout.server, Url::parse(&public_url(port)).expect("url"));
    let (user, password) = handout.credentials.clone().expect("ZTP hands the phone a login");
    assert!(!password.is_empty() && !user.is_empty());
    assert_ne!(
        password,
        SimPhone::numbered(0xa1).password,
        "never the SIP password"
    );
    // Without that login the closed window refuses the file; with it the phone provisions.
    let mut bare =
        Handset::new("poly", &mac, handout.server.clone(), HttpClient::new("", None)).expect("poly");
    assert!(bare.provision().await.is_err(), "no file without credentials");
    let mut phone = poly::PolyPhone::new(&mac, "450", handout.server, HttpClient::new("", None));
    phone.credentials = handout.credentials;
    phone
        .provision()
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", phone.http.requests()));
    assert_eq!(
        phone.registration().expect("registration").user,
        SimPhone::numbered(0xa1).username
    );
    delete(&service, &mac).await;
    until("deleted at ZTP with its profile", Duration::from_secs(10), || {
        ztp.devices().is_empty() && ztp.profile_names().is_empty()
    })
    .await;
    // Another account's MAC: owned elsewhere in ZTP's words, and no profile left behind.
    ztp.owned_by_another("0004f20000a2");
    let mac = provision_mac(&service, &sim, 0xa2, "0004f20000a2").await;
    let shown = redirect_of(&service, &mac).await;
    assert_eq!(shown["state"], "owned_elsewhere", "{shown}");
    assert!(
        shown["detail"]
            .as_str()
            .unwrap_or("")
            .contains("different account"),
        "{shown}"
    );
    assert!(ztp.profile_names().is_empty(), "{:?}", ztp.profile_names());
    assert!(
        !service.logs().contains("ztp-key-6c1d"),
        "secrets never reach the log"
    );
    assert!(!service.logs().contains(&password), "nor the phone's login");
}

#[tokio::test]
async fn a_gigaset_p_pinned_by_the_admin_is_registered_at_grape_and_boots_from_it() {
    let grape = SrapsSim::start_grape("grapekey1", "grape-secret-8b2e")
        .await
        .expect("grape");
    let sim = DevicesSim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let table = format!(
        "[redirect.gigaset_p]\nurl = \"{}\"\nkey_id = \"grapekey1\"\nkey_secret = \"grape-secret-8b2e\"\n",
        grape.url()
    );
    let service = start_with(dir.path(), port, &sim, &table);
    // Snom's block: a Snom until the admin says it is a Gigaset P-series.
    let mac = provision_mac(&service, &sim, 0xb1, "0004130000b1").await;
    let shown = call(&service, "GET", &format!("{API}/phones/{mac}"), Some(TOKEN), None)
        .await
        .1;
    assert_eq!(
        shown["redirect"],
        Value::Null,
        "Snom has no service here: {shown}"
    );
    let (status, body) = call(
        &service,
        "PUT",
        &format!("{API}/phones/{mac}/vendor"),
        Some(TOKEN),
        Some(r#"{"vendor": "gigaset_p"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    until("registered at GRAPE", Duration::from_secs(10), || {
        grape.endpoints().contains_key(&mac)
    })
    .await;
    assert_eq!(
        grape.endpoints()[&mac],
        public_url(port),
        "the ProvisioningServer setting"
    );
    assert!(
        grape.calls().iter().all(|(_, _, hawk)| *hawk),
        "{:?}",
        grape.calls()
    );
    assert_eq!(redirect_of(&service, &mac).await["state"], "registered");
    // What GRAPE hands the device is the setting's value (the device's own request is
    // unsettled, docs/redirect/snom-gigaset.md §3.2): the emulated P-series provisions from it.
    let server = Url::parse(&grape.endpoints()[&mac]).expect("url");
    boot_from("gigaset_p", &mac, server, 0xb1).await;
    delete(&service, &mac).await;
    until("deleted at GRAPE", Duration::from_secs(10), || {
        grape.endpoints().is_empty()
    })
    .await;
    assert!(
        !service.logs().contains("grape-secret-8b2e"),
        "secrets never reach the log"
    );
}

#[tokio::test]
async fn a_gigaset_base_is_registered_by_its_mac_id_once_the_admin_types_the_label_code() {
    let server = GigasetRedirectSim::start("acme-gs", "gs-pass-3d")
        .await
        .expect("gigaset");
    let sim = DevicesSim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let table = format!(
        "[redirect.gigaset]\nurl = \"{}\"\nuser = \"acme-gs\"\npassword = \"gs-pass-3d\"\n",
        server.url()
    );
    let service = start_with(dir.path(), port, &sim, &table);
    server.manufacture("7c2f800000c1", "Q4Z8");
    let mac = provision_mac(&service, &sim, 0xc1, "7c2f800000c1").await;
    // Nothing to guess the code from: failed, saying what is missing, and nothing was sent.
    let shown = redirect_of(&service, &mac).await;
    assert_eq!(shown["state"], "failed", "{shown}");
    assert!(
        shown["detail"].as_str().unwrap_or("").contains("device code"),
        "{shown}"
    );
    assert!(server.calls().is_empty());
    let again = |code: &str| {
        let body = format!(r#"{{"device_code": "{code}"}}"#);
        let path = format!("{API}/phones/{mac}/redirect");
        let service = &service;
        async move { call(service, "POST", &path, Some(TOKEN), Some(&body)).await }
    };
    assert_eq!(again("Q4Z").await.0, 400, "not a label code");
    assert_eq!(again("AAAA").await.0, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let shown = redirect_of(&service, &mac).await;
        if shown["detail"].as_str().unwrap_or("").contains("mac_invalid") || Instant::now() > deadline {
            break shown;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        shown["state"], "failed",
        "a wrong code, in the server's words: {shown}"
    );
    assert_eq!(again("q4z8").await.0, 202);
    until("registered by its MAC-ID", Duration::from_secs(10), || {
        server.devices().contains_key("7C2F800000C1")
    })
    .await;
    let shown = redirect_of(&service, &mac).await;
    assert_eq!(
        (shown["state"].as_str(), shown["device_code"].as_str()),
        (Some("registered"), Some("Q4Z8"))
    );
    let last = server.calls().last().cloned().expect("calls");
    assert_eq!(last.method, "autoprov.registerDevice");
    assert_eq!(
        last.params,
        [
            "7C2F800000C1-Q4Z8".to_string(),
            public_url(port),
            "innoprov".into()
        ]
    );
    assert!(server.calls().iter().all(|c| c.authorized));
    let url = Url::parse(&server.devices()["7C2F800000C1"]).expect("url");
    boot_from("gigaset", &mac, url, 0xc1).await;
    // The deletion deregisters by the MAC-ID the code was kept for.
    delete(&service, &mac).await;
    until("deregistered", Duration::from_secs(10), || {
        server.devices().is_empty()
    })
    .await;
    assert_eq!(
        server
            .calls()
            .last()
            .map(|c| (c.method.clone(), c.params.clone())),
        Some((
            "autoprov.deregisterDevice".into(),
            vec!["7C2F800000C1-Q4Z8".to_string()]
        ))
    );
    assert!(
        !service.logs().contains("gs-pass-3d"),
        "secrets never reach the log"
    );
}
