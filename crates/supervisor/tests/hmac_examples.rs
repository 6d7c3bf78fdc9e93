//! Keeps docs/hmac.md honest: its Python and Rust listings are the example
//! files byte for byte, its worked example verifies, and both examples give
//! the same verdict on every envelope here.
//!
//! Needs `python3` (3.11 or newer) on PATH. The Rust example is built once
//! per run with the cargo that runs this test. Secrets go to both examples
//! through the environment only.
// Helpers outside #[test] functions fail the test on a broken setup too.
#![allow(clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

#[path = "hmac_examples/rust_example.rs"]
mod rust_example;
use rust_example::rust_example;

const DOC: &str = "docs/hmac.md";
const PYTHON_EXAMPLE: &str = "docs/examples/hmac_verify.py";
const RUST_EXAMPLE: &str = "crates/supervisor/examples/verify_envelope.rs";

/// Not ASCII, so both examples must key the HMAC with its UTF-8 bytes.
const SECRET: &str = "s3cret-f\u{fc}r-site_88";
const NOW: i64 = 1_764_970_000;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The bodies of the fenced blocks whose caption (the first non-blank line
/// after the closing fence) names `file`.
fn listings_captioned(doc: &str, file: &str) -> Vec<String> {
    let lines: Vec<&str> = doc.split_inclusive('\n').collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].starts_with("```") {
            i += 1;
            continue;
        }
        let body_start = i + 1;
        let Some(close) = (body_start..lines.len()).find(|&j| lines[j].trim_end() == "```") else {
            panic!("{DOC}: the fence on line {} is never closed", i + 1);
        };
        let caption = lines[close + 1..].iter().find(|l| !l.trim().is_empty());
        if caption.is_some_and(|c| c.contains(file)) {
            found.push(lines[body_start..close].concat());
        }
        i = close + 1;
    }
    found
}

#[test]
fn doc_listings_are_the_example_files() {
    let doc = read(DOC);
    for file in [PYTHON_EXAMPLE, RUST_EXAMPLE] {
        let listings = listings_captioned(&doc, file);
        assert_eq!(listings.len(), 1, "{DOC} should list {file} exactly once");
        assert!(
            listings[0] == read(file),
            "the listing of {file} in {DOC} differs from the file: copy the file into the document"
        );
    }
}

/// An envelope from `hmac_verify.py --sign`.
fn sign(payload: &[u8], outbox_id: Option<i64>, ts: i64) -> Vec<u8> {
    let mut command = command(Verifier::Python, Some(SECRET));
    command.args(["--sign", "--now", &ts.to_string()]);
    if let Some(id) = outbox_id {
        command.args(["--outbox-id", &id.to_string()]);
    }
    let output = run(command, payload);
    let mut lines = output.split(|&b| b == b'\n');
    let envelope = lines.next().unwrap_or_default().to_vec();
    assert_eq!(lines.collect::<Vec<_>>(), [b""], "--sign prints one line");
    envelope
}

#[derive(Debug, Clone, Copy)]
enum Verifier {
    Python,
    Rust,
}

const VERIFIERS: [Verifier; 2] = [Verifier::Python, Verifier::Rust];

/// Runs an example with `secret` in its environment variable, or none.
fn command(verifier: Verifier, secret: Option<&str>) -> Command {
    let (mut command, variable) = match verifier {
        Verifier::Python => {
            let mut python = Command::new("python3");
            python.arg(workspace_root().join(PYTHON_EXAMPLE));
            python.args(["--secret-env", "SITE_88_HMAC"]);
            (python, "SITE_88_HMAC")
        }
        Verifier::Rust => (Command::new(rust_example()), "HMAC_SECRET"),
    };
    match secret {
        Some(secret) => command.env(variable, secret),
        None => command.env_remove(variable),
    };
    command
}

/// Stdout of `command` fed `stdin`; it must succeed.
fn run(mut command: Command, stdin: &[u8]) -> Vec<u8> {
    // Not `{command:?}`: that would show the secret.
    let name = format!(
        "{:?} {:?}",
        command.get_program(),
        command.get_args().collect::<Vec<_>>()
    );
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin).expect("writing stdin");
    drop(input);
    let output = child.wait_with_output().expect("waiting");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{name} failed ({}): {stderr}",
        output.status
    );
    output.stdout
}

/// The verdict lines of one run of `verifier` over `envelopes`.
fn verify(verifier: Verifier, secret: &str, now: i64, envelopes: &[Vec<u8>]) -> Vec<String> {
    let stdin: Vec<u8> = envelopes
        .iter()
        .flat_map(|e| e.iter().chain(b"\n"))
        .copied()
        .collect();
    let mut command = command(verifier, Some(secret));
    command.args(["--now", &now.to_string()]);
    let stdout = String::from_utf8(run(command, &stdin)).expect("verdicts are text");
    stdout.lines().map(str::to_owned).collect()
}

/// Checks both verifiers against the expected verdict lines.
fn assert_verdicts(envelopes: &[Vec<u8>], now: i64, expected: &[&str]) {
    for verifier in VERIFIERS {
        assert_eq!(
            verify(verifier, SECRET, now, envelopes),
            expected,
            "{verifier:?}"
        );
    }
}

fn valid(payload: &[u8]) -> String {
    format!("valid\t{}", STANDARD.encode(payload))
}

/// `envelope` with `edit` applied to its JSON object.
fn edited(envelope: &[u8], edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(envelope).expect("a signed envelope is JSON");
    edit(
        value
            .as_object_mut()
            .expect("a signed envelope is an object"),
    );
    serde_json::to_vec(&value).expect("a Value serialises")
}

