//! Rows that fail validation: recorded `error` with the reason once per
//! reason (a fixed row is forgotten), shown to readers with a fixed state.

use super::{Invalid, Monitor};
use crate::state::ConnectionState;
use crate::untrusted::clean;
use tokio::sync::watch;

impl Monitor {
    /// Records invalid rows (once per reason) and forgets fixed ones.
    pub(super) fn refresh_invalid(&mut self) {
        let mut seen = Vec::new();
        for row in self.desired.iter().filter_map(|r| r.as_ref().err()) {
            seen.push(row.id);
            let unchanged = self
                .invalid
                .get(&row.id)
                .is_some_and(|known| known.row == *row);
            if unchanged {
                continue;
            }
            let reason = row.to_string();
            tracing::error!(
                connection = %clean(&row.name), client_id = %row.client_id, error = %row.reason,
                "Connection row is invalid; it stays down until the row is fixed."
            );
            let state = ConnectionState::invalid(&reason);
            self.recorder
                .record(row.id, &row.name, &row.client_id, &state);
            let (_tx, rx) = watch::channel(state);
            self.invalid.insert(
                row.id,
                Invalid {
                    row: row.clone(),
                    state: rx,
                },
            );
        }
        self.invalid.retain(|id, _| seen.contains(id));
    }
}
