//! The registry's side of several instances on one PostgreSQL database: this instance runs a
//! job only for the phones whose lease it holds ([`crate::store::postgres_store::leases`]).
//!
//! - Every `lease / 3` (and at once when an instance releases leases, or the LISTEN connection
//!   is back) it renews all its leases in one statement, stops the jobs of phones it no longer
//!   holds, and claims free phones (never leased, expired or released), at most as many as the
//!   Devices connect gate links before the next renewal, so that the survivors of a failed
//!   instance share its phones instead of the first one taking all.
//! - If no renewal has succeeded for `2/3` of a lease (checked every `lease / 12`) it closes
//!   every link at once, through the sockets themselves rather than the jobs' mailboxes
//!   ([`LinkShared::links_allowed`](crate::phones::devices_socket::LinkShared)), and refuses new ones
//!   until a renewal succeeds: by the lease's end another instance may take the phones over,
//!   and two links for one phone must never exist.
//! - A ProvisioningPhone (or an admin's delete) for a phone another instance holds asks that
//!   owner (NOTIFY) to hand the lease over, and goes on once it has; the owner answers its own
//!   pending ProvisioningPhone for the phone as superseded and hands over only after its job
//!   retired (link closed, or given up after 3 s), telling the asker (NOTIFY `handed`); a
//!   second request meanwhile is ignored.
//! - Every callback checks the lease again when it runs: what a renewal, a claim or a
//!   hand-over found may have changed while it ran.
//! - A phone that ends up not stored (a new phone Devices refused) has its lease released.
//! - At shutdown nothing new is taken (a ProvisioningPhone is answered busy), the jobs are
//!   retired (links closed) and then every lease released.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use innoprov::outcome::ProvisionFailure;
use innoprov::store::{Store, StoreError};
use innoprov::{Mac, PhoneRecord};

use super::{PhoneRegistry, Provision};
use crate::phones::phone_job::{JobStart, Retire};
use crate::store::postgres_store::{Claim, PostgresStore, Renewal, StoreEvent};

/// A ProvisioningPhone waiting for another instance's lease tries to claim it again after
/// this, doubling up to [`CLAIM_RETRY_MAX`], and at once when the owner says it handed over:
/// a flood of such requests costs the database a few claims each, not ten a second.
const CLAIM_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between two claims.
const CLAIM_RETRY_MAX: Duration = Duration::from_secs(1);
/// How often it repeats its request to the owner (a NOTIFY may be missed during a reconnect).
const ASK_AGAIN: Duration = Duration::from_secs(2);
/// Why a ProvisioningPhone is refused during a shutdown.
const SHUTTING_DOWN: &str = "the service is shutting down";

/// The leases of this instance, as the registry keeps them.
pub struct LeaseDuty {
    /// The store that holds the leases (and the fencing tokens).
    store: Arc<PostgresStore>,
    /// How long a lease lasts.
    lease: Duration,
    /// Most free phones claimed per renewal.
    claim_batch: i64,
    /// When the latest successful renewal started.
    last_renewed: Instant,
    /// Whether a renewal is under way.
    ticking: bool,
    /// Whether the links were closed because renewals failed.
    gave_up: bool,
    /// Phones being handed to another instance (their job retiring).
    handing_over: HashSet<Mac>,
    /// Set at shutdown: nothing is claimed or provisioned any more.
    stopping: bool,
}

impl LeaseDuty {
    /// Leases of `lease` held in `store`; `connects_per_second` bounds each claim of free phones.
    pub fn new(store: Arc<PostgresStore>, lease: Duration, connects_per_second: u32) -> LeaseDuty {
        let per_renewal = (f64::from(connects_per_second) * (lease / 3).as_secs_f64()) as i64;
        LeaseDuty {
            store,
            lease,
            claim_batch: per_renewal.max(100),
            last_renewed: Instant::now(),
            ticking: false,
            gave_up: false,
            handing_over: HashSet::new(),
            stopping: false,
        }
    }

    /// Whether this instance holds `mac` and is not handing it over.
    fn holds(&self, mac: &Mac) -> bool {
        self.store.holds(mac) && !self.handing_over.contains(mac)
    }

