//! Test kit for mqtt-supervisor: a private Mosquitto per test ([`Broker`]),
//! a foreign MQTT client that records what the broker really delivered
//! ([`Observer`]), one that takes a client ID, once or back whenever it is
//! kicked ([`Foreign`]), the real binary as a child process ([`App`]) or under
//! supervisord with the repository's conf ([`Supervisord`]), a private
//! TLS-only PostgreSQL ([`TlsPostgres`]), a private RabbitMQ node with the
//! MQTT plugin ([`RabbitMq`], a second broker implementation), and database
//! helpers for a per-test database (`#[sqlx::test]`).
//!
//! For hostile-input tests: a scriptable fake MQTT broker ([`FakeBroker`]),
//! a TCP proxy in front of Postgres that can black-hole or cut the database
//! for one process ([`DbProxy`]), and a held table lock ([`hold_lock`]).
//!
//! Other brokers, to check what the service assumes about MQTT beyond
//! Mosquitto: [`Amqtt`] (Python, MQTT 3.1.1, from the virtual environment
//! `scripts/deps.sh` creates) and [`Rumqttd`] (Rust, in-process, an MQTT 5
//! and a 3.1.1 listener). Their `facts` test modules pin down how each
//! behaves on takeover, Wills, retained messages, refusals and ACLs.
//!
//! The broker matrix: [`AnyBroker`] starts any of the four with the same
//! users and topic ACL, and [`QUIRKS`] says how each behaves where brokers
//! differ (docs/brokers.md repeats it).
//!
//! For replicas: several processes of one instance ([`Replicas`]: start,
//! add, SIGKILL, SIGSTOP/SIGCONT, health and shares) and the broker's log as
//! the judge of who held a client ID when ([`BrokerLog`]: connects,
//! disconnects, takeovers, with the windows a frozen replica is excused
//! for). The API as a client: [`Api`].
//!
//! Everything talks to loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod amqtt;
mod any_broker;
mod api;
mod app;
mod broker;
mod broker_log;
mod db;
mod db_proxy;
mod fake_broker;
mod observer;
pub mod pg_tls;
#[cfg(test)]
mod probe;
mod quirks;
mod rabbitmq;
mod replicas;
mod rumqttd;
mod supervisord;
mod table_lock;

pub use amqtt::{AMQTT_VERSION, Amqtt, AmqttUser};
pub use any_broker::{AnyBroker, DENIED_FILTER, LIMITED, LIMITED_PREFIX, SITE};
pub use api::Api;
pub use app::{App, binary_path, http_get, pump_output};
pub use broker::Broker;
pub use broker_log::{BrokerLog, Frozen, Happening, LogEvent, Takeover};
pub use db::{Row, database_url, insert, state, wait_error, wait_status};
pub use db_proxy::DbProxy;
pub use fake_broker::{
    ConnEnd, ConnRecord, FakeBroker, MAX_REMAINING, PacketKind, ReceivedPublish, Step,
};
pub use observer::{Foreign, Observer};
pub use pg_tls::TlsPostgres;
pub use quirks::{BrokerKind, OnBadPassword, OnDeniedSubscribe, OnTakeover, QUIRKS, Quirks};
pub use rabbitmq::RabbitMq;
pub use replicas::{Life, Replicas, THAW_GRACE, insert_sites, ports_of, tail};
pub use rumqttd::Rumqttd;
pub use supervisord::{PROGRAM, Supervisord, repo_root};
pub use table_lock::{TableLock, hold_lock};

use std::future::Future;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes;
/// returns whether it became true.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
