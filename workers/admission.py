"""Admission: waiting is a state, and a freed slot admits the next job at once (SPEC §6).

A `queued` job waits in its (vendor, model) room. `admit()` runs whenever a slot may have freed or
a job arrived: it asks `domain.scheduling.choose` for the next job (priority class, fair share by
plan weight, arrival; per-variant thresholds; owners at their plan cap skipped), takes its slot
in Redis, and moves it `queued` -> `submitting` in the database under its owner's row lock (the
plan cap is exact across rooms and machines). The submit message carries the fence of that move.

Slots are held by (job, attempt): only the holder releases or renews its lease. A vendor's "too
busy" pauses the room (back-pressure, no attempt spent); a transient failure backs the job off.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog

from domain import scheduling
from domain.jobs import Job
from domain.jobs import JobStatus as S
from infra import metrics, waiting
from infra.rooms import Entry, Snapshot, Take
from workers import messages
from workers.runtime import Runtime

log = structlog.get_logger()
MAX_ROUNDS = 64  # admissions (and lost races) per pass; another pass follows the next release
ADMIT_TURN_S = 30.0  # the longest a pass may hold its room's turn


def entry(rt: Runtime, job: Job, *, share: int | None = None) -> Entry:
    """The job as its room keeps it: owner, class, arrival (its creation), weight, back-off."""
    if share is None:
        share = waiting.caps(rt.policy.current, rt.accounts, [job.user_id], now=rt.now()).get(job.user_id, 1)
    return Entry(
        job_id=job.id,
        user_id=job.user_id,
        cls=job.priority,
        arrival=job.created_at.timestamp(),
        weight=scheduling.size_weight(job.kind, job.input),
        not_before=job.not_before.timestamp() if job.not_before else 0.0,
        share=max(share, 1),
    )


def enqueue(rt: Runtime, job: Job) -> None:
    """Put a `queued` job in its room (again: idempotent), and admit what the room can take."""
    rt.rooms.enqueue(job.slot, entry(rt, job))
    admit(rt, job.slot)


def admit(rt: Runtime, room: str) -> int:
    """Admit the room's best waiting jobs while its slots and their owners' caps allow; how many.

    One pass runs at a time per room, cluster-wide: a call while another process passes asks it for
    one more pass and returns at once (0), so a burst of releases costs one pass, not one each, and
    passes never race each other for the room's version. The turn is a lease (ADMIT_TURN_S): a
    caller that dies holding it delays the room that long at most (maintenance admits too)."""
    token, admitted = uuid.uuid4().hex, 0
    turn = rt.rooms.enter_admission(room, token, ttl_s=ADMIT_TURN_S)
    while turn:
        try:
            admitted += _pass(rt, room)
        finally:
            turn = rt.rooms.leave_admission(room, token, ttl_s=ADMIT_TURN_S)
    return admitted


@dataclasses.dataclass
class _Pass:
    """What one pass knows: the room as last read, and its waiting owners' caps and in-flight counts."""

    snapshot: Snapshot
    caps: dict[str, int] = dataclasses.field(default_factory=dict)
    running: dict[str, int] = dataclasses.field(default_factory=dict)

    def capped(self) -> set[str]:
        return {user for user, cap in self.caps.items() if self.running.get(user, 0) >= cap}


def _pass(rt: Runtime, room: str) -> int:
    """Up to MAX_ROUNDS admissions from one read of the room, kept up to date by each take's answer;
    the room is read again only when someone else changed its waiting set."""
    state = _read(rt, room)
    admitted = 0
    for _ in range(MAX_ROUNDS):
        snapshot = state.snapshot
        if not snapshot.ready or snapshot.paused_ms or not snapshot.waiting:
            break
        _, limit = waiting.limits(rt.policy.current, rt.rooms, room, now=rt.now())
        view = waiting.view(snapshot, limit)
        pick = scheduling.choose(
            view, waiting.waiting(snapshot.waiting), now=rt.now().timestamp(), capped=state.capped()
        )
        if pick is None:
            break
        outcome, version = _take(rt, room, snapshot.version, view, pick, cap=state.caps.get(pick.user_id, 1))
        if outcome is Take.TAKEN:
            admitted += 1
            state.running[pick.user_id] = state.running.get(pick.user_id, 0) + 1
            state.snapshot = _after_take(snapshot, view, pick, version)
        elif outcome in (Take.FULL, Take.BUSY, Take.UNREADY):
            break
        else:  # STALE, GONE, or a lost race in the database: read the room and its owners again
            state = _read(rt, room)
    return admitted


