"""When a failed request is tried again, and after how long.

A 429 and a connection that never reached the server are always safe to repeat. A 5xx, or a
connection lost after sending, is repeated only for a request the API answers the same way twice
(GETs, and submissions, which carry an Idempotency-Key): a cancel or a retry is not sent twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # the server saw nothing


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    base_delay_s: float = 0.5  # then 1, 2, 4 ... without a Retry-After
    max_delay_s: float = 8.0
    max_retry_after_s: float = 60.0  # a longer Retry-After is the caller's decision: raised, not slept

    def backoff(self, attempt: int) -> float:
        return min(self.base_delay_s * 2.0**attempt, self.max_delay_s)

    def after_status(self, response: httpx.Response, attempt: int, *, replayable: bool, now: datetime) -> float | None:
        """Seconds to wait before trying again, or None: give up (the caller raises)."""
        status = response.status_code
        if attempt >= self.max_retries or not (status == 429 or (status >= 500 and replayable)):
            return None
        hint = retry_after(response.headers.get("retry-after"), now=now)
        if hint is None:
            return self.backoff(attempt)
        return hint if hint <= self.max_retry_after_s else None

    def after_error(self, exc: httpx.TransportError, attempt: int, *, replayable: bool) -> float | None:
        if attempt >= self.max_retries or not (isinstance(exc, NOT_SENT) or replayable):
            return None
        return self.backoff(attempt)


def retry_after(value: str | None, *, now: datetime) -> float | None:
    """A `Retry-After` header in seconds: delay-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is None:
        seconds = _until(value, now)
    return max(0.0, seconds) if seconds is not None and math.isfinite(seconds) else None


def _seconds(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _until(http_date: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() - now.timestamp()
