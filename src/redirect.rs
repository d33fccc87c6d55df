//! Zero touch (interface.md "Zero touch"): each phone registered with its vendor's redirect
//! service, so that a phone out of the box, asking that service where its provisioning server
//! is, is sent to innoprov; deregistered after its deletion.
//!
//! The pieces are plain types, tested without sockets:
//! - [`RedirectApi`]: one vendor's service. It turns a job (register or deregister a MAC,
//!   pointing it at a URL) into an [`Exchange`], which turns replies into the next HTTP call
//!   or a [`Verdict`]. The adapters, each written from the vendor's documents and independent
//!   clients (docs/redirect/): [`yealink`] (RPS XML-RPC), [`snom`] (SRAPS, REST with Hawk),
//!   [`fanvil`] (FDPS XML-RPC), [`poly`] (ZTP, REST with an API key), [`gigaset`] (the
//!   MAC-ID XML-RPC, with the check code an admin types in) and Gigaset GRAPE (the SRAPS
//!   protocol, in [`snom`]). Grandstream GDMS needs the serial number and more that is
//!   unsettled (docs/redirect/fanvil-poly-grandstream.md §3).
//! - [`queue::RedirectQueue`]: which call next, the retries with the one backoff policy, and
//!   each service's pace.
//! - [`hawk`] and [`xmlrpc`]: the two wire forms the services share.
//!
//! What survives a restart lives in the store, not in the queue: a phone's [`RedirectStatus`]
//! beside its download state (a stored phone whose vendor has a service and that is not
//! settled is registered again after a start), and the deregistrations still owed
//! ([`DEPARTED_SETTING`]), written before a deletion is answered.

pub mod fanvil;
pub mod gigaset;
pub mod hawk;
pub mod poly;
pub mod queue;
pub mod snom;
pub mod xmlrpc;
pub mod yealink;

use serde::{Deserialize, Serialize};

use crate::Mac;
use crate::store::{Store, StoreError};

/// The setting that holds the deregistrations still owed: a JSON list of [`Departed`].
pub const DEPARTED_SETTING: &str = "redirect_departed";

/// A deleted phone whose service still has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Departed {
    /// The phone.
    pub mac: Mac,
    /// The service (the vendor's name) it was registered with.
    pub service: String,
    /// Its device code, which the service names it by (Gigaset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_code: Option<String>,
}

/// The deregistrations still owed.
pub fn departures(store: &dyn Store) -> Result<Vec<Departed>, StoreError> {
    match store.get_setting(DEPARTED_SETTING)? {
        None => Ok(Vec::new()),
        Some(bytes) => crate::store::decode_json(DEPARTED_SETTING.as_bytes(), &bytes),
    }
}

/// Changes the list atomically (`Store::update_setting`): two instances deleting phones at
/// the same moment each keep the other's entry. A list that cannot be read is left as it is.
fn change_departures(store: &dyn Store, change: impl Fn(&mut Vec<Departed>)) -> Result<(), StoreError> {
    let mut failed = None;
    store.update_setting(DEPARTED_SETTING, &mut |old| {
        failed = None;
        let mut list: Vec<Departed> = match &old {
            None => Vec::new(),
            Some(bytes) => match crate::store::decode_json(DEPARTED_SETTING.as_bytes(), bytes) {
                Ok(list) => list,
                Err(e) => {
                    failed = Some(e);
                    return old;
                }
            },
        };
        let before = list.clone();
        change(&mut list);
        if list == before {
            return old;
        }
        match crate::store::encode_json(DEPARTED_SETTING, &list) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                failed = Some(e);
                old
            }
        }
    })?;
    failed.map_or(Ok(()), Err)
}

/// Called before a phone is deleted, in the same flush: when a service has (or may have) the
/// phone, its deregistration is owed from now on, whatever happens to this process.
pub fn note_departure(store: &dyn Store, mac: &Mac) -> Result<(), StoreError> {
    let access = store.get_access(mac)?;
    let Some(status) = access.redirect else {
        return Ok(());
    };
    if status.state == RedirectState::OwnedElsewhere {
        return Ok(());
    }
    owe_departure(
        store,
        Departed {
            mac: *mac,
            service: status.service,
            device_code: access.device_code.clone(),
        },
    )
}

