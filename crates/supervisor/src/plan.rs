//! The reconcile diff: desired rows against running actors, as pure data.

use crate::spec::{ConnectionSpec, InvalidRow, RowError};
use crate::untrusted::clean;
use settings::Settings;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What to do to bring the running actors in line with the table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New rows (or dead actors to revive).
    pub start: Vec<ConnectionSpec>,
    /// Rows whose effective configuration changed: stop, then start.
    pub restart: Vec<ConnectionSpec>,
    /// Running actors whose row was disabled, deleted, or became invalid.
    pub stop: Vec<i64>,
}

/// Computes the plan. `desired` holds the enabled rows, validated;
/// `running` the specs of live actors; `may_start(id)` is false while a
/// crashed actor waits for its revive time; `held(id)` is true for rows
/// held down through the API (stopped, not started).
pub fn plan(
    desired: &[Result<ConnectionSpec, InvalidRow>],
    running: &HashMap<i64, Arc<ConnectionSpec>>,
    may_start: impl Fn(i64) -> bool,
    held: impl Fn(i64) -> bool,
) -> Plan {
    let mut out = Plan::default();
    let mut wanted = HashSet::new();
    for row in desired {
        match row {
            // Held down through the API: not wanted while held.
            Ok(spec) if held(spec.id) => {}
            Ok(spec) => {
                wanted.insert(spec.id);
                match running.get(&spec.id) {
                    Some(current) if **current == *spec => {}
                    Some(_) => out.restart.push(spec.clone()),
                    None if may_start(spec.id) => out.start.push(spec.clone()),
                    None => {}
                }
            }
            Err(_invalid) => {}
        }
    }
    let mut stop: Vec<i64> = running
        .keys()
        .filter(|id| !wanted.contains(id))
        .copied()
        .collect();
    stop.sort_unstable();
    out.stop = stop;
    out
}

/// Validates the enabled rows. Two names that sanitise to the same client
/// ID (`site.88` and `site_88`) would kick each other off the broker
/// forever: the later row is reported invalid instead.
pub fn validate_all(
    rows: &[store::ConnectionRow],
    settings: &Settings,
) -> Vec<Result<ConnectionSpec, InvalidRow>> {
    let mut owners: HashMap<String, (i64, String)> = HashMap::new();
    rows.iter()
        .filter(|r| r.is_enabled)
        .map(|r| {
            let spec = ConnectionSpec::from_row(r, settings)?;
            if let Some((id, name)) = owners.get(&spec.client_id) {
                return Err(InvalidRow {
                    id: spec.id,
                    name: spec.name.clone(),
                    client_id: spec.client_id.clone(),
                    broker: Some(spec.broker()),
                    reason: Box::new(RowError::ClientIdTaken {
                        client_id: spec.client_id.clone(),
                        id: *id,
                        name: clean(name),
                    }),
                });
            }
            owners.insert(spec.client_id.clone(), (spec.id, spec.name.clone()));
            Ok(spec)
        })
        .collect()
}

/// Validates a row about to be written (CLI, API) against the rows already
/// in the table: the same rules as the service, and its client ID must not
/// be one that another row (enabled or not) already has.
pub fn validate_candidate(
    row: &store::ConnectionRow,
    existing: &[store::ConnectionRow],
    settings: &Settings,
) -> Result<ConnectionSpec, InvalidRow> {
    let spec = ConnectionSpec::from_row(row, settings)?;
    let taken = existing.iter().find(|other| {
        other.id != row.id
            && crate::spec::client_id(&other.name, &settings.instance_id) == spec.client_id
    });
    if let Some(other) = taken {
        return Err(InvalidRow {
            id: row.id,
            name: row.name.clone(),
            client_id: spec.client_id.clone(),
            broker: Some(spec.broker()),
            reason: Box::new(RowError::ClientIdTaken {
                client_id: spec.client_id,
                id: other.id,
                name: clean(&other.name),
            }),
        });
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::{row, settings};

    fn spec(id: i64, name: &str) -> ConnectionSpec {
        ConnectionSpec::from_row(&row(id, name), &settings()).unwrap()
    }

    #[test]
    fn starts_new_stops_gone_restarts_changed() {
        let a = spec(1, "a");
        let b = spec(2, "b");
        let mut c = spec(3, "c");
        let running: HashMap<i64, Arc<ConnectionSpec>> = [
            (1, Arc::new(a.clone())),
            (3, Arc::new(c.clone())),
            (4, Arc::new(spec(4, "d"))),
        ]
        .into();
        c.port = 1884;
        let desired = vec![Ok(a), Ok(b.clone()), Ok(c.clone())];
        let p = plan(&desired, &running, |_| true, |_| false);
        assert_eq!(p.start, vec![b]);
        assert_eq!(p.restart, vec![c]);
        assert_eq!(p.stop, vec![4]);
    }

    #[test]
    fn invalid_rows_stop_their_actor_and_start_nothing() {
        let running: HashMap<i64, Arc<ConnectionSpec>> = [(1, Arc::new(spec(1, "a")))].into();
        let invalid = InvalidRow {
            id: 1,
            name: "a".into(),
            client_id: "a_test".into(),
            broker: None,
            reason: Box::new(RowError::PasswordWithoutUser),
        };
        let p = plan(&[Err(invalid)], &running, |_| true, |_| false);
        assert!(p.start.is_empty() && p.restart.is_empty());
        assert_eq!(p.stop, vec![1]);
    }

    #[test]
    fn waits_for_revive_time_and_ignores_unchanged() {
        let a = spec(1, "a");
        let running: HashMap<i64, Arc<ConnectionSpec>> = [(1, Arc::new(a.clone()))].into();
        let p = plan(
            &[Ok(a), Ok(spec(2, "b"))],
            &running,
            |id| id != 2,
            |_| false,
        );
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn held_rows_are_stopped_and_not_started() {
        let running: HashMap<i64, Arc<ConnectionSpec>> = [(1, Arc::new(spec(1, "a")))].into();
        let p = plan(
            &[Ok(spec(1, "a")), Ok(spec(2, "b"))],
            &running,
            |_| true,
            |_| true,
        );
        assert!(p.start.is_empty() && p.restart.is_empty());
        assert_eq!(p.stop, vec![1]);
    }
}
