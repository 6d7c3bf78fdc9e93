//! A private rumqttd (the Rust broker, as a library) in this process: one
//! router, an MQTT 5 listener and an MQTT 3.1.1 listener, each on a free
//! 127.0.0.1 port.
//!
//! rumqttd's own `Broker::start` blocks forever and has no way to stop, so
//! the kit builds the same pieces itself: the router (`Router::spawn`, a
//! std thread) and one `Server` per protocol, each on its own std thread
//! with a current-thread runtime, as `Broker::start` does. Dropping a
//! [`Rumqttd`] stops both servers and drops their runtimes, which closes
//! the listeners and every client connection (a TCP close, no DISCONNECT).
//! The router thread cannot be ended (it keeps a sender to its own
//! channel): it stays parked, idle, until the process ends, which under
//! nextest (one process per test) is the end of the test.
//!
//! rumqttd logs through `tracing`; the kit installs no subscriber, so it
//! is silent unless a test installs one. Its `allow-duplicate-clientid`
//! feature stays off: a second CONNECT with a client ID takes over.
//!
//! `facts.rs` checks how it behaves (takeover, Will, retained messages,
//! refusals). One race it has is not pinned by a test: after a clean
//! DISCONNECT the connection's task sends the router a second, late
//! disconnect for its connection slot, and a client that connected in
//! between and reused the slot is dropped before its CONNACK (seen in about
//! 1 run in 20 of a test that disconnected and reconnected at once).

#[cfg(test)]
mod facts;

use ::rumqttd::protocol::{v4::V4, v5::V5};
use ::rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// A running in-process rumqttd; dropping it stops its listeners.
pub struct Rumqttd {
    port_v4: u16,
    port_v5: u16,
    servers: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Rumqttd {
    /// Anonymous access.
    pub async fn start() -> Rumqttd {
        Rumqttd::start_with(None).await
    }

    /// One user with a password; a client without them, or with a wrong
    /// password, is disconnected without a CONNACK.
    pub async fn start_with_user(user: &str, password: &str) -> Rumqttd {
        Rumqttd::start_with(Some(HashMap::from([(
            user.to_owned(),
            password.to_owned(),
        )])))
        .await
    }

    /// Several users with passwords (see [`Rumqttd::start_with_user`]).
    pub async fn start_with_users(users: &[(&str, &str)]) -> Rumqttd {
        Rumqttd::start_with(Some(
            users
                .iter()
                .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
                .collect(),
        ))
        .await
    }

    async fn start_with(auth: Option<HashMap<String, String>>) -> Rumqttd {
        let router = Router::new(0, router_config()).spawn();
        let (port_v4, port_v5) = (crate::free_port(), crate::free_port());
        let v4 = server_settings("v4", port_v4, auth.clone());
        let v5 = server_settings("v5", port_v5, auth);
        let servers = vec![
            spawn_server(Server::new(v4, router.clone(), V4)),
            spawn_server(Server::new(v5, router, V5)),
        ];
        let broker = Rumqttd {
            port_v4,
            port_v5,
            servers,
        };
        for port in [port_v4, port_v5] {
            let up = crate::eventually(Duration::from_secs(10), || async {
                let ended = broker
                    .servers
                    .iter()
                    .any(|(_, thread)| thread.is_finished());
                assert!(!ended, "a rumqttd server ended (port {port} taken?)");
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            })
            .await;
            assert!(up, "rumqttd did not listen on 127.0.0.1:{port}");
        }
        broker
    }

    /// The MQTT 5 listener's port on 127.0.0.1.
    pub fn port_v5(&self) -> u16 {
        self.port_v5
    }

    /// The MQTT 3.1.1 listener's port on 127.0.0.1.
    pub fn port_v4(&self) -> u16 {
        self.port_v4
    }
}

impl Drop for Rumqttd {
    fn drop(&mut self) {
        for (stop, thread) in self.servers.drain(..) {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

/// rumqttd's sample config (`rumqttd.toml`), minus the prometheus exporter.
fn router_config() -> RouterConfig {
    RouterConfig {
        max_connections: 1000,
        max_outgoing_packet_count: 200,
        max_segment_size: 10 * 1024 * 1024,
        max_segment_count: 10,
        ..RouterConfig::default()
    }
}

fn server_settings(name: &str, port: u16, auth: Option<HashMap<String, String>>) -> ServerSettings {
    ServerSettings {
        name: name.to_owned(),
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 1024 * 1024,
            max_inflight_count: 100,
            auth,
            external_auth: None,
            dynamic_filters: true,
        },
    }
}

/// Runs `server` on its own thread and current-thread runtime until the
/// returned sender fires (or is dropped); the runtime, and with it every
/// connection task, is dropped when the thread ends.
fn spawn_server<P>(mut server: Server<P>) -> (oneshot::Sender<()>, JoinHandle<()>)
where
    P: ::rumqttd::protocol::Protocol + Clone + Send + 'static,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("rumqttd-server".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                tokio::select! {
                    ended = server.start(LinkType::Remote) => {
                        panic!("rumqttd server ended: {ended:?}")
                    }
                    _ = stopped => {}
                }
            });
        })
        .unwrap();
    (stop, thread)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Options, Probe};

    /// One broker: clients of both listeners connect, a retained message
    /// published over MQTT 5 reaches a later 3.1.1 subscriber and a later
    /// MQTT 5 one, with the retain flag.
    #[tokio::test]
    async fn rumqttd_smoke_connect_and_retained() {
        let broker = Rumqttd::start().await;
        let publisher = Probe::v5(broker.port_v5(), "smoke-pub", Options::default()).await;
        assert!(publisher.accepted(), "{:?}", publisher.seen());
        publisher.publish("smoke/status", "online", true).await;
        let acked = crate::eventually(Duration::from_secs(5), || async {
            publisher.pubacks() == 1
        });
        assert!(acked.await);

        let v4 = Probe::v4(broker.port_v4(), "smoke-sub4", Options::default()).await;
        assert_eq!(v4.subscribe("smoke/status").await, ["Success(AtLeastOnce)"]);
        let got = v4
            .wait_received("smoke/status", Duration::from_secs(5))
            .await;
        assert_eq!(got, [("online".to_owned(), true)]);

        let v5 = Probe::v5(broker.port_v5(), "smoke-sub5", Options::default()).await;
        assert_eq!(v5.subscribe("smoke/status").await, ["Success(AtLeastOnce)"]);
        let got = v5
            .wait_received("smoke/status", Duration::from_secs(5))
            .await;
        assert_eq!(got, [("online".to_owned(), true)]);
    }

    /// Dropping the broker closes its listeners and its clients.
    #[tokio::test]
    async fn rumqttd_drop_closes_listeners_and_clients() {
        let broker = Rumqttd::start().await;
        let port = broker.port_v5();
        let client = Probe::v5(port, "dropped", Options::default()).await;
        assert!(client.accepted());
        drop(broker);
        assert!(client.wait_closed(Duration::from_secs(5)).await.is_some());
        let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
        assert!(refused.is_err(), "port {port} still accepts");
    }
}
