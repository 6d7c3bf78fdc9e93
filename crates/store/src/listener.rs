//! LISTEN for `mqtt_connections_changed` on a connection of its own.

use crate::StoreError;
use sqlx::PgPool;
use sqlx::postgres::PgListener;

/// The channel the trigger on `mqtt_connections` notifies.
pub const CHANNEL: &str = "mqtt_connections_changed";

/// Receives change notifications. After a lost connection sqlx reconnects and
/// listens again by itself; [`ChangeListener::recv`] reports the gap so the
/// caller can reload (notifications sent meanwhile are gone).
pub struct ChangeListener {
    inner: PgListener,
}

/// What the listener saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A row changed.
    Notified,
    /// The connection was lost; it reconnects on the next `recv`.
    Lost,
}

impl ChangeListener {
    /// Opens a dedicated connection from `pool`'s options and LISTENs.
    pub async fn connect(pool: &PgPool) -> Result<Self, StoreError> {
        let mut inner = PgListener::connect_with(pool).await?;
        inner.listen(CHANNEL).await?;
        Ok(ChangeListener { inner })
    }

    /// Waits for the next notification or for the connection to drop.
    /// An error means reconnecting failed; call again after a pause.
    pub async fn recv(&mut self) -> Result<Change, StoreError> {
        match self.inner.try_recv().await? {
            Some(_) => Ok(Change::Notified),
            None => Ok(Change::Lost),
        }
    }
}

/// Receives `mqtt_outbox` notifications: the connection whose outbox got
/// rows. Reconnects like [`ChangeListener`]; a gap is [`OutboxChange::Lost`]
/// (look at every connection's outbox again).
pub struct OutboxListener {
    inner: PgListener,
}

/// What the outbox listener saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxChange {
    /// Rows for this connection id (`None`: a payload that is not an id).
    Rows(Option<i64>),
    /// The connection was lost; it reconnects on the next `recv`.
    Lost,
}

impl OutboxListener {
    /// Opens a dedicated connection from `pool`'s options and LISTENs.
    pub async fn connect(pool: &PgPool) -> Result<Self, StoreError> {
        let mut inner = PgListener::connect_with(pool).await?;
        inner.listen(crate::OUTBOX_CHANNEL).await?;
        Ok(OutboxListener { inner })
    }

    /// Waits for the next notification or for the connection to drop.
    pub async fn recv(&mut self) -> Result<OutboxChange, StoreError> {
        match self.inner.try_recv().await? {
            Some(n) => Ok(OutboxChange::Rows(n.payload().trim().parse().ok())),
            None => Ok(OutboxChange::Lost),
        }
    }
}
