//! The observability docs stay true (issue 10): the Grafana dashboard is a
//! well-formed Grafana dashboard whose every panel queries Prometheus, every
//! `mqtt_supervisor_*` name in the dashboard and in docs/observability.md is
//! one the real binary exports on /metrics, and every metric family it
//! exports is documented there.

use mqtt_supervisor_tests::{
    App, Broker, Observer, Row, database_url, eventually, http_get, insert, repo_root, wait_status,
};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const PREFIX: &str = "mqtt_supervisor_";
const DASHBOARD: &str = "docs/grafana/mqtt-supervisor.json";
const GUIDE: &str = "docs/observability.md";
const SCRAPE: &str = "docs/prometheus/scrape.yml";
/// The data source every panel names: a variable of the dashboard, so it
/// works imported and provisioned alike.
const DATASOURCE_UID: &str = "${DS_PROMETHEUS}";

fn read(path: &str) -> String {
    let full = repo_root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Every `mqtt_supervisor_[a-z_]+` name in `text` (a small scanner in place
/// of a regex: the name must start at a word boundary).
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(PREFIX) {
        let start = from + at;
        let mut end = start + PREFIX.len();
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        // `mqtt_supervisor_*` (a wildcard in prose) names nothing, and
        // `mqtt_supervisor_core::…` is a crate in a log line's target.
        let rust_path = text[end..].starts_with("::");
        if boundary && !rust_path && end > start + PREFIX.len() {
            names.insert(text[start..end].to_owned());
        }
        from = end;
    }
    names
}

/// Every panel, those inside (collapsed) rows included.
fn panels(list: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in list.as_array().expect("`panels` is an array") {
        all.push(panel);
        if let Some(inner) = panel.get("panels") {
            all.extend(panels(inner));
        }
    }
    all
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// The dashboard is a Grafana dashboard JSON model: a title and uid, panels
/// with unique ids and a place on the grid, each (but rows) querying the
/// `DS_PROMETHEUS` data source with at least one PromQL target.
#[test]
fn dashboard_panels_each_query_prometheus() {
    let d = dashboard();
    assert!(
        d["title"].as_str().is_some_and(|t| !t.is_empty()),
        "no title"
    );
    assert!(d["uid"].as_str().is_some_and(|t| !t.is_empty()), "no uid");
    assert!(d["schemaVersion"].as_u64().is_some(), "no schemaVersion");
    let variables = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource"),
        "no `DS_PROMETHEUS` data source variable"
    );

    let all = panels(&d["panels"]);
    let mut ids = BTreeSet::new();
    let mut queried = 0;
    for panel in &all {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title}: no id"));
        assert!(ids.insert(id), "{title}: id {id} used twice");
        for key in ["h", "w", "x", "y"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], DATASOURCE_UID,
            "{title}: panel data source"
        );
        assert_eq!(panel["datasource"]["type"], "prometheus", "{title}");
        let targets = panel["targets"].as_array();
        assert!(targets.is_some_and(|t| !t.is_empty()), "{title}: no target");
        for target in targets.into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or("");
            assert!(
                !metric_names(expr).is_empty(),
                "{title}: target {} queries no mqtt_supervisor_ metric: {expr:?}",
                target["refId"]
            );
            assert_eq!(target["datasource"]["uid"], DATASOURCE_UID, "{title}");
        }
        queried += 1;
    }
    assert!(queried >= 12, "only {queried} panels query anything");
}

