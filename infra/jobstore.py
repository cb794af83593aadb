"""Jobs and their events: every state move is a compare-and-set plus a `job_events` row.

The database is the truth. A move that finds the job no longer in the expected state changes
nothing and answers False, so two workers (or a worker and the reconciler) can never both move it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, RowMapping, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from domain import credits
from domain.errors import Conflict
from domain.jobs import REFUNDABLE, Job, JobKind, JobStatus, ResultFile, check_transition
from infra.accounts import append, current_balance
from infra.db import credit_ledger, job_events, jobs
from infra.orders import consume_plan_credits
from infra.paging import newest_first

TERMINAL_STAMP = "finished_at"


@dataclass(frozen=True)
class NewJob:
    id: str
    user_id: str
    kind: JobKind
    status: JobStatus
    input: Mapping[str, Any]
    price: int
    vendor: str
    model: str
    deadline_at: datetime
    idempotency_key: str | None = None
    request_hash: str | None = None
    moderation_platform: str | None = None


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, new: NewJob, *, now: datetime) -> tuple[Job, bool]:
        """Charge and record the job in one transaction. Returns (job, created).

        With an idempotency key already used by this user: the same body gives back the first job
        and charges nothing (created=False); a different body raises Conflict.
        """
        if new.idempotency_key and (earlier := self._by_key(new.user_id, new.idempotency_key)):
            return self._replay(earlier, new), False
        try:
            with self._engine.begin() as conn:
                entry = credits.charge(new.user_id, current_balance(conn, new.user_id), new.id, new.price, at=now)
                conn.execute(insert(jobs).values(**_row(new, now)))
                consume_plan_credits(conn, new.user_id, new.price)  # before the debit: plan credits <= balance
                append(conn, entry)
                conn.execute(insert(job_events).values(job_id=new.id, from_status=None, to_status=new.status, at=now))
        except IntegrityError:
            earlier = self._by_key(new.user_id, new.idempotency_key) if new.idempotency_key else None
            if earlier is None:
                raise
            return self._replay(earlier, new), False  # lost a race with the same key
        job = self.get(new.id)
        assert job is not None
        return job, True

    def get(self, job_id: str) -> Job | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one_or_none()
        return None if row is None else _job(row)

    def get_for_user(self, user_id: str, job_id: str) -> Job | None:
        job = self.get(job_id)
        return job if job is not None and job.user_id == user_id else None

    def by_vendor_task(self, vendor: str, task_id: str) -> Job | None:
        query = select(jobs).where(jobs.c.vendor_task_id == task_id, jobs.c.vendor == vendor)
        with self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _job(row)

    def list_for_user(
        self,
        user_id: str,
        *,
        status: JobStatus | None = None,
        kind: JobKind | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """The user's jobs, newest first; `cursor` is the opaque `next_cursor` of the previous page."""
        return self.search(user_id=user_id, status=status, kind=kind, limit=limit, cursor=cursor)

    def search(
        self,
        *,
        user_id: str | None = None,
        status: JobStatus | None = None,
        kind: JobKind | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """Jobs (of one user, or everyone's for admins), newest first, filtered."""
        query = select(jobs)
        if user_id is not None:
            query = query.where(jobs.c.user_id == user_id)
        if status is not None:
            query = query.where(jobs.c.status == status)
        if kind is not None:
            query = query.where(jobs.c.kind == kind)
        with self._engine.connect() as conn:
            rows, next_cursor = newest_first(conn, query, jobs, limit=limit, cursor=cursor)
        return [_job(row) for row in rows], next_cursor

    def move(
        self,
        job_id: str,
        expected: JobStatus,
        target: JobStatus,
        *,
        now: datetime,
        detail: Mapping[str, Any] | None = None,
        **changes: Any,
    ) -> bool:
        """Compare-and-set `expected` -> `target`, with `changes` to other columns, plus an event."""
        check_transition(job_id, expected, target)
        values = {"status": target, "updated_at": now, **changes}
        if target is JobStatus.PROCESSING:
            values.setdefault("processing_at", now)
        if target not in (JobStatus.QUEUED, JobStatus.SUBMITTING, JobStatus.PROCESSING, JobStatus.ARCHIVING):
            values[TERMINAL_STAMP] = now
        with self._engine.begin() as conn:
            cas = update(jobs).where(jobs.c.id == job_id, jobs.c.status == expected).values(**values)
            if conn.execute(cas).rowcount != 1:
                return False
            conn.execute(
                insert(job_events).values(
                    job_id=job_id, from_status=expected, to_status=target, at=now, detail=dict(detail or {})
                )
            )
        return True

    def set_input(self, job_id: str, job_input: Mapping[str, Any]) -> None:
        """Replace a job's input (generation adds a signed URL for a direct upload before submitting)."""
        with self._engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(input=dict(job_input)))

    def touch(self, job_id: str, status: JobStatus, *, now: datetime, polled: bool = False) -> bool:
        """A heartbeat: the job is alive in `status` (waiting for a slot, or polled and still running)."""
        values: dict[str, Any] = {"updated_at": now}
        if polled:
            values["polls"] = jobs.c.polls + 1
        with self._engine.begin() as conn:
            result = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == status).values(**values))
        return result.rowcount == 1

    def refund(self, job_id: str, *, now: datetime) -> bool:
        """Give back the job's charge, once. False when not refundable or already refunded."""
        with self._engine.begin() as conn:
            job = conn.execute(select(jobs.c.user_id, jobs.c.status).where(jobs.c.id == job_id)).one_or_none()
            if job is None or JobStatus(job.status) not in REFUNDABLE:
                return False
            charged = conn.execute(
                select(credit_ledger.c.amount).where(
                    credit_ledger.c.job_id == job_id, credit_ledger.c.kind == credits.LedgerKind.CHARGE
                )
            ).scalar_one_or_none()
            if charged is None:
                return False
            return append(conn, credits.refund(job.user_id, job_id, int(charged), at=now))

    def stale(self, bounds: Mapping[JobStatus, float], *, now: datetime, limit: int = 500) -> list[Job]:
        """Jobs in each status whose last progress is older than that status's bound (seconds)."""
        found: list[Job] = []
        with self._engine.connect() as conn:
            for status, bound in bounds.items():
                query = (
                    select(jobs)
                    .where(jobs.c.status == status, jobs.c.updated_at < now - timedelta(seconds=bound))
                    .order_by(jobs.c.updated_at)
                    .limit(limit)
                )
                found.extend(_job(row) for row in conn.execute(query).mappings())
        return found

    def unrefunded(self, *, older_than: datetime, limit: int = 500) -> list[str]:
        """Refundable terminal jobs with a charge and no refund yet (a lost refund message)."""
        refunded = exists().where(
            credit_ledger.c.job_id == jobs.c.id, credit_ledger.c.kind == credits.LedgerKind.REFUND
        )
        query = (
            select(jobs.c.id)
            .where(jobs.c.status.in_([s.value for s in REFUNDABLE]), jobs.c.updated_at < older_than, ~refunded)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def events(self, job_id: str) -> list[tuple[str | None, str]]:
        query = select(job_events.c.from_status, job_events.c.to_status).where(job_events.c.job_id == job_id)
        with self._engine.connect() as conn:
            return [(r.from_status, r.to_status) for r in conn.execute(query.order_by(job_events.c.id))]

    def _by_key(self, user_id: str, key: str) -> Job | None:
        query = select(jobs).where(jobs.c.user_id == user_id, jobs.c.idempotency_key == key)
        with self._engine.connect() as conn:
            row = conn.execute(query).mappings().one_or_none()
        return None if row is None else _job(row)

    def _replay(self, earlier: Job, new: NewJob) -> Job:
        with self._engine.connect() as conn:
            stored = conn.execute(select(jobs.c.request_hash).where(jobs.c.id == earlier.id)).scalar_one()
        if stored != new.request_hash:
            raise Conflict(
                "this Idempotency-Key was already used with a different request body",
                idempotency_key=new.idempotency_key,
                job_id=earlier.id,
            )
        return earlier


def results_value(files: Iterable[ResultFile]) -> list[dict[str, Any]]:
    return [{"key": f.key, "content_type": f.content_type, "size": f.size} for f in files]


def _row(new: NewJob, now: datetime) -> dict[str, Any]:
    return {
        "id": new.id,
        "user_id": new.user_id,
        "kind": new.kind,
        "status": new.status,
        "input": dict(new.input),
        "price": new.price,
        "vendor": new.vendor,
        "model": new.model,
        "idempotency_key": new.idempotency_key,
        "request_hash": new.request_hash,
        "moderation_platform": new.moderation_platform,
        "deadline_at": new.deadline_at,
        "created_at": now,
        "updated_at": now,
        "polls": 0,
    }


def _job(row: RowMapping) -> Job:
    return Job(
        id=row["id"],
        user_id=row["user_id"],
        kind=JobKind(row["kind"]),
        status=JobStatus(row["status"]),
        input=row["input"],
        price=row["price"],
        vendor=row["vendor"],
        model=row["model"],
        deadline_at=row["deadline_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        vendor_task_id=row["vendor_task_id"],
        results=tuple(ResultFile(**r) for r in row["results"] or ()),
        error_code=row["error_code"],
        error_message=row["error_message"],
        polls=row["polls"],
        processing_at=row["processing_at"],
        finished_at=row["finished_at"],
        moderation_platform=row["moderation_platform"],
    )
