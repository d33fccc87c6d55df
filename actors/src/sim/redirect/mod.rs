//! Doubles of the vendors' redirect services, written from docs/redirect/ (the vendors' pages
//! and the independent clients cited there), not from innoprov's adapters: they parse the
//! XML-RPC calls with their own reader, check the account's HTTP Basic credentials, keep the
//! registrations, and answer the phones that ask where their provisioning server is.
//!
//! - [`YealinkRpsSim`]: Yealink RPS. `POST /xmlrpc` with `redirect.checkDevice(mac)`,
//!   `redirect.registerDeviceWithUniqueUrl(mac, server, url, override)`,
//!   `redirect.deRegisterDevice(mac)`, each answered `[boolean, text]` with the text untyped
//!   (docs/redirect/yealink.md §1); a wrong account is HTTP 401. A phone's
//!   `GET /service.do?method=redirect&mac=<AA-BB-CC-DD-EE-FF>` is answered 302 with the
//!   registered URL (§3; the 3xx form is unsettled), 404 for a MAC it does not know.
//!
//! - [`SrapsSim`]: Snom SRAPS, REST with Hawk checked by its own HMAC (docs/redirect/
//!   snom-gigaset.md §1).
//! - [`FdpsSim`]: Fanvil FDPS, XML-RPC with the double-MD5 Basic password ([`fdps`]).
//! - [`GigasetRedirectSim`]: Gigaset's MAC-ID redirect server, XML-RPC, checking each
//!   device's label code ([`gigaset`]).
//! - [`PolyZtpSim`]: Poly ZTP, REST with an API key, profiles carrying the phone's server
//!   and login ([`ztp`]).
//!
//! Faults: a MAC owned by another account; RPS also a number of answers of 503 and an answer
//! delay.

pub mod fdps;
pub mod gigaset;
pub mod ztp;

pub use fdps::FdpsSim;
pub use gigaset::GigasetRedirectSim;
pub use ztp::PolyZtpSim;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One call the double took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpsCall {
    /// The XML-RPC method.
    pub method: String,
    /// Its string parameters, in order.
    pub params: Vec<String>,
    /// Whether the account's credentials were right.
    pub authorized: bool,
}

#[derive(Default)]
struct RpsState {
    /// Registered MACs (12 upper-case hex) and their URLs.
    devices: BTreeMap<String, String>,
    /// MACs another account holds.
    foreign: Vec<String>,
    /// Calls in order.
    calls: Vec<RpsCall>,
    /// Answers still to be 503.
    failures: u32,
    /// Each answer waits this long.
    delay: Duration,
}

/// The Yealink RPS double.
pub struct YealinkRpsSim {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The account it takes: user and password.
    account: (String, String),
    /// What it holds.
    state: Arc<Mutex<RpsState>>,
    /// Its listener.
    _door: Door,
}

fn lock(state: &Mutex<RpsState>) -> std::sync::MutexGuard<'_, RpsState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl YealinkRpsSim {
    /// Starts on an ephemeral loopback port, taking the account `user` / `password`.
    pub async fn start(user: &str, password: &str) -> std::io::Result<YealinkRpsSim> {
        let state = Arc::new(Mutex::new(RpsState::default()));
        let account = (user.to_string(), password.to_string());
        let (shared, expected) = (Arc::clone(&state), account.clone());
        let door = Door::open(move |request, _| {
            let (status, headers, body) = respond(
                &shared,
                &expected,
                &request.method,
                &request.path,
                request.header("authorization"),
                &request.body,
            );
            Reply {
                headers,
                delay: lock(&shared).delay,
                ..Reply::of(status, "text/xml", body)
            }
        })
        .await?;
        Ok(YealinkRpsSim {
            addr: door.addr,
            account,
            state,
            _door: door,
        })
    }

    /// The XML-RPC endpoint, for `[redirect.yealink] url`.
    pub fn url(&self) -> String {
        format!("http://{}/xmlrpc", self.addr)
    }

    /// Where the phones ask (their firmware's RPS address, here the double's).
    pub fn phone_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The account it takes.
    pub fn account(&self) -> (String, String) {
        self.account.clone()
    }

    /// The registrations: MAC (12 upper-case hex) → URL.
    pub fn devices(&self) -> BTreeMap<String, String> {
        lock(&self.state).devices.clone()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<RpsCall> {
        lock(&self.state).calls.clone()
    }

    /// Another account holds `mac`.
    pub fn owned_by_another(&self, mac: &str) {
        lock(&self.state).foreign.push(mac.to_ascii_uppercase());
    }

    /// The next `n` calls are answered 503.
    pub fn fail_next(&self, n: u32) {
        lock(&self.state).failures = n;
    }

    /// Every answer waits `delay`.
    pub fn answer_after(&self, delay: Duration) {
        lock(&self.state).delay = delay;
    }
}

