//! The Poly ZTP double, written from docs/redirect/fanvil-poly-grandstream.md §2 (fspbx's
//! PolycomCloudProvider and the Metronet client agree), not from innoprov's adapter.
//!
//! Under `/v1/`, every call with the header `API-KEY` (otherwise 401 `{"message":
//! "Unauthorized"}`), bodies JSON: `POST profiles` (a `name` and
//! `template.provisioning.server.address` required; answers the profile with its new `id`),
//! `GET`/`PUT`/`DELETE profiles/{id}`, `POST devices {"id": mac, "profile": id}`, `GET
//! devices/{mac}` (`profileid`, as the Metronet client reads it), `DELETE devices/{mac}`.
//! A MAC another account holds is invisible to `GET` (404) and answered 409 with a `message`
//! on `POST` and `DELETE` (seen on `DELETE`; on `POST` the doc marks it likely); a device this
//! account has already is 409 on `POST` too (moving one is delete then create).
//!
//! The phone's side is not documented: here a phone asks `GET /phone/<mac>` and gets its
//! profile's `template.provisioning.server` (`address`, `username`, `password`), which is what
//! ZTP hands a phone according to the doc's sources; 404 for a MAC it does not know.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{Door, Reply, Request};

#[derive(Default)]
struct ZtpState {
    /// The account's key.
    key: String,
    /// Profiles by id.
    profiles: BTreeMap<String, Value>,
    /// Devices: MAC (lower case) → profile id.
    devices: BTreeMap<String, String>,
    /// MACs another account holds.
    foreign: Vec<String>,
    /// The next profile id.
    next_id: u32,
    /// Calls: method, path, whether the key held.
    calls: Vec<(String, String, bool)>,
}

/// The Poly ZTP double.
pub struct PolyZtpSim {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it holds.
    state: Arc<Mutex<ZtpState>>,
    /// Its listener.
    _door: Door,
}

