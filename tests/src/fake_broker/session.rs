//! One connection of the fake broker.
//!
//! Two futures share the socket: a reader that parses and records every
//! packet the client sends and passes it on as an [`Event`], and the script
//! runner, which owns the write half, runs the steps and answers the events
//! like a minimal broker. The reader never finishes (after the client's
//! EOF it waits), so the connection lives exactly as long as the runner:
//! when the runner returns, both halves are dropped and the socket closes.
//! [`Step::Hold`] never returns; the broker's drop aborts the session.

use super::wire::{self, RawPacket, ReadError};
use super::{ConnEnd, ConnRecord, PacketKind, ReceivedPublish, Records, Step};
use std::convert::Infallible;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// How long a [`Step::WaitFor`] (or the CONNECT) may take.
const WAIT: Duration = Duration::from_secs(30);

/// The payload of every scripted PUBLISH, written a chunk at a time.
static FILLER: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// What the reader tells the runner.
enum Event {
    Packet(Incoming),
    Malformed,
    Closed,
}

/// What the runner needs to answer a packet.
struct Incoming {
    kind: PacketKind,
    packet_id: Option<u16>,
    qos: u8,
    filters: usize,
}

/// Writes into this connection's record.
#[derive(Clone)]
struct Recorder {
    index: usize,
    records: Records,
}

impl Recorder {
    fn update(&self, f: impl FnOnce(&mut ConnRecord)) {
        f(&mut self.records.lock().unwrap()[self.index]);
    }

    /// The first end wins: a client's close under `Hold` is not overwritten.
    fn closed(&self, end: ConnEnd) {
        self.update(|r| {
            if r.end.is_none() {
                r.end = Some(end);
                r.closed_at = Some(Instant::now());
            }
        });
    }
}

/// Serves one accepted connection until it ends.
pub(super) async fn run(socket: TcpStream, index: usize, script: Vec<Step>, records: Records) {
    let rec = Recorder { index, records };
    let (read, writer) = socket.into_split();
    let mut read = BufReader::new(read);
    let first = match tokio::time::timeout(WAIT, wire::read_packet(&mut read)).await {
        Err(_) => return rec.closed(ConnEnd::Timeout),
        Ok(Err(ReadError::Closed)) => return rec.closed(ConnEnd::ClientClosed),
        Ok(Err(ReadError::Malformed)) => return rec.closed(ConnEnd::Malformed),
        Ok(Ok(p)) => p,
    };
    rec.update(|r| r.packets.push((Instant::now(), first.kind())));
    let connect = match first.kind() {
        PacketKind::Connect => wire::parse_connect(&first.body),
        _ => None,
    };
    let Some(connect) = connect else {
        return rec.closed(ConnEnd::Malformed);
    };
    let v5 = connect.level == 5;
    rec.update(|r| {
        r.protocol_level = connect.level;
        r.client_id = connect.client_id;
        r.username = connect.username;
        r.password = connect.password;
        r.keep_alive = connect.keep_alive;
        r.will = connect.will;
    });
    let (events_tx, events) = mpsc::unbounded_channel();
    let mut session = Session {
        rec: rec.clone(),
        writer,
        events,
        v5,
        muted: false,
        next_id: 0,
    };
    let end = tokio::select! {
        never = reader(read, rec.clone(), v5, events_tx) => match never {},
        end = session.run(script) => end,
    };
    drop(session);
    rec.closed(end);
}

/// Reads, records and forwards packets; after bytes that are not MQTT it
/// reads and discards the rest. Never returns.
async fn reader(
    mut read: BufReader<OwnedReadHalf>,
    rec: Recorder,
    v5: bool,
    events: mpsc::UnboundedSender<Event>,
) -> Infallible {
    loop {
        let event = match wire::read_packet(&mut read).await {
            Ok(p) => match receive(&p, v5, &rec) {
                Some(incoming) => Event::Packet(incoming),
                None => Event::Malformed,
            },
            Err(ReadError::Malformed) => Event::Malformed,
            Err(ReadError::Closed) => break,
        };
        let malformed = matches!(event, Event::Malformed);
        let _ = events.send(event);
        if malformed {
            let _ = tokio::io::copy(&mut read, &mut tokio::io::sink()).await;
            break;
        }
    }
    let _ = events.send(Event::Closed);
    std::future::pending().await
}

/// Records a packet; `None` if its body does not parse.
fn receive(p: &RawPacket, v5: bool, rec: &Recorder) -> Option<Incoming> {
    let now = Instant::now();
    let kind = p.kind();
    rec.update(|r| r.packets.push((now, kind)));
    let mut incoming = Incoming {
        kind,
        packet_id: None,
        qos: 0,
        filters: 0,
    };
    match kind {
        PacketKind::Publish => {
            let publish = wire::parse_publish(p.header, &p.body, v5)?;
            incoming.packet_id = publish.packet_id;
            incoming.qos = publish.qos;
            let payload_len = p.len - (p.body.len() - publish.payload.len());
            rec.update(|r| {
                r.publishes.push(ReceivedPublish {
                    at: now,
                    topic: publish.topic,
                    payload: publish.payload,
                    payload_len,
                    qos: publish.qos,
                    retain: publish.retain,
                })
            });
        }
        PacketKind::Subscribe => {
            let (id, filters) = wire::parse_subscribe(&p.body, v5)?;
            incoming.packet_id = Some(id);
            incoming.filters = filters.len();
            rec.update(|r| r.subscriptions.extend(filters));
        }
        PacketKind::Unsubscribe => {
            let (id, n) = wire::parse_unsubscribe(&p.body, v5)?;
            incoming.packet_id = Some(id);
            incoming.filters = n;
        }
        PacketKind::PubAck | PacketKind::PubRec | PacketKind::PubRel | PacketKind::PubComp => {
            incoming.packet_id = Some(wire::Cursor::new(&p.body).u16()?);
        }
        PacketKind::Disconnect => rec.update(|r| r.disconnect_received = true),
        // A second CONNECT is a protocol violation.
        PacketKind::Connect => return None,
        _ => {}
    }
    Some(incoming)
}

