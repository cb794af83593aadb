"""The webhooks pool: POST each job event to its subscriber, signed, until it is taken or given up.

A try claims its delivery (fence, one more attempt, a lease), fixes the body at the first try, signs
it with the user's secret (both secrets during a rotation), and POSTs through a client that checks
the target is still a public address (its DNS may have changed since the submit), connects to the
address it checked, and follows no redirects (workers.boot.webhook_client). A 2xx
ends it `delivered`; anything else is tried again after the next step of WEBHOOK_RETRY_WAITS_S,
until WEBHOOK_RETRY_FOR_S after the event, then it ends `failed`. Every try is recorded.
"""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import msgspec
import structlog

from api.views import JobOut
from domain import webhooks
from domain.errors import InvalidInput
from infra import metrics
from infra.webhooks import DELIVERED, FAILED, PENDING, Attempt, Delivery
from workers import messages
from workers.broker import actor
from workers.runtime import Runtime

log = structlog.get_logger()
LEASE_MARGIN_S = 30.0  # beyond the request timeout, before maintenance may try again


class Payload(msgspec.Struct):
    type: str  # job.<status>
    timestamp: str  # when the event happened (ISO 8601)
    data: JobOut  # the job as GET /v1/jobs/{id} answers it at the first try


@actor(queue_name="webhooks", max_retries=0)
def deliver(rt: Runtime, delivery_id: str, fence: int) -> None:
    lease_s = rt.settings.webhook_timeout_s + LEASE_MARGIN_S
    delivery = rt.webhooks.claim(delivery_id, fence, now=rt.now(), lease_s=lease_s)
    if delivery is None:
        return  # a duplicate, or a message maintenance replaced
    structlog.contextvars.bind_contextvars(job_id=delivery.job_id, delivery_id=delivery.id)
    body = rt.webhooks.freeze(delivery, _payload(rt, delivery)).encode()
    attempt = _post(rt, delivery, body)
    _settle(rt, delivery, attempt)


def _payload(rt: Runtime, delivery: Delivery) -> str:
    job = rt.jobs.get(delivery.job_id)
    assert job is not None  # deliveries are written with their job's moves
    moves = rt.jobs.moves([job.id])[job.id]
    event_at = next((at for status, at in reversed(moves) if webhooks.event_type(status) == delivery.event_type), None)
    payload = Payload(
        type=delivery.event_type,
        timestamp=(event_at or delivery.created_at).isoformat(),
        data=JobOut.of(job, rt, moves=moves, retried_by=rt.jobs.retried_by(job.id) or None),
    )
    return msgspec.json.encode(payload).decode()


def _post(rt: Runtime, delivery: Delivery, body: bytes) -> Attempt:
    now = rt.now()
    signing = rt.webhooks.secret(delivery.user_id, now=now).signing(now=now)
    headers = webhooks.headers(delivery.id, int(now.timestamp()), body, signing)
    started = time.monotonic()
    code: int | None = None
    error: str | None = None
    try:
        response = rt.webhook_http.post(  # checks the target is public and connects to what it checked
            delivery.url, content=body, headers={**headers, "content-type": "application/json"}
        )
        code = response.status_code
        if not response.is_success:
            error = f"HTTP {code}"
    except InvalidInput as exc:  # refused by the client's guard (not a public address, unusable URL)
        error = exc.message
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    return Attempt(now, code, error, int((time.monotonic() - started) * 1000))


def _settle(rt: Runtime, delivery: Delivery, attempt: Attempt) -> None:
    if attempt.error is None:
        rt.webhooks.record(delivery, attempt, status=DELIVERED)
        metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
        return
    wait_s = webhooks.retry_delay(delivery.attempts, rt.settings.webhook_retry_waits)
    next_at = rt.now() + timedelta(seconds=wait_s)
    if webhooks.gives_up(delivery.created_at, rt.settings.webhook_retry_for_s, next_at=next_at):
        rt.webhooks.record(delivery, attempt, status=FAILED)
        metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
        log.warning("webhook_given_up", attempts=delivery.attempts, error=attempt.error)
        return
    if rt.webhooks.record(delivery, attempt, status=PENDING, next_attempt_at=next_at):
        metrics.WEBHOOK_DELIVERIES.labels("retry").inc()
        messages.webhook(delivery.id, delivery.fence, delay_ms=int(wait_s * 1000))
