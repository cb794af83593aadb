"""Cancel: a waiting job ends at once; a running one is also cancelled at the vendor where it can
be and gives its slot to the next job; an archiving or finished job is too late. Refunded once."""

from __future__ import annotations

from typing import Any

import dramatiq
import httpx
from litestar import Litestar
from litestar.testing import TestClient

from domain.jobs import JobStatus
from infra.resources import Resources
from tests.support import HeldCall, auth, make_user, pose12_body, terminal_job, wait_for
from vendors.sim.runninghub import RunningHubSim
from workers.boot import vendor_clients
from workers.runtime import Policy, Runtime

Client = TestClient[Litestar]
ROOM = "runninghub:pose12"


def post(api: Client, user: Any) -> str:
    resp = api.post("/v1/jobs", json=pose12_body(), headers=auth(user))
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def refunds(resources: Resources, user: Any) -> list[str]:
    return [job_id for job_id, kind, _ in resources.accounts.ledger(user.user_id) if kind == "refund"]


def test_a_waiting_job_is_cancelled_at_once_refunded_and_never_submitted(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim
) -> None:
    resources.rooms.pause(ROOM, ms=600_000)  # nothing is admitted: the job waits
    user = make_user(resources, credits=1)
    job_id = post(api, user)
    wait_for(lambda: len(resources.rooms.snapshot(ROOM).waiting) == 1, what="the job to wait in its room")

    resp = api.post(f"/v1/jobs/{job_id}/cancel", headers=auth(user))
    wait_for(lambda: resources.accounts.balance(user.user_id) == 1, what="the refund")

    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    assert resources.rooms.snapshot(ROOM).waiting == ()
    assert rh_sim.created_tasks() == [] and resources.jobs.attempts(job_id) == []
    assert refunds(resources, user) == [job_id]


def test_a_running_job_is_cancelled_at_the_vendor_and_its_slot_admits_the_next(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim, runtime_: Runtime
) -> None:
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(runninghub_concurrency=1))
    rh_sim.configure(running_s=3600)
    user = make_user(resources, credits=2, plan="enterprise")
    running = post(api, user)
    task = wait_for(lambda: (j := resources.jobs.get(running)) and j.vendor_task_id, what="the job to run")
    waiting = post(api, user)

    resp = api.post(f"/v1/jobs/{running}/cancel", headers=auth(user))
    next_task = wait_for(lambda: (j := resources.jobs.get(waiting)) and j.vendor_task_id, what="the next job to run")
    wait_for(lambda: refunds(resources, user) == [running], what="the refund")

    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    assert {t.task_id: t.cancelled for t in rh_sim.created_tasks()} == {task: True, next_task: False}
    assert resources.jobs.get(running).status is JobStatus.CANCELLED  # type: ignore[union-attr]
    assert rh_sim.max_concurrent(resources.settings.runninghub_api_key.reveal()) == 1


def test_a_job_cancelled_while_its_submit_runs_has_the_task_cancelled_and_frees_its_slot(
    api: Client,
    resources: Resources,
    worker: dramatiq.Worker,
    rh_sim: RunningHubSim,
    runtime_: Runtime,
    sims: httpx.MockTransport,
) -> None:
    submit = HeldCall(sims.handle_request, lambda path: path.endswith("/ai-app/run"))
    runtime_.vendors = vendor_clients(resources.settings, resources.jobs, transport=submit.transport)
    user = make_user(resources, credits=1)
    job_id = post(api, user)
    assert submit.started.wait(30)

    resp = api.post(f"/v1/jobs/{job_id}/cancel", headers=auth(user))
    submit.release()
    wait_for(lambda: resources.rooms.in_flight(ROOM) == 0, what="the slot to come back")
    worker.join()

    assert resp.json()["status"] == "cancelled"
    [attempt] = resources.jobs.attempts(job_id)
    assert attempt["outcome"] == "abandoned" and attempt["cancelled_at"] is not None
    assert [t.cancelled for t in rh_sim.created_tasks()] == [True]
    assert refunds(resources, user) == [job_id]


def test_too_late_while_archiving_and_a_conflict_once_finished(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim, runtime_: Runtime
) -> None:
    copy = HeldCall(rh_sim.handle, lambda _: True)
    runtime_.downloads = httpx.Client(transport=copy.transport)
    user = make_user(resources, credits=1)
    job_id = post(api, user)
    assert copy.started.wait(30)

    archiving = api.post(f"/v1/jobs/{job_id}/cancel", headers=auth(user))
    copy.release()
    terminal_job(resources, job_id)
    finished = api.post(f"/v1/jobs/{job_id}/cancel", headers=auth(user))

    assert (archiving.status_code, archiving.json()["error"]["code"]) == (409, "too_late")
    assert (finished.status_code, finished.json()["error"]["code"]) == (409, "conflict")
    assert resources.jobs.get(job_id).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    assert refunds(resources, user) == []


def test_another_users_job_cannot_be_cancelled(api: Client, resources: Resources, worker: dramatiq.Worker) -> None:
    resources.rooms.pause(ROOM, ms=600_000)
    owner = make_user(resources, credits=1, phone="13800000001")
    stranger = make_user(resources, credits=1, phone="13800000002")
    job_id = post(api, owner)

    resp = api.post(f"/v1/jobs/{job_id}/cancel", headers=auth(stranger))

    assert resp.status_code == 404
    assert resources.jobs.get(job_id).status is JobStatus.QUEUED  # type: ignore[union-attr]
