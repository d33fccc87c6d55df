//! `AdminCore`: the one set of admin operations over the live system (interface.md
//! "Operating"): list and search phones with their state, one phone's detail and audit, and the
//! actions (resync, reopen enrolment, pin a vendor, delete). The REST door (`admin_http`) calls
//! it; it re-implements nothing of the store, the registry or the download path.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use innoprov::clock::now_unix;
use innoprov::provisioning::{AuditEntry, PhoneAccess, Vendors, admin};
use innoprov::{Mac, PhoneRecord, Sealer, Store};
use serde::Serialize;

use crate::phones::directory::{CurrentDevicesUrl, ServiceDirectory};
use crate::phones::notifier::PhoneConfigChanged;
use crate::phones::phone_job::PhoneStatus;
pub use crate::phones::phone_state::{LinkState, PhoneState};
use crate::phones::registry::{AllStatuses, DeletePhone, PhoneRegistry, PhoneStatusOf};
use crate::store::audit_log::AuditLog;
use crate::store::user_directory::{DirectoryStatus, UserDirectory};
use innoprov::provisioning::keys::KeyProfile;

/// Entries returned by an audit request.
const AUDIT_LIMIT: usize = 1000;

/// One phone in a list (interface.md PHONE).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PhoneSummary {
    /// 12 lowercase hex digits.
    pub mac: String,
    /// SIP user name.
    pub user: String,
    /// Display name.
    pub name: String,
    /// The vendor it fetched as last (or its pinned vendor), if any.
    pub vendor: Option<String>,
    /// What it is doing.
    pub state: PhoneState,
    /// The stored configuration version.
    pub config_version: u64,
    /// Its Devices link.
    pub link: LinkState,
    /// When it last fetched a file successfully (Unix seconds).
    pub last_fetch: Option<u64>,
    /// Since when the link is down (Unix seconds).
    pub link_down_since: Option<u64>,
    /// Zero touch: its registration with its vendor's redirect service; null when its vendor
    /// has none configured (interface.md "Zero touch").
    pub redirect: Option<RedirectView>,
}

/// A phone's registration as REST and the admin page show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RedirectView {
    /// `registered`, `pending`, `failed` or `owned_elsewhere`.
    #[schema(value_type = String)]
    pub state: innoprov::redirect::RedirectState,
    /// The service's own words, or ours.
    pub detail: String,
    /// The device PIN the service gave (Yealink), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// The device code an admin entered (Gigaset's MAC-ID check code), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_code: Option<String>,
}

/// One configuration item as Devices sent it (secrets are never shown).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConfigSummary {
    /// Item key (Devices id or `type:<type>`).
    pub key: String,
    /// Item type (`PHONE`, `NTP`, ...).
    pub kind: String,
    /// The item's fields, less its secrets.
    #[schema(value_type = Object)]
    pub body: serde_json::Map<String, serde_json::Value>,
}

/// One phone in detail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PhoneDetail {
    /// The list fields.
    #[serde(flatten)]
    pub summary: PhoneSummary,
    /// PBX DNS name from Users.
    pub dns: String,
    /// The vendor an admin pinned, if any.
    pub pinned_vendor: Option<String>,
    /// When the latest ProvisioningPhone arrived (Unix seconds).
    pub provisioned_at: u64,
    /// When the configuration was last complete (Unix seconds).
    pub configured_at: Option<u64>,
    /// The configuration version the phone last fetched.
    pub served_version: Option<u64>,
    /// Address the phone last fetched from.
    pub last_fetch_from: Option<String>,
    /// User-Agent of its last fetch.
    pub last_user_agent: Option<String>,
    /// Whether it has enrolled with its provisioning credentials.
    pub enrolled: bool,
    /// The key profile an admin gave it (else its user's PBX config template names one).
    pub key_profile: Option<String>,
    /// The function keys its files carry, in key order.
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<innoprov::provisioning::keys::FunctionKey>,
    /// Its Devices configuration.
    pub configuration: Vec<ConfigSummary>,
}

/// The admin page's directory panel.
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryView {
    /// Rows, listed entries, last change, replication and its problem.
    pub status: DirectoryStatus,
    /// The PBX's users, by name: the BLF partners to pick from.
    pub users: Vec<DirectoryUser>,
    /// The key profiles.
    pub profiles: Vec<KeyProfile>,
}

