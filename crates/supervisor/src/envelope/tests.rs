use super::*;

fn secret() -> Secret {
    Secret::new("example-secret")
}

const NONCE: &str = "00112233445566778899aabbccddeeff";

#[test]
fn a_sealed_payload_verifies_once_then_is_a_replay() {
    let env = seal(
        br#"{"cmd":"open"}"#,
        &secret(),
        Some(42),
        1_764_970_000,
        NONCE,
    );
    let mut v = Verifier::default();
    assert_eq!(v.check(&env, &secret(), 1_764_970_010), Verdict::Valid);
    assert_eq!(v.check(&env, &secret(), 1_764_970_011), Verdict::Replayed);
    let parsed: serde_json::Value = serde_json::from_slice(&env).unwrap();
    assert_eq!(parsed["outbox_id"], 42);
    assert_eq!(parsed["payload"], "eyJjbWQiOiJvcGVuIn0=");
}

#[test]
fn tampering_a_wrong_key_the_clock_and_garbage_are_told_apart() {
    let env = seal(b"hello", &secret(), None, 1_000_000, NONCE);
    let text = String::from_utf8(env.clone()).unwrap();
    let tampered = text.replace("aGVsbG8=", "aGVsbA==");
    let mut v = Verifier::default();
    assert_eq!(
        v.check(tampered.as_bytes(), &secret(), 1_000_000),
        Verdict::BadSignature
    );
    assert_eq!(
        v.check(&env, &Secret::new("other"), 1_000_000),
        Verdict::BadSignature
    );
    assert_eq!(v.check(&env, &secret(), 1_000_301), Verdict::Expired);
    assert_eq!(v.check(&env, &secret(), 999_699), Verdict::Expired);
    let no_id = text.replace("\"outbox_id\":null,", "");
    assert_ne!(no_id, text);
    let far = seal(b"x", &secret(), None, i64::MIN, NONCE);
    assert_eq!(
        v.check(&far, &secret(), i64::MAX),
        Verdict::Expired,
        "no overflow"
    );
    for junk in [
        &b"not json"[..],
        b"{}",
        b"\xff\xfe",
        b"[1,2]",
        no_id.as_bytes(),
    ] {
        assert_eq!(v.check(junk, &secret(), 1_000_000), Verdict::Malformed);
    }
    let bad_nonce = text.replace(NONCE, "XYZ");
    assert_eq!(
        v.check(bad_nonce.as_bytes(), &secret(), 1_000_000),
        Verdict::Malformed
    );
    // Still valid after all of that: nothing was remembered.
    assert_eq!(v.check(&env, &secret(), 1_000_000), Verdict::Valid);
}

#[test]
fn nonces_are_forgotten_after_the_window() {
    let mut v = Verifier::default();
    let first = seal(b"a", &secret(), None, 1_000, NONCE);
    assert_eq!(v.check(&first, &secret(), 1_000), Verdict::Valid);
    // Long after, the same nonce on a fresh timestamp is accepted again.
    let later = seal(b"a", &secret(), None, 5_000, NONCE);
    assert_eq!(v.check(&later, &secret(), 5_000), Verdict::Valid);
    assert_eq!(v.seen.len(), 1);
}

#[test]
fn nonces_are_random_hex() {
    let a = nonce().unwrap();
    assert_eq!(a.len(), 32);
    assert_ne!(a, nonce().unwrap());
}
