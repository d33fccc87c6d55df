//! `PhoneJob`: one phone's provisioning job, started by the `PhoneRegistry`. It owns the
//! phone's record in memory and drives the phone's side of the Devices protocol, a
//! [`SysclientSession`] (sans-IO, in the core), over a websocket owned by a plain socket task
//! ([`devices_socket`](crate::phones::devices_socket)). It persists every change before acting on it,
//! and answers the pending ProvisioningPhone once the complete configuration is durable.
//!
//! Phases: stored → linking → configured → updating (and back), with "link down since".
//!
//! Supervision: the registry restarts a job that ends without being retired (a panic
//! included: actix runs `stopped` while the dead context is dropped, and `stopped` tells the
//! registry). The job restarts its socket task: a task that ends, by a panic too, reports
//! [`SocketClosed`](crate::phones::devices_socket::SocketClosed) and the session reconnects.
//!
//! Messages it takes: [`FromDevices`] and [`SocketClosed`] (from its socket task),
//! [`SetJobDevicesUrl`], [`Retire`], [`GetPhoneStatus`] (from the registry), [`InjectFault`]
//! and [`InjectSocketFault`] (tests only).

use std::sync::Arc;
use std::time::Duration;

use actix::WeakRecipient;
use actix::prelude::*;
use innoprov::clock::now_unix;
use innoprov::devices::{self, ConfigItem};
use innoprov::outcome::ProvisionFailure;
use innoprov::provisioning::AuditEntry;
use innoprov::seal::SealPurpose;
use innoprov::sysclient_session::{MAX_CONFIG_ITEMS, SessionAction, SessionEvent, SysclientSession};
use innoprov::{Mac, PhoneRecord, Sealer, Secret};
use tokio::sync::{mpsc, oneshot};

use crate::phones::devices_socket::{self, FromDevices, LinkShared, Outgoing, SocketClosed, SocketTask};
use crate::phones::notifier::PhoneConfigChanged;
use crate::phones::phone_state::Phase;
use crate::phones::phone_state::PhoneState;
use crate::store::audit_log::AuditLog;
use crate::store::persistence::{GetPhone, PersistError, Persistence, PutPhone, WriteMode};

/// A job ended (from its `stopped`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct JobEnded {
    /// The phone.
    pub mac: Mac,
    /// The job's generation.
    pub generation: u64,
    /// Whether it was retired on purpose (else it failed and is restarted).
    pub retired: bool,
}

/// A job went back to the stored record of an older generation (a failed re-provisioning).
#[derive(Message)]
#[rtype(result = "()")]
pub struct JobGenerationChanged {
    /// The phone.
    pub mac: Mac,
    /// The generation the job was started for.
    pub from: u64,
    /// The generation it now runs.
    pub to: u64,
}

/// Where a job reports its end and a change of generation: the registry that started it,
/// weakly (a job never keeps its registry alive) and as recipients (the job does not name its
/// supervisor's type).
pub struct JobReports {
    /// Told when the job ends.
    pub ended: WeakRecipient<JobEnded>,
    /// Told when the job falls back to an older generation.
    pub generation_changed: WeakRecipient<JobGenerationChanged>,
}

/// The answer to the ProvisioningPhone that started this job.
pub type ProvisionReply = oneshot::Sender<Result<(), ProvisionFailure>>;

/// How a job starts.
pub enum JobStart {
    /// A new ProvisioningPhone: store the record first, then link; answer when configured.
    Provision(ProvisionReply),
    /// A stored phone (service restart, job restart): link again, nothing to answer.
    Resume,
}

/// A ProvisioningPhone before its commit point (Devices accepted the code: the sysclient
/// password, or the complete configuration, arrived).
enum Staged {
    /// Nothing staged: the record is the stored one.
    Nothing,
    /// A phone not stored before: on failure the job ends and nothing is kept.
    New,
    /// Re-provisioning a stored phone: the record as stored, which stays in the store (and
    /// keeps serving the phone's file) until Devices accepts the new code; restored if it
    /// does not.
    Replacing(Box<PhoneRecord>),
}

