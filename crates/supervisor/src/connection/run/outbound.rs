//! The actor's outbox: its connection's pending rows, fetched in id order,
//! handed to rumqttc while fewer than MQTT_OUTBOX_WINDOW are unacknowledged,
//! and marked published only on PUBACK (QoS 1), PUBCOMP (QoS 2) or the
//! write (QoS 0). A pure state machine: the actor feeds it events.
//!
//! rumqttc reports each written PUBLISH (`PublishSent`, with its packet id)
//! in the order the publishes were queued, so a FIFO of what we queued,
//! status messages included, tells which row got which packet id.

use crate::spec::{ConnectionSpec, Protocol};
use crate::{envelope, topic};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use store::{OutboxMarks, OutboxRow};

/// Rows per read, in windows: a read takes a round trip to Postgres (a few
/// ms on a busy machine), so pages of one window would leave the window
/// waiting (measured: 7-8k rows/s with pages of 32, 15k with 64).
const PAGE_WINDOWS: usize = 4;

/// Rows acknowledged by the broker but not yet marked in the database, in
/// windows, at most: beyond it no row is sent until marks are written. A
/// crash re-sends these, so this bounds the duplicates (with the window).
const UNMARKED_WINDOWS: usize = 4;

/// Payload bytes per read at most (beyond the first row).
pub(super) const PAGE_BYTES: i64 = 4 << 20;

/// Bytes an MQTT 5 PUBLISH spends on properties at most here: the
/// `outbox-id` user property (1 + 2 + 9 + 2 + 20) and their length.
const V5_PROPERTY_BYTES: usize = 40;

/// The payload to publish for `row` (sealed in an HMAC envelope when the
/// connection signs), or why the row can never be sent.
pub(super) fn prepare(spec: &ConnectionSpec, row: &OutboxRow) -> Result<Bytes, String> {
    if let Err(e) = topic::validate_topic(&row.topic) {
        return Err(format!("invalid topic: the topic {e}"));
    }
    let payload = match &spec.hmac_secret {
        None => Bytes::from(row.payload.clone()),
        Some(secret) => {
            let nonce =
                envelope::nonce().ok_or_else(|| "no randomness for the HMAC nonce".to_owned())?;
            let now = chrono::Utc::now().timestamp();
            Bytes::from(envelope::seal(
                &row.payload,
                secret,
                Some(row.id),
                now,
                &nonce,
            ))
        }
    };
    let properties = match spec.protocol {
        Protocol::V5 => V5_PROPERTY_BYTES,
        Protocol::V311 => 0,
    };
    // Fixed header (1 + up to 4), topic (2 + n), packet id (2).
    let size = 5 + 2 + row.topic.len() + 2 + properties + payload.len();
    if size > spec.max_packet_size as usize {
        return Err(format!(
            "the message is {size} bytes, above MQTT_MAX_PACKET_SIZE ({} bytes)",
            spec.max_packet_size
        ));
    }
    Ok(payload)
}

/// What we queued with rumqttc, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    /// `online` / `offline`.
    Status,
    /// An outbox row.
    Row { id: i64, qos: u8 },
}

/// One connection's outbox traffic.
#[derive(Debug)]
pub(super) struct Outbound {
    window: usize,
    /// Fetched, not yet queued with rumqttc.
    rows: VecDeque<OutboxRow>,
    /// The highest id fetched on this connection.
    cursor: i64,
    /// There may be more rows to fetch.
    pub more: bool,
    /// A fetch is in flight.
    pub fetching: bool,
    queued: VecDeque<Queued>,
    /// Packet id → row id, for QoS 1 rows written and not acknowledged.
    inflight: HashMap<u16, i64>,
    /// The same for QoS 2 rows, waiting for PUBCOMP. Kept apart: rumqttc
    /// frees a QoS 2 packet id for new publishes at PUBREC already, so the
    /// same id may be in flight twice (a QoS 1 row waiting for PUBACK, a
    /// QoS 2 row for PUBCOMP).
    inflight2: HashMap<u16, VecDeque<i64>>,
    /// Rows queued with rumqttc and not yet acknowledged.
    open: usize,
    /// Rows settled (published or failed) whose marks are not yet written.
    unmarked: usize,
    marks: OutboxMarks,
}

/// Outcome of a PUBACK or PUBCOMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Acked {
    /// One of our rows.
    Row,
    /// Not a row's packet id (a status message's).
    Other,
}

impl Outbound {
    pub fn new(window: u16) -> Self {
        Outbound {
            window: usize::from(window.max(1)),
            rows: VecDeque::new(),
            cursor: 0,
            // The outbox task wakes the actor when its connection has rows.
            more: false,
            fetching: false,
            queued: VecDeque::new(),
            inflight: HashMap::new(),
            inflight2: HashMap::new(),
            open: 0,
            unmarked: 0,
            marks: OutboxMarks::default(),
        }
    }

