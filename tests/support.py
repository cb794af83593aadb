"""Small helpers the tests share (not fixtures): waiting on the database, making users."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
# Webhook receivers listen here (HookReceiver), also allow-listed.
HOOKS_PORT = free_port()
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


@dataclass(frozen=True)
class Hook:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


class HookReceiver:
    """A webhook subscriber on loopback: records every POST; `fail(path, n, status)` makes the next
    `n` POSTs to `path` answer `status` (500 by default), then 204."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._received: list[Hook] = []
        self._failures: dict[str, list[int]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    pending = receiver._failures.get(self.path, [])
                    status = pending.pop(0) if pending else 204
                    receiver._received.append(Hook(self.path, dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, path: str, times: int, status: int = 500) -> None:
        with self._lock:
            self._failures[path] = [status] * times

    def received(self, path: str | None = None) -> list[Hook]:
        with self._lock:
            return [h for h in self._received if path is None or h.path == path]

    def reset(self) -> None:
        with self._lock:
            self._received.clear()
            self._failures.clear()

    def start(self) -> HookReceiver:
        threading.Thread(target=self._server.serve_forever, name="hooks", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
