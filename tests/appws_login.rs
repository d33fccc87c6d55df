//! The AppWebsocket side: login state machine, AppInfo publication, Services subscription.

use innoprov_actors::sim::client::{AppWsClient, Identity};
use innoprov_actors::sim::pbx::{PbxSim, devices_services};
use innoprov_actors::sim::users::UsersSim;

use crate::common::{APP_PATH, PASSWORD, Service, open_store};

fn pbx(service: &Service) -> PbxSim {
    PbxSim::new(
        "innoprov",
        &format!("http://{}{APP_PATH}", service.addr),
        PASSWORD,
    )
}

#[tokio::test]
async fn pbx_logs_in_gets_app_info_and_services_subscription() {
    let (service, _dir) = Service::start("");
    let mut pbx_conn = pbx(&service).connect(&service.ws_url()).await.expect("PBX login");

    pbx_conn
        .send_pbx_info(&["PbxApi", "Services", "PbxAdminApi"])
        .await
        .unwrap();
    let subscribe = pbx_conn
        .serve_services(&devices_services(
            "http://127.0.0.1:9/example.com/devices/innovaphone-devices",
        ))
        .await
        .expect("the app subscribes to Services after PbxInfo");
    assert_eq!(subscribe["api"], "Services");

    let info = pbx_conn.app_info("innoprov").await.expect("AppInfoResult");
    assert_eq!(info["app"], "innoprov");
    assert_eq!(
        info["serviceInfo"]["apis"]["com.innovaphone.provisioning"]["title"],
        "Test phones"
    );

    // src is echoed on replies.
    pbx_conn
        .client
        .send_raw(r#"{"mt":"AppInfo","app":"innoprov","src":"q7"}"#)
        .await
        .unwrap();
    assert_eq!(
        pbx_conn.client.recv_mt("AppInfoResult").await.unwrap()["src"],
        "q7"
    );
    pbx_conn
        .client
        .send_raw(r#"{"mt":"CheckBuild","url":"x","src":"cb"}"#)
        .await
        .unwrap();
    assert_eq!(
        pbx_conn.client.recv_mt("CheckBuildResult").await.unwrap()["src"],
        "cb"
    );
    // KeepAlive and unknown messages after login are ignored, the session stays.
    pbx_conn.client.send_raw(r#"{"mt":"KeepAlive"}"#).await.unwrap();
    pbx_conn
        .client
        .send_raw(r#"{"mt":"SomethingNew","src":"n"}"#)
        .await
        .unwrap();
    pbx_conn
        .client
        .send_raw(r#"{"mt":"Test","src":"t"}"#)
        .await
        .unwrap();
    assert_eq!(pbx_conn.client.recv_json().await.unwrap()["mt"], "TestResult");

    let logs = service.logs();
    assert!(
        logs.contains("Devices sysclient URL is now ws://127.0.0.1:9/example.com/devices/sysclients"),
        "{logs}"
    );
    let (status, _) = service.terminate();
    assert!(status.success());
}

#[tokio::test]
async fn login_works_on_the_parent_path_and_app_check_login() {
    let (service, _dir) = Service::start("");
    let parent = format!("ws://{}/example.com/innoprov", service.addr);
    let users = UsersSim::new("innoprov", PASSWORD);
    users.connect(&parent).await.expect("login on the parent path");
    users
        .connect(&format!("{parent}/"))
        .await
        .expect("login on the parent path with slash");

    // AppCheckLogin: digest over app:domain::::challenge:password, no session needed.
    let mut client = AppWsClient::connect(&service.ws_url()).await.unwrap();
    let digest = innoprov_actors::sim::wire::sha256_hex(&format!("innoprov:example.com::::12345:{PASSWORD}"));
    client
        .send_raw(&format!(r#"{{"mt":"AppCheckLogin","src":"x","app":"innoprov","domain":"example.com","challenge":"12345","digest":"{digest}"}}"#))
        .await
        .unwrap();
    let reply = client.recv_mt("AppCheckLoginResult").await.unwrap();
    assert_eq!(
        (reply["src"].as_str(), reply["ok"].as_bool()),
        (Some("x"), Some(true))
    );
    client
        .send_raw(r#"{"mt":"AppCheckLogin","src":"y","app":"innoprov","domain":"example.com","challenge":"12345","digest":"00"}"#)
        .await
        .unwrap();
    let reply = client.recv_mt("AppCheckLoginResult").await.unwrap();
    assert_eq!(reply.get("ok"), None, "{reply}");
}

fn identity() -> Identity {
    UsersSim::new("innoprov", PASSWORD).identity
}

/// Each bad login or early message closes the connection; nothing is stored.
#[tokio::test]
async fn bad_logins_and_early_messages_close_the_connection() {
    let (service, dir) = Service::start("");
    let url = service.ws_url();
    let phone = r#"{"mt":"ProvisioningPhone","mac":"001565000001","code":"123456789012","usename":"eve","seed1":"","password":"","domain":"example.com"}"#;

    // Wrong password → AppLoginResult without ok, then close.
    let mut c = AppWsClient::connect(&url).await.unwrap();
    let reply = c.login(&identity(), "wrong").await.unwrap();
    assert_eq!(reply["mt"], "AppLoginResult");
    assert_eq!(reply.get("ok"), None, "{reply}");
    assert!(c.closed_by_service().await, "closed after a wrong digest");

    // Uppercase digest → failure.
    let mut c = AppWsClient::connect(&url).await.unwrap();
    let challenge = c.challenge().await.unwrap();
    let text = AppWsClient::login_text(&identity(), &challenge, PASSWORD);
    let digest = text.split("\"digest\":\"").nth(1).unwrap()[..64].to_string();
    c.send_raw(&text.replace(&digest, &digest.to_uppercase()))
        .await
        .unwrap();
    assert_eq!(c.recv_mt("AppLoginResult").await.unwrap().get("ok"), None);
    assert!(c.closed_by_service().await, "closed after an uppercase digest");

    // Reused challenge: the first login succeeds, a second AppLogin on the same challenge fails.
    let mut c = AppWsClient::connect(&url).await.unwrap();
    let challenge = c.challenge().await.unwrap();
    let text = AppWsClient::login_text(&identity(), &challenge, PASSWORD);
    c.send_raw(&text).await.unwrap();
    assert_eq!(c.recv_mt("AppLoginResult").await.unwrap()["ok"], true);
    c.send_raw(&text).await.unwrap();
    assert_eq!(c.recv_mt("AppLoginResult").await.unwrap().get("ok"), None);
    assert!(c.closed_by_service().await, "closed after a reused challenge");

    // AppLogin without any challenge.
    let mut c = AppWsClient::connect(&url).await.unwrap();
    c.send_raw(&AppWsClient::login_text(
        &identity(),
        "0011223344556677",
        PASSWORD,
    ))
    .await
    .unwrap();
    assert_eq!(c.recv_mt("AppLoginResult").await.unwrap().get("ok"), None);
    assert!(c.closed_by_service().await);

    // A ProvisioningPhone before login, bad JSON, a message without mt, a binary frame.
    for early in [
        phone,
        "{not json",
        r#"{"src":"x"}"#,
        r#"{"mt":"AppInfo","app":"innoprov"}"#,
    ] {
        let mut c = AppWsClient::connect(&url).await.unwrap();
        c.challenge().await.unwrap();
        c.send_raw(early).await.unwrap();
        assert!(c.closed_by_service().await, "closed after {early}");
    }
    let mut c = AppWsClient::connect(&url).await.unwrap();
    c.send_binary(vec![1, 0, 0, b'{', b'}']).await.unwrap();
    assert!(
        c.closed_by_service().await,
        "closed after a binary frame before login"
    );

    let (status, logs) = service.terminate();
    assert!(status.success(), "{logs}");
    let (store, _) = open_store(dir.path());
    assert!(
        innoprov::Store::phones(&store).unwrap().is_empty(),
        "nothing stored"
    );
    assert!(
        !logs.contains(PASSWORD),
        "the app password never reaches the logs"
    );
}

#[tokio::test]
async fn oversized_messages_close_the_connection() {
    let (service, _dir) = Service::start("[websocket]\nmax_message_bytes = 4096\n");
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conn = users.connect(&service.ws_url()).await.unwrap();
    let big = format!(r#"{{"mt":"Test","pad":"{}"}}"#, "x".repeat(5000));
    conn.client.send_raw(&big).await.unwrap();
    assert!(conn.client.closed_by_service().await);
    // A message under the bound is fine on a new connection.
    let mut conn = users.connect(&service.ws_url()).await.unwrap();
    conn.client
        .send_raw(&format!(
            r#"{{"mt":"Test","src":"s","pad":"{}"}}"#,
            "x".repeat(3000)
        ))
        .await
        .unwrap();
    assert_eq!(conn.client.recv_json().await.unwrap()["mt"], "TestResult");
}

#[tokio::test]
async fn silent_peers_are_dropped_and_answering_peers_kept() {
    let (service, _dir) = Service::start("[websocket]\nping_interval_secs = 1\nidle_timeout_secs = 2\n");
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut silent = users.connect(&service.ws_url()).await.unwrap();
    let mut lively = users.connect(&service.ws_url()).await.unwrap();
    // `lively` reads (so tungstenite answers the pings); `silent` reads nothing for 3.5 s.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(3500);
    lively.client.timeout = std::time::Duration::from_millis(300);
    while tokio::time::Instant::now() < deadline {
        let _ = lively.client.recv_json().await;
    }
    assert!(
        silent.client.closed_by_service().await,
        "a peer that answers no ping is dropped"
    );
    lively
        .client
        .send_raw(r#"{"mt":"Test","src":"alive"}"#)
        .await
        .unwrap();
    lively.client.timeout = std::time::Duration::from_secs(5);
    assert_eq!(lively.client.recv_json().await.unwrap()["src"], "alive");
}

#[tokio::test]
async fn app_check_login_is_no_password_oracle() {
    let (service, _dir) = Service::start("");
    let mut client = AppWsClient::connect(&service.ws_url()).await.unwrap();
    for n in 0..5 {
        let text = format!(
            r#"{{"mt":"AppCheckLogin","src":"g{n}","app":"innoprov","domain":"example.com","challenge":"1","digest":"{n:064x}"}}"#
        );
        if client.send_raw(&text).await.is_err() {
            break;
        }
    }
    assert!(
        client.closed_by_service().await,
        "closed after repeated failed checks"
    );
}

#[tokio::test]
async fn connections_that_never_log_in_are_closed() {
    let (service, _dir) = Service::start("[websocket]\nlogin_timeout_secs = 1\n");
    let mut idle = AppWsClient::connect(&service.ws_url()).await.unwrap();
    idle.send_raw(r#"{"mt":"KeepAlive"}"#).await.unwrap();
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut logged_in = users.connect(&service.ws_url()).await.unwrap();
    assert!(idle.closed_by_service().await, "closed after the login deadline");
    // A logged-in session outlives the deadline.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    logged_in
        .client
        .send_raw(r#"{"mt":"Test","src":"still"}"#)
        .await
        .unwrap();
    assert_eq!(logged_in.client.recv_json().await.unwrap()["src"], "still");
}

/// A myApps user (appwebsocket.md §3.3b) who sends PbxInfo with Services gets no Services
/// subscription: only the PBX's App object connection may say where Devices is. With
/// `app.object` set, even another App object's login is not the PBX.
#[tokio::test]
async fn only_the_pbx_login_may_act_as_the_pbx() {
    let (service, _dir) = Service::start("");
    let user = Identity {
        app: "innoprov".into(),
        domain: "example.com".into(),
        sip: "eve".into(),
        guid: "f48b06484a8a61015853009033400109".into(),
        dn: "Eve".into(),
        info: Some(r#"{"appobj":"innoprov","appdn":"Third-party phones","pbx":"master","cn":"eve","groups":[],"apps":[]}"#.into()),
    };
    let mut eve = AppWsClient::connect(&service.ws_url()).await.unwrap();
    assert_eq!(eve.login(&user, PASSWORD).await.unwrap()["ok"], true, "logged in");
    eve.send_raw(r#"{"mt":"PbxInfo","domain":"example.com","pbx":"master","apis":["Services"]}"#)
        .await
        .unwrap();
    eve.timeout = std::time::Duration::from_millis(800);
    assert!(
        eve.recv_mt("SubscribeServices").await.is_err(),
        "no subscription on a user's connection"
    );
    assert!(
        service
            .wait_for_log("ignoring PbxInfo from \"eve\"", std::time::Duration::from_secs(2))
            .await
    );
    // The PBX's own App object connection is subscribed as before.
    let mut pbx_conn = pbx(&service).connect(&service.ws_url()).await.expect("PBX login");
    pbx_conn.send_pbx_info(&["Services"]).await.unwrap();
    pbx_conn
        .serve_services(&devices_services(
            "http://127.0.0.1:9/example.com/devices/innovaphone-devices",
        ))
        .await
        .expect("subscribed");
    drop(service);

    // app.object names the App object: a login as another App object is not the PBX.
    let dir = tempfile::tempdir().unwrap();
    let config = crate::common::config_text(dir.path(), "").replace(
        "title = \"Test phones\"\n",
        "title = \"Test phones\"\nobject = \"innoprov-app\"\n",
    );
    let file = dir.path().join("config.toml");
    std::fs::write(&file, config).unwrap();
    let service = Service::start_with_config_file(&file);
    let mut other = pbx(&service).connect(&service.ws_url()).await.expect("login");
    other.send_pbx_info(&["Services"]).await.unwrap();
    other.client.timeout = std::time::Duration::from_millis(800);
    assert!(other.client.recv_mt("SubscribeServices").await.is_err());
}

/// ProvisioningPhone from a myApps user's login is refused and stores nothing; with
/// `app.provisioners`, only the App Services listed there may send it.
#[tokio::test]
async fn only_provisioning_services_may_send_provisioning_phone() {
    let (service, dir) = Service::start("");
    let user = Identity {
        app: "innoprov".into(),
        domain: "example.com".into(),
        sip: "eve".into(),
        guid: "f48b06484a8a61015853009033400109".into(),
        dn: "Eve".into(),
        info: Some(r#"{"appobj":"innoprov","cn":"eve","apps":[]}"#.into()),
    };
    let mut eve = AppWsClient::connect(&service.ws_url()).await.unwrap();
    assert_eq!(eve.login(&user, PASSWORD).await.unwrap()["ok"], true);
    eve.send_raw(r#"{"mt":"ProvisioningPhone","src":"p","mac":"001565000099","code":"123456789012","usename":"eve","seed1":"","password":"","domain":"example.com","dns":"evil.example.com"}"#)
        .await
        .unwrap();
    let reply = eve.recv_mt("ProvisioningPhoneResult").await.unwrap();
    assert_eq!(reply["result"], "failed", "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not allowed")
    );
    let (status, _) = service.terminate();
    assert!(status.success());
    let (store, _) = open_store(dir.path());
    assert!(
        innoprov::Store::phones(&store).unwrap().is_empty(),
        "nothing stored"
    );

    // app.provisioners lists the Users service's App object under another name: refused too.
    let dir = tempfile::tempdir().unwrap();
    let config = crate::common::config_text(dir.path(), "").replace(
        "title = \"Test phones\"\n",
        "title = \"Test phones\"\nprovisioners = [\"profile\"]\n",
    );
    let file = dir.path().join("config.toml");
    std::fs::write(&file, config).unwrap();
    let service = Service::start_with_config_file(&file);
    let mut users = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .unwrap();
    let phone = innoprov_actors::sim::users::SimPhone::numbered(98);
    let reply = users.provision(&phone).await.unwrap();
    assert_eq!(reply["result"], "failed", "{reply}");
}
