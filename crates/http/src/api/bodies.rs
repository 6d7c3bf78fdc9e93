//! The bodies of `POST` and `PATCH /api/v1/mqtt/connections`: what a
//! client may write. Secrets are accepted here and never answered.

use serde::{Deserialize, Deserializer};
use store::ConnectionRow;
use utoipa::ToSchema;

/// A new connection. Fields left out take the table's defaults.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnectionBody {
    /// Tenant key: part of the client ID and the default topic prefix.
    #[schema(min_length = 1)]
    pub name: String,
    #[schema(min_length = 1)]
    pub broker_host: String,
    /// Default 1883.
    #[schema(minimum = 1, maximum = 65535)]
    pub broker_port: Option<i32>,
    /// `3.1.1` (default) or `5`.
    pub protocol: Option<String>,
    pub use_tls: Option<bool>,
    pub ca_cert_pem: Option<String>,
    pub username: Option<String>,
    /// Write-only.
    pub password: Option<String>,
    pub keep_alive_secs: Option<i32>,
    pub clean_session: Option<bool>,
    pub topic_prefix: Option<String>,
    pub subscriptions: Option<Vec<String>>,
    /// Default true.
    pub store_inbound: Option<bool>,
    /// Write-only.
    pub hmac_secret: Option<String>,
    pub verify_inbound_hmac: Option<bool>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// Changes to a connection: fields left out stay as they are; `null`
/// clears a field that may be empty (it then takes its default).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    #[schema(min_length = 1)]
    pub name: Option<String>,
    #[schema(min_length = 1)]
    pub broker_host: Option<String>,
    #[schema(minimum = 1, maximum = 65535)]
    pub broker_port: Option<i32>,
    pub protocol: Option<String>,
    pub use_tls: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub ca_cert_pem: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub username: Option<Option<String>>,
    /// Write-only.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub password: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>)]
    pub keep_alive_secs: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    pub clean_session: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub topic_prefix: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub subscriptions: Option<Option<Vec<String>>>,
    pub store_inbound: Option<bool>,
    /// Write-only.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub hmac_secret: Option<Option<String>>,
    pub verify_inbound_hmac: Option<bool>,
    pub enabled: Option<bool>,
}

/// A field that is present: `Some(None)` for `null`, `Some(Some(v))` for a
/// value (absent fields are `None` through `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Applies `body` to `row`: present fields replace, absent ones stay.
pub(super) fn apply(row: &mut ConnectionRow, body: ChangeBody) {
    fn set<T>(field: &mut T, value: Option<T>) {
        if let Some(v) = value {
            *field = v;
        }
    }
    set(&mut row.name, body.name);
    set(&mut row.broker_host, body.broker_host);
    set(&mut row.broker_port, body.broker_port);
    set(&mut row.protocol, body.protocol);
    set(&mut row.use_tls, body.use_tls);
    set(&mut row.ca_cert_pem, body.ca_cert_pem);
    set(&mut row.username, body.username);
    set(&mut row.password, body.password);
    set(&mut row.keep_alive_secs, body.keep_alive_secs);
    set(&mut row.clean_session, body.clean_session);
    set(&mut row.topic_prefix, body.topic_prefix);
    set(&mut row.subscriptions, body.subscriptions);
    set(&mut row.store_inbound, body.store_inbound);
    set(&mut row.hmac_secret, body.hmac_secret);
    set(&mut row.verify_inbound_hmac, body.verify_inbound_hmac);
    set(&mut row.is_enabled, body.enabled);
}
