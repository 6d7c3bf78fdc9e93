//! supervisord running the repository's `supervisord.conf`, with its paths
//! pointed at a temporary directory: the deployment the image uses, driven
//! through `supervisorctl` as an operator would.
//!
//! The conf reads four variables of its own (SUPERVISOR_MQTT_BIN, _LOG_DIR,
//! _RUN_DIR, _SERVICE_USER); the service's settings (DATABASE_URL, MQTT_*)
//! are whatever the test passes, inherited through supervisord. supervisord
//! runs in the foreground (`nodaemon=true`) as our child; [`Drop`] shuts it
//! down with `supervisorctl shutdown` and kills what is left.
//!
//! The conf says `user=root` for supervisord itself (as in the image). Run
//! as another user, supervisord refuses that line ("Can't drop privilege as
//! nonroot user"), so then, and only then, a copy with that one line set to
//! the current user is used.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The program name in `supervisord.conf`.
pub const PROGRAM: &str = "mqtt_service";

/// A running supervisord.
pub struct Supervisord {
    /// Short on purpose: the control socket lives here, and a unix socket
    /// path must stay under ~100 bytes.
    dir: tempfile::TempDir,
    conf: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

/// The repository root (where `supervisord.conf` is).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

impl Supervisord {
    /// Starts supervisord with the repository's conf and `env` (the
    /// service's settings) on top of the four SUPERVISOR_* variables;
    /// returns once `supervisorctl` gets answers. The service itself is
    /// started by supervisord (`autostart=true`); wait for it with
    /// [`Supervisord::wait_running`].
    pub async fn start(env: &[(&str, &str)]) -> Supervisord {
        let base = if Path::new("/tmp").is_dir() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("sv")
            .tempdir_in(base)
            .unwrap();
        let (log_dir, run_dir) = (dir.path().join("log"), dir.path().join("run"));
        std::fs::create_dir(&log_dir).unwrap();
        std::fs::create_dir(&run_dir).unwrap();
        let conf = conf_for_current_user(dir.path());
        let mut all = vec![
            (
                "SUPERVISOR_MQTT_BIN".to_owned(),
                crate::binary_path().display().to_string(),
            ),
            (
                "SUPERVISOR_LOG_DIR".to_owned(),
                log_dir.display().to_string(),
            ),
            (
                "SUPERVISOR_RUN_DIR".to_owned(),
                run_dir.display().to_string(),
            ),
            ("SUPERVISOR_SERVICE_USER".to_owned(), current_user()),
        ];
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let socket = run_dir.join("supervisor.sock");
        assert!(
            socket.as_os_str().len() < 100,
            "socket path too long: {}",
            socket.display()
        );

        let console = std::fs::File::create(dir.path().join("console.log")).unwrap();
        let mut cmd = Command::new("supervisord");
        cmd.arg("-c").arg(&conf);
        scrub(&mut cmd, &all);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .expect("supervisord must be installed (Debian package `supervisor`, scripts/deps.sh)");
        let mut sv = Supervisord {
            dir,
            conf,
            env: all,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, out) = sv.ctl(&["pid"]).await;
            if code == 0 && out.trim().parse::<u32>().is_ok() {
                return sv;
            }
            let exited = sv.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "supervisord did not come up ({exited:?}): {out}\nconsole:\n{}\nlog:\n{}",
                sv.console(),
                sv.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `supervisorctl -c <conf> args…` with the same environment:
    /// (exit code, standard output with standard error appended).
    pub async fn ctl(&self, args: &[&str]) -> (i32, String) {
        let mut cmd = tokio::process::Command::new("supervisorctl");
        cmd.arg("-c").arg(&self.conf).args(args);
        scrub(cmd.as_std_mut(), &self.env);
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .await
            .expect("supervisorctl must be installed");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// The service's pid while supervisord says RUNNING.
    pub async fn service_pid(&self) -> Option<u32> {
        let (code, out) = self.ctl(&["pid", PROGRAM]).await;
        let pid: u32 = out.trim().parse().ok()?;
        (code == 0 && pid > 0).then_some(pid)
    }

    /// The state word of `supervisorctl status mqtt_service` (RUNNING,
    /// STARTING, STOPPED, BACKOFF…), and the whole line.
    pub async fn status(&self) -> (String, String) {
        let (_, out) = self.ctl(&["status", PROGRAM]).await;
        let state = out.split_whitespace().nth(1).unwrap_or("").to_owned();
        (state, out)
    }

    /// Waits until the service is RUNNING (supervisord counts it so after
    /// `startsecs`); returns its pid.
    pub async fn wait_running(&self, timeout: Duration) -> Option<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.status().await.0 == "RUNNING"
                && let Some(pid) = self.service_pid().await
            {
                return Some(pid);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The directory holding `supervisord.log`, `mqtt_service.out.log`
    /// and `mqtt_service.err.log`.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// supervisord's own log.
    pub fn log(&self) -> String {
        read(&self.log_dir().join("supervisord.log"))
    }

    /// The service's stdout and stderr logs, one after the other.
    pub fn service_log(&self) -> String {
        let dir = self.log_dir();
        format!(
            "{}{}",
            read(&dir.join("mqtt_service.out.log")),
            read(&dir.join("mqtt_service.err.log"))
        )
    }

    /// What supervisord printed on its own stdout/stderr (start-up errors).
    pub fn console(&self) -> String {
        read(&self.dir.path().join("console.log"))
    }

    /// `supervisorctl shutdown`, then waits for supervisord to exit; returns
    /// whether it exited within `timeout`.
    pub async fn shutdown(&mut self, timeout: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = self.ctl(&["shutdown"]).await;
        let deadline = Instant::now() + timeout;
        loop {
            if child.try_wait().unwrap().is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                self.child = Some(child);
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let ctl = |args: &[&str]| {
            let mut cmd = Command::new("supervisorctl");
            cmd.arg("-c").arg(&self.conf).args(args);
            scrub(&mut cmd, &self.env);
            cmd.stdin(Stdio::null()).output().ok()
        };
        let service = ctl(&["pid", PROGRAM])
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u32>()
                    .ok()
            })
            .filter(|pid| *pid > 0);
        let _ = ctl(&["shutdown"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            let _ = child.wait();
            if let Some(pid) = service {
                crate::broker::signal(pid, "KILL");
            }
        }
    }
}

/// Sets `env` on `cmd`, without the test runner's own RUST_LOG, DATABASE_URL
/// or MQTT_* (the service must see only what the test chose).
fn scrub(cmd: &mut Command, env: &[(String, String)]) {
    for (k, _) in std::env::vars() {
        if k == "RUST_LOG" || k == "DATABASE_URL" || k.starts_with("MQTT_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
}

/// The repository's conf, or (not root) a copy in `dir` whose
/// `[supervisord] user=root` names the current user instead.
fn conf_for_current_user(dir: &Path) -> PathBuf {
    let conf = repo_root().join("supervisord.conf");
    if current_uid() == "0" {
        return conf;
    }
    let text = std::fs::read_to_string(&conf).unwrap();
    let user = current_user();
    let mut section = String::new();
    let copy: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with('[') {
                section = line.trim().to_owned();
            }
            if section == "[supervisord]" && line.trim() == "user=root" {
                format!("user={user}")
            } else {
                line.to_owned()
            }
        })
        .collect();
    let path = dir.join("supervisord.conf");
    std::fs::write(&path, copy.join("\n") + "\n").unwrap();
    path
}

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn current_user() -> String {
    id("-un")
}

fn current_uid() -> String {
    id("-u")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
