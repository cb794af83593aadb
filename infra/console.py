"""What the operators' console reads beyond the admin API (read-only, nothing here writes):

- Dramatiq's queues in Redis: messages ready and delayed, and the age of the oldest ready one;
- throughput over the last hour, from the database: genq keeps no history of its own, so it is the
  jobs that finished in each 5-minute bucket, by kind and vendor;
- failure rates by vendor and error code over a window, from the database;
- each waiting room's holders (the jobs in flight) and waiters, with why each one waits;
- a job search with every filter of the admin's bulk actions, newest first.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import Engine, Select, case, func, select

from domain import scheduling
from domain.jobs import TERMINAL, JobStatus
from infra import catalog, waiting
from infra.accounts import Accounts
from infra.db import batches, jobs, reads, users
from infra.jobstore import JobFilter, JobStore, picked_by
from infra.paging import newest_first
from infra.rooms import Rooms, Snapshot
from infra.settings import Settings

FAILED = frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT})  # what a failure rate counts
REASONS = ("vendor_slots", "plan_concurrency", "vendor_busy", "degraded", "paused")


# --- queues ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueState:
    name: str
    ready: int  # messages waiting for a worker
    delayed: int  # messages scheduled for later (retries, back-offs)
    oldest_s: float | None  # age of the oldest ready message (None: nothing ready)


def queue_states(client: redis.Redis, namespace: str, names: Sequence[str], *, now: float) -> list[QueueState]:
    """Dramatiq's RedisBroker keeps a queue as a list of message ids (oldest first) beside a hash
    of the messages; the delayed messages of queue `q` are queue `q.DQ`."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(f"{namespace}:{name}")
        pipe.llen(f"{namespace}:{name}.DQ")
        pipe.lindex(f"{namespace}:{name}", 0)
    answers = pipe.execute()
    heads = [answers[i * 3 + 2] for i in range(len(names))]
    pipe = client.pipeline(transaction=False)
    for name, head in zip(names, heads, strict=True):
        pipe.hget(f"{namespace}:{name}.msgs", head or "")
    bodies = pipe.execute()
    return [
        QueueState(name, int(answers[i * 3]), int(answers[i * 3 + 1]), _age(bodies[i], now))
        for i, name in enumerate(names)
    ]


def _age(body: bytes | None, now: float) -> float | None:
    try:
        stamp = json.loads(body)["message_timestamp"] if body else None
    except (ValueError, KeyError, TypeError):
        return None
    return max(now - stamp / 1000, 0.0) if isinstance(stamp, int | float) else None


# --- throughput and failures -------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    since: datetime
    bucket_s: int
    rows: tuple[ThroughputRow, ...]  # by kind, then vendor


@dataclass(frozen=True)
class ThroughputRow:
    kind: str
    vendor: str
    finished: tuple[int, ...]  # jobs that reached an end, per bucket, oldest bucket first
    succeeded: int
    failed: int  # failed or timed out


def _finished_since(since: datetime) -> Select[Any]:
    """Jobs that ended at `since` or later. A finished job's `updated_at` is never before its
    `finished_at`, so the (status, updated_at) index finds them without reading the table."""
    ended = [s.value for s in TERMINAL]
    return select().where(jobs.c.status.in_(ended), jobs.c.updated_at >= since, jobs.c.finished_at >= since)


def throughput(engine: Engine, *, now: datetime, hours: int = 1, bucket_s: int = 300) -> Throughput:
    since = now - timedelta(hours=hours)
    count = hours * 3600 // bucket_s
    edges = [since + timedelta(seconds=bucket_s * (i + 1)) for i in range(count - 1)]
    bucket = case(*[(jobs.c.finished_at < edge, i) for i, edge in enumerate(edges)], else_=count - 1)
    ended = _finished_since(since).add_columns(jobs.c.kind, jobs.c.vendor, jobs.c.status, bucket.label("bucket"))
    t = ended.subquery()  # grouped outside: PostgreSQL cannot tell a parameterised CASE from its copy
    query = select(t.c.kind, t.c.vendor, t.c.status, t.c.bucket, func.count()).group_by(*t.c)
    with reads(engine).connect() as conn:
        found = conn.execute(query).all()
    rows: dict[tuple[str, str], tuple[list[int], Counter[str]]] = {}
    for kind, vendor, status, index, n in found:
        per_bucket, statuses = rows.setdefault((kind, vendor), ([0] * count, Counter()))
        per_bucket[min(int(index), count - 1)] += n
        statuses[status] += n
    return Throughput(
        since,
        bucket_s,
        tuple(
            ThroughputRow(kind, vendor, tuple(b), s[JobStatus.SUCCEEDED], sum(s[f] for f in FAILED))
            for (kind, vendor), (b, s) in sorted(rows.items())
        ),
    )


