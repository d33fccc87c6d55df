//! A simulator of innovaphone Devices' sysclient endpoint (devices-sysclient.md §2 and §7),
//! written from the spec: it serves `/<domain>/<instance>/sysclients`, issues provisioning
//! codes, gives each new phone a sysclient password, challenges known phones and checks their
//! digest, sends the configuration (the last message with `last:true`) and later updates, and
//! injects faults on demand: drop a link, refuse connections, stall, send a garbage frame,
//! restart.
//!
//! Frames are built by hand (class byte, big-endian type, JSON text) and digests and RC4 come
//! from [`super::wire`], not from the service's code.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use super::wire;

/// Seed the simulator encrypts MEDIA `turnPassword` with.
pub const TURN_SEED: &str = "Q1w2E3r4T5y6U7i8";
/// Placeholder in a configuration template replaced by the phone's encrypted TURN password.
pub const TURN_PLACEHOLDER: &str = "__TURN__";

/// What happened, in order, for tests to assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicesEvent {
    /// A phone identified with a valid code and got its sysclient password.
    Provisioned { mac: String },
    /// A phone identified with an unknown or used code; the link was closed.
    CodeRejected { mac: String },
    /// A known phone answered the challenge; `ok` says whether the digest matched.
    ChallengeAnswered { mac: String, ok: bool },
    /// A phone's configuration was sent completely.
    ConfigSent { mac: String },
    /// A frame that is not a sysclient admin/tunnel frame arrived.
    BadFrame { mac: Option<String> },
    /// A phone identified on a second link while its first was still open (never allowed:
    /// two instances, or a job and its replacement, linking one phone at once).
    TwoLinks { mac: String },
}

enum Command {
    Frame(Vec<u8>),
    Close,
}

struct Link {
    /// The phone the link identified as; `None` before its identify.
    mac: Option<String>,
    /// Frames and the close to the link's connection task, from tests and pushes.
    tx: mpsc::UnboundedSender<Command>,
}

#[derive(Default)]
struct State {
    /// Provisioning codes handed out, and whether each has been used (a code works once).
    codes: HashMap<String, bool>,
    /// The sysclient password given to each phone, to check its challenge answers.
    passwords: HashMap<String, String>,
    /// The configuration items (JSON) sent to every phone after its identify.
    configs: Vec<String>,
    /// The TURN password encrypted into the MEDIA item, for tests to compare.
    turn_password: String,
    /// Every open link by its number, to push frames or close it.
    links: HashMap<u64, Link>,
    /// Frames pushed to each phone (updates, admin passwords, garbage) that the kernel took.
    pushed_written: HashMap<String, usize>,
    /// The number the next link gets.
    next_link: u64,
    /// Drop new connections at once (a Devices that is down).
    refuse: bool,
    /// Answer nothing on new connections (a Devices that hangs).
    stall: bool,
    /// Challenge a known phone even when it identifies with a code, as real Devices does.
    challenge_known: bool,
    /// What happened, in order, for tests to assert on.
    events: Vec<DevicesEvent>,
    /// When each connection arrived, for tests of the connection rate.
    connects: Vec<Instant>,
    /// Identifies with a provisioning code per phone, to show reconnects come without one.
    identifies_with_code: HashMap<String, u32>,
    /// Every phone seen on two open links at once (never cleared).
    two_links: Vec<String>,
    /// How long a link stays open after the phone's side ended it.
    slow_close: Duration,
    /// Open identified links per phone (a count, so identifying stays O(1) with 10,000 links).
    open_links: HashMap<String, usize>,
    /// In a group of simulators, the seed each phone's password is derived from, so that a
    /// phone provisioned by one member is known to all of them.
    group_seed: Option<String>,
}

impl State {
    /// The sysclient password a newly provisioned phone gets: random, or in a group derived
    /// from the group's seed.
    fn new_password(&self, mac: &str) -> String {
        match &self.group_seed {
            Some(seed) => wire::sha256_hex(&format!("{seed}:{mac}"))[..32].to_string(),
            None => random_password(),
        }
    }

