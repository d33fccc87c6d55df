//! One phone's websocket to innovaphone Devices, as a plain task owned by the phone's
//! `PhoneJob` (any [`SocketOwner`]): it only moves bytes. What the bytes mean is decided by the job's
//! [`SysclientSession`](innoprov::sysclient_session::SysclientSession).
//!
//! The task forwards Devices' binary frames to the job ([`FromDevices`], waiting for the job to
//! take each one, so a busy job slows the reading instead of queueing without bound), writes the
//! job's frames, pings an idle connection, and tells the job when it ends ([`SocketClosed`]),
//! also when it ends by a panic: a guard sends the message while unwinding.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use futures_util::{SinkExt, StreamExt};
use innoprov::sysclient;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::phones::connect_gate::ConnectGate;

/// How long a connection attempt (TCP, TLS, websocket handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle sysclient connection is pinged.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Frames queued for Devices before the connection is considered stuck.
pub const OUTBOUND_QUEUE: usize = 16;

/// A websocket to Devices.
pub type DevicesStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What every phone's connection shares.
pub struct LinkShared {
    /// Spaces out connection attempts service-wide.
    pub gate: Arc<ConnectGate>,
    /// Reconnect delays, handed to each phone's session.
    pub backoff: innoprov::sysclient_session::Backoff,
    /// TLS settings for `wss://`: the public web PKI plus `devices.ca_file`'s CAs.
    pub tls: Arc<rustls::ClientConfig>,
    /// Whether this instance may hold links at all (several instances: `false` while it
    /// cannot renew its leases). Turning it off closes every socket at once, whatever its job
    /// is busy with, and refuses new connections.
    pub links_allowed: tokio::sync::watch::Sender<bool>,
}

impl LinkShared {
    /// Settings with links allowed.
    pub fn new(
        gate: Arc<ConnectGate>,
        backoff: innoprov::sysclient_session::Backoff,
        tls: Arc<rustls::ClientConfig>,
    ) -> LinkShared {
        LinkShared {
            gate,
            backoff,
            tls,
            links_allowed: tokio::sync::watch::channel(true).0,
        }
    }
}

/// Why a link is refused or closed while links are not allowed.
const LINKS_PAUSED: &str = "links paused: this instance cannot renew its leases";

/// The websocket settings of a sysclient link: small buffers, because thousands are open at
/// once and Devices sends little.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(sysclient::MAX_FRAME_BYTES))
        .max_frame_size(Some(sysclient::MAX_FRAME_BYTES))
}

/// When the last warning about a node-wide limit was logged (Unix seconds).
static LAST_NODE_LIMIT_WARNING: AtomicU64 = AtomicU64::new(0);

/// A connect that failed for want of a node-wide resource fails alike for every phone, and
/// each phone's line says so only at info: at most once a minute (`last` holds when), the
/// warning that names the limit to raise.
fn node_limit_warning(e: &std::io::Error, last: &AtomicU64, now: u64) -> Option<String> {
    // Linux errno values: ENFILE, EMFILE, EADDRNOTAVAIL.
    let limit = match e.raw_os_error() {
        Some(24) => "open files (the service's nofile limit, LimitNOFILE in its unit)",
        Some(23) => "open files of the whole system (fs.file-max)",
        Some(99) => {
            "local ports towards Devices (net.ipv4.ip_local_port_range bounds the links to one Devices address)"
        }
        _ => return None,
    };
    let before = last.load(Ordering::Relaxed);
    if before != 0 && now < before + 60 {
        return None;
    }
    last.compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
        .ok()?;
    Some(format!(
        "Devices links: out of {limit} ({e}); phones without a link keep retrying"
    ))
}

/// Opens a websocket to `url` once the gate admits it; the error says why not.
pub async fn connect(url: String, shared: &LinkShared) -> Result<DevicesStream, String> {
    shared.gate.admit().await;
    if !*shared.links_allowed.borrow() {
        return Err(LINKS_PAUSED.to_string());
    }
    let tls = Arc::clone(&shared.tls);
    match tokio::time::timeout(CONNECT_TIMEOUT, open(&url, tls)).await {
        Ok(Ok(ws)) => Ok(ws),
        Ok(Err(e)) => Err(format!("connect failed: {e}")),
        Err(_) => Err("connect timed out".to_string()),
    }
}

