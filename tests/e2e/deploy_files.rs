//! The deployment files agree with each other and with the code. Docker
//! cannot run here, so these read the files as text (the compose file with
//! a YAML parser) and check what would otherwise only fail on a server:
//!
//! - docker-compose.yml sets only documented settings, with values the
//!   binary accepts; its command is the image's CMD, which runs the
//!   repository's supervisord.conf where the Dockerfile copies it;
//! - the timeouts nest: compose stop_grace_period > supervisord's
//!   stopwaitsecs > MQTT_SHUTDOWN_TIMEOUT, and systemd's TimeoutStopSec too;
//! - supervisord.conf, the Dockerfile and the systemd unit have the
//!   restart, stop-signal, log-file and user settings operations rely on.

mod parse;

use mqtt_supervisor_tests::{binary_path, repo_root};
use parse::{compose, docker_env, dockerfile, duration, env_of, get, ini, read, strings};
use std::collections::BTreeSet;
use std::time::Duration;
use yaml_rust2::Yaml;

/// The documented settings (DESIGN.md, `settings::VARIABLES`); checked
/// against crates/settings/src/load.rs below.
pub(crate) const DOCUMENTED_SETTINGS: &[&str] = &[
    "DATABASE_URL",
    "MQTT_INSTANCE_ID",
    "MQTT_CLEAN_SESSION",
    "MQTT_LWT_ENABLED",
    "MQTT_KEEP_ALIVE",
    "MQTT_SHUTDOWN_TIMEOUT",
    "MQTT_MONITOR_INTERVAL",
    "MQTT_RECONNECT_COOLDOWN",
    "MQTT_RECONNECT_COOLDOWN_MAX",
    "MQTT_CONNECT_TIMEOUT",
    "MQTT_TAKEOVER_WINDOW",
    "MQTT_MAX_PACKET_SIZE",
    "MQTT_STATUS_TOPIC",
    "MQTT_INBOX_BUFFER",
    "MQTT_INBOX_RETENTION",
    "MQTT_OUTBOX_WINDOW",
    "MQTT_HTTP_ADDR",
    "MQTT_API_TOKEN",
    "MQTT_LEASE_PERIOD",
    "MQTT_METRICS_PER_CONNECTION",
    "MQTT_LOG_FORMAT",
];

/// Names the settings file; a setting too, though not in VARIABLES.
const CONFIG_FILE_VAR: &str = "MQTT_CONFIG_FILE";

/// The default MQTT_SHUTDOWN_TIMEOUT (contract).
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn the_test_knows_every_setting_in_load_rs() {
    let text = read("crates/settings/src/load.rs");
    let start = text
        .find("pub const VARIABLES")
        .expect("VARIABLES in load.rs");
    let block = &text[start..start + text[start..].find("];").unwrap()];
    let listed: BTreeSet<&str> = block
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| *s == "DATABASE_URL" || s.starts_with("MQTT_"))
        .collect();
    let known: BTreeSet<&str> = DOCUMENTED_SETTINGS.iter().copied().collect();
    assert_eq!(listed, known, "load.rs VARIABLES and this test disagree");
    assert!(text.contains(&format!("CONFIG_FILE_VAR: &str = \"{CONFIG_FILE_VAR}\"")));
}

#[test]
fn compose_sets_only_documented_settings_with_valid_values() {
    let doc = compose();
    let service = &doc["services"]["mqtt_service"];
    let environment = &service["environment"];
    let mut env: Vec<(String, String)> = match environment {
        Yaml::Hash(h) => h
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    other => panic!("{k:?}: compose wants a quoted string, got {other:?}"),
                };
                (k.as_str().unwrap().to_owned(), value)
            })
            .collect(),
        Yaml::Array(_) => strings(environment)
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("KEY=value");
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        other => panic!("mqtt_service has no environment: {other:?}"),
    };
    assert!(!env.is_empty());
    for (key, _) in &env {
        assert!(
            DOCUMENTED_SETTINGS.contains(&key.as_str()) || key == CONFIG_FILE_VAR,
            "compose sets {key}, which is not a documented setting"
        );
    }
    assert!(env.iter().any(|(k, _)| k == "DATABASE_URL"));

    // The binary accepts them (with the image's own MQTT_* underneath),
    // and warns about none.
    let image: Vec<(String, String)> = docker_env(&dockerfile())
        .into_iter()
        .filter(|(k, _)| k.starts_with("MQTT_") && !env.iter().any(|(c, _)| c == k))
        .collect();
    env.extend(image);
    check_config_accepts(&env);
}

