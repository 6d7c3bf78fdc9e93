//! Replicas share the tenants through Postgres (issue 11): several real
//! processes with one DATABASE_URL and one MQTT_INSTANCE_ID, a real
//! Mosquitto whose log is the judge. A client ID held by two processes at
//! once shows in that log as a takeover ("Client … already connected,
//! closing old connection."); the only takeovers allowed are those of a
//! SIGSTOPped replica's connections while it was stopped and once its
//! leases could have expired: no protocol can close those (see
//! [`Frozen`]). MQTT_REPLICA_CHAOS_SECS sets the chaos test's length.
//!
//! Timing: MQTT_LEASE_PERIOD=6 (renewed every 2 s; a replica that cannot
//! renew gives up by 3 s after its last renewal), MQTT_CONNECT_TIMEOUT=2
//! (the service wants a lease period of at least twice that plus 2 s) and
//! MQTT_MONITOR_INTERVAL=2. The rows are inserted once every replica is
//! registered, so each takes its share at once and no connection has to
//! move at start. The first two tests check the analyzer itself against
//! real Mosquitto output, with one process.

use mqtt_supervisor_tests::{
    App, Broker, BrokerLog, DbProxy, Foreign, Frozen, Happening, Observer, Replicas, Row,
    database_url, eventually, insert, insert_sites, ports_of, wait_status,
};
use sqlx::PgPool;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(6);
const MONITOR: Duration = Duration::from_secs(2);
/// A lease period must be at least twice the connect timeout plus 2 s.
const ENV: [(&str, &str); 3] = [
    ("MQTT_LEASE_PERIOD", "6"),
    ("MQTT_CONNECT_TIMEOUT", "2"),
    ("MQTT_MONITOR_INTERVAL", "2"),
];
/// A dead replica's connections are connected again within a lease period
/// and one reconcile; the rest is margin for a busy 2-core machine.
const FAILOVER: Duration = Duration::from_secs(6 + 2 + 10);
/// How far apart the shares may be.
const SHARE_SLACK: u64 = 3;

fn client_id(k: usize) -> String {
    format!("site_{k}_test")
}

fn topic(client_id: &str) -> String {
    let name = client_id.strip_suffix("_test").unwrap_or(client_id);
    format!("{name}/backend/status")
}

/// A broker, an observer of every status topic, replicas and `n` rows that
/// every replica agrees on: all healthy, all connected once.
struct Scene {
    broker: Broker,
    observer: Observer,
    replicas: Replicas,
    n: usize,
}

async fn scene(pool: &PgPool, replicas: usize, n: usize) -> Scene {
    let url = database_url(pool);
    scene_urls(pool, &vec![url; replicas], n).await
}

async fn scene_urls(pool: &PgPool, urls: &[String], n: usize) -> Scene {
    let broker = Broker::start().await;
    let observer = Observer::start(broker.port(), "+/backend/status").await;
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let replicas = Replicas::start_urls(&database_url(pool), &urls, &broker, &ENV).await;
    assert!(
        replicas
            .wait_listed_alive(urls.len(), Duration::from_secs(20))
            .await,
        "the replicas do not all list each other as alive:\n{}",
        replicas.report().await
    );
    insert_sites(pool, n, broker.port()).await;
    let scene = Scene {
        broker,
        observer,
        replicas,
        n,
    };
    assert!(
        scene
            .replicas
            .wait_settled(n as u64, Duration::from_secs(45))
            .await,
        "{n} connections not shared out and healthy within 45 s:\n{}\n{}",
        BrokerLog::of(&scene.broker).summary(),
        scene.replicas.report().await
    );
    scene.wait_all_live(Duration::from_secs(20)).await;
    scene
}

impl Scene {
    fn ids(&self) -> Vec<String> {
        (1..=self.n).map(client_id).collect()
    }

    fn all_live(&self, log: &BrokerLog) -> bool {
        (1..=self.n).all(|k| log.live(&client_id(k)) == 1)
    }

