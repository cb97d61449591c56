"""Slack's signed requests (https://api.slack.com/authentication/verifying-requests-from-slack).

Slack sends `X-Slack-Request-Timestamp` and `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256 of
`v0:{timestamp}:{raw body}` keyed with the app's signing secret. A request is taken only when the
signature matches and the timestamp is within `tolerance` seconds of now, either way (a replayed
request is refused once it is that old). An empty signing secret refuses everything: a secret
anyone knows signs nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

TOLERANCE_SECONDS = 300
TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: int() would also take "1_0", " 10"


class SignatureError(Exception):
    """The request is not Slack's; `reason` says why, in plain words (never the secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign(signing_secret: str, timestamp: str | int, body: bytes) -> str:
    """The `X-Slack-Signature` value Slack would send: `v0=<hex>`."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return f"v0={digest}"


def verify(
    signing_secret: str,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE_SECONDS,
) -> None:
    """Return if Slack signed `body` at `timestamp`, else raise SignatureError."""
    if not signing_secret:
        raise SignatureError("no Slack signing secret configured")
    if timestamp is None or signature is None:
        raise SignatureError("missing X-Slack-Request-Timestamp or X-Slack-Signature header")
    if not TIMESTAMP.fullmatch(timestamp):
        raise SignatureError("X-Slack-Request-Timestamp is not an integer")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        raise SignatureError(f"request timestamp is more than {tolerance:g}s from now")
    expected = sign(signing_secret, timestamp, body).encode()
    # bytes, not str: compare_digest raises TypeError on a str that is not ASCII
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        raise SignatureError("signature does not match")
