//! What is in the database: desired connections (`mqtt_connections`), the
//! service's view of them (`mqtt_connection_state`, `mqtt_connection_events`),
//! messages both ways (`mqtt_inbox`, `mqtt_outbox`), change notifications
//! and the replicas' connection leases.
//!
//! Every query of the service lives here; other crates see typed rows and
//! [`StoreError`], never SQL.

mod admin;
mod api;
mod cause;
mod connect;
mod connections;
mod encryption;
mod inbox;
mod leases;
mod listener;
mod migrations;
mod outbox;
mod state;

pub use admin::{
    ListedConnection, NewConnection, add_connection, list_connections, remove_connection,
    set_enabled,
};
pub use api::{
    MessageQuery, StoredEvent, StoredMessage, connection_by_name, insert_connection,
    outbox_pending_count, recent_events, recent_messages, topic_filter_regex, update_connection,
};
pub use cause::describe;
pub use connect::{connect_options, database_address, describe_connect_error, wait_for_database};
pub use connections::{ConnectionRow, load_connections};
pub use encryption::{Encryption, connection_encryption, is_local};
pub use inbox::{InboundRecord, insert_inbound, prune_messages};
pub use leases::{
    LeaseView, ReplicaInfo, ReplicaRow, acquire_leases, expire_replicas, heartbeat, lease_view,
    leave, list_replicas, local_replicas, mark_orphaned_stopped, release_leases, renew_leases,
};
pub use listener::{CHANNEL, Change, ChangeListener, OutboxChange, OutboxListener};
pub use migrations::{AppliedMigration, MIGRATOR, migrate, migration_summary};
pub use outbox::{
    OUTBOX_CHANNEL, OutboxMarks, OutboxRow, connections_with_pending_outbox, fail_orphaned_outbox,
    mark_outbox, pending_outbox,
};
pub use state::{EventRecord, StateRecord, mark_owned_stopped, write_batch};

pub use sqlx::PgPool;

/// A database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A query or connection failed. Printed as its cause alone
    /// ([`describe`]) and with no source: sqlx's errors carry their cause
    /// in their message and as their source, and a chain would say it twice.
    #[error("{}", describe(.0))]
    Database(sqlx::Error),
    /// The database refused the connection for good (unknown role, wrong
    /// password, no such database): one line with what to do, from
    /// [`describe_connect_error`].
    #[error("{0}")]
    Connect(String),
    /// Migrations could not be applied.
    #[error("cannot apply migrations: {}", cause::describe_migrate(.0))]
    Migrate(sqlx::migrate::MigrateError),
    /// A migration met a table of the same name that this service did not
    /// create (SQLSTATE 42P07): the database belongs to something else.
    #[error(
        "the database already has a table named `{0}` that this service did not create: \
         point DATABASE_URL at a database of its own (postgres://.../another_db), \
         or drop the table if it is a leftover"
    )]
    TableExists(String),
    /// The URL in DATABASE_URL cannot be used.
    #[error("DATABASE_URL: {0}")]
    Url(String),
    /// The database did not answer in time.
    #[error("the database did not answer in time")]
    TimedOut,
    /// No connection has this name.
    #[error("no connection named `{0}`")]
    NotFound(String),
    /// A connection with this name exists already.
    #[error("a connection named `{0}` exists already")]
    Exists(String),
    /// The database refused the values (a CHECK constraint, or data it
    /// cannot store: SQLSTATE classes 22 and 23). Retrying the same values
    /// fails again.
    #[error("the database refused the values ({0})")]
    Rejected(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }
}

impl StoreError {
    /// Sorts a failed write: data the database refuses (SQLSTATE class 22,
    /// data exception, or 23, integrity constraint) becomes
    /// [`StoreError::Rejected`]; anything else (connection, timeout) stays
    /// as it is and is worth retrying.
    pub fn classify(e: sqlx::Error) -> StoreError {
        if let sqlx::Error::Database(db) = &e
            && let Some(code) = db.code()
            && (code.starts_with("22") || code.starts_with("23"))
        {
            return StoreError::Rejected(format!("SQLSTATE {code}: {}", db.message()));
        }
        StoreError::Database(e)
    }

    /// True for errors that the same values will meet again.
    pub fn is_rejected(&self) -> bool {
        matches!(self, StoreError::Rejected(_))
    }
}

/// `SELECT 1`: does the database answer?
pub async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}