    /// Waits until the broker has one connection for every row.
    async fn wait_all_live(&self, timeout: Duration) {
        let live = eventually(timeout, || async {
            self.all_live(&BrokerLog::of(&self.broker))
        })
        .await;
        if !live {
            let log = BrokerLog::of(&self.broker);
            let missing: Vec<String> = self
                .ids()
                .into_iter()
                .filter(|id| log.live(id) != 1)
                .collect();
            panic!(
                "not connected at the broker: {missing:?}\n{}\n{}\n{}",
                log.summary(),
                log.excerpt(&missing, 40),
                self.replicas.report().await
            );
        }
    }

    /// Payloads seen so far per status topic.
    fn seen(&self) -> HashMap<String, usize> {
        self.ids()
            .iter()
            .map(|id| (topic(id), self.observer.payloads(&topic(id)).len()))
            .collect()
    }

    /// Payloads on `id`'s status topic after `seen`.
    fn payloads_since(&self, id: &str, seen: &HashMap<String, usize>) -> Vec<String> {
        let t = topic(id);
        let all = self.observer.payloads(&t);
        all[seen.get(&t).copied().unwrap_or(0).min(all.len())..].to_vec()
    }

    /// Panics with the evidence if a client ID was ever held twice.
    async fn assert_never_held_twice(&self) {
        let log = BrokerLog::of(&self.broker);
        let frozen = self.replicas.frozen_windows();
        let holds = log.double_holds(frozen);
        let max = log.max_simultaneous_overall();
        if holds.is_empty() && max.as_ref().is_none_or(|(_, n)| *n <= 1) {
            return;
        }
        let mut message = format!("{}\nmax simultaneous: {max:?}\n", log.summary());
        for t in holds.iter().take(8) {
            message.push_str(&format!(
                "held twice: {} (closed port {:?} for port {:?}):\n{}",
                t.client_id,
                t.closed_port,
                t.new_port,
                log.around(t.line, 8, 2)
            ));
        }
        message.push_str(&format!("frozen windows: {frozen:?}\n"));
        message.push_str(&self.replicas.report().await);
        panic!("{message}");
    }

    /// Whether the running replicas' shares are equal within SHARE_SLACK
    /// and sum to every row.
    async fn shares_even(&self) -> bool {
        let owned: Vec<u64> = self
            .replicas
            .owned_all()
            .await
            .into_iter()
            .flatten()
            .collect();
        let (min, max) = (owned.iter().min(), owned.iter().max());
        owned.iter().sum::<u64>() == self.n as u64
            && max
                .zip(min)
                .is_some_and(|(max, min)| max - min <= SHARE_SLACK)
    }

    /// The shares of the running replicas: equal within SHARE_SLACK and
    /// summing to every row.
    async fn assert_even_shares(&self) {
        let even = self.shares_even().await;
        assert!(
            even,
            "uneven or incomplete shares {:?} of {}:\n{}",
            self.replicas.owned_all().await,
            self.n,
            self.replicas.report().await
        );
    }
}

/// The kinds of `id`'s events since line `mark`, for comparisons.
fn kinds_since(log: &BrokerLog, id: &str, mark: usize) -> Vec<&'static str> {
    log.timeline_since(id, mark)
        .iter()
        .map(|e| match e.what {
            Happening::Connected { .. } => "connected",
            Happening::TakenOver { .. } => "taken over",
            Happening::Disconnected { clean: true, .. } => "disconnected",
            Happening::Disconnected { clean: false, .. } => "lost",
        })
        .collect()
}

