"""Jobs and their events: every state move is a compare-and-set plus a `job_events` row.

The database is the truth. A move that finds the job no longer in the expected state changes
nothing and answers False, so two workers (or a worker and the reconciler) can never both move it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    RowMapping,
    Update,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from domain import credits
from domain.errors import Conflict, InsufficientCredits
from domain.jobs import ACTIVE, REFUNDABLE, Job, JobKind, JobStatus, ResultFile, check_transition
from infra import webhooks
from infra.accounts import append
from infra.db import batches, credit_ledger, job_events, jobs, reads, users, vendor_attempts
from infra.orders import Funds, locked_funds, spend_plan_credits
from infra.paging import newest_first

TERMINAL_STAMP = "finished_at"
IN_FLIGHT = (JobStatus.SUBMITTING, JobStatus.PROCESSING)  # what counts against a plan's cap


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
    priority: str = "interactive"
    deadline_s: int = 0
    external_id: str | None = None
    retry_of: str | None = None
    webhook_url: str | None = None
    webhook_events: str | None = None  # completed | all
    batch_id: str | None = None
    batch_row: int | None = None


@dataclass(frozen=True)
class NewBatch:
    id: str
    user_id: str
    name: str | None
    kind: JobKind
    defaults: Mapping[str, Any]
    rows: int
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclass(frozen=True)
class JobFilter:
    """What an admin's bulk action picks: every field given must match."""

    statuses: tuple[JobStatus, ...] = ()
    kind: JobKind | None = None
    vendor: str | None = None
    error_code: str | None = None
    user_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None  # exclusive


@dataclass(frozen=True)
class JobEvent:
    id: int
    from_status: str | None
    to_status: str
    at: datetime
    detail: Mapping[str, Any]


Announce = Callable[[Sequence[tuple[str, int]]], object]


