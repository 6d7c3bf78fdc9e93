//! A broker that sends a 200 MiB PUBLISH must not cost 200 MiB: rumqttc
//! refuses the packet from its header (MQTT_MAX_PACKET_SIZE=1MiB), so the
//! process's peak resident memory stays far below the packet. Before the
//! hardening an MQTT 3.1.1 client buffered the whole packet (214 MB).

use super::wait_error;
use mqtt_supervisor_tests::{
    App, ConnEnd, FakeBroker, PacketKind, Row, Step, database_url, insert, state,
};
use sqlx::PgPool;
use std::time::Duration;

const HUGE: usize = 200 << 20;
/// Far below the packet, well above what the service needs.
const BOUND_KIB: u64 = 64 << 10;

/// The peak resident set size (VmHWM) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"));
    line.split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"))
}

async fn huge_publish_is_refused_from_its_header(pool: PgPool, protocol: &str) {
    let broker = FakeBroker::start(vec![vec![
        Step::ConnAck { code: 0 },
        Step::WaitFor(PacketKind::Subscribe),
        Step::publish("site_1/huge", HUGE),
    ]])
    .await;
    let id = insert(
        &pool,
        &Row {
            protocol: Some(protocol.to_owned()),
            ..Row::new("site_1", broker.port())
        },
    )
    .await;
    let app = App::spawn(&database_url(&pool), &[("MQTT_MAX_PACKET_SIZE", "1MiB")]);
    app.ready().await;

    let refused = wait_error(
        &pool,
        id,
        &["disconnected", "error"],
        "above MQTT_MAX_PACKET_SIZE",
        Duration::from_secs(20),
    )
    .await;
    let peak = peak_rss_kib(app.pid());
    let Some((status, _, last_error)) = refused else {
        panic!(
            "no oversize error: {:?}\npeak RSS {peak} KiB; broker saw {} connection(s)\n{}",
            state(&pool, id).await,
            broker.connections(),
            app.output()
        );
    };
    assert!(last_error.contains("1048576"), "{last_error}");
    eprintln!(
        "MQTT {protocol}, a {} MiB PUBLISH: peak RSS (VmHWM) {:.1} MiB; state {status}: {last_error}",
        HUGE >> 20,
        peak as f64 / 1024.0
    );
    assert!(
        peak < BOUND_KIB,
        "peak RSS {peak} KiB for a {HUGE}-byte packet: it was buffered\n{}",
        app.output()
    );
    // The PUBLISH came after the SUBSCRIBE, and the service hung up on it.
    assert!(broker.wait_closed(0, Duration::from_secs(10)).await);
    let first = broker.connection(0);
    assert_eq!(first.subscriptions, ["site_1/#"], "{first:?}");
    assert!(
        matches!(
            first.end,
            Some(ConnEnd::WriteFailed | ConnEnd::ClientClosed)
        ),
        "{first:?}"
    );
    assert!(!app.output().contains("panicked"), "{}", app.output());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn huge_publish_memory_bound_v311(pool: PgPool) {
    huge_publish_is_refused_from_its_header(pool, "3.1.1").await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn huge_publish_memory_bound_v5(pool: PgPool) {
    huge_publish_is_refused_from_its_header(pool, "5").await;
}
