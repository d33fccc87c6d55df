//! `innoprov demo --phones N`: the whole chain in one process, for a newcomer without a PBX.
//! The service runs on a temporary store; the simulated PBX logs in and names the simulated
//! Devices through Services; the simulated Users service provisions N phones of the seven
//! vendor families (Gigaset's DECT bases and its Snom-made desk phones counted apart); each phone's emulator then boots as its vendor documents it. A progress bar shows
//! it on a terminal; the admin page's URL (with its token) and the REST API's are printed while
//! it runs; a summary table ends it, and the last line names N.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use innoprov::Config;

use crate::service::{RunningService, ShutdownSignals};
use crate::sim::devices::DevicesSim;
use crate::sim::handset::{Handset, HttpClient, Url};
use crate::sim::pbx::{PbxSim, devices_services};
use crate::sim::users::{SimPhone, UsersSim};

/// Users connections provisioning in parallel.
const USERS_CONNECTIONS: u32 = 8;

/// What the demo did.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// Phones asked for.
    pub phones: u32,
    /// ProvisioningPhone answered ok.
    pub provisioned: u32,
    /// Phones whose emulator came up with a complete TLS account.
    pub configured: u32,
    /// Phones that fetched their own file.
    pub fetched: u32,
    /// How long it took.
    pub elapsed: Duration,
}

impl DemoSummary {
    /// The summary table and the final line.
    pub fn render(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            f64::from(self.provisioned) / secs
        } else {
            0.0
        };
        format!(
            "\n  provisioned   {:>6}\n  configured    {:>6}\n  fetched       {:>6}\n  time          {:>6.1} s\n  phones/s      {:>6.1}\n\ndemo: {} phones: {} provisioned, {} configured, {} fetched their files in {:.1} s ({:.1} phones/s)",
            self.provisioned,
            self.configured,
            self.fetched,
            secs,
            rate,
            self.phones,
            self.provisioned,
            self.configured,
            self.fetched,
            secs,
            rate
        )
    }
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    let _ = getrandom::fill(&mut raw);
    hex::encode(raw)
}

fn vendor_and_mac(n: u32) -> (&'static str, String) {
    let (vendor, oui) = match n % 7 {
        0 => ("yealink", "805ec0"),
        1 => ("snom", "000413"),
        2 => ("grandstream", "000b82"),
        3 => ("fanvil", "0c383e"),
        4 => ("poly", "0004f2"),
        5 => ("gigaset", "7c2f80"),
        _ => ("gigaset_p", "589ec6"),
    };
    (vendor, format!("{oui}{:06x}", 0xd000 + n))
}

/// Users in the demo PBX's user table (the phonebook every demo phone gets).
const DEMO_DIRECTORY_USERS: u32 = 20;

/// Runs the demo; with `keep_running`, serves on until `signals` fires.
pub async fn run(phones: u32, keep_running: bool, signals: ShutdownSignals) -> Result<DemoSummary, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary store: {e}"))?;
    let devices = DevicesSim::start().await;
    let password = random_hex(12);
    let token = random_hex(16);
    // The demo's own setup, complete: the App object's name (its simulated PBX logs in as
    // it), a random password and token, a free port; nothing for the service to warn about.
    let config_text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[app]\npassword = \"{password}\"\ntitle = \"Demo phones\"\nobject = \"innoprov\"\n[store]\npath = \"{}\"\n[provisioning]\nnotify = false\n[admin]\ntoken = \"{token}\"\napp = \"innoprov-admin\"\n",
        dir.path().join("store").display()
    );
    let config = Config::parse(&config_text, "demo").map_err(|e| e.to_string())?;
    let service = RunningService::start(&config).await.map_err(|e| e.to_string())?;
    let base = format!("http://{}", service.addr);
    let api = format!("{base}{}/", config.api_path());
    println!(
        "open in a browser: {base}{}/innoprov-admin.htm#token={token}",
        config.app_parent()
    );
    println!("  REST API  {api}phones   (Authorization: Bearer {token})");
    println!("  metrics   {base}/metrics  (same token)");
    println!(
        "innoprov demo: {phones} phones, store in {}",
        dir.path().display()
    );
    let pbx_conn = connect_pbx(&config, &service, &devices, &password).await?;
    let started = Instant::now();
    let bar = ProgressBar::new(u64::from(phones) * 2);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("provisioning");
    let provisioned = provision_all(&config, &service, &devices, &password, phones, &bar).await;
    // Each phone boots as its vendor documents it.
    bar.set_message("phones booting");
    let base_url = format!("{base}{}/", config.provisioning.path);
    let (configured, fetched) = boot_all(&base_url, &provisioned, &bar).await?;
    bar.finish_and_clear();
    let summary = DemoSummary {
        phones,
        provisioned: provisioned.len() as u32,
        configured,
        fetched,
        elapsed: started.elapsed(),
    };
    if keep_running {
        println!("{}", summary.render());
        println!("running until Ctrl-C; REST API {api}phones (Bearer {token})");
        service.run_until_signal(signals).await?;
    } else {
        drop(signals);
        drop(pbx_conn);
        service.shutdown().await?;
    }
    drop(devices);
    Ok(summary)
}

