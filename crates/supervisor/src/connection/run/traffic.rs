//! The actor's traffic while connected: announce after CONNACK, serve
//! (poll, take in messages, publish outbox rows, acknowledge), and the
//! goodbye on stop.
//!
//! One `poll()` future lives across everything else the actor waits for
//! (answers of the inbox writer, room in its queue, outbox wake-ups and
//! fetches): rumqttc's `poll` is not cancel-safe (a publish it has taken
//! from its queue and not yet written would be lost), so it is only ever
//! dropped when the actor stops.

use super::{ConnectionManager, Ending, Fetch};
use crate::link::{Client, Link, LinkError, LinkEvent};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Pause before fetching outbox rows again after a database error.
const FETCH_RETRY: Duration = Duration::from_secs(1);

impl ConnectionManager {
    /// After CONNACK: retained `online`, then the subscriptions (lost with a
    /// clean session, so sent after every CONNACK).
    pub(super) fn announce(&mut self, client: &Client) {
        if let Some(topic) = &self.spec.status_topic {
            match client.publish_status(topic, "online") {
                Ok(()) => self.outbound.queued_status(),
                Err(e) => tracing::warn!(error = %e, "Could not queue the `online` status."),
            }
        }
        if let Err(e) = client.subscribe(&self.spec.subscriptions) {
            tracing::warn!(error = %e, "Could not queue the subscriptions.");
        }
    }

    /// Polls while connected, until the connection ends or a stop arrives.
    pub(super) async fn serve(&mut self, link: &mut Link) -> Ending {
        let Link { client, events } = link;
        let waker = self.mail.outbox.waker(self.spec.id);
        let inbox = self.mail.inbox.clone();
        let token = self.token.clone();
        // The writer's answers for this connection only: answers for an
        // earlier one go to a receiver that is gone.
        let (stored_tx, mut stored_rx) = mpsc::unbounded_channel();
        self.stored_tx = Some(stored_tx);
        // The same for outbox marks written.
        let (marked_tx, mut marked_rx) = mpsc::unbounded_channel();
        self.marked_tx = Some(marked_tx);
        let mut fetch: Option<Fetch> = None;
        let lease = self.mail.lease.clone();
        let revoked = lease.revoked();
        tokio::pin!(revoked);
        loop {
            self.pump(client, &mut fetch);
            let event = {
                let poll = events.poll();
                tokio::pin!(poll);
                loop {
                    tokio::select! {
                        () = token.cancelled() => return Ending::Stop,
                        // The replica's leases lapsed: say goodbye before
                        // another replica may take the connection.
                        () = &mut revoked => return Ending::LeaseLost,
                        // While too much waits for the writer, the broker waits.
                        event = &mut poll, if !self.backlog_full() => break event,
                        Some(stored) = stored_rx.recv() => self.stored(stored),
                        Some(n) = marked_rx.recv() => self.outbound.marked(n),
                        room = room_for_first(&inbox, &self.inbound.backlog), if !self.inbound.backlog.is_empty() => {
                            if let (Some(room), Some(item)) = (room, self.inbound.take()) {
                                room.send(item);
                            }
                        }
                        () = waker.notified() => self.outbound.more = true,
                        (after, rows) = fetched(&mut fetch), if fetch.is_some() => {
                            fetch = None;
                            match rows {
                                Ok(rows) => self.outbound.fetched(after, rows),
                                Err(e) => {
                                    self.outbound.fetching = false;
                                    tracing::warn!(error = %e, "Cannot read the outbox; retrying.");
                                    self.fetch_after = Instant::now() + FETCH_RETRY;
                                }
                            }
                        }
                        () = tokio::time::sleep_until(self.fetch_after), if self.fetch_after > Instant::now() => {}
                    }
                    self.pump(client, &mut fetch);
                }
            };
            match event {
                Ok(event) => {
                    if let Err(e) = self.note(event) {
                        return self.lost(events, e);
                    }
                }
                Err(e) => return self.lost(events, e),
            }
        }
    }

    /// The connection ended with `error`.
    fn lost(&mut self, events: &mut crate::link::Events, error: LinkError) -> Ending {
        // Acks read together with the close still count.
        for event in events.leftovers() {
            // An error here changes nothing: the connection is gone.
            let _ = self.note(event);
        }
        self.outbound.connection_lost();
        self.hand_marks(false);
        Ending::Lost(error)
    }

