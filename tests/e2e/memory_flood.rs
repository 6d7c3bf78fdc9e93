//! A broker that floods a connection with messages just under
//! MQTT_MAX_PACKET_SIZE: the process's peak memory stays bounded by a small
//! multiple of the limit (rumqttc reads up to 10 packets per burst) plus the
//! inbox's byte budget (8 MiB queued, and the statement that writes them),
//! not by what the broker sends. Prints the figure.

use mqtt_supervisor_tests::{App, FakeBroker, PacketKind, Row, Step, database_url, insert};
use sqlx::PgPool;
use std::time::Duration;

/// Peak resident memory of a process, in KiB (VmHWM).
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_flood_of_large_messages_stays_within_a_few_limits(pool: PgPool) {
    const LIMIT: usize = 4 << 20;
    const MESSAGES: usize = 60;
    let mut script = vec![
        Step::ConnAck { code: 0 },
        Step::WaitFor(PacketKind::Subscribe),
    ];
    for _ in 0..MESSAGES {
        script.push(Step::publish("site_1/big", LIMIT - 64));
    }
    script.push(Step::Sleep(Duration::from_secs(30)));
    let broker = FakeBroker::start(vec![script]).await;
    insert(&pool, &Row::new("site_1", broker.port())).await;
    let app = App::spawn(
        &database_url(&pool),
        &[
            ("MQTT_MAX_PACKET_SIZE", "4MiB"),
            ("RUST_LOG", "info,mqtt_supervisor_core::connection=trace"),
        ],
    );
    app.ready().await;
    let before = peak_kib(app.pid());
    assert!(
        broker
            .wait_packet(0, PacketKind::Subscribe, Duration::from_secs(10))
            .await
    );
    // The whole flood (240 MiB) went through the connection.
    let all = mqtt_supervisor_tests::eventually(Duration::from_secs(30), || async {
        app.output().matches("Message received.").count() >= MESSAGES
    })
    .await;
    assert!(all, "{}", app.output().matches("Message received.").count());
    let after = peak_kib(app.pid());
    eprintln!(
        "peak RSS {before} KiB before, {after} KiB after {MESSAGES} x {} KiB messages (limit {} KiB)",
        LIMIT / 1024 - 1,
        LIMIT / 1024
    );
    assert_eq!(broker.connections(), 1, "the flood is not a reason to drop");
    // rumqttc's burst, plus the inbox queue (8 MiB), the batch being
    // written, its encoded statement and the row being built. Measured
    // growth 41–82 MiB on an idle or loaded 2-core machine (the allocator's
    // arenas vary); the 240 MiB flood itself, stored unbounded, grew it by
    // 272 MiB.
    let inbox_kib = 4 * 8 * 1024;
    assert!(
        after < before + 16 * (LIMIT as u64 / 1024) + inbox_kib,
        "peak grew by {} KiB",
        after - before
    );
}
