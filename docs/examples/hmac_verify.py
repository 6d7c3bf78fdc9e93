#!/usr/bin/env python3
"""Sign and verify mqtt-supervisor HMAC-SHA256 envelopes (docs/hmac.md).

Python 3.11+, standard library only.

Verify envelopes, one per line; prints one verdict per line, and for a valid
envelope a tab and the payload in base64:

    python3 hmac_verify.py --secret-env SITE_88_HMAC [--now UNIX] < envelopes

Sign the payload read from stdin; prints one envelope line:

    python3 hmac_verify.py --secret-env SITE_88_HMAC --sign [--outbox-id N] < payload

The secret is read from the environment variable named by --secret-env, never
from the command line, so it does not show in `ps`.
"""

import argparse
import base64
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import sys
import time

VERSION = 1
WINDOW = 300  # seconds either side of now; also how long a nonce is kept
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
FIELDS = {"v", "ts", "nonce", "outbox_id", "payload", "sig"}
NONCE = re.compile(r"[0-9a-f]{32}")
SIG = re.compile(r"[0-9a-fA-F]{64}")


def signed_bytes(ts: int, nonce: str, outbox_id: int | None, payload_b64: str) -> bytes:
    """The exact bytes the HMAC covers."""
    outbox = "" if outbox_id is None else str(outbox_id)
    return f"v1\n{ts}\n{nonce}\n{outbox}\n{payload_b64}".encode()


def mac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def sign(
    payload: bytes, secret: str, outbox_id: int | None, now: int, nonce: str | None = None
) -> bytes:
    """One envelope (no trailing newline) carrying payload, signed at now."""
    if nonce is None:
        nonce = secrets.token_hex(16)
    if not NONCE.fullmatch(nonce):
        raise ValueError("nonce must be 32 lowercase hex characters")
    if not _is_i64(now) or not (outbox_id is None or _is_i64(outbox_id)):
        raise ValueError("now and outbox_id must be 64-bit integers")
    payload_b64 = base64.b64encode(payload).decode("ascii")
    sig = mac(secret, signed_bytes(now, nonce, outbox_id, payload_b64)).hex()
    envelope = {
        "v": VERSION,
        "ts": now,
        "nonce": nonce,
        "outbox_id": outbox_id,
        "payload": payload_b64,
        "sig": sig,
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def verify(
    envelope: bytes, secret: str, now: int, seen: dict[str, int]
) -> tuple[str, bytes | None]:
    """Check one envelope at time now: (verdict, payload when valid).

    seen maps the nonce of every valid envelope to its ts; verify updates it.
    Checks run in this order: malformed, bad_signature, expired, replayed.
    """
    fields = _parse(envelope)
    if fields is None:
        return "malformed", None
    ts, nonce, outbox_id, payload_b64, payload, sig = fields
    expected = mac(secret, signed_bytes(ts, nonce, outbox_id, payload_b64))
    if not hmac.compare_digest(expected, sig):
        return "bad_signature", None
    if abs(now - ts) > WINDOW:
        return "expired", None
    # A forgotten nonce cannot come back: its envelope is expired by now.
    for old in [n for n, t in seen.items() if now - t > WINDOW]:
        del seen[old]
    if nonce in seen:
        return "replayed", None
    seen[nonce] = ts
    return "valid", payload


def _is_i64(value) -> bool:
    # type() rather than isinstance(): True is an int to Python, not to JSON.
    return type(value) is int and I64_MIN <= value <= I64_MAX


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


# Read numbers the way serde_json does, so both examples agree: integers
# outside 64 bits, and -0, are floats, and a float too large is an error.
def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is out of range")
    return value


def _parse_int(text: str) -> int | float:
    value = int(text)
    if text == "-0" or not I64_MIN <= value < 2**64:
        return _parse_float(text)
    return value


def _parse(envelope: bytes):
    """The fields of a well-formed envelope, or None."""
    try:
        obj = json.loads(
            envelope.decode("utf-8"),
            parse_constant=_reject_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except (ValueError, RecursionError):  # includes UnicodeDecodeError
        return None
    if not isinstance(obj, dict) or not FIELDS <= obj.keys():
        return None
    v, ts, nonce = obj["v"], obj["ts"], obj["nonce"]
    outbox_id, payload_b64, sig = obj["outbox_id"], obj["payload"], obj["sig"]
    if not (
        _is_i64(v)
        and v == VERSION
        and _is_i64(ts)
        and isinstance(nonce, str)
        and NONCE.fullmatch(nonce)
        and (outbox_id is None or _is_i64(outbox_id))
        and isinstance(payload_b64, str)
        and isinstance(sig, str)
        and SIG.fullmatch(sig)
    ):
        return None
    try:
        payload = base64.b64decode(payload_b64, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        return None
    # b64decode accepts non-zero unused bits in the last character; the
    # format (and Rust's base64 crate) does not.
    if base64.b64encode(payload).decode("ascii") != payload_b64:
        return None
    return ts, nonce, outbox_id, payload_b64, payload, bytes.fromhex(sig)


def main() -> int:
    parser = argparse.ArgumentParser(description="Sign or verify mqtt-supervisor HMAC envelopes.")
    parser.add_argument(
        "--secret-env", required=True, metavar="NAME", help="environment variable with hmac_secret"
    )
    parser.add_argument(
        "--now", type=int, metavar="UNIX", help="time to check against, or the ts to sign with"
    )
    parser.add_argument("--sign", action="store_true", help="sign the payload read from stdin")
    parser.add_argument(
        "--outbox-id", type=int, metavar="N", help="with --sign: the mqtt_outbox id (default: null)"
    )
    args = parser.parse_args()
    secret = os.environ.get(args.secret_env, "")
    if not secret:
        parser.error(f"environment variable {args.secret_env} is unset or empty")
    if args.outbox_id is not None and not args.sign:
        parser.error("--outbox-id only goes with --sign")

    if args.sign:
        now = int(time.time()) if args.now is None else args.now
        try:
            envelope = sign(sys.stdin.buffer.read(), secret, args.outbox_id, now)
        except ValueError as e:
            parser.error(str(e))
        print(envelope.decode("ascii"), flush=True)
        return 0

    seen: dict[str, int] = {}
    for line in sys.stdin.buffer:
        now = int(time.time()) if args.now is None else args.now
        verdict, payload = verify(line.removesuffix(b"\n"), secret, now, seen)
        if payload is None:
            print(verdict, flush=True)
        else:
            print(f"{verdict}\t{base64.b64encode(payload).decode('ascii')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
