//! The inbox writer: received messages of every connection go through one
//! bounded queue into `mqtt_inbox`, a batch per statement (whatever waits,
//! up to [`BATCH`] rows), so 20,000 messages a second are a few dozen
//! statements.
//!
//! Nothing acknowledged is lost: a QoS 1 or 2 message carries a reply
//! address, and the writer answers only after its batch has committed; the
//! actor acknowledges to the broker then. While the database is down the
//! writer keeps its batch and retries; the queue fills, actors stop taking
//! QoS 1/2 messages off the wire into it (the broker's window fills and it
//! stops sending: backpressure) and drop QoS 0 messages beyond the queue,
//! counted and logged. Values the database refuses (which retrying cannot
//! fix) are dropped one by one, logged, and acknowledged.

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;
use store::{InboundRecord, PgPool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// Rows per INSERT at most.
pub const BATCH: usize = 1_000;

/// Payload and topic bytes waiting for the writer, all connections
/// together, in KiB: besides MQTT_INBOX_BUFFER messages, the queue holds at
/// most this much (a message larger than all of it passes alone), so a
/// flood of large messages cannot grow memory while the database is slow.
const QUEUE_KIB: u32 = 8 * 1024;

/// Tells an actor that its message number `seq` is stored (or will never
/// be: refused by the database). Each connection of an actor has a channel
/// of its own for these, so an answer never reaches a later connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    pub seq: u64,
}

/// One message for the writer.
pub(crate) struct Item {
    pub record: InboundRecord,
    pub reply: Option<(mpsc::UnboundedSender<Stored>, Stored)>,
    /// Its share of [`QUEUE_KIB`], given back when it is written.
    pub bytes: Option<OwnedSemaphorePermit>,
}

impl Item {
    /// KiB of the queue's byte budget this message takes.
    fn kib(&self) -> u32 {
        let bytes = self.record.payload.len() + self.record.topic.len();
        u32::try_from(bytes / 1024 + 1)
            .unwrap_or(u32::MAX)
            .min(QUEUE_KIB)
    }
}

/// Room in the queue for one message: a slot and its bytes.
pub(crate) struct Room {
    slot: mpsc::OwnedPermit<Item>,
    bytes: OwnedSemaphorePermit,
}

impl Room {
    /// Queues `item` in the room taken for it.
    pub fn send(self, mut item: Item) {
        item.bytes = Some(self.bytes);
        self.slot.send(item);
    }
}

/// The writer's condition, for health and metrics.
#[derive(Debug, Default)]
pub struct InboxStats {
    /// The last write failed and is being retried.
    pub failing: AtomicBool,
    /// When the oldest message of the batch being written was received
    /// (Unix milliseconds); 0 while the writer waits for messages.
    oldest_ms: AtomicI64,
}

impl InboxStats {
    /// How long the oldest message being written has waited: zero when
    /// the writer is idle, growing while the database does not take a batch.
    pub fn write_lag(&self, now: chrono::DateTime<chrono::Utc>) -> Duration {
        match self.oldest_ms.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            ms => Duration::from_millis(
                u64::try_from(now.timestamp_millis() - ms).unwrap_or_default(),
            ),
        }
    }
}

/// The actors' side of the writer; cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    tx: mpsc::Sender<Item>,
    bytes: Arc<Semaphore>,
    stats: Arc<InboxStats>,
    metrics: Arc<Metrics>,
}

/// The writer task's side.
pub struct InboxWriter {
    rx: mpsc::Receiver<Item>,
    stats: Arc<InboxStats>,
    metrics: Arc<Metrics>,
}

impl Inbox {
    /// A queue of `capacity` messages and its writer, counting in `metrics`.
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> (Inbox, InboxWriter) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(InboxStats::default());
        (
            Inbox {
                tx,
                bytes: Arc::new(Semaphore::new(QUEUE_KIB as usize)),
                stats: stats.clone(),
                metrics: metrics.clone(),
            },
            InboxWriter { rx, stats, metrics },
        )
    }

    /// The writer's condition.
    pub fn stats(&self) -> &InboxStats {
        &self.stats
    }

    /// Messages waiting in the queue (not those of the batch being written).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues `item`, or hands it back when the queue is full (in
    /// messages or bytes) or gone.
    pub(crate) fn try_send(&self, mut item: Item) -> Result<(), Box<Item>> {
        let Ok(bytes) = self.bytes.clone().try_acquire_many_owned(item.kib()) else {
            return Err(Box::new(item));
        };
        item.bytes = Some(bytes);
        self.tx.try_send(item).map_err(|e| {
            let mut item = match e {
                mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item) => {
                    item
                }
            };
            item.bytes = None;
            Box::new(item)
        })
    }

    /// Waits for room for `item` (which stays with the caller: dropping
    /// this future loses nothing). `None` when the writer is gone.
    pub(crate) async fn room_for(&self, item: &Item) -> Option<Room> {
        let bytes = self
            .bytes
            .clone()
            .acquire_many_owned(item.kib())
            .await
            .ok()?;
        let slot = self.tx.clone().reserve_owned().await.ok()?;
        Some(Room { slot, bytes })
    }

    /// Counts a QoS 0 message dropped for want of room; the count so far
    /// for the ones worth a log line (the first, then every 1,000th).
    pub(crate) fn count_dropped(&self) -> Option<u64> {
        let n = self.metrics.inbox_dropped.inc();
        n.is_multiple_of(1_000).then_some(n + 1)
    }
}

