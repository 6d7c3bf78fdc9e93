//! `mqtt_inbox`: received messages, written in batches by the service and
//! read by the application; pruned after the retention.

use crate::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// One received message, ready to store. Text is free of NUL characters
/// (Postgres refuses them): the caller replaces them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRecord {
    pub connection_id: i64,
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: i16,
    pub retain: bool,
    /// MQTT 5 properties as JSON text.
    pub properties: Option<String>,
    /// The HMAC verdict when the connection verifies envelopes.
    pub hmac_verdict: Option<&'static str>,
    pub received_at: DateTime<Utc>,
}

/// Inserts `records` in one statement, in order (ids grow with the order).
/// Values the database refuses are reported as [`StoreError::Rejected`].
pub async fn insert_inbound(pool: &PgPool, records: &[&InboundRecord]) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = records.iter().map(|r| r.connection_id).collect();
    let topics: Vec<&str> = records.iter().map(|r| r.topic.as_str()).collect();
    let payloads: Vec<&[u8]> = records.iter().map(|r| r.payload.as_slice()).collect();
    let qos: Vec<i16> = records.iter().map(|r| r.qos).collect();
    let retain: Vec<bool> = records.iter().map(|r| r.retain).collect();
    let properties: Vec<Option<&str>> = records.iter().map(|r| r.properties.as_deref()).collect();
    let verdicts: Vec<Option<&str>> = records.iter().map(|r| r.hmac_verdict).collect();
    let at: Vec<DateTime<Utc>> = records.iter().map(|r| r.received_at).collect();
    // WITH ORDINALITY keeps the batch's order in the ids.
    sqlx::query(
        "INSERT INTO mqtt_inbox \
             (connection_id, topic, payload, qos, retain, properties, hmac_verdict, received_at) \
         SELECT c, t, p, q, r, pr::jsonb, v, a \
         FROM UNNEST($1::bigint[], $2::text[], $3::bytea[], $4::smallint[], $5::bool[], \
                     $6::text[], $7::text[], $8::timestamptz[]) \
              WITH ORDINALITY AS u(c, t, p, q, r, pr, v, a, n) \
         ORDER BY n",
    )
    .bind(&ids)
    .bind(&topics)
    .bind(&payloads)
    .bind(&qos)
    .bind(&retain)
    .bind(&properties)
    .bind(&verdicts)
    .bind(&at)
    .execute(pool)
    .await
    .map_err(StoreError::classify)?;
    Ok(())
}

/// Deletes up to `limit` inbox rows received before `before`, and as many
/// published or failed outbox rows created before it; returns how many
/// rows went. Small batches keep each statement short.
pub async fn prune_messages(
    pool: &PgPool,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<u64, StoreError> {
    let inbox = sqlx::query(
        "DELETE FROM mqtt_inbox WHERE id IN \
             (SELECT id FROM mqtt_inbox WHERE received_at < $1 ORDER BY received_at LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(pool)
    .await?;
    let outbox = sqlx::query(
        "DELETE FROM mqtt_outbox WHERE id IN \
             (SELECT id FROM mqtt_outbox WHERE created_at < $1 \
                 AND (published_at IS NOT NULL OR failed_at IS NOT NULL) \
              ORDER BY created_at LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(pool)
    .await?;
    Ok(inbox.rows_affected() + outbox.rows_affected())
}
