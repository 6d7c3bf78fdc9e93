//! The monitor reconciles connection actors against `mqtt_connections`.
//!
//! Every `MQTT_MONITOR_INTERVAL`, and at once when the LISTEN task hears
//! `mqtt_connections_changed`, it loads the rows, validates the enabled ones
//! and applies the [`plan`](crate::plan): start new rows, stop disabled,
//! deleted or now-invalid ones (gracefully: `offline` first), restart changed
//! ones, revive actors that panicked (with backoff).
//!
//! Stops run in the background: one broker that is slow to close never
//! delays another row's change. Only a restarted row's replacement waits,
//! inside its own task, for its predecessor to say goodbye, so the broker
//! sees one client ID at a time and the retained status ends `online`.
//!
//! Actors live in a `JoinSet` (and in the service's [`Tasks`]); a panic is
//! logged with the connection's identity and never reaches the process. If
//! the database is unreachable the running actors stay up and the monitor
//! retries with backoff.
//!
//! Shutdown: when the token is cancelled (a reconcile in progress is
//! abandoned) every actor says goodbye in parallel; [`Monitor::run`] waits
//! for them until the [`Shutdown`] deadline less the reserve for the final
//! state write, then aborts the rest and records them `stopped`.

mod control;
mod decisions;
mod fleet_view;
mod invalid;
mod listen;
mod revive;
mod stop;

use crate::backoff::Backoff;
use crate::connection::{ConnectionHandle, Lineage};
use crate::fleet::Fleet;
use crate::mail::Mail;
use crate::metrics::ConnectionCounters;
use crate::plan::{plan, validate_all};
use crate::recorder::Recorder;
use crate::shutdown::Shutdown;
use crate::spec::{ConnectionSpec, InvalidRow};
use crate::state::ConnectionState;
use crate::tasks::{TaskKind, Tasks};
use settings::Settings;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use store::PgPool;
use tokio::sync::{Notify, mpsc, watch};

pub use control::{Command, CommandError, MonitorControl};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest a reconcile waits for the rows.
const LOAD_BOUND: Duration = Duration::from_secs(5);

/// A crash this long ago no longer makes the next restart wait longer.
const CRASH_MEMORY: Duration = Duration::from_secs(600);

/// How the monitor is set up.
#[derive(Clone)]
pub struct MonitorOptions {
    /// Effective settings.
    pub settings: Arc<Settings>,
    /// The end of the shutdown kept for writing the final states: actors
    /// are waited for until the deadline less this.
    pub final_write_reserve: Duration,
    /// The connections this replica owns (the lease keeper's); `None`: all.
    pub owned: Option<watch::Receiver<crate::ownership::Owned>>,
    /// Told of every change notification, so the lease keeper takes a new
    /// row at once instead of at its next tick.
    pub on_change: Option<Arc<Notify>>,
}

/// What the shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Actors running (or closing) when shutdown began.
    pub connections: usize,
    /// Actors that had not finished by the deadline and were dropped (their
    /// state is recorded `stopped`).
    pub abandoned: usize,
    /// From noticing the cancel to the last actor done (or dropped).
    pub elapsed: Duration,
}

struct Actor {
    handle: ConnectionHandle,
    abort: AbortHandle,
}

struct Invalid {
    row: InvalidRow,
    state: watch::Receiver<ConnectionState>,
}

/// The reconciler; owns every actor.
pub struct Monitor {
    pool: PgPool,
    settings: Arc<Settings>,
    reserve: Duration,
    recorder: Recorder,
    mail: Mail,
    shutdown: Shutdown,
    token: CancellationToken,
    fleet: watch::Sender<Arc<Fleet>>,
    wake: Arc<Notify>,
    tracked: Tasks,
    tasks: JoinSet<()>,
    actors: HashMap<i64, Actor>,
    /// Actors told to stop, still closing (stopped rows, replaced ones).
    stopping: HashMap<i64, Vec<Actor>>,
    /// Rows that are in the table but disabled (as of the last load).
    disabled: HashSet<i64>,
    /// Successful loads of the table so far.
    loads: u64,
    invalid: HashMap<i64, Invalid>,
    desired: Vec<Result<ConnectionSpec, InvalidRow>>,
    /// Dead actors waiting for their restart time.
    revive_at: HashMap<i64, Instant>,
    /// Crash history per row, so repeated panics back off further.
    crashes: HashMap<i64, (Backoff, Instant)>,
    counts: (usize, usize),
    db_backoff: Backoff,
    db_failing: bool,
    /// Rows held down through the API.
    held: HashMap<i64, control::Held>,
    /// Each row's message counts, kept across restarts of its actor.
    counters: HashMap<i64, Arc<ConnectionCounters>>,
    commands: mpsc::Receiver<control::Request>,
    control: MonitorControl,
    owned: Option<watch::Receiver<crate::ownership::Owned>>,
    on_change: Option<Arc<Notify>>,
}

