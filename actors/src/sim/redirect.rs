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
//! Faults: a MAC owned by another account, a number of answers of 503, an answer delay.

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
    /// Ends the listener when the double is dropped.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for YealinkRpsSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<RpsState>) -> std::sync::MutexGuard<'_, RpsState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl YealinkRpsSim {
    /// Starts on an ephemeral loopback port, taking the account `user` / `password`.
    pub async fn start(user: &str, password: &str) -> std::io::Result<YealinkRpsSim> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(RpsState::default()));
        let account = (user.to_string(), password.to_string());
        let (shared, expected) = (Arc::clone(&state), account.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, expected) = (Arc::clone(&shared), expected.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &state, &expected).await;
                });
            }
        });
        Ok(YealinkRpsSim {
            addr,
            account,
            state,
            task,
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

/// The method name and string parameters of a `methodCall`.
fn read_call(body: &str) -> Option<(String, Vec<String>)> {
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
            value
                .and_then(|v| v.children().find(|n| n.is_element()).or(Some(v)))
                .and_then(|n| n.text())
                .unwrap_or_default()
                .to_string()
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

async fn serve(
    mut stream: TcpStream,
    state: &Mutex<RpsState>,
    account: &(String, String),
) -> std::io::Result<()> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let (head_len, method, path, headers) = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("slow client"))??;
        if n == 0 || raw.len() > 64 * 1024 {
            return Ok(());
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
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let length: usize = header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
        .min(64 * 1024);
    while raw.len() < head_len + length {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&raw[head_len..(head_len + length).min(raw.len())]).to_string();
    let delay = lock(state).delay;
    tokio::time::sleep(delay).await;
    let (status, extra, reply) = respond(state, account, &method, &path, header("authorization"), &body);
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{reply}",
        reply.len()
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
