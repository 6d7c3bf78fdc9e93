//! TLS to Postgres: against a private cluster that accepts only TLS, the
//! real binary honours `sslmode` in DATABASE_URL: `verify-full` with the
//! right CA connects and says so, with another CA it stops with a message
//! about the certificate (exit 1, not a panic), `require` encrypts without
//! verifying, and `disable` is refused by the server with a clear message.

use mqtt_supervisor_tests::{App, TlsPostgres};

fn verify_full(pg: &TlsPostgres, host: &str, ca: &std::path::Path) -> String {
    pg.url(
        host,
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    )
}

#[tokio::test]
async fn migrate_with_verify_full_and_the_right_ca() {
    let pg = TlsPostgres::start();
    // By address (the certificate's IP SAN) and by name (its DNS SAN).
    // The first run applies the schema, the second finds nothing to do.
    for (host, said) in [
        ("127.0.0.1", "Applied 3 migrations: "),
        (
            "localhost",
            "Database schema is up to date; nothing to apply.",
        ),
    ] {
        let url = verify_full(&pg, host, &pg.ca_path());
        let mut app = App::spawn_args(&url, &["migrate"], &[]);
        assert_eq!(app.exit_code().await, Some(0), "{host}: {}", app.output());
        assert!(app.output().contains(said), "{host}: {}", app.output());
    }
}

#[tokio::test]
async fn verify_full_with_another_ca_fails_with_a_certificate_error() {
    let pg = TlsPostgres::start();
    let url = verify_full(&pg, "127.0.0.1", &pg.other_ca_path());
    let mut app = App::spawn_args(&url, &["migrate"], &[]);
    // 1 is a runtime failure; 101 would be a panic.
    assert_eq!(app.exit_code().await, Some(1), "{}", app.output());
    let out = app.output();
    assert!(out.to_lowercase().contains("certificate"), "{out}");
    assert!(
        out.contains("cannot connect to database 127.0.0.1:"),
        "{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
}

#[tokio::test]
async fn require_encrypts_without_verifying() {
    let pg = TlsPostgres::start();
    let mut app = App::spawn_args(&pg.url("127.0.0.1", "sslmode=require"), &["migrate"], &[]);
    assert_eq!(app.exit_code().await, Some(0), "{}", app.output());
}

#[tokio::test]
async fn disable_is_refused_by_a_tls_only_server() {
    let pg = TlsPostgres::start();
    let mut app = App::spawn_args(&pg.url("127.0.0.1", "sslmode=disable"), &["migrate"], &[]);
    assert_eq!(app.exit_code().await, Some(1), "{}", app.output());
    let out = app.output();
    assert!(
        out.contains("cannot connect to database 127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("no encryption"), "{out}");
}

#[tokio::test]
async fn run_says_the_database_connection_is_encrypted() {
    let pg = TlsPostgres::start();
    let url = verify_full(&pg, "127.0.0.1", &pg.ca_path());
    let mut app = App::spawn(&url, &[]);
    app.ready().await;
    let out = app.output();
    assert!(
        out.contains("Database connection is encrypted (TLSv1.3"),
        "{out}"
    );
    assert!(!out.contains("not encrypted"), "{out}");
    app.sigterm();
    assert_eq!(app.exit_code().await, Some(0), "{}", app.output());
}

/// The kit's cluster is what the tests above assume: TLS with our CA, and
/// nothing in clear. (With TEST_LOG=1 the kit prints its start-up time.)
#[tokio::test]
async fn private_cluster_accepts_only_tls() {
    use sqlx::{ConnectOptions, postgres::PgConnectOptions};
    let pg = TlsPostgres::start();
    let url = verify_full(&pg, "localhost", &pg.ca_path());
    let mut conn = url
        .parse::<PgConnectOptions>()
        .unwrap()
        .connect()
        .await
        .unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(ssl);
    let plain = pg.url("127.0.0.1", "sslmode=disable");
    let refused = plain.parse::<PgConnectOptions>().unwrap().connect().await;
    assert!(refused.is_err(), "a connection in clear was accepted");
    assert!(
        pg.log().contains("ready to accept connections"),
        "{}",
        pg.log()
    );
}

/// A wrong password (the local test server trusts everyone, the private
/// cluster asks `PASSWORD_USER` for one): one line that says what to do,
/// the cause once, and never the password given.
#[tokio::test]
async fn a_wrong_password_says_what_to_do_once() {
    use mqtt_supervisor_tests::pg_tls::PASSWORD_USER;
    let pg = TlsPostgres::start();
    let admin = pg.url("127.0.0.1", "sslmode=require");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {PASSWORD_USER} LOGIN SUPERUSER PASSWORD 'the-right-one'"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let canary = "canary-wrong-pw-5c1";
    let url = format!(
        "postgres://{PASSWORD_USER}:{canary}@127.0.0.1:{}/postgres?sslmode=require",
        pg.port()
    );
    for args in [&["migrate"][..], &["connections", "list"][..], &["run"][..]] {
        let mut app = App::spawn_args(&url, args, &[]);
        assert_eq!(app.exit_code().await, Some(1), "{args:?}: {}", app.output());
        let out = app.output();
        let said = format!("password authentication failed for user \"{PASSWORD_USER}\"");
        assert_eq!(out.matches(&said).count(), 1, "{args:?}: {out}");
        assert!(
            out.contains("check the user and password in DATABASE_URL"),
            "{out}"
        );
        assert!(!out.contains(canary), "{args:?} leaks the password: {out}");
    }
    // And the right one connects.
    let right = url.replace(canary, "the-right-one");
    let mut app = App::spawn_args(&right, &["migrate"], &[]);
    assert_eq!(app.exit_code().await, Some(0), "{}", app.output());
}
