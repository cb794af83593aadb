"""Webhooks from the subscriber's side: its signing secret (read, rotated) and a job's deliveries.

Deliveries are made by the `webhooks` worker pool (workers/webhooks.py); nothing here sends one.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from api import docs
from api.auth import CurrentUser
from domain.errors import NotFound
from domain.webhooks import ROTATION_OVERLAP
from infra.paging import is_id
from infra.resources import Resources
from infra.webhooks import SigningSecret

User = NamedDependency[CurrentUser]
Res = NamedDependency[Resources]


class SecretOut(msgspec.Struct):
    """`secret` signs every delivery (`whsec_` + base64 of the key); after a rotation `previous`
    signs beside it until `previous_until`, so receivers can switch without missing a message."""

    secret: str
    previous: str | None = None
    previous_until: datetime | None = None

    @classmethod
    def of(cls, found: SigningSecret) -> SecretOut:
        until = found.rotated_at + ROTATION_OVERLAP if found.rotated_at and found.previous else None
        return cls(found.current, found.previous if until else None, until)


class AttemptOut(msgspec.Struct):
    at: datetime
    status_code: int | None  # None: no answer (timeout, connection refused, not a public address)
    error: str | None
    duration_ms: int


class DeliveryOut(msgspec.Struct):
    """One event's delivery: `id` is the `webhook-id` header (the same on every try); `status`
    pending (tries left), delivered (a 2xx came back) or failed (given up after WEBHOOK_RETRY_FOR_S)."""

    id: str
    event: str
    url: str
    status: str
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    attempts: list[AttemptOut]


class WebhooksController(Controller):
    tags = ["webhooks"]

    @get("/v1/webhooks/secret", sync_to_thread=True, responses=docs.errors(401))
    def read_secret(self, user: User, resources: Res) -> SecretOut:
        """Your signing secret (made on first use). Verify each delivery per Standard Webhooks."""
        return SecretOut.of(resources.webhooks.secret(user.id, now=datetime.now(UTC)))

    @post("/v1/webhooks/secret/rotate", status_code=200, sync_to_thread=True, responses=docs.errors(401))
    def rotate_secret(self, user: User, resources: Res) -> SecretOut:
        """A new signing secret; the old one keeps signing beside it for 24 hours."""
        return SecretOut.of(resources.webhooks.rotate(user.id, now=datetime.now(UTC)))

    @get("/v1/jobs/{job_id:str}/deliveries", sync_to_thread=True, responses=docs.errors(401, 404))
    def job_deliveries(self, job_id: FromPath[str], user: User, resources: Res) -> list[DeliveryOut]:
        """Every webhook delivery of the job, in event order, with each try."""
        job = resources.jobs.get_for_user(user.id, job_id) if is_id(job_id) else None
        if job is None:
            raise NotFound(f"no job {job_id}", job_id=job_id)
        return [
            DeliveryOut(
                id=d.id,
                event=d.event_type,
                url=d.url,
                status=d.status,
                created_at=d.created_at,
                next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
                delivered_at=d.delivered_at,
                attempts=[AttemptOut(a.at, a.status_code, a.error, a.duration_ms) for a in tries],
            )
            for d, tries in resources.webhooks.for_job(job.id)
        ]
