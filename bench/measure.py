"""What a run left behind, read back: each job's moves (`job_events`) and its vendor task as the
simulator reports it (`recordInfo`: createTime, costTime). Status calls are counted from the
simulator's call log before the bench makes any of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select

from bench.harness import Harness
from bench.scale import ideal_polls
from bench.services import KIE_BASE_URL
from domain.jobs import JobKind
from infra import catalog
from infra.accounts import NewUser
from infra.db import job_events, jobs
from vendors.sim.kie import RECORD_PATH


@dataclass(frozen=True)
class JobRun:
    """One job's times (epoch seconds): admitted (queued -> submitting), released (processing ->
    archiving: the slot goes back), ready (succeeded), and its vendor task's start and length."""

    job_id: str
    resolution: str
    admitted: float
    released: float
    ready: float
    vendor_start: float
    vendor_s: float
    polls: int
    ideal_polls: int

    @property
    def fast(self) -> bool:
        return self.resolution == "720p"

    @property
    def detect_lag(self) -> float:
        """From the vendor finishing to genq noticing it (the poll that saw it done)."""
        return self.released - (self.vendor_start + self.vendor_s)


def status_calls(h: Harness) -> int:
    return sum(1 for call in h.sim.calls if call.path == RECORD_PATH)


def most_at_vendor(h: Harness) -> int:
    """The most tasks the vendor ran at one instant (the simulator's own count)."""
    return h.sim.max_concurrent(h.resources.settings.kie_api_key.reveal())


def runs(h: Harness, user: NewUser) -> list[JobRun]:
    """Every job of `user`, oldest admission first; a job that did not succeed stops the bench."""
    rows, moves = _jobs(h, user), _moves(h, user)
    failed = [f"{row['id']}: {row['status']} {row['error_code']}" for row in rows if row["status"] != "succeeded"]
    if failed:
        raise RuntimeError("jobs did not succeed, nothing to measure: " + "; ".join(failed[:5]))
    found = [_run(h, row, moves[row["id"]]) for row in rows]
    return sorted(found, key=lambda run: run.admitted)


def _run(h: Harness, row: Mapping[str, Any], moves: Mapping[tuple[str | None, str], float]) -> JobRun:
    start, length = _vendor_task(h, str(row["vendor_task_id"]))
    schedule = catalog.poll_schedule(h.resources.settings, JobKind.VIDEO, row["input"])
    return JobRun(
        job_id=str(row["id"]),
        resolution=str(row["input"]["resolution"]),
        admitted=moves[("queued", "submitting")],
        released=moves[("processing", "archiving")],
        ready=moves[("archiving", "succeeded")],
        vendor_start=start,
        vendor_s=length,
        polls=int(row["polls"]),
        ideal_polls=ideal_polls(schedule, length),
    )


def _jobs(h: Harness, user: NewUser) -> list[Mapping[str, Any]]:
    query = select(jobs).where(jobs.c.user_id == user.user_id)
    with h.resources.engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def _moves(h: Harness, user: NewUser) -> dict[str, dict[tuple[str | None, str], float]]:
    """job id -> (from, to) -> when it first happened."""
    ours = select(jobs.c.id).where(jobs.c.user_id == user.user_id)
    query = select(job_events).where(job_events.c.job_id.in_(ours)).order_by(job_events.c.id)
    moves: dict[str, dict[tuple[str | None, str], float]] = {}
    with h.resources.engine.connect() as conn:
        for event in conn.execute(query):
            moves.setdefault(event.job_id, {}).setdefault((event.from_status, event.to_status), event.at.timestamp())
    return moves


def _vendor_task(h: Harness, task_id: str) -> tuple[float, float]:
    """(createTime, costTime) in seconds, from the simulator's own recordInfo."""
    key = h.resources.settings.kie_api_key.reveal()
    request = httpx.Request(
        "GET", f"{KIE_BASE_URL}{RECORD_PATH}", params={"taskId": task_id}, headers={"Authorization": f"Bearer {key}"}
    )
    data = h.sim.handle(request).json()["data"]
    return data["createTime"] / 1000, data["costTime"] / 1000