@dataclass(frozen=True)
class VendorFailures:
    vendor: str
    finished: int  # every end: succeeded, failed, timed out, cancelled, refused by moderation
    succeeded: int
    failed: int  # failed or timed out: what the rate counts
    cancelled: int
    audit_failed: int
    rate: float | None  # failed / (succeeded + failed); None when neither happened
    codes: tuple[tuple[str, int], ...]  # (error code, jobs) of the failed ones, most first


def failures(engine: Engine, *, now: datetime, hours: int) -> list[VendorFailures]:
    query = _finished_since(now - timedelta(hours=hours)).add_columns(
        jobs.c.vendor, jobs.c.status, jobs.c.error_code, func.count()
    )
    with reads(engine).connect() as conn:
        found = conn.execute(query.group_by(jobs.c.vendor, jobs.c.status, jobs.c.error_code)).all()
    statuses: dict[str, Counter[str]] = {}
    codes: dict[str, Counter[str]] = {}
    for vendor, status, code, n in found:
        statuses.setdefault(vendor, Counter())[status] += n
        if status in FAILED:
            codes.setdefault(vendor, Counter())[code or "(none)"] += n
    return [_vendor_failures(vendor, s, codes.get(vendor, Counter())) for vendor, s in sorted(statuses.items())]


def _vendor_failures(vendor: str, s: Counter[str], codes: Counter[str]) -> VendorFailures:
    failed, succeeded = sum(s[f] for f in FAILED), s[JobStatus.SUCCEEDED]
    return VendorFailures(
        vendor,
        sum(s.values()),
        succeeded,
        failed,
        s[JobStatus.CANCELLED],
        s[JobStatus.AUDIT_FAILED],
        failed / (failed + succeeded) if failed + succeeded else None,
        tuple(codes.most_common()),
    )


# --- job search ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    id: str
    user_id: str
    phone: str
    kind: str
    status: str
    vendor: str
    model: str
    price: int
    created_at: datetime
    finished_at: datetime | None
    error_code: str | None
    error_message: str | None
    retry_of: str | None


def search_jobs(engine: Engine, found: JobFilter, *, limit: int, cursor: str | None) -> tuple[list[JobRow], str | None]:
    """What `JobStore.matching` picks for a bulk action, newest first and a page at a time."""
    query = select(jobs, users.c.phone).join(users, users.c.id == jobs.c.user_id).where(*picked_by(found))
    with reads(engine).connect() as conn:
        rows, next_cursor = newest_first(conn, query, jobs, limit=limit, cursor=cursor)
    fields = JobRow.__dataclass_fields__
    return [JobRow(**{k: v for k, v in row.items() if k in fields}) for row in rows], next_cursor


# --- waiting rooms ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    job_id: str
    user_id: str
    phone: str
    kind: str
    status: str  # submitting or processing (another: the lease outlived the job; maintenance frees it)
    since: datetime | None  # admitted at


@dataclass(frozen=True)
class Waiter:
    job_id: str
    user_id: str
    phone: str
    reason: str
    position: int  # 1 = next
    since: datetime  # arrived in the room


@dataclass(frozen=True)
class UserWaiting:
    user_id: str
    phone: str
    waiting: int
    reasons: Mapping[str, int]


@dataclass(frozen=True)
class RoomDetail:
    room: str
    limit: int
    effective_limit: int
    degraded: bool
    in_flight: int
    paused_ms: int
    holders: tuple[Holder, ...]
    waiting: int  # in the room, plus rows of paused batches that wait outside it
    by_reason: Mapping[str, int]
    by_user: tuple[UserWaiting, ...]  # most waiting first
    first: tuple[Waiter, ...]  # the first waiters in admission order (at most `shown`)


@dataclass(frozen=True)
class _Room:
    name: str
    snapshot: Snapshot
    limit: int
    effective: int


