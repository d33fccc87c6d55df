//! The Fanvil FDPS double, written from docs/redirect/fanvil-poly-grandstream.md §1 (the forms
//! two independent clients agree on), not from innoprov's adapter.
//!
//! `POST /xmlrpc.php`, HTTP Basic whose password is hex(MD5(hex(MD5(plain)))) (worked out here
//! with its own code); a wrong account is HTTP 401. Methods, every answer `[boolean, string]`:
//! `redirect.addMaterialServer([key=value, ...])` (`cfgName`, `cfgPfSrv`, `cfgPfName`,
//! `cfgPfProt` 4 or 5 required; a taken name is `Error:server_had_existed`),
//! `redirect.deleteServer(name)` (`Error:server_not_existed`; a group that still holds a
//! device is not deleted), `redirect.registerDevice(mac, name)` (a MAC bound already, here or
//! at another account, is `Error: device_had_existed`; an unknown group
//! `Error:server_not_exist`), `redirect.deRegisterDevice(mac)` (`Error:device_not_exist`).
//!
//! The phone's side is not documented (the doc marks its request unsettled): here a phone asks
//! `GET /<mac>.cfg` as it would ask any provisioning server, and gets a Fanvil text file whose
//! `<AUTOUPDATE CONFIG MODULE>` carries the group's material as the phone's own keys
//! (`Flash Server IP`, `Flash Protocol`, `Flash Mode`); 404 for a MAC it does not know.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use md5::{Digest as _, Md5};

use super::{Door, Reply, RpsCall, read_call_items};

#[derive(Default)]
struct FdpsState {
    /// Groups: name → material (`key` → `value`).
    groups: BTreeMap<String, BTreeMap<String, String>>,
    /// Bound MACs (12 upper-case hex) → group name.
    devices: BTreeMap<String, String>,
    /// MACs another account holds.
    foreign: Vec<String>,
    /// Calls in order.
    calls: Vec<RpsCall>,
}

/// The FDPS double.
pub struct FdpsSim {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it holds.
    state: Arc<Mutex<FdpsState>>,
    /// Its listener.
    _door: Door,
}

fn lock(state: &Mutex<FdpsState>) -> std::sync::MutexGuard<'_, FdpsState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl FdpsSim {
    /// Starts on an ephemeral loopback port, taking the account `user` / `password`.
    pub async fn start(user: &str, password: &str) -> std::io::Result<FdpsSim> {
        let state = Arc::new(Mutex::new(FdpsState::default()));
        let once = hex::encode(Md5::digest(password.as_bytes()));
        let twice = hex::encode(Md5::digest(once.as_bytes()));
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{twice}"))
        );
        let shared = Arc::clone(&state);
        let door = Door::open(move |request, _| {
            let authorized = request.header("authorization").as_deref() == Some(expected.as_str());
            let (status, kind, body) =
                answer(&shared, &request.method, &request.path, &request.body, authorized);
            Reply::of(status, kind, body)
        })
        .await?;
        Ok(FdpsSim {
            addr: door.addr,
            state,
            _door: door,
        })
    }

    /// The XML-RPC endpoint, for `[redirect.fanvil] url`.
    pub fn url(&self) -> String {
        format!("http://{}/xmlrpc.php", self.addr)
    }

    /// Where the phones ask (their firmware's FDPS address, here the double's).
    pub fn phone_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The bound MACs (12 upper-case hex) → their group's material.
    pub fn devices(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let state = lock(&self.state);
        state
            .devices
            .iter()
            .map(|(mac, group)| (mac.clone(), state.groups.get(group).cloned().unwrap_or_default()))
            .collect()
    }

    /// The group names.
    pub fn groups(&self) -> Vec<String> {
        lock(&self.state).groups.keys().cloned().collect()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<RpsCall> {
        lock(&self.state).calls.clone()
    }

    /// Another account holds `mac`.
    pub fn owned_by_another(&self, mac: &str) {
        lock(&self.state).foreign.push(mac.to_ascii_uppercase());
    }
}

/// `[boolean, string]`, as the doc shows the answers.
fn fdps_answer(ok: bool, text: &str) -> String {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        "<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data><value><boolean>{}</boolean></value><value><string>{escaped}</string></value></data></array></value></param></params></methodResponse>",
        u8::from(ok)
    )
}

fn mac_of(text: &str) -> Option<String> {
    (text.len() == 12 && text.chars().all(|c| c.is_ascii_hexdigit())).then(|| text.to_ascii_uppercase())
}

