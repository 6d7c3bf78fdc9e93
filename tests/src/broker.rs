//! A private Mosquitto on a free loopback port, with its own config and log,
//! that a test can stop, restart, freeze (SIGSTOP) and thaw.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running (or stopped) private broker.
pub struct Broker {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    /// Anonymous access on a free port.
    pub async fn start() -> Broker {
        Broker::start_with("allow_anonymous true\n").await
    }

    /// With a user and password (anonymous access refused).
    pub async fn start_with_user(user: &str, password: &str) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("passwd");
        let ok = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&file)
            .args([user, password])
            .status()
            .unwrap();
        assert!(ok.success(), "mosquitto_passwd failed");
        let extra = format!("allow_anonymous false\npassword_file {}\n", file.display());
        Broker::start_in_dir(dir, &extra).await
    }

    /// With extra configuration lines (listener and logging are added).
    pub async fn start_with(extra: &str) -> Broker {
        Broker::start_in_dir(tempfile::tempdir().unwrap(), extra).await
    }

    /// With extra configuration lines, in `dir` (where the extra files named
    /// by those lines may already be).
    pub async fn start_in_dir(dir: tempfile::TempDir, extra: &str) -> Broker {
        let port = crate::free_port();
        let conf = format!(
            "# Stay the invoking user (as root, mosquitto would switch to `mosquitto`\n# and could not write its log in our temporary directory).\nuser root\nlistener {port} 127.0.0.1\npersistence false\nlog_dest file {log}\nlog_type all\nconnection_messages true\n{extra}",
            log = dir.path().join("mosquitto.log").display()
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
        let mut broker = Broker {
            port,
            dir,
            child: None,
        };
        broker.launch().await;
        broker
    }

    async fn launch(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (scripts/deps.sh installs it)");
        self.child = Some(child);
        let port = self.port;
        let up = crate::eventually(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(
            up,
            "mosquitto did not start on port {port}:\n{}",
            self.log()
        );
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The broker's directory (config, log, extra files).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Everything the broker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// SIGTERM, and wait for the process to end.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "CONT");
            signal(child.id(), "TERM");
            let waited = tokio::task::spawn_blocking(move || child.wait()).await;
            assert!(waited.is_ok(), "mosquitto did not exit");
        }
    }

    /// Starts again on the same port (after [`Broker::stop`]).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// SIGSTOP: the broker holds its sockets but answers nothing.
    pub fn freeze(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "STOP");
        }
    }

    /// SIGCONT after [`Broker::freeze`].
    pub fn thaw(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "CONT");
        }
    }

    /// How many CONNECTs the broker saw from `client_id` (from its log).
    pub fn connects_of(&self, client_id: &str) -> usize {
        let needle = format!(" as {client_id} ");
        self.log()
            .lines()
            .filter(|l| l.contains("New client connected") && l.contains(&needle))
            .count()
    }

    /// How many clean DISCONNECTs the broker received from `client_id`
    /// (from its log); a clean DISCONNECT suppresses the Will.
    pub fn disconnects_of(&self, client_id: &str) -> usize {
        let needle = format!("Received DISCONNECT from {client_id}");
        self.log().lines().filter(|l| l.ends_with(&needle)).count()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends a signal with kill(1): the test kit forbids unsafe code.
pub(crate) fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// Sends a signal to every process in the group `pgid` (a leader started
/// with `process_group(0)` and whatever it started).
pub(crate) fn signal_group(pgid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .status();
}
