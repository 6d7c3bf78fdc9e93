//! The end of the monitor: every actor says goodbye in parallel until the
//! shutdown deadline (less the final-write reserve); the rest is aborted and
//! recorded `stopped`, so no row stays `connected` after exit.

use super::{Monitor, ShutdownReport};
use crate::state::Status;
use tokio::time::Instant;

impl Monitor {
    pub(super) async fn shut_down(mut self) -> ShutdownReport {
        let began = Instant::now();
        self.publish_fleet(false);
        let closing: usize = self.stopping.values().map(Vec::len).sum();
        let connections = self.actors.len() + closing;
        let until = self.shutdown.deadline_less(self.reserve);
        let tasks = &mut self.tasks;
        let drained =
            tokio::time::timeout_at(until, async { while tasks.join_next().await.is_some() {} })
                .await;
        let mut abandoned = 0;
        if drained.is_err() {
            // Their rows must not stay `connected` after we exit.
            let all = self.actors.values().chain(self.stopping.values().flatten());
            for actor in all.filter(|a| !a.handle.is_stopped()) {
                abandoned += 1;
                let spec = actor.handle.spec();
                let mut state = actor.handle.state().borrow().clone();
                state.status = Status::Stopped;
                state.detail =
                    "stopped at the shutdown deadline without a clean DISCONNECT; the broker publishes the Will".to_owned();
                state.connected_since = None;
                state.cooldown_until = None;
                self.recorder
                    .record(spec.id, &spec.name, &spec.client_id, &state);
            }
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        ShutdownReport {
            connections,
            abandoned,
            elapsed: began.elapsed(),
        }
    }
}