/// What every job shares.
pub struct JobShared {
    /// The store's actor.
    pub persistence: Addr<Persistence>,
    /// Seals secrets before they are stored.
    pub sealer: Sealer,
    /// What the links share.
    pub link: Arc<LinkShared>,
    /// How long a ProvisioningPhone may wait for the complete configuration.
    pub provisioning_timeout: Duration,
    /// Told when a configured phone's configuration changes (NOTIFY); `None` when switched off.
    pub notifier: Option<Recipient<PhoneConfigChanged>>,
    /// Zero touch: told of each ProvisioningPhone answered ok, when a redirect service is
    /// configured.
    pub redirect: Option<Recipient<super::redirect::PhoneChanged>>,
    /// Where jobs announce that a phone's state changed (the admin door's live list); a
    /// receiver that lags loses announcements, never blocks a job.
    pub changes: tokio::sync::broadcast::Sender<innoprov::Mac>,
    /// Where each state change is written, for the admin's per-phone timeline.
    pub audit: Arc<AuditLog>,
    /// Several instances: the leases, whose fencing token each job writes with.
    pub leases: Option<Arc<dyn innoprov::store::Leases>>,
}

/// One phone's job.
pub struct PhoneJob {
    /// The phone's record as stored (every change is persisted before it counts).
    record: PhoneRecord,
    /// How this job started; taken in `started`.
    start: Option<JobStart>,
    /// Where the phone is.
    phase: Phase,
    /// Since when the link is down (Unix seconds); `None` while up or never started.
    link_down_since: Option<u64>,
    /// The phone's side of the Devices protocol; `None` while not linking.
    session: Option<SysclientSession>,
    /// Changes whenever the session is replaced or dropped, so that a late connection attempt
    /// or reconnect timer of the old one does nothing.
    session_epoch: u64,
    /// Number of the current connection (a socket task's late messages carry an older one).
    conn: u64,
    /// Queue to the current connection's socket task; `None` while disconnected.
    writer: Option<mpsc::Sender<Outgoing>>,
    /// The latest socket task, kept after its writer is dropped so that a retirement can wait
    /// until Devices has seen its link close.
    socket: Option<SocketTask>,
    /// Whether a connection attempt or a reconnect timer is under way.
    connecting: bool,
    /// The pending ProvisioningPhone answer.
    reply: Option<ProvisionReply>,
    /// Devices' sysclient URL as last told.
    devices_url: Option<String>,
    /// Settings and actors.
    shared: Arc<JobShared>,
    /// The registry, told when this job ends or changes generation.
    registry: JobReports,
    /// Set when the registry retired this job (so its end is not a failure).
    retired: bool,
    /// The change being stored should reach the phone (NOTIFY) once stored.
    notify_pending: bool,
    /// A ProvisioningPhone not yet accepted by Devices: nothing of it is stored before then,
    /// so a failed one leaves the store as it was.
    staged: Staged,
    /// Devices deployed an administrative password while a re-provisioning was staged.
    admin_password_staged: bool,
    /// The state last announced on `changes` (phase, link down, configuration version).
    announced: Option<(Phase, bool, u64)>,
    /// The phone's previous job, retired before this one starts: its link closes first.
    predecessor: Option<Addr<PhoneJob>>,
    /// The fencing token of the phone's lease when this job began (several instances): its
    /// writes count only while that token is current, so a job outlived by its lease (paused,
    /// or retiring with a write queued) never overwrites what the phone's next holder stored.
    fence: Option<i64>,
}

impl PhoneJob {
    /// A job for `record`.
    pub fn new(
        record: PhoneRecord,
        start: JobStart,
        devices_url: Option<String>,
        shared: Arc<JobShared>,
        registry: JobReports,
    ) -> PhoneJob {
        PhoneJob {
            record,
            start: Some(start),
            phase: Phase::Stored,
            link_down_since: None,
            session: None,
            session_epoch: 0,
            conn: 0,
            writer: None,
            socket: None,
            connecting: false,
            reply: None,
            devices_url,
            shared,
            registry,
            retired: false,
            notify_pending: false,
            staged: Staged::Nothing,
            admin_password_staged: false,
            announced: None,
            predecessor: None,
            fence: None,
        }
    }

