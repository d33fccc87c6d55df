//! `PhoneRegistry`: one [`PhoneJob`] per MAC. It starts a job for every ProvisioningPhone
//! (retiring the phone's previous job), resumes every stored phone at start-up, tells jobs
//! where Devices is, and restarts a job that failed or panicked, with backoff. Entries carry
//! the job's generation, so a late end of a replaced job never evicts its replacement.
//!
//! Supervision: a job that ends without being retired (a panic included) is restarted from its
//! stored record on one backon policy (0.5 s doubling to 60 s, jittered). The registry itself
//! is a singleton: if it ends outside a shutdown it reports to [`Fatal`](crate::ops::fatal) and the
//! service exits with status 1.
//!
//! Several instances (PostgreSQL): the registry runs jobs only for the phones whose lease this
//! instance holds, instead of every stored phone ([`leased`]).
//!
//! Messages it takes: [`Provision`] (senders use `try_send`: a full mailbox is "busy"),
//! [`DevicesUrlChanged`], [`JobEnded`], [`DeletePhone`], [`PhoneStatusOf`], [`JobOf`],
//! [`RetireAll`], [`leased::FromStore`] (lease messages from the database), and `InjectFault`
//! (tests only).

pub mod leased;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use innoprov::{Mac, PhoneRecord};

use crate::phones::directory::DevicesUrlChanged;
use crate::phones::phone_job::{
    GetPhoneStatus, JobEnded, JobGenerationChanged, JobReports, JobShared, JobStart, PhoneJob, PhoneStatus,
    ProvisionReply, Retire, SetJobDevicesUrl,
};
use crate::store::persistence::{self, GetPhone, ListPhones, PersistError};

/// Restarts of one phone's job within this window count towards its backoff.
const RESTART_WINDOW: Duration = Duration::from_secs(300);

/// A running job.
struct JobEntry {
    /// Generation of the record the job owns.
    generation: u64,
    /// The job.
    addr: Addr<PhoneJob>,
}

/// The registry.
pub struct PhoneRegistry {
    /// One job per phone.
    jobs: HashMap<Mac, JobEntry>,
    /// The least next generation to hand out (above every stored one).
    next_generation: u64,
    /// Devices' sysclient URL as last known.
    devices_url: Option<String>,
    /// What the jobs share.
    shared: Arc<JobShared>,
    /// Recent restarts per phone, for the backoff.
    restarts: HashMap<Mac, (u32, Instant)>,
    /// Told if this actor ends outside a shutdown.
    fatal: crate::ops::fatal::Fatal,
    /// Several instances: the leases that decide which phones this instance links.
    leases: Option<leased::LeaseDuty>,
}

impl PhoneRegistry {
    /// A registry; it loads the stored phones when started.
    pub fn new(shared: Arc<JobShared>, fatal: crate::ops::fatal::Fatal) -> PhoneRegistry {
        PhoneRegistry {
            jobs: HashMap::new(),
            next_generation: 1,
            devices_url: None,
            shared,
            restarts: HashMap::new(),
            fatal,
            leases: None,
        }
    }

    /// Runs jobs only for the phones whose lease this instance holds.
    pub fn with_leases(mut self, leases: leased::LeaseDuty) -> PhoneRegistry {
        self.leases = Some(leases);
        self
    }

    fn spawn(&mut self, ctx: &mut Context<Self>, record: PhoneRecord, start: JobStart) {
        let mac = record.mac;
        let generation = record.generation;
        // The new job retires the old one and waits for its link to close before linking.
        let previous = self.jobs.remove(&mac).map(|old| old.addr);
        let job = PhoneJob::new(
            record,
            start,
            self.devices_url.clone(),
            Arc::clone(&self.shared),
            JobReports {
                ended: ctx.address().recipient::<JobEnded>().downgrade(),
                generation_changed: ctx.address().recipient::<JobGenerationChanged>().downgrade(),
            },
        )
        .after(previous);
        self.jobs.insert(
            mac,
            JobEntry {
                generation,
                addr: job.start(),
            },
        );
    }

    /// A generation above every one handed out or stored: microseconds since the epoch, so
    /// generations stay unique across restarts even for phones deleted meanwhile.
    fn allocate_generation(&mut self) -> u64 {
        let now = innoprov::clock::now_unix_micros();
        let generation = self.next_generation.max(now);
        self.next_generation = generation + 1;
        generation
    }

