"""Admission: waiting rooms that admit at release, in priority, fair-share and arrival order, within
every plan's cap, with queue positions and reasons. Real Redis broker, database, simulators."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import dramatiq
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import select

from domain.jobs import JobStatus
from infra.db import job_events
from infra.resources import Resources
from tests.support import auth, make_user, pose12_body, terminal_job, wait_for
from vendors.sim.kie import KieSim
from vendors.sim.runninghub import RunningHubSim
from workers import admission, messages
from workers.runtime import Policy, Runtime

Client = TestClient[Litestar]
ROOM = "kie:sora-2-pro"


def video(
    resolution: str = "720p", duration: int = 10, *, batch: bool = False, model: str = "sora-2-pro"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "video",
        "input": {"model": model, "resolution": resolution, "duration": duration, "prompt": "a coat in the wind"},
    }
    return body | ({"priority": "batch"} if batch else {})


def post(api: Client, user: Any, body: dict[str, Any]) -> str:
    resp = api.post("/v1/jobs", json=body, headers=auth(user))
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def admissions(resources: Resources) -> list[str]:
    """Job ids in the order they were first admitted (queued -> submitting)."""
    query = select(job_events.c.job_id).where(job_events.c.to_status == "submitting").order_by(job_events.c.id)
    with resources.engine.connect() as conn:
        order: list[str] = []
        for job_id in conn.execute(query).scalars():
            if job_id not in order:
                order.append(job_id)
    return order


def fill_then_open(resources: Resources, room: str, submit: Any, count: int) -> list[str]:
    """Submit while the room admits nobody, wait until it holds them all, then open it."""
    resources.rooms.pause(room, ms=600_000)
    ids: list[str] = submit()
    wait_for(lambda: len(resources.rooms.snapshot(room).waiting) == count, what="every job in the room")
    resources.rooms.resume(room)
    messages.admit(room)
    return ids


def test_a_released_slot_admits_the_next_job_with_no_fallback_at_all(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim, runtime_: Runtime
) -> None:
    """Limit 1 and six jobs; no re-send, pause or reconcile would fire within an hour: only
    admission at release can move the five that wait."""
    hour = 3600.0
    runtime_.settings = runtime_.settings.with_(
        runninghub_concurrency=1,
        vendor_busy_pause_s=hour,
        stale_queued_s=hour,
        stale_processing_s=hour,
        stale_archiving_s=hour,
        stale_refund_s=hour,
        reconcile_interval_s=hour,
    )
    runtime_.policy = Policy.from_settings(runtime_.settings)
    user = make_user(resources, credits=6, plan="enterprise")

    ids = [post(api, user, pose12_body()) for _ in range(6)]
    finished = [terminal_job(resources, job_id, timeout_s=60) for job_id in ids]

    assert {job.status for job in finished} == {JobStatus.SUCCEEDED}
    assert rh_sim.max_concurrent(resources.settings.runninghub_api_key.reveal()) == 1


def test_a_pass_admits_from_one_read_of_its_room_and_a_call_meanwhile_only_asks_for_another(
    api: Client, resources: Resources, worker: dramatiq.Worker, runtime_: Runtime, monkeypatch: Any
) -> None:
    """Ten waiting jobs, room for all: one pass reads the room once and admits the ten (not one read
    and one sort of the whole room per admission); while another process holds the room's turn, a
    call admits nothing itself and the holder's turn goes on for one more pass."""
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(kie_concurrency_sora_2_pro=20))
    user = make_user(resources, credits=10_000, plan="enterprise")
    resources.rooms.pause(ROOM, ms=600_000)
    ids = [post(api, user, video()) for _ in range(10)]
    wait_for(lambda: len(resources.rooms.snapshot(ROOM).waiting) == 10, what="every job in the room")
    resources.rooms.resume(ROOM)
    reads: list[int] = []  # the threads that read the room
    snapshot = runtime_.rooms.snapshot
    monkeypatch.setattr(runtime_.rooms, "snapshot", lambda room: reads.append(threading.get_ident()) or snapshot(room))

    assert resources.rooms.enter_admission(ROOM, "another process", ttl_s=30)
    assert admission.admit(runtime_, ROOM) == 0
    assert reads == [] and len(resources.rooms.snapshot(ROOM).waiting) == 10
    assert resources.rooms.leave_admission(ROOM, "another process", ttl_s=30)  # asked for one more pass
    resources.rooms.leave_admission(ROOM, "another process", ttl_s=30)

    assert admission.admit(runtime_, ROOM) == 10
    # one read for the ten; a second pass at most, when a worker thread asked for one meanwhile
    assert 1 <= reads.count(threading.get_ident()) <= 2
    for job_id in ids:
        assert terminal_job(resources, job_id, timeout_s=60).status is JobStatus.SUCCEEDED


def test_interactive_then_fast_then_slow_whatever_the_arrival(
    api: Client, resources: Resources, worker: dramatiq.Worker, kie_sim: KieSim, runtime_: Runtime
) -> None:
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(kie_concurrency_sora_2_pro=2))
    kie_sim.configure(rate_limit=None)
    user = make_user(resources, credits=10_000, plan="enterprise")

    def submit() -> list[str]:
        slow = [post(api, user, video("1080p", 15, batch=True)) for _ in range(3)]
        fast = [post(api, user, video("720p", 10, batch=True)) for _ in range(3)]
        interactive = [post(api, user, video("720p", 10)) for _ in range(2)]
        return slow + fast + interactive

    ids = fill_then_open(resources, ROOM, submit, 8)
    for job_id in ids:
        terminal_job(resources, job_id, timeout_s=60)

    slow, fast, interactive = set(ids[:3]), set(ids[3:6]), set(ids[6:])
    order = admissions(resources)
    assert set(order[:2]) == interactive
    assert set(order[2:5]) == fast
    assert set(order[5:]) == slow


