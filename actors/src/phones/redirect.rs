//! `RedirectWorker`: zero touch at run time. It registers each phone with its vendor's
//! redirect service after a ProvisioningPhone is answered ok and deregisters it after its
//! deletion (interface.md "Zero touch"). The decisions are the core's (`innoprov::redirect`:
//! one exchange per job, the queue with its retries and pace); this actor moves the calls'
//! bytes ([`super::outgoing_http`]) and writes the outcomes off the actix workers.
//!
//! Nothing of it needs to survive a restart in memory: at its start it reads the store, where
//! every phone's status is kept beside its download state (a stored phone of a vendor with a
//! service that is not registered or owned elsewhere is registered again) and where a
//! deletion leaves the deregistration it owes (`redirect_departed`, written by the
//! persistence actor with the delete).
//!
//! A singleton: its end outside a shutdown takes the service down (`ops::fatal`).
//!
//! Messages it takes: [`PhoneChanged`], [`RegisterAgain`], its own [`Enqueue`] and
//! [`CallDone`], and `InjectFault` (tests only).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use innoprov::Mac;
use innoprov::provisioning::Vendors;
use innoprov::redirect::queue::{RedirectQueue, RetryPolicy, Settled};
use innoprov::redirect::{
    Departed, PhoneLogin, RedirectApi, RedirectJob, RedirectOp, RedirectState, RedirectStatus, Step, Verdict,
};
use innoprov::seal::SealPurpose;
use innoprov::store::{Store, StoreError};

use super::outgoing_http;
use crate::ops::fatal::Fatal;

/// How often the queue is looked at.
const TICK: Duration = Duration::from_millis(200);
/// Calls under way at once, all services together.
const MAX_IN_FLIGHT: usize = 8;
/// The most one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// The most calls one job may make (an exchange that never finishes is cut off).
const MAX_CALLS_PER_JOB: usize = 8;

/// The worker.
pub struct RedirectWorker {
    /// The services configured, by vendor name.
    apis: HashMap<&'static str, Arc<dyn RedirectApi>>,
    /// Where statuses and owed deregistrations are kept.
    store: Arc<dyn Store>,
    /// To find a phone's vendor (pinned, else by OUI).
    vendors: Vendors,
    /// innoprov's provisioning URL, where phones are sent.
    public_url: String,
    /// The work.
    queue: RedirectQueue,
    /// TLS to the services.
    tls: Arc<rustls::ClientConfig>,
    /// The queue's clock starts here.
    epoch: Instant,
    /// Calls under way.
    in_flight: usize,
    /// Told if this actor ends outside a shutdown.
    fatal: Fatal,
    /// Opens a phone's provisioning password for the services that hand it to the phone.
    sealer: innoprov::Sealer,
}

impl RedirectWorker {
    /// A worker for `apis`, sending phones to `public_url`.
    pub fn new(
        apis: Vec<Arc<dyn RedirectApi>>,
        store: Arc<dyn Store>,
        vendors: Vendors,
        public_url: String,
        tls: Arc<rustls::ClientConfig>,
        (fatal, sealer): (Fatal, innoprov::Sealer),
    ) -> RedirectWorker {
        let mut queue = RedirectQueue::new(RetryPolicy::default());
        for api in &apis {
            queue.pace(api.vendor(), api.per_second());
        }
        RedirectWorker {
            apis: apis.into_iter().map(|api| (api.vendor(), api)).collect(),
            store,
            vendors,
            public_url,
            queue,
            tls,
            epoch: Instant::now(),
            in_flight: 0,
            fatal,
            sealer,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX / 2)
    }

