//! # innoprov-actors: the running service
//!
//! The actor system around the `innoprov` core: one actor per concern, typed messages, each
//! actor in its own file with every message it takes listed at its top.
//!
//! ## Layout
//! - [`service`]: start-up in a safe order, and shutdown (stop accepting, close websockets,
//!   flush the store).
//! - [`http`]: the HTTP listeners and their routes (AppWebsocket upgrade, phone downloads).
//! - [`prov_http`]: phone downloads: vendor files, enrolment, credentials, audit.
//! - [`forwarded`]: a trusted reverse proxy's `Forwarded` / `X-Forwarded-*` headers.
//! - [`audit_log`]: the download audit, recorded at once and written in batches.
//! - [`notifier`]: `Notifier`, SIP NOTIFY check-sync when a phone's configuration changes.
//! - [`metrics`]: the Prometheus metrics of the process.
//! - [`ready`]: `sd_notify` readiness (`READY=1` with the bound addresses, `STOPPING=1`).
//! - [`fatal`]: who supervises the singletons: a singleton that ends outside a shutdown takes
//!   the service down with exit status 1 (systemd restarts it).
//! - [`logging`]: the logger, with ceilings on third-party targets that trace secrets.
//! - [`login_guard`]: caps on connections not yet logged in, and per-address login throttling.
//! - [`pbx_pin`]: `PbxPin`, who the PBX is: `app.object`, or the App object pinned at its
//!   first PbxInfo.
//! - [`admin_core`]: `AdminCore`, the one set of admin operations (list, detail, audit,
//!   resync, reopen enrolment, pin vendor, delete) over the live system.
//! - [`admin_http`]: its REST door under `<parent>/api/v1/` (bearer token, OpenAPI derived
//!   from the handlers), `/healthz` and `/readyz`.
//! - [`admin_throttle`]: `AdminThrottle`, wrong admin tokens per address slowed, then 429.
//! - [`admin_page`]: the admin page (`<parent>/<admin.app>.htm`), a client of the admin door
//!   that logs in through myApps or with the admin token.
//! - [`app_session`]: `AppSession`, one actor per AppWebsocket connection (PBX, Users, browser).
//! - [`postgres_store`]: `PostgresStore`, the store in PostgreSQL (`store.backend = "postgres"`),
//!   with the leases that give each phone one instance and the LISTEN connection that tells
//!   an instance what the others wrote.
//! - [`persistence`]: `Persistence`, the only writer of the store, with group commit.
//! - [`directory`]: `ServiceDirectory`, where innovaphone Devices is.
//! - [`registry`]: `PhoneRegistry`, one job per MAC, restarted with backoff when it fails;
//!   with several instances, only for the phones whose lease this instance holds.
//! - [`phone_state`]: `Phase`, `PhoneState`, `LinkState`: what a phone is doing.
//! - [`phone_job`]: `PhoneJob`, one phone's provisioning: record, link, answer to Users.
//! - [`devices_socket`]: one phone's websocket to Devices as a plain task that moves bytes for
//!   its job (the protocol is the core's `SysclientSession`, driven by the job).
//! - [`demo`]: `innoprov demo --phones N`, the whole chain with simulators in one process.
//! - [`limits`]: the two limiter types, [`limits::Pacer`] (evenly spaced slots) and
//!   [`limits::MinuteCounts`] (events per key and minute, keys bounded).
//! - [`connect_gate`]: the service-wide cap on Devices connection attempts per second.
//! - [`ws_reader`]: inbound AppWebsocket messages with every size bound holding before the
//!   data is read (pre-login budget, frame and fragment limits).
//! - [`sim`]: simulators of the PBX, the Users service and Devices, written from the specs, shared by
//!   the tests, the benches and demos.

#![forbid(unsafe_code)]

pub mod admin_core;
pub mod admin_http;
pub mod admin_page;
pub mod admin_throttle;
pub mod app_session;
pub mod audit_log;
pub mod connect_gate;
#[cfg(feature = "simulators")]
pub mod demo;
pub mod devices_socket;
pub mod directory;
pub mod fatal;
pub mod forwarded;
pub mod http;
pub mod limits;
pub mod logging;
pub mod login_guard;
pub mod metrics;
pub mod notifier;
pub mod pbx_pin;
pub mod persistence;
pub mod phone_job;
pub mod phone_state;
pub mod postgres_store;
pub mod prov_http;
pub mod ready;
pub mod registry;
pub mod service;
#[cfg(feature = "simulators")]
pub mod sim;
pub mod ws_reader;
