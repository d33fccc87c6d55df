//! Devices sysclient links end to end: the PBX tells where Devices is, Users provisions, the
//! service links each phone to the Devices simulator; updates, restarts and faults.

use std::time::Duration;

use innoprov::devices::DeviceConfig;
use innoprov::seal::SealPurpose;
use innoprov_actors::sim::devices::{DevicesEvent, DevicesSim, SYSCLIENT_PATH};
use innoprov_actors::sim::pbx::{PbxSim, devices_services};
use innoprov_actors::sim::users::{SimPhone, UsersSim};

use crate::common::{
    APP_PATH, PASSWORD, Service, devices_config, open_store, phone, start_with_devices, stored_phone,
};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn full_flow_pbx_then_users_then_devices_then_ok() {
    let sim = DevicesSim::start().await;
    // No sysclient_url: the service must learn it from the PBX's ServicesInfo.
    let (service, dir) = Service::start("[devices]\nreconnect_min_ms = 100\n");
    let users = UsersSim::new("innoprov", PASSWORD);

    // Before the PBX said where Devices is: a clear failure, and nothing kept.
    let mut conn = users.connect(&service.ws_url()).await.unwrap();
    let early = conn.provision(&phone(&sim, 1)).await.unwrap();
    assert_eq!(early["result"], "failed");
    assert!(
        early["error"]
            .as_str()
            .unwrap()
            .contains("Devices Service not found"),
        "{early}"
    );

    let pbx = PbxSim::new(
        "innoprov",
        &format!("http://{}{APP_PATH}", service.addr),
        PASSWORD,
    );
    let mut pbx_conn = pbx.connect(&service.ws_url()).await.unwrap();
    pbx_conn.send_pbx_info(&["PbxApi", "Services"]).await.unwrap();
    pbx_conn
        .serve_services(&devices_services(&sim.service_url()))
        .await
        .unwrap();
    assert!(
        service
            .wait_for_log(
                &format!("Devices sysclient URL is now {}", sim.sysclient_url()),
                WAIT
            )
            .await
    );

    let p = phone(&sim, 2);
    let reply = conn.provision(&p).await.unwrap();
    assert_eq!(reply["result"], "ok", "{reply}");
    // The early phone, answered "failed", was not kept: it does not link once the URL is known.
    assert!(
        sim.wait_until(WAIT, |s| s.connected_macs().len() == 1).await,
        "{:?}",
        sim.events()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.connected_macs(), ["001565000002"]);

    let (status, logs) = service.terminate();
    assert!(status.success());
    let sysclient_password = sim.password_of("001565000002").unwrap();
    assert!(
        !logs.contains(&sysclient_password),
        "the sysclient password never reaches the logs"
    );
    assert!(
        sim.wait_until(WAIT, |s| s.connected_macs().is_empty()).await,
        "links closed at shutdown"
    );

    let (store, sealer) = open_store(dir.path());
    assert!(
        stored_phone(&store, "001565000001").is_none(),
        "the failed phone left nothing"
    );
    let record = stored_phone(&store, "001565000002").unwrap();
    let mac = record.mac;
    let stored_password = sealer.open(
        record.sysclient_password.as_ref().unwrap(),
        &SealPurpose::SysclientPassword(mac),
    );
    assert_eq!(stored_password.unwrap().expose(), sysclient_password);
    assert_eq!(record.config_version, 1);
    assert!(record.configured_at.is_some());
    let kinds: Vec<&str> = record.configs.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["PHONE", "MEDIA", "TLS_PROFILE", "NTP"]);
    let DeviceConfig::Phone(phone_config) = record.configs[0].typed() else {
        panic!("PHONE")
    };
    assert_eq!(
        (phone_config.gk1.as_str(), phone_config.coder.as_str()),
        ("pbx.example.com", "G722")
    );
    let media = &record.configs[1];
    let turn = sealer
        .open(
            &media.secrets["turnPassword"],
            &innoprov::devices::secret_purpose(&mac, &media.key, "turnPassword"),
        )
        .unwrap();
    assert_eq!(turn.expose(), sim.turn_password());
    assert!(
        !media.body.to_map().contains_key("turnPassword"),
        "no encrypted copy kept beside the sealed one"
    );
}