    /// How long a ProvisioningPhone or a delete waits for another instance to hand over.
    fn claim_wait(&self) -> Duration {
        self.lease + Duration::from_secs(2)
    }
}

/// A message from the database (through the store's LISTEN connection).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromStore(pub StoreEvent);

impl PhoneRegistry {
    /// Starts renewing and claiming, and listening for the other instances.
    pub(super) fn start_leases(&mut self, ctx: &mut Context<Self>) {
        let Some(duty) = &self.leases else { return };
        let mut events = duty.store.events();
        let registry = ctx.address().downgrade();
        actix::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    // Missed some: renewing and claiming now covers a release among them.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => StoreEvent::Released,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                match registry.upgrade() {
                    Some(registry) => registry.do_send(FromStore(event)),
                    None => break,
                }
            }
        });
        ctx.run_interval(duty.lease / 3, |act, ctx| act.renew_and_claim(ctx));
        let check = (duty.lease / 12).max(Duration::from_millis(250));
        ctx.run_interval(check, |act, _ctx| act.give_up_if_stale());
        self.renew_and_claim(ctx);
    }

    /// Closes every link when the leases may be expiring unrenewed.
    fn give_up_if_stale(&mut self) {
        let Some(duty) = &mut self.leases else { return };
        if duty.gave_up || duty.stopping || duty.last_renewed.elapsed() < duty.lease * 2 / 3 {
            return;
        }
        duty.gave_up = true;
        duty.store.forget_leases();
        self.shared.link.links_allowed.send_replace(false);
        log::error!(
            "leases not renewed for {} s: closing this instance's {} links until the database answers",
            duty.last_renewed.elapsed().as_secs(),
            self.jobs.len()
        );
        for (_, entry) in self.jobs.drain() {
            entry.addr.do_send(Retire::default());
        }
    }

    fn renew_and_claim(&mut self, ctx: &mut Context<Self>) {
        let Some(duty) = &mut self.leases else { return };
        if duty.ticking || duty.stopping {
            return;
        }
        duty.ticking = true;
        let store = Arc::clone(&duty.store);
        let batch = duty.claim_batch;
        let started = Instant::now();
        let work = tokio::task::spawn_blocking(move || renew_then_claim(&store, batch));
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            let Some(duty) = &mut act.leases else { return };
            duty.ticking = false;
            let (renewal, records) = match result {
                Ok(Ok(done)) => done,
                Ok(Err(e)) => return log::warn!("leases: {e}"),
                Err(e) => return log::warn!("leases: {e}"),
            };
            if duty.stopping {
                return;
            }
            duty.last_renewed = started;
            if duty.gave_up {
                duty.gave_up = false;
                act.shared.link.links_allowed.send_replace(true);
                log::info!("leases renewed again");
            }
            // Whatever this instance runs without holding the phone now (lost at renewal, or
            // while this renewal ran) ends.
            let lost: Vec<Mac> = act
                .jobs
                .keys()
                .filter(|mac| !duty.store.holds(mac) && !duty.handing_over.contains(mac))
                .copied()
                .chain(renewal.lost)
                .collect();
            for mac in lost {
                if let Some(entry) = act.jobs.remove(&mac) {
                    log::warn!("phone {mac}: its lease is gone (taken over or deleted); closing its link");
                    entry.addr.do_send(Retire::default());
                }
            }
            let mut taken = 0;
            for record in records {
                let held = act.leases.as_ref().is_some_and(|duty| duty.holds(&record.mac));
                if held && !act.jobs.contains_key(&record.mac) {
                    act.next_generation = act.next_generation.max(record.generation + 1);
                    act.spawn(ctx, record, JobStart::Resume);
                    taken += 1;
                }
            }
            if taken > 0 {
                log::info!("took {taken} phones' leases; linking them");
            }
        }));
    }

    /// A ProvisioningPhone on an instance with leases: go on at once when this instance holds
    /// the phone, else claim it (asking its owner to hand it over) first.
    pub(super) fn provision_leased(&mut self, msg: Provision, ctx: &mut Context<Self>) {
        let Some(duty) = &self.leases else {
            return self.provision_now(msg, ctx);
        };
        if duty.stopping {
            let _ = msg.reply.send(Err(ProvisionFailure::Busy(SHUTTING_DOWN)));
            return;
        }
        let mac = msg.record.mac;
        if duty.holds(&mac) {
            return self.provision_now(msg, ctx);
        }
        let claim = claim_or_ask(Arc::clone(&duty.store), mac, duty.claim_wait());
        ctx.spawn(claim.into_actor(self).map(move |outcome, act, ctx| {
            let failure = match (outcome, &act.leases) {
                (Ok(_), Some(duty)) if duty.stopping => ProvisionFailure::Busy(SHUTTING_DOWN),
                (Ok(stored), Some(duty)) if duty.holds(&mac) => {
                    // Generations rise above what another instance stored, whatever the clocks.
                    if let Some(stored) = stored {
                        act.next_generation = act.next_generation.max(stored + 1);
                    }
                    return act.provision_now(msg, ctx);
                }
                (Ok(_), _) => ProvisionFailure::Store(
                    "the phone's lease moved on while it was being claimed; nothing was stored".into(),
                ),
                (Err(failure), _) => failure,
            };
            log::warn!("phone {mac}: {failure}");
            let _ = msg.reply.send(Err(failure));
        }));
    }

    /// For an admin's delete of a phone another instance holds: resolves once this instance
    /// holds it (its link elsewhere closed). `None`: nothing to wait for.
    pub(super) fn claim_for_delete(
        &self,
        mac: Mac,
    ) -> Option<impl Future<Output = Result<(), ProvisionFailure>> + use<>> {
        let duty = self.leases.as_ref()?;
        if duty.holds(&mac) || duty.stopping {
            return None;
        }
        let claim = claim_or_ask(Arc::clone(&duty.store), mac, duty.claim_wait());
        Some(async move { claim.await.map(|_| ()) })
    }

    /// A job ended with nothing stored for its phone (a new phone Devices refused): let the
    /// lease go, so that neither the table nor the renewals grow with phones that never were.
    pub(super) fn release_if_unstored(&mut self, ctx: &mut Context<Self>, mac: Mac) {
        let Some(duty) = &self.leases else { return };
        if !duty.holds(&mac) || duty.stopping {
            return;
        }
        let store = Arc::clone(&duty.store);
        let release = tokio::task::spawn_blocking(move || match store.get_phone(&mac)? {
            Some(_) => Ok(false),
            None => store.release(&[mac]).map(|()| true),
        });
        ctx.spawn(
            release
                .into_actor(self)
                .map(move |result, _act, _ctx| match result {
                    Ok(Ok(true)) => log::info!("phone {mac}: not stored; its lease is released"),
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => log::warn!("phone {mac}: releasing its lease: {e}"),
                    Err(e) => log::warn!("phone {mac}: releasing its lease: {e}"),
                }),
        );
    }

    /// Another instance asks for a phone this one holds: close its link, then hand it over.
    fn hand_over(&mut self, ctx: &mut Context<Self>, mac: Mac, to: String) {
        let Some(duty) = &mut self.leases else { return };
        if duty.store.owner() == Some(to.as_str()) || !duty.holds(&mac) || duty.stopping {
            return;
        }
        duty.handing_over.insert(mac);
        log::info!("phone {mac}: handing it over to instance {to}");
        let store = Arc::clone(&duty.store);
        let job = self.jobs.remove(&mac);
        let handed = async move {
            if let Some(entry) = job {
                let why = "the phone was provisioned again through another instance".to_string();
                let _ = entry.addr.send(Retire { why: Some(why) }).await;
            }
            tokio::task::spawn_blocking(move || store.hand_over(&mac, &to)).await
        };
        ctx.spawn(handed.into_actor(self).map(move |result, act, _ctx| {
            if let Some(duty) = &mut act.leases {
                duty.handing_over.remove(&mac);
            }
            match result {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => log::warn!("phone {mac}: its lease was no longer ours to hand over"),
                Ok(Err(e)) => log::warn!("phone {mac}: handing over failed: {e}"),
                Err(e) => log::warn!("phone {mac}: handing over failed: {e}"),
            }
        }));
    }

    /// Schedules a job's restart only while this instance still holds the phone.
    pub(super) fn still_held(&self, mac: &Mac) -> bool {
        self.leases
            .as_ref()
            .is_none_or(|duty| duty.holds(mac) && !duty.stopping)
    }

    /// Shutdown: stops claiming and provisioning; the caller retires the jobs, then releases
    /// the leases through the returned store.
    pub(super) fn stop_leases(&mut self) -> Option<Arc<PostgresStore>> {
        let duty = self.leases.as_mut()?;
        duty.stopping = true;
        Some(Arc::clone(&duty.store))
    }
}

