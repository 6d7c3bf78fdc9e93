//! The monitor page (/mqtt/monitor/) in a real browser: headless Chromium,
//! driven by tests/browser/monitor.mjs (playwright-core), against the real
//! binary, a real broker and a real database. The script checks the
//! connection's row and badge, a received JSON message in the live feed,
//! the filters, pause/resume, and a client ID takeover shown as a cooldown
//! with a countdown; it leaves screenshots in target/test-artifacts (the
//! ones in docs/images come from there).
//!
//! Chromium and playwright-core come from scripts/deps.sh; without them
//! this test fails and says so (it never skips).
//!
//! MQTT_RECONNECT_COOLDOWN=60 keeps the cooldown on screen for the whole
//! takeover step. MQTT_TAKEOVER_WINDOW=300: the takeover comes after the
//! earlier steps, 6 s after the CONNACK on a quiet machine and later on a
//! busy one, and Mosquitto sends no DISCONNECT 0x8E, so only a window wider
//! than the default 10 s judges that close a takeover every time (see
//! tests/e2e/takeover.rs).

use mqtt_supervisor_tests::{
    App, Broker, Row, database_url, free_port, insert, repo_root, wait_status,
};
use sqlx::PgPool;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const NAME: &str = "site_88";
/// `{name}_{MQTT_INSTANCE_ID}`; App::spawn runs instance `test`.
const CLIENT_ID: &str = "site_88_test";
/// Under the row's default subscription `site_88/#`.
const TOPIC: &str = "site_88/sensors/t1";
/// monitor.mjs bounds itself to 60 s; this is the backstop.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// Fails, naming the fix, when the browser or playwright-core is missing.
fn browser_installed(root: &Path) -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).is_file(),
        "{chromium} is missing: run scripts/deps.sh (it installs Debian's chromium) or set CHROMIUM"
    );
    let playwright = root.join("tests/browser/node_modules/playwright-core");
    assert!(
        playwright.is_dir(),
        "{} is missing: run scripts/deps.sh (it runs npm ci in tests/browser)",
        playwright.display()
    );
    chromium
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn monitor_page_shows_connections_feed_filters_pause_and_cooldown(pool: PgPool) {
    let root = repo_root();
    let chromium = browser_installed(&root);
    let artifacts = root.join("target/test-artifacts");
    for shot in ["monitor.png", "monitor-phone.png"] {
        let _ = std::fs::remove_file(artifacts.join(shot));
    }

    let broker = Broker::start().await;
    let id = insert(&pool, &Row::new(NAME, broker.port())).await;
    // Neighbours, so the page (and the screenshots) show more than one
    // state: a row that cannot work (error, with its reason), one whose
    // broker port refuses connections, and a disabled one.
    insert(
        &pool,
        &Row {
            password: Some("secret".to_owned()),
            ..Row::new("site_12", broker.port())
        },
    )
    .await;
    insert(&pool, &Row::new("site_91", free_port())).await;
    insert(
        &pool,
        &Row {
            enabled: Some(false),
            ..Row::new("site_7", broker.port())
        },
    )
    .await;
    let app = App::spawn(
        &database_url(&pool),
        &[
            ("MQTT_RECONNECT_COOLDOWN", "60"),
            ("MQTT_TAKEOVER_WINDOW", "300"),
        ],
    );
    app.ready().await;
    assert!(
        wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
        "{NAME} did not connect:\n{}",
        app.output()
    );

    let mut script = tokio::process::Command::new("node");
    script
        .arg(root.join("tests/browser/monitor.mjs"))
        .current_dir(root.join("tests/browser"))
        .env(
            "MONITOR_URL",
            format!("http://127.0.0.1:{}/mqtt/monitor/", app.http_port()),
        )
        .env("BROKER_PORT", broker.port().to_string())
        .env("CONNECTION", NAME)
        .env("CLIENT_ID", CLIENT_ID)
        .env("TOPIC", TOPIC)
        .env("SCREENSHOT_DIR", &artifacts)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Chromium and mosquitto_sub die with the script.
        .process_group(0)
        .kill_on_drop(true);
    let child = script
        .spawn()
        .expect("node is missing: run scripts/deps.sh");
    let pid = child.id().expect("a running child has an id");
    let out = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => out.expect("waiting for monitor.mjs"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            panic!(
                "monitor.mjs did not end within {} s\n--- service ---\n{}",
                SCRIPT_TIMEOUT.as_secs(),
                app.output()
            );
        }
    };
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "monitor.mjs failed ({}):\n{printed}\n--- service ---\n{}\n--- broker ---\n{}",
        out.status,
        app.output(),
        broker.log()
    );
    assert!(
        printed.contains("monitor.mjs: all steps passed"),
        "{printed}"
    );
    // Shown with --success-output or --no-capture: each step's timing.
    eprintln!("{printed}");
    for shot in ["monitor.png", "monitor-phone.png"] {
        let path = artifacts.join(shot);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is missing or empty", path.display());
    }
}
