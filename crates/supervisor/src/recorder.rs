//! The recorder writes connection states to `mqtt_connection_state` and
//! `mqtt_connection_events` without ever making an actor wait.
//!
//! Actors call [`Recorder::record`], which only touches an in-memory map
//! (latest state per connection) and a bounded queue of events under a short
//! lock. One writer task flushes them in batches. When the database is slow
//! or down the map keeps only the latest state of each connection, so the
//! latest state wins when it is back; events beyond the queue's bound are
//! dropped and counted.

use crate::backoff::Backoff;
use crate::state::ConnectionState;
use chrono::Utc;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{EventRecord, PgPool, StateRecord, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Events kept while the database is unreachable; older ones are dropped.
const MAX_QUEUED_EVENTS: usize = 100_000;
/// Rows per INSERT: large enough for 10,000 connections in a few statements.
const BATCH: usize = 5_000;

/// Handle to the state writer; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
}

struct Shared {
    owner: String,
    pending: Mutex<Pending>,
    wake: Notify,
}

#[derive(Default)]
struct Pending {
    states: HashMap<i64, StateRecord>,
    events: VecDeque<EventRecord>,
    dropped_events: u64,
}

impl Recorder {
    /// A recorder writing as `owner` (the instance ID).
    pub fn new(owner: impl Into<String>) -> Self {
        Recorder {
            shared: Arc::new(Shared {
                owner: owner.into(),
                pending: Mutex::new(Pending::default()),
                wake: Notify::new(),
            }),
        }
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave the maps inconsistent
        // (each update is a single insert), so a poisoned lock is still usable.
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a state change of connection `id`. Never blocks on I/O.
    pub fn record(&self, id: i64, name: &str, client_id: &str, state: &ConnectionState) {
        let record = StateRecord {
            connection_id: id,
            status: state.status.as_str().to_owned(),
            detail: state.detail.clone(),
            client_id: client_id.to_owned(),
            connected_since: state.connected_since,
            last_error: state.last_error.clone(),
            cooldown_until: state.cooldown_until,
            reconnects: i64::try_from(state.reconnects).unwrap_or(i64::MAX),
        };
        let event = EventRecord {
            connection_id: id,
            name: name.to_owned(),
            status: record.status.clone(),
            detail: record.detail.clone(),
            client_id: client_id.to_owned(),
            at: Utc::now(),
        };
        {
            let mut pending = self.pending();
            pending.states.insert(id, record);
            if pending.events.len() >= MAX_QUEUED_EVENTS {
                pending.events.pop_front();
                pending.dropped_events += 1;
            }
            pending.events.push_back(event);
        }
        self.shared.wake.notify_one();
    }

    /// Number of states and events not yet written.
    pub fn backlog(&self) -> (usize, usize) {
        let pending = self.pending();
        (pending.states.len(), pending.events.len())
    }

    /// Writes everything queued so far. On failure the records go back into
    /// the queue (newer states recorded meanwhile win) and the error is returned.
    pub async fn flush(&self, pool: &PgPool) -> Result<usize, StoreError> {
        let (states, events, dropped) = {
            let mut pending = self.pending();
            let states: Vec<StateRecord> = pending.states.drain().map(|(_, s)| s).collect();
            let events: Vec<EventRecord> = pending.events.drain(..).collect();
            (states, events, std::mem::take(&mut pending.dropped_events))
        };
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "State history queue overflowed; oldest events were dropped."
            );
        }
        let written = states.len() + events.len();
        let mut result = Ok(());
        let batches = states.len().max(events.len()).div_ceil(BATCH).max(1);
        for i in 0..batches {
            let (s, e) = (slice(&states, i), slice(&events, i));
            if let Err(err) = store::write_batch(pool, &self.shared.owner, s, e).await {
                result = Err(err);
                break;
            }
        }
        match result {
            Ok(()) => Ok(written),
            Err(err) => {
                let mut pending = self.pending();
                for s in states {
                    pending.states.entry(s.connection_id).or_insert(s);
                }
                for e in events.into_iter().rev() {
                    if pending.events.len() < MAX_QUEUED_EVENTS {
                        pending.events.push_front(e);
                    } else {
                        pending.dropped_events += 1;
                    }
                }
                Err(err)
            }
        }
    }

    /// Writer loop: flushes shortly after every change until `token` is
    /// cancelled; retries with backoff while the database fails. The final
    /// flush at shutdown is the caller's ([`Recorder::flush`]).
    pub async fn run(self, pool: PgPool, token: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut failing = false;
        loop {
            if token
                .run_until_cancelled(self.shared.wake.notified())
                .await
                .is_none()
            {
                return;
            }
            // Let a burst (10,000 actors starting) gather into one batch.
            if token
                .run_until_cancelled(tokio::time::sleep(Duration::from_millis(20)))
                .await
                .is_none()
            {
                return;
            }
            loop {
                match self.flush(&pool).await {
                    Ok(_) => {
                        if failing {
                            tracing::info!(
                                "Database is back; connection states are written again."
                            );
                            failing = false;
                        }
                        backoff.reset();
                        break;
                    }
                    Err(e) => {
                        let delay = backoff.next_ceiling();
                        if !failing {
                            tracing::warn!(
                                error = %e,
                                "Cannot write connection states; keeping the latest in memory and retrying."
                            );
                            failing = true;
                        }
                        if token
                            .run_until_cancelled(tokio::time::sleep(delay))
                            .await
                            .is_none()
                        {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// The `i`-th batch of `items` (empty past the end).
fn slice<T>(items: &[T], i: usize) -> &[T] {
    let start = (i * BATCH).min(items.len());
    let end = ((i + 1) * BATCH).min(items.len());
    &items[start..end]
}
