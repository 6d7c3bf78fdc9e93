//! The actor's task: the connect / serve / back off loop.

mod inbound;
mod outbound;
mod traffic;

use super::policy::{Judgement, Policy, Unanswered};
use super::report::{Context, Level, Report, report};
use crate::inbox::Stored;
use crate::link::{Link, LinkError, LinkEvent};
use crate::mail::Mail;
use crate::metrics::{ConnectionCounters, DisconnectReason};
use crate::recorder::Recorder;
use crate::spec::ConnectionSpec;
use crate::state::{ConnectionState, Status};
use crate::tasks::TaskGuard;
use chrono::Utc;
use inbound::InboundState;
use outbound::Outbound;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use store::{OutboxRow, StoreError};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A read of outbox rows: (after, rows).
type Fetch = Pin<Box<dyn Future<Output = (i64, Result<Vec<OutboxRow>, StoreError>)> + Send>>;

/// Why the serve loop ended.
enum Ending {
    Stop,
    Lost(LinkError),
    /// This replica's leases lapsed: close, then wait for them.
    LeaseLost,
}

pub(super) struct ConnectionManager {
    spec: Arc<ConnectionSpec>,
    recorder: Recorder,
    state: watch::Sender<ConnectionState>,
    token: CancellationToken,
    /// Actors of the same row still closing; this one connects after them.
    predecessors: Vec<super::ConnectionHandle>,
    policy: Policy,
    /// Counts this actor among the service's tasks until it is dropped.
    _task: TaskGuard,
    failures_in_a_row: u32,
    /// Our requests of the current connection the broker has not answered.
    unanswered: Unanswered,
    /// The inbox writer's queue and the outbox hub.
    mail: Mail,
    /// This connection's message counts (shared with its handle).
    counters: Arc<ConnectionCounters>,
    /// Received messages, their storage and acknowledgements.
    inbound: InboundState,
    /// Where the inbox writer answers for the current connection (set
    /// while serving one).
    stored_tx: Option<mpsc::UnboundedSender<Stored>>,
    /// Where the outbox task says how many rows' marks it wrote (the same).
    marked_tx: Option<mpsc::UnboundedSender<usize>>,
    /// The connection's outbox rows.
    outbound: Outbound,
    /// No outbox read before this (after a database error).
    fetch_after: Instant,
}

/// The actor was stopped while waiting.
struct Stopped;

impl ConnectionManager {
    pub(super) fn new(
        spec: Arc<ConnectionSpec>,
        recorder: Recorder,
        state: watch::Sender<ConnectionState>,
        token: CancellationToken,
        lineage: super::Lineage,
        task: TaskGuard,
        mail: Mail,
    ) -> Self {
        let spec_window = spec.outbox_window;
        let policy = Policy::new(
            spec.takeover_window,
            spec.reconnect_cooldown,
            spec.reconnect_cooldown_max,
        );
        ConnectionManager {
            spec,
            recorder,
            state,
            token,
            predecessors: lineage.predecessors,
            policy,
            _task: task,
            failures_in_a_row: 0,
            unanswered: Unanswered::default(),
            outbound: Outbound::new(spec_window),
            mail,
            counters: lineage.counters,
            inbound: InboundState::default(),
            stored_tx: None,
            marked_tx: None,
            fetch_after: Instant::now(),
        }
    }

