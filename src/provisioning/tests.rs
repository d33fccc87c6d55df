//! Rendering every vendor's files from one merged record: golden snapshots, and every file
//! parsed back with the SIP account, password, server and transport asserted.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::context::PhoneContext;
use super::render::Renderer;
use super::vendor::{FileFormat, Vendors};
use crate::devices::{ConfigItem, normalise};
use crate::mac::Mac;
use crate::phone::{PhoneRecord, ProvisionRequest};
use crate::seal::{Sealer, Secret};

const PASSWORD: &str = "p<&>\"w'1 Ü";

fn record(mac: &str) -> (PhoneRecord, Sealer) {
    let sealer = Sealer::from_key(&[9; 32]);
    let mac: Mac = mac.parse().unwrap();
    let request = ProvisionRequest {
        mac,
        code: "123456789012".into(),
        hwid: mac.to_string(),
        username: "alice".into(),
        cn: "Alice Ämple & Co".into(),
        domain: "example.com".into(),
        dns: "pbx.example.com".into(),
        password: Some(Secret::new(PASSWORD)),
    };
    let mut record = PhoneRecord::from_request(&request, &sealer, 1_700_000_000).unwrap();
    // Fixed provisioning credentials so the snapshots are stable.
    record.prov_username = "pfixed".into();
    record.prov_password = Some(
        sealer
            .seal(
                &Secret::new("ProvPass123"),
                &crate::phone::prov_password_purpose(&mac),
            )
            .unwrap(),
    );
    let obj = |json: &str| -> Map<String, Value> { serde_json::from_str(json).unwrap() };
    let sysclient = Secret::new("sysclient-pw");
    let turn = crate::appws::crypto::encrypt("seed", sysclient.expose(), "turn-secret");
    let items = vec![
        obj(
            r#"{"id":3,"type":"PHONE","gk1":"gk1.example.com","gk2":"gk2.example.com","coder":"G722","frameSize":20,"srtpKey":"2"}"#,
        ),
        obj(&format!(
            r#"{{"id":5,"type":"MEDIA","stunServer":"stun.example.com","turnServer":"turn.example.com","turnUser":"t","turnPassword":"{turn}","turnSeed":"seed"}}"#
        )),
        obj(
            r#"{"id":9,"type":"NTP","ntp1":"ntp1.example.com","ntp2":"ntp2.example.com","tz":"CET-1CEST-2,M3.5.0/2,M10.5.0/3"}"#,
        ),
    ];
    record.configs = normalise(
        items
            .into_iter()
            .map(|o| ConfigItem::from_received(&mac, o, Some(&sysclient), &sealer).0)
            .collect(),
    );
    record.config_version = 3;
    (record, sealer)
}

fn render(vendor: &str, mac: &str, model: Option<&str>) -> String {
    let vendors = Vendors::builtin();
    let descriptor = vendors.by_name(vendor).unwrap();
    let (record, sealer) = record(mac);
    let ctx = PhoneContext::build(
        &record,
        &sealer,
        vendor,
        model,
        "https://prov.example.com/example.com/innoprov/prov/",
        60,
    )
    .unwrap();
    Renderer::new(&vendors, None)
        .render_phone(descriptor, &ctx)
        .unwrap()
}

fn key_values(text: &str, separator: char) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with('<') || line.trim().is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once(separator)
            .unwrap_or_else(|| panic!("not key{separator}value: {line:?}"));
        assert!(
            out.insert(key.trim().to_string(), value.trim().to_string())
                .is_none(),
            "duplicate {key}"
        );
    }
    out
}

