//! One rumqttc client and event loop, MQTT 3.1.1 or 5, behind one small
//! interface that speaks our words: [`LinkEvent`] and [`LinkError`].
//!
//! rumqttc's option structs print passwords in Debug: they never leave this
//! module and are never formatted.

mod errors;
mod events;

use crate::spec::{ConnectionSpec, Protocol};
use crate::tls;
use crate::untrusted::clean;
use bytes::Bytes;
use errors::{map_v4_error, map_v5_error};
pub use events::{Ack, Inbound, InboundProperties, LinkEvent};
use events::{map_v4_event, map_v5_event};
use rumqttc::v5;
use std::time::Duration;

/// Requests waiting for the event loop: status, subscribe and disconnect,
/// outbox publishes, and acknowledgements of received messages (which come
/// in bursts when a batch commits). rumqttc's channel grows as it is used:
/// the capacity costs nothing until then.
const REQUEST_CAPACITY: usize = 256;

/// rumqttc's limit of unacknowledged QoS 1/2 publishes: the outbox window
/// plus the status messages, so that our own publishes never fill it (a
/// full window also holds back our acknowledgements of received messages,
/// which wait in the same request queue). rumqttc pre-allocates one slot
/// each (its MQTT 5 default of 65,536 would be about 14 MB per client).
fn inflight(spec: &ConnectionSpec) -> u16 {
    spec.outbox_window.saturating_add(2)
}

/// Why the connection is gone (or never came up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// CONNACK refused; the reason in words.
    Refused(String),
    /// TLS failed (certificate, handshake): a lasting error.
    Tls(String),
    /// MQTT 5 DISCONNECT 0x8E: another client took our client ID.
    TakenOver,
    /// The broker closed the socket without saying why.
    ClosedByBroker(String),
    /// The broker sent an MQTT 5 DISCONNECT with a reason (other than
    /// 0x8E): it said why, so the close is taken at its word.
    DisconnectedByBroker(String),
    /// No PINGRESP within the keep-alive: broker or network frozen.
    KeepAliveTimeout,
    /// No CONNACK within the connect timeout.
    ConnectTimeout,
    /// The broker sent a packet larger than MQTT_MAX_PACKET_SIZE; rumqttc
    /// refuses it from its header, before reading (or buffering) the body,
    /// and drops the connection.
    TooLarge {
        /// Size the packet announced.
        size: usize,
        /// MQTT_MAX_PACKET_SIZE.
        limit: usize,
    },
    /// Anything else on the network (refused, unreachable, DNS, reset).
    Network(String),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Refused(why) => write!(f, "broker refused the connection: {why}"),
            LinkError::Tls(why) => write!(f, "TLS: {why}"),
            LinkError::TakenOver => f.write_str("session taken over by another client (0x8E)"),
            LinkError::ClosedByBroker(why) | LinkError::DisconnectedByBroker(why) => {
                write!(f, "broker closed the connection ({why})")
            }
            LinkError::KeepAliveTimeout => f.write_str("no answer to keep-alive ping"),
            LinkError::ConnectTimeout => f.write_str("no CONNACK within the connect timeout"),
            LinkError::TooLarge { size, limit } => write!(
                f,
                "the broker sent a packet of {size} bytes, above MQTT_MAX_PACKET_SIZE ({limit} bytes); topic unknown (the packet was refused from its header)"
            ),
            LinkError::Network(why) => f.write_str(why),
        }
    }
}

/// A client and its event loop, apart so that a poll in progress (which
/// borrows the event loop) never stops the actor from queueing requests.
pub struct Link {
    /// Queues requests; never waits.
    pub client: Client,
    /// The one place that polls.
    pub events: Events,
}

