//! Where settings come from: defaults, an optional TOML file, the environment.

use crate::units::format_duration;
use crate::{Settings, SettingsError, redact_url, validate};
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::{Figment, Metadata, Source};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// Every setting: its key (in the TOML file) and its environment variable.
pub const VARIABLES: &[(&str, &str)] = &[
    ("database_url", "DATABASE_URL"),
    ("instance_id", "MQTT_INSTANCE_ID"),
    ("clean_session", "MQTT_CLEAN_SESSION"),
    ("lwt_enabled", "MQTT_LWT_ENABLED"),
    ("keep_alive", "MQTT_KEEP_ALIVE"),
    ("shutdown_timeout", "MQTT_SHUTDOWN_TIMEOUT"),
    ("monitor_interval", "MQTT_MONITOR_INTERVAL"),
    ("reconnect_cooldown", "MQTT_RECONNECT_COOLDOWN"),
    ("reconnect_cooldown_max", "MQTT_RECONNECT_COOLDOWN_MAX"),
    ("connect_timeout", "MQTT_CONNECT_TIMEOUT"),
    ("takeover_window", "MQTT_TAKEOVER_WINDOW"),
    ("max_packet_size", "MQTT_MAX_PACKET_SIZE"),
    ("status_topic", "MQTT_STATUS_TOPIC"),
    ("inbox_buffer", "MQTT_INBOX_BUFFER"),
    ("inbox_retention", "MQTT_INBOX_RETENTION"),
    ("outbox_window", "MQTT_OUTBOX_WINDOW"),
    ("http_addr", "MQTT_HTTP_ADDR"),
    ("api_token", "MQTT_API_TOKEN"),
    ("lease_period", "MQTT_LEASE_PERIOD"),
    ("metrics_per_connection", "MQTT_METRICS_PER_CONNECTION"),
    ("log_format", "MQTT_LOG_FORMAT"),
];

/// Environment variable naming the TOML file when `--config` is not given.
pub const CONFIG_FILE_VAR: &str = "MQTT_CONFIG_FILE";

/// Where one setting's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingSource {
    /// The built-in default.
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// The environment variable.
    Environment,
}

impl fmt::Display for SettingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingSource::Default => f.write_str("default"),
            SettingSource::File(p) => write!(f, "file {}", p.display()),
            SettingSource::Environment => f.write_str("environment"),
        }
    }
}

/// Validated settings, with the warnings to log once logging is up and the
/// source of every value (for `check-config`).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The settings.
    pub settings: Settings,
    /// Unknown `MQTT_*` variables and the like; not fatal.
    pub warnings: Vec<String>,
    /// (variable, value with secrets redacted, source), in contract order.
    pub effective: Vec<(&'static str, String, SettingSource)>,
}

/// Loads settings from defaults, the file (`config_file`, else
/// `MQTT_CONFIG_FILE`) and the process environment, then validates them.
///
/// Variables that are not ours are never looked at, so an unrelated
/// variable that is not UTF-8 cannot stop the program.
pub fn load(config_file: Option<&Path>) -> Result<Loaded, SettingsError> {
    load_from(config_file, std::env::vars_os())
}

