//! Simulators of the innovaphone peers, shared by the tests, the benches and demos.
//!
//! They are written from the specs (appwebsocket.md, devices-sysclient.md) and their vectors,
//! not from the service's code: they build their frames as text by hand, run their own RC4 and
//! compute digests over the exact text they sent, so a bug in the service's encoder cannot hide
//! behind the same bug in its simulator.
//!
//! - [`wire`]: the simulators' own RC4, hex, SHA-256 and JSON string escaping.
//! - [`client`]: an AppWebsocket client over a real websocket (tokio-tungstenite).
//! - [`pbx`]: the PBX's App object connection: login, PbxInfo, AppInfo, Services.
//! - [`users`]: the Users (Profile) service: login and ProvisioningPhone.
//! - [`devices`]: innovaphone Devices' sysclient endpoint, with fault injection.
//! - [`postgres`]: a real PostgreSQL server (Debian's package) in a temporary directory.
//! - [`phone`]: a SIP phone fetching its files over HTTP (Basic/Digest, ETag).
//! - [`redirect`]: the vendors' redirect services (Yealink RPS), checking the account's
//!   credentials, with faults.
//! - [`handset`]: one emulator per vendor walking that vendor's documented boot sequence,
//!   re-check and NOTIFY resync (docs/vendors).

pub mod client;
pub mod devices;
pub mod handset;
pub mod pbx;
pub mod phone;
pub mod postgres;
pub mod redirect;
pub mod users;
pub mod wire;

/// The simulators' websocket settings. tungstenite zeroes its whole read buffer (128 KiB by
/// default) before every read; with thousands of short connections that memset alone took a
/// tenth of the benches' client CPU, time the service under test then did not get.
pub(crate) fn websocket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 * 1024)
}
