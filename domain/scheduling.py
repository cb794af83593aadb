"""The scheduler's rules (SPEC §6, §7): who waits in which class, in what order a (vendor, model)
waiting room admits, how much of a room a job may take, how a failing room degrades and recovers,
how long a retry waits, and how often a running job is polled. Pure: `now` (float seconds),
limits and plans are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

from domain.jobs import JobKind

# SPEC §6: heavier videos take less of a model's capacity. Keyed by the input's values ("720p", 10);
# `domain.video.Resolution` members are those strings, so they index this table too.
RESOLUTION_WEIGHT: Final[Mapping[str, float]] = {"720p": 1.0, "1080p": 0.65}
DURATION_WEIGHT: Final[Mapping[int, float]] = {10: 1.3, 15: 1.0}

_EPSILON: Final = 1e-9  # floor(20 x 0.65) must be 13 even when the product lands a hair below


class PriorityClass(StrEnum):
    INTERACTIVE = "interactive"  # default for POST /v1/jobs
    BATCH_FAST = "batch_fast"  # batch: 720p, 1080p-10 s, every non-video kind
    BATCH_SLOW = "batch_slow"  # batch: 1080p-15 s (seed 001's slow queue)


CLASS_RANK: Final[Mapping[PriorityClass, int]] = {
    PriorityClass.INTERACTIVE: 0,
    PriorityClass.BATCH_FAST: 1,
    PriorityClass.BATCH_SLOW: 2,
}


def priority_class(kind: JobKind, job_input: Mapping[str, Any], *, batch: bool) -> PriorityClass:
    if not batch:
        return PriorityClass.INTERACTIVE
    if kind is JobKind.VIDEO and str(job_input["resolution"]) == "1080p" and int(job_input["duration"]) == 15:
        return PriorityClass.BATCH_SLOW
    return PriorityClass.BATCH_FAST


def size_weight(kind: JobKind, job_input: Mapping[str, Any]) -> float:
    """Videos: resolution weight x duration weight; every other kind 1.0."""
    if kind is not JobKind.VIDEO:
        return 1.0
    return RESOLUTION_WEIGHT[str(job_input["resolution"])] * DURATION_WEIGHT.get(int(job_input["duration"]), 1.0)


def admission_threshold(limit: int, weight: float) -> int:
    """A job of this weight is admitted only while the room's in-flight count is below this."""
    if limit <= 0:
        return 0
    return min(limit, max(1, math.floor(limit * weight + _EPSILON)))


def plan_cap(plan_concurrency: Mapping[str, int], plan: str | None, *, member: bool) -> int:
    """The user's in-flight cap across all vendors; a lapsed or unknown plan counts as "free"."""
    if member and plan is not None and plan in plan_concurrency:
        return plan_concurrency[plan]
    return plan_concurrency.get("free", 1)


@dataclass(frozen=True)
class Waiting:
    """One job in a (vendor, model) waiting room."""

    job_id: str
    user_id: str
    cls: PriorityClass
    arrival: float  # seconds; earlier first within a user and as the last tie-break
    weight: float = 1.0  # size_weight of the job's variant
    not_before: float = 0.0  # not admissible before this time (a back-off after a transient error)


@dataclass(frozen=True)
class FairShare:
    """Start-time fair queuing state of one room: a user's next job starts at its finish tag or the
    room's virtual clock, whichever is later, so an idle user neither banks credit nor starves."""

    vclock: float = 0.0
    finish: Mapping[str, float] = field(default_factory=dict)  # user -> finish tag


def start_tag(share: FairShare, user_id: str) -> float:
    return max(share.finish.get(user_id, 0.0), share.vclock)


def charged(share: FairShare, user_id: str, weight: int) -> FairShare:
    """The state after admitting one job of `user_id`, whose fair-share weight is `weight` (>= 1).
    Finish tags the clock has passed are dropped: they mean the same as no tag, and the state stays
    as small as the set of users ahead of the clock."""
    if weight < 1:
        raise ValueError(f"a fair-share weight is at least 1, not {weight}")
    start = start_tag(share, user_id)
    ahead = {user: tag for user, tag in share.finish.items() if tag > start}
    return FairShare(vclock=start, finish={**ahead, user_id: start + 1 / weight})


@dataclass(frozen=True)
class RoomView:
    limit: int  # the room's effective limit now (after degradation)
    in_flight: int  # live slots held now
    share: FairShare
    weights: Mapping[str, int]  # user -> fair-share weight (plan concurrency, >= 1; missing -> 1)


def ordered(room: RoomView, waiting: Iterable[Waiting]) -> list[Waiting]:
    """The admission order if no one else arrives: class rank, then fair share between users (a
    simulated start-time fair queue), then arrival. A user's jobs keep their arrival order."""
    return list(_in_order(room, waiting))


def _in_order(room: RoomView, waiting: Iterable[Waiting]) -> Iterator[Waiting]:
    """`ordered`, one job at a time: a caller that stops at the first job it can use pays for the
    sort and the steps up to it, not for the whole room."""
    queues: dict[PriorityClass, dict[str, list[Waiting]]] = {}
    for job in sorted(waiting, key=lambda w: (w.arrival, w.job_id), reverse=True):  # pop() takes the earliest
        queues.setdefault(job.cls, {}).setdefault(job.user_id, []).append(job)
    share = room.share
    for cls in sorted(queues, key=CLASS_RANK.__getitem__):
        users = queues[cls]
        while users:
            # rounded: tags within 1e-9 tie (three 1/3 steps drift), so the tie-breaks stay exact
            user = min(users, key=lambda u: (round(start_tag(share, u), 9), users[u][-1].arrival, u))
            yield users[user].pop()
            share = charged(share, user, max(1, room.weights.get(user, 1)))
            if not users[user]:
                del users[user]


