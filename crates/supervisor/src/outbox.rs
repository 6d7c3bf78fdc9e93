//! The outbox's shared side: the actors publish their own connection's
//! rows (see `connection::run::outbound`); this module wakes them when rows
//! arrive (`NOTIFY mqtt_outbox` with the connection id), writes what became
//! of sent rows in batches, fails rows that nothing will ever send (unknown
//! or disabled connection), and prunes old messages. At start, after a lost
//! LISTEN connection and every sweep it wakes the actors of connections
//! with pending rows.

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use store::{OutboxChange, OutboxListener, OutboxMarks, PgPool};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// Rows deleted per statement when pruning.
const PRUNE_BATCH: i64 = 1_000;

/// How long marks gather before a write: writing each PUBACK's mark alone
/// made the writes, not the broker, the limit (2,200 rows/s measured).
const MARK_LINGER: Duration = Duration::from_millis(2);

/// How often old messages are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The actors' side of the outbox; cheap to clone.
#[derive(Clone)]
pub struct OutboxHub {
    pool: PgPool,
    wakers: Arc<Mutex<HashMap<i64, Arc<Notify>>>>,
    marks: mpsc::UnboundedSender<Marks>,
}

/// Marks from an actor, and where to say how many of its settled rows
/// (published or failed) are written.
pub(crate) type Marks = (OutboxMarks, Option<mpsc::UnboundedSender<usize>>);

/// The background task's side.
pub struct OutboxTask {
    hub: OutboxHub,
    marks: mpsc::UnboundedReceiver<Marks>,
    retention: Duration,
    sweep_every: Duration,
    metrics: Arc<Metrics>,
}

impl OutboxHub {
    /// The hub for `pool`, and its task (run it with [`OutboxTask::run`]).
    /// `retention`: age of messages to prune; `sweep_every`: how often to
    /// look at every outbox without a notification; `metrics` counts the
    /// rows it fails.
    pub fn new(
        pool: PgPool,
        retention: Duration,
        sweep_every: Duration,
        metrics: Arc<Metrics>,
    ) -> (OutboxHub, OutboxTask) {
        let (tx, rx) = mpsc::unbounded_channel();
        let hub = OutboxHub {
            pool,
            wakers: Arc::default(),
            marks: tx,
        };
        let task = OutboxTask {
            hub: hub.clone(),
            marks: rx,
            retention,
            sweep_every,
            metrics,
        };
        (hub, task)
    }

    /// The pool the actors read their rows with.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The wake-up of connection `id` (created on first use; actors of the
    /// same row share it).
    pub(crate) fn waker(&self, id: i64) -> Arc<Notify> {
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        wakers.entry(id).or_default().clone()
    }

    /// Hands marks to the writer; never waits. `written` hears how many
    /// settled rows of these are in the database once they are.
    pub(crate) fn mark(&self, marks: OutboxMarks, written: Option<&mpsc::UnboundedSender<usize>>) {
        if !marks.is_empty() {
            // The task ends only at shutdown; marks then are lost and the
            // rows are sent again by the next process (at-least-once).
            let _ = self.marks.send((marks, written.cloned()));
        }
    }

    /// Wakes connection `id`'s actor; false when this process has none.
    fn wake(&self, id: i64) -> bool {
        let wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        match wakers.get(&id) {
            Some(w) => {
                w.notify_one();
                true
            }
            None => false,
        }
    }

    /// Wakes the actors of connections with pending rows (one query), so a
    /// missed notification costs a sweep, and 10,000 idle connections cost
    /// no reads.
    async fn wake_pending(&self) {
        match store::connections_with_pending_outbox(&self.pool).await {
            Ok(ids) => {
                for id in ids {
                    // Creates the wake-up of an actor not started yet: it
                    // finds the permit when it connects.
                    self.waker(id).notify_one();
                }
            }
            Err(e) => tracing::debug!(error = %e, "Cannot look for pending outbox rows."),
        }
    }
}

