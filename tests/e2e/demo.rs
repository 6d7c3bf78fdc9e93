//! `scripts/demo.sh` as a newcomer runs it, against a private database and
//! a private broker: it sets up the schema and its row, prints the
//! `export DATABASE_URL=...` line and the binary's path, and the CLI run
//! with exactly those lines sees the demo's connection; re-run on its own
//! leftovers it says what it found and what it did; and the CLI pointed at
//! a role that does not exist says so in one line, with what to do.
//!
//! The script runs with DEMO_SKIP_DEPS=1 (no apt-get, no system services)
//! and DEMO_BINARY set to the binary under test (no release build).

use mqtt_supervisor_tests::{
    App, Broker, Row, binary_path, database_url, free_port, insert, repo_root,
};
use sqlx::PgPool;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// scripts/demo.sh running in its own process group, output captured.
struct Demo {
    child: Child,
    output: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Demo {
    /// Runs the demo for `database_url` with its row on 127.0.0.1:`broker_port`.
    fn start(database_url: &str, broker_port: u16, env: &[(&str, &str)]) -> Demo {
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/demo.sh"))
            // The newcomer's shell: none of the kit's or the runner's knobs.
            .env_remove("RUST_LOG")
            .env_remove("MQTT_SUPERVISOR_BIN")
            .env_remove("MQTT_CONFIG_FILE")
            .env("DATABASE_URL", database_url)
            .env("MQTT_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("MQTT_LOG_FORMAT", "text")
            .env("DEMO_BROKER_PORT", broker_port.to_string())
            .env("DEMO_SKIP_DEPS", "1")
            .env("DEMO_BINARY", binary_path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        pump(child.stdout.take().unwrap(), output.clone());
        pump(child.stderr.take().unwrap(), output.clone());
        Demo {
            child,
            output,
            status: None,
        }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    async fn wait_output(&self, needle: &str, timeout: Duration) -> bool {
        mqtt_supervisor_tests::eventually(timeout, || async move { self.output().contains(needle) })
            .await
    }

    /// Sends `signal` to the process group (the script execs the service).
    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([
                format!("-{signal}"),
                "--".into(),
                format!("-{}", self.child.id()),
            ])
            .status();
    }

    async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.status = Some(status);
                tokio::time::sleep(Duration::from_millis(100)).await;
                return status.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.signal("KILL");
            let _ = self.child.wait();
        }
    }
}

fn pump(stream: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
    mqtt_supervisor_tests::pump_output(stream, sink, "demo");
}

/// What the demo told the user to type in another terminal: the value of
/// `export DATABASE_URL='...'` and the binary of `... connections list`.
fn printed_lines(output: &str) -> (String, String) {
    let url = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("export DATABASE_URL="))
        .unwrap_or_else(|| panic!("no export line in:\n{output}"));
    let url = url
        .strip_prefix('\'')
        .and_then(|u| u.strip_suffix('\''))
        .unwrap_or_else(|| panic!("not one quoted word: {url}"));
    let bin = output
        .lines()
        .find_map(|l| l.trim().strip_suffix(" connections list"))
        .unwrap_or_else(|| panic!("no `connections list` line in:\n{output}"));
    (url.to_owned(), bin.to_owned())
}

