//! The `run` command: start-up in a truthful order, then the bounded shutdown.
//!
//! 1. HTTP listens first, so health answers `critical` while starting.
//! 2. The database is awaited with progress lines, never a crash loop.
//! 3. Migrations (unless `--no-migrate`). This process is one replica
//!    (`{host}-{pid}`) of its (sanitised) MQTT_INSTANCE_ID: the lease
//!    keeper takes its share of the connections through Postgres, so any
//!    number of processes of an instance share them and never fight over
//!    client IDs (see `supervisor::ownership`).
//! 4. The recorder, the lease keeper and the monitor start; the monitor
//!    runs actors for the owned connections only. `Ready` is logged once
//!    the first reconcile ran.
//! 5. On cancel (SIGTERM/SIGINT): one deadline, taken at the signal, bounds
//!    every await on the way out, database queries included. Every actor
//!    says goodbye in parallel, the last states are written, the leases are
//!    given up (others take the connections at once), and the exit line
//!    accounts for every task the service started ([`Tasks`]).

use anyhow::Context;
use settings::Settings;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use store::PgPool;
use supervisor::{Fleet, Mail, Monitor, MonitorOptions, Recorder, Shutdown, TaskKind, Tasks};
use tokio::net::TcpListener;

/// Options of `mqtt-supervisor run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Apply migrations before starting.
    pub migrate: bool,
}

