"""The time scale, and seed 001's published figures ("100个视频处理时间").

Seed 001's Pro row (plan concurrency 3) follows from every video running at the plan's concurrency:
100 x 720p in 42 min and 100 x 1080p in 4.2 h mean one 720p-10 s video takes 42 min x 3 / 100 =
75.6 s of vendor time and one 1080p-15 s video 453.6 s (6x); its mixed row then follows (2.45 h for
the published 2.5 h, 21 min for the published 22 min fast part). The bench keeps that 1 : 6 ratio and
maps 75.6 s to 0.5 s, so every vendor-side time (task durations, poll schedules, the worker's idle
back-off) is multiplied by SCALE: one second here stands for 151.2 s there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from domain.scheduling import PollSchedule

SEED_720P_S: Final = 42 * 60 * 3 / 100  # 75.6 s: seed 001, Pro, all 720p
SEED_1080P_S: Final = 4.2 * 3600 * 3 / 100  # 453.6 s: seed 001, Pro, all 1080p
VIDEO_720P_S: Final = 0.5
SCALE: Final = VIDEO_720P_S / SEED_720P_S
VIDEO_1080P_S: Final = SEED_1080P_S * SCALE  # 3.0 s
DRAMATIQ_IDLE_MS: Final = 1000  # dramatiq's default worker_timeout, what `genq worker` runs with


@dataclass(frozen=True)
class SeedRow:
    """One plan's row of seed 001's table, in seconds."""

    name: str
    cap: int
    all_720p_s: float
    all_1080p_s: float
    mixed_s: float
    fast_s: float

    @property
    def mixed_bound_s(self) -> float:
        """The table's own lower bound for 50 : 50: half of each single-resolution row."""
        return (self.all_720p_s + self.all_1080p_s) / 2

    @property
    def fast_bound_s(self) -> float:
        return self.all_720p_s / 2


SEED_PRO: Final = SeedRow("seed Pro", 3, 42 * 60, 4.2 * 3600, 2.5 * 3600, 22 * 60)
SEED_PRO_PLUS: Final = SeedRow("seed Pro+", 5, 25 * 60, 2.8 * 3600, 1.7 * 3600, 12 * 60)


def scaled_schedule(text: str) -> str:
    """A poll schedule (`"0:3,60:5,180:8"`) with every time multiplied by SCALE."""
    steps = PollSchedule.parse(text, max_polls=1).steps
    return ",".join(f"{start * SCALE:.6g}:{interval * SCALE:.6g}" for start, interval in steps)


def ideal_polls(schedule: PollSchedule, vendor_s: float) -> int:
    """Polls a poller with no overhead makes for a task of `vendor_s`: the last one sees it done."""
    elapsed, polls = 0.0, 0
    while True:
        elapsed += schedule.interval(elapsed)
        polls += 1
        if elapsed >= vendor_s:
            return polls


def worker_idle_ms() -> int:
    """Dramatiq's idle back-off cap (a delayed poll or a submit waits up to this), scaled like the rest."""
    return max(round(DRAMATIQ_IDLE_MS * SCALE), 1)
