"""`Prefer: wait=N`: a bounded synchronous answer, on submit and on read."""

from __future__ import annotations

import dramatiq
from litestar import Litestar
from litestar.testing import TestClient

from infra.resources import Resources
from tests.support import auth, make_user, pose12_body
from vendors.sim.runninghub import RunningHubSim

Client = TestClient[Litestar]


def test_a_fast_job_is_answered_finished_in_one_request(
    api: Client, resources: Resources, worker: dramatiq.Worker
) -> None:
    user = make_user(resources, credits=1)

    resp = api.post("/v1/jobs", json=pose12_body(), headers={**auth(user), "Prefer": "wait=30"})

    assert resp.status_code == 202
    assert resp.json()["status"] == "succeeded" and len(resp.json()["results"]) == 12
    assert resp.headers["Preference-Applied"] == "wait=30"


def test_a_slow_job_is_answered_as_it_is_when_the_wait_ends(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim
) -> None:
    rh_sim.configure(running_s=3600)
    user = make_user(resources, credits=1)
    job_id = api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"]

    resp = api.get(f"/v1/jobs/{job_id}", headers={**auth(user), "Prefer": "respond-async, wait=1"})
    plain = api.get(f"/v1/jobs/{job_id}", headers=auth(user))

    assert resp.status_code == 200 and resp.json()["status"] in ("queued", "submitting", "processing")
    assert resp.headers["Preference-Applied"] == "wait=1"
    assert "Preference-Applied" not in plain.headers
