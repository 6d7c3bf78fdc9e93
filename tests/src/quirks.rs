//! How each broker of the matrix behaves where brokers differ: one table
//! ([`QUIRKS`]) that the matrix test asserts, broker by broker, and that
//! docs/brokers.md repeats (a test compares the two), so the document and
//! the behaviour cannot drift apart.

/// The brokers the suite runs the service against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// Mosquitto 2.0, a private process per test.
    Mosquitto,
    /// RabbitMQ 3.10 with its MQTT plugin, a private node per test.
    RabbitMq,
    /// rumqttd 0.20, embedded in the test process.
    Rumqttd,
    /// amqtt 0.12 (Python), from a virtual environment.
    Amqtt,
}

/// What the broker does to the old connection when a client connects with
/// a client ID in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTakeover {
    /// Closes the old connection without a DISCONNECT (even to MQTT 5).
    ClosesSilently,
    /// Sends MQTT 5 DISCONNECT 0x8E (session taken over), then closes.
    Disconnect8E,
    /// Leaves the old connection open (and stops delivering to it).
    KeepsBoth,
}

/// What the broker answers to a wrong password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBadPassword {
    /// A CONNACK refusal; the service's words for its code.
    Refuses(&'static str),
    /// Closes the socket without a CONNACK.
    ClosesWithoutConnAck,
}

/// What the broker does with a SUBSCRIBE the user may not make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDeniedSubscribe {
    /// SUBACK with a failure code; the connection stays up.
    SubAckFailure,
    /// Granted, but messages the user may not read are never delivered.
    GrantedButWithheld,
    /// Closes the connection.
    Closes,
    /// The broker has no topic ACLs (not tested).
    NoAcl,
}

/// One broker's behaviour where brokers differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quirks {
    /// Which broker.
    pub kind: BrokerKind,
    /// Its name and version in docs/brokers.md.
    pub name: &'static str,
    /// The protocol the suite's rows use with it (`3.1.1` or `5`).
    pub protocol: &'static str,
    /// The old connection on a takeover.
    pub takeover: OnTakeover,
    /// The old connection's Will is published on a takeover.
    pub will_on_takeover: bool,
    /// The Will is published when a client's socket is dropped.
    pub will_on_crash: bool,
    /// A retained message is delivered to a new wildcard subscription
    /// (`prefix/#`), not only to an exact one.
    pub retained_to_wildcards: bool,
    /// Retained messages are also sent to clients whose filters do not
    /// match them (when another session's filter does).
    pub retained_leaks: bool,
    /// A wrong password.
    pub bad_password: OnBadPassword,
    /// A denied SUBSCRIBE.
    pub denied_subscribe: OnDeniedSubscribe,
}

/// The brokers of the matrix, as the suite finds them.
pub const QUIRKS: &[Quirks] = &[
    Quirks {
        kind: BrokerKind::Mosquitto,
        name: "Mosquitto 2.0",
        protocol: "5",
        takeover: OnTakeover::ClosesSilently,
        will_on_takeover: true,
        will_on_crash: true,
        retained_to_wildcards: true,
        retained_leaks: false,
        bad_password: OnBadPassword::Refuses("not authorised"),
        denied_subscribe: OnDeniedSubscribe::GrantedButWithheld,
    },
    Quirks {
        kind: BrokerKind::RabbitMq,
        name: "RabbitMQ 3.10 (MQTT plugin)",
        protocol: "3.1.1",
        takeover: OnTakeover::ClosesSilently,
        will_on_takeover: false,
        will_on_crash: true,
        retained_to_wildcards: false,
        retained_leaks: false,
        bad_password: OnBadPassword::Refuses("bad user name or password"),
        denied_subscribe: OnDeniedSubscribe::Closes,
    },
    Quirks {
        kind: BrokerKind::Rumqttd,
        name: "rumqttd 0.20",
        protocol: "5",
        takeover: OnTakeover::ClosesSilently,
        will_on_takeover: true,
        will_on_crash: true,
        retained_to_wildcards: true,
        retained_leaks: false,
        bad_password: OnBadPassword::ClosesWithoutConnAck,
        denied_subscribe: OnDeniedSubscribe::NoAcl,
    },
    Quirks {
        kind: BrokerKind::Amqtt,
        name: "amqtt 0.12",
        protocol: "3.1.1",
        takeover: OnTakeover::KeepsBoth,
        will_on_takeover: false,
        will_on_crash: true,
        retained_to_wildcards: true,
        retained_leaks: true,
        bad_password: OnBadPassword::Refuses("not authorised"),
        denied_subscribe: OnDeniedSubscribe::SubAckFailure,
    },
];

impl Quirks {
    /// The table's entry for `kind`.
    pub fn of(kind: BrokerKind) -> &'static Quirks {
        QUIRKS
            .iter()
            .find(|q| q.kind == kind)
            .expect("every broker kind has its row in QUIRKS")
    }

    /// The row of docs/brokers.md's table of tested brokers, cell by cell.
    pub fn cells(&self) -> Vec<String> {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
        vec![
            self.name.to_owned(),
            self.protocol.to_owned(),
            match self.takeover {
                OnTakeover::ClosesSilently => "closes the old connection, no DISCONNECT".into(),
                OnTakeover::Disconnect8E => "DISCONNECT 0x8E".into(),
                OnTakeover::KeepsBoth => "keeps both connections open".into(),
            },
            yes_no(self.will_on_takeover),
            yes_no(self.will_on_crash),
            yes_no(self.retained_to_wildcards),
            yes_no(self.retained_leaks),
            match self.bad_password {
                OnBadPassword::Refuses(words) => format!("CONNACK refusal: {words}"),
                OnBadPassword::ClosesWithoutConnAck => "closes without CONNACK".into(),
            },
            match self.denied_subscribe {
                OnDeniedSubscribe::SubAckFailure => "SUBACK failure".into(),
                OnDeniedSubscribe::GrantedButWithheld => {
                    "granted; matching messages are not delivered".into()
                }
                OnDeniedSubscribe::Closes => "closes the connection".into(),
                OnDeniedSubscribe::NoAcl => "no topic ACLs".into(),
            },
        ]
    }
}
