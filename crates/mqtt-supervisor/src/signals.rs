//! SIGTERM and SIGINT: the first begins the graceful shutdown (its instant
//! starts the one deadline), a second one exits at once.

use supervisor::Shutdown;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

/// Begins `shutdown` on the first SIGTERM/SIGINT, as of the instant it
/// arrived; exits the process with code 1 on a second one. Runs until the
/// second signal (or until the shutdown began some other way).
pub async fn watch(shutdown: Shutdown) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let first = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        () = shutdown.token().cancelled() => "",
    };
    if first.is_empty() {
        // Begun by the service itself (it ended on its own): a signal now is
        // still a second one.
    } else {
        shutdown.begin_at(Instant::now());
        tracing::info!(signal = first, "Shutting down: closing every connection.");
    }
    let second = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::warn!(signal = second, "Second signal; exiting at once.");
    std::process::exit(1);
}
