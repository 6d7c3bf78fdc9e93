//! Replicas and connection leases: which live process of an instance owns
//! which connection. Every time is the database's clock (`now()`), so the
//! replicas' clocks never have to agree; a replica keeps its own
//! conservative deadline on its monotonic clock (see the core's
//! `ownership`).

use crate::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;

/// This replica, as it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub replica_id: String,
    pub instance_id: String,
    pub host: String,
    pub pid: i32,
    pub boot_id: String,
    pub version: String,
}

/// What a replica needs to decide what to take and what to give up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseView {
    /// Live replicas of the instance (heartbeat not expired), this one
    /// included, ordered.
    pub replicas: Vec<String>,
    /// Enabled connections, by id.
    pub enabled: Vec<i64>,
    /// Unexpired leases of the instance: (connection id, owner).
    pub leases: Vec<(i64, String)>,
    /// How soon the first of the other replicas' leases expires: a dead
    /// replica's connections are taken right then, not at the next tick.
    pub next_expiry: Option<Duration>,
}

/// A replica as `replicas` lists it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReplicaRow {
    pub replica_id: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub alive: bool,
    pub owned: i64,
}

fn interval(period: Duration) -> f64 {
    period.as_secs_f64()
}

/// Registers or refreshes `me`: alive for `period` from now. Also forgets
/// replicas of the instance dead for more than ten periods.
pub async fn heartbeat(
    pool: &PgPool,
    me: &ReplicaInfo,
    period: Duration,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO mqtt_replicas (replica_id, instance_id, host, pid, version, boot_id, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $7, now() + make_interval(secs => $6)) \
         ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = now(), \
             expires_at = EXCLUDED.expires_at",
    )
    .bind(&me.replica_id)
    .bind(&me.instance_id)
    .bind(&me.host)
    .bind(me.pid)
    .bind(&me.version)
    .bind(interval(period))
    .bind(&me.boot_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM mqtt_replicas WHERE instance_id = $1 \
         AND expires_at < now() - make_interval(secs => $2 * 10)",
    )
    .bind(&me.instance_id)
    .bind(interval(period))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Extends the leases `owner` holds to `period` from now; returns the ids
/// still held (a lease that expired and was taken by another is not).
pub async fn renew_leases(
    pool: &PgPool,
    instance_id: &str,
    owner: &str,
    period: Duration,
) -> Result<Vec<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "UPDATE mqtt_connection_leases SET expires_at = now() + make_interval(secs => $3) \
         WHERE instance_id = $1 AND owner = $2 AND expires_at > now() \
         RETURNING connection_id",
    )
    .bind(instance_id)
    .bind(owner)
    .bind(interval(period))
    .fetch_all(pool)
    .await?)
}

/// Takes the leases of `ids` that are free or expired; returns those taken.
pub async fn acquire_leases(
    pool: &PgPool,
    instance_id: &str,
    owner: &str,
    ids: &[i64],
    period: Duration,
) -> Result<Vec<i64>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar(
        "INSERT INTO mqtt_connection_leases AS l (instance_id, connection_id, owner, expires_at) \
         SELECT $1, id, $2, now() + make_interval(secs => $4) FROM UNNEST($3::bigint[]) AS id \
         ON CONFLICT (instance_id, connection_id) DO UPDATE SET owner = EXCLUDED.owner, \
             epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at, acquired_at = now() \
         WHERE l.expires_at <= now() \
         RETURNING connection_id",
    )
    .bind(instance_id)
    .bind(owner)
    .bind(ids)
    .bind(interval(period))
    .fetch_all(pool)
    .await?)
}

/// Gives up the leases of `ids` (their connections are closed).
pub async fn release_leases(
    pool: &PgPool,
    instance_id: &str,
    owner: &str,
    ids: &[i64],
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "DELETE FROM mqtt_connection_leases \
         WHERE instance_id = $1 AND owner = $2 AND connection_id = ANY($3)",
    )
    .bind(instance_id)
    .bind(owner)
    .bind(ids)
    .execute(pool)
    .await?;
    Ok(())
}

