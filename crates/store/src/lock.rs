//! One live process per instance: a Postgres advisory lock held on a
//! dedicated connection for the life of the process.
//!
//! Two processes with the same instance ID would open the same client IDs
//! and kick each other off the brokers forever. The lock key is derived from
//! the database name and the key the caller gives (the instance ID as it
//! appears in client IDs, i.e. sanitised); it is released when the process
//! exits, however it exits, because Postgres drops it with the session.

use crate::StoreError;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// A held instance lock; dropping it closes the connection and releases it.
pub struct InstanceLock {
    conn: PgConnection,
}

impl InstanceLock {
    /// Tries once; `Ok(None)` when another live process holds it.
    pub async fn try_acquire(
        options: &PgConnectOptions,
        key: &str,
    ) -> Result<Option<Self>, StoreError> {
        let mut conn = PgConnection::connect_with(options).await?;
        let (got,): (bool,) = sqlx::query_as(
            "SELECT pg_try_advisory_lock( \
                hashtextextended('mqtt-supervisor/' || current_database() || '/' || $1, 0))",
        )
        .bind(key)
        .fetch_one(&mut conn)
        .await?;
        Ok(got.then_some(InstanceLock { conn }))
    }

    /// True while the lock's connection is alive (and so the lock held).
    /// Unbounded: a black-holed database never answers, so callers bound it.
    pub async fn is_held(&mut self) -> bool {
        self.conn.ping().await.is_ok()
    }
}
