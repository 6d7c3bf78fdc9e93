//! `bench messages`: messages both ways through Postgres, beside the
//! broker's own ceiling measured the same way without a database.
//!
//! - inbound: a raw publisher sends N QoS 1 messages to one connection's
//!   subscription; the figure is N over the time until the last row is in
//!   `mqtt_inbox`. Ceiling: a raw subscriber receiving the same N, no
//!   database.
//! - outbox: M rows inserted in one statement; the figure is M over the time
//!   until the last row has `published_at`. Ceiling: a raw publisher with
//!   the same window waiting for M PUBACKs.
//! - latency: rows inserted one by one at a steady rate; `published_at -
//!   created_at` per row (both the database's clock), p50/p99/max.

use crate::broker::Broker;
use crate::database::Database;
use crate::progress;
use crate::service::Service;
use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to measure.
pub struct Options {
    pub binary: PathBuf,
    pub inbound: u32,
    pub outbox: u32,
    pub rate: u32,
    pub latency_secs: u64,
    pub window: u16,
    pub log_filter: String,
}

/// Runs the scenario; returns the figures.
pub async fn run(options: Options, db: Arc<Database>, dir: PathBuf) -> anyhow::Result<Value> {
    let broker = Broker::start(&dir).await?;
    let port = broker.port();
    let pool = db.pool();
    let id = db.insert_one("site_1", port).await?;
    let inbound_ceiling = raw_inbound(port, options.inbound).await?;
    progress(format!(
        "Broker ceiling: {} QoS 1 messages to a raw subscriber at {:.0}/s.",
        options.inbound, inbound_ceiling
    ));
    let outbox_ceiling = raw_outbound(port, options.outbox, options.window).await?;
    progress(format!(
        "Broker ceiling: {} QoS 1 publishes (window {}) at {:.0}/s.",
        options.outbox, options.window, outbox_ceiling
    ));

    let log = dir.join("service.log");
    let mut svc = Service::spawn_with(
        &options.binary,
        db.url(),
        &log,
        &options.log_filter,
        &[("MQTT_OUTBOX_WINDOW", options.window.to_string())],
    )?;
    svc.wait_health("site_1 is connected", Duration::from_secs(30), |r| {
        r["connections"]["healthy"].as_u64() == Some(1)
    })
    .await?;
    // Until the SUBACK: the retained `online` comes back once subscribed.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let began = Instant::now();
    publish_raw(port, "site_1/in/x", options.inbound, 100).await?;
    let want = i64::from(options.inbound);
    wait_count(
        pool,
        "SELECT count(*) FROM mqtt_inbox WHERE topic = 'site_1/in/x' AND id > $1",
        0,
        want,
    )
    .await?;
    let inbound_rate = f64::from(options.inbound) / began.elapsed().as_secs_f64();
    progress(format!("Inbound into mqtt_inbox: {inbound_rate:.0}/s."));

    let began = Instant::now();
    sqlx::query(
        "INSERT INTO mqtt_outbox (connection_id, topic, payload) \
         SELECT $1, 'site_1/out/x', convert_to(i::text, 'UTF8') FROM generate_series(1, $2) AS i",
    )
    .bind(id)
    .bind(i64::from(options.outbox))
    .execute(pool)
    .await
    .context("inserting outbox rows")?;
    wait_count(
        pool,
        "SELECT count(*) FROM mqtt_outbox WHERE published_at IS NOT NULL AND id > $1",
        0,
        i64::from(options.outbox),
    )
    .await?;
    let outbox_rate = f64::from(options.outbox) / began.elapsed().as_secs_f64();
    progress(format!("Outbox to the broker: {outbox_rate:.0}/s."));

    let latency = steady_latency(pool, id, options.rate, options.latency_secs).await?;
    progress(format!("Latency at {}/s: {latency}.", options.rate));
    let cpu = svc.cpu_secs()?;
    let stopped = svc.terminate(Duration::from_secs(10)).await?;
    broker.stop().await;
    Ok(json!({
        "scenario": "messages",
        "inbound_messages": options.inbound,
        "inbound_per_sec": inbound_rate.round(),
        "inbound_broker_ceiling_per_sec": inbound_ceiling.round(),
        "outbox_rows": options.outbox,
        "outbox_window": options.window,
        "outbox_per_sec": outbox_rate.round(),
        "outbox_broker_ceiling_per_sec": outbox_ceiling.round(),
        "latency_rate_per_sec": options.rate,
        "latency_ms": latency,
        "service_cpu_secs": cpu,
        "exit_code": stopped.code,
    }))
}