def test_a_flood_does_not_starve_a_second_user(
    api: Client, resources: Resources, worker: dramatiq.Worker, kie_sim: KieSim, runtime_: Runtime
) -> None:
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(kie_concurrency_sora_2=1))
    kie_sim.configure(rate_limit=None, generating_s=1.0)
    a = make_user(resources, credits=10_000, phone="13800000001", plan="enterprise")
    b = make_user(resources, credits=10_000, phone="13800000002", plan="enterprise")
    flood = [post(api, a, video(model="sora-2")) for _ in range(40)]
    wait_for(lambda: len(resources.rooms.snapshot("kie:sora-2").waiting) >= 35, what="A's flood to wait")

    before = len(admissions(resources))
    late = [post(api, b, video(model="sora-2")) for _ in range(2)]
    wait_for(lambda: late[0] in admissions(resources), timeout_s=60, what="B's first job to start")

    assert late[0] in admissions(resources)[before : before + 2]
    assert len([job_id for job_id in admissions(resources) if job_id in flood]) < 40  # A still waited


def test_fair_share_follows_plan_weights(
    api: Client, resources: Resources, worker: dramatiq.Worker, kie_sim: KieSim, runtime_: Runtime
) -> None:
    plans = "free:0:0:1:5,small:100:0:4:5,big:100:0:12:5"  # concurrency 4 and 12: weights 1 : 3
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(kie_concurrency_sora_2=4, plans=plans))
    kie_sim.configure(rate_limit=None)
    a = make_user(resources, credits=10_000, phone="13800000001", plan="small")
    b = make_user(resources, credits=10_000, phone="13800000002", plan="big")

    def submit() -> list[str]:
        return [post(api, a, video(model="sora-2")) for _ in range(12)] + [
            post(api, b, video(model="sora-2")) for _ in range(36)
        ]

    ids = fill_then_open(resources, "kie:sora-2", submit, 48)
    for job_id in ids:
        terminal_job(resources, job_id, timeout_s=90)

    owner = {job_id: ("a" if i < 12 else "b") for i, job_id in enumerate(ids)}
    order = [owner[job_id] for job_id in admissions(resources)]
    for start in range(len(order) - 8):
        window = Counter(order[start : start + 8])
        assert 1 <= window["a"] <= 3, (start, order)


def test_a_free_plan_never_runs_two_at_once_whatever_the_model_limit(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim, runtime_: Runtime
) -> None:
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(runninghub_concurrency=5))
    user = make_user(resources, credits=4)  # no plan: "free", concurrency 1

    ids = [post(api, user, pose12_body()) for _ in range(4)]
    finished = [terminal_job(resources, job_id, timeout_s=60) for job_id in ids]

    assert {job.status for job in finished} == {JobStatus.SUCCEEDED}
    assert rh_sim.max_concurrent(resources.settings.runninghub_api_key.reveal()) == 1


def test_a_waiting_job_shows_why_and_where_and_moves_up_as_jobs_ahead_start(
    api: Client, resources: Resources, worker: dramatiq.Worker, kie_sim: KieSim, runtime_: Runtime
) -> None:
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(kie_concurrency_sora_2=1))
    kie_sim.configure(rate_limit=None, generating_s=3600)
    user = make_user(resources, credits=10_000, plan="enterprise")
    running = post(api, user, video(model="sora-2"))
    task = wait_for(lambda: (j := resources.jobs.get(running)) and j.vendor_task_id, what="the first job to run")
    waiting = [post(api, user, video(model="sora-2")) for _ in range(3)]

    def queue(job_id: str) -> dict[str, Any] | None:
        return api.get(f"/v1/jobs/{job_id}", headers=auth(user)).json().get("queue")

    last = wait_for(lambda: queue(waiting[2]), what="the last job's place")
    kie_sim.force(task, "complete")
    wait_for(lambda: (j := resources.jobs.get(waiting[0])) and j.status is not JobStatus.QUEUED, what="the next start")
    moved = queue(waiting[2])

    assert last == {"reason": "vendor_slots", "position": 3}
    assert moved == {"reason": "vendor_slots", "position": 2}
    assert queue(running) is None


def test_a_user_at_its_plan_cap_is_told_so(
    api: Client, resources: Resources, worker: dramatiq.Worker, kie_sim: KieSim, runtime_: Runtime
) -> None:
    kie_sim.configure(rate_limit=None, generating_s=3600)
    user = make_user(resources, credits=10_000)  # free: one at a time
    first = post(api, user, video(model="sora-2"))
    wait_for(lambda: (j := resources.jobs.get(first)) and j.vendor_task_id, what="the first job to run")

    second = post(api, user, video(model="sora-2"))
    answer = wait_for(lambda: api.get(f"/v1/jobs/{second}", headers=auth(user)).json().get("queue"))

    assert answer == {"reason": "plan_concurrency", "position": 1}
