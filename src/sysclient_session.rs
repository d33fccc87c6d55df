//! One phone's side of the Devices sysclient protocol (devices-sysclient.md §2) as a plain
//! state machine, without sockets or timers: the runtime feeds it [`SessionEvent`]s (the
//! websocket opened, a frame arrived, the connection ended) and carries out the
//! [`SessionAction`]s it returns, in order (send a frame, store the sysclient password, hand
//! over the complete configuration or an update, give up, connect again after a delay).
//!
//! What it decides, in one place:
//! - identify with the provisioning code while one is held (a new ProvisioningPhone), else
//!   identify bare and answer Devices' challenge with the stored sysclient password (§2.3);
//! - collect configuration items until `last:true`, then hand the whole set over, and every
//!   later item as an update (§2.3 step 6), at most [`MAX_CONFIG_ITEMS`];
//! - a close right after an identify with a code, before Devices said anything, is a refused
//!   code: the end for a phone without a password, else go on with the password;
//! - a challenge with no password to answer it is the end (§2.3: "a sysclient that cannot
//!   answer the challenge is not added to any domain");
//! - reconnect delays: exponential with jitter, reset once Devices accepts an identify (§2.7).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use serde_json::{Map, Value};

use crate::devices::{self, ConfigItem};
use crate::sysclient::{self, DevicesMessage, SysclientFrame};
use crate::{Mac, Sealer, Secret};

/// Most configuration items one phone may have (a bound against a misbehaving peer).
pub const MAX_CONFIG_ITEMS: usize = 512;

/// What happened on the phone's connection to Devices.
#[derive(Debug, Clone, Copy)]
pub enum SessionEvent<'a> {
    /// The websocket is open.
    Connected,
    /// One binary frame from Devices.
    Frame(&'a [u8]),
    /// The connection ended, or a connection attempt failed; why.
    Closed(&'a str),
    /// The runtime gave the connection up itself (the Devices URL changed, its queue is stuck,
    /// its task failed): not an answer of Devices, so never a refused code.
    Abandoned(&'a str),
}

/// What the runtime must do, in the order given.
#[derive(Debug)]
pub enum SessionAction {
    /// Write this frame to Devices.
    Send(SysclientFrame),
    /// Devices accepted the identify (said anything but a close): the link is up again.
    Accepted,
    /// Devices gave the phone its sysclient password: store it (sealed) before relying on it.
    StorePassword(Secret),
    /// Devices deployed an administrative password for the phone.
    AdminPassword(Secret),
    /// The complete configuration, up to `last:true` (after every identify).
    ConfigComplete(Vec<ConfigItem>),
    /// One later change.
    ConfigUpdate(ConfigItem),
    /// Devices refused the new provisioning code of a phone it already knows; the session goes
    /// on with the stored sysclient password.
    CodeRefused(String),
    /// Devices will not have this phone; the session is over (nothing more is asked).
    Rejected(String),
    /// The connection is gone: connect again after `after`.
    Reconnect {
        /// How long to wait.
        after: Duration,
        /// Why the connection ended.
        reason: String,
    },
}

/// Reconnect delays.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The one backoff policy of the service (reconnects, job restarts, redirect retries):
    /// backon's exponential delays from `min` to `max`, jittered, without end.
    pub fn delays(self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.min)
            .with_max_delay(self.max)
            .without_max_times()
            .build()
    }
}

/// One phone's sysclient session with Devices.
pub struct SysclientSession {
    /// The phone.
    mac: Mac,
    /// The provisioning code, while one is to be presented.
    code: Option<String>,
    /// The sysclient password, once known.
    password: Option<Secret>,
    /// Reconnect delay settings.
    backoff_policy: Backoff,
    /// The reconnect delays of the current run of failures.
    backoff: ExponentialBackoff,
    /// Whether a connection is open.
    connected: bool,
    /// Whether the identify on the current connection carried the code.
    code_sent: bool,
    /// Whether Devices accepted the current identify (said anything but a close).
    accepted: bool,
    /// Whether the current connection delivered its complete configuration.
    complete: bool,
    /// Items of the current identify, until `last:true`.
    collecting: Vec<ConfigItem>,
    /// Set once Devices refused the phone for good.
    rejected: bool,
}

