//! What is in the database: desired connections (`mqtt_connections`), the
//! service's view of them (`mqtt_connection_state`, `mqtt_connection_events`),
//! change notifications and the instance lock.
//!
//! Every query of the service lives here; other crates see typed rows and
//! [`StoreError`], never SQL.

mod admin;
mod connect;
mod connections;
mod encryption;
mod listener;
mod lock;
mod state;

pub use admin::{
    ListedConnection, NewConnection, add_connection, list_connections, remove_connection,
    set_enabled,
};
pub use connect::{connect_options, database_address, describe_connect_error, wait_for_database};
pub use connections::{ConnectionRow, load_connections};
pub use encryption::{Encryption, connection_encryption, is_local};
pub use listener::{CHANNEL, Change, ChangeListener};
pub use lock::InstanceLock;
pub use state::{EventRecord, StateRecord, mark_owned_stopped, write_batch};

pub use sqlx::PgPool;

/// The schema migrations in `migrations/` at the repository root.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await.map_err(StoreError::Migrate)
}

/// A database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A query or connection failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The database refused the connection for good (unknown role, wrong
    /// password, no such database): one line with what to do, from
    /// [`describe_connect_error`].
    #[error("{0}")]
    Connect(String),
    /// Migrations could not be applied.
    #[error("migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The URL in DATABASE_URL cannot be used.
    #[error("DATABASE_URL: {0}")]
    Url(String),
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
