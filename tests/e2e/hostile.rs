//! Tenant isolation under hostile input (issue 6): what one broker, one row
//! or a slow database does must stay with that tenant, bounded in memory,
//! in connection attempts and in shutdown time, and nothing a broker or a
//! row holds may forge a log line or leak a secret.
//!
//! Each test asserts what the code before the hardening got wrong.

mod cli;
mod flapping;
mod isolation;
mod memory;
mod poison;
mod row_secrets;
mod slow_shutdown;
mod tls;

use mqtt_supervisor_tests::{PacketKind, Step, state};
use sqlx::PgPool;
use std::time::Duration;

/// A broker that accepts and answers, but after the client's DISCONNECT
/// neither closes nor answers: the client's goodbye can only end by timing
/// out.
fn holds_after_disconnect() -> Vec<Step> {
    vec![
        Step::ConnAck { code: 0 },
        Step::WaitFor(PacketKind::Disconnect),
        Step::Hold,
    ]
}

/// Waits until row `id` has one of `statuses` and a last_error containing
/// `needle`; returns `(status, detail, last_error)` if it came.
async fn wait_error(
    pool: &PgPool,
    id: i64,
    statuses: &[&str],
    needle: &str,
    timeout: Duration,
) -> Option<(String, String, String)> {
    let found = mqtt_supervisor_tests::eventually(timeout, || async move {
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

/// Every column of every row of a table the application reads, as JSON
/// lines.
async fn table_text(pool: &PgPool, table: Table) -> String {
    let sql = match table {
        Table::State => {
            "SELECT coalesce(string_agg(row_to_json(t)::text, E'\\n'), '') FROM mqtt_connection_state t"
        }
        Table::Events => {
            "SELECT coalesce(string_agg(row_to_json(t)::text, E'\\n'), '') FROM mqtt_connection_events t"
        }
    };
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[derive(Debug, Clone, Copy)]
enum Table {
    State,
    Events,
}