/// The scrape configuration is YAML with a job on /metrics; the example
/// alert rules in the guide are YAML too; every relative link of the guide
/// leads to a file that exists.
#[test]
fn guide_links_and_yaml_hold() {
    let scrape = yaml_rust2::YamlLoader::load_from_str(&read(SCRAPE))
        .unwrap_or_else(|e| panic!("{SCRAPE}: {e}"));
    let job = &scrape[0]["scrape_configs"][0];
    assert_eq!(job["metrics_path"].as_str(), Some("/metrics"), "{SCRAPE}");
    assert!(job["job_name"].as_str().is_some(), "{SCRAPE}: job_name");

    let guide = read(GUIDE);
    let mut blocks = 0;
    for block in guide.split("```yaml\n").skip(1) {
        let body = block.split("```").next().unwrap();
        yaml_rust2::YamlLoader::load_from_str(body)
            .unwrap_or_else(|e| panic!("{GUIDE}: a YAML block does not parse ({e}):\n{body}"));
        blocks += 1;
    }
    assert!(blocks >= 2, "{GUIDE}: the scrape job and the alert rules");

    let docs = repo_root().join("docs");
    for link in guide.split("](").skip(1) {
        let target = link.split(')').next().unwrap();
        if target.contains("://") || target.starts_with('#') {
            continue;
        }
        let path = target.split('#').next().unwrap();
        assert!(
            docs.join(path).exists(),
            "{GUIDE} links to {target}, which does not exist"
        );
    }
}

/// The families of a /metrics text (`# TYPE name type`) and the names of
/// its samples.
fn exported(metrics: &str) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut families = BTreeMap::new();
    let mut samples = BTreeSet::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                families.insert(name.to_owned(), kind.to_owned());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_owned());
        }
    }
    (families, samples)
}

/// The suffixes a family's samples add to its name, by type: OpenMetrics
/// names a counter family without its `_total` and an info family without
/// its `_info`; a histogram's series are `_bucket`, `_sum` and `_count`.
const SERIES_SUFFIXES: [(&str, &str); 6] = [
    ("counter", "_total"),
    ("info", "_info"),
    ("histogram", "_bucket"),
    ("histogram", "_sum"),
    ("histogram", "_count"),
    ("summary", "_count"),
];

/// Whether `name`, as a query or the docs use it, is exported: a family or
/// a sample, a histogram by its base name or one of its series, a counter
/// with or without `_total`.
fn is_exported(
    name: &str,
    families: &BTreeMap<String, String>,
    samples: &BTreeSet<String>,
) -> bool {
    families.contains_key(name)
        || samples.contains(name)
        || SERIES_SUFFIXES.iter().any(|(kind, suffix)| {
            name.strip_suffix(suffix)
                .is_some_and(|base| families.get(base).is_some_and(|k| k == kind))
        })
}

/// Whether the family `name` of type `kind` is among `documented` names,
/// by its own name or its series' (a counter by its `_total`).
fn is_documented(name: &str, kind: &str, documented: &BTreeSet<String>) -> bool {
    documented.contains(name)
        || SERIES_SUFFIXES
            .iter()
            .any(|(k, suffix)| *k == kind && documented.contains(&format!("{name}{suffix}")))
}