class JobStore:
    def __init__(self, engine: Engine, *, announce: Announce | None = None) -> None:
        self._engine = engine
        self._reads = reads(engine)
        self._announce = announce

    def announce_with(self, announce: Announce) -> None:
        """How new webhook deliveries are announced after their move commits: (delivery id, fence)
        pairs, sent to the webhooks pool by the process's messages module. Unannounced (or lost)
        deliveries are found by maintenance."""
        self._announce = announce

    @contextmanager
    def _begin(self) -> Iterator[tuple[Connection, list[str]]]:
        """A transaction whose new webhook deliveries are announced once it has committed."""
        outbox: list[str] = []
        with self._engine.begin() as conn:
            yield conn, outbox
        if outbox and self._announce is not None:
            self._announce([(delivery_id, 0) for delivery_id in outbox])

    def create(self, new: NewJob, *, now: datetime) -> tuple[Job, bool]:
        """Charge and record the job in one transaction (a lapsed membership's plan credits expire in
        it first). Returns (job, created): the job as written, not read back.

        With an idempotency key already used by this user: the same body gives back the first job
        and charges nothing (created=False); a different body raises Conflict.
        """
        if new.idempotency_key and (earlier := self._by_key(new.user_id, new.idempotency_key)):
            return self._replay(earlier, new), False
        try:
            with self._begin() as (conn, outbox):
                _charge_and_insert(conn, outbox, new, now, funds=locked_funds(conn, new.user_id, now=now))
        except IntegrityError:
            earlier = self._by_key(new.user_id, new.idempotency_key) if new.idempotency_key else None
            if earlier is not None:
                return self._replay(earlier, new), False  # lost a race with the same key
            taken = self._by_external_id(new.user_id, new.external_id) if new.external_id else None
            if taken is None:
                raise
            raise Conflict(
                "this external_id already names another of your jobs", external_id=new.external_id, job_id=taken.id
            ) from None
        return _written(new, now), True

    def create_many(self, news: Sequence[NewJob], *, now: datetime, batch: NewBatch | None = None) -> None:
        """Charge and record jobs of one user (and the batch they make) in one transaction: all of
        them or, when the balance is short of their total, none (InsufficientCredits names the total)."""
        if not news:
            return
        user_id, total = news[0].user_id, sum(new.price for new in news)
        with self._begin() as (conn, outbox):
            funds = locked_funds(conn, user_id, now=now)  # the owner's row stays locked: no race below
            if funds.balance < total:
                raise InsufficientCredits(total, funds.balance)
            if batch is not None:
                conn.execute(insert(batches).values(**_batch_row(batch, now)))
            for new in news:
                funds = _charge_and_insert(conn, outbox, new, now, funds=funds)

    def get(self, job_id: str) -> Job | None:
        with self._reads.connect() as conn:
            row = conn.execute(_BY_ID, {"job_id": job_id}).mappings().one_or_none()
        return None if row is None else _job(row)

    def get_for_user(self, user_id: str, job_id: str) -> Job | None:
        job = self.get(job_id)
        return job if job is not None and job.user_id == user_id else None

    def by_vendor_task(self, vendor: str, task_id: str) -> Job | None:
        query = select(jobs).where(jobs.c.vendor_task_id == task_id, jobs.c.vendor == vendor)
        with self._reads.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _job(row)

    def list_for_user(
        self,
        user_id: str,
        *,
        status: JobStatus | None = None,
        kind: JobKind | None = None,
        external_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """The user's jobs, newest first; `cursor` is the opaque `next_cursor` of the previous page."""
        return self.search(
            user_id=user_id, status=status, kind=kind, external_id=external_id, limit=limit, cursor=cursor
        )

    def search(
        self,
        *,
        user_id: str | None = None,
        status: JobStatus | None = None,
        kind: JobKind | None = None,
        external_id: str | None = None,
        batch_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """Jobs (of one user, or everyone's for admins), newest first, filtered."""
        query = select(jobs)
        if batch_id is not None:
            query = query.where(jobs.c.batch_id == batch_id)
        if external_id is not None:
            query = query.where(jobs.c.external_id == external_id)
        if user_id is not None:
            query = query.where(jobs.c.user_id == user_id)
        if status is not None:
            query = query.where(jobs.c.status == status)
        if kind is not None:
            query = query.where(jobs.c.kind == kind)
        with self._reads.connect() as conn:
            rows, next_cursor = newest_first(conn, query, jobs, limit=limit, cursor=cursor)
        return [_job(row) for row in rows], next_cursor

    def move(
        self,
        job_id: str,
        expected: JobStatus,
        target: JobStatus,
        *,
        now: datetime,
        fence: int | None = None,
        detail: Mapping[str, Any] | None = None,
        **changes: Any,
    ) -> int | None:
        """Compare-and-set `expected` -> `target` (and the fence, when given), plus an event.

        Returns the job's new fence (every move bumps it, so messages sent before the move are
        stale), or None when the job was not in `expected` with that fence: someone else moved it.
        """
        with self._begin() as (conn, outbox):
            return _move(conn, outbox, job_id, expected, target, now=now, fence=fence, detail=detail, **changes)

    def claim(
        self,
        job_id: str,
        status: JobStatus,
        fence: int,
        *,
        now: datetime,
        polled: bool = False,
        archiving: bool = False,
    ) -> Job | None:
        """Take a message's turn: bump the fence if the job is still in `status` with `fence`.

        Every message is good for one run: a duplicate, or a message a re-drive made stale, finds
        the fence moved on and gets None. `polled` counts a poll, `archiving` an archive attempt.
        """
        values: dict[str, Any] = {"fence": jobs.c.fence + 1, "updated_at": now}
        if polled:
            values["polls"] = jobs.c.polls + 1
        if archiving:
            values["archive_attempts"] = jobs.c.archive_attempts + 1
        cas = (
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == status, jobs.c.fence == fence)
            .values(**values)
            .returning(*jobs.c)
        )
        with self._engine.begin() as conn:
            row = conn.execute(cas).mappings().one_or_none()
        return None if row is None else _job(row)

    def heartbeat(self, job_id: str, status: JobStatus, fence: int, *, now: datetime) -> bool:
        """A long run is alive: its job keeps its fence and the reconciler leaves it alone."""
        with self._engine.begin() as conn:
            result = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == status, jobs.c.fence == fence)
                .values(updated_at=now)
            )
        return result.rowcount == 1

    def admit(self, job: Job, *, cap: int, now: datetime) -> tuple[Job | None, bool]:
        """Admission: `queued` -> `submitting` for the job's next attempt, within the owner's plan cap.

        The owner's row is locked first, so two admissions of one user's jobs (in any rooms, on
        any machines) count in-flight jobs one after the other; a batch's pause takes the same lock,
        so no row of a paused batch is admitted. Returns (the admitted job, False), (None, True) when
        the owner is at its cap, (None, False) when the job moved on or its batch is paused.
        """
        with self._begin() as (conn, outbox):
            _lock_user(conn, job.user_id)
            if job.batch_id is not None and _batch_status(conn, job.batch_id) == "paused":
                return None, False
            if _in_flight(conn, [job.user_id]).get(job.user_id, 0) >= cap:
                return None, True
            fence = _move(
                conn,
                outbox,
                job.id,
                JobStatus.QUEUED,
                JobStatus.SUBMITTING,
                now=now,
                fence=job.fence,
                detail={"attempt": job.attempt + 1},
                attempt=job.attempt + 1,
                admitted_at=now,
                not_before=None,
                deadline_at=now + timedelta(seconds=job.deadline_s or _budget(job)),
            )
            if fence is None:
                return None, False
            row = conn.execute(select(jobs).where(jobs.c.id == job.id)).mappings().one()
        return _job(row), False

    def open_attempt(self, job: Job, *, now: datetime) -> bool:
        """Write down the vendor call about to be made; False if this attempt was already made."""
        row = {
            "job_id": job.id,
            "attempt": job.attempt,
            "vendor": job.vendor,
            "outcome": "calling",
            "started_at": now,
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(vendor_attempts).values(**row))
        except IntegrityError:
            return False
        return True

    def end_attempt(self, job: Job, outcome: str, *, now: datetime, task_id: str | None = None) -> bool:
        """Record how a vendor call ended (once: only a `calling` attempt changes)."""
        with self._engine.begin() as conn:
            return _end_attempt(conn, job.id, job.attempt, outcome, now=now, task_id=task_id)

    def accept(self, job: Job, task_id: str, *, now: datetime) -> int | None:
        """The vendor took the task: `submitting` -> `processing` and the attempt's task id, together.

        None when the job moved on meanwhile (cancelled, or taken back); the task is then recorded
        as `abandoned`, for the caller to cancel at the vendor where it can.
        """
        with self._begin() as (conn, outbox):
            fence = _move(
                conn,
                outbox,
                job.id,
                JobStatus.SUBMITTING,
                JobStatus.PROCESSING,
                now=now,
                fence=job.fence,
                detail={"attempt": job.attempt},
                vendor_task_id=task_id,
            )
            if fence is not None:
                _end_attempt(conn, job.id, job.attempt, "accepted", now=now, task_id=task_id)
            else:  # also when maintenance already wrote it off as unknown: now we know its task
                _end_attempt(
                    conn, job.id, job.attempt, "abandoned", now=now, task_id=task_id, was=("calling", "unknown")
                )
        return fence

    def cancelled_at_vendor(self, job_id: str, attempt: int, *, now: datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(vendor_attempts)
                .where(
                    vendor_attempts.c.job_id == job_id,
                    vendor_attempts.c.attempt == attempt,
                    vendor_attempts.c.cancelled_at.is_(None),  # a repeated cancel keeps the first time
                )
                .values(cancelled_at=now)
            )

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        query = select(vendor_attempts).where(vendor_attempts.c.job_id == job_id).order_by(vendor_attempts.c.attempt)
        with self._reads.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def attempt_outcome(self, job_id: str, attempt: int) -> str | None:
        query = select(vendor_attempts.c.outcome).where(
            vendor_attempts.c.job_id == job_id, vendor_attempts.c.attempt == attempt
        )
        with self._reads.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def in_flight(self, user_ids: Iterable[str]) -> dict[str, int]:
        """Jobs in `submitting` or `processing` per user: what counts against the plan's cap."""
        with self._reads.connect() as conn:
            return _in_flight(conn, list(user_ids))

    def in_state(self, status: JobStatus, *, limit: int = 5000) -> list[Job]:
        query = select(jobs).where(jobs.c.status == status).order_by(jobs.c.created_at).limit(limit)
        with self._reads.connect() as conn:
            return [_job(row) for row in conn.execute(query).mappings()]

    def in_room(self, vendor: str, model: str, statuses: Iterable[JobStatus], *, limit: int = 10_000) -> list[Job]:
        query = (
            select(jobs)
            .where(jobs.c.vendor == vendor, jobs.c.model == model, jobs.c.status.in_([s.value for s in statuses]))
            .order_by(jobs.c.created_at)
            .limit(limit)
        )
        with self._reads.connect() as conn:
            return [_job(row) for row in conn.execute(query).mappings()]

    def of_batch(self, batch_id: str) -> list[Job]:
        """Every job of the batch by row, each row's oldest first (its latest job last)."""
        query = select(jobs).where(jobs.c.batch_id == batch_id).order_by(jobs.c.batch_row, jobs.c.created_at, jobs.c.id)
        with self._reads.connect() as conn:
            return [_job(row) for row in conn.execute(query).mappings()]

    def waiting_in_room(self, vendor: str, model: str, *, limit: int = 10_000) -> list[Job]:
        """The room's `queued` jobs that may be admitted: a paused batch's rows wait outside it."""
        query = (
            select(jobs)
            .where(jobs.c.vendor == vendor, jobs.c.model == model, jobs.c.status == JobStatus.QUEUED, _unpaused())
            .order_by(jobs.c.created_at)
            .limit(limit)
        )
        with self._reads.connect() as conn:
            return [_job(row) for row in conn.execute(query).mappings()]

    def in_paused_batches(self, job_ids: Iterable[str]) -> set[str]:
        query = select(jobs.c.id).where(jobs.c.id.in_(list(job_ids)), ~_unpaused())
        with self._reads.connect() as conn:
            return set(conn.execute(query).scalars())

    def set_batch_status(self, batch_id: str, user_id: str, expected: str, target: str, *, now: datetime) -> bool:
        """Compare-and-set a batch's stored status under its owner's row lock (admission's lock)."""
        with self._engine.begin() as conn:
            _lock_user(conn, user_id)
            moved = conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.status == expected)
                .values(status=target, updated_at=now)
            )
        return moved.rowcount == 1

    def results_due(self, *, finished_before: datetime, limit: int = 500) -> list[Job]:
        """Succeeded jobs whose files are older than the retention and still stored."""
        query = (
            select(jobs)
            .where(
                jobs.c.status == JobStatus.SUCCEEDED,
                jobs.c.finished_at < finished_before,
                jobs.c.results_expired_at.is_(None),
            )
            .order_by(jobs.c.finished_at)
            .limit(limit)
        )
        with self._reads.connect() as conn:
            return [_job(row) for row in conn.execute(query).mappings()]

    def expire_results(self, job_id: str, *, now: datetime) -> bool:
        """Record that the job's files are gone (once: False when it was recorded already)."""
        with self._engine.begin() as conn:
            moved = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.results_expired_at.is_(None))
                .values(results_expired_at=now)
            )
        return moved.rowcount == 1

    def idle_by_state(self) -> dict[str, tuple[int, datetime]]:
        """Per non-terminal state: how many jobs, and the oldest last progress (ix_jobs_status_updated)."""
        query = (
            select(jobs.c.status, func.count(), func.min(jobs.c.updated_at))
            .where(jobs.c.status.in_([s.value for s in ACTIVE]))
            .group_by(jobs.c.status)
        )
        with self._reads.connect() as conn:
            return {row[0]: (int(row[1]), row[2]) for row in conn.execute(query)}  # min() keeps UTCDateTime

    def queued_rooms(self, user_id: str) -> set[str]:
        """The rooms where this user has jobs waiting (an ended job may unblock them all)."""
        query = (
            select(jobs.c.vendor, jobs.c.model)
            .where(jobs.c.user_id == user_id, jobs.c.status == JobStatus.QUEUED)
            .distinct()
        )
        with self._reads.connect() as conn:
            return {f"{r.vendor}:{r.model}" for r in conn.execute(query)}

    def past_deadline(self, statuses: Iterable[JobStatus], *, now: datetime, limit: int = 500) -> list[Job]:
        query = (
            select(jobs)
            .where(jobs.c.status.in_([s.value for s in statuses]), jobs.c.deadline_at < now)
            .order_by(jobs.c.deadline_at)
            .limit(limit)
        )
        with self._reads.connect() as conn:
            return [_job(row) for row in conn.execute(query).mappings()]

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
        with self._reads.connect() as conn:
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
        with self._reads.connect() as conn:
            return list(conn.execute(query).scalars())

    def matching(self, found: JobFilter, *, limit: int) -> list[Job]:
        """Jobs the filter picks, oldest first, at most `limit`."""
        query = select(jobs).where(*picked_by(found))
        with self._reads.connect() as conn:
            rows = conn.execute(query.order_by(jobs.c.created_at, jobs.c.id).limit(limit)).mappings()
            return [_job(row) for row in rows]

    def retried_by(self, job_id: str) -> list[str]:
        """The jobs made by retrying this one, oldest first."""
        query = select(jobs.c.id).where(jobs.c.retry_of == job_id).order_by(jobs.c.created_at, jobs.c.id)
        with self._reads.connect() as conn:
            return list(conn.execute(query).scalars())

    def moves(self, job_ids: Iterable[str]) -> dict[str, list[tuple[JobStatus, datetime]]]:
        """Each job's state moves in order, (status entered, at), the first being its creation."""
        ids = list(job_ids)
        found: dict[str, list[tuple[JobStatus, datetime]]] = {job_id: [] for job_id in ids}
        if not ids:
            return found
        with self._reads.connect() as conn:
            for row in conn.execute(_MOVES, {"job_ids": ids}):
                found[row.job_id].append((JobStatus(row.to_status), row.at))
        return found

    def history(self, job_id: str, *, after: int = 0) -> list[JobEvent]:
        """The job's stored state moves after event id `after`, oldest first."""
        query = (
            select(job_events).where(job_events.c.job_id == job_id, job_events.c.id > after).order_by(job_events.c.id)
        )
        with self._reads.connect() as conn:
            return [JobEvent(r.id, r.from_status, r.to_status, r.at, dict(r.detail or {})) for r in conn.execute(query)]

    def events(self, job_id: str) -> list[tuple[str | None, str]]:
        query = select(job_events.c.from_status, job_events.c.to_status).where(job_events.c.job_id == job_id)
        with self._reads.connect() as conn:
            return [(r.from_status, r.to_status) for r in conn.execute(query.order_by(job_events.c.id))]

    def _by_external_id(self, user_id: str, external_id: str) -> Job | None:
        query = select(jobs).where(jobs.c.user_id == user_id, jobs.c.external_id == external_id)
        with self._reads.connect() as conn:
            row = conn.execute(query).mappings().one_or_none()
        return None if row is None else _job(row)

    def _by_key(self, user_id: str, key: str) -> Job | None:
        query = select(jobs).where(jobs.c.user_id == user_id, jobs.c.idempotency_key == key)
        with self._reads.connect() as conn:
            row = conn.execute(query).mappings().one_or_none()
        return None if row is None else _job(row)

    def _replay(self, earlier: Job, new: NewJob) -> Job:
        with self._reads.connect() as conn:
            stored = conn.execute(select(jobs.c.request_hash).where(jobs.c.id == earlier.id)).scalar_one()
        if stored != new.request_hash:
            raise Conflict(
                "this Idempotency-Key was already used with a different request body",
                idempotency_key=new.idempotency_key,
                job_id=earlier.id,
            )
        return earlier

    # --- maintenance's periodic tasks (issue 13) ---------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The database, for maintenance's row retention and stored usage (infra.retention, infra.reports)."""
        return self._engine

    def vendor_ids_older(self, vendor: str, *, accepted_before: datetime, limit: int = 500) -> list[Job]:
        """Jobs of `vendor` still on a vendor task it accepted before `accepted_before` (`processing`,
        or `archiving` its outputs), oldest first."""
        query = (
            select(jobs)
            .where(
                jobs.c.vendor == vendor,
                jobs.c.status.in_([JobStatus.PROCESSING.value, JobStatus.ARCHIVING.value]),
                jobs.c.vendor_task_id.is_not(None),
                jobs.c.processing_at < accepted_before,
            )
            .order_by(jobs.c.processing_at)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [_job(row) for row in conn.execute(query).mappings()]

    def active_upload_keys(self) -> set[str]:
        """The direct uploads named by jobs that have not ended (their image, or one of their views)."""
        query = select(jobs.c.input).where(jobs.c.status.in_([s.value for s in ACTIVE]))
        keys: set[str] = set()
        with self._engine.connect() as conn:
            for job_input in conn.execute(query).scalars():
                for holder in [job_input, *(job_input.get("views") or ())]:
                    if isinstance(holder, Mapping) and isinstance(holder.get("upload_key"), str):
                        keys.add(holder["upload_key"])
        return keys


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
        "priority": new.priority,
        "deadline_s": new.deadline_s,
        "external_id": new.external_id,
        "retry_of": new.retry_of,
        "webhook_url": new.webhook_url,
        "webhook_events": new.webhook_events,
        "batch_id": new.batch_id,
        "batch_row": new.batch_row,
    }


