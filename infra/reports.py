"""Read-only reports for operators: monthly usage per user and kind (SPEC §8 Admin, §10)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, case, func, or_, select

from domain.credits import LedgerKind
from domain.errors import InvalidInput
from domain.jobs import REFUNDABLE, JobStatus
from infra.db import batches, credit_ledger, jobs, users


@dataclass(frozen=True)
class Month:
    name: str  # YYYY-MM
    start: datetime
    end: datetime  # the next month's start

    @classmethod
    def parse(cls, text: str) -> Month:
        match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
        try:
            if match is None:
                raise ValueError(text)
            return cls.of(datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC))
        except ValueError:
            raise InvalidInput("month", f"month is YYYY-MM (e.g. 2026-03), not {text!r}") from None

    @classmethod
    def of(cls, at: datetime) -> Month:
        start = datetime(at.year, at.month, 1, tzinfo=UTC)
        end = datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)
        return cls(f"{at.year:04d}-{at.month:02d}", start, end)


@dataclass
class Usage:
    user_id: str
    phone: str
    kind: str
    submitted: int = 0  # jobs created in the month
    succeeded: int = 0  # jobs that finished in the month, by how
    failed: int = 0  # any refundable terminal state: failed, timed_out, cancelled, audit_failed
    batches: int = 0  # batches created in the month
    batch_jobs: int = 0  # of the jobs created, those that are rows of a batch (retries included)
    credits_charged: int = 0  # ledger rows written in the month
    credits_refunded: int = 0


def usage(engine: Engine, month: Month) -> list[Usage]:
    """Per (user, kind), each count by when it happened: two GROUP BYs merged."""

    def within(column: Any) -> ColumnElement[bool]:
        return and_(column >= month.start, column < month.end)

    def total(condition: ColumnElement[bool], value: Any = 1) -> Any:
        return func.coalesce(func.sum(case((condition, value), else_=0)), 0)

    refundable = [s.value for s in REFUNDABLE]
    counts = (
        select(
            jobs.c.user_id,
            users.c.phone,
            jobs.c.kind,
            total(within(jobs.c.created_at)).label("submitted"),
            total(and_(within(jobs.c.finished_at), jobs.c.status == JobStatus.SUCCEEDED.value)).label("succeeded"),
            total(and_(within(jobs.c.finished_at), jobs.c.status.in_(refundable))).label("failed"),
            total(and_(within(jobs.c.created_at), jobs.c.batch_id.is_not(None))).label("batch_jobs"),
        )
        .join(users, users.c.id == jobs.c.user_id)
        .where(or_(within(jobs.c.created_at), within(jobs.c.finished_at)))
        .group_by(jobs.c.user_id, users.c.phone, jobs.c.kind)
    )
    ledger = credit_ledger.c
    money = (
        select(
            ledger.user_id,
            users.c.phone,
            jobs.c.kind,
            total(ledger.kind == LedgerKind.CHARGE.value, -ledger.amount).label("charged"),
            total(ledger.kind == LedgerKind.REFUND.value, ledger.amount).label("refunded"),
        )
        .select_from(credit_ledger.join(jobs, jobs.c.id == ledger.job_id).join(users, users.c.id == ledger.user_id))
        .where(within(ledger.created_at), ledger.kind.in_([LedgerKind.CHARGE.value, LedgerKind.REFUND.value]))
        .group_by(ledger.user_id, users.c.phone, jobs.c.kind)
    )
    made = (
        select(batches.c.user_id, users.c.phone, batches.c.kind, func.count().label("batches"))
        .join(users, users.c.id == batches.c.user_id)
        .where(within(batches.c.created_at))
        .group_by(batches.c.user_id, users.c.phone, batches.c.kind)
    )
    merged: dict[tuple[str, str], Usage] = {}
    with engine.connect() as conn:
        for row in conn.execute(counts):
            out = merged.setdefault((row.user_id, row.kind), Usage(row.user_id, row.phone, row.kind))
            out.submitted, out.succeeded, out.failed = int(row.submitted), int(row.succeeded), int(row.failed)
            out.batch_jobs = int(row.batch_jobs)
        for row in conn.execute(made):
            out = merged.setdefault((row.user_id, row.kind), Usage(row.user_id, row.phone, row.kind))
            out.batches = int(row.batches)
        for sums in conn.execute(money):
            out = merged.setdefault((sums.user_id, sums.kind), Usage(sums.user_id, sums.phone, sums.kind))
            out.credits_charged, out.credits_refunded = int(sums.charged), int(sums.refunded)
    return [merged[key] for key in sorted(merged)]
