//! A broker's reason string with a NUL and a newline in it. Postgres `text`
//! cannot hold NUL: before the hardening the recorder put the refused batch
//! back forever, and no state was written for anyone. Now the text is
//! escaped before it is stored or logged, and the other tenant's states
//! keep being written.

use super::{Table, table_text, wait_error};
use mqtt_supervisor_tests::{
    App, Broker, FakeBroker, PacketKind, Row, Step, database_url, insert, state, wait_status,
};
use sqlx::PgPool;
use std::time::Duration;

const REASON: &[u8] = b"quota\0exceeded\nFAKE ERROR injected line";
/// How the service must store and log it: `\0` and `\n` as two characters.
const ESCAPED: &str = "quota\\0exceeded\\nFAKE ERROR injected line";

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn nul_in_a_reason_string_poisons_nobody(pool: PgPool) {
    // Tenant A: every connection is accepted, then closed with DISCONNECT
    // 0x80 (unspecified error) and the poisoned reason string.
    let hostile = FakeBroker::start(vec![vec![
        Step::ConnAck { code: 0 },
        Step::WaitFor(PacketKind::Subscribe),
        Step::Disconnect {
            reason: 0x80,
            reason_string: Some(REASON.to_vec()),
        },
    ]])
    .await;
    let mut broker = Broker::start().await;
    let a = insert(
        &pool,
        &Row {
            protocol: Some("5".into()),
            ..Row::new("tenant_a", hostile.port())
        },
    )
    .await;
    let b = insert(&pool, &Row::new("tenant_b", broker.port())).await;
    // A DISCONNECT with a reason is taken at its word: an ordinary loss,
    // with the broker's reason in the state. No takeover window, for tenant
    // B: its broker is stopped below, seconds after its CONNACK, which with
    // Mosquitto would look like a takeover.
    let app = App::spawn(&database_url(&pool), &[("MQTT_TAKEOVER_WINDOW", "0")]);
    app.ready().await;

    let Some((status, detail, last_error)) = wait_error(
        &pool,
        a,
        &["disconnected", "error"],
        "quota",
        Duration::from_secs(15),
    )
    .await
    else {
        panic!(
            "tenant A's failure was never written: {:?}\nfake broker saw {} connection(s)\n{}",
            state(&pool, a).await,
            hostile.connections(),
            app.output()
        );
    };
    eprintln!("tenant A: {status}: {last_error}");
    assert!(last_error.contains(ESCAPED), "{last_error:?}");
    for text in [&detail, &last_error] {
        assert!(!text.contains('\0') && !text.contains('\n'), "{text:?}");
    }
    assert!(
        hostile.connection(0).subscriptions == ["tenant_a/#"],
        "{:?}",
        hostile.connection(0)
    );

    assert!(
        wait_status(&pool, b, "connected", Duration::from_secs(10)).await,
        "tenant B: {:?}\n{}",
        state(&pool, b).await,
        app.output()
    );
    // After A's failure, B's next change is still written.
    broker.stop().await;
    assert!(
        wait_status(&pool, b, "disconnected", Duration::from_secs(10)).await,
        "tenant B's loss was not recorded after tenant A's poison: {:?}\n{}",
        state(&pool, b).await,
        app.output()
    );

    // Both tenants have their state rows, A's with the escaped reason.
    let states = table_text(&pool, Table::State).await;
    assert!(
        states.contains("tenant_a_test") && states.contains("tenant_b_test"),
        "{states}"
    );
    let events = table_text(&pool, Table::Events).await;
    assert!(
        events.contains("tenant_a") && events.contains("tenant_b"),
        "{events}"
    );
    // row_to_json writes a newline as `\n` and a backslash as `\\`.
    assert!(
        events.contains("quota\\\\0exceeded\\\\nFAKE ERROR"),
        "A's events carry the escaped reason:\n{events}"
    );

    let out = app.output();
    assert!(
        out.contains(ESCAPED),
        "the log reports the reason, escaped:\n{out}"
    );
    let forged: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("FAKE ERROR"))
        .collect();
    assert!(
        forged.is_empty(),
        "a broker forged log lines {forged:?}:\n{out}"
    );
    assert!(!out.contains('\0'), "a raw NUL reached the log:\n{out}");
    assert!(!out.contains("panicked"), "{out}");
}