/// One user as the profile editor offers it.
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryUser {
    /// The SIP name (a BLF key's target).
    pub sip: String,
    /// The name shown.
    pub name: String,
    /// The user's PBX config template (a profile of that name is the user's phones' default).
    pub template: String,
}

/// Why an admin operation failed: an HTTP status and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminFailure {
    /// HTTP status.
    pub status: u16,
    /// Reason, shown to the admin.
    pub reason: String,
}

/// One message of the AppWebsocket admin door, decoded at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    /// `AdminListPhones` (`q`: text searched in MAC, user and name).
    List {
        /// The search text.
        query: Option<String>,
    },
    /// `AdminGetPhone`.
    Get(Mac),
    /// `AdminAudit`.
    Audit(Mac),
    /// `AdminAction`.
    Act(Mac, AdminAction),
    /// `AdminSubscribe`: push every phone's state changes from now on.
    Subscribe,
    /// `AdminPbx`: who the PBX is.
    Pbx,
    /// `AdminResetPbx`: forget the pinned PBX.
    ResetPbx,
    /// `AdminDirectory`: the user table's state, its users to pick BLF partners from, and the
    /// key profiles.
    Directory,
    /// `AdminPutKeyProfile` with `name` and `keys`: create or replace a profile.
    PutKeyProfile {
        /// The profile's name.
        name: String,
        /// `{"keys":[...]}` as the REST call takes it.
        body: Vec<u8>,
    },
    /// `AdminDeleteKeyProfile` with `name`.
    DeleteKeyProfile(String),
}

/// What `AdminAction` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAction {
    /// `resync`: the vendor's NOTIFY.
    Resync,
    /// `enrolment`: reopen the enrolment window.
    ReopenEnrolment,
    /// `vendor` with `vendor` (a name, or null to unpin).
    PinVendor(Option<String>),
    /// `delete`.
    Delete,
    /// `key_profile` with `profile` (a name, or null to take the phone's own away).
    KeyProfile(Option<String>),
    /// `redirect`: register the phone with its vendor's redirect service again, with the
    /// `device_code` printed on it when given.
    RegisterAgain(Option<String>),
}

impl AdminRequest {
    /// Reads an `Admin*` message; the error says what is wrong with it.
    pub fn parse(msg: &innoprov::appws::Inbound) -> Result<AdminRequest, String> {
        let mac = || {
            msg.text_or_empty("mac")
                .parse::<Mac>()
                .map_err(|e| format!("malformed MAC: {e}"))
        };
        Ok(match msg.mt.as_str() {
            "AdminListPhones" => AdminRequest::List {
                query: msg.text("q").ok().flatten(),
            },
            "AdminGetPhone" => AdminRequest::Get(mac()?),
            "AdminAudit" => AdminRequest::Audit(mac()?),
            "AdminAction" => {
                let mac = mac()?;
                let action = match msg.text_or_empty("action").as_str() {
                    "resync" => AdminAction::Resync,
                    "enrolment" => AdminAction::ReopenEnrolment,
                    "vendor" => AdminAction::PinVendor(msg.text("vendor").ok().flatten()),
                    "key_profile" => AdminAction::KeyProfile(msg.text("profile").ok().flatten()),
                    "redirect" => AdminAction::RegisterAgain(msg.text("device_code").ok().flatten()),
                    "delete" => AdminAction::Delete,
                    other => return Err(format!("unknown action {other:?}")),
                };
                AdminRequest::Act(mac, action)
            }
            "AdminSubscribe" => AdminRequest::Subscribe,
            "AdminPbx" => AdminRequest::Pbx,
            "AdminResetPbx" => AdminRequest::ResetPbx,
            "AdminDirectory" => AdminRequest::Directory,
            "AdminPutKeyProfile" => AdminRequest::PutKeyProfile {
                name: msg.text_or_empty("name"),
                body: serde_json::to_vec(
                    &serde_json::json!({ "keys": msg.body.get("keys").cloned().unwrap_or_default() }),
                )
                .map_err(|e| e.to_string())?,
            },
            "AdminDeleteKeyProfile" => AdminRequest::DeleteKeyProfile(msg.text_or_empty("name")),
            other => return Err(format!("unknown admin message {other}")),
        })
    }
}

