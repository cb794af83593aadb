"""model_pose12 through every pool: real Redis broker, real database, real S3, RunningHub simulator."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import dramatiq
import httpx
import pytest
import redis
from litestar import Litestar
from litestar.testing import TestClient
from PIL import Image
from sqlalchemy import select

from domain.jobs import JobStatus
from infra.db import jobs
from infra.resources import Resources
from infra.rooms import Rooms
from tests.support import auth, make_user, pose12_body, terminal_job, wait_for
from vendors.sim.runninghub import RunningHubSim
from workers import maintenance
from workers.runtime import Policy, Runtime

Client = TestClient[Litestar]


def submit(api: Client, key: dict[str, str], n: int = 1) -> list[str]:
    ids = []
    for _ in range(n):
        resp = api.post("/v1/jobs", json=pose12_body(), headers=key)
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["id"])
    return ids


@pytest.fixture
def reconciler(runtime_: Runtime, redis_client: redis.Redis) -> Iterator[None]:
    """The maintenance loop, with stale bounds and slot leases short enough for a test."""
    runtime_.settings = runtime_.settings.with_(
        stale_queued_s=0.5, stale_processing_s=0.5, stale_archiving_s=1.0, stale_refund_s=0.3
    )
    runtime_.rooms = Rooms(redis_client, ttl_s=0.6)
    stop = threading.Event()
    loop = threading.Thread(target=maintenance.run_periodically, args=(stop, redis_client), daemon=True)
    loop.start()
    yield
    stop.set()
    loop.join(5)


def test_job_succeeds_with_twelve_pngs_in_our_storage(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim
) -> None:
    user = make_user(resources, credits=1)

    [job_id] = submit(api, auth(user))
    job = terminal_job(resources, job_id)

    assert job.status is JobStatus.SUCCEEDED
    body = api.get(f"/v1/jobs/{job_id}", headers=auth(user)).json()
    assert len(body["results"]) == 12
    for result in body["results"]:
        assert result["url"].startswith(resources.settings.s3_endpoint_url)
        download = httpx.get(result["url"])
        assert download.status_code == 200 and download.content[:8] == b"\x89PNG\r\n\x1a\n"
        Image.open(io.BytesIO(download.content)).verify()
        assert result["content_type"] == "image/png" and result["size"] == len(download.content)
    keys = [f.key for f in job.results]
    assert keys == [f"results/{user.user_id}/{job_id}/1/{i}.png" for i in range(12)]  # archive attempt 1
    with resources.engine.connect() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one()
    stored = json.dumps({k: str(v) for k, v in row.items()})
    assert "runninghub.sim" not in stored and "__sim" not in stored and "Signature" not in stored
    assert resources.jobs.events(job_id) == [
        (None, "queued"),
        ("queued", "submitting"),
        ("submitting", "processing"),
        ("processing", "archiving"),
        ("archiving", "succeeded"),
    ]
    assert resources.accounts.balance(user.user_id) == 0
    assert resources.rooms.in_flight("runninghub:pose12") == 0


@pytest.mark.parametrize(
    "knobs",
    [
        {"job_fail_rate": 1.0},
        {"failure_rate": 1.0, "failure_kind": "http_500"},
        {"failure_rate": 1.0, "failure_kind": "code_500"},
    ],
    ids=["task-fails", "http-500", "envelope-500"],
)
def test_every_failed_job_is_refunded_exactly_once(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim, knobs: dict[str, object]
) -> None:
    rh_sim.configure(**knobs)
    user = make_user(resources, credits=4)

    ids = submit(api, auth(user), n=4)
    finished = [terminal_job(resources, job_id) for job_id in ids]
    wait_for(lambda: resources.accounts.balance(user.user_id) == 4, what="refunds")

    assert {job.status for job in finished} == {JobStatus.FAILED}
    ledger = resources.accounts.ledger(user.user_id)
    assert sorted(job_id for job_id, kind, _ in ledger if kind == "refund") == sorted(ids)
    assert resources.accounts.ledger_sum(user.user_id) == 4
    assert all(job.error_code for job in finished)
    assert resources.rooms.in_flight("runninghub:pose12") == 0


def test_vendor_never_sees_more_than_the_model_limit(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim, runtime_: Runtime
) -> None:
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(runninghub_concurrency=2))
    user = make_user(resources, credits=10, plan="enterprise")

    ids = submit(api, auth(user), n=10)
    finished = [terminal_job(resources, job_id, timeout_s=60) for job_id in ids]

    assert {job.status for job in finished} == {JobStatus.SUCCEEDED}
    assert rh_sim.max_concurrent(resources.settings.runninghub_api_key.reveal()) == 2


def test_a_job_whose_message_was_lost_still_finishes(
    api: Client, resources: Resources, worker: dramatiq.Worker, redis_client: redis.Redis, reconciler: None
) -> None:
    worker.pause()
    user = make_user(resources, credits=1)
    [job_id] = submit(api, auth(user))

    redis_client.flushall()
    worker.resume()
    job = terminal_job(resources, job_id, timeout_s=30)

    assert job.status is JobStatus.SUCCEEDED
    assert len(job.results) == 12


def test_a_job_left_in_submitting_by_a_dead_worker_is_taken_back(
    api: Client, resources: Resources, worker: dramatiq.Worker, redis_client: redis.Redis, reconciler: None
) -> None:
    worker.pause()
    user = make_user(resources, credits=1)
    [job_id] = submit(api, auth(user))
    job = resources.jobs.get(job_id)
    assert job is not None
    resources.jobs.move(job_id, JobStatus.QUEUED, JobStatus.SUBMITTING, now=job.created_at)  # then the worker died
    redis_client.flushall()

    worker.resume()
    job = terminal_job(resources, job_id, timeout_s=30)

    assert job.status is JobStatus.SUCCEEDED
    assert ("submitting", "queued") in resources.jobs.events(job_id)


def test_a_job_past_its_deadline_times_out_is_refunded_and_never_polled_again(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim
) -> None:
    rh_sim.configure(running_s=3600)
    user = make_user(resources, credits=1)
    [job_id] = submit(api, auth(user))
    wait_for(lambda: (j := resources.jobs.get(job_id)) and j.polls >= 2, what="a few polls")

    with resources.engine.begin() as conn:  # the deadline passes
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(deadline_at=jobs.c.created_at))
    job = terminal_job(resources, job_id)
    wait_for(lambda: resources.accounts.balance(user.user_id) == 1, what="the refund")
    polls_at_end = [c for c in rh_sim.calls if c.path.endswith("/outputs")]
    worker.join()

    assert job.status is JobStatus.TIMED_OUT and job.error_code == "deadline_exceeded"
    assert [c for c in rh_sim.calls if c.path.endswith("/outputs")] == polls_at_end
    assert [kind for _, kind, _ in resources.accounts.ledger(user.user_id)].count("refund") == 1
    assert any(c.path.endswith("/cancel") for c in rh_sim.calls)


def test_metrics_count_finished_jobs_by_kind_and_status(
    api: Client, resources: Resources, worker: dramatiq.Worker
) -> None:
    user = make_user(resources, credits=1)
    before = _metric(api, 'genq_jobs_finished_total{kind="model_pose12",status="succeeded"}')

    [job_id] = submit(api, auth(user))
    terminal_job(resources, job_id)

    assert _metric(api, 'genq_jobs_finished_total{kind="model_pose12",status="succeeded"}') == before + 1


def _metric(api: Client, series: str) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_a_limit_an_admin_lowers_applies_to_the_next_jobs_without_a_restart(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim
) -> None:
    admin = resources.accounts.create_user("100", 0, now=datetime.now(UTC), role="admin")
    user = make_user(resources, credits=4, plan="enterprise")

    changed = api.put("/v1/admin/config/runninghub_concurrency", json={"value": "1"}, headers=auth(admin))
    ids = submit(api, auth(user), n=4)
    finished = [terminal_job(resources, job_id, timeout_s=60) for job_id in ids]

    assert changed.status_code == 200, changed.text
    assert {job.status for job in finished} == {JobStatus.SUCCEEDED}
    assert rh_sim.max_concurrent(resources.settings.runninghub_api_key.reveal()) == 1
    [change] = api.get("/v1/admin/config/changes", headers=auth(admin)).json()
    assert (change["old_value"], change["new_value"], change["changed_by"]) == ("3", "1", admin.user_id)