impl Monitor {
    /// A monitor that stops when `shutdown` begins; its actors and its
    /// LISTEN task are counted in `tracked`. `fleet` receives a new snapshot
    /// after every change (see [`Fleet::channel`]).
    pub fn new(
        pool: PgPool,
        options: MonitorOptions,
        recorder: Recorder,
        mail: Mail,
        shutdown: Shutdown,
        tracked: Tasks,
        fleet: watch::Sender<Arc<Fleet>>,
    ) -> Self {
        let interval = options.settings.monitor_interval;
        let (control, commands) = MonitorControl::channel();
        Monitor {
            pool,
            settings: options.settings,
            reserve: options.final_write_reserve,
            recorder,
            mail,
            token: shutdown.token().clone(),
            shutdown,
            fleet,
            wake: Arc::new(Notify::new()),
            tracked,
            tasks: JoinSet::new(),
            actors: HashMap::new(),
            stopping: HashMap::new(),
            disabled: HashSet::new(),
            loads: 0,
            invalid: HashMap::new(),
            desired: Vec::new(),
            revive_at: HashMap::new(),
            crashes: HashMap::new(),
            counts: (0, 0),
            db_backoff: Backoff::new(Duration::from_secs(1), interval),
            db_failing: false,
            held: HashMap::new(),
            counters: HashMap::new(),
            commands,
            control,
            owned: options.owned,
            on_change: options.on_change,
        }
    }

    /// Where the API sends commands (reconnect, disconnect).
    pub fn control(&self) -> MonitorControl {
        self.control.clone()
    }