    fn schedule_restart(&mut self, ctx: &mut Context<Self>, mac: Mac, generation: u64) {
        let (count, last) = self.restarts.entry(mac).or_insert((0, Instant::now()));
        if last.elapsed() > RESTART_WINDOW {
            *count = 0;
        }
        *count += 1;
        *last = Instant::now();
        // 0.5 s, 1 s, 2 s, ... up to 60 s, jittered: the n-th delay of one backon policy.
        let delay = innoprov::sysclient_session::Backoff {
            min: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
        .delays()
        .nth((*count - 1) as usize)
        .unwrap_or(Duration::from_secs(60));
        log::warn!(
            "phone {mac}: job ended unexpectedly; restarting in {:.1} s",
            delay.as_secs_f64()
        );
        let persistence = self.shared.persistence.clone();
        ctx.run_later(delay, move |act, ctx| {
            if act.jobs.contains_key(&mac) {
                return; // provisioned again meanwhile
            }
            if !act.still_held(&mac) {
                return log::info!("phone {mac}: not restarting: another instance holds it now");
            }
            let load = persistence.send(GetPhone(mac));
            ctx.spawn(load.into_actor(act).map(move |result, act, ctx| match result {
                // The stored record of this generation, or of an older one when a
                // re-provisioning died before its commit point: the working phone goes on.
                Ok(Ok(Some(record))) if record.generation <= generation && !act.jobs.contains_key(&mac) => {
                    log::info!(
                        "phone {mac}: restarting its job (generation {})",
                        record.generation
                    );
                    act.spawn(ctx, record, JobStart::Resume);
                }
                Ok(Ok(Some(record))) => log::info!(
                    "phone {mac}: not restarting generation {generation}: generation {} is stored or running",
                    record.generation
                ),
                Ok(Ok(None)) => log::info!("phone {mac}: not restarting: no longer stored"),
                Ok(Err(e)) => log::error!("phone {mac}: cannot reload for restart: {e}"),
                Err(e) => log::error!("phone {mac}: cannot reload for restart: {e}"),
            }));
        });
    }
}

impl Actor for PhoneRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        if self.leases.is_some() {
            return self.start_leases(ctx);
        }
        // Resume every stored phone before taking any other message.
        let load = self.shared.persistence.send(ListPhones);
        ctx.wait(load.into_actor(self).map(|result, act, ctx| match result {
            Ok(Ok(records)) => {
                let count = records.len();
                for record in records {
                    act.next_generation = act.next_generation.max(record.generation + 1);
                    act.spawn(ctx, record, JobStart::Resume);
                }
                log::info!("resumed {count} stored phones");
            }
            Ok(Err(e)) => log::error!("cannot load stored phones: {e}"),
            Err(e) => log::error!("cannot load stored phones: {e}"),
        }));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.fatal.report("the phone registry", "ended");
    }
}

/// A validated ProvisioningPhone: start (or replace) the phone's job; `reply` is answered once
/// the configuration is stored, or with the reason it is not.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Provision {
    /// The new record (its generation is set here).
    pub record: PhoneRecord,
    /// The answer for the Users session.
    pub reply: ProvisionReply,
}

impl Handler<Provision> for PhoneRegistry {
    type Result = ();

    fn handle(&mut self, msg: Provision, ctx: &mut Context<Self>) {
        if self.leases.is_some() {
            return self.provision_leased(msg, ctx);
        }
        self.provision_now(msg, ctx);
    }
}

impl PhoneRegistry {
    fn provision_now(&mut self, msg: Provision, ctx: &mut Context<Self>) {
        let mut record = msg.record;
        record.generation = self.allocate_generation();
        self.spawn(ctx, record, JobStart::Provision(msg.reply));
    }
}

impl Handler<DevicesUrlChanged> for PhoneRegistry {
    type Result = ();

    fn handle(&mut self, msg: DevicesUrlChanged, _ctx: &mut Context<Self>) {
        self.devices_url = msg.0;
        for entry in self.jobs.values() {
            entry.addr.do_send(SetJobDevicesUrl(self.devices_url.clone()));
        }
    }
}

impl Handler<JobEnded> for PhoneRegistry {
    type Result = ();

    fn handle(&mut self, msg: JobEnded, ctx: &mut Context<Self>) {
        let current = self
            .jobs
            .get(&msg.mac)
            .is_some_and(|e| e.generation == msg.generation);
        if !current {
            return; // a replaced job's late goodbye
        }
        self.jobs.remove(&msg.mac);
        if !msg.retired {
            self.schedule_restart(ctx, msg.mac, msg.generation);
        } else {
            self.release_if_unstored(ctx, msg.mac);
        }
    }
}

impl Handler<JobGenerationChanged> for PhoneRegistry {
    type Result = ();

    fn handle(&mut self, msg: JobGenerationChanged, _ctx: &mut Context<Self>) {
        if let Some(entry) = self.jobs.get_mut(&msg.mac)
            && entry.generation == msg.from
        {
            entry.generation = msg.to;
        }
    }
}

/// Deletes a phone: ends its job and link, removes its record.
#[derive(Message)]
#[rtype(result = "Result<bool, PersistError>")]
pub struct DeletePhone(pub Mac);

