//! docs/kubernetes/deployment.yaml agrees with the code and with what its
//! README promises. No cluster runs here, so these read the manifest with a
//! YAML parser and check what would otherwise only fail in production:
//!
//! - a Deployment of several replicas running `mqtt-supervisor run` itself
//!   (not the image's supervisord), all with one explicit MQTT_INSTANCE_ID;
//! - only documented settings, with values the binary accepts, and the
//!   secrets (DATABASE_URL, MQTT_API_TOKEN) only from a Secret;
//! - readiness asks the health endpoint, liveness does not (a broker outage
//!   must not restart pods), both on the port the service listens on;
//! - the grace period outlasts MQTT_SHUTDOWN_TIMEOUT; the Service reaches
//!   the same port; the pod runs unprivileged on a read-only filesystem.

use crate::deploy_files::DOCUMENTED_SETTINGS;
use mqtt_supervisor_tests::repo_root;
use std::net::SocketAddr;
use std::time::Duration;
use yaml_rust2::{Yaml, YamlLoader};

const MANIFEST: &str = "docs/kubernetes/deployment.yaml";
const HEALTH_PATH: &str = "/api/v1/mqtt/health/";
/// Settings that must never be written in the manifest.
const SECRETS: &[&str] = &["DATABASE_URL", "MQTT_API_TOKEN"];
/// Defaults (contract) of the settings the manifest's timings depend on.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_LEASE_PERIOD: Duration = Duration::from_secs(15);

/// One entry of the container's `env`.
#[derive(Debug)]
enum EnvValue {
    Literal(String),
    Secret { name: String, key: String },
}

fn manifest() -> Vec<Yaml> {
    let path = repo_root().join(MANIFEST);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    YamlLoader::load_from_str(&text).expect("valid YAML")
}

/// The one resource of this kind in the manifest.
fn resource<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "{MANIFEST}: one {kind}");
    found[0]
}

fn pod_spec(docs: &[Yaml]) -> &Yaml {
    &resource(docs, "Deployment")["spec"]["template"]["spec"]
}

/// The service's container (the pod has no other).
fn container(docs: &[Yaml]) -> &Yaml {
    let containers = pod_spec(docs)["containers"].as_vec().expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn env(container: &Yaml) -> Vec<(String, EnvValue)> {
    let list = container["env"].as_vec().expect("an env list");
    list.iter()
        .map(|entry| {
            let name = entry["name"].as_str().expect("env name").to_owned();
            let secret = &entry["valueFrom"]["secretKeyRef"];
            let value = match (&entry["value"], secret) {
                // Kubernetes takes only strings: `value: 15` is refused.
                (Yaml::String(s), Yaml::BadValue) => EnvValue::Literal(s.clone()),
                (Yaml::BadValue, Yaml::Hash(_)) => EnvValue::Secret {
                    name: secret["name"].as_str().expect("secret name").to_owned(),
                    key: secret["key"].as_str().expect("secret key").to_owned(),
                },
                other => panic!("{name}: a quoted value or a secretKeyRef, got {other:?}"),
            };
            (name, value)
        })
        .collect()
}

fn literal<'a>(env: &'a [(String, EnvValue)], name: &str) -> Option<&'a str> {
    env.iter().find(|(n, _)| n == name).map(|(_, v)| match v {
        EnvValue::Literal(s) => s.as_str(),
        EnvValue::Secret { .. } => panic!("{name} comes from a Secret"),
    })
}

/// A port as probes and Services give it: a number, or a container port's
/// name.
fn resolve_port(container: &Yaml, port: &Yaml) -> i64 {
    let ports = container["ports"].as_vec().expect("container ports");
    match port {
        Yaml::Integer(n) => *n,
        Yaml::String(name) => ports
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("no container port named {name}")),
        other => panic!("not a port: {other:?}"),
    }
}

fn http_port(container: &Yaml) -> i64 {
    resolve_port(container, &Yaml::String("http".to_owned()))
}

/// A whole number of seconds, as Kubernetes fields give them.
fn seconds(field: &Yaml) -> Duration {
    let n = field
        .as_i64()
        .unwrap_or_else(|| panic!("seconds: {field:?}"));
    Duration::from_secs(u64::try_from(n).expect("not negative"))
}

/// A duration as the settings read it: whole seconds, or numbers with units
/// (`500ms`, `30s`, `2m`, `1h`, `7d`).
fn duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    let (mut total, mut rest) = (Duration::ZERO, text);
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is not a duration"))?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3_600),
            "d" => Duration::from_secs(n * 86_400),
            other => return Err(format!("`{other}` is not a unit of time in `{text}`")),
        };
        rest = &rest[unit..];
    }
    Ok(total)
}

