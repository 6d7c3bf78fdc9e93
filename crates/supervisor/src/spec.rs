//! `ConnectionSpec`: a `mqtt_connections` row validated and combined with the
//! settings, i.e. everything one actor needs, and nothing it has to check again.
//!
//! Two specs compare equal exactly when the effective configuration is the
//! same, so the monitor restarts an actor when `old != new` and leaves it alone
//! when only `updated_at` or a field the actor does not use changed.

mod checks;
pub(crate) mod packets;
mod row_error;

pub use row_error::{HostProblem, RowError};

use crate::{tls, topic};
use checks::Quote;
use settings::{Secret, Settings, sanitize_client_id_part};
use std::fmt;
use std::time::Duration;
use store::ConnectionRow;

/// MQTT protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// MQTT 3.1.1 (`'3.1.1'` in the table).
    V311,
    /// MQTT 5 (`'5'` in the table).
    V5,
}

/// The effective, validated configuration of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSpec {
    /// Row id.
    pub id: i64,
    /// Tenant key (`site_88`).
    pub name: String,
    /// `{name}_{instance}`, sanitised.
    pub client_id: String,
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Protocol version.
    pub protocol: Protocol,
    /// TLS on; with `Some(pem)`, verify against that CA, else system roots.
    pub tls: Option<Option<String>>,
    /// MQTT user name.
    pub username: Option<String>,
    /// MQTT password.
    pub password: Option<Secret>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Clean session (3.1.1) / clean start (5).
    pub clean_session: bool,
    /// Topic prefix (`topic_prefix`, else `name`).
    pub prefix: String,
    /// Where `online` / `offline` go, retained; `None` with MQTT_LWT_ENABLED off.
    pub status_topic: Option<String>,
    /// Filters subscribed after every CONNACK.
    pub subscriptions: Vec<String>,
    /// Bound on TCP/TLS connect plus CONNACK.
    pub connect_timeout: Duration,
    /// A broker close this soon after CONNACK counts as a takeover.
    pub takeover_window: Duration,
    /// Pause after a takeover.
    pub reconnect_cooldown: Duration,
    /// Cap of the escalating cooldown; the retry period of a client ID in use.
    pub reconnect_cooldown_max: Duration,
    /// Largest packet accepted or sent.
    pub max_packet_size: u32,
    /// Store received messages in `mqtt_inbox`.
    pub store_inbound: bool,
    /// Signs outbox payloads in an HMAC envelope (docs/hmac.md).
    pub hmac_secret: Option<Secret>,
    /// Checks inbound envelopes and stores the verdict.
    pub verify_inbound_hmac: bool,
    /// Outbox publishes sent and not yet acknowledged, at most.
    pub outbox_window: u16,
}

/// A row that cannot be run, with the reason in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRow {
    /// Row id.
    pub id: i64,
    /// Row name (as stored; clean it before printing).
    pub name: String,
    /// The client ID it would have had (for the state table).
    pub client_id: String,
    /// `host:port` as the row says, when its host is a valid one (else
    /// `None`: an invalid host may hold a pasted password).
    pub broker: Option<String>,
    /// What is wrong.
    pub reason: Box<RowError>,
}

impl fmt::Display for InvalidRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.reason)
    }
}

/// `broker_host` as lists may show it: the value when it is a valid host,
/// else a placeholder (an invalid one may hold a pasted password).
pub fn host_for_display(host: &str) -> String {
    match checks::host(host) {
        Ok(()) => host.to_owned(),
        Err(_) => "(invalid broker_host)".to_owned(),
    }
}

