//! Day-to-day administration of `mqtt_connections` (the `connections` CLI).
//! Every change goes through the table, so the running service hears about
//! it through the same NOTIFY trigger as the application's own writes.

use crate::StoreError;
use sqlx::PgPool;

/// A row as `connections list` shows it, joined with the service's state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ListedConnection {
    pub id: i64,
    pub name: String,
    pub is_enabled: bool,
    pub broker_host: String,
    pub broker_port: i32,
    pub protocol: String,
    pub use_tls: bool,
    pub status: Option<String>,
    pub client_id: Option<String>,
    pub last_error: Option<String>,
    pub detail: Option<String>,
    pub connected_since: Option<chrono::DateTime<chrono::Utc>>,
    pub cooldown_until: Option<chrono::DateTime<chrono::Utc>>,
    pub reconnects: Option<i64>,
    /// The replica that last reported its state.
    pub owner: Option<String>,
}

/// A connection to add. Optional fields left `None` take the table's defaults.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NewConnection {
    pub name: String,
    pub broker_host: String,
    pub broker_port: Option<i32>,
    pub protocol: Option<String>,
    pub use_tls: bool,
    pub ca_cert_pem: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub subscriptions: Option<Vec<String>>,
    pub is_enabled: bool,
}

impl std::fmt::Debug for NewConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewConnection")
            .field("name", &self.name)
            .field("broker_host", &self.broker_host)
            .field("broker_port", &self.broker_port)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// Every row with its state, ordered by name.
pub async fn list_connections(pool: &PgPool) -> Result<Vec<ListedConnection>, StoreError> {
    Ok(sqlx::query_as::<_, ListedConnection>(
        "SELECT c.id, c.name, c.is_enabled, c.broker_host, c.broker_port, c.protocol, c.use_tls, \
                s.status, s.client_id, s.last_error, s.detail, s.connected_since, \
                s.cooldown_until, s.reconnects, s.owner \
         FROM mqtt_connections c \
         LEFT JOIN mqtt_connection_state s ON s.connection_id = c.id \
         ORDER BY c.name",
    )
    .fetch_all(pool)
    .await?)
}

/// Inserts a connection; `StoreError::Exists` when the name is taken.
pub async fn add_connection(pool: &PgPool, new: &NewConnection) -> Result<i64, StoreError> {
    let result = sqlx::query_scalar(
        "INSERT INTO mqtt_connections (name, broker_host, broker_port, protocol, use_tls, \
            ca_cert_pem, username, password, subscriptions, is_enabled) \
         VALUES ($1, $2, COALESCE($3, 1883), COALESCE($4, '3.1.1'), $5, $6, $7, $8, $9, $10) \
         RETURNING id",
    )
    .bind(&new.name)
    .bind(&new.broker_host)
    .bind(new.broker_port)
    .bind(&new.protocol)
    .bind(new.use_tls)
    .bind(&new.ca_cert_pem)
    .bind(&new.username)
    .bind(&new.password)
    .bind(&new.subscriptions)
    .bind(new.is_enabled)
    .fetch_one(pool)
    .await;
    match result {
        Ok(id) => Ok(id),
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => {
            Err(StoreError::Exists(new.name.clone()))
        }
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23514") => Err(
            StoreError::Rejected(db.constraint().unwrap_or("a CHECK constraint").to_owned()),
        ),
        Err(e) => Err(e.into()),
    }
}

/// Sets `is_enabled`; `StoreError::NotFound` for an unknown name.
pub async fn set_enabled(pool: &PgPool, name: &str, enabled: bool) -> Result<(), StoreError> {
    if !crate::api::storable(name) {
        return Err(StoreError::NotFound(name.to_owned()));
    }
    let done = sqlx::query("UPDATE mqtt_connections SET is_enabled = $2 WHERE name = $1")
        .bind(name)
        .bind(enabled)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(name.to_owned()));
    }
    Ok(())
}

/// Deletes a connection (its state goes with it; its history stays).
pub async fn remove_connection(pool: &PgPool, name: &str) -> Result<(), StoreError> {
    if !crate::api::storable(name) {
        return Err(StoreError::NotFound(name.to_owned()));
    }
    let done = sqlx::query("DELETE FROM mqtt_connections WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(name.to_owned()));
    }
    Ok(())
}
