//! What the actors need for messages: the inbox writer's queue and the
//! outbox hub, started together by [`Mail::new`].

use crate::inbox::{Inbox, InboxWriter};
use crate::outbox::{OutboxHub, OutboxTask};
use settings::Settings;
use store::PgPool;

/// Handed to every actor; cheap to clone.
#[derive(Clone)]
pub struct Mail {
    /// Received messages go here.
    pub inbox: Inbox,
    /// Wake-ups for outbox rows and the marks of sent ones.
    pub outbox: OutboxHub,
}

/// The background tasks behind [`Mail`]; run both.
pub struct MailTasks {
    /// Writes `mqtt_inbox`.
    pub inbox: InboxWriter,
    /// Listens for outbox rows, marks them, prunes old messages.
    pub outbox: OutboxTask,
}

impl Mail {
    /// The actors' side and the tasks, sized by the settings.
    pub fn new(pool: PgPool, settings: &Settings) -> (Mail, MailTasks) {
        let (inbox, writer) = Inbox::new(settings.inbox_buffer as usize);
        let (outbox, task) =
            OutboxHub::new(pool, settings.inbox_retention, settings.monitor_interval);
        (
            Mail { inbox, outbox },
            MailTasks {
                inbox: writer,
                outbox: task,
            },
        )
    }
}
