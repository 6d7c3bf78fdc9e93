//! The CONNECT and SUBSCRIBE packets a spec makes, built with rumqttc's own
//! packet types the way its event loop builds them, so validation measures
//! exactly what will be sent.

use super::{ConnectionSpec, Protocol};
use rumqttc::v5::mqttbytes as m5;

/// QoS of the Will and of every subscription.
const QOS: rumqttc::QoS = rumqttc::QoS::AtLeastOnce;

/// A spec's CONNECT, either protocol.
#[derive(Debug)]
pub(crate) enum ConnectPacket {
    V4(rumqttc::Connect),
    V5(Box<V5Connect>),
}

/// The parts of an MQTT 5 CONNECT, as rumqttc's `Packet::Connect` holds them.
#[derive(Debug)]
pub(crate) struct V5Connect {
    pub(crate) connect: m5::v5::Connect,
    pub(crate) will: Option<m5::v5::LastWill>,
    pub(crate) login: Option<m5::v5::Login>,
}

/// A spec's SUBSCRIBE, either protocol.
#[derive(Debug)]
pub(crate) enum SubscribePacket {
    V4(rumqttc::Subscribe),
    V5(m5::v5::Subscribe),
}

impl ConnectPacket {
    /// Encoded size in bytes.
    pub(crate) fn size(&self) -> usize {
        match self {
            ConnectPacket::V4(c) => c.size(),
            ConnectPacket::V5(c) => c.connect.size(&c.will, &c.login),
        }
    }
}

impl SubscribePacket {
    /// Encoded size in bytes.
    pub(crate) fn size(&self) -> usize {
        match self {
            SubscribePacket::V4(s) => s.size(),
            SubscribePacket::V5(s) => s.size(),
        }
    }
}

/// The CONNECT rumqttc sends for `spec` (see `Link::new`).
pub(crate) fn connect(spec: &ConnectionSpec) -> ConnectPacket {
    let keep_alive = u16::try_from(spec.keep_alive.as_secs()).unwrap_or(u16::MAX);
    let password = spec
        .password
        .as_ref()
        .map(|p| p.expose().to_owned())
        .unwrap_or_default();
    match spec.protocol {
        Protocol::V311 => {
            let mut c = rumqttc::Connect::new(spec.client_id.clone());
            c.keep_alive = keep_alive;
            c.clean_session = spec.clean_session;
            c.last_will = spec
                .status_topic
                .as_ref()
                .map(|t| rumqttc::LastWill::new(t, "offline", QOS, true));
            if let Some(user) = &spec.username {
                c.set_login(user.clone(), password);
            }
            ConnectPacket::V4(c)
        }
        Protocol::V5 => {
            let mut properties = m5::v5::ConnectProperties::new();
            properties.max_packet_size = Some(spec.max_packet_size);
            let c = m5::v5::Connect {
                keep_alive,
                client_id: spec.client_id.clone(),
                clean_start: spec.clean_session,
                properties: Some(properties),
            };
            let will = spec
                .status_topic
                .as_ref()
                .map(|t| m5::v5::LastWill::new(t, "offline", m5::QoS::AtLeastOnce, true, None));
            let login = spec
                .username
                .as_ref()
                .map(|u| m5::v5::Login::new(u.clone(), password));
            ConnectPacket::V5(Box::new(V5Connect {
                connect: c,
                will,
                login,
            }))
        }
    }
}

/// The one SUBSCRIBE sent after every CONNACK with all of `spec`'s filters.
pub(crate) fn subscribe(spec: &ConnectionSpec) -> SubscribePacket {
    match spec.protocol {
        Protocol::V311 => SubscribePacket::V4(rumqttc::Subscribe::new_many(
            spec.subscriptions
                .iter()
                .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QOS)),
        )),
        Protocol::V5 => SubscribePacket::V5(m5::v5::Subscribe::new_many(
            spec.subscriptions
                .iter()
                .map(|f| m5::v5::Filter::new(f.clone(), m5::QoS::AtLeastOnce)),
            None,
        )),
    }
}
