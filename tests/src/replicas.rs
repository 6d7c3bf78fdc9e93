//! Several replicas of the real service sharing one database and one
//! MQTT_INSTANCE_ID (`test`), as an operator runs them for availability:
//! start N, add one, kill one (SIGKILL), freeze one (SIGSTOP) and thaw it,
//! restart one, and read what each says about itself on its health
//! endpoint (`service.replica_id`, `service.owned`).
//!
//! A freeze is recorded as a [`Frozen`] window (the process's ports towards
//! the broker and the broker log's lines while it was stopped), so that
//! [`BrokerLog::double_holds`](crate::BrokerLog::double_holds) can tell the
//! handover of a frozen replica's connection, which only the broker's
//! keep-alive could have closed first, from a client ID held twice.
//!
//! Every replica is an [`App`]: its own free HTTP port, its output
//! captured. Dropping the set kills whatever still runs (after SIGCONT);
//! [`Replicas::shutdown`] stops them with SIGTERM instead.

use crate::{App, Broker, Frozen, http_get};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long after SIGCONT a takeover of the thawed process's old
/// connections is still its handover: the moment it needs to notice that
/// its leases are gone and close them.
pub const THAW_GRACE: Duration = Duration::from_secs(1);

/// What a replica's process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    Running,
    /// SIGSTOPped.
    Frozen,
    /// SIGKILLed.
    Killed,
    /// Ended by SIGTERM.
    Stopped,
}

struct Slot {
    app: App,
    url: String,
    life: Life,
}

/// The replicas of one test.
pub struct Replicas {
    url: String,
    env: Vec<(String, String)>,
    log_path: PathBuf,
    broker_port: u16,
    slots: Vec<Slot>,
    /// Earlier processes of restarted slots, for their output.
    gone: Vec<(usize, App)>,
    frozen: Vec<Frozen>,
}

impl Replicas {
    /// Starts `n` replicas against `url`, each with `env` on top of
    /// [`App::spawn`]'s, and waits until each has logged `Ready:`.
    pub async fn start(url: &str, n: usize, broker: &Broker, env: &[(&str, &str)]) -> Replicas {
        let urls = vec![url; n];
        Replicas::start_urls(url, &urls, broker, env).await
    }

    /// Starts one replica per entry of `urls` (a replica may reach the
    /// database through a [`DbProxy`](crate::DbProxy)); `url` is the one
    /// later replicas get. Waits until each has logged `Ready:`.
    pub async fn start_urls(
        url: &str,
        urls: &[&str],
        broker: &Broker,
        env: &[(&str, &str)],
    ) -> Replicas {
        let mut replicas = Replicas {
            url: url.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            log_path: broker.dir().join("mosquitto.log"),
            broker_port: broker.port(),
            slots: Vec::new(),
            gone: Vec::new(),
            frozen: Vec::new(),
        };
        for url in urls {
            replicas.spawn(url);
        }
        for slot in &replicas.slots {
            slot.app.ready().await;
        }
        replicas
    }

    fn launch(&self, url: &str) -> App {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        App::spawn(url, &env)
    }

    /// Starts one more replica against `url` without waiting; its index.
    pub fn spawn(&mut self, url: &str) -> usize {
        let app = self.launch(url);
        self.slots.push(Slot {
            app,
            url: url.to_owned(),
            life: Life::Running,
        });
        self.slots.len() - 1
    }

    /// Starts one more replica against the common URL and waits for its
    /// `Ready:`; its index.
    pub async fn add(&mut self) -> usize {
        let url = self.url.clone();
        let i = self.spawn(&url);
        self.slots[i].app.ready().await;
        i
    }

    /// Starts a killed or stopped replica again (a new process, so a new
    /// replica ID) in the same slot, without waiting.
    pub fn restart(&mut self, i: usize) {
        assert!(
            matches!(self.slots[i].life, Life::Killed | Life::Stopped),
            "replica {i} is {:?}",
            self.slots[i].life
        );
        let url = self.slots[i].url.clone();
        let app = self.launch(&url);
        let old = std::mem::replace(&mut self.slots[i].app, app);
        self.gone.push((i, old));
        self.slots[i].life = Life::Running;
    }

    /// Waits for replica `i`'s `Ready:` (panics with its output after 20 s).
    pub async fn ready(&self, i: usize) {
        self.slots[i].app.ready().await;
    }

    /// How many replicas were started (whatever they do now).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether none was started.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Replica `i`'s process.
    pub fn app(&self, i: usize) -> &App {
        &self.slots[i].app
    }

    /// Replica `i`'s process id.
    pub fn pid(&self, i: usize) -> u32 {
        self.slots[i].app.pid()
    }

    /// What replica `i` is doing.
    pub fn life(&self, i: usize) -> Life {
        self.slots[i].life
    }

