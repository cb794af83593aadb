"""Checking a webhook from genq, per the Standard Webhooks specification.

genq signs `f"{webhook-id}.{webhook-timestamp}.{body}"` with HMAC-SHA256 under the key whose
`whsec_`-prefixed base64 is the secret, and sends `webhook-signature: v1,<base64>`; during a secret
rotation it sends one signature per secret, space-separated, and any one matching is enough.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from genq_client.errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


def verify_webhook(
    headers: Mapping[str, str], body: bytes | str, secret: str, *, tolerance_s: float = 300, now: float | None = None
) -> Any:
    """The webhook's parsed JSON body when it is genq's and fresh; WebhookVerificationError otherwise.

    Pass the body exactly as received (bytes, before any JSON parsing): a re-encoded body fails.
    `now` (Unix seconds) is for tests; a timestamp more than `tolerance_s` from it either way fails,
    so a captured delivery cannot be replayed later.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id, stamp, signatures = (lowered.get(h, "") for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    timestamp = _fresh(stamp, tolerance_s, time.time() if now is None else now)
    raw = body.encode() if isinstance(body, str) else body
    expected = _sign(_key(secret), f"{msg_id}.{timestamp}.".encode() + raw)
    if not any(hmac.compare_digest(expected, sent) for sent in _v1_signatures(signatures)):
        raise WebhookVerificationError("no matching signature")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise WebhookVerificationError("the signed body is not JSON") from exc


def _fresh(stamp: str, tolerance_s: float, now: float) -> int:
    if not stamp.isascii() or not stamp.isdigit():
        raise WebhookVerificationError(f"unreadable webhook-timestamp {stamp[:20]!r}")
    timestamp = int(stamp)
    if timestamp < now - tolerance_s:
        raise WebhookVerificationError("webhook timestamp too old")
    if timestamp > now + tolerance_s:
        raise WebhookVerificationError("webhook timestamp too new")
    return timestamp


def _key(secret: str) -> bytes:
    text = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)  # padding may be left off
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def _sign(key: bytes, content: bytes) -> bytes:
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())


def _v1_signatures(header: str) -> list[bytes]:
    """The `v1,<sig>` entries of the header; other versions and malformed entries are skipped."""
    return [entry[3:].encode() for entry in header.split() if entry.startswith("v1,") and entry.isascii()]
