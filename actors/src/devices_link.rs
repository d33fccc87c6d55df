//! `DevicesLink`: one phone's sysclient websocket to innovaphone Devices
//! (devices-sysclient.md §2). It identifies with the provisioning code the first time and with
//! the stored sysclient password after that, collects the configuration up to `last:true`,
//! passes every later update on, and reconnects with jittered exponential backoff (1 s to
//! 60 s, reset once Devices has accepted the identify) through the shared [`ConnectGate`].
//!
//! Messages it takes: [`FromDevices`] and [`Disconnected`] (from its connection task),
//! [`SetDevicesUrl`] and [`CloseLink`] (from its job). What it learns goes to its job as [`LinkEvent`]s.

use std::sync::Arc;
use std::time::Duration;

use actix::WeakRecipient;
use actix::prelude::*;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures_util::{SinkExt, StreamExt};
use innoprov::devices::{self, ConfigItem};
use innoprov::sysclient::{self, SysclientFrame, admin};
use innoprov::{Mac, Sealer, Secret};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::connect_gate::ConnectGate;

/// How long a connection attempt (TCP, TLS, websocket handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle sysclient connection is pinged.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Most configuration items one phone may have (a bound against a misbehaving peer).
pub const MAX_CONFIG_ITEMS: usize = 512;
/// Frames queued for Devices before the link is considered stuck.
const OUTBOUND_QUEUE: usize = 16;

/// What a link tells its job.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum LinkEvent {
    /// The websocket is open and Identify is sent.
    Connected,
    /// Devices gave the phone its sysclient password: store it now.
    SysclientPassword(Secret),
    /// Devices deployed an administrative password.
    AdminPassword(Secret),
    /// The complete configuration, up to `last:true` (after every identify).
    ConfigComplete(Vec<ConfigItem>),
    /// One later change.
    ConfigUpdate(ConfigItem),
    /// The link went down (or could not connect); it retries by itself.
    Down(String),
    /// Devices will not have this phone (code refused, or a challenge with no password to
    /// answer it); the link has stopped trying.
    Rejected(String),
    /// Devices refused the new provisioning code of a phone it already knows; the link goes on
    /// with the stored sysclient password.
    CodeRefused(String),
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

/// What every link shares.
pub struct LinkShared {
    /// Seals secrets before they leave the link.
    pub sealer: Sealer,
    /// Spaces out connection attempts service-wide.
    pub gate: Arc<ConnectGate>,
    /// First reconnect delay.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// TLS settings for `wss://` when extra CAs are configured; `None` uses the public web PKI.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// One phone's link.
pub struct DevicesLink {
    /// The phone.
    mac: Mac,
    /// Devices' sysclient URL; `None` until known.
    url: Option<String>,
    /// The provisioning code, while no sysclient password is known.
    code: Option<String>,
    /// The sysclient password, once known.
    password: Option<Secret>,
    /// The job to tell.
    job: WeakRecipient<LinkEvent>,
    /// Settings and the gate.
    shared: Arc<LinkShared>,
    /// Reconnect delays.
    backoff: ExponentialBackoff,
    /// Number of the current connection (stale task messages carry an older one).
    conn: u64,
    /// Queue to the current connection's task; `None` while disconnected.
    writer: Option<mpsc::Sender<Vec<u8>>>,
    /// Whether a connect attempt or a reconnect timer is under way.
    connecting: bool,
    /// Configuration items of the current identify, until `last:true`.
    collecting: Vec<ConfigItem>,
    /// Whether the current connection has delivered its complete configuration.
    complete: bool,
    /// Whether Devices accepted the current identify (anything but a close came back).
    accepted: bool,
    /// Whether the current identify carried the provisioning code.
    code_sent: bool,
}

impl DevicesLink {
    /// A link for `mac`: with `code` for a first provisioning, with `password` to reconnect.
    pub fn new(
        mac: Mac,
        url: Option<String>,
        code: Option<String>,
        password: Option<Secret>,
        job: WeakRecipient<LinkEvent>,
        shared: Arc<LinkShared>,
    ) -> DevicesLink {
        let backoff = Self::fresh_backoff(&shared);
        DevicesLink {
            mac,
            url,
            code,
            password,
            job,
            shared,
            backoff,
            conn: 0,
            writer: None,
            connecting: false,
            collecting: Vec::new(),
            complete: false,
            accepted: false,
            code_sent: false,
        }
    }

