//! One flush of the recorder: batches, splitting refused ones, putting back
//! exactly what was not committed.

use super::Recorder;
use std::future::Future;
use std::sync::atomic::Ordering;
use store::{EventRecord, PgPool, StateRecord, StoreError};

/// Where batches go: Postgres in the service, a scripted sink in tests.
pub(super) trait Sink {
    /// Writes one batch in one transaction: all or nothing.
    fn write(
        &mut self,
        states: &[StateRecord],
        events: &[EventRecord],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The real sink.
pub(super) struct PgSink<'a> {
    pub(super) pool: &'a PgPool,
    pub(super) owner: &'a str,
    pub(super) fenced: bool,
}

impl Sink for PgSink<'_> {
    fn write(
        &mut self,
        states: &[StateRecord],
        events: &[EventRecord],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        store::write_batch(self.pool, self.owner, self.fenced, states, events)
    }
}

/// Records taken from the queue and not yet committed (or dropped). Whatever
/// is still here when it is dropped goes back into the queue: after a
/// transient error, and when the flush is cancelled half-way.
struct InFlight<'a> {
    recorder: &'a Recorder,
    states: Vec<Option<StateRecord>>,
    events: Vec<Option<EventRecord>>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut pending = self.recorder.pending();
        for s in self.states.drain(..).flatten() {
            // A newer state recorded meanwhile wins.
            pending.states.entry(s.connection_id).or_insert(s);
        }
        for e in self.events.drain(..).rev().flatten() {
            pending.push_event(e, true);
        }
    }
}

/// A piece of work: index ranges into the in-flight records.
type Piece = (std::ops::Range<usize>, std::ops::Range<usize>);

pub(super) async fn flush_into<S: Sink>(
    recorder: &Recorder,
    sink: &mut S,
) -> Result<usize, StoreError> {
    let (states, events, dropped) = {
        let mut pending = recorder.pending();
        let states: Vec<Option<StateRecord>> =
            pending.states.drain().map(|(_, s)| Some(s)).collect();
        let mut events = Vec::with_capacity(pending.events.len());
        while let Some(e) = pending.take_event() {
            events.push(Some(e));
        }
        (states, events, std::mem::take(&mut pending.dropped_events))
    };
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "State history queue overflowed; oldest events were dropped."
        );
    }
    let mut flight = InFlight {
        recorder,
        states,
        events,
    };
    let batch = recorder.shared.batch;
    let batches = flight.states.len().max(flight.events.len()).div_ceil(batch);
    let mut written = 0;
    for i in 0..batches {
        let range = |len: usize| (i * batch).min(len)..((i + 1) * batch).min(len);
        let piece = (range(flight.states.len()), range(flight.events.len()));
        written += write_piece(recorder, sink, &mut flight, piece).await?;
    }
    Ok(written)
}

/// Writes a batch, splitting it while the database refuses its data;
/// records refused on their own are dropped and counted.
async fn write_piece<S: Sink>(
    recorder: &Recorder,
    sink: &mut S,
    flight: &mut InFlight<'_>,
    piece: Piece,
) -> Result<usize, StoreError> {
    let mut written = 0;
    let mut work = vec![piece];
    while let Some((sr, er)) = work.pop() {
        let states: Vec<StateRecord> = flight.states[sr.clone()]
            .iter()
            .flatten()
            .cloned()
            .collect();
        let events: Vec<EventRecord> = flight.events[er.clone()]
            .iter()
            .flatten()
            .cloned()
            .collect();
        if states.is_empty() && events.is_empty() {
            continue;
        }
        match sink.write(&states, &events).await {
            Ok(()) => {
                flight.states[sr].iter_mut().for_each(|s| *s = None);
                flight.events[er].iter_mut().for_each(|e| *e = None);
                written += states.len() + events.len();
            }
            Err(e) if e.is_rejected() => {
                if states.len() + events.len() == 1 {
                    recorder.shared.rejected.fetch_add(1, Ordering::Relaxed);
                    let id = states
                        .first()
                        .map(|s| s.connection_id)
                        .or_else(|| events.first().map(|e| e.connection_id));
                    tracing::warn!(
                        connection_id = id, error = %e,
                        "The database refused a connection state record; dropped it, the others are written."
                    );
                    flight.states[sr].iter_mut().for_each(|s| *s = None);
                    flight.events[er].iter_mut().for_each(|e| *e = None);
                } else if !states.is_empty() && !events.is_empty() {
                    work.push((sr.start..sr.start, er));
                    work.push((sr, 0..0));
                } else if !states.is_empty() {
                    let mid = sr.start + sr.len() / 2;
                    work.push((mid..sr.end, 0..0));
                    work.push((sr.start..mid, 0..0));
                } else {
                    let mid = er.start + er.len() / 2;
                    work.push((0..0, mid..er.end));
                    work.push((0..0, er.start..mid));
                }
            }
            // What is still in flight goes back into the queue on drop.
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}
