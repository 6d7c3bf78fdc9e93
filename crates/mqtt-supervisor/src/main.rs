//! mqtt-supervisor: owns every tenant's MQTT connection; desired state in Postgres.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad settings or usage.

use anyhow::Context;
use clap::{Parser, Subcommand};
use mqtt_supervisor::{logging, service, signals};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "mqtt-supervisor", version, about)]
struct Cli {
    /// TOML settings file (else MQTT_CONFIG_FILE); environment variables win over it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Run {
        /// Do not apply database migrations at start.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Print the effective settings (secrets shown as ***) and exit.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = match settings::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("mqtt-supervisor: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::CheckConfig => {
            print_settings(&loaded);
            Ok(())
        }
        Command::Run { no_migrate } => {
            logging::init(loaded.settings.log_format);
            for warning in &loaded.warnings {
                tracing::warn!("{warning}");
            }
            run_service(
                loaded.settings,
                service::RunOptions {
                    migrate: !no_migrate,
                },
            )
        }
        Command::Migrate => {
            logging::init(loaded.settings.log_format);
            migrate(&loaded.settings)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "Exiting after an error.");
            eprintln!("mqtt-supervisor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run_service(settings: settings::Settings, options: service::RunOptions) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let token = CancellationToken::new();
        let signals = tokio::spawn(signals::watch(token.clone()));
        let result = service::run(settings, options, token.clone()).await;
        token.cancel();
        signals.abort();
        result
    })
}

fn migrate(settings: &settings::Settings) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let options = store::connect_options(settings.database_url.expose())?;
        let address = store::database_address(&options);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to database {address}"))?;
        store::migrate(&pool).await?;
        tracing::info!(database = %address, "Database schema is up to date.");
        Ok(())
    })
}

fn print_settings(loaded: &settings::Loaded) {
    println!("# Effective settings of mqtt-supervisor (secrets shown as ***)");
    let width = loaded
        .effective
        .iter()
        .map(|(v, _, _)| v.len())
        .max()
        .unwrap_or(0);
    for (variable, value, source) in &loaded.effective {
        println!("{variable:<width$} = {value}    # {source}");
    }
    for warning in &loaded.warnings {
        println!("# warning: {warning}");
    }
}
