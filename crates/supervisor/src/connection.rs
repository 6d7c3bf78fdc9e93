//! The `ConnectionManager` actor: one task per enabled row that owns a
//! rumqttc client and event loop and nothing shared.
//!
//! Lifecycle: `connecting` → (CONNACK) `connected`: publish retained
//! `online`, subscribe; on loss → `disconnected` with jittered backoff
//! (1 s doubling to 60 s); on refusal → `error`, retried every 60 s; on a
//! takeover (a broker close within the takeover window after CONNACK, or
//! MQTT 5 DISCONNECT 0x8E) → `cooldown`, during which the event loop is not
//! polled at all, since polling would reconnect and kick the other client.
//!
//! Messages: what arrives on the connection's subscriptions goes to the
//! inbox writer; QoS 1 and 2 messages are acknowledged (rumqttc's manual
//! acks), in the order received, once stored. The connection's outbox rows
//! are published in id order within a window and marked after the broker's
//! acknowledgement.
//!
//! Stopping: cancelling the actor's token (shutdown, row disabled or
//! changed). A stop while connected publishes
//! retained `offline` (a clean DISCONNECT suppresses the Will, so this is
//! what tells subscribers), queues DISCONNECT and polls until it is written,
//! bounded by the connect timeout. The last state is always `stopped`.
//!
//! Readers get the state through a `watch` receiver and never wait on the
//! actor; the [`Recorder`] writes changes to the database.

pub mod policy;
pub mod report;
mod run;

use crate::mail::Mail;
use crate::metrics::ConnectionCounters;
use crate::recorder::Recorder;
use crate::spec::ConnectionSpec;
use crate::state::{ConnectionState, Status};
use crate::tasks::{TaskKind, Tasks};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What an actor takes over from the earlier actors of its row.
pub struct Lineage {
    /// Earlier actors still closing: this one connects after them.
    pub predecessors: Vec<ConnectionHandle>,
    /// The row's message counts, kept across restarts.
    pub counters: Arc<ConnectionCounters>,
}

/// Handle to a running connection actor; cheap to clone.
#[derive(Clone)]
pub struct ConnectionHandle {
    spec: Arc<ConnectionSpec>,
    state: watch::Receiver<ConnectionState>,
    token: CancellationToken,
    counters: Arc<ConnectionCounters>,
}

impl ConnectionHandle {
    /// Spawns the actor for `spec` into `tasks` (counted in `tracked`). It
    /// stops when `parent` is cancelled, when [`ConnectionHandle::stop`] is
    /// called, or on a command. It connects only after every actor in
    /// `lineage.predecessors` (earlier actors of the same row, still
    /// closing) has stopped, or their goodbye time is up.
    pub fn spawn(
        spec: ConnectionSpec,
        recorder: Recorder,
        parent: &CancellationToken,
        tasks: &mut JoinSet<()>,
        tracked: &Tasks,
        lineage: Lineage,
        mail: Mail,
    ) -> (ConnectionHandle, AbortHandle) {
        let counters = lineage.counters.clone();
        let spec = Arc::new(spec);
        let (state_tx, state_rx) = watch::channel(ConnectionState::starting());
        let token = parent.child_token();
        let span = tracing::info_span!(
            "connection",
            connection = %spec.name,
            client_id = %spec.client_id,
        );
        let manager = run::ConnectionManager::new(
            spec.clone(),
            recorder,
            state_tx,
            token.clone(),
            lineage,
            tracked.guard(TaskKind::Connection),
            mail,
        );
        let abort = tasks.spawn(tracked.track_future(manager.run().instrument(span)));
        let handle = ConnectionHandle {
            spec,
            state: state_rx,
            token,
            counters,
        };
        (handle, abort)
    }

    /// The configuration the actor runs with.
    pub fn spec(&self) -> &Arc<ConnectionSpec> {
        &self.spec
    }

    /// A receiver of the actor's state.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// The connection's message counts.
    pub fn counters(&self) -> &Arc<ConnectionCounters> {
        &self.counters
    }

    /// Asks for a graceful stop; returns at once.
    pub fn stop(&self) {
        self.token.cancel();
    }

    /// True once the actor reported `stopped`.
    pub fn is_stopped(&self) -> bool {
        self.state.borrow().status == Status::Stopped
    }

    /// Waits until the actor reports `stopped` (or is gone).
    pub async fn stopped(&self) {
        let mut rx = self.state.clone();
        // An error means the actor is gone, which is stopped too.
        let _ = rx.wait_for(|s| s.status == Status::Stopped).await;
    }
}
