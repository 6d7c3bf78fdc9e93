//! A fresh database for one benchmark run: created on the server named by
//! DATABASE_URL (default `postgres://postgres@127.0.0.1:5432`), migrated with
//! the service's own migrations, filled with N rows in one statement, and
//! dropped at the end.

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// The server used when DATABASE_URL is not set.
pub const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database this run created; [`Database::drop_database`] removes it.
pub struct Database {
    server: PgConnectOptions,
    name: String,
    url: String,
    pool: PgPool,
}

fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
}

impl Database {
    /// Creates database `name` on the server of `server_url` and applies the
    /// migrations. CREATE/DROP DATABASE run in the server's `postgres`
    /// database, whatever database the URL names.
    pub async fn create(server_url: &str, name: &str) -> anyhow::Result<Database> {
        let server = PgConnectOptions::from_str(server_url)
            .context("DATABASE_URL is not a valid postgres URL")?
            .database("postgres");
        let admin = pool_options()
            .connect_with(server.clone())
            .await
            .with_context(|| {
                format!(
                    "cannot connect to Postgres at {}:{} (set DATABASE_URL)",
                    server.get_host(),
                    server.get_port()
                )
            })?;
        // The name is ours (bench_<pid>), never user input: safe to format.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        .context("dropping a leftover benchmark database")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
        admin.close().await;

        let mut url = url::Url::parse(server_url).context("DATABASE_URL is not a valid URL")?;
        url.set_path(&format!("/{name}"));
        let options = server.clone().database(name);
        let pool = pool_options()
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to the new database {name}"))?;
        let db = Database {
            server,
            name: name.to_owned(),
            url: url.to_string(),
            pool,
        };
        store::migrate(&db.pool)
            .await
            .context("applying the service's migrations")?;
        Ok(db)
    }

    /// The URL the service gets as DATABASE_URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Inserts `count` enabled rows `site_00001…` for the broker on
    /// 127.0.0.1:`port`, with the table's defaults (MQTT 3.1.1; subscriptions
    /// NULL, that is `{name}/#`, unless `no_subscriptions`: an empty list),
    /// in one statement (one NOTIFY).
    pub async fn insert_sites(
        &self,
        count: u32,
        port: u16,
        no_subscriptions: bool,
    ) -> anyhow::Result<u64> {
        let width = count.to_string().len().max(5);
        let done = sqlx::query(
            "INSERT INTO mqtt_connections (name, broker_host, broker_port, subscriptions) \
             SELECT 'site_' || lpad(i::text, $2, '0'), '127.0.0.1', $3, \
                    CASE WHEN $4 THEN '{}'::text[] END \
             FROM generate_series(1, $1) AS i",
        )
        .bind(i64::from(count))
        .bind(i32::try_from(width).unwrap_or(10))
        .bind(i32::from(port))
        .bind(no_subscriptions)
        .execute(&self.pool)
        .await
        .context("inserting the connection rows")?;
        Ok(done.rows_affected())
    }

    /// The pool on the benchmark's database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Inserts one enabled row; returns its id.
    pub async fn insert_one(&self, name: &str, port: u16) -> anyhow::Result<i64> {
        sqlx::query_scalar(
            "INSERT INTO mqtt_connections (name, broker_host, broker_port) \
             VALUES ($1, '127.0.0.1', $2) RETURNING id",
        )
        .bind(name)
        .bind(i32::from(port))
        .fetch_one(&self.pool)
        .await
        .with_context(|| format!("inserting row {name}"))
    }

    /// Deletes one row.
    pub async fn delete(&self, id: i64) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM mqtt_connections WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .with_context(|| format!("deleting row {id}"))?;
        Ok(())
    }

    /// Drops the database (disconnecting anyone still in it).
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        self.pool.close().await;
        let admin = pool_options()
            .connect_with(self.server.clone())
            .await
            .context("cannot connect to Postgres to drop the benchmark database")?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&admin)
        .await
        .with_context(|| format!("dropping database {}", self.name))?;
        admin.close().await;
        Ok(())
    }
}
