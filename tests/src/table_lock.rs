//! A table lock held by the test: every query of the service on that table
//! waits until the test lets go, which is how a test makes the database
//! slow for one table without making it unreachable.

use sqlx::{Connection, PgConnection, PgPool};

/// An `ACCESS EXCLUSIVE` lock on one table, held by an open transaction on
/// a connection of its own. Dropping the guard closes that connection, and
/// Postgres ends the transaction and its lock; [`TableLock::release`] does
/// it explicitly and returns once the lock is gone.
pub struct TableLock {
    conn: Option<PgConnection>,
}

/// Takes `LOCK TABLE <table> IN ACCESS EXCLUSIVE MODE` in a new
/// transaction on a new connection to the pool's database; returns once the
/// lock is granted. `table` is a name, optionally schema-qualified
/// (`schema.table`); each part is quoted as an identifier.
pub async fn hold_lock(pool: &PgPool, table: &str) -> TableLock {
    let mut conn = PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut conn).await.unwrap();
    let sql = format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", quote(table));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    TableLock { conn: Some(conn) }
}

impl TableLock {
    /// Rolls back (which releases the lock) and closes the connection.
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    }
}

/// `a.b` as `"a"."b"`, doubling any `"` inside.
fn quote(table: &str) -> String {
    table
        .split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    #[test]
    fn hold_lock_quotes_each_part_of_the_name() {
        assert_eq!(super::quote("mqtt_connections"), "\"mqtt_connections\"");
        assert_eq!(super::quote("public.t\"x"), "\"public\".\"t\"\"x\"");
    }
}
