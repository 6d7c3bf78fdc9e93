//! Property tests of the row validator over generated rows: it never panics,
//! and every row it accepts becomes a client rumqttc can build and CONNECT
//! and SUBSCRIBE packets that encode within MQTT_MAX_PACKET_SIZE and decode
//! back to the same values.

use super::packets::{self, ConnectPacket, SubscribePacket};
use super::tests::{row, settings};
use super::*;
use bytes::BytesMut;
use proptest::prelude::*;
use rumqttc::v5::mqttbytes as m5;

/// Text with the characters that break things: controls, NUL, wildcards,
/// separators, non-ASCII, non-characters, and sometimes a lot of it.
fn nasty_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z0-9_]{1,12}",
        Just("/".to_owned()),
        Just("+".to_owned()),
        Just("#".to_owned()),
        Just("\0".to_owned()),
        Just("\t".to_owned()),
        Just("\n".to_owned()),
        Just(" ".to_owned()),
        Just("é".to_owned()),
        Just("\u{fffe}".to_owned()),
        Just("\u{202e}".to_owned()),
        Just(":".to_owned()),
        Just("@".to_owned()),
        Just(".".to_owned()),
        any::<char>().prop_map(String::from),
    ];
    let short = prop::collection::vec(piece, 0..8).prop_map(|v| v.concat());
    prop_oneof![
        8 => short,
        1 => (1usize..70_000).prop_map(|n| "a".repeat(n)),
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("127.0.0.1".to_owned()),
        Just("::1".to_owned()),
        Just("[::1]".to_owned()),
        Just("broker.example".to_owned()),
        Just("127.0.0.1:28883".to_owned()),
        Just("mqtt://u:p@h".to_owned()),
        nasty_text(),
    ]
}

prop_compose! {
    fn any_row()(
        name in nasty_text(),
        host in host(),
        port in prop_oneof![Just(1883), any::<i32>()],
        protocol in prop_oneof![Just("3.1.1".to_owned()), Just("5".to_owned()), nasty_text()],
        keep_alive in proptest::option::of(prop_oneof![0..10i32, any::<i32>()]),
        user in proptest::option::of(nasty_text()),
        password in proptest::option::of(nasty_text()),
        prefix in proptest::option::of(nasty_text()),
        subscriptions in proptest::option::of(prop::collection::vec(nasty_text(), 0..4)),
        clean in proptest::option::of(any::<bool>()),
    ) -> store::ConnectionRow {
        let mut r = row(1, &name);
        r.broker_host = host;
        r.broker_port = port;
        r.protocol = protocol;
        r.keep_alive_secs = keep_alive;
        r.username = user;
        r.password = password;
        r.topic_prefix = prefix;
        r.subscriptions = subscriptions;
        r.clean_session = clean;
        r
    }
}

fn any_settings() -> impl Strategy<Value = Settings> {
    (
        prop_oneof![Just(1_024u64), Just(4_096), Just(1 << 20)],
        any::<bool>(),
        prop_oneof![Just("{prefix}/backend/status"), Just("{name}/s/{prefix}")],
    )
        .prop_map(|(max, lwt, topic)| {
            let mut s = settings();
            s.max_packet_size = settings::ByteSize(max);
            s.lwt_enabled = lwt;
            s.status_topic = topic.to_owned();
            s
        })
}

/// Encodes the CONNECT and checks it decodes to what the spec says.
fn connect_round_trips(spec: &ConnectionSpec) {
    let mut buf = BytesMut::new();
    let limit = spec.max_packet_size as usize;
    match packets::connect(spec) {
        ConnectPacket::V4(c) => {
            let n = c.write(&mut buf).expect("CONNECT encodes");
            assert_eq!(n, c.size());
            assert!(n <= limit, "{n} > {limit}");
            match rumqttc::Packet::read(&mut buf, limit).expect("CONNECT decodes") {
                rumqttc::Packet::Connect(back) => {
                    assert_eq!(back.client_id, spec.client_id);
                    assert_eq!(back.last_will.map(|w| w.topic), spec.status_topic);
                    assert_eq!(back.login.map(|l| l.username), spec.username.clone());
                }
                other => panic!("decoded {other:?}"),
            }
        }
        ConnectPacket::V5(c) => {
            let n = c
                .connect
                .write(&c.will, &c.login, &mut buf)
                .expect("CONNECT encodes");
            assert!(n <= limit, "{n} > {limit}");
            match m5::v5::Packet::read(&mut buf, Some(spec.max_packet_size)) {
                Ok(m5::v5::Packet::Connect(back, will, login)) => {
                    assert_eq!(back.client_id, spec.client_id);
                    let will_topic = will.map(|w| String::from_utf8(w.topic.to_vec()).unwrap());
                    assert_eq!(will_topic, spec.status_topic);
                    assert_eq!(login.map(|l| l.username), spec.username.clone());
                }
                other => panic!("decoded {other:?}"),
            }
        }
    }
}

/// Encodes the SUBSCRIBE and checks it decodes to the same filters.
fn subscribe_round_trips(spec: &ConnectionSpec) {
    let mut buf = BytesMut::new();
    let limit = spec.max_packet_size as usize;
    match packets::subscribe(spec) {
        SubscribePacket::V4(mut s) => {
            s.pkid = 1;
            let n = s.write(&mut buf).expect("SUBSCRIBE encodes");
            assert!(n <= limit);
            match rumqttc::Packet::read(&mut buf, limit).expect("SUBSCRIBE decodes") {
                rumqttc::Packet::Subscribe(back) => {
                    let paths: Vec<String> = back.filters.into_iter().map(|f| f.path).collect();
                    assert_eq!(paths, spec.subscriptions);
                }
                other => panic!("decoded {other:?}"),
            }
        }
        SubscribePacket::V5(mut s) => {
            s.pkid = 1;
            let n = s.write(&mut buf).expect("SUBSCRIBE encodes");
            assert!(n <= limit);
            match m5::v5::Packet::read(&mut buf, Some(spec.max_packet_size)) {
                Ok(m5::v5::Packet::Subscribe(back)) => {
                    let paths: Vec<String> = back.filters.into_iter().map(|f| f.path).collect();
                    assert_eq!(paths, spec.subscriptions);
                }
                other => panic!("decoded {other:?}"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn validation_never_panics_and_accepted_rows_encode(r in any_row(), s in any_settings()) {
        let Ok(spec) = ConnectionSpec::from_row(&r, &s) else {
            return Ok(());
        };
        // rumqttc builds the client without panicking (keep-alive, client ID).
        crate::link::Link::new(&spec).expect("link builds");
        prop_assert!(crate::topic::forbidden_char(&spec.client_id).is_none());
        connect_round_trips(&spec);
        if !spec.subscriptions.is_empty() {
            subscribe_round_trips(&spec);
        }
    }

    #[test]
    fn messages_never_quote_credentials_or_the_host(
        which in 0..3u8,
        junk in nasty_text(),
        canary in "[A-Z]{12}",
    ) {
        let mut r = row(1, "site_1");
        r.username = Some("user".to_owned());
        match which {
            0 => r.password = Some(format!("{canary}{junk}\n")),
            1 => r.username = Some(format!("{canary}{junk}\t")),
            _ => r.broker_host = format!("{junk}{canary}{junk}"),
        }
        if let Err(e) = ConnectionSpec::from_row(&r, &settings()) {
            prop_assert!(!e.to_string().contains(&canary), "{}", e);
        }
    }
}
