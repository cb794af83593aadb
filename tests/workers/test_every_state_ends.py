"""Every non-terminal state has a deadline and a way out: moderation that never answers, archives
that keep failing, transient errors while fetching outputs, re-driven archives."""

from __future__ import annotations

from datetime import UTC, datetime

import dramatiq
import httpx
from litestar import Litestar
from litestar.testing import TestClient

from domain.jobs import JobStatus
from infra.db import jobs
from infra.resources import Resources
from infra.storage import Storage, make_s3_client
from tests.support import HeldCall, auth, make_user, pose12_body, terminal_job, wait_for
from vendors.sim.runninghub import RunningHubSim
from workers import maintenance
from workers.boot import vendor_clients
from workers.runtime import Policy, Runtime

Client = TestClient[Litestar]


def post(api: Client, user: object, body: dict[str, object]) -> str:
    resp = api.post("/v1/jobs", json=body, headers=auth(user))  # type: ignore[arg-type]
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def test_moderation_that_never_answers_fails_the_job_at_its_deadline_and_refunds(
    api: Client, resources: Resources, worker: dramatiq.Worker, runtime_: Runtime
) -> None:
    changed = resources.settings.with_(audit_enabled=True)  # WeChat image verdicts come by push: none will
    resources.settings = runtime_.settings = changed
    runtime_.policy = Policy.from_settings(changed)
    user = make_user(resources, credits=1)
    job_id = post(api, user, pose12_body())
    job = wait_for(lambda: (j := resources.jobs.get(job_id)) and j.fence > 0 and j, what="the check to be made")
    assert job.status is JobStatus.PENDING_AUDIT

    with resources.engine.begin() as conn:  # its deadline passes
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(deadline_at=datetime.now(UTC)))
    maintenance.reconcile(runtime_)
    job = terminal_job(resources, job_id)
    wait_for(lambda: resources.accounts.balance(user.user_id) == 1, what="the refund")

    assert job.status is JobStatus.FAILED and job.error_code == "moderation_timeout"
    assert (JobStatus.PENDING_AUDIT, JobStatus.FAILED) in resources.jobs.events(job_id)


def test_an_archive_that_raises_an_unexpected_error_fails_after_its_attempts_and_refunds(
    api: Client, resources: Resources, worker: dramatiq.Worker, runtime_: Runtime
) -> None:
    settings = resources.settings
    runtime_.storage = Storage(make_s3_client(settings, settings.s3_endpoint_url), "no-such-bucket-here")
    user = make_user(resources, credits=1)

    job_id = post(api, user, pose12_body())
    job = terminal_job(resources, job_id, timeout_s=60)
    wait_for(lambda: resources.accounts.balance(user.user_id) == 1, what="the refund")

    assert job.status is JobStatus.FAILED and (job.error_code or "").startswith("archive_")
    assert job.archive_attempts == settings.archive_max_attempts
    assert [kind for _, kind, _ in resources.accounts.ledger(user.user_id)].count("refund") == 1


def test_a_transient_error_fetching_outputs_is_retried_and_the_job_succeeds(
    api: Client,
    resources: Resources,
    worker: dramatiq.Worker,
    rh_sim: RunningHubSim,
    runtime_: Runtime,
    sims: httpx.MockTransport,
) -> None:
    failures: list[str] = []
    archiving_calls_to_fail = 1 + len(resources.settings.retry_waits)  # more than one attempt's retries

    def outputs_down_while_archiving(request: httpx.Request) -> httpx.Response:
        archiving = any(j.status is JobStatus.ARCHIVING for j in resources.jobs.in_state(JobStatus.ARCHIVING))
        if request.url.path.endswith("/outputs") and archiving and len(failures) < archiving_calls_to_fail:
            failures.append(request.url.path)
            return httpx.Response(500)  # the vendor's API has a bad moment, after the task succeeded
        return sims.handle_request(request)

    runtime_.vendors = vendor_clients(
        resources.settings, resources.jobs, transport=httpx.MockTransport(outputs_down_while_archiving)
    )
    user = make_user(resources, credits=1)

    job = terminal_job(resources, post(api, user, pose12_body()), timeout_s=60)

    assert len(failures) == archiving_calls_to_fail
    assert job.status is JobStatus.SUCCEEDED and len(job.results) == 12
    assert job.archive_attempts == 2
    assert all(f.key.split("/")[-2] == "2" for f in job.results)  # published by the attempt that won


def test_a_redriven_archive_never_removes_what_another_attempt_published(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim, runtime_: Runtime
) -> None:
    first_copy = HeldCall(rh_sim.handle, lambda path: "/__sim/files/" in path)  # a slow download...
    runtime_.downloads = httpx.Client(transport=first_copy.transport)
    user = make_user(resources, credits=1)
    job_id = post(api, user, pose12_body())
    assert first_copy.started.wait(30)

    stuck = resources.jobs.get(job_id)
    assert stuck is not None and stuck.status is JobStatus.ARCHIVING
    assert maintenance.redrive_job(runtime_, stuck)  # ...and is re-driven: a second archiver runs
    job = terminal_job(resources, job_id, timeout_s=60)
    first_copy.release()  # the first archiver finishes late and loses the compare-and-set
    worker.join()

    assert job.status is JobStatus.SUCCEEDED
    published = [f.key for f in job.results]
    assert all(resources.storage.keys(key) == [key] for key in published)
    assert sorted(resources.storage.keys(f"results/{user.user_id}/{job_id}/")) == sorted(published)
