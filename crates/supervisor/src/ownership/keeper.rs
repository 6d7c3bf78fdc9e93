//! The lease keeper: one task per replica. Every third of the lease period
//! it registers its heartbeat, renews its leases and, from one snapshot of
//! the instance, takes free or expired leases up to a fair share and gives
//! up extra ones. The monitor runs actors only for the owned connections
//! ([`Owned`]); a lease given up is deleted only once its actor has closed,
//! so the next owner connects after the old one said `offline` and left.
//!
//! When renewing fails, the replica keeps its connections until half a
//! period after its last successful renewal began, then closes them all:
//! the database lets another replica take them only a full period after
//! that renewal ended.

use super::{LeaseGuard, plan};
use crate::fleet::FleetWatch;
use crate::metrics::Metrics;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use store::{PgPool, ReplicaInfo};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The connections this replica owns (and may run).
pub type Owned = Arc<HashSet<i64>>;

/// The keeper's task.
pub struct Keeper {
    pool: PgPool,
    me: ReplicaInfo,
    period: Duration,
    guard: LeaseGuard,
    owned: watch::Sender<Owned>,
    fleet: FleetWatch,
    metrics: Arc<Metrics>,
    /// Given up by the plan; deleted once their actors are gone.
    releasing: HashSet<i64>,
    /// Rows changed (NOTIFY): take new ones now.
    nudge: Arc<Notify>,
    /// No round has succeeded yet.
    first: bool,
    /// When the first of the other replicas' leases expires.
    expiry_at: Option<Instant>,
}

impl Keeper {
    /// The keeper of replica `me`; the monitor reads the receiver it
    /// returns, the actors check `guard`.
    pub fn new(
        pool: PgPool,
        me: ReplicaInfo,
        period: Duration,
        guard: LeaseGuard,
        fleet: FleetWatch,
        metrics: Arc<Metrics>,
    ) -> (Keeper, watch::Receiver<Owned>) {
        let (owned, rx) = watch::channel(Owned::default());
        (
            Keeper {
                pool,
                me,
                period,
                guard,
                owned,
                fleet,
                metrics,
                releasing: HashSet::new(),
                nudge: Arc::new(Notify::new()),
                first: true,
                expiry_at: None,
            },
            rx,
        )
    }

    /// Notified when rows change, the keeper runs a round at once.
    pub fn nudge(&self) -> Arc<Notify> {
        self.nudge.clone()
    }

