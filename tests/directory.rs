//! Issue 21 against the release binary: the PBX's user table replicated on the PBX's own
//! connection (the PBX double answers from docs/pbx-table-users.md, written from the SDK's
//! pages and captured traffic), kept over a restart, and reported when the App object lacks
//! TableUsers; key profiles through REST.

use std::time::Duration;

use serde_json::{Value, json};

use innoprov_actors::sim::handset::{Handset, HttpClient, Url};
use innoprov_actors::sim::pbx::{PbxConnection, PbxSim, devices_services};
use innoprov_actors::sim::users::{SimPhone, UsersSim};

use crate::admin::call;
use crate::common::{APP_PATH, PASSWORD, Service};

const TOKEN: &str = "directory-test-token-7c2e9a41d5b3f086";
const API: &str = "/example.com/innoprov/api/v1";

/// The rows of docs/pbx-table-users.md §7.1: two users, a hidden one, a waiting queue.
pub(crate) fn rows() -> Vec<Value> {
    vec![
        json!({"guid":"0f1e2d3c4b5a69788796a5b4c3d2e1f0","h323":"alice","cn":"Alice Archer","dn":"Archer, Alice","e164":"201","hide":false,"config":"Config Sales","node":"root","loc":"master","pseudo":""}),
        json!({"guid":"1a2b3c4d5e6f708192a3b4c5d6e7f809","h323":"bob","cn":"Bob Baker","dn":"","e164":"","hide":false,"config":"","node":"root","loc":"master","pseudo":""}),
        json!({"guid":"2b3c4d5e6f708192a3b4c5d6e7f8091a","h323":"ceo","cn":"Chief","dn":"Chief","e164":"100","hide":true,"config":"","node":"root","loc":"master","pseudo":""}),
        json!({"guid":"5e6f708192a3b4c5d6e7f8091a2b3c4d","h323":"queue","cn":"Queue","e164":"300","hide":false,"pseudo":"<pseudo type=\"waiting\"/>"}),
    ]
}

fn start_in(dir: &std::path::Path) -> Service {
    Service::start_in(dir, &format!("[admin]\ntoken = \"{TOKEN}\"\n"))
}