/// Like [`load`], with the environment given (for tests and embedding):
/// pairs of anything that converts into an [`OsString`] (`&str`, `String`,
/// `OsString`, what [`std::env::vars_os`] yields).
///
/// One of our variables whose value is not UTF-8 is an error naming it.
pub fn load_from<K, V>(
    config_file: Option<&Path>,
    env: impl IntoIterator<Item = (K, V)>,
) -> Result<Loaded, SettingsError>
where
    K: Into<OsString>,
    V: Into<OsString>,
{
    let env = ours(env)?;
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let file: Option<PathBuf> = config_file.map(Path::to_path_buf).or_else(|| {
        lookup(CONFIG_FILE_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });

    let mut figment = Figment::from(Serialized::defaults(defaults()));
    if let Some(path) = &file {
        if !path.is_file() {
            return Err(SettingsError::File {
                path: path.display().to_string(),
                reason: "no such file".to_owned(),
            });
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let env_pairs: Vec<(String, String)> = env
        .iter()
        .filter_map(|(k, v)| {
            VARIABLES
                .iter()
                .find(|(_, var)| var == k)
                .map(|(key, _)| ((*key).to_owned(), v.clone()))
        })
        .collect();
    figment = figment.merge(EnvPairs(env_pairs));

    let settings: Settings = figment
        .extract()
        .map_err(|e| map_figment_error(e, file.as_deref()))?;
    validate::validate(&settings).map_err(|(key, reason)| SettingsError::Invalid {
        variable: variable_of(key).to_owned(),
        source_name: source_of(&figment, key).to_string(),
        reason,
    })?;

    let warnings = env
        .iter()
        .filter(|(k, _)| {
            k.starts_with("MQTT_")
                && k != CONFIG_FILE_VAR
                && !VARIABLES.iter().any(|(_, var)| var == k)
        })
        .map(|(k, _)| format!("Unknown setting {k} in the environment is ignored."))
        .collect();
    let effective = VARIABLES
        .iter()
        .map(|(key, var)| {
            (
                *var,
                display_value(&settings, key),
                source_of(&figment, key),
            )
        })
        .collect();
    Ok(Loaded {
        settings,
        warnings,
        effective,
    })
}

/// The variables that concern us, as UTF-8: our settings, MQTT_CONFIG_FILE,
/// and the names of other `MQTT_*` variables (for the unknown-variable
/// warning, which never shows a value). Everything else is skipped unread.
fn ours<K, V>(env: impl IntoIterator<Item = (K, V)>) -> Result<Vec<(String, String)>, SettingsError>
where
    K: Into<OsString>,
    V: Into<OsString>,
{
    let mut kept = Vec::new();
    for (name, value) in env {
        // Our names are ASCII: a name that is not UTF-8 is someone else's.
        let Ok(name) = name.into().into_string() else {
            continue;
        };
        let known = name == CONFIG_FILE_VAR || VARIABLES.iter().any(|(_, var)| *var == name);
        if known {
            let value = value
                .into()
                .into_string()
                .map_err(|_| SettingsError::Invalid {
                    variable: name.clone(),
                    source_name: SettingSource::Environment.to_string(),
                    reason: "not valid UTF-8 (the value is not shown)".to_owned(),
                })?;
            kept.push((name, value));
        } else if name.starts_with("MQTT_") {
            kept.push((name, String::new()));
        }
    }
    Ok(kept)
}

/// The environment as a figment provider, limited to the known variables and
/// keyed by their file keys. Written out because figment's `Env` lowercases
/// and splits names, and we need exact names for error messages.
struct EnvPairs(Vec<(String, String)>);

impl figment::Provider for EnvPairs {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment")
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, raw) in &self.0 {
            // Same parsing as figment's Env: `5` is a number, `true` a bool.
            let value: Value = raw.parse().unwrap_or_else(|_| Value::from(raw.clone()));
            let value = match value {
                // Keep text settings as written (`MQTT_INSTANCE_ID=007`).
                _ if matches!(
                    key.as_str(),
                    "instance_id" | "status_topic" | "database_url" | "api_token"
                ) =>
                {
                    Value::from(raw.clone())
                }
                v => v,
            };
            dict.insert(key.clone(), value);
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

fn defaults() -> Dict {
    let d = Settings::defaults();
    let mut dict = Dict::new();
    let secs = |v: std::time::Duration| Value::from(v.as_secs());
    dict.insert(
        "database_url".into(),
        Value::from(d.database_url.expose().to_owned()),
    );
    dict.insert("instance_id".into(), Value::from(d.instance_id));
    dict.insert("clean_session".into(), Value::from(d.clean_session));
    dict.insert("lwt_enabled".into(), Value::from(d.lwt_enabled));
    dict.insert("keep_alive".into(), secs(d.keep_alive));
    dict.insert("shutdown_timeout".into(), secs(d.shutdown_timeout));
    dict.insert("monitor_interval".into(), secs(d.monitor_interval));
    dict.insert("reconnect_cooldown".into(), secs(d.reconnect_cooldown));
    dict.insert(
        "reconnect_cooldown_max".into(),
        secs(d.reconnect_cooldown_max),
    );
    dict.insert("connect_timeout".into(), secs(d.connect_timeout));
    dict.insert("takeover_window".into(), secs(d.takeover_window));
    dict.insert("max_packet_size".into(), Value::from(d.max_packet_size.0));
    dict.insert("status_topic".into(), Value::from(d.status_topic));
    dict.insert("inbox_buffer".into(), Value::from(d.inbox_buffer));
    dict.insert("inbox_retention".into(), secs(d.inbox_retention));
    dict.insert("outbox_window".into(), Value::from(d.outbox_window));
    dict.insert("http_addr".into(), Value::from(d.http_addr.to_string()));
    dict.insert("api_token".into(), Value::from(String::new()));
    dict.insert("lease_period".into(), secs(d.lease_period));
    dict.insert(
        "metrics_per_connection".into(),
        Value::from(d.metrics_per_connection),
    );
    dict.insert("log_format".into(), Value::from("text"));
    dict
}

fn variable_of(key: &str) -> &str {
    VARIABLES
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, var)| *var)
        .unwrap_or(key)
}

fn source_of(figment: &Figment, key: &str) -> SettingSource {
    match figment.find_metadata(key) {
        Some(meta) => match &meta.source {
            Some(Source::File(path)) => SettingSource::File(path.clone()),
            _ if meta.name == "environment" => SettingSource::Environment,
            _ => SettingSource::Default,
        },
        None => SettingSource::Default,
    }
}

fn map_figment_error(err: figment::Error, file: Option<&Path>) -> SettingsError {
    use figment::error::Kind;
    let key = err.path.last().cloned().unwrap_or_default();
    let from_file = matches!(
        err.metadata.as_ref().and_then(|m| m.source.as_ref()),
        Some(Source::File(_))
    );
    if let Kind::UnknownField(field, _) = &err.kind {
        return SettingsError::File {
            path: file.map(|p| p.display().to_string()).unwrap_or_default(),
            reason: format!("unknown key `{field}`"),
        };
    }
    if key.is_empty() && from_file {
        return SettingsError::File {
            path: file.map(|p| p.display().to_string()).unwrap_or_default(),
            reason: without_source_lines(&err.kind.to_string()),
        };
    }
    let source_name = match err.metadata.as_ref() {
        Some(m) => match &m.source {
            Some(Source::File(p)) => SettingSource::File(p.clone()).to_string(),
            _ if m.name == "environment" => SettingSource::Environment.to_string(),
            _ => SettingSource::Default.to_string(),
        },
        None => "unknown".to_owned(),
    };
    // The value of DATABASE_URL may carry a password: never echo it.
    let reason = if key == "database_url" {
        "expected a text URL such as postgres://user@host/db".to_owned()
    } else {
        reason_of(&err.kind)
    };
    SettingsError::Invalid {
        variable: variable_of(&key).to_owned(),
        source_name,
        reason,
    }
}

/// figment's message for a bad value, in our words: it writes `expected
/// ``text` or `json``` (its list of variants quoted twice) and `invalid
/// type: found …, expected …`; say what was expected first, then what was
/// found.
fn reason_of(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownVariant(found, expected) => {
            format!("expected {}, found `{found}`", one_of(expected))
        }
        Kind::InvalidType(found, expected) | Kind::InvalidValue(found, expected) => {
            format!("expected {expected}, found {found}")
        }
        // Our own messages (durations, sizes) and everything else as it is.
        other => other.to_string(),
    }
}

/// `` `text` or `json` ``, `` one of `a`, `b`, `c` ``.
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [] => "nothing".to_owned(),
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        many => format!("one of {}", many.join(", ")),
    }
}

