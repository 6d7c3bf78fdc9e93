//! Log output: text or JSON lines on stdout, ANSI colours only on a terminal
//! (supervisord and Docker write logs to files), `log` records (rumqttc,
//! sqlx) bridged into tracing.

use settings::LogFormat;
use std::ffi::OsString;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Default filter when RUST_LOG is not set: our info, libraries' warnings.
/// rumqttc's `state` modules log a whole unexpected packet from the broker
/// (up to MQTT_MAX_PACKET_SIZE) at error level; the connection's own error
/// line reports the same failure, cleaned and short, so they are off.
const DEFAULT_FILTER: &str =
    "info,rumqttc=warn,rumqttc::state=off,rumqttc::v5::state=off,sqlx=warn";

/// Installs the global subscriber; RUST_LOG overrides the default filter.
/// A RUST_LOG that cannot be used (not UTF-8, not a filter) falls back to
/// the default filter with a warning, never a panic.
pub fn init(format: LogFormat) {
    let (filter, problem) = filter_from(std::env::var_os("RUST_LOG"));
    let ansi = std::io::stdout().is_terminal();
    // A second init (tests embedding the service) is not an error worth failing for.
    let _ = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_writer(std::io::stdout)
            .with_target(false)
            .finish()
            .try_init(),
        // The current span's fields (a connection's `connection` and
        // `client_id`) at the top level, next to the event's own, so every
        // connection event carries them the same way in both formats.
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(
                json_subscriber::fmt::layer()
                    .with_writer(std::io::stdout)
                    .flatten_event(true)
                    .with_span_list(false)
                    .flatten_current_span_on_top_level(true),
            )
            .try_init(),
    };
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

/// The filter RUST_LOG asks for, or the default and why it was not used.
fn filter_from(rust_log: Option<OsString>) -> (EnvFilter, Option<String>) {
    let default = || EnvFilter::new(DEFAULT_FILTER);
    let Some(raw) = rust_log else {
        return (default(), None);
    };
    let Some(text) = raw.to_str() else {
        return (
            default(),
            Some(format!(
                "RUST_LOG is not valid UTF-8; using the default filter `{DEFAULT_FILTER}`."
            )),
        );
    };
    match EnvFilter::builder().parse(text) {
        Ok(filter) => (filter, None),
        Err(e) => (
            default(),
            Some(format!(
                "RUST_LOG is not a valid filter ({e}); using the default filter `{DEFAULT_FILTER}`."
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_rust_log_falls_back_with_a_reason() {
        use std::os::unix::ffi::OsStrExt;
        let (_, problem) = filter_from(None);
        assert!(problem.is_none());
        let (filter, problem) = filter_from(Some("debug".into()));
        assert!(problem.is_none());
        assert_eq!(filter.to_string(), "debug");
        let raw = std::ffi::OsStr::from_bytes(b"debug\xff").to_owned();
        let (filter, problem) = filter_from(Some(raw));
        assert!(problem.unwrap().contains("not valid UTF-8"));
        assert_eq!(
            filter.to_string(),
            EnvFilter::new(DEFAULT_FILTER).to_string()
        );
        let (_, problem) = filter_from(Some("info,sqlx=loud".into()));
        assert!(problem.unwrap().contains("not a valid filter"));
    }
}