impl InboxWriter {
    /// Writes until `token` is cancelled, then writes what is queued once
    /// more (the caller bounds how long).
    pub async fn run(mut self, pool: PgPool, token: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let got = tokio::select! {
                () = token.cancelled() => break,
                n = self.rx.recv_many(&mut batch, BATCH) => n,
            };
            if got == 0 {
                return;
            }
            self.writing(&batch);
            if !self.write(&pool, &mut batch, &token).await {
                break;
            }
        }
        // Shutdown: what is queued, once, without retrying.
        self.rx.close();
        while self.rx.recv_many(&mut batch, BATCH).await > 0 {
            if store::insert_inbound(&pool, &records(&batch))
                .await
                .is_err()
            {
                tracing::warn!(
                    messages = batch.len(),
                    "Could not store the last received messages at shutdown; unacknowledged ones will be sent again by brokers with a persistent session."
                );
                return;
            }
            self.done(&mut batch);
        }
    }

    /// Writes `batch`, retrying while the database is unreachable; false
    /// when stopped first (the batch is kept for the final write).
    async fn write(
        &mut self,
        pool: &PgPool,
        batch: &mut Vec<Item>,
        token: &CancellationToken,
    ) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match store::insert_inbound(pool, &records(batch)).await {
                Ok(()) => {
                    if self.stats.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("Storing received messages again.");
                    }
                    self.done(batch);
                    return true;
                }
                Err(e) if e.is_rejected() => {
                    self.one_by_one(pool, batch).await;
                    return true;
                }
                Err(e) => {
                    let delay = backoff.next_ceiling();
                    if !self.stats.failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            error = %e, messages = batch.len(),
                            "Cannot store received messages; holding them and retrying (brokers wait for the acknowledgements)."
                        );
                    }
                    if token
                        .run_until_cancelled(tokio::time::sleep(delay))
                        .await
                        .is_none()
                    {
                        return false;
                    }
                }
            }
        }
    }

    /// A batch the database refused: each row alone, dropping the refused.
    async fn one_by_one(&mut self, pool: &PgPool, batch: &mut Vec<Item>) {
        let mut refused = 0;
        for item in batch.iter() {
            if let Err(e) = store::insert_inbound(pool, &[&item.record]).await {
                refused += 1;
                self.metrics.inbox_dropped.inc();
                tracing::warn!(
                    connection_id = item.record.connection_id, error = %e,
                    "The database refused a received message; dropped."
                );
            }
        }
        self.metrics
            .inbox_stored
            .inc_by(batch.len() as u64 - refused);
        self.finished(batch);
    }

    /// Notes the batch about to be written (its first message is the oldest).
    fn writing(&self, batch: &[Item]) {
        let oldest = batch
            .first()
            .map_or(0, |i| i.record.received_at.timestamp_millis());
        self.stats.oldest_ms.store(oldest.max(1), Ordering::Relaxed);
    }

    /// The batch is stored: counts it and answers it.
    fn done(&self, batch: &mut Vec<Item>) {
        self.metrics.inbox_stored.inc_by(batch.len() as u64);
        self.finished(batch);
    }

    /// Answers the batch's QoS 1/2 messages and empties it.
    fn finished(&self, batch: &mut Vec<Item>) {
        self.stats.oldest_ms.store(0, Ordering::Relaxed);
        for item in batch.drain(..) {
            if let Some((reply, stored)) = item.reply {
                // The actor may be gone (stopped): nothing to acknowledge.
                let _ = reply.send(stored);
            }
        }
    }
}

fn records(batch: &[Item]) -> Vec<&InboundRecord> {
    batch.iter().map(|i| &i.record).collect()
}
