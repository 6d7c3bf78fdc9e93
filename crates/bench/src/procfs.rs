//! What the kernel knows about a process, read from `/proc/<pid>`: resident
//! memory (`status`), CPU time (`stat`) and the open-files limit (`limits`).

use anyhow::{Context, bail};
use std::process::Command;

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`) or a plain count
/// (`Threads`).
pub fn status_field(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let prefix = format!("{field}:");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .with_context(|| format!("{path} has no {field}"))?;
    line[prefix.len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("cannot parse {field} in {path}: {line}"))
}

/// Resident memory in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_field(pid, "VmRSS")
}

/// User plus system CPU time of all the process's threads, in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) may hold spaces and parentheses: fields are
    // counted after its closing parenthesis, which starts at field 3 (state).
    let Some((_, rest)) = text.rsplit_once(')') else {
        bail!("cannot parse {path}");
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("cannot parse field {n} of {path}"))
    };
    Ok(field(14)? + field(15)?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux we know).
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The soft open-files limit of a running process, if readable.
pub fn open_files_limit(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
