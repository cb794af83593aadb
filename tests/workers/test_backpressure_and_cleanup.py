"""Vendor capacity is back-pressure, not failure; a failed archive leaves nothing behind."""

from __future__ import annotations

import dramatiq
import httpx
from litestar import Litestar
from litestar.testing import TestClient

from domain.jobs import JobStatus
from infra.resources import Resources
from tests.support import auth, make_user, pose12_body, terminal_job, wait_for
from vendors.sim.runninghub import RunningHubSim
from workers.runtime import Runtime

Client = TestClient[Litestar]


def test_vendor_capacity_answers_requeue_the_job_and_it_still_succeeds(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim
) -> None:
    rh_sim.configure(concurrency_limit=1)  # the vendor is stricter than our limit of 3
    user = make_user(resources, credits=3, plan="enterprise")

    ids = [api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"] for _ in range(3)]
    finished = [terminal_job(resources, job_id, timeout_s=60) for job_id in ids]

    assert {job.status for job in finished} == {JobStatus.SUCCEEDED}
    assert any(("submitting", "queued") in resources.jobs.events(job_id) for job_id in ids)
    assert resources.accounts.balance(user.user_id) == 0  # nothing refunded: nothing failed


def test_an_archive_that_keeps_failing_midway_removes_what_it_uploaded_and_refunds(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim, runtime_: Runtime
) -> None:
    served = []

    def vendor_files(request: httpx.Request) -> httpx.Response:
        if "/__sim/files/" in request.url.path:
            served.append(request.url.path)
            if len(served) > 5:  # the vendor's storage loses the rest
                return httpx.Response(404)
        return rh_sim.handle(request)

    runtime_.downloads = httpx.Client(transport=httpx.MockTransport(vendor_files))
    user = make_user(resources, credits=1)

    job_id = api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"]
    job = terminal_job(resources, job_id)
    wait_for(lambda: resources.accounts.balance(user.user_id) == 1, what="the refund")

    assert job.status is JobStatus.FAILED and job.error_code == "archive_http_404"
    attempts = resources.settings.archive_max_attempts
    assert len(served) == 6 + (attempts - 1)  # the first attempt stops at file 6, the others at file 1
    assert resources.storage.keys(f"results/{user.user_id}/{job_id}/") == []
    assert job.results == ()