impl std::fmt::Debug for SysclientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SysclientSession")
            .field("mac", &self.mac)
            .field("has_code", &self.code.is_some())
            .field("has_password", &self.password.is_some())
            .field("connected", &self.connected)
            .field("accepted", &self.accepted)
            .field("complete", &self.complete)
            .field("rejected", &self.rejected)
            .finish()
    }
}

impl SysclientSession {
    /// A session for `mac`: with `code` for a new ProvisioningPhone, with `password` (the
    /// stored sysclient password) to answer challenges.
    pub fn new(
        mac: Mac,
        code: Option<String>,
        password: Option<Secret>,
        backoff: Backoff,
    ) -> SysclientSession {
        SysclientSession {
            mac,
            code,
            password,
            backoff_policy: backoff,
            backoff: Self::fresh(backoff),
            connected: false,
            code_sent: false,
            accepted: false,
            complete: false,
            collecting: Vec::new(),
            rejected: false,
        }
    }

    fn fresh(policy: Backoff) -> ExponentialBackoff {
        policy.delays()
    }

    /// Whether the session can still link (it has a code or a password, and was not rejected).
    pub fn can_link(&self) -> bool {
        !self.rejected && (self.code.is_some() || self.password.is_some())
    }

    /// Whether Devices refused the phone for good.
    pub fn is_rejected(&self) -> bool {
        self.rejected
    }

    /// Whether the current connection has delivered its complete configuration.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Turns one event into what to do.
    pub fn handle(&mut self, event: SessionEvent<'_>, sealer: &Sealer) -> Vec<SessionAction> {
        if self.rejected {
            return Vec::new();
        }
        match event {
            SessionEvent::Connected => self.on_connected(),
            SessionEvent::Frame(bytes) => self.on_frame(bytes, sealer),
            SessionEvent::Closed(reason) => self.on_closed(reason, false),
            SessionEvent::Abandoned(reason) => self.on_closed(reason, true),
        }
    }

    fn on_connected(&mut self) -> Vec<SessionAction> {
        self.connected = true;
        self.collecting.clear();
        self.complete = false;
        self.accepted = false;
        // A code is sent whenever one is held, even for a phone with a sysclient password: the
        // code picks the phone's new domain and category; a challenge that follows is answered
        // with the stored password.
        self.code_sent = self.code.is_some();
        log::info!(
            "phone {}: sysclient link up, identifying {}",
            self.mac,
            if self.code_sent {
                "with the provisioning code"
            } else {
                "for a challenge"
            }
        );
        let id = self.mac.to_string();
        vec![SessionAction::Send(sysclient::identify(
            &id,
            self.code.as_deref(),
            None,
        ))]
    }

    fn reject(&mut self, why: String) -> Vec<SessionAction> {
        log::warn!("phone {}: Devices rejected the phone: {why}", self.mac);
        self.rejected = true;
        self.connected = false;
        vec![SessionAction::Rejected(why)]
    }

    fn accepted_now(&mut self, out: &mut Vec<SessionAction>) {
        if !self.accepted {
            self.accepted = true;
            self.backoff = Self::fresh(self.backoff_policy);
            out.push(SessionAction::Accepted);
        }
    }

    fn on_frame(&mut self, bytes: &[u8], sealer: &Sealer) -> Vec<SessionAction> {
        if !self.connected {
            return Vec::new();
        }
        match SysclientFrame::decode(bytes) {
            Ok(SysclientFrame::Admin { kind, body }) => {
                self.on_admin(DevicesMessage::from_admin(kind, body), sealer)
            }
            Ok(SysclientFrame::Tunnel { session, event, .. }) => sysclient::tunnel_answer(session, event)
                .map(SessionAction::Send)
                .into_iter()
                .collect(),
            Err(e) => {
                log::warn!("phone {}: ignoring a frame from Devices: {e}", self.mac);
                Vec::new()
            }
        }
    }

