//! What the service's text log says: the moment the last connection came up,
//! its own start-up and shutdown figures. The log is written with
//! `MQTT_LOG_FORMAT=text`: an RFC 3339 timestamp, the level, the message,
//! then `name=value` fields.

use chrono::{DateTime, Utc};
use std::time::SystemTime;

/// Seconds from `started` (the wall-clock instant the process was spawned)
/// to the latest "Connected." line, if the log has any (needs `info`).
pub fn last_connected_secs(log: &str, started: SystemTime) -> Option<f64> {
    let started: DateTime<Utc> = started.into();
    log.lines()
        .filter(|l| l.contains("}: Connected."))
        .filter_map(timestamp)
        .max()
        .map(|last| (last - started).as_seconds_f64())
}

/// The timestamp a log line starts with.
fn timestamp(line: &str) -> Option<DateTime<Utc>> {
    let first = line.split_whitespace().next()?;
    DateTime::parse_from_rfc3339(first)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The seconds in the service's "All connections disconnected in X s."
/// line: its `elapsed_secs` field (full precision) or else the sentence.
pub fn reported_shutdown_secs(log: &str) -> Option<f64> {
    const SENTENCE: &str = "All connections disconnected in ";
    let line = log.lines().rev().find(|l| l.contains(SENTENCE))?;
    if let Some(v) = field(line, "elapsed_secs") {
        return Some(v);
    }
    let rest = &line[line.find(SENTENCE)? + SENTENCE.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// `startup_secs` of the service's "Ready:" line.
pub fn ready_secs(log: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains("Ready:"))?;
    field(line, "startup_secs")
}

/// A numeric `name=value` field of a text log line.
fn field(line: &str, name: &str) -> Option<f64> {
    let key = format!(" {name}=");
    let at = line.find(&key)? + key.len();
    line[at..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reads_the_shutdown_line() {
        let log = "2026-01-01T00:00:00Z  INFO All connections disconnected in 0.12 s. connections=10 elapsed_secs=0.1234\n";
        assert_eq!(reported_shutdown_secs(log), Some(0.1234));
        let plain = "INFO All connections disconnected in 0.12 s.\n";
        assert_eq!(reported_shutdown_secs(plain), Some(0.12));
        assert_eq!(reported_shutdown_secs("nothing"), None);
    }

    #[test]
    fn finds_the_last_connection() {
        let log = "\
2026-11-22T06:27:43.100000Z  INFO Ready: 2 connection(s) started. connections=2 startup_secs=0.25
2026-11-22T06:27:44.500000Z  INFO connection{connection=b client_id=b_x}: Connected. broker=h:1
2026-11-22T06:27:43.500000Z  INFO connection{connection=a client_id=a_x}: Connected. broker=h:1
";
        let started = SystemTime::UNIX_EPOCH
            + Duration::from_secs_f64(
                DateTime::parse_from_rfc3339("2026-11-22T06:27:43Z")
                    .map(|t| t.timestamp() as f64)
                    .unwrap_or_default(),
            );
        let secs = last_connected_secs(log, started).unwrap_or_default();
        assert!((secs - 1.5).abs() < 1e-6, "{secs}");
        assert_eq!(ready_secs(log), Some(0.25));
    }
}
