//! The actor's task: the connect / serve / back off loop.

use super::ConnectionCommand;
use super::policy::{Decision, Policy};
use crate::link::{Link, LinkError, LinkEvent};
use crate::recorder::Recorder;
use crate::spec::ConnectionSpec;
use crate::state::{ConnectionState, Status};
use crate::tasks::TaskGuard;
use chrono::Utc;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why the serve loop ended.
enum Ending {
    Stop { graceful: bool },
    Lost(LinkError),
}

pub(super) struct ConnectionManager {
    spec: Arc<ConnectionSpec>,
    recorder: Recorder,
    state: watch::Sender<ConnectionState>,
    commands: mpsc::Receiver<ConnectionCommand>,
    token: CancellationToken,
    /// Actors of the same row still closing; this one connects after them.
    predecessors: Vec<super::ConnectionHandle>,
    policy: Policy,
    /// Counts this actor among the service's tasks until it is dropped.
    _task: TaskGuard,
    takeovers_in_a_row: u32,
    failures_in_a_row: u32,
}

impl ConnectionManager {
    pub(super) fn new(
        spec: Arc<ConnectionSpec>,
        recorder: Recorder,
        state: watch::Sender<ConnectionState>,
        commands: mpsc::Receiver<ConnectionCommand>,
        token: CancellationToken,
        predecessors: Vec<super::ConnectionHandle>,
        task: TaskGuard,
    ) -> Self {
        let policy = Policy::new(spec.takeover_window, spec.reconnect_cooldown);
        ConnectionManager {
            spec,
            recorder,
            state,
            commands,
            token,
            predecessors,
            policy,
            _task: task,
            takeovers_in_a_row: 0,
            failures_in_a_row: 0,
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
            self.policy.attempt(Instant::now());
            let outcome = loop {
                let attempt = tokio::time::timeout(self.spec.connect_timeout, link.poll());
                match self.until_stopped(attempt).await {
                    Err(_) => return self.finish(),
                    Ok(Ok(Ok(LinkEvent::ConnAck))) => break None,
                    // Still the same attempt (an outgoing packet, say).
                    Ok(Ok(Ok(_))) => continue,
                    Ok(Ok(Err(e))) => break Some(e),
                    Ok(Err(_elapsed)) => break Some(LinkError::ConnectTimeout),
                }
            };
            if let Some(error) = outcome {
                let decision = self.policy.failed(&error, Instant::now());
                if !self.after_failure(error, decision).await {
                    return self.finish();
                }
                continue;
            }

            let connected_at = Instant::now();
            if connected_before {
                self.state.send_modify(|s| s.reconnects += 1);
            }
            connected_before = true;
            self.announce(&link);
            if self.failures_in_a_row > 0 || self.takeovers_in_a_row > 0 {
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
                Ending::Stop { graceful } => {
                    if graceful {
                        self.goodbye(&mut link).await;
                    }
                    return self.finish();
                }
                Ending::Lost(error) => {
                    let up_for = connected_at.elapsed();
                    let decision = self.policy.lost(&error, up_for, Instant::now());
                    let go_on = if let Decision::Cooldown(delay) = decision {
                        self.cool_down(up_for, &error, delay).await
                    } else {
                        self.takeovers_in_a_row = 0;
                        self.after_failure(error, decision).await
                    };
                    if !go_on {
                        return self.finish();
                    }
                }
            }
        }
    }

    /// After CONNACK: retained `online`, then the subscriptions (lost with a
    /// clean session, so sent after every CONNACK).
    fn announce(&self, link: &Link) {
        if let Some(topic) = &self.spec.status_topic
            && let Err(e) = link.publish_status(topic, "online")
        {
            tracing::warn!(error = %e, "Could not queue the `online` status.");
        }
        if let Err(e) = link.subscribe(&self.spec.subscriptions) {
            tracing::warn!(error = %e, "Could not queue the subscriptions.");
        }
    }

    /// Polls while connected, until the connection ends or a stop arrives.
    async fn serve(&mut self, link: &mut Link) -> Ending {
        loop {
            let event = tokio::select! {
                () = self.token.cancelled() => return Ending::Stop { graceful: true },
                // With every handle dropped the channel is closed; the token
                // still stops the actor.
                Some(command) = self.commands.recv(), if !self.commands.is_closed() => match command {
                    ConnectionCommand::Stop { graceful } => return Ending::Stop { graceful },
                },
                event = link.poll() => event,
            };
            match event {
                Ok(LinkEvent::Message { topic, len }) => {
                    tracing::trace!(topic = %crate::untrusted::clean(&topic), bytes = len, "Message received.");
                }
                Ok(LinkEvent::SubAck { refused }) if refused > 0 => {
                    tracing::warn!(
                        refused, filters = ?self.spec.subscriptions,
                        "Broker refused {refused} subscription(s); check the broker's ACL."
                    );
                }
                Ok(_) => {}
                Err(e) => return Ending::Lost(e),
            }
        }
    }

