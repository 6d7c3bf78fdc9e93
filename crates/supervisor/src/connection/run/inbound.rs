//! The actor's received messages: which are stored, the queue into the
//! inbox writer, and acknowledgements in the order received, each sent only
//! once its message is stored (or once it is known not to be stored).

use super::ConnectionManager;
use crate::envelope::Verifier;
use crate::inbox::{Item, Stored};
use crate::link::{Ack, Client, Inbound, InboundProperties};
use crate::topic;
use chrono::Utc;
use std::collections::VecDeque;
use store::InboundRecord;

/// Messages held by one actor while the writer's queue is full (QoS 1/2
/// unacknowledged, and QoS 0 behind them, in order). At this many, or
/// [`BACKLOG_BYTES`], the actor stops reading from the broker until the
/// writer takes some: the socket's buffers fill and the broker has to wait
/// (Mosquitto 2.0 was seen sending thousands of unacknowledged QoS 1
/// messages to a v3.1.1 client, so its window alone does not bound this).
pub(super) const BACKLOG_MAX: usize = 1_000;

/// The same in payload bytes.
pub(super) const BACKLOG_BYTES: usize = 8 << 20;

/// An acknowledgement owed to the broker.
#[derive(Debug, Clone, Copy)]
pub(super) struct OwedAck {
    ack: Ack,
    /// Its message's number when stored; `None` when not stored (sent as
    /// soon as the acks before it are).
    seq: Option<u64>,
}

/// Per-connection inbound state; reset after every CONNACK.
#[derive(Default)]
pub(super) struct InboundState {
    seq: u64,
    stored_upto: u64,
    owed: VecDeque<OwedAck>,
    /// Messages waiting for room in the writer's queue, in order.
    pub backlog: VecDeque<Item>,
    /// Their payload bytes.
    pub backlog_bytes: usize,
    verifier: Verifier,
}

impl InboundState {
    /// A new connection: nothing owed, nothing held.
    pub fn reset(&mut self) {
        self.seq = 0;
        self.stored_upto = 0;
        self.owed.clear();
        self.backlog.clear();
        self.backlog_bytes = 0;
    }

    /// Queues `item` behind the others.
    pub fn hold(&mut self, item: Item) {
        self.backlog_bytes += item.record.payload.len();
        self.backlog.push_back(item);
    }

    /// The oldest held message, to hand to the writer.
    pub fn take(&mut self) -> Option<Item> {
        let item = self.backlog.pop_front()?;
        self.backlog_bytes = self.backlog_bytes.saturating_sub(item.record.payload.len());
        Some(item)
    }
}

impl ConnectionManager {
    /// Takes a received message: stores it when it should be, and owes its
    /// acknowledgement.
    pub(super) fn receive(&mut self, message: Inbound) {
        self.mail.metrics.received(1);
        self.counters.add_received(1);
        let store = self.spec.store_inbound
            && self.spec.status_topic.as_deref() != Some(message.topic.as_str())
            && self
                .spec
                .subscriptions
                .iter()
                .any(|f| topic::matches(f, &message.topic));
        if !store {
            tracing::trace!(topic = %crate::untrusted::clean(&message.topic), "Message not stored.");
            if let Some(ack) = message.ack {
                self.inbound.owed.push_back(OwedAck { ack, seq: None });
            }
            return;
        }
        let record = self.record(&message);
        let reply = match message.ack {
            None => None,
            Some(ack) => {
                self.inbound.seq += 1;
                let seq = self.inbound.seq;
                self.inbound.owed.push_back(OwedAck {
                    ack,
                    seq: Some(seq),
                });
                // Set while serving, which is when messages arrive.
                self.stored_tx.clone().map(|tx| (tx, Stored { seq }))
            }
        };
        let qos0 = message.ack.is_none();
        let item = Item {
            record,
            reply,
            bytes: None,
        };
        if self.inbound.backlog.is_empty() {
            match self.mail.inbox.try_send(item) {
                Ok(()) => return,
                Err(item) if qos0 => {
                    drop(item);
                    self.dropped();
                    return;
                }
                Err(item) => {
                    self.inbound.hold(*item);
                    return;
                }
            }
        }
        if qos0 && self.backlog_full() {
            self.dropped();
            return;
        }
        self.inbound.hold(item);
    }

    /// Reading from the broker pauses while this is true.
    pub(super) fn backlog_full(&self) -> bool {
        self.inbound.backlog.len() >= BACKLOG_MAX || self.inbound.backlog_bytes >= BACKLOG_BYTES
    }

    fn dropped(&self) {
        if let Some(dropped_total) = self.mail.inbox.count_dropped() {
            tracing::warn!(
                dropped_total,
                "Inbox queue full (MQTT_INBOX_BUFFER): QoS 0 message dropped."
            );
        }
    }

    fn record(&mut self, m: &Inbound) -> InboundRecord {
        let hmac_verdict = match (&self.spec.hmac_secret, self.spec.verify_inbound_hmac) {
            (Some(secret), true) => Some(
                self.inbound
                    .verifier
                    .check(&m.payload, secret, Utc::now().timestamp())
                    .as_str(),
            ),
            _ => None,
        };
        InboundRecord {
            connection_id: self.spec.id,
            // Postgres text holds no NUL.
            topic: m.topic.replace('\0', "\u{FFFD}"),
            payload: m.payload.to_vec(),
            qos: i16::from(m.qos),
            retain: m.retain,
            properties: m.properties.as_ref().and_then(properties_json),
            hmac_verdict,
            received_at: Utc::now(),
        }
    }

    /// The writer stored message `stored.seq` of this connection.
    pub(super) fn stored(&mut self, stored: Stored) {
        self.inbound.stored_upto = self.inbound.stored_upto.max(stored.seq);
    }

    /// Queues the acknowledgements due, in order, as far as rumqttc's
    /// request queue takes them; the rest go after the next event.
    pub(super) fn send_acks(&mut self, client: &Client) {
        while let Some(owed) = self.inbound.owed.front() {
            if owed.seq.is_some_and(|seq| seq > self.inbound.stored_upto) {
                break;
            }
            if client.ack(owed.ack).is_err() {
                break;
            }
            self.inbound.owed.pop_front();
        }
    }
}

/// The MQTT 5 properties worth keeping, as JSON text; `None` when none is set.
fn properties_json(p: &InboundProperties) -> Option<String> {
    let mut map = serde_json::Map::new();
    let text = |s: &str| serde_json::Value::from(s.replace('\0', "\u{FFFD}"));
    if let Some(utf8) = p.utf8 {
        map.insert("payload_utf8".into(), utf8.into());
    }
    if let Some(secs) = p.expiry_secs {
        map.insert("expiry_secs".into(), secs.into());
    }
    if let Some(t) = &p.content_type {
        map.insert("content_type".into(), text(t));
    }
    if let Some(t) = &p.response_topic {
        map.insert("response_topic".into(), text(t));
    }
    if let Some(d) = &p.correlation_data {
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        map.insert("correlation_data_hex".into(), hex.into());
    }
    if !p.user_properties.is_empty() {
        let pairs = p
            .user_properties
            .iter()
            .map(|(k, v)| serde_json::json!([text(k), text(v)]))
            .collect();
        map.insert("user_properties".into(), serde_json::Value::Array(pairs));
    }
    (!map.is_empty()).then(|| serde_json::Value::Object(map).to_string())
}