/// TCP, TLS for `wss://`, and the websocket upgrade (RFC 6455 §4.1), done here rather than by
/// tungstenite's client handshake: that one hands its 4 KiB HTTP read buffer on to the
/// websocket as its read buffer for the connection's whole life, whatever `read_buffer_size`
/// says, and with 10,000 idle links those 4 KiB were a fifth of each link's memory.
async fn open(url: &str, tls: Arc<rustls::ClientConfig>) -> Result<DevicesStream, String> {
    use tokio_tungstenite::MaybeTlsStream;
    let url = url::Url::parse(url).map_err(|e| format!("sysclient URL {url:?}: {e}"))?;
    let secure = match url.scheme() {
        "ws" => false,
        "wss" => true,
        other => return Err(format!("sysclient URL scheme {other:?} is neither ws nor wss")),
    };
    let port = url
        .port_or_known_default()
        .ok_or_else(|| "sysclient URL has no port".to_string())?;
    // The host as a name to resolve or an address literal (without IPv6's brackets).
    let host = match url.host() {
        Some(url::Host::Domain(name)) => name.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err("sysclient URL has no host".to_string()),
    };
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| {
            if let Some(warning) =
                node_limit_warning(&e, &LAST_NODE_LIMIT_WARNING, innoprov::clock::now_unix())
            {
                log::warn!("{warning}");
            }
            format!("TCP: {e}")
        })?;
    // Frames are small and each is a whole message: no reason to wait for more.
    let _ = tcp.set_nodelay(true);
    let mut stream = if secure {
        // An address literal becomes an IP server name, anything else a DNS name.
        let server_name =
            rustls_pki_types::ServerName::try_from(host).map_err(|e| format!("TLS server name: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(tls);
        let tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        MaybeTlsStream::Rustls(tls)
    } else {
        MaybeTlsStream::Plain(tcp)
    };
    let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
    let tail = upgrade(&mut stream, &url, &key).await?;
    Ok(tokio_tungstenite::WebSocketStream::from_partially_read(
        stream,
        tail,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        Some(websocket_config()),
    )
    .await)
}

/// Longest HTTP answer head to a websocket upgrade that is read.
const MAX_UPGRADE_ANSWER: usize = 8 * 1024;

/// Sends the upgrade request for `url` with `key` and checks the answer (101,
/// `Upgrade: websocket`, `Connection: Upgrade`, the `Sec-WebSocket-Accept` of `key`); returns
/// what Devices sent after the answer's head (the start of its first frame, if any).
async fn upgrade<S>(stream: &mut S, url: &url::Url, key: &str) -> Result<Vec<u8>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    );
    let io = |e: std::io::Error| format!("websocket upgrade: {e}");
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err("websocket upgrade: the connection closed before the answer".to_string());
        }
        answer.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head = match response.parse(&answer) {
            Ok(httparse::Status::Complete(head)) => head,
            Ok(httparse::Status::Partial) if answer.len() < MAX_UPGRADE_ANSWER => continue,
            Ok(httparse::Status::Partial) => {
                return Err(format!(
                    "websocket upgrade: answer head longer than {MAX_UPGRADE_ANSWER} bytes"
                ));
            }
            Err(e) => return Err(format!("websocket upgrade: not an HTTP answer: {e}")),
        };
        let code = response.code.unwrap_or_default();
        if code != 101 {
            return Err(format!(
                "HTTP error: {code} {} (websocket upgrade refused)",
                response.reason.unwrap_or_default()
            ));
        }
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .unwrap_or_default()
        };
        if !header("Upgrade").eq_ignore_ascii_case("websocket")
            || !header("Connection")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        {
            return Err(
                "websocket upgrade: 101 without Upgrade: websocket and Connection: Upgrade".to_string(),
            );
        }
        if header("Sec-WebSocket-Accept") != derive_accept_key(key.as_bytes()) {
            return Err("websocket upgrade: wrong Sec-WebSocket-Accept".to_string());
        }
        return Ok(answer.split_off(head));
    }
}

/// What the job hands its socket task.
#[derive(Debug)]
pub enum Outgoing {
    /// A frame for Devices.
    Frame(Vec<u8>),
    #[cfg(feature = "simulators")]
    /// Fault injection for the supervision tests: the task panics.
    #[doc(hidden)]
    Panic,
}

/// A binary frame from Devices on connection `conn`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromDevices {
    /// Which connection it came on.
    pub conn: u64,
    /// The frame.
    pub bytes: Vec<u8>,
}

/// Connection `conn` ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SocketClosed {
    /// Which connection.
    pub conn: u64,
    /// Why.
    pub reason: String,
    /// Whether the task ended by a panic (not Devices' doing).
    pub panicked: bool,
}

