//! `connections add|list|enable|disable|remove` against a real database:
//! what each writes, what `list` shows, and every error path with its exit
//! code (1 runtime, 2 usage) and a one-line message.

use super::{Cli, list_line};
use mqtt_supervisor_tests::{database_url, free_port};
use sqlx::PgPool;
use std::path::Path;
use std::time::Duration;

const PASSWORD: &str = "pw-Zq81-never-shown";

/// A self-signed CA certificate made with openssl in `dir`.
fn make_ca(dir: &Path) -> String {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout ca.key -out ca.pem -days 1 -subj /CN=cli-test-ca"
                .split_whitespace(),
        )
        .output()
        .expect("the openssl command-line tool must be installed");
    assert!(out.status.success(), "{out:?}");
    std::fs::read_to_string(dir.join("ca.pem")).unwrap()
}

type DbRow = (
    bool,
    i32,
    String,
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
);

async fn row(pool: &PgPool, name: &str) -> Option<DbRow> {
    sqlx::query_as(
        "SELECT is_enabled, broker_port, protocol, use_tls, ca_cert_pem, username, password, \
                subscriptions FROM mqtt_connections WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn add_list_enable_disable_remove(pool: PgPool) {
    let cli = Cli::new(&database_url(&pool));
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path());
    let ca_file = dir.path().join("ca.pem").display().to_string();

    let list = cli.run(&["connections", "list"]).await;
    assert_eq!(list.code, Some(0), "{list:?}");
    assert!(list.stdout.starts_with("No connections."), "{list:?}");

    let add = cli
        .run_with(
            &[
                "connections",
                "add",
                "site_1",
                "--host",
                "127.0.0.1",
                "--port",
                "1884",
                "--username",
                "alice",
                "--password-stdin",
                "--subscribe",
                "site_1/a/#",
                "--subscribe",
                "site_1/b/+",
                "--protocol",
                "5",
                "--disabled",
            ],
            Some(&format!("{PASSWORD}\n")),
            &[],
        )
        .await;
    assert_eq!(add.code, Some(0), "{add:?}");
    assert_eq!(
        add.stdout.trim(),
        "Added site_1 (127.0.0.1:1884, client ID site_1_test), disabled."
    );
    let r = row(&pool, "site_1").await.unwrap();
    assert_eq!(
        r,
        (
            false,
            1884,
            "5".to_owned(),
            false,
            None,
            Some("alice".to_owned()),
            Some(PASSWORD.to_owned()),
            Some(vec!["site_1/a/#".to_owned(), "site_1/b/+".to_owned()]),
        )
    );

    let add = cli
        .run(&[
            "connections",
            "add",
            "site_2",
            "--host",
            "broker.example",
            "--tls",
            "--ca-file",
            &ca_file,
        ])
        .await;
    assert_eq!(add.code, Some(0), "{add:?}");
    let r = row(&pool, "site_2").await.unwrap();
    assert_eq!((r.0, r.1, r.2.as_str(), r.3), (true, 1883, "3.1.1", true));
    assert_eq!(r.4.as_deref(), Some(ca.as_str()));
    assert_eq!((r.5, r.6, r.7), (None, None, None));

    let list = cli.run(&["connections", "list"]).await;
    assert_eq!(list.code, Some(0), "{list:?}");
    let header = list.stdout.lines().next().unwrap();
    let columns: Vec<&str> = header
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        columns,
        [
            "NAME",
            "ENABLED",
            "BROKER",
            "STATUS",
            "CLIENT ID",
            "LAST ERROR"
        ]
    );
    assert_eq!(list.stdout.lines().count(), 3, "{}", list.stdout);
    assert_eq!(
        list_line(&list.stdout, "site_1"),
        [
            "site_1",
            "no",
            "127.0.0.1:1884 (5)",
            "-",
            "site_1_test",
            "-"
        ]
    );
    assert_eq!(
        list_line(&list.stdout, "site_2"),
        [
            "site_2",
            "yes",
            "broker.example:1883 (3.1.1 tls)",
            "-",
            "site_2_test",
            "-"
        ]
    );

    let enable = cli.run(&["connections", "enable", "site_1"]).await;
    assert_eq!(
        (enable.code, enable.stdout.trim()),
        (Some(0), "Enabled site_1.")
    );
    assert!(row(&pool, "site_1").await.unwrap().0);
    let disable = cli.run(&["connections", "disable", "site_2"]).await;
    assert_eq!(
        (disable.code, disable.stdout.trim()),
        (Some(0), "Disabled site_2.")
    );
    assert!(!row(&pool, "site_2").await.unwrap().0);
    let list = cli.run(&["connections", "list"]).await;
    assert_eq!(list_line(&list.stdout, "site_1")[1], "yes");
    assert_eq!(list_line(&list.stdout, "site_2")[1], "no");

    let remove = cli.run(&["connections", "remove", "site_1"]).await;
    assert_eq!(
        (remove.code, remove.stdout.trim()),
        (Some(0), "Removed site_1.")
    );
    assert!(row(&pool, "site_1").await.is_none());
    let list = cli.run(&["connections", "list"]).await;
    assert!(!list.stdout.contains("site_1"), "{}", list.stdout);
    assert!(list.stdout.contains("site_2"), "{}", list.stdout);

    assert!(!cli.transcript().contains(PASSWORD), "{}", cli.transcript());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn connections_error_paths(pool: PgPool) {
    let cli = Cli::new(&database_url(&pool));
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let garbage = garbage.display().to_string();
    let missing = dir.path().join("missing.pem").display().to_string();

    for action in ["enable", "disable", "remove"] {
        let out = cli.run(&["connections", action, "no_such_site"]).await;
        assert_eq!(out.code, Some(1), "{action}: {out:?}");
        assert!(out.one_line_error().contains("no_such_site"), "{out:?}");
    }

    let add = ["connections", "add", "site_1", "--host", "127.0.0.1"];
    assert_eq!(cli.run(&add).await.code, Some(0));
    let dup = cli.run(&add).await;
    assert_eq!(dup.code, Some(1), "{dup:?}");
    assert!(dup.one_line_error().contains("site_1"), "{dup:?}");

    // Usage errors (exit 2): nothing is written.
    let usage: &[(&[&str], Option<&str>, &str)] = &[
        (&["--subscribe", "site_9/#/x"], None, "subscription"),
        (&["--port", "0"], None, "--port"),
        (&["--port", "70000"], None, "--port"),
        (&["--port", "abc"], None, "--port"),
        (&["--password-stdin"], Some("secret\n"), "--username"),
        (
            &["--username", "u", "--password-stdin"],
            Some(""),
            "password",
        ),
        (&["--tls", "--ca-file", &garbage], None, "ca_cert_pem"),
        (&["--tls", "--ca-file", &missing], None, "--ca-file"),
        (&["--ca-file", &missing], None, "--tls"),
        (&["--protocol", "4"], None, "--protocol"),
        (&["--host", "mqtt://x"], None, "broker_host"),
    ];
    for (extra, stdin, mentions) in usage {
        let mut args = vec!["connections", "add", "site_9"];
        if !extra.contains(&"--host") {
            args.extend(["--host", "127.0.0.1"]);
        }
        args.extend(extra.iter().copied());
        let out = cli.run_with(&args, *stdin, &[]).await;
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(
            out.stderr.contains(mentions),
            "{args:?} should mention {mentions}: {out:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        // clap's usage errors, or ours: one line naming the connection.
        if !out.stderr.starts_with("error:") {
            let line = out.one_line_error();
            assert!(line.starts_with("mqtt-supervisor: "), "{line}");
        }
    }
    assert!(row(&pool, "site_9").await.is_none());
    let out = cli.run(&["connections", "frobnicate"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
}

#[tokio::test]
async fn unreachable_database_fails_in_one_line() {
    let port = free_port();
    let closed = format!("postgres://postgres:dbpw-hidden@127.0.0.1:{port}/nowhere");
    let cli = Cli::new(&closed);
    let cases: &[&[&str]] = &[
        &["connections", "list"],
        &["connections", "add", "site_1", "--host", "127.0.0.1"],
        &["connections", "enable", "site_1"],
        &["connections", "disable", "site_1"],
        &["connections", "remove", "site_1"],
    ];
    // Each waits out the pool's acquire timeout (5 s): run them side by side.
    let outs = tokio::join!(
        cli.run(cases[0]),
        cli.run(cases[1]),
        cli.run(cases[2]),
        cli.run(cases[3]),
        cli.run(cases[4]),
    );
    let outs = [outs.0, outs.1, outs.2, outs.3, outs.4];
    for (args, out) in cases.iter().zip(&outs) {
        assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
        let line = out.one_line_error();
        assert!(line.contains("cannot connect to database"), "{line}");
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
        assert!(
            out.took < Duration::from_secs(10),
            "{args:?} took {:?}",
            out.took
        );
    }
    assert!(
        !cli.transcript().contains("dbpw-hidden"),
        "{}",
        cli.transcript()
    );
}
