//! Benchmark of mqtt-supervisor: runs the real release binary against its
//! own Mosquitto and a fresh Postgres database, and prints one JSON object
//! of figures on stdout (progress goes to stderr).
//!
//! It builds nothing: `cargo build --release -p mqtt-supervisor -p bench`,
//! then `target/release/bench connections --count 10000` or
//! `target/release/bench messages`. See
//! docs/performance.md for what each figure means.
//!
//! Everything it starts is ended on an error, a panic or Ctrl-C (child
//! processes are killed on drop), and the database is always dropped.

mod broker;
mod connections;
mod database;
mod logfile;
mod messages;
mod observer;
mod procfs;
mod service;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand};
use database::Database;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "Benchmark of mqtt-supervisor (the real release binary)."
)]
struct Cli {
    /// The mqtt-supervisor binary (default: next to this executable).
    #[arg(long, global = true, env = "MQTT_SUPERVISOR_BIN", value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Postgres server; a database `bench_<pid>` is created on it and dropped.
    #[arg(long, global = true, env = "DATABASE_URL", default_value = database::DEFAULT_SERVER)]
    database_url: String,
    /// Keep the temporary directory (configs and logs) after a success.
    #[arg(long, global = true)]
    keep_temp: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N tenant connections: connect-all time, memory, idle CPU, row-change
    /// latency, shutdown.
    Connections {
        /// Number of connection rows.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        count: u32,
        /// Seconds to wait for all connections before failing.
        #[arg(long, default_value_t = 120)]
        connect_timeout: u64,
        /// Idle seconds before memory is read.
        #[arg(long, default_value_t = 3)]
        settle: u64,
        /// Seconds over which idle CPU is measured.
        #[arg(long, default_value_t = 5)]
        idle_window: u64,
        /// Row inserts and deletes to time.
        #[arg(long, default_value_t = 5)]
        samples: u32,
        /// RUST_LOG for the service (its own default).
        #[arg(long, default_value = "info,rumqttc=warn,sqlx=warn")]
        log_filter: String,
        /// Give the rows no subscriptions (default: `{name}/#`, which also
        /// brings each connection its own status messages back).
        #[arg(long)]
        no_subscriptions: bool,
    },
    /// Messages both ways through Postgres: inbound and outbox messages
    /// per second beside the broker's own ceiling, and outbox latency from
    /// INSERT to PUBACK at a steady rate.
    Messages {
        /// QoS 1 messages a raw publisher sends to one connection.
        #[arg(long, default_value_t = 50_000)]
        inbound: u32,
        /// Outbox rows inserted in one statement.
        #[arg(long, default_value_t = 20_000)]
        outbox: u32,
        /// Rows per second for the latency figure.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        /// Seconds at that rate.
        #[arg(long, default_value_t = 10)]
        latency_secs: u64,
        /// MQTT_OUTBOX_WINDOW (and the raw publisher's window).
        #[arg(long, default_value_t = 32)]
        window: u16,
        /// RUST_LOG for the service.
        #[arg(long, default_value = "info,rumqttc=warn,sqlx=warn")]
        log_filter: String,
    },
}

/// A scenario, ready to run.
enum Scenario {
    Connections(connections::Options),
    Messages(messages::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(report) => {
            println!("{report}");
            if report["exit_code"].as_i64() == Some(0) {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "bench: the service exited with {}, not 0.",
                    report["exit_code"]
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<serde_json::Value> {
    let binary = locate_binary(cli.binary)?;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => progress(format!(
            "Open-files limit {limit} (inherited by the children)."
        )),
        Err(e) => progress(format!("Could not raise the open-files limit: {e}.")),
    }
    let scenario = match cli.command {
        Command::Connections {
            count,
            connect_timeout,
            settle,
            idle_window,
            samples,
            log_filter,
            no_subscriptions,
        } => Scenario::Connections(connections::Options {
            count,
            binary,
            connect_timeout: Duration::from_secs(connect_timeout),
            settle: Duration::from_secs(settle),
            idle_window: Duration::from_secs(idle_window),
            samples,
            log_filter,
            no_subscriptions,
        }),
        Command::Messages {
            inbound,
            outbox,
            rate,
            latency_secs,
            window,
            log_filter,
        } => Scenario::Messages(messages::Options {
            binary,
            inbound,
            outbox,
            rate,
            latency_secs,
            window,
            log_filter,
        }),
    };
    let dir = tempfile::Builder::new()
        .prefix("mqtt-supervisor-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        let name = format!("bench_{}", std::process::id());
        let db = Arc::new(Database::create(&cli.database_url, &name).await?);
        progress(format!("Database {name} created and migrated."));
        // The scenario runs as a task: a panic in it unwinds its frames (the
        // children are killed on drop) and still lets the database be dropped.
        let path = dir.path().to_path_buf();
        let mut task = match scenario {
            Scenario::Connections(options) => {
                tokio::spawn(connections::run(options, db.clone(), path))
            }
            Scenario::Messages(options) => tokio::spawn(messages::run(options, db.clone(), path)),
        };
        let outcome = tokio::select! {
            joined = &mut task => joined.unwrap_or_else(|e| Err(anyhow!("the benchmark failed: {e}"))),
            _ = tokio::signal::ctrl_c() => {
                task.abort();
                let _ = task.await;
                Err(anyhow!("interrupted"))
            }
        };
        match db.drop_database().await {
            Ok(()) => progress(format!("Database {name} dropped.")),
            Err(e) => progress(format!("Warning: {e:#}; drop database {name} by hand.")),
        }
        outcome
    });
    // Give the runtime's remaining tasks (the observer) a moment, not forever.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if outcome.is_err() || cli.keep_temp {
        let kept = dir.keep();
        progress(format!("Logs and configs kept in {}.", kept.display()));
    }
    outcome
}

/// `--binary`/MQTT_SUPERVISOR_BIN, else `mqtt-supervisor` next to this executable.
fn locate_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot tell where this executable is; pass --binary")?
            .parent()
            .context("this executable has no folder; pass --binary")?
            .join("mqtt-supervisor"),
    };
    if !path.is_file() {
        bail!(
            "{} is missing: build it first with `cargo build --release -p mqtt-supervisor -p bench` \
             (or pass --binary PATH / MQTT_SUPERVISOR_BIN)",
            path.display()
        );
    }
    Ok(path)
}

/// A progress line on stderr, with the time since the benchmark began.
pub(crate) fn progress(message: impl std::fmt::Display) {
    static BEGAN: OnceLock<Instant> = OnceLock::new();
    let began = BEGAN.get_or_init(Instant::now);
    eprintln!("[bench {:>7.2} s] {message}", began.elapsed().as_secs_f64());
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener
        .local_addr()
        .context("bound port has no address")?
        .port())
}

/// Sends a signal with kill(1): the workspace forbids unsafe code.
pub(crate) fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}
