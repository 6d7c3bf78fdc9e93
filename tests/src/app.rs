//! The real `mqtt-supervisor` binary as a child process, with its output
//! captured and its HTTP port chosen free.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the binary is: MQTT_SUPERVISOR_BIN, else next to the test
/// executable's folder (`target/<profile>/mqtt-supervisor`), which
/// `cargo test --workspace` / `cargo nextest run --workspace` build.
pub fn binary_path() -> PathBuf {
    if let Ok(p) = std::env::var("MQTT_SUPERVISOR_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let bin = profile_dir.join("mqtt-supervisor");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p mqtt-supervisor) or run the whole workspace",
        bin.display()
    );
    bin
}

/// A running service.
pub struct App {
    child: Child,
    output: Arc<Mutex<String>>,
    http_port: u16,
    status: Option<ExitStatus>,
}

impl App {
    /// Starts `mqtt-supervisor run` against `database_url`, instance `test`,
    /// with `env` on top (it wins).
    pub fn spawn(database_url: &str, env: &[(&str, &str)]) -> App {
        App::spawn_args(database_url, &["run"], env)
    }

    /// Starts the binary with `args`.
    pub fn spawn_args(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> App {
        let env: Vec<(&OsStr, &OsStr)> = env
            .iter()
            .map(|(k, v)| (OsStr::new(k), OsStr::new(v)))
            .collect();
        App::spawn_env_os(database_url, args, &env)
    }

    /// Like [`App::spawn_args`], with variables that need not be UTF-8
    /// (names or values), as a real environment may hold.
    pub fn spawn_env_os(database_url: &str, args: &[&str], env: &[(&OsStr, &OsStr)]) -> App {
        let http_port = crate::free_port();
        let mut cmd = Command::new(binary_path());
        cmd.args(args)
            .env_remove("RUST_LOG")
            // The kit's own variable, not a setting of the service.
            .env_remove("MQTT_SUPERVISOR_BIN")
            .env("DATABASE_URL", database_url)
            .env("MQTT_INSTANCE_ID", "test")
            .env("MQTT_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("MQTT_LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        pump(child.stdout.take().unwrap(), output.clone());
        pump(child.stderr.take().unwrap(), output.clone());
        App {
            child,
            output,
            http_port,
            status: None,
        }
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The HTTP port.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Waits until the output contains `needle`.
    pub async fn wait_output(&self, needle: &str, timeout: Duration) -> bool {
        crate::eventually(timeout, || async move { self.output().contains(needle) }).await
    }

    /// Waits for the `Ready` line; panics with the output if it does not come.
    pub async fn ready(&self) {
        let ok = self.wait_output("Ready:", Duration::from_secs(20)).await;
        assert!(ok, "service not ready:\n{}", self.output());
    }

    /// GET the health endpoint: (HTTP status, JSON body).
    pub async fn health(&self, verbose: bool) -> Option<(u16, serde_json::Value)> {
        let path = if verbose {
            "/api/v1/mqtt/health/?verbose=true"
        } else {
            "/api/v1/mqtt/health/"
        };
        let (code, body) = http_get(self.http_port, path).await?;
        Some((code, serde_json::from_str(&body).ok()?))
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        crate::broker::signal(self.pid(), "TERM");
    }

    /// Sends SIGKILL.
    pub fn sigkill(&self) {
        crate::broker::signal(self.pid(), "KILL");
    }

    /// Waits (up to 30 s) for a command that should end by itself and
    /// returns its exit code; panics with its output if it does not end.
    pub async fn exit_code(&mut self) -> Option<i32> {
        let status = self.wait_exit(Duration::from_secs(30)).await;
        assert!(status.is_some(), "did not exit:\n{}", self.output());
        status.and_then(|s| s.code())
    }

    /// Waits for the process to exit, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status {
                return Some(status);
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                self.status = Some(status);
                // Let the pumps drain the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn pump(stream: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
    pump_output(stream, sink, "app");
}

/// Copies a child's output, line by line, into `sink` on a thread of its
/// own; with TEST_LOG set also to stderr, each line tagged `[tag]`.
pub fn pump_output(
    stream: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
    tag: &'static str,
) {
    std::thread::spawn(move || {
        let echo = std::env::var_os("TEST_LOG").is_some();
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if echo {
                eprintln!("[{tag}] {line}");
            }
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
}

/// GET http://127.0.0.1:`port``path`: (status, body); `None` when nothing
/// answers within 5 s.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let url = format!("http://127.0.0.1:{port}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.get(&url).call().ok()?;
        let body = response.body_mut().read_to_string().ok()?;
        Some((response.status().as_u16(), body))
    })
    .await
    .ok()?
}
