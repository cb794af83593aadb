"""Webhooks per the Standard Webhooks specification: which events a subscription wants, how a
delivery is signed, and when a failed one is tried again. Pure: the clock and the key are passed in.

A message is signed as base64(HMAC-SHA256(key, f"{msg_id}.{timestamp}.{body}")) and sent as
`webhook-signature: v1,<sig>`; while a secret is being rotated both the new and the previous
secret sign, space-separated, and a receiver accepts the message when any signature matches.
Secrets are shown as `whsec_` + base64 of the key's bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from domain.jobs import TERMINAL, JobStatus

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - a prefix, not a secret
KEY_BYTES: Final = 32
ROTATION_OVERLAP: Final = timedelta(hours=24)  # the previous secret still signs this long after a rotation


class EventFilter(StrEnum):
    COMPLETED = "completed"  # the terminal event only
    ALL = "all"  # every state the job enters


def wanted(events: EventFilter | str, status: JobStatus) -> bool:
    return EventFilter(events) is EventFilter.ALL or status in TERMINAL


def event_type(status: JobStatus) -> str:
    return f"job.{status}"


def secret_text(key: bytes) -> str:
    return SECRET_PREFIX + base64.b64encode(key).decode()


def key_of(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key_of(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(msg_id: str, timestamp: int, body: bytes, secrets: Iterable[str]) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per secret (two during a rotation)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets),
    }


def signing_secrets(current: str, previous: str | None, rotated_at: datetime | None, *, now: datetime) -> list[str]:
    if previous and rotated_at is not None and now - rotated_at < ROTATION_OVERLAP:
        return [current, previous]
    return [current]


def verify(secret: str, headers_in: Mapping[str, str], body: bytes, *, now: datetime, tolerance_s: int = 300) -> bool:
    """The receiver's side (tests and our own client use it): any v1 signature by `secret` matches
    and the timestamp is within `tolerance_s` of now."""
    lowered = {k.lower(): v for k, v in headers_in.items()}
    msg_id, stamp = lowered.get("webhook-id", ""), lowered.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit() or abs(now.timestamp() - int(stamp)) > tolerance_s:
        return False
    expected = signature(secret, msg_id, int(stamp), body)
    return any(hmac.compare_digest(expected, sent) for sent in lowered.get("webhook-signature", "").split())


def retry_delay(attempts: int, waits: Sequence[float]) -> float:
    """Seconds before the next try after `attempts` failed ones: the schedule's step, its last step
    once the schedule is used up."""
    if not waits:
        return 0.0
    return waits[min(attempts, len(waits)) - 1] if attempts > 0 else 0.0


def gives_up(created_at: datetime, retry_for_s: float, *, next_at: datetime) -> bool:
    """A delivery is tried until RETRY_FOR after its event; a next try past that is not made."""
    return next_at - created_at > timedelta(seconds=retry_for_s)
