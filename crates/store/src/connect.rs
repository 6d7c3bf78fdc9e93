//! Connecting to Postgres, patiently: a service that starts before its
//! database says so and waits instead of crash-looping.

use crate::StoreError;
use sqlx::ConnectOptions;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use url::Url;

/// Query parameters sqlx 0.9 understands in a Postgres URL (its
/// `PgConnectOptions::parse_from_url`), besides `options[NAME]`.
const KNOWN_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

const SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Parses a database URL. No error or log line repeats a value from it (the
/// URL may hold a password in its user info or its parameters):
///
/// - parameters sqlx does not know (`sslpassword`, `connect_timeout`, …) are
///   dropped with a warning that names them but not their values (sqlx
///   itself would log them with their values);
/// - `sslmode` must be one of libpq's modes; `sslrootcert=system` means the
///   system's trust store, which is what sqlx uses without `sslrootcert`;
/// - any other problem is reported without the URL.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    const HIDDEN: &str = "(the value is not shown: it may hold a password)";
    let mut parsed = Url::parse(url)
        .map_err(|_| StoreError::Url(format!("not a valid postgres URL {HIDDEN}")))?;
    let mut kept: Vec<(String, String)> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    for (name, value) in parsed.query_pairs() {
        let known = KNOWN_PARAMETERS.contains(&&*name)
            || (name.starts_with("options[") && name.ends_with(']'));
        if !known {
            dropped.push(name.into_owned());
            continue;
        }
        if matches!(&*name, "sslmode" | "ssl-mode")
            && !SSL_MODES.contains(&value.to_ascii_lowercase().as_str())
        {
            return Err(StoreError::Url(format!(
                "sslmode must be one of {}",
                SSL_MODES.join(", ")
            )));
        }
        if matches!(&*name, "sslrootcert" | "ssl-root-cert" | "ssl-ca") && value == "system" {
            continue;
        }
        kept.push((name.into_owned(), value.into_owned()));
    }
    if parsed.query().is_some() {
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(&kept);
        }
    }
    for name in &dropped {
        tracing::warn!(
            parameter = %name,
            "DATABASE_URL parameter `{name}` is not supported and is ignored."
        );
    }
    PgConnectOptions::from_url(&parsed)
        .map(|o| o.log_statements(tracing::log::LevelFilter::Trace))
        .map_err(|_| {
            StoreError::Url(format!(
                "cannot be used: check its host, port, user, database and parameters {HIDDEN}"
            ))
        })
}

/// `host:port` (or the socket path) for log lines, never the credentials.
pub fn database_address(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(dir) => format!("{}/.s.PGSQL.{}", dir.display(), options.get_port()),
        None if options.get_host().starts_with('/') => {
            format!("{}/.s.PGSQL.{}", options.get_host(), options.get_port())
        }
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// The URL scripts/demo.sh uses, offered as an example of a login that works
/// on a machine set up by scripts/deps.sh.
const DEMO_URL: &str = "postgres://postgres@127.0.0.1:5432/mqtt_supervisor";

/// One line saying why connecting to the database at `address` failed and,
/// for a refusal waiting will not fix, what to do. Shared by the CLI and
/// `run`. It names the address and what the server said (a role or database
/// name), never the URL: the URL may hold a password.
pub fn describe_connect_error(address: &str, e: &sqlx::Error) -> String {
    if let sqlx::Error::Database(db) = e
        && let Some(line) = describe_refusal(address, db.code().as_deref(), db.message())
    {
        return line;
    }
    let hint = if e.to_string().contains("certificate") {
        " (sslrootcert in DATABASE_URL must name the CA that signed the server's certificate, \
         which with sslmode=verify-full must also name the host)"
    } else {
        ""
    };
    format!(
        "cannot connect to database {address}: {}{hint}",
        crate::describe(e)
    )
}

/// The server's refusal (`message`, SQLSTATE `code`) in one line with what
/// to do, for the refusals a newcomer meets: an unknown role (28000), a
/// wrong password (28P01), a missing database (3D000). `None` for others.
fn describe_refusal(address: &str, code: Option<&str>, message: &str) -> Option<String> {
    // The server's message already names the role or database.
    let message = message.trim_end_matches('.');
    let todo = match code? {
        // invalid_authorization_specification: also pg_hba.conf refusals
        // and roles without LOGIN, which the generic line shows as they are.
        "28000" if message.contains("does not exist") => format!(
            "set DATABASE_URL to a user that exists, e.g. {DEMO_URL} (the demo's), \
             or create this one (CREATE ROLE ... LOGIN)"
        ),
        // invalid_password
        "28P01" => "check the user and password in DATABASE_URL (percent-encode @ / # ? in a \
                    password: @ is %40), or set DATABASE_URL to a user that logs in without one"
            .to_owned(),
        // invalid_catalog_name
        "3D000" => "create it (CREATE DATABASE, as scripts/demo.sh does), or set DATABASE_URL to \
                    an existing database and run `mqtt-supervisor migrate` against it"
            .to_owned(),
        _ => return None,
    };
    Some(format!("{message} on {address}: {todo}"))
}

/// A pool for the service: a handful of connections, short acquire timeout so
/// that a dead database shows up as an error instead of a hang.
fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(8)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
}

