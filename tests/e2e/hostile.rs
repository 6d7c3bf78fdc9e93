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

pub(crate) use mqtt_supervisor_tests::wait_error;
use mqtt_supervisor_tests::{PacketKind, Step};
use sqlx::PgPool;

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
