//! One `AppSession` actor per AppWebsocket connection: the PBX's App object, the Users
//! (Profile) service, or a browser. It runs the login state machine of appwebsocket.md §3,
//! publishes the provisioning API, follows the PBX's Services, and takes ProvisioningPhone.
//!
//! What it takes: websocket frames (as a stream), and the results of its own persistence
//! requests. Every write to the peer goes through one bounded queue to the connection's writer
//! task, so frames leave in the order they were made (`ctx.wait` would not do: actix polls its
//! wait queue newest first).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Item, ProtocolError};
use bytes::Bytes;
use innoprov::appws::login_session::{Login, LoginPolicy, LoginSession, LoginVerdict};
use innoprov::appws::message::{self, Outbound};
use innoprov::appws::received::{AppCheckLogin, PbxInfo, ServicesInfo};
use innoprov::appws::role::PbxVerdict;
use innoprov::appws::{AppLogin, AppMessage, Inbound, LoginRole, ProvisioningPhone, crypto};
use innoprov::outcome::ProvisionFailure;
use innoprov::phone::{PhoneRecord, ProvisionRequest};
use innoprov::seal::{Sealer, Secret};
use tokio::sync::{mpsc, watch};

use crate::edge::admin_core::AdminRequest;
use crate::edge::login_guard::{LoginGuard, PendingSlot};
use crate::edge::ws_reader::{LimitedMessages, LoggedIn};
use crate::phones::directory::{DevicesUrlLearned, PbxSessionClosed, ServiceDirectory};
use crate::phones::registry::{PhoneRegistry, Provision};
use innoprov::pbx_users::replication::{ReplicationAction, UserReplication};

/// Largest payload of one outbound frame: the SDK's websocket client refuses bigger frames.
pub const MAX_OUTBOUND_FRAME: usize = 16 * 1024;

/// Frames that may wait for a slow peer before the connection is given up: room for the
/// answers of every ProvisioningPhone a connection may have in progress (they can all come at
/// once, at a common timeout), and some more.
const OUTBOUND_QUEUE: usize = MAX_PROVISIONINGS_PER_SESSION + 64;

/// `src` this service puts on its own SubscribeServices.
const SERVICES_SRC: &str = "innoprov-services";

/// One frame for the writer task.
#[derive(Debug)]
enum Outgoing {
    /// A whole AppWebsocket message.
    Text(String),
    /// A websocket ping (heartbeat).
    Ping,
    /// The answer to the peer's ping.
    Pong(Bytes),
    /// The close frame; the writer ends after it.
    Close(CloseReason),
}

