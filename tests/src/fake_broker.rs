//! A scriptable fake MQTT broker on 127.0.0.1, for hostile-input tests: a
//! CONNACK that never comes or says no, a DISCONNECT with a NUL in its
//! reason string, a 200 MiB PUBLISH, a socket that closes right after
//! SUBSCRIBE or never closes at all.
//!
//! [`FakeBroker::start`] takes one script per connection: the n-th accepted
//! connection runs script n, and the last script repeats for every later
//! one. A connection first reads the client's CONNECT (MQTT 3.1.1 or 5),
//! then runs its [`Step`]s in order. Between and after the steps it acts as
//! a minimal broker (PINGRESP, SUBACK granting QoS 1, PUBACK, PUBREC/PUBCOMP
//! for QoS 2) and closes the socket when the client sends DISCONNECT or
//! closes its side; [`Step::Mute`] turns the answers off, [`Step::Close`]
//! and [`Step::Hold`] end the script.
//!
//! Everything each connection received is recorded in a [`ConnRecord`].
//! Dropping the broker closes its listener and every connection.

mod session;
pub(crate) mod wire;

pub use wire::MAX_REMAINING;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The kind of a packet the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Connect,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    Unsubscribe,
    PingReq,
    Disconnect,
    Auth,
    /// Any other packet type (one a client should not send).
    Other(u8),
}

impl PacketKind {
    /// The kind for a packet type (the high nibble of the first byte).
    pub fn from_type(t: u8) -> PacketKind {
        match t {
            1 => PacketKind::Connect,
            3 => PacketKind::Publish,
            4 => PacketKind::PubAck,
            5 => PacketKind::PubRec,
            6 => PacketKind::PubRel,
            7 => PacketKind::PubComp,
            8 => PacketKind::Subscribe,
            10 => PacketKind::Unsubscribe,
            12 => PacketKind::PingReq,
            14 => PacketKind::Disconnect,
            15 => PacketKind::Auth,
            other => PacketKind::Other(other),
        }
    }
}

/// One step of a connection's script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// CONNACK with this return (3.1.1) or reason (5) code; 0 accepts.
    ConnAck { code: u8 },
    /// A server DISCONNECT. MQTT 5: the reason code and, if given, a Reason
    /// String property with these raw bytes (NUL and invalid UTF-8 allowed).
    /// MQTT 3.1.1 has no server DISCONNECT body: the bare packet is sent.
    Disconnect {
        reason: u8,
        reason_string: Option<Vec<u8>>,
    },
    /// A PUBLISH of `payload_len` bytes of `b'x'`, streamed in 64 KiB
    /// chunks (a 200 MiB publish allocates 64 KiB). The topic is raw bytes;
    /// QoS > 0 gets a packet id. It must fit [`MAX_REMAINING`].
    Publish {
        topic: Vec<u8>,
        payload_len: usize,
        qos: u8,
        retain: bool,
    },
    /// Only a PUBLISH fixed header announcing `announced_len` (at most
    /// [`MAX_REMAINING`]) bytes, and none of them.
    PublishHeaderOnly { announced_len: usize },
    /// These bytes, as they are.
    Raw(Vec<u8>),
    /// Waits until the client sends a packet of this kind, answering what
    /// comes meanwhile; after 30 s without one the connection ends. Waiting
    /// for `Disconnect` does not close: the script goes on.
    WaitFor(PacketKind),
    /// Waits, answering what comes meanwhile (a slow CONNACK is
    /// `[Sleep(d), ConnAck { code: 0 }]`).
    Sleep(Duration),
    /// From now on, record but never answer (no PINGRESP, SUBACK, PUBACK).
    Mute,
    /// Answer again after [`Step::Mute`].
    Unmute,
    /// Closes the socket; the steps after it never run.
    Close,
    /// Never answers or closes again; reads and discards everything, even
    /// after the client's DISCONNECT, until the broker is dropped.
    Hold,
}

impl Step {
    /// A plain broker: accept, then answer as a minimal broker.
    pub fn accept() -> Vec<Step> {
        vec![Step::ConnAck { code: 0 }]
    }

    /// Accept, answer the first SUBSCRIBE with its SUBACK, then close.
    pub fn close_after_subscribe() -> Vec<Step> {
        vec![
            Step::ConnAck { code: 0 },
            Step::WaitFor(PacketKind::Subscribe),
            Step::Close,
        ]
    }

    /// A QoS 0 PUBLISH of `payload_len` filler bytes on `topic`.
    pub fn publish(topic: &str, payload_len: usize) -> Step {
        Step::Publish {
            topic: topic.as_bytes().to_vec(),
            payload_len,
            qos: 0,
            retain: false,
        }
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEnd {
    /// The script said [`Step::Close`].
    Script,
    /// The client sent DISCONNECT.
    ClientDisconnect,
    /// The client closed its socket (or reading from it failed).
    ClientClosed,
    /// Writing to the client failed.
    WriteFailed,
    /// The client sent bytes that are not MQTT (or no CONNECT first).
    Malformed,
    /// A [`Step::WaitFor`] (or the CONNECT) did not come within 30 s.
    Timeout,
}

/// A PUBLISH the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPublish {
    pub at: Instant,
    /// The topic, lossily decoded.
    pub topic: String,
    /// The payload (at most its first 16 MiB).
    pub payload: Vec<u8>,
    /// The payload's true length.
    pub payload_len: usize,
    pub qos: u8,
    pub retain: bool,
}

/// Everything one connection saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnRecord {
    pub accepted_at: Instant,
    /// 4 for MQTT 3.1.1, 5 for MQTT 5; 0 until a CONNECT was read.
    pub protocol_level: u8,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub keep_alive: u16,
    /// The Will's topic and payload, if the CONNECT carried one.
    pub will: Option<(String, Vec<u8>)>,
    /// Every packet the client sent, CONNECT first, with its arrival time.
    pub packets: Vec<(Instant, PacketKind)>,
    /// Every filter of every SUBSCRIBE, in order.
    pub subscriptions: Vec<String>,
    pub publishes: Vec<ReceivedPublish>,
    pub disconnect_received: bool,
    /// When the connection ended, by either side (under [`Step::Hold`]:
    /// only if the client closed).
    pub closed_at: Option<Instant>,
    pub end: Option<ConnEnd>,
}

