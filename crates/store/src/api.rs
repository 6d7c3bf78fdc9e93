//! Queries of the HTTP API: one row by name, inserts and updates of whole
//! rows (validated by the caller with the service's validator), the history
//! of state events, recent messages of both tables, and the outbox backlog
//! for `/metrics`.
//!
//! Reads that may scan (a topic filter over a large inbox) run with a
//! statement timeout, so a request never holds a connection for long.

use crate::{ConnectionRow, StoreError};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Binds the columns the application writes, as `$1`..`$16` in the order
/// of [`insert_connection`]'s column list (a macro: `query` and
/// `query_scalar` are different types with the same `bind`).
macro_rules! bind_columns {
    ($query:expr, $row:expr) => {
        $query
            .bind(&$row.name)
            .bind($row.is_enabled)
            .bind(&$row.broker_host)
            .bind($row.broker_port)
            .bind(&$row.protocol)
            .bind($row.use_tls)
            .bind(&$row.ca_cert_pem)
            .bind(&$row.username)
            .bind(&$row.password)
            .bind($row.keep_alive_secs)
            .bind($row.clean_session)
            .bind(&$row.topic_prefix)
            .bind(&$row.subscriptions)
            .bind($row.store_inbound)
            .bind(&$row.hmac_secret)
            .bind($row.verify_inbound_hmac)
    };
}

/// The longest an API read may run.
const READ_TIMEOUT: &str = "SET LOCAL statement_timeout = '5s'";

