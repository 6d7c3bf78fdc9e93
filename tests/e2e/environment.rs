//! The environment is not ours alone: a variable of another program that is
//! not UTF-8 (a Latin-1 file name, a binary token) must not stop any command,
//! `health` (the Docker HEALTHCHECK) least of all. One of our own variables
//! that is not UTF-8 is a bad setting: exit 2, naming it.

use mqtt_supervisor_tests::{App, database_url, free_port};
use sqlx::PgPool;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Latin-1 `café` and a stray byte: not UTF-8.
fn not_utf8() -> &'static OsStr {
    OsStr::from_bytes(b"caf\xe9-\xff")
}

/// Variables of other programs: a non-UTF-8 value, and a non-UTF-8 name.
fn foreign() -> Vec<(&'static OsStr, &'static OsStr)> {
    vec![
        (OsStr::new("LEGACY_PATH"), not_utf8()),
        (not_utf8(), OsStr::new("x")),
    ]
}

/// Nothing listens there.
fn closed_database_url() -> String {
    format!("postgres://postgres@127.0.0.1:{}/nowhere", free_port())
}

#[tokio::test]
async fn check_config_ignores_foreign_non_utf8_variables() {
    let mut app = App::spawn_env_os(&closed_database_url(), &["check-config"], &foreign());
    assert_eq!(app.exit_code().await, Some(0), "{}", app.output());
    assert!(
        app.output().contains("MQTT_INSTANCE_ID"),
        "{}",
        app.output()
    );
}

#[tokio::test]
async fn health_ignores_foreign_non_utf8_variables() {
    let url = format!("http://127.0.0.1:{}/", free_port());
    let mut app = App::spawn_env_os(
        &closed_database_url(),
        &["health", "--url", &url],
        &foreign(),
    );
    // Unreachable is 1 (critical), not 101 (a panic).
    assert_eq!(app.exit_code().await, Some(1), "{}", app.output());
    assert!(app.output().contains("critical"), "{}", app.output());
}

#[tokio::test]
async fn our_variable_not_utf8_exits_2_naming_it() {
    for command in ["check-config", "run", "health"] {
        let env = [(OsStr::new("MQTT_INSTANCE_ID"), not_utf8())];
        let mut app = App::spawn_env_os(&closed_database_url(), &[command], &env);
        assert_eq!(
            app.exit_code().await,
            Some(2),
            "{command}: {}",
            app.output()
        );
        let out = app.output();
        assert!(out.contains("MQTT_INSTANCE_ID"), "{command}: {out}");
        assert!(out.contains("UTF-8"), "{command}: {out}");
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn rust_log_not_utf8_falls_back_to_the_default_filter(pool: PgPool) {
    let rust_log = OsString::from_vec(b"debug\xff".to_vec());
    let mut env = foreign();
    env.push((OsStr::new("RUST_LOG"), rust_log.as_os_str()));
    let mut app = App::spawn_env_os(&database_url(&pool), &["migrate"], &env);
    assert_eq!(app.exit_code().await, Some(0), "{}", app.output());
    let out = app.output();
    assert!(out.contains("RUST_LOG is not valid UTF-8"), "{out}");
    assert!(
        out.contains("Database schema is up to date; nothing to apply."),
        "{out}"
    );
}
