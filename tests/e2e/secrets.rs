//! Secrets never leave the process: canary values in a row's password, its
//! HMAC secret and the database URL's password must not appear in the log
//! (even at debug level and after errors), in health, in `check-config`, or
//! in the state and event tables the application reads.

use mqtt_supervisor_tests::{App, Broker, Row, free_port, insert, state, wait_status};
use sqlx::PgPool;
use std::time::Duration;

const ROW_PASSWORD: &str = "canary-7f3a9c-pw";
const ORPHAN_PASSWORD: &str = "canary-3b8e41-pw";
const HMAC_SECRET: &str = "canary-hmac-c0ffee";
const DB_PASSWORD: &str = "canary-db-9d1e";
const CANARIES: [&str; 4] = [ROW_PASSWORD, ORPHAN_PASSWORD, HMAC_SECRET, DB_PASSWORD];

/// The pool's database URL with a password: trust authentication ignores it.
fn url_with_password(pool: &PgPool) -> String {
    let o = pool.connect_options();
    format!(
        "postgres://{}:{DB_PASSWORD}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap()
    )
}

fn assert_clean(place: &str, text: &str) {
    for canary in CANARIES {
        assert!(
            !text.contains(canary),
            "{place} leaks the secret {canary}:\n{text}"
        );
    }
}