    /// Starts only once `previous` (the phone's job so far) has retired and its link closed.
    pub fn after(mut self, previous: Option<Addr<PhoneJob>>) -> PhoneJob {
        self.predecessor = previous;
        self
    }

    /// The write mode of the next store: the first write of a ProvisioningPhone stores (or
    /// replaces) the phone and is its commit point; every other one updates this generation.
    fn write_mode(&mut self) -> WriteMode {
        match std::mem::replace(&mut self.staged, Staged::Nothing) {
            Staged::Nothing => WriteMode::Update,
            staged => {
                self.admin_password_staged = false;
                log::info!(
                    "phone {}: Devices accepted the code; the record is stored{}",
                    self.record.mac,
                    if matches!(staged, Staged::Replacing(_)) {
                        ", replacing the stored one"
                    } else {
                        ""
                    }
                );
                WriteMode::Provision
            }
        }
    }

    /// A ProvisioningPhone that failed before its commit point. A new phone: the job ends and
    /// nothing was stored. A re-provisioning: the stored phone goes on as it was, linked with
    /// its stored credentials, and this job becomes its job again.
    fn revert(&mut self, ctx: &mut Context<Self>) {
        let old = match std::mem::replace(&mut self.staged, Staged::Nothing) {
            Staged::Nothing => return,
            Staged::New => {
                log::warn!(
                    "phone {}: provisioning failed; nothing of it is kept",
                    self.record.mac
                );
                self.close_link();
                self.retired = true;
                return ctx.stop();
            }
            Staged::Replacing(old) => *old,
        };
        let mac = old.mac;
        log::warn!("phone {mac}: re-provisioning failed; the stored phone stays as it was");
        self.close_link();
        if let Some(registry) = self.registry.generation_changed.upgrade() {
            registry.do_send(JobGenerationChanged {
                mac,
                from: self.record.generation,
                to: old.generation,
            });
        }
        self.phase = if old.configured_at.is_some() {
            Phase::Configured
        } else {
            Phase::Stored
        };
        self.record = old;
        if std::mem::take(&mut self.admin_password_staged) {
            // Devices deployed an administrative password meanwhile: the stored phone keeps it.
            self.persist(ctx, WriteMode::Update, Self::start_link);
        } else {
            self.start_link(ctx);
        }
    }

    /// Announces the phone's state when it differs from the last announcement.
    fn announce(&mut self) {
        let now = (
            self.phase,
            self.link_down_since.is_some(),
            self.record.config_version,
        );
        if self.announced != Some(now) {
            self.announced = Some(now);
            // `updating` lasts as long as one store write: announced live, not kept in the
            // timeline (the `configured` with the new version that follows says it all).
            let (state, _) = PhoneState::of(self.phase, self.link_down_since.is_some());
            if state != PhoneState::Updating {
                self.shared.audit.record(
                    self.record.mac,
                    AuditEntry::state_change(now_unix(), state.as_str(), self.record.config_version),
                );
            }
            // No receiver (no admin watching) is not an error.
            let _ = self.shared.changes.send(self.record.mac);
        }
    }