/// One connection straight to the server, then the pool. A pool that
/// cannot connect only says "pool timed out while waiting for an open
/// connection"; the direct attempt fails with the cause itself (connection
/// refused, no such host, a bad password), for the log and for
/// [`is_permanent`].
async fn open_pool(options: &PgConnectOptions) -> Result<PgPool, sqlx::Error> {
    const LIMIT: Duration = Duration::from_secs(3);
    let direct = tokio::time::timeout(
        LIMIT,
        <sqlx::PgConnection as sqlx::Connection>::connect_with(options),
    )
    .await
    .map_err(|_| {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} s", LIMIT.as_secs()),
        ))
    })??;
    let _ = sqlx::Connection::close(direct).await;
    pool_options().connect_with(options.clone()).await
}

/// Connects, retrying with backoff (1 s doubling to 30 s) and a progress line
/// per attempt, until the database answers (`Ok(Some(pool))`), refuses for
/// good (bad password, no such database: [`StoreError::Connect`] with
/// [`describe_connect_error`]'s line), or `token` is cancelled (`Ok(None)`).
pub async fn wait_for_database(
    options: &PgConnectOptions,
    token: &CancellationToken,
) -> Result<Option<PgPool>, StoreError> {
    let address = database_address(options);
    let mut delay = Duration::from_secs(1);
    let mut attempt = 1u32;
    loop {
        let Some(result) = token.run_until_cancelled(open_pool(options)).await else {
            return Ok(None);
        };
        match result {
            Ok(pool) => {
                if attempt > 1 {
                    tracing::info!(database = %address, attempt, "Database is reachable.");
                }
                return Ok(Some(pool));
            }
            Err(e) if is_permanent(&e) => {
                return Err(StoreError::Connect(describe_connect_error(&address, &e)));
            }
            Err(e) => {
                tracing::warn!(
                    database = %address, attempt, error = %crate::describe(&e),
                    "Waiting for database {address} (attempt {attempt}, next in {} s).",
                    delay.as_secs()
                );
                if token
                    .run_until_cancelled(tokio::time::sleep(delay))
                    .await
                    .is_none()
                {
                    return Ok(None);
                }
                delay = (delay * 2).min(Duration::from_secs(30));
                attempt += 1;
            }
        }
    }
}

