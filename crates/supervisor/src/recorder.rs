//! The recorder writes connection states to `mqtt_connection_state` and
//! `mqtt_connection_events` without ever making an actor wait.
//!
//! Actors call [`Recorder::record`], which cleans the text (see
//! [`untrusted`](crate::untrusted)) and only touches an in-memory map (the
//! latest state per connection) and a queue of events bounded in count and
//! bytes, under a short lock. One writer task flushes them in batches.
//!
//! One bad record never stops the others: a batch the database refuses on
//! its data (SQLSTATE classes 22 and 23) is split until the refused records
//! stand alone; those are dropped, counted and logged, the rest is written.
//! A transient failure (database down) puts back exactly what was not yet
//! committed, so nothing is written twice; the newest state of a connection
//! wins over one put back. A flush cancelled half-way (shutdown) puts back
//! what it had not written too.

mod flush;

use crate::backoff::Backoff;
use crate::state::ConnectionState;
use crate::untrusted::clean;
use chrono::Utc;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{EventRecord, PgPool, StateRecord, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Events kept while the database is unreachable; older ones are dropped.
const MAX_QUEUED_EVENTS: usize = 100_000;
/// The same queue bounded in bytes of text.
const MAX_QUEUED_EVENT_BYTES: usize = 32 << 20;
/// Rows per INSERT: large enough for 10,000 connections in a few statements.
const BATCH: usize = 5_000;

/// Handle to the state writer; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
}

struct Shared {
    owner: String,
    /// Skips states of connections another replica holds the lease of.
    fenced: bool,
    pending: Mutex<Pending>,
    wake: Notify,
    /// Records the database refused, dropped.
    rejected: AtomicU64,
    batch: usize,
}

#[derive(Default)]
struct Pending {
    states: HashMap<i64, StateRecord>,
    events: VecDeque<EventRecord>,
    event_bytes: usize,
    dropped_events: u64,
}

impl Pending {
    /// Queues an event; `put_back` events (older than everything queued)
    /// are dropped when the queue is full, new ones push out the oldest.
    fn push_event(&mut self, event: EventRecord, put_back: bool) {
        let bytes = event_bytes(&event);
        let full = |p: &Pending| {
            p.events.len() >= MAX_QUEUED_EVENTS || p.event_bytes + bytes > MAX_QUEUED_EVENT_BYTES
        };
        if put_back {
            if full(self) {
                self.dropped_events += 1;
                return;
            }
            self.event_bytes += bytes;
            self.events.push_front(event);
            return;
        }
        while !self.events.is_empty() && full(self) {
            if let Some(old) = self.events.pop_front() {
                self.event_bytes -= event_bytes(&old);
            }
            self.dropped_events += 1;
        }
        self.event_bytes += bytes;
        self.events.push_back(event);
    }

    fn take_event(&mut self) -> Option<EventRecord> {
        let e = self.events.pop_front()?;
        self.event_bytes -= event_bytes(&e);
        Some(e)
    }
}

fn event_bytes(e: &EventRecord) -> usize {
    64 + e.name.len() + e.status.len() + e.detail.len() + e.client_id.len()
}

impl Recorder {
    /// A recorder writing as `owner`, every state it is given.
    pub fn new(owner: impl Into<String>) -> Self {
        Recorder::with_batch(owner, BATCH, false)
    }

    /// A recorder writing as the replica `owner`, except states of
    /// connections another replica holds the lease of: what a replica
    /// reports after losing a connection never overwrites the new owner's.
    pub fn leased(owner: impl Into<String>) -> Self {
        Recorder::with_batch(owner, BATCH, true)
    }

    fn with_batch(owner: impl Into<String>, batch: usize, fenced: bool) -> Self {
        Recorder {
            shared: Arc::new(Shared {
                owner: owner.into(),
                fenced,
                pending: Mutex::new(Pending::default()),
                wake: Notify::new(),
                rejected: AtomicU64::new(0),
                batch: batch.max(1),
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

    /// Queues a state change of connection `id`. Never blocks on I/O. Text
    /// is cleaned here, whatever its origin.
    pub fn record(&self, id: i64, name: &str, client_id: &str, state: &ConnectionState) {
        let record = StateRecord {
            connection_id: id,
            status: state.status.as_str().to_owned(),
            detail: clean(&state.detail),
            client_id: clean(client_id),
            connected_since: state.connected_since,
            last_error: state.last_error.as_deref().map(clean),
            cooldown_until: state.cooldown_until,
            reconnects: i64::try_from(state.reconnects).unwrap_or(i64::MAX),
        };
        let event = EventRecord {
            connection_id: id,
            name: clean(name),
            status: record.status.clone(),
            detail: record.detail.clone(),
            client_id: record.client_id.clone(),
            at: Utc::now(),
        };
        self.queue(record, event);
    }

    fn queue(&self, record: StateRecord, event: EventRecord) {
        {
            let mut pending = self.pending();
            pending.states.insert(record.connection_id, record);
            pending.push_event(event, false);
        }
        self.shared.wake.notify_one();
    }

    /// Number of states and events not yet written.
    pub fn backlog(&self) -> (usize, usize) {
        let pending = self.pending();
        (pending.states.len(), pending.events.len())
    }

    /// Records dropped because the database refused them.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// Writes everything queued so far; returns how many records were
    /// written. On a transient failure what was not committed goes back into
    /// the queue (newer states recorded meanwhile win) and the error is
    /// returned.
    pub async fn flush(&self, pool: &PgPool) -> Result<usize, StoreError> {
        let mut sink = flush::PgSink {
            pool,
            owner: &self.shared.owner,
            fenced: self.shared.fenced,
        };
        flush::flush_into(self, &mut sink).await
    }

    /// Writer loop: flushes shortly after every change until `token` is
    /// cancelled; retries with backoff while the database fails. A flush in
    /// progress is abandoned at the cancel (what it had not written is kept
    /// for the final flush, the caller's: [`Recorder::flush`]).
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
                match token.run_until_cancelled(self.flush(&pool)).await {
                    None => return,
                    Some(Ok(_)) => {
                        if failing {
                            tracing::info!(
                                "Database is back; connection states are written again."
                            );
                            failing = false;
                        }
                        backoff.reset();
                        break;
                    }
                    Some(Err(e)) => {
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

#[cfg(test)]
mod tests;
