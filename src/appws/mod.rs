//! The innovaphone AppWebsocket protocol (appwebsocket.md): message envelope and the typed
//! messages this service takes and sends, plus the login and secret cryptography.

pub mod crypto;
pub mod login_session;
pub mod message;
pub mod received;
pub mod role;

pub use crypto::{LoginFields, decrypt, encrypt, login_digest, new_challenge, session_key};
pub use message::{Inbound, InboundError, Outbound};
pub use received::{AppLogin, AppMessage, ProvisioningPhone};
pub use role::{LoginRole, login_role};
