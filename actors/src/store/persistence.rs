//! The persistence actor: every phone job writes its record through it (the downloads'
//! enrolment state, the audit, the settings and the admin's deletions are written directly,
//! each a row of its own that no job writes). Writes are applied at once and made
//! durable by group commit: one flush covers every write that arrived before it started, and a
//! write is answered only once a flush that covers it has finished. Many concurrent
//! ProvisioningPhone messages therefore cost one fsync per batch, not one each.
//!
//! A store whose writes are durable when they return and may run side by side (PostgreSQL,
//! [`Store::concurrent_writes`]) gets the jobs' record writes in groups instead
//! ([`Store::put_phones_checked`]: one transaction, one commit per group, each write checking
//! the stored generation and the lease's token inside its own statement), up to that many
//! groups at once. A group holds the lock of each of its phones (one write per phone at a
//! time, ordered with the deletes), is formed from whatever waits when a group slot frees
//! (so a busy server gets bigger groups), and each write is answered only after its group's
//! commit.
//!
//! If it ends outside a shutdown (a panic included) it reports to [`Fatal`](crate::ops::fatal), and
//! the service exits with status 1 to be started again: it is not restarted in place.
//!
//! Messages it takes: [`PutPhone`], [`GetPhone`], [`ListPhones`], [`DeletePhone`], [`Flush`],
//! and `InjectFault` (tests only).

use std::sync::Arc;

use actix::prelude::*;
use innoprov::store::{CheckedWrite, Leases, Store, StoreError, Token, WriteOutcome, taken_over};
use innoprov::{Mac, PhoneRecord};
use tokio::sync::watch;

use crate::ops::fatal::Fatal;

/// Mailbox capacity: senders use `send().await`, so a full mailbox pushes back on sessions.
const MAILBOX: usize = 4096;
/// Most record writes in one group (stores with concurrent writes).
const GROUP_MAX: usize = 64;

/// A record write waiting for its group.
struct QueuedWrite {
    /// The whole record.
    record: PhoneRecord,
    /// What it may replace.
    mode: WriteMode,
    /// The lease's token when the writing job started.
    fence: Option<Token>,
    /// Where its outcome goes, once its group committed.
    reply: tokio::sync::oneshot::Sender<Result<(), PersistError>>,
}

/// A group being formed: its writes and the locks of their phones.
#[derive(Default)]
struct Group {
    /// The writes, one per phone.
    writes: Vec<QueuedWrite>,
    /// The phones' locks, held until the group is answered.
    locks: Vec<tokio::sync::OwnedMutexGuard<()>>,
}

/// A persistence failure as the caller sees it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PersistError {
    /// The store refused the write or read.
    #[error("{0}")]
    Store(String),
    /// The write was refused: the phone has been re-provisioned or deleted since.
    #[error("{0}")]
    Stale(String),
    /// The write was applied but the flush that should make it durable failed.
    #[error("flushing the store failed: {0}")]
    Flush(String),
}

impl From<StoreError> for PersistError {
    fn from(e: StoreError) -> Self {
        PersistError::Store(e.to_string())
    }
}

/// How far durability has come, in write tickets.
#[derive(Debug, Clone, Default)]
struct Durability {
    /// Every write with a ticket up to this one is durable.
    flushed: u64,
    /// Writes up to this ticket were covered by a flush that failed (and the error).
    failed: Option<(u64, String)>,
}