    /// Retained `offline`, then DISCONNECT; polls until it is written.
    async fn goodbye(&mut self, link: &mut Link) {
        if let Some(topic) = &self.spec.status_topic
            && let Err(e) = link.publish_status(topic, "offline")
        {
            tracing::warn!(error = %e, "Could not queue the `offline` status.");
        }
        if let Err(e) = link.disconnect() {
            tracing::warn!(error = %e, "Could not queue DISCONNECT; dropping the connection.");
            return;
        }
        // Poll until DISCONNECT is written, then until the broker closes the
        // socket: closing with the broker's PUBACK still unread would send a
        // TCP RST, and a RST can discard our DISCONNECT in the broker's
        // receive buffer, which then publishes the Will. Polling stops at the
        // first error: one more poll would reconnect.
        let drain = async {
            let mut sent = false;
            loop {
                match link.poll().await {
                    Ok(LinkEvent::DisconnectSent) => sent = true,
                    Ok(_) => {}
                    Err(_) => return sent,
                }
            }
        };
        match tokio::time::timeout(self.spec.connect_timeout, drain).await {
            Ok(true) => tracing::debug!("Disconnected cleanly."),
            Ok(false) => tracing::debug!("Connection ended before DISCONNECT was written."),
            Err(_) => tracing::warn!(
                "Broker did not close the connection after DISCONNECT within the connect timeout."
            ),
        }
    }

    /// Handles a failed attempt or a lost connection; false when stopped meanwhile.
    async fn after_failure(&mut self, error: LinkError, decision: Decision) -> bool {
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        let reason = error.to_string();
        let lasting = matches!(decision, Decision::Lasting(_));
        let delay = decision.delay();
        let status = if lasting {
            Status::Error
        } else {
            Status::Disconnected
        };
        let detail = format!("{reason}; retrying in {:.1} s", delay.as_secs_f64());
        let first =
            self.failures_in_a_row == 1 || (lasting && self.state.borrow().status != Status::Error);
        let every = delay.as_secs();
        match (lasting, first) {
            (true, true) if matches!(error, LinkError::Tls(_)) => tracing::error!(
                broker = %self.spec.broker(), error = %reason,
                "TLS handshake with the broker failed; retrying in about {every} s."
            ),
            (true, true) if matches!(error, LinkError::TooLarge { .. }) => tracing::error!(
                broker = %self.spec.broker(), error = %reason,
                "The broker keeps sending a packet larger than MQTT_MAX_PACKET_SIZE; raise the limit or remove the message (a retained one comes again on every connect). Retrying in about {every} s."
            ),
            (true, true) => tracing::error!(
                broker = %self.spec.broker(), error = %reason,
                "Broker refused the connection; retrying in about {every} s."
            ),
            (false, true) => tracing::warn!(
                broker = %self.spec.broker(), error = %reason,
                "Connection failed; retrying in {:.1} s.", delay.as_secs_f64()
            ),
            (_, false) => tracing::info!(
                broker = %self.spec.broker(), error = %reason, attempt = self.failures_in_a_row,
                "Still failing; retrying in {:.1} s.", delay.as_secs_f64()
            ),
        }
        self.set(status, &detail, |s| {
            s.last_error = Some(reason.clone());
            s.connected_since = None;
        });
        self.until_stopped(tokio::time::sleep(delay)).await.is_ok()
    }

    /// Another client holds our client ID: stay away for the cooldown, without
    /// polling. False when stopped meanwhile.
    async fn cool_down(&mut self, up_for: Duration, error: &LinkError, cooldown: Duration) -> bool {
        self.takeovers_in_a_row = self.takeovers_in_a_row.saturating_add(1);
        let detail = if *error == LinkError::TakenOver {
            format!(
                "broker reports the session was taken over (0x8E): another client uses client ID {}; cooling down {} s",
                self.spec.client_id,
                cooldown.as_secs()
            )
        } else {
            format!(
                "broker closed the connection {:.1} s after connect — likely a duplicate client ID; cooling down {} s",
                up_for.as_secs_f64(),
                cooldown.as_secs()
            )
        };
        if self.takeovers_in_a_row == 1 {
            tracing::warn!(broker = %self.spec.broker(), "{}.", capitalise(&detail));
        } else {
            tracing::debug!(
                takeovers = self.takeovers_in_a_row,
                "Taken over again; cooling down {} s.",
                cooldown.as_secs()
            );
        }
        let until = Utc::now() + cooldown;
        self.set(Status::Cooldown, &detail, |s| {
            s.connected_since = None;
            s.cooldown_until = Some(until);
            s.last_error = Some(detail.clone());
        });
        self.until_stopped(tokio::time::sleep(cooldown))
            .await
            .is_ok()
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

    /// Runs `fut` unless a stop arrives first (`Err(graceful)`).
    async fn until_stopped<F: Future>(&mut self, fut: F) -> Result<F::Output, bool> {
        tokio::select! {
            () = self.token.cancelled() => Err(true),
            command = self.commands.recv(), if !self.commands.is_closed() => match command {
                Some(ConnectionCommand::Stop { graceful }) => Err(graceful),
                None => Err(true),
            },
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

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