    /// Whether `mac` is a phone this simulator (or its group) gave a password; in a group,
    /// every phone is taken as one a member provisioned, and gets its derived password.
    fn knows(&mut self, mac: &str) -> bool {
        if self.group_seed.is_some() && !self.passwords.contains_key(mac) {
            let password = self.new_password(mac);
            self.passwords.insert(mac.to_string(), password);
        }
        self.passwords.contains_key(mac)
    }

    /// One of `mac`'s links closed or identified as another phone.
    fn forget_link_of(&mut self, mac: &str) {
        if let Some(open) = self.open_links.get_mut(mac) {
            *open -= 1;
            if *open == 0 {
                self.open_links.remove(mac);
            }
        }
    }
}

/// A running Devices simulator.
#[derive(Clone)]
pub struct DevicesSim {
    /// Where it listens.
    addr: SocketAddr,
    /// What it knows, shared with its connection tasks.
    state: Arc<Mutex<State>>,
    /// Whether it serves `wss://`.
    tls: bool,
}

/// What the members of a group of simulators share: one listening port (SO_REUSEPORT, the
/// kernel spreads connections across the members, which may be separate processes) and
/// what a phone's reconnect to any member needs. Codes are not shared: a code is single-use
/// per member only.
#[derive(Debug, Clone)]
pub struct DevicesGroup {
    /// The loopback port every member listens on; 0 for the first, which then picks it.
    pub port: u16,
    /// Codes issued by every member: `issue_code`'s first `codes`, in order.
    pub codes: u32,
    /// The seed phones' passwords are derived from.
    pub seed: String,
}

/// The path the simulator serves sysclients on.
pub const SYSCLIENT_PATH: &str = "/example.com/devices/sysclients";

