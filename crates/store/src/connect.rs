//! Connecting to Postgres, patiently: a service that starts before its
//! database says so and waits instead of crash-looping.

use crate::StoreError;
use sqlx::ConnectOptions;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Parses a database URL; the error never repeats the URL (it may hold a password).
pub fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url)
        .map(|o| o.log_statements(tracing::log::LevelFilter::Trace))
        .map_err(|_| StoreError::Url("not a valid postgres URL".to_owned()))
}

/// `host:port` (or the socket path) for log lines, never the credentials.
pub fn database_address(options: &PgConnectOptions) -> String {
    format!("{}:{}", options.get_host(), options.get_port())
}

/// A pool for the service: a handful of connections, short acquire timeout so
/// that a dead database shows up as an error instead of a hang.
fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(8)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
}

/// Connects, retrying with backoff (1 s doubling to 30 s) and a progress line
/// per attempt, until the database answers (`Ok(Some(pool))`), refuses for
/// good (bad password, no such database: `Err`), or `token` is cancelled
/// (`Ok(None)`).
pub async fn wait_for_database(
    options: &PgConnectOptions,
    token: &CancellationToken,
) -> Result<Option<PgPool>, StoreError> {
    let address = database_address(options);
    let mut delay = Duration::from_secs(1);
    let mut attempt = 1u32;
    loop {
        let Some(result) = token
            .run_until_cancelled(pool_options().connect_with(options.clone()))
            .await
        else {
            return Ok(None);
        };
        match result {
            Ok(pool) => {
                if attempt > 1 {
                    tracing::info!(database = %address, attempt, "Database is reachable.");
                }
                return Ok(Some(pool));
            }
            Err(e) if is_permanent(&e) => return Err(StoreError::Database(e)),
            Err(e) => {
                tracing::warn!(
                    database = %address, attempt, error = %e,
                    "Waiting for database {address} (attempt {attempt}, next in {} s).",
                    delay.as_secs()
                );
                if token
                    .run_until_cancelled(tokio::time::sleep(delay))
                    .await
                    .is_none()
                {
                    return Ok(None);
                }
                delay = (delay * 2).min(Duration::from_secs(30));
                attempt += 1;
            }
        }
    }
}

/// Errors that waiting will not fix: bad password, missing database.
fn is_permanent(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // invalid_password, invalid_authorization_specification, invalid_catalog_name
            Some("28P01") | Some("28000") | Some("3D000")
        ),
        sqlx::Error::Configuration(_) => true,
        _ => false,
    }
}
