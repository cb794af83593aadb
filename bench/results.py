"""The quantities the tables show, computed from the runs: pure arithmetic, no I/O."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from bench.measure import JobRun


@dataclass(frozen=True)
class Batch:
    """Seed 001's batch for one user: `cap` jobs at once at most (min(plan cap, model limit)), of
    which `slow_cap` 1080p-15 s ones (the room's threshold for them)."""

    plan: str
    cap: int
    slow_cap: int
    t0: float
    runs: tuple[JobRun, ...]
    status_calls: int
    at_vendor: int  # the most tasks the vendor ran at once
    submit_s: float  # the 100 POSTs, before t0

    def vendor_s(self, *, fast: bool | None = None) -> float:
        return sum(run.vendor_s for run in self.runs if fast is None or run.fast is fast)

    @property
    def makespan(self) -> float:
        return max(run.ready for run in self.runs) - self.t0

    @property
    def fast_ready(self) -> float:
        return max(run.ready for run in self.runs if run.fast) - self.t0

    @property
    def bound(self) -> float:
        return self.vendor_s() / self.cap

    @property
    def fast_bound(self) -> float:
        return self.vendor_s(fast=True) / self.cap

    @property
    def threshold_bound(self) -> float:
        """The bound once the room's 1080p-15 s threshold is counted too."""
        return max(self.bound, self.vendor_s(fast=False) / self.slow_cap)

    @property
    def utilisation(self) -> float:
        return self.vendor_s() / (self.makespan * self.cap)

    @property
    def held(self) -> float:
        """Slot time held (admission to release) over the same capacity."""
        return sum(run.released - run.admitted for run in self.runs) / (self.makespan * self.cap)

    @property
    def calls_per_job(self) -> float:
        return self.status_calls / len(self.runs)

    @property
    def polls_per_job(self) -> float:
        return statistics.fmean(run.polls for run in self.runs)

    @property
    def ideal_polls_per_job(self) -> float:
        return statistics.fmean(run.ideal_polls for run in self.runs)

    @property
    def overheads(self) -> list[float]:
        """Per job, the slot time held beyond the vendor's time (the submit hop, the poll that sees it)."""
        return [run.released - run.admitted - run.vendor_s for run in self.runs]

    @property
    def detect_lags(self) -> list[float]:
        return [run.detect_lag for run in self.runs]


@dataclass(frozen=True)
class Handoff:
    """One slot, a queue behind it: each job's admission after the one before it let go."""

    runs: tuple[JobRun, ...]
    poll_interval_s: float

    @property
    def admissions(self) -> list[float]:
        """Release (leaving `processing`) to the next job's move `queued` -> `submitting`."""
        return [after.admitted - before.released for before, after in pairwise(self.runs)]

    @property
    def vendor_starts(self) -> list[float]:
        """Release to the next job's vendor task existing (after the submit message's hop)."""
        return [after.vendor_start - before.released for before, after in pairwise(self.runs)]

    @property
    def detect_lags(self) -> list[float]:
        return [run.detect_lag for run in self.runs]


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of them at or below it."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]
