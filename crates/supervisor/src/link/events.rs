//! rumqttc's events in our words ([`LinkEvent`]): what the actor needs to
//! track its requests (packet ids, acks) and to hand a received message on
//! whole, with what it takes to acknowledge it.

use super::errors;
use bytes::Bytes;
use rumqttc::v5;

/// Something the event loop reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// CONNACK with success.
    ConnAck,
    /// A PUBLISH arrived. With manual acks, QoS 1 and 2 messages stay
    /// unacknowledged until [`super::Link::ack`] is called with its `ack`.
    Message(Box<Inbound>),
    /// SUBACK; `refused` filters were rejected.
    SubAck { refused: usize },
    /// Our PUBLISH was written; its packet id (0 at QoS 0). They come in
    /// the order the publishes were queued.
    PublishSent { pkid: u16 },
    /// Our SUBSCRIBE was written.
    SubscribeSent,
    /// PUBACK for our QoS 1 publish; MQTT 5 brokers may refuse the publish
    /// (`refused`: why, in words).
    PubAck { pkid: u16, refused: Option<String> },
    /// PUBREC for our QoS 2 publish (the broker has it).
    PubRec { pkid: u16 },
    /// PUBCOMP for our QoS 2 publish (done).
    PubComp { pkid: u16 },
    /// Our DISCONNECT was written.
    DisconnectSent,
    /// Anything else (pings, our own acks).
    Other,
}

/// What acknowledging a received QoS 1 or 2 message takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// 1 (PUBACK) or 2 (PUBREC).
    pub qos: u8,
    /// The broker's packet id.
    pub pkid: u16,
}

/// A message from the broker: untrusted, any bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The topic (MQTT requires UTF-8; anything else is replaced).
    pub topic: String,
    /// The payload, as sent.
    pub payload: Bytes,
    /// 0, 1 or 2.
    pub qos: u8,
    /// The retain flag (a retained message sent on subscribe).
    pub retain: bool,
    /// For QoS 1 and 2; `None` for QoS 0.
    pub ack: Option<Ack>,
    /// MQTT 5 properties worth keeping; `None` for 3.1.1.
    pub properties: Option<InboundProperties>,
}

/// The properties of an MQTT 5 PUBLISH worth keeping with the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundProperties {
    /// Payload format indicator: true for UTF-8 text.
    pub utf8: Option<bool>,
    /// Message expiry interval, seconds.
    pub expiry_secs: Option<u32>,
    /// Where a reply should go.
    pub response_topic: Option<String>,
    /// Request/reply correlation.
    pub correlation_data: Option<Bytes>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
    /// Content type.
    pub content_type: Option<String>,
}

impl std::fmt::Debug for Inbound {
    /// The payload's size only: it may be large, and it is the tenant's.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("topic", &crate::untrusted::clean(&self.topic))
            .field("bytes", &self.payload.len())
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("ack", &self.ack)
            .finish_non_exhaustive()
    }
}

fn ack_for(qos: u8, pkid: u16) -> Option<Ack> {
    (qos > 0).then_some(Ack { qos, pkid })
}

pub(super) fn map_v4_event(e: rumqttc::Event) -> LinkEvent {
    use rumqttc::{Event, Incoming, Outgoing, SubscribeReasonCode};
    match e {
        Event::Incoming(Incoming::ConnAck(_)) => LinkEvent::ConnAck,
        Event::Incoming(Incoming::Publish(p)) => {
            let qos = p.qos as u8;
            LinkEvent::Message(Box::new(Inbound {
                topic: p.topic,
                payload: p.payload,
                qos,
                retain: p.retain,
                ack: ack_for(qos, p.pkid),
                properties: None,
            }))
        }
        Event::Incoming(Incoming::SubAck(s)) => LinkEvent::SubAck {
            refused: s
                .return_codes
                .iter()
                .filter(|c| matches!(c, SubscribeReasonCode::Failure))
                .count(),
        },
        Event::Incoming(Incoming::PubAck(a)) => LinkEvent::PubAck {
            pkid: a.pkid,
            refused: None,
        },
        Event::Incoming(Incoming::PubRec(r)) => LinkEvent::PubRec { pkid: r.pkid },
        Event::Incoming(Incoming::PubComp(c)) => LinkEvent::PubComp { pkid: c.pkid },
        Event::Outgoing(Outgoing::Publish(pkid)) => LinkEvent::PublishSent { pkid },
        Event::Outgoing(Outgoing::Subscribe(_)) => LinkEvent::SubscribeSent,
        Event::Outgoing(Outgoing::Disconnect) => LinkEvent::DisconnectSent,
        _ => LinkEvent::Other,
    }
}

pub(super) fn map_v5_event(e: v5::Event) -> LinkEvent {
    use rumqttc::Outgoing;
    use v5::Event;
    use v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
    match e {
        Event::Incoming(Packet::ConnAck(_)) => LinkEvent::ConnAck,
        Event::Incoming(Packet::Publish(p)) => {
            let qos = p.qos as u8;
            LinkEvent::Message(Box::new(Inbound {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload,
                qos,
                retain: p.retain,
                ack: ack_for(qos, p.pkid),
                properties: Some(p.properties.map(properties).unwrap_or_default()),
            }))
        }
        Event::Incoming(Packet::SubAck(s)) => LinkEvent::SubAck {
            refused: s
                .return_codes
                .iter()
                .filter(|c| !matches!(c, SubscribeReasonCode::Success(_)))
                .count(),
        },
        Event::Incoming(Packet::PubAck(a)) => LinkEvent::PubAck {
            pkid: a.pkid,
            refused: errors::v5_puback_refusal(a.reason),
        },
        Event::Incoming(Packet::PubRec(r)) => LinkEvent::PubRec { pkid: r.pkid },
        Event::Incoming(Packet::PubComp(c)) => LinkEvent::PubComp { pkid: c.pkid },
        Event::Outgoing(Outgoing::Publish(pkid)) => LinkEvent::PublishSent { pkid },
        Event::Outgoing(Outgoing::Subscribe(_)) => LinkEvent::SubscribeSent,
        Event::Outgoing(Outgoing::Disconnect) => LinkEvent::DisconnectSent,
        _ => LinkEvent::Other,
    }
}

fn properties(p: v5::mqttbytes::v5::PublishProperties) -> InboundProperties {
    InboundProperties {
        utf8: p.payload_format_indicator.map(|i| i == 1),
        expiry_secs: p.message_expiry_interval,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data,
        user_properties: p.user_properties,
        content_type: p.content_type,
    }
}
