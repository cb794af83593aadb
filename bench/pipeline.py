"""The pipeline table (issue 11): how fast one `genq worker` process drains jobs already queued, with
the vendor answering at once, beside raw Dramatiq's no-op messages on the same Redis.

The worker is a process of its own (`bench.worker genq`: every queue but maintenance); the KIE
simulator (every phase 0 s, no rate limit) and the API that fills the queue run in this process.
Jobs are prompt-only sora-2-pro 720p-10 s videos, sent through POST /v1/batches while their room is
paused (the worker puts each in the room), then released at once. No slot limit binds (the model
limit and the user's plan cap are above any round); the first poll is due 1 ms after the submit
(through Dramatiq's delay queue, as every poll goes).

Rounds, each bounded in time so that `make bench` stays short whatever the engine's speed:
- warm-up (WARMUP_JOBS), so that RSS "before" is a worker that has run jobs;
- the rest: rounds of 100-1,000 jobs (about ROUND_S each) until RSS_JOBS have run, or RSS_BUDGET_S is spent; RSS
  after them, and the database work and CPU per job counted over them (each job enqueued, run and
  ended within its round);
- the drain, last: DRAIN_JOBS queued, released at once; jobs/s from the release to the last success,
  or to DRAIN_CAP_S if that comes first. The worker is stopped there; what the cap left is marked
  cancelled in the database (the bench's own jobs, one UPDATE), so no later run finds it queued.
Raw Dramatiq runs after the genq worker has stopped: one process at a time on the machine.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dramatiq
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import func, select, update

from api.app import create_app
from bench.procs import Child, Stats, child, stop
from bench.scenarios import member
from bench.services import flush
from bench.worker import NOOP_ACTOR, NOOP_QUEUE
from domain.jobs import TERMINAL
from infra.accounts import NewUser
from infra.db import job_events, jobs
from infra.embedded import free_port
from infra.resources import Resources
from infra.serving import ServerThread
from infra.settings import Secret, Settings
from vendors.sim.common import asgi_app
from vendors.sim.kie import KieSim
from workers import broker, messages

ROOM = "kie:sora-2-pro"  # the API table's unrun submits wait in kie:sora-2 and runninghub
PLAN = "bench"
WARMUP_JOBS = 100
DRAIN_JOBS = 2_000
DRAIN_CAP_S = 45.0
RSS_JOBS = 5_000
RSS_ROUND = (100, 1_000)  # jobs per rest round: about ROUND_S of the last round's rate, within these
ROUND_S = 10.0
RSS_BUDGET_S = 240.0  # 5,000 jobs at ~25 jobs/s; a slower machine measures fewer and says so
NOOP_MESSAGES = 10_000
BATCH_ROWS = 500
COUNTED = ("statements", "transactions", "pings", "messages")
VIDEO_INPUT = {"model": "sora-2-pro", "resolution": "720p", "duration": 10, "prompt": "a red coat in the wind"}


@dataclass(frozen=True)
class Drain:
    queued: int
    done: int
    seconds: float  # the release -> the last success (or -> the cap)
    capped: bool

    @property
    def rate(self) -> float:
        return self.done / self.seconds


@dataclass(frozen=True)
class Pipeline:
    threads: int
    drain: Drain
    per_job: dict[str, float]  # the worker's, per job of the rest rounds: COUNTED and cpu_s
    rss_jobs: int  # the rest rounds' jobs, run between the two RSS readings
    rss_before: int  # after the warm-up round
    rss_after: int
    noop_messages: int
    noop_s: float

    @property
    def noop_rate(self) -> float:
        return self.noop_messages / self.noop_s

    @property
    def rss_growth(self) -> float:
        return self.rss_after / self.rss_before - 1


@dataclass
class Rig:
    resources: Resources
    api: TestClient[Litestar]
    user: NewUser
    worker: Child
    stats: Stats

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.user.api_key}"}


def measure(settings: Settings, *, threads: int) -> Pipeline:
    flush(settings)
    key = "kie-bench-" + secrets.token_hex(16)
    sim = KieSim(api_keys=[key], seed=1)
    sim.configure(waiting_s=0.0, queuing_s=0.0, generating_s=0.0, rate_limit=None, media_scale=0.05)
    server = ServerThread(asgi_app(sim.handle), host="127.0.0.1", port=free_port()).start()
    try:
        settings = _settings(settings, server, key)
        with _rig(settings, threads) as rig:
            _round(rig, WARMUP_JOBS)
            rss_before = rig.worker.rss_bytes()
            rounds, per_job = _rest(rig, RSS_JOBS)
            rss_after = rig.worker.rss_bytes()
            drain = _drain(rig)
        noop_s = _noop(settings, threads)
    finally:
        server.stop()
    return Pipeline(threads, drain, per_job, rounds, rss_before, rss_after, NOOP_MESSAGES, noop_s)


def _settings(settings: Settings, server: ServerThread, key: str) -> Settings:
    return settings.with_(
        kie_base_url=server.url,
        kie_api_key=Secret(key),
        kie_callback_url="",
        kie_concurrency_sora_2_pro=RSS_JOBS,
        poll_schedule_video_720p="0:0.001",
        plans=f"{settings.plans},{PLAN}:0:0:{RSS_JOBS}:{BATCH_ROWS}",
        fetch_allowlist=f"127.0.0.1:{server.port}",
        log_level=Settings().log_level,  # what a production worker logs (to a file here)
    )


@contextmanager
def _rig(settings: Settings, threads: int) -> Iterator[Rig]:
    resources = Resources.open(settings)
    resources.storage.ensure_bucket()
    the_broker = broker.install(broker.redis_broker(settings.redis_url))
    stats_file = settings.var_dir / "worker-genq.json"
    try:
        with (
            child("worker-genq", ["-m", "bench.worker", "genq", str(threads), str(stats_file)], settings) as worker,
            TestClient(app=create_app(resources)) as api,
        ):
            _wait(stats_file.exists, what="the worker to start", timeout_s=60, proc=worker)
            yield Rig(resources, api, member(resources, PLAN), worker, Stats(worker, stats_file))
    finally:
        the_broker.close()
        resources.close()


def _drain(rig: Rig) -> Drain:
    batches = _fill(rig, DRAIN_JOBS)
    t0 = _release(rig)
    deadline = time.monotonic() + DRAIN_CAP_S
    while (done := _ended(rig, batches)) < DRAIN_JOBS and time.monotonic() < deadline:
        rig.worker.check()
        time.sleep(0.25)
    if done == DRAIN_JOBS:
        return Drain(DRAIN_JOBS, done, _last_success(rig, batches) - t0, capped=False)
    seconds = time.time() - t0
    stop(rig.worker.proc)
    done = _ended(rig, batches)
    with rig.resources.engine.begin() as conn:  # nothing runs them now; no later run should find them
        left = jobs.c.batch_id.in_(batches) & jobs.c.status.not_in([s.value for s in TERMINAL])
        conn.execute(update(jobs).where(left).values(status="cancelled", error_code="bench_cap"))
    return Drain(DRAIN_JOBS, done, seconds, capped=True)


def _rest(rig: Rig, wanted: int) -> tuple[int, dict[str, float]]:
    """Whole rounds until `wanted` jobs have run or the budget is spent; what each job cost the worker."""
    before, cpu = rig.stats.read(), rig.worker.cpu_s()
    ran, size, deadline = 0, RSS_ROUND[0], time.monotonic() + RSS_BUDGET_S
    while ran < wanted and (ran == 0 or time.monotonic() < deadline):
        started, count = time.monotonic(), min(size, wanted - ran)
        ran += _round(rig, count)
        rate = count / (time.monotonic() - started)
        size = int(min(max(rate * ROUND_S, RSS_ROUND[0]), RSS_ROUND[1]))
    after = rig.stats.read()
    per_job = {name: (after[name] - before[name]) / ran for name in COUNTED}
    return ran, per_job | {"cpu_s": (rig.worker.cpu_s() - cpu) / ran}


def _round(rig: Rig, count: int) -> int:
    batches = _fill(rig, count)
    _release(rig)
    _wait(lambda: _ended(rig, batches) == count, what=f"{count} jobs to end", timeout_s=600, proc=rig.worker)
    return count


def _fill(rig: Rig, count: int) -> list[str]:
    """Pause the room, submit `count` jobs in batches, wait until every one waits in the room."""
    rooms = rig.resources.rooms
    rooms.pause(ROOM, ms=3_600_000)
    messages.admit(ROOM)  # Redis was flushed before the first round: the room is rebuilt first
    _wait(lambda: rooms.ready(ROOM), what="the room to be rebuilt", timeout_s=60, proc=rig.worker)
    batches = []
    for first in range(0, count, BATCH_ROWS):
        rows: list[dict[str, Any]] = [{"input": {}} for _ in range(min(BATCH_ROWS, count - first))]
        body = {"defaults": {"kind": "video", "input": VIDEO_INPUT}, "rows": rows}
        resp = rig.api.post("/v1/batches", json=body, headers=rig.auth)
        if resp.status_code != 201:
            raise RuntimeError(f"POST /v1/batches answered {resp.status_code}: {resp.text}")
        batches.append(str(resp.json()["id"]))
    waiting = lambda: len(rooms.snapshot(ROOM).waiting) == count  # noqa: E731
    _wait(waiting, what=f"{count} jobs to wait in the room", timeout_s=120, proc=rig.worker)
    return batches


def _release(rig: Rig) -> float:
    t0 = time.time()
    rig.resources.rooms.resume(ROOM)
    messages.admit(ROOM)
    return t0


def _ended(rig: Rig, batches: Sequence[str]) -> int:
    """How many of these batches' jobs have succeeded; a job that ended otherwise stops the bench."""
    ours = jobs.c.batch_id.in_(batches)
    other = [s.value for s in TERMINAL if s.value != "succeeded"]
    failed = select(jobs.c.id, jobs.c.status, jobs.c.error_code).where(ours, jobs.c.status.in_(other)).limit(5)
    succeeded = select(func.count()).where(ours, jobs.c.status == "succeeded")
    with rig.resources.engine.connect() as conn:
        bad = conn.execute(failed).all()
        if bad:
            raise RuntimeError("jobs did not succeed, nothing to measure: " + "; ".join(map(str, bad)))
        return int(conn.execute(succeeded).scalar_one())


