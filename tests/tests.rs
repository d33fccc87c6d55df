//! End-to-end tests: the real `innoprov` binary, started with a generated config on a loopback
//! port, driven by the simulators in `innoprov_actors::sim` over real websockets.
//! One test binary with modules keeps link time low (ripgrep's layout).

mod cdp;
mod common;

mod admin;
mod admin_page;
mod appws_login;
mod cli;
mod devices;
mod directory;
mod downloads;
mod handsets;
mod hostile;
mod instances;
mod keys;
mod package;
mod postgres;
mod provisioning;
mod rooms;
mod safe_by_default;
mod supervision;
mod wire_frames;
mod zero_touch;