#[tokio::test]
async fn rejected_code_and_stalled_devices_fail_with_reasons() {
    let (service, _dir, sim) = start_with_devices("").await;
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conn = users.connect(&service.ws_url()).await.unwrap();

    let bad = SimPhone {
        code: "111111111111".into(),
        ..SimPhone::numbered(3)
    };
    let reply = conn.provision(&bad).await.unwrap();
    assert_eq!(reply["result"], "failed");
    assert!(reply["error"].as_str().unwrap().contains("rejected"), "{reply}");
    assert!(sim.events().contains(&DevicesEvent::CodeRejected {
        mac: "001565000003".into()
    }));
    drop(conn);
    let (status, _) = service.terminate();
    assert!(status.success());
    let (store, _) = open_store(_dir.path());
    assert!(
        stored_phone(&store, "001565000003").is_none(),
        "a refused code leaves nothing"
    );

    // A Devices that accepts but never answers: failed after the configured timeout.
    let stalled = DevicesSim::start().await;
    stalled.set_stall(true);
    let config =
        devices_config(&stalled).replace("provisioning_timeout_secs = 10", "provisioning_timeout_secs = 1");
    let (service, _dir) = Service::start(&config);
    let mut conn = users.connect(&service.ws_url()).await.unwrap();
    let reply = conn.provision(&phone(&stalled, 4)).await.unwrap();
    assert_eq!(reply["result"], "failed");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains("within 1 s"), "{reply}");
    // The stalled Devices never took the code: nothing is kept, and the answer says so.
    assert!(error.contains("nothing of it is kept"), "{reply}");
    let (status, _) = service.terminate();
    assert!(status.success());
    let (store, _) = open_store(_dir.path());
    assert!(stored_phone(&store, "001565000004").is_none());
}

#[tokio::test]
async fn updates_are_stored_and_bump_the_version() {
    let (service, dir, sim) = start_with_devices("").await;
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conn = users.connect(&service.ws_url()).await.unwrap();
    for n in [10, 11] {
        assert_eq!(conn.provision(&phone(&sim, n)).await.unwrap()["result"], "ok");
    }
    let update = r#"{"id":3,"domainId":1,"type":"PHONE","categories":[],"gk1":"pbx2.example.com","coder":"OPUS-WB","frameSize":40}"#;
    assert_eq!(sim.push_update("00156500000a", update), 1);
    assert!(
        service
            .wait_for_log(
                "phone 00156500000a: configuration stored (4 items, version 2)",
                WAIT
            )
            .await
    );
    assert_eq!(sim.deploy_admin_password("00156500000a", "adm1n-Ä"), 1);
    assert!(
        service
            .wait_for_log("phone 00156500000a: admin password deployed", WAIT)
            .await
    );
    // A new item type is added, unknown fields and all.
    sim.push_update(
        "00156500000a",
        r#"{"id":12,"type":"CERTIFICATES","list":[{"pem":"x"}]}"#,
    );
    assert!(
        service
            .wait_for_log(
                "phone 00156500000a: configuration stored (5 items, version 3)",
                WAIT
            )
            .await
    );

    let (status, logs) = service.terminate();
    assert!(status.success());
    assert!(!logs.contains("adm1n"), "admin password never logged");
    let (store, sealer) = open_store(dir.path());
    let record = stored_phone(&store, "00156500000a").unwrap();
    assert_eq!(record.config_version, 3);
    let DeviceConfig::Phone(p) = record.configs.iter().find(|c| c.key == "3").unwrap().typed() else {
        panic!()
    };
    assert_eq!(
        (p.gk1.as_str(), p.coder.as_str(), p.frame_size),
        ("pbx2.example.com", "OPUS-WB", Some(40))
    );
    let extra = record.configs.iter().find(|c| c.key == "12").unwrap();
    assert_eq!(extra.body.to_map()["list"][0]["pem"], "x");
    let admin = sealer
        .open(
            record.admin_password.as_ref().unwrap(),
            &innoprov::seal::SealPurpose::AdminPassword("00156500000a".parse().unwrap()),
        )
        .unwrap();
    assert_eq!(admin.expose(), "adm1n-Ä");
    // The other phone saw no update.
    assert_eq!(stored_phone(&store, "00156500000b").unwrap().config_version, 1);
}

#[tokio::test]
async fn devices_restart_reconnects_every_phone_with_digest_and_rate_limit() {
    let (service, _dir, sim) = start_with_devices("connects_per_second = 20\n").await;
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conn = users.connect(&service.ws_url()).await.unwrap();
    let count = 30;
    for n in 0..count {
        let text = conn.provisioning_text(&phone(&sim, n), None).unwrap();
        conn.client.send_raw(&text).await.unwrap();
    }
    for _ in 0..count {
        assert_eq!(
            conn.client.recv_mt("ProvisioningPhoneResult").await.unwrap()["result"],
            "ok"
        );
    }
    sim.clear_events();
    sim.restart(Duration::from_millis(300)).await;
    let all_back = sim
        .wait_until(Duration::from_secs(20), |s| {
            s.events()
                .iter()
                .filter(|e| matches!(e, DevicesEvent::ChallengeAnswered { ok: true, .. }))
                .count()
                == count as usize
                && s.connected_macs().len() == count as usize
        })
        .await;
    assert!(all_back, "every phone answered the challenge: {:?}", sim.events());
    assert!(
        !sim.events()
            .iter()
            .any(|e| matches!(e, DevicesEvent::ChallengeAnswered { ok: false, .. }))
    );
    for n in 0..count {
        assert_eq!(
            sim.identifies_with_code(&format!("001565{n:06x}")),
            1,
            "reconnects carry no code"
        );
    }
    // Never more than 20 connection attempts in any second (+1 for the window edge).
    let times = sim.connect_times();
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
            .count();
        assert!(in_window <= 21, "{in_window} connects within one second");
    }
}