/// An `[boolean, text]` answer, the text untyped as docs/redirect/yealink.md reconstructs it.
fn rps_answer(ok: bool, text: &str) -> String {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        "<?xml version=\"1.0\"?>\n<methodResponse><params><param><value><array><data><value><boolean>{}</boolean></value><value>{escaped}</value></data></array></value></param></params></methodResponse>\n",
        u8::from(ok)
    )
}

/// The method name and string parameters of a `methodCall` (an array parameter: its first item).
fn read_call(body: &str) -> Option<(String, Vec<String>)> {
    let (method, params) = read_call_items(body)?;
    let scalars = params
        .into_iter()
        .map(|p| p.into_iter().next().unwrap_or_default())
        .collect();
    Some((method, scalars))
}

/// The method name and each parameter's strings: a scalar (typed or not) as one item, an
/// array as its items; the double's own reading of the XML-RPC specification.
fn read_call_items(body: &str) -> Option<(String, Vec<Vec<String>>)> {
    let doc = roxmltree::Document::parse(body).ok()?;
    let root = doc.root_element();
    if !root.has_tag_name("methodCall") {
        return None;
    }
    let method = root
        .children()
        .find(|n| n.has_tag_name("methodName"))?
        .text()?
        .trim()
        .to_string();
    let params = root
        .descendants()
        .filter(|n| n.has_tag_name("param"))
        .map(|p| {
            let value = p.children().find(|n| n.has_tag_name("value"));
            let typed = value.and_then(|v| v.children().find(|n| n.is_element()));
            match typed {
                Some(array) if array.has_tag_name("array") => array
                    .descendants()
                    .filter(|n| n.has_tag_name("value"))
                    .map(|v| {
                        let leaf = v.children().find(|n| n.is_element()).unwrap_or(v);
                        leaf.text().unwrap_or_default().to_string()
                    })
                    .collect(),
                Some(leaf) => vec![leaf.text().unwrap_or_default().to_string()],
                None => vec![value.and_then(|v| v.text()).unwrap_or_default().to_string()],
            }
        })
        .collect();
    Some((method, params))
}

/// 12 upper-case hex digits from any of the forms RPS takes (docs/redirect/yealink.md §1).
fn canonical_mac(text: &str) -> Option<String> {
    let hex: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (hex.len() == 12
        && text
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '-')))
    .then(|| hex.to_ascii_uppercase())
}

fn answer_call(state: &Mutex<RpsState>, method: &str, params: &[String]) -> String {
    let mut state = lock(state);
    let Some(mac) = params.first().and_then(|m| canonical_mac(m)) else {
        return rps_answer(
            false,
            &format!(
                "Error:Invalid MAC(s):{}",
                params.first().cloned().unwrap_or_default()
            ),
        );
    };
    let foreign = state.foreign.contains(&mac);
    match method {
        "redirect.checkDevice" if foreign => rps_answer(true, "registered elsewhere"),
        "redirect.checkDevice" if state.devices.contains_key(&mac) => rps_answer(true, "registered"),
        "redirect.checkDevice" => rps_answer(true, "unregistered"),
        "redirect.registerDeviceWithUniqueUrl" => {
            if params.len() != 4 || params[1].is_empty() {
                return rps_answer(false, "Error:Invalid server");
            }
            let url = &params[2];
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return rps_answer(
                    false,
                    "Error:The url can only begin with 'http://' or 'https://' or 'ftp://' or 'tftp://'",
                );
            }
            if foreign {
                return rps_answer(
                    false,
                    &format!("Error:{} is registered by another user", mac.to_ascii_lowercase()),
                );
            }
            state.devices.insert(mac, url.clone());
            rps_answer(true, "OK")
        }
        "redirect.deRegisterDevice" => {
            state.devices.remove(&mac);
            rps_answer(true, "OK")
        }
        other => format!(
            "<?xml version=\"1.0\"?>\n<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>-32601</int></value></member><member><name>faultString</name><value><string>no method {other}</string></value></member></struct></value></fault></methodResponse>\n"
        ),
    }
}

