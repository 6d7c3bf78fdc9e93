//! rumqttc's errors in our words ([`LinkError`]): which are refusals, which
//! are lasting TLS failures, which are an ordinary lost connection. Text
//! from the broker is cleaned; packets are never Debug-printed.

use super::LinkError;
use crate::untrusted::clean;
use rumqttc::v5;
use std::io;

pub(super) fn map_io(e: &io::Error) -> LinkError {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
            LinkError::ClosedByBroker(e.kind().to_string())
        }
        ConnectionRefused => LinkError::Network("connection refused".to_owned()),
        TimedOut => LinkError::Network("network timeout".to_owned()),
        _ => LinkError::Network(clean(&e.to_string())),
    }
}

/// A TLS failure: a certificate or protocol problem lasts (the same
/// handshake fails again), while an I/O error during the handshake (reset,
/// closed, timed out) is an ordinary network failure, retried with backoff.
fn map_tls(e: rumqttc::TlsError) -> LinkError {
    match e {
        rumqttc::TlsError::Io(io) => {
            let rustls_error = io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
            if rustls_error {
                LinkError::Tls(clean(&io.to_string()))
            } else {
                handshake_io(&io)
            }
        }
        other => LinkError::Tls(clean(&other.to_string())),
    }
}

/// An I/O error during the TLS handshake. The peer hanging up there is not
/// a close before CONNACK (our CONNECT was never sent, so it says nothing
/// about credentials or the protocol version): an ordinary network failure.
fn handshake_io(io: &io::Error) -> LinkError {
    match map_io(io) {
        LinkError::ClosedByBroker(why) => LinkError::Network(format!(
            "the broker closed the connection during the TLS handshake ({why})"
        )),
        other => other,
    }
}

pub(super) fn map_v4_error(e: rumqttc::ConnectionError, limit: usize) -> LinkError {
    use rumqttc::{ConnectionError as E, StateError as S};
    match e {
        E::ConnectionRefused(code) => LinkError::Refused(v4_refusal(code).to_owned()),
        E::NetworkTimeout => LinkError::ConnectTimeout,
        E::FlushTimeout => LinkError::Network("write to the broker timed out".to_owned()),
        E::Tls(t) => map_tls(t),
        E::Io(io) => map_io(&io),
        E::MqttState(S::ConnectionAborted) => {
            LinkError::ClosedByBroker("connection closed by peer".to_owned())
        }
        E::MqttState(S::Io(io)) => map_io(&io),
        E::MqttState(S::AwaitPingResp) => LinkError::KeepAliveTimeout,
        E::MqttState(S::Deserialization(rumqttc::Error::PayloadSizeLimitExceeded(n))) => {
            LinkError::TooLarge { size: n, limit }
        }
        E::NotConnAck(p) => LinkError::Network(format!(
            "expected CONNACK, got {}",
            packet_name(&format!("{p:?}"))
        )),
        other => LinkError::Network(clean(&other.to_string())),
    }
}

pub(super) fn map_v5_error(e: v5::ConnectionError) -> LinkError {
    use v5::mqttbytes::v5::DisconnectReasonCode as D;
    use v5::{ConnectionError as E, StateError as S};
    match e {
        E::ConnectionRefused(code) => LinkError::Refused(v5_refusal(code)),
        E::MqttState(S::ConnFail { reason }) => LinkError::Refused(v5_refusal(reason)),
        E::Timeout(_) => LinkError::ConnectTimeout,
        E::Tls(t) => map_tls(t),
        E::Io(io) => map_io(&io),
        E::MqttState(S::ConnectionAborted) => {
            LinkError::ClosedByBroker("connection closed by peer".to_owned())
        }
        E::MqttState(S::Io(io)) => map_io(&io),
        E::MqttState(S::AwaitPingResp) => LinkError::KeepAliveTimeout,
        E::MqttState(S::IncomingPacketTooLarge { pkt_size, max }) => LinkError::TooLarge {
            size: pkt_size,
            limit: max,
        },
        E::MqttState(S::Deserialization(v5::mqttbytes::Error::PayloadSizeLimitExceeded {
            pkt_size,
            max,
        })) => LinkError::TooLarge {
            size: pkt_size,
            limit: max as usize,
        },
        E::MqttState(S::ServerDisconnect {
            reason_code: D::SessionTakenOver,
            ..
        }) => LinkError::TakenOver,
        E::MqttState(S::ServerDisconnect {
            reason_code,
            reason_string,
        }) => LinkError::DisconnectedByBroker(format!(
            "DISCONNECT {reason_code:?}{}",
            reason_string
                .map(|s| format!(": {}", clean(&s)))
                .unwrap_or_default()
        )),
        E::NotConnAck(p) => LinkError::Network(format!(
            "expected CONNACK, got {}",
            packet_name(&format!("{p:?}"))
        )),
        other => LinkError::Network(clean(&other.to_string())),
    }
}