/// The row named `name`, secrets included (the caller never shows them).
pub async fn connection_by_name(
    pool: &PgPool,
    name: &str,
) -> Result<Option<ConnectionRow>, StoreError> {
    if !storable(name) {
        return Ok(None);
    }
    Ok(sqlx::query_as::<_, ConnectionRow>(
        "SELECT id, name, is_enabled, broker_host, broker_port, protocol, use_tls, \
                ca_cert_pem, username, password, keep_alive_secs, clean_session, \
                topic_prefix, subscriptions, store_inbound, hmac_secret, \
                verify_inbound_hmac, created_at, updated_at \
         FROM mqtt_connections WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?)
}

/// False for text no row can hold: Postgres `text` has no NUL, and asking
/// for it is an error, not an empty answer.
pub(crate) fn storable(text: &str) -> bool {
    !text.contains('\0')
}

/// Inserts `row` (its id and timestamps are ignored); returns the new id.
/// [`StoreError::Exists`] when the name is taken, [`StoreError::Rejected`]
/// when the database refuses a value.
pub async fn insert_connection(pool: &PgPool, row: &ConnectionRow) -> Result<i64, StoreError> {
    let insert = sqlx::query_scalar(
        "INSERT INTO mqtt_connections (name, is_enabled, broker_host, broker_port, protocol, \
            use_tls, ca_cert_pem, username, password, keep_alive_secs, clean_session, \
            topic_prefix, subscriptions, store_inbound, hmac_secret, verify_inbound_hmac) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         RETURNING id",
    );
    bind_columns!(insert, row)
        .fetch_one(pool)
        .await
        .map_err(|e| write_error(e, &row.name))
}

/// Replaces every column of row `row.id` the application writes; false
/// when the row is gone.
pub async fn update_connection(pool: &PgPool, row: &ConnectionRow) -> Result<bool, StoreError> {
    let update = sqlx::query(
        "UPDATE mqtt_connections SET name = $1, is_enabled = $2, broker_host = $3, \
            broker_port = $4, protocol = $5, use_tls = $6, ca_cert_pem = $7, username = $8, \
            password = $9, keep_alive_secs = $10, clean_session = $11, topic_prefix = $12, \
            subscriptions = $13, store_inbound = $14, hmac_secret = $15, \
            verify_inbound_hmac = $16 \
         WHERE id = $17",
    );
    match bind_columns!(update, row).bind(row.id).execute(pool).await {
        Ok(done) => Ok(done.rows_affected() > 0),
        Err(e) => Err(write_error(e, &row.name)),
    }
}

/// A taken name is [`StoreError::Exists`]; refused values are
/// [`StoreError::Rejected`]; the rest is a database error.
fn write_error(e: sqlx::Error, name: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.code().as_deref() == Some("23505")
    {
        return StoreError::Exists(name.to_owned());
    }
    StoreError::classify(e)
}

/// One row of `mqtt_connection_events`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredEvent {
    pub id: i64,
    pub connection_id: i64,
    pub name: String,
    pub status: String,
    pub detail: String,
    pub client_id: String,
    pub at: DateTime<Utc>,
}

/// The latest `limit` state events, newest first, of one connection or all.
pub async fn recent_events(
    pool: &PgPool,
    connection_id: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    Ok(sqlx::query_as::<_, StoredEvent>(
        "SELECT id, connection_id, name, status, detail, client_id, at \
         FROM mqtt_connection_events \
         WHERE $1::bigint IS NULL OR connection_id = $1 \
         ORDER BY id DESC LIMIT $2",
    )
    .bind(connection_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Which messages [`recent_messages`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageQuery {
    /// One connection's, or all.
    pub connection_id: Option<i64>,
    /// A POSIX regular expression the topic must match (see
    /// [`topic_filter_regex`]).
    pub topic_regex: Option<String>,
    /// Received ones (`mqtt_inbox`).
    pub inbound: bool,
    /// Ones to send (`mqtt_outbox`).
    pub outbound: bool,
    /// At most this many, newest first.
    pub limit: i64,
    /// Payload bytes returned per message at most.
    pub payload_bytes: i32,
}

/// A message of either table.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredMessage {
    /// `in` or `out`.
    pub direction: String,
    pub id: i64,
    pub connection_id: i64,
    /// The connection's name, if the row still exists.
    pub connection: Option<String>,
    pub topic: String,
    pub qos: i16,
    pub retain: bool,
    /// Received (in) or created (out).
    pub at: DateTime<Utc>,
    /// `received`, `pending`, `published` or `failed`.
    pub status: String,
    /// The payload's whole size in bytes.
    pub size: i32,
    /// Its first `payload_bytes` bytes.
    pub payload: Vec<u8>,
    /// Why an outbox row failed.
    pub error: Option<String>,
    pub hmac_verdict: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
}

/// Recent messages of both tables, newest first.
pub async fn recent_messages(
    pool: &PgPool,
    query: &MessageQuery,
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(READ_TIMEOUT).execute(&mut *tx).await?;
    let rows = sqlx::query_as::<_, StoredMessage>(
        "SELECT * FROM ( \
           (SELECT 'in' AS direction, i.id, i.connection_id, c.name AS connection, i.topic, \
                   i.qos, i.retain, i.received_at AS at, 'received' AS status, \
                   length(i.payload) AS size, substring(i.payload FROM 1 FOR $6) AS payload, \
                   NULL::text AS error, i.hmac_verdict, NULL::timestamptz AS published_at \
            FROM mqtt_inbox i LEFT JOIN mqtt_connections c ON c.id = i.connection_id \
            WHERE $3 AND ($1::bigint IS NULL OR i.connection_id = $1) \
              AND ($2::text IS NULL OR i.topic ~ $2) \
            ORDER BY i.id DESC LIMIT $5) \
           UNION ALL \
           (SELECT 'out', o.id, o.connection_id, c.name, o.topic, o.qos, o.retain, \
                   o.created_at, \
                   CASE WHEN o.published_at IS NOT NULL THEN 'published' \
                        WHEN o.failed_at IS NOT NULL THEN 'failed' ELSE 'pending' END, \
                   length(o.payload), substring(o.payload FROM 1 FOR $6), o.last_error, \
                   NULL, o.published_at \
            FROM mqtt_outbox o LEFT JOIN mqtt_connections c ON c.id = o.connection_id \
            WHERE $4 AND ($1::bigint IS NULL OR o.connection_id = $1) \
              AND ($2::text IS NULL OR o.topic ~ $2) \
            ORDER BY o.id DESC LIMIT $5) \
         ) m ORDER BY at DESC, id DESC LIMIT $5",
    )
    .bind(query.connection_id)
    .bind(&query.topic_regex)
    .bind(query.inbound)
    .bind(query.outbound)
    .bind(query.limit)
    .bind(query.payload_bytes)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// A POSIX regular expression (Postgres `~`) matching the topics an MQTT
/// filter matches; `filter` must be a valid filter. `+` is one level, a
/// final `#` the parent level and everything below it.
pub fn topic_filter_regex(filter: &str) -> String {
    let mut out = String::from("^");
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        match *level {
            "#" => {
                // `a/#` also matches `a`; a lone `#` matches everything.
                if i == 0 {
                    out.push_str(".*");
                } else {
                    out.truncate(out.len() - 1);
                    out.push_str("(/.*)?");
                }
                return out + "$";
            }
            "+" => out.push_str("[^/]*"),
            literal => {
                for c in literal.chars() {
                    // In Postgres' regular expressions a backslash before a
                    // character that is not alphanumeric makes it literal.
                    if !c.is_alphanumeric() && c != '_' {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
        }
        if i + 1 < levels.len() {
            out.push('/');
        }
    }
    out + "$"
}

/// Outbox rows neither published nor failed (uses the pending index).
pub async fn outbox_pending_count(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM mqtt_outbox WHERE published_at IS NULL AND failed_at IS NULL",
    )
    .fetch_one(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::topic_filter_regex;

    #[test]
    fn filters_become_anchored_regular_expressions() {
        assert_eq!(topic_filter_regex("a/b"), "^a/b$");
        assert_eq!(topic_filter_regex("a/+/c"), "^a/[^/]*/c$");
        assert_eq!(topic_filter_regex("a/#"), "^a(/.*)?$");
        assert_eq!(topic_filter_regex("#"), "^.*$");
        assert_eq!(topic_filter_regex("a.b/x*"), "^a\\.b/x\\*$");
        assert_eq!(topic_filter_regex("site 88/+"), "^site\\ 88/[^/]*$");
    }
}