impl ConnRecord {
    fn new() -> ConnRecord {
        ConnRecord {
            accepted_at: Instant::now(),
            protocol_level: 0,
            client_id: String::new(),
            username: None,
            password: None,
            keep_alive: 0,
            will: None,
            packets: Vec::new(),
            subscriptions: Vec::new(),
            publishes: Vec::new(),
            disconnect_received: false,
            closed_at: None,
            end: None,
        }
    }

    /// The kinds of the packets received, in order.
    pub fn kinds(&self) -> Vec<PacketKind> {
        self.packets.iter().map(|(_, k)| *k).collect()
    }

    /// Payloads published on `topic`, lossily decoded, in order.
    pub fn payloads(&self, topic: &str) -> Vec<String> {
        self.publishes
            .iter()
            .filter(|p| p.topic == topic)
            .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
            .collect()
    }
}

/// The connections' records, shared by the sessions and the test.
type Records = Arc<Mutex<Vec<ConnRecord>>>;

/// A running fake broker; dropping it closes everything.
pub struct FakeBroker {
    port: u16,
    records: Records,
    accept: JoinHandle<()>,
}

impl FakeBroker {
    /// Binds 127.0.0.1 on a free port and serves `scripts` (at least one).
    /// Panics on a script no MQTT packet can carry out.
    pub async fn start(scripts: Vec<Vec<Step>>) -> FakeBroker {
        assert!(!scripts.is_empty(), "a fake broker needs a script");
        scripts.iter().flatten().for_each(check);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let records = Records::default();
        let accept = tokio::spawn(accept_loop(listener, scripts, records.clone()));
        FakeBroker {
            port,
            records,
            accept,
        }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    /// A copy of connection `i`'s record (0-based); panics if there is none.
    pub fn connection(&self, i: usize) -> ConnRecord {
        let records = self.records.lock().unwrap();
        records
            .get(i)
            .cloned()
            .unwrap_or_else(|| panic!("no connection {i}: only {} so far", records.len()))
    }

    /// Waits until at least `n` connections were accepted.
    pub async fn wait_connections(&self, n: usize, timeout: Duration) -> bool {
        crate::eventually(timeout, || async move { self.connections() >= n }).await
    }

    /// Waits until connection `i` received a packet of `kind`.
    pub async fn wait_packet(&self, i: usize, kind: PacketKind, timeout: Duration) -> bool {
        crate::eventually(timeout, || async move {
            self.records
                .lock()
                .unwrap()
                .get(i)
                .is_some_and(|r| r.packets.iter().any(|(_, k)| *k == kind))
        })
        .await
    }

    /// Waits until connection `i` ended.
    pub async fn wait_closed(&self, i: usize, timeout: Duration) -> bool {
        crate::eventually(timeout, || async move {
            self.records
                .lock()
                .unwrap()
                .get(i)
                .is_some_and(|r| r.closed_at.is_some())
        })
        .await
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        // The accept task owns the sessions' JoinSet: aborting it drops the
        // set, which aborts every session and closes its socket.
        self.accept.abort();
    }
}

/// Panics on a step no packet can carry out, in the test, not in a session.
fn check(step: &Step) {
    match step {
        Step::Publish {
            topic,
            payload_len,
            qos,
            ..
        } => {
            assert!(*qos <= 2, "QoS {qos} does not exist");
            assert!(topic.len() <= usize::from(u16::MAX), "topic too long");
            let len = wire::publish_remaining(topic.len(), *payload_len, *qos, true);
            assert!(
                len <= MAX_REMAINING,
                "a {payload_len}-byte PUBLISH exceeds MQTT's maximum packet size"
            );
        }
        Step::PublishHeaderOnly { announced_len } => {
            assert!(
                *announced_len <= MAX_REMAINING,
                "MQTT cannot announce {announced_len}"
            );
        }
        Step::Disconnect {
            reason_string: Some(s),
            ..
        } => assert!(s.len() <= usize::from(u16::MAX), "reason string too long"),
        _ => {}
    }
}

async fn accept_loop(listener: TcpListener, scripts: Vec<Vec<Step>>, records: Records) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let index = {
                        let mut records = records.lock().unwrap();
                        records.push(ConnRecord::new());
                        records.len() - 1
                    };
                    let script = scripts[index.min(scripts.len() - 1)].clone();
                    sessions.spawn(session::run(socket, index, script, records.clone()));
                }
                // Out of file descriptors and the like: wait, as mini-redis does.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}
