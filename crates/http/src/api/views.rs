//! What the API answers, as JSON (and as schemas in the OpenAPI document).
//! Never a password, key or HMAC secret: only whether one is set.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// Every connection, with its live state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionList {
    /// The server's clock, to count cooldowns down against.
    pub now: DateTime<Utc>,
    /// MQTT_INSTANCE_ID.
    pub instance_id: String,
    /// `ok`, or `unreachable`: the rows are those of the last read (see
    /// `rows_as_of`), their states are live.
    #[schema(value_type = String)]
    pub database: &'static str,
    /// When the rows shown were read, while the database is unreachable.
    pub rows_as_of: Option<DateTime<Utc>>,
    /// Ordered by name.
    pub connections: Vec<ConnectionSummary>,
}

/// One connection at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ConnectionSummary {
    pub id: i64,
    pub name: String,
    pub enabled: bool,
    /// `connecting`, `connected`, `disconnected`, `cooldown`, `error` or
    /// `stopped` (disabled rows, rows held down through the API).
    pub status: String,
    /// Why it is in this status, in a sentence.
    pub detail: String,
    pub client_id: String,
    /// `host:port`; null when the host is not valid.
    pub broker: Option<String>,
    /// `3.1.1` or `5`.
    pub protocol: String,
    pub tls: bool,
    pub connected_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub cooldown_until: Option<DateTime<Utc>>,
    /// Connections after the first one, since the actor started.
    pub reconnects: u64,
    /// Messages received from the broker since the service started.
    pub messages_in: u64,
    /// Outbox rows the broker acknowledged since the service started.
    pub messages_out: u64,
    /// Disconnected through the API and held down until a reconnect.
    pub held: bool,
    /// The replica that runs it (or last reported its state).
    pub owner: Option<String>,
}

/// One connection in full: its state, its configuration and its history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionDetail {
    pub connection: ConnectionSummary,
    pub config: ConnectionConfig,
    /// Why the row is invalid, when it is (the service does not run it).
    pub invalid: Option<String>,
    /// The last 50 state events, newest first.
    pub events: Vec<EventView>,
}

/// A row's configuration as written; secrets only as whether they are set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ConnectionConfig {
    pub broker_host: String,
    pub broker_port: i32,
    pub protocol: String,
    pub use_tls: bool,
    pub has_ca_cert: bool,
    pub username: Option<String>,
    pub has_password: bool,
    /// Null: MQTT_KEEP_ALIVE.
    pub keep_alive_secs: Option<i32>,
    /// Null: MQTT_CLEAN_SESSION.
    pub clean_session: Option<bool>,
    /// Null: the name.
    pub topic_prefix: Option<String>,
    /// Null: `{prefix}/#`.
    pub subscriptions: Option<Vec<String>>,
    pub store_inbound: bool,
    pub has_hmac_secret: bool,
    pub verify_inbound_hmac: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// State events, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
}

/// One state change of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EventView {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub connection_id: i64,
    /// The connection's name when the event was written.
    pub connection: String,
    pub status: String,
    pub detail: String,
    pub client_id: String,
}

impl From<store::StoredEvent> for EventView {
    fn from(e: store::StoredEvent) -> Self {
        EventView {
            id: e.id,
            at: e.at,
            connection_id: e.connection_id,
            connection: e.name,
            status: e.status,
            detail: e.detail,
            client_id: e.client_id,
        }
    }
}

/// Recent messages, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<MessageView>,
}

/// A message received (`in`, from `mqtt_inbox`) or to send (`out`, from
/// `mqtt_outbox`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MessageView {
    /// `in` or `out`.
    pub direction: String,
    /// The row's id in its table.
    pub id: i64,
    pub connection_id: i64,
    /// Null when the connection row is gone.
    pub connection: Option<String>,
    pub topic: String,
    pub qos: i16,
    pub retain: bool,
    /// Received (in) or created (out).
    pub at: DateTime<Utc>,
    /// `received`, `pending`, `published` or `failed`.
    pub status: String,
    /// The whole payload's size in bytes.
    pub size: i32,
    /// The payload as text when it is UTF-8.
    pub payload_text: Option<String>,
    /// The payload in hex when it is not UTF-8.
    pub payload_hex: Option<String>,
    /// Only the first 4 KiB of the payload are shown.
    pub truncated: bool,
    /// Why an outbox row failed.
    pub error: Option<String>,
    /// With verify_inbound_hmac: the envelope's verdict.
    pub hmac_verdict: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
}

/// Payload bytes shown per message.
pub(crate) const PAYLOAD_SHOWN: i32 = 4096;

impl From<store::StoredMessage> for MessageView {
    fn from(m: store::StoredMessage) -> Self {
        let truncated = i64::from(m.size) > m.payload.len() as i64;
        let (payload_text, payload_hex) = payload_as_text_or_hex(&m.payload, truncated);
        MessageView {
            direction: m.direction,
            id: m.id,
            connection_id: m.connection_id,
            connection: m.connection,
            topic: m.topic,
            qos: m.qos,
            retain: m.retain,
            at: m.at,
            status: m.status,
            size: m.size,
            payload_text,
            payload_hex,
            truncated,
            error: m.error,
            hmac_verdict: m.hmac_verdict,
            published_at: m.published_at,
        }
    }
}

/// Text when the bytes are UTF-8 (a character cut by the truncation at
/// the end is dropped), hex otherwise.
fn payload_as_text_or_hex(bytes: &[u8], truncated: bool) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(e) if truncated && e.error_len().is_none() => {
            let valid = &bytes[..e.valid_up_to()];
            (Some(String::from_utf8_lossy(valid).into_owned()), None)
        }
        Err(_) => {
            let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
            (None, Some(hex))
        }
    }
}

/// A command was accepted; what happens next, in a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Accepted {
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::payload_as_text_or_hex;

    #[test]
    fn payloads_are_text_when_utf8_and_hex_otherwise() {
        assert_eq!(
            payload_as_text_or_hex(b"{\"a\":1}", false),
            (Some("{\"a\":1}".to_owned()), None)
        );
        assert_eq!(
            payload_as_text_or_hex(&[0, 0xff], false),
            (None, Some("00ff".to_owned()))
        );
        // "é" is two bytes; the cut one is dropped from truncated text.
        assert_eq!(
            payload_as_text_or_hex(&[b'a', 0xc3], true),
            (Some("a".to_owned()), None)
        );
        assert_eq!(
            payload_as_text_or_hex(&[b'a', 0xc3], false),
            (None, Some("61c3".to_owned()))
        );
    }
}

/// The replicas of this instance that the database knows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplicaList {
    /// This process.
    pub replica_id: String,
    pub replicas: Vec<ReplicaView>,
}

/// One replica: its heartbeat and its share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReplicaView {
    pub replica_id: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Its heartbeat has not expired.
    pub alive: bool,
    /// Connections it holds the lease of.
    pub owned: i64,
}

impl From<store::ReplicaRow> for ReplicaView {
    fn from(r: store::ReplicaRow) -> Self {
        ReplicaView {
            replica_id: r.replica_id,
            host: r.host,
            pid: r.pid,
            version: r.version,
            started_at: r.started_at,
            heartbeat_at: r.heartbeat_at,
            alive: r.alive,
            owned: r.owned,
        }
    }
}
