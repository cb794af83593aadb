"""Webhook rules: the Standard Webhooks signature, rotation, event filters and the retry schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain import webhooks
from domain.jobs import JobStatus

# The specification's own example (standard-webhooks, libraries' test suites).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID, SPEC_TS, SPEC_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def test_the_signature_is_the_specifications() -> None:
    assert webhooks.signature(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    sent = webhooks.headers(SPEC_ID, SPEC_TS, SPEC_BODY, [SPEC_SECRET])
    assert sent == {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS), "webhook-signature": SPEC_SIGNATURE}


def test_verification_needs_a_matching_signature_and_a_fresh_timestamp() -> None:
    at = datetime.fromtimestamp(SPEC_TS, UTC)
    sent = webhooks.headers(SPEC_ID, SPEC_TS, SPEC_BODY, [webhooks.secret_text(b"x" * 32), SPEC_SECRET])

    assert webhooks.verify(SPEC_SECRET, sent, SPEC_BODY, now=at + timedelta(seconds=299))
    assert not webhooks.verify(SPEC_SECRET, sent, SPEC_BODY, now=at + timedelta(seconds=301))
    assert not webhooks.verify(SPEC_SECRET, sent, SPEC_BODY + b" ", now=at)
    assert not webhooks.verify(webhooks.secret_text(b"y" * 32), sent, SPEC_BODY, now=at)


def test_the_previous_secret_signs_only_during_the_overlap() -> None:
    rotated = NOW - webhooks.ROTATION_OVERLAP + timedelta(seconds=1)
    assert webhooks.signing_secrets("new", "old", rotated, now=NOW) == ["new", "old"]
    assert webhooks.signing_secrets("new", "old", rotated, now=NOW + timedelta(seconds=1)) == ["new"]
    assert webhooks.signing_secrets("only", None, None, now=NOW) == ["only"]


@pytest.mark.parametrize("status", list(JobStatus))
def test_completed_subscriptions_get_terminal_events_and_all_get_every_one(status: JobStatus) -> None:
    assert webhooks.wanted("all", status)
    assert webhooks.wanted("completed", status) == (
        status in {"succeeded", "failed", "timed_out", "cancelled", "audit_failed"}
    )


def test_retries_follow_the_schedule_then_repeat_its_last_step_until_the_window_closes() -> None:
    waits = (5.0, 30.0, 120.0)
    assert [webhooks.retry_delay(n, waits) for n in (1, 2, 3, 4, 9)] == [5.0, 30.0, 120.0, 120.0, 120.0]
    window = 24 * 3600
    assert not webhooks.gives_up(NOW, window, next_at=NOW + timedelta(seconds=window))
    assert webhooks.gives_up(NOW, window, next_at=NOW + timedelta(seconds=window + 1))