/// What a double answers one request.
struct Reply {
    /// Status line after the version (`200 OK`).
    status: &'static str,
    /// Extra header lines, each ending in CRLF.
    headers: String,
    /// `Content-Type`.
    content_type: &'static str,
    /// The body.
    body: String,
    /// How long the double waits before it answers.
    delay: Duration,
}

impl Reply {
    /// `status` with `body` of `content_type`, at once and without extra headers.
    fn of(status: &'static str, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            headers: String::new(),
            content_type,
            body,
            delay: Duration::ZERO,
        }
    }
}

/// A double's listener on an ephemeral loopback port: one request per connection, read within
/// [`read_request`]'s bounds and answered by its handler; closed when dropped.
struct Door {
    /// Where it listens.
    addr: SocketAddr,
    /// The accept loop.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Door {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Door {
    /// Opens a door whose requests `answer` answers (it is told the door's address too).
    async fn open(
        answer: impl Fn(&Request, SocketAddr) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<Door> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let answer = Arc::new(answer);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = Arc::clone(&answer);
                tokio::spawn(async move {
                    if let Ok(Some(request)) = read_request(&mut stream).await {
                        let reply = answer(&request, addr);
                        tokio::time::sleep(reply.delay).await;
                        let _ = write_reply(
                            &mut stream,
                            reply.status,
                            &reply.headers,
                            reply.content_type,
                            &reply.body,
                        )
                        .await;
                    }
                });
            }
        });
        Ok(Door { addr, task })
    }
}

/// One HTTP request as a double reads it (bounded: 64 KiB, 5 s per read).
struct Request {
    /// `GET`, `POST`, ...
    method: String,
    /// The path with its query.
    path: String,
    /// Headers, names in lower case.
    headers: Vec<(String, String)>,
    /// The body.
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let (head_len, method, path, headers) = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("slow client"))??;
        if n == 0 || raw.len() > 64 * 1024 {
            return Ok(None);
        }
        raw.extend_from_slice(&buf[..n]);
        let mut parsed = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut parsed);
        if let Ok(httparse::Status::Complete(len)) = request.parse(&raw) {
            let headers: Vec<(String, String)> = request
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).to_string(),
                    )
                })
                .collect();
            break (
                len,
                request.method.unwrap_or_default().to_string(),
                request.path.unwrap_or_default().to_string(),
                headers,
            );
        }
    };
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, l)| l.parse().ok())
        .unwrap_or(0usize)
        .min(64 * 1024);
    while raw.len() < head_len + length {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&raw[head_len..(head_len + length).min(raw.len())]).to_string();
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

