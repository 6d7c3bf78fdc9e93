//! `connections add` checks a new row with the service's own validator, so
//! the CLI cannot write a row the service would refuse: a name whose
//! client ID another row already has, a name with a control character, a
//! URL (with a password) as the host. Each is a usage error (exit 2) that
//! writes nothing and echoes no secret.

use mqtt_supervisor_tests::{Row, binary_path, database_url, insert};
use sqlx::PgPool;
use std::process::Stdio;
use std::time::Duration;

const CANARY: &str = "canary-cli-2f8d5e";

/// Exit code and everything printed by `mqtt-supervisor <args>`.
async fn run(database_url: &str, args: &[&str]) -> (Option<i32>, String) {
    let child = tokio::process::Command::new(binary_path())
        .args(args)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("MQTT_INSTANCE_ID", "test")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not exit within 30 s"))
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

async fn names(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT name FROM mqtt_connections ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn cli_add_uses_the_service_validator(pool: PgPool) {
    let url = database_url(&pool);
    insert(&pool, &Row::new("site_88", 1883)).await;
    let host = format!("mqtt://u:{CANARY}@h");
    for (args, says) in [
        (
            ["connections", "add", "site.88", "--host", "127.0.0.1"],
            "already used by row",
        ),
        (
            ["connections", "add", "bad\nname", "--host", "127.0.0.1"],
            "control character \\n",
        ),
        (
            ["connections", "add", "s1", "--host", host.as_str()],
            "URL scheme",
        ),
    ] {
        let (code, out) = run(&url, &args).await;
        eprintln!("{args:?}: exit {code:?}: {}", out.trim());
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(out.contains(says), "{args:?} must say {says:?}: {out}");
        assert!(!out.contains(CANARY), "{args:?} leaks the password: {out}");
        assert!(!out.contains("panicked"), "{out}");
        assert_eq!(out.trim().lines().count(), 1, "one line: {out:?}");
    }
    assert_eq!(names(&pool).await, ["site_88"], "a refused row was written");
}