/// Leaves the instance at a clean stop: no leases, no registration.
pub async fn leave(pool: &PgPool, instance_id: &str, owner: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM mqtt_connection_leases WHERE instance_id = $1 AND owner = $2")
        .bind(instance_id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM mqtt_replicas WHERE replica_id = $1")
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Live replicas, enabled connections and unexpired leases, in one
/// snapshot (one transaction), as `me` sees them.
pub async fn lease_view(
    pool: &PgPool,
    instance_id: &str,
    me: &str,
) -> Result<LeaseView, StoreError> {
    let mut tx = pool.begin().await?;
    let replicas = sqlx::query_scalar(
        "SELECT replica_id FROM mqtt_replicas \
         WHERE instance_id = $1 AND expires_at > now() ORDER BY replica_id",
    )
    .bind(instance_id)
    .fetch_all(&mut *tx)
    .await?;
    let enabled =
        sqlx::query_scalar("SELECT id FROM mqtt_connections WHERE is_enabled ORDER BY id")
            .fetch_all(&mut *tx)
            .await?;
    let leases = sqlx::query_as::<_, (i64, String)>(
        "SELECT connection_id, owner FROM mqtt_connection_leases \
         WHERE instance_id = $1 AND expires_at > now() ORDER BY connection_id",
    )
    .bind(instance_id)
    .fetch_all(&mut *tx)
    .await?;
    let next: Option<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM min(expires_at) - now())::float8 \
         FROM mqtt_connection_leases \
         WHERE instance_id = $1 AND owner <> $2 AND expires_at > now()",
    )
    .bind(instance_id)
    .bind(me)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(LeaseView {
        replicas,
        enabled,
        leases,
        next_expiry: next.map(|s| Duration::from_secs_f64(s.max(0.0))),
    })
}

/// Every replica of the instance known to the database, with how many
/// connections each owns.
pub async fn list_replicas(
    pool: &PgPool,
    instance_id: &str,
) -> Result<Vec<ReplicaRow>, StoreError> {
    Ok(sqlx::query_as::<_, ReplicaRow>(
        "SELECT r.replica_id, r.host, r.pid, r.version, r.started_at, r.heartbeat_at, \
                r.expires_at > now() AS alive, \
                (SELECT count(*) FROM mqtt_connection_leases l \
                 WHERE l.instance_id = r.instance_id AND l.owner = r.replica_id \
                   AND l.expires_at > now()) AS owned \
         FROM mqtt_replicas r WHERE r.instance_id = $1 ORDER BY r.replica_id",
    )
    .bind(instance_id)
    .fetch_all(pool)
    .await?)
}

/// At start: states left `connected` (or anything but `stopped`) by
/// replicas of this instance that are gone, and whose connections no live
/// replica leases, say `stopped` until an owner reports.
pub async fn mark_orphaned_stopped(pool: &PgPool, instance_id: &str) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE mqtt_connection_state s \
         SET status = 'stopped', detail = 'its replica is gone', connected_since = NULL, \
             cooldown_until = NULL, updated_at = now() \
         WHERE s.status <> 'stopped' \
           AND NOT EXISTS (SELECT 1 FROM mqtt_replicas r \
                           WHERE r.replica_id = s.owner AND r.expires_at > now()) \
           AND NOT EXISTS (SELECT 1 FROM mqtt_connection_leases l \
                           WHERE l.instance_id = $1 AND l.connection_id = s.connection_id \
                             AND l.expires_at > now())",
    )
    .bind(instance_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Unexpired replicas of the instance registered from `me`'s machine (same
/// host name and boot ID), other than `me`: (replica id, process id).
pub async fn local_replicas(
    pool: &PgPool,
    me: &ReplicaInfo,
) -> Result<Vec<(String, i32)>, StoreError> {
    Ok(sqlx::query_as::<_, (String, i32)>(
        "SELECT replica_id, pid FROM mqtt_replicas \
         WHERE instance_id = $1 AND host = $2 AND boot_id = $3 AND boot_id <> '' \
           AND replica_id <> $4 AND expires_at > now()",
    )
    .bind(&me.instance_id)
    .bind(&me.host)
    .bind(&me.boot_id)
    .bind(&me.replica_id)
    .fetch_all(pool)
    .await?)
}

/// Ends replicas known to be dead at once: their leases expire now (so any
/// replica may take them, with a new epoch) and their registrations go.
pub async fn expire_replicas(
    pool: &PgPool,
    instance_id: &str,
    dead: &[String],
) -> Result<u64, StoreError> {
    if dead.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE mqtt_connection_leases SET expires_at = now() \
         WHERE instance_id = $1 AND owner = ANY($2) AND expires_at > now()",
    )
    .bind(instance_id)
    .bind(dead)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM mqtt_replicas WHERE instance_id = $1 AND replica_id = ANY($2)")
        .bind(instance_id)
        .bind(dead)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests;