    fn answer(&mut self, outcome: Result<(), ProvisionFailure>) {
        if let (Ok(()), Some(redirect), true) = (&outcome, &self.shared.redirect, self.reply.is_some()) {
            redirect.do_send(super::redirect::PhoneChanged(self.record.mac));
        }
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(outcome);
        }
    }

    /// Persists the current record; `then` runs once it is durable. Nothing else of this job
    /// runs meanwhile, so writes are stored in the order they were made.
    fn persist(&mut self, ctx: &mut Context<Self>, mode: WriteMode, then: fn(&mut Self, &mut Context<Self>)) {
        let put = self.shared.persistence.send(PutPhone {
            record: self.record.clone(),
            mode,
            fence: self.fence,
        });
        ctx.wait(put.into_actor(self).map(move |result, act, ctx| match result {
            Ok(Ok(())) => then(act, ctx),
            Ok(Err(PersistError::Stale(why))) => {
                // A newer ProvisioningPhone or a delete owns this phone now.
                log::info!(
                    "phone {}: job of generation {} ends: {why}",
                    act.record.mac,
                    act.record.generation
                );
                act.answer(Err(ProvisionFailure::Superseded(why)));
                act.retired = true;
                ctx.stop();
            }
            Ok(Err(e)) => {
                log::error!("phone {}: storing failed: {e}", act.record.mac);
                act.answer(Err(ProvisionFailure::Store(e.to_string())));
                ctx.stop();
            }
            Err(e) => {
                log::error!("phone {}: persistence unavailable: {e}", act.record.mac);
                act.answer(Err(ProvisionFailure::Store("persistence unavailable".into())));
                ctx.stop();
            }
        }));
    }

    fn start_link(&mut self, ctx: &mut Context<Self>) {
        if self.session.is_some() || self.retired {
            return;
        }
        let mac = self.record.mac;
        let password = match &self.record.sysclient_password {
            Some(sealed) => match self
                .shared
                .sealer
                .open(sealed, &SealPurpose::SysclientPassword(mac))
            {
                Ok(password) => Some(password),
                Err(e) => {
                    log::error!("phone {mac}: stored sysclient password unusable: {e}");
                    None
                }
            },
            None => None,
        };
        // The code goes with a new ProvisioningPhone (its answer is pending), and with any phone
        // that never got a sysclient password; a known phone otherwise answers the challenge.
        let stored_code = match self.record.provisioning_code(&self.shared.sealer) {
            Ok(code) => code,
            Err(e) => {
                log::error!("phone {mac}: stored provisioning code unusable: {e}");
                None
            }
        };
        let code = stored_code
            .filter(|_| self.reply.is_some() || password.is_none())
            .map(|code| code.expose().to_string());
        if password.is_none() && code.is_none() {
            log::warn!("phone {mac}: neither a sysclient password nor a code; cannot link to Devices");
            return;
        }
        if self.devices_url.is_none() {
            log::info!("phone {mac}: waiting for the Devices URL");
            return;
        }
        self.phase = Phase::Linking;
        self.announce();
        let backoff = self.shared.link.backoff;
        self.session = Some(SysclientSession::new(mac, code, password, backoff));
        self.connect(ctx);
    }

    /// Ends the session and its connection (the socket task closes the websocket when its
    /// queue is dropped).
    fn close_link(&mut self) {
        self.session = None;
        self.session_epoch += 1;
        self.writer = None;
        self.conn += 1;
        self.connecting = false;
    }

    /// Opens a connection for the session, unless one is open or under way.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.connecting || self.writer.is_some() || !self.session.as_ref().is_some_and(|s| s.can_link()) {
            return;
        }
        let Some(url) = self.devices_url.clone() else {
            return;
        };
        self.connecting = true;
        let epoch = self.session_epoch;
        let shared = Arc::clone(&self.shared.link);
        let attempted = url.clone();
        let attempt = async move { devices_socket::connect(url, &shared).await };
        ctx.spawn(attempt.into_actor(self).map(move |result, act, ctx| {
            if act.session_epoch != epoch {
                return; // that session is gone; its successor connects by itself
            }
            act.connecting = false;
            if act.devices_url.as_deref() != Some(attempted.as_str()) {
                // The URL changed while connecting: this connection goes to the old place.
                return act.connect(ctx);
            }
            match result {
                Ok(ws) => {
                    act.conn += 1;
                    let (writer, socket) =
                        devices_socket::spawn(ws, ctx.address(), act.conn, &act.shared.link);
                    act.writer = Some(writer);
                    act.socket = Some(socket);
                    act.drive(ctx, SessionEvent::Connected);
                }
                Err(reason) => act.drive(ctx, SessionEvent::Closed(&reason)),
            }
        }));
    }

    /// Feeds one event to the session and carries out what it asks, in order; stops when an
    /// action replaced the session (a revert).
    fn drive(&mut self, ctx: &mut Context<Self>, event: SessionEvent<'_>) {
        let Some(session) = &mut self.session else { return };
        let actions = session.handle(event, &self.shared.sealer);
        let epoch = self.session_epoch;
        for action in actions {
            if self.session_epoch != epoch {
                break;
            }
            self.apply(ctx, action);
        }
        self.announce();
    }

    /// Gives the current connection up (not Devices' doing) and lets the session reconnect.
    fn abandon(&mut self, ctx: &mut Context<Self>, why: &str) {
        self.writer = None;
        self.conn += 1;
        self.drive(ctx, SessionEvent::Abandoned(why));
    }

    fn after_staged(&mut self, ctx: &mut Context<Self>) {
        log::info!(
            "phone {}: provisioning (generation {}); nothing is stored until Devices accepts the code",
            self.record.mac,
            self.record.generation
        );
        if self.devices_url.is_none() {
            self.answer(Err(ProvisionFailure::NoDevices));
            return self.revert(ctx);
        }
        self.start_link(ctx);
    }

    fn after_config_stored(&mut self, _ctx: &mut Context<Self>) {
        self.phase = Phase::Configured;
        self.announce();
        log::info!(
            "phone {}: configuration stored ({} items, version {})",
            self.record.mac,
            self.record.configs.len(),
            self.record.config_version
        );
        self.answer(Ok(()));
        if std::mem::take(&mut self.notify_pending)
            && let Some(notifier) = &self.shared.notifier
        {
            // The phone challenges a check-sync with its line's credentials (docs/vendors).
            let password = self.record.password.as_ref().and_then(|sealed| {
                let purpose = SealPurpose::UserPassword(self.record.mac);
                self.shared.sealer.open(sealed, &purpose).ok()
            });
            notifier.do_send(PhoneConfigChanged {
                mac: self.record.mac,
                user: self.record.username.clone(),
                password,
            });
        }
    }

    fn after_secret_stored(&mut self, _ctx: &mut Context<Self>) {}

    fn seal(&self, secret: &Secret, purpose: &innoprov::seal::SealPurpose) -> Option<innoprov::Sealed> {
        match self.shared.sealer.seal(secret, purpose) {
            Ok(sealed) => Some(sealed),
            Err(e) => {
                log::error!("phone {}: sealing failed: {e}", self.record.mac);
                None
            }
        }
    }
}