    /// The replicas that run (not frozen, killed or stopped).
    pub fn running(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].life == Life::Running)
            .collect()
    }

    /// SIGKILL, and waits until the process is gone (its sockets closed).
    pub async fn sigkill(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if slot.life == Life::Frozen {
            crate::broker::signal(slot.app.pid(), "CONT");
        }
        slot.app.sigkill();
        let status = slot.app.wait_exit(Duration::from_secs(5)).await;
        assert!(status.is_some(), "replica {i} survived SIGKILL");
        slot.life = Life::Killed;
    }

    /// SIGTERM, and waits (up to 15 s) for the exit; whether it exited 0.
    pub async fn sigterm(&mut self, i: usize) -> bool {
        let slot = &mut self.slots[i];
        if slot.life == Life::Frozen {
            crate::broker::signal(slot.app.pid(), "CONT");
        }
        slot.app.sigterm();
        let status = slot.app.wait_exit(Duration::from_secs(15)).await;
        slot.life = Life::Stopped;
        status.is_some_and(|s| s.success())
    }

    /// SIGSTOP: the process keeps its sockets and does nothing. Records a
    /// [`Frozen`] window from now, with the ports it holds towards the
    /// broker; a takeover of one of them counts as a handover only from a
    /// sixth of the lease period on (its leases were renewed every third of
    /// a period, so they are valid for at least two thirds of one: the
    /// sixth leaves room for late renewals on a busy machine).
    pub async fn sigstop(&mut self, i: usize) {
        let pid = self.slots[i].app.pid();
        assert_eq!(self.slots[i].life, Life::Running, "replica {i}");
        crate::broker::signal(pid, "STOP");
        let stopped = crate::eventually(Duration::from_secs(5), || async move {
            process_state(pid) == Some('T')
        })
        .await;
        assert!(
            stopped,
            "replica {i} (pid {pid}) did not stop (state {:?}):\n{}",
            process_state(pid),
            tail(&self.slots[i].app.output(), 40)
        );
        let from_line = self.log_lines();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.frozen.push(Frozen {
            label: format!("replica {i} (pid {pid})"),
            ports: ports_of(pid, self.broker_port),
            from_line,
            until_line: None,
            not_before: (now + self.lease_period() / 6).as_secs_f64().ceil() as u64,
        });
        self.slots[i].life = Life::Frozen;
    }

    /// MQTT_LEASE_PERIOD from the common environment (whole seconds), else
    /// the service's default, 15 s.
    pub fn lease_period(&self) -> Duration {
        let secs = self
            .env
            .iter()
            .find(|(k, _)| k == "MQTT_LEASE_PERIOD")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(15);
        Duration::from_secs(secs)
    }

    /// SIGCONT after [`Replicas::sigstop`]; closes its [`Frozen`] window
    /// [`THAW_GRACE`] later (this waits that long).
    pub async fn sigcont(&mut self, i: usize) {
        let pid = self.slots[i].app.pid();
        assert_eq!(self.slots[i].life, Life::Frozen, "replica {i}");
        crate::broker::signal(pid, "CONT");
        self.slots[i].life = Life::Running;
        tokio::time::sleep(THAW_GRACE).await;
        let until = self.log_lines();
        let label = format!("replica {i} (pid {pid})");
        if let Some(f) = self
            .frozen
            .iter_mut()
            .rev()
            .find(|f| f.label == label && f.until_line.is_none())
        {
            f.until_line = Some(until);
        }
    }

    /// Every freeze so far, for [`BrokerLog::double_holds`](crate::BrokerLog::double_holds).
    pub fn frozen_windows(&self) -> &[Frozen] {
        &self.frozen
    }

    /// Complete lines in the broker's log now: a mark to read the log from.
    pub fn log_lines(&self) -> usize {
        std::fs::read_to_string(&self.log_path)
            .map(|s| s.matches('\n').count())
            .unwrap_or(0)
    }

    /// Replica `i`'s health (status code, JSON); `None` unless it runs and
    /// answers.
    pub async fn health(&self, i: usize, verbose: bool) -> Option<(u16, Value)> {
        if self.slots[i].life != Life::Running {
            return None;
        }
        self.slots[i].app.health(verbose).await
    }

    /// `service.owned` of replica `i`'s health.
    pub async fn owned(&self, i: usize) -> Option<u64> {
        self.health(i, false).await?.1["service"]["owned"].as_u64()
    }

    /// `service.replica_id` of replica `i`'s health.
    pub async fn replica_id(&self, i: usize) -> Option<String> {
        let (_, body) = self.health(i, false).await?;
        body["service"]["replica_id"].as_str().map(str::to_owned)
    }

    /// The client IDs in replica `i`'s verbose health (its connections).
    pub async fn client_ids(&self, i: usize) -> Option<Vec<String>> {
        let (_, body) = self.health(i, true).await?;
        let details = body["details"].as_array()?;
        Some(
            details
                .iter()
                .filter_map(|d| d["client_id"].as_str().map(str::to_owned))
                .collect(),
        )
    }

    /// `owned` of every replica (`None` for one that does not run or
    /// answer), by index.
    pub async fn owned_all(&self) -> Vec<Option<u64>> {
        let mut all = Vec::with_capacity(self.slots.len());
        for i in 0..self.slots.len() {
            all.push(self.owned(i).await);
        }
        all
    }

    /// The sum of `owned` over the running replicas.
    pub async fn total_owned(&self) -> u64 {
        self.owned_all().await.into_iter().flatten().sum()
    }

    /// Whether every running replica answers `healthy` and together they
    /// own `connections`.
    pub async fn settled(&self, connections: u64) -> bool {
        let mut total = 0;
        for i in self.running() {
            let Some((_, body)) = self.health(i, false).await else {
                return false;
            };
            if body["status"] != "healthy" {
                return false;
            }
            let Some(owned) = body["service"]["owned"].as_u64() else {
                return false;
            };
            total += owned;
        }
        total == connections
    }

    /// Waits until [`Replicas::settled`].
    pub async fn wait_settled(&self, connections: u64, timeout: Duration) -> bool {
        crate::eventually(timeout, || self.settled(connections)).await
    }

    /// `GET /api/v1/mqtt/replicas` on replica `i`: the `replicas` array.
    pub async fn listed(&self, i: usize) -> Option<Vec<Value>> {
        if self.slots[i].life != Life::Running {
            return None;
        }
        let (code, body) = http_get(self.slots[i].app.http_port(), "/api/v1/mqtt/replicas").await?;
        if code != 200 {
            return None;
        }
        let body: Value = serde_json::from_str(&body).ok()?;
        body["replicas"].as_array().cloned()
    }

    /// Waits until every running replica lists exactly `n` replicas as
    /// alive.
    pub async fn wait_listed_alive(&self, n: usize, timeout: Duration) -> bool {
        crate::eventually(timeout, || async move {
            for i in self.running() {
                let Some(list) = self.listed(i).await else {
                    return false;
                };
                if list.iter().filter(|r| r["alive"] == true).count() != n {
                    return false;
                }
            }
            true
        })
        .await
    }

    /// What every replica says and printed lately, for assertion messages.
    pub async fn report(&self) -> String {
        let mut out = String::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let health = match self.health(i, false).await {
                Some((code, body)) => format!("{code} {body}"),
                None => "no answer".to_owned(),
            };
            out.push_str(&format!(
                "--- replica {i} (pid {}, {:?}) health: {health}\n{}",
                slot.app.pid(),
                slot.life,
                tail(&slot.app.output(), 30)
            ));
        }
        for (i, app) in &self.gone {
            out.push_str(&format!(
                "--- earlier process of replica {i} (pid {}):\n{}",
                app.pid(),
                tail(&app.output(), 15)
            ));
        }
        out
    }

    /// SIGCONT to the frozen, SIGTERM to every replica still alive, and
    /// waits (up to 15 s each) for them to exit.
    pub async fn shutdown(mut self) {
        for slot in &self.slots {
            if slot.life == Life::Frozen {
                crate::broker::signal(slot.app.pid(), "CONT");
            }
            if matches!(slot.life, Life::Frozen | Life::Running) {
                slot.app.sigterm();
            }
        }
        for slot in &mut self.slots {
            if matches!(slot.life, Life::Frozen | Life::Running) {
                let _ = slot.app.wait_exit(Duration::from_secs(15)).await;
                slot.life = Life::Stopped;
            }
        }
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        // App's own drop kills; a stopped process is let go first, so that
        // nothing lingers half-alive whatever the signal order.
        for slot in &self.slots {
            if slot.life == Life::Frozen {
                crate::broker::signal(slot.app.pid(), "CONT");
            }
        }
    }
}