impl OutboxTask {
    /// Runs until `token` is cancelled, then writes the marks it has once.
    pub async fn run(mut self, token: CancellationToken) {
        let mut listener: Option<OutboxListener> = None;
        let mut listen_backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut listen_retry = tokio::time::Instant::now();
        let mut sweep = tokio::time::interval(self.sweep_every);
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        let mut pending = Pending::default();
        let mut mark_backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut write_at = tokio::time::Instant::now();
        loop {
            if listener.is_none() && tokio::time::Instant::now() >= listen_retry {
                match OutboxListener::connect(&self.hub.pool).await {
                    Ok(l) => {
                        listener = Some(l);
                        listen_backoff.reset();
                        // Rows inserted while nobody listened.
                        self.hub.wake_pending().await;
                    }
                    Err(e) => {
                        let delay = listen_backoff.next_ceiling();
                        tracing::debug!(error = %e, "Cannot LISTEN for outbox rows; retrying.");
                        listen_retry = tokio::time::Instant::now() + delay;
                    }
                }
            }
            let write_due = !pending.is_empty() && tokio::time::Instant::now() >= write_at;
            tokio::select! {
                () = token.cancelled() => break,
                change = recv(&mut listener), if listener.is_some() => match change {
                    Ok(OutboxChange::Rows(Some(id))) => {
                        if !self.hub.wake(id) {
                            self.fail_orphans().await;
                        }
                    }
                    Ok(OutboxChange::Rows(None)) => {}
                    Ok(OutboxChange::Lost) => self.hub.wake_pending().await,
                    Err(e) => {
                        tracing::debug!(error = %e, "Lost the outbox LISTEN connection.");
                        listener = None;
                        listen_retry = tokio::time::Instant::now() + listen_backoff.next_ceiling();
                    }
                },
                Some(marks) = self.marks.recv() => {
                    if pending.is_empty() {
                        write_at = write_at.max(tokio::time::Instant::now() + MARK_LINGER);
                    }
                    pending.merge(marks);
                }
                _ = sweep.tick() => {
                    self.fail_orphans().await;
                    self.hub.wake_pending().await;
                }
                _ = prune.tick() => self.prune(&token).await,
                () = tokio::time::sleep_until(write_at), if !pending.is_empty() && !write_due => {}
                () = std::future::ready(()), if write_due => {
                    while let Ok(more) = self.marks.try_recv() {
                        pending.merge(more);
                    }
                    let began = std::time::Instant::now();
                    let rows = pending.marks.published.len();
                    match store::mark_outbox(&self.hub.pool, &pending.marks).await {
                        Ok(()) => {
                            tracing::debug!(rows, ms = began.elapsed().as_secs_f64() * 1e3, "Outbox marks written.");
                            std::mem::take(&mut pending).written();
                            mark_backoff.reset();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Cannot mark outbox rows; retrying.");
                            write_at = tokio::time::Instant::now() + mark_backoff.next_ceiling();
                        }
                    }
                }
                () = tokio::time::sleep_until(listen_retry), if listener.is_none() => {}
            }
        }
        while let Ok(more) = self.marks.try_recv() {
            pending.merge(more);
        }
        if !pending.is_empty()
            && let Err(e) = store::mark_outbox(&self.hub.pool, &pending.marks).await
        {
            tracing::warn!(error = %e, "Could not mark the last outbox rows; they will be sent again.");
        }
    }

    async fn fail_orphans(&self) {
        match store::fail_orphaned_outbox(&self.hub.pool).await {
            Ok(0) => {}
            Ok(n) => {
                self.metrics.outbox_failed.inc_by(n);
                tracing::warn!(
                    rows = n,
                    "Outbox rows for unknown or disabled connections marked failed."
                );
            }
            Err(e) => tracing::debug!(error = %e, "Cannot check the outbox for orphaned rows."),
        }
    }

    /// Deletes messages older than the retention, a batch at a time.
    async fn prune(&self, token: &CancellationToken) {
        let Ok(age) = chrono::Duration::from_std(self.retention) else {
            return;
        };
        let before = chrono::Utc::now() - age;
        let mut total = 0;
        loop {
            let step = store::prune_messages(&self.hub.pool, before, PRUNE_BATCH);
            match token.run_until_cancelled(step).await {
                Some(Ok(n)) => {
                    total += n;
                    if n < PRUNE_BATCH as u64 {
                        break;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "Cannot prune old messages; trying later.");
                    break;
                }
                None => break,
            }
        }
        if total > 0 {
            tracing::info!(
                rows = total,
                "Pruned messages older than MQTT_INBOX_RETENTION."
            );
        }
    }
}

async fn recv(listener: &mut Option<OutboxListener>) -> Result<OutboxChange, store::StoreError> {
    match listener {
        Some(l) => l.recv().await,
        None => std::future::pending().await,
    }
}

/// Marks waiting to be written, and who waits to hear of them.
#[derive(Default)]
struct Pending {
    marks: OutboxMarks,
    told: Vec<(mpsc::UnboundedSender<usize>, usize)>,
}

impl Pending {
    fn merge(&mut self, (more, written): Marks) {
        if let Some(tx) = written {
            self.told
                .push((tx, more.published.len() + more.failed.len()));
        }
        self.marks.published.extend(more.published);
        self.marks.retried.extend(more.retried);
        self.marks.failed.extend(more.failed);
    }

    fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    /// The marks are in the database: tell the actors.
    fn written(self) {
        for (tx, n) in self.told {
            // The actor's connection may be gone: nothing to count then.
            let _ = tx.send(n);
        }
    }
}