/// A TOML syntax error without the file's text: the parser quotes the line
/// it stopped at (`1 | database_url = "postgres://app:pw@…`), which may
/// hold the database password. Line and column stay, and what was expected.
fn without_source_lines(message: &str) -> String {
    let is_source = |line: &str| {
        let line = line.trim_start();
        let rest = line.trim_start_matches(|c: char| c.is_ascii_digit());
        rest.trim_start().starts_with('|')
    };
    message
        .lines()
        .filter(|line| !line.trim().is_empty() && !is_source(line))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(": ")
}

/// A value as `check-config` shows it, secrets redacted.
fn display_value(s: &Settings, key: &str) -> String {
    match key {
        "database_url" => redact_url(s.database_url.expose()),
        "instance_id" => s.instance_id.clone(),
        "clean_session" => s.clean_session.to_string(),
        "lwt_enabled" => s.lwt_enabled.to_string(),
        "keep_alive" => format_duration(s.keep_alive),
        "shutdown_timeout" => format_duration(s.shutdown_timeout),
        "monitor_interval" => format_duration(s.monitor_interval),
        "reconnect_cooldown" => format_duration(s.reconnect_cooldown),
        "reconnect_cooldown_max" => format_duration(s.reconnect_cooldown_max),
        "connect_timeout" => format_duration(s.connect_timeout),
        "takeover_window" => format_duration(s.takeover_window),
        "max_packet_size" => s.max_packet_size.to_string(),
        "status_topic" => s.status_topic.clone(),
        "inbox_buffer" => s.inbox_buffer.to_string(),
        "inbox_retention" => format_duration(s.inbox_retention),
        "outbox_window" => s.outbox_window.to_string(),
        "http_addr" => s.http_addr.to_string(),
        "lease_period" => format_duration(s.lease_period),
        "api_token" if s.api_token.expose().is_empty() => "(not set)".to_owned(),
        "api_token" => "***".to_owned(),
        "metrics_per_connection" => s.metrics_per_connection.to_string(),
        "log_format" => format!("{:?}", s.log_format).to_lowercase(),
        _ => String::new(),
    }
}