/// The single writer of one connection: sends queued frames in order, splitting messages into
/// frames of at most [`MAX_OUTBOUND_FRAME`] bytes, and ends after a close or when the session
/// actor is gone.
async fn write_frames(mut ws: actix_ws::Session, mut queue: mpsc::Receiver<Outgoing>) {
    while let Some(item) = queue.recv().await {
        let sent = match item {
            Outgoing::Text(text) => write_text(&mut ws, text).await,
            Outgoing::Ping => ws.ping(b"").await,
            Outgoing::Pong(payload) => ws.pong(&payload).await,
            Outgoing::Close(reason) => {
                let _ = ws.close(Some(reason)).await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
    let _ = ws.close(None).await;
}

async fn write_text(ws: &mut actix_ws::Session, text: String) -> Result<(), actix_ws::Closed> {
    if text.len() <= MAX_OUTBOUND_FRAME {
        return ws.text(text).await;
    }
    let bytes = Bytes::from(text);
    let mut chunks = bytes.chunks(MAX_OUTBOUND_FRAME).peekable();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let chunk = bytes.slice_ref(chunk);
        let item = match (first, chunks.peek().is_none()) {
            (true, _) => Item::FirstText(chunk),
            (false, false) => Item::Continue(chunk),
            (false, true) => Item::Last(chunk),
        };
        first = false;
        ws.continuation(item).await?;
    }
    Ok(())
}

/// What every session shares: settings and the actors it talks to.
pub struct SessionShared {
    /// ProvisioningPhone messages taken and not yet answered, service-wide: each holds a job
    /// and a Devices connection attempt, so past [`MAX_PROVISIONINGS_IN_FLIGHT`] a new one is
    /// answered "busy" instead of growing memory.
    pub provisionings_in_flight: Arc<AtomicUsize>,
    /// The App object's password.
    pub password: Secret,
    /// The instance domain sent in AppLoginResult.
    pub domain: String,
    /// Title published for com.innovaphone.provisioning.
    pub title: String,
    /// Who the PBX is: `app.object`, or the name pinned at its first PbxInfo.
    pub pbx: Arc<crate::edge::pbx_pin::PbxPin>,
    /// `app.provisioners`: who may send ProvisioningPhone, when configured.
    pub provisioners: Option<Vec<String>>,
    /// Seconds between pings.
    pub ping_interval: Duration,
    /// Silence after which the peer is dropped.
    pub idle_timeout: Duration,
    /// How long a connection may stay without logging in.
    pub login_timeout: Duration,
    /// Seals the user password before it is stored.
    pub sealer: Sealer,
    /// Starts and keeps the phones' jobs.
    pub registry: Addr<PhoneRegistry>,
    /// Where Devices is.
    pub directory: Addr<ServiceDirectory>,
    /// Turns true when the service shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Caps connections not yet logged in and throttles failed logins per address.
    pub guard: Arc<LoginGuard>,
    /// The admin operations, for logins made for the admin App object.
    pub admin: Arc<crate::edge::admin_core::AdminCore>,
    /// `admin.app`: the App object whose logins may administer.
    pub admin_app: Option<String>,
    /// `admin.token`: a login whose digest is made with it administers (the standalone admin
    /// page), and nothing else.
    pub admin_token: Option<Secret>,
    /// Announcements of phone state changes (pushed to subscribed admin sessions).
    pub changes: tokio::sync::broadcast::Sender<innoprov::Mac>,
}

/// The actor for one websocket connection.
pub struct AppSession {
    /// Settings and addresses shared by all sessions.
    shared: Arc<SessionShared>,
    /// The queue to this connection's writer task, which owns the websocket's write half.
    writer: mpsc::Sender<Outgoing>,
    /// Connection number, for logs and the directory.
    id: u64,
    /// The peer's address, for logs (formatted only when a line is written).
    peer: PeerAddr,
    /// Login state: the decisions of appwebsocket.md §3 (challenge, digest, role, checks).
    login: LoginSession,
    /// Whether this connection's PbxInfo offered the Services API (it is a PBX connection).
    pbx: bool,
    /// When the peer was last heard from (any frame).
    last_heard: Instant,
    /// Set once a close has been started: later input is ignored.
    closing: bool,
    /// ProvisioningPhone messages of this connection not yet answered.
    provisionings: usize,
    /// The peer's address, for per-address limits.
    ip: std::net::IpAddr,
    /// This connection's place among those not logged in; given back at login.
    pending: Option<PendingSlot>,
    /// Whether this admin session receives phone state changes.
    subscribed: bool,
    /// This connection is the PBX's (its PbxInfo was taken): it subscribes and replicates once.
    acting_as_pbx: bool,
    /// The replication of the PBX's user table on this connection, when it offers it.
    replication: Option<UserReplication>,
    /// Wait before asking again after the PBX refused a replication.
    replication_retry: Duration,
    /// Tells the reader the pre-login limits are over.
    logged_in: LoggedIn,
}

/// Numbers connections for logs.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Whether the App object without TableUsers was logged (once per process).
static NO_TABLE_USERS_LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// First wait before asking again after the PBX refused a replication (doubling to 5 min).
const REPLICATION_RETRY: Duration = Duration::from_secs(5);

/// What a PBX's PbxInfo offers that this service uses.
#[derive(Debug, Clone, Copy)]
struct PbxApis {
    /// `Services`: where Devices is.
    services: bool,
    /// `PbxTableUsers` (the App object's TableUsers): the user table.
    users: bool,
}

impl PbxApis {
    fn of(info: &PbxInfo) -> PbxApis {
        let has = |name: &str| info.apis.iter().any(|api| api == name);
        PbxApis {
            services: has("Services"),
            users: has(innoprov::pbx_users::replication::API),
        }
    }
}

/// A peer's address as logs show it: "unknown" when the socket had none.
#[derive(Debug, Clone, Copy)]
struct PeerAddr(Option<SocketAddr>);

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

impl AppSession {
    /// Starts the actor for an upgraded connection, reading `stream` on this thread.
    pub fn start(
        shared: Arc<SessionShared>,
        ws: actix_ws::Session,
        stream: LimitedMessages,
        peer: Option<SocketAddr>,
        slot: PendingSlot,
        logged_in: LoggedIn,
    ) -> Addr<AppSession> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let ip = peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.ip());
        let peer = PeerAddr(peer);
        let (writer, queue) = mpsc::channel(OUTBOUND_QUEUE);
        actix_web::rt::spawn(write_frames(ws, queue));
        AppSession::create(move |ctx| {
            ctx.add_stream(stream);
            AppSession {
                shared,
                writer,
                id,
                peer,
                login: LoginSession::default(),
                pbx: false,
                last_heard: Instant::now(),
                closing: false,
                provisionings: 0,
                ip,
                pending: Some(slot),
                subscribed: false,
                acting_as_pbx: false,
                replication: None,
                replication_retry: REPLICATION_RETRY,
                logged_in,
            }
        })
    }

    /// Queues one message to the peer (the writer sends it in fragments of at most 16 KiB).
    fn send(&mut self, ctx: &mut Context<Self>, out: Outbound) {
        self.enqueue(ctx, Outgoing::Text(out.to_text()));
    }

    fn enqueue(&mut self, ctx: &mut Context<Self>, item: Outgoing) {
        if self.closing {
            return;
        }
        if let Err(e) = self.writer.try_send(item) {
            // A full queue means the peer has stopped reading; a closed one that it is gone.
            log::warn!(
                "session {} ({}): dropping the connection: outbound queue {e}",
                self.id,
                self.peer
            );
            self.closing = true;
            ctx.stop();
        }
    }

    /// Closes the connection with `code` and stops the actor; the writer sends the close frame
    /// after everything queued before it.
    fn close(&mut self, ctx: &mut Context<Self>, code: CloseCode, why: &str) {
        if self.closing {
            return;
        }
        log::info!("session {} ({}): closing: {why}", self.id, self.peer);
        let reason = CloseReason {
            code,
            description: Some(why.to_string()),
        };
        self.enqueue(ctx, Outgoing::Close(reason));
        self.closing = true;
        ctx.stop();
    }

    fn on_text(&mut self, ctx: &mut Context<Self>, text: &str) {
        let msg = match Inbound::parse(text) {
            Ok(msg) => msg,
            Err(e) => {
                if self.login.logged_in().is_none() {
                    return self.close(ctx, CloseCode::Policy, &format!("message before login is {e}"));
                }
                log::warn!(
                    "session {} ({}): ignoring a message that is {e}",
                    self.id,
                    self.peer
                );
                return;
            }
        };
        if self.login.admits(&msg.mt) {
            self.dispatch(ctx, msg)
        } else {
            let why = format!("{} before login", msg.mt);
            self.close(ctx, CloseCode::Policy, &why)
        }
    }

    fn dispatch(&mut self, ctx: &mut Context<Self>, msg: Inbound) {
        if msg.api.as_deref() == Some(innoprov::pbx_users::replication::API) {
            return self.on_user_table(ctx, &msg);
        }
        match AppMessage::decode(&msg) {
            AppMessage::KeepAlive | AppMessage::SubscribeServicesResult => {}
            AppMessage::AppChallenge => self.on_challenge(ctx),
            AppMessage::AppLogin(login) => self.on_login(ctx, login),
            AppMessage::AppCheckLogin(check) => self.on_check_login(ctx, &msg, check),
            AppMessage::CheckBuild | AppMessage::Test => self.send(ctx, Outbound::reply_to(&msg)),
            AppMessage::AppInfo => {
                let title = self.shared.title.clone();
                self.send(ctx, message::app_info_result(&msg, &title))
            }
            AppMessage::PbxInfo(info) => self.on_pbx_info(ctx, &info),
            AppMessage::ProvisioningPhone(phone) => self.on_provisioning_phone(ctx, msg.src, &phone),
            AppMessage::Admin => self.on_admin(ctx, &msg),
            AppMessage::ServicesInfo(info) => self.on_services_info(msg.src.as_deref(), info),
            AppMessage::Unknown => log::info!(
                "session {} ({}): ignoring {}{}",
                self.id,
                self.peer,
                msg.api.map(|a| format!("{a}/")).unwrap_or_default(),
                msg.mt
            ),
        }
    }

    fn on_challenge(&mut self, ctx: &mut Context<Self>) {
        match crypto::new_challenge() {
            Ok(challenge) => {
                // A new challenge also forgets any previous identity (§3.1).
                self.login.challenge_issued(challenge.clone());
                self.send(ctx, message::challenge_result(&challenge));
            }
            Err(e) => self.close(
                ctx,
                CloseCode::Error,
                &format!("no randomness for a challenge: {e}"),
            ),
        }
    }

    fn on_login(&mut self, ctx: &mut Context<Self>, login: AppLogin) {
        let shared = Arc::clone(&self.shared);
        let own_object = shared.pbx.own_object();
        let policy = LoginPolicy {
            password: &shared.password,
            operator_token: shared.admin_token.as_ref(),
            own_object: own_object.as_deref(),
            admin_app: shared.admin_app.as_deref(),
        };
        let verdict = self.login.login(&login, &policy);
        if let LoginVerdict::NoChallenge { app } = &verdict {
            self.send(ctx, message::login_result(app, "", false));
            return self.close(
                ctx,
                CloseCode::Policy,
                "AppLogin without an outstanding challenge",
            );
        }
        if matches!(verdict, LoginVerdict::WrongDigest { .. }) {
            shared.guard.failed(self.ip);
        }
        // From an address that keeps failing, every answer waits (right or wrong, so the wait
        // tells nothing); nothing else is taken meanwhile: the challenge is used up.
        let delay = shared.guard.delay(self.ip);
        let finish = move |act: &mut Self, ctx: &mut Context<Self>| match verdict {
            LoginVerdict::Accepted(login) => act.logged_in(ctx, login),
            LoginVerdict::WrongDigest { app, who } => {
                act.send(ctx, message::login_result(&app, "", false));
                let why = format!("login of {who:?} to {app:?}: wrong digest");
                act.close(ctx, CloseCode::Policy, &why)
            }
            LoginVerdict::NoChallenge { .. } => {}
        };
        if delay.is_zero() {
            finish(self, ctx);
        } else {
            ctx.run_later(delay, finish);
        }
    }

    /// An accepted login takes effect: the pre-login limits are over for this connection.
    fn logged_in(&mut self, ctx: &mut Context<Self>, login: Login) {
        log::info!(
            "session {} ({}): {:?} logged in to {:?} (domain {:?}) as {:?}",
            self.id,
            self.peer,
            login.who,
            login.app,
            login.domain,
            login.role
        );
        self.pending = None;
        self.logged_in.set();
        self.shared.guard.logged_in(self.ip);
        let own_domain = self.shared.domain.clone();
        let app = login.app.clone();
        self.login.finish(login);
        self.send(ctx, message::login_result(&app, &own_domain, true));
    }

    fn on_check_login(&mut self, ctx: &mut Context<Self>, msg: &Inbound, check: AppCheckLogin) {
        let verdict = self.login.check_login(&check, &self.shared.password);
        let mut out = Outbound::reply_to(msg);
        if verdict.ok {
            out = out.with("ok", true);
        } else {
            // AppCheckLogin must not become a free password-guessing oracle: failures count per
            // connection (the verdict) and per address.
            self.shared.guard.failed(self.ip);
        }
        let delay = self.shared.guard.delay(self.ip);
        let answer = move |act: &mut Self, ctx: &mut Context<Self>| {
            act.send(ctx, out);
            if verdict.close {
                act.close(ctx, CloseCode::Policy, "too many failed AppCheckLogin checks");
            }
        };
        if delay.is_zero() {
            answer(self, ctx);
        } else {
            ctx.run_later(delay, answer);
        }
    }

    fn on_pbx_info(&mut self, ctx: &mut Context<Self>, info: &PbxInfo) {
        let Some(Login { role, who, .. }) = self.login.logged_in() else {
            return;
        };
        // Only the PBX's own App object connection tells the service about the PBX: a myApps
        // user or another App Service could otherwise make it subscribe on their connection
        // and name a Devices of their own.
        if !role.may_act_as_pbx() {
            log::warn!(
                "session {} ({}): ignoring PbxInfo from {who:?}, which did not log in as the PBX's App object",
                self.id,
                self.peer
            );
            return;
        }
        log::info!(
            "session {} ({}): PbxInfo from PBX {:?} of {:?}, APIs {:?}",
            self.id,
            self.peer,
            info.pbx,
            info.domain,
            info.apis
        );
        let apis = PbxApis::of(info);
        if !(apis.services || apis.users) || self.acting_as_pbx {
            return;
        }
        // A password login holds the App object's password itself: it is not pinned. An App
        // object login is the PBX only under the configured or pinned name.
        if *role == LoginRole::Password {
            return self.act_as_pbx(ctx, apis);
        }
        match self.shared.pbx.verdict(who) {
            PbxVerdict::Known => self.act_as_pbx(ctx, apis),
            PbxVerdict::Refused { pbx } => self.refuse_as_pbx(who, &pbx),
            PbxVerdict::PinNow => {
                // The pin is durable before anything is subscribed on it; the store call
                // runs off the worker, and nothing else of this session waits meanwhile.
                let (pin, sip) = (Arc::clone(&self.shared.pbx), who.clone());
                let pinning = actix_web::rt::task::spawn_blocking(move || pin.pin(&sip));
                ctx.wait(pinning.into_actor(self).map(move |outcome, act, ctx| {
                    let Some(Login { who, .. }) = act.login.logged_in() else {
                        return;
                    };
                    let who = who.clone();
                    match outcome {
                        Ok(Ok(PbxVerdict::Known)) => act.act_as_pbx(ctx, apis),
                        Ok(Ok(PbxVerdict::Refused { pbx })) => act.refuse_as_pbx(&who, &pbx),
                        Ok(Ok(PbxVerdict::PinNow)) => {}
                        Ok(Err(e)) => log::error!(
                            "session {} ({}): cannot pin {who:?} as the PBX: {e}",
                            act.id,
                            act.peer
                        ),
                        Err(e) => log::error!(
                            "session {} ({}): pinning {who:?} as the PBX ended: {e}",
                            act.id,
                            act.peer
                        ),
                    }
                }));
            }
        }
    }

    /// This connection is the PBX's: subscribe to its Services and replicate its users, as far
    /// as its PbxInfo offers them.
    fn act_as_pbx(&mut self, ctx: &mut Context<Self>, apis: PbxApis) {
        if self.acting_as_pbx {
            return;
        }
        self.acting_as_pbx = true;
        if apis.services {
            self.pbx = true;
            self.send(ctx, message::subscribe_services(SERVICES_SRC));
        }
        if apis.users {
            let table = (*self.shared.admin.users.table()).clone();
            self.replication = Some(UserReplication::new(table));
            self.start_replication(ctx);
        } else {
            let problem = "the PBX's App object does not offer PbxTableUsers (tick TableUsers in its \
                           App object): phones get no directory and no key profile by config template";
            if !NO_TABLE_USERS_LOGGED.swap(true, Ordering::Relaxed) {
                log::warn!("{problem}");
            }
            self.shared
                .admin
                .users
                .set_replication(false, Some(problem.into()));
        }
    }

    fn start_replication(&mut self, ctx: &mut Context<Self>) {
        if let Some(replication) = self.replication.as_mut() {
            let start = replication.start();
            self.shared.admin.users.set_replication(true, None);
            log::info!("session {} ({}): replicating the PBX's users", self.id, self.peer);
            self.send(ctx, start);
        }
    }

    /// A PbxTableUsers message: only the PBX's own connection that asked for the table feeds
    /// it; anyone else's is ignored.
    fn on_user_table(&mut self, ctx: &mut Context<Self>, msg: &Inbound) {
        let Some(replication) = self.replication.as_mut() else {
            log::debug!(
                "session {} ({}): ignoring {} of PbxTableUsers",
                self.id,
                self.peer,
                msg.mt
            );
            return;
        };
        let actions = replication.on_message(msg);
        for action in actions {
            match action {
                ReplicationAction::Send(out) => self.send(ctx, out),
                ReplicationAction::Changed => self.publish_users(),
                ReplicationAction::Problem(problem) => {
                    log::warn!("session {} ({}): user table: {problem}", self.id, self.peer);
                    self.shared.admin.users.set_replication(true, Some(problem));
                }
                ReplicationAction::RetryLater => {
                    let delay = self.replication_retry;
                    self.replication_retry = (delay * 2).min(Duration::from_secs(300));
                    ctx.run_later(delay, Self::start_replication);
                }
            }
        }
    }

    /// The replicated table reaches the downloads at once and the store off the workers.
    fn publish_users(&mut self) {
        let Some(replication) = &self.replication else {
            return;
        };
        self.replication_retry = REPLICATION_RETRY;
        let users = Arc::clone(&self.shared.admin.users);
        users.publish(replication.table().clone());
        if replication.live() {
            crate::ops::metrics::metrics().user_table_changes.inc();
        }
        actix_web::rt::task::spawn_blocking(move || {
            if let Err(e) = users.save() {
                log::error!("the PBX's user table is not stored: {e}");
            }
        });
    }

    fn refuse_as_pbx(&self, who: &str, pbx: &str) {
        crate::ops::metrics::metrics().pbx_refused.inc();
        log::warn!(
            "session {} ({}): ignoring PbxInfo from {who:?}: the PBX is {pbx:?} (app.object or the pin; an administrator can reset the pin)",
            self.id,
            self.peer
        );
    }

    fn on_services_info(&mut self, src: Option<&str>, info: ServicesInfo) {
        // Only the PBX connection this service subscribed on may say where Devices is: any
        // other logged-in peer (a browser, the Users service) could otherwise redirect every
        // phone's link, and with it the provisioning codes, to a host of its choosing.
        if !self.pbx || src.is_some_and(|src| src != SERVICES_SRC) {
            log::warn!(
                "session {} ({}): ignoring ServicesInfo on a connection that did not subscribe",
                self.id,
                self.peer
            );
            return;
        }
        let url = info
            .services
            .as_ref()
            .and_then(innoprov::services::devices_sysclient_url);
        self.shared.directory.do_send(DevicesUrlLearned {
            session: self.id,
            url,
        });
    }

    fn on_provisioning_phone(
        &mut self,
        ctx: &mut Context<Self>,
        src: Option<String>,
        msg: &ProvisioningPhone,
    ) {
        let started = Instant::now();
        let record = match self.provisioning_record(msg) {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(failure) => {
                crate::ops::metrics::provisioning("failed");
                return self.send(ctx, message::provisioning_result(src.as_deref(), Err(failure)));
            }
        };
        let mac = record.mac;
        // Bounded before anything is queued: per connection, and service-wide.
        if self.provisionings >= MAX_PROVISIONINGS_PER_SESSION {
            return self.busy(ctx, src, mac, "too many phones in progress on this connection");
        }
        let Some(slot) = InFlight::reserve(&self.shared.provisionings_in_flight) else {
            return self.busy(ctx, src, mac, "too many phones in progress");
        };
        let (reply, outcome) = tokio::sync::oneshot::channel();
        if let Err(e) = self.shared.registry.try_send(Provision { record, reply }) {
            let why = match e {
                SendError::Full(_) => "the phone registry's queue is full",
                SendError::Closed(_) => "the phone registry is gone",
            };
            return self.busy(ctx, src, mac, why);
        }
        self.provisionings += 1;
        ctx.spawn(outcome.into_actor(self).map(move |result, act, ctx| {
            drop(slot);
            act.provisionings -= 1;
            let outcome = provisioning_outcome(mac, started, result);
            act.send(ctx, message::provisioning_result(src.as_deref(), outcome));
        }));
    }

    /// The record a ProvisioningPhone asks to store, with its password sealed; `None` before
    /// login, a failure for the PBX when the login may not provision or the message is invalid.
    fn provisioning_record(&self, msg: &ProvisioningPhone) -> Result<Option<PhoneRecord>, ProvisionFailure> {
        let Some(Login {
            key, app, who, role, ..
        }) = self.login.logged_in()
        else {
            return Ok(None);
        };
        let (id, peer) = (self.id, &self.peer);
        if !role.may_provision(who, self.shared.provisioners.as_deref()) {
            log::warn!(
                "session {id} ({peer}): ProvisioningPhone from {who:?} ({role:?}) refused: not a provisioning service"
            );
            return Err(ProvisionFailure::NotAllowed);
        }
        let request = ProvisionRequest::from_message(msg, key.expose()).map_err(|e| {
            log::warn!("session {id} ({peer}): ProvisioningPhone from {who:?} rejected: {e}");
            ProvisionFailure::Invalid(e.to_string())
        })?;
        let mac = request.mac;
        log::info!(
            "phone {mac}: ProvisioningPhone for user {:?} via {app:?} (session {id})",
            request.username
        );
        let now = innoprov::clock::now_unix();
        let record = PhoneRecord::from_request(&request, &self.shared.sealer, now).map_err(|e| {
            log::error!("phone {mac}: sealing the password failed: {e}");
            ProvisionFailure::Internal("internal error: the password could not be sealed".into())
        })?;
        Ok(Some(record))
    }

    /// Answers a ProvisioningPhone "busy" (`what` is full) without queueing anything.
    fn busy(&mut self, ctx: &mut Context<Self>, src: Option<String>, mac: innoprov::Mac, what: &'static str) {
        let failure = ProvisionFailure::Busy(what);
        crate::ops::metrics::provisioning(failure.metric());
        // A flood must not become a flood of log lines: one line per 10 s says how many.
        log::debug!("phone {mac}: ProvisioningPhone refused: {what}");
        if let Some(refused) = BUSY_LOG.note() {
            log::warn!(
                "ProvisioningPhone refused as busy {refused} times in the last 10 s (latest: phone {mac}: {what})"
            );
        }
        self.send(ctx, message::provisioning_result(src.as_deref(), Err(failure)));
    }

    /// The admin door (interface.md "Operating"): the same operations as the REST API, for
    /// logins made for `admin.app`; everyone else gets "not allowed".
    fn on_admin(&mut self, ctx: &mut Context<Self>, msg: &Inbound) {
        let (mt, src) = (msg.mt.clone(), msg.src.clone());
        let Some(Login { admin: true, who, .. }) = self.login.logged_in() else {
            log::warn!(
                "session {} ({}): {mt} refused: not an admin login",
                self.id,
                self.peer
            );
            let out = admin_reply(&mt, src.as_deref(), Err("not allowed".into()));
            return self.send(ctx, out);
        };
        log::info!("session {} ({}): {mt} by {who:?}", self.id, self.peer);
        let request = match AdminRequest::parse(msg) {
            Ok(request) => request,
            Err(e) => return self.send(ctx, admin_reply(&mt, src.as_deref(), Err(e))),
        };
        if request == AdminRequest::Subscribe {
            self.subscribe_changes(ctx);
        }
        let core = Arc::clone(&self.shared.admin);
        let work = async move { core.answer(request).await.map_err(|f| f.reason) };
        ctx.spawn(work.into_actor(self).map(move |out, act, ctx| {
            act.send(ctx, admin_reply(&mt, src.as_deref(), out));
        }));
    }

    /// Pushes `AdminPhoneChanged` with the phone's summary whenever a phone's state changes.
    fn subscribe_changes(&mut self, ctx: &mut Context<Self>) {
        if self.subscribed {
            return;
        }
        self.subscribed = true;
        let mut changes = self.shared.changes.subscribe();
        let addr = ctx.address();
        actix_web::rt::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(mac) => {
                        if addr.try_send(PhoneChanged(mac)).is_err() && !addr.connected() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.last_heard.elapsed() > self.shared.idle_timeout {
            return self.close(ctx, CloseCode::Away, "peer silent for too long");
        }
        self.enqueue(ctx, Outgoing::Ping);
    }
}

impl Actor for AppSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        log::debug!("session {} ({}): connected", self.id, self.peer);
        // A connection that does not log in soon is not a PBX, Users or browser session.
        ctx.run_later(self.shared.login_timeout, |act, ctx| {
            if act.login.logged_in().is_none() {
                act.close(ctx, CloseCode::Policy, "no login within the deadline");
            }
        });
        ctx.run_interval(self.shared.ping_interval, Self::heartbeat);
        // A newcomer from another address may take this connection's login slot (login_guard).
        if let Some(evicted) = self.pending.as_ref().map(PendingSlot::evicted) {
            ctx.spawn(evicted.into_actor(self).map(|(), act, ctx| {
                if act.login.logged_in().is_none() {
                    act.close(ctx, CloseCode::Again, "login slot given to another address");
                }
            }));
        }
        let mut shutdown = self.shared.shutdown.clone();
        let stopping = async move {
            // A dropped sender also means the service is going away.
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        ctx.spawn(
            stopping
                .into_actor(self)
                .map(|(), act, ctx| act.close(ctx, CloseCode::Away, "service shutting down")),
        );
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if self.pbx {
            self.shared.directory.do_send(PbxSessionClosed(self.id));
        }
        if self.replication.is_some() {
            // The table stays as replicated; the next PBX connection copies it afresh.
            self.shared.admin.users.set_replication(false, None);
        }
        log::debug!("session {} ({}): ended", self.id, self.peer);
    }
}

