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
                &crate::seal::SealPurpose::ProvPassword(mac),
            )
            .unwrap(),
    );
    record.web_password = Some(
        sealer
            .seal(
                &Secret::new("WebPass456"),
                &crate::seal::SealPurpose::WebPassword(mac),
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
    let mut values = HashMap::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        // Poly's parameters are attributes; Snom's and Grandstream's are elements.
        // Gigaset's Nx70 writes `<param name=".." value=".."/>`.
        if node.has_tag_name("param") && doc.root_element().has_tag_name("provisioning") {
            if let (Some(name), Some(value)) = (node.attribute("name"), node.attribute("value")) {
                values.insert(name.to_string(), value.to_string());
            }
        } else if doc.root_element().has_tag_name("polycomConfig") {
            for attribute in node.attributes() {
                values.insert(attribute.name().to_string(), attribute.value().to_string());
            }
        } else if node.children().all(|c| c.is_text()) {
            values.insert(
                node.tag_name().name().to_string(),
                node.text().unwrap_or_default().to_string(),
            );
        }
    }
    values
}

#[test]
fn poly() {
    let text = render("poly", "0004f2a1b2c3", None);
    insta::assert_snapshot!(text);
    let x = xml_values(&text);
    assert_eq!(x["reg.1.address"], "alice");
    assert_eq!(x["reg.1.server.1.port"], "5061");
    assert_eq!(x["reg.1.server.1.transport"], "TLS");
    assert_eq!(x["device.set"], "1");
    assert_eq!(x["device.dhcp.bootSrvUseOpt"], "2");
    assert_eq!(x["voIpProt.SIP.specialEvent.checkSync.alwaysReboot"], "0");
}

#[test]
fn gigaset() {
    let text = render("gigaset", "7c2f80a1b2c3", None);
    insta::assert_snapshot!(text);
    let doc = roxmltree::Document::parse(&text).unwrap();
    let root = doc.root_element();
    assert_eq!(
        (
            root.tag_name().name(),
            root.attribute("version"),
            root.attribute("productID")
        ),
        ("provisioning", Some("1.1"), Some("e2"))
    );
    let x = xml_values(&text);
    assert_eq!(x["SipAccount.00001.UserName"], "alice");
    assert_eq!(
        x["SipAccount.00001.AuthPassword"], PASSWORD,
        "XML escaping round-trips"
    );
    assert_eq!(x["SipAccount.00001.ProviderId"], "0");
    assert_eq!(x["SipProvider.0.RegServerAddress"], "gk1.example.com");
    assert_eq!(x["SipProvider.0.RegServerPort"], "5061");
    assert_eq!(x["SipProvider.0.TransportProtocol"], "3", "TLS");
    assert_eq!(
        x["SipProvider.0.UseSIPS"], "0",
        "sip: URIs over TLS, as the PBX expects"
    );
    assert_eq!(x["SipProvider.0.FailoverServerAddress"], "gk2.example.com");
    assert_eq!(x["DmGlobal.0.TimeZone"], "Europe/Berlin");
    assert_eq!(
        x["Provisioning.global.ProvisioningServer"],
        "https://pfixed:ProvPass123@prov.example.com/example.com/innoprov/prov/"
    );
    assert_eq!(x["Provisioning.global.Period"], "3600");
    assert_eq!(x["SystemSettings.global.SipMulticastEnabled"], "0");
    assert_eq!(x["WebUIAccounts.1.Password"], "WebPass456");
}

