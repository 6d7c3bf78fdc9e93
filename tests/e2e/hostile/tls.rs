//! A TLS handshake the peer cuts (it accepts and closes) is a network
//! failure, retried with backoff; before the hardening every failure during
//! the handshake was a lasting TLS error, retried only after a minute. A
//! peer that answers the handshake with bytes that are not TLS is a real
//! TLS failure and stays a lasting `error`.

use mqtt_supervisor_tests::{App, Row, database_url, insert, state, wait_status};
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A listener on 127.0.0.1 that hangs up on every connection at once, or
/// answers it with `garbage` and keeps it open; counts the accepts.
struct Peer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Peer {
    async fn start(garbage: Option<&'static [u8]>) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                match garbage {
                    // Answers, then keeps the socket open.
                    Some(bytes) => {
                        let _ = socket.write_all(bytes).await;
                        held.push(socket);
                    }
                    // Hangs up at once.
                    None => drop(socket),
                }
            }
        });
        Peer {
            port,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn cut_tls_handshake_is_retried_garbage_is_a_tls_error(pool: PgPool) {
    let cutter = Peer::start(None).await;
    let babbler = Peer::start(Some(b"MQTT here, no TLS spoken\r\n")).await;
    let tls_row = |name: &str, port: u16| Row {
        use_tls: true,
        ..Row::new(name, port)
    };
    let cut = insert(&pool, &tls_row("site_cut", cutter.port)).await;
    let garbage = insert(&pool, &tls_row("site_garbage", babbler.port)).await;
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;

    assert!(
        wait_status(&pool, cut, "disconnected", Duration::from_secs(10)).await,
        "{:?}\n{}",
        state(&pool, cut).await,
        app.output()
    );
    let (_, detail, last_error) = state(&pool, cut).await.unwrap();
    let last_error = last_error.unwrap_or_default();
    eprintln!("TLS handshake cut by the peer: {last_error}");
    assert!(!last_error.starts_with("TLS"), "{last_error:?}");
    assert!(detail.contains("retrying in"), "{detail}");
    // Retried with backoff (1 s, then 2 s ceilings), not after a minute.
    assert!(
        mqtt_supervisor_tests::eventually(Duration::from_secs(10), || async {
            cutter.accepted() >= 3
        })
        .await,
        "{} attempt(s) in 10 s: treated as lasting\n{}",
        cutter.accepted(),
        app.output()
    );
    assert_ne!(state(&pool, cut).await.unwrap().0, "error");

    assert!(
        wait_status(&pool, garbage, "error", Duration::from_secs(10)).await,
        "{:?}\n{}",
        state(&pool, garbage).await,
        app.output()
    );
    let (_, _, last_error) = state(&pool, garbage).await.unwrap();
    let last_error = last_error.unwrap_or_default();
    eprintln!("TLS handshake answered with plain text: {last_error}");
    assert!(last_error.starts_with("TLS"), "{last_error:?}");
    assert_eq!(babbler.accepted(), 1, "a lasting error waits a minute");

    let out = app.output();
    let lasting: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("TLS handshake with the broker failed"))
        .collect();
    assert!(
        lasting.len() == 1 && lasting[0].contains(&format!(":{}", babbler.port)),
        "only the garbage row is a TLS failure: {lasting:?}"
    );
}