    fn fresh_backoff(shared: &LinkShared) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(shared.min_backoff)
            .with_max_delay(shared.max_backoff)
            .without_max_times()
            .build()
    }

    fn tell(&self, event: LinkEvent) {
        if let Some(job) = self.job.upgrade() {
            job.do_send(event);
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.connecting || self.writer.is_some() {
            return;
        }
        let Some(url) = self.url.clone() else { return };
        self.connecting = true;
        let gate = Arc::clone(&self.shared.gate);
        let attempted = url.clone();
        let tls = self.shared.tls.clone();
        let attempt = async move {
            gate.admit().await;
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_tungstenite::connect_async_tls_with_config(
                    url,
                    Some(websocket_config()),
                    true,
                    tls.map(tokio_tungstenite::Connector::Rustls),
                ),
            )
            .await
        };
        ctx.spawn(attempt.into_actor(self).map(move |result, act, ctx| {
            act.connecting = false;
            if act.url.as_deref() != Some(attempted.as_str()) {
                // The URL changed while connecting: this connection goes to the old place.
                return act.connect(ctx);
            }
            match result {
                Ok(Ok((ws, _))) => act.connected(ctx, ws),
                Ok(Err(e)) => act.retry(ctx, format!("connect failed: {e}")),
                Err(_) => act.retry(ctx, "connect timed out".to_string()),
            }
        }));
    }

    fn connected(
        &mut self,
        ctx: &mut Context<Self>,
        ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    ) {
        self.conn += 1;
        self.collecting.clear();
        self.complete = false;
        self.accepted = false;
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        self.writer = Some(tx);
        actix::spawn(run_connection(ws, rx, ctx.address(), self.conn));
        let id = self.mac.to_string();
        // A code is sent whenever the job gave one (a new ProvisioningPhone), even for a phone
        // that has a sysclient password: the code picks the phone's new domain and category,
        // and a challenge that follows is answered with the stored password.
        let code = self.code.as_deref();
        self.code_sent = code.is_some();
        log::info!(
            "phone {}: sysclient link up, identifying {}",
            self.mac,
            if code.is_some() {
                "with the provisioning code"
            } else {
                "for a challenge"
            }
        );
        self.send(ctx, sysclient::identify(&id, code, None));
        self.tell(LinkEvent::Connected);
    }

    fn send(&mut self, ctx: &mut Context<Self>, frame: SysclientFrame) {
        let Some(writer) = &self.writer else { return };
        if writer.try_send(frame.encode()).is_err() {
            self.drop_connection(ctx, "outbound queue full or closed".to_string());
        }
    }

    /// Closes the current connection (its task ends when the queue is dropped) and retries.
    fn drop_connection(&mut self, ctx: &mut Context<Self>, why: String) {
        self.writer = None;
        self.conn += 1;
        self.retry(ctx, why);
    }

    fn retry(&mut self, ctx: &mut Context<Self>, why: String) {
        let delay = self.backoff.next().unwrap_or(self.shared.max_backoff);
        log::info!(
            "phone {}: sysclient link down ({why}); retrying in {:.1} s",
            self.mac,
            delay.as_secs_f64()
        );
        self.tell(LinkEvent::Down(why));
        self.connecting = true;
        ctx.run_later(delay, |act, ctx| {
            act.connecting = false;
            act.connect(ctx);
        });
    }