async fn write_reply(
    stream: &mut TcpStream,
    status: &str,
    extra: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn respond(
    state: &Mutex<RpsState>,
    account: &(String, String),
    method: &str,
    path: &str,
    authorization: Option<String>,
    body: &str,
) -> (&'static str, String, String) {
    if method == "GET" && path.starts_with("/service.do?") {
        // The phone's question: `method=redirect&mac=AA-BB-CC-DD-EE-FF`.
        let mac = path
            .split(['?', '&'])
            .find_map(|pair| pair.strip_prefix("mac="))
            .and_then(canonical_mac);
        let url = mac.and_then(|mac| lock(state).devices.get(&mac).cloned());
        return match url {
            Some(url) => ("302 Found", format!("Location: {url}\r\n"), String::new()),
            None => ("404 Not Found", String::new(), String::new()),
        };
    }
    if method != "POST" || path != "/xmlrpc" {
        return ("404 Not Found", String::new(), String::new());
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", account.0, account.1))
    );
    let authorized = authorization.as_deref() == Some(expected.as_str());
    let Some((call, params)) = read_call(body) else {
        return ("400 Bad Request", String::new(), String::new());
    };
    {
        let mut state = lock(state);
        state.calls.push(RpsCall {
            method: call.clone(),
            params: params.clone(),
            authorized,
        });
        if state.failures > 0 {
            state.failures -= 1;
            return ("503 Service Unavailable", String::new(), String::new());
        }
    }
    if !authorized {
        return (
            "401 Unauthorized",
            "WWW-Authenticate: Basic realm=\"RPS\"\r\n".into(),
            String::new(),
        );
    }
    ("200 OK", String::new(), answer_call(state, &call, &params))
}

/// The Snom SRAPS double (docs/redirect/snom-gigaset.md §1): Hawk checked with its own code
/// (the access key's id, its secret, `ts` within 60 s, a nonce used once, the payload hash when
/// sent), the discovery `tokens/{id}` → company → `endpoints`, the settings list of 1179
/// settings (the count falconieri saw) paged by `page_size` (default 20, at most 1000) and
/// `page` with an RFC 8288 `Link: <…>; rel="next"`, with two `setting_server`s (the `global`
/// one on the first page, as the doc warns; the `phone-settings` one on the second page of
/// 1000), `PUT` and `DELETE` of `endpoints/{mac}`. A MAC another account holds is refused 403
/// `taken_mac_or_forbidden`. [`SrapsSim::start_grape`] is Gigaset GRAPE, the same protocol
/// whose setting is `ProvisioningServer` (§3.2).
pub struct SrapsSim {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it holds.
    state: Arc<Mutex<SrapsState>>,
    /// Its listener.
    _door: Door,
}

/// The company's uuid.
const COMPANY: &str = "0123456789abcdef0123456789abcdef";
/// The phone-settings `setting_server`'s uuid (docs/redirect/snom-gigaset.md §1.4).
pub const SETTING_SERVER: &str = "50a400560eec4dc0b96b026094e06562";

#[derive(Default)]
struct SrapsState {
    /// The access key.
    key: (String, String),
    /// The provisioning setting's name: `setting_server` (SRAPS) or `ProvisioningServer` (GRAPE).
    setting: &'static str,
    /// Endpoints: MAC (lower case) → the `setting_server` value.
    endpoints: BTreeMap<String, String>,
    /// MACs another account holds.
    foreign: Vec<String>,
    /// Nonces seen.
    nonces: Vec<String>,
    /// Calls: method, path, whether Hawk held.
    calls: Vec<(String, String, bool)>,
}

fn lock_sraps(state: &Mutex<SrapsState>) -> std::sync::MutexGuard<'_, SrapsState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// HMAC-SHA256 (RFC 2104), the double's own.
fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = if key.len() > 64 {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).chain(data.iter().copied()).collect();
    let inner = Sha256::digest(&inner);
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(inner.iter().copied()).collect();
    Sha256::digest(&outer).to_vec()
}

/// The attributes of a `Hawk a="b", ...` header.
fn hawk_attributes(header: &str) -> Option<BTreeMap<String, String>> {
    let rest = header.strip_prefix("Hawk ")?;
    rest.split(", ")
        .map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((
                name.trim().to_string(),
                value.trim().trim_matches('"').to_string(),
            ))
        })
        .collect()
}

