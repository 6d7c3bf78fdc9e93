//! What readers (health, metrics, the API, the monitor page) see of all connections: a
//! snapshot the monitor publishes through `watch` after every reconcile.

use crate::metrics::ConnectionCounters;
use crate::state::ConnectionState;
use std::sync::Arc;
use tokio::sync::watch;

/// One connection as readers see it.
#[derive(Clone)]
pub struct ConnectionView {
    /// Row id.
    pub id: i64,
    /// Row name.
    pub name: String,
    /// Client ID.
    pub client_id: String,
    /// `host:port`; `None` for an invalid row whose host is not valid.
    pub broker: Option<String>,
    /// Live state (for an invalid row, a fixed `error`).
    pub state: watch::Receiver<ConnectionState>,
    /// Message counts; `None` for a row that never ran (invalid).
    pub counters: Option<Arc<ConnectionCounters>>,
    /// Disconnected through the API and held down.
    pub held: bool,
}

/// All connections of the process.
#[derive(Clone, Default)]
pub struct Fleet {
    /// True once the first reconcile ran and until shutdown begins.
    pub running: bool,
    /// Rows in the table, enabled or not (as of the last successful load).
    pub total_rows: usize,
    /// Enabled rows, valid or not.
    pub enabled_rows: usize,
    /// One view per enabled row this replica owns, ordered by id.
    pub connections: Vec<ConnectionView>,
    /// Rows whose actors are still closing (stopped, replaced, given up).
    pub closing: Vec<i64>,
}

/// Receiver side of the fleet snapshot.
pub type FleetWatch = watch::Receiver<Arc<Fleet>>;

impl Fleet {
    /// The channel the monitor publishes on; readers clone the receiver.
    /// Starts empty and not running (the honest state before the first load).
    pub fn channel() -> (watch::Sender<Arc<Fleet>>, FleetWatch) {
        watch::channel(Arc::new(Fleet::default()))
    }
}
