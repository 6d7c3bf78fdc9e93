// figment::Jail returns figment::Error, which is large; that is its API.
#![allow(clippy::result_large_err)]

use super::*;
use std::path::Path;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults_match_the_contract() {
    let loaded = load_from(None, env(&[("MQTT_INSTANCE_ID", "bfg_back")])).unwrap();
    let s = loaded.settings;
    assert_eq!(
        s.database_url.expose(),
        "postgres://localhost/mqtt_supervisor"
    );
    assert_eq!(s.instance_id, "bfg_back");
    assert!(s.clean_session && s.lwt_enabled);
    assert_eq!(s.keep_alive, Duration::from_secs(60));
    assert_eq!(s.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(s.monitor_interval, Duration::from_secs(30));
    assert_eq!(s.reconnect_cooldown, Duration::from_secs(30));
    assert_eq!(s.reconnect_cooldown_max, Duration::from_secs(600));
    assert_eq!(s.connect_timeout, Duration::from_secs(5));
    assert_eq!(s.takeover_window, Duration::from_secs(10));
    assert_eq!(s.max_packet_size, ByteSize(1_048_576));
    assert_eq!(s.status_topic, "{prefix}/backend/status");
    assert_eq!(s.inbox_buffer, 10_000);
    assert_eq!(s.inbox_retention, Duration::from_secs(7 * 86_400));
    assert_eq!(s.outbox_window, 32);
    assert_eq!(s.http_addr.to_string(), "0.0.0.0:8081");
    assert_eq!(s.log_format, LogFormat::Text);
    assert!(loaded.warnings.is_empty());
}

#[test]
fn environment_overrides_with_all_duration_forms() {
    let loaded = load_from(
        None,
        env(&[
            ("MQTT_KEEP_ALIVE", "15"),
            ("MQTT_SHUTDOWN_TIMEOUT", "500ms"),
            ("MQTT_MONITOR_INTERVAL", "2m"),
            ("MQTT_RECONNECT_COOLDOWN", "30s"),
            ("MQTT_MAX_PACKET_SIZE", "256KiB"),
            ("MQTT_CLEAN_SESSION", "false"),
            ("MQTT_INSTANCE_ID", "007"),
            ("MQTT_LOG_FORMAT", "json"),
            ("DATABASE_URL", "postgres://u:pw@db:5432/x"),
        ]),
    )
    .unwrap();
    let s = loaded.settings;
    assert_eq!(s.keep_alive, Duration::from_secs(15));
    assert_eq!(s.shutdown_timeout, Duration::from_millis(500));
    assert_eq!(s.monitor_interval, Duration::from_secs(120));
    assert_eq!(s.reconnect_cooldown, Duration::from_secs(30));
    assert_eq!(s.max_packet_size, ByteSize(262_144));
    assert!(!s.clean_session);
    assert_eq!(s.instance_id, "007");
    assert_eq!(s.log_format, LogFormat::Json);
    let (_, shown, source) = loaded
        .effective
        .iter()
        .find(|(v, _, _)| *v == "MQTT_KEEP_ALIVE")
        .unwrap();
    assert_eq!(shown, "15s");
    assert_eq!(*source, SettingSource::Environment);
}

#[test]
fn file_sits_between_defaults_and_environment() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "mqtt.toml",
            "keep_alive = 20\nconnect_timeout = \"2s\"\ninstance_id = \"from_file\"\n",
        )?;
        let path = jail.directory().join("mqtt.toml");
        let loaded = load_from(Some(&path), env(&[("MQTT_KEEP_ALIVE", "25")])).unwrap();
        assert_eq!(loaded.settings.keep_alive, Duration::from_secs(25));
        assert_eq!(loaded.settings.connect_timeout, Duration::from_secs(2));
        assert_eq!(loaded.settings.instance_id, "from_file");
        // MQTT_CONFIG_FILE names the file when --config is absent.
        let via_env =
            load_from(None, env(&[("MQTT_CONFIG_FILE", path.to_str().unwrap())])).unwrap();
        assert_eq!(via_env.settings.keep_alive, Duration::from_secs(20));
        Ok(())
    });
}