/// Whether the request's Hawk header holds for `key`.
fn hawk_holds(request: &Request, key: &(String, String), nonces: &mut Vec<String>) -> bool {
    use sha2::{Digest, Sha256};
    let Some(attrs) = request.header("authorization").and_then(|h| hawk_attributes(&h)) else {
        return false;
    };
    let get = |name: &str| attrs.get(name).cloned().unwrap_or_default();
    let ts: i64 = get("ts").parse().unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if get("id") != key.0 || (now - ts).abs() > 60 || nonces.contains(&get("nonce")) {
        return false;
    }
    if let Some(hash) = attrs.get("hash") {
        let media = request
            .header("content-type")
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let digest = Sha256::digest(format!("hawk.1.payload\n{media}\n{}\n", request.body).as_bytes());
        if *hash != base64::engine::general_purpose::STANDARD.encode(digest) {
            return false;
        }
    }
    let host_header = request.header("host").unwrap_or_default();
    let (host, port) = host_header
        .rsplit_once(':')
        .unwrap_or((host_header.as_str(), "80"));
    let normalized = format!(
        "hawk.1.header\n{ts}\n{}\n{}\n{}\n{}\n{port}\n{}\n{}\n",
        get("nonce"),
        request.method,
        request.path,
        host.to_ascii_lowercase(),
        attrs.get("hash").cloned().unwrap_or_default(),
        attrs.get("ext").cloned().unwrap_or_default(),
    );
    let mac = base64::engine::general_purpose::STANDARD.encode(hmac(key.1.as_bytes(), normalized.as_bytes()));
    let holds = mac == get("mac");
    if holds {
        nonces.push(get("nonce"));
    }
    holds
}

impl SrapsSim {
    /// SRAPS on an ephemeral loopback port with the access key `key_id` / `secret`.
    pub async fn start(key_id: &str, secret: &str) -> std::io::Result<SrapsSim> {
        SrapsSim::start_as(key_id, secret, "setting_server").await
    }

    /// GRAPE on an ephemeral loopback port with the access key `key_id` / `secret`.
    pub async fn start_grape(key_id: &str, secret: &str) -> std::io::Result<SrapsSim> {
        SrapsSim::start_as(key_id, secret, "ProvisioningServer").await
    }

    async fn start_as(key_id: &str, secret: &str, setting: &'static str) -> std::io::Result<SrapsSim> {
        let state = Arc::new(Mutex::new(SrapsState {
            key: (key_id.to_string(), secret.to_string()),
            setting,
            ..SrapsState::default()
        }));
        let shared = Arc::clone(&state);
        let door =
            Door::open(move |request, addr| sraps_reply(&mut lock_sraps(&shared), request, addr)).await?;
        Ok(SrapsSim {
            addr: door.addr,
            state,
            _door: door,
        })
    }

    /// The API base, for `[redirect.snom] url`.
    pub fn url(&self) -> String {
        format!("http://{}/api/v1/", self.addr)
    }

    /// The endpoints: MAC (lower case) → the `setting_server` SRAPS hands the phone.
    pub fn endpoints(&self) -> BTreeMap<String, String> {
        lock_sraps(&self.state).endpoints.clone()
    }

    /// Calls so far: method, path, whether Hawk held.
    pub fn calls(&self) -> Vec<(String, String, bool)> {
        lock_sraps(&self.state).calls.clone()
    }

    /// Another account holds `mac`.
    pub fn owned_by_another(&self, mac: &str) {
        lock_sraps(&self.state).foreign.push(mac.to_ascii_lowercase());
    }
}

/// Every call: Hawk checked and the call kept, then the settings list or the other resources.
fn sraps_reply(state: &mut SrapsState, request: &Request, addr: SocketAddr) -> Reply {
    let key = state.key.clone();
    let holds = hawk_holds(request, &key, &mut state.nonces);
    state
        .calls
        .push((request.method.clone(), request.path.clone(), holds));
    if !holds {
        let body = r#"{"message":"invalid Hawk authorization"}"#.to_string();
        return Reply::of("401 Unauthorized", "application/json", body);
    }
    match request.path.strip_prefix("/api/v1/settings/") {
        Some(query) if request.method == "GET" => {
            let (body, headers) = settings_page(state, query, addr);
            Reply {
                headers,
                ..Reply::of("200 OK", "application/json", body)
            }
        }
        Some(_) => Reply::of("405 Method Not Allowed", "application/json", String::new()),
        None => {
            let (status, body) = sraps_answer(state, request, addr);
            Reply::of(status, "application/json", body)
        }
    }
}