fn answer(
    state: &Mutex<FdpsState>,
    method: &str,
    path: &str,
    body: &str,
    authorized: bool,
) -> (&'static str, &'static str, String) {
    if method == "GET" {
        return phone_file(state, path);
    }
    if method != "POST" || path != "/xmlrpc.php" {
        return ("404 Not Found", "text/plain", String::new());
    }
    let Some((call, params)) = read_call_items(body) else {
        return ("400 Bad Request", "text/plain", String::new());
    };
    let mut state = lock(state);
    state.calls.push(RpsCall {
        method: call.clone(),
        params: params.iter().flatten().cloned().collect(),
        authorized,
    });
    if !authorized {
        return ("401 Unauthorized", "text/plain", String::new());
    }
    let first = |i: usize| params.get(i).and_then(|p| p.first()).cloned().unwrap_or_default();
    let text = match call.as_str() {
        "redirect.addMaterialServer" => add_group(&mut state, params.first().cloned().unwrap_or_default()),
        "redirect.deleteServer" => {
            let name = first(0);
            if !state.groups.contains_key(&name) {
                Err("Error:server_not_existed".to_string())
            } else if state.devices.values().any(|g| *g == name) {
                Err("Error:server_has_device".to_string())
            } else {
                state.groups.remove(&name);
                Ok("OK".to_string())
            }
        }
        "redirect.registerDevice" => match (mac_of(&first(0)), first(1)) {
            (None, _) => Err("Error: mac_format_error".into()),
            (Some(mac), _) if state.foreign.contains(&mac) || state.devices.contains_key(&mac) => {
                Err("Error: device_had_existed".into())
            }
            (Some(_), group) if !state.groups.contains_key(&group) => Err("Error:server_not_exist".into()),
            (Some(mac), group) => {
                state.devices.insert(mac, group);
                Ok("OK".into())
            }
        },
        "redirect.deRegisterDevice" => match mac_of(&first(0)).and_then(|mac| state.devices.remove(&mac)) {
            Some(_) => Ok("OK".into()),
            None => Err("Error:device_not_exist".into()),
        },
        _ => Err(format!("Error:unknown_method {call}")),
    };
    let body = match text {
        Ok(text) => fdps_answer(true, &text),
        Err(text) => fdps_answer(false, &text),
    };
    ("200 OK", "text/xml", body)
}

fn add_group(state: &mut FdpsState, items: Vec<String>) -> Result<String, String> {
    let material: BTreeMap<String, String> = items
        .iter()
        .filter_map(|item| item.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Some(name) = material.get("cfgName").cloned() else {
        return Err("Error: name_format_error".into());
    };
    let server_ok = material
        .get("cfgPfSrv")
        .is_some_and(|s| !s.is_empty() && !s.contains('/'));
    let protocol_ok = matches!(material.get("cfgPfProt").map(String::as_str), Some("4" | "5"));
    if !(server_ok && protocol_ok && material.contains_key("cfgPfName")) {
        return Err("Error: url_format_error".into());
    }
    if state.groups.contains_key(&name) {
        return Err("Error:server_had_existed".into());
    }
    state.groups.insert(name, material);
    Ok("OK".into())
}

/// A phone's `GET /<mac>.cfg`: its group's material as its own auto-provisioning keys.
fn phone_file(state: &Mutex<FdpsState>, path: &str) -> (&'static str, &'static str, String) {
    let state = lock(state);
    let mac = path.trim_start_matches('/').strip_suffix(".cfg").and_then(mac_of);
    let material = mac
        .and_then(|mac| state.devices.get(&mac))
        .and_then(|group| state.groups.get(group));
    let Some(m) = material else {
        return ("404 Not Found", "text/plain", String::new());
    };
    let get = |k: &str| m.get(k).cloned().unwrap_or_default();
    let scheme = if get("cfgPfProt") == "5" { "https" } else { "http" };
    let file = format!(
        "<<VOIP CONFIG FILE>>Version:1.0000000000\n<AUTOUPDATE CONFIG MODULE>\nFlash Server IP    :{scheme}://{}/{}\nFlash Protocol     :{}\nFlash Mode         :{}\nDHCP Option        :{}\nPNP Enable         :{}\n<<END OF FILE>>\n",
        get("cfgPfSrv"),
        get("cfgPfName"),
        get("cfgPfProt"),
        get("cfgPfMode"),
        u8::from(get("cfgDhcpOpt") == "true"),
        u8::from(get("cfgPnpEnable") == "true"),
    );
    ("200 OK", "text/plain", file)
}