impl Actor for PhoneJob {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        match self.predecessor.take() {
            // Never two links for one phone: the previous job's closes (Devices sees it) first.
            Some(previous) => ctx.wait(
                previous
                    .send(Retire::default())
                    .into_actor(self)
                    .map(|_, act, ctx| act.begin(ctx)),
            ),
            None => self.begin(ctx),
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let _ = self.shared.changes.send(self.record.mac);
        self.close_link();
        self.answer(Err(ProvisionFailure::Internal(
            "the phone's provisioning job ended".into(),
        )));
        if let Some(registry) = self.registry.ended.upgrade() {
            registry.do_send(JobEnded {
                mac: self.record.mac,
                generation: self.record.generation,
                retired: self.retired,
            });
        }
    }
}

impl PhoneJob {
    /// Starts the job's work: a ProvisioningPhone stages its record, a resumed phone links.
    fn begin(&mut self, ctx: &mut Context<Self>) {
        self.fence = self
            .shared
            .leases
            .as_ref()
            .and_then(|leases| leases.token(&self.record.mac));
        match self.start.take() {
            Some(JobStart::Provision(reply)) => {
                self.reply = Some(reply);
                let timeout = self.shared.provisioning_timeout;
                ctx.run_later(timeout, move |act, ctx| {
                    if act.reply.is_some() {
                        log::warn!(
                            "phone {}: no complete configuration from Devices within {timeout:?}",
                            act.record.mac
                        );
                        // Before the commit point nothing is kept; after it (Devices took the
                        // code and gave the phone its password) the phone is Devices' and stays:
                        // the answer says which.
                        act.answer(Err(ProvisionFailure::Timeout {
                            secs: timeout.as_secs(),
                            kept: matches!(act.staged, Staged::Nothing),
                        }));
                        act.revert(ctx);
                    }
                });
                // A phone Devices already knows keeps its sysclient password: Devices challenges
                // it even when it identifies with a new code.
                let previous = self.shared.persistence.send(GetPhone(self.record.mac));
                ctx.wait(previous.into_actor(self).map(|result, act, ctx| {
                    if let Ok(Ok(Some(old))) = result {
                        act.record.sysclient_password = old.sysclient_password.clone();
                        act.record.admin_password = old.admin_password.clone();
                        // The phone's web password stays what an admin may have read; the file
                        // version keeps rising so the phone applies the new file.
                        if old.web_password.is_some() {
                            act.record.web_password = old.web_password.clone();
                        }
                        act.record.changed_at = act.record.changed_at.max(old.changed_at + 1);
                        // Nothing is stored before Devices accepts the new code: a rejected or
                        // unanswered code leaves the working phone as it was.
                        act.staged = Staged::Replacing(Box::new(old));
                    } else {
                        act.staged = Staged::New;
                    }
                    act.after_staged(ctx);
                }));
            }
            Some(JobStart::Resume) | None => {
                if self.record.configured_at.is_some() {
                    self.phase = Phase::Configured;
                }
                self.start_link(ctx);
            }
        }
    }
}