/// The analyzer against real Mosquitto output: a foreign client taking the
/// service's client ID is one takeover, never two live connections, and
/// the connection it closed is the service's (its port, from /proc).
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn broker_log_sees_a_foreign_takeover_once(pool: PgPool) {
    let broker = Broker::start().await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let app = App::spawn(&database_url(&pool), &[("MQTT_RECONNECT_COOLDOWN", "30")]);
    app.ready().await;
    assert!(
        wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
        "{}",
        app.output()
    );
    let ours = ports_of(app.pid(), broker.port());
    let log = BrokerLog::of(&broker);
    let port = match log.timeline("site_1_test")[..] {
        [e] => match e.what {
            Happening::Connected { port } => port,
            _ => None,
        },
        _ => None,
    };
    assert!(
        port.is_some_and(|p| ours.len() == 1 && ours.contains(&p)),
        "the service's port {ours:?} is not the one the broker logged:\n{}",
        broker.log()
    );
    let mark = log.line_count();

    let foreign = Foreign::connect(broker.port(), "site_1_test").await;
    assert!(wait_status(&pool, id, "cooldown", Duration::from_secs(5)).await);
    let log = BrokerLog::of(&broker);
    let context = format!("{}\n{}", log.summary(), broker.log());
    let [t] = log.takeovers() else {
        panic!("not exactly one takeover: {context}")
    };
    assert_eq!(t.client_id, "site_1_test", "{context}");
    assert!(t.line >= mark, "{context}");
    assert_eq!(t.closed_port, port, "{context}");
    assert!(t.new_port.is_some_and(|p| !ours.contains(&p)), "{context}");
    assert_eq!(log.connects("site_1_test"), 2, "{context}");
    assert_eq!(log.max_simultaneous("site_1_test"), 1, "{context}");
    assert_eq!(log.live("site_1_test"), 1, "{context}");
    assert_eq!(log.double_holds(&[]).len(), 1, "{context}");
    let window = |ports| Frozen {
        label: "test".to_owned(),
        ports,
        from_line: mark,
        until_line: None,
        not_before: 0,
    };
    assert!(log.double_holds(&[window(ours.clone())]).is_empty());
    let theirs = t.new_port.into_iter().collect();
    assert_eq!(log.double_holds(&[window(theirs)]).len(), 1);

    foreign.disconnect().await;
    let gone = eventually(Duration::from_secs(5), || async {
        let log = BrokerLog::of(&broker);
        log.live("site_1_test") == 0 && log.clean_disconnects("site_1_test") == 1
    })
    .await;
    assert!(gone, "{}", broker.log());
    app.sigterm();
    let _ = app_exit(app).await;
}

async fn app_exit(mut app: App) -> Option<std::process::ExitStatus> {
    app.wait_exit(Duration::from_secs(10)).await
}

