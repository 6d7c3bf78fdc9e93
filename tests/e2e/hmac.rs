//! With `hmac_secret`, outbox payloads travel in the envelope of
//! docs/hmac.md, which the document's Python example verifies; inbound
//! envelopes get a stored verdict; the secret reaches no log line.

use crate::outbox::outbox;
use mqtt_supervisor_tests::{
    App, Broker, Observer, Row, database_url, eventually, insert, wait_status,
};
use sqlx::PgPool;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs the Python example of docs/hmac.md with `args`, `stdin` and the
/// secret in its environment; returns what it printed.
fn python(args: &[&str], stdin: &[u8], secret: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut child = Command::new("python3")
        .arg(format!("{root}/docs/examples/hmac_verify.py"))
        .args(args)
        .env("HMAC_SECRET", secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

const SECRET: &str = "canary-hmac-7f3a9c";

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn hmac_envelopes_verify_with_the_documented_example(pool: PgPool) {
    let broker = Broker::start().await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    sqlx::query(
        "UPDATE mqtt_connections SET hmac_secret = $2, verify_inbound_hmac = true WHERE id = $1",
    )
    .bind(id)
    .bind(SECRET)
    .execute(&pool)
    .await
    .unwrap();
    let observer = Observer::start(broker.port(), "site_1/cmd/#").await;
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    assert!(wait_status(&pool, id, "connected", Duration::from_secs(10)).await);

    // Outbound: the service signs; the document's example verifies.
    outbox(&pool, id, "site_1/cmd/door", br#"{"cmd":"open"}"#, 1).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            !observer.payloads("site_1/cmd/door").is_empty()
        })
        .await
    );
    let envelope = observer.payloads("site_1/cmd/door")[0].clone();
    let verdict = python(
        &["--secret-env", "HMAC_SECRET"],
        format!("{envelope}\n").as_bytes(),
        SECRET,
    );
    assert_eq!(verdict.trim(), "valid\teyJjbWQiOiJvcGVuIn0=", "{envelope}");
    let tampered = envelope.replace("eyJjbWQiOiJvcGVuIn0=", "eyJjbWQiOiJzaHV0In0=");
    let verdict = python(
        &["--secret-env", "HMAC_SECRET"],
        format!("{tampered}\n").as_bytes(),
        SECRET,
    );
    assert_eq!(verdict.trim(), "bad_signature");

    // Inbound: envelopes signed by the example get a stored verdict.
    let signed = python(
        &["--secret-env", "HMAC_SECRET", "--sign"],
        b"reading 42",
        SECRET,
    );
    let signed = signed.trim().to_owned();
    let forged = signed.replace(&base64_of("reading 42"), &base64_of("reading 99"));
    observer
        .publish("site_1/in/a", signed.clone().into_bytes(), false)
        .await;
    observer
        .publish("site_1/in/b", signed.into_bytes(), false)
        .await;
    observer
        .publish("site_1/in/c", forged.into_bytes(), false)
        .await;
    observer
        .publish("site_1/in/d", b"plain".to_vec(), false)
        .await;
    let verdicts = || async {
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT topic, hmac_verdict FROM mqtt_inbox WHERE topic LIKE 'site_1/in/%' ORDER BY topic",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            verdicts().await.len() == 4
        })
        .await
    );
    let got: Vec<(String, Option<String>)> = verdicts().await;
    let words: Vec<&str> = got
        .iter()
        .map(|(_, v)| v.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(
        words,
        ["valid", "replayed", "bad_signature", "malformed"],
        "{got:?}"
    );
    assert!(
        !app.output().contains(SECRET),
        "the secret reached a log line"
    );
}

fn base64_of(text: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            &format!("import base64;print(base64.b64encode(b'{text}').decode())"),
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
