"""Reading the scheduler's state: a room's limit now, its owners' caps, where a waiting job stands.

Shared by the admission pass (workers/admission.py) and the API's answers, so both see one truth:
the rules are `domain.scheduling`'s, the numbers come from settings (with an admin's overrides),
Redis (the room) and the database (plans, in-flight jobs).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain import scheduling
from domain.jobs import Job
from domain.plans import is_member, parse_plans
from infra import catalog
from infra.accounts import Accounts
from infra.jobstore import JobStore
from infra.rooms import Entry, Rooms, Snapshot
from infra.settings import Settings


@dataclass(frozen=True)
class QueueInfo:
    reason: str  # vendor_slots | plan_concurrency | vendor_busy | degraded | paused
    position: int  # 1 = next


def degrade_policy(settings: Settings) -> scheduling.DegradePolicy:
    return scheduling.DegradePolicy(
        window_s=settings.degrade_window_s,
        threshold=settings.degrade_threshold,
        factor=settings.degrade_factor,
        min_samples=settings.degrade_min_samples,
    )


def health(rooms: Rooms, room: str) -> scheduling.Health:
    stored = rooms.health(room)
    return scheduling.Health() if stored is None else scheduling.Health(**stored)


def limits(settings: Settings, rooms: Rooms, room: str, *, now: datetime) -> tuple[int, int]:
    """(the model's configured limit, the limit in force now: lower while the room is degraded)."""
    limit = catalog.slot_limits(settings).get(room, 1)
    current = scheduling.roll(health(rooms, room), now=now.timestamp(), limit=limit, policy=degrade_policy(settings))
    return limit, scheduling.effective_limit(current, limit)


def caps(settings: Settings, accounts: Accounts, user_ids: Iterable[str], *, now: datetime) -> dict[str, int]:
    """Each user's in-flight cap across every vendor: their plan's concurrency while a member."""
    concurrency = {name: plan.concurrency for name, plan in parse_plans(settings.plans).items()}
    return {
        user: scheduling.plan_cap(concurrency, plan, member=is_member(until, now=now))
        for user, (plan, until) in accounts.plans(user_ids).items()
    }


def capped(
    settings: Settings, accounts: Accounts, jobs: JobStore, user_ids: Iterable[str], *, now: datetime
) -> set[str]:
    """The users already running as many jobs as their plan allows."""
    users = set(user_ids)
    cap = caps(settings, accounts, users, now=now)
    running = jobs.in_flight(users)
    return {user for user in users if running.get(user, 0) >= cap.get(user, 1)}


def waiting(entries: Iterable[Entry]) -> list[scheduling.Waiting]:
    return [
        scheduling.Waiting(e.job_id, e.user_id, scheduling.PriorityClass(e.cls), e.arrival, e.weight, e.not_before)
        for e in entries
    ]


def view(snapshot: Snapshot, limit: int) -> scheduling.RoomView:
    return scheduling.RoomView(
        limit=limit,
        in_flight=snapshot.in_flight,
        share=scheduling.FairShare(snapshot.vclock, dict(snapshot.finish)),
        weights={e.user_id: e.share for e in snapshot.waiting},
    )


def queue_info(
    settings: Settings, rooms: Rooms, accounts: Accounts, jobs: JobStore, job: Job, *, now: datetime
) -> QueueInfo | None:
    """Why a `queued` job waits and its place in its room's order (None: the room does not hold it)."""
    snapshot = rooms.snapshot(job.slot)
    order = scheduling.ordered(view(snapshot, 0), waiting(snapshot.waiting))
    position = next((i for i, w in enumerate(order, start=1) if w.job_id == job.id), None)
    if position is None:
        return None
    limit, effective = limits(settings, rooms, job.slot, now=now)
    return QueueInfo(_reason(settings, accounts, jobs, job, snapshot, limit, effective, now=now), position)


def _reason(
    settings: Settings,
    accounts: Accounts,
    jobs: JobStore,
    job: Job,
    snapshot: Snapshot,
    limit: int,
    effective: int,
    *,
    now: datetime,
) -> str:
    capped_now = capped(settings, accounts, jobs, [job.user_id], now=now)
    not_before = job.not_before.timestamp() if job.not_before is not None else 0.0
    return reason(job.user_id, not_before, snapshot, limit, effective, capped=capped_now, now=now)


def reason(
    user_id: str,
    not_before: float,
    snapshot: Snapshot,
    limit: int,
    effective: int,
    *,
    capped: Collection[str],
    now: datetime,
) -> str:
    """Why a job of `user_id` (backing off until `not_before`, epoch seconds) waits in the room of
    `snapshot`: its owner at the plan cap, the vendor busy, the room degraded, or every slot taken.
    `capped` is read by the caller, once for as many waiters as it asks about."""
    if user_id in capped:
        return "plan_concurrency"
    if snapshot.paused_ms or not_before > now.timestamp():
        return "vendor_busy"
    if effective < limit and snapshot.in_flight >= effective:
        return "degraded"
    return "vendor_slots"


def room_states(settings: Settings, rooms: Rooms, *, now: datetime) -> Mapping[str, dict[str, Any]]:
    """Every room as an operator sees it: limits, degradation, in-flight, waiting, pause."""
    found: dict[str, dict[str, Any]] = {}
    for room in catalog.slot_limits(settings):
        snapshot = rooms.snapshot(room)
        limit, effective = limits(settings, rooms, room, now=now)
        state = health(rooms, room)
        found[room] = {
            "limit": limit,
            "effective_limit": effective,
            "degraded": effective < limit,
            "in_flight": snapshot.in_flight,
            "waiting": len(snapshot.waiting),
            "paused_ms": snapshot.paused_ms,
            "ready": snapshot.ready,
            "window_failures": state.failures,
            "window_total": state.total,
        }
    return found
