//! One phone's websocket to innovaphone Devices, as a plain task owned by the phone's
//! [`PhoneJob`]: it only moves bytes. What the bytes mean is decided by the job's
//! [`SysclientSession`](innoprov::sysclient_session::SysclientSession).
//!
//! The task forwards Devices' binary frames to the job ([`FromDevices`], waiting for the job to
//! take each one, so a busy job slows the reading instead of queueing without bound), writes the
//! job's frames, pings an idle connection, and tells the job when it ends ([`SocketClosed`]),
//! also when it ends by a panic: a guard sends the message while unwinding.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::{SinkExt, StreamExt};
use innoprov::sysclient;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::connect_gate::ConnectGate;
use crate::phone_job::PhoneJob;

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
    /// TLS settings for `wss://` when extra CAs are configured; `None` uses the public web PKI.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The websocket settings of a sysclient link: small buffers, because thousands are open at
/// once and Devices sends little.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(sysclient::MAX_FRAME_BYTES))
        .max_frame_size(Some(sysclient::MAX_FRAME_BYTES))
}

/// Opens a websocket to `url` once the gate admits it; the error says why not.
pub async fn connect(url: String, shared: &LinkShared) -> Result<DevicesStream, String> {
    shared.gate.admit().await;
    let tls = shared.tls.clone();
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_tls_with_config(
            url,
            Some(websocket_config()),
            true,
            tls.map(tokio_tungstenite::Connector::Rustls),
        ),
    )
    .await
    {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(format!("connect failed: {e}")),
        Err(_) => Err("connect timed out".to_string()),
    }
}

/// What the job hands its socket task.
#[derive(Debug)]
pub enum Outgoing {
    /// A frame for Devices.
    Frame(Vec<u8>),
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

/// Tells the job that connection `conn` ended, however the task ends.
struct ClosedGuard {
    /// The job.
    job: Addr<PhoneJob>,
    /// The connection.
    conn: u64,
    /// Why, once known; a task that unwinds has none.
    reason: Option<String>,
}

impl Drop for ClosedGuard {
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
pub fn spawn(ws: DevicesStream, job: Addr<PhoneJob>, conn: u64) -> mpsc::Sender<Outgoing> {
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    actix::spawn(run(ws, rx, job, conn));
    tx
}

async fn run(mut ws: DevicesStream, mut outgoing: mpsc::Receiver<Outgoing>, job: Addr<PhoneJob>, conn: u64) {
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
                Some(Outgoing::Panic) => panic!("fault injected into the socket task of connection {conn}"),
                None => {
                    // The job let go of this connection: close it, nothing to report.
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                    guard.reason = Some("closed by the job".to_string());
                    return;
                }
            },
        }
    };
    guard.reason = Some(reason);
}
