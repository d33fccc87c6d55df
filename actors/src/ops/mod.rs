//! # What every room uses to be run: metrics, limits, logging, supervision, readiness
//!
//! The ground floor: nothing here imports another room.
//!
//! - [`metrics`]: the Prometheus metrics of the process.
//! - [`limits`]: the two limiter types, [`limits::Pacer`] (evenly spaced slots) and
//!   [`limits::MinuteCounts`] (events per key and minute, keys bounded).
//! - [`logging`]: the logger, with ceilings on third-party targets that trace secrets.
//! - [`fatal`]: who supervises the singletons: a singleton that ends outside a shutdown takes
//!   the service down with exit status 1 (systemd restarts it).
//! - [`ready`]: `sd_notify` readiness (`READY=1` with the bound addresses, `STOPPING=1`).

pub mod fatal;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod ready;
