//! Commands from the API: reconnect a connection now, or disconnect it and
//! hold it down. A held row stays down until a reconnect, a change of its
//! row, or a restart of the service; health counts it as not connected,
//! which is the truth.

use super::Monitor;
use crate::spec::ConnectionSpec;
use crate::state::{ConnectionState, Status};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long the API waits for the monitor's answer (it may be in the middle
/// of a reconcile on a slow database).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// What the API can ask of the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Close the connection (`offline` first) and connect again at once,
    /// ending a cooldown, a backoff wait or a hold.
    Reconnect,
    /// Close the connection (`offline` first) and hold it down.
    Disconnect,
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The row is not one this process runs: disabled, invalid, unknown.
    #[error("{0}")]
    NotRunning(String),
    /// The monitor is stopping or did not answer in time.
    #[error("the service is busy or stopping; try again")]
    Unavailable,
}

pub(super) type Request = (
    String,
    Command,
    oneshot::Sender<Result<String, CommandError>>,
);

/// The API's side: sends commands to the monitor. Cheap to clone.
#[derive(Clone)]
pub struct MonitorControl {
    tx: mpsc::Sender<Request>,
}

impl MonitorControl {
    pub(super) fn channel() -> (MonitorControl, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(16);
        (MonitorControl { tx }, rx)
    }

    /// Asks the monitor to apply `command` to the connection named `name`;
    /// the answer says what was done.
    pub async fn send(&self, name: &str, command: Command) -> Result<String, CommandError> {
        let (reply, answer) = oneshot::channel();
        let asked = async {
            self.tx
                .send((name.to_owned(), command, reply))
                .await
                .map_err(|_| CommandError::Unavailable)?;
            answer.await.map_err(|_| CommandError::Unavailable)?
        };
        tokio::time::timeout(ANSWER_WITHIN, asked)
            .await
            .unwrap_or(Err(CommandError::Unavailable))
    }
}

/// A row held down by the API.
pub(super) struct Held {
    /// Its configuration when held: a change of the row ends the hold.
    pub spec: Arc<ConnectionSpec>,
    /// What readers see meanwhile.
    pub state: watch::Receiver<ConnectionState>,
}

impl Monitor {
    /// Carries out one command and answers it.
    pub(super) fn command(&mut self, (name, command, reply): Request) {
        let _ = reply.send(self.apply_command(&name, command));
    }

    fn apply_command(&mut self, name: &str, command: Command) -> Result<String, CommandError> {
        let spec = self
            .desired
            .iter()
            .find_map(|r| match r {
                Ok(spec) if spec.name == name => Some(Ok(Arc::new(spec.clone()))),
                Err(invalid) if invalid.name == name => Some(Err(CommandError::NotRunning(
                    format!("connection `{name}` is invalid: {}", invalid.reason),
                ))),
                _ => None,
            })
            .unwrap_or_else(|| {
                Err(CommandError::NotRunning(format!(
                    "connection `{name}` is not enabled (or was added since the last reconcile)"
                )))
            })?;
        let id = spec.id;
        match command {
            Command::Disconnect => {
                if self.held.contains_key(&id) {
                    return Ok(format!("`{name}` is already disconnected and held"));
                }
                let detail = "disconnected through the API; POST …/reconnect to connect again";
                tracing::info!(
                    connection = %spec.name, client_id = %spec.client_id,
                    "Disconnecting the connection and holding it down, as asked through the API."
                );
                let state = ConnectionState {
                    status: Status::Stopped,
                    detail: detail.to_owned(),
                    connected_since: None,
                    last_error: None,
                    cooldown_until: None,
                    reconnects: 0,
                };
                self.recorder
                    .record(spec.id, &spec.name, &spec.client_id, &state);
                let (_tx, rx) = watch::channel(state);
                self.held.insert(id, Held { spec, state: rx });
                self.apply();
                Ok(format!("`{name}` is disconnecting and held down"))
            }
            Command::Reconnect => {
                let was_held = self.held.remove(&id).is_some();
                tracing::info!(
                    connection = %spec.name, client_id = %spec.client_id,
                    "Reconnecting the connection now, as asked through the API."
                );
                if let Some(actor) = self.actors.remove(&id) {
                    actor.handle.stop();
                    self.stopping.entry(id).or_default().push(actor);
                }
                self.revive_at.remove(&id);
                self.apply();
                Ok(if was_held {
                    format!("`{name}` is no longer held; connecting")
                } else {
                    format!("`{name}` is reconnecting")
                })
            }
        }
    }

    /// Ends holds whose row changed, went away or became invalid.
    pub(super) fn release_changed_holds(&mut self) {
        let desired = &self.desired;
        self.held.retain(|id, held| {
            desired
                .iter()
                .any(|r| r.as_ref().is_ok_and(|s| s.id == *id && *s == *held.spec))
        });
    }
}
