//! `mqtt_outbox`: rows the application wants published. The service reads
//! a connection's pending rows in id order and marks each row published
//! (after the broker's acknowledgement) or failed (it can never be sent).

use crate::StoreError;
use sqlx::PgPool;

/// The channel the trigger on `mqtt_outbox` notifies; the payload is the
/// connection id.
pub const OUTBOX_CHANNEL: &str = "mqtt_outbox";

/// One row to publish.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: i16,
    pub retain: bool,
}

impl std::fmt::Debug for OutboxRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The payload is the application's data: its size only.
        f.debug_struct("OutboxRow")
            .field("id", &self.id)
            .field("topic", &self.topic)
            .field("payload_bytes", &self.payload.len())
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .finish()
    }
}

/// Pending rows of `connection_id` with an id above `after`, in id order:
/// up to `limit` rows, and no more rows once `max_bytes` of payload came
/// before (the first row always comes, whatever its size).
pub async fn pending_outbox(
    pool: &PgPool,
    connection_id: i64,
    after: i64,
    limit: i64,
    max_bytes: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    Ok(sqlx::query_as::<_, OutboxRow>(
        // The running sum over the first `limit` rows only (a window
        // function at the level of the LIMIT would read every pending row).
        "SELECT id, topic, payload, qos, retain FROM ( \
             SELECT *, sum(octet_length(payload)) OVER (ORDER BY id) - octet_length(payload) AS before \
             FROM (SELECT id, topic, payload, qos, retain FROM mqtt_outbox \
                   WHERE connection_id = $1 AND id > $2 \
                     AND published_at IS NULL AND failed_at IS NULL \
                   ORDER BY id LIMIT $3) AS firsts) AS page \
         WHERE before < $4 ORDER BY id",
    )
    .bind(connection_id)
    .bind(after)
    .bind(limit)
    .bind(max_bytes)
    .fetch_all(pool)
    .await?)
}

/// The connections that have pending rows.
pub async fn connections_with_pending_outbox(pool: &PgPool) -> Result<Vec<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT connection_id FROM mqtt_outbox \
         WHERE published_at IS NULL AND failed_at IS NULL",
    )
    .fetch_all(pool)
    .await?)
}

/// What became of rows the service sent or tried to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxMarks {
    /// Acknowledged by the broker (or written, at QoS 0).
    pub published: Vec<i64>,
    /// Sent, but the connection ended before the acknowledgement: pending
    /// again, one attempt more.
    pub retried: Vec<i64>,
    /// Can never be sent, with the reason.
    pub failed: Vec<(i64, String)>,
}

impl OutboxMarks {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.published.is_empty() && self.retried.is_empty() && self.failed.is_empty()
    }
}

/// Writes `marks` in one transaction. A row is marked published only while
/// it is neither published nor failed, so a late duplicate changes nothing.
pub async fn mark_outbox(pool: &PgPool, marks: &OutboxMarks) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    if !marks.published.is_empty() {
        sqlx::query(
            "UPDATE mqtt_outbox SET published_at = now(), attempts = attempts + 1, \
                    last_error = NULL \
             WHERE id = ANY($1) AND published_at IS NULL AND failed_at IS NULL",
        )
        .bind(&marks.published)
        .execute(&mut *tx)
        .await?;
    }
    if !marks.retried.is_empty() {
        sqlx::query(
            "UPDATE mqtt_outbox SET attempts = attempts + 1, \
                    last_error = 'connection lost before the acknowledgement; sent again' \
             WHERE id = ANY($1) AND published_at IS NULL AND failed_at IS NULL",
        )
        .bind(&marks.retried)
        .execute(&mut *tx)
        .await?;
    }
    if !marks.failed.is_empty() {
        let ids: Vec<i64> = marks.failed.iter().map(|(id, _)| *id).collect();
        let reasons: Vec<&str> = marks.failed.iter().map(|(_, r)| r.as_str()).collect();
        sqlx::query(
            "UPDATE mqtt_outbox o SET failed_at = now(), attempts = o.attempts + 1, \
                    last_error = u.reason \
             FROM UNNEST($1::bigint[], $2::text[]) AS u(id, reason) \
             WHERE o.id = u.id AND o.published_at IS NULL AND o.failed_at IS NULL",
        )
        .bind(&ids)
        .bind(&reasons)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Marks pending rows of connections that do not exist or are disabled as
/// failed: nothing will ever send them. Returns how many.
pub async fn fail_orphaned_outbox(pool: &PgPool) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE mqtt_outbox o SET failed_at = now(), \
                last_error = CASE WHEN c.id IS NULL THEN 'unknown connection' \
                                  ELSE 'the connection is disabled' END \
         FROM mqtt_outbox p LEFT JOIN mqtt_connections c ON c.id = p.connection_id \
         WHERE o.id = p.id AND p.published_at IS NULL AND p.failed_at IS NULL \
           AND (c.id IS NULL OR NOT c.is_enabled)",
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
