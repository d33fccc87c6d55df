//! # The doors: every socket a peer opens ends here
//!
//! What comes in from outside, each door with its bounds and its checks before anything is
//! read further: the HTTP listeners and routes, the AppWebsocket sessions of the PBX, Users
//! and browsers, phone downloads, the admin REST door and page, and the guards that keep
//! strangers from starving them.
//!
//! May call: [`crate::phones`] (by message: a ProvisioningPhone starts a job, Devices' URL
//! goes to the directory), [`crate::store`] (downloads read the store and record the audit)
//! and [`crate::ops`]. Nothing below calls a door.
//!
//! - [`http`]: the HTTP listeners and their routes (AppWebsocket upgrade, phone downloads).
//! - [`app_session`]: `AppSession`, one actor per AppWebsocket connection (PBX, Users, browser).
//! - [`ws_reader`]: inbound AppWebsocket messages with every size bound holding before the
//!   data is read (pre-login budget, frame and fragment limits).
//! - [`login_guard`]: caps on connections not yet logged in, and per-address login throttling.
//! - [`pbx_pin`]: `PbxPin`, who the PBX is: `app.object`, or the App object pinned at its
//!   first PbxInfo.
//! - [`forwarded`]: a trusted reverse proxy's `Forwarded` / `X-Forwarded-*` headers.
//! - [`phone_views`]: the phones as downloads read them, shared and per worker thread.
//! - [`prov_http`]: phone downloads: vendor files, enrolment, credentials, audit.
//! - [`admin_core`]: `AdminCore`, the one set of admin operations (list, detail, audit,
//!   resync, reopen enrolment, pin vendor, delete) over the live system.
//! - [`admin_http`]: its REST door under `<parent>/api/v1/` (bearer token, OpenAPI derived
//!   from the handlers), `/healthz` and `/readyz`.
//! - [`admin_throttle`]: `AdminThrottle`, wrong admin tokens per address slowed, then 429.
//! - [`admin_page`]: the admin page (`<parent>/<admin.app>.htm`), a client of the admin door
//!   that logs in through myApps or with the admin token.

pub mod admin_core;
pub mod admin_http;
pub mod admin_page;
pub mod admin_throttle;
pub mod app_session;
pub mod forwarded;
pub mod http;
pub mod login_guard;
pub mod pbx_pin;
pub mod phone_views;
pub mod prov_http;
pub mod ws_reader;