/// The actor that owns the store.
pub struct Persistence {
    /// The store; shared with the blocking thread that runs flushes.
    store: Arc<dyn Store>,
    /// Ticket of the latest applied write.
    written: u64,
    /// Whether a flush is running (at most one at a time; the next one batches what waited).
    flushing: bool,
    /// Publishes flush progress to writers waiting for their ticket.
    durable: watch::Sender<Durability>,
    /// Per deleted phone, the generation up to which it is deleted (this process's lifetime;
    /// generations are time-based, so a restart cannot bring an old one back).
    deleted_upto: std::collections::HashMap<Mac, u64>,
    /// Told if this actor ends outside a shutdown.
    fatal: Fatal,
    /// Writes at once, for a store with concurrent writes (else `None`: group commit).
    concurrent: Option<Arc<tokio::sync::Semaphore>>,
    /// Per phone with a concurrent write under way or waiting, the lock that orders them.
    phone_locks: std::collections::HashMap<Mac, Arc<tokio::sync::Mutex<()>>>,
    /// Record writes waiting for a group (stores with concurrent writes).
    queued: std::collections::VecDeque<QueuedWrite>,
    /// Groups being written now (at most the store's concurrent writes).
    groups_in_flight: usize,
    /// Several instances: the leases through which a job's fenced writes go.
    leases: Option<Arc<dyn Leases>>,
}

impl Persistence {
    /// An actor over `store`; start it on its own arbiter so store I/O never stalls sessions.
    pub fn new(store: Arc<dyn Store>, fatal: Fatal) -> Persistence {
        let concurrent = match store.concurrent_writes() {
            0 => None,
            n => Some(Arc::new(tokio::sync::Semaphore::new(n))),
        };
        Persistence {
            store,
            written: 0,
            flushing: false,
            durable: watch::channel(Durability::default()).0,
            deleted_upto: Default::default(),
            fatal,
            concurrent,
            phone_locks: Default::default(),
            queued: Default::default(),
            groups_in_flight: 0,
            leases: None,
        }
    }

    /// Writes fenced records through `leases` (several instances on one database).
    pub fn with_leases(mut self, leases: Option<Arc<dyn Leases>>) -> Persistence {
        self.leases = leases;
        self
    }

