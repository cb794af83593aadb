"""Small helpers the tests share (not fixtures): waiting on the database, making users."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from sqlalchemy import update

from domain.jobs import Job
from infra.accounts import NewUser
from infra.db import users
from infra.embedded import free_port
from infra.resources import Resources

T = TypeVar("T")

# Input images come from a loopback stand-in for the web (vendors/sim/samples.py), started for the
# session by tests/conftest.py on this port and allow-listed in the settings.
SAMPLES_PORT = free_port()
SAMPLES = f"http://127.0.0.1:{SAMPLES_PORT}/samples"
GARMENT = f"{SAMPLES}/garment.png"
POSE12_INPUT = {"image_url": GARMENT, "scene": "street", "category": "dress"}
# The simulators' outputs (photos, videos, 3D models) at a tenth of the vendors' size and length:
# real files, made in milliseconds. Tests of the full sizes set `media_scale` 1 themselves.
SIM_MEDIA_SCALE = 0.1


def wait_for(probe: Callable[[], T | None], *, timeout_s: float = 20.0, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def terminal_job(resources: Resources, job_id: str, *, timeout_s: float = 20.0) -> Job:
    def probe() -> Job | None:
        job = resources.jobs.get(job_id)
        return job if job is not None and job.terminal else None

    return wait_for(probe, timeout_s=timeout_s, what=f"job {job_id} to finish")


def make_user(resources: Resources, credits: int, phone: str = "13800000000", *, plan: str | None = None) -> NewUser:
    """A user with an API key and `credits`; with `plan`, a member of it for 30 days (its in-flight
    cap and fair-share weight follow the plan's concurrency; without one a user is on "free": 1)."""
    user = resources.accounts.create_user(phone, credits, now=datetime.now(UTC))
    if plan is not None:
        with resources.engine.begin() as conn:
            until = datetime.now(UTC) + timedelta(days=30)
            conn.execute(update(users).where(users.c.id == user.user_id).values(plan=plan, member_until=until))
    return user


def auth(user: NewUser) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.api_key}"}


def pose12_body(**changes: Any) -> dict[str, Any]:
    return {"kind": "model_pose12", "input": {**POSE12_INPUT, **changes}}


class HeldCall:
    """A transport in front of `handle` that holds the first request `matches` picks until
    `release()`: a vendor slow to answer one call. `started` is set once that call has arrived."""

    def __init__(self, handle: Callable[[httpx.Request], httpx.Response], matches: Callable[[str], bool]) -> None:
        self.started, self._released = threading.Event(), threading.Event()
        self._handle, self._matches = handle, matches
        self.transport = httpx.MockTransport(self._serve)

    def release(self) -> None:
        self._released.set()

    def _serve(self, request: httpx.Request) -> httpx.Response:
        if self._matches(request.url.path) and not self.started.is_set():
            self.started.set()
            self._released.wait(30)
        return self._handle(request)