/// Notes that `departed` must be deregistered (a phone deleted while its registration ran).
pub fn owe_departure(store: &dyn Store, departed: Departed) -> Result<(), StoreError> {
    change_departures(store, |list| {
        let mut entry = departed.clone();
        if let Some(before) = list.iter().find(|d| d.mac == departed.mac) {
            entry.device_code = entry.device_code.or_else(|| before.device_code.clone());
        }
        list.retain(|d| d.mac != departed.mac);
        list.push(entry);
    })
}

/// The service of a phone: its vendor's, when that vendor has one (`has_service`). Its vendor
/// is the one an admin pinned, else the first vendor owning the MAC's OUI (vendors.toml order):
/// where vendors share a block (Snom and the Snom-built Gigaset P-series), a phone is never
/// registered with a service because its vendor has none and another owner of the block has
/// one; the admin pins it.
pub fn service_for<'a>(
    vendors: &'a crate::provisioning::Vendors,
    mac: &Mac,
    pinned: Option<&str>,
    has_service: impl Fn(&str) -> bool,
) -> Option<&'a str> {
    let vendor = match pinned.and_then(|name| vendors.by_name(name)) {
        Some(vendor) => vendor,
        None => vendors.all().iter().find(|v| v.owns_oui(mac))?,
    };
    has_service(&vendor.name).then_some(vendor.name.as_str())
}

/// The deregistration of `mac` is done (or no longer owed: the phone is back).
pub fn forget_departure(store: &dyn Store, mac: &Mac) -> Result<(), StoreError> {
    change_departures(store, |list| list.retain(|d| d.mac != *mac))
}

/// What to do with a phone at its vendor's service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectOp {
    /// Send the phone to innoprov.
    Register,
    /// Take the phone off the service.
    Deregister,
}

/// One call to make: what, for which phone, and where the phone is to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectJob {
    /// Register or deregister.
    pub op: RedirectOp,
    /// The phone.
    pub mac: Mac,
    /// innoprov's provisioning URL (`provisioning.public_url`), where the phone is sent.
    pub url: String,
    /// The phone's own provisioning login, for the services that hand credentials to the
    /// phone with the redirect (Poly ZTP); `None` for a deregistration or a phone without one.
    /// Never a SIP password.
    pub login: Option<PhoneLogin>,
    /// The code printed on the device that its service asks for (Gigaset's MAC-ID check
    /// code), as an admin entered it.
    pub device_code: Option<String>,
}

/// A phone's own provisioning credentials (`prov_username` and its sealed password, opened):
/// what it presents to innoprov when it fetches its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneLogin {
    /// The user name.
    pub user: String,
    /// The password (its `Debug` hides it).
    pub password: crate::Secret,
}

/// An HTTP request an exchange wants made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// `GET`, `POST`, `PUT`, `DELETE`.
    pub method: &'static str,
    /// The whole URL.
    pub url: String,
    /// Headers besides Host, Content-Length and Connection, which the runtime writes.
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
}

/// The answer to an [`HttpCall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The body, as bounded by the runtime.
    pub body: Vec<u8>,
    /// The headers, names in lower case (SRAPS pages its lists with `Link`).
    pub headers: Vec<(String, String)>,
}

impl HttpReply {
    /// An answer of `status` with `body` and no headers.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> HttpReply {
        HttpReply {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// The first header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How a service's answer ends a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Done; a registration may come with the device PIN the service gives.
    Done {
        /// The PIN the service shows for the phone (Yealink), if any.
        pin: Option<String>,
    },
    /// The phone belongs to another account at the service: its own words.
    OwnedElsewhere(String),
    /// Worth another try later (the service failed or was unreachable): why.
    Retry(String),
    /// The service refused for good (credentials, a malformed request): why. Tried again only
    /// after a restart or an admin's "register again".
    Refused(String),
}

/// What an exchange does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Make this call and hand its reply (or `None`, when it could not be made) back.
    Call(HttpCall),
    /// The job is over.
    Finished(Verdict),
}

/// One job's conversation with a service.
pub trait Exchange: Send {
    /// The next step: called first with `None`, then with each reply. `now` (Unix seconds)
    /// and `nonce` (fresh random text) are for the services that sign requests.
    fn next(&mut self, reply: Option<HttpReply>, now: u64, nonce: &str) -> Step;
}

/// One vendor's redirect service.
pub trait RedirectApi: Send + Sync {
    /// The vendor's name (vendors.toml), which is also the service's.
    fn vendor(&self) -> &'static str;
    /// The calls a second the service is given.
    fn per_second(&self) -> u32 {
        2
    }
    /// The conversation for `job`.
    fn exchange(&self, job: &RedirectJob) -> Box<dyn Exchange>;
}