    /// The lock ordering `mac`'s concurrent writes.
    fn phone_lock(&mut self, mac: Mac) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(self.phone_locks.entry(mac).or_default())
    }

    /// Forgets `mac`'s lock once no write holds or waits for it.
    fn unlock(&mut self, mac: Mac) {
        if self
            .phone_locks
            .get(&mac)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            self.phone_locks.remove(&mac);
        }
    }

    /// Runs `write` on the blocking pool under `mac`'s lock and a write permit, once the lock
    /// is held and `check` (run on the actor, so it sees the latest deletes) allows it.
    fn concurrently<T: Send + 'static>(
        &mut self,
        mac: Mac,
        permits: Arc<tokio::sync::Semaphore>,
        check: impl FnOnce(&mut Self) -> Result<(), PersistError> + 'static,
        write: impl FnOnce(&dyn Store) -> Result<T, PersistError> + Send + 'static,
    ) -> ResponseActFuture<Self, Result<T, PersistError>> {
        let locked = self.phone_lock(mac).lock_owned();
        let run = locked.into_actor(self).then(move |guard, act, _ctx| {
            let allowed = check(act);
            let store = Arc::clone(&act.store);
            async move {
                let _guard = guard;
                allowed?;
                let _permit = permits
                    .acquire_owned()
                    .await
                    .map_err(|_| PersistError::Store("persistence stopped".into()))?;
                tokio::task::spawn_blocking(move || write(store.as_ref()))
                    .await
                    .map_err(|e| PersistError::Store(format!("write task: {e}")))?
            }
            .into_actor(act)
        });
        Box::pin(run.map(move |result, act, ctx| {
            act.unlock(mac);
            // A queued record write may have waited for this phone's lock.
            act.start_groups(ctx);
            result
        }))
    }

    /// Forms groups from the queued record writes while group slots are free, each written
    /// on the blocking pool as one [`Store::put_phones_checked`].
    fn start_groups(&mut self, ctx: &mut Context<Self>) {
        let slots = self.store.concurrent_writes().max(1);
        while self.groups_in_flight < slots && !self.queued.is_empty() {
            let group = self.next_group();
            if group.writes.is_empty() {
                break;
            }
            self.groups_in_flight += 1;
            let Group { writes, locks } = group;
            let macs: Vec<Mac> = writes.iter().map(|w| w.record.mac).collect();
            let store = Arc::clone(&self.store);
            let write = tokio::task::spawn_blocking(move || {
                let checked: Vec<CheckedWrite<'_>> = writes
                    .iter()
                    .map(|w| CheckedWrite {
                        record: &w.record,
                        mode: w.mode,
                        fence: w.fence,
                    })
                    .collect();
                let outcome = store.put_phones_checked(&checked);
                (writes, outcome)
            });
            ctx.spawn(write.into_actor(self).map(move |done, act, ctx| {
                drop(locks);
                act.groups_in_flight -= 1;
                for mac in macs {
                    act.unlock(mac);
                }
                match done {
                    Ok((writes, outcome)) => answer_group(writes, outcome),
                    // The writes' repliers went with the task: each writer hears of a failure.
                    Err(e) => log::error!("a group of record writes failed: {e}"),
                }
                act.start_groups(ctx);
            }));
        }
    }

    /// Takes from the queue, in order, up to [`GROUP_MAX`] writes of distinct phones whose
    /// lock is free, with those locks. A write of a deleted generation is answered stale at
    /// once; the others stay queued in their order.
    fn next_group(&mut self) -> Group {
        let mut group = Group::default();
        let mut waiting = std::collections::VecDeque::new();
        let mut phones = std::collections::HashSet::new();
        while let Some(write) = self.queued.pop_front() {
            if group.writes.len() >= GROUP_MAX {
                waiting.push_back(write);
                break;
            }
            let mac = write.record.mac;
            if self
                .deleted_upto
                .get(&mac)
                .is_some_and(|upto| write.record.generation <= *upto)
            {
                let _ = write.reply.send(Err(stale(mac)));
                continue;
            }
            if write.fence.is_some() && self.leases.is_none() {
                let _ = write.reply.send(Err(PersistError::Store(format!(
                    "phone {mac}: a fenced write, but this instance has no leases"
                ))));
                continue;
            }
            let lock = if phones.contains(&mac) {
                None
            } else {
                self.phone_lock(mac).try_lock_owned().ok()
            };
            match lock {
                Some(lock) => {
                    phones.insert(mac);
                    group.locks.push(lock);
                    group.writes.push(write);
                }
                None => waiting.push_back(write),
            }
        }
        waiting.extend(self.queued.drain(..));
        self.queued = waiting;
        group
    }

    /// Records a write and returns a future that resolves once it is durable.
    fn durable_after_write(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<(), PersistError>> + use<> {
        self.written += 1;
        let ticket = self.written;
        self.start_flush(ctx);
        let mut progress = self.durable.subscribe();
        async move {
            let state = progress
                .wait_for(|d| d.flushed >= ticket || d.failed.as_ref().is_some_and(|(t, _)| *t >= ticket))
                .await
                .map_err(|_| PersistError::Flush("persistence stopped".into()))?;
            if state.flushed >= ticket {
                Ok(())
            } else {
                Err(PersistError::Flush(
                    state.failed.as_ref().map(|(_, e)| e.clone()).unwrap_or_default(),
                ))
            }
        }
    }

    fn start_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.durable.borrow().flushed >= self.written {
            return;
        }
        self.flushing = true;
        let target = self.written;
        let store = Arc::clone(&self.store);
        let flush = async move {
            timed_flush(store)
                .await
                .map_err(|e| StoreError::Backend(format!("flush task: {e}")))?
        };
        ctx.spawn(flush.into_actor(self).map(move |result, act, ctx| {
            act.flushing = false;
            match result {
                Ok(()) => act.durable.send_modify(|d| d.flushed = d.flushed.max(target)),
                Err(e) => {
                    log::error!("store flush failed: {e}");
                    act.durable
                        .send_modify(|d| d.failed = Some((target, e.to_string())));
                }
            }
            act.start_flush(ctx);
        }));
    }
}

