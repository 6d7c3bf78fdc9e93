//! An actor that ends without being told to has crashed (a panic, or a
//! return it should never make): it is logged with the connection's
//! identity, recorded `disconnected`, and revived with a backoff that grows
//! with repeated crashes.

use super::{CRASH_MEMORY, Monitor};
use crate::backoff::Backoff;
use crate::state::Status;
use tokio::time::Instant;

impl Monitor {
    /// An actor task ended: expected after a stop, a crash otherwise.
    pub(super) fn on_exit(
        &mut self,
        joined: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
    ) {
        let (task, panic) = match &joined {
            Ok((task, ())) => (*task, None),
            Err(e) if e.is_panic() => (e.id(), Some(e.to_string())),
            Err(e) => (e.id(), None),
        };
        let Some(id) = self
            .actors
            .iter()
            .find(|(_, a)| a.abort.id() == task)
            .map(|(id, _)| *id)
        else {
            // A stopped or replaced actor finished closing.
            let mut closed = None;
            self.stopping.retain(|id, closing| {
                let before = closing.len();
                closing.retain(|a| a.abort.id() != task);
                if closing.len() < before {
                    closed = Some(*id);
                }
                !closing.is_empty()
            });
            // Its last word was `stopped`; a row held down through the API
            // says why in the state table too.
            if let Some(held) = closed.and_then(|id| self.held.get(&id)) {
                let spec = &held.spec;
                let state = held.state.borrow().clone();
                self.recorder
                    .record(spec.id, &spec.name, &spec.client_id, &state);
            }
            // Readers (the lease keeper) learn that it has closed.
            self.publish_fleet(true);
            return;
        };
        let Some(actor) = self.actors.remove(&id) else {
            return;
        };
        let spec = actor.handle.spec().clone();
        let (backoff, last) = self
            .crashes
            .entry(id)
            .or_insert_with(|| (Backoff::for_reconnects(), Instant::now()));
        if last.elapsed() > CRASH_MEMORY {
            backoff.reset();
        }
        *last = Instant::now();
        let delay = backoff.next_ceiling();
        self.revive_at.insert(id, Instant::now() + delay);
        let what = panic.unwrap_or_else(|| "ended unexpectedly".to_owned());
        tracing::error!(
            connection = %spec.name, client_id = %spec.client_id, error = %what,
            "Connection actor died; restarting in {} s.", delay.as_secs()
        );
        let mut state = actor.handle.state().borrow().clone();
        state.status = Status::Disconnected;
        state.detail = format!("actor died ({what}); restarting in {} s", delay.as_secs());
        state.last_error = Some(state.detail.clone());
        state.connected_since = None;
        self.recorder
            .record(spec.id, &spec.name, &spec.client_id, &state);
        self.publish_fleet(true);
    }
}
