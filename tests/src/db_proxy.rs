//! A TCP proxy on 127.0.0.1 in front of Postgres, so a test can take the
//! database away from one service process without touching the shared
//! server: [`DbProxy::freeze`] black-holes it (every socket stays open,
//! nothing moves, new connections are not answered), [`DbProxy::cut`]
//! closes every connection and refuses new ones.
//!
//! The proxy is a handle and a task: the handle sends a mode change with a
//! reply channel and returns once the task applied it, so a test's next
//! line already sees the new behaviour. Each proxied connection is two
//! pumps that wait for the `Open` mode before every read and every write.
//! Dropping the handle aborts the task, which aborts every connection.

use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// What the proxy does with bytes and new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Open,
    Frozen,
    Cut,
}

/// A mode change, answered with whether the proxy listens afterwards.
type Command = (Mode, oneshot::Sender<bool>);

/// A running proxy; dropping it closes every socket.
pub struct DbProxy {
    port: u16,
    commands: mpsc::Sender<Command>,
    open: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl DbProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> DbProxy {
        let listener = listen(0).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let (commands, rx) = mpsc::channel(4);
        let open = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(serve(listener, upstream, rx, open.clone()));
        DbProxy {
            port,
            commands,
            open,
            task,
        }
    }

    /// In front of the server the pool connects to (host and port of its
    /// connect options).
    pub async fn start_for(pool: &PgPool) -> DbProxy {
        let options = pool.connect_options();
        let upstream = tokio::net::lookup_host((options.get_host(), options.get_port()))
            .await
            .unwrap()
            .next()
            .expect("the pool's host resolves");
        DbProxy::start(upstream).await
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `postgres://` URL for the pool's database through the proxy, with
    /// the pool's user and no password (the local server trusts loopback).
    pub fn url_for(&self, pool: &PgPool) -> String {
        let options = pool.connect_options();
        let database = options
            .get_database()
            .expect("sqlx::test pools name their database");
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            percent_encode(options.get_username()),
            self.port,
            percent_encode(database)
        )
    }

    /// Connections open through the proxy right now.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Black-holes the database: no byte moves in either direction and new
    /// connections are not accepted (the kernel still completes their
    /// handshake, so they hang), but every socket stays open.
    pub async fn freeze(&self) {
        self.set(Mode::Frozen).await;
    }

    /// Forwards again after [`DbProxy::freeze`] (held bytes are delivered).
    pub async fn thaw(&self) {
        self.set(Mode::Open).await;
    }

    /// Closes every current connection and stops listening: new connections
    /// are refused until [`DbProxy::restore`].
    pub async fn cut(&self) {
        self.set(Mode::Cut).await;
    }

    /// Listens again on the same port after [`DbProxy::cut`].
    pub async fn restore(&self) {
        self.set(Mode::Open).await;
    }

    async fn set(&self, mode: Mode) {
        let (reply, applied) = oneshot::channel();
        self.commands.send((mode, reply)).await.unwrap();
        let listening = applied.await.unwrap();
        assert_eq!(
            listening,
            mode != Mode::Cut,
            "the proxy could not listen on 127.0.0.1:{} again",
            self.port
        );
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener with SO_REUSEADDR, so [`DbProxy::restore`] can take the same
/// port again while old connections linger in TIME_WAIT.
fn listen(port: u16) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(128)
}

async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    mut commands: mpsc::Receiver<Command>,
    open: Arc<AtomicUsize>,
) {
    let port = listener.local_addr().unwrap().port();
    let mut listener = Some(listener);
    let (mode, _) = watch::channel(Mode::Open);
    let mut connections = JoinSet::new();
    loop {
        let accepting = listener.as_ref().filter(|_| *mode.borrow() == Mode::Open);
        tokio::select! {
            command = commands.recv() => {
                let Some((next, reply)) = command else { return };
                mode.send_replace(next);
                if next == Mode::Cut {
                    listener = None;
                    // Aborting the pumps drops their sockets: both sides see
                    // the connection close.
                    connections.shutdown().await;
                } else if listener.is_none() {
                    listener = listen(port).ok();
                }
                let _ = reply.send(listener.is_some());
            }
            accepted = accept(accepting) => {
                if let Ok((client, _)) = accepted {
                    let counted = Counted::new(&open);
                    connections.spawn(forward(client, upstream, mode.subscribe(), counted));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// One proxied connection; it ends when either side ends.
async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    _counted: Counted,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pump(client_read, server_write, mode.clone()) => {}
        () = pump(server_read, client_write, mode) => {}
    }
}

/// Copies one direction, waiting for `Open` before every read and write.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        if mode.wait_for(|m| *m == Mode::Open).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if mode.wait_for(|m| *m == Mode::Open).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Counts an open connection for as long as it lives (aborted or not).
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(open: &Arc<AtomicUsize>) -> Counted {
        open.fetch_add(1, Ordering::SeqCst);
        Counted(open.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