/// The simulated PBX logs in as the App object and tells where Devices is; returns once the
/// service is ready.
async fn connect_pbx(
    config: &Config,
    service: &RunningService,
    devices: &DevicesSim,
    password: &str,
) -> Result<crate::sim::pbx::PbxConnection, String> {
    let base = format!("http://{}", service.addr);
    let ws_url = format!("ws://{}{}", service.addr, config.app.path);
    let pbx = PbxSim::new(config.app_name(), &format!("{base}{}", config.app.path), password);
    let mut pbx_conn = pbx.connect(&ws_url).await.map_err(|e| format!("PBX: {e}"))?;
    pbx_conn
        .send_pbx_info(&["PbxApi", "Services", "PbxTableUsers"])
        .await
        .map_err(|e| format!("PBX: {e}"))?;
    let devices_http = devices
        .sysclient_url()
        .replacen("ws://", "http://", 1)
        .replace("/sysclients", "/innovaphone-devices");
    pbx_conn
        .serve_services(&devices_services(&devices_http))
        .await
        .map_err(|e| format!("PBX Services: {e}"))?;
    // The App object has TableUsers: the demo's users fill every phone's phonebook.
    let users: Vec<serde_json::Value> = (0..DEMO_DIRECTORY_USERS)
        .map(|n| {
            let user = crate::sim::users::SimPhone::numbered(n);
            serde_json::json!({"guid": format!("{n:032x}"), "h323": user.username, "cn": user.cn,
                "e164": format!("{}", 200 + n), "hide": false})
        })
        .collect();
    pbx_conn
        .serve_user_table(&users)
        .await
        .map_err(|e| format!("PBX PbxTableUsers: {e}"))?;
    // Ready once the Devices URL is learnt.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = crate::sim::phone::get(service.addr, "/readyz", &[]).await;
        if ready.is_ok_and(|r| r.status == 200) {
            return Ok(pbx_conn);
        }
        if Instant::now() > deadline {
            return Err("the service did not learn where Devices is".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Users service provisions every phone (several connections, as Users Admin does for a
/// batch); the numbers of the phones answered ok, in order.
async fn provision_all(
    config: &Config,
    service: &RunningService,
    devices: &DevicesSim,
    password: &str,
    phones: u32,
    bar: &ProgressBar,
) -> Vec<u32> {
    let ws_url = format!("ws://{}{}", service.addr, config.app.path);
    let mut tasks = Vec::new();
    for c in 0..USERS_CONNECTIONS.min(phones.max(1)) {
        let (ws_url, password, bar) = (ws_url.clone(), password.to_string(), bar.clone());
        let app = config.app_name().to_string();
        let codes: Vec<(u32, String)> = (0..phones)
            .filter(|n| n % USERS_CONNECTIONS == c)
            .map(|n| (n, devices.issue_code()))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut ok = Vec::new();
            let Ok(mut conn) = UsersSim::new(&app, &password).connect(&ws_url).await else {
                return ok;
            };
            for (n, code) in codes {
                let (_, mac) = vendor_and_mac(n);
                let phone = SimPhone {
                    mac,
                    code,
                    ..SimPhone::numbered(n)
                };
                if conn.provision(&phone).await.is_ok_and(|r| r["result"] == "ok") {
                    ok.push(n);
                }
                bar.inc(1);
            }
            ok
        }));
    }
    let mut provisioned = Vec::new();
    for task in tasks {
        provisioned.extend(task.await.unwrap_or_default());
    }
    provisioned.sort_unstable();
    provisioned
}

/// Each provisioned phone boots as its vendor documents it from `base_url`: how many ended
/// registered over TLS, and how many fetched their own file.
async fn boot_all(base_url: &str, provisioned: &[u32], bar: &ProgressBar) -> Result<(u32, u32), String> {
    let server = Url::parse(base_url).ok_or("the provisioning URL")?;
    let (mut configured, mut fetched) = (0u32, 0u32);
    for &n in provisioned {
        let (vendor, mac) = vendor_and_mac(n);
        if let Some(mut phone) = Handset::new(vendor, &mac, server.clone(), HttpClient::new("", None))
            && phone.provision().await.is_ok()
        {
            if phone
                .http()
                .requests()
                .iter()
                .any(|(path, status)| *status == 200 && path.to_ascii_lowercase().contains(&mac))
            {
                fetched += 1;
            }
            if phone.registration().is_ok_and(|r| r.tls && r.port == 5061) {
                configured += 1;
            }
        }
        bar.inc(1);
    }
    Ok((configured, fetched))
}