#[test]
fn a_signed_payload_round_trips() {
    // Binary, with a newline: the envelope must still be one line.
    let payload = b"{\"cmd\":\"open\"}\n\x00\xff\xfe";
    let with_id = sign(payload, Some(7), NOW);
    let without_id = sign(b"", None, NOW);
    let fields: Value = serde_json::from_slice(&without_id).expect("an envelope is JSON");
    assert_eq!(fields["outbox_id"], Value::Null);
    assert_verdicts(&[with_id, without_id], NOW, &[&valid(payload), "valid\t"]);
}

#[test]
fn a_changed_payload_or_another_secret_is_a_bad_signature() {
    let envelope = sign(b"open the gate", Some(8), NOW);
    let tampered = edited(&envelope, |fields| {
        let text = fields["payload"].as_str().expect("payload is a string");
        // The first character of a base64 quantum can be anything.
        let first = if text.starts_with('b') { "c" } else { "b" };
        fields["payload"] = Value::from(format!("{first}{}", &text[1..]));
    });
    assert_verdicts(&[tampered], NOW, &["bad_signature"]);
    for verifier in VERIFIERS {
        assert_eq!(
            verify(
                verifier,
                "another-secret",
                NOW,
                std::slice::from_ref(&envelope)
            ),
            ["bad_signature"],
            "{verifier:?}"
        );
    }
}

#[test]
fn the_same_envelope_twice_is_replayed() {
    let envelope = sign(b"once", Some(9), NOW);
    let other = sign(b"once", Some(9), NOW);
    assert_verdicts(
        &[envelope.clone(), envelope.clone(), other, envelope],
        NOW,
        &[&valid(b"once"), "replayed", &valid(b"once"), "replayed"],
    );
}

#[test]
fn the_window_is_300_seconds_either_side() {
    let envelopes = [
        sign(b"old", None, NOW - 301),
        sign(b"ahead", None, NOW + 301),
        sign(b"just old enough", None, NOW - 300),
        sign(b"just ahead enough", None, NOW + 300),
    ];
    assert_verdicts(
        &envelopes,
        NOW,
        &[
            "expired",
            "expired",
            &valid(b"just old enough"),
            &valid(b"just ahead enough"),
        ],
    );
}

#[test]
fn checks_run_in_order_and_only_valid_nonces_are_remembered() {
    let old = sign(b"late", None, NOW - 400);
    let old_tampered = edited(&old, |fields| fields["ts"] = Value::from(NOW - 401));
    let fresh = sign(b"fresh", None, NOW);
    let fresh_bad_version = edited(&fresh, |fields| fields["v"] = Value::from(2));
    let fresh_tampered = edited(&fresh, |fields| fields["outbox_id"] = Value::from(1));
    assert_verdicts(
        &[
            old_tampered,
            old.clone(),
            old,
            fresh_bad_version,
            fresh_tampered,
            fresh,
        ],
        NOW,
        &[
            "bad_signature",
            "expired",
            "expired",
            "malformed",
            "bad_signature",
            &valid(b"fresh"),
        ],
    );
}

#[test]
fn garbage_is_malformed() {
    let good = sign(b"hello", Some(1), NOW);
    let set = |key: &str, value: Value| {
        edited(&good, |fields| {
            fields.insert(key.to_owned(), value);
        })
    };
    let remove = |key: &str| {
        edited(&good, |fields| {
            fields.remove(key);
        })
    };
    let raw = |text: &str| text.as_bytes().to_vec();
    let sig = serde_json::from_slice::<Value>(&good).expect("JSON")["sig"].clone();
    let sig = sig.as_str().expect("sig is a string").to_owned();
    let garbage = [
        raw(""),
        raw("garbage"),
        raw("[1,2]"),
        raw("{}"),
        b"\xff\xfe{}".to_vec(),
        remove("v"),
        remove("outbox_id"),
        remove("sig"),
        set("v", Value::from("1")),
        set("v", Value::from(1.0)),
        set("ts", Value::from(1_764_970_000.5)),
        set("ts", Value::from(u64::MAX)),
        set("nonce", Value::from("00112233445566778899AABBCCDDEEFF")),
        set("nonce", Value::from("0011223344556677")),
        set("outbox_id", Value::from("1")),
        set("payload", Value::from("aGVsbG8")),
        set("payload", Value::from("aGVsbG9=")),
        set("payload", Value::from("aGVs bG8=")),
        set("payload", Value::from(1)),
        set("sig", Value::from(&sig[1..])),
        set("sig", Value::from(format!("{}g", &sig[1..]))),
    ];
    let expected = vec!["malformed"; garbage.len()];
    assert_verdicts(&garbage, NOW, &expected);
}

#[test]
fn the_worked_example_in_the_doc_verifies() {
    let doc = read(DOC);
    let examples: Vec<&str> = doc
        .lines()
        .filter(|line| {
            line.starts_with(r#"{"v":1,"ts":1764970000,"nonce":"00112233445566778899aabbccddeeff""#)
        })
        .collect();
    assert_eq!(
        examples.len(),
        1,
        "{DOC} should show the worked example's envelope once"
    );
    let envelope = examples[0].as_bytes().to_vec();
    for verifier in VERIFIERS {
        assert_eq!(
            verify(
                verifier,
                "example-secret",
                1_764_970_000,
                std::slice::from_ref(&envelope)
            ),
            [valid(br#"{"cmd":"open"}"#)],
            "{verifier:?}"
        );
    }
}

#[test]
fn no_secret_no_verdicts() {
    for verifier in VERIFIERS {
        let output = command(verifier, None)
            .stdin(Stdio::null())
            .output()
            .expect("running the example");
        assert_eq!(output.status.code(), Some(2), "{verifier:?}");
        assert!(output.stdout.is_empty(), "{verifier:?}");
    }
}