    fn reject(&mut self, ctx: &mut Context<Self>, why: String) {
        log::warn!("phone {}: Devices rejected the phone: {why}", self.mac);
        self.writer = None;
        self.tell(LinkEvent::Rejected(why));
        ctx.stop();
    }

    fn accepted_now(&mut self) {
        if !self.accepted {
            self.accepted = true;
            self.backoff = Self::fresh_backoff(&self.shared);
        }
    }

    fn on_frame(&mut self, ctx: &mut Context<Self>, bytes: &[u8]) {
        let frame = match SysclientFrame::decode(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                log::warn!("phone {}: ignoring a frame from Devices: {e}", self.mac);
                return;
            }
        };
        match frame {
            SysclientFrame::Admin { kind, body } => self.on_admin(ctx, kind, body),
            SysclientFrame::Tunnel { session, event, .. } => {
                if let Some(answer) = sysclient::tunnel_answer(session, event) {
                    self.send(ctx, answer);
                }
            }
        }
    }

    fn on_admin(
        &mut self,
        ctx: &mut Context<Self>,
        kind: u16,
        body: serde_json::Map<String, serde_json::Value>,
    ) {
        let text = |key: &str| {
            body.get(key)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        match kind {
            admin::SYSCLIENT_PASSWORD => {
                let password = text("password");
                if password.is_empty() {
                    log::warn!(
                        "phone {}: Devices sent an empty sysclient password; ignored",
                        self.mac
                    );
                    return;
                }
                log::info!("phone {}: sysclient password received", self.mac);
                self.accepted_now();
                self.password = Some(Secret::new(password.clone()));
                self.code = None;
                self.tell(LinkEvent::SysclientPassword(Secret::new(password)));
            }
            admin::CHALLENGE => {
                let challenge = text("challenge");
                let Some(password) = &self.password else {
                    return self.reject(
                        ctx,
                        "Devices sent a challenge but no sysclient password is stored".into(),
                    );
                };
                let id = self.mac.to_string();
                let digest = sysclient::challenge_digest(
                    &id,
                    sysclient::PRODUCT,
                    sysclient::VERSION,
                    &challenge,
                    password.expose(),
                );
                self.send(ctx, sysclient::identify(&id, None, Some(&digest)));
            }
            admin::ADMIN_PASSWORD => {
                let Some(password) = &self.password else {
                    log::warn!(
                        "phone {}: admin password without a sysclient password to decrypt it",
                        self.mac
                    );
                    return;
                };
                match sysclient::decrypt_secret(&text("seed"), password.expose(), &text("pwd")) {
                    Ok(admin) => self.tell(LinkEvent::AdminPassword(Secret::new(admin))),
                    Err(e) => log::warn!("phone {}: admin password does not decrypt: {e}", self.mac),
                }
            }
            admin::PROVISION_RESULT => {
                log::info!("phone {}: provision result {:?}", self.mac, text("error"));
            }
            admin::CONFIGURATION => self.on_configuration(&body),
            other => log::info!("phone {}: ignoring admin message 0x{other:04x}", self.mac),
        }
    }

    fn on_configuration(&mut self, body: &serde_json::Map<String, serde_json::Value>) {
        let message = match devices::parse_configuration(body) {
            Ok(message) => message,
            Err(e) => {
                log::warn!("phone {}: ignoring configuration message: {e}", self.mac);
                return;
            }
        };
        self.accepted_now();
        let item = message.config.map(|config| {
            let (item, warnings) =
                ConfigItem::from_received(&self.mac, config, self.password.as_ref(), &self.shared.sealer);
            for warning in warnings {
                log::warn!("phone {}: {warning}", self.mac);
            }
            item
        });
        if self.complete {
            if let Some(item) = item {
                self.tell(LinkEvent::ConfigUpdate(item));
            }
            return;
        }
        if self.collecting.len() >= MAX_CONFIG_ITEMS {
            log::warn!(
                "phone {}: more than {MAX_CONFIG_ITEMS} configuration items; ignoring the rest",
                self.mac
            );
        } else {
            self.collecting.extend(item);
        }
        if message.last {
            self.complete = true;
            self.code = None;
            let items = devices::normalise(std::mem::take(&mut self.collecting));
            self.tell(LinkEvent::ConfigComplete(items));
        }
    }
}

