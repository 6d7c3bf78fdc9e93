//! The `connections` scenario: N tenants on one private Mosquitto.
//!
//! 1. Baseline: the service with 0 rows, idle for the settle time; its RSS.
//! 2. N rows inserted (one statement), the service started: seconds until
//!    health reports N healthy connections (polled every 50 ms).
//! 3. Idle for the settle time: RSS; then CPU time over the idle window.
//! 4. Row changes: a foreign subscriber subscribes to a new row's status
//!    topic, the row is inserted and the time until `online` arrives is
//!    taken; then the row is deleted and the time until `offline` arrives.
//! 5. SIGTERM: wall time until the process is gone, its own figure, exit code.
//!
//! Along the way it notes what explains the figures: CPU seconds of the
//! service and of Mosquitto during start and shutdown, how slow the health
//! endpoint was, and the last `Connected.` line of the service's log.

use crate::broker::Broker;
use crate::database::Database;
use crate::logfile;
use crate::observer::Observer;
use crate::procfs;
use crate::progress;
use crate::service::Service;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the scenario is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of connection rows.
    pub count: u32,
    /// The mqtt-supervisor binary.
    pub binary: PathBuf,
    /// Bound on "all connected".
    pub connect_timeout: Duration,
    /// Idle time before RSS is read.
    pub settle: Duration,
    /// Window over which idle CPU is measured.
    pub idle_window: Duration,
    /// Row inserts (and deletes) timed.
    pub samples: u32,
    /// RUST_LOG of the service.
    pub log_filter: String,
    /// Rows get an empty subscription list instead of the default `{name}/#`.
    pub no_subscriptions: bool,
}

/// How long one row change may take before the run fails.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on the service's exit after SIGTERM (its own bound is 5 s).
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the baseline service becoming ready.
const BASELINE_TIMEOUT: Duration = Duration::from_secs(30);

const MIB: f64 = 1024.0;

