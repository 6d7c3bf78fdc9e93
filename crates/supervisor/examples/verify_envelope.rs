//! Verifies mqtt-supervisor HMAC-SHA256 envelopes (docs/hmac.md): one
//! envelope per line on stdin, one verdict per line on stdout, and for a
//! valid envelope a tab and the payload in base64 (`valid\taGVsbG8=`).
//!
//! ```sh
//! HMAC_SECRET=... cargo run -p mqtt-supervisor-core --example verify_envelope < envelopes
//! ```
//!
//! The secret comes from the environment, never the command line, so it does
//! not show in `ps`. Each line is checked against the clock, or against the
//! time given as `-- --now UNIX`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use serde_json::Value;

/// Seconds either side of now within which `ts` must fall; also how long a
/// nonce is remembered.
const WINDOW: i64 = 300;

/// What a receiver concludes about one envelope.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Carries the original payload bytes.
    Valid(Vec<u8>),
    Malformed,
    BadSignature,
    Expired,
    Replayed,
}

impl Verdict {
    fn as_str(&self) -> &'static str {
        match self {
            Verdict::Valid(_) => "valid",
            Verdict::Malformed => "malformed",
            Verdict::BadSignature => "bad_signature",
            Verdict::Expired => "expired",
            Verdict::Replayed => "replayed",
        }
    }
}

/// The fields of a well-formed envelope.
struct Envelope {
    ts: i64,
    nonce: String,
    outbox_id: Option<i64>,
    /// The base64 text as received: the signature covers it, not the bytes.
    payload_b64: String,
    payload: Vec<u8>,
    sig: Vec<u8>,
}

/// Checks one envelope at time `now`, in this order: `malformed`,
/// `bad_signature`, `expired`, `replayed`. `seen` maps the nonce of every valid
/// envelope to its `ts`; this updates it.
fn verify(line: &[u8], key: &hmac::Key, now: i64, seen: &mut HashMap<String, i64>) -> Verdict {
    let Some(envelope) = parse(line) else {
        return Verdict::Malformed;
    };
    // Constant time: ring compares the whole tag.
    if hmac::verify(key, &signed_bytes(&envelope), &envelope.sig).is_err() {
        return Verdict::BadSignature;
    }
    if now.abs_diff(envelope.ts) > WINDOW.unsigned_abs() {
        return Verdict::Expired;
    }
    // A forgotten nonce cannot come back: its envelope is expired by now.
    seen.retain(|_, ts| now.saturating_sub(*ts) <= WINDOW);
    match seen.entry(envelope.nonce) {
        Entry::Occupied(_) => Verdict::Replayed,
        Entry::Vacant(slot) => {
            slot.insert(envelope.ts);
            Verdict::Valid(envelope.payload)
        }
    }
}

/// The exact bytes the HMAC covers.
fn signed_bytes(envelope: &Envelope) -> Vec<u8> {
    let outbox_id = envelope
        .outbox_id
        .map(|id| id.to_string())
        .unwrap_or_default();
    format!(
        "v1\n{}\n{}\n{}\n{}",
        envelope.ts, envelope.nonce, outbox_id, envelope.payload_b64
    )
    .into_bytes()
}

/// The fields of a well-formed envelope, or `None`.
fn parse(line: &[u8]) -> Option<Envelope> {
    let value: Value = serde_json::from_slice(line).ok()?;
    let object = value.as_object()?;
    if object.get("v")?.as_i64()? != 1 {
        return None;
    }
    let ts = object.get("ts")?.as_i64()?;
    let nonce = object.get("nonce")?.as_str()?;
    let lower_hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    if nonce.len() != 32 || !nonce.bytes().all(lower_hex) {
        return None;
    }
    let outbox_id = match object.get("outbox_id")? {
        Value::Null => None,
        id => Some(id.as_i64()?),
    };
    let payload_b64 = object.get("payload")?.as_str()?;
    // STANDARD wants `=` padding and zero unused bits: one text per payload.
    let payload = STANDARD.decode(payload_b64).ok()?;
    let sig = object.get("sig")?.as_str()?;
    if sig.len() != 64 {
        return None;
    }
    Some(Envelope {
        ts,
        nonce: nonce.to_owned(),
        outbox_id,
        payload_b64: payload_b64.to_owned(),
        payload,
        sig: decode_hex(sig)?,
    })
}

/// Hex in either case to bytes; `None` on an odd length or a non-hex digit.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let (pairs, rest) = text.as_bytes().as_chunks::<2>();
    if !rest.is_empty() {
        return None;
    }
    pairs
        .iter()
        .map(|&[high, low]| Some((nibble(high)? << 4) | nibble(low)?))
        .collect()
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// `--now UNIX` if given.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<i64>, String> {
    let mut now = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--now" => {
                let value = args.next().ok_or("--now needs a Unix time")?;
                let unix = value
                    .parse()
                    .map_err(|_| format!("--now {value}: not a Unix time"))?;
                now = Some(unix);
            }
            other => return Err(format!("unexpected argument {other}; usage: [--now UNIX]")),
        }
    }
    Ok(now)
}

fn clock_now() -> Result<i64, String> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("the clock is before 1970: {e}"))?;
    i64::try_from(since_epoch.as_secs()).map_err(|e| format!("the clock is out of range: {e}"))
}

fn main() -> ExitCode {
    let secret = match std::env::var("HMAC_SECRET") {
        Ok(secret) if !secret.is_empty() => secret,
        _ => {
            eprintln!("verify_envelope: set HMAC_SECRET to the connection's hmac_secret");
            return ExitCode::from(2);
        }
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let fixed_now = match parse_args(std::env::args().skip(1)) {
        Ok(now) => now,
        Err(message) => {
            eprintln!("verify_envelope: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&key, fixed_now) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("verify_envelope: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Verifies stdin line by line until it ends.
fn run(key: &hmac::Key, fixed_now: Option<i64>) -> Result<(), String> {
    let mut seen = HashMap::new();
    let mut out = io::stdout().lock();
    for line in io::stdin().lock().split(b'\n') {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        let now = match fixed_now {
            Some(now) => now,
            None => clock_now()?,
        };
        let written = match verify(&line, key, now, &mut seen) {
            Verdict::Valid(payload) => writeln!(out, "valid\t{}", STANDARD.encode(payload)),
            other => writeln!(out, "{}", other.as_str()),
        };
        written.map_err(|e| format!("writing stdout: {e}"))?;
    }
    Ok(())
}