impl Actor for DevicesLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.connect(ctx);
        // The job owns this link; if the job is gone (even by a panic), so is the link's purpose.
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            if !act.job.upgrade().is_some_and(|job| job.connected()) {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // Dropping the queue makes the connection task close the websocket.
        self.writer = None;
        log::debug!("phone {}: sysclient link stopped", self.mac);
    }
}

/// A binary message from Devices on connection `conn`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromDevices {
    /// Which connection it came on.
    pub conn: u64,
    /// The frame.
    pub bytes: Vec<u8>,
}

impl Handler<FromDevices> for DevicesLink {
    type Result = ();

    fn handle(&mut self, msg: FromDevices, ctx: &mut Context<Self>) {
        if msg.conn == self.conn {
            self.on_frame(ctx, &msg.bytes);
        }
    }
}

/// Connection `conn` ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnected {
    /// Which connection.
    pub conn: u64,
    /// Why.
    pub reason: String,
}

impl Handler<Disconnected> for DevicesLink {
    type Result = ();

    fn handle(&mut self, msg: Disconnected, ctx: &mut Context<Self>) {
        if msg.conn != self.conn {
            return;
        }
        self.writer = None;
        if self.code_sent && !self.accepted {
            // Closed after an identify with a code, before anything else: the code was refused.
            let why = format!("Devices refused the provisioning code ({})", msg.reason);
            self.code = None;
            if self.password.is_none() {
                return self.reject(ctx, why);
            }
            // A phone Devices already knows keeps its link, identifying by its password.
            log::warn!(
                "phone {}: {why}; reconnecting with the stored sysclient password",
                self.mac
            );
            self.tell(LinkEvent::CodeRefused(why));
        }
        self.retry(ctx, msg.reason);
    }
}

/// Devices' sysclient URL changed (or became known).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetDevicesUrl(pub Option<String>);

impl Handler<SetDevicesUrl> for DevicesLink {
    type Result = ();

    fn handle(&mut self, msg: SetDevicesUrl, ctx: &mut Context<Self>) {
        // No URL is no reason to leave a working Devices.
        if msg.0.is_none() || msg.0 == self.url {
            return;
        }
        self.url = msg.0;
        if self.writer.is_some() {
            self.drop_connection(ctx, "Devices URL changed".into());
        } else {
            self.connect(ctx);
        }
    }
}

/// Closes the link now (its job is retiring).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseLink;

impl Handler<CloseLink> for DevicesLink {
    type Result = ();

    fn handle(&mut self, _msg: CloseLink, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Owns one websocket: forwards Devices' binary frames to the link, writes the link's frames,
/// and ends (closing the socket) when either side is done.
async fn run_connection(
    mut ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    link: Addr<DevicesLink>,
    conn: u64,
) {
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
                if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                    break format!("ping failed: {e}");
                }
            }
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Binary(bytes))) => {
                    last_heard = tokio::time::Instant::now();
                    link.do_send(FromDevices { conn, bytes: bytes.to_vec() });
                }
                Some(Ok(Message::Close(frame))) => break format!("closed by Devices ({frame:?})"),
                Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
                Some(Err(e)) => break format!("websocket error: {e}"),
                None => break "connection ended".to_string(),
            },
            out = outgoing.recv() => match out {
                Some(bytes) => {
                    if let Err(e) = ws.send(Message::binary(bytes)).await {
                        break format!("write failed: {e}");
                    }
                }
                None => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                    return;
                }
            },
        }
    };
    link.do_send(Disconnected { conn, reason });
}