/// Runs the service until `shutdown` begins, then shuts down within its
/// deadline.
pub async fn run(
    settings: Settings,
    options: RunOptions,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let token = shutdown.token().clone();
    let settings = Arc::new(settings);
    let (fleet_tx, fleet_rx) = Fleet::channel();
    let pool_cell: Arc<OnceLock<PgPool>> = Arc::new(OnceLock::new());
    let inbox_cell: Arc<OnceLock<supervisor::inbox::Inbox>> = Arc::new(OnceLock::new());
    let control_cell = Arc::new(OnceLock::new());
    let owned_cell = Arc::new(OnceLock::new());
    // Unique per process even where host names and PIDs repeat (PID 1 in
    // every container).
    let replica_id = format!(
        "{}-{}-{:04x}",
        settings::host_label(),
        std::process::id(),
        fastrand::u16(..)
    );
    let metrics = Arc::new(supervisor::Metrics::default());
    let tasks = Tasks::new();

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
        inbox: inbox_cell.clone(),
        settings: settings.clone(),
        metrics: metrics.clone(),
        control: control_cell.clone(),
        last_rows: Arc::default(),
        replica_id: replica_id.clone(),
        owned: owned_cell.clone(),
    };
    let http_token = token.clone();
    tasks.spawn(TaskKind::Http, async move {
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
    // Its error is one line that names the address and says what to do.
    let Some(pool) = store::wait_for_database(&db_options, &token).await? else {
        return stop_early(&shutdown, &tasks).await;
    };
    // A query on a database that may be slow: bounded, and never past a stop.
    let report = tokio::time::timeout(
        Duration::from_secs(3),
        report_encryption(&pool, &db_options, &db_addr),
    );
    if token.run_until_cancelled(report).await.is_none() {
        return stop_early(&shutdown, &tasks).await;
    }
    // Set once, here; nothing else sets it.
    let _ = pool_cell.set(pool.clone());
    if options.migrate {
        let applied = match token.run_until_cancelled(store::migrate(&pool)).await {
            None => return stop_early(&shutdown, &tasks).await,
            Some(result) => result?,
        };
        tracing::info!("{}", store::migration_summary(&applied));
    }

    // This process among the replicas of the instance: they share the
    // connections through leases in Postgres (supervisor::ownership).
    let lease_scope = settings::sanitize_client_id_part(&settings.instance_id);
    let me = store::ReplicaInfo {
        replica_id: replica_id.clone(),
        // Instance IDs that sanitise alike give the same client IDs: they
        // share one set of leases.
        instance_id: lease_scope.clone(),
        host: hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    // A previous process of this machine that died (a crash, SIGKILL, then
    // supervisord's restart) holds leases for up to a period: its process
    // is gone, so they are freed now instead.
    if token
        .run_until_cancelled(free_dead_local_replicas(&pool, &me))
        .await
        .is_none()
    {
        return stop_early(&shutdown, &tasks).await;
    }
    match token
        .run_until_cancelled(store::mark_orphaned_stopped(&pool, &lease_scope))
        .await
    {
        None => return stop_early(&shutdown, &tasks).await,
        Some(Ok(n)) if n > 0 => {
            tracing::info!(rows = n, "Cleared states left by replicas that are gone.")
        }
        Some(Ok(_)) => {}
        Some(Err(e)) => {
            tracing::warn!(error = %e, "Could not clear states left by replicas that are gone.")
        }
    }

    let recorder = Recorder::leased(replica_id.clone());
    let recorder_task = tasks.spawn(
        TaskKind::Recorder,
        recorder.clone().run(pool.clone(), token.child_token()),
    );
    // Messages: stopped after the monitor, so that the actors' last marks
    // and stored messages still get written.
    let mail_token = tokio_util::sync::CancellationToken::new();
    let (mut mail, mail_tasks) = Mail::new(pool.clone(), &settings, metrics.clone());
    let guard = supervisor::ownership::LeaseGuard::closed();
    mail.lease = guard.clone();
    let (keeper, owned) = supervisor::ownership::Keeper::new(
        pool.clone(),
        me,
        settings.lease_period,
        guard,
        fleet_rx.clone(),
        metrics.clone(),
    );
    // Set once, here; nothing else sets it.
    let _ = owned_cell.set(owned.clone());
    let nudge = keeper.nudge();
    let mut first_round = owned.clone();
    let keeper_task = tasks.spawn(TaskKind::LeaseKeeper, keeper.run(token.child_token()));
    // The monitor starts with this replica's first share, so that its first
    // reconcile starts them (and says so once). A database that fails now
    // only delays it; the keeper keeps trying.
    if token
        .run_until_cancelled(first_round.changed())
        .await
        .is_none()
    {
        return stop_early(&shutdown, &tasks).await;
    }
    // Set once, here; nothing else sets it.
    let _ = inbox_cell.set(mail.inbox.clone());
    let inbox_task = tasks.spawn(
        TaskKind::Inbox,
        mail_tasks.inbox.run(pool.clone(), mail_token.clone()),
    );
    let outbox_task = tasks.spawn(TaskKind::Outbox, mail_tasks.outbox.run(mail_token.clone()));
    let timeout = settings.shutdown_timeout;
    // Keep a slice of the budget for writing the final states.
    let reserve = (timeout / 5).min(Duration::from_millis(500));
    let monitor = Monitor::new(
        pool.clone(),
        MonitorOptions {
            settings: settings.clone(),
            final_write_reserve: reserve,
            owned: Some(owned),
            on_change: Some(nudge),
        },
        recorder.clone(),
        mail,
        shutdown.clone(),
        tasks.clone(),
        fleet_tx,
    );
    // Set once, here; nothing else sets it.
    let _ = control_cell.set(monitor.control());
    let monitor_task = tasks.spawn(TaskKind::Monitor, monitor.run());

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
    // From here on, every await is bounded by the one deadline.
    let report = shutdown.bounded(monitor_task).await;
    let elapsed = shutdown.began().elapsed().as_secs_f64();
    match report {
        Some(Ok(report)) if report.abandoned > 0 => tracing::warn!(
            connections = report.connections,
            abandoned = report.abandoned,
            "{} of {} connection(s) did not close within MQTT_SHUTDOWN_TIMEOUT; dropped after {elapsed:.2} s.",
            report.abandoned,
            report.connections
        ),
        Some(Ok(report)) => tracing::info!(
            connections = report.connections,
            elapsed_secs = elapsed,
            "All connections disconnected in {elapsed:.2} s."
        ),
        Some(Err(e)) => tracing::error!(error = %e, "The monitor task failed during shutdown."),
        None => tracing::warn!("The monitor did not finish by the shutdown deadline."),
    }
    mail_token.cancel();
    let _ = shutdown.bounded(inbox_task).await;
    let _ = shutdown.bounded(outbox_task).await;
    let _ = shutdown.bounded(recorder_task).await;
    match shutdown.bounded(recorder.flush(&pool)).await {
        Some(Ok(_)) => {}
        Some(Err(e)) => {
            tracing::warn!(error = %e, "Could not write the final connection states.")
        }
        None => tracing::warn!(
            "Writing the final connection states did not finish by the shutdown deadline; the next start marks them stopped."
        ),
    }
    let _ = shutdown.bounded(keeper_task).await;
    // Every connection is closed and its last state written: the leases go
    // now, so other replicas take the connections at once.
    match shutdown
        .bounded(store::leave(&pool, &lease_scope, &replica_id))
        .await
    {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            tracing::warn!(error = %e, "Could not give up the connection leases; they expire within MQTT_LEASE_PERIOD.")
        }
        None => tracing::warn!(
            "Giving up the connection leases did not finish by the shutdown deadline; they expire within MQTT_LEASE_PERIOD."
        ),
    }
    tasks.close();
    let all_done = shutdown.bounded(tasks.wait()).await.is_some();
    let elapsed = shutdown.began().elapsed().as_secs_f64();
    if all_done {
        tracing::info!(
            elapsed_secs = elapsed,
            "Shutdown complete in {elapsed:.2} s; every task finished."
        );
    } else {
        tracing::warn!(
            elapsed_secs = elapsed,
            still_running = %tasks.describe_running(),
            "Shutdown deadline reached after {elapsed:.2} s; still running (dropped at exit): {}.",
            tasks.describe_running()
        );
    }
    Ok(())
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

/// Frees the leases of replicas registered from this machine (same host
/// name and boot ID) whose process no longer exists. A process ID in use
/// by another process is taken as alive (the leases then expire on their
/// own); our own process ID is a previous life of this process's ID (a
/// restarted container's PID 1).
async fn free_dead_local_replicas(pool: &PgPool, me: &store::ReplicaInfo) {
    let candidates = match store::local_replicas(pool, me).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "Could not look for dead replicas of this machine.");
            return;
        }
    };
    let dead: Vec<String> = candidates
        .into_iter()
        .filter(|(_, pid)| {
            *pid == me.pid || !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
        .map(|(id, _)| id)
        .collect();
    if dead.is_empty() {
        return;
    }
    match store::expire_replicas(pool, &me.instance_id, &dead).await {
        Ok(n) => tracing::info!(
            replicas = %dead.join(", "), leases = n,
            "Freed the leases of {} replica(s) of this machine whose process is gone.",
            dead.len()
        ),
        Err(e) => {
            tracing::warn!(error = %e, "Could not free the leases of dead replicas of this machine; they expire within MQTT_LEASE_PERIOD.")
        }
    }
}

/// Cancelled during start-up: stop what was started, within the deadline.
async fn stop_early(shutdown: &Shutdown, tasks: &Tasks) -> anyhow::Result<()> {
    tasks.close();
    let _ = shutdown.bounded(tasks.wait()).await;
    tracing::info!("Stopped before start-up finished.");
    Ok(())
}