/// Every column of every row of `table`, as JSON text.
async fn table_text(pool: &PgPool, table: &'static str) -> String {
    let sql = match table {
        "state" => {
            "SELECT coalesce(string_agg(row_to_json(t)::text, E'\\n'), '') FROM mqtt_connection_state t"
        }
        _ => {
            "SELECT coalesce(string_agg(row_to_json(t)::text, E'\\n'), '') FROM mqtt_connection_events t"
        }
    };
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn secrets_appear_nowhere(pool: PgPool) {
    let broker = Broker::start_with_user("app", "right").await;
    // Refused by the broker: the error path must not echo the password.
    let refused = insert(
        &pool,
        &Row {
            username: Some("app".into()),
            password: Some(ROW_PASSWORD.into()),
            ..Row::new("site_refused", broker.port())
        },
    )
    .await;
    sqlx::query(
        "UPDATE mqtt_connections SET hmac_secret = $1, verify_inbound_hmac = true WHERE id = $2",
    )
    .bind(HMAC_SECRET)
    .bind(refused)
    .execute(&pool)
    .await
    .unwrap();
    // Invalid (password without user): the validation error must not echo it.
    let invalid = insert(
        &pool,
        &Row {
            password: Some(ORPHAN_PASSWORD.into()),
            ..Row::new("site_invalid", broker.port())
        },
    )
    .await;
    let url = url_with_password(&pool);
    let env = [("RUST_LOG", "debug")];

    let mut app = App::spawn(&url, &env);
    app.ready().await;
    for id in [refused, invalid] {
        assert!(
            wait_status(&pool, id, "error", Duration::from_secs(10)).await,
            "{:?}\n{}",
            state(&pool, id).await,
            app.output()
        );
    }
    let (_, body) = app.health(true).await.unwrap();
    let health = body.to_string();
    assert!(health.contains("site_refused"), "{health}");
    assert_clean("health (verbose)", &health);
    let (_, plain) = app.health(false).await.unwrap();
    assert_clean("health", &plain.to_string());

    app.sigterm();
    let status = app.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{}", app.output());
    let out = app.output();
    // The debug log did run and did report the failures.
    assert!(
        out.contains("DEBUG"),
        "RUST_LOG=debug had no effect:\n{out}"
    );
    assert!(out.contains("not authorised"), "{out}");
    assert!(out.contains("password is set without username"), "{out}");
    assert_clean("the service's output", &out);

    let mut check = App::spawn_args(&url, &["check-config"], &env);
    let status = check.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{}", check.output());
    let shown = check.output();
    assert!(
        shown.contains(&format!(
            "postgres://{}:***@",
            pool.connect_options().get_username()
        )),
        "check-config must show the URL with the password redacted:\n{shown}"
    );
    assert_clean("check-config", &shown);

    let states = table_text(&pool, "state").await;
    assert!(states.contains("site_refused_test"), "{states}");
    assert_clean("mqtt_connection_state", &states);
    let events = table_text(&pool, "events").await;
    assert!(events.contains("not authorised"), "{events}");
    assert_clean("mqtt_connection_events", &events);
}

/// Canaries in every place a Postgres URL can carry a secret.
const URL_CANARIES: [&str; 5] = [
    "canary-userinfo-61a2",
    "canary-query-pw-8c4d",
    "canary-sslpw-0f9e",
    "canary-mixed-case-7b13",
    "canary-api-secret-2e5a",
];

fn assert_no_url_canary(place: &str, text: &str) {
    for canary in URL_CANARIES {
        assert!(
            !text.contains(canary),
            "{place} leaks the secret {canary}:\n{text}"
        );
    }
}

async fn finished(app: &mut App) -> Option<i32> {
    let status = app.wait_exit(Duration::from_secs(15)).await;
    assert!(status.is_some(), "did not exit:\n{}", app.output());
    status.and_then(|s| s.code())
}

/// check-config, the CLI's connect errors and `run`'s wait for the database
/// show the URL's shape but none of its secrets: the password in the user
/// info or in `password=` (any case), `sslpassword`, other secret-looking
/// parameters. Nothing listens on the port, so every connect fails.
#[tokio::test]
async fn database_url_secrets_stay_hidden_in_every_form() {
    let [userinfo, query_pw, ssl_pw, mixed, api] = URL_CANARIES;
    let port = free_port();
    let url = format!(
        "postgres://app:{userinfo}@127.0.0.1:{port}/x?sslmode=prefer&password={query_pw}\
         &sslpassword={ssl_pw}&PassWord={mixed}&api_secret={api}"
    );
    let env = [("RUST_LOG", "debug")];

    let mut check = App::spawn_args(&url, &["check-config"], &env);
    assert_eq!(finished(&mut check).await, Some(0), "{}", check.output());
    let shown = check.output();
    assert!(
        shown.contains(&format!("postgres://app:***@127.0.0.1:{port}/x?sslmode=prefer&password=***&sslpassword=***&PassWord=***&api_secret=***")),
        "check-config must show the URL's shape:\n{shown}"
    );
    assert_no_url_canary("check-config", &shown);

    for args in [&["migrate"][..], &["connections", "list"][..]] {
        let mut cli = App::spawn_args(&url, args, &env);
        assert_eq!(
            finished(&mut cli).await,
            Some(1),
            "{args:?}: {}",
            cli.output()
        );
        let out = cli.output();
        assert!(
            out.contains(&format!("cannot connect to database 127.0.0.1:{port}")),
            "{args:?}: {out}"
        );
        assert_no_url_canary(&format!("{args:?}"), &out);
    }
    let mut migrate = App::spawn_args(&url, &["migrate"], &env);
    finished(&mut migrate).await;
    assert!(
        migrate.output().contains("`sslpassword` is not supported"),
        "{}",
        migrate.output()
    );

    let mut app = App::spawn(&url, &env);
    assert!(
        app.wait_output("Waiting for database", Duration::from_secs(10))
            .await,
        "{}",
        app.output()
    );
    app.sigterm();
    assert_eq!(finished(&mut app).await, Some(0), "{}", app.output());
    assert_no_url_canary("run", &app.output());
}

/// A URL that does not parse is a bad setting (issue 7): every command
/// exits 2 naming DATABASE_URL, and the error does not repeat the value.
#[tokio::test]
async fn unparseable_database_url_is_hidden_whole() {
    let [userinfo, ..] = URL_CANARIES;
    let url = format!("postgres://app:{userinfo}@127.0.0.1:not-a-port/x");
    for args in [&["check-config"][..], &["migrate"][..], &["run"][..]] {
        let mut cli = App::spawn_args(&url, args, &[]);
        assert_eq!(
            finished(&mut cli).await,
            Some(2),
            "{args:?}: {}",
            cli.output()
        );
        let out = cli.output();
        assert!(
            out.contains("invalid value for DATABASE_URL") && out.contains("not a valid URL"),
            "{args:?}: {out}"
        );
        assert_no_url_canary(&format!("{args:?}"), &out);
    }
}
