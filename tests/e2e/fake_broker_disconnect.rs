//! Self-tests of the [`FakeBroker`]'s server DISCONNECT, and a record of
//! how rumqttc reports each one: the errors the service must cope with.

use crate::fake_broker::{WAIT, client, client5, next, next5};
use mqtt_supervisor_tests::{ConnEnd, FakeBroker, Step};
use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;
use rumqttc::v5::{self, StateError as State5};
use rumqttc::{ConnectionError, Event, Incoming, StateError};

fn disconnect_script(reason_string: &[u8]) -> Vec<Vec<Step>> {
    vec![vec![
        Step::ConnAck { code: 0 },
        Step::Disconnect {
            reason: 0x8B,
            reason_string: Some(reason_string.to_vec()),
        },
    ]]
}

#[tokio::test]
async fn fake_broker_disconnect_reason_string_keeps_its_nul_v5() {
    let broker = FakeBroker::start(disconnect_script(b"going\0away")).await;
    let (_client, mut events) = client5(broker.port(), "kit_nul");
    let (code, reason) = next5(&mut events, |e| match e {
        Err(v5::ConnectionError::MqttState(State5::ServerDisconnect {
            reason_code,
            reason_string,
        })) => Some((reason_code, reason_string)),
        _ => None,
    })
    .await;
    assert_eq!(code, DisconnectReasonCode::ServerShuttingDown);
    assert_eq!(reason.as_deref(), Some("going\0away"));
    // rumqttc dropped the socket on that error.
    assert!(broker.wait_closed(0, WAIT).await);
    assert_eq!(broker.connection(0).end, Some(ConnEnd::ClientClosed));
}

#[tokio::test]
async fn fake_broker_disconnect_reason_string_not_utf8_is_a_decoding_error_v5() {
    let broker = FakeBroker::start(disconnect_script(&[b'a', 0xFF, 0xFE])).await;
    let (_client, mut events) = client5(broker.port(), "kit_not_utf8");
    let error = next5(&mut events, Result::err).await;
    // rumqttc names every invalid string a topic.
    assert!(
        matches!(
            error,
            v5::ConnectionError::MqttState(State5::Deserialization(
                v5::mqttbytes::Error::TopicNotUtf8
            ))
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn fake_broker_disconnect_is_a_wrong_packet_v311() {
    // MQTT 3.1.1 has no server DISCONNECT: the bare packet is sent.
    let broker = FakeBroker::start(disconnect_script(b"ignored")).await;
    let (_client, mut events) = client(broker.port(), "kit_v4_disconnect");
    let mut connacked = false;
    let error = next(&mut events, |e| match e {
        Ok(Event::Incoming(Incoming::ConnAck(_))) => {
            connacked = true;
            None
        }
        Ok(_) => None,
        Err(e) => Some(e),
    })
    .await;
    assert!(connacked);
    assert!(
        matches!(error, ConnectionError::MqttState(StateError::WrongPacket)),
        "{error:?}"
    );
}