/// The kit's freeze record against a real process: a foreign client taking
/// the ID of a frozen service is excused (the frozen process could not let
/// go); the thawed service taking it back is a double hold.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_frozen_window_excuses_only_the_frozen_process(pool: PgPool) {
    let broker = Broker::start().await;
    insert(&pool, &Row::new("site_1", broker.port())).await;
    // Takeover window off: the thawed service reconnects at once.
    let env = [("MQTT_TAKEOVER_WINDOW", "0"), ENV[0], ENV[1]];
    let mut replicas = Replicas::start(&database_url(&pool), 1, &broker, &env).await;
    let up = eventually(Duration::from_secs(10), || async {
        BrokerLog::of(&broker).live("site_1_test") == 1
    })
    .await;
    assert!(up, "{}", replicas.report().await);
    replicas.sigstop(0).await;
    let ports = replicas.frozen_windows()[0].ports.clone();
    assert_eq!(ports.len(), 1, "{ports:?}");
    // A takeover counts as a handover only once the leases could expire.
    tokio::time::sleep(LEASE / 6 + Duration::from_secs(1)).await;
    let _foreign = Foreign::connect(broker.port(), "site_1_test").await;
    replicas.sigcont(0).await;
    let back = eventually(Duration::from_secs(15), || async {
        BrokerLog::of(&broker).takeovers().len() == 2
    })
    .await;
    let log = BrokerLog::of(&broker);
    assert!(back, "{}\n{}", log.summary(), broker.log());
    let takeovers = log.takeovers();
    let holds = log.double_holds(replicas.frozen_windows());
    assert_eq!(takeovers[0].closed_port, ports.iter().next().copied());
    assert_eq!(holds, [&takeovers[1]], "{:?}", replicas.frozen_windows());
    assert_eq!(takeovers[1].closed_port, takeovers[0].new_port);
    replicas.shutdown().await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn three_replicas_share_300_connections(pool: PgPool) {
    let s = scene(&pool, 3, 300).await;
    // Room for a late second connect to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = BrokerLog::of(&s.broker);
    let counts = log.connect_counts();
    let wrong: Vec<String> = s
        .ids()
        .into_iter()
        .filter(|id| counts.get(id) != Some(&1))
        .collect();
    assert!(
        wrong.is_empty(),
        "not connected exactly once: {wrong:?}\n{}\n{}",
        log.summary(),
        log.excerpt(&wrong, 40)
    );
    s.assert_never_held_twice().await;
    s.assert_even_shares().await;

    // Health, verbose details, the REST list and the CLI agree.
    let mut seen = BTreeSet::new();
    let mut bodies = Vec::new();
    let listed = s.replicas.listed(0).await.unwrap();
    let alive: Vec<&serde_json::Value> = listed.iter().filter(|r| r["alive"] == true).collect();
    assert_eq!(alive.len(), 3, "{listed:?}");
    for i in 0..3 {
        let (_, body) = s.replicas.health(i, false).await.unwrap();
        let replica_id = body["service"]["replica_id"].as_str().unwrap_or_default();
        let pid = s.replicas.pid(i);
        // `{host}-{pid}`, perhaps with a suffix that tells a reused pid apart.
        let pid_text = pid.to_string();
        assert!(
            replica_id.split('-').skip(1).any(|part| part == pid_text),
            "{body}"
        );
        let owned = body["service"]["owned"].as_u64();
        let ids = s.replicas.client_ids(i).await.unwrap();
        assert_eq!(Some(ids.len() as u64), owned, "{body}");
        for id in ids {
            assert!(seen.insert(id.clone()), "{id} listed by two replicas");
        }
        let entry = alive.iter().find(|r| r["replica_id"] == replica_id);
        assert!(
            entry.is_some_and(|r| r["pid"] == pid
                && r["owned"].as_u64() == owned
                && ["host", "version", "started_at", "heartbeat_at"]
                    .iter()
                    .all(|k| r[k].is_string())),
            "replica {i} ({body}) not listed as it is: {listed:?}"
        );
        bodies.push(body);
    }
    assert_eq!(seen.len(), 300, "verbose details do not cover every row");
    let mut cli = App::spawn_args(&database_url(&pool), &["replicas"], &[]);
    let code = cli.exit_code().await;
    let printed = cli.output();
    assert_eq!(code, Some(0), "{printed}");
    for body in &bodies {
        let replica_id = body["service"]["replica_id"].as_str().unwrap_or("?");
        assert!(
            printed.contains(replica_id),
            "{replica_id} missing:\n{printed}"
        );
    }

    let flapped: Vec<(String, Vec<String>)> = s
        .ids()
        .into_iter()
        .map(|id| (id.clone(), s.observer.payloads(&topic(&id))))
        .filter(|(_, p)| p != &["online"])
        .collect();
    assert!(
        flapped.is_empty(),
        "status other than one `online`: {flapped:?}"
    );
    // Health is per replica: its counts are of the connections it owns;
    // `total` is the table's rows.
    for body in &bodies {
        assert_eq!(body["connections"]["total"], 300, "{body}");
        assert_eq!(
            body["connections"]["enabled"], body["service"]["owned"],
            "{body}"
        );
    }
    s.replicas.shutdown().await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn sigkill_one_replica_moves_its_connections(pool: PgPool) {
    let mut s = scene(&pool, 3, 60).await;
    let victim = 1;
    let moved = s.replicas.client_ids(victim).await.unwrap();
    assert!(!moved.is_empty(), "{}", s.replicas.report().await);
    let seen = s.seen();
    let mark = s.replicas.log_lines();
    let killed = Instant::now();
    s.replicas.sigkill(victim).await;

    let back = eventually(FAILOVER, || async {
        let log = BrokerLog::of(&s.broker);
        moved.iter().all(|id| {
            log.live(id) == 1
                && log.connects_since(id, mark) == 1
                && s.observer.last(&topic(id)).as_deref() == Some("online")
        })
    })
    .await;
    let took = killed.elapsed();
    eprintln!("SIGKILL to {} connections back: {took:?}", moved.len());
    let log = BrokerLog::of(&s.broker);
    assert!(
        back,
        "not all connected again within {FAILOVER:?}:\n{}\n{}\n{}",
        log.summary(),
        log.excerpt(&moved, 40),
        s.replicas.report().await
    );
    for id in &moved {
        assert_eq!(
            s.payloads_since(id, &seen),
            ["offline", "online"],
            "{id}: the Will, then the new owner"
        );
        assert_eq!(
            kinds_since(&log, id, mark),
            ["lost", "connected"],
            "{id}:\n{}",
            log.excerpt(&[id], 10)
        );
    }
    let disturbed: Vec<String> = s
        .ids()
        .into_iter()
        .filter(|id| !moved.contains(id))
        .filter(|id| !s.payloads_since(id, &seen).is_empty() || log.connects_since(id, mark) > 0)
        .collect();
    assert!(
        disturbed.is_empty(),
        "the survivors' own connections moved: {disturbed:?}"
    );
    assert!(
        s.replicas.wait_settled(60, Duration::from_secs(10)).await,
        "{}",
        s.replicas.report().await
    );
    s.assert_never_held_twice().await;
    s.assert_even_shares().await;
    s.replicas.shutdown().await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn sigstop_longer_than_the_lease_then_sigcont(pool: PgPool) {
    let mut s = scene(&pool, 3, 60).await;
    let victim = 2;
    let frozen_ids = s.replicas.client_ids(victim).await.unwrap();
    let before = frozen_ids.len() as u64;
    let mark = s.replicas.log_lines();
    s.replicas.sigstop(victim).await;
    let stopped = Instant::now();

    let taken = eventually(FAILOVER, || async {
        let log = BrokerLog::of(&s.broker);
        frozen_ids
            .iter()
            .all(|id| log.live(id) == 1 && log.connects_since(id, mark) == 1)
    })
    .await;
    eprintln!(
        "SIGSTOP to {before} connections taken: {:?}",
        stopped.elapsed()
    );
    assert!(
        taken,
        "the frozen replica's connections were not taken:\n{}\n{}",
        BrokerLog::of(&s.broker).summary(),
        s.replicas.report().await
    );
    tokio::time::sleep((2 * LEASE).saturating_sub(stopped.elapsed())).await;
    s.replicas.sigcont(victim).await;

    // Its share drops to what it can prove (nothing), then grows back.
    let samples = std::sync::Mutex::new(Vec::new());
    let rebalanced = eventually(3 * LEASE + Duration::from_secs(10), || {
        let samples = &samples;
        let replicas = &s.replicas;
        async move {
            let owned = replicas.owned(victim).await;
            let dropped = {
                let mut samples = samples.lock().unwrap();
                samples.push(owned);
                samples.iter().flatten().any(|&o| o < before)
            };
            dropped && owned.is_some_and(|o| o + SHARE_SLACK >= 20) && replicas.settled(60).await
        }
    })
    .await;
    let samples = samples.into_inner().unwrap();
    assert!(
        rebalanced,
        "the thawed replica's share {samples:?} (was {before}) did not drop and come back:\n{}",
        s.replicas.report().await
    );
    s.wait_all_live(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.assert_never_held_twice().await;
    let log = BrokerLog::of(&s.broker);
    let mut handed = BTreeSet::new();
    for t in log.takeovers() {
        assert!(
            frozen_ids.contains(&t.client_id) && handed.insert(t.client_id.clone()),
            "a takeover that is no handover of a frozen connection: {t:?}\n{}",
            log.around(t.line, 8, 2)
        );
    }
    eprintln!(
        "{} (handovers of frozen connections: {})",
        log.summary(),
        handed.len()
    );
    s.assert_even_shares().await;
    s.replicas.shutdown().await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_fourth_replica_receives_a_share_without_double_holding(pool: PgPool) {
    let mut s = scene(&pool, 3, 60).await;
    let seen = s.seen();
    let mark = s.replicas.log_lines();
    let added = Instant::now();
    let fourth = s.replicas.add().await;
    let got = eventually(3 * LEASE + Duration::from_secs(10), || async {
        s.replicas
            .owned(fourth)
            .await
            .is_some_and(|o| o + SHARE_SLACK >= 60 / 4)
            && s.replicas.settled(60).await
    })
    .await;
    eprintln!("a fourth replica got its share in {:?}", added.elapsed());
    assert!(
        got,
        "no share for the fourth replica:\n{}",
        s.replicas.report().await
    );
    s.wait_all_live(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.assert_never_held_twice().await;

    // Every move is a clean handover: the old owner said `offline` and
    // disconnected, then the new one connected.
    let log = BrokerLog::of(&s.broker);
    let moved: Vec<String> = s
        .ids()
        .into_iter()
        .filter(|id| log.connects_since(id, mark) > 0)
        .collect();
    for id in &moved {
        let kinds = kinds_since(&log, id, mark);
        let handovers = kinds.chunks(2).all(|p| p == ["disconnected", "connected"]);
        assert!(handovers, "{id}: {kinds:?}\n{}", log.excerpt(&[id], 12));
        let payloads = s.payloads_since(id, &seen);
        let pairs = payloads.chunks(2).all(|p| p == ["offline", "online"]);
        assert!(pairs && !payloads.is_empty(), "{id}: {payloads:?}");
    }
    let fourths = s.replicas.client_ids(fourth).await.unwrap();
    assert!(
        fourths.iter().all(|id| moved.contains(id)),
        "the fourth replica holds {fourths:?}, moved were {moved:?}"
    );
    s.assert_even_shares().await;
    s.replicas.shutdown().await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_replica_cut_from_postgres_gives_up_before_its_leases_expire(pool: PgPool) {
    let proxy = DbProxy::start_for(&pool).await;
    let direct = database_url(&pool);
    let urls = [direct.clone(), direct, proxy.url_for(&pool)];
    let s = scene_urls(&pool, &urls, 60).await;
    let victim = 2;
    let ids = s.replicas.client_ids(victim).await.unwrap();
    assert!(!ids.is_empty(), "{}", s.replicas.report().await);
    let seen = s.seen();
    let mark = s.replicas.log_lines();
    let cut = Instant::now();
    proxy.cut().await;

    // It gives up by half a period after its last renewal; its leases
    // expire no sooner than two thirds of a period after the cut.
    let gave_up = eventually(LEASE + Duration::from_secs(2), || async {
        let log = BrokerLog::of(&s.broker);
        ids.iter().all(|id| {
            log.timeline_since(id, mark)
                .first()
                .is_some_and(|e| matches!(e.what, Happening::Disconnected { clean: true, .. }))
        })
    })
    .await;
    let took = cut.elapsed();
    eprintln!(
        "cut from Postgres: gave up {} connections in {took:?}",
        ids.len()
    );
    let log = BrokerLog::of(&s.broker);
    assert!(
        gave_up && took <= LEASE / 2 + Duration::from_secs(2),
        "did not give up its connections cleanly within {:?} (took {took:?}):\n{}\n{}",
        LEASE / 2 + Duration::from_secs(2),
        log.excerpt(&ids, 40),
        s.replicas.report().await
    );

    let taken = eventually(FAILOVER, || async {
        let log = BrokerLog::of(&s.broker);
        let owned = s.replicas.owned(0).await.unwrap_or(0) + s.replicas.owned(1).await.unwrap_or(0);
        owned == 60 && ids.iter().all(|id| log.live(id) == 1)
    })
    .await;
    assert!(
        taken,
        "the others did not take everything within {FAILOVER:?}:\n{}\n{}",
        BrokerLog::of(&s.broker).summary(),
        s.replicas.report().await
    );
    let log = BrokerLog::of(&s.broker);
    for id in &ids {
        assert_eq!(
            kinds_since(&log, id, mark),
            ["disconnected", "connected"],
            "{id}:\n{}",
            log.excerpt(&[id], 10)
        );
        assert_eq!(s.payloads_since(id, &seen), ["offline", "online"], "{id}");
    }
    let owns_nothing = eventually(Duration::from_secs(5), || async {
        s.replicas.owned(victim).await == Some(0)
    })
    .await;
    assert!(owns_nothing, "{}", s.replicas.report().await);
    s.assert_never_held_twice().await;
    s.replicas.shutdown().await;
}

/// xorshift64*: the test kit has no random crate; the seed is printed so a
/// failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }

    fn pick(&mut self, from: &[usize]) -> usize {
        from[self.below(from.len() as u64) as usize]
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// Random kills, pauses and restarts, never fewer than two replicas
/// running; MQTT_REPLICA_CHAOS_SECS long (60 s unless set),
/// MQTT_REPLICA_CHAOS_SEED repeats a run's choices.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn chaos_never_holds_a_client_id_twice(pool: PgPool) {
    let secs = std::env::var("MQTT_REPLICA_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed = std::env::var("MQTT_REPLICA_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(1, |d| d.as_nanos() as u64) | 1
        });
    eprintln!("chaos: {secs} s, MQTT_REPLICA_CHAOS_SEED={seed}");
    let mut rng = Rng(seed);
    let url = database_url(&pool);
    let mut s = scene(&pool, 3, 60).await;
    let mut thaw_at: HashMap<usize, Instant> = HashMap::new();
    let mut actions = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let due: Vec<usize> = thaw_at
            .iter()
            .filter(|(_, at)| **at <= Instant::now())
            .map(|(i, _)| *i)
            .collect();
        for i in due {
            thaw_at.remove(&i);
            s.replicas.sigcont(i).await;
            actions.push(format!("SIGCONT {i}"));
        }
        let running = s.replicas.running();
        let ended: Vec<usize> = (0..s.replicas.len())
            .filter(|&i| !running.contains(&i) && !thaw_at.contains_key(&i))
            .collect();
        // Take one away while more than two run; otherwise bring one back.
        let can_take = running.len() > 2;
        match rng.below(4) {
            0 if can_take => {
                let i = rng.pick(&running);
                s.replicas.sigkill(i).await;
                actions.push(format!("SIGKILL {i}"));
            }
            1 if can_take => {
                let i = rng.pick(&running);
                let lease = LEASE.as_millis() as u64;
                let pause = rng.millis(lease / 2, 5 * lease / 2);
                s.replicas.sigstop(i).await;
                thaw_at.insert(i, Instant::now() + pause);
                actions.push(format!("SIGSTOP {i} for {pause:?}"));
            }
            2 if can_take => {
                let i = rng.pick(&running);
                let clean = s.replicas.sigterm(i).await;
                actions.push(format!("SIGTERM {i} (exit 0: {clean})"));
            }
            _ if !ended.is_empty() => {
                let i = rng.pick(&ended);
                s.replicas.restart(i);
                actions.push(format!("restart {i}"));
            }
            _ if s.replicas.len() < 4 => {
                let i = s.replicas.spawn(&url);
                actions.push(format!("start {i}"));
            }
            _ => {}
        }
        tokio::time::sleep(rng.millis(1_000, 3_000)).await;
    }
    for i in thaw_at.into_keys() {
        s.replicas.sigcont(i).await;
        actions.push(format!("SIGCONT {i}"));
    }
    eprintln!("chaos actions: {actions:?}");
    // Quiet again: every row owned, every replica healthy, the shares
    // even (no handover left in flight) and one connection per row.
    let quiet = eventually(3 * LEASE + MONITOR + Duration::from_secs(20), || async {
        s.replicas.settled(60).await
            && s.shares_even().await
            && s.all_live(&BrokerLog::of(&s.broker))
    })
    .await;
    assert!(
        quiet,
        "not settled after the chaos ({actions:?}):\n{}\n{}",
        BrokerLog::of(&s.broker).summary(),
        s.replicas.report().await
    );
    // Room for a late reconnect of a thawed replica to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.assert_never_held_twice().await;
    let log = BrokerLog::of(&s.broker);
    eprintln!(
        "{} (excused handovers of frozen replicas: {})",
        log.summary(),
        log.takeovers().len()
    );
    s.replicas.shutdown().await;
}