fn failure(status: u16, reason: impl Into<String>) -> AdminFailure {
    AdminFailure {
        status,
        reason: reason.into(),
    }
}

/// Everything the admin operations need.
pub struct AdminCore {
    /// Records, download states, audits.
    pub store: Arc<dyn Store>,
    /// Opens the line password for a NOTIFY's challenge.
    pub sealer: Sealer,
    /// Known vendors (pins).
    pub vendors: Vendors,
    /// The phones' jobs.
    pub registry: Addr<PhoneRegistry>,
    /// Downloads, pending ones included.
    pub audit: Arc<AuditLog>,
    /// Sends resync NOTIFYs; `None` when switched off.
    pub notifier: Option<Recipient<PhoneConfigChanged>>,
    /// Where Devices is.
    pub directory: Addr<ServiceDirectory>,
    /// Several instances: the leases, to tell a phone another instance links from a failed one.
    pub leases: Option<Arc<dyn innoprov::store::Leases>>,
    /// Who the PBX is (shown, and the pin reset).
    pub pbx: Arc<crate::edge::pbx_pin::PbxPin>,
    /// The PBX's user table and the key profiles.
    pub users: Arc<UserDirectory>,
    /// Zero touch: the worker (for "register again"), when a service is configured.
    pub redirect: Option<Addr<crate::phones::redirect::RedirectWorker>>,
    /// The redirect services configured (vendor names).
    pub redirect_services: Arc<Vec<&'static str>>,
}

fn state_of(status: Option<&PhoneStatus>, elsewhere: bool) -> (PhoneState, LinkState) {
    match status {
        None if elsewhere => (PhoneState::Elsewhere, LinkState::Elsewhere),
        None => (PhoneState::Failed, LinkState::None),
        Some(s) => PhoneState::of(s.phase, s.link_down_since.is_some()),
    }
}

/// The running jobs' statuses, and the phones other instances hold.
struct LiveStates {
    /// This instance's jobs.
    statuses: HashMap<Mac, PhoneStatus>,
    /// Phones whose live lease another instance holds.
    elsewhere: std::collections::HashSet<Mac>,
    /// Which phones have a redirect service.
    redirect: RedirectLookup,
}

impl LiveStates {
    fn of(&self, mac: &Mac) -> (Option<&PhoneStatus>, bool) {
        (self.statuses.get(mac), self.elsewhere.contains(mac))
    }
}

/// The redirect services configured, and the vendors to find a phone's.
#[derive(Clone)]
struct RedirectLookup {
    /// The services' names (vendor names).
    services: Arc<Vec<&'static str>>,
    /// The vendors, to find a phone's (pinned, else by OUI).
    vendors: innoprov::provisioning::Vendors,
}

impl RedirectLookup {
    /// The phone's registration: null without a service for its vendor, pending before the
    /// first try.
    fn view(&self, mac: &Mac, access: &PhoneAccess) -> Option<RedirectView> {
        let (services, vendors) = (&self.services, &self.vendors);
        let service =
            innoprov::redirect::service_for(vendors, mac, access.pinned_vendor.as_deref(), |name| {
                services.contains(&name)
            })?;
        Some(match &access.redirect {
            Some(status) => RedirectView {
                state: status.state,
                detail: status.detail.clone(),
                pin: status.pin.clone(),
                device_code: access.device_code.clone(),
            },
            None => RedirectView {
                state: innoprov::redirect::RedirectState::Pending,
                detail: format!("waiting to be registered with {service}"),
                pin: None,
                device_code: access.device_code.clone(),
            },
        })
    }
}

impl AdminCore {
    fn store_failure(e: impl std::fmt::Display) -> AdminFailure {
        log::error!("admin: store: {e}");
        failure(500, "the store failed")
    }

    /// Runs `work` (store calls, which block) off the actix workers: they carry every
    /// websocket session, and a slow store must not delay a login or a ping.
    async fn off_worker<R: Send + 'static>(
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, AdminFailure> {
        actix_web::rt::task::spawn_blocking(work)
            .await
            .map_err(|e| failure(500, format!("a store call ended: {e}")))
    }

