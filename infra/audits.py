"""Moderation audits: one row per submission of a moderated input of a job (its prompt, each image).

An input's first submission is attempt 0; the pull fallback's re-submission is a new attempt, so
a verdict that arrives late for an earlier attempt still counts. A verdict is recorded once:
`decide()` is a compare-and-set on the row's status, so a push delivered five times, or a push
racing a pulled answer, decides the row once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, RowMapping, select, update
from sqlalchemy.dialects import postgresql, sqlite

from infra.accounts import new_id
from infra.db import moderation_audits as audits


@dataclass(frozen=True)
class Audit:
    id: str
    job_id: str
    item_no: int
    attempt: int
    item_kind: str
    platform: str
    platform_task_id: str | None
    status: str  # pending | submitted | decided
    decision: str | None
    confidence: float | None
    labels: tuple[str, ...]
    updated_at: datetime


@dataclass(frozen=True)
class VerdictRecord:
    decision: str
    confidence: float
    labels: tuple[str, ...]
    raw: Mapping[str, Any]


class AuditStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def open(self, job_id: str, item_no: int, item_kind: str, platform: str, *, now: datetime) -> Audit:
        """The input's latest attempt, creating attempt 0 on first call (a redelivery reuses it)."""
        return self._insert(job_id, item_no, 0, item_kind, platform, now=now, latest=True)

    def again(self, previous: Audit, *, now: datetime) -> Audit:
        """A new attempt for the same input (the earlier one's verdict is still welcome)."""
        return self._insert(
            previous.job_id, previous.item_no, previous.attempt + 1, previous.item_kind, previous.platform, now=now
        )

    def _insert(
        self, job_id: str, item_no: int, attempt: int, kind: str, platform: str, *, now: datetime, latest: bool = False
    ) -> Audit:
        row = {
            "id": new_id(),
            "job_id": job_id,
            "item_no": item_no,
            "attempt": attempt,
            "item_kind": kind,
            "platform": platform,
            "status": "pending",
            "created_at": now,
            "updated_at": now,
        }
        mine = (audits.c.job_id == job_id, audits.c.item_no == item_no)
        with self._engine.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            if not latest or conn.execute(select(audits.c.id).where(*mine).limit(1)).first() is None:
                conn.execute(dialect.insert(audits).values(**row).on_conflict_do_nothing())
            found = conn.execute(select(audits).where(*mine).order_by(audits.c.attempt.desc()).limit(1))
            return _audit(found.mappings().one())

    def submitted(self, audit_id: str, platform_task_id: str, *, now: datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(audits)
                .where(audits.c.id == audit_id, audits.c.status != "decided")
                .values(status="submitted", platform_task_id=platform_task_id, updated_at=now)
            )

    def decide(self, platform: str, platform_task_id: str, verdict: VerdictRecord, *, now: datetime) -> str | None:
        """Record the verdict for that platform task, once. The job id, or None if nothing changed."""
        with self._engine.begin() as conn:
            job_id = conn.execute(
                update(audits)
                .where(
                    audits.c.platform == platform,
                    audits.c.platform_task_id == platform_task_id,
                    audits.c.status != "decided",
                )
                .values(
                    status="decided",
                    decision=verdict.decision,
                    confidence=verdict.confidence,
                    labels=list(verdict.labels),
                    raw=dict(verdict.raw),
                    decided_at=now,
                    updated_at=now,
                )
                .returning(audits.c.job_id)
            ).scalar_one_or_none()
        return job_id

    def for_job(self, job_id: str) -> list[Audit]:
        query = select(audits).where(audits.c.job_id == job_id).order_by(audits.c.item_no, audits.c.attempt)
        with self._engine.connect() as conn:
            return [_audit(row) for row in conn.execute(query).mappings()]


def _audit(row: RowMapping) -> Audit:
    return Audit(
        id=row["id"],
        job_id=row["job_id"],
        item_no=row["item_no"],
        attempt=row["attempt"],
        item_kind=row["item_kind"],
        platform=row["platform"],
        platform_task_id=row["platform_task_id"],
        status=row["status"],
        decision=row["decision"],
        confidence=row["confidence"],
        labels=tuple(row["labels"] or ()),
        updated_at=row["updated_at"],
    )