impl Actor for Persistence {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // The jobs' writer is gone (a panic included): see `fatal`.
        self.fatal.report("the persistence actor", "ended");
    }
}

pub use innoprov::store::WriteMode;

/// Flushes the store on the blocking pool, recording how long it took
/// (`innoprov_store_flush_seconds`).
async fn timed_flush(
    store: Arc<dyn Store>,
) -> Result<Result<(), innoprov::StoreError>, tokio::task::JoinError> {
    let started = std::time::Instant::now();
    let flushed = tokio::task::spawn_blocking(move || store.flush()).await;
    crate::ops::metrics::metrics()
        .store_flush
        .observe(started.elapsed().as_secs_f64());
    flushed
}

/// Stores (inserting or replacing atomically) a phone record; answers once it is durable.
#[derive(Message)]
#[rtype(result = "Result<(), PersistError>")]
pub struct PutPhone {
    /// The whole record.
    pub record: PhoneRecord,
    /// Whether it may create or only update.
    pub mode: WriteMode,
    /// The fencing token of the phone's lease when the writing job started (several
    /// instances): the write is refused once another token is current.
    pub fence: Option<Token>,
}

/// Writes `record`: fenced through the leases when the job held a token, else plainly. A
/// fenced write without leases is refused rather than written unfenced.
fn put(
    store: &dyn Store,
    leases: Option<&dyn Leases>,
    record: &PhoneRecord,
    fence: Option<Token>,
) -> Result<(), StoreError> {
    match (fence, leases) {
        (Some(fence), Some(leases)) => leases.put_phone_fenced(record, fence),
        (Some(_), None) => Err(StoreError::Backend(format!(
            "phone {}: a fenced write, but this instance has no leases",
            record.mac
        ))),
        (None, _) => store.put_phone(record),
    }
}

/// Answers each write of a group with what became of it.
fn answer_group(writes: Vec<QueuedWrite>, outcome: Result<Vec<WriteOutcome>, StoreError>) {
    let outcomes = match outcome {
        Ok(outcomes) if outcomes.len() == writes.len() => outcomes,
        Ok(outcomes) => {
            let e = format!("the store answered {} of {} writes", outcomes.len(), writes.len());
            for write in writes {
                let _ = write.reply.send(Err(PersistError::Store(e.clone())));
            }
            return;
        }
        Err(e) => {
            let e = e.to_string();
            for write in writes {
                let _ = write.reply.send(Err(PersistError::Store(e.clone())));
            }
            return;
        }
    };
    for (write, outcome) in writes.into_iter().zip(outcomes) {
        let mac = write.record.mac;
        let answer = match outcome {
            WriteOutcome::Written => Ok(()),
            WriteOutcome::Stale => Err(stale(mac)),
            WriteOutcome::TakenOver => Err(PersistError::Store(taken_over(&mac).to_string())),
        };
        let _ = write.reply.send(answer);
    }
}

fn stale(mac: Mac) -> PersistError {
    PersistError::Stale(format!("phone {mac} was re-provisioned or deleted meanwhile"))
}

impl Handler<PutPhone> for Persistence {
    type Result = ResponseActFuture<Self, Result<(), PersistError>>;

    fn handle(&mut self, msg: PutPhone, ctx: &mut Context<Self>) -> Self::Result {
        if self.concurrent.is_some() {
            let (reply, answer) = tokio::sync::oneshot::channel();
            self.queued.push_back(QueuedWrite {
                record: msg.record,
                mode: msg.mode,
                fence: msg.fence,
                reply,
            });
            self.start_groups(ctx);
            return Box::pin(
                async move {
                    answer
                        .await
                        .unwrap_or_else(|_| Err(PersistError::Store("persistence stopped".into())))
                }
                .into_actor(self),
            );
        }
        let record = msg.record;
        let stored = match self.store.get_phone(&record.mac) {
            Ok(stored) => stored,
            Err(e) => return Box::pin(actix::fut::ready(Err(e.into()))),
        };
        let deleted = self
            .deleted_upto
            .get(&record.mac)
            .is_some_and(|upto| record.generation <= *upto);
        let allowed = !deleted && msg.mode.allows(stored.map(|s| s.generation), record.generation);
        if !allowed {
            let mac = record.mac;
            return Box::pin(actix::fut::ready(Err(stale(mac))));
        }
        if let Err(e) = put(self.store.as_ref(), self.leases.as_deref(), &record, msg.fence) {
            return Box::pin(actix::fut::ready(Err(e.into())));
        }
        Box::pin(self.durable_after_write(ctx).into_actor(self))
    }
}