/// The state REST and the admin page show (interface.md: `registered`, `pending`, `failed`,
/// `owned_elsewhere`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectState {
    /// The service sends the phone to innoprov.
    Registered,
    /// Not yet tried, or under way.
    Pending,
    /// The last try failed (`detail` says why and whether it is tried again).
    Failed,
    /// The phone belongs to another account at the service.
    OwnedElsewhere,
}

/// A phone's registration as stored beside its download state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedirectStatus {
    /// Where it stands.
    pub state: RedirectState,
    /// The service's own words, or ours.
    pub detail: String,
    /// The service (vendor name).
    pub service: String,
    /// When (Unix seconds).
    pub at: u64,
    /// The device PIN the service gave (Yealink), shown to the admin.
    #[serde(default)]
    pub pin: Option<String>,
}

impl RedirectStatus {
    /// A status of `state`.
    pub fn new(
        state: RedirectState,
        detail: &str,
        service: &str,
        at: u64,
        pin: Option<String>,
    ) -> RedirectStatus {
        RedirectStatus {
            state,
            detail: detail.to_string(),
            service: service.to_string(),
            at,
            pin,
        }
    }

    /// Whether a start leaves it alone: registered, or owned by another account. A failed
    /// registration is tried again after a start (the credentials may have been mended).
    pub fn settled(&self) -> bool {
        matches!(
            self.state,
            RedirectState::Registered | RedirectState::OwnedElsewhere
        )
    }
}

/// An exchange of one call: `call`, then `verdict` on its reply.
pub struct OneCall<F: FnMut(&HttpReply) -> Verdict + Send> {
    /// The call, until made.
    call: Option<HttpCall>,
    /// Reads the reply.
    verdict: F,
}

impl<F: FnMut(&HttpReply) -> Verdict + Send> OneCall<F> {
    /// An exchange that makes `call` and judges its reply with `verdict`.
    pub fn new(call: HttpCall, verdict: F) -> OneCall<F> {
        OneCall {
            call: Some(call),
            verdict,
        }
    }
}

impl<F: FnMut(&HttpReply) -> Verdict + Send> Exchange for OneCall<F> {
    fn next(&mut self, reply: Option<HttpReply>, _now: u64, _nonce: &str) -> Step {
        match (self.call.take(), reply) {
            (Some(call), _) => Step::Call(call),
            (None, Some(reply)) => Step::Finished((self.verdict)(&reply)),
            (None, None) => Step::Finished(Verdict::Retry("the service could not be reached".into())),
        }
    }
}

/// The verdict on an HTTP status that is not a success: 401/403 refused (the account's
/// credentials), 408/429/5xx retried, other 4xx refused.
pub fn status_verdict(reply: &HttpReply, service: &str) -> Option<Verdict> {
    let words = || {
        let text = reply.text();
        let text = text.trim();
        let short: String = text.chars().take(200).collect();
        match short.is_empty() {
            true => format!("{service} answered HTTP {}", reply.status),
            false => format!("{service} answered HTTP {}: {short}", reply.status),
        }
    };
    match reply.status {
        200..=299 => None,
        401 | 403 => Some(Verdict::Refused(format!(
            "{} (check the [redirect.{service}] credentials)",
            words()
        ))),
        408 | 429 | 500..=599 => Some(Verdict::Retry(words())),
        _ => Some(Verdict::Refused(words())),
    }
}

/// The `Authorization: Basic` value for `user` and `password`.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_goes_to_its_own_vendors_service_only() {
        let vendors = crate::provisioning::Vendors::builtin();
        let snom_block: Mac = "000413a1b2c3".parse().expect("mac");
        let only_grape = |name: &str| name == "gigaset_p";
        assert_eq!(
            service_for(&vendors, &snom_block, None, only_grape),
            None,
            "a Snom is not sent to GRAPE"
        );
        assert_eq!(
            service_for(&vendors, &snom_block, Some("gigaset_p"), only_grape),
            Some("gigaset_p")
        );
        let both = |name: &str| name == "gigaset_p" || name == "snom";
        assert_eq!(service_for(&vendors, &snom_block, None, both), Some("snom"));
        let fanvil: Mac = "0c383e000001".parse().expect("mac");
        assert_eq!(service_for(&vendors, &fanvil, None, both), None);
    }
}
