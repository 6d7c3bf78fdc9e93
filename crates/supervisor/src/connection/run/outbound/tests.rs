use super::*;

fn row(id: i64, qos: i16) -> OutboxRow {
    OutboxRow {
        id,
        topic: format!("t/{id}"),
        payload: Vec::new(),
        qos,
        retain: false,
    }
}

#[test]
fn rows_are_marked_only_when_acknowledged_and_the_window_holds() {
    let mut o = Outbound::new(2);
    o.more = true;
    assert_eq!(o.fetch_due(), Some((0, 8)));
    o.fetching = true;
    o.fetched(0, vec![row(1, 1), row(2, 1), row(3, 0)]);
    assert!(o.more, "only an empty page means nothing more");
    o.queued_status();
    for _ in 0..2 {
        let r = o.next_row().unwrap();
        o.queued_row(r.id, r.qos as u8);
    }
    assert!(o.next_row().is_none(), "window of 2 is full");
    assert!(o.written(1), "the status message went first");
    assert!(!o.written(2));
    assert!(!o.written(3));
    assert!(o.take_marks().is_empty(), "written is not acknowledged");
    assert_eq!(o.acked(1, None), Acked::Other, "pkid 1 was the status");
    assert_eq!(o.acked(3, None), Acked::Row);
    assert_eq!(o.take_marks().published, vec![2]);
    let r = o.next_row().unwrap();
    assert_eq!(r.id, 3);
    o.queued_row(r.id, 0);
    assert!(!o.written(0));
    assert_eq!(o.take_marks().published, vec![3], "QoS 0: written is done");
    assert_eq!(o.acked(2, Some("not authorised".into())), Acked::Row);
    assert_eq!(o.completed(2), Acked::Other, "row 1 was QoS 1");
    let marks = o.take_marks();
    assert_eq!(marks.failed.len(), 1);
    assert_eq!(marks.failed[0].0, 1);
}

#[test]
fn a_lost_connection_makes_open_rows_pending_again_and_refetches() {
    let mut o = Outbound::new(8);
    o.more = true;
    o.fetching = true;
    o.fetched(0, vec![row(5, 1), row(6, 1), row(7, 2)]);
    for _ in 0..3 {
        let r = o.next_row().unwrap();
        o.queued_row(r.id, r.qos as u8);
    }
    o.written(1);
    o.written(2);
    o.acked(1, None);
    // Row 6 written, row 7 still queued in rumqttc when the connection ends.
    o.connection_lost();
    let marks = o.take_marks();
    assert_eq!(marks.published, vec![5]);
    assert_eq!(marks.retried, vec![6, 7]);
    assert_eq!(o.fetch_due(), Some((0, 32)), "from the first pending row");
}

#[test]
fn a_fetch_from_before_a_loss_is_dropped() {
    let mut o = Outbound::new(4);
    o.more = true;
    o.fetching = true;
    o.fetched(0, vec![row(1, 1)]);
    o.fetching = true;
    let after = o.cursor;
    o.connection_lost();
    o.fetched(after, vec![row(2, 1)]);
    assert!(o.next_row().is_none());
    assert_eq!(o.fetch_due(), Some((0, 16)));
}

#[test]
fn a_read_cut_by_a_loss_does_not_stop_the_next_connection_reading() {
    let mut o = Outbound::new(4);
    o.more = true;
    assert_eq!(o.fetch_due(), Some((0, 16)));
    o.fetching = true;
    // The connection drops; the read's future goes with the serve loop.
    o.connection_lost();
    assert_eq!(o.fetch_due(), Some((0, 16)), "the next connection reads");
}

#[test]
fn pages_are_read_until_an_empty_one() {
    let mut o = Outbound::new(2);
    o.more = true;
    o.fetching = true;
    o.fetched(0, vec![row(1, 1), row(2, 1)]);
    assert!(o.more);
    assert_eq!(o.fetch_due(), None, "no room: two rows wait");
    for _ in 0..2 {
        let r = o.next_row().unwrap();
        o.queued_row(r.id, 1);
    }
    assert_eq!(o.fetch_due(), Some((2, 8)));
    o.fetching = true;
    o.fetched(2, Vec::new());
    assert_eq!(o.fetch_due(), None, "an empty page: wait for a wake-up");
}

#[test]
fn a_qos2_packet_id_reused_by_a_qos1_row_settles_each_by_its_own_ack() {
    let mut o = Outbound::new(8);
    o.more = true;
    o.fetching = true;
    o.fetched(0, vec![row(1, 2), row(2, 1)]);
    for _ in 0..2 {
        let r = o.next_row().unwrap();
        o.queued_row(r.id, r.qos as u8);
    }
    // rumqttc frees pkid 1 at PUBREC and hands it to the next publish.
    o.written(1);
    o.written(1);
    assert_eq!(o.acked(1, None), Acked::Row);
    assert_eq!(
        o.take_marks().published,
        vec![2],
        "PUBACK settles the QoS 1 row"
    );
    assert_eq!(o.completed(1), Acked::Row);
    assert_eq!(o.take_marks().published, vec![1], "PUBCOMP the QoS 2 row");
}

#[test]
fn rows_wait_while_too_many_marks_are_unwritten() {
    let mut o = Outbound::new(1);
    o.more = true;
    o.fetching = true;
    o.fetched(0, (1..=6).map(|id| row(id, 0)).collect());
    for _ in 0..4 {
        let r = o.next_row().unwrap();
        o.queued_row(r.id, 0);
        o.written(0);
    }
    assert!(
        o.next_row().is_none(),
        "four windows acknowledged, not marked"
    );
    assert_eq!(o.take_marks().published, vec![1, 2, 3, 4]);
    o.marked(2);
    assert_eq!(o.next_row().map(|r| r.id), Some(5));
}

#[test]
fn an_idle_connection_reads_nothing_until_woken() {
    let mut o = Outbound::new(4);
    assert_eq!(o.fetch_due(), None, "no wake-up, no read");
    o.queued_status();
    o.written(1);
    o.connection_lost();
    assert_eq!(o.fetch_due(), None, "nothing of ours was in flight");
    o.more = true;
    assert_eq!(o.fetch_due(), Some((0, 16)));
}