/// `mqtt-supervisor check-config` with exactly `env` succeeds, warns about
/// nothing (an unknown MQTT_* variable is only warned about: it would be
/// ignored) and reports every variable as coming from the environment.
pub(crate) fn check_config_accepts(env: &[(String, String)]) {
    let out = std::process::Command::new(binary_path())
        .arg("check-config")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("warning"), "{stdout}");
    for (key, _) in env {
        let line = stdout.lines().find(|l| l.starts_with(&format!("{key} ")));
        assert!(
            line.is_some_and(|l| l.ends_with("# environment")),
            "{key}: {stdout}"
        );
    }
}

#[test]
fn compose_runs_the_images_supervisord_with_the_repository_conf() {
    let doc = compose();
    let service = &doc["services"]["mqtt_service"];
    let docker = dockerfile();
    let conf_dest = docker
        .iter()
        .filter(|(w, _)| w == "COPY")
        .find_map(|(_, args)| {
            let parts: Vec<&str> = args
                .split_whitespace()
                .filter(|a| !a.starts_with("--"))
                .collect();
            (parts.first() == Some(&"supervisord.conf")).then(|| parts[1].to_owned())
        })
        .expect("the Dockerfile copies supervisord.conf");
    let cmd: Vec<String> = docker
        .iter()
        .rfind(|(w, _)| w == "CMD")
        .map(|(_, args)| serde_json::from_str(args).expect("CMD in exec form"))
        .expect("a CMD");
    let command = strings(&service["command"]);
    assert_eq!(command, ["supervisord", "-c", conf_dest.as_str()]);
    assert_eq!(command, cmd, "compose command and Dockerfile CMD differ");
    assert_eq!(
        service["build"]["dockerfile"].as_str(),
        Some("docker/Dockerfile")
    );
    let context = service["build"]["context"].as_str().unwrap();
    assert!(repo_root().join(context).join("supervisord.conf").is_file());
    assert!(repo_root().join("docker/Dockerfile").is_file());

    // The services it waits for must be healthy, and be able to say so.
    for dependency in ["postgres", "mosquitto"] {
        assert_eq!(
            service["depends_on"][dependency]["condition"].as_str(),
            Some("service_healthy"),
            "depends_on {dependency}"
        );
        let test = strings(&doc["services"][dependency]["healthcheck"]["test"]);
        assert_eq!(test[0], "CMD", "{dependency} healthcheck");
    }
    // Postgres keeps its data in a named volume declared at the top level.
    let volumes = strings(&doc["services"]["postgres"]["volumes"]);
    let named = volumes
        .iter()
        .find_map(|v| v.strip_suffix(":/var/lib/postgresql/data"))
        .expect("a volume for /var/lib/postgresql/data");
    assert!(
        !named.starts_with('.') && !named.starts_with('/'),
        "{named} is a bind mount"
    );
    assert!(
        doc["volumes"]
            .as_hash()
            .unwrap()
            .contains_key(&Yaml::String(named.to_owned()))
    );
    for bind in strings(&doc["services"]["mosquitto"]["volumes"]) {
        let source = bind.split(':').next().unwrap();
        assert!(repo_root().join(source).is_file(), "{source} is missing");
    }
    let health = strings(&service["healthcheck"]["test"]);
    assert_eq!(health, ["CMD", "mqtt-supervisor", "health"]);
}

#[test]
fn stop_timeouts_nest() {
    let doc = compose();
    let service = &doc["services"]["mqtt_service"];
    let grace = duration(
        service["stop_grace_period"]
            .as_str()
            .expect("stop_grace_period"),
    );
    let conf = ini(&read("supervisord.conf"));
    let stopwait = duration(get(&conf, "program:mqtt_service", "stopwaitsecs"));
    let shutdown = match &service["environment"]["MQTT_SHUTDOWN_TIMEOUT"] {
        Yaml::String(s) => duration(s),
        Yaml::BadValue => DEFAULT_SHUTDOWN_TIMEOUT,
        other => panic!("{other:?}"),
    };
    assert!(shutdown >= DEFAULT_SHUTDOWN_TIMEOUT);
    assert!(
        grace > stopwait,
        "stop_grace_period {grace:?} <= stopwaitsecs {stopwait:?}"
    );
    assert!(
        stopwait > shutdown,
        "stopwaitsecs {stopwait:?} <= shutdown {shutdown:?}"
    );
    let unit = ini(&read("docs/systemd/mqtt-supervisor.service"));
    let stop = duration(get(&unit, "Service", "TimeoutStopSec"));
    assert!(stop > DEFAULT_SHUTDOWN_TIMEOUT, "TimeoutStopSec {stop:?}");
}