/// The spec's example configuration (devices-sysclient.md §3): PHONE, MEDIA (TURN password
/// encrypted per phone), TLS_PROFILE, NTP.
pub fn example_configs() -> Vec<String> {
    vec![
        r#"{"id":3,"domainId":1,"type":"PHONE","categories":[{"id":2,"name":"Yealink"}],"gk1":"pbx.example.com","gk2":"","gkId":"","coder":"G722","frameSize":20,"srtpKey":"2","srtpCipher":"1","dialTone":15}"#.to_string(),
        format!(r#"{{"id":5,"domainId":1,"type":"MEDIA","categories":[],"stunServer":"turn.example.com","turnServer":"turn.example.com","turnUser":"turn","turnPassword":"{TURN_PLACEHOLDER}","turnSeed":"{TURN_SEED}"}}"#),
        r#"{"id":7,"domainId":1,"type":"TLS_PROFILE","categories":[],"profile":"secure"}"#.to_string(),
        r#"{"id":9,"domainId":1,"type":"NTP","categories":[],"ntp1":"pool.ntp.org","ntp2":"","tz":"CET-1CEST-2,M3.5.0/2,M10.5.0/3"}"#.to_string(),
    ]
}

/// An admin frame: class 1, big-endian type, JSON text.
pub fn admin_frame(kind: u16, json: &str) -> Vec<u8> {
    let mut out = vec![1, (kind >> 8) as u8, kind as u8];
    out.extend_from_slice(json.as_bytes());
    out
}

impl DevicesSim {
    /// Starts on an ephemeral loopback port with the example configuration.
    pub async fn start() -> DevicesSim {
        DevicesSim::start_with(None).await
    }

    /// Starts serving `wss://` with a PEM certificate chain and key (as an App Platform with
    /// its own certificate does).
    pub async fn start_tls(cert_pem: &[u8], key_pem: &[u8]) -> DevicesSim {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .expect("certificate");
        let key = PrivateKeyDer::from_pem_slice(key_pem).expect("key");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("TLS config");
        DevicesSim::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    /// Starts a member of `group` on 127.0.0.1:`group.port`, sharing the port with the
    /// other members (for loads above one process' open-file limit).
    pub async fn start_in_group(group: &DevicesGroup) -> DevicesSim {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseport(true).expect("SO_REUSEPORT");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], group.port)))
            .expect("bind Devices simulator in its group");
        let listener = socket.listen(4096).expect("listen");
        let sim = DevicesSim::serve_on(listener, None, Some(group.seed.clone()));
        for _ in 0..group.codes {
            sim.issue_code();
        }
        sim
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> DevicesSim {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind Devices simulator");
        DevicesSim::serve_on(listener, tls, None)
    }

    fn serve_on(
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        group_seed: Option<String>,
    ) -> DevicesSim {
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            configs: example_configs(),
            turn_password: "turn-pw-Ü".into(),
            group_seed,
            ..State::default()
        }));
        let sim = DevicesSim {
            addr,
            state,
            tls: tls.is_some(),
        };
        let accepting = sim.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let sim = accepting.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => sim.serve(tcp).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                sim.serve(stream).await;
                            }
                        }
                    }
                });
            }
        });
        sim
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Devices App URL as the PBX's ServicesInfo lists it (http).
    pub fn service_url(&self) -> String {
        match self.tls {
            true => format!(
                "https://localhost:{}/example.com/devices/innovaphone-devices",
                self.addr.port()
            ),
            false => format!("http://{}/example.com/devices/innovaphone-devices", self.addr),
        }
    }

    /// The sysclient websocket URL.
    pub fn sysclient_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        // With TLS the name must match the test certificate (issued for localhost).
        let host = if self.tls {
            format!("localhost:{}", self.addr.port())
        } else {
            self.addr.to_string()
        };
        format!("{scheme}://{host}{SYSCLIENT_PATH}")
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The `n`th code any simulator issues (0 first): what a group's members all accept.
    pub fn nth_code(n: u64) -> String {
        format!("{:012}", 500_000_000_000u64 + n)
    }

    /// A fresh single-use provisioning code.
    pub fn issue_code(&self) -> String {
        let mut state = self.lock();
        let code = DevicesSim::nth_code(state.codes.len() as u64);
        state.codes.insert(code.clone(), false);
        code
    }

    /// Replaces the configuration set sent after each identify.
    pub fn set_configs(&self, configs: Vec<String>) {
        self.lock().configs = configs;
    }

    /// The TURN password phones get (encrypted) in MEDIA.
    pub fn turn_password(&self) -> String {
        self.lock().turn_password.clone()
    }

    /// The sysclient password Devices gave `mac`.
    pub fn password_of(&self, mac: &str) -> Option<String> {
        self.lock().passwords.get(mac).cloned()
    }

    /// Sends a configuration update (`{"config":...}`) to `mac`'s open links; how many got it.
    pub fn push_update(&self, mac: &str, config: &str) -> usize {
        let frame = admin_frame(6, &format!("{{\"config\":{config}}}"));
        self.send_to(mac, || Command::Frame(frame.clone()))
    }

    /// How many frames pushed to `mac` (`push_update` and the like) its links have written
    /// into the connection so far: they stop being written once the phone's side stops reading.
    pub fn pushed_frames_written(&self, mac: &str) -> usize {
        self.lock().pushed_written.get(mac).copied().unwrap_or(0)
    }

    /// Sends a frame that is not a sysclient frame to `mac`'s links.
    pub fn send_garbage(&self, mac: &str) -> usize {
        self.send_to(mac, || Command::Frame(vec![0x7f, 0xff, 0x00, b'{']))
    }

    /// Sends an admin password (0x0003) encrypted under `mac`'s sysclient password.
    pub fn deploy_admin_password(&self, mac: &str, admin: &str) -> usize {
        let Some(password) = self.password_of(mac) else {
            return 0;
        };
        let seed = "wJQog70GUK!GPTN2";
        let mut data = admin.as_bytes().to_vec();
        wire::rc4(format!("{seed}:{password}").as_bytes(), &mut data);
        let frame = admin_frame(
            3,
            &format!("{{\"seed\":\"{seed}\",\"pwd\":\"{}\"}}", wire::to_hex(&data)),
        );
        self.send_to(mac, || Command::Frame(frame.clone()))
    }

    /// Closes `mac`'s links.
    pub fn drop_link(&self, mac: &str) -> usize {
        self.send_to(mac, || Command::Close)
    }

    fn send_to(&self, mac: &str, command: impl Fn() -> Command) -> usize {
        let state = self.lock();
        state
            .links
            .values()
            .filter(|l| l.mac.as_deref() == Some(mac))
            .filter(|l| l.tx.send(command()).is_ok())
            .count()
    }

    /// Refuses (accepts and drops at once) new connections while set.
    pub fn set_refuse(&self, refuse: bool) {
        self.lock().refuse = refuse;
    }

    /// Challenges a phone it already knows even when it identifies with a code (as real Devices
    /// does for a device already in a domain); by default the code alone is enough.
    pub fn set_challenge_known(&self, on: bool) {
        self.lock().challenge_known = on;
    }

    /// Keeps each link open for `delay` after the phone's side closed it (a slow Devices), so
    /// that whoever links a phone too early is seen on a second link.
    pub fn set_slow_close(&self, delay: Duration) {
        self.lock().slow_close = delay;
    }

    /// Answers nothing on new connections while set.
    pub fn set_stall(&self, stall: bool) {
        self.lock().stall = stall;
    }

    /// A Devices restart: every link is closed and connections are refused for `down`.
    pub async fn restart(&self, down: Duration) {
        {
            let mut state = self.lock();
            state.refuse = true;
            for link in state.links.values() {
                let _ = link.tx.send(Command::Close);
            }
        }
        tokio::time::sleep(down).await;
        self.set_refuse(false);
    }

    /// Everything that happened so far.
    pub fn events(&self) -> Vec<DevicesEvent> {
        self.lock().events.clone()
    }

    /// The phones that identified on a second link while another of theirs was open, since
    /// the start (`clear_events` keeps these).
    pub fn two_links(&self) -> Vec<String> {
        self.lock().two_links.clone()
    }

    /// Phones with an open, identified link.
    pub fn connected_macs(&self) -> Vec<String> {
        self.lock().links.values().filter_map(|l| l.mac.clone()).collect()
    }

    /// When each accepted connection arrived.
    pub fn connect_times(&self) -> Vec<Instant> {
        self.lock().connects.clone()
    }

    /// How often `mac` identified with a provisioning code.
    pub fn identifies_with_code(&self, mac: &str) -> u32 {
        self.lock().identifies_with_code.get(mac).copied().unwrap_or(0)
    }

    /// How many recorded events satisfy `check` (without copying them).
    pub fn count_events(&self, check: impl Fn(&DevicesEvent) -> bool) -> usize {
        self.lock().events.iter().filter(|e| check(e)).count()
    }

    /// How many links are open and identified.
    pub fn connected_count(&self) -> usize {
        self.lock().links.values().filter(|l| l.mac.is_some()).count()
    }

    /// Forgets the recorded events and connect times.
    pub fn clear_events(&self) {
        let mut state = self.lock();
        state.events.clear();
        state.connects.clear();
    }

    /// Polls `check` every 20 ms until it holds or `limit` passes; whether it held.
    pub async fn wait_until(&self, limit: Duration, check: impl Fn(&DevicesSim) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        check(self)
    }

    async fn serve<S>(&self, tcp: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        if self.lock().refuse {
            return;
        }
        // The callback type is tungstenite's; its error is an HTTP response by design.
        #[allow(clippy::result_large_err)]
        let check_path = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            if req.uri().path() == SYSCLIENT_PATH {
                Ok(resp)
            } else {
                let mut denied = ErrorResponse::new(Some("no such sysclient endpoint".into()));
                *denied.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
                Err(denied)
            }
        };
        let Ok(mut ws) =
            tokio_tungstenite::accept_hdr_async_with_config(tcp, check_path, Some(super::websocket_config()))
                .await
        else {
            return;
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (id, stall) = {
            let mut state = self.lock();
            state.connects.push(Instant::now());
            state.next_link += 1;
            let id = state.next_link;
            state.links.insert(id, Link { mac: None, tx });
            (id, state.stall)
        };
        let mut challenge: Option<String> = None;
        let mut pending_code: Option<String> = None;
        loop {
            tokio::select! {
                incoming = ws.next() => {
                    let bytes = match incoming {
                        Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        _ => break,
                    };
                    if stall {
                        continue;
                    }
                    let replies = self.on_frame(id, &bytes, &mut challenge, &mut pending_code);
                    let mut close = false;
                    for reply in replies {
                        match reply {
                            Command::Frame(frame) => {
                                if ws.send(Message::binary(frame)).await.is_err() { close = true; }
                            }
                            Command::Close => close = true,
                        }
                    }
                    if close {
                        let _ = ws.close(None).await;
                        break;
                    }
                }
                command = rx.recv() => match command {
                    Some(Command::Frame(frame)) => {
                        if ws.send(Message::binary(frame)).await.is_err() { break; }
                        let mut state = self.lock();
                        if let Some(mac) = state.links.get(&id).and_then(|l| l.mac.clone()) {
                            *state.pushed_written.entry(mac).or_default() += 1;
                        }
                    }
                    Some(Command::Close) | None => {
                        let _ = ws.close(None).await;
                        break;
                    }
                },
            }
        }
        // A slow Devices: the link counts as open (and the socket stays up) a while after the
        // phone's side closed it.
        let slow = self.lock().slow_close;
        if !slow.is_zero() {
            tokio::time::sleep(slow).await;
        }
        let mut state = self.lock();
        if let Some(mac) = state.links.remove(&id).and_then(|l| l.mac) {
            state.forget_link_of(&mac);
        }
    }

    /// Handles one frame from a phone; returns the frames to send (and whether to close).
    fn on_frame(
        &self,
        link: u64,
        bytes: &[u8],
        challenge: &mut Option<String>,
        pending_code: &mut Option<String>,
    ) -> Vec<Command> {
        let mut state = self.lock();
        let mac_of_link = state.links.get(&link).and_then(|l| l.mac.clone());
        if bytes.len() < 3 || bytes[0] != 1 {
            if bytes.first() == Some(&2) {
                return Vec::new(); // tunnel answers: nothing to do
            }
            state.events.push(DevicesEvent::BadFrame { mac: mac_of_link });
            return Vec::new();
        }
        let kind = u16::from_be_bytes([bytes[1], bytes[2]]);
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&bytes[3..]) else {
            state.events.push(DevicesEvent::BadFrame { mac: mac_of_link });
            return vec![Command::Close];
        };
        if kind != 0 {
            return Vec::new();
        }
        let text = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mac = text("id");
        let before = state
            .links
            .get_mut(&link)
            .and_then(|l| l.mac.replace(mac.clone()));
        if before.as_deref() != Some(mac.as_str()) {
            if let Some(before) = before {
                state.forget_link_of(&before);
            }
            let open = state.open_links.entry(mac.clone()).or_default();
            *open += 1;
            if *open > 1 {
                state.events.push(DevicesEvent::TwoLinks { mac: mac.clone() });
                state.two_links.push(mac.clone());
            }
        }
        let other = body.get("other") == Some(&Value::Bool(true));
        if body.contains_key("digest") {
            let (Some(ch), Some(password)) = (challenge.take(), state.passwords.get(&mac).cloned()) else {
                return vec![Command::Close];
            };
            let expected = wire::sha256_hex(&format!(
                "{}:{}:{}:{ch}:{password}",
                mac,
                text("product"),
                text("version")
            ));
            let ok = expected == text("digest");
            state
                .events
                .push(DevicesEvent::ChallengeAnswered { mac: mac.clone(), ok });
            if !ok {
                return vec![Command::Close];
            }
            // A known phone that came with a new code joins that code's category now.
            if let Some(code) = pending_code.take() {
                if state.codes.get(&code) != Some(&false) {
                    state.events.push(DevicesEvent::CodeRejected { mac });
                    return vec![Command::Close];
                }
                state.codes.insert(code, true);
                state.events.push(DevicesEvent::Provisioned { mac: mac.clone() });
            }
            return if other {
                config_frames(&mut state, &mac, &password)
            } else {
                Vec::new()
            };
        }
        let code = text("provisioningCode");
        if !code.is_empty() && state.challenge_known && state.passwords.contains_key(&mac) {
            // devices-sysclient.md §2.3: a device already in a domain is challenged first.
            *state.identifies_with_code.entry(mac.clone()).or_default() += 1;
            *pending_code = Some(code);
            return vec![new_challenge(challenge)];
        }
        if !code.is_empty() {
            *state.identifies_with_code.entry(mac.clone()).or_default() += 1;
            match state.codes.get(&code) {
                Some(false) => {
                    state.codes.insert(code, true);
                    let password = state.new_password(&mac);
                    state.passwords.insert(mac.clone(), password.clone());
                    state.events.push(DevicesEvent::Provisioned { mac: mac.clone() });
                    let mut out = vec![Command::Frame(admin_frame(
                        1,
                        &format!("{{\"password\":{}}}", wire::json_str(&password)),
                    ))];
                    if other {
                        out.extend(config_frames(&mut state, &mac, &password));
                    }
                    out
                }
                _ => {
                    state.events.push(DevicesEvent::CodeRejected { mac });
                    vec![Command::Close]
                }
            }
        } else if state.knows(&mac) {
            let mut digits = [0u8; 4];
            let _ = getrandom::fill(&mut digits);
            let ch = u32::from_be_bytes(digits).to_string();
            *challenge = Some(ch.clone());
            vec![Command::Frame(admin_frame(
                2,
                &format!("{{\"challenge\":\"{ch}\"}}"),
            ))]
        } else {
            vec![Command::Close]
        }
    }
}

