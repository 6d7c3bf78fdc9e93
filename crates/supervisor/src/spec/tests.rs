use super::*;
use chrono::Utc;

pub(crate) fn settings() -> Settings {
    let mut s = Settings::defaults();
    s.instance_id = "bfg_back".to_owned();
    s
}

pub(crate) fn row(id: i64, name: &str) -> ConnectionRow {
    ConnectionRow {
        id,
        name: name.to_owned(),
        is_enabled: true,
        broker_host: "127.0.0.1".to_owned(),
        broker_port: 1883,
        protocol: "3.1.1".to_owned(),
        use_tls: false,
        ca_cert_pem: None,
        username: None,
        password: None,
        keep_alive_secs: None,
        clean_session: None,
        topic_prefix: None,
        subscriptions: None,
        store_inbound: true,
        hmac_secret: None,
        verify_inbound_hmac: false,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

#[test]
fn defaults_follow_the_contract() {
    let spec = ConnectionSpec::from_row(&row(7, "site_88"), &settings()).unwrap();
    assert_eq!(spec.client_id, "site_88_bfg_back");
    assert_eq!(spec.status_topic.as_deref(), Some("site_88/backend/status"));
    assert_eq!(spec.subscriptions, vec!["site_88/#".to_owned()]);
    assert_eq!(spec.keep_alive, Duration::from_secs(60));
    assert!(spec.clean_session);
    assert_eq!(spec.protocol, Protocol::V311);
    assert_eq!(spec.broker(), "127.0.0.1:1883");
}

#[test]
fn client_id_is_sanitised() {
    let mut s = settings();
    s.instance_id = "web.1".to_owned();
    let spec = ConnectionSpec::from_row(&row(1, "site 88/ä"), &s).unwrap();
    assert_eq!(spec.client_id, "site_88___web_1");
}

#[test]
fn row_values_override_settings() {
    let mut r = row(1, "site_91");
    r.protocol = "5".to_owned();
    r.keep_alive_secs = Some(15);
    r.clean_session = Some(false);
    r.topic_prefix = Some("tenants/91".to_owned());
    r.subscriptions = Some(vec!["tenants/91/+/up".to_owned(), "cmd/#".to_owned()]);
    r.username = Some("u".to_owned());
    r.password = Some("canary-pass".to_owned());
    let spec = ConnectionSpec::from_row(&r, &settings()).unwrap();
    assert_eq!(spec.protocol, Protocol::V5);
    assert_eq!(spec.keep_alive, Duration::from_secs(15));
    assert!(!spec.clean_session);
    assert_eq!(
        spec.status_topic.as_deref(),
        Some("tenants/91/backend/status")
    );
    assert_eq!(spec.subscriptions.len(), 2);
    assert!(!format!("{spec:?}").contains("canary-pass"));
    assert!(!format!("{r:?}").contains("canary-pass"));
}

#[test]
fn lwt_disabled_means_no_status_topic() {
    let mut s = settings();
    s.lwt_enabled = false;
    let spec = ConnectionSpec::from_row(&row(1, "a"), &s).unwrap();
    assert_eq!(spec.status_topic, None);
}

#[test]
fn invalid_rows_are_reported_in_words() {
    type Edit = fn(&mut ConnectionRow);
    let cases: Vec<(&str, Edit)> = vec![
        ("name is empty", |r| r.name = " ".into()),
        ("broker_host is empty", |r| r.broker_host = "".into()),
        ("URL scheme", |r| r.broker_host = "mqtt://h".into()),
        ("outside 1-65535", |r| r.broker_port = 70_000),
        ("outside 1-65535", |r| r.broker_port = 0),
        ("protocol `3.1`", |r| r.protocol = "3.1".into()),
        ("keep_alive_secs 3 is outside 5-65535", |r| {
            r.protocol = "5".into();
            r.keep_alive_secs = Some(3);
        }),
        ("keep_alive_secs 0", |r| r.keep_alive_secs = Some(0)),
        ("`#` must be the last level", |r| {
            r.subscriptions = Some(vec!["a/#/b".into()])
        }),
        ("`+` must stand alone", |r| {
            r.subscriptions = Some(vec!["a/b+".into()])
        }),
        ("\\0", |r| r.subscriptions = Some(vec!["a/\0".into()])),
        ("subscription 1 is empty", |r| {
            r.subscriptions = Some(vec!["".into()])
        }),
        ("at most 65535", |r| {
            r.subscriptions = Some(vec!["a".repeat(70_000)])
        }),
        ("topic_prefix", |r| r.topic_prefix = Some("a/+".into())),
        ("use_tls is false", |r| r.ca_cert_pem = Some("x".into())),
        ("ca_cert_pem", |r| {
            r.use_tls = true;
            r.ca_cert_pem = Some("not a certificate".into());
        }),
        ("without username", |r| r.password = Some("p".into())),
        ("hmac_secret is empty", |r| r.verify_inbound_hmac = true),
    ];
    for (expected, edit) in cases {
        let mut r = row(3, "site_3");
        edit(&mut r);
        let err = ConnectionSpec::from_row(&r, &settings()).unwrap_err();
        let reason = err.reason.to_string();
        assert!(reason.contains(expected), "{expected}: got {reason}");
        assert_eq!(err.id, 3);
    }
}

#[test]
fn specs_compare_by_effective_configuration() {
    let a = ConnectionSpec::from_row(&row(1, "a"), &settings()).unwrap();
    let mut r = row(1, "a");
    r.updated_at = Utc::now() + chrono::Duration::hours(1);
    assert_eq!(a, ConnectionSpec::from_row(&r, &settings()).unwrap());
    r.store_inbound = false;
    let b = ConnectionSpec::from_row(&r, &settings()).unwrap();
    assert_ne!(a, b);
    assert_eq!(b.changes_from(&a), vec!["message handling"]);
    r.store_inbound = true;
    r.password = Some("new".into());
    r.username = Some("u".into());
    assert_ne!(a, ConnectionSpec::from_row(&r, &settings()).unwrap());
}

#[test]
fn broker_for_display_shows_valid_hosts_only() {
    use crate::spec::broker_for_display;
    assert_eq!(
        broker_for_display("broker.example", 8883).as_deref(),
        Some("broker.example:8883")
    );
    assert_eq!(
        broker_for_display("::1", 1883).as_deref(),
        Some("[::1]:1883")
    );
    assert_eq!(broker_for_display("", 1883), None);
    assert_eq!(broker_for_display("user:hunter2@broker", 1883), None);
}