#[test]
fn supervisord_conf_restarts_stops_cleanly_and_logs_to_files() {
    let conf = ini(&read("supervisord.conf"));
    let program = "program:mqtt_service";
    let command = get(&conf, program, "command");
    assert!(command.ends_with(" run"), "{command}");
    assert!(
        command.starts_with("%(ENV_SUPERVISOR_MQTT_BIN)s"),
        "{command}"
    );
    assert_eq!(get(&conf, program, "autostart"), "true");
    assert_eq!(get(&conf, program, "autorestart"), "true");
    assert_eq!(get(&conf, program, "stopsignal"), "TERM");
    assert_eq!(
        get(&conf, program, "user"),
        "%(ENV_SUPERVISOR_SERVICE_USER)s"
    );
    let out = get(&conf, program, "stdout_logfile");
    let err = get(&conf, program, "stderr_logfile");
    assert!(out.ends_with("/mqtt_service.out.log"), "{out}");
    assert!(err.ends_with("/mqtt_service.err.log"), "{err}");
    // The image runs supervisord as PID 1's child in the foreground.
    assert_eq!(get(&conf, "supervisord", "nodaemon"), "true");

    // Every %(ENV_X)s the conf reads is set by the image.
    let env = docker_env(&dockerfile());
    let used: BTreeSet<&str> = conf
        .iter()
        .flat_map(|(_, _, value)| value.split("%(ENV_").skip(1))
        .map(|rest| rest.split(")s").next().unwrap())
        .collect();
    assert_eq!(
        used,
        BTreeSet::from([
            "SUPERVISOR_LOG_DIR",
            "SUPERVISOR_MQTT_BIN",
            "SUPERVISOR_RUN_DIR",
            "SUPERVISOR_SERVICE_USER"
        ])
    );
    for variable in used {
        env_of(&env, variable);
    }
}

#[test]
fn dockerfile_checks_health_and_runs_the_service_unprivileged() {
    let docker = dockerfile();
    let env = docker_env(&docker);
    let health = docker
        .iter()
        .find(|(w, _)| w == "HEALTHCHECK")
        .map(|(_, args)| args.clone())
        .expect("a HEALTHCHECK");
    let (options, cmd) = health.split_once("CMD").unwrap();
    let cmd: Vec<String> = serde_json::from_str(cmd.trim()).unwrap();
    assert_eq!(cmd, ["mqtt-supervisor", "health"]);
    // `health` gives up after 5 s by itself; Docker must not kill it first.
    let timeout = options
        .split_whitespace()
        .find_map(|o| o.strip_prefix("--timeout="))
        .map(duration)
        .expect("HEALTHCHECK --timeout");
    assert!(timeout > Duration::from_secs(5), "{timeout:?}");

    let user = env_of(&env, "SUPERVISOR_SERVICE_USER");
    assert_eq!(user, "mqtt");
    let runs = docker
        .iter()
        .filter(|(w, _)| w == "RUN")
        .map(|(_, a)| a.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        runs.contains("useradd") && runs.contains(&format!(" {user}")),
        "{runs}"
    );
    assert!(runs.contains("supervisor"), "supervisor package: {runs}");
    for dir in ["SUPERVISOR_LOG_DIR", "SUPERVISOR_RUN_DIR"] {
        let path = env_of(&env, dir);
        assert!(runs.contains(&path), "{dir}={path} is not created: {runs}");
    }
    let bin = env_of(&env, "SUPERVISOR_MQTT_BIN");
    let copied = docker
        .iter()
        .any(|(w, a)| w == "COPY" && a.starts_with("--from=") && a.ends_with(&format!(" {bin}")));
    assert!(copied, "the binary is not copied to {bin}");
    assert_eq!(
        bin, "/usr/local/bin/mqtt-supervisor",
        "HEALTHCHECK finds it on PATH"
    );
}

#[test]
fn systemd_unit_restarts_and_stops_with_sigterm() {
    let unit = ini(&read("docs/systemd/mqtt-supervisor.service"));
    assert_eq!(get(&unit, "Service", "Restart"), "always");
    assert_eq!(get(&unit, "Service", "KillSignal"), "SIGTERM");
    assert!(!get(&unit, "Service", "EnvironmentFile").is_empty());
    let exec = get(&unit, "Service", "ExecStart");
    assert!(exec.ends_with(" run"), "{exec}");
    let user = get(&unit, "Service", "User");
    assert!(!user.is_empty() && user != "root", "User={user}");
    assert_eq!(get(&unit, "Install", "WantedBy"), "multi-user.target");
}