/// The service with per-connection metrics and one connected row that has
/// received a message and published an outbox row, so that every family has
/// something to say; then the names in the dashboard and the guide against
/// its real /metrics.
#[sqlx::test(migrations = "../migrations")]
async fn documented_metrics_are_the_exported_ones(pool: PgPool) {
    let broker = Broker::start().await;
    let id = insert(&pool, &Row::new("obs_site", broker.port())).await;
    let app = App::spawn(
        &database_url(&pool),
        &[("MQTT_METRICS_PER_CONNECTION", "true")],
    );
    app.ready().await;
    assert!(
        wait_status(&pool, id, "connected", Duration::from_secs(15)).await,
        "{}",
        app.output()
    );

    // One message in (stored in mqtt_inbox), one out (an outbox row).
    let peer = Observer::start(broker.port(), "obs_site/cmd/#").await;
    peer.publish("obs_site/telemetry", b"21.5".to_vec(), false)
        .await;
    sqlx::query(
        "INSERT INTO mqtt_outbox (connection_id, topic, payload, qos) VALUES ($1, $2, $3, 1)",
    )
    .bind(id)
    .bind("obs_site/cmd/x")
    .bind(b"on".as_slice())
    .execute(&pool)
    .await
    .unwrap();
    let settled = eventually(Duration::from_secs(15), || async {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM mqtt_inbox")
            .fetch_one(&pool)
            .await
            .unwrap();
        let published: i64 =
            sqlx::query_scalar("SELECT count(*) FROM mqtt_outbox WHERE published_at IS NOT NULL")
                .fetch_one(&pool)
                .await
                .unwrap();
        stored >= 1 && published >= 1
    })
    .await;
    assert!(settled, "message in or out not done:\n{}", app.output());

    let (code, metrics) = http_get(app.http_port(), "/metrics")
        .await
        .expect("GET /metrics answered");
    assert_eq!(code, 200, "{metrics}");
    let (families, samples) = exported(&metrics);
    let ours: BTreeMap<&String, &String> = families
        .iter()
        .filter(|(name, _)| name.starts_with(PREFIX))
        .collect();
    assert!(!ours.is_empty(), "no mqtt_supervisor_ family:\n{metrics}");
    for per_connection in [
        "mqtt_supervisor_connection_status",
        "mqtt_supervisor_connection_messages_total",
    ] {
        assert!(
            is_exported(per_connection, &families, &samples),
            "{per_connection} missing with MQTT_METRICS_PER_CONNECTION=true:\n{metrics}"
        );
    }

    let guide = read(GUIDE);
    let documented = metric_names(&guide);
    for (source, names) in [
        (DASHBOARD, metric_names(&read(DASHBOARD))),
        (GUIDE, documented.clone()),
    ] {
        let unknown: Vec<&String> = names
            .iter()
            .filter(|n| !is_exported(n, &families, &samples))
            .collect();
        assert!(
            unknown.is_empty(),
            "{source} names metrics the service does not export: {unknown:?}\n\
             exported families: {ours:?}"
        );
    }

    // The reverse: every family the service exports is in the guide.
    let undocumented: Vec<&&String> = ours
        .iter()
        .filter(|(name, kind)| !is_documented(name, kind, &documented))
        .map(|(name, _)| name)
        .collect();
    assert!(
        undocumented.is_empty(),
        "{GUIDE} does not document {undocumented:?}"
    );
    drop(peer);
    drop(broker);
}

/// The scanner and the name matching, on OpenMetrics text as
/// prometheus-client writes it.
#[test]
fn names_match_families_and_series() {
    let text = "x mqtt_supervisor_a_total, `mqtt_supervisor_*`, my_mqtt_supervisor_no \
                \"target\":\"mqtt_supervisor_core::connection\" \
                rate(mqtt_supervisor_h_bucket[5m]) mqtt_supervisor_b{x=\"y\"}";
    let names: Vec<String> = metric_names(text).into_iter().collect();
    assert_eq!(
        names,
        [
            "mqtt_supervisor_a_total",
            "mqtt_supervisor_b",
            "mqtt_supervisor_h_bucket"
        ]
    );

    let metrics = "# HELP mqtt_supervisor_a Things.\n# TYPE mqtt_supervisor_a counter\n\
                   mqtt_supervisor_a_total 3\n# TYPE mqtt_supervisor_h histogram\n\
                   mqtt_supervisor_h_bucket{le=\"1.0\"} 1\nmqtt_supervisor_h_sum 0.5\n\
                   mqtt_supervisor_h_count 1\n# TYPE mqtt_supervisor_build info\n\
                   mqtt_supervisor_build_info{version=\"1\"} 1\n# EOF\n";
    let (families, samples) = exported(metrics);
    for name in [
        "mqtt_supervisor_a",
        "mqtt_supervisor_a_total",
        "mqtt_supervisor_h",
        "mqtt_supervisor_h_bucket",
        "mqtt_supervisor_h_count",
        "mqtt_supervisor_build_info",
    ] {
        assert!(is_exported(name, &families, &samples), "{name}");
    }
    for name in [
        "mqtt_supervisor_b",
        "mqtt_supervisor_a_bucket",
        "mqtt_supervisor_h_total",
    ] {
        assert!(!is_exported(name, &families, &samples), "{name}");
    }
    let documented: BTreeSet<String> = ["mqtt_supervisor_a_total", "mqtt_supervisor_build_info"]
        .map(String::from)
        .into();
    assert!(is_documented("mqtt_supervisor_a", "counter", &documented));
    assert!(is_documented("mqtt_supervisor_build", "info", &documented));
    assert!(!is_documented(
        "mqtt_supervisor_h",
        "histogram",
        &documented
    ));
}
