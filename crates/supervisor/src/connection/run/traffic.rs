//! The actor's traffic while connected: announce after CONNACK, serve
//! (poll, note events, acknowledge), and the goodbye on stop.

use super::{ConnectionManager, Ending};
use crate::link::{Link, LinkEvent};

impl ConnectionManager {
    /// After CONNACK: retained `online`, then the subscriptions (lost with a
    /// clean session, so sent after every CONNACK).
    pub(super) fn announce(&self, link: &Link) {
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
    pub(super) async fn serve(&mut self, link: &mut Link) -> Ending {
        loop {
            let event = tokio::select! {
                () = self.token.cancelled() => return Ending::Stop,
                event = link.poll() => event,
            };
            match event {
                Ok(event) => {
                    self.note(event);
                    self.send_acks(link);
                }
                Err(e) => {
                    // Acks read together with the close still count.
                    for event in link.leftovers() {
                        self.note(event);
                    }
                    return Ending::Lost(e);
                }
            }
        }
    }

    /// Takes note of one event of the live connection.
    fn note(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Message(message) => {
                tracing::trace!(
                    topic = %crate::untrusted::clean(&message.topic),
                    bytes = message.payload.len(),
                    qos = message.qos,
                    retain = message.retain,
                    "Message received."
                );
                // Nothing stores messages yet: each is acknowledged as
                // soon as it is read, in the order read (MQTT's rule).
                if let Some(ack) = message.ack {
                    self.acks.push_back(ack);
                }
            }
            LinkEvent::PublishSent { .. } => self.unanswered.status = true,
            LinkEvent::SubscribeSent => self.unanswered.subscribe = true,
            LinkEvent::PubAck { refused, .. } => {
                self.unanswered.status = false;
                if let Some(why) = refused {
                    tracing::warn!(
                        topic = ?self.spec.status_topic,
                        "Broker refused our status publish ({why}); check the broker's ACL for this user."
                    );
                }
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
            | LinkEvent::PubComp { .. }
            | LinkEvent::DisconnectSent
            | LinkEvent::Other => {}
        }
    }

    /// Queues the acknowledgements due, in order, as far as rumqttc's
    /// request queue takes them; the rest go after the next poll. That poll
    /// comes: a full queue holds a request, and handling it is an event.
    fn send_acks(&mut self, link: &Link) {
        while let Some(ack) = self.acks.front() {
            if link.ack(*ack).is_err() {
                break;
            }
            self.acks.pop_front();
        }
    }

    /// Retained `offline`, then DISCONNECT; polls until it is written.
    pub(super) async fn goodbye(&mut self, link: &mut Link) {
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
}