impl PhoneJob {
    /// Carries out what the Devices session decided.
    fn apply(&mut self, ctx: &mut Context<Self>, action: SessionAction) {
        match action {
            SessionAction::Send(frame) => {
                let queued = self
                    .writer
                    .as_ref()
                    .is_some_and(|w| w.try_send(Outgoing::Frame(frame.encode())).is_ok());
                if !queued && self.writer.is_some() {
                    self.abandon(ctx, "outbound queue full or closed");
                }
            }
            // The link counts as back only once Devices speaks: an open socket to a Devices
            // that never answers (or closes after the identify) is still a link down.
            SessionAction::Accepted => {
                if let Some(since) = self.link_down_since.take() {
                    crate::ops::metrics::metrics().link_reconnects.inc();
                    log::info!(
                        "phone {}: link back after {} s down",
                        self.record.mac,
                        now_unix().saturating_sub(since)
                    );
                }
            }
            SessionAction::StorePassword(password) => {
                let mac = self.record.mac;
                self.record.sysclient_password = self.seal(&password, &SealPurpose::SysclientPassword(mac));
                let mode = self.write_mode();
                self.persist(ctx, mode, Self::after_secret_stored);
            }
            SessionAction::AdminPassword(password) => self.on_admin_password(ctx, &password),
            SessionAction::ConfigComplete(items) => self.on_config_complete(ctx, items),
            SessionAction::ConfigUpdate(item) => self.on_config_update(ctx, item),
            SessionAction::Reconnect { after, .. } => self.reconnect_after(ctx, after),
            SessionAction::CodeRefused(why) => {
                self.answer(Err(ProvisionFailure::Rejected(why)));
                self.revert(ctx);
            }
            SessionAction::Rejected(why) => {
                self.close_link();
                self.phase = Phase::Stored;
                self.answer(Err(ProvisionFailure::Rejected(why)));
                self.revert(ctx);
            }
        }
    }

