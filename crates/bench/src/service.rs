//! The real `mqtt-supervisor` release binary as a child process: started
//! with instance `bench` and a free HTTP port, its log written to a file,
//! watched through its health endpoint and `/proc`, stopped with SIGTERM.
//!
//! The process is killed when the [`Service`] is dropped before
//! [`Service::terminate`] (an error or a panic in the benchmark).

use crate::{logfile, procfs};
use anyhow::{Context, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};
use tokio::process::{Child, Command};

/// How often the health endpoint is polled while waiting.
const POLL: Duration = Duration::from_millis(50);

/// A running service.
pub struct Service {
    child: Child,
    pid: u32,
    http_port: u16,
    log: PathBuf,
    started: Instant,
    started_wall: SystemTime,
}

/// The outcome of [`Service::wait_health`].
pub struct Waited {
    /// From process start until the condition held.
    pub after: Duration,
    /// Health requests made.
    pub polls: u32,
    /// The slowest health request.
    pub slowest: Duration,
    /// Answers whose `service.database` was not `ok`.
    pub database_not_ok: u32,
}

/// How the service ended after SIGTERM.
pub struct Stopped {
    /// From SIGTERM until the process was gone.
    pub wall: Duration,
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// The service's own "All connections disconnected in X s".
    pub reported_secs: Option<f64>,
}

impl Service {
    /// Starts `binary run` against `database_url`, logging to `log`.
    pub fn spawn(
        binary: &Path,
        database_url: &str,
        log: &Path,
        log_filter: &str,
    ) -> anyhow::Result<Service> {
        Service::spawn_with(binary, database_url, log, log_filter, &[])
    }

    /// Like [`Service::spawn`], with more settings in its environment.
    pub fn spawn_with(
        binary: &Path,
        database_url: &str,
        log: &Path,
        log_filter: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Service> {
        let http_port = crate::free_port()?;
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file")?;
        let started = Instant::now();
        let started_wall = SystemTime::now();
        let child = Command::new(binary)
            .arg("run")
            .env("DATABASE_URL", database_url)
            .env("MQTT_INSTANCE_ID", "bench")
            .env("MQTT_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("MQTT_LOG_FORMAT", "text")
            .env("RUST_LOG", log_filter)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id().context("the service exited at once")?;
        Ok(Service {
            child,
            pid,
            http_port,
            log: log.to_path_buf(),
            started,
            started_wall,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The wall-clock instant the process was started.
    pub fn started_wall(&self) -> SystemTime {
        self.started_wall
    }

    /// Time since the process was started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The service's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The health report, if the endpoint answers with JSON.
    pub async fn health(&self) -> Option<Value> {
        let body = http_get(self.http_port, "/api/v1/mqtt/health/").await?;
        serde_json::from_str(&body).ok()
    }

    /// Polls health until `done` holds for the report; fails when the
    /// process exits or `timeout` passes.
    pub async fn wait_health(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Waited> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        let (mut polls, mut slowest, mut database_not_ok) = (0, Duration::ZERO, 0);
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for the service")? {
                bail!(
                    "the service exited ({status}) while waiting until {what}; its log ends:\n{}",
                    self.log_tail(30)
                );
            }
            let asked = Instant::now();
            let report = self.health().await;
            polls += 1;
            slowest = slowest.max(asked.elapsed());
            if let Some(report) = report {
                if report["service"]["database"].as_str() != Some("ok") {
                    database_not_ok += 1;
                }
                if done(&report) {
                    return Ok(Waited {
                        after: self.started.elapsed(),
                        polls,
                        slowest,
                        database_not_ok,
                    });
                }
                last = Some(report);
            }
            if Instant::now() >= deadline {
                bail!(
                    "not {what} within {} s; last health: {}; log ends:\n{}",
                    timeout.as_secs(),
                    last.map_or_else(|| "none".to_owned(), |r| r["connections"].to_string()),
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        procfs::rss_kib(self.pid)
    }

    /// A field of `/proc/<pid>/status`.
    pub fn status_field(&self, field: &str) -> anyhow::Result<u64> {
        procfs::status_field(self.pid, field)
    }

    /// CPU time used so far, in clock ticks.
    pub fn cpu_ticks(&self) -> anyhow::Result<u64> {
        procfs::cpu_ticks(self.pid)
    }

    /// CPU time used so far, in seconds.
    pub fn cpu_secs(&self) -> anyhow::Result<f64> {
        Ok(self.cpu_ticks()? as f64 / procfs::clock_ticks_per_sec() as f64)
    }

    /// SIGTERM, then waits until the process is gone (at most `timeout`,
    /// then SIGKILL and an error).
    pub async fn terminate(mut self, timeout: Duration) -> anyhow::Result<Stopped> {
        let began = Instant::now();
        crate::signal(self.pid, "TERM");
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.context("waiting for the service to exit")?,
            Err(_) => {
                let _ = self.child.kill().await;
                bail!(
                    "the service did not exit within {} s of SIGTERM; killed. Log ends:\n{}",
                    timeout.as_secs(),
                    self.log_tail(30)
                );
            }
        };
        let wall = began.elapsed();
        Ok(Stopped {
            wall,
            code: status.code(),
            reported_secs: logfile::reported_shutdown_secs(&self.log_text()),
        })
    }
}

/// GET http://127.0.0.1:`port``path`: the body of a 2xx or 503 answer;
/// `None` when nothing answers within 2 s.
async fn http_get(port: u16, path: &str) -> Option<String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.get(&url).call().ok()?;
        let code = response.status().as_u16();
        let body = response.body_mut().read_to_string().ok()?;
        ((200..300).contains(&code) || code == 503).then_some(body)
    })
    .await
    .ok()?
}
