"""Webhook deliveries and signing secrets in the database, the truth about every webhook.

A delivery row is written in the transaction of the state move it announces (`add`, called by the
job store), so a lost message loses no event: maintenance re-drives every delivery overdue. Each
try takes its turn with a compare-and-set on the row's fence, as job messages do, so a duplicate
or re-driven message never sends twice at once; every try is recorded.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, insert, select, update
from sqlalchemy.exc import IntegrityError

from domain import webhooks
from domain.jobs import JobStatus
from infra.db import reads, webhook_attempts, webhook_deliveries, webhook_secrets

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class Delivery:
    id: str
    user_id: str
    job_id: str
    event_id: int
    event_type: str
    url: str
    status: str
    payload: str | None
    attempts: int
    fence: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True)
class Attempt:
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class SigningSecret:
    current: str
    previous: str | None
    rotated_at: datetime | None

    def signing(self, *, now: datetime) -> list[str]:
        return webhooks.signing_secrets(self.current, self.previous, self.rotated_at, now=now)


def add(
    conn: Connection,
    *,
    job_id: str,
    user_id: str,
    url: str | None,
    events: str | None,
    event_id: int,
    status: JobStatus,
    now: datetime,
) -> str | None:
    """Write the delivery of a job event if the job subscribed to it (inside the move's transaction)."""
    if not url or not webhooks.wanted(events or webhooks.EventFilter.COMPLETED, status):
        return None
    delivery_id = "msg_" + secrets.token_hex(12)
    conn.execute(
        insert(webhook_deliveries).values(
            id=delivery_id,
            user_id=user_id,
            job_id=job_id,
            event_id=event_id,
            event_type=webhooks.event_type(status),
            url=url,
            status=PENDING,
            next_attempt_at=now,
            created_at=now,
        )
    )
    return delivery_id


class WebhookStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reads = reads(engine)

    def secret(self, user_id: str, *, now: datetime) -> SigningSecret:
        """The user's signing secret, made on first use."""
        with self._reads.connect() as conn:
            row = conn.execute(select(webhook_secrets).where(webhook_secrets.c.user_id == user_id)).one_or_none()
        if row is not None:
            return SigningSecret(row.secret, row.previous, row.rotated_at)
        fresh = webhooks.secret_text(secrets.token_bytes(webhooks.KEY_BYTES))
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(webhook_secrets).values(user_id=user_id, secret=fresh, created_at=now))
        except IntegrityError:  # made at the same moment by another request: theirs stands
            return self.secret(user_id, now=now)
        return SigningSecret(fresh, None, None)

    def rotate(self, user_id: str, *, now: datetime) -> SigningSecret:
        """A new secret; the one it replaces keeps signing beside it for ROTATION_OVERLAP."""
        current = self.secret(user_id, now=now).current
        fresh = webhooks.secret_text(secrets.token_bytes(webhooks.KEY_BYTES))
        with self._engine.begin() as conn:
            conn.execute(
                update(webhook_secrets)
                .where(webhook_secrets.c.user_id == user_id)
                .values(secret=fresh, previous=current, rotated_at=now)
            )
        return SigningSecret(fresh, current, now)

    def get(self, delivery_id: str) -> Delivery | None:
        with self._reads.connect() as conn:
            row = conn.execute(select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)).mappings()
            found = row.one_or_none()
        return None if found is None else _delivery(found)

    def claim(self, delivery_id: str, fence: int, *, now: datetime, lease_s: float) -> Delivery | None:
        """Take a try's turn: a pending delivery still at `fence` gets a new fence, one more attempt
        and a lease (maintenance leaves it alone until then). None: a stale or duplicate message."""
        cas = (
            update(webhook_deliveries)
            .where(
                webhook_deliveries.c.id == delivery_id,
                webhook_deliveries.c.fence == fence,
                webhook_deliveries.c.status == PENDING,
            )
            .values(
                fence=webhook_deliveries.c.fence + 1,
                attempts=webhook_deliveries.c.attempts + 1,
                next_attempt_at=now + timedelta(seconds=lease_s),
            )
            .returning(*webhook_deliveries.c)
        )
        with self._engine.begin() as conn:
            row = conn.execute(cas).mappings().one_or_none()
        return None if row is None else _delivery(row)

    def freeze(self, delivery: Delivery, payload: str) -> str:
        """The body every try sends: the first try's (a try that dies after this keeps it)."""
        with self._engine.begin() as conn:
            conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == delivery.id, webhook_deliveries.c.payload.is_(None))
                .values(payload=payload)
            )
            kept = conn.execute(
                select(webhook_deliveries.c.payload).where(webhook_deliveries.c.id == delivery.id)
            ).scalar_one()
        return str(kept)

    def record(
        self, delivery: Delivery, attempt: Attempt, *, status: str, next_attempt_at: datetime | None = None
    ) -> bool:
        """A try's outcome and the delivery's new state, together; False if the try lost its turn."""
        values: dict[str, Any] = {"status": status}
        if status == DELIVERED:
            values["delivered_at"] = attempt.at
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        with self._engine.begin() as conn:
            conn.execute(
                insert(webhook_attempts).values(
                    delivery_id=delivery.id,
                    at=attempt.at,
                    status_code=attempt.status_code,
                    error=attempt.error,
                    duration_ms=attempt.duration_ms,
                )
            )
            moved = conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == delivery.id, webhook_deliveries.c.fence == delivery.fence)
                .values(**values)
            )
        return moved.rowcount == 1

    def overdue(self, *, now: datetime, limit: int = 500) -> list[Delivery]:
        """Pending deliveries whose next try is past: their message was lost, or is running late."""
        query = (
            select(webhook_deliveries)
            .where(webhook_deliveries.c.status == PENDING, webhook_deliveries.c.next_attempt_at <= now)
            .order_by(webhook_deliveries.c.next_attempt_at)
            .limit(limit)
        )
        with self._reads.connect() as conn:
            return [_delivery(row) for row in conn.execute(query).mappings()]

    def redrive(self, delivery: Delivery) -> int | None:
        """Make the delivery's earlier messages stale; the new fence goes with a new message."""
        with self._engine.begin() as conn:
            fence = conn.execute(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.id == delivery.id,
                    webhook_deliveries.c.fence == delivery.fence,
                    webhook_deliveries.c.status == PENDING,
                )
                .values(fence=webhook_deliveries.c.fence + 1)
                .returning(webhook_deliveries.c.fence)
            ).scalar_one_or_none()
        return None if fence is None else int(fence)

    def for_job(self, job_id: str) -> list[tuple[Delivery, list[Attempt]]]:
        """The job's deliveries, in event order, each with its tries in order."""
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(webhook_deliveries)
                .where(webhook_deliveries.c.job_id == job_id)
                .order_by(webhook_deliveries.c.event_id, webhook_deliveries.c.created_at)
            ).mappings()
            found = [_delivery(row) for row in rows]
            tries: dict[str, list[Attempt]] = {d.id: [] for d in found}
            if found:
                for row in conn.execute(
                    select(webhook_attempts)
                    .where(webhook_attempts.c.delivery_id.in_(list(tries)))
                    .order_by(webhook_attempts.c.id)
                ):
                    tries[row.delivery_id].append(Attempt(row.at, row.status_code, row.error, row.duration_ms))
        return [(d, tries[d.id]) for d in found]


def _delivery(row: RowMapping) -> Delivery:
    return Delivery(
        id=row["id"],
        user_id=row["user_id"],
        job_id=row["job_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        url=row["url"],
        status=row["status"],
        payload=row["payload"],
        attempts=row["attempts"],
        fence=row["fence"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
    )
