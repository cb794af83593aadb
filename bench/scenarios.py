"""The two scenarios: seed 001's batch for one user of a plan, and a queue behind a single slot.

Both fill the room while it admits nobody (a vendor pause), then open it at t0: the whole queue is
there at once, as seed 001's batch is, and the submission time (real HTTP requests) stays out of the
scaled timings.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from bench.harness import Harness, wait_until
from domain.jobs import TERMINAL
from infra.accounts import NewUser
from infra.db import jobs, users
from infra.resources import Resources
from workers import messages

ROOM = "kie:sora-2-pro"
FAST = {"resolution": "720p", "duration": 10}  # batch_fast
SLOW = {"resolution": "1080p", "duration": 15}  # batch_slow


def video(variant: dict[str, Any], *, batch: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "video", "input": {"model": "sora-2-pro", "prompt": "a red coat in the wind"}}
    body["input"] |= variant
    return body | ({"priority": "batch"} if batch else {})


def seed_batch(count: int = 100) -> list[dict[str, Any]]:
    """Seed 001's 50 : 50 batch, interleaved slow first (arrival order must not be what sorts it)."""
    return [video(SLOW if i % 2 == 0 else FAST, batch=True) for i in range(count)]


def member(resources: Resources, plan: str, credits_: int = 1_000_000) -> NewUser:
    """A new user, a member of `plan` for 30 days (its cap and fair-share weight come from the plan)."""
    now = datetime.now(UTC)
    user = resources.accounts.create_user("139" + str(secrets.randbelow(10**8)).zfill(8), credits_, now=now)
    with resources.engine.begin() as conn:
        values = {"plan": plan, "member_until": now + timedelta(days=30)}
        conn.execute(update(users).where(users.c.id == user.user_id).values(**values))
    return user


def run_queue(
    h: Harness, user: NewUser, bodies: Sequence[dict[str, Any]], *, timeout_s: float, batch_rows: int = 0
) -> tuple[float, float]:
    """Fill the room, open it, wait until every job ends; returns t0 (the opening, epoch seconds) and
    how long the submissions took. With `batch_rows`, the bodies go in through POST /v1/batches, that
    many rows at a time (the plan's batch size), as seed 001's users submit them."""
    submit_s = _fill(h, user, bodies, batch_rows)
    t0 = time.time()
    h.resources.rooms.resume(ROOM)
    messages.admit(ROOM)
    wait_until(lambda: _ended(h, user) == len(bodies), timeout_s=timeout_s, what="every job to end", every_s=0.25)
    return t0, submit_s


def _fill(h: Harness, user: NewUser, bodies: Sequence[dict[str, Any]], batch_rows: int) -> float:
    """Pause the room (Redis was flushed: have it rebuilt first), submit every body, wait until all wait."""
    h.resources.rooms.pause(ROOM, ms=3_600_000)
    messages.admit(ROOM)
    wait_until(lambda: h.resources.rooms.ready(ROOM), timeout_s=30, what="the room to be rebuilt")
    started = time.monotonic()
    if batch_rows:
        for first in range(0, len(bodies), batch_rows):
            _post_batch(h, user, bodies[first : first + batch_rows])
    else:
        for body in bodies:
            _post(h, user, body)
    count = len(bodies)
    wait_until(lambda: len(h.resources.rooms.snapshot(ROOM).waiting) == count, timeout_s=60, what="every job to wait")
    return time.monotonic() - started


def _post(h: Harness, user: NewUser, body: dict[str, Any]) -> str:
    resp = h.api.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {user.api_key}"})
    if resp.status_code != 202:
        raise RuntimeError(f"POST /v1/jobs answered {resp.status_code}: {resp.text}")
    return str(resp.json()["id"])


def _post_batch(h: Harness, user: NewUser, bodies: Sequence[dict[str, Any]]) -> str:
    """One batch: the shared fields as defaults, each body's own (resolution, duration) as its row."""
    shared = {"model": "sora-2-pro", "prompt": "a red coat in the wind"}
    rows = [{"input": {k: v for k, v in body["input"].items() if k not in shared}} for body in bodies]
    batch = {"defaults": {"kind": "video", "input": shared}, "rows": rows}
    resp = h.api.post("/v1/batches", json=batch, headers={"Authorization": f"Bearer {user.api_key}"})
    if resp.status_code != 201:
        raise RuntimeError(f"POST /v1/batches answered {resp.status_code}: {resp.text}")
    return str(resp.json()["id"])


def _ended(h: Harness, user: NewUser) -> int:
    query = select(func.count()).where(jobs.c.user_id == user.user_id, jobs.c.status.in_([s.value for s in TERMINAL]))
    with h.resources.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