fn client(port: u16, id: &str, inflight: u16) -> (AsyncClient, rumqttc::EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(inflight);
    AsyncClient::new(options, 10_000)
}

/// Publishes `n` QoS 1 messages (`inflight` unacknowledged at most) and
/// waits for every PUBACK.
async fn publish_raw(port: u16, topic: &str, n: u32, inflight: u16) -> anyhow::Result<()> {
    let (client, mut events) = client(
        port,
        &format!("bench_pub_{}", crate::free_port()?),
        inflight,
    );
    let topic = topic.to_owned();
    let sender = tokio::spawn(async move {
        for i in 0..n {
            if client
                .publish(topic.as_str(), QoS::AtLeastOnce, false, i.to_string())
                .await
                .is_err()
            {
                break;
            }
        }
        client
    });
    let mut acked = 0;
    tokio::time::timeout(Duration::from_secs(300), async {
        while acked < n {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => bail!("raw publisher: {e}"),
            }
        }
        Ok(())
    })
    .await
    .context("raw publisher timed out")??;
    drop(sender.await);
    Ok(())
}

/// The broker's ceiling for one QoS 1 subscriber: messages per second.
async fn raw_inbound(port: u16, n: u32) -> anyhow::Result<f64> {
    let (client, mut events) = client(port, "bench_raw_sub", 100);
    client
        .subscribe("ceiling/in", QoS::AtLeastOnce)
        .await
        .context("raw subscriber")?;
    loop {
        if let Event::Incoming(Incoming::SubAck(_)) = events.poll().await? {
            break;
        }
    }
    let receiving = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::Publish(_))) => got += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        drop(client);
        got
    });
    let began = Instant::now();
    publish_raw(port, "ceiling/in", n, 100).await?;
    let got = receiving.await.context("raw subscriber")?;
    if got < n {
        bail!("the raw subscriber got {got} of {n}");
    }
    Ok(f64::from(n) / began.elapsed().as_secs_f64())
}

/// The broker's ceiling for QoS 1 publishes with `window` in flight.
async fn raw_outbound(port: u16, n: u32, window: u16) -> anyhow::Result<f64> {
    let began = Instant::now();
    publish_raw(port, "ceiling/out", n, window).await?;
    Ok(f64::from(n) / began.elapsed().as_secs_f64())
}

/// Waits until `query` (a count of rows with an id above `$1`) reaches
/// `want`.
async fn wait_count(
    pool: &sqlx::PgPool,
    query: &'static str,
    after: i64,
    want: i64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n: i64 = sqlx::query_scalar(query)
            .bind(after)
            .fetch_one(pool)
            .await?;
        if n >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{n} of {want} after 300 s ({query})");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Inserts one row at a time at `rate` per second for `secs`; returns
/// p50/p99/max of `published_at - created_at` in milliseconds.
async fn steady_latency(
    pool: &sqlx::PgPool,
    id: i64,
    rate: u32,
    secs: u64,
) -> anyhow::Result<Value> {
    let first: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM mqtt_outbox")
        .fetch_one(pool)
        .await?;
    let total = u64::from(rate) * secs;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..total {
        tick.tick().await;
        sqlx::query(
            "INSERT INTO mqtt_outbox (connection_id, topic, payload) VALUES ($1, 'site_1/lat/x', $2)",
        )
        .bind(id)
        .bind(i.to_string().into_bytes())
        .execute(pool)
        .await?;
    }
    wait_count(
        pool,
        "SELECT count(*) FROM mqtt_outbox WHERE published_at IS NOT NULL AND id > $1",
        first,
        i64::try_from(total).unwrap_or(i64::MAX),
    )
    .await?;
    let (p50, p99, max): (f64, f64, f64) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms) \
         FROM (SELECT extract(epoch FROM published_at - created_at)::float8 * 1000 AS ms \
               FROM mqtt_outbox WHERE id > $1) AS l",
    )
    .bind(first)
    .fetch_one(pool)
    .await?;
    Ok(
        json!({ "p50": (p50 * 10.0).round() / 10.0, "p99": (p99 * 10.0).round() / 10.0, "max": (max * 10.0).round() / 10.0, "rows": total }),
    )
}
