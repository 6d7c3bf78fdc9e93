//! What the actors need for messages: the inbox writer's queue and the
//! outbox hub, started together by [`Mail::new`].

use crate::inbox::{Inbox, InboxWriter};
use crate::metrics::Metrics;
use crate::outbox::{OutboxHub, OutboxTask};
use crate::ownership::LeaseGuard;
use settings::Settings;
use std::sync::Arc;
use store::PgPool;

/// Handed to every actor; cheap to clone.
#[derive(Clone)]
pub struct Mail {
    /// Received messages go here.
    pub inbox: Inbox,
    /// Wake-ups for outbox rows and the marks of sent ones.
    pub outbox: OutboxHub,
    /// The service's counters.
    pub metrics: Arc<Metrics>,
    /// Until when this replica may connect (its leases); always, unless
    /// the service sets the keeper's guard.
    pub lease: LeaseGuard,
}

/// The background tasks behind [`Mail`]; run both.
pub struct MailTasks {
    /// Writes `mqtt_inbox`.
    pub inbox: InboxWriter,
    /// Listens for outbox rows, marks them, prunes old messages.
    pub outbox: OutboxTask,
}

impl Mail {
    /// The actors' side and the tasks, sized by the settings, counting in
    /// `metrics`.
    pub fn new(pool: PgPool, settings: &Settings, metrics: Arc<Metrics>) -> (Mail, MailTasks) {
        let (inbox, writer) = Inbox::new(settings.inbox_buffer as usize, metrics.clone());
        let (outbox, task) = OutboxHub::new(
            pool,
            settings.inbox_retention,
            settings.monitor_interval,
            metrics.clone(),
        );
        (
            Mail {
                inbox,
                outbox,
                metrics,
                lease: LeaseGuard::always(),
            },
            MailTasks {
                inbox: writer,
                outbox: task,
            },
        )
    }
}
