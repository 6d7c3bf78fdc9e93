//! Self-tests of the [`FakeBroker`] through a raw socket, where a client
//! library would hide what matters: a socket that stays open after
//! DISCONNECT, bytes that are not MQTT, answers that are withheld.

use mqtt_supervisor_tests::{ConnEnd, FakeBroker, PacketKind, Step};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// An MQTT 3.1.1 CONNECT with a clean session and a 30 s keep-alive.
fn connect(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30];
    body.extend_from_slice(&u16::try_from(client_id.len()).unwrap().to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, u8::try_from(body.len()).unwrap()];
    packet.extend_from_slice(&body);
    packet
}

async fn open(broker: &FakeBroker) -> TcpStream {
    TcpStream::connect(("127.0.0.1", broker.port()))
        .await
        .unwrap()
}

/// The next `n` bytes from the broker.
async fn read(socket: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(WAIT, socket.read_exact(&mut buf))
        .await
        .expect("the broker answers")
        .unwrap();
    buf
}

/// Whether the broker closed the socket within [`WAIT`] (EOF or reset).
async fn closed(socket: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, socket.read_to_end(&mut rest))
        .await
        .is_ok()
}

#[tokio::test]
async fn fake_broker_hold_keeps_the_socket_open_after_disconnect() {
    let broker = FakeBroker::start(vec![vec![Step::ConnAck { code: 0 }, Step::Hold]]).await;
    let mut socket = open(&broker).await;
    socket.write_all(&connect("raw_hold")).await.unwrap();
    assert_eq!(read(&mut socket, 4).await, [0x20, 2, 0, 0]);
    // A PINGREQ that goes unanswered, then DISCONNECT.
    socket.write_all(&[0xC0, 0, 0xE0, 0]).await.unwrap();
    assert!(broker.wait_packet(0, PacketKind::Disconnect, WAIT).await);
    let mut byte = [0u8; 1];
    let quiet = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut byte)).await;
    assert!(quiet.is_err(), "no answer and no close: {quiet:?}");
    let conn = broker.connection(0);
    assert!(conn.disconnect_received);
    assert_eq!(conn.closed_at, None);
    assert_eq!(
        conn.kinds(),
        [
            PacketKind::Connect,
            PacketKind::PingReq,
            PacketKind::Disconnect
        ]
    );
    // Still reading and discarding, even bytes that are not MQTT.
    socket.write_all(&[0x00, 0xFF, 0xFF]).await.unwrap();
    drop(broker);
    assert!(closed(&mut socket).await, "dropping the broker closes it");
}

#[tokio::test]
async fn fake_broker_close_after_subscribe_sends_the_suback_then_closes() {
    let broker = FakeBroker::start(vec![Step::close_after_subscribe()]).await;
    let mut socket = open(&broker).await;
    socket.write_all(&connect("raw_close")).await.unwrap();
    assert_eq!(read(&mut socket, 4).await, [0x20, 2, 0, 0]);
    // SUBSCRIBE, packet id 1, two filters.
    socket
        .write_all(&[0x82, 12, 0, 1, 0, 3, b'a', b'/', b'b', 0, 0, 1, b'c', 1])
        .await
        .unwrap();
    assert_eq!(read(&mut socket, 6).await, [0x90, 4, 0, 1, 1, 1]);
    assert!(closed(&mut socket).await);
    assert_eq!(broker.connection(0).subscriptions, ["a/b", "c"]);
}

