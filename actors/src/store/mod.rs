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

pub mod audit_log;
pub mod persistence;
pub mod postgres_store;
