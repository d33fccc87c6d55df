//! Issue 21, function keys against the release binary: a key profile given to a phone by REST,
//! and one given through its user's PBX config template (the PBX double's user table), reach
//! each vendor's emulated phone (sim::handset, written from docs/vendors) in the vendor's own
//! key syntax; the phone shows the keys and would subscribe to each BLF target's dialog state
//! at its registrar. A Gigaset Nx70 base gets no keys.

use std::time::Duration;

use serde_json::{Value, json};

use innoprov_actors::sim::devices::DevicesSim;
use innoprov_actors::sim::handset::{EmulatedKey, Handset, HttpClient, Url};
use innoprov_actors::sim::pbx::PbxSim;
use innoprov_actors::sim::users::{SimPhone, UsersConnection, UsersSim};

use crate::admin::call;
use crate::common::{APP_PATH, PASSWORD, Service, start_with_devices};

const TOKEN: &str = "keys-test-token-5d1c8e2a7f3b9046e1d7";
const API: &str = "/example.com/innoprov/api/v1";
const PROV: &str = "/example.com/innoprov/prov";

fn mac_of(vendor: &str, n: u32) -> String {
    let oui = match vendor {
        "yealink" => "805ec0",
        "snom" | "gigaset_p" => "000413",
        "grandstream" => "000b82",
        "poly" => "0004f2",
        "gigaset" => "7c2f80",
        _ => "0c383e",
    };
    format!("{oui}{n:06x}")
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

async fn put(service: &Service, path: &str, body: &Value) {
    let (status, answer) = call(
        service,
        "PUT",
        &format!("{API}/{path}"),
        Some(TOKEN),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 200, "PUT {path}: {answer}");
}

/// Boots the emulated phone of `vendor` with `mac` from the service.
async fn boot(service: &Service, vendor: &str, mac: &str) -> Handset {
    let dhcp = Url::parse(&format!("http://127.0.0.1:{}{PROV}/", service.addr.port())).expect("url");
    let mut phone = Handset::new(vendor, mac, dhcp, HttpClient::new("", None)).expect("vendor");
    phone
        .provision()
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", phone.http().requests()));
    phone
}

/// A line, two BLF, a speed dial, DND, then BLF keys up to 50: past a T46U's 27 line keys and a
/// GXP2170's 48 VPKs, the emulated models.
fn profile() -> Value {
    let mut keys = vec![
        json!({"type":"line"}),
        json!({"type":"blf","target":"anna","label":"Anna"}),
        json!({"type":"blf","target":"bob.b","label":"Bob & <Co>"}),
        json!({"type":"speed_dial","number":"+4970311234","label":"Office"}),
        json!({"type":"dnd"}),
    ];
    keys.extend((6..=50).map(|n| json!({"type":"blf","target":format!("ext{n}")})));
    json!({ "keys": keys })
}

/// What the phone of `vendor` shows for [`profile`]: (kind, value, label, module).
fn expected(vendor: &str) -> Vec<(String, String, String, Option<u32>)> {
    let own_keys = match vendor {
        "yealink" => 27,
        "grandstream" => 48,
        _ => 50,
    };
    expected_on(vendor, own_keys, true)
}

/// [`expected`] on a model with `own_keys` keys, and expansion modules when `modules`.
fn expected_on(vendor: &str, own_keys: usize, modules: bool) -> Vec<(String, String, String, Option<u32>)> {
    let mut keys: Vec<(String, String, String)> = vec![
        ("line".into(), String::new(), "Line".into()),
        ("blf".into(), "anna".into(), "Anna".into()),
        ("blf".into(), "bob.b".into(), "Bob & <Co>".into()),
        ("speed_dial".into(), "+4970311234".into(), "Office".into()),
        ("dnd".into(), String::new(), "DND".into()),
    ];
    keys.extend((6..=50).map(|n| ("blf".into(), format!("ext{n}"), format!("ext{n}"))));
    keys.into_iter()
        .enumerate()
        .filter(|(i, _)| modules || *i < own_keys)
        // Poly documents BLF keys only; a Gigaset Nx70 none.
        .filter(|(_, (kind, _, _))| vendor != "poly" || kind == "blf")
        .filter(|_| vendor != "gigaset")
        .map(|(i, (kind, value, label))| (kind, value, label, (i >= own_keys).then_some(1)))
        .collect()
}

fn shown(keys: &[EmulatedKey]) -> Vec<(String, String, String, Option<u32>)> {
    keys.iter()
        .map(|k| (k.kind.clone(), k.value.clone(), k.label.clone(), k.module))
        .collect()
}

#[tokio::test]
async fn a_key_profile_reaches_each_vendors_keys_and_blf_subscriptions() {
    let (service, _dir, sim) = start_with_devices(&format!("[admin]\ntoken = \"{TOKEN}\"\n")).await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    put(&service, "key-profiles/sales", &profile()).await;
    let vendors = [
        "yealink",
        "snom",
        "gigaset_p",
        "grandstream",
        "fanvil",
        "poly",
        "gigaset",
    ];
    for (n, vendor) in (0x20..).zip(vendors) {
        let mac = mac_of(vendor, n);
        provision(&sim, &mut conn, &mac, n).await;
        put(
            &service,
            &format!("phones/{mac}/key-profile"),
            &json!({"profile":"sales"}),
        )
        .await;
        let phone = boot(&service, vendor, &mac).await;
        let keys = phone.function_keys();
        assert_eq!(shown(&keys), expected(vendor), "{vendor}");
        let registrar = phone.registration().expect("registration").server;
        let targets: Vec<String> = expected(vendor)
            .into_iter()
            .filter(|(kind, ..)| kind == "blf")
            .map(|(_, target, ..)| format!("sip:{target}@{registrar}"))
            .collect();
        assert_eq!(
            phone.blf_subscriptions(),
            targets,
            "{vendor}: the dialog SUBSCRIBE targets"
        );
        if vendor != "gigaset" {
            assert_eq!(
                phone.blf_subscriptions()[0],
                "sip:anna@pbx.example.com",
                "{vendor}"
            );
        }
    }
}

#[tokio::test]
async fn a_key_profile_comes_through_the_users_pbx_config_template() {
    let (service, _dir, sim) = start_with_devices(&format!("[admin]\ntoken = \"{TOKEN}\"\n")).await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let keys = json!({"keys":[{"type":"blf","target":"alice","label":"Alice"},{"type":"speed_dial","number":"*21#"}]});
    put(&service, "key-profiles/Sales-Template", &keys).await;
    let yealink = mac_of("yealink", 0x31);
    let gigaset = mac_of("gigaset", 0x32);
    provision(&sim, &mut conn, &yealink, 0x31).await;
    provision(&sim, &mut conn, &gigaset, 0x32).await;
    // The PBX's users: both phones' SIP names with the config template of that name.
    let row = |guid: &str, n: u32| {
        let user = SimPhone::numbered(n);
        json!({"guid":guid,"h323":user.username,"cn":user.cn,"dn":"","e164":"","hide":false,"config":"Sales-Template"})
    };
    let app_url = format!("http://{}{APP_PATH}", service.addr);
    let mut pbx = PbxSim::new("innoprov", &app_url, PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("PBX login");
    pbx.send_pbx_info(&["PbxTableUsers"]).await.expect("PbxInfo");
    pbx.serve_user_table(&[row("a1", 0x31), row("b2", 0x32)])
        .await
        .expect("replication");
    let mut rows = Value::Null;
    for _ in 0..100 {
        rows = call(&service, "GET", &format!("{API}/directory"), Some(TOKEN), None)
            .await
            .1["rows"]
            .clone();
        if rows == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows, 2, "the user table arrived");
    let phone = boot(&service, "yealink", &yealink).await;
    assert_eq!(
        shown(&phone.function_keys()),
        vec![
            ("blf".into(), "alice".into(), "Alice".into(), None),
            ("speed_dial".into(), "*21#".into(), "*21#".into(), None),
        ]
    );
    assert_eq!(
        phone.blf_subscriptions(),
        vec!["sip:alice@pbx.example.com".to_string()]
    );
    let base = boot(&service, "gigaset", &gigaset).await;
    assert!(base.function_keys().is_empty(), "an Nx70 gets no keys");
    if let Handset::Gigaset(base) = &base {
        assert!(
            !base.settings.values().any(|v| v.contains("alice")),
            "nothing of the profile in the Nx70's file"
        );
    }
}

/// The per-MAC file names no model: the User-Agent's model places the keys. A T48U has 29 line
/// keys where the T46U (the default) has 27; a GXP2160 has 24 VPKs, 6 of them fixed, and no
/// modules, where the GXP2170 has 48 with 12 fixed (so keys 7 to 12 would carry fixed modes the
/// GXP2160 reads as others).
#[tokio::test]
async fn the_user_agents_model_places_the_keys() {
    let (service, _dir, sim) = start_with_devices(&format!("[admin]\ntoken = \"{TOKEN}\"\n")).await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    put(&service, "key-profiles/sales", &profile()).await;
    let dhcp = Url::parse(&format!("http://127.0.0.1:{}{PROV}/", service.addr.port())).expect("url");
    for (n, (vendor, model, own_keys, modules)) in (0x40..).zip([
        ("yealink", "T48U", 29, true),
        ("grandstream", "GXP2160", 24, false),
    ]) {
        let mac = mac_of(vendor, n);
        provision(&sim, &mut conn, &mac, n).await;
        put(
            &service,
            &format!("phones/{mac}/key-profile"),
            &json!({"profile":"sales"}),
        )
        .await;
        let mut phone =
            Handset::of_model(vendor, model, &mac, dhcp.clone(), HttpClient::new("", None)).expect("model");
        phone
            .provision()
            .await
            .unwrap_or_else(|e| panic!("{e}: {:?}", phone.http().requests()));
        assert_eq!(
            shown(&phone.function_keys()),
            expected_on(vendor, own_keys, modules),
            "{vendor} {model}"
        );
    }
}
