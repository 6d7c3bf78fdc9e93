use super::*;
use crate::spec::tests::{row, settings};

fn spec(protocol: &str, filters: &[&str]) -> ConnectionSpec {
    let mut r = row(1, "site_88");
    r.protocol = protocol.to_owned();
    r.subscriptions = Some(filters.iter().map(|f| (*f).to_owned()).collect());
    ConnectionSpec::from_row(&r, &settings()).unwrap()
}

fn cx(spec: &ConnectionSpec, unanswered: Unanswered, was_error: bool) -> Context<'_> {
    Context {
        spec,
        unanswered,
        up_for: Some(Duration::from_millis(40)),
        failures_in_a_row: 1,
        was_error,
    }
}

fn closed() -> LinkError {
    LinkError::ClosedByBroker("connection closed by peer".into())
}

fn judged(decision: Decision, cause: Cause) -> Judgement {
    Judgement { decision, cause }
}

#[test]
fn a_close_after_subscribe_points_at_the_acl() {
    let s = spec("3.1.1", &["site_88/#", "site_88/+/cmd"]);
    let sub = Unanswered {
        status: false,
        subscribe: true,
    };
    let r = report(
        &closed(),
        &judged(
            Decision::Retry(Duration::from_millis(700)),
            Cause::Denied { in_a_row: 1 },
        ),
        &cx(&s, sub, false),
    );
    assert_eq!(r.status, Status::Disconnected);
    assert_eq!(
        r.reason,
        "the broker closed the connection right after we subscribed to `site_88/#`, `site_88/+/cmd`: it may refuse that topic (check the broker's ACL for this user)"
    );
    assert!(!r.reason.contains("duplicate"), "{r:?}");
    assert_eq!(r.level, Level::Warn);
    assert!(r.detail.ends_with("; retrying in 0.7 s"), "{r:?}");

    let both = Unanswered {
        status: true,
        subscribe: true,
    };
    let r = report(
        &closed(),
        &judged(
            Decision::Lasting(Duration::from_secs(52)),
            Cause::Denied { in_a_row: 3 },
        ),
        &cx(&s, both, false),
    );
    assert_eq!(r.status, Status::Error);
    assert_eq!(r.level, Level::Error);
    assert!(
        r.reason
            .contains("published the status to `site_88/backend/status` and subscribed to"),
        "{r:?}"
    );
    assert!(r.message.contains("(3 times in a row)"), "{r:?}");
    assert!(r.detail.ends_with("retrying in about 52 s"), "{r:?}");
}

#[test]
fn many_filters_are_counted_not_listed() {
    let s = spec("3.1.1", &["a/1", "a/2", "a/3", "a/4", "a/5"]);
    let sub = Unanswered {
        status: false,
        subscribe: true,
    };
    let r = report(
        &closed(),
        &judged(
            Decision::Retry(Duration::from_secs(1)),
            Cause::Denied { in_a_row: 1 },
        ),
        &cx(&s, sub, false),
    );
    assert!(
        r.reason
            .contains("subscribed to `a/1`, `a/2`, `a/3`, 2 more:"),
        "{r:?}"
    );
}

#[test]
fn a_close_before_connack_names_the_likely_causes() {
    let s = spec("5", &[]);
    let r = report(
        &closed(),
        &judged(
            Decision::Retry(Duration::from_secs(1)),
            Cause::ClosedBeforeConnAck { in_a_row: 1 },
        ),
        &Context {
            up_for: None,
            ..cx(&s, Unanswered::default(), false)
        },
    );
    assert_eq!(
        r.reason,
        "the broker closed the connection before answering our CONNECT (no CONNACK): it may refuse the credentials without a refusal code, may not support MQTT 5, or the port expects TLS"
    );
    assert_eq!(r.status, Status::Disconnected);
    let r = report(
        &closed(),
        &judged(
            Decision::Lasting(Duration::from_secs(60)),
            Cause::ClosedBeforeConnAck { in_a_row: 3 },
        ),
        &cx(&s, Unanswered::default(), true),
    );
    assert_eq!(r.status, Status::Error);
    // Already in `error`: a repeat is progress, not a new alarm.
    assert_eq!(r.level, Level::Info);
}

#[test]
fn takeovers_are_each_a_warning_with_their_count() {
    let s = spec("3.1.1", &[]);
    let first = report(
        &closed(),
        &judged(
            Decision::Cooldown(Duration::from_secs(30)),
            Cause::Takeover {
                in_a_row: 1,
                over: Duration::ZERO,
            },
        ),
        &cx(&s, Unanswered::default(), false),
    );
    assert_eq!(first.status, Status::Cooldown);
    assert_eq!(first.level, Level::Warn);
    assert_eq!(
        first.message,
        "Broker closed the connection 0.0 s after connect — likely a duplicate client ID; cooling down 30 s."
    );
    let third = report(
        &closed(),
        &judged(
            Decision::Cooldown(Duration::from_secs(120)),
            Cause::Takeover {
                in_a_row: 3,
                over: Duration::from_secs(93),
            },
        ),
        &cx(&s, Unanswered::default(), false),
    );
    assert_eq!(third.level, Level::Warn);
    assert!(
        third
            .message
            .ends_with("takeover 3 in a row in 1.6 minutes; cooling down 120 s."),
        "{third:?}"
    );
    assert_eq!(
        third.detail,
        format!("{}; cooling down 120 s", third.reason)
    );
}

#[test]
fn a_takeover_series_ends_in_error_naming_the_client_id() {
    let s = spec("3.1.1", &[]);
    let r = report(
        &LinkError::TakenOver,
        &judged(
            Decision::Lasting(Duration::from_secs(600)),
            Cause::Takeover {
                in_a_row: 5,
                over: Duration::from_secs(450),
            },
        ),
        &cx(&s, Unanswered::default(), false),
    );
    assert_eq!(r.status, Status::Error);
    assert_eq!(r.level, Level::Error);
    assert_eq!(
        r.reason,
        "client ID site_88_bfg_back appears to be in use by another client: 5 takeovers in 7.5 minutes"
    );
    assert!(r.detail.ends_with("retrying in about 600 s"), "{r:?}");
    let again = report(
        &LinkError::TakenOver,
        &judged(
            Decision::Lasting(Duration::from_secs(600)),
            Cause::Takeover {
                in_a_row: 6,
                over: Duration::from_secs(1100),
            },
        ),
        &cx(&s, Unanswered::default(), true),
    );
    assert_eq!(again.level, Level::Warn, "each takeover is a warning");
}

#[test]
fn plain_failures_keep_their_words() {
    let s = spec("3.1.1", &[]);
    let refused = LinkError::Refused("not authorised".into());
    let r = report(
        &refused,
        &judged(Decision::Lasting(Duration::from_secs(52)), Cause::Plain),
        &cx(&s, Unanswered::default(), false),
    );
    assert_eq!(
        r.message,
        "Broker refused the connection; retrying in about 52 s."
    );
    assert_eq!(r.reason, "broker refused the connection: not authorised");
    assert!(r.error_field);
    let net = LinkError::Network("connection refused".into());
    let r = report(
        &net,
        &judged(Decision::Retry(Duration::from_millis(700)), Cause::Plain),
        &Context {
            failures_in_a_row: 2,
            ..cx(&s, Unanswered::default(), false)
        },
    );
    assert_eq!(r.message, "Still failing; retrying in 0.7 s.");
    assert_eq!(r.level, Level::Info);
}
