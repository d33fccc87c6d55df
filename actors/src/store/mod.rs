//! # Where what innoprov knows is kept
//!
//! The actors and backends around the core's `Store` trait: group commit, PostgreSQL with its
//! leases and LISTEN connection, and the download audit.
//!
//! May call: [`crate::ops`] only.
//!
//! - [`persistence`]: `Persistence`, the actor through which jobs write phone records, with
//!   group commit (downloads, the audit and the admin core write their own rows directly).
//! - [`postgres_store`]: `PostgresStore`, the store in PostgreSQL (`store.backend = "postgres"`),
//!   with the leases that give each phone one instance and the LISTEN connection that tells
//!   an instance what the others wrote.
//! - [`audit_log`]: the download audit, recorded at once and written in batches.
//! - [`user_directory`]: the PBX's replicated user table and the key profiles, kept as
//!   settings and shared in memory with the downloads and the admin doors.
//! - `slow_store` (tests only, `simulators` feature): a fault that slows every store call.
//! - [`LeaseHandle`]: this instance's leases (the core's [`Leases`] trait) and the lease
//!   messages from the other instances, as the rooms above see them: no room above names a
//!   concrete database type.

pub mod audit_log;
pub mod persistence;
pub mod postgres_store;
#[cfg(feature = "simulators")]
pub mod slow_store;
pub mod user_directory;

pub use postgres_store::StoreEvent;

use std::sync::Arc;

use innoprov::store::Leases;

/// This instance's leases as the registry sees them: the core's trait and the messages from
/// the other instances.
#[derive(Clone)]
pub struct LeaseHandle {
    /// Claims, renewals, tokens and fenced writes.
    pub leases: Arc<dyn Leases>,
    /// Lease messages from the other instances (and `Listening` after a reconnect).
    pub events: tokio::sync::broadcast::Sender<StoreEvent>,
}

impl LeaseHandle {
    /// A new subscription to the lease messages.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }
}