/// The `<mt>Result` of an admin message: the members of `out`, or its `error`.
fn admin_reply(mt: &str, src: Option<&str>, out: Result<serde_json::Value, String>) -> Outbound {
    let mut reply = Outbound::new(&format!("{mt}Result")).with_src(src);
    match out {
        Ok(serde_json::Value::Object(map)) => {
            for (k, v) in map {
                reply = reply.with(&k, v);
            }
        }
        Ok(_) => {}
        Err(e) => reply = reply.with("error", e),
    }
    reply
}

/// A phone's state changed (from the jobs' announcements), for a subscribed admin session.
#[derive(Message)]
#[rtype(result = "()")]
struct PhoneChanged(innoprov::Mac);

impl Handler<PhoneChanged> for AppSession {
    type Result = ();

    fn handle(&mut self, msg: PhoneChanged, ctx: &mut Context<Self>) {
        let core = Arc::clone(&self.shared.admin);
        let mac = msg.0;
        let work = async move { core.detail(&mac).await };
        ctx.spawn(work.into_actor(self).map(move |detail, act, ctx| {
            let out = Outbound::new("AdminPhoneChanged").with("mac", mac.to_string());
            let out = match detail.ok().and_then(|d| serde_json::to_value(&d).ok()) {
                Some(phone) => out.with("phone", phone),
                None => out.with("deleted", true),
            };
            act.send(ctx, out);
        }));
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for AppSession {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        if self.closing {
            return;
        }
        match item {
            Ok(AggregatedMessage::Text(text)) => self.on_text(ctx, &text),
            Ok(AggregatedMessage::Binary(_)) => {
                if self.login.logged_in().is_none() {
                    self.close(ctx, CloseCode::Unsupported, "binary frame before login");
                } else {
                    log::info!("session {} ({}): ignoring a binary frame", self.id, self.peer);
                }
            }
            Ok(AggregatedMessage::Ping(payload)) => self.enqueue(ctx, Outgoing::Pong(payload)),
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(reason)) => {
                log::debug!("session {} ({}): peer closed ({reason:?})", self.id, self.peer);
                self.close(ctx, CloseCode::Normal, "peer closed");
            }
            Err(e) => {
                let code = match e {
                    ProtocolError::Overflow => CloseCode::Size,
                    _ => CloseCode::Protocol,
                };
                self.close(ctx, code, &format!("websocket protocol error: {e}"));
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Most ProvisioningPhone messages in progress service-wide (see `provisionings_in_flight`).
pub const MAX_PROVISIONINGS_IN_FLIGHT: usize = 4096;
/// Most ProvisioningPhone messages in progress on one connection.
pub const MAX_PROVISIONINGS_PER_SESSION: usize = 512;

/// Counts "busy" refusals and lets one log line through per 10 s.
struct ThrottledCount {
    /// Refusals since the last line.
    count: AtomicU64,
    /// When the last line was written (seconds since the Unix epoch).
    last: AtomicU64,
}

/// The busy refusals of ProvisioningPhone.
static BUSY_LOG: ThrottledCount = ThrottledCount {
    count: AtomicU64::new(0),
    last: AtomicU64::new(0),
};

impl ThrottledCount {
    /// Counts one; `Some(n)` when a line is due, `n` the refusals it reports.
    fn note(&self) -> Option<u64> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let now = innoprov::clock::now_unix();
        let last = self.last.load(Ordering::Relaxed);
        if now < last + 10 {
            return None;
        }
        self.last
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        Some(self.count.swap(0, Ordering::AcqRel))
    }
}

/// One place among [`MAX_PROVISIONINGS_IN_FLIGHT`], given back when dropped (answered, or the
/// session gone).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn reserve(counter: &Arc<AtomicUsize>) -> Option<InFlight> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_PROVISIONINGS_IN_FLIGHT).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlight(Arc::clone(counter)))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer to the PBX for a phone whose job replied `result` (counted and logged).
fn provisioning_outcome(
    mac: innoprov::Mac,
    started: Instant,
    result: Result<Result<(), ProvisionFailure>, tokio::sync::oneshot::error::RecvError>,
) -> Result<(), ProvisionFailure> {
    match result {
        Ok(Ok(())) => {
            log::info!("phone {mac}: ProvisioningPhone ok");
            crate::ops::metrics::provisioning("ok");
            crate::ops::metrics::metrics()
                .time_to_ok
                .observe(started.elapsed().as_secs_f64());
            Ok(())
        }
        Ok(Err(e)) => {
            log::warn!("phone {mac}: ProvisioningPhone failed: {e}");
            crate::ops::metrics::provisioning(e.metric());
            Err(e)
        }
        Err(_) => {
            crate::ops::metrics::provisioning("failed");
            Err(ProvisionFailure::Internal(
                "the phone's provisioning job ended without an answer".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisioning_places_are_bounded_and_given_back() {
        let counter = Arc::new(AtomicUsize::new(0));
        let mut held: Vec<InFlight> = (0..MAX_PROVISIONINGS_IN_FLIGHT)
            .map(|_| InFlight::reserve(&counter).expect("a place"))
            .collect();
        assert!(InFlight::reserve(&counter).is_none(), "full");
        held.pop();
        assert!(
            InFlight::reserve(&counter).is_some(),
            "a place given back is taken again"
        );
        drop(held);
        assert_eq!(counter.load(Ordering::Acquire), 0);
    }
}