def choose(room: RoomView, waiting: Iterable[Waiting], *, now: float, capped: Collection[str] = ()) -> Waiting | None:
    """The next job to admit now, or None. Work-conserving: a job that may not start yet (its user at
    the plan cap, backing off, or too heavy for the room's current load) keeps its place and the
    first admissible job behind it goes instead."""
    if room.in_flight >= room.limit:
        return None
    for job in _in_order(room, waiting):
        if job.user_id in capped or now < job.not_before:
            continue
        if room.in_flight < admission_threshold(room.limit, job.weight):
            return job
    return None


@dataclass(frozen=True)
class DegradePolicy:
    """Seed 001: per (vendor, model), over tumbling windows."""

    window_s: float = 60.0
    threshold: float = 0.3  # failure rate above which the room degrades
    factor: float = 0.6  # degraded limit = max(1, floor(limit * factor))   (5 -> 3)
    min_samples: int = 5  # a window with fewer outcomes than this never degrades

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.min_samples < 1:
            raise ValueError("a degrade window is positive and needs at least one outcome")


@dataclass(frozen=True)
class Health:
    """One room's current window and degraded limit. Capacity answers (busy, queue full, 429) are not
    outcomes: callers report only successes and real failures."""

    window_start: float = 0.0
    failures: int = 0
    total: int = 0
    degraded_to: int | None = None  # None: the full limit applies


def _unhealthy(failures: int, total: int, policy: DegradePolicy) -> bool:
    return total >= policy.min_samples and failures / total > policy.threshold


def _degraded(current: int | None, limit: int, policy: DegradePolicy) -> int:
    """Degrade to the policy's value, never back up: a lower degraded value already set stays."""
    target = max(1, math.floor(limit * policy.factor + _EPSILON))
    return target if current is None else min(current, target)


def _recovered(current: int | None, steps: int, limit: int) -> int | None:
    if current is None or current + steps >= limit:
        return None
    return current + steps


def _windows_ended(health: Health, now: float, window_s: float) -> int:
    """How many windows ended by `now` (window k ends at window_start + (k + 1) x window_s)."""
    ended = max(0, math.floor((now - health.window_start) / window_s))
    while ended > 0 and health.window_start + ended * window_s > now:
        ended -= 1
    while health.window_start + (ended + 1) * window_s <= now:
        ended += 1
    return ended


def roll(health: Health, *, now: float, limit: int, policy: DegradePolicy) -> Health:
    """Close every window that ended by `now`: each healthy one (empty ones included) recovers one step
    of the limit; an unhealthy one keeps the room degraded. The new window starts on the latest
    boundary <= now."""
    if health.window_start == 0 and health.total == 0:
        return replace(health, window_start=now)
    ended = _windows_ended(health, now, policy.window_s)
    if ended == 0:
        return health
    degraded = health.degraded_to
    if _unhealthy(health.failures, health.total, policy):
        degraded = _recovered(_degraded(degraded, limit, policy), ended - 1, limit)
    else:
        degraded = _recovered(degraded, ended, limit)
    return Health(window_start=health.window_start + ended * policy.window_s, degraded_to=degraded)


def observe(health: Health, *, ok: bool, now: float, limit: int, policy: DegradePolicy) -> Health:
    """Count one success or failure; the room degrades at once when the current window turns unhealthy."""
    rolled = roll(health, now=now, limit=limit, policy=policy)
    failures, total = rolled.failures + (not ok), rolled.total + 1
    degraded = rolled.degraded_to
    if _unhealthy(failures, total, policy):
        degraded = _degraded(degraded, limit, policy)
    return replace(rolled, failures=failures, total=total, degraded_to=degraded)


def effective_limit(health: Health, limit: int) -> int:
    if health.degraded_to is None or limit < 1:
        return limit
    return min(limit, max(1, health.degraded_to))


def retry_wait(attempt: int, waits: Sequence[float]) -> float | None:
    """The back-off before retry number `attempt` (1-based); None once the attempts are spent."""
    if attempt < 1:
        raise ValueError(f"retries count from 1, not {attempt}")
    return waits[attempt - 1] if attempt <= len(waits) else None


# Adaptive polling (SPEC §7): the interval grows with the time a job has been running.


@dataclass(frozen=True)
class PollSchedule:
    """`steps` are (from_elapsed_s, interval_s), ascending; the last step applies forever."""

    steps: tuple[tuple[float, float], ...]
    max_polls: int

    def __post_init__(self) -> None:
        if not self.steps or self.steps[0][0] != 0:
            raise ValueError("a poll schedule starts at elapsed 0")
        if any(a[0] >= b[0] for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError("poll schedule steps must ascend")
        if any(interval <= 0 for _, interval in self.steps):
            raise ValueError("poll intervals are positive")

    def interval(self, elapsed_s: float) -> float:
        current = self.steps[0][1]
        for start, interval in self.steps:
            if elapsed_s >= start:
                current = interval
        return current

    @classmethod
    def parse(cls, text: str, *, max_polls: int) -> PollSchedule:
        """`"0:2,30:5,120:10"` → poll every 2 s, from 30 s every 5 s, from 120 s every 10 s."""
        steps = []
        for part in text.split(","):
            start, _, interval = part.strip().partition(":")
            steps.append((float(start), float(interval)))
        return cls(tuple(steps), max_polls)