/// Runs the scenario; returns the JSON report.
pub async fn run(options: Options, db: Arc<Database>, dir: PathBuf) -> anyhow::Result<Value> {
    let n = options.count;
    progress(format!("Starting Mosquitto in {}.", dir.display()));
    let broker = Broker::start(&dir).await?;
    let broker_files = broker.open_files_limit();
    progress(format!(
        "Mosquitto listens on 127.0.0.1:{} (open-files limit {}).",
        broker.port(),
        broker_files.map_or_else(|| "unknown".to_owned(), |l| l.to_string())
    ));
    if let Some(limit) = broker_files
        && limit < u64::from(n) + 64
    {
        bail!(
            "Mosquitto may open only {limit} files, too few for {n} clients; raise the hard limit (ulimit -Hn)"
        );
    }

    let baseline_kib = baseline(&options, &db, &dir).await?;

    progress(format!(
        "Inserting {n} rows into database {} (one statement).",
        db.name()
    ));
    let inserted = db
        .insert_sites(n, broker.port(), options.no_subscriptions)
        .await?;
    if inserted != u64::from(n) {
        bail!("inserted {inserted} rows instead of {n}");
    }

    progress(format!("Starting the service with {n} rows."));
    let log = dir.join("service.log");
    let broker_cpu_start = broker.cpu_secs();
    let mut svc = Service::spawn(&options.binary, db.url(), &log, &options.log_filter)?;
    progress(format!(
        "Service started (pid {}); waiting for all {n}.",
        svc.pid()
    ));
    let want = u64::from(n);
    let waited = svc
        .wait_health(
            &format!("all {n} connections are connected"),
            options.connect_timeout,
            |r| r["connections"]["healthy"].as_u64() == Some(want),
        )
        .await?;
    let connected = waited.after;
    let service_cpu_connect = svc.cpu_secs()?;
    let broker_cpu_connect = broker.cpu_secs() - broker_cpu_start;
    let start_log = svc.log_text();
    let ready_secs = logfile::ready_secs(&start_log);
    let last_connected = logfile::last_connected_secs(&start_log, svc.started_wall());
    progress(format!(
        "All {n} connected {:.2} s after start; idling {} s.",
        connected.as_secs_f64(),
        options.settle.as_secs()
    ));

    tokio::time::sleep(options.settle).await;
    let rss_kib = svc.rss_kib()?;
    let hwm_kib = svc.status_field("VmHWM")?;
    let threads = svc.status_field("Threads")?;
    let broker_kib = broker.rss_kib();
    progress(format!(
        "RSS {:.1} MiB (peak {:.1} MiB, {threads} threads); measuring idle CPU for {} s.",
        rss_kib as f64 / MIB,
        hwm_kib as f64 / MIB,
        options.idle_window.as_secs()
    ));

    let idle_cpu = idle_cpu_percent(&svc, options.idle_window).await?;
    progress(format!("Idle CPU {idle_cpu:.2} % of one core."));

    let (online_ms, offline_ms) = row_changes(&options, &db, &broker, &svc).await?;
    if let Some(status) = svc.health().await {
        let healthy = status["connections"]["healthy"].as_u64();
        if healthy != Some(want) {
            progress(format!(
                "Warning: {healthy:?} healthy connections before shutdown, expected {n}."
            ));
        }
    }

    progress(format!(
        "SIGTERM after {:.1} s.",
        svc.uptime().as_secs_f64()
    ));
    let broker_cpu_before_stop = broker.cpu_secs();
    let stopped = svc.terminate(EXIT_TIMEOUT).await?;
    let broker_cpu_shutdown = broker.cpu_secs() - broker_cpu_before_stop;
    progress(format!(
        "Exited in {:.3} s with code {}; the service reports {}.",
        stopped.wall.as_secs_f64(),
        stopped
            .code
            .map_or_else(|| "none (killed by a signal)".to_owned(), |c| c.to_string()),
        stopped
            .reported_secs
            .map_or_else(|| "no shutdown figure".to_owned(), |s| format!("{s:.3} s"))
    ));
    broker.stop().await;

    let per_connection_kib = (rss_kib as f64 - baseline_kib as f64) / f64::from(n.max(1));
    let report = json!({
        "count": n,
        "nproc": std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1),
        "connect_all_secs": round(connected.as_secs_f64(), 3),
        "connect_all_log_secs": last_connected.map(|s| round(s, 3)),
        "ready_secs": ready_secs.map(|s| round(s, 3)),
        "cpu_secs_during_connect": {
            "service": round(service_cpu_connect, 2),
            "broker": round(broker_cpu_connect, 2),
        },
        "broker_cpu_secs_during_shutdown": round(broker_cpu_shutdown, 2),
        "health_polls": waited.polls,
        "health_slowest_ms": round(waited.slowest.as_secs_f64() * 1000.0, 1),
        "health_database_not_ok": waited.database_not_ok,
        "rss_total_mib": round(rss_kib as f64 / MIB, 1),
        "rss_peak_mib": round(hwm_kib as f64 / MIB, 1),
        "rss_baseline_mib": round(baseline_kib as f64 / MIB, 1),
        "rss_baseline_method": "separate run of the service with 0 rows, RSS after the same idle time",
        "rss_per_connection_kib": round(per_connection_kib, 1),
        "threads": threads,
        "broker_rss_mib": broker_kib.map(|k| round(k as f64 / MIB, 1)),
        "idle_cpu_percent": round(idle_cpu, 2),
        "idle_window_secs": options.idle_window.as_secs_f64(),
        "insert_to_online_ms": summary(&online_ms),
        "delete_to_offline_ms": summary(&offline_ms),
        "shutdown_secs": round(stopped.wall.as_secs_f64(), 3),
        "shutdown_reported_secs": stopped.reported_secs.map(|s| round(s, 3)),
        "exit_code": stopped.code,
        "log_filter": options.log_filter,
        "subscriptions": if options.no_subscriptions { "none" } else { "default ({name}/#)" },
    });
    Ok(report)
}