def _batch_row(batch: NewBatch, now: datetime) -> dict[str, Any]:
    return {
        "id": batch.id,
        "user_id": batch.user_id,
        "name": batch.name,
        "kind": batch.kind,
        "defaults": dict(batch.defaults),
        "rows": batch.rows,
        "status": "running",
        "idempotency_key": batch.idempotency_key,
        "request_hash": batch.request_hash,
        "created_at": now,
        "updated_at": now,
    }


def _charge_and_insert(conn: Connection, outbox: list[str], new: NewJob, now: datetime, *, funds: Funds) -> Funds:
    """One job, its charge (plan credits spent first, in the debit's UPDATE) and its first event, in
    the caller's transaction, the owner's row locked (`funds`). Returns the funds left."""
    entry = credits.charge(new.user_id, funds.balance, new.id, new.price, at=now)
    conn.execute(_INSERT, _row(new, now))
    append(conn, entry, also=spend_plan_credits(new.price))
    created: dict[str, Any] = {"job_id": new.id, "from_status": None, "to_status": new.status, "at": now}
    event_id = conn.execute(_EVENT, created).scalar_one()
    _outbox_add(conn, outbox, new.id, new.user_id, new.webhook_url, new.webhook_events, event_id, new.status, now)
    return Funds(funds.balance - new.price, max(funds.plan_credits - new.price, 0))


