"""The job engine under duplicates: fenced messages, slots held by (job, attempt), one vendor task
per attempt, and stale messages that do nothing. Real Redis broker, database, S3, simulators."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from domain.jobs import JobStatus
from infra.resources import Resources
from tests.support import HeldCall, auth, make_user, pose12_body, terminal_job, wait_for
from vendors.sim.kie import KieSim
from vendors.sim.runninghub import RunningHubSim
from workers import archiving, maintenance, polling
from workers.boot import vendor_clients
from workers.runtime import Policy, Runtime

Client = TestClient[Litestar]


@pytest.fixture
def doubled(broker: dramatiq.Broker) -> Iterator[list[str]]:
    """At-least-once delivery at its worst: the broker takes every message twice (two ids)."""
    original = broker.enqueue
    sent: list[str] = []

    def twice(message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        sent.append(message.actor_name)
        original(dataclasses.replace(message, message_id=str(uuid.uuid4())), delay=delay)
        return original(message, delay=delay)

    broker.enqueue = twice  # type: ignore[method-assign]
    yield sent
    broker.enqueue = original  # type: ignore[method-assign]


def test_every_message_twice_keeps_the_limit_one_task_per_attempt_and_one_charge(
    api: Client,
    resources: Resources,
    worker: dramatiq.Worker,
    rh_sim: RunningHubSim,
    runtime_: Runtime,
    doubled: list[str],
) -> None:
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(runninghub_concurrency=1))
    user = make_user(resources, credits=4, plan="enterprise")

    ids = [api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"] for _ in range(4)]
    finished = [terminal_job(resources, job_id, timeout_s=60) for job_id in ids]
    worker.join()

    assert {job.status for job in finished} == {JobStatus.SUCCEEDED}
    assert {"generation.enqueue_job", "generation.submit_job", "polling.poll_job", "archiving.archive_job"} <= set(
        doubled
    )
    assert rh_sim.max_concurrent(resources.settings.runninghub_api_key.reveal()) == 1
    tasks = [t.task_id for t in rh_sim.created_tasks()]
    assert sorted(tasks) == sorted(job.vendor_task_id for job in finished)  # one task per job, none twice
    for job in finished:
        assert [a["outcome"] for a in resources.jobs.attempts(job.id)] == ["accepted"]
        assert len(job.results) == 12
        assert all(resources.storage.keys(f.key) for f in job.results)
    kinds = [kind for _, kind, _ in resources.accounts.ledger(user.user_id)]
    assert kinds.count("charge") == 4 and "refund" not in kinds


def test_every_message_twice_refunds_each_failed_job_once(
    api: Client,
    resources: Resources,
    worker: dramatiq.Worker,
    rh_sim: RunningHubSim,
    doubled: list[str],
) -> None:
    rh_sim.configure(job_fail_rate=1.0)
    user = make_user(resources, credits=3, plan="enterprise")

    ids = [api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"] for _ in range(3)]
    finished = [terminal_job(resources, job_id, timeout_s=60) for job_id in ids]
    wait_for(lambda: resources.accounts.balance(user.user_id) == 3, what="the refunds")
    worker.join()

    assert {job.status for job in finished} == {JobStatus.FAILED}
    assert "refunds.refund_job" in doubled
    ledger = resources.accounts.ledger(user.user_id)
    assert sorted(job_id for job_id, kind, _ in ledger if kind == "refund") == sorted(ids)
    assert resources.accounts.ledger_sum(user.user_id) == resources.accounts.balance(user.user_id) == 3


def test_a_poll_made_stale_by_a_redrive_does_nothing(
    api: Client, resources: Resources, worker: dramatiq.Worker, kie_sim: KieSim, runtime_: Runtime
) -> None:
    kie_sim.configure(generating_s=3600)
    user = make_user(resources, credits=15)
    body = {"kind": "video", "input": {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": "waves"}}
    job_id = api.post("/v1/jobs", json=body, headers=auth(user)).json()["id"]
    before = wait_for(lambda: (j := resources.jobs.get(job_id)) and j.status is JobStatus.PROCESSING and j)
    worker.pause()
    stale_fence = resources.jobs.get(job_id).fence  # type: ignore[union-attr]

    assert maintenance.redrive_job(runtime_, resources.jobs.get(job_id))  # type: ignore[arg-type]
    after_redrive = resources.jobs.get(job_id)
    calls = len(kie_sim.calls)
    polling.poll_job(job_id, stale_fence)  # the old chain's next message, delivered late

    now = resources.jobs.get(job_id)
    assert now == after_redrive  # nothing moved: not the fence, not the poll count
    assert len(kie_sim.calls) == calls  # and the vendor was not asked
    assert before.vendor_task_id == now.vendor_task_id  # type: ignore[union-attr]
    worker.resume()


def test_a_stale_submit_takes_no_slot_and_calls_no_vendor(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim, runtime_: Runtime
) -> None:
    user = make_user(resources, credits=1)
    [job_id] = [api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"]]
    job = terminal_job(resources, job_id)
    worker.join()
    tasks = len(rh_sim.created_tasks())

    from workers import generation

    for fence in range(job.fence + 1):  # every message the job ever had, delivered again
        generation.submit_job(job_id, fence)
        polling.poll_job(job_id, fence)
        archiving.archive_job(job_id, fence)

    assert resources.jobs.get(job_id) == job
    assert len(rh_sim.created_tasks()) == tasks
    assert resources.rooms.in_flight("runninghub:pose12") == 0


def test_a_submit_whose_answer_was_lost_is_counted_backs_off_and_the_job_runs_once_more(
    api: Client,
    resources: Resources,
    worker: dramatiq.Worker,
    rh_sim: RunningHubSim,
    runtime_: Runtime,
    sims: httpx.MockTransport,
) -> None:
    lost: list[httpx.Response] = []

    def lose_the_first_answer(request: httpx.Request) -> httpx.Response:
        answer = sims.handle_request(request)
        if request.url.path.endswith("/ai-app/run") and not lost:
            lost.append(answer)  # the vendor made the task; its answer never reaches us
            raise httpx.ReadTimeout("answer lost", request=request)
        return answer

    runtime_.vendors = vendor_clients(
        resources.settings, resources.jobs, transport=httpx.MockTransport(lose_the_first_answer)
    )
    user = make_user(resources, credits=1)
    counted = metric_value(api, 'genq_vendor_unknown_outcomes_total{vendor="runninghub"}')

    job = terminal_job(resources, api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"])

    assert job.status is JobStatus.SUCCEEDED
    assert [(a["attempt"], a["outcome"]) for a in resources.jobs.attempts(job.id)] == [(1, "unknown"), (2, "accepted")]
    assert len(rh_sim.created_tasks()) == 2  # the orphan exists at the vendor, and is on record as unknown
    assert metric_value(api, 'genq_vendor_unknown_outcomes_total{vendor="runninghub"}') == counted + 1
    assert resources.accounts.balance(user.user_id) == 0


def test_a_task_accepted_after_its_job_was_taken_back_is_cancelled_at_the_vendor(
    api: Client,
    resources: Resources,
    worker: dramatiq.Worker,
    rh_sim: RunningHubSim,
    runtime_: Runtime,
    sims: httpx.MockTransport,
) -> None:
    submit = HeldCall(sims.handle_request, lambda path: path.endswith("/ai-app/run"))  # the vendor is slow...
    runtime_.vendors = vendor_clients(resources.settings, resources.jobs, transport=submit.transport)
    user = make_user(resources, credits=1)
    job_id = api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"]
    assert submit.started.wait(30)

    stuck = resources.jobs.get(job_id)
    assert stuck is not None and resources.rooms.release(stuck.slot, stuck.holder)  # ...and its lease is lost
    assert maintenance.take_back(runtime_) == 1  # so the job is taken back for another attempt
    submit.release()
    job = terminal_job(resources, job_id, timeout_s=60)
    worker.join()

    assert job.status is JobStatus.SUCCEEDED and job.attempt == 2
    first, second = resources.jobs.attempts(job_id)
    assert (first["outcome"], second["outcome"]) == ("abandoned", "accepted")
    cancelled = {t.task_id for t in rh_sim.created_tasks() if t.cancelled}
    assert cancelled == {first["task_id"]} and first["cancelled_at"] is not None
    assert job.vendor_task_id == second["task_id"]


def metric_value(api: Client, series: str) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_every_moderation_message_twice_decides_each_input_once_and_runs_the_job_once(
    api: Client, resources: Resources, worker: dramatiq.Worker, kie_sim: KieSim, runtime_: Runtime, doubled: list[str]
) -> None:
    changed = resources.settings.with_(audit_enabled=True)
    resources.settings = runtime_.settings = changed
    runtime_.policy = Policy.from_settings(changed)
    user = make_user(resources, credits=15)
    resources.accounts.set_moderation_platform(user.user_id, "douyin")  # answers in the call
    body = {"kind": "video", "input": {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": "a calm sea"}}

    job = terminal_job(resources, api.post("/v1/jobs", json=body, headers=auth(user)).json()["id"])
    worker.join()

    assert {"moderation.check_job", "moderation.record_verdict"} <= set(doubled)
    assert job.status is JobStatus.SUCCEEDED
    assert [(a.item_no, a.decision) for a in resources.audits.for_job(job.id) if a.status == "decided"] == [(0, "pass")]
    assert [t.task_id for t in kie_sim.created_tasks()] == [job.vendor_task_id]
    assert [kind for _, kind, _ in resources.accounts.ledger(user.user_id)] == ["grant", "charge"]


def test_every_admission_message_twice_after_a_vendor_pause_keeps_the_vendor_limit(
    api: Client,
    resources: Resources,
    worker: dramatiq.Worker,
    rh_sim: RunningHubSim,
    runtime_: Runtime,
    doubled: list[str],
) -> None:
    rh_sim.configure(concurrency_limit=1)  # the vendor allows one; our limit is 3: it answers "full"
    user = make_user(resources, credits=3, plan="enterprise")

    ids = [api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"] for _ in range(3)]
    finished = [terminal_job(resources, job_id, timeout_s=60) for job_id in ids]
    worker.join()

    assert "generation.admit_room" in doubled
    assert {job.status for job in finished} == {JobStatus.SUCCEEDED}
    assert rh_sim.max_concurrent(resources.settings.runninghub_api_key.reveal()) == 1
    accepted = [a["task_id"] for job in finished for a in resources.jobs.attempts(job.id) if a["outcome"] == "accepted"]
    assert sorted(accepted) == sorted(t.task_id for t in rh_sim.created_tasks())
