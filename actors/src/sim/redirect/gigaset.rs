//! The double of Gigaset's MAC-ID redirect server (`prov.gigaset.net`), written from
//! docs/redirect/snom-gigaset.md §3.1 (falconieri and peoplefone's client agree), not from
//! innoprov's adapter.
//!
//! `POST /apxml/rpc.do`, HTTP Basic with the provisioner account (else 401). A device is named
//! by its MAC-ID `XXXXXXXXXXXX-XXXX`: the MAC and the check code the factory printed on its
//! label ([`GigasetRedirectSim::manufacture`] says which devices exist and their codes). Every
//! parameter a string; every answer `[boolean, value]`, the value untyped, the texts carrying
//! the plain MAC after a colon: `autoprov.registerDevice(macId, url, provider)` (`ok`;
//! `mac_invalid:` for a malformed id or a wrong code, `mac_not_exist:` for a device the
//! factory never made, `mac_already_in_use:` for one registered already, here or by another
//! account, `url_invalid:`, `name_invalid:`), `autoprov.deregisterDevice(macId)` (`ok`;
//! `mac_not_found:` when not registered).
//!
//! The device's own question (HTTP Digest with its MAC and a factory secret) is not built:
//! its path is unsettled; [`GigasetRedirectSim::devices`] is what the server would answer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;

use super::{Door, Reply, RpsCall, read_call};

#[derive(Default)]
struct GigasetState {
    /// Devices the factory made: MAC (upper case) → the check code on the label.
    made: BTreeMap<String, String>,
    /// Registrations: MAC → URL.
    devices: BTreeMap<String, String>,
    /// MACs another account registered.
    foreign: Vec<String>,
    /// Calls in order.
    calls: Vec<RpsCall>,
}

/// The double.
pub struct GigasetRedirectSim {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it holds.
    state: Arc<Mutex<GigasetState>>,
    /// Its listener.
    _door: Door,
}

fn lock(state: &Mutex<GigasetState>) -> std::sync::MutexGuard<'_, GigasetState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl GigasetRedirectSim {
    /// Starts on an ephemeral loopback port, taking the account `user` / `password`.
    pub async fn start(user: &str, password: &str) -> std::io::Result<GigasetRedirectSim> {
        let state = Arc::new(Mutex::new(GigasetState::default()));
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let shared = Arc::clone(&state);
        let door = Door::open(move |request, _| {
            let authorized = request.header("authorization").as_deref() == Some(expected.as_str());
            let (status, body) = match (request.method.as_str(), request.path.as_str()) {
                ("POST", "/apxml/rpc.do") => answer(&shared, &request.body, authorized),
                _ => ("404 Not Found", String::new()),
            };
            Reply::of(status, "text/xml", body)
        })
        .await?;
        Ok(GigasetRedirectSim {
            addr: door.addr,
            state,
            _door: door,
        })
    }

    /// The XML-RPC endpoint, for `[redirect.gigaset] url`.
    pub fn url(&self) -> String {
        format!("http://{}/apxml/rpc.do", self.addr)
    }

    /// The factory made the device `mac` with `code` on its label.
    pub fn manufacture(&self, mac: &str, code: &str) {
        lock(&self.state)
            .made
            .insert(mac.to_ascii_uppercase(), code.to_ascii_uppercase());
    }

    /// Another account registered `mac`.
    pub fn owned_by_another(&self, mac: &str) {
        lock(&self.state).foreign.push(mac.to_ascii_uppercase());
    }

    /// The registrations: MAC (upper case) → the URL the device is sent to.
    pub fn devices(&self) -> BTreeMap<String, String> {
        lock(&self.state).devices.clone()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<RpsCall> {
        lock(&self.state).calls.clone()
    }
}

/// `[boolean, value]`, the value untyped.
fn said(ok: bool, text: &str) -> String {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        "<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data><value><boolean>{}</boolean></value><value>{escaped}</value></data></array></value></param></params></methodResponse>",
        u8::from(ok)
    )
}

/// The MAC of a well-formed MAC-ID whose code is the one on the label; else the refusal.
fn device(state: &GigasetState, mac_id: &str) -> Result<String, String> {
    let upper = mac_id.to_ascii_uppercase();
    let (mac, code) = upper.split_once('-').unwrap_or((upper.as_str(), ""));
    let formed = mac.len() == 12
        && mac.chars().all(|c| c.is_ascii_hexdigit())
        && code.len() == 4
        && code.chars().all(|c| c.is_ascii_alphanumeric());
    if !formed {
        return Err(format!("mac_invalid:{mac}"));
    }
    match state.made.get(mac) {
        None => Err(format!("mac_not_exist:{mac}")),
        Some(label) if label != code => Err(format!("mac_invalid:{mac}")),
        Some(_) => Ok(mac.to_string()),
    }
}

fn answer(state: &Mutex<GigasetState>, body: &str, authorized: bool) -> (&'static str, String) {
    let Some((method, params)) = read_call(body) else {
        return ("400 Bad Request", String::new());
    };
    let mut state = lock(state);
    state.calls.push(RpsCall {
        method: method.clone(),
        params: params.clone(),
        authorized,
    });
    if !authorized {
        return ("401 Unauthorized", String::new());
    }
    let param = |i: usize| params.get(i).cloned().unwrap_or_default();
    let outcome = device(&state, &param(0)).and_then(|mac| match method.as_str() {
        "autoprov.registerDevice" => {
            let url = param(1);
            if state.foreign.contains(&mac) || state.devices.contains_key(&mac) {
                Err(format!("mac_already_in_use:{mac}"))
            } else if !(url.starts_with("http://") || url.starts_with("https://")) {
                Err(format!("url_invalid:{url}"))
            } else if param(2).trim().is_empty() {
                Err(format!("name_invalid:{}", param(2)))
            } else {
                state.devices.insert(mac, url);
                Ok(())
            }
        }
        "autoprov.deregisterDevice" => match state.devices.remove(&mac) {
            Some(_) => Ok(()),
            None => Err(format!("mac_not_found:{mac}")),
        },
        other => Err(format!("method_unknown:{other}")),
    });
    let body = match outcome {
        Ok(()) => said(true, "ok"),
        Err(text) => said(false, &text),
    };
    ("200 OK", body)
}