    /// Everything that may be due after an event: acknowledgements,
    /// outbox rows to queue, a fetch to start, marks to write.
    fn pump(&mut self, client: &Client, fetch: &mut Option<Fetch>) {
        self.send_acks(client);
        while let Some(row) = self.outbound.next_row() {
            let qos = u8::try_from(row.qos).unwrap_or(1).min(2);
            match super::outbound::prepare(&self.spec, &row) {
                Err(reason) => self.outbound.fail(row.id, reason),
                Ok(payload) => {
                    match client.publish_row(&row.topic, payload, qos, row.retain, row.id) {
                        Ok(()) => self.outbound.queued_row(row.id, qos),
                        Err(_full) => {
                            self.outbound.put_back(row);
                            break;
                        }
                    }
                }
            }
        }
        if fetch.is_none()
            && Instant::now() >= self.fetch_after
            && let Some((after, limit)) = self.outbound.fetch_due()
        {
            self.outbound.fetching = true;
            let pool = self.mail.outbox.pool().clone();
            let id = self.spec.id;
            *fetch = Some(Box::pin(async move {
                let rows =
                    store::pending_outbox(&pool, id, after, limit, super::outbound::PAGE_BYTES)
                        .await;
                (after, rows)
            }));
        }
        self.hand_marks(true);
    }

    /// Counts the rows settled since the last call and hands their marks to
    /// the writer; with `told`, it says on `marked_tx` when they are written.
    fn hand_marks(&mut self, told: bool) {
        let marks = self.outbound.take_marks();
        if marks.is_empty() {
            return;
        }
        let published = marks.published.len() as u64;
        self.mail.metrics.published(published);
        self.mail
            .metrics
            .outbox_failed
            .inc_by(marks.failed.len() as u64);
        self.counters.add_published(published);
        let tx = if told { self.marked_tx.as_ref() } else { None };
        self.mail.outbox.mark(marks, tx);
    }

    /// Takes note of one event of the live connection.
    fn note(&mut self, event: LinkEvent) -> Result<(), LinkError> {
        if !matches!(event, LinkEvent::Message(_)) {
            tracing::trace!(?event, "Event.");
        }
        match event {
            LinkEvent::Message(message) => {
                tracing::trace!(
                    topic = %crate::untrusted::clean(&message.topic),
                    bytes = message.payload.len(),
                    qos = message.qos,
                    retain = message.retain,
                    "Message received."
                );
                self.receive(*message);
            }
            LinkEvent::PublishSent { pkid } => {
                if self.outbound.written(pkid) {
                    self.unanswered.status = true;
                }
            }
            LinkEvent::SubscribeSent => self.unanswered.subscribe = true,
            LinkEvent::PubAck { pkid, refused } => {
                if self.outbound.acked(pkid, refused.clone()) == super::outbound::Acked::Other {
                    self.unanswered.status = false;
                    if let Some(why) = refused {
                        tracing::warn!(
                            topic = ?self.spec.status_topic,
                            "Broker refused our status publish ({why}); check the broker's ACL for this user."
                        );
                    }
                }
            }
            LinkEvent::PubComp { pkid } => {
                self.outbound.completed(pkid);
            }
            LinkEvent::SubAck { refused } => {
                self.unanswered.subscribe = false;
                if refused > 0 {
                    tracing::warn!(
                        refused, filters = ?self.spec.subscriptions,
                        "Broker refused {refused} subscription(s); check the broker's ACL."
                    );
                }
            }
            LinkEvent::ConnAck
            | LinkEvent::PubRec { .. }
            | LinkEvent::DisconnectSent
            | LinkEvent::Other => {}
        }
        Ok(())
    }

    /// Retained `offline`, then DISCONNECT; polls until it is written.
    pub(super) async fn goodbye(&mut self, link: &mut Link) {
        self.mail
            .metrics
            .disconnect(crate::metrics::DisconnectReason::Shutdown, 1);
        self.outbound.connection_lost();
        self.hand_marks(false);
        if let Some(topic) = &self.spec.status_topic
            && let Err(e) = link.client.publish_status(topic, "offline")
        {
            tracing::warn!(error = %e, "Could not queue the `offline` status.");
        }
        if let Err(e) = link.client.disconnect() {
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
                match link.events.poll().await {
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
}

async fn fetched(fetch: &mut Option<Fetch>) -> <Fetch as std::future::Future>::Output {
    match fetch {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Room in the writer's queue for the oldest held message.
async fn room_for_first(
    inbox: &crate::inbox::Inbox,
    backlog: &std::collections::VecDeque<crate::inbox::Item>,
) -> Option<crate::inbox::Room> {
    match backlog.front() {
        Some(item) => inbox.room_for(item).await,
        None => std::future::pending().await,
    }
}