fn xml_values(text: &str) -> HashMap<String, String> {
    let doc = roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("not well-formed XML: {e}\n{text}"));
    doc.descendants()
        .filter(|n| n.is_element() && n.children().all(|c| c.is_text()))
        .map(|n| {
            (
                n.tag_name().name().to_string(),
                n.text().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn yealink() {
    let text = render("yealink", "0015651a2b3c", None);
    insta::assert_snapshot!(text);
    assert!(text.starts_with("#!version:1.0.0.1\n"));
    let kv = key_values(&text, '=');
    assert_eq!(kv["account.1.user_name"], "alice");
    assert_eq!(kv["account.1.auth_name"], "alice");
    assert_eq!(kv["account.1.password"], PASSWORD);
    assert_eq!(kv["account.1.sip_server.1.address"], "gk1.example.com");
    assert_eq!(kv["account.1.sip_server.1.port"], "5061");
    assert_eq!(kv["account.1.sip_server.1.transport_type"], "2", "TLS");
    assert_eq!(kv["account.1.sip_server.2.address"], "gk2.example.com");
    assert_eq!(kv["account.1.codec.g722.enable"], "1");
    assert_eq!(kv["local_time.time_zone"], "+1");
    assert_eq!(kv["static.auto_provision.server.username"], "pfixed");
    assert_eq!(kv["static.auto_provision.server.password"], "ProvPass123");
    assert_eq!(kv["static.auto_provision.repeat.minutes"], "60");
}

#[test]
fn snom() {
    let text = render("snom", "000413a1b2c3", Some("D785"));
    insta::assert_snapshot!(text);
    let x = xml_values(&text);
    assert_eq!(x["user_name"], "alice");
    assert_eq!(x["user_pname"], "alice");
    assert_eq!(x["user_pass"], PASSWORD, "XML escaping round-trips");
    assert_eq!(x["user_realname"], "Alice Ämple & Co");
    assert_eq!(x["user_host"], "gk1.example.com");
    assert_eq!(x["user_outbound"], "gk1.example.com:5061;transport=tls");
    assert_eq!(
        x["setting_server"],
        "https://pfixed:ProvPass123@prov.example.com/example.com/innoprov/prov/"
    );
    assert_eq!(x["settings_refresh_timer"], "3600");
}

#[test]
fn grandstream() {
    let text = render("grandstream", "000b82a1b2c3", None);
    insta::assert_snapshot!(text);
    let x = xml_values(&text);
    assert_eq!(
        (x["P35"].as_str(), x["P36"].as_str(), x["P34"].as_str()),
        ("alice", "alice", PASSWORD)
    );
    assert_eq!(x["P47"], "gk1.example.com:5061");
    assert_eq!(x["P130"], "2", "TLS");
    assert_eq!(x["P57"], "9", "G722 first");
    assert_eq!(
        (x["P1360"].as_str(), x["P1361"].as_str()),
        ("pfixed", "ProvPass123")
    );
    assert_eq!(x["P212"], "3", "HTTPS provisioning");
    assert_eq!(x["P237"], "prov.example.com/example.com/innoprov/prov/");
}

#[test]
fn fanvil() {
    let text = render("fanvil", "0c383e0a0b0c", None);
    insta::assert_snapshot!(text);
    assert!(text.starts_with("<<VOIP CONFIG FILE>>") && text.trim_end().ends_with("<<END OF FILE>>"));
    let kv = key_values(&text, ':');
    assert_eq!(kv["SIP1 Phone Number"], "alice");
    assert_eq!(kv["SIP1 Register User"], "alice");
    assert_eq!(kv["SIP1 Register Pswd"], PASSWORD);
    assert_eq!(kv["SIP1 Register Addr"], "gk1.example.com");
    assert_eq!(kv["SIP1 Transport Protocol"], "2");
    assert_eq!(
        (kv["Download Username"].as_str(), kv["Download password"].as_str()),
        ("pfixed", "ProvPass123")
    );
}

#[test]
fn every_vendor_declares_keys_its_file_has() {
    let vendors = Vendors::builtin();
    let macs = [
        ("yealink", "0015651a2b3c"),
        ("snom", "000413a1b2c3"),
        ("grandstream", "000b82a1b2c3"),
        ("fanvil", "0c383e0a0b0c"),
    ];
    for (name, mac) in macs {
        let v = vendors.by_name(name).unwrap();
        let text = render(name, mac, Some("X1"));
        let keys: Vec<String> = match v.format {
            FileFormat::KeyValue => key_values(&text, '=').into_keys().collect(),
            FileFormat::Fanvil => key_values(&text, ':').into_keys().collect(),
            FileFormat::Xml => xml_values(&text).into_keys().collect(),
        };
        for key in v.credential_keys.iter().chain([&v.recheck_key]) {
            assert!(keys.contains(key), "{name}: {key} missing");
        }
    }
}

#[test]
fn registrar_falls_back_to_the_pbx_dns_name_and_overrides_apply() {
    let vendors = Vendors::builtin();
    let (mut record, sealer) = record("0015651a2b3c");
    record.configs.clear();
    let ctx = PhoneContext::build(&record, &sealer, "yealink", None, "http://h/prov/", 30).unwrap();
    let yealink = vendors.by_name("yealink").unwrap();
    let text = Renderer::new(&vendors, None).render_phone(yealink, &ctx).unwrap();
    assert!(text.contains("account.1.sip_server.1.address = pbx.example.com\n"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("yealink.j2"),
        "#!version:1.0.0.1\ncustom.user = {{ account.user }}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("snom.j2"), "{% if %}broken").unwrap();
    std::fs::write(dir.path().join("nokia.j2"), "x").unwrap();
    let renderer = Renderer::new(&vendors, Some(dir.path()));
    assert_eq!(
        renderer.render_phone(yealink, &ctx).unwrap(),
        "#!version:1.0.0.1\ncustom.user = alice\n"
    );
    assert_eq!(renderer.problems().len(), 2, "{:?}", renderer.problems());
    assert!(
        renderer
            .problems()
            .iter()
            .any(|p| p.contains("snom.j2") && p.contains("built-in snom template"))
    );
    // The broken Snom override falls back to the built-in; other vendors are untouched.
    let snom = vendors.by_name("snom").unwrap();
    let (snom_record, _) = self::record("000413a1b2c3");
    let snom_ctx = PhoneContext::build(&snom_record, &sealer, "snom", None, "http://h/prov/", 30).unwrap();
    assert!(
        renderer
            .render_phone(snom, &snom_ctx)
            .unwrap()
            .contains("<user_name idx=\"1\" perm=\"R\">alice</user_name>")
    );
}
