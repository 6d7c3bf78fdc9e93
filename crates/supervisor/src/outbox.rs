//! The outbox's shared side: the actors publish their own connection's
//! rows (see `connection::run::outbound`); this module wakes them when rows
//! arrive (`NOTIFY mqtt_outbox` with the connection id), writes what became
//! of sent rows in batches, fails rows that nothing will ever send (unknown
//! or disabled connection), and prunes old messages.

use crate::backoff::Backoff;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use store::{OutboxChange, OutboxListener, OutboxMarks, PgPool};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// Rows deleted per statement when pruning.
const PRUNE_BATCH: i64 = 1_000;

/// How often old messages are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The actors' side of the outbox; cheap to clone.
#[derive(Clone)]
pub struct OutboxHub {
    pool: PgPool,
    wakers: Arc<Mutex<HashMap<i64, Arc<Notify>>>>,
    marks: mpsc::UnboundedSender<OutboxMarks>,
}

/// The background task's side.
pub struct OutboxTask {
    hub: OutboxHub,
    marks: mpsc::UnboundedReceiver<OutboxMarks>,
    retention: Duration,
    sweep_every: Duration,
}

impl OutboxHub {
    /// The hub for `pool`, and its task (run it with [`OutboxTask::run`]).
    /// `retention`: age of messages to prune; `sweep_every`: how often to
    /// look at every outbox without a notification.
    pub fn new(
        pool: PgPool,
        retention: Duration,
        sweep_every: Duration,
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

    /// Hands marks to the writer; never waits.
    pub(crate) fn mark(&self, marks: OutboxMarks) {
        if !marks.is_empty() {
            // The task ends only at shutdown; marks then are lost and the
            // rows are sent again by the next process (at-least-once).
            let _ = self.marks.send(marks);
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

    fn wake_all(&self) {
        let wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        for w in wakers.values() {
            w.notify_one();
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
        let mut pending = OutboxMarks::default();
        let mut mark_backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut mark_retry = tokio::time::Instant::now();
        loop {
            if listener.is_none() && tokio::time::Instant::now() >= listen_retry {
                match OutboxListener::connect(&self.hub.pool).await {
                    Ok(l) => {
                        listener = Some(l);
                        listen_backoff.reset();
                        // Rows inserted while nobody listened.
                        self.hub.wake_all();
                    }
                    Err(e) => {
                        let delay = listen_backoff.next_ceiling();
                        tracing::debug!(error = %e, "Cannot LISTEN for outbox rows; retrying.");
                        listen_retry = tokio::time::Instant::now() + delay;
                    }
                }
            }
            let write_due = !pending.is_empty() && tokio::time::Instant::now() >= mark_retry;
            tokio::select! {
                () = token.cancelled() => break,
                change = recv(&mut listener), if listener.is_some() => match change {
                    Ok(OutboxChange::Rows(Some(id))) => {
                        if !self.hub.wake(id) {
                            self.fail_orphans().await;
                        }
                    }
                    Ok(OutboxChange::Rows(None)) => {}
                    Ok(OutboxChange::Lost) => self.hub.wake_all(),
                    Err(e) => {
                        tracing::debug!(error = %e, "Lost the outbox LISTEN connection.");
                        listener = None;
                        listen_retry = tokio::time::Instant::now() + listen_backoff.next_ceiling();
                    }
                },
                Some(marks) = self.marks.recv() => merge(&mut pending, marks),
                _ = sweep.tick() => {
                    self.fail_orphans().await;
                    self.hub.wake_all();
                }
                _ = prune.tick() => self.prune(&token).await,
                () = tokio::time::sleep_until(mark_retry), if !pending.is_empty() && !write_due => {}
                () = std::future::ready(()), if write_due => {
                    while let Ok(more) = self.marks.try_recv() {
                        merge(&mut pending, more);
                    }
                    match store::mark_outbox(&self.hub.pool, &pending).await {
                        Ok(()) => {
                            pending = OutboxMarks::default();
                            mark_backoff.reset();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Cannot mark outbox rows; retrying.");
                            mark_retry = tokio::time::Instant::now() + mark_backoff.next_ceiling();
                        }
                    }
                }
                () = tokio::time::sleep_until(listen_retry), if listener.is_none() => {}
            }
        }
        while let Ok(more) = self.marks.try_recv() {
            merge(&mut pending, more);
        }
        if !pending.is_empty()
            && let Err(e) = store::mark_outbox(&self.hub.pool, &pending).await
        {
            tracing::warn!(error = %e, "Could not mark the last outbox rows; they will be sent again.");
        }
    }

    async fn fail_orphans(&self) {
        match store::fail_orphaned_outbox(&self.hub.pool).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                rows = n,
                "Outbox rows for unknown or disabled connections marked failed."
            ),
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

fn merge(into: &mut OutboxMarks, more: OutboxMarks) {
    into.published.extend(more.published);
    into.retried.extend(more.retried);
    into.failed.extend(more.failed);
}
