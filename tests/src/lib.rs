//! Test kit for mqtt-supervisor: a private Mosquitto per test ([`Broker`]),
//! a foreign MQTT client that records what the broker really delivered
//! ([`Observer`]), the real binary as a child process ([`App`]) or under
//! supervisord with the repository's conf ([`Supervisord`]), a private
//! TLS-only PostgreSQL ([`TlsPostgres`]), and database helpers for a
//! per-test database (`#[sqlx::test]`).
//!
//! For hostile-input tests: a scriptable fake MQTT broker ([`FakeBroker`]),
//! a TCP proxy in front of Postgres that can black-hole or cut the database
//! for one process ([`DbProxy`]), and a held table lock ([`hold_lock`]).
//!
//! Everything talks to loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;
mod broker;
mod db;
mod db_proxy;
mod fake_broker;
mod observer;
pub mod pg_tls;
mod supervisord;
mod table_lock;

pub use app::{App, binary_path, http_get, pump_output};
pub use broker::Broker;
pub use db::{Row, database_url, insert, state, wait_status};
pub use db_proxy::DbProxy;
pub use fake_broker::{
    ConnEnd, ConnRecord, FakeBroker, MAX_REMAINING, PacketKind, ReceivedPublish, Step,
};
pub use observer::{Foreign, Observer};
pub use pg_tls::TlsPostgres;
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
