//! A private Mosquitto for the benchmark: a free loopback port, a temporary
//! configuration that accepts any number of anonymous clients, and an
//! open-files limit raised (through `sh -c 'ulimit -n …'`) so that it can
//! hold 10,000 clients and more.
//!
//! The process is killed when the [`Broker`] is dropped (also on an error or
//! a panic); [`Broker::stop`] ends it politely.

use crate::procfs;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// How long Mosquitto may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Open files wanted for Mosquitto; if its hard limit is lower (a container
/// without CAP_SYS_RESOURCE), it gets the hard limit instead.
const WANTED_OPEN_FILES: u32 = 65_536;

/// A running Mosquitto.
pub struct Broker {
    port: u16,
    log: PathBuf,
    child: Child,
}

impl Broker {
    /// Writes the configuration into `dir` and starts Mosquitto on a free port.
    pub async fn start(dir: &Path) -> anyhow::Result<Broker> {
        let port = crate::free_port()?;
        let log = dir.join("mosquitto.log");
        let conf = dir.join("mosquitto.conf");
        let text = format!(
            "# Written by mqtt-supervisor's bench.\n\
             # Stay the invoking user: as root, Mosquitto would switch to `mosquitto`\n\
             # and could not write its log in this temporary directory.\n\
             user root\n\
             persistence false\n\
             max_connections -1\n\
             # Bursts of messages for one client (bench messages) are queued, not dropped.\n\
             max_queued_messages 0\n\
             listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             log_dest file {log}\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             connection_messages false\n",
            log = log.display()
        );
        std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
        // `$0` is the configuration path: no quoting of paths in the script.
        let script = format!(
            "ulimit -n {WANTED_OPEN_FILES} 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"; exec mosquitto -c \"$0\""
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("mosquitto.stderr"))
                    .context("creating Mosquitto's stderr file")?,
            ))
            .kill_on_drop(true)
            .spawn()
            .context("cannot run `sh -c … mosquitto`: is Mosquitto installed?")?;
        let mut broker = Broker { port, log, child };
        broker.wait_listening(dir).await?;
        Ok(broker)
    }

    async fn wait_listening(&mut self, dir: &Path) -> anyhow::Result<()> {
        let began = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for Mosquitto")? {
                let stderr =
                    std::fs::read_to_string(dir.join("mosquitto.stderr")).unwrap_or_default();
                bail!(
                    "Mosquitto exited at start ({status}); is it installed?\n{stderr}{}",
                    self.log_text()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if began.elapsed() > START_TIMEOUT {
                bail!(
                    "Mosquitto did not listen on 127.0.0.1:{} within {} s:\n{}",
                    self.port,
                    START_TIMEOUT.as_secs(),
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id (Mosquitto itself: the shell `exec`s it).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Mosquitto's open-files limit, if it can be read.
    pub fn open_files_limit(&self) -> Option<u64> {
        self.pid().and_then(procfs::open_files_limit)
    }

    /// Mosquitto's resident memory in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.pid().and_then(|pid| procfs::rss_kib(pid).ok())
    }

    /// Mosquitto's CPU time so far in seconds (0 if it cannot be read).
    pub fn cpu_secs(&self) -> f64 {
        let ticks = self
            .pid()
            .and_then(|pid| procfs::cpu_ticks(pid).ok())
            .unwrap_or(0);
        ticks as f64 / procfs::clock_ticks_per_sec() as f64
    }

    /// Everything Mosquitto logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait (5 s at most, then SIGKILL).
    pub async fn stop(mut self) {
        if let Some(pid) = self.pid() {
            crate::signal(pid, "TERM");
            if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}