/// The script runner: owns the write half.
struct Session {
    rec: Recorder,
    writer: OwnedWriteHalf,
    events: mpsc::UnboundedReceiver<Event>,
    v5: bool,
    muted: bool,
    next_id: u16,
}

impl Session {
    async fn run(&mut self, script: Vec<Step>) -> ConnEnd {
        for step in script {
            if let Err(end) = self.step(step).await {
                return end;
            }
        }
        loop {
            let event = self.next_event().await;
            if let Err(end) = self.answer(event).await {
                return end;
            }
        }
    }

    async fn step(&mut self, step: Step) -> Result<(), ConnEnd> {
        match step {
            Step::ConnAck { code } => self.write(&wire::connack(self.v5, code)).await,
            Step::Disconnect {
                reason,
                reason_string,
            } => {
                let packet = wire::disconnect(self.v5, reason, reason_string.as_deref());
                self.write(&packet).await
            }
            Step::Publish {
                topic,
                payload_len,
                qos,
                retain,
            } => self.publish(&topic, payload_len, qos, retain).await,
            Step::PublishHeaderOnly { announced_len } => {
                let mut header = vec![0x30];
                wire::encode_remaining(announced_len, &mut header);
                self.write(&header).await
            }
            Step::Raw(bytes) => self.write(&bytes).await,
            Step::WaitFor(kind) => self.wait_for(kind).await,
            Step::Sleep(duration) => self.sleep(duration).await,
            Step::Mute => {
                self.muted = true;
                Ok(())
            }
            Step::Unmute => {
                self.muted = false;
                Ok(())
            }
            Step::Close => Err(ConnEnd::Script),
            Step::Hold => self.hold().await,
        }
    }

    async fn publish(
        &mut self,
        topic: &[u8],
        payload_len: usize,
        qos: u8,
        retain: bool,
    ) -> Result<(), ConnEnd> {
        if qos > 0 {
            self.next_id = self.next_id % u16::MAX + 1;
        }
        let head = wire::publish_head(topic, payload_len, qos, retain, self.next_id, self.v5);
        self.write(&head).await?;
        let mut left = payload_len;
        while left > 0 {
            let n = left.min(FILLER.len());
            self.write(&FILLER[..n]).await?;
            left -= n;
        }
        Ok(())
    }

    async fn wait_for(&mut self, kind: PacketKind) -> Result<(), ConnEnd> {
        let deadline = tokio::time::sleep(WAIT);
        tokio::pin!(deadline);
        loop {
            let event = tokio::select! {
                () = &mut deadline => return Err(ConnEnd::Timeout),
                event = self.next_event() => event,
            };
            if let Event::Packet(p) = &event
                && p.kind == kind
            {
                // The awaited DISCONNECT does not close: the script decides.
                if kind != PacketKind::Disconnect {
                    self.answer(event).await?;
                }
                return Ok(());
            }
            self.answer(event).await?;
        }
    }

    async fn sleep(&mut self, duration: Duration) -> Result<(), ConnEnd> {
        let deadline = tokio::time::sleep(duration);
        tokio::pin!(deadline);
        loop {
            let event = tokio::select! {
                () = &mut deadline => return Ok(()),
                event = self.next_event() => event,
            };
            self.answer(event).await?;
        }
    }

    /// Reads on (the reader does) and never answers or closes.
    async fn hold(&mut self) -> Result<(), ConnEnd> {
        loop {
            if let Event::Closed = self.next_event().await {
                self.rec.closed(ConnEnd::ClientClosed);
            }
        }
    }

    async fn next_event(&mut self) -> Event {
        match self.events.recv().await {
            Some(event) => event,
            // The reader outlives the runner, so this cannot happen.
            None => std::future::pending().await,
        }
    }

    /// What a minimal broker does with an event.
    async fn answer(&mut self, event: Event) -> Result<(), ConnEnd> {
        let p = match event {
            Event::Packet(p) => p,
            Event::Malformed => return Err(ConnEnd::Malformed),
            Event::Closed => return Err(ConnEnd::ClientClosed),
        };
        if p.kind == PacketKind::Disconnect {
            return Err(ConnEnd::ClientDisconnect);
        }
        if self.muted {
            return Ok(());
        }
        let reply = match (p.kind, p.packet_id) {
            (PacketKind::PingReq, _) => wire::packet(0xD0, &[]),
            (PacketKind::Subscribe, Some(id)) => wire::suback(self.v5, id, p.filters),
            (PacketKind::Unsubscribe, Some(id)) => wire::unsuback(self.v5, id, p.filters),
            (PacketKind::Publish, Some(id)) if p.qos == 1 => wire::ack(0x40, id),
            (PacketKind::Publish, Some(id)) => wire::ack(0x50, id),
            (PacketKind::PubRec, Some(id)) => wire::ack(0x62, id),
            (PacketKind::PubRel, Some(id)) => wire::ack(0x70, id),
            _ => return Ok(()),
        };
        self.write(&reply).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnEnd> {
        self.writer
            .write_all(bytes)
            .await
            .map_err(|_| ConnEnd::WriteFailed)
    }
}
