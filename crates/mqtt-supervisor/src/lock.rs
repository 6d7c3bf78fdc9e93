//! The instance lock: one live process per sanitised MQTT_INSTANCE_ID.
//!
//! Two processes with the same instance ID (or IDs that sanitise alike,
//! `bfg.back` and `bfg_back`) would open the same client IDs and kick each
//! other off the brokers forever. The lock is a Postgres advisory lock on a
//! session of its own ([`store::InstanceLock`]):
//!
//! - a second process waits for it, checking every [`CHECK`];
//! - the holder checks its session every [`CHECK`], each check bounded by
//!   [`PING_TIMEOUT`], so a black-holed database is noticed within about
//!   two seconds. It then takes the lock again at once; if another process
//!   has it, the holder stops all its connections and exits (code 1). While
//!   the database cannot be reached at all nobody can take the lock, so the
//!   connections stay up;
//! - a process that had to wait (or finds states a previous run left
//!   `connected`) waits [`handover_grace`] after taking the lock before it
//!   connects: the time the previous holder needs to notice and to close.

use anyhow::bail;
use sqlx::postgres::PgConnectOptions;
use std::time::Duration;
use store::InstanceLock;
use tokio_util::sync::CancellationToken;

/// How often the lock is checked (holder) or tried (waiter).
pub const CHECK: Duration = Duration::from_secs(1);
/// Bound on one check of the holder's session.
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on one attempt to take the lock.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A lock just taken.
pub struct Acquired {
    /// The lock.
    pub lock: InstanceLock,
    /// True when another process held it first.
    pub waited: bool,
}

/// How long a new holder waits before connecting: the previous holder
/// notices the loss within a check and a ping, then closes its connections
/// within its shutdown timeout.
pub fn handover_grace(shutdown_timeout: Duration) -> Duration {
    CHECK + PING_TIMEOUT + shutdown_timeout + Duration::from_millis(500)
}

/// Waits for the lock on `key`; `None` when cancelled meanwhile.
pub async fn acquire(
    options: &PgConnectOptions,
    key: &str,
    token: &CancellationToken,
) -> Option<Acquired> {
    let mut waited = false;
    for attempt in 1u32.. {
        let tried = token
            .run_until_cancelled(tokio::time::timeout(
                ACQUIRE_TIMEOUT,
                InstanceLock::try_acquire(options, key),
            ))
            .await?;
        // Log the first attempt and then every 30th, not every second.
        let say = attempt == 1 || attempt % 30 == 0;
        match tried {
            Ok(Ok(Some(lock))) => return Some(Acquired { lock, waited }),
            Ok(Ok(None)) => {
                waited = true;
                if say {
                    tracing::warn!(
                        instance_id = key,
                        attempt,
                        "Another live process runs instance {key}; waiting for it to stop (checking every {} s).",
                        CHECK.as_secs()
                    );
                }
            }
            Ok(Err(e)) if say => {
                tracing::warn!(error = %e, attempt, "Could not take the instance lock; retrying.")
            }
            Err(_) if say => {
                tracing::warn!(attempt, "Taking the instance lock timed out; retrying.")
            }
            _ => {}
        }
        token.run_until_cancelled(tokio::time::sleep(CHECK)).await?;
    }
    None
}

/// Keeps the lock until `token` is cancelled, then hands it back: the
/// caller drops it only once every connection is closed, so a waiting
/// process never connects while this one still does. If another process
/// took it meanwhile, two processes would own the same client IDs: cancel
/// (every connection closes) and return an error (exit 1).
pub async fn keep(
    mut lock: InstanceLock,
    options: PgConnectOptions,
    key: String,
    token: CancellationToken,
) -> anyhow::Result<Option<InstanceLock>> {
    loop {
        if token
            .run_until_cancelled(tokio::time::sleep(CHECK))
            .await
            .is_none()
        {
            return Ok(Some(lock));
        }
        let held = token
            .run_until_cancelled(tokio::time::timeout(PING_TIMEOUT, lock.is_held()))
            .await;
        match held {
            None => return Ok(Some(lock)),
            Some(Ok(true)) => continue,
            Some(_) => {}
        }
        tracing::warn!(instance_id = %key, "Lost the instance lock's database session; taking it again.");
        drop(lock);
        let mut said_unreachable = false;
        lock = loop {
            let tried = token
                .run_until_cancelled(tokio::time::timeout(
                    ACQUIRE_TIMEOUT,
                    InstanceLock::try_acquire(&options, &key),
                ))
                .await;
            match tried {
                None => return Ok(None),
                Some(Ok(Ok(Some(again)))) => {
                    tracing::info!(instance_id = %key, "Instance lock held again.");
                    break again;
                }
                Some(Ok(Ok(None))) => {
                    tracing::error!(
                        instance_id = %key,
                        "Another process took instance {key}; closing every connection and exiting to avoid a client ID war."
                    );
                    token.cancel();
                    bail!("instance lock taken by another process");
                }
                Some(_) => {
                    if !said_unreachable {
                        tracing::warn!(
                            instance_id = %key,
                            "Cannot reach the database to take the instance lock again; connections stay up (nobody else can take it either). Retrying every {} s.",
                            CHECK.as_secs()
                        );
                        said_unreachable = true;
                    }
                    if token
                        .run_until_cancelled(tokio::time::sleep(CHECK))
                        .await
                        .is_none()
                    {
                        return Ok(None);
                    }
                }
            }
        };
    }
}
