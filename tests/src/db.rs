//! Database helpers for a per-test database created by `#[sqlx::test]`.

use sqlx::PgPool;
use std::time::Duration;

/// The URL of the pool's database, for the binary's DATABASE_URL.
pub fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let db = pool
        .connect_options()
        .get_database()
        .expect("sqlx::test pools name their database")
        .to_owned();
    match base.rfind('/') {
        Some(i) if base[..i].contains("://") && i > base.find("://").unwrap() + 2 => {
            let (head, tail) = base.split_at(i);
            let query = tail.find('?').map(|q| &tail[q..]).unwrap_or("");
            format!("{head}/{db}{query}")
        }
        _ => format!("{base}/{db}"),
    }
}

/// A row to insert into `mqtt_connections`; `Row::new(name, port)` fills
/// the rest with the table's defaults.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub name: String,
    pub host: String,
    pub port: i32,
    pub protocol: Option<String>,
    pub enabled: Option<bool>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive_secs: Option<i32>,
    pub topic_prefix: Option<String>,
    pub subscriptions: Option<Vec<String>>,
    pub use_tls: bool,
    pub ca_cert_pem: Option<String>,
}

impl Row {
    /// A row for a broker on 127.0.0.1:`port`.
    pub fn new(name: &str, port: u16) -> Row {
        Row {
            name: name.to_owned(),
            host: "127.0.0.1".to_owned(),
            port: i32::from(port),
            ..Row::default()
        }
    }
}

/// Inserts `row`; returns its id.
pub async fn insert(pool: &PgPool, row: &Row) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO mqtt_connections (name, broker_host, broker_port, protocol, is_enabled, \
            username, password, keep_alive_secs, topic_prefix, subscriptions, use_tls, ca_cert_pem) \
         VALUES ($1, $2, $3, COALESCE($4, '3.1.1'), COALESCE($5, true), $6, $7, $8, $9, $10, $11, $12) \
         RETURNING id",
    )
    .bind(&row.name)
    .bind(&row.host)
    .bind(row.port)
    .bind(&row.protocol)
    .bind(row.enabled)
    .bind(&row.username)
    .bind(&row.password)
    .bind(row.keep_alive_secs)
    .bind(&row.topic_prefix)
    .bind(&row.subscriptions)
    .bind(row.use_tls)
    .bind(&row.ca_cert_pem)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `(status, detail, last_error)` of a connection, if the service wrote one.
pub async fn state(pool: &PgPool, id: i64) -> Option<(String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT status, detail, last_error FROM mqtt_connection_state WHERE connection_id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// Waits until the state table says `status` for `id`.
pub async fn wait_status(pool: &PgPool, id: i64, status: &str, timeout: Duration) -> bool {
    crate::eventually(timeout, || async move {
        state(pool, id).await.is_some_and(|(s, _, _)| s == status)
    })
    .await
}

/// Waits until row `id` has one of `statuses` and a last_error containing
/// `needle`; returns `(status, detail, last_error)` if it came.
pub async fn wait_error(
    pool: &PgPool,
    id: i64,
    statuses: &[&str],
    needle: &str,
    timeout: Duration,
) -> Option<(String, String, String)> {
    let found = crate::eventually(timeout, || async move {
        state(pool, id).await.is_some_and(|(s, _, e)| {
            statuses.contains(&s.as_str()) && e.is_some_and(|e| e.contains(needle))
        })
    })
    .await;
    if !found {
        return None;
    }
    let (status, detail, last_error) = state(pool, id).await?;
    Some((status, detail, last_error.unwrap_or_default()))
}