def room_details(
    settings: Settings, rooms: Rooms, accounts: Accounts, store: JobStore, *, now: datetime, shown: int = 50
) -> list[RoomDetail]:
    """Every (vendor, model) room: one snapshot each, one read of the holders' jobs, the users' caps
    and phones for all rooms at once."""
    looked = []
    for name in catalog.slot_limits(settings):
        limit, effective = waiting.limits(settings, rooms, name, now=now)
        looked.append(_Room(name, rooms.snapshot(name), limit, effective))
    held = {room.name: [h.rpartition(":")[0] for h in rooms.holders(room.name)] for room in looked}
    outside = _paused_rows(store.engine)
    waiters = {e.user_id for room in looked for e in room.snapshot.waiting}
    capped = waiting.capped(settings, accounts, store, waiters, now=now)
    found = _holders(store.engine, [job_id for ids in held.values() for job_id in ids])
    user_ids = waiters | {h.user_id for h in found.values()} | {u for n in outside.values() for u in n}
    phones = _phones(store.engine, user_ids)
    return [
        _detail(
            room,
            [found[j] for j in held[room.name] if j in found],
            outside.get(room.name, {}),
            capped,
            phones,
            now,
            shown,
        )
        for room in looked
    ]


def _detail(
    room: _Room,
    holders: list[Holder],
    paused: Mapping[str, int],
    capped: set[str],
    phones: Mapping[str, str],
    now: datetime,
    shown: int,
) -> RoomDetail:
    snapshot = room.snapshot
    order = scheduling.ordered(waiting.view(snapshot, 0), waiting.waiting(snapshot.waiting))
    by_id = {e.job_id: e for e in snapshot.waiting}
    why = {
        e.job_id: waiting.reason(e.user_id, e.not_before, snapshot, room.limit, room.effective, capped=capped, now=now)
        for e in snapshot.waiting
    }
    first = tuple(
        Waiter(w.job_id, w.user_id, phones.get(w.user_id, ""), why[w.job_id], i, _at(by_id[w.job_id].arrival))
        for i, w in enumerate(order[:shown], start=1)
    )
    per_user: dict[str, Counter[str]] = {}
    for entry in snapshot.waiting:
        per_user.setdefault(entry.user_id, Counter())[why[entry.job_id]] += 1
    for user_id, n in paused.items():
        per_user.setdefault(user_id, Counter())["paused"] += n
    by_reason = Counter({r: 0 for r in REASONS}) + Counter(why.values()) + Counter({"paused": sum(paused.values())})
    by_user = sorted(
        (UserWaiting(u, phones.get(u, ""), sum(c.values()), dict(c)) for u, c in per_user.items()),
        key=lambda u: (-u.waiting, u.phone),
    )
    return RoomDetail(
        room.name, room.limit, room.effective, room.effective < room.limit, snapshot.in_flight, snapshot.paused_ms,
        tuple(holders), len(snapshot.waiting) + sum(paused.values()), {r: by_reason[r] for r in REASONS},
        tuple(by_user), first,
    )  # fmt: skip


def _paused_rows(engine: Engine) -> dict[str, dict[str, int]]:
    """Queued rows of paused batches, per room and user: they wait outside the room until resumed."""
    query = (
        select(jobs.c.vendor, jobs.c.model, jobs.c.user_id, func.count())
        .join(batches, batches.c.id == jobs.c.batch_id)
        .where(jobs.c.status == JobStatus.QUEUED, batches.c.status == "paused")
        .group_by(jobs.c.vendor, jobs.c.model, jobs.c.user_id)
    )
    found: dict[str, dict[str, int]] = {}
    with reads(engine).connect() as conn:
        for vendor, model, user_id, n in conn.execute(query):
            found.setdefault(f"{vendor}:{model}", {})[user_id] = n
    return found


def _holders(engine: Engine, job_ids: Iterable[str]) -> dict[str, Holder]:
    ids = list(set(job_ids))
    if not ids:
        return {}
    query = (
        select(jobs.c.id, jobs.c.user_id, users.c.phone, jobs.c.kind, jobs.c.status, jobs.c.admitted_at)
        .join(users, users.c.id == jobs.c.user_id)
        .where(jobs.c.id.in_(ids))
    )
    with reads(engine).connect() as conn:
        return {row.id: Holder(*row) for row in conn.execute(query)}


def _phones(engine: Engine, user_ids: Iterable[str]) -> dict[str, str]:
    ids = list(set(user_ids))
    if not ids:
        return {}
    with reads(engine).connect() as conn:
        return {row.id: row.phone for row in conn.execute(select(users.c.id, users.c.phone).where(users.c.id.in_(ids)))}


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