/// What a socket task moves bytes for: its phone's job (`PhoneJob`), named by what it
/// takes rather than by its type, so the socket does not depend on its owner's module.
pub trait SocketOwner: Actor<Context = Context<Self>> + Handler<FromDevices> + Handler<SocketClosed> {}

impl<A> SocketOwner for A where A: Actor<Context = Context<A>> + Handler<FromDevices> + Handler<SocketClosed> {}

/// Tells the job that connection `conn` ended, however the task ends.
struct ClosedGuard<A: SocketOwner> {
    /// The job.
    job: Addr<A>,
    /// The connection.
    conn: u64,
    /// Why, once known; a task that unwinds has none.
    reason: Option<String>,
}

impl<A: SocketOwner> Drop for ClosedGuard<A> {
    fn drop(&mut self) {
        let panicked = std::thread::panicking();
        let reason = self
            .reason
            .take()
            .unwrap_or_else(|| "the socket task failed".to_string());
        self.job.do_send(SocketClosed {
            conn: self.conn,
            reason,
            panicked,
        });
    }
}

/// Starts the task that owns `ws` for connection `conn` of `job`; frames for Devices go into
/// the returned queue, and dropping it closes the websocket.
pub fn spawn<A: SocketOwner>(
    ws: DevicesStream,
    job: Addr<A>,
    conn: u64,
    shared: &LinkShared,
) -> (mpsc::Sender<Outgoing>, SocketTask) {
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let task = actix::spawn(run(ws, rx, job, conn, shared.links_allowed.subscribe()));
    (tx, SocketTask(task))
}

/// A running socket task; [`SocketTask::closed`] waits for its end.
#[derive(Debug)]
pub struct SocketTask(tokio::task::JoinHandle<()>);

impl SocketTask {
    /// Resolves once the task has ended (after its writer was dropped: the websocket is closed
    /// and Devices has seen the close), or after `limit`.
    pub async fn closed(self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.0).await;
    }
}

