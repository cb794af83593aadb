"""Retention: a succeeded job's stored files go RESULT_RETENTION_DAYS after it ended (clock moved,
no sleeps); the job keeps its row and answers that its files expired."""

from __future__ import annotations

from datetime import timedelta

import dramatiq
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import update

from infra.db import jobs
from infra.resources import Resources
from tests.support import GARMENT, auth, make_user, terminal_job
from workers import maintenance
from workers.runtime import Policy, Runtime

Client = TestClient[Litestar]
CLEAN = {"kind": "basic_clean", "input": {"image_url": GARMENT}}


def test_files_older_than_the_retention_are_deleted_and_the_job_says_so(
    api: Client, resources: Resources, worker: dramatiq.Worker, runtime_: Runtime
) -> None:
    user = make_user(resources, credits=2)
    old, recent = (
        terminal_job(resources, api.post("/v1/jobs", json=CLEAN, headers=auth(user)).json()["id"]) for _ in "ab"
    )
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(result_retention_days=30))
    assert old.finished_at is not None and recent.finished_at is not None
    held = resources.meter.held()

    runtime_.clock = lambda: old.finished_at + timedelta(days=30, seconds=1)  # type: ignore[operator]
    with resources.engine.begin() as conn:  # the second job ended a day later
        conn.execute(update(jobs).where(jobs.c.id == recent.id).values(finished_at=old.finished_at + timedelta(days=1)))
    expired = maintenance.expire_results(runtime_)
    again = maintenance.expire_results(runtime_)
    answer = api.get(f"/v1/jobs/{old.id}", headers=auth(user)).json()
    kept = api.get(f"/v1/jobs/{recent.id}", headers=auth(user)).json()

    assert (expired, again) == (1, 0)
    assert not any(resources.storage.exists(f.key) for f in old.results)
    assert all(resources.storage.exists(f.key) for f in recent.results)
    assert answer["status"] == "succeeded" and answer["results"] is None and answer["results_expired_at"]
    assert kept["results"] and kept["results_expired_at"] is None
    assert resources.meter.held() == held - sum(f.size for f in old.results)


def test_no_retention_configured_keeps_every_file(
    api: Client, resources: Resources, worker: dramatiq.Worker, runtime_: Runtime
) -> None:
    user = make_user(resources, credits=1)
    job = terminal_job(resources, api.post("/v1/jobs", json=CLEAN, headers=auth(user)).json()["id"])
    runtime_.clock = lambda: job.finished_at + timedelta(days=3650)  # type: ignore[operator]

    assert maintenance.expire_results(runtime_) == 0
    assert all(resources.storage.exists(f.key) for f in job.results)