/// A fresh decimal challenge, remembered for the digest check.
fn new_challenge(challenge: &mut Option<String>) -> Command {
    let mut digits = [0u8; 4];
    let _ = getrandom::fill(&mut digits);
    let ch = u32::from_be_bytes(digits).to_string();
    *challenge = Some(ch.clone());
    Command::Frame(admin_frame(2, &format!("{{\"challenge\":\"{ch}\"}}")))
}

fn config_frames(state: &mut State, mac: &str, password: &str) -> Vec<Command> {
    let turn = {
        let mut data = state.turn_password.as_bytes().to_vec();
        wire::rc4(format!("{TURN_SEED}:{password}").as_bytes(), &mut data);
        wire::to_hex(&data)
    };
    let count = state.configs.len();
    let mut out: Vec<Command> = state
        .configs
        .iter()
        .enumerate()
        .map(|(i, config)| {
            let config = config.replace(TURN_PLACEHOLDER, &turn);
            let last = if i + 1 == count { ",\"last\":true" } else { "" };
            Command::Frame(admin_frame(6, &format!("{{\"config\":{config}{last}}}")))
        })
        .collect();
    if count == 0 {
        out.push(Command::Frame(admin_frame(6, "{\"last\":true}")));
    }
    state
        .events
        .push(DevicesEvent::ConfigSent { mac: mac.to_string() });
    out
}

fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!";
    let mut bytes = [0u8; 32];
    let _ = getrandom::fill(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}