async fn run<A: SocketOwner>(
    mut ws: DevicesStream,
    mut outgoing: mpsc::Receiver<Outgoing>,
    job: Addr<A>,
    conn: u64,
    mut allowed: tokio::sync::watch::Receiver<bool>,
) {
    let mut guard = ClosedGuard {
        job: job.clone(),
        conn,
        reason: None,
    };
    // Devices sends nothing while nothing changes: pings show whether it is still there, and a
    // connection silent for three intervals (no frame, no pong) is given up.
    let mut ping = tokio::time::interval(KEEPALIVE);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    let reason = loop {
        tokio::select! {
            Ok(()) = allowed.changed() => {
                if !*allowed.borrow_and_update() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                    break LINKS_PAUSED.to_string();
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > KEEPALIVE * 3 {
                    break "no answer from Devices to pings".to_string();
                }
                if let Err(e) = ws.send(WsMessage::Ping(Default::default())).await {
                    break format!("ping failed: {e}");
                }
            }
            incoming = ws.next() => match incoming {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    last_heard = tokio::time::Instant::now();
                    if job.send(FromDevices { conn, bytes: bytes.to_vec() }).await.is_err() {
                        break "the phone's job is gone".to_string();
                    }
                }
                Some(Ok(WsMessage::Close(frame))) => break format!("closed by Devices ({frame:?})"),
                Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
                Some(Err(e)) => break format!("websocket error: {e}"),
                None => break "connection ended".to_string(),
            },
            out = outgoing.recv() => match out {
                Some(Outgoing::Frame(bytes)) => {
                    if let Err(e) = ws.send(WsMessage::binary(bytes)).await {
                        break format!("write failed: {e}");
                    }
                }
                #[cfg(feature = "simulators")]
                Some(Outgoing::Panic) => panic!("fault injected into the socket task of connection {conn}"),
                None => {
                    // The job let go of this connection: close it and wait for Devices to end it
                    // too, so that whoever links the phone next (this or another instance) finds
                    // the old link gone. Nothing to report.
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        let _ = ws.close(None).await;
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                    guard.reason = Some("closed by the job".to_string());
                    return;
                }
            },
        }
    };
    guard.reason = Some(reason);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn running_out_of_files_or_ports_is_warned_once_a_minute_and_other_errors_not_at_all() {
        let last = AtomicU64::new(0);
        let emfile = std::io::Error::from_raw_os_error(24);
        let warning = node_limit_warning(&emfile, &last, 1_000).expect("warned");
        assert!(warning.contains("open files"), "{warning}");
        assert_eq!(
            node_limit_warning(&emfile, &last, 1_059),
            None,
            "not again within a minute"
        );
        let ports = std::io::Error::from_raw_os_error(99);
        assert_eq!(
            node_limit_warning(&ports, &last, 1_030),
            None,
            "one warning a minute in all"
        );
        let warning = node_limit_warning(&ports, &last, 1_060).expect("a minute later");
        assert!(warning.contains("ip_local_port_range"), "{warning}");
        let system = node_limit_warning(&std::io::Error::from_raw_os_error(23), &AtomicU64::new(0), 1);
        assert!(
            system.is_some_and(|w| w.contains("fs.file-max")),
            "ENFILE is the system's limit"
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(node_limit_warning(&refused, &AtomicU64::new(0), 5_000), None);
    }

    /// RFC 6455 §1.3's example: this key must be answered with this accept value.
    const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    /// Runs `upgrade` against a peer that reads the request and answers `answer`; returns the
    /// request text and the outcome.
    async fn against(answer: Vec<u8>) -> (String, Result<Vec<u8>, String>) {
        let (mut ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let peer = tokio::spawn(async move {
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                theirs.read_exact(&mut byte).await.expect("request");
                request.push(byte[0]);
            }
            theirs.write_all(&answer).await.expect("answer");
            String::from_utf8(request).expect("text")
        });
        let url = url::Url::parse("ws://[::1]:8080/example.com/devices/sysclients?x=1").expect("url");
        let outcome = upgrade(&mut ours, &url, RFC_KEY).await;
        drop(ours);
        (peer.await.expect("peer"), outcome)
    }

    #[tokio::test]
    async fn the_request_is_rfc_6455s_and_the_rfc_answer_is_taken_with_its_tail() {
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: {RFC_ACCEPT}\r\n\r\n"
        );
        let mut answer = answer.into_bytes();
        answer.extend_from_slice(&[0x82, 0x01, 0x07]);
        let (request, outcome) = against(answer).await;
        assert_eq!(
            outcome,
            Ok(vec![0x82, 0x01, 0x07]),
            "the first frame's bytes are kept"
        );
        assert!(
            request.starts_with("GET /example.com/devices/sysclients?x=1 HTTP/1.1\r\n"),
            "{request}"
        );
        for line in [
            "Host: [::1]:8080\r\n",
            "Upgrade: websocket\r\n",
            "Connection: Upgrade\r\n",
            "Sec-WebSocket-Version: 13\r\n",
            &format!("Sec-WebSocket-Key: {RFC_KEY}\r\n"),
        ] {
            assert!(request.contains(line), "{line:?} missing in {request}");
        }
    }

    #[test]
    fn address_literals_are_checked_as_ip_server_names_and_names_as_dns_names() {
        // `open` hands rustls the URL's host as text and relies on this split.
        use rustls_pki_types::ServerName;
        for ip in ["127.0.0.1", "::1"] {
            let name = ServerName::try_from(ip.to_string()).expect(ip);
            assert!(matches!(name, ServerName::IpAddress(_)), "{ip}: {name:?}");
        }
        let name = ServerName::try_from("devices.example.com".to_string()).expect("name");
        assert!(matches!(name, ServerName::DnsName(_)), "{name:?}");
    }

    #[tokio::test]
    async fn every_wrong_answer_is_refused_with_its_reason() {
        let wrong_accept = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n";
        let no_upgrade =
            format!("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {RFC_ACCEPT}\r\n\r\n");
        let not_found = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let endless = format!("HTTP/1.1 101 OK\r\nX-Pad: {}", "0123456789".repeat(1000));
        let cases = [
            (wrong_accept.to_string(), "wrong Sec-WebSocket-Accept"),
            (no_upgrade, "without Upgrade: websocket"),
            (not_found.to_string(), "HTTP error: 404 Not Found"),
            ("SSH-2.0-OpenSSH\r\n\r\n".to_string(), "not an HTTP answer"),
            (endless, "longer than 8192 bytes"),
            (
                "HTTP/1.1 101 OK\r\n".to_string() + &"X-A: 1\r\n".repeat(40),
                "too many headers",
            ),
            ("HTTP/1.1 101".to_string(), "closed before the answer"),
        ];
        for (answer, why) in cases {
            let (_, outcome) = against(answer.into_bytes()).await;
            let error = outcome.expect_err(why);
            assert!(error.contains(why), "{error:?} should say {why:?}");
        }
    }
}