impl Handler<FromStore> for PhoneRegistry {
    type Result = ();

    fn handle(&mut self, msg: FromStore, ctx: &mut Context<Self>) {
        match msg.0 {
            StoreEvent::Listening | StoreEvent::Released => self.renew_and_claim(ctx),
            StoreEvent::Wanted { mac, by } => self.hand_over(ctx, mac, by),
            // Waiting claims listen for it themselves.
            StoreEvent::Handed { .. } => {}
        }
    }
}

/// Renews, claims free phones and loads the records of every phone newly held; a claimed
/// phone whose record is gone (deleted meanwhile) is released again.
fn renew_then_claim(store: &PostgresStore, batch: i64) -> Result<(Renewal, Vec<PhoneRecord>), StoreError> {
    let renewal = store.renew()?;
    let mut gained = renewal.adopted.clone();
    gained.extend(store.claim_free(batch)?);
    let mut records = Vec::with_capacity(gained.len());
    let mut gone = Vec::new();
    for mac in gained {
        match store.get_phone(&mac)? {
            Some(record) => records.push(record),
            None => gone.push(mac),
        }
    }
    if !gone.is_empty() {
        store.release(&gone)?;
    }
    Ok((renewal, records))
}

/// Claims `mac`, asking its current owner to hand it over, for at most `wait`; the stored
/// record's generation, if any.
async fn claim_or_ask(
    store: Arc<PostgresStore>,
    mac: Mac,
    wait: Duration,
) -> Result<Option<u64>, ProvisionFailure> {
    let deadline = Instant::now() + wait;
    let mut asked: Option<Instant> = None;
    let mut events = store.events();
    let mut retry = CLAIM_RETRY;
    loop {
        let claimer = Arc::clone(&store);
        let claim = tokio::task::spawn_blocking(move || claimer.claim(&mac))
            .await
            .map_err(|e| ProvisionFailure::Internal(format!("claiming the phone's lease: {e}")))?
            .map_err(|e| ProvisionFailure::Store(e.to_string()))?;
        let owner = match claim {
            Claim::Held => {
                let reader = Arc::clone(&store);
                return tokio::task::spawn_blocking(move || reader.get_phone(&mac))
                    .await
                    .map_err(|e| ProvisionFailure::Internal(format!("reading the phone: {e}")))?
                    .map(|stored| stored.map(|record| record.generation))
                    .map_err(|e| ProvisionFailure::Store(e.to_string()));
            }
            Claim::HeldBy(owner) => owner,
        };
        if Instant::now() > deadline {
            return Err(ProvisionFailure::HeldElsewhere {
                owner,
                secs: wait.as_secs(),
            });
        }
        if asked.is_none_or(|at| at.elapsed() > ASK_AGAIN) {
            let asker = Arc::clone(&store);
            tokio::task::spawn_blocking(move || asker.want(&mac))
                .await
                .map_err(|e| ProvisionFailure::Internal(format!("asking for the phone's lease: {e}")))?
                .map_err(|e| ProvisionFailure::Store(e.to_string()))?;
            asked = Some(Instant::now());
        }
        let handed_here = async {
            loop {
                match events.recv().await {
                    Ok(StoreEvent::Handed { mac: handed, .. }) if handed == mac => return,
                    // Missed some: it may have been among them.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        return std::future::pending().await;
                    }
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            () = handed_here => {}
        }
        retry = (retry * 2).min(CLAIM_RETRY_MAX);
    }
}