def _written(new: NewJob, now: datetime) -> Job:
    """The job as `create` wrote it (every other column at its default), without reading it back."""
    return _job(_row(new, now) | {**_DEFAULTS, "updated_at": now})


_DEFAULTS: Mapping[str, Any] = {
    "results_expired_at": None,
    "vendor_task_id": None,
    "results": None,
    "error_code": None,
    "error_message": None,
    "processing_at": None,
    "finished_at": None,
    "fence": 0,
    "attempt": 0,
    "admitted_at": None,
    "not_before": None,
    "submit_failures": 0,
    "archive_attempts": 0,
}


def picked_by(found: JobFilter) -> list[ColumnElement[bool]]:
    """The conditions on `jobs` of an admin's filter (the bulk actions, the console's search)."""
    equal = [
        (jobs.c.kind, found.kind),
        (jobs.c.vendor, found.vendor),
        (jobs.c.error_code, found.error_code),
        (jobs.c.user_id, found.user_id),
    ]
    conditions = [column == value for column, value in equal if value is not None]
    if found.statuses:
        conditions.append(jobs.c.status.in_([s.value for s in found.statuses]))
    if found.created_from is not None:
        conditions.append(jobs.c.created_at >= found.created_from)
    if found.created_to is not None:
        conditions.append(jobs.c.created_at < found.created_to)
    return conditions


