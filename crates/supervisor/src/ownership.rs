//! Replicas share the tenants through Postgres: each enabled connection is
//! owned by at most one live replica of an instance, through a lease row.
//!
//! - The [`keeper`] renews this replica's leases every third of
//!   MQTT_LEASE_PERIOD, registers its heartbeat, takes free or expired
//!   leases up to a fair share and gives up extra ones (after their actors
//!   have closed: a clean handover).
//! - The [`LeaseGuard`] says until when this replica may connect: half a
//!   period after the start of its last successful renewal, on the
//!   monotonic clock. The database's expiry is a full period after the
//!   renewal's end, so a replica that cannot renew (database unreachable,
//!   process paused) stops connecting, and the keeper closes its
//!   connections, before anyone else may take them.
//! - [`plan`] is the pure decision: what to take, what to give up.

mod guard;
pub mod keeper;
mod plan;

pub use guard::LeaseGuard;
pub use keeper::{Keeper, Owned};
pub use plan::{LeasePlan, plan};
