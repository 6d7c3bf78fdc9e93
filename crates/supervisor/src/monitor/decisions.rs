//! Every start, stop and restart the monitor decides is logged with its
//! reason: a row disabled, deleted or now invalid, which settings changed.

use super::Monitor;
use crate::plan::Plan;
use crate::spec::ConnectionSpec;
use std::collections::HashMap;
use std::sync::Arc;

impl Monitor {
    /// Logs `plan` before it is applied; `running` holds the specs it
    /// replaces.
    pub(super) fn log_plan(&self, plan: &Plan, running: &HashMap<i64, Arc<ConnectionSpec>>) {
        // Every decision is logged with its reason. The first reconcile
        // starts every row: one line for all of them, each at debug level.
        let first = self.loads <= 1;
        for id in &plan.stop {
            if let Some(actor) = self.actors.get(id) {
                let spec = actor.handle.spec();
                let reason = self.stop_reason(*id);
                tracing::info!(
                    connection = %spec.name, client_id = %spec.client_id, reason,
                    "Stopping the connection: {reason}."
                );
            }
        }
        for spec in &plan.restart {
            let changed = running
                .get(&spec.id)
                .map(|old| spec.changes_from(old).join(", "))
                .unwrap_or_default();
            tracing::info!(
                connection = %spec.name, client_id = %spec.client_id, changed = %changed,
                "Configuration changed ({changed}); reconnecting."
            );
        }
        for spec in &plan.start {
            let revived = self.revive_at.contains_key(&spec.id);
            if first {
                tracing::debug!(connection = %spec.name, client_id = %spec.client_id, "Starting the connection.");
            } else if revived {
                tracing::info!(connection = %spec.name, client_id = %spec.client_id, "Starting the connection again after its actor died.");
            } else {
                tracing::info!(
                    connection = %spec.name, client_id = %spec.client_id, broker = %spec.broker(),
                    "Starting the connection: new or enabled row."
                );
            }
        }
        if first && !plan.start.is_empty() {
            tracing::info!(
                connections = plan.start.len(),
                "Starting {} connection(s).",
                plan.start.len()
            );
        }
    }

    /// Why a running row is no longer wanted, in words.
    pub(super) fn stop_reason(&self, id: i64) -> String {
        if self.disabled.contains(&id) {
            return "row disabled".to_owned();
        }
        if self.held.contains_key(&id) {
            return "disconnected through the API".to_owned();
        }
        match self
            .desired
            .iter()
            .find_map(|r| r.as_ref().err().filter(|e| e.id == id))
        {
            Some(invalid) => format!("row is now invalid ({})", invalid.reason),
            None => "row deleted".to_owned(),
        }
    }
}