/// The discovery and the endpoints, for a request whose Hawk held.
fn sraps_answer(state: &mut SrapsState, request: &Request, addr: SocketAddr) -> (&'static str, String) {
    let key = state.key.clone();
    let base = format!("http://{addr}/api/v1/");
    let company = format!("/api/v1/companies/{COMPANY}");
    let endpoints = format!("{company}/endpoints/");
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", path) if path == format!("/api/v1/tokens/{}", key.0) => (
            "200 OK",
            format!(r#"{{"links":{{"company":"{base}companies/{COMPANY}"}}}}"#),
        ),
        ("GET", path) if path == company => (
            "200 OK",
            format!(
                r#"{{"uuid":"{COMPANY}","links":{{"endpoints":"{base}companies/{COMPANY}/endpoints/"}}}}"#
            ),
        ),
        (method, path) if path.starts_with(&endpoints) => {
            let mac = path[endpoints.len()..].to_string();
            if state.foreign.contains(&mac) {
                return ("403 Forbidden", r#"{"message":"taken_mac_or_forbidden"}"#.into());
            }
            match method {
                "PUT" => {
                    let body: serde_json::Value = match serde_json::from_str(&request.body) {
                        Ok(body) => body,
                        Err(_) => return ("400 Bad Request", r#"{"message":"no JSON"}"#.into()),
                    };
                    let value = body["settings_manager"][SETTING_SERVER]["value"].as_str();
                    let setting = state.setting;
                    match (
                        body["mac"].as_str() == Some(mac.as_str()),
                        body["autoprovisioning_enabled"] == true,
                        value,
                    ) {
                        (true, true, Some(value)) => {
                            state.endpoints.insert(mac, value.to_string());
                            ("200 OK", request.body.clone())
                        }
                        _ => (
                            "400 Bad Request",
                            format!(
                                r#"{{"message":"mac, autoprovisioning_enabled and the {setting} setting are required"}}"#
                            ),
                        ),
                    }
                }
                "DELETE" => match state.endpoints.remove(&mac) {
                    Some(_) => ("204 No Content", String::new()),
                    None => ("404 Not Found", r#"{"message":"not found"}"#.into()),
                },
                _ => ("405 Method Not Allowed", String::new()),
            }
        }
        _ => ("404 Not Found", r#"{"message":"not found"}"#.into()),
    }
}

/// The settings falconieri saw in all (docs/redirect/snom-gigaset.md §1.4).
const SETTINGS: usize = 1179;
/// Where the provisioning setting sits in the list: on the second page of 1000.
const SETTING_AT: usize = 1100;

/// One page of the settings list asked for by `query` (`page_size`, `page`), and the `Link`
/// header to the next page while there is one.
fn settings_page(state: &SrapsState, query: &str, addr: SocketAddr) -> (String, String) {
    let param = |name: &str| {
        query
            .trim_start_matches('?')
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let size = param("page_size").unwrap_or(20).clamp(1, 1000);
    let page = param("page").unwrap_or(1).max(1);
    let setting = state.setting;
    let items: Vec<serde_json::Value> = ((page - 1) * size..(page * size).min(SETTINGS))
        .map(|n| match n {
            5 if setting == "setting_server" => serde_json::json!({"uuid": "5683038cec6c4fa9be95b2de9d1750e8", "param_name": "setting_server", "section": "global"}),
            SETTING_AT => serde_json::json!({"uuid": SETTING_SERVER, "param_name": setting, "section": "phone-settings"}),
            n => serde_json::json!({"uuid": format!("{n:032x}"), "param_name": format!("setting_{n}"), "section": "phone-settings"}),
        })
        .collect();
    let link = match page * size < SETTINGS {
        true => format!(
            "Link: <http://{addr}/api/v1/settings/?page_size={size}&page={}>; rel=\"next\"\r\n",
            page + 1
        ),
        false => String::new(),
    };
    (serde_json::Value::from(items).to_string(), link)
}
