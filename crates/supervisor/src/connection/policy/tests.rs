use super::*;

fn policy() -> Policy {
    let mut p = Policy::new(
        Duration::from_secs(10),
        Duration::from_secs(30),
        Duration::from_secs(600),
    );
    p.random = || 0.999;
    p
}

fn refused_tcp() -> LinkError {
    LinkError::Network("connection refused".into())
}

fn closed() -> LinkError {
    LinkError::ClosedByBroker("connection closed by peer".into())
}

const NONE: Unanswered = Unanswered {
    status: false,
    subscribe: false,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn quick_losses_keep_backing_off() {
    // A broker that drops us right after every CONNACK, not a takeover
    // (say, a keep-alive failure) must not reset the backoff.
    let mut p = policy();
    let mut now = Instant::now();
    let mut delays = Vec::new();
    for _ in 0..8 {
        p.attempt(now);
        let d = p
            .lost(
                &LinkError::KeepAliveTimeout,
                Duration::from_millis(200),
                NONE,
                now,
            )
            .decision;
        delays.push(d.delay().as_secs());
        now += d.delay();
    }
    assert_eq!(delays, [0, 1, 3, 7, 15, 31, 59, 59]);
}

#[test]
fn a_stable_connection_starts_the_backoff_over() {
    let mut p = policy();
    let now = Instant::now();
    for _ in 0..5 {
        p.failed(&refused_tcp(), now);
    }
    let j = p.lost(&LinkError::KeepAliveTimeout, STABLE_AFTER, NONE, now);
    assert_eq!(j.decision, Decision::Retry(secs(1).mul_f64(0.999)));
    assert_eq!(j.cause, Cause::Plain);
}

#[test]
fn never_more_than_a_few_attempts_a_minute() {
    let mut p = policy();
    p.random = || 0.0; // the worst jitter: retry at once
    let start = Instant::now();
    let mut now = start;
    let mut attempts = Vec::new();
    while now < start + secs(300) {
        p.attempt(now);
        attempts.push(now);
        let d = p.failed(&refused_tcp(), now).decision;
        now += d.delay().max(Duration::from_millis(1));
    }
    for (i, at) in attempts.iter().enumerate() {
        let in_window = attempts[i..]
            .iter()
            .take_while(|t| **t < *at + ATTEMPT_WINDOW)
            .count();
        assert!(
            in_window <= MAX_ATTEMPTS,
            "{in_window} attempts in a minute"
        );
    }
    assert!(attempts.len() <= 5 * MAX_ATTEMPTS + 1, "{}", attempts.len());
}

#[test]
fn refusals_are_lasting_with_jitter() {
    let mut p = policy();
    p.random = || 0.0;
    let j = p.failed(&LinkError::Refused("not authorised".into()), Instant::now());
    assert_eq!(j.decision, Decision::Lasting(secs(45)));
    p.random = || 0.999;
    let j = p.failed(&LinkError::Tls("bad cert".into()), Instant::now());
    assert!(matches!(j.decision, Decision::Lasting(x) if x > secs(74)));
}

#[test]
fn a_repeated_oversize_packet_is_lasting() {
    let mut p = policy();
    let big = LinkError::TooLarge {
        size: 200 << 20,
        limit: 1 << 20,
    };
    let now = Instant::now();
    let mut lost = |up: Duration| p.lost(&big, up, NONE, now).decision;
    assert!(matches!(lost(secs(11)), Decision::Retry(_)));
    assert!(matches!(lost(secs(11)), Decision::Lasting(_)));
    // After a stable hour, one oversize message is forgiven once.
    assert!(matches!(lost(secs(3600)), Decision::Retry(_)));
}

#[test]
fn closes_before_connack_become_lasting() {
    let mut p = policy();
    let now = Instant::now();
    let causes: Vec<_> = (0..4).map(|_| p.failed(&closed(), now)).collect();
    for (i, j) in causes.iter().enumerate() {
        let n = u32::try_from(i + 1).unwrap();
        assert_eq!(j.cause, Cause::ClosedBeforeConnAck { in_a_row: n });
        assert_eq!(
            matches!(j.decision, Decision::Lasting(_)),
            n >= EARLY_CLOSES_LASTING,
            "{j:?}"
        );
    }
    // A CONNACK ends the series.
    p.connected();
    assert!(matches!(
        p.failed(&closed(), now).decision,
        Decision::Retry(_)
    ));
}

#[test]
fn a_close_after_an_unanswered_request_is_a_denial_not_a_takeover() {
    let mut p = policy();
    let now = Instant::now();
    let sub = Unanswered {
        status: false,
        subscribe: true,
    };
    let first = p.lost(&closed(), Duration::from_millis(3), sub, now);
    assert_eq!(first.cause, Cause::Denied { in_a_row: 1 });
    assert!(matches!(first.decision, Decision::Retry(_)));
    p.lost(&closed(), Duration::from_millis(3), sub, now);
    let third = p.lost(&closed(), Duration::from_millis(3), sub, now);
    assert_eq!(third.cause, Cause::Denied { in_a_row: 3 });
    assert!(matches!(third.decision, Decision::Lasting(_)));
    // 0x8E is a takeover whatever was unanswered.
    let j = p.lost(&LinkError::TakenOver, Duration::from_millis(3), sub, now);
    assert!(matches!(j.cause, Cause::Takeover { in_a_row: 1, .. }));
}

#[test]
fn takeovers_escalate_to_the_cap_then_become_lasting() {
    let mut p = Policy::new(secs(10), secs(30), secs(100));
    p.random = || 0.5;
    let start = Instant::now();
    let mut now = start;
    let mut seen = Vec::new();
    for _ in 0..6 {
        p.attempt(now);
        let j = p.lost(&closed(), Duration::from_millis(400), NONE, now);
        seen.push(j);
        now += j.decision.delay() + Duration::from_millis(400);
    }
    let delays: Vec<_> = seen.iter().map(|j| j.decision).collect();
    assert_eq!(
        delays,
        [
            Decision::Cooldown(secs(30)),
            Decision::Cooldown(secs(60)),
            Decision::Cooldown(secs(100)),
            Decision::Cooldown(secs(100)),
            Decision::Lasting(secs(100)),
            Decision::Lasting(secs(100)),
        ]
    );
    let Cause::Takeover { in_a_row, over } = seen[4].cause else {
        panic!("{:?}", seen[4]);
    };
    assert_eq!(in_a_row, TAKEOVERS_LASTING);
    assert_eq!(over, secs(290) + Duration::from_millis(1_600));
}

#[test]
fn an_ordinary_loss_ends_a_takeover_series() {
    let mut p = policy();
    let now = Instant::now();
    p.lost(&closed(), secs(1), NONE, now);
    p.lost(&closed(), secs(1), NONE, now);
    p.lost(&LinkError::KeepAliveTimeout, secs(20), NONE, now);
    let j = p.lost(&closed(), secs(1), NONE, now);
    assert_eq!(j.decision, Decision::Cooldown(secs(30)));
}

#[test]
fn a_silent_kick_of_a_long_lived_connection_starts_the_series() {
    // RabbitMQ and rumqttd drop the old connection without a word: the
    // first kick looks like any loss of a long-lived connection.
    let mut p = policy();
    let first = Instant::now();
    let j = p.lost(&closed(), secs(3600), NONE, first);
    assert_eq!(j.cause, Cause::Plain);
    assert!(matches!(j.decision, Decision::Retry(_)));
    // We reconnect, kick the other client, and it kicks us right back.
    let now = first + secs(2);
    let j = p.lost(&closed(), Duration::from_millis(900), NONE, now);
    assert_eq!(
        j.cause,
        Cause::Takeover {
            in_a_row: 2,
            over: secs(2)
        }
    );
    assert_eq!(j.decision, Decision::Cooldown(secs(60)));
}

#[test]
fn a_long_lived_close_followed_by_an_ordinary_loss_is_forgotten() {
    let mut p = policy();
    let now = Instant::now();
    p.lost(&closed(), secs(3600), NONE, now);
    p.lost(&LinkError::KeepAliveTimeout, secs(30), NONE, now);
    let j = p.lost(&closed(), secs(1), NONE, now);
    assert!(matches!(j.cause, Cause::Takeover { in_a_row: 1, .. }));
}

#[test]
fn takeovers_cool_down() {
    let mut p = policy();
    let now = Instant::now();
    assert_eq!(
        p.lost(&closed(), Duration::from_millis(400), NONE, now)
            .decision,
        Decision::Cooldown(secs(30))
    );
    assert!(matches!(
        p.lost(&closed(), secs(11), NONE, now).decision,
        Decision::Retry(_)
    ));
    assert_eq!(
        p.lost(&LinkError::TakenOver, secs(3600), NONE, now)
            .decision,
        Decision::Cooldown(secs(30))
    );
}

#[test]
fn a_disconnect_with_a_reason_is_taken_at_its_word() {
    let mut p = policy();
    let now = Instant::now();
    let said = LinkError::DisconnectedByBroker("DISCONNECT QuotaExceeded".into());
    let both = Unanswered {
        status: true,
        subscribe: true,
    };
    let j = p.lost(&said, Duration::from_millis(5), both, now);
    assert_eq!(j.cause, Cause::Plain);
    assert!(matches!(j.decision, Decision::Retry(_)));
}

/// The rules over time as the actor lives it: real sleeps on paused time,
/// a takeover war from a client that kicks us 400 ms after every connect.
#[tokio::test(start_paused = true)]
async fn a_takeover_war_on_paused_time() {
    let mut p = Policy::new(secs(10), secs(30), secs(600));
    p.random = || 0.5;
    let start = Instant::now();
    let mut statuses = Vec::new();
    loop {
        p.attempt(Instant::now());
        tokio::time::sleep(Duration::from_millis(400)).await;
        let j = p.lost(&closed(), Duration::from_millis(400), NONE, Instant::now());
        statuses.push(j.decision);
        if matches!(j.decision, Decision::Lasting(_)) {
            break;
        }
        tokio::time::sleep(j.decision.delay()).await;
    }
    // 30 + 60 + 120 + 240 s of cooldown and five 0.4 s connections.
    assert_eq!(start.elapsed(), secs(450) + Duration::from_millis(2_000));
    assert_eq!(statuses.len(), TAKEOVERS_LASTING as usize);
    assert_eq!(statuses[4], Decision::Lasting(secs(600)));
}