def _job(row: RowMapping | Mapping[str, Any]) -> Job:
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
        fence=row["fence"],
        attempt=row["attempt"],
        priority=row["priority"],
        deadline_s=row["deadline_s"] or 0,
        admitted_at=row["admitted_at"],
        not_before=row["not_before"],
        submit_failures=row["submit_failures"],
        archive_attempts=row["archive_attempts"],
        external_id=row["external_id"],
        retry_of=row["retry_of"],
        webhook_url=row["webhook_url"],
        webhook_events=row["webhook_events"],
        batch_id=row["batch_id"],
        batch_row=row["batch_row"],
        results_expired_at=row["results_expired_at"],
    )


# The hot statements, built once: SQLAlchemy finds a statement's compiled form by a key it derives
# from the statement's structure, and deriving it for a statement built anew on every call costs
# more than the round trip of a one-row read (measured: 437 -> 241 us per job read).
_BY_ID = select(jobs).where(jobs.c.id == bindparam("job_id"))
_MOVES = (
    select(job_events.c.job_id, job_events.c.to_status, job_events.c.at)
    .where(job_events.c.job_id.in_(bindparam("job_ids", expanding=True)))
    .order_by(job_events.c.id)
)
_EVENT = insert(job_events).returning(job_events.c.id)
_INSERT = insert(jobs)  # with each new job's row as its parameters
_IN_FLIGHT = (
    select(jobs.c.user_id, func.count())
    .where(jobs.c.user_id.in_(bindparam("user_ids", expanding=True)), jobs.c.status.in_([s.value for s in IN_FLIGHT]))
    .group_by(jobs.c.user_id)
)


