//! Phones fetching their files: vendors' real file names and User-Agents, enrolment and
//! credentials, denials, the miss limit, ETags, and NOTIFY after a Devices update.

use std::collections::HashMap;
use std::time::Duration;

use innoprov_actors::sim::devices::DevicesSim;
use innoprov_actors::sim::phone::{Auth, PhoneSim};
use innoprov_actors::sim::users::{SimPhone, UsersConnection, UsersSim};

use crate::common::{PASSWORD, open_store, start_with_devices};

const PROV: &str = "/example.com/innoprov/prov";

async fn provision(sim: &DevicesSim, conn: &mut UsersConnection, mac: &str, n: u32) -> SimPhone {
    let phone = SimPhone {
        mac: mac.to_string(),
        code: sim.issue_code(),
        ..SimPhone::numbered(n)
    };
    let reply = conn.provision(&phone).await.unwrap();
    assert_eq!(reply["result"], "ok", "{reply}");
    phone
}

pub(crate) fn key_values(body: &str, separator: char) -> HashMap<String, String> {
    body.lines()
        .filter_map(|l| l.split_once(separator))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn xml_text(body: &str, tag: &str) -> String {
    let doc = roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    doc.descendants()
        .find(|n| n.has_tag_name(tag))
        .and_then(|n| n.text())
        .unwrap_or_default()
        .to_string()
}

/// The provisioning credentials a first file gave the phone.
pub(crate) fn credentials(vendor: &str, body: &str) -> (String, String) {
    match vendor {
        "yealink" => {
            let kv = key_values(body, '=');
            (
                kv["static.auto_provision.server.username"].clone(),
                kv["static.auto_provision.server.password"].clone(),
            )
        }
        "fanvil" => {
            let kv = key_values(body, ':');
            (kv["Default Username"].clone(), kv["Default Password"].clone())
        }
        "grandstream" => (xml_text(body, "P1360"), xml_text(body, "P1361")),
        _ => {
            let server = xml_text(body, "setting_server");
            let userinfo = server
                .split("://")
                .nth(1)
                .unwrap()
                .split('@')
                .next()
                .unwrap()
                .to_string();
            let (u, p) = userinfo.split_once(':').unwrap();
            (u.to_string(), p.to_string())
        }
    }
}

#[tokio::test]
async fn every_vendor_gets_its_file_under_its_real_name_and_user_agent() {
    let (service, _dir, sim) = start_with_devices("").await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .unwrap();
    let cases = [
        (
            "yealink",
            "805ec01a2b3c",
            "805ec01a2b3c.cfg",
            "Yealink SIP-T46S 66.86.0.15 80:5e:c0:1a:2b:3c",
        ),
        (
            "snom",
            "000413a1b2c3",
            "snomD785-000413A1B2C3.htm",
            "Mozilla/4.0 (compatible; snomD785-SIP 10.1.73.16 2010.12-00004-gd311851 SPEAR)",
        ),
        (
            "grandstream",
            "000b82a1b2c3",
            "cfg000b82a1b2c3.xml",
            "Grandstream Model HW GXP2170 SW 1.0.11.3 DevId 000b82a1b2c3",
        ),
        (
            "fanvil",
            "0c383e0a0b0c",
            "0c383e0a0b0c.cfg",
            "Fanvil X4U 2.4.12 0c383e0a0b0c",
        ),
    ];
    for (n, (vendor, mac, file, ua)) in cases.iter().enumerate() {
        let phone = provision(&sim, &mut conn, mac, n as u32 + 100).await;
        let device = PhoneSim {
            addr: service.addr,
            user_agent: ua.to_string(),
        };
        let r = device
            .fetch(&format!("{PROV}/{file}"), &Auth::None, None)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{vendor}: {}", r.body);
        assert!(r.headers.contains_key("etag"), "{vendor}: ETag");
        let (user, password, server) = match *vendor {
            "yealink" => {
                let kv = key_values(&r.body, '=');
                (
                    kv["account.1.user_name"].clone(),
                    kv["account.1.password"].clone(),
                    kv["account.1.sip_server.1.address"].clone(),
                )
            }
            "fanvil" => {
                let kv = key_values(&r.body, ':');
                (
                    kv["SIP1 Phone Number"].clone(),
                    kv["SIP1 Register Pswd"].clone(),
                    kv["SIP1 Register Addr"].clone(),
                )
            }
            "grandstream" => (
                xml_text(&r.body, "P35"),
                xml_text(&r.body, "P34"),
                xml_text(&r.body, "P47"),
            ),
            _ => (
                xml_text(&r.body, "user_name"),
                xml_text(&r.body, "user_pass"),
                xml_text(&r.body, "user_host"),
            ),
        };
        assert_eq!(user, phone.username, "{vendor}");
        assert_eq!(password, phone.password, "{vendor}: the decrypted user password");
        assert!(
            server.starts_with("pbx.example.com"),
            "{vendor}: registrar gk1 from Devices: {server}"
        );
        let (prov_user, prov_password) = credentials(vendor, &r.body);
        assert!(
            !prov_user.is_empty() && prov_password.len() >= 20,
            "{vendor}: provisioning credentials"
        );
        // Fetching with them completes enrolment; without them is refused afterwards.
        let with = device
            .fetch(
                &format!("{PROV}/{file}"),
                &Auth::Basic(prov_user.clone(), prov_password.clone()),
                None,
            )
            .await
            .unwrap();
        assert_eq!(with.status, 200, "{vendor}");
        let without = device
            .fetch(&format!("{PROV}/{file}"), &Auth::None, None)
            .await
            .unwrap();
        assert_eq!(without.status, 401, "{vendor}");
        let digest = device
            .fetch(
                &format!("{PROV}/{file}"),
                &Auth::Digest(prov_user, prov_password),
                None,
            )
            .await
            .unwrap();
        assert_eq!(digest.status, 200, "{vendor}: Digest");
    }
    // Model-wide files are served to anyone and carry no secret.
    let yealink = PhoneSim {
        addr: service.addr,
        user_agent: "Yealink SIP-T46S 66.86.0.15".into(),
    };
    // Yealink V81+ asks for <mac>.boot first: it is served for any MAC (it names only the
    // phone's own file, so it tells a scanner nothing) and includes <mac>.cfg.
    let boot = yealink
        .fetch(&format!("{PROV}/805ec0ffffff.boot"), &Auth::None, None)
        .await
        .unwrap();
    assert_eq!(boot.status, 200);
    assert!(boot.body.starts_with("#!version:1.0.0.1\n"));
    assert!(
        boot.body.contains("include:config \"805ec0ffffff.cfg\"\n"),
        "{}",
        boot.body
    );
    // The generic boot file would include nothing: it is a probe, 404.
    let generic = yealink
        .fetch(&format!("{PROV}/y000000000000.boot"), &Auth::None, None)
        .await
        .unwrap();
    assert_eq!(generic.status, 404);
    // A Yealink file name for a Snom MAC, or a Snom User-Agent on a Yealink file: refused.
    let snom_mac = yealink
        .fetch(&format!("{PROV}/000413a1b2c3.cfg"), &Auth::None, None)
        .await
        .unwrap();
    assert_eq!(snom_mac.status, 404);
    let snom_ua = PhoneSim {
        addr: service.addr,
        user_agent: "snomD785".into(),
    };
    assert_eq!(
        snom_ua
            .fetch(&format!("{PROV}/805ec01a2b3c.cfg"), &Auth::None, None)
            .await
            .unwrap()
            .status,
        404
    );
}

#[tokio::test]
async fn unknown_macs_get_404_and_a_scan_only_404_or_429_and_no_secret() {
    let (service, _dir, sim) = start_with_devices("[provisioning]\nmisses_per_minute = 20\n").await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .unwrap();
    // A provisioned phone inside the scanned range.
    let phone = provision(&sim, &mut conn, "001565000100", 1).await;
    let scanner = PhoneSim {
        addr: service.addr,
        user_agent: "Yealink SIP-T46S 66.86.0.15".into(),
    };
    let unknown = scanner
        .fetch(&format!("{PROV}/001565abcdef.cfg"), &Auth::None, None)
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    let other = scanner
        .fetch(&format!("{PROV}/nonsense.txt"), &Auth::None, None)
        .await
        .unwrap();
    assert_eq!(
        (other.status, other.body.as_str()),
        (404, unknown.body.as_str()),
        "one body for every denial"
    );

    let mut statuses: HashMap<u16, u32> = HashMap::new();
    for n in 0..1000u32 {
        let r = scanner
            .fetch(&format!("{PROV}/001565{n:06x}.cfg"), &Auth::None, None)
            .await
            .unwrap();
        *statuses.entry(r.status).or_default() += 1;
        assert!(
            r.body == unknown.body,
            "no file and no secret leaks to a scanner: {} {}",
            r.status,
            r.body
        );
        assert!(!r.body.contains(&phone.password));
    }
    assert_eq!(
        statuses.keys().filter(|s| **s != 404 && **s != 429).count(),
        0,
        "{statuses:?}"
    );
    assert!(statuses[&429] >= 970, "{statuses:?}");
    assert!(
        service
            .wait_for_log(
                "provisioning denied for 127.0.0.1: too many misses",
                Duration::from_secs(2)
            )
            .await
    );
}

#[tokio::test]
async fn outside_the_enrolment_window_credentials_are_required() {
    let (service, _dir, sim) = start_with_devices("[provisioning]\nenrolment_window_minutes = 0\n").await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .unwrap();
    provision(&sim, &mut conn, "001565000200", 2).await;
    let device = PhoneSim {
        addr: service.addr,
        user_agent: "Yealink SIP-T46S".into(),
    };
    let r = device
        .fetch(&format!("{PROV}/001565000200.cfg"), &Auth::None, None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let challenges = &r.headers["www-authenticate"];
    assert!(
        challenges.contains("Digest") && challenges.contains("Basic"),
        "{challenges}"
    );
    assert_eq!(r.body, innoprov_actors::edge::prov_http::DENIED_BODY);
    let wrong = device
        .fetch(
            &format!("{PROV}/001565000200.cfg"),
            &Auth::Basic("p0".into(), "guess".into()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(wrong.status, 401);
}

async fn receive_notify(socket: &tokio::net::UdpSocket) -> String {
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buf))
        .await
        .expect("NOTIFY in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_devices_update_changes_the_etag_and_sends_notify() {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = udp.local_addr().unwrap().port();
    let (service, dir, sim) = start_with_devices(&format!("[provisioning]\nnotify_port = {port}\n")).await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .unwrap();
    let phone = provision(&sim, &mut conn, "001565000300", 3).await;
    let device = PhoneSim {
        addr: service.addr,
        user_agent: "Yealink SIP-T46S 66.86.0.15".into(),
    };
    let path = format!("{PROV}/001565000300.cfg");
    let first = device.fetch(&path, &Auth::None, None).await.unwrap();
    let (user, password) = credentials("yealink", &first.body);
    let creds = Auth::Basic(user, password);
    let etag1 = first.headers["etag"].clone();
    let same = device.fetch(&path, &creds, Some(&etag1)).await.unwrap();
    assert_eq!(same.status, 304, "unchanged file: Not Modified");

    let update = r#"{"id":3,"domainId":1,"type":"PHONE","categories":[],"gk1":"pbx2.example.com","coder":"OPUS-WB","frameSize":20}"#;
    assert_eq!(sim.push_update("001565000300", update), 1);
    let notify = receive_notify(&udp).await;
    assert!(
        notify.starts_with(&format!(
            "NOTIFY sip:{}@127.0.0.1:{port} SIP/2.0\r\n",
            phone.username
        )),
        "{notify}"
    );
    assert!(
        notify.contains("\r\nEvent: check-sync;reboot=false\r\n"),
        "{notify}"
    );

    let second = device.fetch(&path, &creds, Some(&etag1)).await.unwrap();
    assert_eq!(second.status, 200, "changed file is sent again");
    assert_ne!(second.headers["etag"], etag1);
    let kv = key_values(&second.body, '=');
    assert_eq!(kv["account.1.sip_server.1.address"], "pbx2.example.com");
    assert_eq!(kv["account.1.codec.opus.enable"], "1");

    // Every fetch is in the phone's audit, readable through the core API.
    let (status, _) = service.terminate();
    assert!(status.success());
    let (store, _) = open_store(dir.path());
    let mac = "001565000300".parse().unwrap();
    let timeline = innoprov::Store::audit(&store, &mac, 100).unwrap();
    // The state changes are stored in the same timeline as the downloads.
    let states: Vec<(&str, u64)> = timeline
        .iter()
        .filter_map(|e| Some((e.state.as_deref()?, e.config_version)))
        .collect();
    assert_eq!(states.last(), Some(&("configured", 2)), "{timeline:?}");
    let audit: Vec<_> = timeline.into_iter().filter(|e| e.state.is_none()).collect();
    let seen: Vec<(u16, &str, u64)> = audit
        .iter()
        .map(|e| (e.status, e.outcome.as_str(), e.config_version))
        .collect();
    assert_eq!(
        seen,
        [
            (200, "served for enrolment", 1),
            (304, "not modified", 1),
            (200, "served", 2)
        ]
    );
    assert!(audit.iter().all(|e| e.client.starts_with("127.0.0.1:")
        && e.vendor == "yealink"
        && e.user_agent.starts_with("Yealink")));
}

#[tokio::test]
async fn notify_can_be_switched_off() {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = udp.local_addr().unwrap().port();
    let (service, _dir, sim) =
        start_with_devices(&format!("[provisioning]\nnotify = false\nnotify_port = {port}\n")).await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .unwrap();
    provision(&sim, &mut conn, "001565000400", 4).await;
    let device = PhoneSim {
        addr: service.addr,
        user_agent: "Yealink".into(),
    };
    assert_eq!(
        device
            .fetch(&format!("{PROV}/001565000400.cfg"), &Auth::None, None)
            .await
            .unwrap()
            .status,
        200
    );
    sim.push_update(
        "001565000400",
        r#"{"id":3,"type":"PHONE","gk1":"x","coder":"G711A"}"#,
    );
    assert!(
        service
            .wait_for_log(
                "phone 001565000400: configuration stored (4 items, version 2)",
                Duration::from_secs(10)
            )
            .await
    );
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), udp.recv_from(&mut buf))
            .await
            .is_err(),
        "no NOTIFY"
    );
}

/// GET over TLS, trusting only the test certificate.
async fn https_get(addr: std::net::SocketAddr, path: &str, user_agent: &str) -> (u16, String) {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rustls_pki_types::CertificateDer::from_pem_slice(include_bytes!("fixtures/cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {user_agent}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn files_are_served_over_https_when_a_certificate_is_configured() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let tls = format!(
        "[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
        fixtures.join("cert.pem").display(),
        fixtures.join("key.pem").display()
    );
    let (service, _dir, sim) = start_with_devices(&tls).await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .unwrap();
    let phone = provision(&sim, &mut conn, "001565000500", 5).await;
    let https = service.https_addr.expect("HTTPS listener");
    let (status, text) = https_get(https, &format!("{PROV}/001565000500.cfg"), "Yealink SIP-T46S").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(&format!("account.1.password = {}", phone.password)));
    // The phone is told to come back over HTTPS.
    assert!(
        text.contains("static.auto_provision.server.url = https://localhost/example.com/innoprov/prov/"),
        "{text}"
    );
}
