"""Batches (seed 001): rows from defaults + overrides, their progress, an estimate, and what failed.

A batch stores only what its jobs cannot say (running, paused or cancelled); everything else is
read from each row's latest job (a retried row's newest one). Pure: the clock is passed in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from domain.errors import DomainError
from domain.jobs import TERMINAL, JobStatus


class BatchStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # nothing new starts; running rows finish
    COMPLETED = "completed"  # every row's latest job has ended (read, never stored)
    CANCELLED = "cancelled"


class BatchTooLarge(DomainError):
    code = "batch_too_large"

    def __init__(self, rows: int, limit: int, plan: str) -> None:
        super().__init__(
            f"{rows} rows; the {plan} plan allows at most {limit} in one batch", rows=rows, limit=limit, plan=plan
        )


def row_input(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A row's input: the defaults, updated field by field with the row's own fields."""
    return {**defaults, **overrides}


def check_size(rows: int, *, limit: int, plan: str) -> None:
    if rows > limit:
        raise BatchTooLarge(rows, limit, plan)


def status_of(stored: str, latest: Iterable[JobStatus]) -> BatchStatus:
    if stored == BatchStatus.CANCELLED:
        return BatchStatus.CANCELLED
    if all(status in TERMINAL for status in latest):
        return BatchStatus.COMPLETED
    return BatchStatus(stored)


@dataclass(frozen=True)
class Progress:
    total: int
    counts: Mapping[str, int]  # by the status of each row's latest job
    finished: int

    @property
    def fraction(self) -> float:
        return self.finished / self.total if self.total else 1.0


def progress(latest: Sequence[JobStatus]) -> Progress:
    counts = Counter(str(status) for status in latest)
    return Progress(len(latest), dict(counts), sum(1 for status in latest if status in TERMINAL))


def estimate(
    started_at: datetime, finished_at: Sequence[datetime], total: int, *, now: datetime, running: bool
) -> datetime | None:
    """When the last row should end, from the rate rows have ended at so far; None when that says
    nothing (no row ended yet, paused, cancelled) — never a guess without data."""
    done = len(finished_at)
    if not running or done == 0 or done >= total:
        return None
    last = max(finished_at)
    per_row = max((last - started_at).total_seconds(), 0.0) / done
    return max(now, last) + timedelta(seconds=per_row * (total - done))


# Failures that another try may well get past: time, capacity, a vendor's transient trouble, a
# lost answer, a copy that failed. Refusals of the input itself (moderation, a vendor's content
# policy, a bad request) will fail again.
_NOT_WORTH = ("moderation", "rejected", "invalid", "policy", "not_configured", "unsupported")


def retry_worthy(code: str) -> bool:
    return not any(word in code for word in _NOT_WORTH)


@dataclass(frozen=True)
class FailureGroup:
    code: str
    count: int
    retry_worthy: bool


def failures(codes: Iterable[str | None]) -> list[FailureGroup]:
    """Failed rows grouped by error code, the commonest first."""
    counted = Counter(code or "unknown" for code in codes)
    return [FailureGroup(code, n, retry_worthy(code)) for code, n in counted.most_common()]
