//! What a connection is doing, as readers see it through `watch`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;

/// Lifecycle status; the strings are the contract's (`mqtt_connection_state.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Opening TCP/TLS and waiting for CONNACK.
    Connecting,
    /// CONNACK received; `online` published, subscriptions sent.
    Connected,
    /// Lost or failed; backing off before the next attempt.
    Disconnected,
    /// Another client took our client ID; not polling until the cooldown ends.
    Cooldown,
    /// Refused by the broker or invalid configuration; retried slowly or on change.
    Error,
    /// Not running (stopped, disabled, or before start).
    Stopped,
}

impl Status {
    /// The contract's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Connected => "connected",
            Status::Disconnected => "disconnected",
            Status::Cooldown => "cooldown",
            Status::Error => "error",
            Status::Stopped => "stopped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of one connection's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionState {
    /// Lifecycle status.
    pub status: Status,
    /// A short sentence on why it is in this status.
    pub detail: String,
    /// When the current connection got its CONNACK.
    pub connected_since: Option<DateTime<Utc>>,
    /// The latest error, kept after recovery.
    pub last_error: Option<String>,
    /// End of the current cooldown.
    pub cooldown_until: Option<DateTime<Utc>>,
    /// CONNACKs after the first one.
    pub reconnects: u64,
}

impl ConnectionState {
    /// The state before the actor's first step.
    pub fn starting() -> Self {
        ConnectionState {
            status: Status::Connecting,
            detail: "starting".to_owned(),
            connected_since: None,
            last_error: None,
            cooldown_until: None,
            reconnects: 0,
        }
    }

    /// The state of a row that failed validation.
    pub fn invalid(reason: &str) -> Self {
        ConnectionState {
            status: Status::Error,
            detail: reason.to_owned(),
            connected_since: None,
            last_error: Some(reason.to_owned()),
            cooldown_until: None,
            reconnects: 0,
        }
    }
}
