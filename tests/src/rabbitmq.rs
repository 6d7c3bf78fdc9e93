//! A private RabbitMQ node with the MQTT plugin, for tests that need a second
//! broker implementation: its own node name, Erlang cookie, data and log
//! directories, and free loopback ports for AMQP, MQTT and Erlang
//! distribution. It never touches the system node (`rabbit@…` on 5672, its
//! cookie or /var/lib/rabbitmq).
//!
//! Lifecycle: [`RabbitMq::start`] runs Debian's `rabbitmq-server` script
//! (the real one under /usr/lib/rabbitmq/bin: the /usr/sbin wrappers would
//! switch to the `rabbitmq` user) and returns once the MQTT port accepts
//! connections and `rabbitmqctl await_startup` answered. Drop runs
//! `rabbitmqctl stop`, then, if the node is still alive a few seconds
//! later, kills the VM (`beam.smp`, the script's child) and the script, so
//! no node outlives the test. The script stays in the test's process group
//! on purpose: it stops the node on SIGTERM and SIGINT, so a test that
//! nextest kills on timeout, or a Ctrl-C, takes its node along instead of
//! orphaning it (the VM itself ignores SIGINT).
//!
//! A fresh node takes about 8–12 s to start on 2 busy cores, 3.3–6 s of it
//! a randomised wait in the MQTT plugin (its Raft cluster for client IDs
//! waits for peers before electing itself): start one node per test and run
//! the checks that can share it in sequence.