/// Errors that waiting will not fix: bad password, missing database.
fn is_permanent(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // invalid_password, invalid_authorization_specification, invalid_catalog_name
            Some("28P01") | Some("28000") | Some("3D000")
        ),
        sqlx::Error::Configuration(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::postgres::PgSslMode;

    const CANARY: &str = "canary-url-4a7e";

    #[test]
    fn errors_never_repeat_the_url() {
        for url in [
            format!("postgres://app:{CANARY}@db:99999/x"),
            format!("postgres://app:{CANARY}@db/x?port=not-a-port"),
            format!("postgres://app:{CANARY}@db/x?hostaddr=not-an-address"),
            format!("postgres://app:%ff{CANARY}@db/x"),
            format!("postgres://app@db/x?password={CANARY}&statement-cache-capacity=lots"),
            format!("postgres://app@db/x?sslmode={CANARY}"),
            format!("not a url {CANARY}"),
        ] {
            let err = connect_options(&url).unwrap_err().to_string();
            assert!(!err.contains(CANARY), "{url}: {err}");
            assert!(err.starts_with("DATABASE_URL: "), "{url}: {err}");
        }
        let err = connect_options("postgres://db/x?sslmode=verify").unwrap_err();
        assert!(err.to_string().contains("sslmode must be one of"), "{err}");
    }

    #[test]
    fn sslmode_is_honoured_and_unknown_parameters_dropped() {
        for (mode, expected) in [
            ("disable", PgSslMode::Disable),
            ("prefer", PgSslMode::Prefer),
            ("require", PgSslMode::Require),
            ("verify-ca", PgSslMode::VerifyCa),
            ("VERIFY-FULL", PgSslMode::VerifyFull),
        ] {
            let url = format!(
                "postgres://app:pw@db/x?sslmode={mode}&sslpassword={CANARY}&connect_timeout=10"
            );
            let options = connect_options(&url).unwrap();
            // PgSslMode has no PartialEq.
            assert_eq!(
                format!("{:?}", options.get_ssl_mode()),
                format!("{expected:?}"),
                "{mode}"
            );
            assert_eq!(options.get_host(), "db");
            assert_eq!(options.get_database(), Some("x"));
        }
        // Known parameters survive the rebuilt query.
        let options = connect_options(
            "postgres://db/x?user=app&password=a%26b&sslrootcert=system&application_name=mqtt%20sup",
        )
        .unwrap();
        assert_eq!(options.get_username(), "app");
        assert_eq!(options.get_application_name(), Some("mqtt sup"));
    }

    #[test]
    fn refusals_say_what_to_do_in_one_line() {
        let addr = "127.0.0.1:5432";
        let role =
            describe_refusal(addr, Some("28000"), "role \"anonymous\" does not exist").unwrap();
        assert!(
            role.starts_with("role \"anonymous\" does not exist on 127.0.0.1:5432: set DATABASE_URL to a user that exists, e.g. postgres://postgres@127.0.0.1:5432/mqtt_supervisor"),
            "{role}"
        );
        let password = describe_refusal(
            addr,
            Some("28P01"),
            "password authentication failed for user \"app\"",
        )
        .unwrap();
        assert!(
            password.starts_with("password authentication failed for user \"app\" on 127.0.0.1:5432: check the user and password in DATABASE_URL"),
            "{password}"
        );
        let database =
            describe_refusal(addr, Some("3D000"), "database \"nope\" does not exist").unwrap();
        assert!(
            database.starts_with("database \"nope\" does not exist on 127.0.0.1:5432: create it"),
            "{database}"
        );
        assert!(database.contains("`mqtt-supervisor migrate`"), "{database}");
        for line in [&role, &password, &database] {
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(line.matches(" on 127.0.0.1:5432").count(), 1, "{line}");
        }
        // Other refusals keep the generic line, which shows the server's text.
        let hba = "no pg_hba.conf entry for host \"127.0.0.1\", user \"x\", database \"y\", no encryption";
        assert_eq!(describe_refusal(addr, Some("28000"), hba), None);
        assert_eq!(
            describe_refusal(addr, Some("57P03"), "the database system is starting up"),
            None
        );
        assert_eq!(describe_refusal(addr, None, "anything"), None);
    }

    #[test]
    fn socket_addresses_name_the_socket() {
        let options = connect_options("postgres:///x?host=/run/postgresql&port=5433").unwrap();
        assert_eq!(database_address(&options), "/run/postgresql/.s.PGSQL.5433");
        let options = connect_options("postgres://db.internal:6432/x").unwrap();
        assert_eq!(database_address(&options), "db.internal:6432");
    }
}
