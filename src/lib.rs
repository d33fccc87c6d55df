//! # innoprov core
//!
//! Everything of innoprov that needs no runtime and no sockets: the innovaphone protocols as
//! data and pure functions, the phone record and its store, and the configuration. The running
//! system (actors, HTTP, simulators) is the `innoprov-actors` package in `actors/`.
//!
//! ## Layout
//! - [`appws`]: AppWebsocket messages, login digest, session key, RC4 Encrypt/Decrypt/Hash,
//!   and `LoginSession`, the server's login decisions (challenge, digest, role, operator token,
//!   AppCheckLogin budget) as a plain type.
//! - [`services`]: finding Devices' sysclient URL in the PBX's ServicesInfo.
//! - [`sysclient`]: the binary sysclient protocol to innovaphone Devices.
//! - [`sysclient_session`]: one phone's side of that protocol as a sans-IO state machine
//!   (events in, actions out), driven by the phone's job in the runtime.
//! - [`devices`]: Devices configuration items (PHONE, MEDIA, NTP, ...).
//! - [`mac`]: the phone's MAC address.
//! - [`outcome`]: how a ProvisioningPhone can fail, as one type (the `error` text Users shows).
//! - [`phone`]: the validated ProvisioningPhone request and the stored phone record.
//! - [`provisioning`]: vendors, templates, download authentication, access and audit, and
//!   `DownloadRequest`, who gets which file (route, vendor, serve/challenge/refuse, what the
//!   phone's download state must remember) as a plain type.
//! - [`redirect`]: zero touch: the vendors' redirect services as plain types (an exchange per
//!   job, the queue with its retries and pace, XML-RPC and Hawk).
//! - [`seal`]: secrets at rest, sealed under the per-installation key.
//! - [`store`]: the `Store` trait, its sled and in-memory implementations, the conformance suite;
//!   the `Leases` trait (fenced writes included), its in-memory implementation and its suite.
//! - [`leases`]: `LeaseBook`, the registry's lease decisions (renew, claim, give up, hand over)
//!   and `ClaimWait`, a claim's backoff, as plain types.
//! - [`sip_digest`]: the NOTIFY's Digest answer (SIP response and challenge parsing, MD5).
//! - [`config`]: the TOML configuration and its checks.
//! - [`clock`]: the one wall clock (Unix seconds and microseconds).

#![forbid(unsafe_code)]

pub mod appws;
pub mod clock;
pub mod config;
pub mod devices;
pub mod leases;
pub mod mac;
pub mod outcome;
pub mod pbx_users;
pub mod phone;
pub mod provisioning;
pub mod redirect;
pub mod seal;
pub mod services;
pub mod sip_digest;
pub mod store;
pub mod sysclient;
pub mod sysclient_session;

#[cfg(test)]
mod decoder_props;

pub use config::Config;
pub use mac::Mac;
pub use phone::{PhoneRecord, ProvisionRequest};
pub use seal::{Sealed, Sealer, Secret};
pub use store::{Store, StoreError};