/// Runs `bin args` with only `DATABASE_URL` (and PATH) in its environment,
/// as from a new terminal: (exit code, stdout, stderr).
fn cli(bin: &str, database_url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(bin)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[sqlx::test(migrations = false)]
async fn demo_on_a_fresh_database_prints_what_the_cli_needs(pool: PgPool) {
    let broker = Broker::start().await;
    let url = database_url(&pool);
    let mut demo = Demo::start(&url, broker.port(), &[]);
    assert!(
        demo.wait_output("Ready:", Duration::from_secs(15)).await,
        "{}",
        demo.output()
    );
    let out = demo.output();
    assert!(
        out.contains(&format!(
            "demo: added connection demo_site -> 127.0.0.1:{} to mqtt_connections",
            broker.port()
        )),
        "{out}"
    );
    assert!(!out.contains("WARNING"), "{out}");
    assert!(!out.contains("other row"), "{out}");

    let (printed_url, printed_bin) = printed_lines(&out);
    assert_eq!(printed_url, url, "{out}");
    assert!(printed_bin.starts_with('/'), "not absolute: {printed_bin}");
    assert_eq!(
        std::fs::canonicalize(&printed_bin).unwrap(),
        std::fs::canonicalize(binary_path()).unwrap()
    );

    // From another terminal, with exactly what the demo printed.
    let port = broker.port();
    let demo_line = |stdout: &str| {
        stdout.lines().any(|l| {
            l.starts_with("demo_site ")
                && l.contains(&format!("127.0.0.1:{port}"))
                && l.contains(" yes ")
                && l.contains(" connected ")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, stdout, stderr) = cli(&printed_bin, &printed_url, &["connections", "list"]);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        if demo_line(&stdout) {
            break;
        }
        assert!(Instant::now() < deadline, "{stdout}\n{}", demo.output());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Ctrl-C, as the demo says.
    demo.signal("INT");
    assert_eq!(
        demo.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        demo.output()
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn demo_rerun_on_its_leftovers_says_what_it_found_and_did(pool: PgPool) {
    let broker = Broker::start().await;
    let elsewhere = free_port();
    let mut leftover = Row::new("demo_site", elsewhere);
    leftover.enabled = Some(false);
    insert(&pool, &leftover).await;
    insert(&pool, &Row::new("older_site", broker.port())).await;
    let mut off = Row::new("retired_site", 1);
    off.enabled = Some(false);
    insert(&pool, &off).await;

    let url = database_url(&pool);
    let env = [("DEMO_EXIT_AFTER_SETUP", "1")];
    let mut demo = Demo::start(&url, broker.port(), &env);
    assert_eq!(
        demo.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "{}",
        demo.output()
    );
    let out = demo.output();
    let port = broker.port();
    assert!(
        out.contains(&format!(
            "demo: demo_site was disabled and pointed at 127.0.0.1:{elsewhere}; \
             re-enabled it and pointed it at 127.0.0.1:{port}"
        )),
        "{out}"
    );
    assert!(
        out.contains("demo: mqtt_connections also holds 2 other row(s):"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "  older_site -> 127.0.0.1:{port} (enabled: the service starts it too)"
        )),
        "{out}"
    );
    assert!(
        out.contains("  retired_site -> 127.0.0.1:1 (disabled: not started)"),
        "{out}"
    );
    assert!(!out.contains("added connection"), "{out}");

    let (enabled, host, row_port): (bool, String, i32) = sqlx::query_as(
        "SELECT is_enabled, broker_host, broker_port FROM mqtt_connections WHERE name = 'demo_site'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(enabled);
    assert_eq!((host.as_str(), row_port), ("127.0.0.1", i32::from(port)));

    // Once more: nothing to fix, and it says that too.
    let mut again = Demo::start(&url, port, &env);
    assert_eq!(
        again.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "{}",
        again.output()
    );
    assert!(
        again.output().contains(&format!(
            "demo: connection demo_site -> 127.0.0.1:{port} is in mqtt_connections, enabled"
        )),
        "{}",
        again.output()
    );
}

#[tokio::test]
async fn demo_cli_and_run_with_an_unknown_role_say_what_to_do_once() {
    let url = "postgres://no_such_role@127.0.0.1:5432/postgres";
    let bin = binary_path().display().to_string();
    let (code, stdout, stderr) = cli(&bin, url, &["connections", "list"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let line = lines[0];
    assert!(
        line.starts_with("mqtt-supervisor: role \"no_such_role\" does not exist on 127.0.0.1:5432: set DATABASE_URL to a user that exists"),
        "{line}"
    );
    assert!(
        line.contains("postgres://postgres@127.0.0.1:5432/mqtt_supervisor"),
        "{line}"
    );
    // The cause once, in the server's words, without sqlx's wrapping.
    assert_eq!(line.matches("does not exist").count(), 1, "{line}");
    assert!(!line.contains("error returned from database"), "{line}");
    assert!(!line.contains("at line"), "{line}");

    // `run` stops at once with the same line (waiting would not help).
    let mut app = App::spawn_args(url, &["run"], &[]);
    let status = app.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", app.output());
    let printed: Vec<String> = app
        .output()
        .lines()
        .filter(|l| l.starts_with("mqtt-supervisor: "))
        .map(str::to_owned)
        .collect();
    assert_eq!(printed, [line.to_owned()], "{}", app.output());
}