fn lock(state: &Mutex<ZtpState>) -> std::sync::MutexGuard<'_, ZtpState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl PolyZtpSim {
    /// Starts on an ephemeral loopback port, taking the API key `key`.
    pub async fn start(key: &str) -> std::io::Result<PolyZtpSim> {
        let state = Arc::new(Mutex::new(ZtpState {
            key: key.to_string(),
            ..ZtpState::default()
        }));
        let shared = Arc::clone(&state);
        let door = Door::open(move |request, _| {
            let (status, body) = answer(&shared, request);
            Reply::of(status, "application/json", body)
        })
        .await?;
        Ok(PolyZtpSim {
            addr: door.addr,
            state,
            _door: door,
        })
    }

    /// The API base, for `[redirect.poly] url`.
    pub fn url(&self) -> String {
        format!("http://{}/v1/", self.addr)
    }

    /// Where the phones ask (their firmware's ZTP address, here the double's).
    pub fn phone_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The devices: MAC (lower case) → their profile's `template.provisioning.server`.
    pub fn devices(&self) -> BTreeMap<String, Value> {
        let state = lock(&self.state);
        state
            .devices
            .iter()
            .map(|(mac, id)| {
                let server = state
                    .profiles
                    .get(id)
                    .map(|p| p["template"]["provisioning"]["server"].clone())
                    .unwrap_or(Value::Null);
                (mac.clone(), server)
            })
            .collect()
    }

    /// The profiles' names.
    pub fn profile_names(&self) -> Vec<String> {
        let state = lock(&self.state);
        state
            .profiles
            .values()
            .map(|p| p["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Calls so far: method, path, whether the key held.
    pub fn calls(&self) -> Vec<(String, String, bool)> {
        lock(&self.state).calls.clone()
    }

    /// Another account holds `mac`.
    pub fn owned_by_another(&self, mac: &str) {
        lock(&self.state).foreign.push(mac.to_ascii_lowercase());
    }
}

fn message(text: &str) -> String {
    json!({ "message": text }).to_string()
}

fn answer(state: &Mutex<ZtpState>, request: &Request) -> (&'static str, String) {
    let mut state = lock(state);
    if request.method == "GET"
        && let Some(mac) = request.path.strip_prefix("/phone/")
    {
        return phone_side(&state, &mac.to_ascii_lowercase());
    }
    let holds = request.header("api-key").as_deref() == Some(state.key.as_str());
    state
        .calls
        .push((request.method.clone(), request.path.clone(), holds));
    if !holds {
        return ("401 Unauthorized", message("Unauthorized"));
    }
    let Some(path) = request.path.strip_prefix("/v1/") else {
        return ("404 Not Found", message("Not Found"));
    };
    let body: Option<Value> = serde_json::from_str(&request.body).ok();
    match path.split_once('/') {
        None if path == "profiles" && request.method == "POST" => create_profile(&mut state, body),
        None if path == "devices" && request.method == "POST" => create_device(&mut state, body),
        Some(("profiles", id)) => profile(&mut state, &request.method, id, body),
        Some(("devices", mac)) => device(&mut state, &request.method, &mac.to_ascii_lowercase()),
        _ => ("404 Not Found", message("Not Found")),
    }
}

/// Whether a profile has what the doc's sources always send.
fn profile_holds(body: &Value) -> bool {
    body["name"].as_str().is_some_and(|n| !n.is_empty())
        && body["template"]["provisioning"]["server"]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("http://") || a.starts_with("https://"))
}

fn create_profile(state: &mut ZtpState, body: Option<Value>) -> (&'static str, String) {
    let Some(mut body) = body.filter(profile_holds) else {
        return (
            "400 Bad Request",
            message("name and template.provisioning.server.address are required"),
        );
    };
    state.next_id += 1;
    let id = format!("prof-{}", state.next_id);
    body["id"] = json!(id);
    state.profiles.insert(id, body.clone());
    ("201 Created", body.to_string())
}

fn profile(state: &mut ZtpState, method: &str, id: &str, body: Option<Value>) -> (&'static str, String) {
    if !state.profiles.contains_key(id) {
        return ("404 Not Found", message("Not Found"));
    }
    match method {
        "GET" => ("200 OK", state.profiles[id].to_string()),
        "PUT" => match body.filter(profile_holds) {
            Some(mut body) => {
                body["id"] = json!(id);
                state.profiles.insert(id.to_string(), body.clone());
                ("200 OK", body.to_string())
            }
            None => ("400 Bad Request", message("invalid profile")),
        },
        "DELETE" => {
            if state.devices.values().any(|p| p == id) {
                return ("409 Conflict", message("Profile is in use"));
            }
            state.profiles.remove(id);
            ("200 OK", "{}".into())
        }
        _ => ("405 Method Not Allowed", message("Method Not Allowed")),
    }
}

fn create_device(state: &mut ZtpState, body: Option<Value>) -> (&'static str, String) {
    let body = body.unwrap_or(Value::Null);
    let (Some(mac), Some(profile)) = (body["id"].as_str(), body["profile"].as_str()) else {
        return ("400 Bad Request", message("id and profile are required"));
    };
    let mac = mac.to_ascii_lowercase();
    if mac.len() != 12 || !mac.chars().all(|c| c.is_ascii_hexdigit()) {
        return ("400 Bad Request", message("Invalid MAC address"));
    }
    if state.foreign.contains(&mac) {
        return (
            "409 Conflict",
            message("Device is registered to a different account"),
        );
    }
    if state.devices.contains_key(&mac) {
        return ("409 Conflict", message("Device already exists"));
    }
    if !state.profiles.contains_key(profile) {
        return ("400 Bad Request", message("Unknown profile"));
    }
    state.devices.insert(mac.clone(), profile.to_string());
    ("200 OK", json!({ "id": mac, "profileid": profile }).to_string())
}

fn device(state: &mut ZtpState, method: &str, mac: &str) -> (&'static str, String) {
    let foreign = state.foreign.iter().any(|m| m == mac);
    match method {
        "GET" => match state.devices.get(mac) {
            Some(profile) => ("200 OK", json!({ "id": mac, "profileid": profile }).to_string()),
            None => ("404 Not Found", message("Not Found")),
        },
        "DELETE" if foreign => (
            "409 Conflict",
            message("Device is registered to a different account"),
        ),
        "DELETE" => match state.devices.remove(mac) {
            Some(_) => ("200 OK", "{}".into()),
            None => ("404 Not Found", message("Not Found")),
        },
        _ => ("405 Method Not Allowed", message("Method Not Allowed")),
    }
}

/// A phone's question: its profile's provisioning server, as ZTP hands it.
fn phone_side(state: &ZtpState, mac: &str) -> (&'static str, String) {
    match state.devices.get(mac).and_then(|id| state.profiles.get(id)) {
        Some(profile) => (
            "200 OK",
            profile["template"]["provisioning"]["server"].to_string(),
        ),
        None => ("404 Not Found", message("Not Found")),
    }
}
