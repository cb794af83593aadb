"""Where a job's time went, from its stored state moves (SPEC §8: every job answer has `timings`).

Each span is the time the job spent in some states, summed over every stay (a job backs off to
`queued` and is admitted again), from the event that entered the state to the next event. A span
not yet ended runs to `now`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.jobs import TERMINAL, JobStatus

S = JobStatus
SPANS: dict[str, frozenset[JobStatus]] = {
    "moderation": frozenset({S.PENDING_AUDIT}),  # created -> moderation's verdict
    "queue": frozenset({S.QUEUED}),  # -> admitted (queued -> submitting), every stay summed
    "vendor": frozenset({S.SUBMITTING, S.PROCESSING}),  # admitted -> the vendor's task ended
    "archiving": frozenset({S.ARCHIVING}),  # -> results published (or archiving gave up)
}


@dataclass(frozen=True)
class Timings:
    moderation: float
    queue: float
    vendor: float
    archiving: float
    total: float  # created -> ended (or now, while it runs)


def timings(moves: Sequence[tuple[JobStatus, datetime]], *, now: datetime) -> Timings:
    """`moves`: (status entered, at) in order, the first being the job's creation."""
    spent = dict.fromkeys(SPANS, 0.0)
    for (status, start), end in zip(moves, _ends(moves, now), strict=True):
        for name, states in SPANS.items():
            if status in states:
                spent[name] += (end - start).total_seconds()
    total = ((moves[-1][1] if moves[-1][0] in TERMINAL else now) - moves[0][1]).total_seconds() if moves else 0.0
    return Timings(**{name: round(value, 3) for name, value in spent.items()}, total=round(total, 3))


def _ends(moves: Sequence[tuple[JobStatus, datetime]], now: datetime) -> Iterable[datetime]:
    yield from (at for _, at in moves[1:])
    yield moves[-1][1] if moves[-1][0] in TERMINAL else now