/// Removes a phone's record; answers (whether there was one) once the removal is durable.
#[derive(Message)]
#[rtype(result = "Result<bool, PersistError>")]
pub struct DeletePhone {
    /// The phone.
    pub mac: Mac,
    /// Every generation up to this one is deleted: a provisioning write of one of them that
    /// arrives later (its job started just before the delete) is refused.
    pub upto: u64,
}

impl Handler<DeletePhone> for Persistence {
    type Result = ResponseActFuture<Self, Result<bool, PersistError>>;

    fn handle(&mut self, msg: DeletePhone, ctx: &mut Context<Self>) -> Self::Result {
        let tombstone = self.deleted_upto.entry(msg.mac).or_insert(0);
        *tombstone = (*tombstone).max(msg.upto);
        let mac = msg.mac;
        if let Some(permits) = self.concurrent.clone() {
            return self.concurrently(
                mac,
                permits,
                |_| Ok(()),
                move |store| {
                    innoprov::redirect::note_departure(store, &mac)?;
                    Ok(store.delete_phone(&mac)?)
                },
            );
        }
        // The deregistration owed to a redirect service is written with the delete (zero touch).
        let noted = innoprov::redirect::note_departure(self.store.as_ref(), &mac);
        let existed = match noted.and_then(|()| self.store.delete_phone(&mac)) {
            Ok(existed) => existed,
            Err(e) => return Box::pin(actix::fut::ready(Err(e.into()))),
        };
        let durable = self.durable_after_write(ctx);
        Box::pin(async move { durable.await.map(|()| existed) }.into_actor(self))
    }
}

/// Reads one phone's record.
#[derive(Message)]
#[rtype(result = "Result<Option<PhoneRecord>, PersistError>")]
pub struct GetPhone(pub Mac);

impl Handler<GetPhone> for Persistence {
    type Result = Result<Option<PhoneRecord>, PersistError>;

    fn handle(&mut self, msg: GetPhone, _ctx: &mut Context<Self>) -> Self::Result {
        Ok(self.store.get_phone(&msg.0)?)
    }
}

/// Reads every phone's record.
#[derive(Message)]
#[rtype(result = "Result<Vec<PhoneRecord>, PersistError>")]
pub struct ListPhones;

impl Handler<ListPhones> for Persistence {
    type Result = Result<Vec<PhoneRecord>, PersistError>;

    fn handle(&mut self, _msg: ListPhones, _ctx: &mut Context<Self>) -> Self::Result {
        Ok(self.store.phones()?)
    }
}

/// Makes everything written so far durable (shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), PersistError>")]
pub struct Flush;

impl Handler<Flush> for Persistence {
    type Result = ResponseFuture<Result<(), PersistError>>;

    fn handle(&mut self, _msg: Flush, _ctx: &mut Context<Self>) -> Self::Result {
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            timed_flush(store)
                .await
                .map_err(|e| PersistError::Flush(e.to_string()))?
                .map_err(|e| PersistError::Flush(e.to_string()))
        })
    }
}

#[cfg(feature = "simulators")]
impl Handler<crate::ops::fatal::InjectFault> for Persistence {
    type Result = ();

    fn handle(&mut self, _msg: crate::ops::fatal::InjectFault, _ctx: &mut Context<Self>) {
        panic!("fault injected into the Persistence singleton");
    }
}