@functools.cache
def _cas(columns: tuple[str, ...], *, fenced: bool) -> Update:
    """A state move's compare-and-set, for one set of changed columns (a handful of shapes in all):
    the job in its expected state (and fence), its fence bumped, `new_<column>` for each value."""
    cas = update(jobs).where(jobs.c.id == bindparam("job_id"), jobs.c.status == bindparam("expected"))
    if fenced:
        cas = cas.where(jobs.c.fence == bindparam("fence"))
    values: dict[str, Any] = {name: bindparam(f"new_{name}", type_=jobs.c[name].type) for name in columns}
    return cas.values(fence=jobs.c.fence + 1, **values).returning(
        jobs.c.fence, jobs.c.user_id, jobs.c.webhook_url, jobs.c.webhook_events
    )


def _move(
    conn: Connection,
    outbox: list[str],
    job_id: str,
    expected: JobStatus,
    target: JobStatus,
    *,
    now: datetime,
    fence: int | None,
    detail: Mapping[str, Any] | None,
    **changes: Any,
) -> int | None:
    check_transition(job_id, expected, target)
    values = {"status": target, "updated_at": now, **changes}
    if target is JobStatus.PROCESSING:
        values.setdefault("processing_at", now)
    if target not in (JobStatus.QUEUED, JobStatus.SUBMITTING, JobStatus.PROCESSING, JobStatus.ARCHIVING):
        values[TERMINAL_STAMP] = now
    params = {f"new_{name}": value for name, value in values.items()}
    params |= {"job_id": job_id, "expected": expected, "fence": fence}
    moved = conn.execute(_cas(tuple(sorted(values)), fenced=fence is not None), params).one_or_none()
    if moved is None:
        return None
    event = {"job_id": job_id, "from_status": expected, "to_status": target, "at": now, "detail": dict(detail or {})}
    event_id = conn.execute(_EVENT, event).scalar_one()
    _outbox_add(conn, outbox, job_id, moved.user_id, moved.webhook_url, moved.webhook_events, event_id, target, now)
    return int(moved.fence)