#[tokio::test]
async fn fake_broker_garbage_ends_the_connection_not_the_broker() {
    let broker = FakeBroker::start(vec![Step::accept()]).await;
    let garbage: [&[u8]; 3] = [
        // A remaining length of five bytes.
        &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        // A PUBLISH before any CONNECT.
        &[0x30, 3, 0, 1, b'a'],
        // Packet type 0 (reserved).
        &[0x00, 0x00],
    ];
    for (i, bytes) in garbage.iter().enumerate() {
        let mut socket = open(&broker).await;
        socket.write_all(bytes).await.unwrap();
        assert!(closed(&mut socket).await, "garbage {i}");
        assert!(broker.wait_closed(i, WAIT).await);
        assert_eq!(broker.connection(i).end, Some(ConnEnd::Malformed));
    }
    // After a good CONNECT: a SUBSCRIBE whose filter runs past its packet.
    let mut socket = open(&broker).await;
    socket.write_all(&connect("raw_bad_sub")).await.unwrap();
    assert_eq!(read(&mut socket, 4).await, [0x20, 2, 0, 0]);
    socket
        .write_all(&[0x82, 5, 0, 1, 0, 9, b'a'])
        .await
        .unwrap();
    assert!(closed(&mut socket).await);
    assert!(broker.wait_closed(3, WAIT).await);
    assert_eq!(broker.connection(3).end, Some(ConnEnd::Malformed));
    // And the broker still serves.
    let mut socket = open(&broker).await;
    socket.write_all(&connect("raw_good")).await.unwrap();
    assert_eq!(read(&mut socket, 4).await, [0x20, 2, 0, 0]);
    assert_eq!(broker.connection(4).client_id, "raw_good");
}

#[tokio::test]
async fn fake_broker_mute_withholds_answers_until_unmute() {
    let broker = FakeBroker::start(vec![vec![
        Step::ConnAck { code: 0 },
        Step::Mute,
        Step::WaitFor(PacketKind::Subscribe),
        Step::Unmute,
    ]])
    .await;
    let mut socket = open(&broker).await;
    socket.write_all(&connect("raw_mute")).await.unwrap();
    assert_eq!(read(&mut socket, 4).await, [0x20, 2, 0, 0]);
    // SUBSCRIBE (packet id 7, filter "a/b", QoS 1) while muted, then PINGREQ.
    socket
        .write_all(&[0x82, 8, 0, 7, 0, 3, b'a', b'/', b'b', 1])
        .await
        .unwrap();
    assert!(broker.wait_packet(0, PacketKind::Subscribe, WAIT).await);
    socket.write_all(&[0xC0, 0]).await.unwrap();
    assert_eq!(read(&mut socket, 2).await, [0xD0, 0], "PINGRESP, no SUBACK");
    // Answered again: a second SUBSCRIBE gets its SUBACK granting QoS 1.
    socket
        .write_all(&[0x82, 8, 0, 8, 0, 3, b'c', b'/', b'd', 1])
        .await
        .unwrap();
    assert_eq!(read(&mut socket, 5).await, [0x90, 3, 0, 8, 1]);
    assert_eq!(broker.connection(0).subscriptions, ["a/b", "c/d"]);
}

#[tokio::test]
async fn fake_broker_streams_a_200_mib_publish() {
    let size = 200 * 1024 * 1024;
    let broker = FakeBroker::start(vec![vec![
        Step::ConnAck { code: 0 },
        Step::publish("t", size),
    ]])
    .await;
    let mut socket = open(&broker).await;
    socket.write_all(&connect("raw_200")).await.unwrap();
    assert_eq!(read(&mut socket, 4).await, [0x20, 2, 0, 0]);
    // QoS 0, remaining length 2 + 1 + 200 MiB in four length bytes, topic "t".
    let remaining = 3 + size;
    let mut head = vec![0x30];
    let mut len = remaining;
    while len > 0 {
        head.push(u8::try_from(len % 128).unwrap() | if len >= 128 { 0x80 } else { 0 });
        len /= 128;
    }
    head.extend_from_slice(&[0, 1, b't']);
    assert_eq!(read(&mut socket, head.len()).await, head);
    let mut payload = (&mut socket).take(u64::try_from(size).unwrap());
    let mut buf = vec![0; 64 * 1024];
    let mut total = 0;
    while total < size {
        let n = tokio::time::timeout(WAIT, payload.read(&mut buf))
            .await
            .expect("the payload keeps coming")
            .unwrap();
        assert!(n > 0, "ended after {total} bytes");
        assert!(buf[..n].iter().all(|&b| b == b'x'));
        total += n;
    }
    assert_eq!(total, size);
}
