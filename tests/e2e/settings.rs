//! Settings errors stop the binary at once: exit code 2 and a message on
//! stderr naming the variable (or file key), before anything touches the
//! database. Unknown `MQTT_*` variables are only warned about.

use mqtt_supervisor_tests::{App, binary_path, free_port};
use std::process::Stdio;
use std::time::Duration;

/// Nothing listens there: a binary that got as far as the database would
/// wait for it and never exit by itself.
fn closed_database_url() -> String {
    format!("postgres://postgres@127.0.0.1:{}/nowhere", free_port())
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with a clean environment plus `env`, and waits for it.
async fn run(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut cmd = tokio::process::Command::new(binary_path());
    cmd.args(args)
        .env_clear()
        .env("DATABASE_URL", closed_database_url())
        .env("MQTT_INSTANCE_ID", "test")
        .env("MQTT_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = tokio::time::timeout(Duration::from_secs(10), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} with {env:?} did not exit: it went on to start"))
        .unwrap();
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn bad_environment_values_exit_2_naming_the_variable() {
    for (variable, value) in [
        ("MQTT_KEEP_ALIVE", "abc"),
        ("MQTT_KEEP_ALIVE", "3"),
        ("MQTT_SHUTDOWN_TIMEOUT", "-1"),
        ("MQTT_CONNECT_TIMEOUT", "0"),
        ("MQTT_MONITOR_INTERVAL", "soon"),
        ("MQTT_MAX_PACKET_SIZE", "lots"),
        ("MQTT_HTTP_ADDR", "nonsense"),
        ("MQTT_LOG_FORMAT", "xml"),
        ("MQTT_STATUS_TOPIC", "{prefix}/#"),
        ("MQTT_CLEAN_SESSION", "maybe"),
        ("DATABASE_URL", "mysql://x"),
    ] {
        for command in ["run", "check-config"] {
            let out = run(&[command], &[(variable, value)]).await;
            let what = format!("{command} with {variable}={value}");
            assert_eq!(out.code, Some(2), "{what}: {}{}", out.stdout, out.stderr);
            assert!(
                out.stderr.contains(variable),
                "{what}: stderr must name the variable: {:?}",
                out.stderr
            );
            assert!(
                !out.stdout.contains("Waiting for database"),
                "{what}: {}",
                out.stdout
            );
        }
    }
}

#[tokio::test]
async fn database_url_errors_do_not_echo_the_password() {
    let out = run(
        &["run"],
        &[("DATABASE_URL", "mysql://user:canary-5e1f@db/x")],
    )
    .await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("DATABASE_URL"), "{}", out.stderr);
    assert!(
        !format!("{}{}", out.stdout, out.stderr).contains("canary-5e1f"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[tokio::test]
async fn settings_file_problems_exit_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "keep_alive = 30\nbogus_key = 1\n").unwrap();
    let bad_value = dir.path().join("bad.toml");
    std::fs::write(&bad_value, "keep_alive = \"abc\"\n").unwrap();
    let missing = dir.path().join("missing.toml");
    let (unknown, bad_value, missing) = (
        unknown.to_str().unwrap(),
        bad_value.to_str().unwrap(),
        missing.to_str().unwrap(),
    );
    for command in ["run", "check-config"] {
        let out = run(&["--config", unknown, command], &[]).await;
        assert_eq!(out.code, Some(2), "{command}: {}", out.stderr);
        assert!(out.stderr.contains("bogus_key"), "{}", out.stderr);
        assert!(out.stderr.contains(unknown), "{}", out.stderr);

        // The same file through MQTT_CONFIG_FILE.
        let out = run(&[command], &[("MQTT_CONFIG_FILE", unknown)]).await;
        assert_eq!(out.code, Some(2), "{command}: {}", out.stderr);
        assert!(out.stderr.contains("bogus_key"), "{}", out.stderr);

        let out = run(&["--config", bad_value, command], &[]).await;
        assert_eq!(out.code, Some(2), "{command}: {}", out.stderr);
        assert!(out.stderr.contains("MQTT_KEEP_ALIVE"), "{}", out.stderr);
        assert!(out.stderr.contains(bad_value), "{}", out.stderr);

        let out = run(&["--config", missing, command], &[]).await;
        assert_eq!(out.code, Some(2), "{command}: {}", out.stderr);
        assert!(out.stderr.contains(missing), "{}", out.stderr);
    }
}

#[tokio::test]
async fn environment_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("settings.toml");
    std::fs::write(&file, "keep_alive = 30\nconnect_timeout = \"2s\"\n").unwrap();
    let out = run(
        &["--config", file.to_str().unwrap(), "check-config"],
        &[("MQTT_KEEP_ALIVE", "45")],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let line = |var: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(var))
            .unwrap_or_else(|| panic!("{var} missing:\n{}", out.stdout))
            .to_owned()
    };
    assert!(line("MQTT_KEEP_ALIVE").contains("45"), "{}", out.stdout);
    assert!(line("MQTT_KEEP_ALIVE").contains("environment"));
    assert!(
        line("MQTT_CONNECT_TIMEOUT").contains("2s"),
        "{}",
        out.stdout
    );
    assert!(line("MQTT_CONNECT_TIMEOUT").contains("file"));
    assert!(line("MQTT_SHUTDOWN_TIMEOUT").contains("default"));
}

#[tokio::test]
async fn unknown_mqtt_variables_are_only_a_warning() {
    let out = run(&["check-config"], &[("MQTT_FOO", "1")]).await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("MQTT_FOO"),
        "check-config must mention it:\n{}{}",
        out.stdout,
        out.stderr
    );

    // `run` warns and goes on (here, to wait for the absent database).
    let mut app = App::spawn(&closed_database_url(), &[("MQTT_FOO", "1")]);
    assert!(
        app.wait_output("Waiting for database", Duration::from_secs(10))
            .await,
        "{}",
        app.output()
    );
    let out = app.output();
    let warning = out.lines().find(|l| l.contains("MQTT_FOO"));
    assert!(
        warning.is_some_and(|l| l.contains("WARN")),
        "no warning about MQTT_FOO:\n{out}"
    );
    app.sigterm();
    let status = app.wait_exit(Duration::from_secs(5)).await;
    assert!(status.is_some_and(|s| s.success()), "{}", app.output());
}
