//! The `run` command: start-up in a truthful order, then the bounded shutdown.
//!
//! 1. HTTP listens first, so health answers `critical` while starting.
//! 2. The database is awaited with progress lines, never a crash loop.
//! 3. Migrations (unless `--no-migrate`), then the instance lock: one live
//!    process per MQTT_INSTANCE_ID, or the two would fight over client IDs.
//! 4. The recorder and the monitor start; `Ready` is logged once the first
//!    reconcile has started every enabled row.
//! 5. On cancel (SIGTERM/SIGINT): every actor says goodbye in parallel, the
//!    last states are written, all within MQTT_SHUTDOWN_TIMEOUT.

use anyhow::{Context, bail};
use settings::Settings;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use store::{InstanceLock, PgPool};
use supervisor::{Fleet, Monitor, MonitorOptions, Recorder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Options of `mqtt-supervisor run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Apply migrations before starting.
    pub migrate: bool,
    /// When the stop signal arrived (set by [`crate::signals::watch`]); the
    /// shutdown is timed from it, else from when the monitor noticed.
    pub stop_received: Arc<OnceLock<Instant>>,
}

/// How often the instance lock's connection is checked.
const LOCK_CHECK: Duration = Duration::from_secs(5);

/// Runs the service until `token` is cancelled, then shuts down.
pub async fn run(
    settings: Settings,
    options: RunOptions,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let settings = Arc::new(settings);
    let (fleet_tx, fleet_rx) = Fleet::channel();
    let pool_cell: Arc<OnceLock<PgPool>> = Arc::new(OnceLock::new());
    let tracker = TaskTracker::new();

    let listener = TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("cannot listen on {} (MQTT_HTTP_ADDR)", settings.http_addr))?;
    let http_addr = listener
        .local_addr()
        .context("HTTP listener has no address")?;
    let app = http::AppState {
        fleet: fleet_rx.clone(),
        pool: pool_cell.clone(),
        started,
        instance_id: settings.instance_id.clone(),
        version: env!("CARGO_PKG_VERSION"),
    };
    let http_token = token.clone();
    tracker.spawn(async move {
        if let Err(e) = http::serve(listener, http::router(app), http_token).await {
            tracing::error!(error = %e, "HTTP server failed.");
        }
    });
    tracing::info!(addr = %http_addr, instance_id = %settings.instance_id, "HTTP listening on {http_addr}.");

    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "Open-files limit raised."),
        Err(e) => tracing::warn!(error = %e, "Could not raise the open-files limit."),
    }

    let db_options = store::connect_options(settings.database_url.expose())?;
    let db_addr = store::database_address(&db_options);
    tracing::info!(database = %db_addr, "Connecting to database {db_addr}.");
    let Some(pool) = store::wait_for_database(&db_options, &token)
        .await
        .with_context(|| format!("database {db_addr}"))?
    else {
        return stop_early(tracker).await;
    };
    report_encryption(&pool, &db_options, &db_addr).await;
    // Set once, here; nothing else sets it.
    let _ = pool_cell.set(pool.clone());
    if options.migrate {
        store::migrate(&pool).await.context("applying migrations")?;
        tracing::info!("Database schema is up to date.");
    }

    let Some(lock) = acquire_lock(&db_options, &settings.instance_id, &token).await? else {
        return stop_early(tracker).await;
    };
    match store::mark_owned_stopped(&pool, &settings.instance_id).await {
        Ok(n) if n > 0 => tracing::info!(rows = n, "Cleared states left by a previous run."),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "Could not clear states left by a previous run."),
    }

    let recorder = Recorder::new(settings.instance_id.clone());
    let recorder_task = tokio::spawn(recorder.clone().run(pool.clone(), token.child_token()));
    let keeper = tokio::spawn(keep_lock(
        lock,
        db_options.clone(),
        settings.instance_id.clone(),
        token.clone(),
    ));
    let monitor = Monitor::new(
        pool.clone(),
        MonitorOptions {
            settings: settings.clone(),
        },
        recorder.clone(),
        token.clone(),
        fleet_tx,
    );
    let timeout = settings.shutdown_timeout;
    // Keep a slice of the budget for writing the final states.
    let reserve = (timeout / 5).min(Duration::from_millis(500));
    let monitor_task = tokio::spawn(monitor.run(move || timeout - reserve));

    let mut ready = fleet_rx.clone();
    if let Some(Ok(fleet)) = token
        .run_until_cancelled(ready.wait_for(|f| f.running))
        .await
    {
        let n = fleet.connections.len();
        tracing::info!(
            connections = n,
            startup_secs = started.elapsed().as_secs_f64(),
            "Ready: {n} connection(s) started; health at http://{http_addr}/api/v1/mqtt/health/."
        );
    }

    token.cancelled().await;
    let shutdown_began = Instant::now();
    let report = monitor_task.await.context("monitor task failed")?;
    let elapsed = options
        .stop_received
        .get()
        .map_or(report.elapsed, |at| at.elapsed())
        .as_secs_f64();
    if report.abandoned > 0 {
        tracing::warn!(
            connections = report.connections,
            abandoned = report.abandoned,
            "{} of {} connection(s) did not close within MQTT_SHUTDOWN_TIMEOUT; dropped after {elapsed:.2} s.",
            report.abandoned,
            report.connections
        );
    } else {
        tracing::info!(
            connections = report.connections,
            elapsed_secs = elapsed,
            "All connections disconnected in {elapsed:.2} s."
        );
    }
    let _ = recorder_task.await;
    let left = timeout
        .saturating_sub(shutdown_began.elapsed())
        .max(Duration::from_millis(100));
    match tokio::time::timeout(left, recorder.flush(&pool)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "Could not write the final connection states."),
        Err(_) => tracing::warn!("Writing the final connection states timed out."),
    }
    tracker.close();
    let left = timeout.saturating_sub(shutdown_began.elapsed());
    let _ = tokio::time::timeout(left, tracker.wait()).await;
    match keeper.await {
        Ok(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Says whether the database connection is encrypted, and warns when it is
/// not and the database is on another machine: the rows hold the brokers'
/// passwords, and the default `sslmode=prefer` falls back to clear text
/// without a word.
async fn report_encryption(
    pool: &PgPool,
    options: &sqlx::postgres::PgConnectOptions,
    address: &str,
) {
    match store::connection_encryption(pool).await {
        Ok(Some(tls)) => tracing::info!(
            database = %address, tls_version = %tls.version, cipher = %tls.cipher,
            "Database connection is encrypted ({}, {}).", tls.version, tls.cipher
        ),
        Ok(None) if store::is_local(options) => tracing::info!(
            database = %address,
            "Database connection is not encrypted (the database is on this machine)."
        ),
        Ok(None) => tracing::warn!(
            database = %address,
            "Database connection to {address} is not encrypted: the brokers' passwords cross the network in clear. Set sslmode=verify-full&sslrootcert=/path/to/ca.pem in DATABASE_URL."
        ),
        Err(e) => tracing::warn!(
            database = %address, error = %e,
            "Could not tell whether the database connection is encrypted."
        ),
    }
}

async fn stop_early(tracker: TaskTracker) -> anyhow::Result<()> {
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    tracing::info!("Stopped before start-up finished.");
    Ok(())
}

/// Waits for the instance lock; `None` when cancelled meanwhile.
async fn acquire_lock(
    options: &sqlx::postgres::PgConnectOptions,
    instance_id: &str,
    token: &CancellationToken,
) -> anyhow::Result<Option<InstanceLock>> {
    for attempt in 1u32.. {
        match InstanceLock::try_acquire(options, instance_id).await {
            Ok(Some(lock)) => return Ok(Some(lock)),
            Ok(None) => tracing::warn!(
                instance_id,
                attempt,
                "Another live process runs instance {instance_id}; waiting for it to stop (attempt {attempt}, next in 2 s)."
            ),
            Err(e) => {
                tracing::warn!(error = %e, attempt, "Could not take the instance lock; retrying in 2 s.")
            }
        }
        if token
            .run_until_cancelled(tokio::time::sleep(Duration::from_secs(2)))
            .await
            .is_none()
        {
            return Ok(None);
        }
    }
    Ok(None)
}

/// Keeps the instance lock: if its connection drops (database restart), takes
/// it again. If another process took it meanwhile, two processes would own
/// the same client IDs: shut down (exit 1) and let the process manager decide.
async fn keep_lock(
    mut lock: InstanceLock,
    options: sqlx::postgres::PgConnectOptions,
    instance_id: String,
    token: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        if token
            .run_until_cancelled(tokio::time::sleep(LOCK_CHECK))
            .await
            .is_none()
        {
            drop(lock);
            return Ok(());
        }
        if lock.is_held().await {
            continue;
        }
        tracing::warn!(instance_id = %instance_id, "Lost the instance lock's database connection; taking it again.");
        loop {
            match InstanceLock::try_acquire(&options, &instance_id).await {
                Ok(Some(again)) => {
                    tracing::info!("Instance lock held again.");
                    lock = again;
                    break;
                }
                Ok(None) => {
                    tracing::error!(
                        instance_id = %instance_id,
                        "Another process took instance {instance_id} while the database was away; shutting down to avoid a client ID war."
                    );
                    token.cancel();
                    bail!("instance lock taken by another process");
                }
                Err(_) => {
                    if token
                        .run_until_cancelled(tokio::time::sleep(LOCK_CHECK))
                        .await
                        .is_none()
                    {
                        return Ok(());
                    }
                }
            }
        }
    }
}
