//! What a phone is doing: the job's [`Phase`], and the [`PhoneState`] and [`LinkState`] the
//! admin doors, the badge and the audit show for it. Plain types shared by the phone
//! machinery and the admin side, so that neither needs the other's module.

use serde::Serialize;

/// Where a phone is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The record is stored; no link yet (no Devices URL, or Devices rejected the phone).
    Stored,
    /// The link is connecting or waiting for the complete configuration.
    Linking,
    /// The complete configuration is stored; the link stays open for updates.
    Configured,
    /// An update is being stored.
    Updating,
}

/// What a phone is doing, as the admin sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhoneState {
    /// Stored; not linked (no Devices URL yet, or Devices refused it).
    Stored,
    /// Linking to Devices or waiting for its complete configuration.
    Linking,
    /// Configured; the link is up.
    Configured,
    /// An update from Devices is being stored.
    Updating,
    /// Configured before, the link is down and reconnecting.
    LinkDown,
    /// No job runs for the phone (it ended and waits for its restart).
    Failed,
    /// Another instance holds the phone and links it (several instances on PostgreSQL); its
    /// live state is known there.
    Elsewhere,
}

impl PhoneState {
    /// The state and link of a running job in `phase`, its link down or not.
    pub fn of(phase: Phase, link_down: bool) -> (PhoneState, LinkState) {
        if link_down {
            return (PhoneState::LinkDown, LinkState::Down);
        }
        match phase {
            Phase::Stored => (PhoneState::Stored, LinkState::None),
            Phase::Linking => (PhoneState::Linking, LinkState::Down),
            Phase::Configured => (PhoneState::Configured, LinkState::Up),
            Phase::Updating => (PhoneState::Updating, LinkState::Up),
        }
    }

    /// The name used on the wire (`?state=`, PHONE `state`, the audit's state changes).
    pub fn as_str(self) -> &'static str {
        match self {
            PhoneState::Stored => "stored",
            PhoneState::Linking => "linking",
            PhoneState::Configured => "configured",
            PhoneState::Updating => "updating",
            PhoneState::LinkDown => "link_down",
            PhoneState::Failed => "failed",
            PhoneState::Elsewhere => "elsewhere",
        }
    }

    /// Parses the `?state=` value.
    pub fn parse(text: &str) -> Option<PhoneState> {
        [
            PhoneState::Stored,
            PhoneState::Linking,
            PhoneState::Configured,
            PhoneState::Updating,
            PhoneState::LinkDown,
            PhoneState::Failed,
            PhoneState::Elsewhere,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// The phone's Devices link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Connected.
    Up,
    /// Reconnecting.
    Down,
    /// No link.
    None,
    /// Held by another instance.
    Elsewhere,
}