/// `host:port` of a row for health and lists, `[v6]:port` for an IPv6
/// address; `None` when the host is not a valid one (it may hold a pasted
/// password, and an empty one says nothing).
pub fn broker_for_display(host: &str, port: i32) -> Option<String> {
    checks::host(host).ok()?;
    Some(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// The contracted client ID: `{name}_{instance}`, outside `[A-Za-z0-9_-]` → `_`.
pub fn client_id(name: &str, instance_id: &str) -> String {
    sanitize_client_id_part(&format!("{name}_{instance_id}"))
}

impl ConnectionSpec {
    /// Validates `row` against the rules of the contract and MQTT: the one
    /// validator of rows, for the service, the CLI and the API alike. A row
    /// it accepts encodes into CONNECT and SUBSCRIBE packets that MQTT and
    /// MQTT_MAX_PACKET_SIZE allow; its messages never quote a secret.
    pub fn from_row(row: &ConnectionRow, settings: &Settings) -> Result<Self, InvalidRow> {
        let client_id = client_id(&row.name, &settings.instance_id);
        Self::build(row, settings, client_id.clone()).map_err(|reason| InvalidRow {
            id: row.id,
            name: row.name.clone(),
            client_id,
            broker: broker_for_display(&row.broker_host, row.broker_port),
            reason: Box::new(reason),
        })
    }

    fn build(row: &ConnectionRow, s: &Settings, client_id: String) -> Result<Self, RowError> {
        if row.name.trim().is_empty() {
            return Err(RowError::Empty("name"));
        }
        checks::mqtt_string("name", &row.name, Quote::Value)?;
        checks::host(&row.broker_host)?;
        let port = u16::try_from(row.broker_port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or(RowError::Port(row.broker_port))?;
        let protocol = match row.protocol.as_str() {
            "3.1.1" => Protocol::V311,
            "5" => Protocol::V5,
            other => return Err(RowError::Protocol(topic::shorten(other))),
        };
        let keep_alive = match row.keep_alive_secs {
            None => s.keep_alive,
            Some(secs) => {
                let (min, protocol) = match protocol {
                    Protocol::V5 => (5, "5"),
                    Protocol::V311 => (1, "3.1.1"),
                };
                if !(min..=65_535).contains(&secs) {
                    return Err(RowError::KeepAlive {
                        secs,
                        min,
                        protocol,
                    });
                }
                Duration::from_secs(secs.unsigned_abs().into())
            }
        };
        let tls = if row.use_tls {
            if let Some(pem) = &row.ca_cert_pem {
                tls::parse_ca(pem)?;
            }
            Some(row.ca_cert_pem.clone())
        } else {
            if row.ca_cert_pem.is_some() {
                return Err(RowError::CaWithoutTls);
            }
            None
        };
        let username = row.username.clone().filter(|u| !u.is_empty());
        if let Some(user) = &username {
            checks::mqtt_string("username", user, Quote::Never)?;
        }
        if let Some(password) = &row.password {
            if username.is_none() {
                return Err(RowError::PasswordWithoutUser);
            }
            checks::password(password)?;
        }
        // Any byte may key an HMAC, but Postgres text cannot hold NUL: a
        // secret with one could never be stored (only the API and the CLI
        // can offer one).
        if row.hmac_secret.as_deref().is_some_and(|s| s.contains('\0')) {
            return Err(RowError::ControlCharacter {
                column: "hmac_secret",
                quoted: String::new(),
                character: crate::untrusted::clean("\0"),
            });
        }
        if row.hmac_secret.as_deref() == Some("") && !row.verify_inbound_hmac {
            return Err(RowError::HmacSecretEmpty);
        }
        if row.verify_inbound_hmac && row.hmac_secret.as_deref().is_none_or(str::is_empty) {
            return Err(RowError::HmacSecretMissing);
        }
        let topic_error = |place: &str| {
            let place = place.to_owned();
            move |error| RowError::Topic { place, error }
        };
        let prefix = match &row.topic_prefix {
            Some(p) => {
                topic::validate_topic(p).map_err(topic_error("topic_prefix"))?;
                p.clone()
            }
            None => row.name.clone(),
        };
        let status_topic = if s.lwt_enabled {
            let t = s.status_topic_for(&prefix, &row.name);
            topic::validate_topic(&t).map_err(topic_error("status topic"))?;
            Some(t)
        } else {
            None
        };
        let subscriptions = match &row.subscriptions {
            None => vec![format!("{prefix}/#")],
            Some(list) => list.clone(),
        };
        for (i, filter) in subscriptions.iter().enumerate() {
            let place = match &row.subscriptions {
                None => "default subscription".to_owned(),
                Some(_) => format!("subscription {}", i + 1),
            };
            topic::validate_filter(filter).map_err(topic_error(&place))?;
        }
        let spec = ConnectionSpec {
            id: row.id,
            name: row.name.clone(),
            client_id,
            host: row.broker_host.clone(),
            port,
            protocol,
            tls,
            username,
            password: row.password.clone().map(Secret::new),
            keep_alive,
            clean_session: row.clean_session.unwrap_or(s.clean_session),
            prefix,
            status_topic,
            subscriptions,
            connect_timeout: s.connect_timeout,
            takeover_window: s.takeover_window,
            reconnect_cooldown: s.reconnect_cooldown,
            reconnect_cooldown_max: s.reconnect_cooldown_max,
            // Validated in settings to fit MQTT's limit, which fits u32.
            max_packet_size: u32::try_from(s.max_packet_size.0).unwrap_or(u32::MAX),
            store_inbound: row.store_inbound,
            hmac_secret: row.hmac_secret.clone().map(Secret::new),
            verify_inbound_hmac: row.verify_inbound_hmac,
            outbox_window: s.outbox_window,
        };
        spec.check_packet_sizes()?;
        Ok(spec)
    }

    /// CONNECT and SUBSCRIBE must fit MQTT_MAX_PACKET_SIZE (and so MQTT's
    /// own limit): otherwise rumqttc refuses to send them, or the broker
    /// closes the connection, after every reconnect.
    fn check_packet_sizes(&self) -> Result<(), RowError> {
        let limit = self.max_packet_size;
        let size = packets::connect(self).size();
        if size > limit as usize {
            return Err(RowError::ConnectTooLarge { size, limit });
        }
        let size = packets::subscribe(self).size();
        if size > limit as usize {
            return Err(RowError::SubscribeTooLarge {
                filters: self.subscriptions.len(),
                size,
                limit,
            });
        }
        Ok(())
    }

    /// The settings that differ from `old`, in words for a log line
    /// (`broker`, `credentials`, …); never the values.
    pub fn changes_from(&self, old: &ConnectionSpec) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |differs: bool, what| {
            if differs {
                changed.push(what);
            }
        };
        check(self.name != old.name, "name");
        check(self.client_id != old.client_id, "client ID");
        check(self.host != old.host || self.port != old.port, "broker");
        check(self.protocol != old.protocol, "protocol");
        check(self.tls != old.tls, "TLS");
        check(
            self.username != old.username || self.password != old.password,
            "credentials",
        );
        check(self.keep_alive != old.keep_alive, "keep-alive");
        check(self.clean_session != old.clean_session, "clean session");
        check(
            self.prefix != old.prefix || self.status_topic != old.status_topic,
            "topics",
        );
        check(self.subscriptions != old.subscriptions, "subscriptions");
        check(
            self.store_inbound != old.store_inbound
                || self.hmac_secret != old.hmac_secret
                || self.verify_inbound_hmac != old.verify_inbound_hmac,
            "message handling",
        );
        check(
            self.connect_timeout != old.connect_timeout
                || self.takeover_window != old.takeover_window
                || self.reconnect_cooldown != old.reconnect_cooldown
                || self.reconnect_cooldown_max != old.reconnect_cooldown_max
                || self.max_packet_size != old.max_packet_size
                || self.outbox_window != old.outbox_window,
            "settings",
        );
        changed
    }

    /// `host:port`, for health and logs.
    pub fn broker(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod tests;
