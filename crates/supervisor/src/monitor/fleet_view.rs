//! What readers see: the fleet snapshot the monitor publishes after every
//! change (health, later metrics and the dashboard read it).

use super::Monitor;
use crate::fleet::{ConnectionView, Fleet};
use crate::state::ConnectionState;
use std::sync::Arc;
use tokio::sync::watch;

impl Monitor {
    pub(super) fn publish_fleet(&self, running: bool) {
        let mut connections: Vec<ConnectionView> = self
            .actors
            .iter()
            .map(|(id, a)| {
                let spec = a.handle.spec();
                ConnectionView {
                    id: *id,
                    name: spec.name.clone(),
                    client_id: spec.client_id.clone(),
                    broker: Some(spec.broker()),
                    state: a.handle.state(),
                    counters: Some(a.handle.counters().clone()),
                    held: false,
                }
            })
            .chain(self.invalid.values().map(|inv| ConnectionView {
                id: inv.row.id,
                name: inv.row.name.clone(),
                client_id: inv.row.client_id.clone(),
                broker: inv.row.broker.clone(),
                state: inv.state.clone(),
                counters: None,
                held: false,
            }))
            .chain(self.held.iter().map(|(id, held)| ConnectionView {
                id: *id,
                name: held.spec.name.clone(),
                client_id: held.spec.client_id.clone(),
                broker: Some(held.spec.broker()),
                state: held.state.clone(),
                counters: self.counters.get(id).cloned(),
                held: true,
            }))
            .collect();
        // Crashed actors waiting for revival still count as enabled, down.
        for id in self.revive_at.keys() {
            if !self.actors.contains_key(id)
                && let Some(Ok(spec)) = self
                    .desired
                    .iter()
                    .find(|r| r.as_ref().is_ok_and(|s| s.id == *id))
            {
                let (_tx, rx) = watch::channel(ConnectionState::invalid("actor died; restarting"));
                connections.push(ConnectionView {
                    id: *id,
                    name: spec.name.clone(),
                    client_id: spec.client_id.clone(),
                    broker: Some(spec.broker()),
                    state: rx,
                    counters: self.counters.get(id).cloned(),
                    held: false,
                });
            }
        }
        connections.sort_by_key(|c| c.id);
        self.fleet.send_replace(Arc::new(Fleet {
            running,
            total_rows: self.counts.0,
            enabled_rows: self.counts.1,
            connections,
            closing: self.stopping.keys().copied().collect(),
        }));
    }
}