    fn on_admin_password(&mut self, ctx: &mut Context<Self>, password: &Secret) {
        let mac = self.record.mac;
        log::info!("phone {mac}: admin password deployed by Devices");
        self.record.admin_password = self.seal(password, &SealPurpose::AdminPassword(mac));
        match &mut self.staged {
            // Not a sign that Devices accepted the new code (it comes after the challenge,
            // before the configuration): kept for whichever record wins, stored with it.
            Staged::Replacing(previous) => {
                previous.admin_password = self.record.admin_password.clone();
                self.admin_password_staged = true;
            }
            Staged::New => {}
            Staged::Nothing => self.persist(ctx, WriteMode::Update, Self::after_secret_stored),
        }
    }

    fn on_config_complete(&mut self, ctx: &mut Context<Self>, items: Vec<ConfigItem>) {
        // Devices sends the whole set after every identify; only a different set is a new
        // version (and a reason to make the phone fetch again).
        let changed = self.record.configured_at.is_none()
            || !devices::same_content(
                &items,
                &self.record.configs,
                &self.record.mac,
                &self.shared.sealer,
            );
        if changed {
            self.notify_pending = self.record.configured_at.is_some();
            self.record.configs = items;
            self.record.config_version += 1;
            self.record.changed_at = now_unix().max(self.record.changed_at + 1);
        }
        self.phase = Phase::Updating;
        self.record.configured_at = Some(now_unix());
        let mode = self.write_mode();
        self.persist(ctx, mode, Self::after_config_stored);
    }

    fn on_config_update(&mut self, ctx: &mut Context<Self>, item: ConfigItem) {
        let mac = self.record.mac;
        log::info!("phone {mac}: configuration update of {} {}", item.kind, item.key);
        if self.record.configs.len() >= MAX_CONFIG_ITEMS
            && !self.record.configs.iter().any(|c| c.key == item.key)
        {
            log::warn!("phone {mac}: more than {MAX_CONFIG_ITEMS} configuration items; update ignored");
            return;
        }
        self.phase = Phase::Updating;
        let before = self.record.configs.clone();
        devices::upsert(&mut self.record.configs, item);
        if !devices::same_content(&self.record.configs, &before, &mac, &self.shared.sealer) {
            self.record.config_version += 1;
            self.record.changed_at = now_unix().max(self.record.changed_at + 1);
            self.notify_pending = true;
        }
        let mode = self.write_mode();
        self.persist(ctx, mode, Self::after_config_stored);
    }

    fn reconnect_after(&mut self, ctx: &mut Context<Self>, after: Duration) {
        self.writer = None;
        self.link_down_since.get_or_insert_with(now_unix);
        if self.phase != Phase::Configured {
            self.phase = Phase::Linking;
        }
        self.connecting = true;
        let epoch = self.session_epoch;
        ctx.run_later(after, move |act, ctx| {
            if act.session_epoch == epoch {
                act.connecting = false;
                act.connect(ctx);
            }
        });
    }
}

impl Handler<FromDevices> for PhoneJob {
    type Result = ();

    fn handle(&mut self, msg: FromDevices, ctx: &mut Context<Self>) {
        if msg.conn == self.conn {
            self.drive(ctx, SessionEvent::Frame(&msg.bytes));
        }
    }
}

impl Handler<SocketClosed> for PhoneJob {
    type Result = ();

    fn handle(&mut self, msg: SocketClosed, ctx: &mut Context<Self>) {
        if msg.conn != self.conn {
            return;
        }
        self.writer = None;
        if msg.panicked {
            // Our failure, not Devices' answer: reconnect like after any drop.
            log::error!(
                "phone {}: the socket task failed ({}); reconnecting",
                self.record.mac,
                msg.reason
            );
            self.drive(ctx, SessionEvent::Abandoned(&msg.reason));
        } else {
            self.drive(ctx, SessionEvent::Closed(&msg.reason));
        }
    }
}

/// Devices' sysclient URL changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetJobDevicesUrl(pub Option<String>);

impl Handler<SetJobDevicesUrl> for PhoneJob {
    type Result = ();

