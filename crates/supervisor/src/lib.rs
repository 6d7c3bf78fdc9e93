//! The supervisor core: one [`ConnectionManager`](connection) actor per
//! enabled `mqtt_connections` row, a [`Monitor`] that reconciles actors
//! against the table, and the [`Recorder`] that writes their state back.
//!
//! Readers (health, metrics) look at [`Fleet`] snapshots and per-connection
//! `watch` receivers; nothing here takes a global lock on a hot path.

pub mod backoff;
pub mod connection;
pub mod envelope;
pub mod fleet;
pub mod inbox;
mod link;
pub mod mail;
pub mod metrics;
pub mod monitor;
pub mod outbox;
pub mod ownership;
mod plan;
pub mod recorder;
pub mod shutdown;
pub mod spec;
pub mod state;
pub mod tasks;
mod tls;
pub mod topic;
pub mod untrusted;

pub use connection::ConnectionHandle;
pub use fleet::{ConnectionView, Fleet, FleetWatch};
pub use mail::Mail;
pub use metrics::{ConnectionCounters, Metrics};
pub use monitor::{Monitor, MonitorOptions, ShutdownReport};
pub use plan::{validate_all, validate_candidate};
pub use recorder::Recorder;
pub use shutdown::Shutdown;
pub use spec::{ConnectionSpec, InvalidRow, Protocol, RowError};
pub use state::{ConnectionState, Status};
pub use tasks::{TaskKind, Tasks};
pub use tls::CaError;
