//! Settings of mqtt-supervisor: built-in defaults < TOML file < environment.
//!
//! Loading is pure apart from reading the file and the environment: no network,
//! no runtime. [`Settings::load`] returns either validated settings or a
//! [`SettingsError`] that names the variable (or file key) and where its value
//! came from, so the binary can exit with code 2 and a useful message.

mod load;
mod secret;
mod units;
mod validate;

pub use load::{Loaded, SettingSource, load, load_from};
pub use secret::{Secret, redact_url};
pub use units::{ByteSize, parse_duration};

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Effective settings of the service, after defaults, file and environment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Postgres URL; may hold a password, hence a [`Secret`].
    pub database_url: Secret,
    /// Suffix of every client ID (`{name}_{instance_id}`).
    pub instance_id: String,
    /// Default for rows whose `clean_session` is NULL.
    pub clean_session: bool,
    /// Last Will `offline` and birth `online` on the status topic.
    pub lwt_enabled: bool,
    /// Default keep-alive for rows whose `keep_alive_secs` is NULL.
    #[serde(with = "units::duration")]
    pub keep_alive: Duration,
    /// Bound on the whole shutdown.
    #[serde(with = "units::duration")]
    pub shutdown_timeout: Duration,
    /// Reconcile period of the monitor.
    #[serde(with = "units::duration")]
    pub monitor_interval: Duration,
    /// Pause after a takeover (duplicate client ID).
    #[serde(with = "units::duration")]
    pub reconnect_cooldown: Duration,
    /// Cap of the cooldown, which doubles with every takeover in a row; also
    /// the retry period once a client ID is judged in use by another client.
    #[serde(with = "units::duration")]
    pub reconnect_cooldown_max: Duration,
    /// Bound on TCP/TLS connect plus CONNACK.
    #[serde(with = "units::duration")]
    pub connect_timeout: Duration,
    /// A broker close this soon after CONNACK counts as a takeover.
    #[serde(with = "units::duration")]
    pub takeover_window: Duration,
    /// Largest MQTT packet accepted in or sent out.
    pub max_packet_size: ByteSize,
    /// Status topic template; `{prefix}` and `{name}` expand.
    pub status_topic: String,
    /// QoS 0 messages waiting for the inbox writer, across all connections;
    /// beyond it they are dropped, counted and logged (QoS 1 and 2 wait
    /// unacknowledged instead).
    pub inbox_buffer: u32,
    /// Inbox rows, and published or failed outbox rows, older than this are
    /// deleted in the background.
    #[serde(with = "units::duration")]
    pub inbox_retention: Duration,
    /// Outbox publishes per connection sent and not yet acknowledged.
    pub outbox_window: u16,
    /// Address of the HTTP server (health, metrics, API, monitor page).
    pub http_addr: SocketAddr,
    /// Bearer token of the API's write endpoints; empty leaves them off
    /// (they answer 403 and say why).
    pub api_token: Secret,
    /// How long a replica's lease on a connection lasts: renewed every
    /// third of it; a replica that cannot renew closes its connections by
    /// half of it; a dead replica's connections move within it.
    #[serde(with = "units::duration")]
    pub lease_period: Duration,
    /// Adds per-connection series (a `connection` label) to `/metrics`;
    /// for small fleets, since every tenant becomes a series.
    pub metrics_per_connection: bool,
    /// `text` or `json`.
    pub log_format: LogFormat,
}

/// Format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Settings {
    /// Built-in defaults; `instance_id` is the host name's first label.
    pub fn defaults() -> Self {
        Settings {
            database_url: Secret::new("postgres://localhost/mqtt_supervisor"),
            instance_id: default_instance_id(),
            clean_session: true,
            lwt_enabled: true,
            keep_alive: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(5),
            monitor_interval: Duration::from_secs(30),
            reconnect_cooldown: Duration::from_secs(30),
            reconnect_cooldown_max: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(5),
            takeover_window: Duration::from_secs(10),
            max_packet_size: ByteSize(1024 * 1024),
            status_topic: "{prefix}/backend/status".to_owned(),
            inbox_buffer: 10_000,
            inbox_retention: Duration::from_secs(7 * 86_400),
            outbox_window: 32,
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8081)),
            api_token: Secret::default(),
            lease_period: Duration::from_secs(15),
            metrics_per_connection: false,
            log_format: LogFormat::Text,
        }
    }

    /// The status topic for a connection with this topic prefix and name.
    pub fn status_topic_for(&self, prefix: &str, name: &str) -> String {
        self.status_topic
            .replace("{prefix}", prefix)
            .replace("{name}", name)
    }
}

/// Replaces every character outside `[A-Za-z0-9_-]` with `_`, as the MQTT
/// contract says for client IDs.
pub fn sanitize_client_id_part(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The host name's first label, or empty when it cannot be read.
pub fn host_label() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    host.split('.').next().unwrap_or_default().to_owned()
}

fn default_instance_id() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let first = host.split('.').next().unwrap_or_default();
    if first.is_empty() {
        "mqtt-supervisor".to_owned()
    } else {
        sanitize_client_id_part(first)
    }
}

/// A setting that cannot be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value could not be parsed or is out of range.
    #[error("invalid value for {variable} (from {source_name}): {reason}")]
    Invalid {
        /// `MQTT_KEEP_ALIVE`, `DATABASE_URL`, or a file key.
        variable: String,
        /// Where the value came from: default, a file, the environment.
        source_name: String,
        /// What is wrong, without the value when it may be secret.
        reason: String,
    },
    /// The TOML file could not be read or holds unknown keys.
    #[error("settings file {path}: {reason}")]
    File {
        /// The file's path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests;