def _last_success(rig: Rig, batches: Sequence[str]) -> float:
    ours = select(jobs.c.id).where(jobs.c.batch_id.in_(batches))
    query = select(func.max(job_events.c.at)).where(
        job_events.c.job_id.in_(ours), job_events.c.to_status == "succeeded"
    )
    with rig.resources.engine.connect() as conn:
        return float(conn.execute(query).scalar_one().timestamp())


def _noop(settings: Settings, threads: int) -> float:
    """Raw Dramatiq: NOOP_MESSAGES queued first, then one worker drains them; first start to last end."""
    the_broker = broker.redis_broker(settings.redis_url)
    try:
        for _ in range(NOOP_MESSAGES):
            the_broker.enqueue(_noop_message())
    finally:
        the_broker.close()
    stats_file = settings.var_dir / "worker-noop.json"
    with child("worker-noop", ["-m", "bench.worker", "noop", str(threads), str(stats_file)], settings) as worker:
        _wait(stats_file.exists, what="the no-op worker to start", timeout_s=60, proc=worker)
        found = Stats(worker, stats_file).wait(
            lambda s: s["messages"] >= NOOP_MESSAGES, timeout_s=300, what="the no-op messages"
        )
    return float(found["last_done"] - found["first_start"])


def _noop_message() -> dramatiq.Message[Any]:
    return dramatiq.Message(queue_name=NOOP_QUEUE, actor_name=NOOP_ACTOR, args=(), kwargs={}, options={})


def _wait(probe: Callable[[], bool], *, what: str, timeout_s: float, proc: Child) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        proc.check()
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"gave up after {timeout_s:.0f} s waiting for {what}; {proc.name}'s log ends:\n{proc.tail()}"
            )
        time.sleep(0.1)