#[tokio::test]
async fn a_garbage_frame_on_one_link_leaves_the_others_untouched() {
    let (service, _dir, sim) = start_with_devices("").await;
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conn = users.connect(&service.ws_url()).await.unwrap();
    for n in [20, 21] {
        assert_eq!(conn.provision(&phone(&sim, n)).await.unwrap()["result"], "ok");
    }
    assert_eq!(sim.send_garbage("001565000014"), 1);
    let update = r#"{"id":9,"type":"NTP","ntp1":"ntp.example.com","tz":"EST5EDT"}"#;
    sim.push_update("001565000015", update);
    assert!(
        service
            .wait_for_log(
                "phone 001565000015: configuration stored (4 items, version 2)",
                WAIT
            )
            .await
    );
    assert!(
        service
            .wait_for_log("phone 001565000014: ignoring a frame from Devices", WAIT)
            .await
    );
    // The phone that got garbage is still linked and still takes updates.
    sim.push_update("001565000014", update);
    assert!(
        service
            .wait_for_log(
                "phone 001565000014: configuration stored (4 items, version 2)",
                WAIT
            )
            .await
    );
    assert_eq!(sim.connected_macs().len(), 2);
}

#[tokio::test]
async fn a_dropped_link_reconnects_by_itself() {
    let (service, _dir, sim) = start_with_devices("").await;
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conn = users.connect(&service.ws_url()).await.unwrap();
    assert_eq!(conn.provision(&phone(&sim, 30)).await.unwrap()["result"], "ok");
    sim.clear_events();
    assert_eq!(sim.drop_link("00156500001e"), 1);
    assert!(
        sim.wait_until(WAIT, |s| s.events().contains(&DevicesEvent::ChallengeAnswered {
            mac: "00156500001e".into(),
            ok: true
        }))
        .await
    );
    // The complete configuration after the reconnect is stored again; unchanged, so its
    // version (and the phone's files) stay the same.
    let needle = "phone 00156500001e: configuration stored (4 items, version 1)";
    let deadline = std::time::Instant::now() + WAIT;
    while service.logs().matches(needle).count() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(service.logs().matches(needle).count(), 2, "{}", service.logs());
}

#[tokio::test]
async fn sigkill_mid_provisioning_leaves_no_half_stored_phone_and_all_reconnect() {
    let (service, dir, sim) = start_with_devices("").await;
    let users = UsersSim::new("innoprov", PASSWORD);
    let mut conn = users.connect(&service.ws_url()).await.unwrap();
    let count = 40;
    for n in 0..count {
        let text = conn.provisioning_text(&phone(&sim, n), None).unwrap();
        conn.client.send_raw(&text).await.unwrap();
    }
    // Kill as soon as the first few are acknowledged: the rest are somewhere in between.
    for _ in 0..3 {
        assert_eq!(
            conn.client.recv_mt("ProvisioningPhoneResult").await.unwrap()["result"],
            "ok"
        );
    }
    service.kill9();
    let configured: Vec<String> = {
        let (store, _) = open_store(dir.path());
        let phones = innoprov::Store::phones(&store).unwrap();
        assert!(phones.len() >= 3);
        for record in &phones {
            // Complete or nothing: never part of a configuration.
            match record.configured_at {
                Some(_) => assert_eq!(record.configs.len(), 4, "{}", record.mac),
                None => assert!(record.configs.is_empty(), "{}", record.mac),
            }
        }
        phones
            .iter()
            .filter(|r| r.sysclient_password.is_some())
            .map(|r| r.mac.to_string())
            .collect()
    };
    sim.clear_events();
    let service = Service::start_in(dir.path(), &devices_config(&sim));
    let reconnected = sim
        .wait_until(Duration::from_secs(15), |s| {
            configured.iter().all(|mac| {
                s.events().contains(&DevicesEvent::ChallengeAnswered {
                    mac: mac.clone(),
                    ok: true,
                })
            })
        })
        .await;
    assert!(
        reconnected,
        "every phone with a stored sysclient password reconnects: {:?}",
        sim.events()
    );
    let (status, _) = service.terminate();
    assert!(status.success());
}

