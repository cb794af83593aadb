"""Adaptive polling (SPEC §7): the interval grows with the time a job has been running."""

from __future__ import annotations

from dataclasses import dataclass


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
