//! The REST API does what its OpenAPI document says, whatever it is sent
//! (issue 10): Schemathesis generates requests from /api/v1/openapi.json,
//! valid and invalid, for every operation, the writes included, and checks
//! that no answer is a server error and that every answer's status, content
//! type and body are ones the document declares for that operation.
//!
//! Schemathesis comes from PyPI (`schemathesis==4.32.5`) in the virtual
//! environment `scripts/deps.sh` creates at `target/schemathesis-venv`.
//! The flags of that release used here (from `schemathesis --help` and
//! `schemathesis run --help`):
//!
//! - `schemathesis --config-file FILE run`: settings that have no flag;
//!   here [`CONFIG`], which makes the warnings that mean a broken document
//!   (a `$ref` that resolves to nothing, a response it cannot parse, a
//!   base URL that does not match) fail the run.
//! - `LOCATION`: the document's URL; the base URL is taken from it.
//! - `--checks a,b`: `not_a_server_error` (no 5xx),
//!   `status_code_conformance` (a status the operation declares),
//!   `content_type_conformance`, `response_schema_conformance` (the body
//!   matches the declared schema).
//! - `--header 'NAME: VALUE'`: sent with every request (the bearer token).
//! - `--max-examples N`: at most N generated cases per operation when
//!   fuzzing, and N stateful scenarios; the coverage phase adds its own
//!   boundary and invalid values (about 1,200 requests in all, 15 s).
//! - `--request-timeout S`: per request.
//! - `--generation-database none`: nothing written to `.hypothesis/`.
//! - `--no-color`: plain output, for the failure message.
//!
//! Not `--max-time`: in 4.x it is a budget that fuzzing repeats until spent,
//! not a bound; the run is bounded here by killing it after [`RUN_BOUND`].
//!
//! Every request goes to 127.0.0.1. So that the service never connects to
//! anything else, a `before_call` hook ([`HOOK`]) replaces every host in a
//! request body, valid or not, with a loopback address or an invalid value
//! before it is sent, and the test checks the table afterwards.

use mqtt_supervisor_tests::{
    App, Broker, Row, database_url, insert, pump_output, repo_root, wait_status,
};
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keep in step with SCHEMATHESIS_VERSION in scripts/deps.sh.
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// The service's MQTT_API_TOKEN (at least 16 visible ASCII characters).
const TOKEN: &str = "schemathesis-test-token-5f0c2a9e";
/// How long Schemathesis may run before it is killed and the test fails;
/// with the service's start, the test stays under 90 s.
const RUN_BOUND: Duration = Duration::from_secs(70);
/// The hosts a request body may carry: loopback, or values the validator
/// refuses. Never a name that needs DNS or an address off this machine.
const HOSTS: [&str; 6] = [
    "127.0.0.1",
    "localhost",
    "::1",
    "",
    "mqtt://127.0.0.1",
    "127.0.0.1:1883",
];

/// schemathesis.toml: which warnings fail the run.
const CONFIG: &str = r#"[warnings]
fail-on = ["unresolvable_reference", "missing_deserializer", "base_url_mismatch"]
"#;

/// A Schemathesis hook module: keeps every broker host on this machine.
const HOOK: &str = r#"
import schemathesis

SAFE = HOSTS


def _loopback(value):
    if isinstance(value, dict):
        for key in list(value):
            if "host" in str(key).lower() and isinstance(value[key], str):
                value[key] = SAFE[len(value[key]) % len(SAFE)]
            else:
                _loopback(value[key])
    elif isinstance(value, list):
        for item in value:
            _loopback(item)


@schemathesis.hook
def before_call(context, case, kwargs):
    _loopback(case.body)
    # The connected row stays as it is: changed, disconnected or deleted,
    # health would rightly answer 503 (critical), which is no server error.
    params = case.path_parameters
    if case.method.upper() != "GET" and params and params.get("name") == "api_site":
        params["name"] = "api_site_fuzzed"
"#;