#[tokio::test]
async fn wrong_path_is_refused_by_the_simulator() {
    // Guards the simulator itself: only /<domain>/<instance>/sysclients is served.
    let sim = DevicesSim::start().await;
    let wrong = sim
        .sysclient_url()
        .replace(SYSCLIENT_PATH, "/example.com/devices/other");
    assert!(tokio_tungstenite::connect_async(wrong).await.is_err());
    assert!(
        tokio_tungstenite::connect_async(sim.sysclient_url())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn reprovisioning_a_phone_devices_knows_answers_the_challenge_with_its_stored_password() {
    let (service, dir, sim) = start_with_devices("").await;
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .unwrap();
    assert_eq!(conn.provision(&phone(&sim, 70)).await.unwrap()["result"], "ok");
    let password = sim.password_of("001565000046").unwrap();
    // From now on Devices challenges a known phone even when it brings a new code.
    sim.set_challenge_known(true);
    sim.clear_events();
    let again = SimPhone {
        username: "moved".into(),
        ..phone(&sim, 70)
    };
    let reply = conn.provision(&again).await.unwrap();
    assert_eq!(reply["result"], "ok", "{reply}");
    let events = sim.events();
    assert!(
        events.contains(&DevicesEvent::ChallengeAnswered {
            mac: "001565000046".into(),
            ok: true
        }),
        "{events:?}"
    );
    assert!(
        events.contains(&DevicesEvent::Provisioned {
            mac: "001565000046".into()
        }),
        "the new code was used"
    );
    let (status, _) = service.terminate();
    assert!(status.success());
    let (store, sealer) = open_store(dir.path());
    let record = stored_phone(&store, "001565000046").unwrap();
    assert_eq!(record.username, "moved");
    let kept = sealer
        .open(
            record.sysclient_password.as_ref().unwrap(),
            &SealPurpose::SysclientPassword(record.mac),
        )
        .unwrap();
    assert_eq!(
        kept.expose(),
        password,
        "the sysclient password survives re-provisioning"
    );
}

#[tokio::test]
async fn the_pbx_going_away_leaves_the_links_alone_and_only_the_pbx_names_devices() {
    let sim = DevicesSim::start().await;
    let (service, _dir) = Service::start("[devices]\nreconnect_min_ms = 100\n");
    let pbx = PbxSim::new(
        "innoprov",
        &format!("http://{}{APP_PATH}", service.addr),
        PASSWORD,
    );
    let mut pbx_conn = pbx.connect(&service.ws_url()).await.unwrap();
    pbx_conn.send_pbx_info(&["Services"]).await.unwrap();
    pbx_conn
        .serve_services(&devices_services(&sim.service_url()))
        .await
        .unwrap();
    assert!(service.wait_for_log("Devices sysclient URL is now", WAIT).await);
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .unwrap();
    assert_eq!(conn.provision(&phone(&sim, 71)).await.unwrap()["result"], "ok");

    // A logged-in peer that is not the subscribed PBX connection cannot move Devices.
    let elsewhere = devices_services("http://127.0.0.1:9/example.com/devices/innovaphone-devices");
    conn.client
        .send_raw(&format!(
            r#"{{"api":"Services","mt":"ServicesInfo","services":{elsewhere}}}"#
        ))
        .await
        .unwrap();
    assert!(
        service
            .wait_for_log(
                "ignoring ServicesInfo on a connection that did not subscribe",
                WAIT
            )
            .await
    );

    // The PBX connection ends: the phone's link stays up, nothing reconnects.
    sim.clear_events();
    pbx_conn.client.close().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sim.connected_macs(), ["001565000047"]);
    assert!(sim.connect_times().is_empty(), "no reconnect: {:?}", sim.events());
    assert_eq!(service.logs().matches("Devices sysclient URL is now").count(), 1);
}

#[tokio::test]
async fn devices_over_wss_with_its_own_ca() {
    let sim = DevicesSim::start_tls(
        include_bytes!("fixtures/cert.pem"),
        include_bytes!("fixtures/key.pem"),
    )
    .await;
    assert!(sim.sysclient_url().starts_with("wss://"));
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cert.pem");
    let trusted = format!("{}ca_file = \"{}\"\n", devices_config(&sim), ca.display());
    let (service, _dir) = Service::start(&trusted);
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .unwrap();
    let reply = conn.provision(&phone(&sim, 80)).await.unwrap();
    assert_eq!(reply["result"], "ok", "{reply}");
    drop(service);

    // Without the CA the certificate is not trusted: no link, and the provisioning fails.
    let untrusted =
        devices_config(&sim).replace("provisioning_timeout_secs = 10", "provisioning_timeout_secs = 2");
    let (service, _dir) = Service::start(&untrusted);
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .unwrap();
    let reply = conn.provision(&phone(&sim, 81)).await.unwrap();
    assert_eq!(reply["result"], "failed", "{reply}");
    assert!(
        service
            .logs()
            .contains("phone 001565000051: sysclient link down (connect failed"),
        "{}",
        service.logs()
    );
}