/// Inserts `n` enabled rows `site_1` … `site_{n}` for the broker on
/// 127.0.0.1:`port`, in one statement (one NOTIFY); their client IDs are
/// `site_{k}_test`.
pub async fn insert_sites(pool: &PgPool, n: usize, port: u16) {
    sqlx::query(
        "INSERT INTO mqtt_connections (name, broker_host, broker_port) \
         SELECT 'site_' || g, '127.0.0.1', $1 FROM generate_series(1, $2) g",
    )
    .bind(i32::from(port))
    .bind(i32::try_from(n).unwrap())
    .execute(pool)
    .await
    .unwrap();
}

/// The local ports of `pid`'s TCP connections to 127.0.0.1:`remote_port`
/// (its sockets, from /proc: fd links to `socket:[inode]`, matched in
/// /proc/<pid>/net/tcp and tcp6).
pub fn ports_of(pid: u32, remote_port: u16) -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_owned())
        })
        .collect();
    let mut ports = HashSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || !inodes.contains(fields[9]) {
                continue;
            }
            if hex_port(fields[2]) == Some(remote_port)
                && let Some(local) = hex_port(fields[1])
            {
                ports.insert(local);
            }
        }
    }
    ports
}

/// The port of a /proc/net/tcp address (`0100007F:A5C8`).
fn hex_port(address: &str) -> Option<u16> {
    let (_, port) = address.rsplit_once(':')?;
    u16::from_str_radix(port, 16).ok()
}

/// The state letter in /proc/<pid>/stat (`T` when stopped).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after) = stat.rsplit_once(')')?;
    after.trim_start().chars().next()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    out.push('\n');
    out
}
