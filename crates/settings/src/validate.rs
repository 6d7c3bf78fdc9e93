//! Pure checks of loaded settings: ranges and shapes, no network.

use crate::Settings;
use std::time::Duration;

/// Largest packet MQTT can express (remaining length 268,435,455 plus header).
pub const MQTT_MAX_PACKET: u64 = 268_435_460;

/// Checks ranges; on failure returns the file key and the reason.
pub fn validate(s: &Settings) -> Result<(), (&'static str, String)> {
    validate_database_url(s.database_url.expose()).map_err(|e| ("database_url", e))?;
    if s.instance_id.is_empty() {
        return Err(("instance_id", "must not be empty".to_owned()));
    }
    if s.instance_id.len() > 64 {
        return Err(("instance_id", "must be at most 64 characters".to_owned()));
    }
    if s.instance_id.chars().any(char::is_control) {
        return Err((
            "instance_id",
            "must not contain control characters (a tab, a newline)".to_owned(),
        ));
    }
    let ka = s.keep_alive;
    if ka < Duration::from_secs(5) || ka > Duration::from_secs(65_535) || ka.subsec_nanos() != 0 {
        return Err((
            "keep_alive",
            "must be whole seconds from 5 to 65535 (MQTT 5 clients need at least 5 s)".to_owned(),
        ));
    }
    for (key, value, min) in [
        (
            "shutdown_timeout",
            s.shutdown_timeout,
            Duration::from_millis(100),
        ),
        (
            "monitor_interval",
            s.monitor_interval,
            Duration::from_secs(1),
        ),
        (
            "connect_timeout",
            s.connect_timeout,
            Duration::from_millis(100),
        ),
        (
            "reconnect_cooldown",
            s.reconnect_cooldown,
            Duration::from_secs(1),
        ),
    ] {
        if value < min {
            return Err((key, format!("must be at least {} ms", min.as_millis())));
        }
        if value > Duration::from_secs(86_400) {
            return Err((key, "must be at most one day".to_owned()));
        }
    }
    if s.reconnect_cooldown_max < s.reconnect_cooldown
        || s.reconnect_cooldown_max > Duration::from_secs(86_400)
    {
        return Err((
            "reconnect_cooldown_max",
            "must be from MQTT_RECONNECT_COOLDOWN to one day".to_owned(),
        ));
    }
    if s.takeover_window > Duration::from_secs(3_600) {
        return Err((
            "takeover_window",
            "must be at most one hour (0 turns it off)".to_owned(),
        ));
    }
    if s.max_packet_size.0 < 1_024 || s.max_packet_size.0 > MQTT_MAX_PACKET {
        return Err((
            "max_packet_size",
            format!("must be from 1KiB to {MQTT_MAX_PACKET} bytes"),
        ));
    }
    validate_status_topic(&s.status_topic).map_err(|e| ("status_topic", e))?;
    if !(100..=10_000_000).contains(&s.inbox_buffer) {
        return Err((
            "inbox_buffer",
            "must be from 100 to 10000000 messages".to_owned(),
        ));
    }
    if s.inbox_retention < Duration::from_secs(60)
        || s.inbox_retention > Duration::from_secs(3_650 * 86_400)
    {
        return Err((
            "inbox_retention",
            "must be from 1 minute to 3650 days".to_owned(),
        ));
    }
    if !(1..=1_000).contains(&s.outbox_window) {
        return Err((
            "outbox_window",
            "must be from 1 to 1000 messages".to_owned(),
        ));
    }
    validate_api_token(s.api_token.expose()).map_err(|e| ("api_token", e))?;
    if s.lease_period < Duration::from_secs(3) || s.lease_period > Duration::from_secs(300) {
        return Err((
            "lease_period",
            "must be from 3 seconds to 5 minutes".to_owned(),
        ));
    }
    // A replica that cannot renew stops at half the period and its
    // connections' goodbyes take at most the connect timeout: they must be
    // over before the leases expire and another replica connects.
    if s.lease_period < 2 * (s.connect_timeout + Duration::from_secs(1)) {
        return Err((
            "lease_period",
            format!(
                "must be at least twice MQTT_CONNECT_TIMEOUT plus 2 s ({} s with MQTT_CONNECT_TIMEOUT {} s), \
                 so that a replica that cannot renew has closed its connections before its leases expire",
                (2 * (s.connect_timeout + Duration::from_secs(1))).as_secs(),
                s.connect_timeout.as_secs()
            ),
        ));
    }
    Ok(())
}

/// MQTT_API_TOKEN: empty (write endpoints off), or at least 16 visible
/// ASCII characters, so that it fits an `Authorization` header as it is
/// and is not guessed. The reason never shows the value.
fn validate_api_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Ok(());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII characters without spaces \
                    (the value is not shown)"
            .to_owned());
    }
    if token.len() < 16 {
        return Err(format!(
            "must be at least 16 characters, it has {} (generate one with \
             `openssl rand -hex 32`)",
            token.len()
        ));
    }
    Ok(())
}

/// The shape of DATABASE_URL: a URL with the scheme postgres or
/// postgresql. The reason never repeats the value, which may hold a
/// password; the url crate's messages (`invalid port number`, `empty host`)
/// do not quote it.
fn validate_database_url(url: &str) -> Result<(), String> {
    const HIDDEN: &str = "(the value is not shown: it may hold a password)";
    const EXAMPLE: &str = "expected postgres://user:password@host:5432/database, \
                           with @ : / ? # in the password percent-encoded (@ is %40)";
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "expected a URL starting with postgres:// or postgresql:// {HIDDEN}"
        ));
    }
    match url::Url::parse(url) {
        Err(e) => Err(format!("not a valid URL ({e}): {EXAMPLE} {HIDDEN}")),
        Ok(parsed) if parsed.cannot_be_a_base() => {
            Err(format!("not a valid URL: {EXAMPLE} {HIDDEN}"))
        }
        Ok(_) => Ok(()),
    }
}

fn validate_status_topic(template: &str) -> Result<(), String> {
    if template.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if template.contains(['+', '#']) {
        return Err(
            "must not contain the wildcards + or # (it is a topic, not a filter)".to_owned(),
        );
    }
    if template.chars().any(char::is_control) {
        return Err("must not contain control characters (a tab, a newline, NUL)".to_owned());
    }
    let rest = template.replace("{prefix}", "").replace("{name}", "");
    if rest.contains(['{', '}']) {
        return Err("only the placeholders {prefix} and {name} are known".to_owned());
    }
    Ok(())
}