    /// Runs until `token` is cancelled. The caller deletes the leases and
    /// the registration once every connection is closed
    /// ([`store::leave`]).
    pub async fn run(mut self, token: CancellationToken) {
        let tick = self.period / 3;
        let mut failing = false;
        loop {
            let began = Instant::now();
            // Bounded: a database that stops answering must not keep the
            // keeper from giving up in time.
            let round = tokio::time::timeout(tick, self.tick(began))
                .await
                .unwrap_or(Err(store::StoreError::TimedOut));
            match round {
                Ok(()) => {
                    if failing {
                        tracing::info!(replica = %self.me.replica_id, "Database reachable again; leases renewed.");
                        failing = false;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(
                            replica = %self.me.replica_id, error = %e,
                            "Cannot renew the connection leases; retrying. Connections close {:.1} s after the last renewal if it keeps failing.",
                            (self.period / 2).as_secs_f64()
                        );
                        failing = true;
                    }
                }
            }
            // Wake at the next tick, when another replica's lease expires,
            // or at the guard's deadline to give up.
            let next = self
                .expiry_at
                .map_or(began + tick, |at| at.min(began + tick));
            let give_up = self.guard.deadline().unwrap_or(next);
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep_until(next.min(give_up)) => {}
                () = self.nudge.notified() => {}
                // Actors closing for a release: delete their leases soon.
                _ = self.fleet.changed(), if !self.releasing.is_empty() => {}
            }
            if !self.guard.valid() && !self.owned.borrow().is_empty() {
                let n = self.owned.borrow().len();
                tracing::error!(
                    replica = %self.me.replica_id, connections = n,
                    "Leases not renewed for half a lease period: closing every connection before another replica may take them."
                );
                self.metrics.leases_lost.inc_by(n as u64);
                // Connected actors close now, without waiting for the
                // monitor (which may be stuck on the same database).
                self.guard.revoke();
                self.owned.send_replace(Owned::default());
            }
        }
    }

    /// One round: heartbeat, renew, snapshot, take and give up.
    async fn tick(&mut self, began: Instant) -> Result<(), store::StoreError> {
        store::heartbeat(&self.pool, &self.me, self.period).await?;
        let renewed: HashSet<i64> = store::renew_leases(
            &self.pool,
            &self.me.instance_id,
            &self.me.replica_id,
            self.period,
        )
        .await?
        .into_iter()
        .collect();
        // Renewed from `began`: the database's expiry is a period after the
        // renewal ended, later than this.
        self.guard.extend_to(began + self.period / 2);
        let mut owned: HashSet<i64> = self.owned.borrow().as_ref().clone();
        let lost: Vec<i64> = owned.difference(&renewed).copied().collect();
        if !lost.is_empty() {
            tracing::warn!(replica = %self.me.replica_id, connections = lost.len(), "Leases lost (expired and taken by another replica); closing their connections.");
            self.metrics.leases_lost.inc_by(lost.len() as u64);
            for id in &lost {
                owned.remove(id);
            }
        }
        // Leases being given up whose actors are gone: delete them.
        let running = self.running();
        let done: Vec<i64> = self
            .releasing
            .iter()
            .filter(|id| !running.contains(id))
            .copied()
            .collect();
        if !done.is_empty() {
            store::release_leases(&self.pool, &self.me.instance_id, &self.me.replica_id, &done)
                .await?;
            self.metrics.handovers.inc_by(done.len() as u64);
            for id in &done {
                self.releasing.remove(id);
            }
        }
        let view = store::lease_view(&self.pool, &self.me.instance_id, &self.me.replica_id).await?;
        // A lease of another replica expires before our next tick: look
        // again right after (a dead replica's connections move then).
        self.expiry_at = view
            .next_expiry
            .map(|d| Instant::now() + d + Duration::from_millis(50));
        let held: HashSet<i64> = renewed.difference(&self.releasing).copied().collect();
        let decision = plan(&view, &self.me.replica_id, &held);
        for id in &decision.release {
            owned.remove(id);
            self.releasing.insert(*id);
        }
        let taken = store::acquire_leases(
            &self.pool,
            &self.me.instance_id,
            &self.me.replica_id,
            &decision.acquire,
            self.period,
        )
        .await?;
        if taken.len() < decision.acquire.len() {
            // Another replica took some first (both saw them free): look
            // again soon rather than a whole tick later.
            let soon = Instant::now() + Duration::from_millis(200);
            self.expiry_at = Some(self.expiry_at.map_or(soon, |at| at.min(soon)));
        }
        if !taken.is_empty() {
            self.metrics.leases_acquired.inc_by(taken.len() as u64);
            tracing::debug!(replica = %self.me.replica_id, connections = taken.len(), "Leases acquired.");
        }
        owned.extend(taken);
        // Held leases that are not owned (taken in a tick whose answer
        // was lost, say): give them up too.
        let stray: Vec<i64> = held.difference(&owned).copied().collect();
        self.releasing.extend(stray);
        // The first round is always published: the service waits for it
        // before the monitor's first reconcile.
        if self.first || *self.owned.borrow().as_ref() != owned {
            self.owned.send_replace(Arc::new(owned));
            self.first = false;
        }
        Ok(())
    }

    /// Connections with an actor in this process (running or closing).
    fn running(&self) -> HashSet<i64> {
        let fleet = self.fleet.borrow();
        fleet
            .connections
            .iter()
            .map(|c| c.id)
            .chain(fleet.closing.iter().copied())
            .collect()
    }
}
