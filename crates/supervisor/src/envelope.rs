//! HMAC-SHA256 envelopes (docs/hmac.md): outbox payloads of a connection
//! with `hmac_secret` are wrapped as
//! `{"v":1,"ts":..,"nonce":"..","outbox_id":..,"payload":"<base64>","sig":"<hex>"}`,
//! signed over `v1\n{ts}\n{nonce}\n{outbox_id or empty}\n{payload base64}`;
//! inbound envelopes are checked with [`Verifier`] when the row asks for it.
//!
//! The secret is a [`Secret`]: it is used here and never formatted.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use settings::Secret;
use std::collections::{HashMap, VecDeque};

/// How far `ts` may be from our clock, in seconds.
pub const WINDOW_SECS: i64 = 300;

/// Nonces remembered per connection at most; beyond it the oldest go (a
/// hostile sender cannot grow memory, only shorten replay protection).
const MAX_NONCES: usize = 100_000;

/// What a check of an inbound envelope found; stored as `hmac_verdict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Malformed,
    BadSignature,
    Expired,
    Replayed,
}

impl Verdict {
    /// The word stored in `mqtt_inbox.hmac_verdict`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Malformed => "malformed",
            Verdict::BadSignature => "bad_signature",
            Verdict::Expired => "expired",
            Verdict::Replayed => "replayed",
        }
    }
}

fn key(secret: &Secret) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes())
}

fn signed_text(ts: i64, nonce: &str, outbox_id: Option<i64>, payload_b64: &str) -> String {
    let id = outbox_id.map(|id| id.to_string()).unwrap_or_default();
    format!("v1\n{ts}\n{nonce}\n{id}\n{payload_b64}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A fresh nonce: 16 random bytes as 32 lowercase hex characters. `None`
/// when the system has no randomness to give (never seen on Linux).
pub fn nonce() -> Option<String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(hex(&bytes))
}

/// Wraps `payload` in a signed envelope.
pub fn seal(
    payload: &[u8],
    secret: &Secret,
    outbox_id: Option<i64>,
    now_unix: i64,
    nonce: &str,
) -> Vec<u8> {
    let payload_b64 = STANDARD.encode(payload);
    let tag = hmac::sign(
        &key(secret),
        signed_text(now_unix, nonce, outbox_id, &payload_b64).as_bytes(),
    );
    serde_json::json!({
        "v": 1,
        "ts": now_unix,
        "nonce": nonce,
        "outbox_id": outbox_id,
        "payload": payload_b64,
        "sig": hex(tag.as_ref()),
    })
    .to_string()
    .into_bytes()
}

#[derive(Deserialize)]
struct Envelope {
    v: i64,
    ts: i64,
    nonce: String,
    outbox_id: Option<i64>,
    payload: String,
    sig: String,
}

/// Checks inbound envelopes of one connection, remembering the nonces of
/// valid ones for the window.
#[derive(Default)]
pub struct Verifier {
    seen: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl Verifier {
    /// The verdict on `raw`, received at `now_unix`. Order of checks:
    /// malformed, bad signature, expired, replayed.
    pub fn check(&mut self, raw: &[u8], secret: &Secret, now_unix: i64) -> Verdict {
        // Through a Value: a repeated key counts with its last value, as in
        // the documented examples, and `outbox_id` must be there (null is
        // fine, missing is not).
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(raw) else {
            return Verdict::Malformed;
        };
        if value.get("outbox_id").is_none() {
            return Verdict::Malformed;
        }
        let Ok(env) = serde_json::from_value::<Envelope>(value) else {
            return Verdict::Malformed;
        };
        let nonce_ok = env.nonce.len() == 32
            && env
                .nonce
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let sig = unhex(&env.sig).filter(|s| s.len() == 32);
        let (true, true, Some(sig), Ok(_)) = (
            env.v == 1,
            nonce_ok,
            sig,
            STANDARD.decode(env.payload.as_bytes()),
        ) else {
            return Verdict::Malformed;
        };
        let text = signed_text(env.ts, &env.nonce, env.outbox_id, &env.payload);
        // ring compares in constant time.
        if hmac::verify(&key(secret), text.as_bytes(), &sig).is_err() {
            return Verdict::BadSignature;
        }
        if now_unix.abs_diff(env.ts) > WINDOW_SECS.unsigned_abs() {
            return Verdict::Expired;
        }
        self.forget_before(now_unix - 2 * WINDOW_SECS);
        if self.seen.contains_key(&env.nonce) {
            return Verdict::Replayed;
        }
        if self.order.len() >= MAX_NONCES
            && let Some((_, old)) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(env.nonce.clone(), env.ts);
        self.order.push_back((now_unix, env.nonce));
        Verdict::Valid
    }

    fn forget_before(&mut self, cutoff: i64) {
        while let Some((at, _)) = self.order.front() {
            if *at >= cutoff {
                break;
            }
            if let Some((_, nonce)) = self.order.pop_front() {
                self.seen.remove(&nonce);
            }
        }
    }
}

#[cfg(test)]
mod tests;
