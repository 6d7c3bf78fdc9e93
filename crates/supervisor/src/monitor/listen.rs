//! The LISTEN task: wakes the monitor on `mqtt_connections_changed`, and
//! after every (re)connection, since notifications sent while it was away
//! are lost.

use crate::backoff::Backoff;
use std::sync::Arc;
use std::time::Duration;
use store::{Change, ChangeListener, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub(super) async fn run(pool: PgPool, wake: Arc<Notify>, token: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let mut lost = false;
    loop {
        let listener = match token
            .run_until_cancelled(ChangeListener::connect(&pool))
            .await
        {
            None => return,
            Some(Ok(listener)) => listener,
            Some(Err(e)) => {
                let delay = backoff.next_ceiling();
                if !lost {
                    tracing::warn!(error = %e, "Cannot LISTEN for connection changes; retrying in {} s (the periodic reconcile still runs).", delay.as_secs());
                    lost = true;
                }
                if token
                    .run_until_cancelled(tokio::time::sleep(delay))
                    .await
                    .is_none()
                {
                    return;
                }
                continue;
            }
        };
        if std::mem::take(&mut lost) {
            tracing::info!("Listening for connection changes again.");
        }
        // Reload after every LISTEN, the first one too: the monitor's first
        // load runs concurrently with this connect, and a change committed
        // between that load and LISTEN would otherwise wait a whole interval.
        wake.notify_one();
        backoff.reset();
        let mut listener = listener;
        loop {
            match token.run_until_cancelled(listener.recv()).await {
                None => return,
                Some(Ok(Change::Notified)) => wake.notify_one(),
                Some(Ok(Change::Lost)) => {
                    tracing::warn!("LISTEN connection lost; reconnecting.");
                    wake.notify_one();
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; reconnecting.");
                    lost = true;
                    let delay = backoff.next_ceiling();
                    if token
                        .run_until_cancelled(tokio::time::sleep(delay))
                        .await
                        .is_none()
                    {
                        return;
                    }
                    break;
                }
            }
        }
    }
}
