//! mqtt-supervisor: owns every tenant's MQTT connection; desired state in Postgres.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad settings or usage.

use anyhow::Context;
use clap::{Parser, Subcommand};
use mqtt_supervisor::admin::{self, AdminError};
use mqtt_supervisor::{logging, probe, service, signals};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use supervisor::Shutdown;

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
    /// Ask the running service how it is: exit 0 healthy/degraded, 1 critical or unreachable.
    Health {
        /// Health URL (default: from MQTT_HTTP_ADDR).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// List, add, enable, disable or remove connections (rows of mqtt_connections).
    Connections {
        #[command(subcommand)]
        action: ConnectionsCommand,
    },
    /// List the replicas of this MQTT_INSTANCE_ID: heartbeats and shares.
    Replicas,
}

#[derive(Subcommand)]
enum ConnectionsCommand {
    /// Every connection with its status.
    List,
    /// Add a connection; the running service connects it at once.
    Add(AddArgs),
    /// Enable a connection.
    Enable {
        /// Connection name.
        name: String,
    },
    /// Disable a connection (the service says `offline` and disconnects).
    Disable {
        /// Connection name.
        name: String,
    },
    /// Remove a connection.
    Remove {
        /// Connection name.
        name: String,
    },
}

#[derive(clap::Args)]
struct AddArgs {
    /// Connection name (tenant key, e.g. site_88): part of the client ID and topics.
    name: String,
    /// Broker host name or address.
    #[arg(long)]
    host: String,
    /// Broker port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// MQTT user name.
    #[arg(long)]
    username: Option<String>,
    /// Read the password from the first line of standard input (never from an argument).
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Connect with TLS (verifying the broker against --ca-file, else the system roots).
    #[arg(long)]
    tls: bool,
    /// PEM file with the CA certificate(s) to verify the broker with.
    #[arg(long, value_name = "FILE", requires = "tls")]
    ca_file: Option<PathBuf>,
    /// A topic filter to subscribe to; repeat for several (default: NAME/#).
    #[arg(long = "subscribe", value_name = "FILTER")]
    subscribe: Vec<String>,
    /// MQTT protocol version.
    #[arg(long, value_parser = ["3.1.1", "5"])]
    protocol: Option<String>,
    /// Add it disabled.
    #[arg(long)]
    disabled: bool,
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
        Command::Health { url } => {
            let url = url.unwrap_or_else(|| probe::default_url(&loaded.settings));
            let (line, usable) = probe::check(&url);
            println!("{line}");
            return if usable {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Command::Connections { action } => return connections(&loaded.settings, action),
        Command::Replicas => runtime().and_then(|rt| {
            rt.block_on(async {
                let pool = admin::connect(&loaded.settings).await?;
                admin::replicas(&pool, &loaded.settings).await
            })
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "Exiting after an error.");
            eprintln!("mqtt-supervisor: {e:#}");
            // settings::validate checks DATABASE_URL's shape; one that
            // parses yet cannot be used (a bad sslmode) is a setting too.
            if matches!(e.downcast_ref(), Some(store::StoreError::Url(_))) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
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
    let runtime = runtime()?;
    let result = runtime.block_on(async move {
        let shutdown = Shutdown::new(settings.shutdown_timeout);
        let signals = tokio::spawn(signals::watch(shutdown.clone()));
        let result = service::run(settings, options, shutdown.clone()).await;
        shutdown.begin();
        signals.abort();
        result
    });
    // Whatever is still running (a blocking DNS look-up, a task past the
    // deadline) must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

fn migrate(settings: &settings::Settings) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let pool = admin::connect(settings).await?;
        let applied = store::migrate(&pool).await?;
        tracing::info!("{}", store::migration_summary(&applied));
        Ok(())
    })
}

fn connections(settings: &settings::Settings, action: ConnectionsCommand) -> ExitCode {
    let result = runtime()
        .map_err(AdminError::Failed)
        .and_then(|rt| rt.block_on(run_connections(settings, action)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mqtt-supervisor: {e:#}");
            match e {
                AdminError::Invalid(_) => ExitCode::from(2),
                AdminError::Failed(_) => ExitCode::FAILURE,
            }
        }
    }
}

async fn run_connections(
    settings: &settings::Settings,
    action: ConnectionsCommand,
) -> Result<(), AdminError> {
    // Read input before touching the database: a bad file is a usage error.
    let new = match &action {
        ConnectionsCommand::Add(args) => Some(new_connection(args)?),
        _ => None,
    };
    let pool = admin::connect(settings).await?;
    match (action, new) {
        (ConnectionsCommand::List, _) => admin::list(&pool, settings).await?,
        (ConnectionsCommand::Add(_), Some(new)) => admin::add(&pool, settings, new).await?,
        (ConnectionsCommand::Add(_), None) => {}
        (ConnectionsCommand::Enable { name }, _) => admin::set_enabled(&pool, &name, true).await?,
        (ConnectionsCommand::Disable { name }, _) => {
            admin::set_enabled(&pool, &name, false).await?
        }
        (ConnectionsCommand::Remove { name }, _) => admin::remove(&pool, &name).await?,
    }
    Ok(())
}

fn new_connection(args: &AddArgs) -> Result<store::NewConnection, AdminError> {
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| {
            AdminError::Invalid(format!("cannot read the password from stdin: {e}"))
        })?;
        let password = line.trim_end_matches(['\r', '\n']).to_owned();
        if password.is_empty() {
            return Err(AdminError::Invalid(
                "--password-stdin: standard input held no password".to_owned(),
            ));
        }
        Some(password)
    } else {
        None
    };
    let ca_cert_pem = match &args.ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| AdminError::Invalid(format!("--ca-file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    Ok(store::NewConnection {
        name: args.name.clone(),
        broker_host: args.host.clone(),
        broker_port: args.port.map(i32::from),
        protocol: args.protocol.clone(),
        use_tls: args.tls,
        ca_cert_pem,
        username: args.username.clone(),
        password,
        subscriptions: (!args.subscribe.is_empty()).then(|| args.subscribe.clone()),
        is_enabled: !args.disabled,
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
