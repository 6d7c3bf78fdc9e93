//! What a newcomer reads when something is wrong (issue 7): one cause, once,
//! in words, with what to do; `migrate` saying what it did; a malformed
//! DATABASE_URL treated as the bad setting it is; value errors without
//! parser offsets; the broker of an invalid row in verbose health.

use mqtt_supervisor_tests::{App, Row, database_url, free_port, insert, wait_status};
use sqlx::PgPool;
use std::time::Duration;

/// A database URL on a loopback port nothing listens on.
fn refused_url() -> String {
    format!("postgres://postgres@127.0.0.1:{}/nowhere", free_port())
}

/// The lines of `out` that contain `needle`.
fn lines_with<'a>(out: &'a str, needle: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.contains(needle)).collect()
}

/// No line says its cause twice, or leaks Postgres's source line numbers.
fn assert_each_cause_once(out: &str, cause: &str) {
    for line in out.lines() {
        assert!(
            line.matches(cause).count() <= 1,
            "`{cause}` twice in one line:\n{line}"
        );
        assert!(!line.contains("os error"), "{line}");
        assert!(!line.contains(" at line "), "{line}");
        assert!(!line.contains("pool timed out"), "{line}");
    }
}

#[tokio::test]
async fn refused_database_is_one_cause_in_the_cli() {
    let url = refused_url();
    for args in [&["migrate"][..], &["connections", "list"][..]] {
        let mut cli = App::spawn_args(&url, args, &[]);
        assert_eq!(cli.exit_code().await, Some(1), "{args:?}: {}", cli.output());
        let out = cli.output();
        let said: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("mqtt-supervisor: "))
            .collect();
        assert_eq!(said.len(), 1, "{args:?}: {out}");
        assert!(
            said[0].to_lowercase().contains("connection refused"),
            "{args:?}: {out}"
        );
        assert_eq!(
            said[0].to_lowercase().matches("refused").count(),
            1,
            "{out}"
        );
        for line in out.lines() {
            assert!(!line.contains(" at line "), "{line}");
            assert!(!line.contains("pool timed out"), "{line}");
        }
    }
}

#[tokio::test]
async fn run_waits_for_the_database_naming_the_real_cause() {
    let mut app = App::spawn(&refused_url(), &[]);
    let waited = mqtt_supervisor_tests::eventually(Duration::from_secs(15), || async {
        lines_with(&app.output(), "Waiting for database").len() >= 2
    })
    .await;
    assert!(waited, "{}", app.output());
    app.sigterm();
    assert_eq!(app.exit_code().await, Some(0), "{}", app.output());
    let out = app.output();
    for line in lines_with(&out, "Waiting for database") {
        assert!(
            line.contains("error=connection refused"),
            "each attempt names its cause:\n{line}"
        );
    }
    assert_each_cause_once(&out, "connection refused");
}

/// A database where another application already has `mqtt_connections`:
/// `migrate` and `run` stop with one line that says so and what to do.
#[sqlx::test(migrations = false)]
async fn migrate_over_a_foreign_table_says_so_once(pool: PgPool) {
    sqlx::query("CREATE TABLE mqtt_connections (x int)")
        .execute(&pool)
        .await
        .unwrap();
    let url = database_url(&pool);
    for args in [&["migrate"][..], &["run"][..]] {
        let mut app = App::spawn_args(&url, args, &[]);
        assert_eq!(app.exit_code().await, Some(1), "{args:?}: {}", app.output());
        let out = app.output();
        let said: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("mqtt-supervisor: "))
            .collect();
        assert_eq!(said.len(), 1, "{args:?}: {out}");
        let line = said[0];
        assert!(
            line.contains("already has a table named `mqtt_connections`")
                && line.contains("this service did not create")
                && line.contains("DATABASE_URL")
                && line.contains("drop the table"),
            "{args:?}: {line}"
        );
        assert_each_cause_once(&out, "already");
        assert!(!out.contains(&url), "{out}");
    }
    // Nothing of ours was left behind beside the foreign table.
    let ours: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('mqtt_connection_state')::text")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(ours, None);
}