#[test]
fn unknown_file_keys_are_errors_and_unknown_env_only_warnings() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("bad.toml", "keep_alive = 20\nkeepalive = 3\n")?;
        let path = jail.directory().join("bad.toml");
        let err = load_from(Some(&path), env(&[])).unwrap_err();
        assert!(err.to_string().contains("unknown key `keepalive`"), "{err}");
        Ok(())
    });
    let loaded = load_from(None, env(&[("MQTT_KEEPALIVE", "3")])).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].contains("MQTT_KEEPALIVE"));
}

#[test]
fn bad_values_name_the_variable() {
    for (var, value) in [
        ("MQTT_KEEP_ALIVE", "soon"),
        ("MQTT_KEEP_ALIVE", "2"),
        ("MQTT_SHUTDOWN_TIMEOUT", "-1"),
        ("MQTT_MONITOR_INTERVAL", "0"),
        ("MQTT_RECONNECT_COOLDOWN_MAX", "10s"),
        ("MQTT_RECONNECT_COOLDOWN_MAX", "2d"),
        ("MQTT_HTTP_ADDR", "not-an-address"),
        ("MQTT_LOG_FORMAT", "xml"),
        ("MQTT_MAX_PACKET_SIZE", "1TB"),
        ("MQTT_STATUS_TOPIC", "{prefix}/#"),
        ("MQTT_INBOX_BUFFER", "10"),
        ("MQTT_INBOX_RETENTION", "1s"),
        ("MQTT_OUTBOX_WINDOW", "0"),
        ("MQTT_OUTBOX_WINDOW", "70000"),
        ("MQTT_API_TOKEN", "short"),
        ("MQTT_LEASE_PERIOD", "1s"),
        ("MQTT_LEASE_PERIOD", "1h"),
        ("MQTT_LEASE_PERIOD", "10"),
        ("MQTT_API_TOKEN", "has a space in it, sixteen+"),
        ("MQTT_METRICS_PER_CONNECTION", "sometimes"),
        ("MQTT_STATUS_TOPIC", "{tenant}/status"),
        ("MQTT_STATUS_TOPIC", "{prefix}/status\n"),
        ("MQTT_INSTANCE_ID", "web\n1"),
        ("MQTT_CLEAN_SESSION", "maybe"),
        ("DATABASE_URL", "mysql://x"),
    ] {
        let err = load_from(None, env(&[(var, value)])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(var), "{var}={value}: {text}");
        assert!(text.contains("environment"), "{var}={value}: {text}");
    }
}

#[test]
fn database_password_never_printed() {
    let canary = "canary-s3cret-db";
    let url = format!("postgres://app:{canary}@db/x");
    let loaded = load_from(None, env(&[("DATABASE_URL", &url)])).unwrap();
    let printed = format!("{:?} {:?}", loaded.settings, loaded.effective);
    assert!(!printed.contains(canary), "{printed}");
    assert!(printed.contains("postgres://app:***@db/x"));
    let err = load_from(None, env(&[("DATABASE_URL", &format!("http://{canary}"))])).unwrap_err();
    assert!(!err.to_string().contains(canary));
}

#[test]
fn missing_file_is_an_error() {
    let err = load_from(Some(Path::new("/nonexistent/mqtt.toml")), env(&[])).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/mqtt.toml"));
}

#[test]
fn durations_and_sizes_parse() {
    assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert!(parse_duration("").is_err());
    assert!(parse_duration("5 parsecs").is_err());
    assert_eq!(ByteSize::parse("1MiB").unwrap(), ByteSize(1_048_576));
    assert_eq!(ByteSize::parse("10kB").unwrap(), ByteSize(10_000));
    assert_eq!(ByteSize::parse("42").unwrap(), ByteSize(42));
    assert!(ByteSize::parse("MiB").is_err());
    assert_eq!(ByteSize(1_048_576).to_string(), "1MiB");
}

#[test]
fn client_id_parts_are_sanitised() {
    assert_eq!(sanitize_client_id_part("bfg.back end/1"), "bfg_back_end_1");
    assert_eq!(sanitize_client_id_part("site_88-a"), "site_88-a");
}

#[cfg(unix)]
fn not_utf8() -> std::ffi::OsString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(b"caf\xe9-\xff").to_owned()
}

