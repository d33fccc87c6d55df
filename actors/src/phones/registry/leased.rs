//! The registry's side of several instances on one database: this instance runs a job only
//! for the phones whose lease it holds (the core's [`Leases`] trait, through a
//! [`LeaseHandle`]). What to do and when is decided by the core's [`LeaseBook`] and
//! [`ClaimWait`]; this file only runs their timers and store calls and carries out their
//! [`LeaseAction`]s:
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
//! - Every `lease / 30` (250 ms to 1 s) it looks for instances whose database session ended
//!   (a crash); one found so on two looks in a row has its leases ended at once, and a
//!   renewal here (and, through NOTIFY `released`, on every instance) claims its phones.
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

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use innoprov::leases::{ClaimRefused, ClaimStep, ClaimWait, LeaseAction, LeaseBook, Route};
use innoprov::outcome::ProvisionFailure;
use innoprov::store::{Leases, Renewal, Store, StoreError};
use innoprov::{Mac, PhoneRecord};

use super::{PhoneRegistry, Provision};
use crate::phones::phone_job::{JobStart, Retire};
use crate::store::{LeaseHandle, StoreEvent};

/// Why a ProvisioningPhone is refused during a shutdown.
const SHUTTING_DOWN: &str = "the service is shutting down";

/// The leases of this instance, as the registry keeps them.
pub struct LeaseDuty {
    /// This instance's leases (tokens, claims, renewals) and the other instances' messages.
    handle: LeaseHandle,
    /// The phones' records: a newly held phone's job starts from its stored one.
    store: Arc<dyn Store>,
    /// The decisions: when to renew, what to claim, give up, hand over.
    book: LeaseBook,
    /// Whether a look for departed instances is under way (one at a time).
    looking: bool,
}

impl LeaseDuty {
    /// The leases of `handle`, records in `store`; `connects_per_second` bounds each claim of
    /// free phones.
    pub fn new(handle: LeaseHandle, store: Arc<dyn Store>, connects_per_second: u32) -> LeaseDuty {
        let book = LeaseBook::new(handle.leases.lease(), connects_per_second, Instant::now());
        LeaseDuty {
            handle,
            store,
            book,
            looking: false,
        }
    }

    /// The leases.
    fn leases(&self) -> &Arc<dyn Leases> {
        &self.handle.leases
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
        let mut events = duty.handle.events();
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
        ctx.run_interval(duty.book.renew_every(), |act, ctx| act.renew_and_claim(ctx));
        ctx.run_interval(duty.book.check_every(), |act, _ctx| act.give_up_if_stale());
        ctx.run_interval(duty.book.look_every(), |act, ctx| act.look_for_departed(ctx));
        self.renew_and_claim(ctx);
    }

    /// Closes every link when the leases may be expiring unrenewed.
    fn give_up_if_stale(&mut self) {
        let Some(duty) = &mut self.leases else { return };
        let Some(LeaseAction::GiveUp { unrenewed_for }) = duty.book.check(Instant::now()) else {
            return;
        };
        duty.leases().forget();
        self.shared.link.links_allowed.send_replace(false);
        log::error!(
            "leases not renewed for {} s: closing this instance's {} links until the database answers",
            unrenewed_for.as_secs(),
            self.jobs.len()
        );
        for (_, entry) in self.jobs.drain() {
            entry.addr.do_send(Retire::default());
        }
    }

    /// Looks for instances whose database session ended; ends the leases of those found so
    /// on two looks in a row, then claims their phones at once.
    fn look_for_departed(&mut self, ctx: &mut Context<Self>) {
        let Some(duty) = &mut self.leases else { return };
        if duty.looking || duty.book.stopping() {
            return;
        }
        duty.looking = true;
        let leases = Arc::clone(duty.leases());
        let look = tokio::task::spawn_blocking(move || leases.departed());
        ctx.spawn(look.into_actor(self).map(|found, act, ctx| {
            let Some(duty) = &mut act.leases else { return };
            let departed = match found {
                Ok(Ok(departed)) => departed,
                Ok(Err(e)) => {
                    duty.looking = false;
                    return log::debug!("leases: looking for departed instances: {e}");
                }
                Err(e) => {
                    duty.looking = false;
                    return log::warn!("leases: looking for departed instances: {e}");
                }
            };
            let gone = duty.book.departed(Instant::now(), &departed);
            if gone.is_empty() {
                duty.looking = false;
                return;
            }
            let leases = Arc::clone(duty.leases());
            let end = tokio::task::spawn_blocking(move || {
                let ended = leases.expire_departed(&gone);
                (gone, ended)
            });
            ctx.spawn(end.into_actor(act).map(|ended, act, ctx| {
                if let Some(duty) = &mut act.leases {
                    duty.looking = false;
                }
                match ended {
                    Ok((gone, Ok(n))) if n > 0 => {
                        log::warn!(
                            "instance {} is gone (its database session ended): its {n} leases ended; taking its phones now",
                            gone.join(", ")
                        );
                        act.renew_and_claim(ctx);
                    }
                    Ok((_, Ok(_))) => {}
                    Ok((gone, Err(e))) => log::warn!("leases: ending those of {}: {e}", gone.join(", ")),
                    Err(e) => log::warn!("leases: ending departed instances' leases: {e}"),
                }
            }));
        }));
    }