/// RSS in KiB of the service with no rows, after the same idle time.
async fn baseline(options: &Options, db: &Database, dir: &Path) -> anyhow::Result<u64> {
    progress("Baseline: the service with 0 rows.");
    let log = dir.join("service-baseline.log");
    let mut svc = Service::spawn(&options.binary, db.url(), &log, &options.log_filter)?;
    svc.wait_health("running with 0 rows", BASELINE_TIMEOUT, |r| {
        r["service"]["running"].as_bool() == Some(true)
    })
    .await?;
    tokio::time::sleep(options.settle).await;
    let kib = svc.rss_kib()?;
    let stopped = svc.terminate(EXIT_TIMEOUT).await?;
    if stopped.code != Some(0) {
        bail!("the baseline service exited with {:?}", stopped.code);
    }
    progress(format!("Baseline RSS {:.1} MiB.", kib as f64 / MIB));
    Ok(kib)
}

/// CPU time of the service over `window`, as percent of one core.
async fn idle_cpu_percent(svc: &Service, window: Duration) -> anyhow::Result<f64> {
    let ticks_per_sec = procfs::clock_ticks_per_sec() as f64;
    let before = svc.cpu_ticks()?;
    let began = Instant::now();
    tokio::time::sleep(window).await;
    let after = svc.cpu_ticks()?;
    let secs = began.elapsed().as_secs_f64();
    Ok(after.saturating_sub(before) as f64 / ticks_per_sec / secs * 100.0)
}

/// Times row inserts until `online` and deletes until `offline`, as seen
/// by a foreign subscriber; milliseconds each.
async fn row_changes(
    options: &Options,
    db: &Database,
    broker: &Broker,
    svc: &Service,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let mut observer = Observer::connect(broker.port());
    let (mut online, mut offline) = (Vec::new(), Vec::new());
    for k in 1..=options.samples {
        let name = format!("bench_extra_{k}");
        let topic = format!("{name}/backend/status");
        observer.subscribe(&topic, Duration::from_secs(10)).await?;

        let began = Instant::now();
        let id = db.insert_one(&name, broker.port()).await?;
        let at = observer
            .wait_for(&topic, "online", CHANGE_TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "after inserting row {name}; log ends:\n{}",
                    svc.log_tail(20)
                )
            })?;
        online.push(at.duration_since(began).as_secs_f64() * 1000.0);

        let began = Instant::now();
        db.delete(id).await?;
        let at = observer
            .wait_for(&topic, "offline", CHANGE_TIMEOUT)
            .await
            .with_context(|| {
                format!("after deleting row {name}; log ends:\n{}", svc.log_tail(20))
            })?;
        offline.push(at.duration_since(began).as_secs_f64() * 1000.0);
        observer.unsubscribe(&topic).await?;
        progress(format!(
            "Row {name}: insert → online {:.0} ms, delete → offline {:.0} ms.",
            online[online.len() - 1],
            offline[offline.len() - 1]
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((online, offline))
}

/// `{median, max, samples}` of milliseconds.
fn summary(samples: &[f64]) -> Value {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => None,
        len if len % 2 == 1 => Some(sorted[len / 2]),
        len => Some((sorted[len / 2 - 1] + sorted[len / 2]) / 2.0),
    };
    json!({
        "median": median.map(|m| round(m, 1)),
        "max": sorted.last().map(|m| round(*m, 1)),
        "samples": sorted.iter().map(|m| round(*m, 1)).collect::<Vec<_>>(),
    })
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(summary(&[3.0, 1.0, 2.0])["median"], json!(2.0));
        assert_eq!(summary(&[4.0, 1.0, 2.0, 3.0])["median"], json!(2.5));
        assert_eq!(summary(&[4.0, 1.0])["max"], json!(4.0));
        assert_eq!(summary(&[])["median"], Value::Null);
    }
}
