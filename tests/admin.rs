//! The REST door and the health endpoints against the release binary (interface.md
//! "Operating"): every call, its errors, the token, and the OpenAPI document checked against
//! the routes that serve it.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use innoprov_actors::sim::phone::{Auth, PhoneSim};
use innoprov_actors::sim::users::{SimPhone, UsersSim};

use crate::common::{PASSWORD, Service, start_with_devices};

const TOKEN: &str = "change-me-admin-0f3a9c2e7b14d6a85e9c";
const API: &str = "/example.com/innoprov/api/v1";

/// One HTTP/1.1 request; (status, JSON body or Null).
pub async fn call(
    service: &Service,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut tcp = tokio::net::TcpStream::connect(service.addr)
        .await
        .expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        service.addr
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "PUT" || method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn setup(
    extra: &str,
) -> (
    Service,
    tempfile::TempDir,
    innoprov_actors::sim::devices::DevicesSim,
    Vec<SimPhone>,
) {
    let (service, dir, sim) = start_with_devices(&format!("[admin]\ntoken = \"{TOKEN}\"\n{extra}")).await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let mut phones = Vec::new();
    for n in [61u32, 62] {
        let phone = SimPhone {
            mac: format!("805ec0{n:06x}"),
            code: sim.issue_code(),
            ..SimPhone::numbered(n)
        };
        assert_eq!(conn.provision(&phone).await.expect("reply")["result"], "ok");
        phones.push(phone);
    }
    (service, dir, sim, phones)
}

#[tokio::test]
async fn the_token_guards_every_call_and_says_nothing_else() {
    let (service, _dir, _sim, _phones) = setup("").await;
    let mut attempt = 0u8;
    for (method, path) in [
        ("GET", format!("{API}/phones")),
        ("GET", format!("{API}/phones/805ec000003d")),
        ("DELETE", format!("{API}/phones/805ec000003d")),
        ("GET", format!("{API}/openapi.json")),
        ("GET", format!("{API}/nothing")),
    ] {
        for token in [None, Some("wrong-token-value"), Some("change-me-admi")] {
            // Each from its own address: ten wrong tokens from one address get 429
            // (admin_throttle, tested in safe_by_default.rs).
            attempt += 1;
            let from = std::net::IpAddr::from([127, 0, 8, attempt]);
            let auth = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
            let reply =
                innoprov_actors::sim::phone::request_from(from, method, service.addr, &path, &headers)
                    .await
                    .expect("call");
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
            assert_eq!(
                (reply.status, body),
                (401, serde_json::json!({"error": "unauthorized"})),
                "{method} {path}"
            );
        }
    }
    // Without admin.token the API does not exist.
    let (plain, _dir) = Service::start("");
    assert_eq!(
        call(&plain, "GET", &format!("{API}/phones"), Some(TOKEN), None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn every_call_of_the_spec_works() {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let port = udp.local_addr().expect("addr").port();
    let (service, _dir, _sim, phones) = setup(&format!("[provisioning]\nnotify_port = {port}\n")).await;
    let token = Some(TOKEN);
    // The first phone fetches its file.
    let device = PhoneSim {
        addr: service.addr,
        user_agent: "Yealink SIP-T46U 108.86.0.90".into(),
    };
    let fetched = device
        .fetch(
            &format!("/example.com/innoprov/prov/{}.cfg", phones[0].mac),
            &Auth::None,
            None,
        )
        .await
        .expect("GET");
    assert_eq!(fetched.status, 200);

    let (status, list) = call(&service, "GET", &format!("{API}/phones"), token, None).await;
    assert_eq!(status, 200, "{list}");
    let all = list["phones"].as_array().expect("phones");
    assert_eq!(all.len(), 2);
    let first = &all[0];
    assert_eq!(first["mac"], phones[0].mac.as_str());
    assert_eq!(first["user"], phones[0].username.as_str());
    assert_eq!(first["name"], phones[0].cn.as_str());
    assert_eq!(first["vendor"], "yealink");
    assert_eq!(first["state"], "configured");
    assert_eq!(first["link"], "up");
    assert_eq!(first["config_version"], 1);
    assert!(first["last_fetch"].as_u64().is_some());
    assert_eq!(all[1]["last_fetch"], Value::Null);
    assert_eq!(all[1]["vendor"], Value::Null);

    let (_, found) = call(
        &service,
        "GET",
        &format!("{API}/phones?q={}", phones[1].username),
        token,
        None,
    )
    .await;
    assert_eq!(found["phones"].as_array().map(Vec::len), Some(1));
    let (_, found) = call(
        &service,
        "GET",
        &format!("{API}/phones?q=80:5E:C0:00:00:3D"),
        token,
        None,
    )
    .await;
    assert_eq!(found["phones"][0]["mac"], phones[0].mac.as_str(), "MAC spellings");
    let (_, configured) = call(
        &service,
        "GET",
        &format!("{API}/phones?state=configured"),
        token,
        None,
    )
    .await;
    assert_eq!(configured["phones"].as_array().map(Vec::len), Some(2));
    let (_, none) = call(
        &service,
        "GET",
        &format!("{API}/phones?state=failed"),
        token,
        None,
    )
    .await;
    assert_eq!(none["phones"].as_array().map(Vec::len), Some(0));
    let (status, error) = call(
        &service,
        "GET",
        &format!("{API}/phones?state=sleeping"),
        token,
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().is_some_and(|e| e.contains("sleeping")));

    let mac_upper = "80-5E-C0-00-00-3D";
    let (status, detail) = call(&service, "GET", &format!("{API}/phones/{mac_upper}"), token, None).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["mac"], phones[0].mac.as_str());
    assert_eq!(detail["served_version"], 1);
    assert!(detail["configuration"].as_array().is_some_and(|c| !c.is_empty()));
    assert!(
        !detail.to_string().contains(&phones[0].password),
        "no secret in the detail"
    );
    assert_eq!(
        call(&service, "GET", &format!("{API}/phones/nonsense"), token, None)
            .await
            .0,
        400
    );
    assert_eq!(
        call(
            &service,
            "GET",
            &format!("{API}/phones/805ec0aaaaaa"),
            token,
            None
        )
        .await
        .0,
        404
    );

    let (status, audit) = call(
        &service,
        "GET",
        &format!("{API}/phones/{}/audit", phones[0].mac),
        token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let entries = audit["entries"].as_array().expect("entries");
    let fetches: Vec<&Value> = entries.iter().filter(|e| e.get("state").is_none()).collect();
    assert_eq!(
        fetches[0]["outcome"], "served for enrolment",
        "pending entries included"
    );
    // The state changes are in the same timeline, before the fetch they made possible.
    let states: Vec<&str> = entries.iter().filter_map(|e| e["state"].as_str()).collect();
    assert_eq!(states.first(), Some(&"linking"), "{audit}");
    assert_eq!(states.last(), Some(&"configured"), "{audit}");
    let position = |want: &str| {
        entries
            .iter()
            .position(|e| e["state"] == want || e["outcome"] == want)
    };
    assert!(
        position("configured") < position("served for enrolment"),
        "{audit}"
    );

    let (status, _) = call(
        &service,
        "POST",
        &format!("{API}/phones/{}/resync", phones[0].mac),
        token,
        None,
    )
    .await;
    assert_eq!(status, 202);
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), udp.recv_from(&mut buf))
        .await
        .expect("NOTIFY in time")
        .expect("recv");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("Event: check-sync;reboot=false"));

    let vendor = format!("{API}/phones/{}/vendor", phones[1].mac);
    assert_eq!(
        call(&service, "PUT", &vendor, token, Some(r#"{"vendor":"snom"}"#))
            .await
            .0,
        200
    );
    let (_, detail) = call(
        &service,
        "GET",
        &format!("{API}/phones/{}", phones[1].mac),
        token,
        None,
    )
    .await;
    assert_eq!(detail["pinned_vendor"], "snom");
    let (status, error) = call(&service, "PUT", &vendor, token, Some(r#"{"vendor":"nokia"}"#)).await;
    assert_eq!((status, error["error"].as_str().is_some()), (400, true));
    assert_eq!(
        call(&service, "PUT", &vendor, token, Some("not json")).await.0,
        400
    );
    assert_eq!(
        call(&service, "PUT", &vendor, token, Some("{}")).await.0,
        400,
        "a typo must not unpin"
    );
    assert_eq!(
        call(&service, "PUT", &vendor, token, Some(r#"{"vendr":"snom"}"#))
            .await
            .0,
        400
    );
    assert_eq!(
        call(&service, "PUT", &vendor, token, Some(r#"{"vendor":null}"#))
            .await
            .0,
        200
    );

    assert_eq!(
        call(
            &service,
            "POST",
            &format!("{API}/phones/{}/enrolment", phones[0].mac),
            token,
            None
        )
        .await
        .0,
        200
    );

    assert_eq!(
        call(
            &service,
            "DELETE",
            &format!("{API}/phones/{}", phones[1].mac),
            token,
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(
            &service,
            "GET",
            &format!("{API}/phones/{}", phones[1].mac),
            token,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            &service,
            "DELETE",
            &format!("{API}/phones/{}", phones[1].mac),
            token,
            None
        )
        .await
        .0,
        404
    );
}

/// Every path and method the OpenAPI document names is served (a document derived from the
/// handlers, checked against the router).
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let (service, _dir, _sim, phones) = setup("").await;
    let (status, doc) = call(&service, "GET", &format!("{API}/openapi.json"), Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    for expected in [
        "/phones",
        "/phones/{mac}",
        "/phones/{mac}/audit",
        "/phones/{mac}/resync",
        "/phones/{mac}/enrolment",
        "/phones/{mac}/vendor",
        "/phones/{mac}/key-profile",
        "/key-profiles",
        "/key-profiles/{name}",
        "/directory",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(expected), "{expected} documented");
    }
    let mut calls = 0;
    for (path, methods) in paths {
        for method in methods.as_object().expect("methods").keys() {
            let concrete = path.replace("{mac}", &phones[0].mac);
            let body = (method == "put").then_some(r#"{"vendor":null}"#);
            let (status, _) = call(
                &service,
                &method.to_uppercase(),
                &format!("{API}{concrete}"),
                Some(TOKEN),
                body,
            )
            .await;
            let documented: Vec<u16> = methods[method]["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .filter_map(|k| k.parse().ok())
                .collect();
            assert!(
                documented.contains(&status),
                "{method} {path}: {status} not in {documented:?}"
            );
            calls += 1;
        }
    }
    assert_eq!(calls, 16);
}

#[tokio::test]
async fn health_and_readiness() {
    let (ready, _dir, _sim, _phones) = setup("").await;
    assert_eq!(call(&ready, "GET", "/healthz", None, None).await.0, 200);
    assert_eq!(call(&ready, "GET", "/readyz", None, None).await.0, 200);
    // No Devices URL known yet: alive, not ready, and it says why.
    let (waiting, _dir) = Service::start("");
    assert_eq!(call(&waiting, "GET", "/healthz", None, None).await.0, 200);
    let (status, body) = call(&waiting, "GET", "/readyz", None, None).await;
    assert_eq!(status, 503);
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("Devices")),
        "{body}"
    );
}

/// A scrape parsed with a Prometheus text-format parser: (metric name, labels) → value.
async fn scrape(service: &Service) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    scrape_with(service, TOKEN).await
}

/// [`scrape`] with the admin token `token`.
pub(crate) async fn scrape_with(
    service: &Service,
    token: &str,
) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    let mut tcp = tokio::net::TcpStream::connect(service.addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        service.addr
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    parsed
        .samples
        .into_iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            (
                s.metric,
                s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                value,
            )
        })
        .collect()
}

pub(crate) fn value(
    samples: &[(String, std::collections::BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .sum()
}

#[tokio::test]
async fn metrics_move_with_real_events() {
    let (service, _dir, _sim, phones) = setup("").await;
    assert_eq!(
        call(&service, "GET", "/metrics", None, None).await.0,
        401,
        "token required"
    );
    let before = scrape(&service).await;
    assert_eq!(
        value(&before, "innoprov_provisioning_total", &[("outcome", "ok")]),
        2.0
    );
    assert_eq!(value(&before, "innoprov_phones", &[("state", "configured")]), 2.0);
    assert_eq!(value(&before, "innoprov_links", &[("state", "up")]), 2.0);
    assert!(value(&before, "innoprov_provisioning_time_to_ok_seconds_count", &[]) >= 2.0);
    assert!(value(&before, "innoprov_store_flush_seconds_count", &[]) >= 1.0);
    // A download, a miss, a failed login.
    let device = PhoneSim {
        addr: service.addr,
        user_agent: "Yealink SIP-T46U 108.86.0.90".into(),
    };
    let prov = "/example.com/innoprov/prov";
    assert_eq!(
        device
            .fetch(&format!("{prov}/{}.cfg", phones[0].mac), &Auth::None, None)
            .await
            .expect("GET")
            .status,
        200
    );
    assert_eq!(
        device
            .fetch(&format!("{prov}/805ec0abcdef.cfg"), &Auth::None, None)
            .await
            .expect("GET")
            .status,
        404
    );
    let mut bad = innoprov_actors::sim::client::AppWsClient::connect(&service.ws_url())
        .await
        .expect("connect");
    let _ = bad
        .login(&UsersSim::new("innoprov", PASSWORD).identity, "wrong")
        .await;
    let after = scrape(&service).await;
    assert_eq!(
        value(
            &after,
            "innoprov_downloads_total",
            &[("vendor", "yealink"), ("outcome", "served for enrolment")]
        ),
        1.0
    );
    assert_eq!(
        value(&after, "innoprov_download_responses_total", &[("status", "404")]),
        1.0
    );
    assert_eq!(
        value(&after, "innoprov_download_responses_total", &[("status", "200")]),
        1.0
    );
    assert_eq!(value(&after, "innoprov_login_failures_total", &[]), 1.0);
}

/// The myApps door's server side: a login made for the admin App object (`info.appobj` =
/// `admin.app`) gets the admin messages and live state changes; the Users service's login for
/// the provisioning App object gets "not allowed".
#[tokio::test]
async fn admin_logins_administer_over_the_websocket_and_see_changes_live() {
    use innoprov_actors::sim::client::{AppWsClient, Identity};
    let (service, _dir, sim, phones) = setup("app = \"innoprov-admin\"\n").await;
    let admin = Identity {
        app: "innoprov-admin".into(),
        domain: "example.com".into(),
        sip: "alice".into(),
        guid: "f48b06484a8a61015853009033400109".into(),
        dn: "Alice Admin".into(),
        info: Some(r#"{"appobj":"innoprov-admin","appdn":"Phones admin","cn":"alice","apps":[]}"#.into()),
    };
    let url = format!("ws://{}/example.com/innoprov/innoprov-admin", service.addr);
    let mut client = AppWsClient::connect(&url).await.expect("connect");
    assert_eq!(client.login(&admin, PASSWORD).await.expect("login")["ok"], true);
    let list = list_over_websocket(&mut client).await;
    assert_eq!(list["phones"].as_array().map(Vec::len), Some(2), "{list}");
    client
        .send_raw(&format!(
            r#"{{"mt":"AdminGetPhone","mac":"{}"}}"#,
            phones[0].mac.to_uppercase()
        ))
        .await
        .expect("send");
    let detail = client.recv_mt("AdminGetPhoneResult").await.expect("detail");
    assert_eq!(detail["phone"]["user"], phones[0].username.as_str());
    client
        .send_raw(r#"{"mt":"AdminGetPhone","mac":"zz"}"#)
        .await
        .expect("send");
    assert!(client.recv_mt("AdminGetPhoneResult").await.expect("reply")["error"].is_string());

    // Live: a phone provisioned now shows up without asking.
    client.send_raw(r#"{"mt":"AdminSubscribe"}"#).await.expect("send");
    client.recv_mt("AdminSubscribeResult").await.expect("subscribed");
    let mut users = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let newcomer = SimPhone {
        mac: "805ec0000063".into(),
        code: sim.issue_code(),
        ..SimPhone::numbered(63)
    };
    assert_eq!(users.provision(&newcomer).await.expect("reply")["result"], "ok");
    let mut states = Vec::new();
    while !states.contains(&"configured".to_string()) {
        let change = client
            .recv_mt("AdminPhoneChanged")
            .await
            .expect("a pushed change");
        if change["mac"] == "805ec0000063" {
            states.push(change["phone"]["state"].as_str().unwrap_or_default().to_string());
        }
    }
    // An action, then its effect pushed.
    client
        .send_raw(r#"{"mt":"AdminAction","mac":"805ec0000063","action":"delete"}"#)
        .await
        .expect("send");
    assert_eq!(
        client.recv_mt("AdminActionResult").await.expect("reply")["ok"],
        true
    );

    // The Users service's login (for the provisioning App object) may not administer.
    users
        .client
        .send_raw(r#"{"mt":"AdminListPhones","src":"x"}"#)
        .await
        .expect("send");
    let refused = users
        .client
        .recv_mt("AdminListPhonesResult")
        .await
        .expect("reply");
    assert_eq!(refused["error"], "not allowed");
    assert!(refused.get("phones").is_none());
}

#[tokio::test]
async fn the_admin_token_logs_in_an_operator_who_may_only_administer() {
    use innoprov_actors::sim::client::{AppWsClient, Identity};
    let (service, _dir, _sim, phones) = setup("").await;
    // The standalone page's login: a password login whose digest is made with admin.token.
    let operator = Identity {
        app: "innoprov-admin".into(),
        domain: String::new(),
        sip: "innoprov-admin".into(),
        guid: "0".repeat(32),
        dn: "Admin".into(),
        info: None,
    };
    let mut client = AppWsClient::connect(&service.ws_url()).await.expect("connect");
    assert_eq!(client.login(&operator, TOKEN).await.expect("reply")["ok"], true);
    let list = list_over_websocket(&mut client).await;
    assert_eq!(list["phones"].as_array().map(Vec::len), Some(2), "{list}");
    assert_eq!(list["phones"][0]["mac"], phones[0].mac.as_str());
    // The token is no App object password: no ProvisioningPhone, no PbxInfo.
    client
        .send_raw(r#"{"mt":"ProvisioningPhone","src":"p","mac":"805ec0000077","code":"123456789012","usename":"x","cn":"x","seed1":"1","password":"00","domain":"example.com","dns":"pbx.example.com"}"#)
        .await
        .expect("send");
    let refused = client.recv_mt("ProvisioningPhoneResult").await.expect("reply");
    assert_eq!(refused["result"], "failed", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|r| r.contains("not allowed")),
        "{refused}"
    );
    let (status, _) = call(
        &service,
        "GET",
        &format!("{API}/phones/805ec0000077"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 404, "nothing was stored");

    // A wrong token is a wrong digest, counted like any other failed login.
    let mut wrong = AppWsClient::connect(&service.ws_url()).await.expect("connect");
    assert_ne!(
        wrong.login(&operator, "not-the-token").await.expect("reply")["ok"],
        true
    );
    assert!(wrong.closed_by_service().await);

    // Without admin.token, the same login is just a wrong password.
    let (plain, _dir) = Service::start("[admin]\napp = \"innoprov-admin\"\n");
    let mut client = AppWsClient::connect(&plain.ws_url()).await.expect("connect");
    assert_ne!(client.login(&operator, TOKEN).await.expect("reply")["ok"], true);
}

#[tokio::test]
async fn the_admin_page_is_served_where_myapps_loads_it_and_locked_to_its_origin() {
    let (service, _dir, _sim, _phones) = setup("app = \"innoprov-admin\"\n").await;
    let raw = |path: &'static str| {
        let addr = service.addr;
        async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            tcp.write_all(request.as_bytes()).await.expect("write");
            let mut out = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
                .await
                .expect("in time")
                .expect("read");
            out
        }
    };
    for (file, kind) in [
        ("innoprov-admin.htm", "text/html"),
        ("innoprov-admin.js", "text/javascript"),
        ("innoprov-admin.css", "text/css"),
        ("innoprov-admin.png", "image/png"),
    ] {
        let path: &'static str = Box::leak(format!("/example.com/innoprov/{file}").into_boxed_str());
        let out = raw(path).await;
        let text = String::from_utf8_lossy(&out).to_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{file}: {text}");
        assert!(text.contains(&format!("content-type: {kind}")), "{file}");
        assert!(
            text.contains("content-security-policy: default-src 'none'; script-src 'self'"),
            "{file}"
        );
        assert!(text.contains("x-content-type-options: nosniff"), "{file}");
        if file.ends_with(".htm") {
            assert!(
                text.contains("src=\"innoprov-admin.js\""),
                "the page loads its own script"
            );
            assert!(
                !text.contains("<script>"),
                "no inline script (the policy forbids it)"
            );
        }
        if file.ends_with(".png") {
            let body = &out[out.windows(4).position(|w| w == b"\r\n\r\n").expect("body") + 4..];
            assert!(body.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG icon");
        }
    }
    // Without admin.app and admin.token there is no page.
    let (plain, _dir) = Service::start("");
    let mut tcp = tokio::net::TcpStream::connect(plain.addr).await.expect("connect");
    tcp.write_all(
        b"GET /example.com/innoprov/innoprov-admin.htm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
}

/// AdminListPhones over an admin websocket login; its answer, checked for the echoed `src`.
async fn list_over_websocket(client: &mut innoprov_actors::sim::client::AppWsClient) -> Value {
    client
        .send_raw(r#"{"mt":"AdminListPhones","src":"l"}"#)
        .await
        .expect("send");
    let list = client.recv_mt("AdminListPhonesResult").await.expect("list");
    assert_eq!(list["src"], "l");
    list
}

/// A link is up once Devices speaks on it, not when its socket opens: with Devices accepting
/// connections but answering nothing, a dropped phone reconnects yet stays "link down" (and no
/// reconnect is counted) until a Devices that answers takes it back.
#[tokio::test]
async fn a_link_counts_as_up_only_once_devices_answers() {
    let (service, _dir, sim, phones) = setup("").await;
    let token = Some(TOKEN);
    let path = format!("{API}/phones/{}", phones[0].mac);
    let state = |detail: &Value| (detail["state"].clone(), detail["link"].clone());
    let (_, detail) = call(&service, "GET", &path, token, None).await;
    assert_eq!(state(&detail), ("configured".into(), "up".into()), "{detail}");

    sim.set_stall(true);
    let connects = sim.connect_times().len();
    assert_eq!(sim.drop_link(&phones[0].mac), 1);
    assert!(
        sim.wait_until(Duration::from_secs(10), |s| s.connect_times().len() > connects)
            .await,
        "the phone reconnects"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, detail) = call(&service, "GET", &path, token, None).await;
    assert_eq!(state(&detail), ("link_down".into(), "down".into()), "{detail}");
    let scraped = scrape(&service).await;
    assert_eq!(value(&scraped, "innoprov_link_reconnects_total", &[]), 0.0);

    sim.set_stall(false);
    sim.restart(Duration::from_millis(10)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = call(&service, "GET", &format!("{API}/phones"), token, None).await;
        let phones = list["phones"].as_array().cloned().unwrap_or_default();
        if phones.len() == 2
            && phones
                .iter()
                .all(|p| state(p) == ("configured".into(), "up".into()))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "links back: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The restart dropped both phones' links: two came back.
    let scraped = scrape(&service).await;
    assert_eq!(value(&scraped, "innoprov_link_reconnects_total", &[]), 2.0);
}