/// rumqttc's request side.
pub enum Client {
    V4(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// rumqttc's event loops, boxed: they differ in size by half, and the
/// actor's future stays small either way.
pub enum Events {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<v5::EventLoop>),
}

/// The connect timeout, and TCP_NODELAY: rumqttc writes each packet as it goes; with Nagle's
/// algorithm a small PUBLISH or PUBACK behind an unacknowledged one waits for
/// the peer's delayed ACK (40 ms on Linux). Measured: outbox marks came in
/// bursts 44 ms apart.
fn network(spec: &ConnectionSpec) -> rumqttc::NetworkOptions {
    let mut net = rumqttc::NetworkOptions::new();
    net.set_connection_timeout(timeout_secs(spec.connect_timeout));
    net.set_tcp_nodelay(true);
    net
}

fn timeout_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Link {
    /// Builds the client for `spec`; nothing is sent until the first poll.
    pub fn new(spec: &ConnectionSpec) -> Result<Link, LinkError> {
        let tls = match &spec.tls {
            Some(ca) => {
                Some(tls::client_config(ca.as_deref()).map_err(|e| LinkError::Tls(e.to_string()))?)
            }
            None => None,
        };
        let user = spec.username.clone();
        let pass = spec.password.as_ref().map(|p| p.expose().to_owned());
        Ok(match spec.protocol {
            Protocol::V311 => {
                let mut o = rumqttc::MqttOptions::new(&spec.client_id, &spec.host, spec.port);
                o.set_keep_alive(spec.keep_alive)
                    .set_clean_session(spec.clean_session)
                    // rumqttc reserves what a header announces before reading
                    // the body: this limit is what bounds memory per connection.
                    .set_max_packet_size(
                        spec.max_packet_size as usize,
                        spec.max_packet_size as usize,
                    )
                    .set_inflight(inflight(spec))
                    .set_request_channel_capacity(REQUEST_CAPACITY)
                    // A message is acknowledged when the actor says so
                    // (after storing it), not when it is read.
                    .set_manual_acks(true);
                if let Some(u) = user {
                    o.set_credentials(u, pass.unwrap_or_default());
                }
                if let Some(topic) = &spec.status_topic {
                    o.set_last_will(rumqttc::LastWill::new(
                        topic,
                        "offline",
                        rumqttc::QoS::AtLeastOnce,
                        true,
                    ));
                }
                if let Some(cfg) = tls {
                    o.set_transport(rumqttc::Transport::tls_with_config(
                        rumqttc::TlsConfiguration::Rustls(cfg),
                    ));
                }
                let (client, mut events) = rumqttc::AsyncClient::new(o, REQUEST_CAPACITY);
                events.set_network_options(network(spec));
                Link {
                    client: Client::V4(client),
                    events: Events::V4(Box::new(events)),
                }
            }
            Protocol::V5 => {
                let mut o = v5::MqttOptions::new(&spec.client_id, &spec.host, spec.port);
                o.set_keep_alive(spec.keep_alive)
                    .set_clean_start(spec.clean_session)
                    .set_connection_timeout(timeout_secs(spec.connect_timeout))
                    .set_network_options(network(spec))
                    .set_outgoing_inflight_upper_limit(inflight(spec))
                    .set_request_channel_capacity(REQUEST_CAPACITY)
                    .set_manual_acks(true);
                // Asks the broker not to send anything larger (MQTT 5 honours
                // it), and is rumqttc's incoming limit too.
                o.set_max_packet_size(Some(spec.max_packet_size));
                if let Some(u) = user {
                    o.set_credentials(u, pass.unwrap_or_default());
                }
                if let Some(topic) = &spec.status_topic {
                    o.set_last_will(v5::mqttbytes::v5::LastWill::new(
                        topic,
                        "offline",
                        v5::mqttbytes::QoS::AtLeastOnce,
                        true,
                        None,
                    ));
                }
                if let Some(cfg) = tls {
                    o.set_transport(rumqttc::Transport::tls_with_config(
                        rumqttc::TlsConfiguration::Rustls(cfg),
                    ));
                }
                let (client, events) = v5::AsyncClient::new(o, REQUEST_CAPACITY);
                Link {
                    client: Client::V5(client),
                    events: Events::V5(Box::new(events)),
                }
            }
        })
    }
}

impl Events {
    /// Drives the event loop one step. After an error the next call
    /// reconnects at once: callers back off first.
    pub async fn poll(&mut self) -> Result<LinkEvent, LinkError> {
        match self {
            Events::V4(events) => match events.poll().await {
                Ok(e) => Ok(map_v4_event(e)),
                Err(e) => Err(map_v4_error(e, events.mqtt_options.max_packet_size())),
            },
            Events::V5(events) => match events.poll().await {
                Ok(e) => Ok(map_v5_event(e)),
                Err(e) => Err(map_v5_error(e)),
            },
        }
    }

    /// Events rumqttc read before the error that ended the connection (a
    /// PUBACK and the close in one read): it returns the error first and
    /// would hand these out after the next CONNACK, as if they belonged to
    /// the new connection. Call after every error; they are removed.
    ///
    /// Requests rumqttc kept to send again on a resumed session are dropped
    /// too, except PUBREL: the actor sends the status and subscriptions after
    /// every CONNACK itself, and outbox rows again from the database, in
    /// order; rumqttc's copies would come first and under packet ids the
    /// actor does not know.
    pub fn leftovers(&mut self) -> Vec<LinkEvent> {
        match self {
            Events::V4(events) => {
                events
                    .pending
                    .retain(|r| matches!(r, rumqttc::Request::PubRel(_)));
                events.state.events.drain(..).map(map_v4_event).collect()
            }
            Events::V5(events) => {
                events
                    .pending
                    .retain(|r| matches!(r, v5::Request::PubRel(_)));
                events.state.events.drain(..).map(map_v5_event).collect()
            }
        }
    }
}

impl Client {
    /// Queues a retained status message (QoS 1). Never waits: a full request
    /// queue is reported, not awaited.
    pub fn publish_status(&self, topic: &str, payload: &'static str) -> Result<(), RequestError> {
        self.publish(topic, Bytes::from_static(payload.as_bytes()), 1, true)
    }

