//! # innoprov-actors: the running service
//!
//! The actor system around the `innoprov` core: one actor per concern, typed messages, each
//! actor in its own file with every message it takes listed at its top.
//!
//! ## Layout
//! - [`service`]: start-up in a safe order, and shutdown (stop accepting, close websockets,
//!   flush the store).
//! - [`http`]: the one HTTP listener and its routes (AppWebsocket upgrade).
//! - [`app_session`]: `AppSession`, one actor per AppWebsocket connection (PBX, Users, browser).
//! - [`persistence`]: `Persistence`, the only writer of the store, with group commit.
//! - [`directory`]: `ServiceDirectory`, where innovaphone Devices is.
//! - [`sim`]: simulators of the PBX and the Users service, written from the specs, shared by
//!   the tests, the benches and demos.

#![forbid(unsafe_code)]

pub mod app_session;
pub mod directory;
pub mod http;
pub mod persistence;
pub mod service;
pub mod sim;