#[sqlx::test(migrations = false)]
async fn migrate_says_what_it_applied(pool: PgPool) {
    let url = database_url(&pool);
    let mut first = App::spawn_args(&url, &["migrate"], &[]);
    assert_eq!(first.exit_code().await, Some(0), "{}", first.output());
    assert!(
        first
            .output()
            .contains("Applied 3 migrations: 20261122000001 connections, 20261206000001 messages, 20261207000001 replicas."),
        "{}",
        first.output()
    );
    assert!(
        !first.output().contains("nothing to apply"),
        "{}",
        first.output()
    );
    let mut again = App::spawn_args(&url, &["migrate"], &[]);
    assert_eq!(again.exit_code().await, Some(0), "{}", again.output());
    assert!(
        again
            .output()
            .contains("Database schema is up to date; nothing to apply."),
        "{}",
        again.output()
    );
    assert!(!again.output().contains("Applied"), "{}", again.output());
}

#[tokio::test]
async fn malformed_database_url_exits_2_naming_it() {
    const SECRET: &str = "pa55-e2e-7f3a";
    // An unescaped `#` in the password: the URL ends there.
    let url = format!("postgres://app:{SECRET}#x@127.0.0.1:{}/db", free_port());
    for args in [
        &["check-config"][..],
        &["run"][..],
        &["connections", "list"][..],
    ] {
        let mut app = App::spawn_args(&url, args, &[]);
        assert_eq!(app.exit_code().await, Some(2), "{args:?}: {}", app.output());
        let out = app.output();
        assert!(
            out.contains("invalid value for DATABASE_URL (from environment): not a valid URL"),
            "{args:?}: {out}"
        );
        assert!(!out.contains(SECRET), "{args:?}: {out}");
    }
}

#[tokio::test]
async fn value_errors_say_what_was_expected() {
    for (var, value, expected) in [
        (
            "MQTT_KEEP_ALIVE",
            "soon",
            "invalid value for MQTT_KEEP_ALIVE (from environment): `soon` is not a duration; \
             expected whole seconds (`5`) or a number with a unit (`500ms`, `30s`, `2m`)",
        ),
        (
            "MQTT_LOG_FORMAT",
            "xml",
            "invalid value for MQTT_LOG_FORMAT (from environment): expected `text` or `json`, \
             found `xml`",
        ),
    ] {
        let mut app = App::spawn_args(&refused_url(), &["check-config"], &[(var, value)]);
        assert_eq!(app.exit_code().await, Some(2), "{}", app.output());
        let out = app.output();
        assert!(out.contains(expected), "{var}={value}: {out}");
        assert!(!out.contains("at 0") && !out.contains("``"), "{out}");
    }
}

/// An invalid row shows the broker its row names; one whose host is not a
/// valid host shows `null`, never `""`.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn verbose_health_shows_the_broker_of_invalid_rows(pool: PgPool) {
    // Neither row connects: no broker needed.
    let port = free_port();
    insert(
        &pool,
        &Row {
            subscriptions: Some(vec!["a/#/b".into()]),
            ..Row::new("bad_filter", port)
        },
    )
    .await;
    let bad_host = insert(
        &pool,
        &Row {
            host: "mqtt://user:pw@broker".into(),
            ..Row::new("bad_host", port)
        },
    )
    .await;
    let mut app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    assert!(
        wait_status(&pool, bad_host, "error", Duration::from_secs(10)).await,
        "{}",
        app.output()
    );
    let (_, body) = app.health(true).await.expect("health answers");
    let details = body["details"].as_array().expect("details");
    let by_name = |name: &str| {
        details
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {body}"))
            .clone()
    };
    let filter = by_name("bad_filter");
    assert_eq!(filter["status"], "error", "{filter}");
    assert_eq!(filter["broker"], format!("127.0.0.1:{port}"), "{filter}");
    let host = by_name("bad_host");
    assert_eq!(host["status"], "error", "{host}");
    assert!(host["broker"].is_null(), "{host}");
    assert!(!body.to_string().contains("user:pw"), "{body}");
    app.sigterm();
    assert_eq!(app.exit_code().await, Some(0), "{}", app.output());
}