#[test]
fn gigaset_p_series_files_are_snoms() {
    let text = render("gigaset_p", "000413a1b2c3", Some("P82x"));
    let x = xml_values(&text);
    assert_eq!(x["user_name"], "alice");
    assert_eq!(x["user_host"], "gk1.example.com");
    assert_eq!(x["provisioning_order"], "redirection:stop");
    assert_eq!(x["settings_refresh_timer"], "3600");
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
    assert_eq!(kv["local_time.summer_time"], "1");
    assert_eq!(kv["local_time.start_time"], "3/5/7/2", "Sunday is 7");
    assert_eq!(kv["local_time.end_time"], "10/5/7/3");
    assert_eq!(kv["static.auto_provision.dhcp_option.enable"], "0");
    assert_eq!(kv["static.security.user_password"], "admin:WebPass456");
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
    assert_eq!(x["timezone"], "GER+1");
    assert_eq!(
        x["challenge_checksync"], "on",
        "check-sync only with the line's credentials"
    );
    assert_eq!(x["http_pass"], "WebPass456");
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
    assert_eq!(x["P212"], "2", "HTTPS provisioning is 2 (3 is FTP)");
    assert_eq!(
        x["P237"], "prov.example.com/example.com/innoprov/prov",
        "no scheme, no trailing '/': the phone adds '/' itself"
    );
    assert_eq!(x["P4428"], "0", "NOTIFY stays authenticated");
    assert_eq!(x["P145"], "0", "DHCP cannot redirect the phone");
    assert_eq!(x["P2"], "WebPass456", "the phone's own web admin password");
    assert_eq!(x["P246"], "CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00");
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
    assert_eq!(kv["SIP1 Transport"], "3", "TLS on firmware 2.x");
    assert_eq!(kv["SIP1 Media Crypto"], "1");
    assert_eq!(
        (kv["Default Username"].as_str(), kv["Default Password"].as_str()),
        ("pfixed", "ProvPass123")
    );
    assert_eq!(kv["Flash Protocol"], "5", "HTTPS");
    assert_eq!(kv["Time Zone"], "4", "UTC+1 in quarter hours");
    assert_eq!(kv["Account1 Password"], "WebPass456");
    assert!(
        text.starts_with("<<VOIP CONFIG FILE>>Version:2.1700000000\n"),
        "version rises with changes"
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
        ("poly", "0004f2a1b2c3"),
        ("gigaset", "7c2f80a1b2c3"),
        ("gigaset_p", "000413a1b2c3"),
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

/// The `keys` block of a vendor's notes: key → its line (documented values, meaning, source).
fn documented_keys(vendor: &str) -> HashMap<String, String> {
    let notes = match vendor {
        "yealink" => include_str!("../../docs/vendors/yealink.md"),
        "snom" => include_str!("../../docs/vendors/snom.md"),
        "grandstream" => include_str!("../../docs/vendors/grandstream.md"),
        "fanvil" => include_str!("../../docs/vendors/fanvil.md"),
        "poly" => include_str!("../../docs/vendors/poly.md"),
        "gigaset" => include_str!("../../docs/vendors/gigaset.md"),
        // Snom-made, Snom's file: Snom's notes.
        "gigaset_p" => include_str!("../../docs/vendors/snom.md"),
        other => panic!("no notes for {other}"),
    };
    let block = notes
        .split("```keys\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("{vendor}: no keys block in the notes"));
    block
        .lines()
        .filter_map(|line| line.split_once(" | "))
        .map(|(key, rest)| (key.trim().to_string(), rest.to_string()))
        .collect()
}

/// The keys a rendered file sets, named as the notes name them.
fn keys_of(vendor: &str, text: &str) -> Vec<String> {
    match vendor {
        "yealink" => key_values(text, '=').into_keys().collect(),
        "fanvil" => {
            let mut module = String::new();
            let mut keys = Vec::new();
            for line in text.lines() {
                if line.starts_with("<<") {
                    continue;
                }
                if line.starts_with('<') && line.ends_with("MODULE>") {
                    module = line.to_string();
                    continue;
                }
                let (key, _) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("not Key :Value: {line:?}"));
                keys.push(format!("{module} {}", key.trim()));
            }
            keys
        }
        "poly" | "gigaset" => xml_values(text).into_keys().collect(),
        _ => {
            let doc = roxmltree::Document::parse(text).unwrap();
            let parent = if vendor == "snom" || vendor == "gigaset_p" {
                "phone-settings"
            } else {
                "config"
            };
            doc.descendants()
                .filter(|n| n.is_element() && n.parent().is_some_and(|p| p.has_tag_name(parent)))
                .map(|n| n.tag_name().name().to_string())
                .collect()
        }
    }
}

#[test]
fn every_key_written_is_in_the_vendors_documented_list_and_required_keys_are_there() {
    let vendors = Vendors::builtin();
    let zones = [
        "CET-1CEST-2,M3.5.0/2,M10.5.0/3",
        "EST5EDT,M3.2.0,M11.1.0",
        "IST-5:30",
        "JST-9",
        "UTC0",
        "XXX3YYY,J60/2,300",
        "",
    ];
    for (vendor, mac) in [
        ("yealink", "0015651a2b3c"),
        ("snom", "000413a1b2c3"),
        ("grandstream", "000b82a1b2c3"),
        ("fanvil", "0c383e0a0b0c"),
        ("poly", "0004f2a1b2c3"),
        ("gigaset", "7c2f80a1b2c3"),
        ("gigaset_p", "000413a1b2c3"),
    ] {
        let documented = documented_keys(vendor);
        let required: Vec<&String> = documented
            .iter()
            .filter(|(_, line)| line.contains("(required"))
            .map(|(key, _)| key)
            .collect();
        assert!(!required.is_empty(), "{vendor}: the notes mark required keys");
        for (n, tz) in zones.iter().enumerate() {
            let (mut record, sealer) = record(mac);
            for item in &mut record.configs {
                if item.kind == "NTP" {
                    {
                        let mut body = item.body.to_map();
                        body.insert("tz".into(), Value::String(tz.to_string()));
                        item.body = crate::devices::JsonObject::from_map(&body);
                    }
                }
            }
            if n % 2 == 1 {
                // A phone without a second registrar, codec or frame size.
                record.configs.retain(|c| c.kind != "PHONE");
            }
            let mut ctx =
                PhoneContext::build(&record, &sealer, vendor, Some("D785"), "http://h:8080/prov/", 60)
                    .unwrap();
            if n % 2 == 0 {
                // With provisioning.trust_anchors: the CA keys must be documented too.
                ctx.prov.trust_anchors =
                    vec!["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(); 2];
            }
            let text = Renderer::new(&vendors, None)
                .render_phone(vendors.by_name(vendor).unwrap(), &ctx)
                .unwrap();
            let keys = keys_of(vendor, &text);
            for key in &keys {
                assert!(
                    documented.contains_key(key),
                    "{vendor} ({tz}): {key:?} is not in docs/vendors/{vendor}.md's key list"
                );
            }
            for key in &required {
                assert!(keys.contains(key), "{vendor} ({tz}): required {key:?} missing");
            }
        }
    }
}

#[test]
fn time_zones_in_each_vendors_form() {
    let vendors = Vendors::builtin();
    let with_zone = |vendor: &str, mac: &str, tz: &str| {
        let (mut record, sealer) = record(mac);
        for item in &mut record.configs {
            if item.kind == "NTP" {
                {
                    let mut body = item.body.to_map();
                    body.insert("tz".into(), Value::String(tz.to_string()));
                    item.body = crate::devices::JsonObject::from_map(&body);
                }
            }
        }
        let ctx = PhoneContext::build(&record, &sealer, vendor, Some("D785"), "http://h/prov/", 60).unwrap();
        Renderer::new(&vendors, None)
            .render_phone(vendors.by_name(vendor).unwrap(), &ctx)
            .unwrap()
    };
    // (zone, Yealink time_zone/summer_time/start/end, Snom code, Fanvil Time Zone/DST Type)
    let cases = [
        (
            "CET-1CEST,M3.5.0,M10.5.0/3",
            "+1",
            "1",
            Some(("3/5/7/2", "10/5/7/3")),
            "GER+1",
            "4",
            "2",
        ),
        (
            "EST5EDT,M3.2.0,M11.1.0",
            "-5",
            "1",
            Some(("3/2/7/2", "11/1/7/2")),
            "USA-5",
            "-20",
            "2",
        ),
        ("IST-5:30", "+5:30", "0", None, "IND+5.5", "22", "0"),
        ("JST-9", "+9", "0", None, "JPN+9", "36", "0"),
    ];
    for (tz, offset, summer, rules, snom, fanvil_zone, fanvil_dst) in cases {
        let y = key_values(&with_zone("yealink", "0015651a2b3c", tz), '=');
        assert_eq!(y["local_time.time_zone"], offset, "{tz}");
        assert_eq!(y["local_time.summer_time"], summer, "{tz}");
        if let Some((start, end)) = rules {
            assert_eq!(
                (
                    y["local_time.start_time"].as_str(),
                    y["local_time.end_time"].as_str()
                ),
                (start, end)
            );
            assert_eq!(y["local_time.offset_time"], "60");
        }
        let s = xml_values(&with_zone("snom", "000413a1b2c3", tz));
        assert_eq!(s["timezone"], snom, "{tz}");
        let g = xml_values(&with_zone("grandstream", "000b82a1b2c3", tz));
        assert_eq!(g["P64"], "customize");
        assert_eq!(
            crate::provisioning::timezone::PosixTz::parse(&g["P246"]).unwrap(),
            crate::provisioning::timezone::PosixTz::parse(tz).unwrap(),
            "Grandstream gets the same zone, explicitly written"
        );
        let f = key_values(&with_zone("fanvil", "0c383e0a0b0c", tz), ':');
        assert_eq!(
            (f["Time Zone"].as_str(), f["DST Type"].as_str()),
            (fanvil_zone, fanvil_dst),
            "{tz}"
        );
    }
    // A zone no Snom code matches: the phone keeps its own rather than a wrong one.
    assert!(!with_zone("snom", "000413a1b2c3", "UTC0").contains("<timezone"));
}