impl Handler<DeletePhone> for PhoneRegistry {
    type Result = ResponseFuture<Result<bool, PersistError>>;

    fn handle(&mut self, msg: DeletePhone, ctx: &mut Context<Self>) -> Self::Result {
        // Several instances: the phone moves here first (its link elsewhere closes), so that
        // no other instance goes on linking a deleted phone.
        if let Some(claim) = self.claim_for_delete(msg.0) {
            let registry = ctx.address();
            return Box::pin(async move {
                claim.await.map_err(|e| PersistError::Store(e.to_string()))?;
                registry
                    .send(msg)
                    .await
                    .map_err(|e| PersistError::Store(e.to_string()))?
            });
        }
        if let Some(entry) = self.jobs.remove(&msg.0) {
            entry.addr.do_send(Retire::default());
        }
        log::info!("phone {}: deleting", msg.0);
        let upto = self.allocate_generation();
        let delete = self
            .shared
            .persistence
            .send(persistence::DeletePhone { mac: msg.0, upto });
        let (redirect, mac) = (self.shared.redirect.clone(), msg.0);
        Box::pin(async move {
            let deleted = delete.await.map_err(|e| PersistError::Store(e.to_string()))??;
            // Zero touch: the deregistration the delete noted is due now.
            if let (true, Some(redirect)) = (deleted, redirect) {
                redirect.do_send(crate::phones::redirect::PhoneChanged(mac));
            }
            Ok(deleted)
        })
    }
}

/// A phone's status, if it has a job.
#[derive(Message)]
#[rtype(result = "Option<PhoneStatus>")]
pub struct PhoneStatusOf(pub Mac);

impl Handler<PhoneStatusOf> for PhoneRegistry {
    type Result = ResponseFuture<Option<PhoneStatus>>;

    fn handle(&mut self, msg: PhoneStatusOf, _ctx: &mut Context<Self>) -> Self::Result {
        let job = self.jobs.get(&msg.0).map(|e| e.addr.clone());
        Box::pin(async move { job?.send(GetPhoneStatus).await.ok() })
    }
}

/// Every running job's status (the admin surface's phone list).
#[derive(Message)]
#[rtype(result = "std::collections::HashMap<Mac, PhoneStatus>")]
pub struct AllStatuses;

impl Handler<AllStatuses> for PhoneRegistry {
    type Result = ResponseFuture<std::collections::HashMap<Mac, PhoneStatus>>;

    fn handle(&mut self, _msg: AllStatuses, _ctx: &mut Context<Self>) -> Self::Result {
        let jobs: Vec<(Mac, Addr<PhoneJob>)> =
            self.jobs.iter().map(|(mac, e)| (*mac, e.addr.clone())).collect();
        Box::pin(async move {
            let asks = jobs.into_iter().map(|(mac, addr)| async move {
                addr.send(GetPhoneStatus).await.ok().map(|status| (mac, status))
            });
            futures_util::future::join_all(asks)
                .await
                .into_iter()
                .flatten()
                .collect()
        })
    }
}

/// The job of a phone (tests inject faults through it).
#[derive(Message)]
#[rtype(result = "Option<Addr<PhoneJob>>")]
pub struct JobOf(pub Mac);

impl Handler<JobOf> for PhoneRegistry {
    type Result = Option<Addr<PhoneJob>>;

    fn handle(&mut self, msg: JobOf, _ctx: &mut Context<Self>) -> Self::Result {
        self.jobs.get(&msg.0).map(|e| e.addr.clone())
    }
}

/// Retires every job (shutdown); answers once their links are closed and, with leases, every
/// lease is released, so that the other instances take the phones over at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetireAll;

impl Handler<RetireAll> for PhoneRegistry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: RetireAll, _ctx: &mut Context<Self>) -> Self::Result {
        let leases = self.stop_leases();
        let jobs: Vec<Addr<PhoneJob>> = self.jobs.drain().map(|(_, entry)| entry.addr).collect();
        Box::pin(async move {
            futures_util::future::join_all(jobs.iter().map(|job| job.send(Retire::default()))).await;
            let Some(store) = leases else { return };
            match tokio::task::spawn_blocking(move || store.release_all()).await {
                Ok(Ok(released)) => log::info!("released {released} leases to the other instances"),
                Ok(Err(e)) => log::warn!("releasing leases failed (they expire by themselves): {e}"),
                Err(e) => log::warn!("releasing leases failed (they expire by themselves): {e}"),
            }
        })
    }
}

#[cfg(feature = "simulators")]
impl Handler<crate::ops::fatal::InjectFault> for PhoneRegistry {
    type Result = ();

    fn handle(&mut self, _msg: crate::ops::fatal::InjectFault, _ctx: &mut Context<Self>) {
        panic!("fault injected into the PhoneRegistry singleton");
    }
}