def _read(rt: Runtime, room: str) -> _Pass:
    snapshot = rt.rooms.snapshot(room)
    if not snapshot.ready and rebuild_if_lost(rt, room):
        snapshot = rt.rooms.snapshot(room)
    users = {e.user_id for e in snapshot.waiting}
    caps = waiting.caps(rt.policy.current, rt.accounts, users, now=rt.now())
    return _Pass(snapshot, caps, rt.jobs.in_flight(users) if users else {})


def _after_take(snapshot: Snapshot, view: scheduling.RoomView, pick: scheduling.Waiting, version: int) -> Snapshot:
    """The room after our own take, as the take script left it: the job out of the waiting set, one
    more lease, the owner's fair-share tag charged."""
    share = scheduling.charged(view.share, pick.user_id, max(view.weights.get(pick.user_id, 1), 1))
    return dataclasses.replace(
        snapshot,
        version=version,
        in_flight=snapshot.in_flight + 1,
        waiting=tuple(e for e in snapshot.waiting if e.job_id != pick.job_id),
        vclock=share.vclock,
        finish={**snapshot.finish, pick.user_id: share.finish[pick.user_id]},
    )


def _take(
    rt: Runtime, room: str, version: int, view: scheduling.RoomView, pick: scheduling.Waiting, *, cap: int
) -> tuple[Take | None, int]:
    """Take the pick's slot, then admit it in the database; None: look again (it moved, or its owner
    turned out to be at the cap — its place is kept). With the room's version after the take."""
    job = rt.jobs.get(pick.job_id)
    if job is None or job.status is not S.QUEUED:
        rt.rooms.remove(room, pick.job_id)
        return None, version
    holder = f"{job.id}:{job.attempt + 1}"
    share = scheduling.charged(view.share, pick.user_id, max(view.weights.get(pick.user_id, 1), 1))
    answer, version = rt.rooms.take(
        room,
        version=version,
        job_id=job.id,
        holder=holder,
        threshold=scheduling.admission_threshold(view.limit, pick.weight),
        user_id=pick.user_id,
        finish=share.finish[pick.user_id],
        vclock=share.vclock,
    )
    if answer is not Take.TAKEN:
        return answer, version
    admitted, at_cap = rt.jobs.admit(job, cap=cap, now=rt.now())
    if admitted is None:
        if at_cap:
            rt.rooms.put_back(room, entry(rt, job, share=cap), holder)
        else:
            rt.rooms.release(room, holder)
        return None, version
    metrics.ADMITTED.labels(room, job.priority).inc()
    log.info("job_admitted", job_id=job.id, room=room, attempt=admitted.attempt, priority=job.priority)
    messages.submit(admitted.id, admitted.fence)
    return Take.TAKEN, version


def rebuild_if_lost(rt: Runtime, room: str) -> bool:
    """A room Redis lost (or never had) comes back from the database: the leases of the jobs that
    hold its slots and its `queued` jobs. Nothing is admitted there before. One process rebuilds."""
    if rt.rooms.ready(room) or not rt.rooms.lock_rebuild(room):
        return False
    vendor, _, model = room.partition(":")
    holding = rt.jobs.in_room(vendor, model, (S.SUBMITTING, S.PROCESSING))
    queued = rt.jobs.waiting_in_room(vendor, model)
    caps = waiting.caps(rt.policy.current, rt.accounts, {j.user_id for j in queued}, now=rt.now())
    entries = [entry(rt, job, share=caps.get(job.user_id, 1)) for job in queued]
    rt.rooms.rebuild(room, [job.holder for job in holding], entries)
    metrics.RECONCILED.labels("room_rebuilt").inc()
    log.warning("room_rebuilt", room=room, holding=len(holding), waiting=len(entries))
    return True