use isolation::{configure, script, write_files};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to start (load included) before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long Drop waits for `rabbitmqctl stop`, then for the node to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running private RabbitMQ node with the MQTT plugin (and no other).
///
/// Anonymous MQTT connections are allowed and log in as `guest` (allowed
/// from loopback by RabbitMQ's default `loopback_users`); users added with
/// [`RabbitMq::add_user`] log in with their password, and a wrong password
/// is refused.
pub struct RabbitMq {
    node: String,
    mqtt_port: u16,
    amqp_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RabbitMq {
    /// Starts a node and waits until it serves MQTT; panics with the node's
    /// log after 60 s or when the node exits.
    pub async fn start() -> RabbitMq {
        let dir = tempfile::tempdir().unwrap();
        let (amqp_port, mqtt_port, dist_port) =
            (crate::free_port(), crate::free_port(), crate::free_port());
        let node = format!("mqtts_{mqtt_port}@localhost");
        write_files(dir.path(), amqp_port, mqtt_port);
        let mut command = Command::new(script("rabbitmq-server"));
        configure(&mut command, dir.path(), &node);
        let output = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let child = command
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("rabbitmq-server must be installed (scripts/deps.sh installs it)");
        let mut rabbit = RabbitMq {
            node,
            mqtt_port,
            amqp_port,
            dir,
            child: Some(child),
        };
        let started = Instant::now();
        if let Err(why) = rabbit.wait_ready(started + START_TIMEOUT).await {
            panic!(
                "RabbitMQ node {} did not start: {why}\n--- output ---\n{}\n--- log (tail) ---\n{}",
                rabbit.node,
                tail(&rabbit.output(), 40),
                tail(&rabbit.log(), 60),
            );
        }
        if std::env::var_os("TEST_LOG").is_some() {
            eprintln!("RabbitMQ {} ready in {:?}", rabbit.node, started.elapsed());
        }
        rabbit
    }

    /// Waits for the MQTT port and, at the same time, for `rabbitmqctl
    /// await_startup` (started once the node has a log, so the CLI's own
    /// boot overlaps the node's); says why when `deadline` passes first.
    async fn wait_ready(&mut self, deadline: Instant) -> Result<(), String> {
        let port = self.mqtt_port;
        let log = self.log_path();
        let (dir, node) = (self.dir.path().to_path_buf(), self.node.clone());
        let awaited = async move {
            let mut last = String::from("the node wrote no log");
            while Instant::now() < deadline {
                if log.exists() {
                    let ctl = ctl_command(&dir, &node, &["await_startup", "--timeout", "60"]);
                    let out = tokio::process::Command::from(ctl)
                        .kill_on_drop(true)
                        .output();
                    let out = tokio::time::timeout_at(deadline.into(), out)
                        .await
                        .map_err(|_| "rabbitmqctl await_startup timed out".to_owned())?
                        .map_err(|e| format!("rabbitmqctl: {e}"))?;
                    if out.status.success() {
                        return Ok(());
                    }
                    // Too early (not yet registered with epmd): try again.
                    last = format!(
                        "rabbitmqctl await_startup: {}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(last)
        };
        let child = self.child.as_mut().unwrap();
        let listening = async move {
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("the node exited ({status})"));
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(format!("MQTT port {port} still closed"))
        };
        tokio::try_join!(listening, awaited).map(|_| ())
    }

    /// The MQTT port on 127.0.0.1.
    pub fn mqtt_port(&self) -> u16 {
        self.mqtt_port
    }

    /// The AMQP 0-9-1 port on 127.0.0.1.
    pub fn amqp_port(&self) -> u16 {
        self.amqp_port
    }

    /// The node's name (`mqtts_<mqtt port>@localhost`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Everything the node logged so far (its log file, debug level). The
    /// node writes its log with a delay of up to ~2 s (Erlang's
    /// `delayed_write`): to check for a line, use [`RabbitMq::wait_log`].
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits up to 5 s for the log to contain `needle`; returns whether it
    /// did.
    pub async fn wait_log(&self, needle: &str) -> bool {
        crate::eventually(Duration::from_secs(5), || async {
            self.log().contains(needle)
        })
        .await
    }

    /// What `rabbitmq-server` wrote to stdout and stderr (the banner, and the
    /// reason when the boot failed).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir
            .path()
            .join("log")
            .join(format!("{}.log", self.node))
    }

    /// Adds a user with `password` and full permissions (configure, write,
    /// read: `.*`) on vhost `/`: MQTT clients log in as it with that
    /// password; any other password is refused.
    pub async fn add_user(&self, user: &str, password: &str) {
        self.ctl(&["add_user", user, password]).await;
        self.ctl(&["set_permissions", "-p", "/", user, ".*", ".*", ".*"])
            .await;
    }

    /// Sets `user`'s topic permissions on the `amq.topic` exchange (where
    /// the MQTT plugin publishes): regular expressions (Erlang `re`, PCRE)
    /// matched against AMQP routing keys, not MQTT topics.
    ///
    /// The plugin maps an MQTT topic to a routing key by turning `/` into
    /// `.` (and, in a SUBSCRIBE's filter, `+` into `*`; `#` stays), so:
    /// publishing to `site/1/status` is checked against write
    /// `site.1.status`, subscribing to `site/+/status` against read
    /// `site.*.status` (the filter itself, not the topics it would match).
    /// [`RabbitMq::routing_key`] does the mapping, [`RabbitMq::regex_escape`]
    /// escapes it. The match is unanchored (`re:run`): anchor with `^…$`.
    /// `{username}`, `{vhost}` and `{client_id}` are expanded. A user with
    /// no topic permissions (the default) may use every topic. A denied
    /// PUBLISH or SUBSCRIBE closes the connection (see the tests).
    pub async fn set_topic_permissions(&self, user: &str, write: &str, read: &str) {
        self.ctl(&[
            "set_topic_permissions",
            "-p",
            "/",
            user,
            "amq.topic",
            write,
            read,
        ])
        .await;
    }

    /// Denies `user` publishing to exactly the MQTT topic `topic` (say, the
    /// status topic) and allows every other publish and every subscribe:
    /// write `^(?!<key>$).*` (a negative look-ahead on the routing key),
    /// read `.*`.
    pub async fn deny_topic_write(&self, user: &str, topic: &str) {
        let write = format!("^(?!{}$).*", Self::regex_escape(&Self::routing_key(topic)));
        self.set_topic_permissions(user, &write, ".*").await;
    }

    /// The routing key RabbitMQ's MQTT plugin uses for an MQTT topic or
    /// filter: `/` becomes `.` and `+` becomes `*` (`#` stays).
    pub fn routing_key(topic: &str) -> String {
        topic.replace('/', ".").replace('+', "*")
    }

    /// `text` with the regular-expression metacharacters escaped.
    pub fn regex_escape(text: &str) -> String {
        let mut escaped = String::with_capacity(text.len());
        for c in text.chars() {
            if "\\^$.|?*+()[]{}".contains(c) {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        escaped
    }

    /// Runs `rabbitmqctl <args>` against this node; panics with its output
    /// when it fails. Returns its stdout.
    pub async fn ctl(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::from(self.ctl_command(args))
            .kill_on_drop(true)
            .output()
            .await
            .expect("rabbitmqctl runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "rabbitmqctl {} failed ({}):\n{stdout}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn ctl_command(&self, args: &[&str]) -> Command {
        ctl_command(self.dir.path(), &self.node, args)
    }
}

/// `rabbitmqctl -q -n <node> <args>` with the node's environment (cookie).
fn ctl_command(dir: &Path, node: &str, args: &[&str]) -> Command {
    let mut command = Command::new(script("rabbitmqctl"));
    configure(&mut command, dir, node);
    command
        .args(["-q", "-n", node])
        .args(args)
        .stdin(Stdio::null());
    command
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let stopping = Instant::now();
        if let Ok(None) = child.try_wait() {
            let stop = self
                .ctl_command(&["stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(mut stop) = stop
                && !wait_exit(&mut stop, STOP_TIMEOUT)
            {
                let _ = stop.kill();
                let _ = stop.wait();
            }
            if !wait_exit(&mut child, EXIT_TIMEOUT) {
                // Hung: kill the VM (the script's child); the script, which
                // waits for it, then ends by itself (else it is killed too).
                let _ = Command::new("pkill")
                    .args(["-KILL", "-P", &child.id().to_string()])
                    .status();
                if !wait_exit(&mut child, Duration::from_secs(2)) {
                    let _ = child.kill();
                }
            }
        }
        let _ = child.wait();
        if std::env::var_os("TEST_LOG").is_some() {
            eprintln!("RabbitMQ {} stopped in {:?}", self.node, stopping.elapsed());
        }
    }
}

/// Waits up to `timeout` for `child` to exit; returns whether it did.
fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

mod isolation;
#[cfg(test)]
mod tests;
