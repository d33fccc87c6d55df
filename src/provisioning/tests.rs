//! Rendering every vendor's files from one merged record: golden snapshots, and every file
//! parsed back with the SIP account, password, server and transport asserted.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::context::{KeyView, PhoneContext};
use super::keys::FunctionKey;
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

/// A key profile: a line, two BLF (one label needing escapes), a speed dial, DND, then BLF keys
/// up to 50, past the line keys / VPKs of the default Yealink (27) and Grandstream (48) models.
fn sample_keys() -> Vec<KeyView> {
    let blf = |target: &str, label: &str| FunctionKey::Blf {
        target: target.into(),
        label: label.into(),
    };
    let mut keys = vec![
        FunctionKey::Line,
        blf("anna", "Anna"),
        blf("bob.b", "Bob & <Co> \"B\""),
        FunctionKey::SpeedDial {
            number: "+4970311234".into(),
            label: "Office".into(),
        },
        FunctionKey::Dnd,
    ];
    keys.extend((6..=50).map(|n| blf(&format!("ext{n}"), "")));
    KeyView::list(&keys)
}

fn render(vendor: &str, mac: &str, model: Option<&str>) -> String {
    render_keys(vendor, mac, model, sample_keys())
}

fn render_keys(vendor: &str, mac: &str, model: Option<&str>, keys: Vec<KeyView>) -> String {
    let vendors = Vendors::builtin();
    let descriptor = vendors.by_name(vendor).unwrap();
    let (record, sealer) = record(mac);
    let mut ctx = PhoneContext::build(
        &record,
        &sealer,
        vendor,
        model,
        "https://prov.example.com/example.com/innoprov/prov/",
        60,
    )
    .unwrap();
    ctx.keys = keys;
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

/// Whether `key` is one the notes list: literally, as a pattern where `<n>` stands for a
/// number (`linekey.<n>.type`), or in a range of P-values (`P23000..P23799`).
fn is_documented(documented: &HashMap<String, String>, key: &str) -> bool {
    documented.contains_key(key) || documented.keys().any(|pattern| matches_pattern(pattern, key))
}

fn matches_pattern(pattern: &str, key: &str) -> bool {
    if let Some((low, high)) = pattern.split_once("..") {
        let number = |text: &str| text.strip_prefix('P').and_then(|n| n.parse::<u32>().ok());
        return match (number(low), number(high), number(key)) {
            (Some(low), Some(high), Some(n)) => (low..=high).contains(&n),
            _ => false,
        };
    }
    let mut parts = pattern.split("<n>");
    let Some(first) = parts.next() else { return false };
    let Some(mut rest) = key.strip_prefix(first) else {
        return false;
    };
    let mut any = false;
    for part in parts {
        any = true;
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        let Some(after) = rest[digits..].strip_prefix(part) else {
            return false;
        };
        rest = after;
    }
    any && rest.is_empty()
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
            // Snom's function keys: `<fkey>` elements in `<functionKeys>`.
            doc.descendants()
                .filter(|n| {
                    n.is_element()
                        && n.parent().is_some_and(|p| {
                            p.has_tag_name(parent)
                                || (parent == "phone-settings" && p.has_tag_name("functionKeys"))
                        })
                })
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
            // Every model the templates know a key count for, and one they do not.
            let model = ["D785", "T27G", "T46S", "T41S", "GRP2615", "GXP2130", "GXP2140"][n % 7];
            let mut ctx =
                PhoneContext::build(&record, &sealer, vendor, Some(model), "http://h:8080/prov/", 60)
                    .unwrap();
            ctx.keys = sample_keys();
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
                    is_documented(&documented, key),
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

#[test]
fn function_keys_in_each_vendors_syntax() {
    let y = key_values(&render("yealink", "0015651a2b3c", None), '=');
    assert_eq!(
        (y["linekey.1.type"].as_str(), y["linekey.1.line"].as_str()),
        ("15", "1")
    );
    assert_eq!(
        (
            y["linekey.2.type"].as_str(),
            y["linekey.2.value"].as_str(),
            y["linekey.2.label"].as_str()
        ),
        ("16", "anna", "Anna")
    );
    assert_eq!(
        (y["linekey.4.type"].as_str(), y["linekey.4.value"].as_str()),
        ("13", "+4970311234")
    );
    assert_eq!(y["linekey.5.type"], "5", "DND");
    assert_eq!(y["linekey.6.label"], "ext6", "the target when no label");
    // No model in the file name: the T46U's 27 line keys, then its 60-key modules.
    assert!(y.contains_key("linekey.27.type") && !y.contains_key("linekey.28.type"));
    assert_eq!(y["expansion_module.1.key.1.value"], "ext28");
    assert_eq!(y["expansion_module.1.key.23.type"], "16");
    let t27 = key_values(&render("yealink", "0015651a2b3c", Some("T27G")), '=');
    assert_eq!(t27["expansion_module.1.key.20.value"], "ext41");
    assert_eq!(
        t27["expansion_module.1.key.22.value"], "ext42",
        "key 21 is not configurable"
    );
    let t41 = key_values(&render("yealink", "0015651a2b3c", Some("T41S")), '=');
    assert!(t41.contains_key("linekey.15.type"));
    assert!(
        !t41.keys()
            .any(|k| k.starts_with("expansion_module") || k == "linekey.16.type")
    );

    let snom = render("snom", "000413a1b2c3", Some("D785"));
    let doc = roxmltree::Document::parse(&snom).unwrap();
    let fkeys: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("fkey")).collect();
    assert_eq!(fkeys.len(), 50);
    assert!(
        fkeys
            .iter()
            .all(|k| k.parent().is_some_and(|p| p.has_tag_name("functionKeys")))
    );
    let fkey = |idx: usize| (fkeys[idx].attribute("idx").unwrap(), fkeys[idx].text().unwrap());
    assert_eq!(fkey(0), ("0", "line"));
    assert_eq!(fkey(1), ("1", "blf sip:anna@gk1.example.com"));
    assert_eq!(fkeys[2].attribute("label"), Some("Bob & <Co> \"B\""), "escaped");
    assert_eq!(fkey(3), ("3", "speed +4970311234"));
    assert_eq!(fkey(4), ("4", "keyevent F_DND"));
    assert_eq!(fkey(49), ("49", "blf sip:ext50@gk1.example.com"));

    // No model: a GXP2170 (12 fixed VPKs of 48, GXP mode numbers), then the extension modules.
    let g = xml_values(&render("grandstream", "000b82a1b2c3", None));
    let vpk = |p: [u32; 4]| p.map(|p| g[&format!("P{p}")].clone());
    assert_eq!(
        vpk([1363, 1364, 1465, 1466]),
        ["0", "0", "Line", ""].map(String::from)
    );
    assert_eq!(
        vpk([1365, 1366, 1467, 1468]),
        ["11", "0", "Anna", "anna"].map(String::from)
    );
    assert_eq!(
        vpk([1369, 1370, 1471, 1472]),
        ["10", "0", "Office", "+4970311234"].map(String::from)
    );
    assert_eq!(g["P1371"], "32", "DND on a fixed GXP VPK");
    assert_eq!(
        vpk([23820, 23821, 23822, 23823]),
        ["11", "0", "ext12", "ext12"].map(String::from)
    );
    assert_eq!(
        vpk([23824, 23825, 23826, 23827]),
        ["1", "0", "ext13", "ext13"].map(String::from)
    );
    assert_eq!(g["P23967"], "ext48", "VPK 48");
    assert_eq!(
        vpk([23000, 23001, 23002, 23003]),
        ["1", "0", "ext49", "ext49"].map(String::from)
    );
    assert_eq!(g["P23008"], "ext50");
    let grp = xml_values(&render("grandstream", "000b82a1b2c3", Some("GRP2612")));
    assert_eq!((grp["P1363"].as_str(), grp["P1365"].as_str()), ("31", "1"));
    assert_eq!((grp["P1369"].as_str(), grp["P1371"].as_str()), ("0", "22"));
    assert_eq!(grp["P23003"], "ext17", "16 VPKs, then the modules");
    let gxp = xml_values(&render("grandstream", "000b82a1b2c3", Some("GXP2130")));
    assert_eq!(gxp["P1371"], "22", "DND on a dynamic GXP VPK");
    assert!(gxp.contains_key("P23823") && !gxp.contains_key("P23824") && !gxp.contains_key("P23000"));

    let f = key_values(&render("fanvil", "0c383e0a0b0c", None), ':');
    let fk = |n: u32, what: &str| f[&format!("Fkey{n} {what}")].clone();
    assert_eq!((fk(1, "Type"), fk(1, "Value")), ("2".into(), "SIP1".into()));
    assert_eq!(
        (fk(2, "Type"), fk(2, "Value"), fk(2, "Title")),
        ("1".into(), "anna@1/b".into(), "Anna".into())
    );
    assert_eq!(
        (fk(4, "Type"), fk(4, "Value")),
        ("1".into(), "+4970311234@1/f".into())
    );
    assert_eq!((fk(5, "Type"), fk(5, "Value")), ("3".into(), "F_DND".into()));
    assert_eq!(fk(50, "Value"), "ext50@1/b");

    let p = xml_values(&render("poly", "0004f2a1b2c3", None));
    assert_eq!(p["attendant.resourceList.1.address"], "anna");
    assert_eq!(p["attendant.resourceList.2.label"], "Bob & <Co> \"B\"");
    assert_eq!(p["attendant.resourceList.2.type"], "normal");
    assert_eq!(p["attendant.resourceList.47.address"], "ext50", "BLF keys only");
    assert!(!p.contains_key("attendant.resourceList.48.address"));

    let gigaset = render("gigaset", "7c2f80a1b2c3", None);
    assert!(
        !gigaset.contains("anna") && !gigaset.contains("ext50"),
        "an Nx70 gets no keys"
    );

    // Without a key profile nothing key-related is written.
    for (vendor, mac) in [
        ("yealink", "0015651a2b3c"),
        ("snom", "000413a1b2c3"),
        ("grandstream", "000b82a1b2c3"),
        ("fanvil", "0c383e0a0b0c"),
        ("poly", "0004f2a1b2c3"),
    ] {
        let text = render_keys(vendor, mac, None, Vec::new());
        for needle in ["linekey", "functionKeys", "<P1363>", "DSSKEY", "attendant"] {
            assert!(!text.contains(needle), "{vendor}: {needle}");
        }
    }
}
