//! The command line as an operator uses it, against a real database: every
//! subcommand (`connections list|add|enable|disable|remove`, `health`,
//! `check-config`, `--version`), the exit codes of the contract (0 done,
//! 1 runtime failure, 2 bad usage) and one-line errors; a password given
//! on stdin never shows in any output; and a change made with the CLI
//! reaches a running service at once (NOTIFY, not the 30 s poll).
//!
//! [`Cli`] runs the binary with a clean environment and keeps a transcript;
//! the tests are in `connections` (the table, errors, an unreachable
//! database) and `service` (`health`, `check-config`, `--version`, changes
//! reaching a running service).

mod connections;
mod service;

use mqtt_supervisor_tests::binary_path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// What one run of the binary did.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Out {
    /// The error message: exactly one line on stderr, nothing on stdout.
    fn one_line_error(&self) -> &str {
        assert!(self.stdout.is_empty(), "{self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{self:?}");
        assert!(!self.stderr.contains("panicked"), "{self:?}");
        assert!(
            !self.stderr.to_lowercase().contains("backtrace"),
            "{self:?}"
        );
        lines[0]
    }
}

/// The binary with a clean environment: DATABASE_URL, instance `test`, and
/// whatever else a test sets. Keeps a transcript of every output.
struct Cli {
    env: Vec<(String, String)>,
    transcript: Mutex<String>,
}

impl Cli {
    fn new(database_url: &str) -> Cli {
        Cli {
            env: vec![
                ("DATABASE_URL".into(), database_url.into()),
                ("MQTT_INSTANCE_ID".into(), "test".into()),
                ("RUST_BACKTRACE".into(), "1".into()),
            ],
            transcript: Mutex::new(String::new()),
        }
    }

    async fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, None, &[]).await
    }

    async fn run_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Out {
        let mut cmd = tokio::process::Command::new(binary_path());
        cmd.args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let began = Instant::now();
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            // The program may reject its arguments before reading stdin: a
            // broken pipe here is part of that outcome, not a test failure.
            let _ = pipe.write_all(input.as_bytes()).await;
        }
        let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{args:?} did not exit within 30 s"))
            .unwrap();
        let out = Out {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            took: began.elapsed(),
        };
        let mut t = self.transcript.lock().unwrap();
        t.push_str(&out.stdout);
        t.push_str(&out.stderr);
        out
    }

    fn transcript(&self) -> String {
        self.transcript.lock().unwrap().clone()
    }
}

/// The `list` line of connection `name`, split on runs of 2+ spaces.
fn list_line(list: &str, name: &str) -> Vec<String> {
    let line = list
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{list}"));
    line.split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