    /// The connection ended: rows written and not acknowledged are pending
    /// again (one attempt more); everything is fetched anew after the next
    /// CONNACK, from the first pending row.
    pub fn connection_lost(&mut self) {
        let mut retried: Vec<i64> = self.inflight.values().copied().collect();
        retried.extend(self.inflight2.values().flatten().copied());
        retried.extend(self.queued.iter().filter_map(|q| match q {
            Queued::Row { id, .. } => Some(*id),
            Queued::Status => None,
        }));
        retried.sort_unstable();
        self.marks.retried.extend(retried);
        // Rows were or may be waiting: read from the first pending one again.
        let busy = self.more
            || self.fetching
            || !self.rows.is_empty()
            || !self.queued.is_empty()
            || !self.inflight.is_empty()
            || !self.inflight2.is_empty();
        self.rows.clear();
        self.queued.clear();
        self.inflight.clear();
        self.inflight2.clear();
        self.open = 0;
        // Their marks are still written; nobody counts them any more.
        self.unmarked = 0;
        self.cursor = 0;
        self.more = busy;
        // A read in flight is dropped with the serve loop that awaited it
        // and never answers: left `fetching`, the next connection would
        // never read again (CI saw a broker restart stall the outbox).
        self.fetching = false;
    }

    /// `Some((after, limit))` when a read should start now: while fewer
    /// than a window's rows wait, so the next page is there before the
    /// window drains.
    pub fn fetch_due(&self) -> Option<(i64, i64)> {
        let room = self.rows.len() < self.window;
        let limit = (self.window * PAGE_WINDOWS) as i64;
        (self.more && !self.fetching && room).then_some((self.cursor, limit))
    }

    /// Rows from a read that started at `after`. An empty page means
    /// nothing more until the next wake-up (a page may be short because of
    /// its byte bound, so only an empty one says so).
    pub fn fetched(&mut self, after: i64, rows: Vec<OutboxRow>) {
        self.fetching = false;
        if after != self.cursor {
            // Started before the connection was lost: read again.
            self.more = true;
            return;
        }
        self.more = !rows.is_empty();
        if let Some(last) = rows.last() {
            self.cursor = last.id;
        }
        self.rows.extend(rows);
    }

    /// The next row to queue, if the window has room and the marks keep up.
    pub fn next_row(&mut self) -> Option<OutboxRow> {
        if self.open >= self.window || self.unmarked >= self.window * UNMARKED_WINDOWS {
            return None;
        }
        self.rows.pop_front()
    }

    /// `n` settled rows are marked in the database.
    pub fn marked(&mut self, n: usize) {
        self.unmarked = self.unmarked.saturating_sub(n);
    }

    /// rumqttc's queue was full: `row` goes first next time.
    pub fn put_back(&mut self, row: OutboxRow) {
        self.rows.push_front(row);
    }

    /// `row` was queued with rumqttc.
    pub fn queued_row(&mut self, id: i64, qos: u8) {
        self.queued.push_back(Queued::Row { id, qos });
        self.open += 1;
    }

    /// A status message was queued with rumqttc.
    pub fn queued_status(&mut self) {
        self.queued.push_back(Queued::Status);
    }

    /// A row can never be sent.
    pub fn fail(&mut self, id: i64, reason: String) {
        self.unmarked += 1;
        self.marks.failed.push((id, reason));
    }

    /// rumqttc wrote a PUBLISH with `pkid`; true when it was a status message.
    pub fn written(&mut self, pkid: u16) -> bool {
        match self.queued.pop_front() {
            Some(Queued::Row { id, qos: 0 }) => {
                self.open = self.open.saturating_sub(1);
                self.unmarked += 1;
                self.marks.published.push(id);
                false
            }
            Some(Queued::Row { id, qos: 1 }) => {
                self.inflight.insert(pkid, id);
                false
            }
            Some(Queued::Row { id, .. }) => {
                self.inflight2.entry(pkid).or_default().push_back(id);
                false
            }
            Some(Queued::Status) | None => true,
        }
    }

    /// PUBACK for `pkid`; `refused` is an MQTT 5 broker's refusal of the
    /// publish, which fails the row.
    pub fn acked(&mut self, pkid: u16, refused: Option<String>) -> Acked {
        match self.inflight.remove(&pkid) {
            Some(id) => {
                self.settle(id, refused);
                Acked::Row
            }
            None => Acked::Other,
        }
    }

    /// PUBCOMP for `pkid` (QoS 2 done).
    pub fn completed(&mut self, pkid: u16) -> Acked {
        let Some(waiting) = self.inflight2.get_mut(&pkid) else {
            return Acked::Other;
        };
        let id = waiting.pop_front();
        if waiting.is_empty() {
            self.inflight2.remove(&pkid);
        }
        match id {
            Some(id) => {
                self.settle(id, None);
                Acked::Row
            }
            None => Acked::Other,
        }
    }

    fn settle(&mut self, id: i64, refused: Option<String>) {
        self.open = self.open.saturating_sub(1);
        self.unmarked += 1;
        match refused {
            Some(why) => self
                .marks
                .failed
                .push((id, format!("the broker refused the publish: {why}"))),
            None => self.marks.published.push(id),
        }
    }

    /// What to write to the database since the last call.
    pub fn take_marks(&mut self) -> OutboxMarks {
        std::mem::take(&mut self.marks)
    }
}

#[cfg(test)]
mod tests;
