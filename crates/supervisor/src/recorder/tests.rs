//! The recorder's flush: split on refused data, no duplicates after a
//! transient failure, nothing lost when cancelled; and against a real
//! database, a NUL from a broker never stops the writes.

use super::flush::{Sink, flush_into};
use super::*;
use crate::state::Status;
use sqlx::PgPool;

fn state(detail: &str) -> ConnectionState {
    let mut s = ConnectionState::starting();
    s.status = Status::Error;
    s.detail = detail.to_owned();
    s.last_error = Some(detail.to_owned());
    s
}

/// Queues a record without cleaning it, as a bug elsewhere might.
fn record_raw(r: &Recorder, id: i64, detail: &str) {
    let record = StateRecord {
        connection_id: id,
        status: "error".into(),
        detail: detail.into(),
        client_id: format!("c{id}"),
        connected_since: None,
        last_error: Some(detail.into()),
        cooldown_until: None,
        reconnects: 0,
    };
    let event = EventRecord {
        connection_id: id,
        name: format!("n{id}"),
        status: "error".into(),
        detail: detail.into(),
        client_id: format!("c{id}"),
        at: Utc::now(),
    };
    r.queue(record, event);
}

/// Refuses any batch holding a detail with "BAD"; fails transiently on the
/// calls listed in `fail_on`; remembers what it committed.
#[derive(Default)]
struct Scripted {
    calls: usize,
    fail_on: Vec<usize>,
    states: Vec<i64>,
    events: Vec<i64>,
}

impl Sink for Scripted {
    fn write(
        &mut self,
        states: &[StateRecord],
        events: &[EventRecord],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.calls += 1;
        let result = if self.fail_on.contains(&self.calls) {
            Err(StoreError::Url("database went away".into()))
        } else if states.iter().any(|s| s.detail.contains("BAD"))
            || events.iter().any(|e| e.detail.contains("BAD"))
        {
            Err(StoreError::Rejected("SQLSTATE 22021".into()))
        } else {
            self.states.extend(states.iter().map(|s| s.connection_id));
            self.events.extend(events.iter().map(|e| e.connection_id));
            Ok(())
        };
        std::future::ready(result)
    }
}

use std::future::Future;

#[tokio::test]
async fn a_refused_record_is_dropped_alone() {
    let r = Recorder::with_batch("t", 4, false);
    for id in 1..=10 {
        record_raw(&r, id, if id == 7 { "BAD" } else { "ok" });
    }
    let mut sink = Scripted::default();
    let written = flush_into(&r, &mut sink).await.unwrap();
    assert_eq!(written, 18, "9 states and 9 events");
    let mut states = sink.states.clone();
    states.sort_unstable();
    assert_eq!(states, [1, 2, 3, 4, 5, 6, 8, 9, 10]);
    assert_eq!(sink.events.len(), 9);
    assert_eq!(r.rejected(), 2, "the bad state and its event");
    assert_eq!(r.backlog(), (0, 0));
}

#[tokio::test]
async fn a_transient_failure_puts_back_only_what_was_not_committed() {
    let r = Recorder::with_batch("t", 3, false);
    for id in 1..=9 {
        record_raw(&r, id, "ok");
    }
    let mut sink = Scripted {
        fail_on: vec![2],
        ..Scripted::default()
    };
    assert!(flush_into(&r, &mut sink).await.is_err());
    assert_eq!(sink.events, [1, 2, 3], "batch 1 committed");
    assert_eq!(r.backlog(), (6, 6), "batches 2 and 3 put back, not batch 1");
    flush_into(&r, &mut sink).await.unwrap();
    let mut events = sink.events.clone();
    events.sort_unstable();
    assert_eq!(
        events,
        (1..=9).collect::<Vec<_>>(),
        "each event exactly once"
    );
}

#[tokio::test]
async fn a_newer_state_wins_over_one_put_back() {
    let r = Recorder::with_batch("t", 10, false);
    record_raw(&r, 1, "old");
    let mut sink = Scripted {
        fail_on: vec![1],
        ..Scripted::default()
    };
    // Record a newer state while the flush is "in flight": simulate by
    // failing, then recording, then flushing again.
    assert!(flush_into(&r, &mut sink).await.is_err());
    r.record(1, "n1", "c1", &state("new"));
    let pending = r.pending().states.get(&1).map(|s| s.detail.clone());
    assert_eq!(pending.as_deref(), Some("new"));
}

#[tokio::test]
async fn a_cancelled_flush_loses_nothing() {
    struct Hang;
    impl Sink for Hang {
        fn write(
            &mut self,
            _: &[StateRecord],
            _: &[EventRecord],
        ) -> impl Future<Output = Result<(), StoreError>> + Send {
            std::future::pending()
        }
    }
    let r = Recorder::with_batch("t", 10, false);
    for id in 1..=3 {
        record_raw(&r, id, "ok");
    }
    let out = tokio::time::timeout(Duration::from_millis(50), flush_into(&r, &mut Hang)).await;
    assert!(out.is_err());
    assert_eq!(r.backlog(), (3, 3));
}

#[test]
fn the_event_queue_is_bounded_in_bytes() {
    let r = Recorder::new("t");
    let big = "x".repeat(1000);
    for i in 0..50_000 {
        record_raw(&r, i % 10, &big);
    }
    let pending = r.pending();
    assert!(pending.event_bytes <= MAX_QUEUED_EVENT_BYTES);
    assert!(pending.events.len() < 50_000);
    assert!(pending.dropped_events > 0);
}

#[test]
fn text_is_cleaned_when_recorded() {
    let r = Recorder::new("t");
    let nasty = format!("reason\0with NUL\nand a fake line{}", "y".repeat(5_000));
    r.record(1, "site\n1", "c", &state(&nasty));
    let pending = r.pending();
    let s = &pending.states[&1];
    assert!(!s.detail.contains('\0') && !s.detail.contains('\n'));
    assert!(s.detail.len() <= crate::untrusted::MAX_TEXT_BYTES + 3);
    assert_eq!(pending.events[0].name, "site\\n1");
}

async fn insert(pool: &PgPool, name: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO mqtt_connections (name, broker_host) VALUES ($1, '127.0.0.1') RETURNING id",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_nul_byte_never_stops_the_writes(pool: PgPool) {
    let a = insert(&pool, "a").await;
    let b = insert(&pool, "b").await;
    let r = Recorder::new("t");
    // Past the cleaning (as a bug would): Postgres refuses NUL in text.
    record_raw(&r, a, "broker said \0 here");
    r.record(b, "b", "b_t", &state("fine"));
    let written = r.flush(&pool).await.unwrap();
    assert_eq!(written, 2, "b's state and event");
    assert_eq!(r.rejected(), 2);
    assert_eq!(r.backlog(), (0, 0), "nothing re-queued forever");
    let status: String =
        sqlx::query_scalar("SELECT detail FROM mqtt_connection_state WHERE connection_id = $1")
            .bind(b)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "fine");
    // And the cleaned path stores the same text, escaped.
    r.record(a, "a", "a_t", &state("broker said \0 here"));
    r.flush(&pool).await.unwrap();
    let detail: String =
        sqlx::query_scalar("SELECT detail FROM mqtt_connection_state WHERE connection_id = $1")
            .bind(a)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(detail, "broker said \\0 here");
}
