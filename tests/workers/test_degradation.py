"""Degradation (seed 001): a (vendor, model) failing more than 30 % of a window runs at 60 % of its
limit, and recovers one step per healthy window. Capacity answers are back-pressure, never failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
from litestar import Litestar
from litestar.testing import TestClient

from domain.jobs import JobStatus
from infra import waiting
from infra.resources import Resources
from tests.support import auth, make_user, terminal_job
from vendors.sim.kie import KieSim
from workers import admission
from workers.runtime import Policy, Runtime

Client = TestClient[Litestar]
ROOM = "kie:sora-2"
VIDEO = {"kind": "video", "input": {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": "rain"}}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def run_batch(api: Client, resources: Resources, user: Any, n: int) -> list[Any]:
    ids = [api.post("/v1/jobs", json=VIDEO, headers=auth(user)).json()["id"] for _ in range(n)]
    return [terminal_job(resources, job_id, timeout_s=60) for job_id in ids]


def limits(runtime_: Runtime, clock: Clock) -> tuple[int, int]:
    return waiting.limits(runtime_.policy.current, runtime_.rooms, ROOM, now=clock.now)


def test_half_failing_runs_at_three_of_five_then_recovers_a_step_per_healthy_window(
    api: Client, resources: Resources, worker: dramatiq.Worker, kie_sim: KieSim, runtime_: Runtime
) -> None:
    clock = Clock()
    runtime_.clock = clock
    admin = resources.accounts.create_user("100", 0, now=clock.now, role="admin")
    changed = api.put("/v1/admin/config/kie_concurrency_sora_2", json={"value": "5"}, headers=auth(admin))
    assert changed.status_code == 200, changed.text
    window = timedelta(seconds=runtime_.settings.degrade_window_s)
    key = resources.settings.kie_api_key.reveal()
    kie_sim.configure(rate_limit=None, job_fail_rate=0.5)
    user = make_user(resources, credits=100_000, plan="enterprise")

    failing = run_batch(api, resources, user, 12)
    assert sum(j.status is JobStatus.FAILED for j in failing) / len(failing) > 0.3
    assert limits(runtime_, clock) == (5, 3)
    rooms = api.get("/v1/admin/scheduler", headers=auth(admin)).json()
    [seen] = [r for r in rooms if r["room"] == ROOM]
    assert (seen["limit"], seen["effective_limit"], seen["degraded"]) == (5, 3, True)
    clock.now += window  # an unhealthy window closes: still degraded
    assert limits(runtime_, clock) == (5, 3)

    kie_sim.configure(job_fail_rate=0.0)
    kie_sim.reset()
    assert {j.status for j in run_batch(api, resources, user, 10)} == {JobStatus.SUCCEEDED}
    assert kie_sim.max_concurrent(key) == 3  # the vendor saw the degraded limit

    ups = metric(api, 'genq_degradation_changes_total{direction="up",slot="kie:sora-2"}')
    clock.now += window
    assert limits(runtime_, clock) == (5, 4)
    admission.refresh_health(runtime_, ROOM)  # what maintenance does each pass: the change is announced
    assert metric(api, 'genq_degradation_changes_total{direction="up",slot="kie:sora-2"}') == ups + 1
    clock.now += window
    assert limits(runtime_, clock) == (5, 5)
    kie_sim.reset()
    assert {j.status for j in run_batch(api, resources, user, 10)} == {JobStatus.SUCCEEDED}
    assert kie_sim.max_concurrent(key) == 5


def test_capacity_answers_alone_never_degrade(
    api: Client, resources: Resources, worker: dramatiq.Worker, kie_sim: KieSim, runtime_: Runtime
) -> None:
    clock = Clock()
    runtime_.clock = clock
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(kie_concurrency_sora_2=5))
    kie_sim.configure(rate_limit=None, concurrency_limit=1)  # the vendor is full beyond one task
    user = make_user(resources, credits=100_000, plan="enterprise")

    finished = run_batch(api, resources, user, 8)

    assert {j.status for j in finished} == {JobStatus.SUCCEEDED}
    assert any(("submitting", "queued") in resources.jobs.events(j.id) for j in finished)  # it pushed back
    assert limits(runtime_, clock) == (5, 5)
    assert waiting.health(runtime_.rooms, ROOM).failures == 0


def metric(api: Client, series: str) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0
