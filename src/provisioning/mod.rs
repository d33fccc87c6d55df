//! Serving phones their configuration (phones.md, interface.md "The phone side"): vendors as
//! data, template rendering, download authentication, and the per-phone access state and audit.
//! All of it is plain functions over the stored record; the HTTP handler lives in `actors/`.

pub mod access;
pub mod admin;
pub mod auth;
pub mod context;
pub mod download;
pub mod keys;
pub mod phonebook;
pub mod render;
pub mod safety;
pub mod timezone;
pub mod vendor;

pub use access::{
    AuditEntry, Decision, ENROLMENT_ENTRIES, PhoneAccess, is_enrolment_outcome, trim_audit, trim_audit_by,
};
pub use context::{ContextError, PhoneContext};
pub use render::Renderer;
pub use vendor::{FileKind, VendorDescriptor, Vendors};

#[cfg(test)]
mod tests;
