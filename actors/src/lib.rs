//! # innoprov-actors: the running service
//!
//! The actor system around the `innoprov` core: one actor per concern, typed messages, each
//! actor in its own file with every message it takes listed at its top.
//!
//! ## Layout
//!
//! Four rooms, each a folder whose module doc says what it owns and what it may call; the
//! imports run one way, from the doors down to the ground floor:
//!
//! ```text
//!   service, demo          start-up and shutdown; the demo with its simulators
//!        |
//!   edge/                  the doors: HTTP, AppWebsocket sessions, downloads, admin
//!        |
//!   phones/                registry, jobs, Devices sockets, gate, directory, NOTIFY
//!        |
//!   store/                 persistence, PostgreSQL and its leases, the audit
//!        |
//!   ops/                   metrics, limits, logging, supervision, readiness
//! ```
//!
//! - [`service`]: start-up in a safe order, and shutdown (stop accepting, close websockets,
//!   flush the store).
//! - [`edge`]: every socket a peer opens ends here.
//! - [`phones`]: one supervised job per phone, one Devices link per job.
//! - [`store`]: where what innoprov knows is kept.
//! - [`ops`]: what every room uses to be run.
//! - [`demo`]: `innoprov demo --phones N`, the whole chain with simulators in one process.
//! - [`sim`]: simulators of the PBX, the Users service and Devices, written from the specs,
//!   shared by the tests, the benches and demos.

#![forbid(unsafe_code)]

#[cfg(feature = "simulators")]
pub mod demo;
pub mod edge;
pub mod ops;
pub mod phones;
pub mod service;
#[cfg(feature = "simulators")]
pub mod sim;
pub mod store;