def _outbox_add(
    conn: Connection,
    outbox: list[str],
    job_id: str,
    user_id: str,
    url: str | None,
    events: str | None,
    event_id: int,
    status: JobStatus,
    now: datetime,
) -> None:
    delivery = webhooks.add(
        conn, job_id=job_id, user_id=user_id, url=url, events=events, event_id=event_id, status=status, now=now
    )
    if delivery is not None:
        outbox.append(delivery)


def _end_attempt(
    conn: Connection,
    job_id: str,
    attempt: int,
    outcome: str,
    *,
    now: datetime,
    task_id: str | None,
    was: tuple[str, ...] = ("calling",),
) -> bool:
    values: dict[str, Any] = {"outcome": outcome, "ended_at": now}
    if task_id is not None:
        values["task_id"] = task_id
    result = conn.execute(
        update(vendor_attempts)
        .where(
            vendor_attempts.c.job_id == job_id,
            vendor_attempts.c.attempt == attempt,
            vendor_attempts.c.outcome.in_(was),
        )
        .values(**values)
    )
    return result.rowcount == 1


def _lock_user(conn: Connection, user_id: str) -> None:
    """Serialise a user's admissions (PostgreSQL row lock; SQLite's writers are serial already)."""
    query = select(users.c.id).where(users.c.id == user_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    conn.execute(query)


def _batch_status(conn: Connection, batch_id: str) -> str | None:
    return conn.execute(select(batches.c.status).where(batches.c.id == batch_id)).scalar_one_or_none()


def _unpaused() -> ColumnElement[bool]:
    paused = exists().where(batches.c.id == jobs.c.batch_id, batches.c.status == "paused")
    return or_(jobs.c.batch_id.is_(None), ~paused)


def _in_flight(conn: Connection, user_ids: list[str]) -> dict[str, int]:
    if not user_ids:
        return {}
    return {row[0]: int(row[1]) for row in conn.execute(_IN_FLIGHT, {"user_ids": user_ids})}


def _budget(job: Job) -> float:
    """The run budget of a job written before deadline_s existed: its first deadline's span."""
    return max((job.deadline_at - job.created_at).total_seconds(), 1.0)