    /// The service names configured, for the store-side reads.
    fn services(&self) -> Vec<&'static str> {
        self.apis.keys().copied().collect()
    }

    /// Starts the calls that are due.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while self.in_flight < MAX_IN_FLIGHT {
            let now = self.now_ms();
            let Some((mac, op, service)) = self.queue.take_due(now) else {
                return;
            };
            let Some(api) = self.apis.get(service.as_str()).cloned() else {
                // A deregistration owed to a service no longer configured: it stays owed.
                log::warn!("phone {mac}: no [redirect.{service}] configured; its {op:?} waits for it");
                self.queue.finish(
                    &mac,
                    Verdict::Retry(format!("[redirect.{service}] is not configured")),
                    now,
                    innoprov::clock::now_unix(),
                );
                continue;
            };
            self.in_flight += 1;
            let job = RedirectJob {
                op,
                mac,
                url: self.public_url.clone(),
                login: None,
                device_code: None,
            };
            let (store, tls, me) = (Arc::clone(&self.store), Arc::clone(&self.tls), ctx.address());
            let sealer = self.sealer.clone();
            actix::spawn(async move {
                let verdict = run_job(api, job, (store, sealer), tls).await;
                me.do_send(CallDone { mac, verdict });
            });
        }
    }

    /// Writes what a finished call left, off the workers.
    fn settle(&self, mac: Mac, settled: Settled) {
        let store = Arc::clone(&self.store);
        actix::spawn(async move {
            let written = tokio::task::spawn_blocking(move || write_settled(&*store, &mac, settled)).await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::warn!("phone {mac}: cannot keep its redirect status: {e}"),
                Err(e) => log::warn!("phone {mac}: the redirect status writer failed: {e}"),
            }
        });
    }

    /// Reads the store for work (at start, and for one phone after its ProvisioningPhone).
    fn scan(&self, ctx: &mut Context<Self>, only: Option<Mac>) {
        let (store, vendors, services, me) = (
            Arc::clone(&self.store),
            self.vendors.clone(),
            self.services(),
            ctx.address(),
        );
        actix::spawn(async move {
            let found =
                tokio::task::spawn_blocking(move || work_in_store(&*store, &vendors, &services, only)).await;
            match found {
                Ok(Ok(work)) => me.do_send(Enqueue(work)),
                Ok(Err(e)) => log::warn!("redirect: cannot read the store for work: {e}"),
                Err(e) => log::warn!("redirect: the store reader failed: {e}"),
            }
        });
    }
}

/// One job's calls until its verdict. A registration is first noted as pending in the store,
/// so that a deletion meanwhile owes its deregistration, and takes the phone's own login.
async fn run_job(
    api: Arc<dyn RedirectApi>,
    mut job: RedirectJob,
    (store, sealer): (Arc<dyn Store>, innoprov::Sealer),
    tls: Arc<rustls::ClientConfig>,
) -> Verdict {
    let (mac, service, op) = (job.mac, api.vendor(), job.op);
    let facts = tokio::task::spawn_blocking(move || match op {
        RedirectOp::Register => note_pending(&*store, &sealer, &mac, service),
        RedirectOp::Deregister => Ok(JobFacts {
            login: None,
            device_code: innoprov::redirect::departures(&*store)?
                .into_iter()
                .find(|d| d.mac == mac)
                .and_then(|d| d.device_code),
        }),
    })
    .await;
    match facts.map_err(|e| StoreError::Backend(e.to_string())) {
        Ok(Ok(facts)) => (job.login, job.device_code) = (facts.login, facts.device_code),
        Ok(Err(e)) | Err(e) => return Verdict::Retry(format!("cannot read the phone for its {op:?}: {e}")),
    }
    let mut exchange = api.exchange(&job);
    let mut reply = None;
    for _ in 0..MAX_CALLS_PER_JOB {
        let nonce = nonce();
        match exchange.next(reply.take(), innoprov::clock::now_unix(), &nonce) {
            Step::Finished(verdict) => return verdict,
            Step::Call(call) => match outgoing_http::perform(&call, &tls, CALL_TIMEOUT).await {
                Ok(answer) => reply = Some(answer),
                Err(e) => {
                    log::info!("phone {}: {} redirect service: {e}", job.mac, api.vendor());
                    reply = None;
                }
            },
        }
    }
    Verdict::Retry(format!(
        "{} took more than {MAX_CALLS_PER_JOB} calls",
        api.vendor()
    ))
}

