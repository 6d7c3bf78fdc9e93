//! Every task the service starts, named in one place and tracked by one
//! `TaskTracker`, so shutdown can wait for all of them and say which ones
//! did not finish.
//!
//! The signal watcher (`main`) is the only task outside: it must outlive the
//! shutdown to catch a second signal.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// The kinds of task the service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// The axum server (health, later the API).
    Http,
    /// Renews this replica's connection leases and takes its share.
    LeaseKeeper,
    /// Writes connection states to the database.
    Recorder,
    /// Reconciles actors against the table.
    Monitor,
    /// LISTENs for `mqtt_connections_changed`.
    Listener,
    /// One `ConnectionManager` per enabled row.
    Connection,
    /// Writes received messages to `mqtt_inbox`.
    Inbox,
    /// Wakes actors for new outbox rows, marks rows, prunes old messages.
    Outbox,
}

impl TaskKind {
    /// Every kind, in the order the exit log lists them.
    pub const ALL: [TaskKind; 8] = [
        TaskKind::Http,
        TaskKind::LeaseKeeper,
        TaskKind::Recorder,
        TaskKind::Monitor,
        TaskKind::Listener,
        TaskKind::Connection,
        TaskKind::Inbox,
        TaskKind::Outbox,
    ];

    /// The name used in log lines.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Http => "http",
            TaskKind::LeaseKeeper => "lease keeper",
            TaskKind::Recorder => "recorder",
            TaskKind::Monitor => "monitor",
            TaskKind::Listener => "listener",
            TaskKind::Connection => "connection",
            TaskKind::Inbox => "inbox writer",
            TaskKind::Outbox => "outbox",
        }
    }
}

/// The service's tasks; cheap to clone.
#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    live: Arc<[AtomicUsize; TaskKind::ALL.len()]>,
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Self {
        Tasks::default()
    }

    /// Spawns `fut` as a task of `kind`.
    pub fn spawn<F>(&self, kind: TaskKind, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let live = Live::new(self.live.clone(), kind);
        self.tracker.spawn(async move {
            let _live = live;
            fut.await
        })
    }

    /// A guard that counts one task of `kind` until dropped. For tasks
    /// spawned elsewhere (into a `JoinSet`): move it into the task's own
    /// state and wrap the future with [`Tasks::track_future`]. (Wrapping the
    /// future in an `async` block that holds both would store the future
    /// twice: rustc does not overlap a captured future with its await
    /// state, which doubled each connection's task to 13 KB.)
    pub fn guard(&self, kind: TaskKind) -> TaskGuard {
        TaskGuard(Live::new(self.live.clone(), kind))
    }

    /// `fut`, tracked: [`Tasks::wait`] waits for it.
    pub fn track_future<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> + use<F> {
        self.tracker.track_future(fut)
    }

    /// No more tasks will be added; [`Tasks::wait`] can end.
    pub fn close(&self) {
        self.tracker.close();
    }

    /// Waits until every task has finished (after [`Tasks::close`]).
    pub async fn wait(&self) {
        self.tracker.wait().await;
    }

    /// Tasks still running, by kind (kinds with none left out).
    pub fn running(&self) -> Vec<(TaskKind, usize)> {
        TaskKind::ALL
            .iter()
            .map(|k| (*k, self.live[*k as usize].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// `"recorder, 3 connection"`, or `"none"`.
    pub fn describe_running(&self) -> String {
        let running = self.running();
        if running.is_empty() {
            return "none".to_owned();
        }
        running
            .iter()
            .map(|(k, n)| match n {
                1 => k.name().to_owned(),
                n => format!("{n} {}", k.name()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Counts one task as running until dropped; see [`Tasks::guard`].
pub struct TaskGuard(#[allow(dead_code)] Live);

/// Counts one live task of a kind until dropped.
struct Live {
    live: Arc<[AtomicUsize; TaskKind::ALL.len()]>,
    kind: TaskKind,
}

impl Live {
    fn new(live: Arc<[AtomicUsize; TaskKind::ALL.len()]>, kind: TaskKind) -> Self {
        live[kind as usize].fetch_add(1, Ordering::Relaxed);
        Live { live, kind }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.live[self.kind as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn counts_tasks_until_they_end_or_are_aborted() {
        let tasks = Tasks::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let waiting = tasks.spawn(TaskKind::Recorder, async move {
            let _ = rx.await;
        });
        let forever = tasks.spawn(TaskKind::Connection, std::future::pending::<()>());
        tokio::task::yield_now().await;
        assert_eq!(tasks.describe_running(), "recorder, connection");
        tx.send(()).unwrap();
        waiting.await.unwrap();
        assert_eq!(tasks.describe_running(), "connection");
        tasks.close();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), tasks.wait())
                .await
                .is_err()
        );
        forever.abort();
        let _ = forever.await;
        tasks.wait().await;
        assert_eq!(tasks.describe_running(), "none");
        let guard = tasks.guard(TaskKind::Connection);
        let other = tasks.guard(TaskKind::Connection);
        assert_eq!(tasks.describe_running(), "2 connection");
        drop((guard, other));
        assert_eq!(tasks.describe_running(), "none");
    }
}
