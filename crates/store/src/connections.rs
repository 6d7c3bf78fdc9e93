//! `mqtt_connections`: the desired state, as the application wrote it.

use crate::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::fmt;

/// One row of `mqtt_connections`, unvalidated. Debug hides the password, the
/// HMAC secret and the CA certificate body.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConnectionRow {
    pub id: i64,
    pub name: String,
    pub is_enabled: bool,
    pub broker_host: String,
    pub broker_port: i32,
    pub protocol: String,
    pub use_tls: bool,
    pub ca_cert_pem: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive_secs: Option<i32>,
    pub clean_session: Option<bool>,
    pub topic_prefix: Option<String>,
    pub subscriptions: Option<Vec<String>>,
    pub store_inbound: bool,
    pub hmac_secret: Option<String>,
    pub verify_inbound_hmac: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl fmt::Debug for ConnectionRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |o: &Option<String>| o.as_ref().map(|_| "***");
        f.debug_struct("ConnectionRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("is_enabled", &self.is_enabled)
            .field("broker_host", &self.broker_host)
            .field("broker_port", &self.broker_port)
            .field("protocol", &self.protocol)
            .field("use_tls", &self.use_tls)
            .field("ca_cert_pem", &self.ca_cert_pem.as_ref().map(|_| "<pem>"))
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("keep_alive_secs", &self.keep_alive_secs)
            .field("clean_session", &self.clean_session)
            .field("topic_prefix", &self.topic_prefix)
            .field("subscriptions", &self.subscriptions)
            .field("store_inbound", &self.store_inbound)
            .field("hmac_secret", &hidden(&self.hmac_secret))
            .field("verify_inbound_hmac", &self.verify_inbound_hmac)
            .finish_non_exhaustive()
    }
}

/// Every row, enabled or not, ordered by id.
pub async fn load_connections(pool: &PgPool) -> Result<Vec<ConnectionRow>, StoreError> {
    let rows = sqlx::query_as::<_, ConnectionRow>(
        "SELECT id, name, is_enabled, broker_host, broker_port, protocol, use_tls, \
                ca_cert_pem, username, password, keep_alive_secs, clean_session, \
                topic_prefix, subscriptions, store_inbound, hmac_secret, \
                verify_inbound_hmac, created_at, updated_at \
         FROM mqtt_connections ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows)
}