    /// `work` on the store off the actix workers, a store error a 500.
    async fn on_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Store) -> Result<T, innoprov::StoreError> + Send + 'static,
    ) -> Result<T, AdminFailure> {
        let store = Arc::clone(&self.store);
        Self::off_worker(move || work(store.as_ref()))
            .await?
            .map_err(Self::store_failure)
    }

    /// One phone's line of the list. `audit.last_fetch` may read the stored audit (once per
    /// phone after a start): callers run this off the actix workers.
    fn summary(
        audit: &AuditLog,
        record: &PhoneRecord,
        access: &PhoneAccess,
        (status, elsewhere): (Option<&PhoneStatus>, bool),
        redirect: &RedirectLookup,
    ) -> PhoneSummary {
        let (state, link) = state_of(status, elsewhere);
        // From memory once seen since start: listing thousands of phones reads no audits.
        let last = audit.last_fetch(&record.mac);
        let pinned = access.pinned_vendor.clone();
        PhoneSummary {
            mac: record.mac.to_string(),
            user: record.username.clone(),
            name: record.cn.clone(),
            vendor: last.as_ref().map(|l| l.vendor.clone()).or(pinned),
            state,
            config_version: record.config_version,
            link,
            last_fetch: last.map(|l| l.at),
            link_down_since: status.and_then(|s| s.link_down_since),
            redirect: redirect.view(&record.mac, access),
        }
    }

    /// Every phone, filtered by `q` (MAC, user or name, case-insensitive) and `state`.
    /// The answer to one admin door request (the members of its `<mt>Result`); `Subscribe` is
    /// the session's own business and answers an empty object here.
    pub async fn answer(&self, request: AdminRequest) -> Result<serde_json::Value, AdminFailure> {
        let json =
            |v: Result<serde_json::Value, serde_json::Error>| v.map_err(|e| failure(500, e.to_string()));
        Ok(match request {
            AdminRequest::List { query } => {
                let phones = self.list(query.as_deref(), None).await?;
                serde_json::json!({ "phones": json(serde_json::to_value(&phones))? })
            }
            AdminRequest::Get(mac) => {
                let phone = self.detail(&mac).await?;
                serde_json::json!({ "phone": json(serde_json::to_value(&phone))? })
            }
            AdminRequest::Audit(mac) => {
                let entries = self.audit(&mac).await?;
                serde_json::json!({ "entries": json(serde_json::to_value(&entries))? })
            }
            AdminRequest::Act(mac, action) => {
                match action {
                    AdminAction::Resync => self.resync(&mac).await,
                    AdminAction::ReopenEnrolment => self.reopen_enrolment(&mac).await,
                    AdminAction::PinVendor(vendor) => self.pin_vendor(&mac, vendor.as_deref()).await,
                    AdminAction::Delete => self.delete(&mac).await,
                    AdminAction::KeyProfile(profile) => self.set_key_profile(&mac, profile.as_deref()).await,
                    AdminAction::RegisterAgain(code) => self.register_again(&mac, code.as_deref()).await,
                }?;
                serde_json::json!({ "ok": true })
            }
            AdminRequest::Subscribe => serde_json::json!({}),
            AdminRequest::Pbx => json(serde_json::to_value(self.pbx_identity()))?,
            AdminRequest::Directory => json(serde_json::to_value(self.directory_view()))?,
            AdminRequest::PutKeyProfile { name, body } => {
                self.put_key_profile(&name, &body).await?;
                serde_json::json!({ "ok": true })
            }
            AdminRequest::DeleteKeyProfile(name) => {
                self.delete_key_profile(&name).await?;
                serde_json::json!({ "ok": true })
            }
            AdminRequest::ResetPbx => {
                self.reset_pbx_pin().await?;
                serde_json::json!({ "ok": true })
            }
        })
    }

    pub async fn list(
        &self,
        q: Option<&str>,
        state: Option<PhoneState>,
    ) -> Result<Vec<PhoneSummary>, AdminFailure> {
        let live = self.live_states().await?;
        let q = q.map(|q| {
            q.to_ascii_lowercase()
                .chars()
                .filter(|c| !matches!(c, ':' | '-' | '.'))
                .collect::<String>()
        });
        let audit = Arc::clone(&self.audit);
        // One store round trip for the phones and their states, then the summaries, all off
        // the actix workers.
        let mut out = self
            .on_store(move |store| {
                let records = store.phones_with_access()?;
                Ok(records
                    .iter()
                    .map(|(r, access)| Self::summary(&audit, r, access, live.of(&r.mac), &live.redirect))
                    .filter(|p| state.is_none_or(|s| p.state == s))
                    .filter(|p| {
                        q.as_deref().is_none_or(|q| {
                            p.mac.contains(q)
                                || p.user.to_lowercase().contains(q)
                                || p.name.to_lowercase().contains(q)
                        })
                    })
                    .collect::<Vec<PhoneSummary>>())
            })
            .await?;
        out.sort_by(|a, b| a.mac.cmp(&b.mac));
        Ok(out)
    }

    /// Every stored phone, every running job's status and the phones other instances hold.
    async fn phones_and_statuses(&self) -> Result<(Vec<PhoneRecord>, LiveStates), AdminFailure> {
        let records = self.on_store(|store| store.phones()).await?;
        Ok((records, self.live_states().await?))
    }

    fn redirect_lookup(&self) -> RedirectLookup {
        RedirectLookup {
            services: Arc::clone(&self.redirect_services),
            vendors: self.vendors.clone(),
        }
    }

    /// Every running job's status and the phones other instances hold.
    async fn live_states(&self) -> Result<LiveStates, AdminFailure> {
        let statuses = self
            .registry
            .send(AllStatuses)
            .await
            .map_err(|_| failure(503, "the phone registry is not running"))?;
        let elsewhere = self.held_elsewhere().await?;
        let redirect = self.redirect_lookup();
        Ok(LiveStates {
            statuses,
            elsewhere,
            redirect,
        })
    }

    async fn held_elsewhere(&self) -> Result<std::collections::HashSet<Mac>, AdminFailure> {
        let Some(leases) = self.leases.clone() else {
            return Ok(Default::default());
        };
        Self::off_worker(move || leases.held_elsewhere())
            .await?
            .map_err(Self::store_failure)
    }

    async fn record(&self, mac: &Mac) -> Result<PhoneRecord, AdminFailure> {
        let mac = *mac;
        self.on_store(move |store| store.get_phone(&mac))
            .await?
            .ok_or_else(|| failure(404, format!("no phone {mac}")))
    }

    /// One phone in detail.
    pub async fn detail(&self, mac: &Mac) -> Result<PhoneDetail, AdminFailure> {
        let record = self.record(mac).await?;
        let status = self.registry.send(PhoneStatusOf(*mac)).await.ok().flatten();
        let elsewhere = self.held_elsewhere().await?.contains(mac);
        let redirect = self.redirect_lookup();
        let (access, recent, summary) = {
            let (mac, record, audit) = (*mac, record.clone(), Arc::clone(&self.audit));
            let live = (status.clone(), elsewhere);
            self.on_store(move |store| {
                let recent = audit.recent(&mac, AUDIT_LIMIT).unwrap_or_default();
                let access = store.get_access(&mac)?;
                let summary = Self::summary(&audit, &record, &access, (live.0.as_ref(), live.1), &redirect);
                Ok((access, recent, summary))
            })
            .await?
        };
        let last_ok = recent.iter().rev().find(|e| e.status == 200 || e.status == 304);
        Ok(PhoneDetail {
            summary,
            dns: record.dns.clone(),
            pinned_vendor: access.pinned_vendor.clone(),
            provisioned_at: record.provisioned_at,
            configured_at: record.configured_at,
            served_version: last_ok.map(|e| e.config_version),
            last_fetch_from: last_ok.map(|e| e.client.clone()),
            last_user_agent: last_ok.map(|e| e.user_agent.clone()),
            enrolled: access.enrolled(&record),
            key_profile: access.key_profile.clone(),
            keys: self.users.keys_for(&record, &access),
            configuration: record
                .configs
                .iter()
                .map(|c| ConfigSummary {
                    key: c.key.clone(),
                    kind: c.kind.clone(),
                    body: c.body.to_map(),
                })
                .collect(),
        })
    }

    /// The phone's downloads, oldest first, pending ones included.
    pub async fn audit(&self, mac: &Mac) -> Result<Vec<AuditEntry>, AdminFailure> {
        self.record(mac).await?;
        let (mac, audit) = (*mac, Arc::clone(&self.audit));
        Self::off_worker(move || audit.recent(&mac, AUDIT_LIMIT))
            .await?
            .map_err(Self::store_failure)
    }

    /// Queues a resync NOTIFY to the phone.
    pub async fn resync(&self, mac: &Mac) -> Result<(), AdminFailure> {
        let record = self.record(mac).await?;
        let Some(notifier) = &self.notifier else {
            return Err(failure(
                409,
                "NOTIFY is switched off (provisioning.notify = false)",
            ));
        };
        let password = record.password.as_ref().and_then(|sealed| {
            self.sealer
                .open(sealed, &innoprov::seal::SealPurpose::UserPassword(*mac))
                .ok()
        });
        notifier
            .try_send(PhoneConfigChanged {
                mac: *mac,
                user: record.username.clone(),
                password,
            })
            .map_err(|_| failure(503, "the notifier is busy"))?;
        log::info!("phone {mac}: resync requested by an admin");
        Ok(())
    }

    /// Reopens the phone's enrolment window from now.
    pub async fn reopen_enrolment(&self, mac: &Mac) -> Result<(), AdminFailure> {
        let (store, phone) = (Arc::clone(&self.store), *mac);
        let reopened =
            Self::off_worker(move || admin::reopen_enrolment(store.as_ref(), &phone, now_unix())).await?;
        reopened.map_err(|e| match e {
            admin::AdminError::UnknownPhone(_) => failure(404, format!("no phone {mac}")),
            other => Self::store_failure(other),
        })?;
        log::info!("phone {mac}: enrolment window reopened by an admin");
        Ok(())
    }

    /// Pins the phone to `vendor`, or unpins it.
    pub async fn pin_vendor(&self, mac: &Mac, vendor: Option<&str>) -> Result<(), AdminFailure> {
        let (store, vendors, phone) = (Arc::clone(&self.store), self.vendors.clone(), *mac);
        let name = vendor.map(str::to_string);
        let pinned =
            Self::off_worker(move || admin::pin_vendor(store.as_ref(), &vendors, &phone, name.as_deref()))
                .await?;
        pinned.map_err(|e| match e {
            admin::AdminError::UnknownPhone(_) => failure(404, format!("no phone {mac}")),
            admin::AdminError::UnknownVendor(name) => failure(400, format!("no vendor named {name:?}")),
            other => Self::store_failure(other),
        })?;
        log::info!("phone {mac}: vendor pinned to {vendor:?} by an admin");
        // Its vendor decides its redirect service: registered anew under the pinned one (an
        // error only says that vendor has none).
        if let Some(worker) = &self.redirect {
            let _ = worker
                .send(crate::phones::redirect::RegisterAgain(*mac, None))
                .await;
        }
        Ok(())
    }

    /// Deletes the phone: its job and link end, its data is gone.
    pub async fn delete(&self, mac: &Mac) -> Result<(), AdminFailure> {
        match self.registry.send(DeletePhone(*mac)).await {
            Ok(Ok(true)) => {
                self.audit.forget(mac);
                Ok(())
            }
            Ok(Ok(false)) => Err(failure(404, format!("no phone {mac}"))),
            Ok(Err(e)) => Err(Self::store_failure(e)),
            Err(_) => Err(failure(503, "the phone registry is not running")),
        }
    }

    /// Registers the phone with its vendor's redirect service again (409 when no service is
    /// configured for it, 404 for an unknown phone), keeping `device_code` (the code printed
    /// on the device, four letters or digits; 400 otherwise) when given.
    pub async fn register_again(&self, mac: &Mac, device_code: Option<&str>) -> Result<(), AdminFailure> {
        let code = match device_code.map(str::trim).filter(|c| !c.is_empty()) {
            Some(code) if innoprov::redirect::gigaset::check_code_form(code) => {
                Some(code.to_ascii_uppercase())
            }
            Some(_) => {
                return Err(failure(
                    400,
                    "device_code must be the 4 letters or digits printed after the MAC on the device's label",
                ));
            }
            None => None,
        };
        let Some(worker) = &self.redirect else {
            return Err(failure(409, "no redirect service is configured"));
        };
        match worker
            .send(crate::phones::redirect::RegisterAgain(*mac, code))
            .await
        {
            Ok(Ok(())) => {
                log::info!("phone {mac}: registration with its redirect service requested by an admin");
                Ok(())
            }
            Ok(Err(e)) if e.starts_with("no phone") => Err(failure(404, e)),
            Ok(Err(e)) => Err(failure(409, e)),
            Err(_) => Err(failure(503, "the redirect worker is not running")),
        }
    }

    /// The key profiles, by name.
    pub fn key_profiles(&self) -> Vec<KeyProfile> {
        self.users.profiles().values().cloned().collect()
    }

    /// Creates or replaces the profile `name` from a `{"keys":[...]}` body (400 naming the bad
    /// key; nothing stored then).
    pub async fn put_key_profile(&self, name: &str, body: &[u8]) -> Result<(), AdminFailure> {
        let profile = KeyProfile::from_body(name, body).map_err(|e| failure(400, e.to_string()))?;
        let users = Arc::clone(&self.users);
        Self::off_worker(move || users.put_profile(profile))
            .await?
            .map_err(Self::store_failure)?;
        log::info!("key profile {name:?} stored by an admin");
        Ok(())
    }

    /// Deletes the profile `name` (404 when there is none).
    pub async fn delete_key_profile(&self, name: &str) -> Result<(), AdminFailure> {
        let (users, profile) = (Arc::clone(&self.users), name.to_string());
        let existed = Self::off_worker(move || users.delete_profile(&profile))
            .await?
            .map_err(Self::store_failure)?;
        if !existed {
            return Err(failure(404, format!("no key profile {name:?}")));
        }
        log::info!("key profile {name:?} deleted by an admin");
        Ok(())
    }

    /// Gives the phone the profile `name`, or takes its own away with `None` (400 for an
    /// unknown profile, 404 for an unknown phone).
    pub async fn set_key_profile(&self, mac: &Mac, name: Option<&str>) -> Result<(), AdminFailure> {
        if let Some(name) = name {
            let (users, wanted) = (Arc::clone(&self.users), name.to_string());
            let known = Self::off_worker(move || users.has_profile(&wanted))
                .await?
                .map_err(Self::store_failure)?;
            if !known {
                return Err(failure(400, format!("no key profile {name:?}")));
            }
        }
        self.record(mac).await?;
        let (phone, profile) = (*mac, name.map(str::to_string));
        self.on_store(move |store| store.update_access(&phone, &mut |a| a.key_profile = profile.clone()))
            .await?;
        log::info!("phone {mac}: key profile set to {name:?} by an admin");
        Ok(())
    }

    /// What the admin page's directory panel shows: the state, the listed users (name, SIP
    /// name) to pick BLF partners from, and the key profiles.
    pub fn directory_view(&self) -> DirectoryView {
        let table = self.users.table();
        let mut users: Vec<DirectoryUser> = table
            .users()
            .filter(|u| !u.h323.is_empty())
            .map(|u| DirectoryUser {
                sip: u.h323.clone(),
                name: [&u.dn, &u.cn, &u.h323]
                    .into_iter()
                    .find(|n| !n.is_empty())
                    .cloned()
                    .unwrap_or_default(),
                template: u.config.clone(),
            })
            .collect();
        users.sort_by_key(|u| u.name.to_lowercase());
        DirectoryView {
            status: self.users.status(),
            users,
            profiles: self.key_profiles(),
        }
    }

    /// The directory's state: rows, last change, replication and its problem.
    pub fn directory_status(&self) -> DirectoryStatus {
        self.users.status()
    }

    /// Who the PBX is: `app.object`, or the pinned name.
    pub fn pbx_identity(&self) -> crate::edge::pbx_pin::PbxIdentity {
        self.pbx.identity()
    }

    /// Forgets the pinned PBX (409 when `app.object` names it: nothing is pinned then).
    pub async fn reset_pbx_pin(&self) -> Result<(), AdminFailure> {
        if let Some(object) = self.pbx.identity().object {
            return Err(failure(
                409,
                format!("the PBX is app.object {object:?}, not a pin; change the configuration"),
            ));
        }
        let pbx = Arc::clone(&self.pbx);
        match actix_web::rt::task::spawn_blocking(move || pbx.reset()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Self::store_failure(e)),
            Err(e) => Err(failure(500, format!("resetting the pin ended: {e}"))),
        }
    }

    /// The phones and links by state, in the Prometheus text format (gauges of `/metrics`).
    pub async fn state_gauges(&self) -> Result<String, AdminFailure> {
        let (records, live) = self.phones_and_statuses().await?;
        let mut phones: std::collections::BTreeMap<&'static str, u64> = [
            "stored",
            "linking",
            "configured",
            "updating",
            "link_down",
            "failed",
            "elsewhere",
        ]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
        let mut links: std::collections::BTreeMap<&'static str, u64> = ["up", "down", "none", "elsewhere"]
            .into_iter()
            .map(|s| (s, 0))
            .collect();
        for record in &records {
            let (status, elsewhere) = live.of(&record.mac);
            let (state, link) = state_of(status, elsewhere);
            let state = state.as_str();
            let link = match link {
                LinkState::Up => "up",
                LinkState::Down => "down",
                LinkState::None => "none",
                LinkState::Elsewhere => "elsewhere",
            };
            *phones.entry(state).or_default() += 1;
            *links.entry(link).or_default() += 1;
        }
        let mut text =
            String::from("# HELP innoprov_phones Phones by state.\n# TYPE innoprov_phones gauge\n");
        for (state, n) in phones {
            text.push_str(&format!("innoprov_phones{{state=\"{state}\"}} {n}\n"));
        }
        text.push_str("# HELP innoprov_links Devices links by state.\n# TYPE innoprov_links gauge\n");
        for (link, n) in links {
            text.push_str(&format!("innoprov_links{{state=\"{link}\"}} {n}\n"));
        }
        Ok(text)
    }

    /// Why the service is not ready, if it is not (`/readyz`).
    pub async fn not_ready(&self) -> Option<String> {
        let store = Arc::clone(&self.store);
        match Self::off_worker(move || store.get_access(&Mac::from_bytes([0; 6]))).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Some(format!("the store is not usable: {e}")),
            Err(e) => return Some(format!("the store is not usable: {}", e.reason)),
        }
        match self.directory.send(CurrentDevicesUrl).await {
            Ok(Some(_)) => None,
            Ok(None) => Some("no Devices sysclient URL is known yet".into()),
            Err(_) => Some("the service directory is not running".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use innoprov::appws::Inbound;

    fn parse(text: &str) -> Result<AdminRequest, String> {
        AdminRequest::parse(&Inbound::parse(text).expect("envelope"))
    }

    #[test]
    fn admin_messages_are_decoded_at_the_edge() {
        let mac: Mac = "805ec000003d".parse().expect("mac");
        assert_eq!(
            parse(r#"{"mt":"AdminListPhones","q":"alice"}"#),
            Ok(AdminRequest::List {
                query: Some("alice".into())
            })
        );
        assert_eq!(
            parse(r#"{"mt":"AdminGetPhone","mac":"80:5E:C0:00:00:3D"}"#),
            Ok(AdminRequest::Get(mac))
        );
        assert_eq!(
            parse(r#"{"mt":"AdminAction","mac":"805ec000003d","action":"vendor","vendor":null}"#),
            Ok(AdminRequest::Act(mac, AdminAction::PinVendor(None)))
        );
        assert_eq!(
            parse(r#"{"mt":"AdminAction","mac":"805ec000003d","action":"vendor","vendor":"snom"}"#),
            Ok(AdminRequest::Act(
                mac,
                AdminAction::PinVendor(Some("snom".into()))
            ))
        );
        assert_eq!(parse(r#"{"mt":"AdminSubscribe"}"#), Ok(AdminRequest::Subscribe));
        assert!(parse(r#"{"mt":"AdminAudit","mac":"nope"}"#).is_err_and(|e| e.starts_with("malformed MAC")));
        assert_eq!(
            parse(r#"{"mt":"AdminAction","mac":"805ec000003d","action":"reboot"}"#),
            Err("unknown action \"reboot\"".into())
        );
        assert_eq!(
            parse(r#"{"mt":"AdminShutdown"}"#),
            Err("unknown admin message AdminShutdown".into())
        );
    }
}