    fn on_admin(&mut self, message: DevicesMessage, sealer: &Sealer) -> Vec<SessionAction> {
        let mut out = Vec::new();
        match message {
            DevicesMessage::SysclientPassword { password } => {
                if password.is_empty() {
                    log::warn!(
                        "phone {}: Devices sent an empty sysclient password; ignored",
                        self.mac
                    );
                    return out;
                }
                log::info!("phone {}: sysclient password received", self.mac);
                self.accepted_now(&mut out);
                self.password = Some(Secret::new(password.clone()));
                self.code = None;
                out.push(SessionAction::StorePassword(Secret::new(password)));
            }
            DevicesMessage::Challenge { challenge } => {
                let Some(password) = &self.password else {
                    return self
                        .reject("Devices sent a challenge but no sysclient password is stored".into());
                };
                let id = self.mac.to_string();
                let digest = sysclient::challenge_digest(
                    &id,
                    sysclient::PRODUCT,
                    sysclient::VERSION,
                    &challenge,
                    password.expose(),
                );
                out.push(SessionAction::Send(sysclient::identify(&id, None, Some(&digest))));
            }
            DevicesMessage::AdminPassword { seed, pwd } => {
                let Some(password) = &self.password else {
                    log::warn!(
                        "phone {}: admin password without a sysclient password to decrypt it",
                        self.mac
                    );
                    return out;
                };
                match sysclient::decrypt_secret(&seed, password.expose(), &pwd) {
                    Ok(admin) => out.push(SessionAction::AdminPassword(Secret::new(admin))),
                    Err(e) => log::warn!("phone {}: admin password does not decrypt: {e}", self.mac),
                }
            }
            DevicesMessage::ProvisionResult { error } => {
                log::info!("phone {}: provision result {error:?}", self.mac);
            }
            DevicesMessage::Configuration(body) => self.on_configuration(&body, sealer, &mut out),
            DevicesMessage::Other { kind } => {
                log::info!("phone {}: ignoring admin message 0x{kind:04x}", self.mac)
            }
        }
        out
    }

    fn on_configuration(&mut self, body: &Map<String, Value>, sealer: &Sealer, out: &mut Vec<SessionAction>) {
        let message = match devices::parse_configuration(body) {
            Ok(message) => message,
            Err(e) => {
                log::warn!("phone {}: ignoring configuration message: {e}", self.mac);
                return;
            }
        };
        self.accepted_now(out);
        let item = message.config.map(|config| {
            let (item, warnings) =
                ConfigItem::from_received(&self.mac, config, self.password.as_ref(), sealer);
            for warning in warnings {
                log::warn!("phone {}: {warning}", self.mac);
            }
            item
        });
        if self.complete {
            out.extend(item.map(SessionAction::ConfigUpdate));
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
            out.push(SessionAction::ConfigComplete(items));
        }
    }

    fn on_closed(&mut self, reason: &str, by_us: bool) -> Vec<SessionAction> {
        let was_connected = std::mem::take(&mut self.connected);
        let mut out = Vec::new();
        if was_connected && !by_us && self.code_sent && !self.accepted {
            // Closed after an identify with a code, before anything else: the code was refused.
            let why = format!("Devices refused the provisioning code ({reason})");
            self.code = None;
            if self.password.is_none() {
                return self.reject(why);
            }
            // A phone Devices already knows keeps its link, identifying by its password.
            log::warn!(
                "phone {}: {why}; reconnecting with the stored sysclient password",
                self.mac
            );
            out.push(SessionAction::CodeRefused(why));
        }
        let after = self.backoff.next().unwrap_or(self.backoff_policy.max);
        log::info!(
            "phone {}: sysclient link down ({reason}); retrying in {:.1} s",
            self.mac,
            after.as_secs_f64()
        );
        out.push(SessionAction::Reconnect {
            after,
            reason: reason.to_string(),
        });
        out
    }
}

#[cfg(test)]
mod tests;