/// The shape of a literal value, per setting; the binary has the last word
/// (`the_binary_accepts_the_manifests_settings`).
fn check_value(name: &str, value: &str) -> Result<(), String> {
    let one_of = |allowed: &[&str]| {
        allowed
            .contains(&value)
            .then_some(())
            .ok_or_else(|| format!("expected one of {allowed:?}"))
    };
    match name {
        "MQTT_KEEP_ALIVE"
        | "MQTT_SHUTDOWN_TIMEOUT"
        | "MQTT_MONITOR_INTERVAL"
        | "MQTT_RECONNECT_COOLDOWN"
        | "MQTT_RECONNECT_COOLDOWN_MAX"
        | "MQTT_CONNECT_TIMEOUT"
        | "MQTT_TAKEOVER_WINDOW"
        | "MQTT_INBOX_RETENTION"
        | "MQTT_LEASE_PERIOD" => duration(value).map(drop),
        "MQTT_CLEAN_SESSION" | "MQTT_LWT_ENABLED" | "MQTT_METRICS_PER_CONNECTION" => {
            one_of(&["true", "false"])
        }
        "MQTT_LOG_FORMAT" => one_of(&["text", "json"]),
        "MQTT_INBOX_BUFFER" | "MQTT_OUTBOX_WINDOW" => {
            value.parse::<u64>().map(drop).map_err(|e| e.to_string())
        }
        "MQTT_HTTP_ADDR" => value
            .parse::<SocketAddr>()
            .map(drop)
            .map_err(|e| e.to_string()),
        _ => Ok(()),
    }
}

