//! ProvisioningPhone: validation, password decryption, durable storage.

use innoprov_actors::sim::users::{SimPhone, UsersSim};

use crate::common::{PASSWORD, Service, open_store, phone, start_with_devices, stored_phone};

#[tokio::test]
async fn non_ascii_password_is_stored_decrypted_exactly_and_sealed() {
    let (service, dir, sim) = start_with_devices("").await;
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conn = users.connect(&service.ws_url()).await.unwrap();
    let phone = SimPhone {
        mac: "00:15:65:1A:2B:3C".into(),
        code: sim.issue_code(),
        username: "jürgen".into(),
        cn: "Jürgen Müller".into(),
        password: "pä$$wörd ✓ 日本語 \"quoted\"".into(),
    };
    let text = conn.provisioning_text(&phone, Some("p1")).unwrap();
    conn.client.send_raw(&text).await.unwrap();
    let reply = conn.client.recv_mt("ProvisioningPhoneResult").await.unwrap();
    assert_eq!(reply["result"], "ok", "{reply}");
    assert_eq!(reply["src"], "p1");

    let (status, logs) = service.terminate();
    assert!(status.success());
    assert!(
        !logs.contains("pä$$wörd"),
        "the user password never reaches the logs"
    );
    assert!(logs.contains("phone 0015651a2b3c"), "log lines name the MAC");

    let (store, sealer) = open_store(dir.path());
    let record = stored_phone(&store, "0015651a2b3c").expect("stored");
    assert_eq!(record.username, "jürgen");
    assert_eq!(record.cn, "Jürgen Müller");
    assert_eq!(record.code, "", "the code is not kept in clear");
    assert_eq!(
        record.provisioning_code(&sealer).unwrap().unwrap().expose(),
        "500000000000"
    );
    let sealed = record.password.expect("password stored");
    let opened = sealer
        .open(&sealed, &innoprov::seal::SealPurpose::UserPassword(record.mac))
        .unwrap();
    assert_eq!(opened.expose(), phone.password);
    // At rest the password is sealed: its plaintext is nowhere in the store's files.
    for entry in walk(&dir.path().join("store")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !contains(&bytes, phone.password.as_bytes()),
            "plaintext in {}",
            entry.display()
        );
        assert!(
            !contains(&bytes, b"500000000000"),
            "the provisioning code in clear in {}",
            entry.display()
        );
    }
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("store/seal.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map_while(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn invalid_fields_fail_with_the_field_named_and_store_nothing() {
    let (service, dir, sim) = start_with_devices("").await;
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conn = users.connect(&service.ws_url()).await.unwrap();
    let good = phone(&sim, 1);
    let cases = [
        (
            SimPhone {
                mac: "00:15:65:zz:00:01".into(),
                ..good.clone()
            },
            "mac",
        ),
        (
            SimPhone {
                mac: "0015650001".into(),
                ..good.clone()
            },
            "mac",
        ),
        (
            SimPhone {
                code: "12ab".into(),
                ..good.clone()
            },
            "code",
        ),
        (
            SimPhone {
                username: String::new(),
                ..good.clone()
            },
            "usename",
        ),
        (
            SimPhone {
                cn: "x".repeat(300),
                ..good.clone()
            },
            "cn",
        ),
    ];
    for (phone, field) in cases {
        let reply = conn.provision(&phone).await.unwrap();
        assert_eq!(reply["result"], "failed", "{reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(&format!("{field}:")), "{field}: {error}");
    }
    // A password that is not hex.
    let text = conn.provisioning_text(&good, Some("h")).unwrap();
    let broken = text.replace("\"password\":\"", "\"password\":\"zz");
    conn.client.send_raw(&broken).await.unwrap();
    let reply = conn.client.recv_mt("ProvisioningPhoneResult").await.unwrap();
    assert_eq!(
        (reply["result"].as_str(), reply["src"].as_str()),
        (Some("failed"), Some("h"))
    );
    assert!(reply["error"].as_str().unwrap().starts_with("password:"));

    // The connection survives bad input: a good phone afterwards is stored.
    assert_eq!(conn.provision(&good).await.unwrap()["result"], "ok");
    let (status, _) = service.terminate();
    assert!(status.success());
    let (store, _) = open_store(dir.path());
    let phones = innoprov::Store::phones(&store).unwrap();
    assert_eq!(phones.len(), 1, "only the good phone");
    assert_eq!(phones[0].mac.to_string(), "001565000001");
}

#[tokio::test]
async fn reprovisioning_replaces_and_many_in_flight_on_one_connection() {
    let (service, dir, sim) = start_with_devices("").await;
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conn = users.connect(&service.ws_url()).await.unwrap();
    // 50 requests in flight at once, each with its own src.
    for n in 0..50 {
        let text = conn
            .provisioning_text(&phone(&sim, n), Some(&format!("r{n}")))
            .unwrap();
        conn.client.send_raw(&text).await.unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let reply = conn.client.recv_mt("ProvisioningPhoneResult").await.unwrap();
        assert_eq!(reply["result"], "ok", "{reply}");
        seen.insert(reply["src"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 50, "every src answered once");
    // Re-provision phone 7 to another user with a new code: its job and link are replaced.
    let code = sim.issue_code();
    let moved = SimPhone {
        username: "newowner".into(),
        code: code.clone(),
        ..SimPhone::numbered(7)
    };
    assert_eq!(conn.provision(&moved).await.unwrap()["result"], "ok");
    assert_eq!(sim.identifies_with_code("001565000007"), 2);
    assert!(
        sim.wait_until(std::time::Duration::from_secs(5), |s| {
            s.connected_macs().iter().filter(|m| *m == "001565000007").count() == 1
        })
        .await,
        "the old link is closed, one link per phone"
    );
    let (status, _) = service.terminate();
    assert!(status.success());
    let (store, sealer) = open_store(dir.path());
    assert_eq!(innoprov::Store::phones(&store).unwrap().len(), 50);
    let record = stored_phone(&store, "001565000007").unwrap();
    assert_eq!(
        (
            record.username.as_str(),
            record.provisioning_code(&sealer).unwrap().unwrap().expose()
        ),
        ("newowner", code.as_str())
    );
    assert_eq!(record.configs.len(), 4);
}

#[tokio::test]
async fn an_acknowledged_phone_survives_sigkill() {
    let (service, dir, sim) = start_with_devices("").await;
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conn = users.connect(&service.ws_url()).await.unwrap();
    let phone = phone(&sim, 42);
    assert_eq!(conn.provision(&phone).await.unwrap()["result"], "ok");
    // Killed the moment the ok arrived: no shutdown, no final flush.
    service.kill9();
    {
        let (store, sealer) = open_store(dir.path());
        let record = stored_phone(&store, "00156500002a").expect("acknowledged phone is durable");
        let password = sealer
            .open(
                record.password.as_ref().unwrap(),
                &innoprov::seal::SealPurpose::UserPassword("00156500002a".parse().unwrap()),
            )
            .unwrap();
        assert_eq!(password.expose(), phone.password);
    }
    // And the service starts again on that store and still has it.
    let service = Service::start_in(dir.path(), &crate::common::devices_config(&sim));
    assert!(service.logs().contains("1 phones"), "{}", service.logs());
    let (status, logs) = service.terminate();
    assert!(status.success(), "{status:?}: {logs}");
}