def released(rt: Runtime, job: Job) -> None:
    """A slot of `job`'s room freed (and maybe its owner's cap): admit there and wherever it waits."""
    for room in {job.slot} | rt.jobs.queued_rooms(job.user_id):
        try:
            admit(rt, room)
        except Exception:  # admission at release is an optimisation; maintenance admits too
            log.exception("admission_failed", room=room)


def release(rt: Runtime, job: Job) -> None:
    """Give back the slot this job's attempt holds, then admit whoever may go now."""
    rt.rooms.release(job.slot, job.holder)
    released(rt, job)


def back_to_queue(
    rt: Runtime, job: Job, *, reason: str, backoff_s: float = 0.0, pause_ms: int = 0, failure: bool = False
) -> bool:
    """`submitting` -> `queued` for a later attempt: the slot goes back, the job keeps its place.

    `pause_ms` pauses the whole room (the vendor is full: back-pressure, no attempt spent);
    `backoff_s` holds this job back (a transient failure, counted when `failure`).
    """
    now = rt.now()
    not_before = now + timedelta(seconds=backoff_s) if backoff_s else None
    fence = rt.jobs.move(
        job.id,
        S.SUBMITTING,
        S.QUEUED,
        now=now,
        fence=job.fence,
        detail={"reason": reason},
        not_before=not_before,
        submit_failures=job.submit_failures + int(failure),
        deadline_at=now + timedelta(seconds=rt.policy.current.max_wait_s),
    )
    rt.rooms.release(job.slot, job.holder)
    if fence is None:
        return False
    metrics.REQUEUES.labels(job.slot, reason).inc()
    log.info("job_requeued", reason=reason, backoff_s=backoff_s, pause_ms=pause_ms)
    if pause_ms:
        rt.rooms.pause(job.slot, ms=pause_ms)
        messages.admit(job.slot, delay_ms=pause_ms)
    if not_before is not None:
        messages.admit(job.slot, delay_ms=int(backoff_s * 1000) + 1)
    back = dataclasses.replace(job, status=S.QUEUED, fence=fence, not_before=not_before)
    rt.rooms.enqueue(job.slot, entry(rt, back))
    released(rt, job)
    return True


def record_outcome(rt: Runtime, room: str, *, ok: bool) -> None:
    """Count a vendor success or failure for the room's degradation (capacity answers never come here)."""
    _update_health(
        rt,
        room,
        lambda health, now, limit, policy: scheduling.observe(health, ok=ok, now=now, limit=limit, policy=policy),
    )


def refresh_health(rt: Runtime, room: str) -> None:
    """Close the room's ended windows, so a recovery is announced even while nothing runs there."""
    _update_health(
        rt, room, lambda health, now, limit, policy: scheduling.roll(health, now=now, limit=limit, policy=policy)
    )


HealthStep = Callable[[scheduling.Health, float, int, scheduling.DegradePolicy], scheduling.Health]


def _update_health(rt: Runtime, room: str, step: HealthStep) -> None:
    settings, now = rt.policy.current, rt.now()
    limit, policy = rt.policy.model_limit(room), waiting.degrade_policy(settings)
    before: list[int | None] = []

    def change(stored: dict[str, Any] | None) -> dict[str, Any]:
        health = scheduling.Health() if stored is None else scheduling.Health(**stored)
        before[:] = [health.degraded_to]
        return dataclasses.asdict(step(health, now.timestamp(), limit, policy))

    after = rt.rooms.update_health(room, change)
    if after["degraded_to"] != before[0]:
        _announce(room, limit, before[0], after["degraded_to"])


def _announce(room: str, limit: int, old: int | None, new: int | None) -> None:
    effective = limit if new is None else new
    direction = "down" if new is not None and (old is None or new < old) else "up"
    metrics.DEGRADATIONS.labels(room, direction).inc()
    log.warning("room_limit_changed", room=room, limit=limit, effective_limit=effective, direction=direction)
