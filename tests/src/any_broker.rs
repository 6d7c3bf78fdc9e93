//! Any broker of the matrix, started the same way: two users and one topic
//! ACL, so the same scenarios run against each.
//!
//! - [`SITE`] may do anything;
//! - [`LIMITED`] may publish and subscribe under `acl/` only, so its
//!   SUBSCRIBE to [`DENIED_FILTER`] is refused (where the broker has ACLs:
//!   see [`crate::Quirks`]).

use crate::amqtt::AmqttUser;
use crate::quirks::BrokerKind;
use crate::{Amqtt, Broker, RabbitMq, Rumqttd};

/// The user that may do anything, and its password.
pub const SITE: (&str, &str) = ("site", "site-pass");
/// The user limited to `acl/…`, and its password.
pub const LIMITED: (&str, &str) = ("limited", "limited-pass");
/// The prefix [`LIMITED`] may use.
pub const LIMITED_PREFIX: &str = "acl";
/// A filter [`LIMITED`] may not subscribe to.
pub const DENIED_FILTER: &str = "secret/#";

/// A running broker of any kind.
pub enum AnyBroker {
    /// A private Mosquitto.
    Mosquitto(Broker),
    /// A private RabbitMQ node.
    RabbitMq(RabbitMq),
    /// rumqttd in this process.
    Rumqttd(Rumqttd),
    /// A private amqtt.
    Amqtt(Amqtt),
}

impl AnyBroker {
    /// Starts a broker of `kind` with the users and ACL above.
    pub async fn start(kind: BrokerKind) -> AnyBroker {
        match kind {
            BrokerKind::Mosquitto => AnyBroker::Mosquitto(start_mosquitto().await),
            BrokerKind::RabbitMq => AnyBroker::RabbitMq(start_rabbitmq().await),
            BrokerKind::Rumqttd => {
                AnyBroker::Rumqttd(Rumqttd::start_with_users(&[SITE, LIMITED]).await)
            }
            BrokerKind::Amqtt => AnyBroker::Amqtt(start_amqtt().await),
        }
    }

    /// The port for rows with `protocol` (`3.1.1` or `5`).
    pub fn port(&self, protocol: &str) -> u16 {
        match self {
            AnyBroker::Mosquitto(b) => b.port(),
            AnyBroker::RabbitMq(b) => b.mqtt_port(),
            AnyBroker::Rumqttd(b) if protocol == "5" => b.port_v5(),
            AnyBroker::Rumqttd(b) => b.port_v4(),
            AnyBroker::Amqtt(b) => b.port(),
        }
    }

    /// The port for the kit's MQTT 3.1.1 clients ([`crate::Observer`],
    /// [`crate::Foreign`]).
    pub fn client_port(&self) -> u16 {
        self.port("3.1.1")
    }

    /// The broker's log, for failure messages.
    pub fn log(&self) -> String {
        match self {
            AnyBroker::Mosquitto(b) => b.log(),
            AnyBroker::RabbitMq(b) => b.log(),
            AnyBroker::Rumqttd(_) => "(rumqttd runs in the test process; no log)".to_owned(),
            AnyBroker::Amqtt(b) => b.log(),
        }
    }
}

async fn start_mosquitto() -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    for (i, (user, password)) in [SITE, LIMITED].into_iter().enumerate() {
        let mut cmd = std::process::Command::new("mosquitto_passwd");
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let ok = cmd.arg(&passwd).args([user, password]).status().unwrap();
        assert!(ok.success(), "mosquitto_passwd failed");
    }
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        format!(
            "user {site}\ntopic readwrite #\n\nuser {limited}\ntopic readwrite {LIMITED_PREFIX}/#\n",
            site = SITE.0,
            limited = LIMITED.0
        ),
    )
    .unwrap();
    let extra = format!(
        "allow_anonymous false\npassword_file {}\nacl_file {}\n",
        passwd.display(),
        acl.display()
    );
    Broker::start_in_dir(dir, &extra).await
}

async fn start_rabbitmq() -> RabbitMq {
    let node = RabbitMq::start().await;
    node.add_user(SITE.0, SITE.1).await;
    node.add_user(LIMITED.0, LIMITED.1).await;
    let own = format!("^{}\\.", LIMITED_PREFIX);
    node.set_topic_permissions(LIMITED.0, &own, &own).await;
    node
}

async fn start_amqtt() -> Amqtt {
    let own = format!("{LIMITED_PREFIX}/#");
    Amqtt::start_with_users(&[
        AmqttUser {
            user: SITE.0,
            password: SITE.1,
            subscribe: &["#"],
            publish: &["#"],
        },
        AmqttUser {
            user: LIMITED.0,
            password: LIMITED.1,
            subscribe: &[&own],
            publish: &[&own],
        },
    ])
    .await
}