    /// Queues a PUBLISH; QoS above 2 is taken as 2. Never waits: a full
    /// request queue is reported, not awaited. Its packet id comes with
    /// [`LinkEvent::PublishSent`], its acknowledgement with
    /// [`LinkEvent::PubAck`] (QoS 1) or [`LinkEvent::PubComp`] (QoS 2).
    pub fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: u8,
        retain: bool,
    ) -> Result<(), RequestError> {
        match self {
            Client::V4(c) => c
                .try_publish(topic, v4_qos(qos), retain, payload)
                .map_err(RequestError::from),
            Client::V5(c) => c
                .try_publish(topic, v5_qos(qos), retain, payload)
                .map_err(RequestError::from),
        }
    }

    /// Queues an outbox row's PUBLISH. With MQTT 5 the row's id travels as
    /// the user property `outbox-id`. Never waits.
    pub fn publish_row(
        &self,
        topic: &str,
        payload: Bytes,
        qos: u8,
        retain: bool,
        outbox_id: i64,
    ) -> Result<(), RequestError> {
        match self {
            Client::V4(_) => self.publish(topic, payload, qos, retain),
            Client::V5(c) => {
                let properties = v5::mqttbytes::v5::PublishProperties {
                    user_properties: vec![("outbox-id".to_owned(), outbox_id.to_string())],
                    ..Default::default()
                };
                c.try_publish_with_properties(topic, v5_qos(qos), retain, payload, properties)
                    .map_err(RequestError::from)
            }
        }
    }

    /// Queues the acknowledgement of a received QoS 1 or 2 message
    /// (PUBACK or PUBREC). MQTT wants them in the order received. Never
    /// waits: a full request queue is an error, and the caller tries again
    /// after the next poll.
    pub fn ack(&self, ack: Ack) -> Result<(), RequestError> {
        match self {
            Client::V4(c) => {
                let mut p = rumqttc::Publish::new("", v4_qos(ack.qos), Vec::new());
                p.pkid = ack.pkid;
                c.try_ack(&p).map_err(RequestError::from)
            }
            Client::V5(c) => {
                let mut p = v5::mqttbytes::v5::Publish::new("", v5_qos(ack.qos), Vec::new(), None);
                p.pkid = ack.pkid;
                c.try_ack(&p).map_err(RequestError::from)
            }
        }
    }

    /// Queues one SUBSCRIBE (QoS 1) for all `filters`.
    pub fn subscribe(&self, filters: &[String]) -> Result<(), RequestError> {
        if filters.is_empty() {
            return Ok(());
        }
        match self {
            Client::V4(c) => c
                .try_subscribe_many(
                    filters.iter().map(|f| {
                        rumqttc::SubscribeFilter::new(f.clone(), rumqttc::QoS::AtLeastOnce)
                    }),
                )
                .map_err(RequestError::from),
            Client::V5(c) => c
                .try_subscribe_many(filters.iter().map(|f| {
                    v5::mqttbytes::v5::Filter::new(f.clone(), v5::mqttbytes::QoS::AtLeastOnce)
                }))
                .map_err(RequestError::from),
        }
    }

    /// Queues a DISCONNECT; keep polling until [`LinkEvent::DisconnectSent`].
    pub fn disconnect(&self) -> Result<(), RequestError> {
        match self {
            Client::V4(c) => c.try_disconnect().map_err(RequestError::from),
            Client::V5(c) => c.try_disconnect().map_err(RequestError::from),
        }
    }
}

/// rumqttc's request queue refused a request (full, or the event loop is gone).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(String);

impl From<rumqttc::ClientError> for RequestError {
    fn from(e: rumqttc::ClientError) -> Self {
        // Display only (Debug would print the whole request).
        RequestError(clean(&e.to_string()))
    }
}

impl From<v5::ClientError> for RequestError {
    fn from(e: v5::ClientError) -> Self {
        RequestError(clean(&e.to_string()))
    }
}

/// rumqttc's 3.1.1 QoS; above 2 counts as 2.
fn v4_qos(qos: u8) -> rumqttc::QoS {
    match qos {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

/// rumqttc's MQTT 5 QoS (its own type); above 2 counts as 2.
fn v5_qos(qos: u8) -> v5::mqttbytes::QoS {
    match qos {
        0 => v5::mqttbytes::QoS::AtMostOnce,
        1 => v5::mqttbytes::QoS::AtLeastOnce,
        _ => v5::mqttbytes::QoS::ExactlyOnce,
    }
}
