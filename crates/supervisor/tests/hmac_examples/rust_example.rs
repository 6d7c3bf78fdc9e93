//! The Rust example of docs/hmac.md, compiled: the binary `cargo build
//! --all-targets` left, else built on first use.

use super::{RUST_EXAMPLE, workspace_root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The compiled Rust example: the one `cargo build --all-targets` left
/// beside this test's executable (`target/debug/examples/`) when it is newer
/// than its source, else built now. Every test runs in a process of its own
/// under nextest: building in each would queue them all on cargo's lock.
pub(crate) fn rust_example() -> &'static Path {
    static EXECUTABLE: OnceLock<PathBuf> = OnceLock::new();
    EXECUTABLE.get_or_init(|| prebuilt_example().unwrap_or_else(build_example))
}

fn prebuilt_example() -> Option<PathBuf> {
    let deps = std::env::current_exe().ok()?.parent()?.to_path_buf();
    let built = deps.parent()?.join("examples").join("verify_envelope");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let source = modified(&workspace_root().join(RUST_EXAMPLE))?;
    (modified(&built)? >= source).then_some(built)
}

fn build_example() -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    // Cargo gives this test the variables of our package; build scripts
    // (ring's) that watch them would see a change and rebuild half the
    // tree, here and again in the next plain `cargo build`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if CARGO_SETS.contains(&name.as_ref())
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
        {
            cargo.env_remove(name.as_ref());
        }
    }
    // Cargo names the file it built, wherever the target directory is.
    let output = cargo
        .args(["build", "--quiet", "-p", "mqtt-supervisor-core"])
        .args([
            "--example",
            "verify_envelope",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .expect("running cargo build");
    assert!(output.status.success(), "cargo build of the example failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "verify_envelope")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no verify_envelope executable")
}

/// What cargo sets for a test run besides `CARGO_PKG_*` and `CARGO_BIN_*`.
const CARGO_SETS: [&str; 7] = [
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];
