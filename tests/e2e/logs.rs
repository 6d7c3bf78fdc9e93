//! Log lines, as operators' tools read them: in JSON every line parses and
//! every connection event carries `connection` and `client_id` at the top
//! level; in text they are on the line too; each HTTP request gets a line
//! at debug level (tower-http's TraceLayer).

use mqtt_supervisor_tests::{App, Broker, Row, database_url, http_get, insert, wait_status};
use sqlx::PgPool;
use std::time::Duration;

async fn run(pool: &PgPool, format: &str) -> String {
    let broker = Broker::start().await;
    let up = insert(pool, &Row::new("site_1", broker.port())).await;
    // Port 1 on loopback is closed: connection events of a failing row.
    let down = insert(pool, &Row::new("site_2", 1)).await;
    let mut app = App::spawn(
        &database_url(pool),
        &[
            ("MQTT_LOG_FORMAT", format),
            ("RUST_LOG", "info,tower_http=debug"),
        ],
    );
    app.ready().await;
    assert!(wait_status(pool, up, "connected", Duration::from_secs(10)).await);
    assert!(wait_status(pool, down, "disconnected", Duration::from_secs(10)).await);
    let (code, _) = http_get(app.http_port(), "/api/v1/mqtt/health/")
        .await
        .unwrap();
    assert_eq!(code, 200);
    app.sigterm();
    assert!(app.wait_exit(Duration::from_secs(10)).await.is_some());
    app.output()
}

#[sqlx::test(migrations = "../migrations")]
async fn json_lines_parse_and_carry_the_identity_fields(pool: PgPool) {
    let output = run(&pool, "json").await;
    let lines: Vec<serde_json::Value> = output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let connection_events: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.contains("::connection"))
        })
        .collect();
    for name in ["site_1", "site_2"] {
        assert!(
            connection_events.iter().any(|l| l["connection"] == name),
            "no event of {name}:\n{output}"
        );
    }
    for line in &connection_events {
        let (connection, client_id) = (&line["connection"], &line["client_id"]);
        assert!(
            connection.is_string() && client_id.is_string(),
            "a connection event without its identity: {line}"
        );
        assert_eq!(
            client_id.as_str().unwrap(),
            format!("{}_test", connection.as_str().unwrap())
        );
        for field in ["timestamp", "level", "message"] {
            assert!(line[field].is_string(), "no {field}: {line}");
        }
    }
    let request = lines.iter().find(|l| {
        l["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("tower_http"))
            && l["uri"] == "/api/v1/mqtt/health/"
            && l["status"] == 200
    });
    assert!(request.is_some(), "no HTTP request line:\n{output}");
    assert_eq!(request.unwrap()["level"], "DEBUG");
}

#[sqlx::test(migrations = "../migrations")]
async fn text_lines_carry_the_identity_fields(pool: PgPool) {
    let output = run(&pool, "text").await;
    for (connection, message) in [("site_1", "Connected."), ("site_2", "Connection failed")] {
        let line = output
            .lines()
            .find(|l| l.contains(message) && l.contains(connection))
            .unwrap_or_else(|| panic!("no `{message}` line of {connection}:\n{output}"));
        assert!(
            line.contains(&format!("connection={connection}"))
                && line.contains(&format!("client_id={connection}_test")),
            "{line}"
        );
    }
    assert!(
        output
            .lines()
            .any(|l| l.contains("DEBUG") && l.contains("finished processing request")),
        "no HTTP request line:\n{output}"
    );
}
