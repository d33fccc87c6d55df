//! How a ProvisioningPhone can end other than `ok`: one type for every failure, whose text is
//! the `error` of `ProvisioningPhoneResult` (what Users shows an administrator), and whose
//! kind names the outcome in the metrics.

use thiserror::Error;

/// Why a ProvisioningPhone failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProvisionFailure {
    /// The login may not provision phones (a myApps user, an operator, or not a listed
    /// provisioner).
    #[error("not allowed: this login may not provision phones")]
    NotAllowed,
    /// The message is malformed or carries a value no phone file can hold (the field is named).
    #[error("{0}")]
    Invalid(String),
    /// Too much in progress: nothing was queued or stored.
    #[error("busy: {0}; try again shortly")]
    Busy(&'static str),
    /// No Devices sysclient URL is known yet: nothing was stored.
    #[error("Devices Service not found: no Devices URL is known yet (PBX Services or devices.sysclient_url)")]
    NoDevices,
    /// Devices refused the phone (its code); nothing of it was stored.
    #[error("Devices rejected the phone: {0}")]
    Rejected(String),
    /// No complete configuration within the provisioning timeout; `kept` when Devices had
    /// already accepted the code (the phone is stored and will be configured).
    #[error(
        "no complete configuration from Devices within {secs} s; {}",
        if *kept { "the phone is stored and will be configured when Devices sends its configuration" } else { "nothing of it is kept" }
    )]
    Timeout {
        /// The timeout.
        secs: u64,
        /// Whether the phone stays stored.
        kept: bool,
    },
    /// A newer ProvisioningPhone or a delete took the phone over.
    #[error("{0}")]
    Superseded(String),
    /// The store failed.
    #[error("storing the phone failed: {0}")]
    Store(String),
    /// Another instance holds the phone (several instances on PostgreSQL) and did not hand it
    /// over in time; nothing was stored.
    #[error(
        "the phone is held by instance {owner}, which did not hand it over within {secs} s; nothing was stored"
    )]
    HeldElsewhere {
        /// The holding instance's owner name.
        owner: String,
        /// How long this instance waited.
        secs: u64,
    },
    /// Something inside the service failed (sealing, the phone's job ending without answer).
    #[error("{0}")]
    Internal(String),
}

impl ProvisionFailure {
    /// The outcome's name in the metrics (`busy` or `failed`).
    pub fn metric(&self) -> &'static str {
        match self {
            ProvisionFailure::Busy(_) => "busy",
            _ => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_texts_users_shows() {
        assert_eq!(
            ProvisionFailure::Timeout {
                secs: 60,
                kept: false
            }
            .to_string(),
            "no complete configuration from Devices within 60 s; nothing of it is kept"
        );
        assert!(
            ProvisionFailure::Timeout { secs: 3, kept: true }
                .to_string()
                .ends_with("the phone is stored and will be configured when Devices sends its configuration")
        );
        assert_eq!(
            ProvisionFailure::Busy("too many phones in progress").to_string(),
            "busy: too many phones in progress; try again shortly"
        );
        assert_eq!(ProvisionFailure::Busy("x").metric(), "busy");
        assert_eq!(ProvisionFailure::NoDevices.metric(), "failed");
    }
}