#[cfg(unix)]
#[test]
fn unrelated_variables_that_are_not_utf8_are_ignored() {
    use std::ffi::OsString;
    let loaded = load_from(
        None,
        [
            (OsString::from("LESSOPEN"), not_utf8()),
            (not_utf8(), OsString::from("value")),
            (
                OsString::from("MQTT_INSTANCE_ID"),
                OsString::from("bfg_back"),
            ),
        ],
    )
    .unwrap();
    assert_eq!(loaded.settings.instance_id, "bfg_back");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    // Another tool's MQTT_* variable: warned about by name, value unread.
    let loaded = load_from(None, [(OsString::from("MQTT_OTHER_TOOL"), not_utf8())]).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].contains("MQTT_OTHER_TOOL"));
}

#[cfg(unix)]
#[test]
fn our_variables_that_are_not_utf8_are_errors_naming_them() {
    use std::ffi::OsString;
    let ours = load::VARIABLES
        .iter()
        .map(|(_, var)| *var)
        .chain([load::CONFIG_FILE_VAR]);
    for var in ours {
        let err = load_from(None, [(OsString::from(var), not_utf8())]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(var), "{var}: {text}");
        assert!(text.contains("UTF-8"), "{var}: {text}");
        assert!(text.contains("environment"), "{var}: {text}");
    }
}

#[test]
fn load_from_takes_str_and_string_pairs() {
    let by_str = load_from(None, [("MQTT_KEEP_ALIVE", "15")]).unwrap();
    let by_string = load_from(None, env(&[("MQTT_KEEP_ALIVE", "15")])).unwrap();
    assert_eq!(by_str.settings, by_string.settings);
}

/// Every form in which libpq or sqlx accept a secret in a URL: the canary
/// must never show, the rest of the URL must.
#[test]
fn check_config_values_hide_query_passwords() {
    let canary = "canary-q-5e2b";
    let url = format!("postgres://app@db/x?sslmode=require&password={canary}");
    let loaded = load_from(None, [("DATABASE_URL", url.as_str())]).unwrap();
    let printed = format!("{:?}", loaded.effective);
    assert!(!printed.contains(canary), "{printed}");
    assert!(
        printed.contains("postgres://app@db/x?sslmode=require&password=***"),
        "{printed}"
    );
}

#[test]
fn file_syntax_errors_do_not_quote_the_file() {
    figment::Jail::expect_with(|jail| {
        let canary = "canary-toml-91f0";
        jail.create_file(
            "broken.toml",
            &format!("keep_alive = 20\ndatabase_url = \"postgres://app:{canary}@db/x\n"),
        )?;
        let path = jail.directory().join("broken.toml");
        let err = load_from(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(!err.contains(canary), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("broken.toml"), "{err}");
        Ok(())
    });
}

/// A DATABASE_URL that is not a URL fails at load, naming the variable and
/// never echoing the value.
#[test]
fn malformed_database_url_is_a_settings_error() {
    const CANARY: &str = "canary-9b2e";
    for url in [
        format!("postgres://app:{CANARY}#x@db/x"),
        format!("postgres://app:{CANARY}@db:99999/x"),
        format!("postgres://[::1/{CANARY}"),
        format!("mysql://{CANARY}@db/x"),
    ] {
        let err = load_from(None, env(&[("DATABASE_URL", &url)])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("DATABASE_URL"), "{url}: {text}");
        assert!(!text.contains(CANARY), "{url}: {text}");
        assert!(text.contains("not shown"), "{url}: {text}");
    }
    assert!(
        load_from(
            None,
            env(&[("DATABASE_URL", "postgresql:///x?host=/run/pg")])
        )
        .is_ok()
    );
}

/// Value errors say what was expected in plain words: no `at 0` offsets
/// into a string the reader does not see, no doubled backticks.
#[test]
fn value_errors_read_plainly() {
    for (var, value, expected) in [
        (
            "MQTT_KEEP_ALIVE",
            "abc",
            "`abc` is not a duration; expected whole seconds (`5`)",
        ),
        (
            "MQTT_SHUTDOWN_TIMEOUT",
            "5 parsecs",
            "`parsecs` is not a unit of time",
        ),
        (
            "MQTT_LOG_FORMAT",
            "xml",
            "expected `text` or `json`, found `xml`",
        ),
        (
            "MQTT_CLEAN_SESSION",
            "maybe",
            "expected a boolean, found string \"maybe\"",
        ),
    ] {
        let text = load_from(None, env(&[(var, value)]))
            .unwrap_err()
            .to_string();
        assert!(text.contains(expected), "{var}={value}: {text}");
        assert!(!text.contains(" at 0"), "{text}");
        assert!(!text.contains("``"), "{text}");
    }
}