/// The packet type of a Debug-printed packet (`Publish(...)` → `Publish`):
/// the rest may be a whole payload from the broker.
fn packet_name(debug: &str) -> String {
    let name: String = debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect();
    if name.is_empty() {
        "an unexpected packet".to_owned()
    } else {
        name
    }
}

fn v4_refusal(code: rumqttc::ConnectReturnCode) -> &'static str {
    use rumqttc::ConnectReturnCode as C;
    match code {
        C::Success => "success (unexpected refusal)",
        C::RefusedProtocolVersion => "unacceptable protocol version",
        C::BadClientId => "client identifier rejected",
        C::ServiceUnavailable => "server unavailable",
        C::BadUserNamePassword => "bad user name or password",
        C::NotAuthorized => "not authorised",
    }
}

fn v5_refusal(code: v5::mqttbytes::v5::ConnectReturnCode) -> String {
    use v5::mqttbytes::v5::ConnectReturnCode as C;
    let words = match code {
        C::Success => "success (unexpected refusal)",
        C::RefusedProtocolVersion | C::UnsupportedProtocolVersion => {
            "unacceptable protocol version"
        }
        C::BadClientId | C::ClientIdentifierNotValid => "client identifier rejected",
        C::ServiceUnavailable | C::ServerUnavailable => "server unavailable",
        C::BadUserNamePassword => "bad user name or password",
        C::NotAuthorized => "not authorised",
        C::ServerBusy => "server busy",
        C::Banned => "banned",
        C::BadAuthenticationMethod => "bad authentication method",
        C::TopicNameInvalid => "topic name invalid",
        C::PacketTooLarge => "packet too large",
        C::QuotaExceeded => "quota exceeded",
        C::PayloadFormatInvalid => "payload format invalid",
        C::RetainNotSupported => "retain not supported",
        C::QoSNotSupported => "QoS not supported",
        C::UseAnotherServer => "use another server",
        C::ServerMoved => "server moved",
        C::ConnectionRateExceeded => "connection rate exceeded",
        C::UnspecifiedError => "unspecified error",
        C::MalformedPacket => "malformed packet",
        C::ProtocolError => "protocol error",
        C::ImplementationSpecificError => "implementation-specific error",
    };
    words.to_owned()
}

/// A PUBACK's reason in words when it refuses the publish (MQTT 5).
pub(super) fn v5_puback_refusal(reason: v5::mqttbytes::v5::PubAckReason) -> Option<String> {
    use v5::mqttbytes::v5::PubAckReason as R;
    let words = match reason {
        R::Success | R::NoMatchingSubscribers => return None,
        R::UnspecifiedError => "unspecified error",
        R::ImplementationSpecificError => "implementation-specific error",
        R::NotAuthorized => "not authorised",
        R::TopicNameInvalid => "topic name invalid",
        R::PacketIdentifierInUse => "packet identifier in use",
        R::QuotaExceeded => "quota exceeded",
        R::PayloadFormatInvalid => "payload format invalid",
    };
    Some(words.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_tls_handshake_is_a_network_failure_not_an_early_close() {
        let cut = io::Error::new(io::ErrorKind::UnexpectedEof, "eof");
        let mapped = map_tls(rumqttc::TlsError::Io(cut));
        assert!(
            matches!(&mapped, LinkError::Network(words) if words.contains("TLS handshake")),
            "{mapped:?}"
        );
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert!(matches!(map_io(&reset), LinkError::ClosedByBroker(_)));
    }
}
