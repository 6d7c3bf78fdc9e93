//! Log output: text or JSON lines on stdout, ANSI colours only on a terminal
//! (supervisord and Docker write logs to files), `log` records (rumqttc,
//! sqlx) bridged into tracing.

use settings::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt;

/// Default filter when RUST_LOG is not set: our info, libraries' warnings.
const DEFAULT_FILTER: &str = "info,rumqttc=warn,sqlx=warn";

/// Installs the global subscriber; RUST_LOG overrides the default filter.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::stdout().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stdout);
    // A second init (tests embedding the service) is not an error worth failing for.
    let _ = match format {
        LogFormat::Text => builder.with_target(false).finish().try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .try_init(),
    };
}
