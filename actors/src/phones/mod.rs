//! # The phone machinery: one job per phone, one link per job
//!
//! What keeps each phone provisioned: the registry that owns one supervised job per MAC, the
//! job that stores the record and drives the phone's Devices session (the core's sans-IO
//! `SysclientSession`), the socket task that only moves that session's bytes, the gate that
//! paces connection attempts, where Devices is, and the NOTIFY that tells a phone to fetch.
//!
//! May call: [`crate::store`] (records, audit, leases) and [`crate::ops`]. It never calls a
//! door: answers to Users go back through the `Recipient` the door handed over with the
//! request, so the doors stay above the phones.
//!
//! - [`registry`]: `PhoneRegistry`, one job per MAC, restarted with backoff when it fails;
//!   with several instances, only for the phones whose lease this instance holds.
//! - [`phone_state`]: `Phase`, `PhoneState`, `LinkState`: what a phone is doing.
//! - [`phone_job`]: `PhoneJob`, one phone's provisioning: record, link, answer to Users.
//! - [`devices_socket`]: one phone's websocket to Devices as a plain task that moves bytes for
//!   its job.
//! - [`connect_gate`]: the service-wide cap on Devices connection attempts per second.
//! - [`directory`]: `ServiceDirectory`, where innovaphone Devices is.
//! - [`notifier`]: `Notifier`, SIP NOTIFY check-sync when a phone's configuration changes.
//! - [`redirect`]: `RedirectWorker`, zero touch: each phone registered with its vendor's
//!   redirect service, deregistered after its deletion; [`outgoing_http`] makes its calls.

pub mod connect_gate;
pub mod devices_socket;
pub mod directory;
pub mod notifier;
pub mod outgoing_http;
pub mod phone_job;
pub mod phone_state;
pub mod redirect;
pub mod registry;