/// Fresh random text for the services that sign requests.
fn nonce() -> String {
    let mut bytes = [0u8; 9];
    if getrandom::fill(&mut bytes).is_err() {
        return format!("{:x}", innoprov::clock::now_unix_micros());
    }
    hex::encode(bytes)
}

/// What a job takes from the store besides the MAC.
#[derive(Default)]
struct JobFacts {
    /// The phone's own provisioning login (registrations).
    login: Option<PhoneLogin>,
    /// The device code an admin entered.
    device_code: Option<String>,
}

/// Notes a registration as pending (unless the phone has a status already); what the job
/// needs of the phone: its own provisioning login and its device code.
fn note_pending(
    store: &dyn Store,
    sealer: &innoprov::Sealer,
    mac: &Mac,
    service: &str,
) -> Result<JobFacts, StoreError> {
    let Some(record) = store.get_phone(mac)? else {
        return Ok(JobFacts::default());
    };
    let login = record.prov_password.as_ref().and_then(|sealed| {
        let password = sealer.open(sealed, &SealPurpose::ProvPassword(*mac)).ok()?;
        Some(PhoneLogin {
            user: record.prov_username.clone(),
            password,
        })
    });
    let before = store.get_access(mac)?;
    let facts = JobFacts {
        login,
        device_code: before.device_code.clone(),
    };
    if before.redirect.is_some() {
        return Ok(facts);
    }
    let status = RedirectStatus::new(
        RedirectState::Pending,
        "registering",
        service,
        innoprov::clock::now_unix(),
        None,
    );
    store.update_access(mac, &mut |a| {
        a.redirect.get_or_insert_with(|| status.clone());
    })?;
    store.flush()?;
    Ok(facts)
}

fn write_settled(store: &dyn Store, mac: &Mac, settled: Settled) -> Result<(), StoreError> {
    match settled {
        Settled::Status(status) => {
            if store.get_phone(mac)?.is_none() {
                // Deleted while its registration ran: the service now has it; take it off.
                if status.state == RedirectState::Registered {
                    innoprov::redirect::owe_departure(
                        store,
                        Departed {
                            mac: *mac,
                            service: status.service.clone(),
                            // Kept from the entry the delete wrote.
                            device_code: None,
                        },
                    )?;
                }
            } else {
                log::info!(
                    "phone {mac}: redirect {:?} at {}: {}",
                    status.state,
                    status.service,
                    status.detail
                );
                store.update_access(mac, &mut |a| a.redirect = Some(status.clone()))?;
            }
        }
        Settled::Deregistered { detail } => {
            log::info!("phone {mac}: deregistered from its redirect service ({detail})");
            innoprov::redirect::forget_departure(store, mac)?;
        }
        Settled::DeregisterRetry { detail } => {
            log::info!("phone {mac}: deregistration failed: {detail}");
            return Ok(());
        }
    }
    store.flush()
}

