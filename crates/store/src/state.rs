//! `mqtt_connection_state` (latest per connection) and
//! `mqtt_connection_events` (history), written in batches.

use crate::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The latest state of one connection, as the service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    pub connection_id: i64,
    pub status: String,
    pub detail: String,
    pub client_id: String,
    pub connected_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub cooldown_until: Option<DateTime<Utc>>,
    pub reconnects: i64,
}

/// One entry of the append-only history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub connection_id: i64,
    pub name: String,
    pub status: String,
    pub detail: String,
    pub client_id: String,
    pub at: DateTime<Utc>,
}

/// Upserts `states` and appends `events` in one transaction, as `owner`.
/// States of rows deleted meanwhile are skipped (their state row went with
/// them). With `fenced`, so are states of connections another replica holds
/// a live lease of: a replica that lost (or handed over) a connection never
/// overwrites what its new owner reports, yet its last word on a row given
/// up for good (disabled, deleted) still lands. Either all of it is stored or none; values the database refuses
/// are reported as [`StoreError::Rejected`].
pub async fn write_batch(
    pool: &PgPool,
    owner: &str,
    fenced: bool,
    states: &[StateRecord],
    events: &[EventRecord],
) -> Result<(), StoreError> {
    write_batch_inner(pool, owner, fenced, states, events)
        .await
        .map_err(StoreError::classify)
}

async fn write_batch_inner(
    pool: &PgPool,
    owner: &str,
    fenced: bool,
    states: &[StateRecord],
    events: &[EventRecord],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    if !states.is_empty() {
        let ids: Vec<i64> = states.iter().map(|s| s.connection_id).collect();
        let statuses: Vec<&str> = states.iter().map(|s| s.status.as_str()).collect();
        let details: Vec<&str> = states.iter().map(|s| s.detail.as_str()).collect();
        let client_ids: Vec<&str> = states.iter().map(|s| s.client_id.as_str()).collect();
        let since: Vec<Option<DateTime<Utc>>> = states.iter().map(|s| s.connected_since).collect();
        let errors: Vec<Option<&str>> = states.iter().map(|s| s.last_error.as_deref()).collect();
        let cooldowns: Vec<Option<DateTime<Utc>>> =
            states.iter().map(|s| s.cooldown_until).collect();
        let reconnects: Vec<i64> = states.iter().map(|s| s.reconnects).collect();
        sqlx::query(
            "INSERT INTO mqtt_connection_state AS st \
                (connection_id, status, detail, client_id, connected_since, last_error, \
                 cooldown_until, reconnects, owner, updated_at) \
             SELECT s.id, s.status, s.detail, s.client_id, s.since, s.err, s.cool, s.rec, $9, now() \
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], \
                         $6::text[], $7::timestamptz[], $8::bigint[]) \
                  AS s(id, status, detail, client_id, since, err, cool, rec) \
             WHERE EXISTS (SELECT 1 FROM mqtt_connections c WHERE c.id = s.id) \
               AND (NOT $10 OR NOT EXISTS (SELECT 1 FROM mqtt_connection_leases l \
                                           WHERE l.connection_id = s.id AND l.owner <> $9 \
                                             AND l.expires_at > now())) \
             ON CONFLICT (connection_id) DO UPDATE SET \
                status = EXCLUDED.status, detail = EXCLUDED.detail, \
                client_id = EXCLUDED.client_id, connected_since = EXCLUDED.connected_since, \
                last_error = EXCLUDED.last_error, cooldown_until = EXCLUDED.cooldown_until, \
                reconnects = EXCLUDED.reconnects, owner = EXCLUDED.owner, \
                updated_at = EXCLUDED.updated_at",
        )
        .bind(&ids)
        .bind(&statuses)
        .bind(&details)
        .bind(&client_ids)
        .bind(&since)
        .bind(&errors)
        .bind(&cooldowns)
        .bind(&reconnects)
        .bind(owner)
        .bind(fenced)
        .execute(&mut *tx)
        .await?;
    }
    if !events.is_empty() {
        let ids: Vec<i64> = events.iter().map(|e| e.connection_id).collect();
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        let statuses: Vec<&str> = events.iter().map(|e| e.status.as_str()).collect();
        let details: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();
        let client_ids: Vec<&str> = events.iter().map(|e| e.client_id.as_str()).collect();
        let ats: Vec<DateTime<Utc>> = events.iter().map(|e| e.at).collect();
        sqlx::query(
            "INSERT INTO mqtt_connection_events \
                (connection_id, name, status, detail, client_id, owner, at) \
             SELECT s.id, s.name, s.status, s.detail, s.client_id, $7, s.at \
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
                         $6::timestamptz[]) AS s(id, name, status, detail, client_id, at)",
        )
        .bind(&ids)
        .bind(&names)
        .bind(&statuses)
        .bind(&details)
        .bind(&client_ids)
        .bind(&ats)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// At start: states this owner left behind (a crash, a SIGKILL) say
/// `stopped` until the new actors report, instead of a stale `connected`.
pub async fn mark_owned_stopped(pool: &PgPool, owner: &str) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE mqtt_connection_state \
         SET status = 'stopped', detail = 'service restarted', connected_since = NULL, \
             cooldown_until = NULL, updated_at = now() \
         WHERE owner = $1 AND status <> 'stopped'",
    )
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