    fn renew_and_claim(&mut self, ctx: &mut Context<Self>) {
        let Some(duty) = &mut self.leases else { return };
        let Some(LeaseAction::Renew { claim }) = duty.book.renew_due(Instant::now()) else {
            return;
        };
        let (leases, store) = (Arc::clone(duty.leases()), Arc::clone(&duty.store));
        let work = tokio::task::spawn_blocking(move || renew_then_claim(&*leases, &*store, claim));
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            let Some(duty) = &mut act.leases else { return };
            let failed = match result {
                Ok(Ok(done)) => Ok(done),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let (renewal, records) = match failed {
                Ok(done) => done,
                Err(e) => {
                    duty.book.renewal_failed();
                    return log::warn!("leases: {e}");
                }
            };
            let running: Vec<Mac> = act.jobs.keys().copied().collect();
            let gained: Vec<Mac> = records.iter().map(|r| r.mac).collect();
            let leases = Arc::clone(duty.leases());
            let actions = duty
                .book
                .renewed(&running, &|mac| leases.holds(mac), &renewal.lost, &gained);
            act.carry_out(ctx, actions, records);
        }));
    }

    /// Carries out what a renewal decided; `records` are the newly held phones' records.
    fn carry_out(&mut self, ctx: &mut Context<Self>, actions: Vec<LeaseAction>, records: Vec<PhoneRecord>) {
        let mut records: std::collections::HashMap<Mac, PhoneRecord> =
            records.into_iter().map(|r| (r.mac, r)).collect();
        let mut taken = 0;
        for action in actions {
            match action {
                LeaseAction::AllowLinks => {
                    self.shared.link.links_allowed.send_replace(true);
                    log::info!("leases renewed again");
                }
                LeaseAction::Retire(mac) => {
                    if let Some(entry) = self.jobs.remove(&mac) {
                        log::warn!(
                            "phone {mac}: its lease is gone (taken over or deleted); closing its link"
                        );
                        entry.addr.do_send(Retire::default());
                    }
                }
                LeaseAction::Link(mac) => {
                    if let Some(record) = records.remove(&mac) {
                        self.next_generation = self.next_generation.max(record.generation + 1);
                        self.spawn(ctx, record, JobStart::Resume);
                        taken += 1;
                    }
                }
                LeaseAction::Renew { .. } | LeaseAction::GiveUp { .. } => {}
            }
        }
        if taken > 0 {
            log::info!("took {taken} phones' leases; linking them");
        }
    }

    /// A ProvisioningPhone on an instance with leases: go on at once when this instance holds
    /// the phone, else claim it (asking its owner to hand it over) first.
    pub(super) fn provision_leased(&mut self, msg: Provision, ctx: &mut Context<Self>) {
        let Some(duty) = &self.leases else {
            return self.provision_now(msg, ctx);
        };
        let mac = msg.record.mac;
        let wait = match duty.book.route(&mac, duty.leases().holds(&mac)) {
            Route::Now => return self.provision_now(msg, ctx),
            Route::Busy => {
                let _ = msg.reply.send(Err(ProvisionFailure::Busy(SHUTTING_DOWN)));
                return;
            }
            Route::Claim(wait) => wait,
        };
        let claim = claim_or_ask(duty.handle.clone(), Arc::clone(&duty.store), mac, wait);
        ctx.spawn(claim.into_actor(self).map(move |outcome, act, ctx| {
            let decided = outcome.and_then(|stored| {
                let after = act.leases.as_ref().map_or(Err(ClaimRefused::MovedOn), |duty| {
                    duty.book.provision_after_claim(&mac, duty.leases().holds(&mac))
                });
                match after {
                    Ok(()) => Ok(stored),
                    Err(ClaimRefused::ShuttingDown) => Err(ProvisionFailure::Busy(SHUTTING_DOWN)),
                    Err(ClaimRefused::MovedOn) => Err(ProvisionFailure::Store(
                        "the phone's lease moved on while it was being claimed; nothing was stored".into(),
                    )),
                }
            });
            match decided {
                Ok(stored) => {
                    // Generations rise above what another instance stored, whatever the clocks.
                    if let Some(stored) = stored {
                        act.next_generation = act.next_generation.max(stored + 1);
                    }
                    act.provision_now(msg, ctx);
                }
                Err(failure) => {
                    log::warn!("phone {mac}: {failure}");
                    let _ = msg.reply.send(Err(failure));
                }
            }
        }));
    }

    /// For an admin's delete of a phone another instance holds: resolves once this instance
    /// holds it (its link elsewhere closed). `None`: nothing to wait for.
    pub(super) fn claim_for_delete(
        &self,
        mac: Mac,
    ) -> Option<impl Future<Output = Result<(), ProvisionFailure>> + use<>> {
        let duty = self.leases.as_ref()?;
        let wait = duty.book.claim_before_delete(&mac, duty.leases().holds(&mac))?;
        let claim = claim_or_ask(duty.handle.clone(), Arc::clone(&duty.store), mac, wait);
        Some(async move { claim.await.map(|_| ()) })
    }

    /// A job ended with nothing stored for its phone (a new phone Devices refused): let the
    /// lease go, so that neither the table nor the renewals grow with phones that never were.
    pub(super) fn release_if_unstored(&mut self, ctx: &mut Context<Self>, mac: Mac) {
        let Some(duty) = &self.leases else { return };
        if !duty.book.release_unstored(&mac, duty.leases().holds(&mac)) {
            return;
        }
        let (leases, store) = (Arc::clone(duty.leases()), Arc::clone(&duty.store));
        let release = tokio::task::spawn_blocking(move || match store.get_phone(&mac)? {
            Some(_) => Ok(false),
            None => leases.release(&[mac]).map(|()| true),
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
        let leases = Arc::clone(duty.leases());
        if !duty.book.asked(mac, &to, leases.owner(), leases.holds(&mac)) {
            return;
        }
        log::info!("phone {mac}: handing it over to instance {to}");
        let job = self.jobs.remove(&mac);
        let handed = async move {
            if let Some(entry) = job {
                let why = "the phone was provisioned again through another instance".to_string();
                let _ = entry.addr.send(Retire { why: Some(why) }).await;
            }
            tokio::task::spawn_blocking(move || leases.hand_over(&mac, &to)).await
        };
        ctx.spawn(handed.into_actor(self).map(move |result, act, _ctx| {
            if let Some(duty) = &mut act.leases {
                duty.book.handed(&mac);
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
            .is_none_or(|duty| duty.book.may_restart(mac, duty.leases().holds(mac)))
    }

    /// Shutdown: stops claiming and provisioning; the caller retires the jobs, then releases
    /// the returned leases.
    pub(super) fn stop_leases(&mut self) -> Option<Arc<dyn Leases>> {
        let duty = self.leases.as_mut()?;
        duty.book.stop();
        Some(Arc::clone(duty.leases()))
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

/// Renews, claims up to `batch` free phones and loads the records of every phone newly held;
/// a claimed phone whose record is gone (deleted meanwhile) is released again.
fn renew_then_claim(
    leases: &dyn Leases,
    store: &dyn Store,
    batch: usize,
) -> Result<(Renewal, Vec<PhoneRecord>), StoreError> {
    let renewal = leases.renew()?;
    let mut gained = renewal.adopted.clone();
    gained.extend(leases.claim_free(batch)?);
    let mut records = Vec::with_capacity(gained.len());
    let mut gone = Vec::new();
    for mac in gained {
        match store.get_phone(&mac)? {
            Some(record) => records.push(record),
            None => gone.push(mac),
        }
    }
    if !gone.is_empty() {
        leases.release(&gone)?;
    }
    Ok((renewal, records))
}

/// Runs `call` on the blocking pool (every lease call may wait on the database).
async fn blocking<T: Send + 'static>(
    what: &str,
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ProvisionFailure> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| ProvisionFailure::Internal(format!("{what}: {e}")))?
        .map_err(|e| ProvisionFailure::Store(e.to_string()))
}

/// Claims `mac`, asking its current owner to hand it over, for at most `wait` (the steps
/// are [`ClaimWait`]'s); the stored record's generation, if any.
async fn claim_or_ask(
    handle: LeaseHandle,
    store: Arc<dyn Store>,
    mac: Mac,
    wait: std::time::Duration,
) -> Result<Option<u64>, ProvisionFailure> {
    let mut steps = ClaimWait::new(Instant::now(), wait);
    let mut events = handle.events();
    loop {
        let leases = Arc::clone(&handle.leases);
        let claim = blocking("claiming the phone's lease", move || leases.claim(&mac)).await?;
        let (ask, retry) = match steps.after(Instant::now(), claim) {
            ClaimStep::Held => {
                let store = Arc::clone(&store);
                let stored = blocking("reading the phone", move || store.get_phone(&mac)).await?;
                return Ok(stored.map(|record| record.generation));
            }
            ClaimStep::TimedOut { owner } => {
                let secs = wait.as_secs();
                return Err(ProvisionFailure::HeldElsewhere { owner, secs });
            }
            ClaimStep::Wait { ask, retry } => (ask, retry),
        };
        if ask {
            let leases = Arc::clone(&handle.leases);
            blocking("asking for the phone's lease", move || leases.want(&mac)).await?;
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            () = handed(&mut events, mac) => {}
        }
    }
}

/// Resolves once `mac`'s owner says it handed the lease over (or messages were missed).
async fn handed(events: &mut tokio::sync::broadcast::Receiver<StoreEvent>, mac: Mac) {
    loop {
        match events.recv().await {
            Ok(StoreEvent::Handed { mac: handed, .. }) if handed == mac => return,
            // Missed some: it may have been among them.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}