    /// Runs until the shutdown begins, then shuts every actor down and
    /// waits for them until the shutdown deadline (less the reserve).
    pub async fn run(mut self) -> ShutdownReport {
        let listener = self.tracked.spawn(
            TaskKind::Listener,
            listen::run(
                self.pool.clone(),
                self.wake.clone(),
                self.token.child_token(),
            ),
        );
        let token = self.token.clone();
        let mut next_due = Instant::now();
        loop {
            let revive_due = self.revive_at.values().min().copied();
            let due = revive_due.map_or(next_due, |r| r.min(next_due));
            let reconcile = tokio::select! {
                biased;
                () = token.cancelled() => break,
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.on_exit(joined);
                    false
                }
                Some(command) = self.commands.recv() => {
                    self.command(command);
                    false
                }
                () = self.wake.notified() => {
                    if let Some(keeper) = &self.on_change {
                        keeper.notify_one();
                    }
                    true
                }
                true = owned_changed(&mut self.owned) => true,
                () = tokio::time::sleep_until(due) => true,
            };
            if reconcile {
                // A reconcile waiting on a slow database is abandoned at the
                // shutdown.
                let began = Instant::now();
                match token.run_until_cancelled(self.reconcile()).await {
                    Some(next) => next_due = next,
                    None => break,
                }
                self.mail
                    .metrics
                    .reconcile_duration
                    .observe(began.elapsed().as_secs_f64());
            }
        }
        listener.abort();
        self.shut_down().await
    }

    /// Loads rows and applies the plan; returns when the next reconcile is due.
    async fn reconcile(&mut self) -> Instant {
        let began = Instant::now();
        // Bounded: a database that stops answering is unreachable, and the
        // owned set is still applied below.
        let loaded = tokio::time::timeout(LOAD_BOUND, store::load_connections(&self.pool))
            .await
            .unwrap_or(Err(store::StoreError::TimedOut));
        let load_ms = began.elapsed().as_secs_f64() * 1e3;
        let next = match loaded {
            Ok(rows) => {
                if self.db_failing {
                    tracing::info!("Database is reachable again; connections reconciled.");
                    self.db_failing = false;
                }
                self.db_backoff.reset();
                self.counts = (rows.len(), rows.iter().filter(|r| r.is_enabled).count());
                self.disabled = rows
                    .iter()
                    .filter(|r| !r.is_enabled)
                    .map(|r| r.id)
                    .collect();
                self.loads += 1;
                let validated = Instant::now();
                // Validated together, so that a client ID collision between
                // rows owned by different replicas is still caught.
                self.desired = validate_all(&rows, &self.settings);
                tracing::debug!(
                    rows = rows.len(),
                    load_ms,
                    validate_ms = validated.elapsed().as_secs_f64() * 1e3,
                    "Loaded and validated the rows."
                );
                // Only valid rows can be revived; forget the others.
                let ids: HashSet<i64> = self
                    .desired
                    .iter()
                    .filter_map(|r| r.as_ref().ok().map(|s| s.id))
                    .collect();
                self.revive_at.retain(|id, _| ids.contains(id));
                self.crashes.retain(|id, _| ids.contains(id));
                let rows_now: HashSet<i64> = rows.iter().map(|r| r.id).collect();
                self.counters.retain(|id, _| rows_now.contains(id));
                self.release_changed_holds();
                Instant::now() + self.settings.monitor_interval
            }
            Err(e) => {
                let delay = self.db_backoff.next_ceiling();
                if self.db_failing {
                    tracing::info!(error = %e, "Database still unreachable; retrying in {} s.", delay.as_secs());
                } else {
                    tracing::warn!(
                        error = %e,
                        "Cannot load connections; running connections stay up. Retrying in {} s.",
                        delay.as_secs()
                    );
                    self.db_failing = true;
                }
                Instant::now() + delay
            }
        };
        // Only the connections this replica owns, also when the load
        // failed: a lease lost while the database is down stops its actor.
        if let Some(owned) = &self.owned {
            let owned = owned.borrow().clone();
            self.desired.retain(|r| {
                owned.contains(&r.as_ref().map_or_else(|invalid| invalid.id, |s| s.id))
            });
            self.counts.1 = self.desired.len();
        }
        let applied = Instant::now();
        self.apply();
        tracing::debug!(
            apply_ms = applied.elapsed().as_secs_f64() * 1e3,
            total_ms = began.elapsed().as_secs_f64() * 1e3,
            "Reconciled."
        );
        next
    }

    /// Brings actors in line with `self.desired` (the last rows loaded).
    fn apply(&mut self) {
        let running: HashMap<i64, Arc<ConnectionSpec>> = self
            .actors
            .iter()
            .map(|(id, a)| (*id, a.handle.spec().clone()))
            .collect();
        let now = Instant::now();
        let revive_at = &self.revive_at;
        let held = &self.held;
        // A held row is not wanted: its actor stops and none starts.
        let plan = plan(
            &self.desired,
            &running,
            |id| revive_at.get(&id).is_none_or(|at| *at <= now),
            |id| held.contains_key(&id),
        );

        self.log_plan(&plan, &running);

        // Stops go on in the background; nothing here waits for a broker.
        for id in plan.stop.iter().chain(plan.restart.iter().map(|s| &s.id)) {
            if let Some(actor) = self.actors.remove(id) {
                actor.handle.stop();
                self.stopping.entry(*id).or_default().push(actor);
            }
        }

        self.refresh_invalid();
        for spec in plan.start.into_iter().chain(plan.restart) {
            self.revive_at.remove(&spec.id);
            self.start(spec);
        }
        self.publish_fleet(true);
    }

    /// Starts an actor; it connects after the row's actors still closing.
    fn start(&mut self, spec: ConnectionSpec) {
        let id = spec.id;
        let predecessors = self
            .stopping
            .get(&id)
            .map(|closing| closing.iter().map(|a| a.handle.clone()).collect())
            .unwrap_or_default();
        let (handle, abort) = ConnectionHandle::spawn(
            spec,
            self.recorder.clone(),
            &self.token,
            &mut self.tasks,
            &self.tracked,
            Lineage {
                predecessors,
                counters: self.counters.entry(id).or_default().clone(),
            },
            self.mail.clone(),
        );
        self.actors.insert(id, Actor { handle, abort });
    }
}

/// True when the owned set changed; pending forever without a keeper
/// (and false once the keeper is gone, which only a shutdown does).
async fn owned_changed(owned: &mut Option<watch::Receiver<crate::ownership::Owned>>) -> bool {
    match owned {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
