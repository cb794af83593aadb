"""Reports for operators: monthly usage per user and kind (SPEC §8 Admin, §10).

A month is computed from the jobs, batches and ledger while it runs. Once it has closed (an hour
after its end, so the writes of its last moments have landed), maintenance stores it once
(`store_closed`): from then on its report is read from the stored rows, and stays the same when
retention deletes the month's jobs.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    and_,
    case,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError

from domain.credits import LedgerKind
from domain.errors import InvalidInput
from domain.jobs import REFUNDABLE, JobStatus
from infra.db import batches, credit_ledger, jobs, monthly_usage, usage_months, users

GRACE = timedelta(hours=1)  # a month is closed, and may be stored, this long after it ends


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


COUNTS = tuple(f.name for f in fields(Usage) if f.name not in ("user_id", "phone", "kind"))


def usage(engine: Engine, month: Month) -> list[Usage]:
    """Per (user, kind), each count by when it happened (see `report`)."""
    return report(engine, month)[0]


def report(engine: Engine, month: Month) -> tuple[list[Usage], datetime | None]:
    """The month's usage, and when maintenance stored it: a stored month is read from its stored
    rows, any other (the current one) computed now (None)."""
    stored = _stored(engine, month)
    return (live(engine, month), None) if stored is None else stored


def closed_before(now: datetime) -> datetime:
    """The start of the first month that has not closed at `now`."""
    return Month.of(now - GRACE).start


def store_closed(engine: Engine, *, now: datetime) -> list[str]:
    """Store every closed month not stored yet, from the first job's month on; the months stored.

    Safe to run anywhere at any time: a month is stored once (its marker row is the first write of
    the transaction, and a second writer fails on it and stores nothing).
    """
    with engine.connect() as conn:
        first = conn.execute(select(func.min(jobs.c.created_at))).scalar()
        done = set(conn.execute(select(usage_months.c.month)).scalars())
    if first is None:
        return []
    stored, month, bound = [], Month.of(first), closed_before(now)
    while month.start < bound:
        if month.name not in done and store(engine, month, now=now):
            stored.append(month.name)
        month = Month.of(month.end)
    return stored


def store(engine: Engine, month: Month, *, now: datetime) -> bool:
    """Store `month` as it is computed now; False when it was stored already (nothing changes)."""
    rows = live(engine, month)
    try:
        with engine.begin() as conn:
            conn.execute(insert(usage_months).values(month=month.name, stored_at=now, rows=len(rows)))
            if rows:
                values = [{"month": month.name, **_stored_row(row)} for row in rows]
                conn.execute(insert(monthly_usage), values)
    except IntegrityError:
        return False
    return True


def _stored_row(row: Usage) -> dict[str, Any]:
    values = asdict(row)
    values.pop("phone")
    return values


def _stored(engine: Engine, month: Month) -> tuple[list[Usage], datetime] | None:
    marked = select(usage_months.c.stored_at).where(usage_months.c.month == month.name)
    query = (
        select(monthly_usage, users.c.phone)
        .join(users, users.c.id == monthly_usage.c.user_id)
        .where(monthly_usage.c.month == month.name)
        .order_by(monthly_usage.c.user_id, monthly_usage.c.kind)
    )
    with engine.connect() as conn:
        stored_at = conn.execute(marked).scalar()
        if stored_at is None:
            return None
        found = conn.execute(query).mappings().all()
    rows = [Usage(row["user_id"], row["phone"], row["kind"], **{n: int(row[n]) for n in COUNTS}) for row in found]
    return rows, stored_at


def live(engine: Engine, month: Month) -> list[Usage]:
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