#[test]
fn deployment_runs_several_replicas_of_the_service_itself() {
    let docs = manifest();
    let deployment = resource(&docs, "Deployment");
    assert_eq!(deployment["apiVersion"].as_str(), Some("apps/v1"));
    let replicas = deployment["spec"]["replicas"].as_i64().expect("replicas");
    assert!(replicas >= 2, "replicas: {replicas}");
    let selector = deployment["spec"]["selector"]["matchLabels"]
        .as_hash()
        .expect("selector.matchLabels");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in selector {
        assert_eq!(&labels[key.as_str().unwrap()], value, "pod label {key:?}");
    }

    // The image's CMD is supervisord, which needs root; here the service
    // runs as PID 1 so SIGTERM reaches it.
    let c = container(&docs);
    let command: Vec<&str> = c["command"]
        .as_vec()
        .expect("an explicit command")
        .iter()
        .chain(c["args"].as_vec().into_iter().flatten())
        .map(|a| a.as_str().expect("a string"))
        .collect();
    assert_eq!(command, ["mqtt-supervisor", "run"]);
    let dockerfile = std::fs::read_to_string(repo_root().join("docker/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(" /usr/local/bin/mqtt-supervisor\n"),
        "the image puts mqtt-supervisor on PATH"
    );
    let image = c["image"].as_str().expect("image");
    assert!(image.starts_with("mqtt-supervisor:"), "{image}");
}

#[test]
fn env_sets_only_documented_settings_with_valid_values() {
    let docs = manifest();
    let c = container(&docs);
    let env = env(c);
    let mut seen = Vec::new();
    for (name, value) in &env {
        assert!(
            DOCUMENTED_SETTINGS.contains(&name.as_str()),
            "{name} is not a documented setting"
        );
        assert!(!seen.contains(name), "{name} is set twice");
        seen.push(name.clone());
        match value {
            EnvValue::Literal(v) => {
                assert!(
                    !SECRETS.contains(&name.as_str()),
                    "{name} is written in the manifest: take it from the Secret"
                );
                check_value(name, v).unwrap_or_else(|e| panic!("{name}={v}: {e}"));
            }
            EnvValue::Secret { name: secret, key } => {
                assert_eq!(secret, "mqtt-supervisor", "{name}: the Secret's name");
                assert!(!key.is_empty(), "{name}: secret key");
            }
        }
    }
    for secret in SECRETS {
        assert!(
            env.iter()
                .any(|(n, v)| n == secret && matches!(v, EnvValue::Secret { .. })),
            "{secret} must come from a secretKeyRef"
        );
    }

    // Left unset, the instance ID is the host name: the pod's name, so
    // every replica would have client IDs of its own.
    let instance = literal(&env, "MQTT_INSTANCE_ID").expect("MQTT_INSTANCE_ID set explicitly");
    assert!(!instance.is_empty());

    let addr: SocketAddr = literal(&env, "MQTT_HTTP_ADDR")
        .expect("MQTT_HTTP_ADDR")
        .parse()
        .unwrap();
    assert!(
        addr.ip().is_unspecified(),
        "{addr}: probes come from outside"
    );
    assert_eq!(i64::from(addr.port()), http_port(c), "MQTT_HTTP_ADDR port");
}

#[test]
fn the_binary_accepts_the_manifests_settings() {
    let docs = manifest();
    let env: Vec<(String, String)> = env(container(&docs))
        .into_iter()
        .map(|(name, value)| {
            let value = match (name.as_str(), value) {
                (_, EnvValue::Literal(v)) => v,
                ("DATABASE_URL", EnvValue::Secret { .. }) => {
                    "postgres://mqtt:secret@db.internal/mqtt_supervisor".to_owned()
                }
                (_, EnvValue::Secret { .. }) => "0123456789abcdef0123456789abcdef".to_owned(),
            };
            (name, value)
        })
        .collect();
    crate::deploy_files::check_config_accepts(&env);
}

#[test]
fn readiness_asks_health_and_liveness_does_not() {
    let docs = manifest();
    let c = container(&docs);
    let port = http_port(c);

    let readiness = &c["readinessProbe"]["httpGet"];
    assert_eq!(readiness["path"].as_str(), Some(HEALTH_PATH));
    assert_eq!(resolve_port(c, &readiness["port"]), port);

    // Health is `critical` (503) while the brokers are down; restarting the
    // pods for that would only drop every other tenant's connection.
    let liveness = &c["livenessProbe"];
    assert!(!liveness.is_badvalue(), "a livenessProbe");
    let path = liveness["httpGet"]["path"].as_str().unwrap_or_default();
    assert!(
        !path.contains("/health"),
        "liveness must not ask the health endpoint: {path}"
    );
    assert_eq!(resolve_port(c, &liveness["tcpSocket"]["port"]), port);
    let period = liveness["periodSeconds"].as_i64().unwrap_or(10);
    let failures = liveness["failureThreshold"].as_i64().unwrap_or(3);
    assert!(
        period * failures >= 15,
        "liveness restarts after {period} s × {failures}: one slow moment"
    );
}

#[test]
fn grace_period_outlasts_the_shutdown_and_rollouts_wait_a_lease_period() {
    let docs = manifest();
    let env = env(container(&docs));
    let setting =
        |name, default| literal(&env, name).map_or(default, |v| duration(v).expect("a duration"));
    let shutdown = setting("MQTT_SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT);
    let grace = seconds(&pod_spec(&docs)["terminationGracePeriodSeconds"]);
    assert!(
        grace > shutdown,
        "terminationGracePeriodSeconds {grace:?} <= MQTT_SHUTDOWN_TIMEOUT {shutdown:?}: SIGKILL mid-shutdown"
    );

    // The README promises that a rolling update lets the stopped pod's
    // connections move before it stops the next pod.
    let lease = setting("MQTT_LEASE_PERIOD", DEFAULT_LEASE_PERIOD);
    let deployment = resource(&docs, "Deployment");
    let min_ready = seconds(&deployment["spec"]["minReadySeconds"]);
    assert!(
        min_ready >= lease,
        "minReadySeconds {min_ready:?} < MQTT_LEASE_PERIOD {lease:?}"
    );
    let rolling = &deployment["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(rolling["maxUnavailable"].as_i64(), Some(0));
}

#[test]
fn service_reaches_the_http_port_of_the_pods() {
    let docs = manifest();
    let service = resource(&docs, "Service");
    assert_eq!(service["apiVersion"].as_str(), Some("v1"));
    let spec = &service["spec"];
    assert_eq!(spec["type"].as_str().unwrap_or("ClusterIP"), "ClusterIP");
    let labels = &resource(&docs, "Deployment")["spec"]["template"]["metadata"]["labels"];
    let selector = spec["selector"].as_hash().expect("a selector");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(&labels[key.as_str().unwrap()], value, "selector {key:?}");
    }
    let ports = spec["ports"].as_vec().expect("ports");
    assert_eq!(ports.len(), 1);
    let c = container(&docs);
    assert_eq!(ports[0]["port"].as_i64(), Some(http_port(c)));
    assert_eq!(resolve_port(c, &ports[0]["targetPort"]), http_port(c));
}

#[test]
fn pod_runs_unprivileged_on_a_read_only_filesystem_with_resources() {
    let docs = manifest();
    let pod = &pod_spec(&docs)["securityContext"];
    let c = container(&docs);
    let sc = &c["securityContext"];
    // The container's setting wins over the pod's.
    let either = |key: &str| {
        if sc[key].is_badvalue() {
            &pod[key]
        } else {
            &sc[key]
        }
    };
    assert_eq!(either("runAsNonRoot").as_bool(), Some(true), "runAsNonRoot");
    // The image has no USER: runAsNonRoot needs a numeric UID to check.
    let uid = either("runAsUser").as_i64().expect("runAsUser");
    assert!(uid > 0, "runAsUser {uid}");
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));

    for kind in ["requests", "limits"] {
        let memory = &c["resources"][kind]["memory"];
        assert!(memory.as_str().is_some(), "resources.{kind}.memory");
    }
}

#[test]
fn durations_read_like_the_settings() {
    assert_eq!(duration("15"), Ok(Duration::from_secs(15)));
    assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
    for bad in ["", "s", "15x", "-1", "1.5s"] {
        assert!(duration(bad).is_err(), "{bad}");
    }
}