    fn handle(&mut self, msg: SetJobDevicesUrl, ctx: &mut Context<Self>) {
        if self.session.is_none() {
            self.devices_url = msg.0;
            return self.start_link(ctx);
        }
        // No URL is no reason to leave a working Devices.
        if msg.0.is_none() || msg.0 == self.devices_url {
            return;
        }
        self.devices_url = msg.0;
        if self.writer.is_some() {
            self.abandon(ctx, "Devices URL changed");
        } else {
            self.connect(ctx);
        }
    }
}

/// Ends the job and its link (re-provisioned, deleted, shutting down).
#[derive(Message)]
#[rtype(result = "()")]
#[derive(Default)]
pub struct Retire {
    /// The answer to a pending ProvisioningPhone (else the job's end is the answer).
    pub why: Option<String>,
}

/// How long a retirement waits for Devices to see the link close.
const CLOSE_LIMIT: Duration = Duration::from_secs(3);

impl Handler<Retire> for PhoneJob {
    type Result = ResponseActFuture<Self, ()>;

    /// Closes the link and stops once the socket task has ended (Devices saw the close), so
    /// that the answer tells the registry the phone may be linked elsewhere.
    fn handle(&mut self, msg: Retire, _ctx: &mut Context<Self>) -> Self::Result {
        self.retired = true;
        if let Some(why) = msg.why {
            self.answer(Err(ProvisionFailure::Superseded(why)));
        }
        self.close_link();
        let socket = self.socket.take();
        let closed = async move {
            if let Some(socket) = socket {
                socket.closed(CLOSE_LIMIT).await;
            }
        };
        Box::pin(closed.into_actor(self).map(|(), _act, ctx| ctx.stop()))
    }
}

/// A phone's state, for the admin surface and tests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PhoneStatus {
    /// Where the phone is.
    pub phase: Phase,
    /// The stored configuration version.
    pub config_version: u64,
    /// Number of stored configuration items.
    pub config_items: usize,
    /// Since when the link is down (Unix seconds).
    pub link_down_since: Option<u64>,
    /// The record's generation.
    pub generation: u64,
}

/// Asks a job for its status.
#[derive(Message)]
#[rtype(result = "PhoneStatus")]
pub struct GetPhoneStatus;

impl Handler<GetPhoneStatus> for PhoneJob {
    type Result = MessageResult<GetPhoneStatus>;

    fn handle(&mut self, _msg: GetPhoneStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(PhoneStatus {
            phase: self.phase,
            config_version: self.record.config_version,
            config_items: self.record.configs.len(),
            link_down_since: self.link_down_since,
            generation: self.record.generation,
        })
    }
}

#[cfg(feature = "simulators")]
/// Fault injection for the supervision tests: the job panics while handling it.
#[doc(hidden)]
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectFault;

#[cfg(feature = "simulators")]
impl Handler<InjectFault> for PhoneJob {
    type Result = ();

    fn handle(&mut self, _msg: InjectFault, _ctx: &mut Context<Self>) {
        panic!("fault injected into the job of phone {}", self.record.mac);
    }
}

#[cfg(feature = "simulators")]
/// Fault injection for the supervision tests: the job's socket task panics.
#[doc(hidden)]
#[derive(Message)]
#[rtype(result = "bool")]
pub struct InjectSocketFault;

#[cfg(feature = "simulators")]
impl Handler<InjectSocketFault> for PhoneJob {
    type Result = bool;

    fn handle(&mut self, _msg: InjectSocketFault, _ctx: &mut Context<Self>) -> bool {
        self.writer
            .as_ref()
            .is_some_and(|w| w.try_send(Outgoing::Panic).is_ok())
    }
}

/// Fault injection for the supervision tests: the job takes no message for this long (as a
/// job waiting on a slow store would), without blocking its thread.
#[cfg(feature = "simulators")]
#[doc(hidden)]
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPause(pub std::time::Duration);

#[cfg(feature = "simulators")]
impl Handler<InjectPause> for PhoneJob {
    type Result = ();

    fn handle(&mut self, msg: InjectPause, ctx: &mut Context<Self>) {
        ctx.wait(actix::clock::sleep(msg.0).into_actor(self));
    }
}
