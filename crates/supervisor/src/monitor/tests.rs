//! Monitor internals against a real database: duplicate client IDs, and the
//! crash-and-revive path (a panicking actor is restarted with growing backoff).

use super::*;
use crate::state::Status;
use sqlx::PgPool;

fn settings() -> Arc<Settings> {
    let mut s = Settings::defaults();
    s.instance_id = "t".to_owned();
    s.connect_timeout = Duration::from_millis(200);
    Arc::new(s)
}

async fn insert(pool: &PgPool, name: &str) -> i64 {
    // Port 1 on loopback is closed: the actor stays `disconnected`, which is
    // all these tests need.
    sqlx::query_scalar(
        "INSERT INTO mqtt_connections (name, broker_host, broker_port) VALUES ($1, '127.0.0.1', 1) RETURNING id",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn monitor(pool: PgPool) -> (Monitor, FleetWatch, CancellationToken) {
    let shutdown = Shutdown::new(Duration::from_secs(5));
    let token = shutdown.token().clone();
    let (tx, rx) = Fleet::channel();
    let (mail, _tasks) = crate::Mail::new(pool.clone(), &settings(), Default::default());
    let m = Monitor::new(
        pool,
        MonitorOptions {
            settings: settings(),
            final_write_reserve: Duration::from_millis(500),
            owned: None,
            on_change: None,
        },
        Recorder::new("t"),
        mail,
        shutdown,
        Tasks::new(),
        tx,
    );
    (m, rx, token)
}

use crate::fleet::FleetWatch;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn colliding_client_ids_make_the_later_row_invalid(pool: PgPool) {
    let first = insert(&pool, "site_88").await;
    let second = insert(&pool, "site.88").await;
    let (mut m, fleet, token) = monitor(pool);
    m.reconcile().await;
    assert!(m.actors.contains_key(&first));
    assert!(!m.actors.contains_key(&second));
    let view = fleet.borrow().clone();
    let bad = view.connections.iter().find(|c| c.id == second).unwrap();
    let state = bad.state.borrow().clone();
    assert_eq!(state.status, Status::Error);
    assert!(
        state.detail.contains("already used by row"),
        "{}",
        state.detail
    );
    token.cancel();
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_panicking_actor_is_revived_with_backoff(pool: PgPool) {
    let id = insert(&pool, "site_1").await;
    let (mut m, fleet, token) = monitor(pool);
    m.reconcile().await;
    assert!(m.actors.contains_key(&id));

    for (round, ceiling) in [(1, 1), (2, 2)] {
        // Stand-in for a panic inside the actor: swap the actor's task for
        // one that panics, after stopping the real one.
        let actor = m.actors.get_mut(&id).unwrap();
        actor.handle.stop();
        actor.handle.stopped().await;
        actor.abort = m.tasks.spawn(async { panic!("injected fault") });
        let panicked = loop {
            let joined = m.tasks.join_next_with_id().await.unwrap();
            if joined.as_ref().is_err_and(|e| e.is_panic()) {
                break joined;
            }
        };
        m.on_exit(panicked);
        assert!(!m.actors.contains_key(&id), "round {round}");
        let due = *m.revive_at.get(&id).unwrap();
        let wait = due.saturating_duration_since(Instant::now());
        assert!(
            wait <= Duration::from_secs(ceiling),
            "round {round}: {wait:?}"
        );
        let down = fleet.borrow().clone();
        let view = down.connections.iter().find(|c| c.id == id).unwrap();
        assert_ne!(view.state.borrow().status, Status::Connected);

        // Not before its time...
        if wait > Duration::from_millis(50) {
            m.apply();
            assert!(
                !m.actors.contains_key(&id),
                "revived too early in round {round}"
            );
        }
        // ...and at its time.
        tokio::time::sleep_until(due).await;
        m.apply();
        assert!(m.actors.contains_key(&id), "round {round}: not revived");
        assert!(!m.revive_at.contains_key(&id));
    }
    assert_eq!(m.crashes.get(&id).unwrap().0.attempts(), 2);
    token.cancel();
}
