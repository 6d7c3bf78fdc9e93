//! SIGTERM and SIGINT: the first cancels the root token (graceful shutdown),
//! a second one exits at once.

use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM/SIGINT, noting the instant in
/// `received` first (the shutdown is timed from it); exits the process with
/// code 1 on a second one. Runs until the second signal.
pub async fn watch(
    token: CancellationToken,
    received: Arc<OnceLock<Instant>>,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let first = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        () = token.cancelled() => return Ok(()),
    };
    let _ = received.set(Instant::now());
    tracing::info!(signal = first, "Shutting down: closing every connection.");
    token.cancel();
    let second = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::warn!(signal = second, "Second signal; exiting at once.");
    std::process::exit(1);
}