/// The work the store holds: phones of a vendor with a service that are not settled, and the
/// deregistrations owed (all of them, or those of `only`).
fn work_in_store(
    store: &dyn Store,
    vendors: &Vendors,
    services: &[&'static str],
    only: Option<Mac>,
) -> Result<Vec<(Mac, RedirectOp, String)>, StoreError> {
    let has = |name: &str| services.contains(&name);
    let mut work = Vec::new();
    let phones = match only {
        Some(mac) => match store.get_phone(&mac)? {
            Some(record) => vec![(record, store.get_access(&mac)?)],
            None => Vec::new(),
        },
        None => store.phones_with_access()?,
    };
    let present: Vec<Mac> = phones.iter().map(|(r, _)| r.mac).collect();
    for (record, access) in phones {
        if access.redirect.as_ref().is_some_and(RedirectStatus::settled) {
            continue;
        }
        if let Some(service) =
            innoprov::redirect::service_for(vendors, &record.mac, access.pinned_vendor.as_deref(), has)
        {
            work.push((record.mac, RedirectOp::Register, service.to_string()));
        }
    }
    for departed in innoprov::redirect::departures(store)? {
        if present.contains(&departed.mac) {
            // The phone is back: its registration stands.
            innoprov::redirect::forget_departure(store, &departed.mac)?;
            continue;
        }
        if only.is_none_or(|mac| mac == departed.mac) {
            work.push((departed.mac, RedirectOp::Deregister, departed.service));
        }
    }
    Ok(work)
}

impl Actor for RedirectWorker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.scan(ctx, None);
        ctx.run_interval(TICK, |act, ctx| act.pump(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.fatal.report("the redirect worker", "ended");
    }
}

#[cfg(feature = "simulators")]
impl Handler<crate::ops::fatal::InjectFault> for RedirectWorker {
    type Result = ();

    fn handle(&mut self, _msg: crate::ops::fatal::InjectFault, _ctx: &mut Context<Self>) {
        panic!("fault injected into the redirect worker");
    }
}

/// A ProvisioningPhone for this phone was answered ok, or the phone was deleted: register it
/// if its vendor has a service, or deregister it as its deletion noted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PhoneChanged(pub Mac);

impl Handler<PhoneChanged> for RedirectWorker {
    type Result = ();

    fn handle(&mut self, msg: PhoneChanged, ctx: &mut Context<Self>) {
        self.scan(ctx, Some(msg.0));
    }
}

/// Work read from the store.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enqueue(pub Vec<(Mac, RedirectOp, String)>);

impl Handler<Enqueue> for RedirectWorker {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) {
        let now = self.now_ms();
        for (mac, op, service) in msg.0 {
            self.queue.push(mac, op, &service, now);
        }
        self.pump(ctx);
    }
}

/// A job's verdict.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CallDone {
    /// The phone.
    pub mac: Mac,
    /// What the service said.
    pub verdict: Verdict,
}

impl Handler<CallDone> for RedirectWorker {
    type Result = ();

    fn handle(&mut self, msg: CallDone, ctx: &mut Context<Self>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let now = self.now_ms();
        if let Some(settled) = self
            .queue
            .finish(&msg.mac, msg.verdict, now, innoprov::clock::now_unix())
        {
            self.settle(msg.mac, settled);
        }
        self.pump(ctx);
    }
}

/// An admin's "register again": the phone's status is forgotten and it is registered anew,
/// with the device code the admin gave (kept from then on), if any.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct RegisterAgain(pub Mac, pub Option<String>);

impl Handler<RegisterAgain> for RedirectWorker {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, msg: RegisterAgain, _ctx: &mut Context<Self>) -> Self::Result {
        let (store, vendors, services, mac, code) = (
            Arc::clone(&self.store),
            self.vendors.clone(),
            self.services(),
            msg.0,
            msg.1,
        );
        let found = async move {
            tokio::task::spawn_blocking(move || {
                if store.get_phone(&mac)?.is_none() {
                    return Ok(None);
                }
                store.update_access(&mac, &mut |a| {
                    a.redirect = None;
                    if code.is_some() {
                        a.device_code.clone_from(&code);
                    }
                })?;
                store.flush()?;
                work_in_store(&*store, &vendors, &services, Some(mac)).map(Some)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
        };
        Box::pin(found.into_actor(self).map(move |found, act, ctx| match found? {
            None => Err(format!("no phone {mac}")),
            Some(work) if work.is_empty() => Err(format!(
                "phone {mac}: its vendor has no redirect service configured"
            )),
            Some(work) => {
                ctx.notify(Enqueue(work));
                let _ = act;
                Ok(())
            }
        }))
    }
}