    pub(super) async fn run(mut self) {
        let first = self.state.borrow().clone();
        self.recorder
            .record(self.spec.id, &self.spec.name, &self.spec.client_id, &first);
        let mut link = match Link::new(&self.spec) {
            Ok(link) => link,
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(error = %reason, "Cannot set up the connection; fix the row to retry.");
                self.set(Status::Error, &reason, |s| {
                    s.last_error = Some(reason.clone())
                });
                // Only a stop ends the wait; either kind is fine here.
                let _stopped = self.until_stopped(std::future::pending::<()>()).await;
                return self.finish();
            }
        };
        if !self.wait_for_predecessors().await {
            return self.finish();
        }
        let mut connected_before = false;
        loop {
            // Retries after a failure stay `disconnected`/`error` (with the
            // retry in the detail) so that a long outage is not a stream of
            // connecting/disconnected rows in the history.
            let status = self.state.borrow().status;
            if !matches!(
                status,
                Status::Connecting | Status::Disconnected | Status::Error
            ) {
                let detail = format!("connecting to {}", self.spec.broker());
                self.set(Status::Connecting, &detail, |s| {
                    s.connected_since = None;
                    s.cooldown_until = None;
                });
            }
            // Only while this replica holds its leases: a replica that
            // could not renew (or was paused) never connects again, so it
            // never kicks the connection's new owner off the broker.
            if !self.mail.lease.valid() && !self.wait_for_lease().await {
                return self.finish();
            }
            self.policy.attempt(Instant::now());
            let outcome = loop {
                let attempt = tokio::time::timeout(self.spec.connect_timeout, link.events.poll());
                match self.until_stopped(attempt).await {
                    Err(_) => return self.finish(),
                    Ok(Ok(Ok(LinkEvent::ConnAck))) => break None,
                    // Still the same attempt (an outgoing packet, say).
                    Ok(Ok(Ok(_))) => continue,
                    Ok(Ok(Err(e))) => {
                        // Nothing of a failed attempt matters later.
                        drop(link.events.leftovers());
                        break Some(e);
                    }
                    Ok(Err(_elapsed)) => break Some(LinkError::ConnectTimeout),
                }
            };
            if let Some(error) = outcome {
                let judgement = self.policy.failed(&error, Instant::now());
                if !self.after_failure(&error, judgement, None).await {
                    return self.finish();
                }
                continue;
            }
            self.policy.connected();
            self.mail.metrics.connects.inc();
            self.unanswered = Unanswered::default();
            // Acks of an earlier connection mean nothing on this one.
            self.inbound.reset();

            let connected_at = Instant::now();
            if connected_before {
                self.state.send_modify(|s| s.reconnects += 1);
            }
            connected_before = true;
            self.announce(&link.client);
            if self.failures_in_a_row > 0 {
                tracing::info!(broker = %self.spec.broker(), "Connected again.");
            } else {
                tracing::info!(broker = %self.spec.broker(), "Connected.");
            }
            self.failures_in_a_row = 0;
            self.set(Status::Connected, "connected", |s| {
                s.connected_since = Some(Utc::now());
                s.cooldown_until = None;
            });

            match self.serve(&mut link).await {
                Ending::Stop => {
                    self.goodbye(&mut link).await;
                    return self.finish();
                }
                Ending::LeaseLost => {
                    tracing::warn!("This replica's leases lapsed; closing the connection.");
                    self.goodbye(&mut link).await;
                    // The next attempt waits for the lease (or a stop).
                }
                Ending::Lost(error) => {
                    let up_for = connected_at.elapsed();
                    let judgement =
                        self.policy
                            .lost(&error, up_for, self.unanswered, Instant::now());
                    if !self.after_failure(&error, judgement, Some(up_for)).await {
                        return self.finish();
                    }
                }
            }
        }
    }

    /// Handles a failed attempt (`up_for` None) or a lost connection: says
    /// what it most likely means, sets the state, and waits as judged.
    /// False when stopped meanwhile.
    async fn after_failure(
        &mut self,
        error: &LinkError,
        judgement: Judgement,
        up_for: Option<Duration>,
    ) -> bool {
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        let Report {
            status,
            reason,
            detail,
            level,
            message,
            error_field,
        } = report(
            error,
            &judgement,
            &Context {
                spec: &self.spec,
                unanswered: self.unanswered,
                up_for,
                failures_in_a_row: self.failures_in_a_row,
                was_error: self.state.borrow().status == Status::Error,
            },
        );
        let broker = self.spec.broker();
        let attempt = self.failures_in_a_row;
        let error = error_field.then(|| tracing::field::display(reason.as_str()));
        match level {
            Level::Error => tracing::error!(%broker, error, "{message}"),
            Level::Warn => tracing::warn!(%broker, error, "{message}"),
            Level::Info => tracing::info!(%broker, error, attempt, "{message}"),
        }
        let ended = match status {
            Status::Cooldown => Some(DisconnectReason::Takeover),
            Status::Error => Some(DisconnectReason::Refused),
            // A failed attempt to reach the broker ends no connection.
            _ if up_for.is_some() => Some(DisconnectReason::Lost),
            _ => None,
        };
        if let Some(ended) = ended {
            self.mail.metrics.disconnect(ended, 1);
        }
        let delay = judgement.decision.delay();
        let until = (status == Status::Cooldown).then(|| Utc::now() + delay);
        self.set(status, &detail, |s| {
            s.last_error = Some(reason.clone());
            s.connected_since = None;
            s.cooldown_until = until;
        });
        self.until_stopped(tokio::time::sleep(delay)).await.is_ok()
    }

    /// Before the first connect: a previous actor of this row (a restart)
    /// says `offline` and disconnects first, so the broker sees one client
    /// ID at a time and the retained status ends `online`. Bounded by the
    /// time its goodbye may take. False when stopped meanwhile.
    async fn wait_for_predecessors(&mut self) -> bool {
        let predecessors = std::mem::take(&mut self.predecessors);
        if predecessors.is_empty() {
            return true;
        }
        self.set(
            Status::Connecting,
            "waiting for the previous connection to close",
            |_| {},
        );
        let bound = self.spec.connect_timeout + Duration::from_secs(1);
        let all = futures_util::future::join_all(predecessors.iter().map(|p| p.stopped()));
        match self.until_stopped(tokio::time::timeout(bound, all)).await {
            Err(_) => false,
            Ok(Ok(_)) => true,
            Ok(Err(_)) => {
                tracing::warn!("The previous connection did not close in time; connecting anyway.");
                true
            }
        }
    }

    /// Waits until the replica's leases are renewed; false when stopped
    /// meanwhile (the keeper has the monitor stop this actor when they are
    /// lost for good).
    async fn wait_for_lease(&mut self) -> bool {
        tracing::info!("Not connecting: this replica's leases are not renewed; waiting.");
        self.set(
            Status::Disconnected,
            "waiting for this replica's lease",
            |s| {
                s.connected_since = None;
            },
        );
        while !self.mail.lease.valid() {
            if self
                .until_stopped(tokio::time::sleep(Duration::from_millis(250)))
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Runs `fut` unless the actor is stopped first.
    async fn until_stopped<F: Future>(&self, fut: F) -> Result<F::Output, Stopped> {
        tokio::select! {
            () = self.token.cancelled() => Err(Stopped),
            out = fut => Ok(out),
        }
    }

    /// Publishes a new state; records it when the status or error changed.
    fn set(&self, status: Status, detail: &str, edit: impl FnOnce(&mut ConnectionState)) {
        let mut changed = false;
        self.state.send_modify(|s| {
            let before = (s.status, s.last_error.clone(), s.reconnects);
            s.status = status;
            s.detail = detail.to_owned();
            edit(s);
            changed = before != (s.status, s.last_error.clone(), s.reconnects);
        });
        if changed {
            let snapshot = self.state.borrow().clone();
            self.recorder.record(
                self.spec.id,
                &self.spec.name,
                &self.spec.client_id,
                &snapshot,
            );
        }
    }

    fn finish(self) {
        self.set(Status::Stopped, "stopped", |s| {
            s.connected_since = None;
            s.cooldown_until = None;
        });
        tracing::debug!("Connection actor stopped.");
    }
}