/// The `schemathesis` executable; panics with what to do when it is missing.
fn schemathesis() -> PathBuf {
    let path = repo_root().join("target/schemathesis-venv/bin/schemathesis");
    assert!(
        path.is_file(),
        "schemathesis not found at {}: run scripts/deps.sh (it installs \
         schemathesis=={SCHEMATHESIS_VERSION} in target/schemathesis-venv)",
        path.display()
    );
    let out = Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.trim().ends_with(SCHEMATHESIS_VERSION),
        "{} is {version:?}, not {SCHEMATHESIS_VERSION}: run scripts/deps.sh",
        path.display()
    );
    path
}

/// Runs Schemathesis against the service on `port`; returns its exit code
/// (`None` when it was killed at [`RUN_BOUND`]) and its output.
async fn run_schemathesis(exe: &Path, port: u16) -> (Option<i32>, String) {
    // Its working directory holds the hook and whatever it writes.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("loopback_hosts.py"),
        HOOK.replace("HOSTS", &format!("{HOSTS:?}")),
    )
    .unwrap();
    std::fs::write(dir.path().join("schemathesis.toml"), CONFIG).unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--config-file", "schemathesis.toml", "run"])
        .arg(format!("http://127.0.0.1:{port}/api/v1/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
            "--max-examples",
            "50",
            "--request-timeout",
            "5",
            "--generation-database",
            "none",
            "--no-color",
        ])
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", "loopback_hosts")
        .env("PYTHONPATH", dir.path())
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        cmd.env_remove(proxy).env_remove(proxy.to_lowercase());
    }
    let mut child = cmd.spawn().unwrap();
    let output = Arc::new(Mutex::new(String::new()));
    pump_output(child.stdout.take().unwrap(), output.clone(), "schemathesis");
    pump_output(child.stderr.take().unwrap(), output.clone(), "schemathesis");
    let deadline = Instant::now() + RUN_BOUND;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Let the pumps drain the last lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = output.lock().unwrap().clone();
    (code, text)
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Every operation of the document, with generated valid and invalid
/// requests, against the real binary with a token, a connected row and a
/// disabled one: no 5xx, and every answer as documented.
#[sqlx::test(migrations = "../migrations")]
async fn api_answers_as_its_openapi_document_says(pool: PgPool) {
    let started = Instant::now();
    let exe = schemathesis();
    let broker = Broker::start().await;
    let connected = insert(&pool, &Row::new("api_site", broker.port())).await;
    insert(
        &pool,
        &Row {
            enabled: Some(false),
            ..Row::new("api_off", broker.port())
        },
    )
    .await;
    let app = App::spawn(&database_url(&pool), &[("MQTT_API_TOKEN", TOKEN)]);
    app.ready().await;
    assert!(
        wait_status(&pool, connected, "connected", Duration::from_secs(15)).await,
        "{}",
        app.output()
    );

    let (code, output) = run_schemathesis(&exe, app.http_port()).await;
    let elapsed = started.elapsed();
    assert!(
        code.is_some(),
        "schemathesis did not finish within {RUN_BOUND:?}; its output so far:\n{output}"
    );
    assert_eq!(
        code,
        Some(0),
        "schemathesis found problems (exit code {code:?}):\n{output}\n\
         --- the service's last 60 lines ---\n{}",
        tail(&app.output(), 60)
    );

    // The service took everything and still answers.
    let health = app.health(false).await;
    assert!(
        health.is_some(),
        "health does not answer:\n{}",
        app.output()
    );

    // No row the API accepted points off this machine.
    let hosts: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT broker_host FROM mqtt_connections")
            .fetch_all(&pool)
            .await
            .unwrap();
    for host in &hosts {
        assert!(
            HOSTS.contains(&host.as_str()),
            "a row points at {host:?}: the hook let a host through"
        );
    }
    assert!(
        elapsed < Duration::from_secs(90),
        "took {elapsed:?}; keep it under 90 s"
    );
    drop(broker);
}