pub(crate) async fn pbx_with(service: &Service, apis: &[&str]) -> PbxConnection {
    let app_url = format!("http://{}{APP_PATH}", service.addr);
    let mut pbx = PbxSim::new("innoprov", &app_url, PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("PBX login");
    pbx.send_pbx_info(apis).await.expect("PbxInfo");
    pbx
}

async fn directory(service: &Service) -> Value {
    let (status, body) = call(service, "GET", &format!("{API}/directory"), Some(TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits (bounded) until the directory status satisfies `done`.
async fn directory_until(service: &Service, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let status = directory(service).await;
        if done(&status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the directory never got there: {}", directory(service).await)
}

#[tokio::test]
async fn the_pbx_user_table_is_replicated_kept_and_followed_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = start_in(dir.path());
    let mut pbx = pbx_with(&service, &["PbxApi", "Services", "PbxTableUsers"]).await;
    pbx.serve_services(&devices_services(
        "http://127.0.0.1:1/example.com/devices/innovaphone-devices",
    ))
    .await
    .expect("services");
    let start = pbx.serve_user_table(&rows()).await.expect("replication");
    assert_eq!(start["api"], "PbxTableUsers");
    let status = directory_until(&service, |s| s["rows"] == 3).await;
    assert_eq!(
        status["listed"], 2,
        "the hidden user and the waiting queue are not listed: {status}"
    );
    assert_eq!(status["replicating"], true);
    assert!(status["problem"].is_null(), "{status}");
    // Live: an add, Bob deleted.
    pbx.push_user_change(
        "ReplicateAdd",
        &json!({"guid":"3c4d","h323":"dora","cn":"Dora Diaz","dn":"Diaz, Dora","e164":"204","hide":false}),
    )
    .await
    .expect("add");
    pbx.push_user_change(
        "ReplicateAdd",
        &json!({"guid":"4d5e","h323":"erik","cn":"Erik","e164":"205","hide":true}),
    )
    .await
    .expect("add hidden");
    pbx.push_user_change(
        "ReplicateDel",
        &json!({"guid":"1a2b3c4d5e6f708192a3b4c5d6e7f809"}),
    )
    .await
    .expect("del");
    // Alice, ceo (hidden), dora, erik (hidden); bob gone.
    let status = directory_until(&service, |s| s["rows"] == 4).await;
    assert_eq!(status["listed"], 2, "{status}");
    // Erik shows once he is no longer hidden (a partial update).
    pbx.push_user_change("ReplicateUpdate", &json!({"guid":"4d5e","hide":false}))
        .await
        .expect("update");
    let status = directory_until(&service, |s| s["listed"] == 3).await;
    assert_eq!(status["rows"], 4);
    // The PBX goes away: the table stays, and is there after a restart before any PBX.
    drop(pbx);
    let status = directory_until(&service, |s| s["replicating"] == false).await;
    assert_eq!(status["rows"], 4);
    let (exit, _) = service.terminate();
    assert!(exit.success());
    let service = start_in(dir.path());
    let status = directory(&service).await;
    assert_eq!(
        (status["rows"].clone(), status["listed"].clone()),
        (json!(4), json!(3)),
        "kept over a restart"
    );
    // A new PBX connection copies afresh: what is gone on the PBX is gone here.
    let mut pbx = pbx_with(&service, &["PbxTableUsers"]).await;
    pbx.serve_user_table(&rows()[..1]).await.expect("replication");
    let status = directory_until(&service, |s| s["rows"] == 1).await;
    assert_eq!(status["listed"], 1);
}

#[tokio::test]
async fn without_table_users_the_service_says_so_once_and_works_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = start_in(dir.path());
    let mut pbx = pbx_with(&service, &["PbxApi", "Services"]).await;
    pbx.serve_services(&devices_services(
        "http://127.0.0.1:1/example.com/devices/innovaphone-devices",
    ))
    .await
    .expect("services still subscribed");
    let status = directory_until(&service, |s| s["problem"].is_string()).await;
    assert!(
        status["problem"]
            .as_str()
            .is_some_and(|p| p.contains("TableUsers")),
        "{status}"
    );
    assert_eq!(status["rows"], 0);
    // A second PBX connection without it: still one log line.
    let again = pbx_with(&service, &["PbxApi", "Services"]).await;
    let mut ready = (0, Value::Null);
    for _ in 0..100 {
        ready = call(&service, "GET", "/readyz", None, None).await;
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, ready) = ready;
    assert_eq!(status, 200, "ready: nothing else depends on the table: {ready}");
    assert!(
        ready["detail"].as_str().is_some_and(|d| d.contains("TableUsers")),
        "{ready}"
    );
    drop(again);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = service.logs();
    assert_eq!(logs.matches("does not offer PbxTableUsers").count(), 1, "{logs}");
}

#[tokio::test]
async fn a_peer_that_is_not_the_pbx_cannot_feed_the_user_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = start_in(dir.path());
    // A myApps user's login (appobj differs from sip) sends a table change unasked.
    let app_url = format!("http://{}{APP_PATH}", service.addr);
    let mut user = PbxSim::new("innoprov", &app_url, PASSWORD);
    user.identity.sip = "mallory".into();
    let mut conn = user.connect(&service.ws_url()).await.expect("login");
    conn.send_pbx_info(&["PbxTableUsers"]).await.expect("PbxInfo");
    conn.push_user_change(
        "ReplicateAdd",
        &json!({"guid":"evil","h323":"evil","cn":"Evil","e164":"666","hide":false}),
    )
    .await
    .expect("sent");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(directory(&service).await["rows"], 0);
}

#[tokio::test]
async fn key_profiles_are_kept_checked_and_given_to_phones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = start_in(dir.path());
    let put = |name: &str, body: &str| {
        let (service, path, body) = (&service, format!("{API}/key-profiles/{name}"), body.to_string());
        async move { call(service, "PUT", &path, Some(TOKEN), Some(&body)).await }
    };
    let sales = r#"{"keys":[{"type":"line"},{"type":"blf","target":"alice","label":"Alice"},{"type":"speed_dial","number":"+497031","label":"Office"},{"type":"dnd"}]}"#;
    assert_eq!(
        put("Config%20Sales", sales).await.0,
        400,
        "a space is no profile name"
    );
    assert_eq!(put("sales", sales).await.0, 200);
    let (status, body) = put(
        "bad",
        r#"{"keys":[{"type":"line"},{"type":"blf","target":"a b"}]}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().is_some_and(|e| e.starts_with("key 2:")),
        "{body}"
    );
    let (status, body) = call(&service, "GET", &format!("{API}/key-profiles"), Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["profiles"].as_array().map(Vec::len),
        Some(1),
        "the bad one is not stored: {body}"
    );
    assert_eq!(
        body["profiles"][0]["keys"][1],
        json!({"type":"blf","target":"alice","label":"Alice"})
    );
    // Unknown phone, unknown profile, wrong body.
    let path = format!("{API}/phones/805ec0000001/key-profile");
    assert_eq!(
        call(
            &service,
            "PUT",
            &path,
            Some(TOKEN),
            Some(r#"{"profile":"sales"}"#)
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(&service, "PUT", &path, Some(TOKEN), Some(r#"{"profile":"nope"}"#))
            .await
            .0,
        400
    );
    assert_eq!(
        call(&service, "PUT", &path, Some(TOKEN), Some(r#"{"profil":"sales"}"#))
            .await
            .0,
        400
    );
    assert_eq!(
        call(&service, "PUT", &path, None, Some(r#"{"profile":"sales"}"#))
            .await
            .0,
        401
    );
    // Kept over a restart; deleted with 204, then 404.
    let (exit, _) = service.terminate();
    assert!(exit.success());
    let service = start_in(dir.path());
    let (_, body) = call(&service, "GET", &format!("{API}/key-profiles"), Some(TOKEN), None).await;
    assert_eq!(body["profiles"][0]["name"], "sales");
    let path = format!("{API}/key-profiles/sales");
    assert_eq!(call(&service, "DELETE", &path, Some(TOKEN), None).await.0, 204);
    assert_eq!(call(&service, "DELETE", &path, Some(TOKEN), None).await.0, 404);
}

/// The phonebook each vendor's emulated phone shows after its next refresh.
async fn phonebook_of(phone: &mut Handset, mac: &str) -> Vec<(String, String)> {
    phone
        .refreshed_phonebook(mac)
        .await
        .unwrap_or_else(|e| panic!("{mac}: {e}: {:?}", phone.http().requests()))
        .into_iter()
        .map(|line| (line.name, line.number))
        .collect()
}

fn names(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(n, d)| (n.to_string(), d.to_string()))
        .collect()
}

#[tokio::test]
async fn every_vendors_phone_reads_the_pbx_phonebook_and_sees_changes() {
    let (service, _dir, sim) =
        crate::common::start_with_devices(&format!("[admin]\ntoken = \"{TOKEN}\"\n")).await;
    let mut pbx = pbx_with(&service, &["PbxApi", "PbxTableUsers"]).await;
    pbx.serve_user_table(&rows()).await.expect("replication");
    directory_until(&service, |s| s["rows"] == 3).await;
    let mut users = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let server = Url::parse(&format!(
        "http://127.0.0.1:{}/example.com/innoprov/prov/",
        service.addr.port()
    ))
    .expect("url");
    let mut phones = Vec::new();
    for (n, (vendor, oui)) in [
        ("yealink", "805ec0"),
        ("grandstream", "000b82"),
        ("fanvil", "0c383e"),
        ("poly", "0004f2"),
        ("snom", "000413"),
        ("gigaset_p", "000413"),
    ]
    .into_iter()
    .enumerate()
    {
        let mac = format!("{oui}{:06x}", 0x300 + n);
        let phone = SimPhone {
            mac: mac.clone(),
            code: sim.issue_code(),
            ..SimPhone::numbered(40 + n as u32)
        };
        assert_eq!(users.provision(&phone).await.expect("provision")["result"], "ok");
        let mut handset =
            Handset::new(vendor, &mac, server.clone(), HttpClient::new("", None)).expect("vendor");
        handset
            .provision()
            .await
            .unwrap_or_else(|e| panic!("{vendor}: {e}"));
        phones.push((vendor, mac, handset));
    }
    let before = names(&[("Archer, Alice", "201"), ("Bob Baker", "bob")]);
    for _round in 0..2 {
        for (vendor, mac, phone) in &mut phones {
            assert_eq!(phonebook_of(phone, mac).await, before, "{vendor}");
        }
    }
    // Eight fetches of four formats (Snom's tbook rides in its settings file): one render each.
    let renders = |samples: &[_]| crate::admin::value(samples, "innoprov_phonebook_renders_total", &[]);
    assert_eq!(renders(&crate::admin::scrape_with(&service, TOKEN).await), 4.0);
    // A change replicated from the PBX shows at the next fetch.
    pbx.push_user_change(
        "ReplicateAdd",
        &json!({"guid":"3c4d","h323":"dora","cn":"Dora Diaz","dn":"Diaz, Dora","e164":"204","hide":false}),
    )
    .await
    .expect("add");
    pbx.push_user_change(
        "ReplicateDel",
        &json!({"guid":"1a2b3c4d5e6f708192a3b4c5d6e7f809"}),
    )
    .await
    .expect("del");
    let after = names(&[("Archer, Alice", "201"), ("Diaz, Dora", "204")]);
    for (vendor, mac, phone) in &mut phones {
        let mut seen = Vec::new();
        for _ in 0..50 {
            seen = phonebook_of(phone, mac).await;
            if seen == after {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(seen, after, "{vendor}");
    }
    // Without the phone's credentials: the denial of any other request.
    let (_, mac, phone) = &phones[0];
    let source = phone.phonebook_source(mac).expect("yealink's phonebook");
    let path = source.url.path.clone();
    let anonymous = innoprov_actors::sim::phone::get(service.addr, &path, &[])
        .await
        .expect("get");
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert_eq!(anonymous.body, innoprov_actors::edge::prov_http::DENIED_BODY);
    let unknown = path.replace(mac.as_str(), "805ec0ffffff");
    let reply = innoprov_actors::sim::phone::get(service.addr, &unknown, &[("Authorization", "Basic dTpw")])
        .await
        .expect("get");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body, innoprov_actors::edge::prov_http::DENIED_BODY);
}
